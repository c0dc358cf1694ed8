// bench_store_mariadb: the MariaDB part of the store benchmark. On a private mariadbd (MariaDB's
// durability defaults): dummy -> mariadb rows/s through the real devmesh binary next to raw
// multi-row INSERTs and raw bulk array binding of the same rows into the same schema, with the
// same number of connections, in the same run; the same rows posted over HTTP (libcurl clients ->
// http input, ack: delivered -> mariadb) with their ratio to that run's raw bulk; the FULLTEXT
// index's cost; retention's effect; each engine's peak RSS.
#include <curl/curl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "../common/process_usage.h"
#include "mariadb.h"
#include "mariadb_connection.hpp"
#include "pattern_requests.h"
#include "timestamp.hpp"

namespace devmesh {
namespace {

using Clock = std::chrono::steady_clock;
using test::MariaDb;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  long rows = 1000000;
  int runs = 1;
  std::vector<int> connections = {1, 2};
  long retention_rows = 500000;  // rows already in the table for the retention comparison
  bool full_text = true, retention = true, inserts = true, query = true;
  long table_rows = 1000000;  // query part
  int queries = 300;
  int pattern_requests = 5;     // per /query/patterns filter
  std::string retention_extra;  // more mariadb output keys for the retention run
  // The http (ack: delivered) -> mariadb case: clients, records per body, more output keys.
  bool http = true;
  int http_clients = 4;
  long http_records = 1000;
  std::string http_extra;
  std::string dir;
};

constexpr long kStatementRows = 1000;
constexpr int kQueryPatterns = 300;  // pattern ids in the query part's table

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return 0;
  const size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

[[noreturn]] void die(const std::string &what) {
  std::fprintf(stderr, "bench_store_mariadb: %s\n", what.c_str());
  std::exit(1);
}

mariadb::Settings settings(const MariaDb &db) {
  mariadb::Settings s;
  s.socket = db.socket();
  s.user = MariaDb::kUser;
  s.password = MariaDb::kPassword;
  s.database = MariaDb::kDatabase;
  s.table = "log_events";
  s.connect_timeout_s = 10;
  s.timeout_s = 600;
  return s;
}

mariadb::Conn connect_or_die(const MariaDb &db) {
  unsigned err = 0;
  std::string why;
  auto c = mariadb::connect(settings(db), err, why);
  if (!c) die(why);
  return c;
}

void exec(MYSQL *m, const std::string &sql) {
  if (mysql_real_query(m, sql.data(), sql.size()) != 0)
    die(sql.substr(0, 200) + ": " + mariadb::error_text(m));
}

void fresh_table(const MariaDb &db, bool full_text) {
  auto c = connect_or_die(db);
  exec(c.get(), "DROP TABLE IF EXISTS log_events");
  exec(c.get(), mariadb::create_table_sql("log_events", full_text));
}

long long count_rows(const MariaDb &db, const std::string &where = "1") {
  auto c = connect_or_die(db);
  std::vector<std::vector<std::string>> rows;
  std::string why;
  if (!mariadb::query_rows(c.get(), "SELECT COUNT(*) FROM log_events WHERE " + where, rows, why))
    die(why);
  return std::atoll(rows[0][0].c_str());
}

// The rows dummy generates: same fields, same event_ids (XXH3-128 of "dummy.0:<seq>").
struct RowSource {
  std::string host;
  RowSource() {
    char buf[256] = {};
    gethostname(buf, sizeof buf - 1);
    host = buf;
  }
  static void event_id(long seq, uint8_t out[16]) {
    char id[64];
    const int n = std::snprintf(id, sizeof id, "dummy.0:%ld", seq);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(id, static_cast<size_t>(n)));
    std::memcpy(out, c.digest, 16);
  }
};

// Runs `work(connection, first_seq, count)` for every statement-sized slice of rows 1..n on
// `conns` threads with a connection each; returns rows/s.
template <class Work>
double parallel(const MariaDb &db, long n, int conns, Work work) {
  std::atomic<long> next{0};
  std::vector<std::thread> threads;
  std::vector<mariadb::Conn> cs;
  for (int i = 0; i < conns; ++i) cs.push_back(connect_or_die(db));
  const auto t0 = Clock::now();
  for (int i = 0; i < conns; ++i)
    threads.emplace_back([&, i] {
      for (;;) {
        const long first = next.fetch_add(kStatementRows);
        if (first >= n) break;
        work(cs[static_cast<size_t>(i)].get(), first + 1, std::min(kStatementRows, n - first));
      }
    });
  for (auto &t : threads) t.join();
  return static_cast<double>(n) / seconds_since(t0);
}

// Raw multi-row INSERT: one text statement of 1000 rows (autocommit: one transaction each).
double raw_multirow(const MariaDb &db, long n, int conns) {
  RowSource src;
  return parallel(db, n, conns, [&](MYSQL *m, long first, long count) {
    std::string sql;
    sql.reserve(static_cast<size_t>(count) * 200 + 512);
    sql =
        "INSERT INTO log_events (timestamp,source,service,host,level,trace_id,span_id,event_type,"
        "error_code,message,meta_json,event_id) VALUES ";
    char esc_host[600];
    mysql_real_escape_string(m, esc_host, src.host.data(), src.host.size());
    const auto now = std::chrono::system_clock::now();
    const std::time_t tt = std::chrono::system_clock::to_time_t(now);
    std::tm tm;
    gmtime_r(&tt, &tm);
    char ts[64];
    std::snprintf(
        ts, sizeof ts, "'%04d-%02d-%02d %02d:%02d:%02d.%06ld'", tm.tm_year + 1900, tm.tm_mon + 1,
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        static_cast<long>(
            std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
            1000000));
    char row[1024], hex[33];
    for (long s = first; s < first + count; ++s) {
      uint8_t id[16];
      RowSource::event_id(s, id);
      for (int i = 0; i < 16; ++i) std::snprintf(hex + 2 * i, 3, "%02x", id[i]);
      const int len = std::snprintf(row, sizeof row,
                                    "%s(%s,'dummy','dummy','%s','INFO',NULL,NULL,NULL,NULL,"
                                    "'dummy record %ld','{\"seq\":\"%ld\"}',X'%s')",
                                    s == first ? "" : ",", ts, esc_host, s, s, hex);
      sql.append(row, static_cast<size_t>(len));
    }
    sql += " ON DUPLICATE KEY UPDATE id=id";
    exec(m, sql);
  });
}

// Raw bulk array binding: one prepared single-row INSERT executed with 1000-row arrays.
double raw_bulk(const MariaDb &db, long n, int conns) {
  RowSource src;
  const std::string sql =
      "INSERT INTO log_events (timestamp,source,service,host,level,trace_id,span_id,event_type,"
      "error_code,message,meta_json,event_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) "
      "ON DUPLICATE KEY UPDATE id=id";
  return parallel(db, n, conns, [&](MYSQL *m, long first, long count) {
    // Per-thread statement and arrays, made on first use of this connection.
    thread_local MYSQL *stmt_conn = nullptr;
    thread_local MYSQL_STMT *stmt = nullptr;
    if (stmt_conn != m) {
      stmt = mysql_stmt_init(m);
      if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) die(mariadb::error_text(stmt));
      // One explicit transaction per 1000 rows, committed as the plugin commits its batches.
      mysql_autocommit(m, 0);
      stmt_conn = m;
    }
    const size_t c = static_cast<size_t>(count);
    thread_local std::vector<MYSQL_TIME> times;
    thread_local std::vector<MYSQL_TIME *> tptr;
    thread_local std::vector<const char *> ptr[12];
    thread_local std::vector<unsigned long> len[12];
    thread_local std::vector<char> ind[12];
    thread_local std::vector<std::string> msgs, metas;
    thread_local std::vector<std::array<uint8_t, 16>> ids;
    times.resize(c), tptr.resize(c), msgs.resize(c), metas.resize(c), ids.resize(c);
    for (auto &v : ptr) v.resize(c);
    for (auto &v : len) v.resize(c);
    for (auto &v : ind) v.assign(c, STMT_INDICATOR_NONE);
    const auto now = std::chrono::system_clock::now();
    const std::time_t tt = std::chrono::system_clock::to_time_t(now);
    std::tm tm;
    gmtime_r(&tt, &tm);
    MYSQL_TIME t{};
    t.year = static_cast<unsigned>(tm.tm_year + 1900),
    t.month = static_cast<unsigned>(tm.tm_mon + 1);
    t.day = static_cast<unsigned>(tm.tm_mday), t.hour = static_cast<unsigned>(tm.tm_hour);
    t.minute = static_cast<unsigned>(tm.tm_min), t.second = static_cast<unsigned>(tm.tm_sec);
    t.time_type = MYSQL_TIMESTAMP_DATETIME;
    auto set = [&](int col, size_t r, const char *p, size_t l) {
      ptr[col][r] = p;
      len[col][r] = static_cast<unsigned long>(l);
    };
    for (size_t r = 0; r < c; ++r) {
      const long s = first + static_cast<long>(r);
      times[r] = t;
      tptr[r] = &times[r];
      msgs[r] = "dummy record " + std::to_string(s);
      metas[r] = "{\"seq\":\"" + std::to_string(s) + "\"}";
      RowSource::event_id(s, ids[r].data());
      set(1, r, "dummy", 5), set(2, r, "dummy", 5), set(3, r, src.host.data(), src.host.size());
      set(4, r, "INFO", 4);
      for (int col = 5; col <= 8; ++col) set(col, r, nullptr, 0), ind[col][r] = STMT_INDICATOR_NULL;
      set(9, r, msgs[r].data(), msgs[r].size());
      set(10, r, metas[r].data(), metas[r].size());
      set(11, r, reinterpret_cast<const char *>(ids[r].data()), 16);
    }
    MYSQL_BIND bind[12];
    std::memset(bind, 0, sizeof bind);
    bind[0].buffer_type = MYSQL_TYPE_DATETIME;
    bind[0].buffer = tptr.data();
    bind[0].u.indicator = ind[0].data();
    for (int col = 1; col < 12; ++col) {
      bind[col].buffer_type = col == 11 ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
      bind[col].buffer = ptr[col].data();
      bind[col].length = len[col].data();
      bind[col].u.indicator = ind[col].data();
    }
    unsigned int rows = static_cast<unsigned int>(c);
    if (mysql_stmt_attr_set(stmt, STMT_ATTR_ARRAY_SIZE, &rows) != 0 ||
        mysql_stmt_bind_param(stmt, bind) != 0 || mysql_stmt_execute(stmt) != 0)
      die(mariadb::error_text(stmt));
    if (mysql_commit(m) != 0) die(mariadb::error_text(m));
  });
}

// Where the CPU of one insert run went (the machine has few cores: mariadbd, devmesh and the
// clients share them, so CPU per row bounds rows/s): mariadbd, this program (the raw clients or
// the HTTP clients), and the devmesh it waited for.
struct CpuUse {
  double server = 0, bench = 0, devmesh = 0;
};

class CpuMeter {
 public:
  explicit CpuMeter(const MariaDb &db)
      : pid_(db.pid()),
        server_(bench::process_cpu_s(pid_)),
        self_(bench::rusage_cpu_s(RUSAGE_SELF)),
        kids_(bench::rusage_cpu_s(RUSAGE_CHILDREN)) {}
  // CPU ms per 1000 rows since construction.
  CpuUse per_1000(long rows) const {
    const double k = 1e6 / static_cast<double>(rows);  // s per row -> ms per 1000 rows
    return {(bench::process_cpu_s(pid_) - server_) * k,
            (bench::rusage_cpu_s(RUSAGE_SELF) - self_) * k,
            (bench::rusage_cpu_s(RUSAGE_CHILDREN) - kids_) * k};
  }

 private:
  pid_t pid_;
  double server_, self_, kids_;
};

std::string cpu_text(const CpuUse &c) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "CPU ms/1000 rows: mariadbd %.1f, clients %.1f, devmesh %.1f",
                c.server, c.bench, c.devmesh);
  return buf;
}

// The engine's peak RSS of the last through_devmesh or through_http run (KiB).
long last_peak_rss_kib = 0;

// dummy -> mariadb through the binary: rows / (spawn to exit), startup included (~10 ms).
double through_devmesh(const Options &o, const MariaDb &db, long n, int workers, bool full_text,
                       const std::string &extra = "") {
  const std::string yaml_path = o.dir + "/bench.yaml";
  test::write_file(yaml_path, "service:\n  plugins_dir: [" + o.plugins +
                                  "]\n  exit_when_done: true\n"
                                  "  log_level: warn\npipeline:\n  inputs:\n"
                                  "    - {name: dummy, rate: 0, count: " +
                                  std::to_string(n) +
                                  ", batch: 1000}\n"
                                  "  outputs:\n    - name: mariadb\n      socket: " +
                                  db.socket() + "\n      password: " + MariaDb::kPassword +
                                  "\n      workers: " + std::to_string(workers) +
                                  "\n      batch_size: 1000\n      full_text: " +
                                  (full_text ? "true" : "false") + "\n" + extra);
  const auto t0 = Clock::now();
  test::Process p({o.devmesh, "-c", yaml_path}, o.dir, "devmesh");
  const int code = p.wait_exit(std::chrono::hours(1));
  const double secs = seconds_since(t0);
  if (code != 0) die("devmesh exited " + std::to_string(code) + ": " + p.err());
  last_peak_rss_kib = p.max_rss_kib();
  return static_cast<double>(n) / secs;
}

size_t discard(char *, size_t s, size_t n, void *);

// What one through_http run saw besides its rate: the flushes reaching the output and the
// client's 503s (queues full).
struct HttpRunInfo {
  double flushes = 0, records_out = 0;
  long busy = 0;
};

// http (ack: delivered) -> mariadb through the binary, fed by o.http_clients libcurl clients
// (one keep-alive connection each) posting o.http_records-record bodies of the rows dummy makes
// (unique messages: each body's records get their own event_ids): rows / (first post to the
// last 2xx; with ack: delivered a 2xx means committed).
double through_http(const Options &o, const MariaDb &db, long n, int workers, bool full_text,
                    HttpRunInfo *info) {
  const int port = test::free_port(), mport = test::free_port();
  const std::string yaml_path = o.dir + "/http.yaml";
  test::write_file(
      yaml_path,
      "service:\n  plugins_dir: [" + o.plugins +
          "]\n  log_level: warn\n  http_listen: 127.0.0.1:" + std::to_string(mport) +
          "\npipeline:\n  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
          ", ack: delivered}\n  outputs:\n    - name: mariadb\n      socket: " + db.socket() +
          "\n      password: " + MariaDb::kPassword +
          "\n      workers: " + std::to_string(workers) +
          "\n      batch_size: 1000\n      full_text: " + (full_text ? "true" : "false") + "\n" +
          o.http_extra);
  test::Process p({o.devmesh, "-c", yaml_path}, o.dir, "http");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  const std::string health = "http://127.0.0.1:" + std::to_string(mport) + "/health";
  {
    std::string body;
    if (!test::wait_until([&] { return test::http_get(health, &body, o.dir) == 200; },
                          std::chrono::seconds(30)))
      die("devmesh (http) did not come up: " + p.err());
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  std::atomic<long> next{0}, busy{0}, failed{0};
  const long per = o.http_records;
  auto client = [&] {
    CURL *c = curl_easy_init();
    curl_slist *h = curl_slist_append(nullptr, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    std::string body;
    char rec[512];
    for (;;) {
      const long first = next.fetch_add(per);
      if (first >= n) break;
      const long count = std::min(per, n - first);
      body = "{\"logs\":[";
      for (long s = first + 1; s <= first + count; ++s) {
        const int len = std::snprintf(
            rec, sizeof rec,
            "%s{\"source\":\"dummy\",\"service\":\"dummy\",\"host\":\"%s\",\"level\":\"INFO\","
            "\"message\":\"dummy record %ld\",\"meta_json\":{\"seq\":\"%ld\"}}",
            s == first + 1 ? "" : ",", host, s, s);
        body.append(rec, static_cast<size_t>(len));
      }
      body += "]}";
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      for (int tries = 0;; ++tries) {
        long code = 0;
        if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200) break;
        if (code == 503 && tries < 1000) {  // queues full: come back, as a client does
          ++busy;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        ++failed;
        break;
      }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < o.http_clients; ++i) clients.emplace_back(client);
  for (auto &t : clients) t.join();
  const double secs = seconds_since(t0);
  if (failed) die("http -> mariadb: " + std::to_string(failed.load()) + " requests failed");
  std::string metrics;
  test::http_get("http://127.0.0.1:" + std::to_string(mport) + "/metrics", &metrics, o.dir);
  if (info) {
    info->busy = busy;
    info->flushes =
        test::find_metric(metrics, "devmesh_flush_duration_seconds_count", "plugin=\"mariadb\"")
            .value_or(0);
    info->records_out =
        test::find_metric(metrics, "devmesh_records_out_total", "plugin=\"mariadb\"").value_or(0);
  }
  p.kill(SIGTERM);
  const int code = p.wait_exit(std::chrono::minutes(2));
  if (code != 0) die("devmesh (http) exited " + std::to_string(code) + ": " + p.err());
  last_peak_rss_kib = p.max_rss_kib();
  return static_cast<double>(n) / secs;
}

// Rows aged `days` days, inserted server-side (the seq storage engine) before a measured run.
void prefill(const MariaDb &db, long rows, int days) {
  auto c = connect_or_die(db);
  exec(c.get(), "SET SESSION autocommit=1");
  const long step = 100000;
  for (long first = 1; first <= rows; first += step) {
    const long last = std::min(rows, first + step - 1);
    exec(c.get(),
         "INSERT INTO log_events (timestamp,source,service,host,level,message,meta_json,event_id) "
         "SELECT UTC_TIMESTAMP(6) - INTERVAL " +
             std::to_string(days) +
             " DAY, 'old', 'prefill', 'h', 'INFO', CONCAT('prefill ', seq), "
             "CONCAT('{\"seq\":\"', seq, '\"}'), UNHEX(MD5(CONCAT('prefill', seq))) FROM seq_" +
             std::to_string(first) + "_to_" + std::to_string(last));
  }
}

size_t discard(char *, size_t s, size_t n, void *) {
  return s * n;
}

// GET /query/logs latency for one-hour, one-service windows on a table_rows table spread over
// 24 h (20 services, 5 hosts, FULLTEXT on), next to the same SQL as a prepared statement.
void query_part(const Options &o, const MariaDb &db) {
  fresh_table(db, true);
  const auto t0 = Clock::now();
  {
    auto c = connect_or_die(db);
    const long step = 100000;
    const std::string per_row_ms = std::to_string(86400000.0 / static_cast<double>(o.table_rows));
    for (long first = 1; first <= o.table_rows; first += step) {
      const long last = std::min(o.table_rows, first + step - 1);
      exec(
          c.get(),
          "INSERT INTO log_events (timestamp,source,service,host,level,message,meta_json,event_id,"
          "pattern_id) "
          "SELECT TIMESTAMP'2025-11-28 00:00:00' + INTERVAL ROUND(seq * " +
              per_row_ms +
              ") * 1000 MICROSECOND, 'journald', CONCAT('service-', LPAD(CRC32(seq) % 20, 2, '0'), "
              "'.service'), CONCAT('node-', CRC32(seq * 7) % 5), ELT(CRC32(seq * 3) % 10 + 1, "
              "'INFO', "
              "'INFO', 'INFO', 'INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR', 'INFO'), "
              "CONCAT('request ', seq, ' handled in ', CRC32(seq * 5) % 900, ' ms status ', "
              "IF(CRC32(seq * 11) % 50 = 0, 500, 200)), '{\"pid\":\"1234\"}', "
              "UNHEX(MD5(CONCAT('q', seq))), CRC32(seq * 13) % " +
              std::to_string(kQueryPatterns) + " + 1 FROM seq_" + std::to_string(first) + "_to_" +
              std::to_string(last));
    }
    // The patterns table the mariadb output would have written beside these rows.
    exec(c.get(), mariadb::create_patterns_sql("log_events"));
    exec(c.get(),
         "INSERT INTO log_patterns SELECT pattern_id, 'service-00.service', CONCAT('template ', "
         "pattern_id, ' <*>'), MIN(timestamp), MAX(timestamp), COUNT(*) FROM log_events GROUP BY "
         "pattern_id");
    exec(c.get(), "ANALYZE TABLE log_events");
  }
  std::printf("\nquery: built %ld rows over 24 h in %.1f s\n", o.table_rows, seconds_since(t0));
  int64_t start_ns = 0;
  parse_rfc3339("2025-11-28T00:00:00Z", start_ns);
  const int64_t hour = int64_t{3600} * 1000000000;
  struct Q {
    std::string url_query;
    int svc;
    int64_t from;
  };
  std::vector<Q> qs;
  uint64_t seed = 7;
  auto rnd = [&] { return (seed = seed * 6364136223846793005ULL + 1442695040888963407ULL) >> 33; };
  for (int i = 0; i < o.queries; ++i) {
    const int svc = static_cast<int>(rnd() % 20);
    const int64_t from = start_ns + static_cast<int64_t>(rnd() % 23) * hour +
                         static_cast<int64_t>(rnd() % 3600) * 1000000000;
    char buf[256];
    std::snprintf(buf, sizeof buf, "service=service-%02d.service&start_time=%s&end_time=%s", svc,
                  format_rfc3339_us(from).c_str(), format_rfc3339_us(from + hour).c_str());
    qs.push_back({buf, svc, from});
  }

  // In-process: the SQL the query plugin runs, as a prepared statement on one connection.
  std::vector<double> raw_ms;
  {
    auto c = connect_or_die(db);
    const std::string sql =
        "SELECT id, timestamp, source, service, host, level, trace_id, span_id, event_type, "
        "error_code, message, meta_json FROM `log_events` WHERE service = ? AND timestamp >= ? "
        "AND timestamp <= ? ORDER BY timestamp DESC, id DESC LIMIT 101";
    MYSQL_STMT *st = mysql_stmt_init(c.get());
    if (mysql_stmt_prepare(st, sql.data(), sql.size()) != 0) die(mariadb::error_text(st));
    for (const Q &q : qs) {
      char svc[32];
      unsigned long svc_len =
          static_cast<unsigned long>(std::snprintf(svc, sizeof svc, "service-%02d.service", q.svc));
      MYSQL_TIME from, to;
      mariadb::to_mysql_time(q.from, from);
      mariadb::to_mysql_time(q.from + hour, to);
      MYSQL_BIND b[3];
      std::memset(b, 0, sizeof b);
      b[0].buffer_type = MYSQL_TYPE_STRING, b[0].buffer = svc, b[0].length = &svc_len;
      b[1].buffer_type = MYSQL_TYPE_DATETIME, b[1].buffer = &from;
      b[2].buffer_type = MYSQL_TYPE_DATETIME, b[2].buffer = &to;
      const auto t = Clock::now();
      if (mysql_stmt_bind_param(st, b) != 0 || mysql_stmt_execute(st) != 0 ||
          mysql_stmt_store_result(st) != 0)
        die(mariadb::error_text(st));
      mysql_stmt_free_result(st);
      raw_ms.push_back(seconds_since(t) * 1e3);
    }
    mysql_stmt_close(st);
  }

  // Through the binary: the query plugin over HTTP, one keep-alive connection.
  const int port = test::free_port();
  const std::string yaml = o.dir + "/query.yaml";
  test::write_file(yaml, "service:\n  plugins_dir: [" + o.plugins +
                             "]\n  log_level: warn\n"
                             "pipeline:\n  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                             "  outputs:\n    - {name: query, match: none, store: mariadb, listen: "
                             "127.0.0.1:" +
                             std::to_string(port) + ", socket: " + db.socket() +
                             ", password: " + MariaDb::kPassword + "}\n");
  test::Process p({o.devmesh, "-c", yaml}, o.dir, "query");
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  long code = 0;
  for (int i = 0; i < 200 && code != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    curl_easy_setopt(c, CURLOPT_URL, (base + "/health").c_str());
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  }
  long bad = 0;
  auto run = [&](const std::string &query, std::vector<double> *out) {
    curl_easy_setopt(c, CURLOPT_URL, (base + "/query/logs?" + query).c_str());
    const auto t = Clock::now();
    if (curl_easy_perform(c) != CURLE_OK) ++bad;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) ++bad;
    if (out) out->push_back(seconds_since(t) * 1e3);
  };
  std::vector<double> http_ms, fts_ms, level_ms;
  // The warm-up and the full-text requests take the first windows, cycled (as
  // bench_store_sqlite, whose --queries may be fewer than 50).
  auto nth_window = [&](int i) { return qs[static_cast<size_t>(i) % qs.size()].url_query; };
  for (int i = 0; i < 20; ++i) run(nth_window(i), nullptr);  // warm-up
  for (const Q &q : qs) run(q.url_query, &http_ms);
  for (int i = 0; i < 50; ++i) run(nth_window(i) + "&q=status+500", &fts_ms);
  for (int i = 0; i < 50; ++i) run("min_level=ERROR", &level_ms);
  const auto pattern_ms = bench::time_pattern_requests(c, base, o.pattern_requests, bad);
  curl_easy_cleanup(c);
  p.kill(SIGTERM);
  p.wait_exit(std::chrono::seconds(30));
  std::printf("query: %d one-hour one-service windows on %ld rows (limit 100)%s\n", o.queries,
              o.table_rows, bad ? " -- SOME REQUESTS FAILED" : "");
  std::printf("  raw prepared SQL           p50 %6.2f ms  p99 %6.2f ms\n", percentile(raw_ms, .5),
              percentile(raw_ms, .99));
  std::printf("  GET /query/logs via HTTP   p50 %6.2f ms  p99 %6.2f ms  (target p99 <= 50 ms)\n",
              percentile(http_ms, .5), percentile(http_ms, .99));
  std::printf("  same + q=status+500        p50 %6.2f ms  p99 %6.2f ms  (50 queries)\n",
              percentile(fts_ms, .5), percentile(fts_ms, .99));
  std::printf("  min_level=ERROR, no window p50 %6.2f ms  p99 %6.2f ms  (50 queries)\n",
              percentile(level_ms, .5), percentile(level_ms, .99));
  bench::print_pattern_requests(kQueryPatterns, o.pattern_requests, pattern_ms);
  // The plans of the count with a level (count_patterns in query_mariadb.cpp, its SQL copied):
  // the window's pattern ids by a loose index scan, then their counts, 100 ids a statement.
  auto e = connect_or_die(db);
  const std::string window = "timestamp >= '2025-11-28' AND timestamp <= '2025-11-29'";
  std::string ids;
  for (int i = 1; i <= 100; ++i) ids += (i > 1 ? "," : "") + std::to_string(i);
  for (const std::string &sql :
       {"EXPLAIN SELECT pattern_id, MIN(timestamp) FROM log_events WHERE pattern_id IS NOT NULL "
        "AND " +
            window + " GROUP BY pattern_id",
        "EXPLAIN SELECT pattern_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM log_events "
        "WHERE pattern_id IN (" +
            ids + ") AND " + window +
            " AND level IN ('WARN','WARNING','ERROR','CRITICAL','FATAL') GROUP BY pattern_id"}) {
    std::vector<std::vector<std::string>> plan;
    std::string why;
    if (!mariadb::query_rows(e.get(), sql, plan, why)) die(why);
    std::printf("  %s\n", sql.c_str());
    for (const auto &row : plan) {
      std::string line;
      for (const auto &v : row) line += (line.empty() ? "" : " | ") + v;
      std::printf("    %s\n", line.c_str());
    }
  }
}

void usage() {
  std::puts(
      "usage: bench_store_mariadb [--rows N] [--runs N] [--connections 1,2] "
      "[--retention-rows N] [--retention-pause DURATION] [--no-full-text] [--no-retention] "
      "[--no-inserts] [--no-query] [--query-only] [--table-rows N] [--pattern-requests N] "
      "[--no-http] "
      "[--http-clients N] [--http-records N] [--http-extra 'KEY: VALUE'] [--devmesh PATH] "
      "[--plugins DIR] [--dir DIR]");
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  using namespace devmesh;
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(), std::exit(2);
      return argv[++i];
    };
    if (a == "--rows")
      o.rows = std::atol(next().c_str());
    else if (a == "--runs")
      o.runs = std::max(1, std::atoi(next().c_str()));
    else if (a == "--retention-rows")
      o.retention_rows = std::atol(next().c_str());
    else if (a == "--no-full-text")
      o.full_text = false;
    else if (a == "--no-retention")
      o.retention = false;
    else if (a == "--no-inserts")
      o.inserts = false;
    else if (a == "--no-query")
      o.query = false;
    else if (a == "--query-only")
      o.inserts = o.retention = false;
    else if (a == "--table-rows")
      o.table_rows = std::atol(next().c_str());
    else if (a == "--pattern-requests")
      o.pattern_requests = std::atoi(next().c_str());
    else if (a == "--retention-pause")
      o.retention_extra += "      retention_pause: " + next() + "\n";
    else if (a == "--devmesh")  // another build (its plugins with --plugins)
      o.devmesh = next();
    else if (a == "--plugins")
      o.plugins = next();
    else if (a == "--no-http")
      o.http = false;
    else if (a == "--http-clients")
      o.http_clients = std::max(1, std::atoi(next().c_str()));
    else if (a == "--http-records")
      o.http_records = std::max(1L, std::atol(next().c_str()));
    else if (a == "--http-extra")  // e.g. 'flush: interval'
      o.http_extra += "      " + next() + "\n";
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--connections") {
      o.connections.clear();
      std::string v = next();
      for (size_t p = 0; p < v.size();) {
        size_t e = v.find(',', p);
        o.connections.push_back(std::atoi(v.substr(p, e - p).c_str()));
        p = e == std::string::npos ? v.size() : e + 1;
      }
    } else {
      usage();
      return a == "--help" ? 0 : 2;
    }
  }
  std::unique_ptr<test::TempDir> tmp;
  if (o.dir.empty()) {
    tmp = std::make_unique<test::TempDir>();
    o.dir = tmp->path();
  }
  // MariaDB's defaults where they matter for insert rate: redo log flushed at every commit,
  // 128 MiB buffer pool, 96 MiB redo log (the reference figures used them).
  MariaDb::Options mo;
  mo.durable = true;
  mo.buffer_pool = "128M";
  mo.log_file_size = "96M";
  mo.template_dir = DEVMESH_BENCH_BUILD_DIR "/tools/bench/store/mariadb-template";
  MariaDb db(o.dir, mo);
  std::string err;
  if (!db.start(&err)) die(err);
  std::printf(
      "MariaDB %s, %ld rows per run into a fresh table (UNIQUE event_id, prototype indexes), "
      "%d run(s), medians\n",
      db.value("SELECT VERSION()").c_str(), o.rows, o.runs);

  auto expect_rows = [&](long long want, const char *what) {
    const long long got = count_rows(db);
    if (got != want)
      die(std::string(what) + ": " + std::to_string(got) + " rows, want " + std::to_string(want));
  };

  std::printf("\n%-5s %-9s %14s %14s %14s %10s %10s %14s %10s %9s %9s\n", "conns", "fulltext",
              "raw multi-row", "raw bulk", "devmesh", "/multi-row", "/bulk", "via http", "/bulk",
              "peak RSS", "http RSS");
  std::vector<bool> ft_modes;
  if (o.inserts) ft_modes.push_back(false);
  if (o.inserts && o.full_text) ft_modes.push_back(true);
  for (bool ft : ft_modes)
    for (int conns : o.connections) {
      // Interleaved (multi-row, bulk, devmesh, multi-row, ...): the machine's other load
      // drifts over minutes, so each run's three figures share the same conditions.
      std::vector<double> multis, bulks, dms, https, rss, http_rss, http_ratio;
      for (int r = 0; r < o.runs; ++r) {
        fresh_table(db, ft);
        multis.push_back(raw_multirow(db, o.rows, conns));
        expect_rows(o.rows, "raw multi-row");
        fresh_table(db, ft);
        CpuMeter bulk_cpu(db);
        bulks.push_back(raw_bulk(db, o.rows, conns));
        const CpuUse bulk_use = bulk_cpu.per_1000(o.rows);
        expect_rows(o.rows, "raw bulk");
        fresh_table(db, ft);
        CpuMeter dm_cpu(db);
        dms.push_back(through_devmesh(o, db, o.rows, conns, ft));
        const CpuUse dm_use = dm_cpu.per_1000(o.rows);
        rss.push_back(static_cast<double>(last_peak_rss_kib));
        expect_rows(o.rows, "devmesh");
        CpuUse http_use;
        std::printf("      run %d: multi-row %.0f/s, bulk %.0f/s, devmesh %.0f/s", r + 1,
                    multis.back(), bulks.back(), dms.back());
        if (o.http) {
          fresh_table(db, ft);
          HttpRunInfo info;
          CpuMeter http_cpu(db);
          https.push_back(through_http(o, db, o.rows, conns, ft, &info));
          http_use = http_cpu.per_1000(o.rows);
          http_rss.push_back(static_cast<double>(last_peak_rss_kib));
          http_ratio.push_back(https.back() / bulks.back());
          expect_rows(o.rows, "http -> devmesh");
          std::printf(", via http %.0f/s (%.2f of bulk; %.0f flushes, %.0f rows each; %ld 503s)",
                      https.back(), http_ratio.back(), info.flushes,
                      info.flushes > 0 ? info.records_out / info.flushes : 0, info.busy);
        }
        std::printf("\n        raw bulk: %s\n        dummy:    %s\n", cpu_text(bulk_use).c_str(),
                    cpu_text(dm_use).c_str());
        if (o.http) std::printf("        via http: %s\n", cpu_text(http_use).c_str());
        std::fflush(stdout);
      }
      const double multi = median(multis), bulk = median(bulks), dm = median(dms);
      std::printf("%-5d %-9s %12.0f/s %12.0f/s %12.0f/s %9.0f%% %9.0f%%", conns, ft ? "yes" : "no",
                  multi, bulk, dm, 100 * dm / multi, 100 * dm / bulk);
      // The http column's ratio is the median of each run's own ratio to that run's bulk.
      if (o.http)
        std::printf(" %12.0f/s %9.0f%%", median(https), 100 * median(http_ratio));
      else
        std::printf(" %14s %10s", "-", "-");
      std::printf(" %5.1f MiB", median(rss) / 1024);
      if (o.http) std::printf(" %5.1f MiB", median(http_rss) / 1024);
      std::printf("\n");
      std::fflush(stdout);
    }

  if (o.retention) {
    // Equal table sizes: the same number of rows already there, aged 100 days (deleted by
    // retention: 90d while devmesh inserts) or 1 day (kept).
    std::printf(
        "\nretention: devmesh inserting %ld rows (1 worker, no full text) into a table that "
        "holds %ld rows\n",
        o.rows, o.retention_rows);
    for (bool on : {false, true}) {
      std::vector<double> rates;
      long long deleted = 0;
      for (int r = 0; r < o.runs; ++r) {
        fresh_table(db, false);
        prefill(db, o.retention_rows, on ? 100 : 1);
        rates.push_back(through_devmesh(o, db, o.rows, 1, false,
                                        on ? "      retention: 90d\n" + o.retention_extra : ""));
        deleted = o.retention_rows - count_rows(db, "source='old'");
      }
      std::printf("  %-32s %10.0f rows/s   %lld old rows deleted during the run\n",
                  on ? "retention: 90d (deleting)" : "no retention (same table size)",
                  median(rates), deleted);
      std::fflush(stdout);
    }
  }
  if (o.query) query_part(o, db);
  db.stop();
  return 0;
}
