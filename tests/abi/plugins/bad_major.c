/* Built for a future major ABI: the engine must refuse it naming both versions. */
#include "common.h"
TEST_PLUGIN("abi_bad_major", DM_ABI_MAJOR + 1, 0)
