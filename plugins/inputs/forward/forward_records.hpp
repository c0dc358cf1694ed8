// The forward input's mapping of one forward-protocol event (a time and a record map, as msgpack
// objects) onto a devmesh record: the time with its nanoseconds, the map's named fields into the
// columns (record_columns.hpp), everything else into typed meta, and the derived event id that
// makes a client's re-send of the same event harmless at the store.
#pragma once

#include <devmesh/plugin.h>
#include <msgpack.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <record_columns.hpp>

namespace devmesh::forward {

// Why an event was rejected (metric label and log text).
enum class Reject : uint8_t { kNone, kBadTime, kNotAMap, kBadEntry };
const char *reject_label(Reject r);

// The time of an event: EventTime (ext type 0: seconds and nanoseconds, big-endian 32 bits
// each), an integer or a float of seconds. False when it is none of these or out of range.
bool event_time_ns(const msgpack_object &o, int64_t &ns);

// Where the connection's events come from, for the fields a record does not carry.
struct Origin {
  std::string_view tag;   // the forward tag: the service when the record names none
  std::string_view host;  // the client's self_hostname (shared key), else its address
};

struct Limits {
  uint32_t max_meta_keys = 1024;
  std::string_view service_key;  // when set, the record key whose value is the service
};

class RecordBuilder {
 public:
  RecordBuilder(const dm_host_api *host, const Limits &limits) : host_(host), limits_(limits) {}

  // Adds a record for one event to batch. kNone, or why nothing was added. Throws
  // std::runtime_error when a host call fails.
  Reject add(dm_batch *batch, const msgpack_object &time, const msgpack_object &record,
             const Origin &origin);
  // An entry of Forward or PackedForward mode: [time, record] or Fluent Bit's
  // [[time, metadata], record] (the metadata map goes into meta).
  Reject add_entry(dm_batch *batch, const msgpack_object &entry, const Origin &origin);

  // Records with a field cut to its column since construction.
  uint64_t truncated() const { return truncated_; }

 private:
  void set_meta(dm_batch *b, dm_record *r, std::string_view key, const msgpack_object &v);
  Column column_of(std::string_view key);

  const dm_host_api *host_;
  Limits limits_;
  uint64_t truncated_ = 0;
  std::string text_, key_text_, id_scratch_;
  struct KnownKey {
    std::string name;
    Column column;
  };
  static constexpr size_t kKnownKeys = 32;
  std::vector<KnownKey> known_;
};

// A msgpack value as JSON text appended to out (maps with non-string keys get their keys' text,
// bin and ext as strings, NaN and infinities as null).
void append_json(std::string &out, const msgpack_object &o);

}  // namespace devmesh::forward
