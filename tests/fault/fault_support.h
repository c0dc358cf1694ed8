// Shared pieces of the fault tests: devmesh processes on pipeline files (restartable, killable),
// the mariadb output's YAML, records whose every field the test knows (dummy, journal fixture,
// http client) with their event ids, /metrics scrapes, sizes that an environment variable can
// raise to the counts.
#pragma once

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "conservation.h"
#include "mariadb.h"
#include "process.h"

namespace devmesh::test {

using namespace std::chrono_literals;

inline std::string listen_on(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// The start of a pipeline file: plugin folders, then extra service keys (two-space indented).
inline std::string service_head(const std::string &extra_service = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n" + extra_service + "pipeline:\n";
}

// One mariadb output list item (four-space indented) on the test server's unix socket, or on
// host:port when port is given (a proxy in between). `extra` is more "      key: value\n" lines.
inline std::string mariadb_output(const MariaDb &db, const std::string &dead_letter,
                                  const std::string &extra = "", int port = 0) {
  std::string where = port ? "      host: 127.0.0.1\n      port: " + std::to_string(port) + "\n"
                           : "      socket: " + db.socket() + "\n";
  return "    - name: mariadb\n" + where + "      password: " + MariaDb::kPassword +
         "\n"
         "      dead_letter_path: " +
         dead_letter + "\n" + extra;
}

// A devmesh process on a pipeline file that can be killed and started again with the same file.
class Engine {
 public:
  Engine(const TempDir &d, std::string name, const std::string &yaml)
      : dir_(d.path()), name_(std::move(name)), config_(d / (name_ + ".yaml")) {
    write_file(config_, yaml);
  }
  // Starts a new process; the previous one's output files are kept as NAME.<n>.stderr.
  void start() {
    const std::string run_name = name_ + "." + std::to_string(starts_++);
    proc_ = std::make_unique<Process>(std::vector<std::string>{DEVMESH_BIN, "-c", config_}, dir_,
                                      run_name);
  }
  void kill9() {
    if (!proc_) return;
    proc_->kill(SIGKILL);
    proc_->wait_exit(30s);
  }
  Process &proc() { return *proc_; }
  bool running() { return proc_ && proc_->wait_exit(0ms) < 0; }
  int starts() const { return starts_; }
  // The last run's stderr (the engine's log).
  std::string err() const { return proc_ ? proc_->err() : ""; }

 private:
  std::string dir_, name_, config_;
  int starts_ = 0;
  std::unique_ptr<Process> proc_;
};

// True once GET /health on port answers at all (the engine is listening).
inline bool wait_listening(int port, const std::string &dir, std::chrono::milliseconds deadline) {
  return wait_until(
      [&] { return http_get("http://" + listen_on(port) + "/health", nullptr, dir) != 0; },
      deadline);
}

inline std::string scrape_metrics(int port, const std::string &dir) {
  std::string body;
  http_get("http://" + listen_on(port) + "/metrics", &body, dir);
  return body;
}

// The dummy input's options (a flow-map tail) that fix every content field of record n:
// dummy_fields(n) is what the store must hold for it.
inline const std::string kDummyFields =
    ", host: fault-host, level: WARN, timestamp_start: '2026-01-01T00:00:00Z', "
    "timestamp_step: 1ms, meta: {origin: fault}";
constexpr int64_t kDummyEpochUsec = 1767225600000000;  // 2026-01-01T00:00:00Z

inline Fields dummy_fields(uint64_t n) {
  Fields f;
  f.timestamp = datetime6(kDummyEpochUsec + static_cast<int64_t>(n - 1) * 1000);
  f.source = "dummy";
  f.service = "dummy";
  f.host = "fault-host";
  f.level = "WARN";
  f.message = "dummy record " + std::to_string(n);
  f.meta_json = "{\"seq\":\"" + std::to_string(n) + "\",\"origin\":\"fault\"}";
  return f;
}

// Journal fixture entry n (tools/journal-fixture's defaults, with these --units and
// --priorities) as the journald input maps it.
inline Fields journal_fields(uint64_t n, const std::vector<std::string> &units,
                             const std::vector<int> &priorities) {
  static const char *const kLevelOfPriority[] = {"FATAL", "CRITICAL", "CRITICAL", "ERROR",
                                                 "WARN",  "INFO",     "INFO",     "DEBUG"};
  const int priority = priorities[n % priorities.size()];
  Fields f;
  f.timestamp = datetime6(1764359740000000 + static_cast<int64_t>(n) * 1000);
  f.source = "journald";
  f.service = units[n % units.size()];
  f.host = "fixture-host";
  f.level = kLevelOfPriority[priority];
  f.message = "entry " + std::to_string(n);
  f.meta_json = "{\"pid\":\"" + std::to_string(1000 + n % 7) +
                "\",\"comm\":\"fixture\",\"boot_id\":\"0123456789abcdef0123456789abcdef\","
                "\"facility\":\"3\",\"priority\":\"" +
                std::to_string(priority) + "\"}";
  return f;
}

// Record n as the fault tests' http clients post it: every field set and derived from n (a
// re-sent request carries the same records, so the same derived event ids). `extra` is more
// JSON members (",\"event_id\":...").
inline std::string http_record(uint64_t n, const std::string &service,
                               const std::string &extra = "") {
  static const char *const kLevels[] = {"DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "FATAL"};
  const int64_t usec = kDummyEpochUsec + 86400000000LL + static_cast<int64_t>(n) * 1000;
  const time_t secs = static_cast<time_t>(usec / 1000000);
  struct tm t;
  gmtime_r(&secs, &t);
  char stamp[64], ids[96];
  snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", t.tm_year + 1900,
           t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
           static_cast<int>(usec % 1000000 / 1000));
  snprintf(ids, sizeof ids, "\"trace_id\":\"%032llx\",\"span_id\":\"%016llx\"",
           static_cast<unsigned long long>(n), static_cast<unsigned long long>(n * 7));
  const std::string num = std::to_string(n);
  return "{\"timestamp\":\"" + std::string(stamp) +
         "\",\"source\":\"fault-client\",\"service\":\"" + service +
         "\",\"host\":\"client-host\",\"level\":\"" + kLevels[n % 6] + "\"," + ids +
         ",\"event_type\":\"fault_test\",\"error_code\":\"E" + std::to_string(n % 10) +
         "\",\"message\":\"fault " + num + "\",\"meta_json\":{\"seq\":\"" + num +
         "\",\"client\":\"fault\"}" + extra + "}";
}

// What the store must hold for http_record(n, service).
inline Fields http_record_fields(uint64_t n, const std::string &service) {
  static const char *const kLevels[] = {"DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "FATAL"};
  char trace[40], span[24];
  snprintf(trace, sizeof trace, "%032llx", static_cast<unsigned long long>(n));
  snprintf(span, sizeof span, "%016llx", static_cast<unsigned long long>(n * 7));
  Fields f;
  f.timestamp = datetime6(kDummyEpochUsec + 86400000000LL + static_cast<int64_t>(n) * 1000);
  f.source = "fault-client";
  f.service = service;
  f.host = "client-host";
  f.level = kLevels[n % 6];
  f.trace_id = trace;
  f.span_id = span;
  f.event_type = "fault_test";
  f.error_code = "E" + std::to_string(n % 10);
  f.message = "fault " + std::to_string(n);
  f.meta_json = "{\"seq\":\"" + std::to_string(n) + "\",\"client\":\"fault\"}";
  return f;
}

// A sample that must be in /metrics (a test failure when it is not, see metric_value), read
// from a fresh scrape.
inline double scrape_metric(int port, const std::string &dir, const std::string &name,
                            const std::string &labels = "") {
  return metric_value(scrape_metrics(port, dir), name, labels);
}

// A line of the engine's log that says `what` happened, counted (restarts, reconnects, ...).
inline int count_lines_with(const std::string &log, const std::string &what) {
  int n = 0;
  for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
  return n;
}

// XXH3-128 in canonical byte order, as host->hash128 computes it, in lower-case hex.
inline std::string xxh128_hex(const std::string &data) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data.data(), data.size()));
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (unsigned char b : c.digest) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

// The event_id the first dummy input (instance dummy.0) gives record `seq`.
inline std::string dummy_event_id(uint64_t seq) {
  return xxh128_hex("dummy.0:" + std::to_string(seq));
}

// A size from the environment (the full counts), else the CI default.
inline long env_size(const char *name, long ci_default) {
  const char *v = std::getenv(name);
  return v && *v ? std::atol(v) : ci_default;
}

// Seconds since `t`, for the figures a test prints.
inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace devmesh::test
