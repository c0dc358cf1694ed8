// Shared by the benchmarks that drive the real binary over HTTP (bench_http, bench_durability):
// medians and percentiles, loopback ports, child processes with their peak RSS and CPU time, the
// seed-shaped ingest body, and a closed-loop wrk run posting it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "process_usage.h"

namespace devmesh::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// p in 0..100 over an already sorted vector.
inline double percentile(const std::vector<double> &sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// A free TCP port on 127.0.0.1 (bound and released).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

inline bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

inline bool wait_port(int port, std::chrono::milliseconds deadline = std::chrono::seconds(10)) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (!port_open(port)) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// A child process with stdin from /dev/null and stdout+stderr into `log`.
struct Child {
  pid_t pid = -1;
  long max_rss_kib = 0;  // after wait()

  static Child spawn(const std::vector<std::string> &argv, const std::string &log) {
    Child c;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    std::vector<char *> args;
    for (auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawn(&c.pid, args[0], &fa, nullptr, args.data(), environ) != 0) c.pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return c;
  }
  // Peak RSS so far (VmHWM), KiB.
  long hwm_kib() const { return peak_rss_kib(pid); }
  // User + system CPU seconds so far.
  double cpu_s() const { return process_cpu_s(pid); }
  // The exit code (128 + signal when killed), or -1 after timeout_s.
  int wait(int timeout_s = 600) {
    auto end = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
    for (;;) {
      int status;
      rusage ru{};
      pid_t r = wait4(pid, &status, WNOHANG, &ru);
      if (r == pid) {
        max_rss_kib = ru.ru_maxrss;
        pid = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  void stop() {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    if (wait(10) < 0) {
      kill(pid, SIGKILL);
      wait(10);
    }
  }
};

// Runs argv to the end; its output.
inline std::string run_capture(const std::vector<std::string> &argv, const std::string &log) {
  Child c = Child::spawn(argv, log);
  c.wait(600);
  std::ifstream f(log);
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// A POST /ingest/logs body of `records` records shaped like the prototype's journald records
// (the seed's example).
inline std::string make_ingest_body(int records) {
  std::string s = "{\"logs\":[";
  char buf[1024];
  for (int i = 0; i < records; ++i) {
    std::snprintf(
        buf, sizeof buf,
        "%s{\"timestamp\":\"2025-11-28T19:55:%02d.%06dZ\",\"source\":\"journald\","
        "\"service\":\"loki.service\",\"host\":\"dev-services\",\"level\":\"INFO\","
        "\"message\":\"level=info ts=2025-11-28T19:55:40.431Z caller=table_manager.go:136 "
        "msg=\\\"uploading tables\\\" index=%d\",\"meta_json\":{\"pid\":\"493414\","
        "\"comm\":\"loki-linux-amd6\",\"facility\":\"3\"}}",
        i ? "," : "", i % 60, i * 1000 % 1000000, i);
    s += buf;
  }
  return s + "]}";
}

struct WrkResult {
  double requests_per_s = 0, p50_ms = 0, p99_ms = 0;
  long requests = 0, errors = 0;
  bool ok = false;
};

// wrk, closed loop: `connections` connections POST the file `body` to `url` for `seconds`; the
// Lua script and wrk's log go to `dir`.
inline WrkResult wrk_post(const std::string &wrk, int connections, int seconds,
                          const std::string &dir, const std::string &body, const std::string &url) {
  const std::string lua = dir + "/post.lua";
  std::ofstream(lua)
      << "wrk.method = \"POST\"\n"
         "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
         "local f = io.open(\""
      << body
      << "\", \"rb\")\n"
         "wrk.body = f:read(\"*a\")\nf:close()\n"
         "done = function(s, lat, req)\n"
         "  io.write(string.format(\"BENCH %d %d %d %d %d\\n\", s.requests, s.duration,"
         " lat:percentile(50), lat:percentile(99), s.errors.connect + s.errors.read +"
         " s.errors.write + s.errors.timeout + s.errors.status))\nend\n";
  std::string out = run_capture({wrk, "-t1", "-c" + std::to_string(connections),
                                 "-d" + std::to_string(seconds) + "s", "-s", lua, url},
                                dir + "/wrk.log");
  WrkResult r;
  auto at = out.find("BENCH ");
  if (at == std::string::npos) {
    std::fprintf(stderr, "wrk failed:\n%s\n", out.c_str());
    return r;
  }
  long long reqs, dur_us, p50, p99, errs;
  std::sscanf(out.c_str() + at, "BENCH %lld %lld %lld %lld %lld", &reqs, &dur_us, &p50, &p99,
              &errs);
  r.ok = true;
  r.requests = reqs;
  r.errors = errs;
  r.requests_per_s = static_cast<double>(reqs) / (static_cast<double>(dur_us) / 1e6);
  r.p50_ms = static_cast<double>(p50) / 1000;
  r.p99_ms = static_cast<double>(p99) / 1000;
  return r;
}

}  // namespace devmesh::bench
