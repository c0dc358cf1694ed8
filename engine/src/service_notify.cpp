// sd_notify for Type=notify units (see service_notify.h): libsystemd's sd_notify, which does
// nothing without NOTIFY_SOCKET, so a process started by hand or by a test pays one getenv.
#include "service_notify.h"

#include <systemd/sd-daemon.h>

#include <cinttypes>
#include <cstdint>
#include <cstring>
#include <ctime>

#include "log.h"

namespace devmesh::service_notify {

namespace {

// The keep-alive timer, on the loop thread only. Heap-allocated: uv_close finishes after
// stop_watchdog returns, and the close callback frees it.
uv_timer_t *watchdog_timer = nullptr;

void send(const std::string &state) {
  // unset_environment = 0: the next notification (a reload's READY) needs NOTIFY_SOCKET too.
  int rc = sd_notify(0, state.c_str());
  if (rc < 0) log_msg(DM_LOG_WARN, nullptr, "sd_notify: %s", strerror(-rc));
}

// systemd reads STATUS= up to the newline: one line, whatever the caller passed.
std::string one_line(const std::string &text) {
  std::string s = text;
  for (char &c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

}  // namespace

void ready(const std::string &status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void reloading() {
  // systemd (253+) matches RELOADING=1 to the reload it asked for by this timestamp.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const uint64_t usec =
      static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
  send("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec));
}

void stopping() {
  send("STOPPING=1\nSTATUS=stopping");
}

void status(const std::string &text) {
  send("STATUS=" + one_line(text));
}

void start_watchdog(uv_loop_t *loop) {
  if (watchdog_timer) return;
  uint64_t usec = 0;
  // > 0 only when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is this process).
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return;
  // Half the interval, as sd_watchdog_enabled(3) advises: one late tick never trips it.
  uint64_t every_ms = usec / 2000u;
  if (every_ms == 0) every_ms = 1;
  watchdog_timer = new uv_timer_t;
  uv_timer_init(loop, watchdog_timer);
  // The loop keeps running for its work, never for this timer.
  uv_unref(reinterpret_cast<uv_handle_t *>(watchdog_timer));
  send("WATCHDOG=1");
  uv_timer_start(
      watchdog_timer, [](uv_timer_t *) { send("WATCHDOG=1"); }, every_ms, every_ms);
  log_msg(DM_LOG_INFO, nullptr, "systemd watchdog: WATCHDOG=1 every %" PRIu64 " ms", every_ms);
}

void stop_watchdog() {
  if (!watchdog_timer) return;
  uv_timer_stop(watchdog_timer);
  uv_close(reinterpret_cast<uv_handle_t *>(watchdog_timer),
           [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
  watchdog_timer = nullptr;
}

}  // namespace devmesh::service_notify
