// Milliseconds of the monotonic clock, for deadlines and windows that must not jump with the
// wall clock. Header-only.
#pragma once

#include <time.h>

#include <cstdint>

namespace devmesh {

inline uint64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

}  // namespace devmesh
