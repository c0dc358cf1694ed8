// bench_filters: records/s of dummy -> FILTER -> null for priority_map, drop, dedup (and the
// three chained), and parser on logfmt and JSON lines, next to dummy -> null with the same
// messages in the same run, with the ratio; plus, in process, the
// cost per message of priority_map's level scanner against an equivalent std::regex.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "level_scan.hpp"

extern char **environ;

namespace devmesh {
namespace {

using Clock = std::chrono::steady_clock;

// What every scenario generates, the baseline included: journald-like messages, one in four
// with a level written in it, four services.
const char *const kInput =
    "    - name: dummy\n"
    "      tag: node.journal\n"
    "      rate: 0\n"
    "      batch: 1024\n"
    "      priority: 6\n"
    "      services: [loki.service, docker.service, noisy.service, sshd.service]\n"
    "      messages:\n"
    "        - 'level=info ts=2025-11-28T19:55:40.431Z caller=table_manager.go:136 msg=\"uploading "
    "tables\" n={seq}'\n"
    "        - 'Container {seq} started: image=nginx:1.25 ports=80/tcp'\n"
    "        - 'GET /api/v1/items/{seq} HTTP/1.1 200 512 12ms'\n"
    "        - '[ERROR] connection to 10.0.0.7:5432 refused (attempt {seq})'\n";

// The parser's scenarios: ~200-byte logfmt and JSON lines (a Loki-style logfmt line, a
// structured JSON log) that every record of the run carries.
const char *const kLogfmtInput =
    "    - name: dummy\n"
    "      tag: node.journal\n"
    "      rate: 0\n"
    "      batch: 1024\n"
    "      services: [loki.service]\n"
    "      messages:\n"
    "        - 'ts=2025-11-28T19:55:40.431Z level=info caller=table_manager.go:136 msg=\"uploading "
    "tables to object storage\" trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7 "
    "n={seq} dur=12.5ms user=alice'\n";
const char *const kJsonInput =
    "    - name: dummy\n"
    "      tag: node.journal\n"
    "      rate: 0\n"
    "      batch: 1024\n"
    "      services: [api.service]\n"
    "      messages:\n"
    "        - "
    "'{\"ts\":\"2025-11-28T19:55:40.431Z\",\"level\":\"info\",\"caller\":\"table_manager.go:"
    "136\",\"msg\":\"uploading tables to object storage\",\"trace_id\":"
    "\"4bf92f3577b34da6a3ce929d0e0e4736\",\"n\":{seq},\"dur_ms\":12.5,\"ok\":true}'\n";

struct Scenario {
  const char *name;
  const char *filters;         // YAML list items, or "" for a baseline
  const char *input = kInput;  // a scenario with no filters is the baseline of the rows after it
};

// Realistic settings that keep most records: drop removes noisy.service (a quarter), dedup sees
// only new keys (the costly path: every record inserts, evicting once max_keys are held).
const Scenario kScenarios[] = {
    {"dummy->null", ""},
    {"dummy->priority_map->null", "    - {name: priority_map, detect_in_message: true}\n"},
    {"dummy->drop->null",
     "    - {name: drop, services: ['noisy.*'], message_regex: ['^GET /health'],"
     " min_level: DEBUG, rate: 1000000/s}\n"},
    {"dummy->dedup->null", "    - {name: dedup, window: 10s, max_keys: 100000}\n"},
    {"dummy->priority_map->drop->dedup->null",
     "    - {name: priority_map, detect_in_message: true}\n"
     "    - {name: drop, services: ['noisy.*'], message_regex: ['^GET /health'],"
     " min_level: DEBUG, rate: 1000000/s}\n"
     "    - {name: dedup, window: 10s, max_keys: 100000}\n"},
    {"dummy(logfmt 200 B)->null", "", kLogfmtInput},
    {"dummy(logfmt 200 B)->parser->null", "    - {name: parser, format: [logfmt]}\n", kLogfmtInput},
    {"dummy(json 200 B)->null", "", kJsonInput},
    {"dummy(json 200 B)->parser->null", "    - {name: parser, format: [json]}\n", kJsonInput},
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

struct Run {
  double wall_s = -1, cpu_s = -1;  // -1: the run failed
  long peak_rss_kib = 0;
};

// Runs devmesh on config to its end (exit_when_done): wall seconds and CPU seconds (user + sys
// of all its threads). On a shared machine the CPU figure is the steadier one.
Run run_engine(const std::string &devmesh, const std::string &config, const std::string &log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<std::string> args = {devmesh, "-c", config};
  std::vector<char *> argv;
  for (auto &a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const auto t0 = Clock::now();
  pid_t pid;
  const int rc = posix_spawn(&pid, devmesh.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return {};
  int status = 0;
  rusage ru{};
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return {};
  Run r;
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
            double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  r.peak_rss_kib = ru.ru_maxrss;
  return r;
}

double thread_cpu_ns() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) * 1e9 + double(t.tv_nsec);
}

// ns per message of LevelScanner::find and of one std::regex doing the same job.
void scanner_vs_regex() {
  const std::vector<std::string> msgs = {
      "level=info ts=2025-11-28T19:55:40.431Z caller=table_manager.go:136 msg=\"uploading tables\"",
      "Container 3f2a started: image=nginx:1.25 ports=80/tcp",
      "GET /api/v1/items/42 HTTP/1.1 200 512 12ms",
      "[ERROR] connection to 10.0.0.7:5432 refused (attempt 3)",
      "{\"ts\":1732823740,\"level\":\"warn\",\"msg\":\"slow query\",\"ms\":1200}",
      "pam_unix(sshd:session): session opened for user root by (uid=0)"};
  const std::string words =
      "(trace|debug|dbg|info|notice|warn|warning|err|error|crit|critical|alert|fatal|panic|emerg)";
  const std::string keys = "(?:level|lvl|severity|loglevel)";
  const std::regex re(R"re((?:\b)re" + keys + R"re(\s*[=:]\s*["']?|")re" + keys +
                          R"re("\s*:\s*"))re" + words + R"re(\b|\[\s*)re" + words +
                          R"re(\s*\]|(?:^|[\s\])>|]))re" + words + ":",
                      std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
  const int rounds = 20000;
  volatile unsigned sink = 0;
  double t0 = thread_cpu_ns();
  for (int k = 0; k < rounds; ++k)
    for (const auto &m : msgs) sink = sink + LevelScanner::find(m);
  const double scan_ns = (thread_cpu_ns() - t0) / double(rounds * msgs.size());
  const int re_rounds = rounds / 20;
  t0 = thread_cpu_ns();
  for (int k = 0; k < re_rounds; ++k)
    for (const auto &m : msgs) sink = sink + std::regex_search(m, re);
  const double re_ns = (thread_cpu_ns() - t0) / double(re_rounds * msgs.size());
  std::printf(
      "level detection, CPU per message (%zu journald-like messages): scanner %.0f ns, "
      "std::regex %.0f ns (%.0fx)\n",
      msgs.size(), scan_ns, re_ns, re_ns / scan_ns);
}

int run(int argc, char **argv) {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  long count = 2000000;
  int runs = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--count" && v) {
      count = std::atol(argv[++i]);
    } else if (a == "--runs" && v) {
      runs = std::atoi(argv[++i]);
    } else if (a == "--devmesh" && v) {
      devmesh = argv[++i];
    } else if (a == "--plugins" && v) {
      plugins = argv[++i];
    } else {
      std::fprintf(stderr,
                   "usage: %s [--count N (2000000)] [--runs N (3)] [--devmesh PATH] "
                   "[--plugins DIR]\n",
                   argv[0]);
      return 2;
    }
  }
  if (count < 1 || runs < 1) {
    std::fprintf(stderr, "--count and --runs must be positive\n");
    return 2;
  }
  char tmpl[] = "/tmp/devmesh-bench-filters-XXXXXX";
  if (!mkdtemp(tmpl)) return 1;
  const std::string dir = tmpl;
  std::printf("devmesh %s, %ld records per run, median of %d runs\n", devmesh.c_str(), count, runs);
  scanner_vs_regex();

  double base_wall = 0, base_cpu = 0;
  std::printf("%-42s %14s %6s %18s %6s %9s\n", "pipeline", "records/s", "ratio", "records/CPU-s",
              "ratio", "peak RSS");
  for (const Scenario &s : kScenarios) {
    const std::string config = dir + "/pipeline.yaml", log = dir + "/engine.log";
    std::ofstream(config) << "service:\n  plugins_dir: ['" << plugins
                          << "']\n  exit_when_done: true\npipeline:\n  inputs:\n"
                          << s.input << "      count: " << count << "\n"
                          << (*s.filters ? "  filters:\n" : "") << s.filters
                          << "  outputs:\n    - {name: 'null'}\n";
    std::vector<double> wall, cpu, rss;
    for (int r = 0; r < runs; ++r) {
      const Run run = run_engine(devmesh, config, log);
      if (run.wall_s < 0) {
        std::printf("%s: run failed, log kept in %s\n", s.name, log.c_str());
        return 1;
      }
      wall.push_back(double(count) / run.wall_s);
      cpu.push_back(double(count) / run.cpu_s);
      rss.push_back(double(run.peak_rss_kib));
    }
    const double w = median(wall), c = median(cpu);
    if (!*s.filters) base_wall = w, base_cpu = c;
    std::printf("%-42s %13.0fk %6.2f %17.0fk %6.2f %5.1f MiB\n", s.name, w / 1e3, w / base_wall,
                c / 1e3, c / base_cpu, median(rss) / 1024);
  }
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  return devmesh::run(argc, argv);
}
