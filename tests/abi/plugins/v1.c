/* A plugin built for ABI 1.2: the engine reads a descriptor's first three fields (abi_major,
 * abi_minor, struct_size), laid out alike in every major, and refuses it on them. */
#include "common.h"
TEST_PLUGIN("abi_v1", 1, 2)
