// bench_syslog: the syslog input over TCP -> null through the real devmesh binary, against
// rsyslog's imptcp -> omfile (the peer the issue names as the ceiling) on the same lines in the
// same run. One connection sends --lines RFC 5424 lines of about 110 bytes, newline framed (what
// both take); the rate is lines over the time from the first byte sent to the last line taken
// (devmesh: its syslog_messages_total; rsyslog: the lines in its output file), plus lines per
// CPU second of the receiver. Medians of --runs runs, the two alternating.
//   bench_syslog [--lines N] [--runs R] [--rsyslogd PATH]
#include <sys/stat.h>

#include <filesystem>

#include "bench_support.h"

#ifndef DEVMESH_BENCH_BINARY
#define DEVMESH_BENCH_BINARY ""
#endif
#ifndef DEVMESH_BENCH_PLUGIN_DIR
#define DEVMESH_BENCH_PLUGIN_DIR ""
#endif

extern char **environ;

namespace devmesh::bench {
namespace {

struct Result {
  double seconds = 0, cpu_s = 0;
};

std::string make_lines(int n) {
  std::string s;
  s.reserve(static_cast<size_t>(n) * 120);
  char buf[256];
  for (int i = 0; i < n; ++i) {
    const int len = std::snprintf(buf, sizeof buf,
                                  "<134>1 2025-11-28T19:55:40.%06dZ web01.example.com nginx 1234 "
                                  "- - GET /api/v1/items?id=%d 200 0.012 upstream=10.0.0.7\n",
                                  i % 1000000, i);
    s.append(buf, static_cast<size_t>(len));
  }
  return s;
}

void send_all(int port, const std::string &data) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  for (size_t at = 0; at < data.size();) {
    const ssize_t n = send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0) break;
    at += static_cast<size_t>(n);
  }
  close(fd);
}

// GET path on 127.0.0.1:port, the body ("" on failure).
std::string http_get(int port, const std::string &path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
    const std::string req = "GET " + path + " HTTP/1.0\r\nHost: x\r\n\r\n";
    (void)!write(fd, req.data(), req.size());
    char buf[65536];
    for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t body = out.find("\r\n\r\n");
  return body == std::string::npos ? "" : out.substr(body + 4);
}

double metric(const std::string &text, const std::string &name) {
  const size_t at = text.find("\n" + name + "{");
  if (at == std::string::npos) return 0;
  const size_t end = text.find('\n', at + 1);
  const std::string line = text.substr(at + 1, end - at - 1);
  return std::atof(line.c_str() + line.rfind(' ') + 1);
}

Result run_devmesh(const std::string &dir, const std::string &lines, int n) {
  const int port = free_port(), http = free_port();
  const std::string yaml = dir + "/devmesh.yaml";
  std::ofstream(yaml) << "service:\n  plugins_dir: [" DEVMESH_BENCH_PLUGIN_DIR
                         "]\n  http_listen: "
                         "127.0.0.1:"
                      << http << "\npipeline:\n  inputs:\n    - {name: syslog, mode: tcp, listen: "
                      << "'127.0.0.1:" << port << "'}\n  outputs:\n    - {name: 'null'}\n";
  Child c = Child::spawn({DEVMESH_BENCH_BINARY, "-c", yaml}, dir + "/devmesh.log");
  if (!wait_port(port) || !wait_port(http)) {
    std::fprintf(stderr, "devmesh did not start (see %s/devmesh.log)\n", dir.c_str());
    std::exit(1);
  }
  const double cpu0 = c.cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  std::thread sender([&] { send_all(port, lines); });
  while (metric(http_get(http, "/metrics"), "devmesh_syslog_messages_total") < n)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_s = c.cpu_s() - cpu0;
  sender.join();
  c.stop();
  return r;
}

// Lines in `path` so far, counted from `offset` on (both advanced).
long count_lines(const std::string &path, std::ifstream &f, long &lines) {
  if (!f.is_open()) f.open(path, std::ios::binary);
  if (!f.is_open()) return lines;
  f.clear();
  char buf[1 << 16];
  for (;;) {
    f.read(buf, sizeof buf);
    const std::streamsize got = f.gcount();
    if (got <= 0) break;
    lines += std::count(buf, buf + got, '\n');
  }
  return lines;
}

Result run_rsyslog(const std::string &rsyslogd, const std::string &dir, const std::string &lines,
                   int n) {
  const int port = free_port();
  const std::string work = dir + "/rsyslog-work", out = dir + "/rsyslog.out";
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  std::filesystem::remove(out);
  const std::string conf = dir + "/rsyslog.conf";
  std::ofstream(conf) << "global(workDirectory=\"" << work << "\" maxMessageSize=\"64k\")\n"
                      << "module(load=\"imptcp\")\ninput(type=\"imptcp\" address=\"127.0.0.1\" "
                      << "port=\"" << port << "\")\n"
                      << "action(type=\"omfile\" file=\"" << out
                      << "\" template=\"RSYSLOG_FileFormat\")\n";
  Child c =
      Child::spawn({rsyslogd, "-n", "-f", conf, "-i", dir + "/rsyslog.pid"}, dir + "/rsyslog.log");
  if (!wait_port(port)) {
    std::fprintf(stderr, "rsyslogd did not start (see %s/rsyslog.log)\n", dir.c_str());
    std::exit(1);
  }
  const double cpu0 = c.cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  std::thread sender([&] { send_all(port, lines); });
  std::ifstream f;
  long got = 0;
  while (count_lines(out, f, got) < n) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.cpu_s = c.cpu_s() - cpu0;
  sender.join();
  c.stop();
  return r;
}

}  // namespace
}  // namespace devmesh::bench

int main(int argc, char **argv) {
  using namespace devmesh::bench;
  int n = 1000000, runs = 3;
  std::string rsyslogd = "/usr/sbin/rsyslogd";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--lines") n = std::atoi(argv[i + 1]);
    if (k == "--runs") runs = std::atoi(argv[i + 1]);
    if (k == "--rsyslogd") rsyslogd = argv[i + 1];
  }
  char tmpl[] = "/tmp/bench-syslog-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string lines = make_lines(n);
  const bool peer = access(rsyslogd.c_str(), X_OK) == 0;
  std::printf("syslog over TCP, %d lines of %.0f bytes, one connection, newline framing\n", n,
              static_cast<double>(lines.size()) / n);
  std::vector<double> dm, dm_cpu, rs, rs_cpu;
  for (int run = 1; run <= runs; ++run) {
    const Result d = run_devmesh(dir, lines, n);
    dm.push_back(n / d.seconds);
    dm_cpu.push_back(n / d.cpu_s);
    std::printf("  run %d: devmesh syslog -> null   %9.0f lines/s  %9.0f lines/CPU-s\n", run,
                dm.back(), dm_cpu.back());
    if (!peer) continue;
    const Result r = run_rsyslog(rsyslogd, dir, lines, n);
    rs.push_back(n / r.seconds);
    rs_cpu.push_back(n / r.cpu_s);
    std::printf("  run %d: rsyslog imptcp -> omfile %9.0f lines/s  %9.0f lines/CPU-s\n", run,
                rs.back(), rs_cpu.back());
  }
  std::printf("median: devmesh %.0f lines/s (%.0f per CPU-s)", median(dm), median(dm_cpu));
  if (peer)
    std::printf(", rsyslog %.0f lines/s (%.0f per CPU-s): devmesh/rsyslog %.2f", median(rs),
                median(rs_cpu), median(dm) / median(rs));
  else
    std::printf(" (%s missing: no rsyslog ceiling)", rsyslogd.c_str());
  std::printf("\n");
  std::filesystem::remove_all(dir);
  return 0;
}
