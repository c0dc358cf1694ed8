// Fuzz target: the syslog input's message parser (plugins/inputs/syslog/syslog_message.*) over
// arbitrary frames: every view it returns lies inside the frame (the bytes are a heap copy of
// exactly the input, so ASan sees a read past it), the PRI is in range, a failure keeps the
// whole frame as the message, and SD values unescape to no more bytes than they had.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "syslog_message.hpp"

namespace {

namespace syslog = devmesh::syslog;

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz syslog_message: invariant broken: %s\n", what);
  std::abort();
}

void inside(std::string_view v, const char *p, size_t n, const char *what) {
  if (v.empty()) return;
  check(v.data() >= p && v.data() + v.size() <= p + n, what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::unique_ptr<char[]> copy(new char[size == 0 ? 1 : size]);
  if (size) std::memcpy(copy.get(), data, size);
  const char *p = copy.get();
  std::string_view text(p, size);
  syslog::Message m;
  // A fixed "now" keeps a crash reproducible; the year rule's edges are in the unit tests.
  syslog::parse(text, 1764359740000000000LL, m);
  check(m.pri >= -1 && m.pri <= 191, "pri in -1..191");
  check(m.failure != syslog::Failure::pri || m.pri == -1, "no PRI, no pri");
  if (m.failure != syslog::Failure::none) check(m.message == text, "a failure keeps the frame");
  inside(m.hostname, p, size, "hostname inside");
  inside(m.app_name, p, size, "app_name inside");
  inside(m.procid, p, size, "procid inside");
  inside(m.msgid, p, size, "msgid inside");
  inside(m.message, p, size, "message inside");
  std::string scratch;
  for (const syslog::SdParam &sd : m.sd) {
    inside(sd.id, p, size, "sd id inside");
    inside(sd.name, p, size, "sd name inside");
    inside(sd.raw_value, p, size, "sd value inside");
    check(syslog::unescape(sd.raw_value, scratch).size() <= sd.raw_value.size(), "unescape grows");
  }
  return 0;
}
