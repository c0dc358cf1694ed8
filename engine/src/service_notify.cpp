// sd_notify for Type=notify units (see service_notify.h).
// TODO(issue 11, package helper): implement with libsystemd's sd_notify / sd_watchdog_enabled.
#include "service_notify.h"

namespace devmesh::service_notify {

void ready(const std::string &) {}
void reloading() {}
void stopping() {}
void status(const std::string &) {}
void start_watchdog(uv_loop_t *) {}
void stop_watchdog() {}

}  // namespace devmesh::service_notify
