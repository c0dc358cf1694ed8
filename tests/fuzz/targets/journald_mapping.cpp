// Fuzz target: the journald input's field mapping (plugins/inputs/journald/entry_mapping.*) over
// arbitrary field lists (binary, invalid UTF-8, no '=', repeated names). Each field's bytes die
// right after map_field, as sd-journal's do: a view the returned bits did not announce is then
// a use after free that ASan reports.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "entry_mapping.hpp"

namespace {

using devmesh::journald::ExtraField;
using devmesh::journald::MappedEntry;

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz journald_mapping: invariant broken: %s\n", what);
  std::abort();
}

// The `fields:` option: copies of known fields too (their views must be copied as well).
const std::vector<ExtraField> &extras() {
  static const std::vector<ExtraField> e{{"CODE_FILE=", "code_file"},
                                         {"_PID=", "pid_again"},
                                         {"MESSAGE=", "message_copy"},
                                         {"X=", "x"}};
  return e;
}

size_t touch(std::string_view s) {
  size_t sum = 0;
  for (char c : s) sum += static_cast<unsigned char>(c);
  return sum;
}

}  // namespace

// Input: fields, each a length (1 byte, or 2 bytes big-endian with the top bit set) then bytes.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 256 * 1024) return 0;
  std::vector<std::string_view> fields;
  size_t pos = 0;
  while (pos < size) {
    size_t len = data[pos++];
    if (len & 0x80) {
      if (pos >= size) break;
      len = ((len & 0x7f) << 8) | data[pos++];
    }
    len = std::min(len, size - pos);
    fields.emplace_back(reinterpret_cast<const char *>(data + pos), len);
    pos += len;
  }
  const std::vector<ExtraField> &ex = extras();

  // The whole entry at once, over bytes that stay alive.
  MappedEntry whole;
  devmesh::journald::map_entry(fields, ex, whole);

  // Field by field, each field's bytes freed after the call; what it announced is copied.
  MappedEntry inc;
  inc.clear();
  std::deque<std::string> keep;
  auto own = [&](std::string_view v) -> std::string_view { return keep.emplace_back(v); };
  for (std::string_view f : fields) {
    auto bytes = std::make_unique<char[]>(f.size() + 1);
    std::memcpy(bytes.get(), f.data(), f.size());
    const size_t meta_before = inc.meta.size();
    const uint32_t set =
        devmesh::journald::map_field(std::string_view(bytes.get(), f.size()), ex, inc);
    using namespace devmesh::journald;
    if (set & kSetMessage) inc.message = own(inc.message);
    if (set & kSetHost) inc.host = own(inc.host);
    if (set & kSetUnit) inc.unit = own(inc.unit);
    if (set & kSetIdentifier) inc.identifier = own(inc.identifier);
    if (set & kSetComm) inc.comm = own(inc.comm);
    if (set & kSetPid) inc.pid = own(inc.pid);
    for (size_t i = meta_before; i < inc.meta.size(); ++i)
      inc.meta[i].value = own(inc.meta[i].value);
    bytes.reset();
  }
  // Every view is read: one left pointing at freed bytes is caught here.
  size_t sum = touch(inc.message) + touch(inc.host) + touch(inc.unit) + touch(inc.identifier) +
               touch(inc.comm) + touch(inc.pid) + touch(devmesh::journald::service_of(inc));
  for (const auto &m : inc.meta) sum += touch(m.key) + touch(m.value);

  // Both ways agree.
  check(whole.message == inc.message && whole.host == inc.host && whole.unit == inc.unit &&
            whole.identifier == inc.identifier && whole.comm == inc.comm && whole.pid == inc.pid,
        "map_entry and map_field agree on the views");
  check(whole.has_message == inc.has_message && whole.kernel == inc.kernel &&
            whole.priority == inc.priority && whole.level == inc.level,
        "map_entry and map_field agree on the flags");
  check(whole.meta.size() == inc.meta.size(), "same meta count");
  for (size_t i = 0; i < whole.meta.size(); ++i)
    check(whole.meta[i].key == inc.meta[i].key && whole.meta[i].value == inc.meta[i].value,
          "same meta");
  check(whole.priority >= -1 && whole.priority <= 7, "priority in range");
  check(whole.priority == -1 ? whole.level == DM_LEVEL_UNSET
                             : whole.level >= DM_LEVEL_DEBUG && whole.level <= DM_LEVEL_FATAL,
        "level follows priority");
  check(!devmesh::journald::service_of(whole).empty() || whole.has_unit || whole.has_identifier ||
            whole.has_comm,
        "service is never empty unless a field said so");
  volatile size_t sink = sum;
  (void)sink;
  return 0;
}
