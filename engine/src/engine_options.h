// The keys the engine itself reads from each pipeline entry (tag, match, batching, retries),
// declared with the same dm_option schema plugins use, so one validator checks both.
#pragma once

#include <devmesh/plugin.h>

#include <string>
#include <vector>

namespace devmesh {

// The engine's options for a section ("inputs", "filters", "outputs").
const std::vector<dm_option> &engine_options(const std::string &section);

}  // namespace devmesh
