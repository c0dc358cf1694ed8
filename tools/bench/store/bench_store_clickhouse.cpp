// bench_store_clickhouse: the ClickHouse part of the store benchmark. On a private
// clickhouse-server (tests/support/clickhouse.h): dummy -> clickhouse rows/s through the real
// devmesh binary (spawn to exit, every row checked in the table after), for a few `workers`
// and batch sizes; then GET /query/logs (one service, one hour, limit 100), /query/stats and
// /query/patterns (24 hours) latency over the rows just written. With --query-rows N it skips
// the ingest runs and loads N rows straight into the output's table (INSERT SELECT from numbers():
// 8 services, 20 hosts, the engine's levels, spread over the last 24 hours), merges them (the
// history a running store has merged), adds the last minute as fresh parts with re-delivered copies
// of some of its rows (what a live store holds), and times each query --requests times.
//   bench_store_clickhouse [--rows N] [--batch N] [--workers a,b,c]
//   bench_store_clickhouse --query-rows 10000000 [--requests 200]
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "../common/process_usage.h"
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
  long query_rows = 0;  // > 0: the query half only, over this many rows loaded directly
  int requests = 50;
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
std::vector<double> latencies(const std::string &url, int n, int &failed) {
  std::vector<double> out;
  failed = 0;
  CURL *e = curl_easy_init();
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    long code = 0;
    if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    out.push_back(seconds_since(t0) * 1000);
    failed += code != 200;
  }
  curl_easy_cleanup(e);
  std::sort(out.begin(), out.end());
  return out;
}

// p50/p95/p99 of n GETs of base + path, and the server's CPU time per request: on a shared
// machine the latencies follow its load, the CPU time much less.
void report(const std::string &base, const std::string &path, int n, long rows, pid_t server) {
  const double cpu0 = bench::process_cpu_s(server) * 1000;
  int failed = 0;
  std::vector<double> l = latencies(base + path, n, failed);
  const double cpu = (bench::process_cpu_s(server) * 1000 - cpu0) / n;
  double load = 0;
  getloadavg(&load, 1);
  auto at = [&](int pct) { return l[std::min(l.size() - 1, l.size() * pct / 100)]; };
  std::printf(
      "GET %s over %ld rows, %d requests: p50 %.1f ms, p95 %.1f ms, p99 %.1f ms; "
      "clickhouse-server CPU %.0f ms per request; load average %.1f%s\n",
      path.c_str(), rows, n, at(50), at(95), at(99), cpu, load,
      failed ? (" (" + std::to_string(failed) + " answers not 200)").c_str() : "");
  std::fflush(stdout);
}

// Seconds one statement takes (its answer discarded); -1 when it fails.
double time_sql(ClickHouse &ch, const std::string &sql) {
  std::string err;
  const auto t0 = Clock::now();
  ch.sql(sql, &err);
  if (!err.empty()) {
    std::fprintf(stderr, "%s: %s\n", sql.c_str(), err.c_str());
    return -1;
  }
  return seconds_since(t0);
}

// The rows of a live store, loaded directly (see the top of the file): `n` rows over the 24
// hours before `now_s`, shaped as the engine writes them.
bool load_rows(const TempDir &d, ClickHouse &ch, long n, long now_s) {
  // The table, made by the clickhouse output itself so that the schema is the plugin's own.
  const std::string yaml = "service:\n  plugins_dir: [" DEVMESH_BENCH_PLUGIN_DIR
                           "]\n  exit_when_done: true\n"
                           "pipeline:\n  inputs:\n    - {name: dummy, rate: 0, count: 1}\n"
                           "  outputs:\n    - {name: clickhouse, " +
                           connection(ch) + "}\n";
  test::write_file(d / "setup.yaml", yaml);
  Process p({DEVMESH_BENCH_BINARY, "-c", d / "setup.yaml"}, d.path(), "setup");
  if (p.wait_exit(std::chrono::seconds(60)) != 0) {
    std::fprintf(stderr, "devmesh failed: %s\n", p.err().c_str());
    return false;
  }
  auto rows = [&](long first, long count, long start_s, long span_s) {
    // Row i of count sits at start + i * span / count; services, hosts and levels as a fleet's.
    const std::string ns = "toInt64(" + std::to_string(start_s) +
                           " * 1000000000 + intDiv((number - " + std::to_string(first) + ") * " +
                           std::to_string(span_s * 1000) + ", " + std::to_string(count) +
                           ") * 1000000)";
    return "SELECT toDateTime(intDiv(ns, 1000000000)), ns, 'journald',"
           " ['api', 'db', 'web', 'auth', 'cache', 'queue', 'billing', 'search'][number % 8 + 1],"
           " concat('node-', toString(intHash32(number) % 20)),"
           " ['INFO', 'INFO', 'INFO', 'INFO', 'INFO', 'INFO', 'DEBUG', 'DEBUG', 'WARN',"
           " 'ERROR'][intHash32(number + 1) % 10 + 1],"
           " if(number % 5 = 0, concat('trace-', toString(number % 100000)), NULL), NULL,"
           " 'http_request', if(number % 10 = 9, 'HTTP_500', NULL),"
           " concat('request ', toString(number), ' handled in ', toString(number % 997),"
           " ' ms status 200 path /api/v1/items'), NULL, MD5(toString(number)),"
           " toInt64(intHash64(number % 500)) FROM (SELECT number, " +
           ns + " AS ns FROM numbers(" + std::to_string(first) + ", " + std::to_string(count) +
           "))";
  };
  const long fresh = std::max(1L, n / 1440);  // the last minute's share
  std::string err;
  for (const std::string &sql :
       {std::string("TRUNCATE TABLE devmesh.log_events"),
        "INSERT INTO devmesh.log_events " + rows(0, n - fresh, now_s - 86400, 86400 - 60),
        std::string("OPTIMIZE TABLE devmesh.log_events FINAL"),
        "INSERT INTO devmesh.log_events " + rows(n - fresh, fresh, now_s - 60, 60),
        // An output's retried batch: a tenth of the last minute again, as another part.
        "INSERT INTO devmesh.log_events SELECT * FROM devmesh.log_events WHERE timestamp_ns >= " +
            std::to_string(now_s - 60) + "000000000 AND cityHash64(event_id) % 10 = 0"}) {
    const double s = time_sql(ch, sql);
    if (s < 0) return false;
    std::printf("  %.1f s: %s\n", s, sql.substr(0, 60).c_str());
    std::fflush(stdout);
  }
  const long long distinct = ch.number("SELECT count() FROM devmesh.log_events FINAL");
  std::printf("loaded %lld rows, %lld records\n",
              ch.number("SELECT count() FROM devmesh.log_events"), distinct);
  return distinct == n;
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
  const long now_s = static_cast<long>(std::time(nullptr));
  if (o.query_rows > 0) {
    if (!load_rows(d, ch, o.query_rows, now_s)) return 1;
    const std::string day = " WHERE timestamp >= toDateTime(" + std::to_string(now_s - 86400) +
                            ") AND timestamp_ns >= " + std::to_string(now_s - 86400) + "000000000";
    // For comparison: the count FINAL gave before (one statement of /query/stats's four).
    std::printf("SELECT count() FROM ... FINAL over 24 h: %.0f ms\n",
                time_sql(ch, "SELECT count() FROM devmesh.log_events FINAL" + day) * 1000);
  }
  std::string last = "log_events";
  for (int w : o.query_rows > 0 ? std::vector<int>{} : o.workers) {
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
  const long rows = o.query_rows > 0 ? o.query_rows : o.rows;
  for (const std::string &path :
       {std::string("/query/logs?service=api&limit=100&start_time=") + std::to_string(now_s - 3600),
        std::string("/query/stats?since=24h"),
        std::string("/query/patterns?start_time=") + std::to_string(now_s - 86400)})
    report(base, path, o.requests, rows, ch.pid());
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
    } else if (k == "--query-rows") {
      o.query_rows = std::atol(v.c_str());
    } else if (k == "--requests") {
      o.requests = std::max(1, std::atoi(v.c_str()));
    } else if (k == "--workers") {
      o.workers.clear();
      std::stringstream s(v);
      std::string w;
      while (std::getline(s, w, ',')) o.workers.push_back(std::atoi(w.c_str()));
    } else {
      std::fprintf(
          stderr,
          "usage: %s [--rows N] [--batch N] [--workers a,b,c] [--query-rows N] [--requests N]\n",
          argv[0]);
      return 2;
    }
  }
  return devmesh::run(o);
}
