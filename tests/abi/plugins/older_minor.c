/* Built for the first minor of this major: an engine of any later minor still loads it. */
#include "common.h"
TEST_PLUGIN("abi_older_minor", DM_ABI_MAJOR, 0)
