// The watchdog: a thread that notices a plugin call running longer than its bound (on the
// loop, or a worker's flush), logs the instance and callback once per stall, counts it, and
// keeps the systemd watchdog (WATCHDOG=1) fed only while the loop makes progress.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "metrics.h"

namespace devmesh {

class Watchdog {
 public:
  Watchdog(MetricsRegistry &metrics, uint64_t loop_bound_ns, uint64_t flush_bound_ns);
  ~Watchdog();
  uint64_t loop_bound_ns() const { return loop_bound_ns_; }
  uint64_t flush_bound_ns() const { return flush_bound_ns_; }
  // Starts the thread and the loop's heartbeat timer (loop thread).
  void start(uv_loop_t *loop);
  // Stops both (loop thread).
  void stop();
  // The oldest call over its bound right now, as JSON ({"instance":..,"callback":..,
  // "seconds":..}), or "" when nothing is stalled. Any thread.
  std::string stalled_json() const;

 private:
  void main();
  void check(uint64_t now);

  MetricsRegistry &metrics_;
  uint64_t loop_bound_ns_, flush_bound_ns_;
  uint64_t tick_ns_ = 0;
  uint64_t sd_usec_ = 0;  // systemd's WatchdogSec, 0 when not asked for
  uv_timer_t *beat_ = nullptr;
  std::atomic<uint64_t> last_beat_ns_{0};
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string stalled_;  // guarded by mu_
  Metric *m_stalls_ = nullptr, *m_stalled_ = nullptr, *m_notified_ = nullptr;
};

}  // namespace devmesh
