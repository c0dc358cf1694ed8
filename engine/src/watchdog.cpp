// The watchdog thread and the loop's heartbeat. A stall is one plugin call over its bound;
// its end is logged by the call itself (~PluginCall), with the exact duration.
#include "watchdog.h"

#include <algorithm>
#include <cinttypes>

#include "log.h"
#include "plugin_call.h"

namespace devmesh {

namespace {
std::string json_escape(const char *s) {
  std::string r;
  for (; s && *s; s++) {
    const char c = *s;
    if (c == '"' || c == '\\') r += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    r += c;
  }
  return r;
}
}  // namespace

Watchdog::Watchdog(MetricsRegistry &m, uint64_t loop_bound_ns, uint64_t flush_bound_ns)
    : loop_bound_ns_(loop_bound_ns), flush_bound_ns_(flush_bound_ns) {
  m_stalls_ = m.counter("devmesh_watchdog_stalls_total",
                        "Plugin calls that ran longer than service.watchdog (loop) or "
                        "service.watchdog_flush (output workers)",
                        "");
  m_stalled_ = m.gauge("devmesh_watchdog_stalled", "Plugin calls over their bound right now", "");
}

Watchdog::~Watchdog() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
}

void Watchdog::start(uv_loop_t *) {
  // systemd's READY=1 and WATCHDOG=1 are service_notify's (its keep-alive is a timer on the
  // loop, so a blocked loop stops feeding it).
  if (loop_bound_ns_ == 0 && flush_bound_ns_ == 0) return;
  // A stall is seen within a quarter of its bound.
  uint64_t tick = 1000000000ull;
  if (loop_bound_ns_) tick = std::min(tick, loop_bound_ns_ / 4);
  if (flush_bound_ns_) tick = std::min(tick, flush_bound_ns_ / 4);
  tick_ns_ = std::max<uint64_t>(tick, 10000000ull);
  thread_ = std::thread([this] { main(); });
}

void Watchdog::stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
}

std::string Watchdog::stalled_json() const {
  std::lock_guard<std::mutex> lk(mu_);
  return stalled_;
}

void Watchdog::main() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, std::chrono::nanoseconds(tick_ns_), [this] { return stop_; });
    if (stop_) break;
    lk.unlock();
    const uint64_t now = plugin_call_now_ns();
    check(now);
    lk.lock();
  }
}

void Watchdog::check(uint64_t now) {
  WatchedEntry *w = watched_threads();
  std::string oldest;
  uint64_t oldest_start = UINT64_MAX;
  int stalled = 0;
  for (int i = 0; i < kMaxWatched; i++) {
    const uint64_t bound = w[i].bound_ns.load(std::memory_order_acquire);
    if (!bound) continue;
    CallSlot &s = w[i].slot;
    // Read the call's fields, then check that the same call is still running.
    const uint64_t call = s.call.load(std::memory_order_acquire);
    const uint64_t start = s.start_ns.load(std::memory_order_acquire);
    if (!start || now - std::min(now, start) < bound) continue;
    const char *instance = s.instance.load(std::memory_order_relaxed);
    const char *callback = s.callback.load(std::memory_order_relaxed);
    const char *tag_p = s.tag.load(std::memory_order_relaxed);
    char tag[128] = {0};
    for (size_t k = 0; tag_p && k < sizeof tag - 1 && tag_p[k]; k++) tag[k] = tag_p[k];
    if (s.call.load(std::memory_order_acquire) != call) continue;  // it returned meanwhile
    const double secs = static_cast<double>(now - start) / 1e9;
    stalled++;
    if (s.stalled_call.exchange(call, std::memory_order_acq_rel) != call) {
      m_stalls_->add(1);
      const bool loop = std::string_view(s.role) == "loop";
      log_msg(DM_LOG_ERROR, instance,
              "watchdog: the %s callback has run for %.1f s (bound %.1f s, tag '%s') and holds "
              "the %s thread%s",
              callback ? callback : "?", secs, static_cast<double>(bound) / 1e9, tag, s.role,
              loop ? ": no input, query or /health is served until it returns" : "");
    }
    if (start < oldest_start) {
      oldest_start = start;
      char num[32];
      snprintf(num, sizeof num, "%.1f", secs);
      oldest = std::string("{\"instance\":\"") + json_escape(instance) + "\",\"callback\":\"" +
               json_escape(callback) + "\",\"thread\":\"" + s.role + "\",\"seconds\":" + num + "}";
    }
  }
  m_stalled_->set(stalled);
  std::lock_guard<std::mutex> lk(mu_);
  stalled_ = oldest;
}

}  // namespace devmesh
