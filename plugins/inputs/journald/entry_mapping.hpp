// The mapping of one journal entry's fields ("NAME=value" byte strings) to a record's fields:
// pure (no sd-journal, no engine), so that it can be unit-tested and fuzzed on its own.
#pragma once

#include <devmesh/plugin.h>

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::journald {

// A `fields:` option item: the journal field ("NAME=") and the meta key it is copied to.
struct ExtraField {
  std::string name_eq, key;
};

// `fields:` found by name: one hash probe per field of an entry, where a comparison with every
// listed field cost 23 x 23 per entry with all fields listed. The fields it is made from must
// outlive it (a Settings' extras).
class ExtraIndex {
 public:
  ExtraIndex() = default;
  explicit ExtraIndex(std::span<const ExtraField> extras);

  // Whether an extra is named as field f.
  bool matches(std::string_view f) const {
    bool any = false;
    each_match(f, [&](const ExtraField &) { any = true; });
    return any;
  }

  // Calls found(extra) for each extra named as field f ("NAME=value"), in the list's order.
  template <class Found>
  void each_match(std::string_view f, Found &&found) const {
    if (slots_.empty()) return;
    const void *eq = std::memchr(f.data(), '=', f.size() < max_name_eq_ ? f.size() : max_name_eq_);
    if (!eq) return;
    const std::string_view name_eq = f.substr(0, static_cast<const char *>(eq) - f.data() + 1);
    for (size_t i = hash(name_eq) & (slots_.size() - 1);; i = (i + 1) & (slots_.size() - 1)) {
      const uint32_t slot = slots_[i];
      if (slot == 0) return;
      if (extras_[slot - 1].name_eq != name_eq) continue;
      for (uint32_t e = slot - 1; e != kNone; e = next_[e]) found(extras_[e]);
      return;
    }
  }

 private:
  static constexpr uint32_t kNone = UINT32_MAX;
  // Of "NAME=": its length and three of its characters. Names alike in those only probe on.
  static size_t hash(std::string_view s) {
    const size_t n = s.size();
    const uint64_t h = (uint64_t(n) << 24) ^ (uint64_t(uint8_t(s[0])) << 16) ^
                       (uint64_t(uint8_t(s[n / 2])) << 8) ^ uint8_t(s[n > 1 ? n - 2 : 0]);
    return static_cast<size_t>((h * 0x9E3779B97F4A7C15u) >> 40);
  }
  std::span<const ExtraField> extras_;
  std::vector<uint32_t> slots_;  // 0 empty, else 1 + the first extra of a name
  std::vector<uint32_t> next_;   // the next extra of the same name, or kNone
  size_t max_name_eq_ = 0;
};

struct MetaField {
  std::string_view key, value;  // key: a static string or an ExtraField's key
};

// What an entry's fields make of a record. Every view points into the field it came from
// (see map_field for callers whose field bytes do not outlive the next field).
struct MappedEntry {
  std::string_view message;     // the first MESSAGE (any bytes: binary, invalid UTF-8)
  std::string_view host;        // the first _HOSTNAME
  std::string_view unit;        // the first _SYSTEMD_UNIT
  std::string_view identifier;  // the first SYSLOG_IDENTIFIER
  std::string_view comm;        // the first _COMM
  std::string_view pid;         // the last _PID (also in meta)
  bool has_message = false, has_host = false, has_unit = false, has_identifier = false,
       has_comm = false;
  bool kernel = false;             // _TRANSPORT=kernel (the last _TRANSPORT decides)
  int8_t priority = -1;            // PRIORITY 0..7, else -1
  uint8_t level = DM_LEVEL_UNSET;  // the seed's level of priority; priority_map overrides it
  std::vector<MetaField> meta;     // pid, comm, boot_id, priority, facility, extras; field order

  // Ready for the next entry; keeps meta's capacity (no allocation per entry).
  void clear();
};

// Bits returned by map_field: which views of MappedEntry this field set.
enum : uint32_t {
  kSetMessage = 1u << 0,
  kSetHost = 1u << 1,
  kSetUnit = 1u << 2,
  kSetIdentifier = 1u << 3,
  kSetComm = 1u << 4,
  kSetPid = 1u << 5,
};

// Applies one "NAME=value" field (any bytes; a field without '=' or empty is ignored) to out.
// Returns the kSet* bits of the views set from it; meta entries it added are the ones past
// out.meta's size before the call. A caller whose field bytes die with the next field (sd-journal)
// copies exactly those right away and points the views at its copies.
uint32_t map_field(std::string_view field, std::span<const ExtraField> extras, MappedEntry &out);
// The same with `fields:` looked up by name (what the input runs).
uint32_t map_field(std::string_view field, const ExtraIndex &extras, MappedEntry &out);

// Whether map_field takes anything from field f (a record field, meta, or a `fields:` item). A
// field it does not take need not be copied out of sd-journal at all: journald's reader thread
// skips it (on a service's entry of about 25 fields, the default mapping takes 10).
bool mapped(std::string_view f, const ExtraIndex &extras);

// The record's service: "kernel" for the kernel transport, else _SYSTEMD_UNIT, else
// SYSLOG_IDENTIFIER, else _COMM, else "unknown".
std::string_view service_of(const MappedEntry &e);

// A whole entry at once: out cleared, then every field applied in order.
void map_entry(std::span<const std::string_view> fields, std::span<const ExtraField> extras,
               MappedEntry &out);

}  // namespace devmesh::journald
