// bench_query_context: GET /query/context answer time on a 1M-row SQLite store (issue 13's "Context
// answer time": within 200 ms). Builds the store with the sqlite output's own schema
// (sqlite_schema.hpp): 24 h of rows from 20 services on 5 hosts, each row with the pattern id of
// one of 300 templates (one in seven WARN or ERROR), trace ids shared across services, the
// patterns table as the output keeps it, and an incident (a new error pattern and a warning that
// jumps) in the last hours. Then runs /query/context N times on the real binary over HTTP and
// prints the median and p95 of each kind of request.
#include <curl/curl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "sqlite_schema.hpp"
#include "timestamp.hpp"

namespace devmesh {
namespace {

namespace fs = std::filesystem;
namespace schema = sqlite_schema;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  long rows = 1000000;
  int queries = 200;
  std::string dir;
};

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
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

constexpr int kServices = 20, kHosts = 5, kTemplates = 300;
constexpr int64_t kHour = int64_t{3600} * 1000000000;

struct Template {
  uint64_t id;
  int service;
  const char *level;
  std::string text;  // with <*> where the rows differ
};

// 300 templates, 15 per service; every tenth is a warning, every twentieth an error. Picked
// with a skewed distribution, as real logs are: a few templates make most of the rows.
std::vector<Template> templates() {
  const char *const shapes[] = {"request <*> handled in <*> ms",
                                "cache miss for key <*>",
                                "connection from <*> accepted",
                                "job <*> finished in <*> s",
                                "user <*> logged in from <*>",
                                "flushed <*> rows to <*>",
                                "health check ok after <*> ms",
                                "slow query took <*> ms",
                                "retrying <*> after <*> ms",
                                "upstream <*> returned <*>",
                                "queue <*> depth is <*>",
                                "config reloaded from <*>",
                                "timeout talking to <*> after <*> ms",
                                "disk <*> at <*> percent",
                                "worker <*> restarted"};
  std::vector<Template> out;
  std::mt19937_64 rng(99);
  for (int i = 0; i < kTemplates; ++i) {
    const char *level = i % 20 == 7   ? "ERROR"
                        : i % 10 == 3 ? "WARN"
                        : i % 13 == 5 ? "DEBUG"
                                      : "INFO";
    out.push_back({rng(), i / 15, level, shapes[i % 15]});
  }
  return out;
}

// The template's text with each <*> replaced by a number: the row's message.
std::string fill(const std::string &t, std::mt19937_64 &rng) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    if (t.compare(i, 3, "<*>") == 0) {
      out += std::to_string(rng() % 10000);
      i += 3;
    } else {
      out += t[i++];
    }
  }
  return out;
}

// The incident: from hour 20, a new error pattern on service 3 (with trace ids), and template
// 13 (a warning of service 0) at ten times its rate.
constexpr uint64_t kIncidentId = 0xdeadbeef00c0ffeeull;

void build(const std::string &path, long rows, int64_t start_ns) {
  for (const char *suffix : {"", "-wal", "-shm"}) fs::remove(path + suffix);
  sqlite3 *db = nullptr;
  check(sqlite3_open(path.c_str(), &db), db, "open");
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF");
  exec(db, schema::create_table_sql("log_events") + schema::create_patterns_sql("log_events"));
  sqlite3_stmt *st = nullptr;
  check(sqlite3_prepare_v2(db, schema::insert_sql("log_events").c_str(), -1, &st, nullptr), db,
        "prepare");
  const std::vector<Template> ts = templates();
  std::mt19937_64 rng(42);
  std::geometric_distribution<int> skew(0.03);
  const int64_t span = 24 * kHour, step = span / rows;
  const auto t0 = Clock::now();
  exec(db, "BEGIN");
  for (long i = 0; i < rows; ++i) {
    const int64_t ts_ns = start_ns + step * i;
    const bool incident = ts_ns >= start_ns + 20 * kHour;
    const Template *t = &ts[static_cast<size_t>(skew(rng) % kTemplates)];
    uint64_t pattern = t->id;
    std::string message;
    const char *level = t->level;
    int service = t->service;
    if (incident && rng() % 100 == 0) {
      pattern = kIncidentId;
      service = 3;
      level = "ERROR";
      message = "payment provider " + std::to_string(rng() % 4) + " refused the connection";
    } else if (incident && rng() % 100 < 5) {
      t = &ts[13];
      pattern = t->id;
      service = t->service;
      level = t->level;
      message = fill(t->text, rng);
    } else {
      message = fill(t->text, rng);
    }
    char svc[32], host[32], trace[32];
    const int sl = std::snprintf(svc, sizeof svc, "service-%02d.service", service);
    const int hl = std::snprintf(host, sizeof host, "node-%d", static_cast<int>(rng() % kHosts));
    // A third of the rows are in a trace; a trace spans ~5 consecutive rows of any service.
    const bool traced = rng() % 3 == 0;
    const int tl = std::snprintf(trace, sizeof trace, "trace-%ld", i / 5);
    uint64_t event_id[2] = {static_cast<uint64_t>(i), 0xbe4c};
    sqlite3_bind_int64(st, 1, ts_ns);
    sqlite3_bind_text(st, 2, "journald", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, svc, sl, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, host, hl, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, level, -1, SQLITE_STATIC);
    if (traced)
      sqlite3_bind_text(st, 6, trace, tl, SQLITE_STATIC);
    else
      sqlite3_bind_null(st, 6);
    for (int c = 7; c <= 9; ++c) sqlite3_bind_null(st, c);
    sqlite3_bind_text(st, 10, message.data(), static_cast<int>(message.size()), SQLITE_STATIC);
    sqlite3_bind_text(st, 11, "{\"pid\":\"1234\"}", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 12, event_id, 16, SQLITE_STATIC);
    sqlite3_bind_int64(st, 13, static_cast<int64_t>(pattern));
    check(sqlite3_step(st), db, "insert");
    sqlite3_reset(st);
    if (i % 100000 == 99999) exec(db, "COMMIT; BEGIN");
  }
  exec(db, "COMMIT");
  sqlite3_finalize(st);
  // The patterns table as the sqlite output keeps it (one row per pattern, all-time counts).
  std::string texts = "CREATE TEMP TABLE texts (id INTEGER PRIMARY KEY, template TEXT);";
  for (const Template &t : ts)
    texts += "INSERT INTO texts VALUES (" + std::to_string(static_cast<int64_t>(t.id)) + ", '" +
             t.text + "');";
  texts += "INSERT INTO texts VALUES (" + std::to_string(static_cast<int64_t>(kIncidentId)) +
           ", 'payment provider <*> refused the connection');";
  exec(db, texts);
  exec(db,
       "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count)"
       " SELECT e.pattern_id, min(e.service), t.template, min(e.timestamp), max(e.timestamp),"
       " count(*) FROM log_events e LEFT JOIN texts t ON t.id = e.pattern_id GROUP BY"
       " e.pattern_id");
  // No ANALYZE: the sqlite output never runs it, so the planner sees what it sees in the field.
  sqlite3_close(db);
  std::printf("built %ld rows over 24 h (%d templates, 20 services, 5 hosts) in %.1f s\n", rows,
              kTemplates, seconds_since(t0));
}

size_t keep(char *p, size_t s, size_t n, void *u) {
  static_cast<std::string *>(u)->append(p, s * n);
  return s * n;
}

pid_t spawn(const Options &o, const std::string &yaml, const std::string &log) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE *f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    execl(o.devmesh.c_str(), o.devmesh.c_str(), "-c", yaml.c_str(), nullptr);
    _exit(127);
  }
  return pid;
}

void run(const Options &o) {
  const std::string path = o.dir + "/context.db";
  int64_t start_ns = 0;
  parse_rfc3339("2025-11-28T00:00:00Z", start_ns);
  if (!fs::exists(path)) build(path, o.rows, start_ns);
  const int port = 20000 + static_cast<int>(getpid() % 20000);
  const std::string yaml = o.dir + "/context.yaml";
  std::ofstream(yaml) << "service:\n  plugins_dir: [" << o.plugins << "]\n"
                      << "pipeline:\n  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                      << "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" << port
                      << ", path: " << path << "}\n";
  pid_t pid = spawn(o, yaml, o.dir + "/context.log");
  CURL *c = curl_easy_init();
  std::string body;
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, keep);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  long code = 0;
  for (int i = 0; i < 200 && code != 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    curl_easy_setopt(c, CURLOPT_URL, (base + "/health").c_str());
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  }
  long bad = 0;
  size_t bytes = 0;
  auto get = [&](const std::string &query) {
    body.clear();
    curl_easy_setopt(c, CURLOPT_URL, (base + "/query/context?" + query).c_str());
    const auto t0 = Clock::now();
    code = 0;
    if (curl_easy_perform(c) != CURLE_OK) ++bad;
    const double ms = seconds_since(t0) * 1e3;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
      if (bad++ < 3) std::fprintf(stderr, "%ld for %s: %s\n", code, query.c_str(), body.c_str());
    }
    bytes = body.size();
    return ms;
  };
  std::mt19937 rng(7);
  auto at = [&](int64_t ns) { return format_rfc3339_us(ns); };
  struct Kind {
    const char *name;
    std::vector<double> ms;
    size_t bytes = 0;
  };
  Kind k15{"15m window (start_time/end_time), json", {}}, k15t{"15m window, format=text", {}},
      k1h{"1h window (around/window), json", {}}, kinc{"15m at the incident's start, json", {}},
      ksvc{"15m window, service= and host=, json", {}},
      k24h{"24h window (the whole table), json", {}};
  for (int i = 0; i < 5; ++i)
    get("start_time=" + at(start_ns) + "&end_time=" + at(start_ns + kHour));
  for (int i = 0; i < o.queries; ++i) {
    // Anywhere in the day but the first 15 minutes (whose window before is empty).
    const int64_t from =
        start_ns + kHour / 4 + static_cast<int64_t>(rng() % (23 * 3600)) * 1000000000;
    const std::string w = "start_time=" + at(from) + "&end_time=" + at(from + kHour / 4);
    k15.ms.push_back(get(w));
    k15.bytes = std::max(k15.bytes, bytes);
    k15t.ms.push_back(get(w + "&format=text"));
    k15t.bytes = std::max(k15t.bytes, bytes);
    ksvc.ms.push_back(get(w + "&service=service-0" + std::to_string(rng() % 10) +
                          ".service&host=node-" + std::to_string(rng() % kHosts)));
    ksvc.bytes = std::max(ksvc.bytes, bytes);
    k1h.ms.push_back(get("around=" + at(from + kHour / 2) + "&window=1h"));
    k1h.bytes = std::max(k1h.bytes, bytes);
    const int64_t inc = start_ns + 20 * kHour + static_cast<int64_t>(rng() % 600) * 1000000000;
    kinc.ms.push_back(get("start_time=" + at(inc) + "&end_time=" + at(inc + kHour / 4)));
    kinc.bytes = std::max(kinc.bytes, bytes);
  }
  for (int i = 0; i < 5; ++i) {
    k24h.ms.push_back(get("start_time=" + at(start_ns) + "&end_time=" + at(start_ns + 24 * kHour)));
    k24h.bytes = std::max(k24h.bytes, bytes);
  }
  // What the incident's pack starts with, to see the ranking is the expected one.
  const int64_t inc = start_ns + 20 * kHour;
  get("start_time=" + at(inc) + "&end_time=" + at(inc + kHour / 4) +
      "&format=text&max_patterns=3&samples=1");
  const std::string head = body.substr(0, std::min<size_t>(body.size(), 1400));
  curl_easy_cleanup(c);
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  std::printf("GET /query/context on %ld rows in SQLite, %d requests of each kind%s\n", o.rows,
              o.queries, bad ? " -- SOME REQUESTS FAILED" : "");
  for (Kind *k : {&k15, &k15t, &ksvc, &k1h, &kinc, &k24h})
    std::printf("  %-42s median %7.2f ms  p95 %7.2f ms  (n=%zu, largest answer %zu B)\n", k->name,
                percentile(k->ms, .5), percentile(k->ms, .95), k->ms.size(), k->bytes);
  std::printf(
      "  target: within 200 ms\n\nthe incident's pack (text, max_patterns=3, samples=1), "
      "first lines:\n%s\n",
      head.c_str());
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
    else if (a == "--queries")
      o.queries = std::atoi(next().c_str());
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--devmesh")
      o.devmesh = next();
    else if (a == "--plugins")
      o.plugins = next();
    else {
      std::printf("usage: %s [--rows N] [--queries N] [--dir DIR (kept; the store is reused)]\n",
                  argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  const bool temp = o.dir.empty();
  if (temp) {
    char tmpl[] = "/tmp/bench-query-context-XXXXXX";
    o.dir = mkdtemp(tmpl);
  }
  std::filesystem::create_directories(o.dir);
  devmesh::run(o);
  if (temp) std::filesystem::remove_all(o.dir);
  return 0;
}
