// bench_store_sqlite: the sqlite part of the store benchmark. (1) dummy -> sqlite rows/s through
// the real devmesh binary next to a raw SQLite insert loop of the same rows into the same schema,
// with and without FTS, in the same run; (2) GET /query/logs latency (p50/p99) for a one-hour,
// one-service window on a 1M-row table, next to the same SQL run in-process.
#include <curl/curl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pattern_requests.h"
#include "sqlite_schema.hpp"
#include "timestamp.hpp"

namespace devmesh {
namespace {

namespace fs = std::filesystem;
namespace schema = sqlite_schema;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  long rows = 200000;         // insert part
  long table_rows = 1000000;  // query part
  int runs = 3;
  int queries = 300;
  int pattern_requests = 5;  // per /query/patterns filter
  std::string sync = "full";
  std::string dir;
  bool inserts = true, query = true;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void check(int rc, sqlite3 *db, const char *what) {
  if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    std::fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
    std::exit(1);
  }
}

void exec(sqlite3 *db, const std::string &sql) {
  check(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), db, sql.c_str());
}

sqlite3 *open_fresh(const std::string &path, const std::string &sync) {
  for (const char *suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  sqlite3 *db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=" + sync);
  return db;
}

enum class Fts { kNone, kPerBatch, kTrigger };

// The raw ceiling: the rows dummy makes (same message, meta and event_id) into the same schema,
// 1000 per transaction, as the plugin does, with no engine around it.
double raw_insert(const std::string &path, long rows, Fts fts, bool unique,
                  const std::string &sync) {
  sqlite3 *db = open_fresh(path, sync);
  std::string ddl = schema::create_table_sql("log_events");
  if (!unique) {
    const std::string u =
        "CREATE UNIQUE INDEX IF NOT EXISTS \"log_events_event_id\" ON \"log_events\" (event_id);\n";
    ddl.erase(ddl.find(u), u.size());
  }
  exec(db, ddl);
  if (fts != Fts::kNone) exec(db, schema::create_fts_sql("log_events"));
  if (fts == Fts::kTrigger)
    exec(db,
         "CREATE TRIGGER fts_ai AFTER INSERT ON log_events BEGIN INSERT INTO log_events_fts"
         "(rowid, message) VALUES (new.id, new.message); END");
  std::string ins = schema::insert_sql("log_events");
  if (!unique) ins.erase(ins.find(" ON CONFLICT"));
  sqlite3_stmt *st = nullptr, *max_id = nullptr, *feed = nullptr;
  check(sqlite3_prepare_v2(db, ins.c_str(), -1, &st, nullptr), db, "prepare");
  check(sqlite3_prepare_v2(db, "SELECT coalesce(max(id),0) FROM log_events", -1, &max_id, nullptr),
        db, "prepare");
  if (fts == Fts::kPerBatch)
    check(sqlite3_prepare_v2(db, schema::fts_feed_sql("log_events").c_str(), -1, &feed, nullptr),
          db, "prepare");
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const auto t0 = Clock::now();
  for (long first = 1; first <= rows; first += 1000) {
    exec(db, "BEGIN IMMEDIATE");
    sqlite3_step(max_id);
    const int64_t before = sqlite3_column_int64(max_id, 0);
    sqlite3_reset(max_id);
    const int64_t ts = std::chrono::duration_cast<std::chrono::nanoseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
    for (long seq = first; seq < first + 1000 && seq <= rows; ++seq) {
      char msg[64], meta[64], id_text[64];
      uint8_t id[16];
      int ml = std::snprintf(msg, sizeof msg, "dummy record %ld", seq);
      int jl = std::snprintf(meta, sizeof meta, "{\"seq\":\"%ld\"}", seq);
      int il = std::snprintf(id_text, sizeof id_text, "dummy.0:%ld", seq);
      XXH128_canonical_t c;
      XXH128_canonicalFromHash(&c, XXH3_128bits(id_text, static_cast<size_t>(il)));
      std::memcpy(id, c.digest, 16);
      sqlite3_bind_int64(st, 1, ts);
      sqlite3_bind_text(st, 2, "dummy", 5, SQLITE_STATIC);
      sqlite3_bind_text(st, 3, "dummy", 5, SQLITE_STATIC);
      sqlite3_bind_text(st, 4, host, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 5, "INFO", 4, SQLITE_STATIC);
      for (int i = 6; i <= 9; ++i) sqlite3_bind_null(st, i);
      sqlite3_bind_text(st, 10, msg, ml, SQLITE_STATIC);
      sqlite3_bind_text(st, 11, meta, jl, SQLITE_STATIC);
      sqlite3_bind_blob(st, 12, id, 16, SQLITE_STATIC);
      check(sqlite3_step(st), db, "insert");
      sqlite3_reset(st);
    }
    if (fts == Fts::kPerBatch) {
      sqlite3_bind_int64(feed, 1, before);
      check(sqlite3_step(feed), db, "fts feed");
      sqlite3_reset(feed);
    }
    exec(db, "COMMIT");
  }
  const double s = seconds_since(t0);
  sqlite3_finalize(st);
  sqlite3_finalize(max_id);
  sqlite3_finalize(feed);
  sqlite3_close(db);
  return static_cast<double>(rows) / s;
}

pid_t spawn(const Options &o, const std::string &yaml_path, const std::string &log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE *f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    execl(o.devmesh.c_str(), o.devmesh.c_str(), "-c", yaml_path.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

// dummy -> sqlite through the binary: rows / (spawn to exit), startup included (~10 ms).
double engine_insert(const Options &o, const std::string &path, long rows, bool fts,
                     long *peak_rss_kib = nullptr) {
  for (const char *suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  const std::string yaml = o.dir + "/insert.yaml";
  std::ofstream(yaml) << "service:\n  plugins_dir: [" << o.plugins << "]\n  exit_when_done: true\n"
                      << "pipeline:\n  inputs:\n    - {name: dummy, rate: 0, batch: 1000, count: "
                      << rows << "}\n  outputs:\n    - {name: sqlite, path: " << path
                      << ", batch_size: 1000, workers: 1, full_text: " << (fts ? "true" : "false")
                      << ", synchronous: " << o.sync << "}\n";
  const auto t0 = Clock::now();
  pid_t pid = spawn(o, yaml, o.dir + "/insert.log");
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  const double s = seconds_since(t0);
  if (peak_rss_kib) *peak_rss_kib = ru.ru_maxrss;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "devmesh failed; see %s/insert.log\n", o.dir.c_str());
    std::exit(1);
  }
  sqlite3 *db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_stmt *st = nullptr;
  sqlite3_prepare_v2(db, "SELECT count(*) FROM log_events", -1, &st, nullptr);
  sqlite3_step(st);
  const long got = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (got != rows) {
    std::fprintf(stderr, "devmesh stored %ld of %ld rows\n", got, rows);
    std::exit(1);
  }
  return static_cast<double>(rows) / s;
}

void insert_part(const Options &o) {
  const std::string path = o.dir + "/insert.db";
  std::printf(
      "inserts: %ld rows per run, %d runs, 1000 rows per transaction, synchronous=%s, "
      "medians\n",
      o.rows, o.runs, o.sync.c_str());
  struct Case {
    const char *name;
    Fts fts;
    bool unique;
  };
  const Case refs[] = {{"raw, no event_id index, no FTS", Fts::kNone, false},
                       {"raw, FTS by per-row trigger", Fts::kTrigger, true}};
  for (const Case &c : refs) {
    std::vector<double> v;
    for (int r = 0; r < o.runs; ++r) v.push_back(raw_insert(path, o.rows, c.fts, c.unique, o.sync));
    std::printf("  %-40s %9.0f rows/s (reference)\n", c.name, median(v));
  }
  for (bool fts : {false, true}) {
    std::vector<double> raw, eng, rss;
    for (int r = 0; r < o.runs; ++r) {
      raw.push_back(raw_insert(path, o.rows, fts ? Fts::kPerBatch : Fts::kNone, true, o.sync));
      long kib = 0;
      eng.push_back(engine_insert(o, path, o.rows, fts, &kib));
      rss.push_back(static_cast<double>(kib));
    }
    const double rm = median(raw), em = median(eng);
    std::printf(
        "  full_text: %-5s raw %9.0f rows/s   dummy->sqlite %9.0f rows/s   ratio %.2f   peak RSS "
        "%.1f MiB\n",
        fts ? "true" : "false", rm, em, em / rm, median(rss) / 1024);
  }
}

const char *const kLevelMix[] = {"INFO", "INFO",  "INFO", "INFO",  "INFO",
                                 "INFO", "DEBUG", "WARN", "ERROR", "INFO"};

constexpr int kQueryPatterns = 300;  // pattern ids in the query part's table

// 1M rows over 24 h: 20 services, 5 hosts, 300 patterns, one row every ~86 ms, FTS on.
void build_table(const std::string &path, long rows, int64_t start_ns, int64_t span_ns) {
  sqlite3 *db = open_fresh(path, "normal");
  exec(db, schema::create_table_sql("log_events"));
  exec(db, schema::create_patterns_sql("log_events"));
  exec(db, schema::create_fts_sql("log_events"));
  sqlite3_stmt *st = nullptr;
  check(sqlite3_prepare_v2(db, schema::insert_sql("log_events").c_str(), -1, &st, nullptr), db,
        "prepare");
  std::mt19937_64 rng(42);
  const auto t0 = Clock::now();
  exec(db, "BEGIN");
  for (long i = 0; i < rows; ++i) {
    char svc[32], host[32], msg[96];
    int sl = std::snprintf(svc, sizeof svc, "service-%02d.service", static_cast<int>(rng() % 20));
    int hl = std::snprintf(host, sizeof host, "node-%d", static_cast<int>(rng() % 5));
    int ml = std::snprintf(msg, sizeof msg, "request %ld handled in %d ms status %d", i,
                           static_cast<int>(rng() % 900), rng() % 50 ? 200 : 500);
    uint64_t id[2] = {static_cast<uint64_t>(i), 0x5eed};
    sqlite3_bind_int64(st, 1, start_ns + span_ns / rows * i);
    sqlite3_bind_text(st, 2, "journald", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, svc, sl, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, host, hl, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, kLevelMix[rng() % 10], -1, SQLITE_STATIC);
    for (int c = 6; c <= 9; ++c) sqlite3_bind_null(st, c);
    sqlite3_bind_text(st, 10, msg, ml, SQLITE_STATIC);
    sqlite3_bind_text(st, 11, "{\"pid\":\"1234\"}", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 12, id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, static_cast<int64_t>(rng() % kQueryPatterns) + 1);
    check(sqlite3_step(st), db, "insert");
    sqlite3_reset(st);
    if (i % 50000 == 49999) exec(db, "COMMIT; BEGIN");
  }
  exec(db, "COMMIT");
  exec(db, "INSERT INTO log_events_fts(log_events_fts) VALUES('rebuild')");
  // The patterns table the sqlite output would have written beside these rows.
  exec(db,
       "INSERT INTO log_patterns SELECT pattern_id, 'service-00.service', 'template ' || "
       "pattern_id || ' <*>', min(timestamp), max(timestamp), count(*) FROM log_events GROUP BY "
       "pattern_id");
  sqlite3_finalize(st);
  sqlite3_close(db);
  std::printf("query: built %ld rows over 24 h in %.1f s\n", rows, seconds_since(t0));
}

size_t discard(char *, size_t s, size_t n, void *) {
  return s * n;
}

void query_part(const Options &o) {
  const std::string path = o.dir + "/query.db";
  int64_t start_ns = 0;
  parse_rfc3339("2025-11-28T00:00:00Z", start_ns);
  const int64_t hour = int64_t{3600} * 1000000000, span = 24 * hour;
  if (!fs::exists(path)) build_table(path, o.table_rows, start_ns, span);
  std::mt19937 rng(7);
  struct Q {
    std::string url_query;
    int svc;
    int64_t from;
  };
  std::vector<Q> qs;
  for (int i = 0; i < o.queries; ++i) {
    const int svc = static_cast<int>(rng() % 20);
    const int64_t from = start_ns + static_cast<int64_t>(rng() % 23) * hour +
                         static_cast<int64_t>(rng() % 3600) * 1000000000;
    char buf[256];
    std::snprintf(buf, sizeof buf, "service=service-%02d.service&start_time=%s&end_time=%s", svc,
                  format_rfc3339_us(from).c_str(), format_rfc3339_us(from + hour).c_str());
    qs.push_back({buf, svc, from});
  }
  // In-process: the same SQL the query plugin runs, on one read-only connection.
  sqlite3 *db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt *st = nullptr;
  check(sqlite3_prepare_v2(db,
                           "SELECT id, timestamp, source, service, host, level, trace_id, span_id,"
                           " event_type, error_code, message, meta_json FROM \"log_events\" WHERE 1"
                           " AND service = ? AND timestamp >= ? AND timestamp <= ?"
                           " ORDER BY timestamp DESC, id DESC LIMIT 101",
                           -1, &st, nullptr),
        db, "prepare");
  std::vector<double> raw_ms;
  for (const Q &q : qs) {
    char svc[32];
    std::snprintf(svc, sizeof svc, "service-%02d.service", q.svc);
    const auto t0 = Clock::now();
    sqlite3_bind_text(st, 1, svc, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, q.from);
    sqlite3_bind_int64(st, 3, q.from + hour);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) ++n;
    sqlite3_reset(st);
    raw_ms.push_back(seconds_since(t0) * 1e3);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);

  // Through the binary: the query plugin over HTTP, one keep-alive connection.
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  const std::string yaml = o.dir + "/query.yaml";
  std::ofstream(yaml) << "service:\n  plugins_dir: [" << o.plugins << "]\n"
                      << "pipeline:\n  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                      << "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" << port
                      << ", path: " << path << "}\n";
  pid_t pid = spawn(o, yaml, o.dir + "/query.log");
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  long code = 0;
  for (int i = 0; i < 200 && code != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    curl_easy_setopt(c, CURLOPT_URL, (base + "/health").c_str());
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  }
  std::vector<double> http_ms;
  long bad = 0;
  auto run = [&](const std::string &query, std::vector<double> *out) {
    curl_easy_setopt(c, CURLOPT_URL, (base + "/query/logs?" + query).c_str());
    const auto t0 = Clock::now();
    if (curl_easy_perform(c) != CURLE_OK) ++bad;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) ++bad;
    if (out) out->push_back(seconds_since(t0) * 1e3);
  };
  // The warm-up and the full-text requests take the first windows, cycled: --queries may be
  // fewer than 50.
  auto nth_window = [&](int i) { return qs[static_cast<size_t>(i) % qs.size()].url_query; };
  for (int i = 0; i < 20; ++i) run(nth_window(i), nullptr);  // warm-up
  for (const Q &q : qs) run(q.url_query, &http_ms);
  std::vector<double> fts_ms;
  for (int i = 0; i < 50; ++i) run(nth_window(i) + "&q=status+500", &fts_ms);
  std::vector<double> level_ms;
  for (int i = 0; i < 50; ++i) run("min_level=ERROR", &level_ms);
  const auto pattern_ms = bench::time_pattern_requests(c, base, o.pattern_requests, bad);
  curl_easy_cleanup(c);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::printf("query: %d one-hour one-service windows on %ld rows (limit 100)%s\n", o.queries,
              o.table_rows, bad ? " -- SOME REQUESTS FAILED" : "");
  std::printf("  raw SQL in-process       p50 %6.2f ms  p99 %6.2f ms\n", percentile(raw_ms, .5),
              percentile(raw_ms, .99));
  std::printf("  GET /query/logs via HTTP p50 %6.2f ms  p99 %6.2f ms  (target p99 <= 50 ms)\n",
              percentile(http_ms, .5), percentile(http_ms, .99));
  std::printf("  same + q=status+500      p50 %6.2f ms  p99 %6.2f ms  (50 queries)\n",
              percentile(fts_ms, .5), percentile(fts_ms, .99));
  std::printf("  min_level=ERROR, no window p50 %6.2f ms  p99 %6.2f ms  (50 queries)\n",
              percentile(level_ms, .5), percentile(level_ms, .99));
  bench::print_pattern_requests(kQueryPatterns, o.pattern_requests, pattern_ms);
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  devmesh::Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--rows")
      o.rows = std::atol(next().c_str());
    else if (a == "--table-rows")
      o.table_rows = std::atol(next().c_str());
    else if (a == "--runs")
      o.runs = std::atoi(next().c_str());
    else if (a == "--queries")
      o.queries = std::max(1, std::atoi(next().c_str()));
    else if (a == "--pattern-requests")
      o.pattern_requests = std::atoi(next().c_str());
    else if (a == "--sync")
      o.sync = next();
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--devmesh")
      o.devmesh = next();
    else if (a == "--plugins")
      o.plugins = next();
    else if (a == "--inserts-only")
      o.query = false;
    else if (a == "--query-only")
      o.inserts = false;
    else {
      std::printf(
          "usage: %s [--rows N] [--table-rows N] [--runs N] [--queries N] [--pattern-requests N]\n"
          "          [--sync full|normal]\n"
          "          [--dir DIR (kept; the 1M-row table is reused)] "
          "[--inserts-only|--query-only]\n",
          argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  bool temp = o.dir.empty();
  if (temp) {
    char tmpl[] = "/tmp/bench-store-sqlite-XXXXXX";
    o.dir = mkdtemp(tmpl);
  }
  std::filesystem::create_directories(o.dir);
  if (o.inserts) devmesh::insert_part(o);
  if (o.query) devmesh::query_part(o);
  if (temp) std::filesystem::remove_all(o.dir);
  return 0;
}
