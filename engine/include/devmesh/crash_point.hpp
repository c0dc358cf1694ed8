// Crash points for fault tests: DM_CRASH_POINT("name") kills the process with SIGKILL when the
// environment variable DEVMESH_CRASH_AT is "name" or "name:N" (the Nth hit). Compiled only with
// the CMake option DEVMESH_CRASH_POINTS; otherwise it is nothing. Header-only, for the engine and
// the in-tree plugins (through plugins/common/crash_point.hpp); a test hook, not part of the
// installed SDK.
#pragma once

#ifdef DEVMESH_CRASH_POINTS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace devmesh {

// True on the armed hit of `name`. The environment is read once per call site.
inline bool crash_point_armed(const char *name, std::atomic<long> &hits) {
  const char *at = std::getenv("DEVMESH_CRASH_AT");
  if (!at) return false;
  const size_t n = std::strlen(name);
  if (std::strncmp(at, name, n) != 0 || (at[n] != '\0' && at[n] != ':')) return false;
  const long nth = at[n] == ':' ? std::atol(at + n + 1) : 1;
  return hits.fetch_add(1) + 1 == nth;
}

}  // namespace devmesh

#define DM_CRASH_POINT(name)                                  \
  do {                                                        \
    static std::atomic<long> dm_crash_hits_{0};               \
    if (::devmesh::crash_point_armed(name, dm_crash_hits_)) { \
      ::kill(::getpid(), SIGKILL);                            \
      ::_exit(137);                                           \
    }                                                         \
  } while (0)
#else
#define DM_CRASH_POINT(name) \
  do {                       \
  } while (0)
#endif
