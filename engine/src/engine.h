// The engine: plugin instances wired from a PipelineConfig, the filter chain, the router with
// one bounded queue per output, retries, dead-lettering, acknowledgements and the lifecycle.
#pragma once

#include <devmesh/plugin.h>
#include <uv.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "batch.h"
#include "config.h"
#include "http_server.h"
#include "metrics.h"
#include "plugin_loader.h"
#include "state_paths.h"
#include "storage.h"
#include "submit_inbox.h"
#include "watchdog.h"

struct dm_instance {};  // the ABI's opaque handle; Instance derives from it
namespace devmesh {
class Engine;
struct Ticket;
}  // namespace devmesh
// A filter's hold on a ticket (see dm_host_api.hold): released once, then freed.
struct dm_hold {
  devmesh::Engine *engine;
  devmesh::Ticket *ticket;
  bool stored = false;  // its stand-in is durable (or storage is off)
};

namespace devmesh {

class Engine;
class InputInstance;
class OutputInstance;
struct Chunk;

// One configured plugin instance.
class Instance : public dm_instance {
 public:
  Instance(Engine *e, const LoadedPlugin *p, const PluginEntry &entry, std::string name)
      : engine(e), plugin(p), desc(p->desc), section(entry.section), name(std::move(name)) {}
  virtual ~Instance() = default;
  static Instance *from(dm_instance *i) { return static_cast<Instance *>(i); }

  Engine *engine;
  const LoadedPlugin *plugin;
  const dm_plugin &desc;
  std::string section;  // inputs / filters / outputs
  std::string name;     // alias, else plugin name + "." + index
  std::unique_ptr<dm_config> cfg;
  void *state = nullptr;
  bool created = false;
  bool started = false;

  Metric *m_in = nullptr, *m_out = nullptr, *m_dropped = nullptr;
  // filters: batches passed on unchanged because the filter failed, or set a verdict the ABI
  // does not define
  Metric *m_filter_failed = nullptr, *m_bad_verdicts = nullptr;
};

// A submit's acknowledgement state: done when `outstanding` record deliveries reach zero.
// A ticket with no input stands for a filter's emitted batch that carries holds: its end
// releases them instead of acknowledging an input.
struct Ticket {
  InputInstance *input = nullptr;
  uint64_t seq = 0;
  uint64_t outstanding = 0;  // record deliveries plus holds not yet released
  dm_ack ack{};
  bool routed = false;  // routing finished (so outstanding == 0 means done)
  // With storage: STORED always precedes DONE. None: no block waits (nothing stored, or the
  // write failed: then STORED is sent just before DONE). WaitingHolds: its own block is
  // durable, a held stand-in's is not yet.
  enum class Stored : uint8_t {
    None,
    AwaitingFsync,
    Queued,
    WaitingHolds,
    Sent
  } stored = Stored::None;
  uint64_t block_id = 0;
  uint32_t unstored_holds = 0;   // with storage: holds whose stand-in is not durable yet
  std::vector<dm_hold *> holds;  // input-less tickets: the holds their end releases
  std::string failed_reason;     // the first not-kept failure's (ack.failed_reason points here)
};

// A block in the segment files and who still has to finish it. Lives until every output it
// was routed to delivered, dead-lettered or dropped all of its records.
struct StoredBlock {
  uint64_t id = 0;
  Segment *seg = nullptr;
  uint64_t seg_id = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint32_t count = 0;
  Ticket *ticket = nullptr;         // null for replayed and filter-emitted blocks
  uint32_t outputs_left = 0;        // outputs with records outstanding
  std::vector<uint32_t> remaining;  // by output index: records not yet finished
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

struct TicketRun {
  Ticket *ticket;  // null for records a filter emitted or loaded from storage
  uint32_t count;
  StoredBlock *block;  // the block holding them (storage on), else null
};

// An output's per-record result (host flush_record_status), applied when its flush completes.
struct RecordMark {
  uint32_t index;
  dm_flush_status status;
  std::string reason;
};

// How a chunk's records finished for their output (what their tickets are told).
enum class Outcome { Delivered, DeadLettered, Failed };

// A unit of flushing: records copied from one or more batches, which it keeps alive.
struct Chunk {
  OutputInstance *out = nullptr;
  std::vector<dm_record> records;
  std::vector<Batch *> sources;
  std::vector<TicketRun> runs;
  size_t bytes = 0;
  uint32_t attempts = 0;
  uint64_t flush_start_ns = 0;
  std::string last_error;
  dm_batch view{};
  // Per-record results of the flush in progress; any thread (the output's), until completion.
  std::mutex marks_mu;
  std::vector<RecordMark> marks;
  // Per-record dead-letter reasons (records an output refused one by one), else empty.
  std::vector<std::string> reasons;
};

struct Completion {
  Chunk *chunk;
  dm_flush_status status;
  uint32_t retry_after_ms;
  std::string reason;
};

class OutputInstance : public Instance {
 public:
  using Instance::Instance;
  ~OutputInstance() override;
  std::string match;
  // engine options
  uint32_t batch_size = 1000;
  size_t batch_bytes = 4 << 20;
  uint64_t flush_interval_ms = 200;
  uint32_t workers = 1;
  int64_t retry_limit = -1;  // -1: no limit
  uint64_t retry_wait_ms = 1000;
  uint64_t retry_max_wait_ms = 60000;
  size_t queue_limit = 64 << 20;
  std::string dead_letter_path;
  std::string dead_letter_where;  // FILE:LINE:COL: pipeline.outputs[i].dead_letter_path

  // queue state (loop thread)
  Chunk *filling = nullptr;
  std::deque<Chunk *> ready;
  size_t queued_bytes = 0;  // everything not yet done: filling, ready, in flight, retrying
  size_t queued_records = 0;
  uint32_t inflight = 0;
  uint32_t retrying = 0;
  bool full = false;
  bool dispatching = false;  // dispatch() is on the stack: completions do not recurse
  std::string last_error;    // non-empty while the last flush failed
  uv_timer_t *flush_timer = nullptr;
  std::set<uv_timer_t *> retry_timers;   // chunks waiting for their next try
  std::vector<InputInstance *> feeders;  // inputs whose tag this output matches

  // workers (DM_FLUSH_ON_WORKER)
  std::vector<std::thread> threads;
  std::mutex wq_mu;
  std::condition_variable wq_cv;
  std::deque<Chunk *> wq;
  bool wq_stop = false;

  // storage: blocks waiting on disk, in order, after what is in memory
  size_t index = 0;        // position in the engine's outputs (StoredBlock::remaining)
  uint64_t name_hash = 0;  // identifies the output in ack files
  std::deque<StoredBlock *> backlog;
  uint64_t backlog_records = 0;
  bool pump_scheduled = false;

  Metric *m_retried = nullptr, *m_failed = nullptr, *m_dead = nullptr, *m_bytes = nullptr;
  Metric *m_qrecords = nullptr, *m_qbytes = nullptr, *m_backlog = nullptr;
  Histogram *m_latency = nullptr;
};

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

  // --- called through the host API ---
  int submit(InputInstance *in, Batch *b, uint64_t *ticket);
  // A submit accepted under ticket `seq` (the loop's own, or one from the input's inbox).
  void accept(InputInstance *in, Batch *b, uint64_t seq);
  int emit(FilterInstance *f, Batch *b);
  dm_hold *hold(Batch *b);
  // Releases a hold: its stand-in was finished with `outcome` (null: none was emitted).
  void release_hold(dm_hold *h, const dm_ack *outcome);
  void hold_stored(dm_hold *h);  // its stand-in is durable
  void input_finished(InputInstance *in);
  void complete(Completion c);           // any thread
  void defer(std::function<void()> fn);  // loop thread: run after the current callback

 private:
  friend struct OutputOps;
  // pipeline.cpp
  Route *route_for(const std::string &tag);
  void run_chain(Batch *b, size_t first_filter, Route *route);
  void route_batch(Batch *b, Route *route);
  void append_to_output(OutputInstance *o, Batch *b, uint32_t from, uint32_t n);
  void ticket_progress(Ticket *t, uint32_t delivered, uint32_t dead);
  void ticket_failed(Ticket *t, uint32_t n, const std::string &reason);
  void ack_later(Ticket *t);
  void finish_ticket(Ticket *t);
  // output_runner.cpp
  void seal(OutputInstance *o);
  void dispatch(OutputInstance *o);
  void flush_now(OutputInstance *o, Chunk *c);
  void on_completion(Completion &c);
  void chunk_done(Chunk *c, Outcome outcome, const std::string &reason);
  void finish_marked(Chunk *c, std::vector<RecordMark> &marks);
  Chunk *split_off(Chunk *c, const std::vector<uint8_t> &keep);
  void schedule_retry(Chunk *c, uint32_t retry_after_ms);
  void dead_letter(Chunk *c, const std::string &reason);
  void update_fullness(OutputInstance *o);
  void pause_input(InputInstance *in);
  void resume_input(InputInstance *in);
  // storage.cpp's engine side (spill.cpp)
  bool open_storage();
  void store_block(Batch *b, Route *route);
  void schedule_pump(OutputInstance *o);
  void pump(OutputInstance *o);
  void block_progress(StoredBlock *blk, OutputInstance *o, uint32_t n);
  void on_durable(uint64_t block_id);
  void send_stored(Ticket *t);
  void check_storage_full();
  void storage_write_failed(uint32_t records, size_t bytes);
  void retry_storage_write();
  void update_storage_pause();  // pauses or resumes every input for the two reasons below
  bool drop_oldest_segment();
  bool start_workers(OutputInstance *o, std::string &error);
  void stop_workers(OutputInstance *o);
  void worker_main(OutputInstance *o, uint32_t index, std::promise<int> *init);
  // engine.cpp
  void drain();  // the wake async: completions, deferred calls, shutdown progress
  void check_idle();
  void finish_shutdown();
  bool outputs_empty() const;
  void serve_health(dm_http_request *req);
  void serve_metrics(dm_http_request *req);
  void register_metrics(Instance *i);
  void build_info_json();

  PipelineConfig cfg_;
  uv_loop_t loop_;
  uv_async_t wake_;
  uv_signal_t sigterm_, sigint_;
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
  std::vector<Ticket *> acks_;  // done tickets whose input is told from drain()
  std::vector<std::pair<FilterInstance *, Batch *>> emitted_;

  uint64_t outstanding_tickets_ = 0;
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
  std::deque<Ticket *> stored_pending_;         // waiting for the fsync of their block, in order
  std::vector<Ticket *> stored_acks_;           // STORED acks to send from drain()
  bool storage_full_ = false;                   // the inputs are paused for storage (either reason)
  bool storage_over_max_ = false;               // storage.max_size reached (when_full: pause)
  std::string storage_error_;         // a segment write failed (disk full, I/O error): why
  uint64_t storage_probe_bytes_ = 0;  // what must fit again before writes resume
  uv_timer_t *storage_retry_ = nullptr;
  Metric *m_storage_full_ = nullptr, *m_storage_dropped_ = nullptr, *m_storage_lost_ = nullptr;
  Metric *m_storage_unstored_ = nullptr;
  std::string info_json_;
  std::vector<std::string> notes_;
  std::unique_ptr<Watchdog> watchdog_;
};

uint64_t monotonic_ns();
bool tag_matches(const std::string &pattern, const std::string &tag);  // fnmatch

}  // namespace devmesh
