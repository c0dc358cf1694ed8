// WindowTimer: the periodic loop timer with which the drop and dedup filters close their time
// windows (summaries) even when no record arrives; one owner of the timer's whole life.
#pragma once

#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cstdint>

namespace devmesh {

// Owner is the filter class; tick is its member called on the loop thread, exceptions logged.
template <class Owner, void (Owner::*tick)()>
class WindowTimer {
 public:
  WindowTimer(const dm_host_api *host, dm_instance *inst, Owner *owner)
      : host_(host), inst_(inst), owner_(owner) {}
  WindowTimer(const WindowTimer &) = delete;
  WindowTimer &operator=(const WindowTimer &) = delete;
  ~WindowTimer() {
    if (timer_) host_->timer_free(timer_);
  }

  // Ticks four times per window (a window closes at most a quarter late), bounded to
  // [min_ms, max_ms]. False (logged) when the loop refuses a timer.
  bool start(int64_t window_ns, uint64_t min_ms, uint64_t max_ms) {
    if (!timer_ && !(timer_ = host_->timer_new(inst_, on_timer, this))) {
      host_->log(inst_, DM_LOG_ERROR, "timer_new failed");
      return false;
    }
    const uint64_t quarter_ms = window_ns > 0 ? static_cast<uint64_t>(window_ns / 4000000) : 0;
    const uint64_t tick_ms = std::clamp<uint64_t>(quarter_ms, min_ms, max_ms);
    host_->timer_start(timer_, tick_ms, tick_ms);
    return true;
  }

  void stop() {
    if (timer_) host_->timer_stop(timer_);
  }

 private:
  static void on_timer(void *arg) {
    auto *self = static_cast<WindowTimer *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return (self->owner_->*tick)(), 0; });
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  Owner *owner_;
  dm_timer *timer_ = nullptr;
};

}  // namespace devmesh
