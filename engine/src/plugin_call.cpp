// The per-thread plugin-call slots, the registry of watched threads and their alternate
// signal stacks.
#include "plugin_call.h"

#include <signal.h>

#include <cinttypes>
#include <cstdlib>

#include "log.h"

namespace devmesh {

constinit thread_local bool t_loop_thread = false;

namespace {
thread_local CallSlot t_own_slot;         // threads nobody watches (libuv's pool, tests)
thread_local CallSlot *t_slot = nullptr;  // the watched slot, when registered
WatchedEntry g_watched[kMaxWatched];
}  // namespace

CallSlot &this_thread_slot() {
  // Constant-initialised thread_locals only: this runs inside the crash handler too.
  return t_slot ? *t_slot : t_own_slot;
}

WatchedEntry *watched_threads() {
  return g_watched;
}

uint64_t plugin_call_now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void report_stall_over(CallSlot &slot, uint64_t start_ns) {
  slot.stalled_call.store(0, std::memory_order_release);
  const double secs = static_cast<double>(plugin_call_now_ns() - start_ns) / 1e9;
  const char *tag = slot.tag.load(std::memory_order_relaxed);
  log_msg(DM_LOG_WARN, slot.instance.load(std::memory_order_relaxed),
          "watchdog: the %s callback returned after %.1f s (tag '%s'); the %s thread runs again",
          slot.callback.load(std::memory_order_relaxed), secs, tag ? tag : "", slot.role);
}

WatchedThread::WatchedThread(const char *role, uint64_t bound_ns) {
  t_own_slot.role = role;
  // SIGSTKSZ is small for our handler's formatting plus the libc frames below it.
  const size_t size = 64 * 1024;
  alt_stack_ = std::malloc(size);
  if (alt_stack_) {
    stack_t ss{};
    ss.ss_sp = alt_stack_;
    ss.ss_size = size;
    if (sigaltstack(&ss, nullptr) != 0) {
      std::free(alt_stack_);
      alt_stack_ = nullptr;
    }
  }
  if (bound_ns == 0) return;
  for (int i = 0; i < kMaxWatched; i++) {
    bool expected = false;
    if (g_watched[i].used.compare_exchange_strong(expected, true)) {
      WatchedEntry &e = g_watched[i];
      e.slot.role = role;
      e.slot.stalled_call.store(0);
      e.slot.start_ns.store(0);
      t_slot = &e.slot;
      e.bound_ns.store(bound_ns, std::memory_order_release);
      index_ = i;
      return;
    }
  }
}

WatchedThread::~WatchedThread() {
  if (index_ >= 0) {
    t_slot = nullptr;
    g_watched[index_].bound_ns.store(0, std::memory_order_release);
    g_watched[index_].used.store(false, std::memory_order_release);
  }
  if (alt_stack_) {
    stack_t ss{};
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, nullptr);
    std::free(alt_stack_);
  }
}

}  // namespace devmesh
