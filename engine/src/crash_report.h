// The crash report: on a fatal signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) one log line
// names the plugin instance, callback and tag that were running, then the process dies of the
// same signal (exit status and core dumps stay those of the signal).
#pragma once

namespace devmesh {

// Installs the handlers (process-wide). Call once, early in main().
void install_crash_report();

}  // namespace devmesh
