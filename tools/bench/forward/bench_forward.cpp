// bench_forward: forward protocol ingestion through the real binaries, same client, same run.
//  1. devmesh forward (ack: accepted) -> null;
//  2. devmesh forward (ack: delivered) -> null: each chunk acked once the null output is done;
//  3. Fluent Bit 4.2.8 in_forward -> out_null, the peer (it acks a chunk once appended).
//  4. The comparison: Fluent Bit itself as the sender (tail of --lines lines ->
//     out_forward, its defaults), once into devmesh forward -> null and once into Fluent Bit
//     in_forward -> out_null; time until the receiver counted every line.
// The client is this program: --connections connections, each sending PackedForward chunks of
// --chunk records (Fluent Bit tail-like records, EventTime) with a chunk id and waiting for its
// ack before the next, as Fluent Bit's out_forward with require_ack_response does. Records/s
// (medians of --runs runs), the receivers' CPU seconds and the ratio devmesh / Fluent Bit.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench_support.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace {

using devmesh::bench::Child;
using devmesh::bench::free_port;
using devmesh::bench::median;
using devmesh::bench::wait_port;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  std::string fluent_bit = FLUENT_BIT_BIN;
  long records = 2000000;
  int chunk = 2000;
  int connections = 2;
  int runs = 3;
  long lines = 1000000;
};

// GET path on 127.0.0.1:port with a bare socket (polled every few ms: no process per poll).
std::string get(int port, const std::string &path) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  std::string out;
  // Fluent Bit's server keeps even an HTTP/1.0 connection open: bounded reads.
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
    const std::string req =
        "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[8192];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
        out.append(buf, static_cast<size_t>(n));
        const size_t head = out.find("\r\n\r\n");
        const size_t cl = out.find("Content-Length: ");
        if (head != std::string::npos && cl != std::string::npos && cl < head &&
            out.size() >= head + 4 + std::strtoul(out.c_str() + cl + 16, nullptr, 10))
          break;  // the whole body, whether or not the server closes
      }
    }
  }
  close(fd);
  return out;
}

// The number after `key` in text (the first occurrence after `after`), or -1.
double number_after(const std::string &text, const std::string &after, const std::string &key) {
  size_t at = text.find(after);
  if (at == std::string::npos) return -1;
  at = text.find(key, at);
  if (at == std::string::npos) return -1;
  return std::atof(text.c_str() + at + key.size());
}

void put_str(std::string &out, const std::string &s) {
  if (s.size() < 32) {
    out += static_cast<char>(0xa0 | s.size());
  } else if (s.size() < 256) {
    out += '\xd9';
    out += static_cast<char>(s.size());
  } else {
    out += '\xda';
    out += static_cast<char>(s.size() >> 8);
    out += static_cast<char>(s.size() & 0xff);
  }
  out += s;
}
void put_be32(std::string &out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out += static_cast<char>(v >> (8 * i));
}

// ["bench", bin(entries), {"chunk": id}] with `n` entries [EventTime, {"log": ..., "stream":
// "stdout"}], about 110 bytes of log line each.
std::string make_chunk(int n, const std::string &id) {
  std::string entries;
  char line[160];
  for (int i = 0; i < n; ++i) {
    entries += '\x92';
    entries.append("\xd7\x00", 2);  // fixext 8, type 0: EventTime
    put_be32(entries, 1764344843u + static_cast<uint32_t>(i / 1000));
    put_be32(entries, static_cast<uint32_t>(i % 1000) * 1000000u);
    entries += '\x82';
    put_str(entries, "log");
    std::snprintf(line, sizeof line,
                  "2026-12-06T21:00:00Z INFO checkout request_id=%d took 12ms path=/api/v1/orders "
                  "status=200 user=u%d",
                  i, i % 97);
    put_str(entries, line);
    put_str(entries, "stream");
    put_str(entries, "stdout");
  }
  std::string m = "\x93";
  put_str(m, "bench");
  m += '\xc6';
  put_be32(m, static_cast<uint32_t>(entries.size()));
  m += entries;
  m += '\x81';
  put_str(m, "chunk");
  put_str(m, id);
  return m;
}

std::string ack_of(const std::string &id) {
  std::string a = "\x81";
  put_str(a, "ack");
  put_str(a, id);
  return a;
}

// Sends `messages` chunks on one connection, each after the previous one's ack. False on error.
bool send_chunks(int port, const std::string &chunk, const std::string &ack, long messages) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) return close(fd), false;
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string got;
  char buf[256];
  for (long m = 0; m < messages; ++m) {
    for (size_t sent = 0; sent < chunk.size();) {
      const ssize_t n = send(fd, chunk.data() + sent, chunk.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return close(fd), false;
      sent += static_cast<size_t>(n);
    }
    while (got.size() < ack.size()) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return close(fd), false;
      got.append(buf, static_cast<size_t>(n));
    }
    if (got.compare(0, ack.size(), ack) != 0) return close(fd), false;
    got.erase(0, ack.size());
  }
  close(fd);
  return true;
}

struct Result {
  double records_per_s = 0, cpu_s = 0;
  bool ok = false;
};

// The devmesh receiver's count of records taken (its /metrics), -1 when unreadable.
double taken(int admin) {
  const std::string out = devmesh::bench::run_capture(
      {"/usr/bin/curl", "-s", "http://127.0.0.1:" + std::to_string(admin) + "/metrics"},
      "/tmp/bench-forward-metrics.log");
  const std::string name = "devmesh_forward_records_total{";
  const size_t at = out.find(name);
  if (at == std::string::npos) return -1;
  const size_t eol = out.find('\n', at);
  return std::atof(out.substr(out.rfind(' ', eol) + 1, eol).c_str());
}

Result blast(const Options &o, Child &receiver, int port) {
  Result r;
  if (receiver.pid <= 0 || !wait_port(port)) return r;
  const std::string id = "0123456789abcdef0123456789abcdef";
  const std::string chunk = make_chunk(o.chunk, id), ack = ack_of(id);
  const long messages = o.records / o.chunk;
  const double cpu0 = receiver.cpu_s();
  std::atomic<bool> ok{true};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < o.connections; ++c) {
    const long mine = messages / o.connections + (c < messages % o.connections ? 1 : 0);
    threads.emplace_back([&, mine] {
      if (!send_chunks(port, chunk, ack, mine)) ok = false;
    });
  }
  for (auto &t : threads) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.ok = ok;
  r.records_per_s = static_cast<double>(messages * o.chunk) / s;
  r.cpu_s = receiver.cpu_s() - cpu0;
  return r;
}

Child start_devmesh(const Options &o, const std::string &dir, int port, int admin,
                    const std::string &ack) {
  const std::string cfg = dir + "/devmesh-" + ack + ".yaml";
  std::ofstream(cfg) << "service:\n  plugins_dir: [" << o.plugins
                     << "]\n  log_level: warn\n  http_listen: 127.0.0.1:" << admin
                     << "\npipeline:\n  inputs:\n    - {name: forward, "
                        "listen: '127.0.0.1:"
                     << port << "', ack: " << ack << "}\n  outputs:\n    - {name: 'null'}\n";
  return Child::spawn({o.devmesh, "-c", cfg}, dir + "/devmesh-" + ack + ".log");
}

Child start_fluent_bit(const Options &o, const std::string &dir, int port) {
  const std::string cfg = dir + "/fluent-bit.yaml";
  std::ofstream(cfg) << "service:\n  log_level: warn\npipeline:\n  inputs:\n    - name: forward\n"
                        "      listen: 127.0.0.1\n      port: "
                     << port << "\n  outputs:\n    - name: 'null'\n      match: '*'\n";
  return Child::spawn({o.fluent_bit, "-c", cfg}, dir + "/fluent-bit.log");
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--records")
      o.records = std::atol(v.c_str());
    else if (k == "--chunk")
      o.chunk = std::atoi(v.c_str());
    else if (k == "--connections")
      o.connections = std::atoi(v.c_str());
    else if (k == "--runs")
      o.runs = std::atoi(v.c_str());
    else if (k == "--fluent-bit")
      o.fluent_bit = v;
    else if (k == "--lines")
      o.lines = std::atol(v.c_str());
    else {
      std::fprintf(stderr,
                   "usage: %s [--records N] [--chunk N] [--connections N] [--runs N] "
                   "[--lines N] [--fluent-bit PATH]\n",
                   argv[0]);
      return 2;
    }
  }
  const bool have_fb = std::filesystem::exists(o.fluent_bit);
  char tmpl[] = "/tmp/bench-forward-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::vector<double> accepted, delivered, peer, cpu_acc, cpu_del, cpu_peer;
  for (int run = 0; run < o.runs; ++run) {
    for (int which = 0; which < 3; ++which) {
      if (which == 2 && !have_fb) continue;
      const int port = free_port(), admin = free_port();
      Child rx = which == 2
                     ? start_fluent_bit(o, dir, port)
                     : start_devmesh(o, dir, port, admin, which == 0 ? "accepted" : "delivered");
      const Result r = blast(o, rx, port);
      // Every record taken, none skipped: the figure counts records, not refusals.
      const double n = which == 2 ? 0 : taken(admin);
      rx.stop();
      if (which != 2 && n != static_cast<double>(o.records / o.chunk * o.chunk)) {
        std::fprintf(stderr, "devmesh took %.0f records of %ld (logs in %s)\n", n, o.records,
                     dir.c_str());
        return 1;
      }
      if (!r.ok) {
        std::fprintf(stderr, "run %d receiver %d failed (logs in %s)\n", run, which, dir.c_str());
        return 1;
      }
      (which == 0 ? accepted : which == 1 ? delivered : peer).push_back(r.records_per_s);
      (which == 0 ? cpu_acc : which == 1 ? cpu_del : cpu_peer).push_back(r.cpu_s);
    }
  }
  std::printf("forward: %ld records in chunks of %d over %d connections, median of %d runs\n",
              o.records, o.chunk, o.connections, o.runs);
  std::printf("  devmesh forward (ack: accepted)  -> null: %10.0f records/s, %.2f CPU s\n",
              median(accepted), median(cpu_acc));
  std::printf("  devmesh forward (ack: delivered) -> null: %10.0f records/s, %.2f CPU s\n",
              median(delivered), median(cpu_del));
  if (have_fb) {
    std::printf("  Fluent Bit in_forward -> out_null:        %10.0f records/s, %.2f CPU s\n",
                median(peer), median(cpu_peer));
    std::printf("  ratio devmesh (accepted) / Fluent Bit: %.2f\n", median(accepted) / median(peer));
  } else {
    std::printf("  (no Fluent Bit at %s: no peer figure)\n", o.fluent_bit.c_str());
  }
  if (have_fb) {
    // 4. Fluent Bit as the sender.
    {
      std::ofstream f(dir + "/app.log");
      for (long i = 1; i <= o.lines; ++i)
        f << "2026-12-06T21:00:00Z INFO checkout request_id=" << i
          << " took 12ms path=/api/v1/orders status=200\n";
    }
    std::vector<double> into_devmesh, into_fb;
    for (int run = 0; run < o.runs; ++run) {
      for (int which = 0; which < 2; ++which) {
        const int port = free_port(), admin = free_port();
        Child rx;
        if (which == 0) {
          rx = start_devmesh(o, dir, port, admin, "accepted");
        } else {
          const std::string cfg = dir + "/fb-rx.yaml";
          std::ofstream(cfg)
              << "service:\n  flush: 0.2\n  log_level: warn\n  http_server: on\n  http_listen: "
                 "127.0.0.1\n  http_port: "
              << admin
              << "\npipeline:\n  inputs:\n    - name: forward\n      listen: "
                 "127.0.0.1\n      port: "
              << port << "\n  outputs:\n    - name: 'null'\n      match: '*'\n";
          rx = Child::spawn({o.fluent_bit, "-c", cfg}, dir + "/fb-rx.log");
        }
        if (!wait_port(port) || !wait_port(admin)) {
          std::fprintf(stderr, "receiver %d did not start (logs in %s)\n", which, dir.c_str());
          return 1;
        }
        const std::string scfg = dir + "/fb-tx.yaml";
        std::ofstream(scfg) << "service:\n  flush: 0.2\n  log_level: warn\npipeline:\n  inputs:\n"
                               "    - name: tail\n      path: "
                            << dir << "/app.log\n      read_from_head: true\n  outputs:\n"
                            << "    - name: forward\n      match: '*'\n      host: 127.0.0.1\n"
                            << "      port: " << port << "\n      retry_limit: false\n";
        const auto t0 = std::chrono::steady_clock::now();
        Child tx = Child::spawn({o.fluent_bit, "-c", scfg}, dir + "/fb-tx.log");
        double n = 0;
        const auto end = t0 + std::chrono::seconds(300);
        while (n < static_cast<double>(o.lines) && std::chrono::steady_clock::now() < end) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          n = which == 0
                  ? number_after(get(admin, "/metrics"), "devmesh_forward_records_total{", "} ")
                  : number_after(get(admin, "/api/v1/metrics"), "\"input\"", "\"records\":");
        }
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        tx.stop();
        rx.stop();
        if (n < static_cast<double>(o.lines)) {
          std::fprintf(stderr, "receiver %d counted %.0f of %ld lines (logs in %s)\n", which, n,
                       o.lines, dir.c_str());
          return 1;
        }
        (which == 0 ? into_devmesh : into_fb).push_back(static_cast<double>(o.lines) / secs);
      }
    }
    std::printf("Fluent Bit tail -> out_forward (%ld lines), median of %d runs:\n", o.lines,
                o.runs);
    std::printf("  -> devmesh forward -> null:           %10.0f records/s\n", median(into_devmesh));
    std::printf("  -> Fluent Bit in_forward -> out_null: %10.0f records/s\n", median(into_fb));
    std::printf("  ratio devmesh / Fluent Bit: %.2f\n", median(into_devmesh) / median(into_fb));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
