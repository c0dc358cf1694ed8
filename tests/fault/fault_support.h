// Shared pieces of the fault tests: devmesh processes on pipeline files (restartable, killable),
// the mariadb output's YAML, event ids as the inputs compute them, /metrics scrapes, sizes
// that an environment variable can raise to the counts.
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
