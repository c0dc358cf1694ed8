// One output's queue: records gathered into chunks, flushes dispatched on the loop or on the
// output's worker threads, completions, retries with backoff, bisecting poison chunks,
// dead-lettering, and the fullness that pauses inputs (or, with storage, the disk backlog that
// spills instead). What its records' tickets and blocks are told is Delivery's business: the
// queue reports each finished chunk there once, with its outcome.
#pragma once

#include <devmesh/plugin.h>
#include <uv.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace devmesh {

class Engine;
class OutputInstance;
struct Batch;
struct Ticket;
struct StoredBlock;

// Records of one ticket (or one stored block) in a row of a chunk.
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

// A unit of flushing: records copied from batches of one tag, which it keeps alive.
struct Chunk {
  OutputInstance *out = nullptr;
  std::vector<dm_record> records;
  std::vector<Batch *> sources;
  std::vector<TicketRun> runs;
  std::string tag;   // every record's tag: a chunk never mixes tags (outputs route by it)
  size_t bytes = 0;  // record_bytes of its records: the size of the flush (batch_bytes)
  // Real memory it keeps alive, counted against queue_limit: its records' shares of their
  // batches (batch_share) plus its own record array's capacity (array_bytes).
  size_t held = 0, array_bytes = 0;
  uint32_t attempts = 0;
  // Retried and bisected chunks keep their records: merging would undo a split or hand a
  // failing chunk's records to a fresh one.
  bool no_merge = false;
  uint64_t flush_start_ns = 0;
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

// With storage: blocks waiting on disk for this output, in block order, after what is in
// memory. The engine's storage side fills it (spill, replay) and loads it back (pump).
struct DiskBacklog {
  std::deque<StoredBlock *> blocks;
  uint64_t records = 0;
  bool pump_scheduled = false;
};

class OutputQueue {
 public:
  explicit OutputQueue(OutputInstance *out) : out_(out) {}
  ~OutputQueue();
  OutputQueue(const OutputQueue &) = delete;
  OutputQueue &operator=(const OutputQueue &) = delete;

  // Lifecycle (loop thread): the flush timer at run(), the workers before the output starts,
  // and at the end the workers joined and whatever never got delivered released.
  void init(uv_loop_t *loop);
  bool start_workers(std::string &error);
  void stop_workers();
  void release_all();  // releases, never acknowledges: their inputs re-send after a restart

  // Adds records [from, from+n) of b (a chunk holds one tag: another tag seals it first).
  void append(Batch *b, uint32_t from, uint32_t n);
  void seal();      // the filling chunk becomes ready
  void dispatch();  // ready chunks go to free flush slots (merged while the output is behind)
  void flush_all() {
    seal();
    dispatch();
  }
  void on_completion(Completion &c);  // loop thread

  bool empty() const { return queued_records_ == 0 && inflight_ == 0; }
  bool has_filling() const { return filling_ != nullptr; }
  size_t queued_records() const { return queued_records_; }
  size_t queued_bytes() const { return queued_bytes_; }
  bool over_limit() const;
  bool full() const { return full_; }  // pausing its feeders (storage off)
  const std::string &last_error() const { return last_error_; }  // empty while flushes succeed
  // Spilling, pumping or pausing inputs as the queue fills and drains.
  void update_fullness();

  DiskBacklog backlog;

 private:
  void flush_now(Chunk *c);
  void worker_main(uint32_t index, std::promise<int> *init);
  void finish_marked(Chunk *c, std::vector<RecordMark> &marks);
  Chunk *split_off(Chunk *c, const std::vector<uint8_t> &keep);
  void retry_or_give_up(Chunk *c, const std::string &reason, uint32_t retry_after_ms);
  void schedule_retry(Chunk *c, uint32_t retry_after_ms);
  void dead_letter(Chunk *c, const std::string &reason);
  // The one place a chunk leaves the queue: Delivery hears how its records finished.
  void done(Chunk *c, Outcome outcome, const std::string &failed_reason);
  void count_queued();
  void recount_array(Chunk *c);
  // Behind: every flush slot busy, chunks ready, retries or a disk backlog waiting. An output
  // that is not behind flushes its filling chunk when the loop turn ends (flush: adaptive).
  bool behind() const;
  uint32_t slots() const;  // flushes at once: workers x in_flight
  void merge_ready(Chunk *c);
  void on_turn_end();

  OutputInstance *out_;
  Engine *engine() const;

  // loop thread
  Chunk *filling_ = nullptr;
  std::deque<Chunk *> ready_;
  // Real memory (Chunk::held) of everything not yet done: filling, ready, in flight, retrying.
  size_t queued_bytes_ = 0;
  size_t queued_records_ = 0;
  uint32_t inflight_ = 0;
  bool full_ = false;
  bool dispatching_ = false;  // dispatch() is on the stack: completions do not recurse
  std::string last_error_;
  uv_timer_t *flush_timer_ = nullptr;
  uv_prepare_t *turn_end_ = nullptr;     // active while a chunk fills (flush: adaptive)
  std::set<uv_timer_t *> retry_timers_;  // chunks waiting for their next try

  // workers (DM_FLUSH_ON_WORKER)
  std::vector<std::thread> threads_;
  std::mutex wq_mu_;
  std::condition_variable wq_cv_;
  std::deque<Chunk *> wq_;
  bool wq_stop_ = false;
};

}  // namespace devmesh
