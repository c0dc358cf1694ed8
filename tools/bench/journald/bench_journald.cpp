// bench_journald: reads a 1,000,000-entry journal directory (made once by journal-fixture and
// cached under /tmp) through devmesh (journald -> priority_map -> null) and prints entries/s
// and peak RSS next to the raw ceiling: a minimal sd_journal loop over the same entries, here.
// Then the follow latency: from an entry written to a followed journal to its record in the
// output, one entry at a time, and the engine's CPU while the journal is idle (figures the
// journald tests once asserted as bounds; on a loaded machine they belong here).
// --patterns also runs journald -> priority_map -> patterns -> null, alternating with the run
// without it, and prints its rate as a ratio of the same-run rate without (target >= 0.70).
// --all-fields measures the wide case: 23-field entries (12 more than the default journal's,
// as a real service's entries carry), every field copied into meta with `fields:`.
// Also printed: journald's reader thread alone per CPU second against the raw loop's (from the
// engine's exit log line). The thread is the input's critical path (the loop builds the records
// beside it), so this ratio is what two idle cores would show, on a machine that is not idle.
// The rest of the process's CPU (the loop) is printed the same way: the lower of the two bounds.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
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
#include <vector>

#include "../common/bench_support.h"

extern char **environ;

#ifndef DEVMESH_BENCH_BINARY
#define DEVMESH_BENCH_BINARY ""
#endif
#ifndef DEVMESH_BENCH_PLUGIN_DIR
#define DEVMESH_BENCH_PLUGIN_DIR ""
#endif
#ifndef DEVMESH_BENCH_FIXTURE
#define DEVMESH_BENCH_FIXTURE ""
#endif

namespace devmesh {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR,
              fixture = DEVMESH_BENCH_FIXTURE, cache;
  uint64_t count = 1000000;
  int runs = 3;
  int timeout_s = 600;
  int64_t batch = 0;  // journald's batch option; 0 keeps its default
  int follow = 20;    // entries timed one by one while following; 0: skip
  bool keep = false;
  bool all_fields = false;    // 23-field entries, all of them listed in `fields:`
  bool wide_entries = false;  // 23-field entries, the default fields (as on a real host)
  bool patterns = false;      // also journald -> priority_map -> patterns -> null
  std::string messages_from;  // MESSAGE lines for the fixture (e.g. Loghub's) instead of padding
};

void usage(const char *argv0) {
  std::printf(
      "usage: %s [--count N] [--runs N] [--batch N] [--cache DIR] [--devmesh PATH]\n"
      "          [--plugins DIR] [--fixture PATH] [--timeout SECONDS] [--keep] [--all-fields] "
      "[--wide-entries]\n"
      "          [--patterns] [--messages-from FILE]\n"
      "Builds (once; cached in --cache, default /tmp/devmesh-bench-journald-<count>) a journal\n"
      "directory of --count entries with journal-fixture, then reads it --runs times with a raw\n"
      "sd_journal loop and --runs times with devmesh (journald -> priority_map -> null, or\n"
      "journald -> null when the priority_map plugin is not built), and prints the medians.\n"
      "Then follows a fresh journal and times --follow N entries (default 20, 0 skips), each\n"
      "from the end of its write to its record in the output, and the engine's idle CPU.\n"
      "--patterns: also journald -> priority_map -> patterns -> null, alternating, and its ratio\n"
      "to the run without the patterns filter (the filter's ingest cost)\n"
      "--messages-from FILE: entries' messages are FILE's lines, cycled (real log lines, e.g.\n"
      "Loghub's, rather than \"entry <seq>\" padded with letters; cached apart)\n"
      "--all-fields: entries of 23 fields (12 more: _UID, _EXE, CODE_FILE, ...; cached apart)\n"
      "and every one of them copied into meta with the journald option fields:.\n"
      "--wide-entries: the same 23-field entries read with the default fields (a service's\n"
      "entry as systemd writes it, as a default configuration reads it).\n",
      argv0);
}

std::optional<Options> parse_args(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
    auto number = [&](int64_t lo, int64_t hi) -> std::optional<int64_t> {
      const char *v = value();
      char *end = nullptr;
      const long long n = v ? std::strtoll(v, &end, 10) : 0;
      if (!v || end == v || *end || n < lo || n > hi) {
        std::fprintf(stderr, "%s: a number in %lld..%lld expected\n", a.c_str(),
                     static_cast<long long>(lo), static_cast<long long>(hi));
        return std::nullopt;
      }
      return n;
    };
    std::optional<int64_t> n;
    const char *s = nullptr;
    if (a == "-h" || a == "--help") {
      usage(argv[0]);
      std::exit(0);
    } else if (a == "--count") {
      if (!(n = number(1, int64_t(1) << 32))) return std::nullopt;
      o.count = static_cast<uint64_t>(*n);
    } else if (a == "--runs") {
      if (!(n = number(1, 100))) return std::nullopt;
      o.runs = static_cast<int>(*n);
    } else if (a == "--batch") {
      if (!(n = number(1, 100000))) return std::nullopt;
      o.batch = *n;
    } else if (a == "--follow") {
      if (!(n = number(0, 10000))) return std::nullopt;
      o.follow = static_cast<int>(*n);
    } else if (a == "--timeout") {
      if (!(n = number(1, 86400))) return std::nullopt;
      o.timeout_s = static_cast<int>(*n);
    } else if (a == "--keep") {
      o.keep = true;
    } else if (a == "--patterns") {
      o.patterns = true;
    } else if (a == "--messages-from") {
      const char *v = value();
      if (v == nullptr) {
        usage(argv[0]);
        return std::nullopt;
      }
      o.messages_from = v;
    } else if (a == "--all-fields") {
      o.all_fields = true;
    } else if (a == "--wide-entries") {
      o.wide_entries = true;
    } else if (a == "--cache" || a == "--devmesh" || a == "--plugins" || a == "--fixture") {
      if (!(s = value())) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        return std::nullopt;
      }
      (a == "--cache"     ? o.cache
       : a == "--devmesh" ? o.devmesh
       : a == "--plugins" ? o.plugins
                          : o.fixture) = s;
    } else {
      std::fprintf(stderr, "unknown argument '%s'\n", a.c_str());
      usage(argv[0]);
      return std::nullopt;
    }
  }
  if (o.cache.empty())
    o.cache = "/tmp/devmesh-bench-journald-" + std::to_string(o.count) +
              (o.all_fields || o.wide_entries ? "-wide" : "") +
              (o.messages_from.empty() ? "" : "-" + fs::path(o.messages_from).stem().string());
  return o;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string read_file(const std::string &path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Exit {
  bool ok = false;
  double wall_s = 0;
  long maxrss_kib = 0;
  double cpu_s = 0;  // user + system
  std::string why;
};

double cpu_seconds(const rusage &ru) {
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Runs argv with stdout and stderr into log; waits up to timeout_s (then kills it by its pid).
Exit run_child(const std::vector<std::string> &argv, const std::string &log, int timeout_s) {
  Exit e;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  std::vector<char *> args;
  for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  const auto t0 = Clock::now();
  const int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    e.why = std::string("cannot run ") + args[0] + ": " + strerror(rc);
    return e;
  }
  int status = 0;
  rusage ru{};
  for (;;) {
    const pid_t r = wait4(pid, &status, WNOHANG, &ru);
    if (r == pid) break;
    if (Clock::now() - t0 > std::chrono::seconds(timeout_s)) {
      kill(pid, SIGKILL);
      wait4(pid, &status, 0, &ru);
      e.why = "timed out after " + std::to_string(timeout_s) + " s";
      return e;
    }
    // 1 ms polling costs well under 0.1% of a run of a second or more.
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  e.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  e.maxrss_kib = ru.ru_maxrss;
  e.cpu_s = cpu_seconds(ru);
  e.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!e.ok) e.why = "exit status " + std::to_string(status);
  return e;
}

// The 12 fields --all-fields adds to the default 11 (a service's entry as systemd writes it).
const char *const kWideFields[] = {"_UID=1000",
                                   "_GID=1000",
                                   "_CAP_EFFECTIVE=0",
                                   "_SELINUX_CONTEXT=unconfined",
                                   "_EXE=/usr/bin/app-server",
                                   "_CMDLINE=/usr/bin/app-server --config /etc/app/server.yaml",
                                   "_SYSTEMD_CGROUP=/system.slice/app-api.service",
                                   "_SYSTEMD_SLICE=system.slice",
                                   "_SYSTEMD_INVOCATION_ID=5f0c1d6e9a8b4c7d8e2f3a4b5c6d7e8f",
                                   "CODE_FILE=src/server/handler.c",
                                   "CODE_LINE=412",
                                   "CODE_FUNC=handle_request"};
// Every field of a wide entry, for `fields:`.
const char *const kAllFields[] = {"_BOOT_ID",
                                  "_HOSTNAME",
                                  "_TRANSPORT",
                                  "_SYSTEMD_UNIT",
                                  "SYSLOG_IDENTIFIER",
                                  "_COMM",
                                  "_PID",
                                  "SYSLOG_FACILITY",
                                  "PRIORITY",
                                  "SEQ",
                                  "MESSAGE",
                                  "_UID",
                                  "_GID",
                                  "_CAP_EFFECTIVE",
                                  "_SELINUX_CONTEXT",
                                  "_EXE",
                                  "_CMDLINE",
                                  "_SYSTEMD_CGROUP",
                                  "_SYSTEMD_SLICE",
                                  "_SYSTEMD_INVOCATION_ID",
                                  "CODE_FILE",
                                  "CODE_LINE",
                                  "CODE_FUNC"};

// The fixture's arguments: what makes a cached directory reusable.
std::vector<std::string> fixture_args(const Options &o, const std::string &file) {
  std::vector<std::string> args = {
      o.fixture,
      "-o",
      file,
      "--count",
      std::to_string(o.count),
      "--units",
      "nginx.service,postgresql.service,sshd.service,cron.service,docker.service,"
      "kubelet.service,app-api.service,app-worker.service",
      "--priorities",
      "6,6,6,6,5,4,3,7,6,6,2,6",
      "--kernel-every",
      "97",
      "--hostname",
      "bench-node"};
  if (o.messages_from.empty())
    args.insert(args.end(), {"--message-size", "40-200"});
  else
    args.insert(args.end(), {"--messages-from", o.messages_from});
  if (o.all_fields || o.wide_entries)
    for (const char *f : kWideFields) args.insert(args.end(), {"--field", f});
  return args;
}

bool ensure_journal(const Options &o) {
  const std::string marker = o.cache + "/complete";
  // Everything but the fixture's path and output file, which may move between builds.
  const auto args = fixture_args(o, "");
  std::string want;
  for (size_t i = 3; i < args.size(); ++i) want += args[i] + "\n";
  if (read_file(marker) == want) {
    std::printf("journal: %s (cached; remove it to rebuild)\n", o.cache.c_str());
    return true;
  }
  std::error_code ec;
  fs::remove_all(o.cache, ec);
  fs::create_directories(o.cache, ec);
  if (ec) {
    std::printf("error: cannot create %s: %s\n", o.cache.c_str(), ec.message().c_str());
    return false;
  }
  std::printf("journal: writing %llu entries into %s with journal-fixture...\n",
              static_cast<unsigned long long>(o.count), o.cache.c_str());
  std::fflush(stdout);
  const std::string log = o.cache + "/fixture.log";
  const Exit e = run_child(fixture_args(o, o.cache + "/bench.journal"), log, 3600);
  if (!e.ok) {
    std::printf("error: journal-fixture failed (%s); log %s\n", e.why.c_str(), log.c_str());
    return false;
  }
  std::ofstream(marker) << want;
  std::printf("journal: written in %.1f s\n", e.wall_s);
  return true;
}

struct RawResult {
  bool ok = false;
  double rate = 0;
  uint64_t entries = 0;
  long maxrss_kib = 0;
  double cpu_s = 0;  // of the whole child: open, read, close
};

// The ceiling: open, walk every entry, enumerate every field; nothing else. It runs in a child
// process of its own: sd-journal maps the files (hundreds of MiB of RSS), and a process spawned
// from a parent that big would inherit its RSS high-water mark (exec keeps ru_maxrss).
RawResult raw_read(const std::string &dir) {
  RawResult res;
  int p[2];
  if (pipe(p) != 0) return res;
  const pid_t pid = fork();
  if (pid < 0) return res;
  if (pid == 0) {
    close(p[0]);
    sd_journal *j = nullptr;
    if (sd_journal_open_directory(&j, dir.c_str(), 0) < 0) _exit(1);
    size_t sum = 0;
    const auto t0 = Clock::now();
    while (sd_journal_next(j) > 0) {
      const void *d;
      size_t l;
      SD_JOURNAL_FOREACH_DATA(j, d, l) sum += l;
      ++res.entries;
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    sd_journal_close(j);
    res.ok = sum > 0;
    res.rate = double(res.entries) / s;
    ssize_t w = write(p[1], &res, sizeof res);
    _exit(w == sizeof res ? 0 : 1);
  }
  close(p[1]);
  RawResult got;
  const bool read_ok = read(p[0], &got, sizeof got) == static_cast<ssize_t>(sizeof got);
  close(p[0]);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  if (!read_ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return res;
  got.maxrss_kib = ru.ru_maxrss;
  got.cpu_s = cpu_seconds(ru);
  return got;
}

std::string pipeline_yaml(const Options &o, bool with_priority_map, bool with_patterns = false) {
  std::ostringstream y;
  y << "# generated by bench_journald\n"
    << "service:\n"
    << "  plugins_dir: ['" << o.plugins << "']\n"
    << "  exit_when_done: true\n"
    << "pipeline:\n"
    << "  inputs:\n"
    << "    - name: journald\n"
    << "      path: '" << o.cache << "'\n"
    << "      follow: false\n";
  if (o.batch) y << "      batch: " << o.batch << "\n";
  if (o.all_fields) {
    y << "      fields: [";
    for (const char *f : kAllFields) y << (f == kAllFields[0] ? "" : ", ") << f;
    y << "]\n";
  }
  if (with_priority_map || with_patterns) y << "  filters:\n";
  if (with_priority_map)
    y << "    - name: priority_map\n"
      << "      match: '*'\n";
  if (with_patterns)
    y << "    - name: patterns\n"
      << "      match: '*'\n";
  y << "  outputs:\n"
    << "    - name: 'null'\n"
    << "      match: '*'\n";
  return y.str();
}

// "discarded N records" (null) and "read N entries" (journald) from the engine's log.
uint64_t number_after(const std::string &log, const std::string &needle) {
  const size_t at = log.rfind(needle);
  return at == std::string::npos ? 0 : std::strtoull(log.c_str() + at + needle.size(), nullptr, 10);
}

size_t count_newlines(const std::string &path) {
  const std::string text = read_file(path);
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
}

// Follows a fresh journal (journald -> stdout, the default flush_interval) and writes entries
// one at a time with journal-fixture: each latency runs from the fixture's exit (the entry is in
// the file) to its record's line in the output. Then the engine's CPU over 3 s of nothing.
bool follow_latency(const Options &o, const std::string &work) {
  const std::string dir = work + "/follow-journal", out = work + "/follow.ndjson";
  const std::string file = dir + "/system.journal", config = work + "/follow.yaml";
  fs::create_directories(dir);
  auto write_entry = [&](int seq) {
    return run_child({o.fixture, "-o", file, "--count", "1", "--start", std::to_string(seq)},
                     work + "/fixture.log", 60)
        .ok;
  };
  auto wait_lines = [&](size_t n) {
    const auto end = Clock::now() + std::chrono::seconds(30);
    while (count_newlines(out) < n)
      if (Clock::now() > end)
        return false;
      else
        std::this_thread::sleep_for(std::chrono::microseconds(500));
    return true;
  };
  if (!write_entry(1)) {
    std::printf("  follow: journal-fixture failed; log %s/fixture.log\n", work.c_str());
    return false;
  }
  std::ofstream(config) << "# generated by bench_journald\nservice:\n  plugins_dir: ['" << o.plugins
                        << "']\npipeline:\n  inputs:\n    - {name: journald, path: '" << dir
                        << "'}\n  outputs:\n    - {name: stdout, path: '" << out << "'}\n";
  bench::Child engine = bench::Child::spawn({o.devmesh, "-c", config}, work + "/follow.log");
  bool ok = engine.pid > 0 && wait_lines(1);  // the first entry: the engine is up and reading
  std::vector<double> ms;
  for (int i = 2; ok && i <= o.follow + 1; ++i) {
    ok = write_entry(i);
    const auto t0 = Clock::now();
    ok = ok && wait_lines(static_cast<size_t>(i));
    if (ok) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  double idle_ms_per_s = 0;
  if (ok) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the last checkpoint, flush
    const double cpu0 = engine.cpu_s();
    std::this_thread::sleep_for(std::chrono::seconds(3));
    idle_ms_per_s = (engine.cpu_s() - cpu0) / 3 * 1000;
  }
  engine.stop();
  if (!ok) {
    std::printf("  follow failed after %zu entries; logs in %s\n", ms.size(), work.c_str());
    return false;
  }
  std::sort(ms.begin(), ms.end());
  std::printf(
      "follow latency (entry written -> record in the output, default flush_interval): p50 %.0f "
      "ms, max %.0f ms over %zu entries; idle engine CPU %.2f ms per second\n",
      bench::percentile(ms, 50), ms.back(), ms.size(), idle_ms_per_s);
  return true;
}

int run(int argc, char **argv) {
  const auto opts = parse_args(argc, argv);
  if (!opts) return 2;
  const Options &o = *opts;
  for (const auto &[what, path] : {std::pair{"devmesh", o.devmesh}, {"journal-fixture", o.fixture}})
    if (access(path.c_str(), X_OK) != 0) {
      std::fprintf(stderr, "%s not found or not executable: '%s'\n", what, path.c_str());
      return 2;
    }
  if (!ensure_journal(o)) return 1;

  const bool with_pm = fs::exists(o.plugins + "/priority_map.so");
  const std::string name =
      std::string(with_pm ? "journald->priority_map->null" : "journald->null") +
      (o.all_fields     ? " (23 fields, all copied)"
       : o.wide_entries ? " (23 fields, the default ones taken)"
                        : "");
  if (!with_pm)
    std::printf("note: %s/priority_map.so is not built: measuring journald -> null\n",
                o.plugins.c_str());

  char tmpl[] = "/tmp/devmesh-bench-journald-run-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
    return 1;
  }
  const std::string work = tmpl;
  const std::string config = work + "/pipeline.yaml";
  std::ofstream(config) << pipeline_yaml(o, with_pm);
  const std::string patterns_config = work + "/patterns.yaml";
  const std::string pname = name + " with patterns";
  if (o.patterns) {
    if (!fs::exists(o.plugins + "/patterns.so")) {
      std::fprintf(stderr, "--patterns: %s/patterns.so is not built\n", o.plugins.c_str());
      return 2;
    }
    std::ofstream(patterns_config) << pipeline_yaml(o, with_pm, true);
  }
  std::vector<double> prates, pcpu_rates;
  long ppeak_kib = 0;

  // Raw and engine runs alternate, so both see the same machine load and page cache.
  // Wall-clock rates are the figure; CPU-time rates say the same without the machine's load.
  std::vector<double> raw_rates, rates, raw_cpu_rates, cpu_rates;
  // Entries per CPU second of journald's reader thread alone (logged at exit; absent from a
  // devmesh older than this bench): with two free cores its rate bounds the input's.
  std::vector<double> reader_cpu_rates;
  // And per CPU second of the rest of the process (the loop building records, the filters and
  // the output): the other thread of the input's pace on two idle cores.
  std::vector<double> rest_cpu_rates;
  long peak_kib = 0, raw_peak_kib = 0;
  bool ok = true;
  raw_read(o.cache);  // warms the page cache for everyone
  for (int run = 1; run <= o.runs && ok; ++run) {
    const RawResult raw = raw_read(o.cache);
    if (!raw.ok) {
      std::printf("  raw sd_journal run %d failed: cannot read %s\n", run, o.cache.c_str());
      ok = false;
      break;
    }
    raw_rates.push_back(raw.rate);
    raw_cpu_rates.push_back(double(raw.entries) / raw.cpu_s);
    raw_peak_kib = std::max(raw_peak_kib, raw.maxrss_kib);
    std::printf("  raw sd_journal run %d: %llu entries, %.0f entries/s, %.0f per CPU second\n", run,
                static_cast<unsigned long long>(raw.entries), raw.rate, raw_cpu_rates.back());

    const std::string log = work + "/engine." + std::to_string(run) + ".log";
    const Exit e = run_child({o.devmesh, "-c", config}, log, o.timeout_s);
    const std::string text = read_file(log);
    const uint64_t discarded = number_after(text, "discarded ");
    const uint64_t read = number_after(text, "] read ");
    if (!e.ok || discarded != raw.entries || read != raw.entries) {
      std::printf("  %s run %d failed: %s, read %llu, delivered %llu of %llu; log %s\n",
                  name.c_str(), run, e.ok ? "wrong count" : e.why.c_str(),
                  static_cast<unsigned long long>(read), static_cast<unsigned long long>(discarded),
                  static_cast<unsigned long long>(raw.entries), log.c_str());
      ok = false;
      break;
    }
    rates.push_back(double(discarded) / e.wall_s);
    cpu_rates.push_back(double(discarded) / e.cpu_s);
    if (const size_t at = text.rfind("reader thread CPU "); at != std::string::npos) {
      const double s = std::strtod(text.c_str() + at + 18, nullptr);
      if (s > 0) reader_cpu_rates.push_back(double(discarded) / s);
      if (s > 0 && e.cpu_s > s) rest_cpu_rates.push_back(double(discarded) / (e.cpu_s - s));
    }
    peak_kib = std::max(peak_kib, e.maxrss_kib);
    std::printf("  %s run %d: %.3f s, %.0f entries/s, %.0f per CPU second, peak RSS %.1f MiB\n",
                name.c_str(), run, e.wall_s, rates.back(), cpu_rates.back(), e.maxrss_kib / 1024.0);
    if (!o.patterns) continue;
    const std::string plog = work + "/patterns." + std::to_string(run) + ".log";
    const Exit pe = run_child({o.devmesh, "-c", patterns_config}, plog, o.timeout_s);
    const uint64_t pdiscarded = number_after(read_file(plog), "discarded ");
    if (!pe.ok || pdiscarded != raw.entries) {
      std::printf("  %s run %d failed: %s, delivered %llu of %llu; log %s\n", pname.c_str(), run,
                  pe.ok ? "wrong count" : pe.why.c_str(),
                  static_cast<unsigned long long>(pdiscarded),
                  static_cast<unsigned long long>(raw.entries), plog.c_str());
      ok = false;
      break;
    }
    prates.push_back(double(pdiscarded) / pe.wall_s);
    pcpu_rates.push_back(double(pdiscarded) / pe.cpu_s);
    ppeak_kib = std::max(ppeak_kib, pe.maxrss_kib);
    std::printf("  %s run %d: %.3f s, %.0f entries/s, %.0f per CPU second, peak RSS %.1f MiB\n",
                pname.c_str(), run, pe.wall_s, prates.back(), pcpu_rates.back(),
                pe.maxrss_kib / 1024.0);
  }
  if (ok) {
    const double raw = median(raw_rates), eng = median(rates);
    std::printf(
        "raw sd_journal loop (next + every field): %.0f entries/s (median of %d); its process "
        "peak RSS %.1f MiB (journal files mapped by sd-journal)\n",
        raw, o.runs, raw_peak_kib / 1024.0);
    std::printf(
        "%s: %.0f entries/s (median of %d, wall time of the whole process), ratio %.2f "
        "(target >= %.2f), peak RSS %.1f MiB (target <= 64)\n",
        name.c_str(), eng, o.runs, eng / raw, o.all_fields ? 0.75 : 0.85, peak_kib / 1024.0);
    // Each run's own ratio to the raw run just before it: the machine's load moves both.
    std::vector<double> ratios;
    for (size_t i = 0; i < rates.size(); ++i) ratios.push_back(rates[i] / raw_rates[i]);
    std::printf("same-run ratios:");
    for (double r : ratios) std::printf(" %.2f", r);
    std::printf(" (median %.2f)\n", median(ratios));
    std::printf("per CPU second (user + system): raw %.0f, %s %.0f, ratio %.2f\n",
                median(raw_cpu_rates), name.c_str(), median(cpu_rates),
                median(cpu_rates) / median(raw_cpu_rates));
    if (reader_cpu_rates.size() == rates.size()) {
      // The same-run ratio a machine with two idle cores would see, whatever the load here:
      // the reader thread is the input's critical path, the loop builds records beside it.
      std::vector<double> rratios;
      for (size_t i = 0; i < reader_cpu_rates.size(); ++i)
        rratios.push_back(reader_cpu_rates[i] / raw_cpu_rates[i]);
      std::printf("journald reader thread alone: %.0f per CPU second; same-run ratios to raw:",
                  median(reader_cpu_rates));
      for (double r : rratios) std::printf(" %.2f", r);
      std::printf(" (median %.2f)\n", median(rratios));
    }
    if (rest_cpu_rates.size() == rates.size()) {
      std::vector<double> lratios;
      for (size_t i = 0; i < rest_cpu_rates.size(); ++i)
        lratios.push_back(rest_cpu_rates[i] / raw_cpu_rates[i]);
      std::printf(
          "the rest of the process (loop: records, filters, output): %.0f per CPU second; "
          "same-run ratios to raw:",
          median(rest_cpu_rates));
      for (double r : lratios) std::printf(" %.2f", r);
      std::printf(" (median %.2f; the lower of this and the reader's bounds the rate)\n",
                  median(lratios));
    }
    if (o.patterns) {
      std::vector<double> pratios;
      for (size_t i = 0; i < prates.size(); ++i) pratios.push_back(prates[i] / rates[i]);
      std::printf(
          "%s: %.0f entries/s (median of %d), peak RSS %.1f MiB; ratio to the same run without "
          "patterns:",
          pname.c_str(), median(prates), o.runs, ppeak_kib / 1024.0);
      for (double r : pratios) std::printf(" %.2f", r);
      std::printf(" (median %.2f, target >= 0.70); per CPU second %.0f, ratio %.2f\n",
                  median(pratios), median(pcpu_rates), median(pcpu_rates) / median(cpu_rates));
    }
  }
  if (ok && o.follow > 0) ok = follow_latency(o, work);
  if (ok && !o.keep) {
    std::error_code ec;
    fs::remove_all(work, ec);
  } else {
    std::printf("config and logs kept in %s\n", work.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  return devmesh::run(argc, argv);
}
