// The hand-over between journald's reader thread and the engine loop: the thread reads batches
// while the loop submits the ones before them, so sd-journal and the pipeline overlap. The loop
// asks for a read run; the thread reads batches into a short queue (waiting while it is full,
// so a stalled pipeline holds at most kAhead batches in memory) until the journal's end, an
// error, or the loop halts it, and then says how the run ended. Between runs the thread waits
// and the loop may use the sd_journal handle (re-open, follow notifications): the journal
// belongs to whichever side holds the run.
#pragma once

#include <devmesh/plugin.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <utility>

namespace devmesh::journald {

struct Position {
  std::string cursor;
  uint64_t realtime_usec = 0;
};

// A batch read and not yet accepted by submit.
struct ReadBatch {
  dm_batch *batch = nullptr;
  Position last;  // its newest entry
};

// How a read run ended.
struct RunEnd {
  bool at_end = false;  // no entry after the last one read
  bool failed = false;  // a read error: retried after a while
};

class Handoff {
 public:
  // Batches read ahead of submit; enough to keep both sides busy, few enough to bound memory.
  static constexpr size_t kAhead = 4;

  // ---- the reader thread ----

  // Waits for a run; false when the thread is to quit. reopen: the journal is to be re-opened
  // first (the loop let go of its notification fd).
  bool wait_for_run(bool &reopen) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return quit_ || run_requested_; });
    run_requested_ = false;
    reopen = reopen_;
    return !quit_;
  }

  // Waits for room for another batch; false when the run is to end (halted, or quitting).
  bool wait_for_room() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return quit_ || halted_ || ready_.size() < kAhead; });
    return !quit_ && !halted_;
  }

  void push(ReadBatch &&b) {
    std::lock_guard lk(mu_);
    ready_.push_back(std::move(b));
  }

  void end_run(RunEnd end) {
    std::lock_guard lk(mu_);
    end_ = end;
    run_ended_ = true;
  }

  // ---- the loop ----

  void request_run(bool reopen) {
    std::lock_guard lk(mu_);
    halted_ = false;
    reopen_ = reopen;
    run_requested_ = true;
    cv_.notify_all();
  }

  // Pause and stop: the run ends after the batch being read (set), or may go on (cleared).
  void halt(bool on) {
    std::lock_guard lk(mu_);
    halted_ = on;
    cv_.notify_all();
  }

  void quit() {
    std::lock_guard lk(mu_);
    quit_ = true;
    cv_.notify_all();
  }

  // The oldest batch not yet submitted, left in place until pop(); false when there is none.
  bool front(ReadBatch &out) {
    std::lock_guard lk(mu_);
    if (ready_.empty()) return false;
    out = ready_.front();  // a copy: a refused batch stays in front with its position
    return true;
  }

  // Drops the front batch (submitted, or freed): room for the thread.
  void pop() {
    std::lock_guard lk(mu_);
    ready_.pop_front();
    cv_.notify_all();
  }

  // After the thread is joined: what it read and nobody submitted, for freeing.
  std::deque<ReadBatch> take_all() {
    std::lock_guard lk(mu_);
    return std::exchange(ready_, {});
  }

  // True once when the run has ended, with how.
  bool run_ended(RunEnd &end) {
    std::lock_guard lk(mu_);
    if (!run_ended_) return false;
    run_ended_ = false;
    end = end_;
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ReadBatch> ready_;
  bool run_requested_ = false, reopen_ = false, halted_ = false, quit_ = false, run_ended_ = false;
  RunEnd end_;
};

}  // namespace devmesh::journald
