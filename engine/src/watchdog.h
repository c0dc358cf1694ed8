// The watchdog: a thread that notices a plugin call running longer than its bound (on the
// loop, or a worker's flush), logs the instance and callback once per stall, and counts it.
// (systemd's WATCHDOG=1 is service_notify's.)
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
  // Starts the thread (loop thread; the loop is not used).
  void start(uv_loop_t *loop);
  // Stops it (loop thread).
  void stop();
  // The oldest call over its bound right now, as JSON ({"instance":..,"callback":..,
  // "seconds":..}), or "" when nothing is stalled. Any thread.
  std::string stalled_json() const;

 private:
  void main();
  void check(uint64_t now);

  uint64_t loop_bound_ns_, flush_bound_ns_;
  uint64_t tick_ns_ = 0;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string stalled_;  // guarded by mu_
  Metric *m_stalls_ = nullptr, *m_stalled_ = nullptr;
};

}  // namespace devmesh
