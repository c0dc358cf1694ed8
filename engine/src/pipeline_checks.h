// Checks of the whole pipeline, after each entry was validated on its own: what no single
// plugin can see (no input, an output no tag reaches, two writers on one file, two inputs on one
// address and path, an address in use, a directory that cannot be made). --dry-run and a start
// run the same checks, so "configuration OK" means the start will not fail on any of them.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "config.h"

namespace devmesh {

// One validated pipeline entry, as the checks see it.
struct InstanceView {
  std::string section;  // "inputs", "filters" or "outputs"
  int index = 0;        // position in its section
  std::string name;     // instance name (alias or plugin.index)
  const dm_plugin *desc = nullptr;
  const dm_config *cfg = nullptr;  // validated values, the schema, the entry's node (marks)
  std::string tag;                 // inputs: the tag its records carry
  std::string match;               // filters and outputs: the tag pattern they select
};

// A directory to make at start (mkdir -p, 0700), and where the option that asks for it is.
struct DirectoryToMake {
  std::string dir;
  std::string where;  // "FILE:LINE:COL: pipeline.outputs[0].path"
};

struct PipelineCheckResult {
  Problems problems;                       // refuse the start
  std::vector<std::string> warnings;       // reported, but the pipeline can run
  std::vector<std::string> notes;          // what a start would do (a directory it would make)
  std::vector<DirectoryToMake> make_dirs;  // for make_directories at start
  // Addresses another process listens on now. They refuse a start, but --dry-run only warns:
  // it is run to check an edit while the pipeline's own devmesh is serving them.
  Problems in_use;
};

// Runs every whole-pipeline check. `listening` holds the canonical addresses ("ip:port") the
// engine already serves on (a reload): those are not bound again to see whether they are free.
// `earlier` are the problems found so far: an option that already has one gets no second.
void check_pipeline(const PipelineConfig &cfg, const std::vector<InstanceView> &instances,
                    const std::set<std::string> &listening, const Problems &earlier,
                    PipelineCheckResult &out);

// FILE:LINE:COL: warning: PATH: MESSAGE, as a compiler words a warning.
std::string warning_str(const Problem &p);

// Makes the directories check_pipeline listed (mkdir -p, 0700), logging each one made; false
// after logging every one that could not be made, by its option and path.
bool make_directories(const std::vector<DirectoryToMake> &dirs);

}  // namespace devmesh
