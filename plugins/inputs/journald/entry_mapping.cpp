// The mapping of one journal entry's fields to a record's fields (see entry_mapping.hpp); the
// journald input runs it for every field it reads, the fuzzer for arbitrary bytes.
#include "entry_mapping.hpp"

#include <algorithm>
#include <cstring>

namespace devmesh::journald {
namespace {

// The seed's priority map, so a pipeline without priority_map still gets the prototype's
// levels; priority_map (which reads record.priority) is the authority and overrides this.
constexpr uint8_t kLevelOfPriority[8] = {DM_LEVEL_FATAL, DM_LEVEL_CRITICAL, DM_LEVEL_CRITICAL,
                                         DM_LEVEL_ERROR, DM_LEVEL_WARN,     DM_LEVEL_INFO,
                                         DM_LEVEL_INFO,  DM_LEVEL_DEBUG};

// True when field is "NAME=value" for name_eq "NAME="; value is then set. The names are
// literals: a comparison of known length compiles to a few loads, not a call to memcmp.
template <size_t N>
inline bool is(std::string_view field, const char (&name_eq)[N], std::string_view &value) {
  constexpr size_t n = N - 1;
  if (field.size() < n || std::memcmp(field.data(), name_eq, n) != 0) return false;
  value = field.substr(n);
  return true;
}

inline bool is_extra(std::string_view field, std::string_view name_eq, std::string_view &value) {
  if (field.size() < name_eq.size() || std::memcmp(field.data(), name_eq.data(), name_eq.size()))
    return false;
  value = field.substr(name_eq.size());
  return true;
}

void add_meta(MappedEntry &out, std::string_view key, std::string_view value) {
  out.meta.push_back(MetaField{key, value});
}

// The fields mapped to record fields and meta, whatever `fields:` says.
uint32_t map_known(std::string_view f, MappedEntry &out);

}  // namespace

ExtraIndex::ExtraIndex(std::span<const ExtraField> extras) : extras_(extras) {
  if (extras.empty()) return;
  size_t n = 4;
  while (n < 2 * extras.size()) n <<= 1;  // load at most 1/2
  slots_.assign(n, 0);
  next_.assign(extras.size(), kNone);
  std::vector<uint32_t> last(extras.size(), kNone);  // per first extra of a name: its last one
  for (uint32_t e = 0; e < extras.size(); ++e) {
    const std::string_view name_eq = extras[e].name_eq;
    max_name_eq_ = std::max(max_name_eq_, name_eq.size());
    for (size_t i = hash(name_eq) & (n - 1);; i = (i + 1) & (n - 1)) {
      if (slots_[i] == 0) {
        slots_[i] = e + 1;
        last[e] = e;
        break;
      }
      const uint32_t first = slots_[i] - 1;
      if (extras[first].name_eq == name_eq) {
        next_[last[first]] = e;
        last[first] = e;
        break;
      }
    }
  }
}

void MappedEntry::clear() {
  message = host = unit = identifier = comm = pid = {};
  has_message = has_host = has_unit = has_identifier = has_comm = kernel = false;
  priority = -1;
  level = DM_LEVEL_UNSET;
  meta.clear();
}

namespace {

// The fields the mapping reads, whatever `fields:` says.
enum class Known : uint8_t {
  kNone,
  kPid,
  kComm,
  kBootId,
  kHostname,
  kTransport,
  kUnit,
  kMessage,
  kPriority,
  kFacility,
  kIdentifier
};

// Which known field f is, with its value. The one list of the names: map_known maps them and
// mapped() tells the reader thread which fields to copy out of sd-journal.
inline Known known_field(std::string_view f, std::string_view &v) {
  if (f.empty()) return Known::kNone;
  // The first byte sorts out almost every field without a comparison of its name.
  switch (f[0]) {
    case '_':
      if (is(f, "_PID=", v)) return Known::kPid;
      if (is(f, "_COMM=", v)) return Known::kComm;
      if (is(f, "_BOOT_ID=", v)) return Known::kBootId;
      if (is(f, "_HOSTNAME=", v)) return Known::kHostname;
      if (is(f, "_TRANSPORT=", v)) return Known::kTransport;
      if (is(f, "_SYSTEMD_UNIT=", v)) return Known::kUnit;
      return Known::kNone;
    case 'M':
      return is(f, "MESSAGE=", v) ? Known::kMessage : Known::kNone;
    case 'P':
      return is(f, "PRIORITY=", v) ? Known::kPriority : Known::kNone;
    case 'S':
      if (is(f, "SYSLOG_FACILITY=", v)) return Known::kFacility;
      if (is(f, "SYSLOG_IDENTIFIER=", v)) return Known::kIdentifier;
      return Known::kNone;
    default:
      return Known::kNone;
  }
}

// The first occurrence of a field names the record's view of it: later ones are ignored.
inline uint32_t take_first(std::string_view &view, bool &has, std::string_view v, uint32_t bit) {
  if (has) return 0;
  view = v;
  has = true;
  return bit;
}

// flatten: the per-field path (name tests, meta appends) inlined into one function; it runs
// for every field of every entry.
__attribute__((flatten)) uint32_t map_known(std::string_view f, MappedEntry &out) {
  std::string_view v;
  uint32_t set = 0;
  switch (known_field(f, v)) {
    case Known::kNone:
      break;
    case Known::kPid:
      add_meta(out, "pid", v);
      out.pid = v;
      set |= kSetPid;
      break;
    case Known::kComm:
      add_meta(out, "comm", v);
      set |= take_first(out.comm, out.has_comm, v, kSetComm);
      break;
    case Known::kBootId:
      add_meta(out, "boot_id", v);
      break;
    case Known::kHostname:
      set |= take_first(out.host, out.has_host, v, kSetHost);
      break;
    case Known::kTransport:
      out.kernel = v == "kernel";
      break;
    case Known::kUnit:
      set |= take_first(out.unit, out.has_unit, v, kSetUnit);
      break;
    case Known::kMessage:
      set |= take_first(out.message, out.has_message, v, kSetMessage);
      break;
    case Known::kPriority:
      add_meta(out, "priority", v);
      if (v.size() == 1 && v[0] >= '0' && v[0] <= '7') {
        out.priority = static_cast<int8_t>(v[0] - '0');
        out.level = kLevelOfPriority[v[0] - '0'];
      }
      break;
    case Known::kFacility:
      add_meta(out, "facility", v);
      break;
    case Known::kIdentifier:
      set |= take_first(out.identifier, out.has_identifier, v, kSetIdentifier);
      break;
  }
  return set;
}

}  // namespace

uint32_t map_field(std::string_view f, std::span<const ExtraField> extras, MappedEntry &out) {
  const uint32_t set = map_known(f, out);
  std::string_view v;
  for (const ExtraField &e : extras)
    if (is_extra(f, e.name_eq, v)) add_meta(out, e.key, v);
  return set;
}

uint32_t map_field(std::string_view f, const ExtraIndex &extras, MappedEntry &out) {
  const size_t before = out.meta.size();
  const uint32_t set = map_known(f, out);
  // A field the mapping put in meta already under the key `fields:` gives it (_PID as pid):
  // a copy would only set it again.
  const std::string_view known = out.meta.size() > before ? out.meta.back().key : "";
  extras.each_match(f, [&](const ExtraField &e) {
    if (e.key != known) add_meta(out, e.key, f.substr(e.name_eq.size()));
  });
  return set;
}

bool mapped(std::string_view f, const ExtraIndex &extras) {
  std::string_view v;
  return known_field(f, v) != Known::kNone || extras.matches(f);
}

std::string_view service_of(const MappedEntry &e) {
  return e.kernel           ? std::string_view("kernel")
         : e.has_unit       ? e.unit
         : e.has_identifier ? e.identifier
         : e.has_comm       ? e.comm
                            : std::string_view("unknown");
}

void map_entry(std::span<const std::string_view> fields, std::span<const ExtraField> extras,
               MappedEntry &out) {
  out.clear();
  for (std::string_view f : fields) map_field(f, extras, out);
}

}  // namespace devmesh::journald
