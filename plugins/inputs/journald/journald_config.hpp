// journald's configuration: its options and what they say, checked (see journald_config.cpp).
#pragma once

#include <devmesh/plugin.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "entry_mapping.hpp"

namespace devmesh::journald {

struct Settings {
  std::string path;  // a journal directory; empty: files, or the local journal
  std::vector<std::string> files;
  std::string source;  // what is read, for log lines: "directory ...", "2 journal file(s)", ...
  // sd-journal matches in order; "+" separates alternative groups.
  std::vector<std::string> matches;
  std::vector<ExtraField> extras;  // `fields:`, copied into meta
  bool from_tail = false, follow = true;
  bool has_host_override = false;
  std::string host_override;
  uint32_t batch = 1024;
  uint64_t checkpoint_ms = 1000;
  size_t data_threshold = 0;  // max_field_size; 0: no limit
  uint64_t remap_after = 0;
  std::string state_file;  // empty: no checkpoints
  std::string state_dir;   // the state file's directory, created at start when missing
};

const dm_option *options();
uint32_t option_count();

// Reports every problem to `problems`, each with its option's key (a list item as
// "files.2"), and returns what it read.
Settings read_settings(const dm_host_api *host, const dm_config *cfg, ConfigProblems &problems);

inline std::string errno_text(int r) {
  return strerror(r < 0 ? -r : r);
}

}  // namespace devmesh::journald
