// bench_engine: runs the real devmesh binary on generated pipelines (dummy -> null, dummy ->
// example filter -> null) and prints records/s, peak and idle RSS, and the ratio to a raw
// ceiling measured in this process: formatting the same records with no pipeline at all.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#ifndef DEVMESH_BENCH_BINARY
#define DEVMESH_BENCH_BINARY ""
#endif
#ifndef DEVMESH_BENCH_PLUGIN_DIR
#define DEVMESH_BENCH_PLUGIN_DIR ""
#endif

namespace devmesh {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string devmesh, plugins_dir, example_filter;
  uint64_t count = 5000000;
  uint32_t batch = 1024;
  int runs = 3;
  int timeout_s = 600;
  bool keep = false;
};

void usage(const char *argv0) {
  std::printf(
      "usage: %s [--devmesh PATH] [--plugins DIR] [--example-filter PATH.so]\n"
      "          [--count N] [--batch N] [--runs N] [--timeout SECONDS] [--keep]\n"
      "Runs the devmesh binary on generated pipelines and prints records/s and RSS.\n"
      "defaults: --devmesh %s\n          --plugins %s\n",
      argv0, DEVMESH_BENCH_BINARY, DEVMESH_BENCH_PLUGIN_DIR);
}

bool is_executable(const std::string &p) {
  return !p.empty() && access(p.c_str(), X_OK) == 0;
}

// The build tree's binary, else ../../../devmesh beside this program (build/tools/bench/engine).
std::string default_devmesh() {
  if (is_executable(DEVMESH_BENCH_BINARY)) return DEVMESH_BENCH_BINARY;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const char *rel : {"../../../devmesh", "../../devmesh"}) {
      const fs::path p = (self.parent_path() / rel).lexically_normal();
      if (is_executable(p.string())) return p.string();
    }
  }
  return DEVMESH_BENCH_BINARY;
}

std::optional<Options> parse_args(int argc, char **argv) {
  Options o;
  o.devmesh = default_devmesh();
  o.plugins_dir = DEVMESH_BENCH_PLUGIN_DIR;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        return std::nullopt;
      }
      return std::string(argv[++i]);
    };
    auto number = [&](int64_t lo, int64_t hi) -> std::optional<int64_t> {
      auto v = value();
      if (!v) return std::nullopt;
      char *end = nullptr;
      const long long n = std::strtoll(v->c_str(), &end, 10);
      if (end == v->c_str() || *end || n < lo || n > hi) {
        std::fprintf(stderr, "%s: '%s' is not a number in %lld..%lld\n", a.c_str(), v->c_str(),
                     static_cast<long long>(lo), static_cast<long long>(hi));
        return std::nullopt;
      }
      return n;
    };
    std::optional<std::string> s;
    std::optional<int64_t> n;
    if (a == "-h" || a == "--help") {
      usage(argv[0]);
      std::exit(0);
    } else if (a == "--devmesh") {
      if (!(s = value())) return std::nullopt;
      o.devmesh = *s;
    } else if (a == "--plugins") {
      if (!(s = value())) return std::nullopt;
      o.plugins_dir = *s;
    } else if (a == "--example-filter") {
      if (!(s = value())) return std::nullopt;
      o.example_filter = *s;
    } else if (a == "--count") {
      if (!(n = number(1, int64_t(1) << 40))) return std::nullopt;
      o.count = static_cast<uint64_t>(*n);
    } else if (a == "--batch") {
      if (!(n = number(1, 100000))) return std::nullopt;
      o.batch = static_cast<uint32_t>(*n);
    } else if (a == "--runs") {
      if (!(n = number(1, 100))) return std::nullopt;
      o.runs = static_cast<int>(*n);
    } else if (a == "--timeout") {
      if (!(n = number(1, 86400))) return std::nullopt;
      o.timeout_s = static_cast<int>(*n);
    } else if (a == "--keep") {
      o.keep = true;
    } else {
      std::fprintf(stderr, "unknown argument '%s'\n", a.c_str());
      usage(argv[0]);
      return std::nullopt;
    }
  }
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string rate_text(double r) {
  char buf[32];
  if (r >= 1e6)
    std::snprintf(buf, sizeof buf, "%.2fM", r / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1fk", r / 1e3);
  return buf;
}

std::string read_file(const std::string &path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail_lines(const std::string &text, size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::string out;
  for (size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i)
    out += lines[i] + "\n";
  return out;
}

// Single-quoted YAML scalar: safe for any path.
std::string yq(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// ---- the raw ceiling: what dummy does per record, without a pipeline --------------------------

struct RawRecord {
  int64_t timestamp_ns;
  uint8_t event_id[16];
  uint8_t level;
  const char *service, *host, *source, *message;
  size_t service_len, host_len, source_len, message_len;
  const char *seq;
  size_t seq_len;
};

int64_t realtime_ns() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Formats `count` records in batches of `batch` into one reused array and arena; returns
// records/s. A checksum over every batch keeps the compiler from skipping the work.
double measure_ceiling(uint64_t count, uint32_t batch) {
  std::vector<RawRecord> recs(batch);
  std::vector<char> arena(size_t(batch) * 64);
  static const char kService[] = "dummy", kHost[] = "bench", kSource[] = "dummy";
  static const char kIdPrefix[] = "dummy.0:";
  volatile uint64_t sink = 0;
  const auto t0 = Clock::now();
  uint64_t seq = 1;
  for (uint64_t done = 0; done < count;) {
    const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(batch, count - done));
    const int64_t ts = realtime_ns();
    size_t off = 0;
    uint64_t sum = 0;
    for (uint32_t i = 0; i < n; ++i, ++seq) {
      RawRecord &r = recs[i];
      char *msg = arena.data() + off;
      const int len = std::snprintf(msg, 40, "dummy record %llu", (unsigned long long)seq);
      char *digits = msg + len + 1;
      const int dlen = std::snprintf(digits, 22, "%llu", (unsigned long long)seq);
      char id_key[64];
      std::memcpy(id_key, kIdPrefix, sizeof kIdPrefix - 1);
      std::memcpy(id_key + sizeof kIdPrefix - 1, digits, size_t(dlen));
      const XXH128_hash_t h = XXH3_128bits(id_key, sizeof kIdPrefix - 1 + size_t(dlen));
      std::memcpy(r.event_id, &h, sizeof r.event_id);
      r.timestamp_ns = ts;
      r.level = 2;
      r.service = kService, r.service_len = sizeof kService - 1;
      r.host = kHost, r.host_len = sizeof kHost - 1;
      r.source = kSource, r.source_len = sizeof kSource - 1;
      r.message = msg, r.message_len = size_t(len);
      r.seq = digits, r.seq_len = size_t(dlen);
      off += (size_t(len) + size_t(dlen) + 2 + 7) & ~size_t(7);
      sum += h.low64 ^ r.message_len;
    }
    sink = sink + sum + recs[n - 1].message[0];
    done += n;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  (void)sink;
  return double(count) / secs;
}

// ---- running the engine ------------------------------------------------------------------------

struct Child {
  pid_t pid = -1;
  Clock::time_point started;
};

// Starts `devmesh -c config` with stdout and stderr into log.
std::optional<Child> spawn(const Options &o, const std::string &config, const std::string &log) {
  Child c;
  c.started = Clock::now();
  c.pid = fork();
  if (c.pid < 0) {
    std::fprintf(stderr, "fork: %s\n", strerror(errno));
    return std::nullopt;
  }
  if (c.pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
    }
    const int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execl(o.devmesh.c_str(), "devmesh", "-c", config.c_str(), static_cast<char *>(nullptr));
    std::fprintf(stderr, "exec %s: %s\n", o.devmesh.c_str(), strerror(errno));
    _exit(127);
  }
  return c;
}

struct Exit {
  bool exited = false;  // false: timed out (and killed)
  int status = 0;
  double wall_s = 0;
  long maxrss_kib = 0;
};

// Waits for the child up to timeout_s; past it the child is killed (by its pid) and reaped.
Exit wait_child(const Child &c, int timeout_s) {
  Exit e;
  rusage ru{};
  const auto deadline = c.started + std::chrono::seconds(timeout_s);
  for (;;) {
    const pid_t r = wait4(c.pid, &e.status, WNOHANG, &ru);
    if (r == c.pid) {
      e.exited = true;
      break;
    }
    if (r < 0 && errno != EINTR) break;
    if (Clock::now() > deadline) {
      kill(c.pid, SIGKILL);
      while (wait4(c.pid, &e.status, 0, &ru) < 0 && errno == EINTR) {
      }
      break;
    }
    // 1 ms polling costs well under 0.1% of a run of a second or more.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  e.wall_s = std::chrono::duration<double>(Clock::now() - c.started).count();
  e.maxrss_kib = ru.ru_maxrss;
  return e;
}

std::string describe_status(const Exit &e) {
  char buf[64];
  if (!e.exited)
    std::snprintf(buf, sizeof buf, "timed out, killed");
  else if (WIFEXITED(e.status))
    std::snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(e.status));
  else if (WIFSIGNALED(e.status))
    std::snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(e.status));
  else
    std::snprintf(buf, sizeof buf, "status %d", e.status);
  return buf;
}

bool succeeded(const Exit &e) {
  return e.exited && WIFEXITED(e.status) && WEXITSTATUS(e.status) == 0;
}

// The null output logs "discarded N records" when destroyed; the bench checks N when present.
std::optional<uint64_t> discarded_records(const std::string &log) {
  static const std::string kNeedle = "discarded ";
  std::optional<uint64_t> total;
  for (size_t at = log.find(kNeedle); at != std::string::npos; at = log.find(kNeedle, at + 1)) {
    char *end = nullptr;
    const unsigned long long n = std::strtoull(log.c_str() + at + kNeedle.size(), &end, 10);
    if (end && std::strncmp(end, " records", 8) == 0) total = total.value_or(0) + n;
  }
  return total;
}

struct Scenario {
  std::string name;     // printed label
  std::string message;  // dummy's message template
  std::string filter;   // example filter .so, or empty
};

std::string pipeline_yaml(const Options &o, const Scenario &s, double rate, uint64_t count) {
  std::ostringstream y;
  y << "# generated by bench_engine\n"
    << "service:\n"
    << "  log_level: info\n"
    << "  plugins_dir: [" << yq(o.plugins_dir) << "]\n"
    << "  exit_when_done: true\n"
    << "pipeline:\n"
    << "  inputs:\n"
    << "    - name: dummy\n"
    << "      tag: bench\n"
    << "      rate: " << rate << "\n"
    << "      count: " << count << "\n"
    << "      batch: " << o.batch << "\n"
    << "      message: " << yq(s.message) << "\n";
  if (!s.filter.empty())
    y << "  filters:\n"
      << "    - name: example_redact\n"
      << "      plugin_path: " << yq(s.filter) << "\n"
      << "      match: '*'\n";
  y << "  outputs:\n"
    << "    - name: 'null'\n"
    << "      match: '*'\n";
  return y.str();
}

bool write_text(const std::string &path, const std::string &text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  return static_cast<bool>(out.flush());
}

class Bench {
 public:
  Bench(Options o, std::string dir) : o_(std::move(o)), dir_(std::move(dir)) {}

  // Runs one scenario o_.runs times; prints a line; false when a run failed.
  bool throughput(const Scenario &s, double ceiling) {
    const std::string config = dir_ + "/" + slug(s.name) + ".yaml";
    if (!write_text(config, pipeline_yaml(o_, s, 0, o_.count)))
      return fail("cannot write " + config);
    std::vector<double> rates;
    long peak_kib = 0;
    for (int run = 1; run <= o_.runs; ++run) {
      const std::string log = dir_ + "/" + slug(s.name) + "." + std::to_string(run) + ".log";
      auto child = spawn(o_, config, log);
      if (!child) return false;
      const Exit e = wait_child(*child, o_.timeout_s);
      const std::string text = read_file(log);
      if (!succeeded(e)) {
        std::printf("%s: run %d failed (%s) after %.2f s; log %s:\n%s\n", s.name.c_str(), run,
                    describe_status(e).c_str(), e.wall_s, log.c_str(),
                    tail_lines(text, 20).c_str());
        return false;
      }
      const auto discarded = discarded_records(text);
      if (discarded && *discarded != o_.count) {
        std::printf("%s: run %d delivered %llu of %llu records; log %s\n", s.name.c_str(), run,
                    static_cast<unsigned long long>(*discarded),
                    static_cast<unsigned long long>(o_.count), log.c_str());
        return false;
      }
      const double rate = double(o_.count) / e.wall_s;
      rates.push_back(rate);
      peak_kib = std::max(peak_kib, e.maxrss_kib);
      std::printf("  %s run %d: %.3f s, %s records/s, peak RSS %.1f MiB%s\n", s.name.c_str(), run,
                  e.wall_s, rate_text(rate).c_str(), e.maxrss_kib / 1024.0,
                  discarded ? "" : " (count unverified: no 'discarded N records' in the log)");
    }
    const double med = median(rates);
    std::printf("%s: %s records/s (median of %d), ceiling %s/s, ratio %.2f, peak RSS %.1f MiB\n",
                s.name.c_str(), rate_text(med).c_str(), o_.runs, rate_text(ceiling).c_str(),
                med / ceiling, peak_kib / 1024.0);
    return true;
  }

  // dummy at 1 record/s into null: the engine's resident size when it has nothing to do.
  bool idle_rss() {
    const std::string config = dir_ + "/idle.yaml";
    Scenario s{"idle", "dummy record {seq}", ""};
    if (!write_text(config, pipeline_yaml(o_, s, 1, 0))) return fail("cannot write " + config);
    const std::string log = dir_ + "/idle.log";
    auto child = spawn(o_, config, log);
    if (!child) return false;
    std::this_thread::sleep_for(std::chrono::seconds(2));
    const long rss_kib = vm_rss_kib(child->pid);
    kill(child->pid, SIGTERM);
    const Exit e = wait_child(*child, 12);  // the spawn time counts: ~10 s to shut down
    if (rss_kib < 0 || !succeeded(e)) {
      std::printf("idle (dummy rate 1 -> null): %s; %s; log %s:\n%s\n",
                  rss_kib < 0 ? "engine not running after 2 s" : "RSS read",
                  describe_status(e).c_str(), log.c_str(), tail_lines(read_file(log), 20).c_str());
      return false;
    }
    std::printf("idle (dummy rate 1 -> null, after 2 s): RSS %.1f MiB, SIGTERM -> %s\n",
                rss_kib / 1024.0, describe_status(e).c_str());
    return true;
  }

 private:
  static std::string slug(const std::string &name) {
    std::string s;
    for (char c : name) s += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return s;
  }

  static long vm_rss_kib(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
    return -1;
  }

  bool fail(const std::string &why) {
    std::printf("error: %s\n", why.c_str());
    return false;
  }

  Options o_;
  std::string dir_;
};

int run(int argc, char **argv) {
  auto opts = parse_args(argc, argv);
  if (!opts) return 2;
  Options o = *opts;
  if (!is_executable(o.devmesh)) {
    std::fprintf(stderr, "devmesh binary not found or not executable: '%s' (use --devmesh PATH)\n",
                 o.devmesh.c_str());
    return 2;
  }
  if (!fs::is_directory(o.plugins_dir)) {
    std::fprintf(stderr, "plugins dir not found: '%s' (use --plugins DIR)\n",
                 o.plugins_dir.c_str());
    return 2;
  }
  char tmpl[] = "/tmp/devmesh-bench-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  const std::string dir = tmpl;
  std::printf("devmesh %s, plugins %s, %llu records per run, batch %u, work dir %s\n",
              o.devmesh.c_str(), o.plugins_dir.c_str(), static_cast<unsigned long long>(o.count),
              o.batch, dir.c_str());

  std::vector<double> ceilings;
  for (int i = 0; i < o.runs; ++i) ceilings.push_back(measure_ceiling(o.count, o.batch));
  const double ceiling = median(ceilings);
  std::printf(
      "ceiling (snprintf + event id into a %u-record array, no pipeline): %s records/s "
      "(median of %d)\n",
      o.batch, rate_text(ceiling).c_str(), o.runs);

  Bench bench(o, dir);
  bool ok = bench.throughput({"dummy->null", "dummy record {seq}", ""}, ceiling);
  if (o.example_filter.empty()) {
    std::printf("dummy->example_redact->null: skipped (no --example-filter PATH)\n");
  } else if (access(o.example_filter.c_str(), R_OK) != 0) {
    std::printf("dummy->example_redact->null: %s: %s\n", o.example_filter.c_str(), strerror(errno));
    ok = false;
  } else {
    // Every record carries a value to mask, so the filter rewrites every message.
    ok &= bench.throughput({"dummy->example_redact->null",
                            "login user=u{seq} password=hunter{seq} ok", o.example_filter},
                           ceiling);
  }
  ok &= bench.idle_rss();

  if (ok && !o.keep) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  } else {
    std::printf("configs and logs kept in %s\n", dir.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  return devmesh::run(argc, argv);
}
