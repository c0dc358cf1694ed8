// The service manager's view of the engine: systemd's sd_notify protocol (Type=notify units).
// READY once every listener is bound, RELOADING while a reload is applied, STOPPING at
// shutdown, STATUS lines, and the watchdog keep-alive. Every call is a no-op when the process
// was not started by systemd (no NOTIFY_SOCKET).
#pragma once

#include <uv.h>

#include <string>

namespace devmesh::service_notify {

void ready(const std::string &status);  // READY=1 (also after a reload: ends RELOADING)
void reloading();                       // RELOADING=1 with MONOTONIC_USEC
void stopping();                        // STOPPING=1
void status(const std::string &text);   // STATUS=...
// With WatchdogSec set (WATCHDOG_USEC), pings WATCHDOG=1 from the loop at half the interval,
// so a stalled loop is restarted by systemd. Returns the timer's handle owner's ok.
void start_watchdog(uv_loop_t *loop);
void stop_watchdog();

}  // namespace devmesh::service_notify
