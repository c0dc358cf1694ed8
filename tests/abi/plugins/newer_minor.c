/* Needs a newer minor than the engine has: refused, "upgrade devmesh". */
#include "common.h"
TEST_PLUGIN("abi_newer_minor", DM_ABI_MAJOR, DM_ABI_MINOR + 7)
