// bench_latency: how long a journal entry takes to be seen. Entries go in at a steady rate
// (export format piped into systemd-journal-remote, into a journal directory the journald input
// follows) and each one's arrival is timed twice, from the moment its write returned: as a row
// of GET /query/logs (polled back to back) and as an event of GET /tail (one SSE subscriber).
// Two pipelines, with the shipped configs' settings (service flush_interval 200ms, the query
// output's 50ms, priority_map, dedup, ack: delivered, gzip): standalone (journald -> sqlite +
// query) and, with --aggregator, sidecar (journald -> http_forward, storage on) -> aggregator
// (http -> mariadb + query) on a private mariadbd (tests/support/mariadb.h).
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_support.h"
#include "mariadb.h"

#ifndef DEVMESH_BENCH_BINARY
#define DEVMESH_BENCH_BINARY ""
#endif
#ifndef DEVMESH_BENCH_PLUGIN_DIR
#define DEVMESH_BENCH_PLUGIN_DIR ""
#endif
#ifndef DEVMESH_BENCH_BUILD_DIR
#define DEVMESH_BENCH_BUILD_DIR ""
#endif

extern char **environ;

namespace devmesh {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr const char *kJournalRemote = "/lib/systemd/systemd-journal-remote";

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR, dir;
  int rate = 1000;
  int seconds = 10;
  bool aggregator = false;
  bool standalone = true;
  bool keep = false;
};

void usage(const char *argv0) {
  std::printf(
      "usage: %s [--devmesh PATH] [--plugins DIR] [--rate N] [--seconds N] [--aggregator]\n"
      "          [--only-aggregator] [--dir DIR] [--keep]\n"
      "Writes journal entries at --rate per second for --seconds and prints, per pipeline, the\n"
      "p50/p99/max latency from each write to its row in /query/logs and to its /tail event.\n"
      "--aggregator adds sidecar -> aggregator -> mariadb (starts a private mariadbd).\n"
      "defaults: --rate 1000 --seconds 10 --devmesh %s\n          --plugins %s\n",
      argv0, DEVMESH_BENCH_BINARY, DEVMESH_BENCH_PLUGIN_DIR);
}

[[noreturn]] void die(const std::string &why) {
  std::fprintf(stderr, "bench_latency: %s\n", why.c_str());
  std::exit(1);
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// Times per entry (index = sequence number), 0 until seen; written by one thread each.
struct Timeline {
  explicit Timeline(size_t n) : written(n), stamp_us(n), row(n), tail(n) {}
  std::vector<std::atomic<int64_t>> written, stamp_us, row, tail;  // stamp_us: its timestamp
};

// Every "probe <seq>" in text: the first sighting of each is stamped with `at`.
void stamp(const char *p, size_t n, std::vector<std::atomic<int64_t>> &seen, int64_t at) {
  static constexpr char kMark[] = "probe ";
  const char *end = p + n;
  while (p < end) {
    const char *hit = static_cast<const char *>(memmem(p, end - p, kMark, sizeof kMark - 1));
    if (!hit) return;
    p = hit + sizeof kMark - 1;
    uint64_t seq = 0;
    bool digits = false;
    while (p < end && *p >= '0' && *p <= '9') {
      seq = seq * 10 + (*p++ - '0');
      digits = true;
    }
    if (!digits || seq >= seen.size()) continue;
    int64_t zero = 0;
    seen[seq].compare_exchange_strong(zero, at);
  }
}

// systemd-journal-remote reading export format from a pipe, writing DIR/remote.journal.
class JournalWriter {
 public:
  explicit JournalWriter(const std::string &dir) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) die("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[0], 0);
    const std::string out = "--output=" + dir + "/remote.journal";
    std::vector<char *> args{const_cast<char *>(kJournalRemote), const_cast<char *>(out.c_str()),
                             const_cast<char *>("-"), nullptr};
    if (posix_spawn(&pid_, kJournalRemote, &fa, nullptr, args.data(), environ) != 0)
      die(std::string("cannot run ") + kJournalRemote + " (Debian: systemd-journal-remote)");
    posix_spawn_file_actions_destroy(&fa);
    close(p[0]);
    fd_ = p[1];
  }
  ~JournalWriter() {
    if (fd_ >= 0) close(fd_);
    int status;
    if (pid_ > 0) waitpid(pid_, &status, 0);
  }
  // One entry, written whole; true once the pipe took it. *stamp_us: its timestamp.
  bool write(uint64_t seq, int64_t *stamp_us) {
    timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    timespec mono;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    const uint64_t rt_us = rt.tv_sec * 1000000ull + rt.tv_nsec / 1000;
    const uint64_t mono_us = mono.tv_sec * 1000000ull + mono.tv_nsec / 1000;
    *stamp_us = static_cast<int64_t>(rt_us);
    buf_.clear();
    buf_ += "__REALTIME_TIMESTAMP=" + std::to_string(rt_us) + "\n";
    buf_ += "__MONOTONIC_TIMESTAMP=" + std::to_string(mono_us) + "\n";
    buf_ +=
        "_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=bench-host\n_TRANSPORT=journal\n"
        "_SYSTEMD_UNIT=bench.service\nSYSLOG_IDENTIFIER=bench\n_COMM=bench\n_PID=4242\n"
        "SYSLOG_FACILITY=3\nPRIORITY=6\n";
    buf_ += "MESSAGE=latency probe " + std::to_string(seq) + "\n\n";
    const char *p = buf_.data();
    size_t n = buf_.size();
    while (n) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

 private:
  pid_t pid_ = -1;
  int fd_ = -1;
  std::string buf_;
};

size_t on_tail_data(char *p, size_t size, size_t n, void *user) {
  auto *t = static_cast<Timeline *>(user);
  stamp(p, size * n, t->tail, now_ns());
  return size * n;
}

size_t on_rows(char *p, size_t size, size_t n, void *user) {
  static_cast<std::string *>(user)->append(p, size * n);
  return size * n;
}

// One /tail subscriber until stop; true while connected.
void tail_reader(const std::string &url, Timeline *t, const std::atomic<bool> *stop,
                 std::atomic<bool> *connected) {
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_tail_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, stop);
  curl_easy_setopt(
      c, CURLOPT_XFERINFOFUNCTION,
      +[](void *s, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
        return static_cast<const std::atomic<bool> *>(s)->load() ? 1 : 0;
      });
  curl_easy_setopt(
      c, CURLOPT_HEADERFUNCTION, +[](char *, size_t size, size_t n, void *flag) -> size_t {
        static_cast<std::atomic<bool> *>(flag)->store(true);
        return size * n;
      });
  curl_easy_setopt(c, CURLOPT_HEADERDATA, connected);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_perform(c);
  curl_easy_cleanup(c);
}

// GET /query/logs back to back, 1 ms apart, until stop: the rows from the oldest written entry
// not seen yet on (start_time, oldest first), so a poll carries only the few rows that are new
// and costs the engine serving it little.
void row_poller(const std::string &url, Timeline *t, const std::atomic<bool> *stop,
                std::atomic<uint64_t> *polls) {
  CURL *c = curl_easy_init();
  std::string body;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_rows);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
  size_t next = 1;
  while (!stop->load()) {
    while (next < t->row.size() && t->row[next].load()) next++;
    if (next >= t->row.size() || !t->written[next].load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    char since[32];
    std::snprintf(since, sizeof since, "%.6f", (t->stamp_us[next].load() - 1000) / 1e6);
    const std::string u = url + "&order=asc&start_time=" + since;
    curl_easy_setopt(c, CURLOPT_URL, u.c_str());
    body.clear();
    if (curl_easy_perform(c) == CURLE_OK) stamp(body.data(), body.size(), t->row, now_ns());
    polls->fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  curl_easy_cleanup(c);
}

struct Figures {
  double p50 = 0, p99 = 0, max = 0;
  size_t seen = 0;
};

Figures figures(const Timeline &t, const std::vector<std::atomic<int64_t>> &seen, size_t first,
                size_t last) {
  std::vector<double> ms;
  for (size_t i = first; i <= last; i++) {
    const int64_t w = t.written[i].load(), s = seen[i].load();
    if (w && s) ms.push_back(std::max<int64_t>(0, s - w) / 1e6);
  }
  Figures f;
  f.seen = ms.size();
  if (ms.empty()) return f;
  std::sort(ms.begin(), ms.end());
  f.p50 = bench::percentile(ms, 50);
  f.p99 = bench::percentile(ms, 99);
  f.max = ms.back();
  return f;
}

void write_file(const std::string &path, const std::string &text) {
  std::ofstream(path) << text;
}

// Writes entries and times them against the query output on query_port; the engines are up.
bool measure(const Options &o, const std::string &name, const std::string &journal_dir,
             int query_port, const std::vector<bench::Child *> &engines, double row_target_ms,
             double tail_target_ms) {
  const size_t warmup = 20, n = static_cast<size_t>(o.rate) * o.seconds;
  Timeline t(warmup + n + 1);
  JournalWriter writer(journal_dir);
  const std::string base = "http://127.0.0.1:" + std::to_string(query_port);
  std::atomic<bool> stop{false}, connected{false};
  std::atomic<uint64_t> polls{0};
  if (!bench::wait_port(query_port, std::chrono::seconds(30))) {
    std::printf("%s: the query API on port %d never answered\n", name.c_str(), query_port);
    return false;
  }
  std::thread tail(tail_reader, base + "/tail?service=bench.service", &t, &stop, &connected);
  std::thread rows(row_poller, base + "/query/logs?service=bench.service&limit=1000", &t, &stop,
                   &polls);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!connected.load() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Warm-up entries: the engine is reading and storing before any figure counts.
  bool ok = connected.load();
  for (size_t seq = 1; ok && seq <= warmup; seq++) {
    int64_t us = 0;
    ok = writer.write(seq, &us);
    t.stamp_us[seq] = us;
    t.written[seq] = now_ns();
  }
  while (ok && !t.row[warmup].load() && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ok = ok && t.row[warmup].load();
  if (!ok) {
    stop = true;
    tail.join();
    rows.join();
    std::printf("%s: the warm-up entries never became rows (logs in %s)\n", name.c_str(),
                o.dir.c_str());
    return false;
  }
  const size_t first = warmup + 1, last = warmup + n;
  const auto start = Clock::now();
  for (size_t seq = first; seq <= last; seq++) {
    std::this_thread::sleep_until(
        start + std::chrono::nanoseconds(static_cast<int64_t>((seq - first) * (1e9 / o.rate))));
    int64_t us = 0;
    if (!writer.write(seq, &us)) die("systemd-journal-remote stopped reading");
    t.stamp_us[seq] = us;
    t.written[seq] = now_ns();
  }
  const auto end = Clock::now() + std::chrono::seconds(10);
  while ((!t.row[last].load() || !t.tail[last].load()) && Clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // stragglers before the last
  stop = true;
  tail.join();
  rows.join();
  const Figures row = figures(t, t.row, first, last), ev = figures(t, t.tail, first, last);
  std::printf("%s, %d entries/s for %d s (%zu entries, %llu polls of /query/logs):\n", name.c_str(),
              o.rate, o.seconds, n, static_cast<unsigned long long>(polls.load()));
  std::printf(
      "  journal write -> row in /query/logs: p50 %.1f ms  p99 %.1f ms  max %.1f ms  seen %zu of "
      "%zu  (target p99 <= %.0f ms)\n",
      row.p50, row.p99, row.max, row.seen, n, row_target_ms);
  std::printf(
      "  journal write -> /tail event:        p50 %.1f ms  p99 %.1f ms  max %.1f ms  seen %zu of "
      "%zu  (%s)\n",
      ev.p50, ev.p99, ev.max, ev.seen, n,
      tail_target_ms > 0
          ? ("target p99 <= " + std::to_string(static_cast<int>(tail_target_ms)) + " ms").c_str()
          : "no target");
  for (bench::Child *e : engines)
    std::printf("  engine pid %d (%s) peak RSS %.1f MiB\n", e->pid,
                e == engines.front() ? "reading the journal" : "serving the query API",
                e->hwm_kib() / 1024.0);
  return row.seen == n && ev.seen == n;
}

std::string service_head(const Options &o, int metrics_port, const std::string &extra = "") {
  return "# generated by bench_latency (the shipped configs' settings)\nservice:\n"
         "  plugins_dir: ['" +
         o.plugins + "']\n  flush_interval: 200ms\n  log_level: info\n  http_listen: 127.0.0.1:" +
         std::to_string(metrics_port) + "\n" + extra + "pipeline:\n";
}

bool standalone(const Options &o) {
  const std::string dir = o.dir + "/standalone", journal = dir + "/journal";
  fs::create_directories(journal);
  const int port = bench::free_port(), metrics = bench::free_port();
  write_file(dir + "/standalone.yaml",
             service_head(o, metrics) +
                 "  inputs:\n"
                 "    - {name: journald, tag: node.journal, path: '" +
                 journal + "', read_from: head, state_file: '" + dir +
                 "/journald.cursor'}\n"
                 "  filters:\n"
                 "    - {name: priority_map, match: 'node.*', detect_in_message: true}\n"
                 "  outputs:\n"
                 "    - {name: sqlite, match: '*', path: '" +
                 dir + "/devmesh.db', retention: 90d}\n" +
                 "    - {name: query, match: '*', listen: 127.0.0.1:" + std::to_string(port) +
                 ", store: sqlite, path: '" + dir + "/devmesh.db', flush_interval: 50ms}\n");
  bench::Child engine =
      bench::Child::spawn({o.devmesh, "-c", dir + "/standalone.yaml"}, dir + "/devmesh.log");
  const bool ok = measure(o, "standalone (journald -> priority_map -> sqlite + query)", journal,
                          port, {&engine}, 100, 20);
  engine.stop();
  return ok;
}

bool aggregator(const Options &o) {
  const std::string dir = o.dir + "/aggregator", journal = dir + "/journal";
  fs::create_directories(journal);
  test::MariaDb::Options mo;
  mo.durable = true;  // MariaDB's defaults, as deployed
  mo.template_dir = DEVMESH_BENCH_BUILD_DIR "/tools/bench/latency/mariadb-template";
  test::MariaDb db(dir, mo);
  std::string err;
  if (!db.start(&err)) {
    std::printf("aggregator: mariadbd did not start: %s\n", err.c_str());
    return false;
  }
  const int port = bench::free_port(), m1 = bench::free_port(), m2 = bench::free_port();
  const std::string conn = "host: 127.0.0.1, port: " + std::to_string(db.port()) +
                           ", user: " + test::MariaDb::kUser + ", password: '" +
                           test::MariaDb::kPassword + "', database: " + test::MariaDb::kDatabase;
  write_file(dir + "/aggregator.yaml",
             service_head(o, m2) +
                 "  inputs:\n"
                 "    - {name: http, tag: ingest, listen: 127.0.0.1:" +
                 std::to_string(port) +
                 ", ack: delivered}\n"
                 "  filters:\n"
                 "    - {name: dedup, match: '*', mode: collapse, window: 10s}\n"
                 "  outputs:\n"
                 "    - {name: mariadb, match: '*', " +
                 conn +
                 ", workers: 2, retention: 90d}\n"
                 "    - {name: query, match: '*', listen: 127.0.0.1:" +
                 std::to_string(port) + ", store: mariadb, " + conn + ", flush_interval: 50ms}\n");
  write_file(dir + "/sidecar.yaml",
             service_head(o, m1, "  storage:\n    path: '" + dir + "/storage'\n") +
                 "  inputs:\n"
                 "    - {name: journald, tag: node.journal, path: '" +
                 journal + "', read_from: head, state_file: '" + dir +
                 "/journald.cursor'}\n"
                 "  filters:\n"
                 "    - {name: priority_map, match: 'node.*', detect_in_message: true}\n"
                 "  outputs:\n"
                 "    - {name: http_forward, match: '*', url: 'http://127.0.0.1:" +
                 std::to_string(port) + "/ingest/logs', gzip: true, workers: 2}\n");
  bench::Child agg =
      bench::Child::spawn({o.devmesh, "-c", dir + "/aggregator.yaml"}, dir + "/aggregator.log");
  bench::wait_port(port, std::chrono::seconds(30));
  bench::Child side =
      bench::Child::spawn({o.devmesh, "-c", dir + "/sidecar.yaml"}, dir + "/sidecar.log");
  const bool ok = measure(o, "sidecar (journald, storage) -> aggregator (http -> mariadb + query)",
                          journal, port, {&side, &agg}, 200, 0);
  side.stop();
  agg.stop();
  return ok;
}

int run(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--devmesh") {
      o.devmesh = value();
    } else if (a == "--plugins") {
      o.plugins = value();
    } else if (a == "--rate") {
      o.rate = std::atoi(value().c_str());
    } else if (a == "--seconds") {
      o.seconds = std::atoi(value().c_str());
    } else if (a == "--aggregator") {
      o.aggregator = true;
    } else if (a == "--only-aggregator") {
      o.aggregator = true;
      o.standalone = false;
    } else if (a == "--dir") {
      o.dir = value();
    } else if (a == "--keep") {
      o.keep = true;
    } else {
      usage(argv[0]);
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (o.rate < 1 || o.seconds < 1) die("--rate and --seconds must be at least 1");
  const bool made = o.dir.empty();
  if (made) {
    char tmpl[] = "/tmp/bench_latency.XXXXXX";
    if (!mkdtemp(tmpl)) die("mkdtemp failed");
    o.dir = tmpl;
  }
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  bool ok = true;
  if (o.standalone) ok = standalone(o) && ok;
  if (o.aggregator) ok = aggregator(o) && ok;
  curl_global_cleanup();
  if (made && !o.keep && ok)
    fs::remove_all(o.dir);
  else
    std::printf("work files kept in %s\n", o.dir.c_str());
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  return devmesh::run(argc, argv);
}
