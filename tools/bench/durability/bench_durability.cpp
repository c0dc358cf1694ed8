// bench_durability: what write-ahead storage costs on the http input. wrk posts 500-record JSON
// bodies over 4 connections (closed loop) to http -> null with
//   memory   no storage (the ceiling of this run),
//   interval storage, sync: interval (1s), ack: accepted,
//   always   storage, sync: always (group commit), ack: accepted,
//   durable  storage, sync: always, ack: durable (each 2xx waits for its fsync),
// and prints records/s, p99 latency and each mode's ratio to memory. Medians of --runs runs.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
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
    else {
      std::printf(
          "usage: %s [--seconds N] [--runs N] [--connections N] [--records N]\n"
          "          [--dir DIR (segments; default a temp dir)] [--devmesh PATH]\n"
          "          [--plugins DIR] [--wrk PATH]\n",
          argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  if (access(o.wrk.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "wrk not found at %s (apt-get install wrk, or --wrk)\n", o.wrk.c_str());
    return 1;
  }
  std::string tmpl = (fs::temp_directory_path() / "bench-durability-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
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
  fs::remove_all(dir);
  return 0;
}
