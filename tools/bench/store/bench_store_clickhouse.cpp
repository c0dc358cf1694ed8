// bench_store_clickhouse: the ClickHouse part of the store benchmark. On a private
// clickhouse-server (tests/support/clickhouse.h): dummy -> clickhouse rows/s through the real
// devmesh binary (spawn to exit, every row checked in the table after), for a few `workers`
// and batch sizes; then GET /query/logs (one service, one hour, limit 100) and /query/stats
// latency over the rows just written.
//   bench_store_clickhouse [--rows N] [--batch N] [--workers a,b,c]
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "clickhouse.h"

namespace devmesh {
namespace {

using Clock = std::chrono::steady_clock;
using test::ClickHouse;
using test::Process;
using test::TempDir;

struct Options {
  long rows = 2000000;
  long batch = 10000;
  std::vector<int> workers = {1, 2, 4};
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string connection(const ClickHouse &ch) {
  return "url: '" + ch.url() + "', user: devmesh, password: " + ClickHouse::kPassword;
}

// dummy -> clickhouse through the binary; rows/s, or -1 when the table does not hold them all.
double through_devmesh(const TempDir &d, ClickHouse &ch, const Options &o, int workers,
                       const std::string &table) {
  const std::string yaml =
      "service:\n  plugins_dir: [" DEVMESH_BENCH_PLUGIN_DIR
      "]\n  exit_when_done: true\n"
      "pipeline:\n  inputs:\n    - {name: dummy, rate: 0, count: " +
      std::to_string(o.rows) + ", batch: 1000, services: [api, db, web, auth]}\n" +
      "  outputs:\n    - {name: clickhouse, table: " + table +
      ", workers: " + std::to_string(workers) + ", batch_size: " + std::to_string(o.batch) + ", " +
      connection(ch) + "}\n";
  test::write_file(d / (table + ".yaml"), yaml);
  const auto t0 = Clock::now();
  Process p({DEVMESH_BENCH_BINARY, "-c", d / (table + ".yaml")}, d.path(), table);
  if (p.wait_exit(std::chrono::seconds(1800)) != 0) {
    std::fprintf(stderr, "devmesh failed: %s\n", p.err().c_str());
    return -1;
  }
  const double s = seconds_since(t0);
  const long long n = ch.number("SELECT count() FROM devmesh." + table + " FINAL");
  if (n != o.rows) {
    std::fprintf(stderr, "%s holds %lld rows, not %ld\n", table.c_str(), n, o.rows);
    return -1;
  }
  return static_cast<double>(o.rows) / s;
}

size_t discard(char *, size_t size, size_t n, void *) {
  return size * n;
}

// Milliseconds of each of `n` GETs of url, sorted.
std::vector<double> latencies(const std::string &url, int n) {
  std::vector<double> out;
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    curl_easy_perform(e);
    out.push_back(seconds_since(t0) * 1000);
  }
  curl_easy_cleanup(e);
  std::sort(out.begin(), out.end());
  return out;
}

int run(const Options &o) {
  if (!ClickHouse::installed()) {
    std::fprintf(stderr, "%s is not installed\n", ClickHouse::kBinary);
    return 2;
  }
  TempDir d;
  ClickHouse ch(d.path());
  std::string err;
  if (!ch.start(&err)) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }
  std::string version = ch.sql("SELECT version()");
  if (!version.empty()) version.pop_back();
  std::printf("clickhouse-server %s, %ld rows per run, batch_size %ld\n", version.c_str(), o.rows,
              o.batch);
  std::string last;
  for (int w : o.workers) {
    last = "bench_w" + std::to_string(w);
    const double r = through_devmesh(d, ch, o, w, last);
    if (r < 0) return 1;
    std::printf("dummy -> clickhouse, workers %d: %.0f rows/s\n", w, r);
    std::fflush(stdout);
  }
  // The query API over the last table: an hour of one service (the rows all fall in the last
  // seconds, so the window holds a quarter of them: a worst case for one hour).
  const int port = test::free_port();
  const std::string yaml =
      "service:\n  plugins_dir: [" DEVMESH_BENCH_PLUGIN_DIR
      "]\npipeline:\n"
      "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
      "  outputs:\n    - {name: query, match: none, store: clickhouse, table: " +
      last + ", listen: 127.0.0.1:" + std::to_string(port) + ", " + connection(ch) + "}\n";
  test::write_file(d / "query.yaml", yaml);
  Process q({DEVMESH_BENCH_BINARY, "-c", d / "query.yaml"}, d.path(), "query");
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  test::wait_until(
      [&] {
        std::string b;
        return test::http_get(base + "/health", &b, d.path()) == 200;
      },
      std::chrono::seconds(30));
  for (const std::string &path : {std::string("/query/logs?service=api&limit=100&start_time=") +
                                      std::to_string(std::time(nullptr) - 3600),
                                  std::string("/query/stats?since=24h")}) {
    std::vector<double> l = latencies(base + path, 50);
    std::printf("GET %s over %ld rows: p50 %.1f ms, p99 %.1f ms\n", path.c_str(), o.rows,
                l[l.size() / 2], l[l.size() * 99 / 100]);
  }
  return 0;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  devmesh::Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--rows") {
      o.rows = std::atol(v.c_str());
    } else if (k == "--batch") {
      o.batch = std::atol(v.c_str());
    } else if (k == "--workers") {
      o.workers.clear();
      std::stringstream s(v);
      std::string w;
      while (std::getline(s, w, ',')) o.workers.push_back(std::atoi(w.c_str()));
    } else {
      std::fprintf(stderr, "usage: %s [--rows N] [--batch N] [--workers a,b,c]\n", argv[0]);
      return 2;
    }
  }
  return devmesh::run(o);
}
