// Fuzz target: the journald input's field mapping (plugins/inputs/journald/entry_mapping.*) over
// arbitrary field lists (binary, invalid UTF-8, no '=', repeated names). Each field's bytes die
// right after map_field, as sd-journal's do: a view the returned bits did not announce is then
// a use after free that ASan reports. Before the first input, known answers: real journal field
// sets and the record each must make.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
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

const devmesh::journald::ExtraIndex &extras_index() {
  static const devmesh::journald::ExtraIndex index(extras());
  return index;
}

size_t touch(std::string_view s) {
  size_t sum = 0;
  for (char c : s) sum += static_cast<unsigned char>(c);
  return sum;
}

// ---- known answers ------------------------------------------------------------------------------
// Real journal field sets and the record each must make, written out by hand from the seed's
// contract (not from the code): the differential check above cannot see a mapping that is wrong
// the same way both times.

struct Known {
  const char *name;
  std::vector<std::string> fields;
  std::string message, host, service;
  int priority;
  uint8_t level;
  std::vector<std::pair<std::string, std::string>> meta;  // in field order
  bool with_extras = false;                               // the `fields:` option above
};

std::vector<Known> known_answers() {
  using namespace std::string_literals;
  std::vector<Known> k;
  // A sshd line as `journalctl -o export` shows it (fields in the journal's order).
  k.push_back({"sshd over syslog",
               {"_BOOT_ID=3f1c0e5d", "_TRANSPORT=syslog", "PRIORITY=6", "SYSLOG_FACILITY=4",
                "SYSLOG_IDENTIFIER=sshd", "_PID=812", "_COMM=sshd", "_SYSTEMD_UNIT=ssh.service",
                "_HOSTNAME=node-1", "MESSAGE=Accepted publickey for ops from 10.0.0.5"},
               "Accepted publickey for ops from 10.0.0.5",
               "node-1",
               "ssh.service",
               6,
               DM_LEVEL_INFO,
               {{"boot_id", "3f1c0e5d"},
                {"priority", "6"},
                {"facility", "4"},
                {"pid", "812"},
                {"comm", "sshd"}}});
  // No unit: SYSLOG_IDENTIFIER names the service; PRIORITY 3 is ERROR.
  k.push_back({"identifier without unit",
               {"PRIORITY=3", "SYSLOG_IDENTIFIER=cron", "_COMM=cron-helper", "MESSAGE=job failed",
                "_HOSTNAME=h2"},
               "job failed",
               "h2",
               "cron",
               3,
               DM_LEVEL_ERROR,
               {{"priority", "3"}, {"comm", "cron-helper"}}});
  // Neither unit nor identifier: _COMM; no hostname leaves host empty.
  k.push_back({"comm only",
               {"_COMM=worker", "MESSAGE=tick"},
               "tick",
               "",
               "worker",
               -1,
               DM_LEVEL_UNSET,
               {{"comm", "worker"}}});
  k.push_back({"nothing names the service",
               {"MESSAGE=orphan"},
               "orphan",
               "",
               "unknown",
               -1,
               DM_LEVEL_UNSET,
               {}});
  // The kernel transport is the service "kernel", whatever else the entry says.
  k.push_back({"kernel",
               {"_TRANSPORT=kernel", "PRIORITY=4", "SYSLOG_IDENTIFIER=kernel-ident",
                "_SYSTEMD_UNIT=x.service", "MESSAGE=usb 1-1: new device", "_HOSTNAME=h3"},
               "usb 1-1: new device",
               "h3",
               "kernel",
               4,
               DM_LEVEL_WARN,
               {{"priority", "4"}}});
  // MESSAGE with binary data (journald stores it as a blob): every byte kept, NUL included.
  k.push_back({"binary message",
               {"MESSAGE=a\0b\xff\xfe\x01z"s, "_SYSTEMD_UNIT=bin.service"},
               "a\0b\xff\xfe\x01z"s,
               "",
               "bin.service",
               -1,
               DM_LEVEL_UNSET,
               {}});
  // Repeated fields: the first MESSAGE, host and unit win; every _PID is kept in meta.
  k.push_back({"repeats",
               {"MESSAGE=first", "MESSAGE=second", "_HOSTNAME=a", "_HOSTNAME=b", "_PID=1", "_PID=2",
                "_SYSTEMD_UNIT=u1", "_SYSTEMD_UNIT=u2"},
               "first",
               "a",
               "u1",
               -1,
               DM_LEVEL_UNSET,
               {{"pid", "1"}, {"pid", "2"}}});
  // A PRIORITY outside 0..7 sets no level but is kept as it came.
  k.push_back({"bad priority",
               {"PRIORITY=8", "MESSAGE=m"},
               "m",
               "",
               "unknown",
               -1,
               DM_LEVEL_UNSET,
               {{"priority", "8"}}});
  k.push_back({"two-digit priority",
               {"PRIORITY=10", "MESSAGE=m"},
               "m",
               "",
               "unknown",
               -1,
               DM_LEVEL_UNSET,
               {{"priority", "10"}}});
  // Fields named in `fields:` are copied to meta, known ones included; no '=' or empty: ignored.
  k.push_back({"extras",
               {"CODE_FILE=src/main.c", "X=1", "XY=2", "MESSAGE=m", "NOEQUALS", "", "_PID=7"},
               "m",
               "",
               "unknown",
               -1,
               DM_LEVEL_UNSET,
               {{"code_file", "src/main.c"},
                {"x", "1"},
                {"message_copy", "m"},
                {"pid", "7"},
                {"pid_again", "7"}},
               true});
  // The seed's priority map, every value.
  const uint8_t levels[8] = {DM_LEVEL_FATAL, DM_LEVEL_CRITICAL, DM_LEVEL_CRITICAL, DM_LEVEL_ERROR,
                             DM_LEVEL_WARN,  DM_LEVEL_INFO,     DM_LEVEL_INFO,     DM_LEVEL_DEBUG};
  for (int p = 0; p < 8; ++p)
    k.push_back({"priority map",
                 {"PRIORITY=" + std::to_string(p)},
                 "",
                 "",
                 "unknown",
                 p,
                 levels[p],
                 {{"priority", std::to_string(p)}}});
  return k;
}

void check_known_answers() {
  for (const Known &k : known_answers()) {
    std::vector<std::string_view> views(k.fields.begin(), k.fields.end());
    MappedEntry e;
    // Meta keys are views into the extras: they must outlive e.
    std::span<const ExtraField> ex;
    if (k.with_extras) ex = extras();
    devmesh::journald::map_entry(views, ex, e);
    std::vector<std::pair<std::string, std::string>> meta;
    for (const auto &m : e.meta) meta.emplace_back(std::string(m.key), std::string(m.value));
    const bool ok = e.message == k.message && e.host == k.host &&
                    devmesh::journald::service_of(e) == k.service && e.priority == k.priority &&
                    e.level == k.level && meta == k.meta;
    if (!ok) {
      std::fprintf(stderr,
                   "fuzz journald_mapping: known answer \"%s\" wrong: message %zu bytes, host "
                   "\"%.*s\", service \"%.*s\", priority %d, level %u, %zu meta\n",
                   k.name, e.message.size(), static_cast<int>(e.host.size()), e.host.data(),
                   static_cast<int>(devmesh::journald::service_of(e).size()),
                   devmesh::journald::service_of(e).data(), e.priority, e.level, meta.size());
      for (const auto &[key, value] : meta)
        std::fprintf(stderr, "  meta %s = %zu bytes\n", key.c_str(), value.size());
      std::abort();
    }
  }
}

}  // namespace

// Input: fields, each a length (1 byte, or 2 bytes big-endian with the top bit set) then bytes.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const bool known_ok = (check_known_answers(), true);
  (void)known_ok;
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
  // The input's lookup of `fields:` by name (ExtraIndex) sets the same meta as the list's:
  // each key's last value, as meta_set leaves it (a known field's copy under its own key is
  // skipped there, not added twice).
  {
    const devmesh::journald::ExtraIndex &index = extras_index();
    MappedEntry by_name;
    by_name.clear();
    for (std::string_view f : fields) devmesh::journald::map_field(f, index, by_name);
    auto last_values = [](const MappedEntry &e) {
      std::map<std::string_view, std::string_view> m;
      for (const auto &kv : e.meta) m[kv.key] = kv.value;
      return m;
    };
    check(last_values(by_name) == last_values(whole), "ExtraIndex sets the same meta");
    check(by_name.message == whole.message && by_name.pid == whole.pid,
          "ExtraIndex maps the same views");
  }
  // The reader thread copies only the fields mapped() names: the entry made of those alone is
  // the entry made of all of them (default fields and with `fields:`), and a field it leaves
  // out takes nothing.
  for (const devmesh::journald::ExtraIndex *index :
       {static_cast<const devmesh::journald::ExtraIndex *>(nullptr), &extras_index()}) {
    static const devmesh::journald::ExtraIndex none;
    const devmesh::journald::ExtraIndex &ix = index ? *index : none;
    MappedEntry all, taken;
    all.clear();
    taken.clear();
    for (std::string_view f : fields) {
      const size_t meta_before = all.meta.size();
      const uint32_t set = devmesh::journald::map_field(f, ix, all);
      const bool skipped = !devmesh::journald::mapped(f, ix);
      check(!skipped || (set == 0 && all.meta.size() == meta_before),
            "a field mapped() leaves out takes nothing");
      if (!skipped) devmesh::journald::map_field(f, ix, taken);
    }
    check(all.message == taken.message && all.host == taken.host && all.unit == taken.unit &&
              all.identifier == taken.identifier && all.comm == taken.comm &&
              all.pid == taken.pid && all.has_message == taken.has_message &&
              all.kernel == taken.kernel && all.priority == taken.priority &&
              all.level == taken.level && all.meta.size() == taken.meta.size(),
          "the fields mapped() names make the same entry");
    for (size_t i = 0; i < all.meta.size(); ++i)
      check(all.meta[i].key == taken.meta[i].key && all.meta[i].value == taken.meta[i].value,
            "the fields mapped() names make the same meta");
  }
  volatile size_t sink = sum;
  (void)sink;
  return 0;
}
