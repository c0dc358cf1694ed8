/* A valid plugin that claims the name of the built-in null output. */
#include "common.h"
TEST_PLUGIN("null", DM_ABI_MAJOR, DM_ABI_MINOR)
