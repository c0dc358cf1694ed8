// Fuzz target: the parser filter's formats (plugins/filters/parser/formats.hpp: json, logfmt,
// key=value, a named-group regex) and its time formats (time_format.hpp), and the multiline
// filter's rules (plugins/filters/multiline/rules.hpp), over arbitrary message bytes. The input's
// first byte picks the time format; the rest is the message. Every field a format returns must
// lie inside the message or the format's own buffers (ASan reports a view past them), and a
// parse that fails must leave nothing behind.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats.hpp"
#include "rules.hpp"
#include "time_format.hpp"

namespace {

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz parser_formats: invariant broken: %s\n", what);
  std::abort();
}

size_t touch(const devmesh::parser::Fields &fields) {
  size_t sum = 0;
  for (const auto &f : fields) {
    for (char c : f.key) sum += static_cast<unsigned char>(c);
    for (char c : f.value) sum += static_cast<unsigned char>(c);
  }
  return sum;
}

struct Formats {
  devmesh::parser::Json json;
  devmesh::parser::Logfmt logfmt;
  devmesh::parser::KeyValue kv{": ", "; "};
  devmesh::parser::KeyValue kv_default{"=", " "};
  devmesh::parser::Regex regex;
  std::vector<devmesh::parser::TimeFormat> times;
  std::vector<std::unique_ptr<devmesh::multiline::Rule>> rules;
  Formats() {
    std::string error;
    check(
        regex.compile(
            R"re(^(?<time>\S+ \S+) (?<level>[A-Z]+) (?:\[(?<thread>[^\]]*)\] )?(?<message>.*)$)re",
            error),
        "the regex compiles");
    for (const char *f : {"%Y-%m-%dT%H:%M:%S.%f%z", "%b %e %H:%M:%S", "%d/%b/%Y:%H:%M:%S %z",
                          "%s.%L", "%a, %d %B %Y %I:%M:%S %p %Z", "%y%m%d %H%M%S", "%j %Y %T"}) {
      times.emplace_back();
      check(times.back().compile(f, error), "a time format compiles");
    }
    for (auto k : {devmesh::multiline::RuleKind::java, devmesh::multiline::RuleKind::python,
                   devmesh::multiline::RuleKind::go})
      rules.push_back(devmesh::multiline::Rule::builtin(k));
  }
};

void known_answers(Formats &f) {
  devmesh::parser::Fields out;
  check(f.logfmt.parse(R"(a=1 b="x \"y\"" c=)", out) && out.size() == 3, "logfmt: three pairs");
  out.clear();
  check(!f.logfmt.parse("user logged in", out), "logfmt: prose is refused");
  out.clear();
  check(f.json.parse(R"({"a":{"b":[1,2]},"n":-1.5e3,"s":"\u00e9"})", out) && out.size() == 3,
        "json: three members");
  out.clear();
  check(!f.json.parse(R"({"a":1} x)", out), "json: trailing bytes are refused");
  int64_t ns = 0;
  check(f.times[0].parse("2025-11-28T21:55:40.5+02:00", 0, ns) && ns == 1764359740500000000,
        "time: offset and fraction");
  check(!f.times[0].parse("2025-02-29T00:00:00.1Z", 0, ns), "time: no Feb 29 in 2025");
  // No year: this year, or the year before for a time more than a day ahead of now.
  const int64_t new_year = 1767229200LL * 1000000000;  // 2026-01-01T01:00:00Z
  check(f.times[1].parse("Dec 31 23:00:00", new_year, ns) && ns == 1767222000LL * 1000000000,
        "time: December read in January is last year's");
  check(f.times[1].parse("Jan  5 08:00:01", 1780315200LL * 1000000000, ns) &&
            ns == 1767600001LL * 1000000000,
        "time: January read in June is this year's");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static Formats *formats = [] {
    auto *f = new Formats();
    known_answers(*f);
    return f;
  }();
  if (size == 0) return 0;
  const std::string_view msg(reinterpret_cast<const char *>(data) + 1, size - 1);
  devmesh::parser::Fields out;
  volatile size_t sink = 0;
  for (int which = 0; which < 5; ++which) {
    out.clear();
    bool ok = false;
    switch (which) {
      case 0:
        ok = formats->json.parse(msg, out);
        break;
      case 1:
        ok = formats->logfmt.parse(msg, out);
        break;
      case 2:
        ok = formats->kv.parse(msg, out);
        break;
      case 3:
        ok = formats->kv_default.parse(msg, out);
        break;
      default:
        ok = formats->regex.parse(msg, out);
        break;
    }
    if (ok) sink = sink + touch(out);
  }
  int64_t ns = 0;
  auto &tf = formats->times[data[0] % formats->times.size()];
  if (tf.parse(msg, 1764359740000000000, ns)) sink = sink + static_cast<size_t>(ns);
  if (devmesh::parser::parse_rfc3339_fast(msg, ns)) sink = sink + static_cast<size_t>(ns);
  uint8_t phase = static_cast<uint8_t>(data[0] % 3);
  for (const auto &r : formats->rules) sink = sink + r->starts(msg) + r->continues(msg, phase);
  return 0;
}
