// Which plugin call each thread is running. Set around every call into a plugin; read by the
// crash report (in a signal handler, on the same thread) and by the watchdog (another thread),
// so every field is an atomic and nothing here allocates.
#pragma once

#include <atomic>
#include <cstdint>
#include <ctime>

namespace devmesh {

// One per thread. `call` names the running call (unique per thread, restored on exit from a
// nested call), so a reader on another thread checks that what it read belongs together.
struct CallSlot {
  std::atomic<const char *> instance{nullptr};  // Instance::name: lives as long as the engine
  std::atomic<const char *> callback{nullptr};  // a string literal
  std::atomic<const char *> tag{nullptr};       // the batch's tag, valid while the call runs
  std::atomic<uint64_t> start_ns{0};            // monotonic; 0 while no plugin call runs
  std::atomic<uint64_t> call{0};
  std::atomic<uint64_t> stalled_call{0};  // the call the watchdog reported: log its return
  uint64_t next_call = 0;                 // owner thread only
  const char *role = "thread";            // "loop", "worker": set once by WatchedThread
};

CallSlot &this_thread_slot();

// The engine's loop thread: the thread that made the Engine (create() runs there too) and runs
// its loop. [loop] host entries check it (DEVMESH_THREAD_CHECKS), and submit from any other
// thread goes through the input's inbox. Constant-initialised: reading it is one TLS load.
extern constinit thread_local bool t_loop_thread;
inline bool on_loop_thread() {
  return t_loop_thread;
}
inline void mark_loop_thread() {
  t_loop_thread = true;
}
uint64_t plugin_call_now_ns();
// Cold path of ~PluginCall: the watchdog had reported the call that just returned.
void report_stall_over(CallSlot &slot, uint64_t start_ns);

// Marks a call into a plugin for its duration. Nested calls (an input's timer that submits,
// which runs the filters) restore the outer call on exit.
class PluginCall {
 public:
  PluginCall(const char *instance, const char *callback, const char *tag = nullptr)
      : slot_(this_thread_slot()) {
    prev_instance_ = slot_.instance.load(std::memory_order_relaxed);
    prev_callback_ = slot_.callback.load(std::memory_order_relaxed);
    prev_tag_ = slot_.tag.load(std::memory_order_relaxed);
    prev_start_ = slot_.start_ns.load(std::memory_order_relaxed);
    prev_call_ = slot_.call.load(std::memory_order_relaxed);
    start_ = plugin_call_now_ns();
    call_ = ++slot_.next_call;
    slot_.call.store(call_, std::memory_order_release);
    slot_.instance.store(instance, std::memory_order_relaxed);
    slot_.callback.store(callback, std::memory_order_relaxed);
    slot_.tag.store(tag, std::memory_order_relaxed);
    slot_.start_ns.store(start_, std::memory_order_release);
  }
  ~PluginCall() {
    if (slot_.stalled_call.load(std::memory_order_acquire) == call_)
      report_stall_over(slot_, start_);
    slot_.call.store(prev_call_, std::memory_order_release);
    slot_.instance.store(prev_instance_, std::memory_order_relaxed);
    slot_.callback.store(prev_callback_, std::memory_order_relaxed);
    slot_.tag.store(prev_tag_, std::memory_order_relaxed);
    // The outer call keeps its own start: the watchdog measures from when it began.
    slot_.start_ns.store(prev_start_, std::memory_order_release);
  }
  PluginCall(const PluginCall &) = delete;
  PluginCall &operator=(const PluginCall &) = delete;

 private:
  CallSlot &slot_;
  const char *prev_instance_, *prev_callback_, *prev_tag_;
  uint64_t prev_start_, start_, prev_call_, call_;
};

// Registers the current thread with the watchdog (its plugin calls are watched against
// bound_ns; 0: not watched) and gives it an alternate signal stack, so a stack overflow in a
// plugin is reported too. Unregisters and frees the stack at scope exit.
class WatchedThread {
 public:
  WatchedThread(const char *role, uint64_t bound_ns);
  ~WatchedThread();
  WatchedThread(const WatchedThread &) = delete;
  WatchedThread &operator=(const WatchedThread &) = delete;

 private:
  int index_ = -1;
  void *alt_stack_ = nullptr;
};

// The threads the watchdog looks at. Static storage: a slot read by the watchdog stays valid
// memory after its thread ended.
struct WatchedEntry {
  std::atomic<bool> used{false};
  std::atomic<uint64_t> bound_ns{0};  // 0: free
  CallSlot slot;
};
constexpr int kMaxWatched = 256;
WatchedEntry *watched_threads();  // kMaxWatched entries; bound_ns == 0 when not in use

}  // namespace devmesh
