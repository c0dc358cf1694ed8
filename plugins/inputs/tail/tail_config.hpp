// tail's configuration: its options, and the checks that turn them into Settings (every
// problem reported with its option's key, before anything is opened).
#pragma once

#include <devmesh/plugin.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace devmesh::tail {

// One glob of `path`: a directory without wildcards and a file-name pattern.
struct Pattern {
  std::string dir, name;
  int wd = -1;  // inotify watch on dir
};

struct Settings {
  std::vector<Pattern> patterns;
  std::vector<std::string> excludes;  // globs matched against whole paths
  bool from_tail = false, follow = true;
  bool has_service = false;
  std::string service, host;
  std::string state_file;  // empty: no checkpoints
  uint64_t checkpoint_ms = 1000, rotate_wait_ms = 5000;
  size_t max_line = 65536;
  uint32_t batch = 1024;
};

const dm_option *options();
uint32_t option_count();

// Reports every problem to `problems` (refuse_if_any() is the caller's) and returns what it read.
Settings read_settings(const dm_host_api *host, const dm_config *cfg, ConfigProblems &problems);

}  // namespace devmesh::tail
