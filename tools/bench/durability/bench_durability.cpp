// bench_durability: what write-ahead storage costs on the http input. wrk posts 500-record JSON
// bodies over 4 connections (closed loop) to http -> null with
//   memory   no storage (the ceiling of this run),
//   interval storage, sync: interval (1s), ack: accepted,
//   always   storage, sync: always (group commit), ack: accepted,
//   durable  storage, sync: always, ack: durable (each 2xx waits for its fsync),
// and prints records/s, p99 latency and each mode's ratio to memory. Medians of --runs runs.
//
// Then the aggregator with storage (issue 17): a sidecar (dummy at --forward-rate records/s ->
// http_forward, gzip off) -> aggregator (http ack: delivered, storage at its default sync) ->
// null or sqlite. Prints the records/s the aggregator's output drained (ratio to the rate
// offered: the ceiling), each request's latency (median, p99: timed by a relay between the two,
// first byte of a request to first byte of its answer), the fsyncs, and peak RSS. With
// --base NAME=DEVMESH:PLUGINS_DIR (repeatable) other builds run interleaved with this one.
#include <poll.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_support.h"

extern char **environ;

namespace {

namespace fs = std::filesystem;
namespace bench = devmesh::bench;
using bench::free_port;
using bench::median;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  std::string wrk = "/usr/bin/wrk";
  std::string dir;  // where the segment files go (default: a temp dir)
  int records = 500, connections = 4, seconds = 5, runs = 3;
  bool wrk_modes = true, forward = true;
  // Other builds to compare with (forward case): NAME=DEVMESH:PLUGINS_DIR each.
  std::vector<std::string> bases;
  double forward_rate = 4000;
  int forward_seconds = 10, forward_warmup = 3;
  std::string forward_sink = "null";  // or sqlite
};

struct Result {
  double records_per_s = 0, p99_ms = 0;
  long errors = 0;
};

Result wrk_run(const Options &o, const std::string &dir, const std::string &url) {
  const bench::WrkResult w =
      bench::wrk_post(o.wrk, o.connections, o.seconds, dir, dir + "/body.json", url);
  Result r;
  r.records_per_s = w.requests_per_s * o.records;
  r.p99_ms = w.p99_ms;
  r.errors = w.errors;
  return r;
}

struct Mode {
  const char *name;
  const char *storage;  // service.storage body, or null
  const char *ack;
};

Result run_mode(const Options &o, const std::string &dir, const Mode &m) {
  const std::string data = (o.dir.empty() ? dir : o.dir) + "/data-" + m.name;
  fs::remove_all(data);
  const int port = free_port();
  std::string yaml = "service:\n  plugins_dir: [" + o.plugins + "]\n  log_level: warn\n";
  if (m.storage) yaml += "  storage:\n    path: " + data + "\n" + m.storage;
  yaml += "pipeline:\n  inputs:\n    - {name: http, ack: " + std::string(m.ack) +
          ", listen: '127.0.0.1:" + std::to_string(port) + "'}\n  outputs:\n    - {name: 'null'}\n";
  std::ofstream(dir + "/engine.yaml") << yaml;
  bench::Child e = bench::Child::spawn({o.devmesh, "-c", dir + "/engine.yaml"},
                                       dir + "/engine-" + m.name + ".log");
  bench::wait_port(port);
  Result r = wrk_run(o, dir, "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs");
  e.stop();
  fs::remove_all(data);
  return r;
}

// A TCP relay that times HTTP requests: from the first byte a client sends after its previous
// answer to the first byte of the next answer. http_forward has one request at a time on a
// connection (keep-alive), so that is each request's latency as the sidecar sees it.
class TimingRelay {
 public:
  TimingRelay(int port, int target) : target_(target) {
    lfd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bind(lfd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
    listen(lfd_, 64);
    thread_ = std::thread([this] { run(); });
  }
  ~TimingRelay() {
    stop_ = true;
    thread_.join();
    for (auto &c : conns_) close(c.client), close(c.server);
    close(lfd_);
  }
  // The latencies (ms) since the last call.
  std::vector<double> take() {
    std::lock_guard<std::mutex> lk(mu_);
    return std::exchange(latencies_, {});
  }

 private:
  struct Conn {
    int client, server;
    bool pending = false;
    std::chrono::steady_clock::time_point start;
  };

  static bool send_all(int fd, const char *p, ssize_t n) {
    while (n > 0) {
      ssize_t w = send(fd, p, static_cast<size_t>(n), MSG_NOSIGNAL);
      if (w <= 0) return false;
      p += w;
      n -= w;
    }
    return true;
  }

  void run() {
    std::vector<char> buf(1 << 16);
    while (!stop_) {
      std::vector<pollfd> fds{{lfd_, POLLIN, 0}};
      for (auto &c : conns_) {
        fds.push_back({c.client, POLLIN, 0});
        fds.push_back({c.server, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 100) <= 0) continue;
      std::vector<size_t> dead;
      for (size_t i = 0; i < conns_.size(); i++) {
        Conn &c = conns_[i];
        for (int side = 0; side < 2; side++) {
          if (!(fds[1 + 2 * i + side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const int from = side ? c.server : c.client, to = side ? c.client : c.server;
          ssize_t n = recv(from, buf.data(), buf.size(), 0);
          if (n <= 0 || !send_all(to, buf.data(), n)) {
            dead.push_back(i);
            break;
          }
          const auto now = std::chrono::steady_clock::now();
          if (!side && !c.pending) {
            c.pending = true;
            c.start = now;
          } else if (side && c.pending) {
            c.pending = false;
            std::lock_guard<std::mutex> lk(mu_);
            latencies_.push_back(std::chrono::duration<double, std::milli>(now - c.start).count());
          }
        }
      }
      for (size_t k = dead.size(); k-- > 0;) {
        close(conns_[dead[k]].client);
        close(conns_[dead[k]].server);
        conns_.erase(conns_.begin() + static_cast<long>(dead[k]));
      }
      if (fds[0].revents & POLLIN) {
        int c = accept(lfd_, nullptr, nullptr);
        int sfd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<uint16_t>(target_));
        if (c >= 0 && connect(sfd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) {
          conns_.push_back({c, sfd, false, {}});
        } else {
          if (c >= 0) close(c);
          close(sfd);
        }
      }
    }
  }

  int lfd_ = -1, target_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<Conn> conns_;  // the relay thread's only
  std::mutex mu_;
  std::vector<double> latencies_;
};

// A sample of `name` from /metrics on port whose line holds `label` (0 when absent).
double scrape(const std::string &dir, int port, const std::string &name, const std::string &label) {
  const std::string out = bench::run_capture(
      {"/usr/bin/curl", "-s", "http://127.0.0.1:" + std::to_string(port) + "/metrics"},
      dir + "/curl.log");
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line))
    if ((line.rfind(name + "{", 0) == 0 || line.rfind(name + " ", 0) == 0) &&
        line.find(label) != std::string::npos)
      return std::atof(line.substr(line.rfind(' ') + 1).c_str());
  return 0;
}

struct ForwardResult {
  double drained_per_s = 0, p50_ms = 0, p99_ms = 0, fsyncs = 0;
  size_t requests = 0;
  long aggregator_rss_kib = 0, sidecar_rss_kib = 0;
};

// One sidecar -> aggregator run with the given build: warm-up, then a measured window.
ForwardResult run_forward(const Options &o, const std::string &dir, const std::string &devmesh,
                          const std::string &plugins, const std::string &name) {
  const std::string data = (o.dir.empty() ? dir : o.dir) + "/data-forward-" + name;
  fs::remove_all(data);
  fs::remove(dir + "/forward.db");
  const int aport = free_port(), mport = free_port(), rport = free_port();
  const std::string sink = o.forward_sink == "sqlite"
                               ? "{name: sqlite, path: " + dir + "/forward.db}"
                               : std::string("{name: 'null'}");
  std::ofstream(dir + "/aggregator.yaml")
      << "service:\n  plugins_dir: [" << plugins << "]\n  log_level: warn\n  http_listen: "
      << "127.0.0.1:" << mport << "\n  storage:\n    path: " << data
      << "\npipeline:\n  inputs:\n    - {name: http, ack: delivered, listen: '127.0.0.1:" << aport
      << "'}\n  outputs:\n    - " << sink << "\n";
  std::ofstream(dir + "/sidecar.yaml")
      << "service:\n  plugins_dir: [" << plugins
      << "]\n  log_level: warn\npipeline:\n  inputs:\n    - {name: dummy, rate: " << o.forward_rate
      << "}\n  outputs:\n    - {name: http_forward, url: 'http://127.0.0.1:" << rport
      << "/ingest/logs', gzip: false}\n";
  TimingRelay relay(rport, aport);
  bench::Child agg = bench::Child::spawn({devmesh, "-c", dir + "/aggregator.yaml"},
                                         dir + "/aggregator-" + name + ".log");
  bench::wait_port(mport);
  bench::Child side = bench::Child::spawn({devmesh, "-c", dir + "/sidecar.yaml"},
                                          dir + "/sidecar-" + name + ".log");
  const std::string out_label = "kind=\"output\"";
  std::this_thread::sleep_for(std::chrono::seconds(o.forward_warmup));
  relay.take();
  const double out0 = scrape(dir, mport, "devmesh_records_out_total", out_label);
  const double fs0 = scrape(dir, mport, "devmesh_storage_fsyncs_total", "");
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(o.forward_seconds));
  const double out1 = scrape(dir, mport, "devmesh_records_out_total", out_label);
  const double fs1 = scrape(dir, mport, "devmesh_storage_fsyncs_total", "");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<double> lat = relay.take();
  std::sort(lat.begin(), lat.end());
  ForwardResult r;
  r.drained_per_s = (out1 - out0) / secs;
  r.fsyncs = fs1 - fs0;
  r.requests = lat.size();
  r.p50_ms = bench::percentile(lat, 50);
  r.p99_ms = bench::percentile(lat, 99);
  r.aggregator_rss_kib = agg.hwm_kib();
  r.sidecar_rss_kib = side.hwm_kib();
  side.stop();
  agg.stop();
  fs::remove_all(data);
  return r;
}

void forward_bench(const Options &o, const std::string &dir) {
  struct Build {
    std::string name, devmesh, plugins;
    std::vector<double> drained, p50, p99, fsyncs, requests, agg_rss, side_rss;
  };
  std::vector<Build> builds;
  for (const std::string &spec : o.bases) {
    const size_t eq = spec.find('='), colon = spec.rfind(':');
    if (eq == std::string::npos || colon == std::string::npos || colon < eq) {
      std::fprintf(stderr, "--base %s: expected NAME=DEVMESH:PLUGINS_DIR\n", spec.c_str());
      continue;
    }
    Build b;
    b.name = spec.substr(0, eq);
    b.devmesh = spec.substr(eq + 1, colon - eq - 1);
    b.plugins = spec.substr(colon + 1);
    builds.push_back(b);
  }
  Build self;
  self.name = "this";
  self.devmesh = o.devmesh;
  self.plugins = o.plugins;
  builds.push_back(self);
  for (int run = 0; run < o.runs; run++) {
    for (Build &b : builds) {  // interleaved, like the modes above
      ForwardResult r = run_forward(o, dir, b.devmesh, b.plugins, b.name);
      b.drained.push_back(r.drained_per_s);
      b.p50.push_back(r.p50_ms);
      b.p99.push_back(r.p99_ms);
      b.fsyncs.push_back(r.fsyncs);
      b.requests.push_back(static_cast<double>(r.requests));
      b.agg_rss.push_back(static_cast<double>(r.aggregator_rss_kib));
      b.side_rss.push_back(static_cast<double>(r.sidecar_rss_kib));
      std::fprintf(stderr,
                   "  run %d %s: drained %.0f records/s, %zu requests p50 %.1f ms p99 %.1f ms, "
                   "%.0f fsyncs\n",
                   run + 1, b.name.c_str(), r.drained_per_s, r.requests, r.p50_ms, r.p99_ms,
                   r.fsyncs);
    }
  }
  std::printf(
      "sidecar (dummy %.0f records/s -> http_forward, gzip off) -> aggregator (http ack: "
      "delivered, storage, default sync) -> %s; %d s windows after %d s, %d runs (medians)\n",
      o.forward_rate, o.forward_sink.c_str(), o.forward_seconds, o.forward_warmup, o.runs);
  for (Build &b : builds)
    std::printf(
        "  %-5s %s\n        drained %8.0f records/s (ratio to the rate offered %.2f)  requests "
        "%.0f  latency p50 %7.1f ms  p99 %7.1f ms  fsyncs %.0f  peak RSS "
        "aggregator %.1f MiB, "
        "sidecar %.1f MiB\n",
        b.name.c_str(), b.devmesh.c_str(), median(b.drained), median(b.drained) / o.forward_rate,
        median(b.requests), median(b.p50), median(b.p99), median(b.fsyncs),
        median(b.agg_rss) / 1024, median(b.side_rss) / 1024);
}

// The four http -> null modes under wrk.
void wrk_modes(const Options &o, const std::string &dir) {
  std::ofstream(dir + "/body.json") << bench::make_ingest_body(o.records);
  const Mode modes[] = {
      {"memory", nullptr, "accepted"},
      {"interval", "    sync: interval\n", "accepted"},
      {"always", "    sync: always\n", "accepted"},
      {"durable", "    sync: always\n", "durable"},
  };
  std::vector<std::vector<double>> rps(4), p99(4);
  std::vector<long> errors(4, 0);
  for (int run = 0; run < o.runs; run++) {
    for (int m = 0; m < 4; m++) {  // interleaved: drift on a shared machine hits every mode
      Result r = run_mode(o, dir, modes[m]);
      rps[m].push_back(r.records_per_s);
      p99[m].push_back(r.p99_ms);
      errors[m] += r.errors;
    }
  }
  std::printf("http -> null, %d records per body, %d connections, %d s x %d runs (medians)\n",
              o.records, o.connections, o.seconds, o.runs);
  std::printf("segments in %s\n", o.dir.empty() ? dir.c_str() : o.dir.c_str());
  const double base = median(rps[0]);
  for (int m = 0; m < 4; m++) {
    const double v = median(rps[m]);
    std::printf("  %-9s %-44s %10.0f records/s  p99 %7.2f ms  ratio to memory %.2f%s\n",
                modes[m].name,
                m == 0   ? "(storage off: the ceiling)"
                : m == 1 ? "(sync: interval 1s, ack: accepted)"
                : m == 2 ? "(sync: always, group commit, ack: accepted)"
                         : "(sync: always, ack: durable)",
                v, median(p99[m]), base > 0 ? v / base : 0, errors[m] ? "  (wrk errors!)" : "");
  }
  std::printf("target: interval / memory >= 0.70: %s\n",
              base > 0 && median(rps[1]) / base >= 0.70 ? "met" : "NOT met");
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--seconds")
      o.seconds = std::atoi(next().c_str());
    else if (a == "--runs")
      o.runs = std::atoi(next().c_str());
    else if (a == "--connections")
      o.connections = std::atoi(next().c_str());
    else if (a == "--records")
      o.records = std::atoi(next().c_str());
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--devmesh")
      o.devmesh = next();
    else if (a == "--plugins")
      o.plugins = next();
    else if (a == "--wrk")
      o.wrk = next();
    else if (a == "--no-wrk-modes")
      o.wrk_modes = false;
    else if (a == "--no-forward")
      o.forward = false;
    else if (a == "--base")
      o.bases.push_back(next());
    else if (a == "--forward-rate")
      o.forward_rate = std::atof(next().c_str());
    else if (a == "--forward-seconds")
      o.forward_seconds = std::atoi(next().c_str());
    else if (a == "--forward-sink")
      o.forward_sink = next();
    else {
      std::printf(
          "usage: %s [--seconds N] [--runs N] [--connections N] [--records N]\n"
          "          [--dir DIR (segments; default a temp dir)] [--devmesh PATH]\n"
          "          [--plugins DIR] [--wrk PATH] [--no-wrk-modes] [--no-forward]\n"
          "          [--forward-rate N] [--forward-seconds N] [--forward-sink null|sqlite]\n"
          "          [--base NAME=DEVMESH:PLUGINS_DIR (another build, interleaved; repeatable)]\n",
          argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  if (o.wrk_modes && access(o.wrk.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "wrk not found at %s (apt-get install wrk, or --wrk)\n", o.wrk.c_str());
    return 1;
  }
  std::string tmpl = (fs::temp_directory_path() / "bench-durability-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  if (o.wrk_modes) wrk_modes(o, dir);
  if (o.forward) forward_bench(o, dir);
  fs::remove_all(dir);
  return 0;
}
