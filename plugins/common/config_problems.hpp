// Collecting every problem of a plugin's configuration, so that one run names them all
// (header-only, compiled into each plugin that uses it).
#pragma once

#include <devmesh/plugin.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace devmesh {

// refuse_if_any() logs every problem but the last and throws the last (create() then fails, and
// the engine reports it).
class ConfigProblems {
 public:
  void add(std::string p) { list_.push_back(std::move(p)); }
  void refuse_if_any(const dm_host_api *host, dm_instance *inst) const {
    if (list_.empty()) return;
    for (size_t i = 0; i + 1 < list_.size(); ++i)
      host->log(inst, DM_LOG_ERROR, "%s", list_[i].c_str());
    throw std::invalid_argument(list_.back());
  }

 private:
  std::vector<std::string> list_;
};

}  // namespace devmesh
