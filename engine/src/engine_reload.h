// A reload in progress (engine_reload.cpp): what the engine keeps between reading the file and
// the last replacement input's start.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "engine.h"

namespace devmesh {

// One reload in progress: from reading the file until every new input started.
struct Reload {
  bool reading = false;  // the file was read: a later trigger gets a reload of its own
  bool refused = false;
  std::set<Instance *> same;   // the new generation's stand-ins for unchanged instances
  std::set<Instance *> fresh;  // new and changed instances, adopted at the swap
  std::vector<dm_http_request *> requests;
  std::vector<std::string> added, removed, changed;
  size_t unchanged = 0;
  std::vector<std::string> start_errors;  // instances that failed to start (logged)
};

}  // namespace devmesh
