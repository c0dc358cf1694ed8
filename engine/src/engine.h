// The engine: plugin instances wired from a PipelineConfig, the filter chain, the router to
// each output's queue (output_queue.h), storage, and the lifecycle. What records' inputs are
// told when outputs finish them is Delivery's (delivery.h).
#pragma once

#include <devmesh/plugin.h>
#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "batch.h"
#include "config.h"
#include "delivery.h"
#include "http_server.h"
#include "metrics.h"
#include "output_queue.h"
#include "pipeline_checks.h"
#include "plugin_loader.h"
#include "state_paths.h"
#include "storage.h"
#include "submit_inbox.h"
#include "watchdog.h"

struct dm_instance {};  // the ABI's opaque handle; Instance derives from it
namespace devmesh {

class Engine;
class InputInstance;
class OutputInstance;
struct Chunk;

// One configured plugin instance.
class Instance : public dm_instance {
 public:
  Instance(Engine *e, const LoadedPlugin *p, std::string name)
      : engine(e), plugin(p), desc(p->desc), name(std::move(name)), who(intern_name(this->name)) {}
  virtual ~Instance() = default;
  static Instance *from(dm_instance *i) { return static_cast<Instance *>(i); }

  Engine *engine;
  const LoadedPlugin *plugin;
  const dm_plugin &desc;
  std::string name;  // alias, else plugin name + "." + index
  // The name as handles and queued work keep it (crash report, watchdog): interned for the
  // process's life, since a reload frees instances whose timers' or work's last calls may
  // still name them.
  const char *who;
  static const char *intern_name(const std::string &name);
  std::unique_ptr<dm_config> cfg;
  void *state = nullptr;
  bool created = false;
  bool started = false;
  // A reload retired it (engine_reload.cpp): an input waits for its tickets, an output drains
  // its queue, then it is destroyed.
  bool retiring = false;

  Metric *m_in = nullptr, *m_out = nullptr, *m_dropped = nullptr;
  // filters: batches passed on unchanged because the filter failed, or set a verdict the ABI
  // does not define
  Metric *m_filter_failed = nullptr, *m_bad_verdicts = nullptr;
};

// Where records with a given tag go. Computed once per tag.
struct Route {
  std::vector<class FilterInstance *> filters;
  std::vector<OutputInstance *> outputs;
};

class InputInstance : public Instance {
 public:
  using Instance::Instance;
  std::string tag;
  std::atomic<uint64_t> next_ticket{1};  // its own threads take tickets too (inbox)
  SubmitInbox inbox;                     // submits from its own threads
  int full_outputs = 0;                  // >0: paused by backpressure
  bool plugin_paused = false;
  bool finished = false;
  bool stopped = false;
  // Retiring, it stays until every ticket it opened is acknowledged (its acks move its
  // checkpoint); only then is it destroyed and its successor started.
  uint64_t open_tickets = 0;             // Delivery's tickets of this input not yet finished
  InputInstance *predecessor = nullptr;  // a reload: starts once this one is destroyed
  // A reload: a new input starts only once every input retiring at that reload is gone (a
  // renamed input may share its address and path, or its state file).
  bool waits_for_retirees = false;
  Route *route = nullptr;
  Metric *m_rejected = nullptr, *m_unrouted = nullptr, *m_acked = nullptr, *m_paused = nullptr;
};

class FilterInstance : public Instance {
 public:
  using Instance::Instance;
  std::string match;
  std::string last_tag;  // tag for emitted batches that name none
  size_t order = 0;      // position in the configured chain
};

class OutputInstance : public Instance {
 public:
  using Instance::Instance;
  std::string match;
  // engine options
  uint32_t batch_size = 1000;
  size_t batch_bytes = 4 << 20;
  uint64_t flush_interval_ms = 200;
  bool adaptive_flush = true;  // flush: adaptive (an idle output flushes when the turn ends)
  uint32_t workers = 1;
  uint32_t in_flight = 1;    // flushes per worker (outputs on the loop only)
  int64_t retry_limit = -1;  // -1: no limit
  uint64_t retry_wait_ms = 1000;
  uint64_t retry_max_wait_ms = 60000;
  // 40MiB: a sidecar under a full backlog stays within 64 MiB of RSS (the process's own ~19 MiB
  // on top; bench_http --forward-queue-limit default).
  size_t queue_limit = 40 << 20;
  std::string dead_letter_path;  // resolved; checked and its directory made by pipeline_checks

  std::vector<InputInstance *> feeders;  // inputs whose tag this output matches
  // Its name's slot for the process lifetime (StoredBlock::remaining): a reload's retiring
  // output and its successor of the same name share it, as they share the name's ack files.
  size_t index = 0;
  uint64_t name_hash = 0;  // identifies the output in ack files

  OutputQueue queue{this};

  Metric *m_retried = nullptr, *m_failed = nullptr, *m_dead = nullptr, *m_bytes = nullptr;
  Metric *m_qrecords = nullptr, *m_qbytes = nullptr, *m_backlog = nullptr;
  Metric *m_merged = nullptr;
  Histogram *m_latency = nullptr;
};

// A pipeline's instances as load() builds them from one configuration: adopted by the engine
// at the first load, or diffed against the running ones by a reload (engine_reload.cpp).
struct Generation {
  std::vector<std::unique_ptr<InputInstance>> inputs;
  std::vector<std::unique_ptr<FilterInstance>> filters;
  std::vector<std::unique_ptr<OutputInstance>> outputs;
  // The whole-pipeline checks' findings (pipeline_checks.h)
  std::vector<std::string> notes, warnings;
  Problems in_use;
  std::vector<DirectoryToMake> make_dirs;
};

struct Reload;

class Engine {
 public:
  explicit Engine(PipelineConfig cfg);
  ~Engine();

  // Loads every plugin and validates every entry; with create_instances also calls each
  // plugin's create() (config semantics such as a bad regex). All problems go to `problems`
  // or `errors`; returns false if there were any.
  bool load(Problems &problems, std::vector<std::string> &errors, bool create_instances);
  // Starts outputs, filters, inputs and the HTTP listeners; runs the loop until shutdown.
  // Returns the process exit code.
  int run();
  // Begins a graceful shutdown (as SIGTERM does).
  void shutdown();
  // Re-reads the configuration file and applies it (SIGHUP, POST /reload); req, when given, is
  // answered with the outcome. engine_reload.cpp.
  void request_reload(dm_http_request *req);

  static const dm_host_api *host_api();
  uv_loop_t *loop() { return &loop_; }
  HttpServer &http() { return *http_; }
  MetricsRegistry &metrics() { return metrics_; }
  PluginLoader &loader() { return *loader_; }
  const PipelineConfig &config() const { return cfg_; }
  const std::string &info_json() const { return info_json_; }  // built by load()
  // What start would change on the machine (a dead-letter directory it creates), found by
  // load(); --dry-run prints them.
  const std::vector<std::string> &notes() const { return notes_; }
  // What the whole-pipeline checks found that does not stop a start (an output no input
  // reaches): --dry-run prints them, a start logs them.
  const std::vector<std::string> &warnings() const { return warnings_; }
  // Listen addresses another process holds now: a start refuses them, --dry-run warns.
  const Problems &addresses_in_use() const { return in_use_; }

  // --- called through the host API ---
  int submit(InputInstance *in, Batch *b, uint64_t *ticket);
  // A submit accepted under ticket `seq` (the loop's own, or one from the input's inbox).
  void accept(InputInstance *in, Batch *b, uint64_t seq);
  int emit(FilterInstance *f, Batch *b);
  dm_hold *hold(Batch *b);
  // Releases a hold: its stand-in was finished with `outcome` (null: none was emitted).
  void release_hold(dm_hold *h, const dm_ack *outcome) { delivery_.release_hold(h, outcome); }
  void input_finished(InputInstance *in);
  void complete(Completion c);           // any thread
  void defer(std::function<void()> fn);  // loop thread: run after the current callback

  // --- for the output queues and Delivery (loop thread) ---
  Delivery &delivery() { return delivery_; }
  bool stopping() const { return stopping_; }
  bool finished() const { return finished_; }
  bool storage_on() const { return storage_ != nullptr; }
  void wake() { uv_async_send(&wake_); }  // drain() runs soon, outside the current callback
  void check_idle();
  void pause_input(InputInstance *in);
  void resume_input(InputInstance *in);
  void schedule_pump(OutputInstance *o);
  void storage_freed();  // a block left storage: storage-full pause may end
  // Logs one "serving ..." line per listen address (HttpServer::describe); after start and after
  // each reload.
  void log_listeners();

 private:
  // pipeline.cpp
  Route *route_for(const std::string &tag);
  void run_chain(Batch *b, size_t first_filter, Route *route);
  void route_batch(Batch *b, Route *route);
  // engine_storage.cpp
  bool open_storage();
  void store_block(Batch *b, Route *route);
  void pump(OutputInstance *o);
  void check_storage_full();
  void storage_write_failed(uint32_t records, size_t bytes);
  void retry_storage_write();
  void update_storage_pause();  // pauses or resumes every input for the two reasons below
  bool drop_oldest_segment();
  // engine.cpp
  void drain();  // the wake async: completions, deferred calls, shutdown progress
  void finish_shutdown();
  bool outputs_empty() const;
  void serve_health(dm_http_request *req);
  void serve_metrics(dm_http_request *req);
  // With service.http_token: whether req carries it; if not, answers 401 (counted) and false.
  bool authorized(dm_http_request *req);
  void register_metrics(Instance *i);
  void build_info_json();
  // Validates every entry of cfg into gen's instances; create() runs for those should_create
  // accepts (all of them when it is empty). Problems as load().
  bool build_generation(const PipelineConfig &cfg, Generation &gen, Problems &problems,
                        std::vector<std::string> &errors,
                        const std::function<bool(Instance *)> &should_create, bool whole_checks);
  bool create_instance(Instance *i, Problems &found, std::vector<std::string> &errors);
  bool start_instance(Instance *i);
  void destroy_instance(Instance *i);
  size_t output_slot(const std::string &name);  // the name's StoredBlock::remaining index
  // engine_reload.cpp
  void start_reload();
  void apply_reload(PipelineConfig &next, Generation &gen);
  void reload_progress();  // from drain(): retiring instances that are done go
  void finish_reload();
  void reply_reload(int status, const std::string &body);
  void recompute_pauses();
  void force_retire_inputs();

  PipelineConfig cfg_;
  uv_loop_t loop_;
  uv_async_t wake_;
  uv_signal_t sigterm_, sigint_, sighup_;
  uv_timer_t grace_timer_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<PluginLoader> loader_;
  MetricsRegistry metrics_;

  std::vector<std::unique_ptr<InputInstance>> inputs_;
  std::vector<std::unique_ptr<FilterInstance>> filters_;
  std::vector<std::unique_ptr<OutputInstance>> outputs_;
  std::unordered_map<std::string, std::unique_ptr<Route>> routes_;

  std::mutex cq_mu_;
  std::vector<Completion> cq_;
  std::vector<std::function<void()>> deferred_;
  std::vector<std::pair<FilterInstance *, Batch *>> emitted_;

  Delivery delivery_{this};
  bool stopping_ = false;
  bool finished_ = false;
  bool finish_requested_ = false;
  bool wake_closed_ = false;  // guarded by cq_mu_: completions after shutdown are ignored
  int signals_ = 0;
  int exit_code_ = 0;
  uint64_t start_ns_ = 0;
  Metric *m_rss_ = nullptr, *m_uptime_ = nullptr, *m_framing_refused_ = nullptr;

  std::unique_ptr<Storage> storage_;
  std::vector<uint8_t> encode_buf_, read_buf_;  // reused: no allocation per block
  bool storage_full_ = false;                   // the inputs are paused for storage (either reason)
  bool storage_over_max_ = false;               // storage.max_size reached (when_full: pause)
  std::string storage_error_;         // a segment write failed (disk full, I/O error): why
  uint64_t storage_probe_bytes_ = 0;  // what must fit again before writes resume
  uv_timer_t *storage_retry_ = nullptr;
  Metric *m_storage_full_ = nullptr, *m_storage_dropped_ = nullptr, *m_storage_lost_ = nullptr;
  Metric *m_storage_unstored_ = nullptr;
  std::string info_json_;
  std::vector<std::string> notes_, warnings_;
  Problems in_use_;
  std::vector<DirectoryToMake> make_dirs_;  // found by load(), made by run() before any start
  std::unique_ptr<Watchdog> watchdog_;

  // Reload (engine_reload.cpp)
  std::map<std::string, size_t> output_slots_;     // output name -> StoredBlock::remaining index
  std::unique_ptr<Reload> reload_;                 // one applying (its inputs wait to start)
  bool reload_again_ = false;                      // a trigger came while one was applying
  std::vector<dm_http_request *> reload_waiting_;  // POST /reload requests to answer
  uv_timer_t reload_timer_;                        // bounds the wait for retiring inputs
  bool retiring_outputs_ = false;                  // some output drains before it goes
  bool retiring_inputs_ = false;                   // some input waits for its tickets
  std::string last_reload_json_;                   // /health: the last reload's outcome
  Metric *m_reload_applied_ = nullptr, *m_reload_refused_ = nullptr;
  Metric *m_unauthorized_ = nullptr;
};

uint64_t monotonic_ns();
bool tag_matches(const std::string &pattern, const std::string &tag);  // fnmatch

}  // namespace devmesh
