// Submits from an input's own threads (host->submit off the loop thread). Each one gets its
// ticket at once, in submit order, and waits here until the loop routes it exactly like a submit
// made on the loop. The loop's own submits never come here (no lock on their path).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <vector>

namespace devmesh {

class InputInstance;
struct Batch;

class SubmitInbox {
 public:
  SubmitInbox() = default;
  SubmitInbox(const SubmitInbox &) = delete;
  SubmitInbox &operator=(const SubmitInbox &) = delete;

  // Loop thread, before the input starts: submits from other threads wake the loop from now on.
  // The wake-up handle never keeps the loop alive; the engine's teardown closes it.
  void open(uv_loop_t *loop, InputInstance *in);

  // Any thread but the loop: queues b under the input's next ticket. DM_ERR_FULL while the
  // input is paused (see set_paused), DM_ERR once it is closed; then the batch stays the caller's
  // and its records are counted rejected, as on the loop.
  int submit(Batch *b, uint64_t *ticket);

  // Loop thread. Set before the input's pause() is called and cleared before its resume() is:
  // a thread that got DM_ERR_FULL is sure to see a resume() once it may submit again.
  void set_paused(bool paused) { paused_.store(paused, std::memory_order_release); }
  // Loop thread: refuses every later submit (DM_ERR). Called before the input's stop().
  void close();
  // Loop thread: routes what is queued, in ticket order. Safe to call at any time.
  void drain();
  // Loop thread, when the engine cannot route any more (it failed to start): closes, frees what
  // is queued and counts it rejected, with a log line (those tickets are never acknowledged).
  void refuse();
  // Loop thread, after close() and a last drain(): a reload retired the input. Closes the wake-up
  // handle; done(arg) runs once it is closed, when the inbox (and its input) may be freed.
  void release(void (*done)(void *), void *arg);

 private:
  struct Entry {
    Batch *batch;
    uint64_t seq;
  };
  InputInstance *in_ = nullptr;
  uv_async_t wake_{};
  void (*released_)(void *) = nullptr;
  void *released_arg_ = nullptr;
  std::atomic<bool> paused_{false};
  std::mutex mu_;
  bool open_ = false;         // guarded by mu_
  bool closed_ = false;       // guarded by mu_
  std::vector<Entry> queue_;  // guarded by mu_
};

}  // namespace devmesh
