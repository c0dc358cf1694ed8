// bench_syslog: the syslog input over TCP -> null through the real devmesh binary, against
// rsyslog's imptcp -> omfile (the peer the issue names as the ceiling) on the same lines in the
// same run. One connection sends --lines RFC 5424 lines of about 110 bytes, newline framed (what
// both take); the rate is lines over the time from the first byte sent to the last line taken
// (devmesh: its syslog_messages_total; rsyslog: the lines in its output file), plus lines per
// CPU second of the receiver. Medians of --runs runs, the two alternating.
// --udp: the same lines as datagrams (one line each, sendmmsg) into imudp and devmesh's udp mode,
// both with an 8 MiB receive buffer; an unpaced sender outruns a receiver, so what counts is the
// lines taken per CPU second of the receiver, and the share the kernel dropped is printed.
//   bench_syslog [--lines N] [--runs R] [--rsyslogd PATH] [--udp]
#include <sys/stat.h>

#include <atomic>
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
  long taken = 0;  // lines the receiver took (over UDP, fewer than sent when the kernel dropped)
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

// A socket of `type` connected to 127.0.0.1:port (the process exits when it cannot be).
int connect_loopback(int type, int port) {
  const int fd = socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    std::perror("connect");
    std::exit(1);
  }
  return fd;
}

// Each line as one datagram, 64 per sendmmsg.
void send_datagrams(int port, const std::string &data) {
  const int fd = connect_loopback(SOCK_DGRAM, port);
  constexpr int kBatch = 64;
  mmsghdr msgs[kBatch];
  iovec iov[kBatch];
  for (size_t at = 0; at < data.size();) {
    int n = 0;
    for (; n < kBatch && at < data.size(); ++n) {
      const size_t end = std::min(data.find('\n', at), data.size());
      iov[n] = iovec{const_cast<char *>(data.data() + at), end - at};
      msgs[n] = mmsghdr{};
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
      at = end + 1;
    }
    for (int sent = 0; sent < n;) {
      const int r = sendmmsg(fd, msgs + sent, static_cast<unsigned>(n - sent), 0);
      if (r <= 0) break;  // ECONNREFUSED and the like: the receiver's count tells
      sent += r;
    }
  }
  close(fd);
}

void send_all(int port, const std::string &data) {
  const int fd = connect_loopback(SOCK_STREAM, port);
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

// A UDP receiver cannot be probed by connecting: a probe datagram every 25 ms until `taken`
// counts one (at most 10 s).
template <class Taken>
bool udp_ready(int port, Taken taken) {
  for (int i = 0; i < 400; ++i) {
    send_datagrams(port, "<13>1 2025-11-28T19:55:40Z probe bench - - - probe\n");
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (taken() > 0) return true;
  }
  return false;
}

// The line count `taken` reports, once it reaches n or, over UDP (where the kernel may drop),
// stops growing for 500 ms after the sender is done; the time is up to its last growth.
template <class Taken>
Result wait_taken(Child &c, std::thread &sender, bool udp, int n, Taken taken) {
  const double cpu0 = c.cpu_s();
  const auto t0 = std::chrono::steady_clock::now();
  auto last_growth = t0;
  long last = 0;
  std::atomic<bool> sent{false};
  std::thread watch([&] {
    sender.join();
    sent = true;
  });
  for (;;) {
    const long got = taken();
    const auto now = std::chrono::steady_clock::now();
    if (got != last) last = got, last_growth = now;
    if (got >= n) break;
    if (udp && sent && now - last_growth > std::chrono::milliseconds(500)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  watch.join();
  Result r;
  r.seconds = std::chrono::duration<double>(last_growth - t0).count();
  r.cpu_s = c.cpu_s() - cpu0;
  r.taken = last;
  return r;
}

Result run_devmesh(const std::string &dir, const std::string &lines, int n, bool udp) {
  const int port = free_port(), http = free_port();
  const std::string yaml = dir + "/devmesh.yaml";
  std::ofstream(yaml) << "service:\n  plugins_dir: [" DEVMESH_BENCH_PLUGIN_DIR
                         "]\n  http_listen: "
                         "127.0.0.1:"
                      << http << "\npipeline:\n  inputs:\n    - {name: syslog, mode: "
                      << (udp ? "udp, receive_buffer: 8MiB" : "tcp") << ", listen: "
                      << "'127.0.0.1:" << port << "'}\n  outputs:\n    - {name: 'null'}\n";
  Child c = Child::spawn({DEVMESH_BENCH_BINARY, "-c", yaml}, dir + "/devmesh.log");
  if (!wait_port(udp ? http : port) || !wait_port(http)) {
    std::fprintf(stderr, "devmesh did not start (see %s/devmesh.log)\n", dir.c_str());
    std::exit(1);
  }
  auto taken = [&] {
    return static_cast<long>(metric(http_get(http, "/metrics"), "devmesh_syslog_messages_total"));
  };
  if (udp && !udp_ready(port, taken)) {
    std::fprintf(stderr, "devmesh took no datagram (see %s/devmesh.log)\n", dir.c_str());
    std::exit(1);
  }
  const long before = udp ? taken() : 0;  // the probes
  std::thread sender([&] { udp ? send_datagrams(port, lines) : send_all(port, lines); });
  const Result r = wait_taken(c, sender, udp, n, [&] { return taken() - before; });
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
                   int n, bool udp) {
  const int port = free_port();
  const std::string work = dir + "/rsyslog-work", out = dir + "/rsyslog.out";
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  std::filesystem::remove(out);
  const std::string conf = dir + "/rsyslog.conf";
  std::ofstream(conf) << "global(workDirectory=\"" << work << "\" maxMessageSize=\"64k\")\n"
                      << (udp ? "module(load=\"imudp\")\ninput(type=\"imudp\" rcvbufSize=\"8m\" "
                              : "module(load=\"imptcp\")\ninput(type=\"imptcp\" ")
                      << "address=\"127.0.0.1\" port=\"" << port << "\")\n"
                      << "action(type=\"omfile\" file=\"" << out
                      << "\" template=\"RSYSLOG_FileFormat\")\n";
  Child c =
      Child::spawn({rsyslogd, "-n", "-f", conf, "-i", dir + "/rsyslog.pid"}, dir + "/rsyslog.log");
  std::ifstream f;
  long got = 0;
  if (udp ? !udp_ready(port, [&] { return count_lines(out, f, got); }) : !wait_port(port)) {
    std::fprintf(stderr, "rsyslogd did not start (see %s/rsyslog.log)\n", dir.c_str());
    std::exit(1);
  }
  const long before = count_lines(out, f, got);  // the probes, over UDP
  std::thread sender([&] { udp ? send_datagrams(port, lines) : send_all(port, lines); });
  const Result r = wait_taken(c, sender, udp, n, [&] { return count_lines(out, f, got) - before; });
  c.stop();
  return r;
}

}  // namespace
}  // namespace devmesh::bench

int main(int argc, char **argv) {
  using namespace devmesh::bench;
  int n = 1000000, runs = 3;
  std::string rsyslogd = "/usr/sbin/rsyslogd";
  bool udp = false;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--udp") udp = true;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--udp") {
      --i;
      continue;
    }
    if (k == "--lines") n = std::atoi(argv[i + 1]);
    if (k == "--runs") runs = std::atoi(argv[i + 1]);
    if (k == "--rsyslogd") rsyslogd = argv[i + 1];
  }
  char tmpl[] = "/tmp/bench-syslog-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string lines = make_lines(n);
  const bool peer = access(rsyslogd.c_str(), X_OK) == 0;
  if (udp)
    std::printf("syslog over UDP, %d datagrams of %.0f bytes, one sender (sendmmsg)\n", n,
                static_cast<double>(lines.size()) / n - 1);
  else
    std::printf("syslog over TCP, %d lines of %.0f bytes, one connection, newline framing\n", n,
                static_cast<double>(lines.size()) / n);
  std::vector<double> dm, dm_cpu, rs, rs_cpu;
  for (int run = 1; run <= runs; ++run) {
    const Result d = run_devmesh(dir, lines, n, udp);
    dm.push_back(d.taken / d.seconds);
    dm_cpu.push_back(d.taken / d.cpu_s);
    std::printf("  run %d: devmesh syslog -> null   %9.0f lines/s  %9.0f lines/CPU-s", run,
                dm.back(), dm_cpu.back());
    if (udp) std::printf("  (%.1f%% dropped by the kernel)", 100.0 * (n - d.taken) / n);
    std::printf("\n");
    if (!peer) continue;
    const Result r = run_rsyslog(rsyslogd, dir, lines, n, udp);
    rs.push_back(r.taken / r.seconds);
    rs_cpu.push_back(r.taken / r.cpu_s);
    std::printf("  run %d: rsyslog %s -> omfile %9.0f lines/s  %9.0f lines/CPU-s", run,
                udp ? "imudp " : "imptcp", rs.back(), rs_cpu.back());
    if (udp) std::printf("  (%.1f%% dropped by the kernel)", 100.0 * (n - r.taken) / n);
    std::printf("\n");
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
