/* Built for ABI 1.1 (before dm_ack.failed and flush_record_status): an older minor still loads. */
#include "common.h"
TEST_PLUGIN("abi_older_minor", DM_ABI_MAJOR, 1)
