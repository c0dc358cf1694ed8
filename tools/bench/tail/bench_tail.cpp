// bench_tail: the tail input -> null over one file of --lines log lines (about 130 bytes each,
// page cache warm), against the raw ceiling measured in the same run: a bare C loop reading the
// same file line by line (fopen + getline). Prints lines/s by wall time and per CPU second, and
// their ratios (the target: at least 0.70 of the bare loop).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  bool ok = false;
  double wall_s = 0, cpu_s = 0;
  long lines = 0;
};

double cpu_of(const rusage &ru) {
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()      ? 0
         : v.size() % 2 ? v[v.size() / 2]
                        : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

bool write_fixture(const std::string &path, long lines) {
  FILE *f = fopen(path.c_str(), "w");
  if (!f) return false;
  for (long i = 0; i < lines; ++i)
    fprintf(f,
            "2026-12-06T21:00:00.%06ldZ INFO app[1234]: request id=%ld path=/api/v1/items/%ld "
            "status=200 bytes=%ld duration_ms=%ld user=u%ld\n",
            i % 1000000, i, i % 977, i % 5000, i % 300, i % 100);
  return fclose(f) == 0;
}

// The ceiling: the bare loop a C program would write, in this process.
Run raw_read(const std::string &path) {
  Run r;
  rusage before{}, after{};
  getrusage(RUSAGE_SELF, &before);
  const auto t0 = Clock::now();
  FILE *f = fopen(path.c_str(), "r");
  if (!f) return r;
  char *line = nullptr;
  size_t cap = 0;
  while (getline(&line, &cap, f) > 0) ++r.lines;
  free(line);
  fclose(f);
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  getrusage(RUSAGE_SELF, &after);
  r.cpu_s = cpu_of(after) - cpu_of(before);
  r.ok = true;
  return r;
}

// devmesh from spawn to exit (exit_when_done once the file is read and every record is done).
Run engine_read(const std::string &config, const std::string &log, long lines) {
  Run r;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  std::string bin = DEVMESH_BENCH_BINARY, c = "-c", cfg = config;
  char *argv[] = {bin.data(), c.data(), cfg.data(), nullptr};
  pid_t pid;
  const auto t0 = Clock::now();
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return r;
  int status = 0;
  rusage ru{};
  for (;;) {
    if (wait4(pid, &status, WNOHANG, &ru) == pid) break;
    if (Clock::now() - t0 > std::chrono::minutes(10)) {
      kill(pid, SIGKILL);
      wait4(pid, &status, 0, &ru);
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  r.cpu_s = cpu_of(ru);
  r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  r.lines = lines;
  return r;
}

}  // namespace

int main(int argc, char **argv) {
  long lines = 2000000;
  int runs = 3;
  std::string dir = "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--lines" && i + 1 < argc)
      lines = std::atol(argv[++i]);
    else if (a == "--runs" && i + 1 < argc)
      runs = std::atoi(argv[++i]);
    else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else {
      std::fprintf(stderr,
                   "usage: bench_tail [--lines N] [--runs R] [--dir D]\n"
                   "writes D/bench_tail.log with N lines, then reads it R times with a bare C "
                   "getline loop and with devmesh (tail follow: false -> null)\n");
      return 2;
    }
  }
  const std::string file = dir + "/bench_tail.log", config = dir + "/bench_tail.yaml",
                    log = dir + "/bench_tail.devmesh.log";
  if (!write_fixture(file, lines)) {
    std::perror(file.c_str());
    return 1;
  }
  FILE *c = fopen(config.c_str(), "w");
  std::fprintf(c,
               "service:\n  plugins_dir: [%s]\n  exit_when_done: true\n  log_level: warn\n"
               "pipeline:\n  inputs:\n    - {name: tail, path: %s, follow: false}\n"
               "  outputs:\n    - {name: 'null'}\n",
               DEVMESH_BENCH_PLUGIN_DIR, file.c_str());
  fclose(c);
  raw_read(file);  // warms the page cache for both
  std::vector<double> raw_rate, raw_cpu, eng_rate, eng_cpu;
  for (int run = 1; run <= runs; ++run) {
    const Run raw = raw_read(file);
    const Run eng = engine_read(config, log, lines);
    if (!raw.ok || raw.lines != lines || !eng.ok) {
      std::printf("run %d failed (raw %ld lines; devmesh: see %s)\n", run, raw.lines, log.c_str());
      return 1;
    }
    raw_rate.push_back(lines / raw.wall_s);
    raw_cpu.push_back(lines / raw.cpu_s);
    eng_rate.push_back(lines / eng.wall_s);
    eng_cpu.push_back(lines / eng.cpu_s);
    std::printf(
        "run %d: bare loop %.0f lines/s (%.0f per CPU s); tail -> null %.0f lines/s "
        "(%.0f per CPU s)\n",
        run, raw_rate.back(), raw_cpu.back(), eng_rate.back(), eng_cpu.back());
  }
  std::printf("%ld lines of ~130 bytes, median of %d runs\n", lines, runs);
  std::printf("bare C getline loop: %.0f lines/s, %.0f per CPU second\n", median(raw_rate),
              median(raw_cpu));
  std::printf("tail -> null (whole process, start to exit): %.0f lines/s, %.0f per CPU second\n",
              median(eng_rate), median(eng_cpu));
  std::printf("ratio: %.2f by wall time, %.2f per CPU second (target 0.70)\n",
              median(eng_rate) / median(raw_rate), median(eng_cpu) / median(raw_cpu));
  unlink(file.c_str());
  return 0;
}
