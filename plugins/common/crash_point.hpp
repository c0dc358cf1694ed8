// Crash points for fault tests (DM_CRASH_POINT): defined once, with the engine's, in
// engine/include/devmesh/crash_point.hpp; in-tree plugins include it from here.
#pragma once

#include <devmesh/crash_point.hpp>
