// Engine-owned keys of pipeline entries.
#include "engine_options.h"

namespace devmesh {

static const std::vector<dm_option> kInput = {
    {"tag", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "Tag given to this input's records; filters and outputs select records by it "
     "(default: the plugin name)",
     0},
};

static const std::vector<dm_option> kFilter = {
    {"match", DM_OPT_STRING, 0, "*", 0, 0, nullptr,
     "Tag pattern (fnmatch, '*' wildcards) of the records this filter sees", 0},
};

static const char *const kFlushModes[] = {"adaptive", "interval", nullptr};

static const std::vector<dm_option> kOutput = {
    {"match", DM_OPT_STRING, 0, "*", 0, 0, nullptr,
     "Tag pattern (fnmatch, '*' wildcards) of the records this output receives", 0},
    {"batch_size", DM_OPT_INT, DM_OPT_BOUNDED, "1000", 1, 100000, nullptr,
     "Flush when this many records are queued", 0},
    {"batch_bytes", DM_OPT_SIZE, DM_OPT_BOUNDED, "4MiB", 1024, 256.0 * 1024 * 1024, nullptr,
     "Flush when the queued records hold this many bytes", 0},
    {"flush_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, nullptr, 1, 3600000, nullptr,
     "Flush at most this long after the first record arrived (default: service.flush_interval)", 0},
    {"flush", DM_OPT_STRING, 0, "adaptive", 0, 0, kFlushModes,
     "adaptive: an output with a free flush slot and nothing queued flushes at the end of the "
     "loop turn that gave it records, and only an output that is behind gathers up to "
     "batch_size, batch_bytes or flush_interval; interval: always gather (fewer, larger "
     "flushes, up to flush_interval more latency)",
     0},
    {"workers", DM_OPT_INT, DM_OPT_BOUNDED, "1", 1, 64, nullptr,
     "Concurrent flushes; threads with their own connections for blocking outputs", 0},
    {"in_flight", DM_OPT_INT, DM_OPT_BOUNDED, "1", 1, 16, nullptr,
     "Flushes each worker keeps in flight, for outputs that wait on a receiver instead of "
     "blocking a thread (http_forward: requests per worker, each answered and accounted on its "
     "own; a receiver with ack: delivered answers late, so more in flight hides that wait). A "
     "later flush may then finish before an earlier one, as with workers above 1. Outputs on "
     "worker threads (mariadb, sqlite) take 1 (a larger value is a configuration problem)",
     0},
    {"retry_limit", DM_OPT_INT, DM_OPT_BOUNDED, "-1", -1, 1e9, nullptr,
     "Tries after the first failure before dead-lettering; -1 retries without limit", 0},
    {"retry_wait", DM_OPT_DURATION, DM_OPT_BOUNDED, "1s", 1, 3600000, nullptr,
     "First backoff; doubles per try with jitter", 0},
    {"retry_max_wait", DM_OPT_DURATION, DM_OPT_BOUNDED, "60s", 1, 86400000, nullptr,
     "Longest backoff between tries", 0},
    {"queue_limit", DM_OPT_SIZE, DM_OPT_BOUNDED, "40MiB", 4096, 64.0 * 1024 * 1024 * 1024, nullptr,
     "Memory the queue may hold (its records' real memory, arena overhead included); above it the "
     "inputs feeding this output are paused, or with storage new blocks wait on disk",
     0},
    {"dead_letter_path", DM_OPT_PATH, DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE, nullptr, 0, 0,
     nullptr,
     "NDJSON file receiving records that can never be delivered, with the reason (relative to "
     "the config file); its directory is made at start (mode 0700); one file per output. Without "
     "it such records are lost (counted in "
     "devmesh_records_failed_total, and an ack: delivered request gets 500)",
     0},
};

const std::vector<dm_option> &engine_options(const std::string &section) {
  if (section == "inputs") return kInput;
  if (section == "filters") return kFilter;
  return kOutput;
}

}  // namespace devmesh
