// The query plugin over the MariaDB store (store: mariadb) against a private mariadbd: the shared
// query contract (query_contract.h) and pattern contract (pattern_contract.h) on MariaDB, the
// whole path from the patterns filter through the mariadb output to /query/patterns, then
// /health while the server is down or the
// password is wrong, the statement time limit, a table without FULLTEXT, and pagination across
// 10,000 rows while the mariadb output inserts.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <set>
#include <thread>

#include "mariadb.h"
#include "mariadb_pipeline.h"
#include "pattern_contract.h"
#include "query_contract.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

constexpr int kRows = kQueryRows;
constexpr const char *kPasswordEnv = "DEVMESH_TEST_DB_PASSWORD";

std::string connection(const MariaDb &db) {
  return "socket: " + db.socket() + ", password: '${" + kPasswordEnv + "}'";
}

std::unique_ptr<Process> engine(const TempDir &d, const std::string &yaml,
                                const std::string &name = "engine") {
  write_file(d / (name + ".yaml"), yaml);
  return std::make_unique<Process>(
      std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name,
      std::vector<std::string>{std::string(kPasswordEnv) + "=" + MariaDb::kPassword});
}

// Creates the table with the mariadb output (so the schema is the plugin's own), then puts in
// the SQLite query tests' kRows rows: row i at 2025-11-28T00:00:00.123456Z + i s, service i%3,
// host i%2, level i%7, trace_id for i%5 == 0, "OOM killer" in the message for i%50 == 0.
void make_store(const TempDir &d, MariaDb &db, bool full_text = true) {
  auto e = engine(d,
                  plugins_head("  exit_when_done: true\n") +
                      "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: setup}\n"
                      "  outputs:\n    - {name: mariadb, full_text: " +
                      (full_text ? "true" : "false") + ", " + connection(db) + "}\n",
                  "setup");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  std::string err;
  ASSERT_EQ(
      db.sql("DELETE FROM log_events;"
             "INSERT INTO log_events (timestamp, source, service, host, level, trace_id, span_id,"
             " event_type, error_code, message, meta_json, event_id)"
             " SELECT TIMESTAMP'2025-11-28 00:00:00.123456' + INTERVAL seq SECOND, 'journald',"
             " ELT(seq % 3 + 1, 'loki.service', 'docker.service', 'kernel'),"
             " ELT(seq % 2 + 1, 'dev-services', 'gpu-node'),"
             " ELT(seq % 7 + 1, 'DEBUG', 'INFO', 'WARN', 'WARNING', 'ERROR', 'CRITICAL', 'FATAL'),"
             " IF(seq % 5 = 0, CONCAT('trace-', seq % 10), NULL), IF(seq % 5 = 0, 'span', NULL),"
             " 'http_request', IF(seq % 7 = 4, 'HTTP_500', NULL),"
             " CONCAT('message number ', seq, IF(seq % 50 = 0, ' OOM killer invoked', '')),"
             " CONCAT('{\"i\":\"', seq, '\"}'), UNHEX(MD5(seq)) FROM seq_0_to_" +
                 std::to_string(kRows - 1),
             nullptr, &err),
      0)
      << err;
}

std::unique_ptr<Process> engine_named(const TempDir &d, const MariaDb &db, int port,
                                      const std::string &extra, const std::string &name) {
  return engine(
      d,
      plugins_head() +
          "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
          "  outputs:\n    - {name: query, match: none, store: mariadb, listen: 127.0.0.1:" +
          std::to_string(port) + ", " + connection(db) + extra + "}\n",
      name);
}

std::unique_ptr<Process> query_engine(const TempDir &d, const MariaDb &db, int port,
                                      const std::string &extra = "") {
  return engine_named(d, db, port, extra, "query");
}

}  // namespace

// The contract's MariaDB backend: one server, one store and one query engine for the suite.
struct MariaDbStore {
  static void start() {
    dir = new TempDir;
    db = new MariaDb(dir->path());
    std::string err;
    ASSERT_TRUE(db->start(&err)) << err;
    make_store(*dir, *db);
    port = free_port();
    engine = query_engine(*dir, *db, port).release();
    ASSERT_TRUE(wait_until([] { return http(base() + "/health").status == 200; }, 20s))
        << engine->err();
  }
  static void stop() {
    engine->kill(SIGTERM);
    engine->wait_exit(20s);
    delete engine;
    delete db;
    delete dir;
  }
  static std::string base() { return "http://127.0.0.1:" + std::to_string(port); }
  static long row_count() {
    return static_cast<long>(db->number("SELECT COUNT(*) FROM log_events"));
  }
  static void add_fresh_rows() {
    ASSERT_EQ(
        db->sql(
            "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
            " SELECT UTC_TIMESTAMP(6) - INTERVAL seq SECOND, 's', IF(seq <= 15, 'api', 'db'),"
            " 'h1', IF(seq <= 5, 'ERROR', 'INFO'), CONCAT('fresh ', seq),"
            " UNHEX(MD5(CONCAT('f', seq))) FROM seq_1_to_20"),
        0);
  }
  static void remove_fresh_rows() {
    ASSERT_EQ(db->sql("DELETE FROM log_events WHERE source = 's'"), 0);
  }
  static void collide_timestamps() {
    ASSERT_EQ(
        db->sql(
            "UPDATE log_events SET timestamp = TIMESTAMP'2025-11-28 00:00:00.5' WHERE id % 4 = 0"),
        0);
  }
  static std::string secret() { return MariaDb::kPassword; }

  static inline TempDir *dir;
  static inline MariaDb *db;
  static inline int port;
  static inline Process *engine;
};

namespace devmesh::test {
INSTANTIATE_TYPED_TEST_SUITE_P(MariaDb, QueryContract, MariaDbStore);
}

namespace {

// A DATETIME(6) literal of a nanosecond time (UTC, microseconds).
std::string datetime(int64_t ns) {
  std::string s = devmesh::format_rfc3339_us(ns);
  s[10] = ' ';
  s.pop_back();  // the Z
  return "'" + s + "'";
}

std::string quoted(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

}  // namespace

// The pattern contract's MariaDB backend: the fixture in a store of the mariadb output's schema
// (the patterns table included), and a table as the release before patterns made it, in the
// same server.
struct MariaDbPatternStore {
  static void start() {
    dir = new TempDir;
    db = new MariaDb(dir->path());
    std::string err;
    ASSERT_TRUE(db->start(&err)) << err;
    make_store(*dir, *db);
    std::string sql = "DELETE FROM log_events; DELETE FROM log_patterns;";
    int n = 0;
    for (const PatternFixtureRow &r : pattern_fixture_rows())
      sql +=
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
          " pattern_id) VALUES (" +
          datetime(r.timestamp_ns) + ", 'fixture', " + quoted(r.service) + ", " + quoted(r.host) +
          ", " + quoted(r.level) + ", " + quoted(r.message) + ", UNHEX(MD5('fixture " +
          std::to_string(n++) + "')), " +
          (r.pattern_id ? std::to_string(static_cast<int64_t>(*r.pattern_id)) : "NULL") + ");";
    for (const PatternFixturePattern &p : pattern_fixture_table())
      sql +=
          "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count)"
          " VALUES (" +
          std::to_string(static_cast<int64_t>(p.id)) + ", " + quoted(p.service) + ", " +
          (p.template_text ? quoted(*p.template_text) : "NULL") + ", " + datetime(p.first_seen_ns) +
          ", " + datetime(p.last_seen_ns) + ", " + std::to_string(p.count) + ");";
    ASSERT_EQ(db->sql(sql, nullptr, &err), 0) << err;
    ASSERT_EQ(db->sql(previous_release_table("legacy_events") +
                          ";INSERT INTO legacy_events (timestamp, source, service, host, level, "
                          "message, event_id) SELECT TIMESTAMP'2000-01-01 00:00:00' + INTERVAL seq "
                          "SECOND, 'old', 'svc', 'h', 'INFO', CONCAT('old row ', seq), "
                          "UNHEX(MD5(CONCAT('old', seq))) FROM seq_1_to_" +
                          std::to_string(kLegacyRows),
                      nullptr, &err),
              0)
        << err;
    port = free_port();
    engine = query_engine(*dir, *db, port).release();
    legacy_port = free_port();
    legacy = engine_named(*dir, *db, legacy_port, ", table: legacy_events", "legacy").release();
    for (int p : {port, legacy_port})
      ASSERT_TRUE(wait_until(
          [&] { return http("http://127.0.0.1:" + std::to_string(p) + "/health").status == 200; },
          20s))
          << engine->err() << legacy->err();
  }
  static void stop() {
    for (Process *e : {engine, legacy}) {
      e->kill(SIGTERM);
      e->wait_exit(20s);
      delete e;
    }
    delete db;
    delete dir;
  }
  static std::string base() { return "http://127.0.0.1:" + std::to_string(port); }
  static std::string legacy_base() { return "http://127.0.0.1:" + std::to_string(legacy_port); }

  static inline TempDir *dir;
  static inline MariaDb *db;
  static inline int port, legacy_port;
  static inline Process *engine, *legacy;
};

namespace devmesh::test {
INSTANTIATE_TYPED_TEST_SUITE_P(MariaDb, PatternContract, MariaDbPatternStore);
}

namespace {

// dummy -> patterns -> mariadb -> query, in one engine: the ids the filter gives are the ones
// /query/patterns serves, with the templates and counts the output wrote, minutes adding up.
TEST(QueryMariaDbStore, RecordsThroughThePatternsFilterAreServedByTemplateWithMinutesAddingUp) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = engine(d, plugins_head() +
                         "  inputs:\n"
                         "    - {name: dummy, rate: 0, count: 300, service: sshd, messages: ["
                         "'Accepted password for root from 10.0.0.{seq} port {seq}', "
                         "'Connection closed by 10.1.{seq}.2 [preauth]', "
                         "'session opened for user app']}\n"
                         "  filters:\n    - {name: patterns}\n"
                         "  outputs:\n"
                         "    - {name: mariadb, flush_interval: 50ms, " +
                         connection(db) +
                         "}\n"
                         "    - {name: query, match: none, store: mariadb, listen: 127.0.0.1:" +
                         std::to_string(port) + ", " + connection(db) + "}\n");
  ASSERT_TRUE(wait_until([&] { return db.number("SELECT COUNT(*) FROM log_events") == 300; }, 60s))
      << e->err();
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  // The last hour (the default window) holds them all: three patterns of 100, ties by id.
  HttpResponse r = http(base + "/query/patterns");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  ASSERT_EQ(doc["patterns"].Size(), 3u) << r.body;
  std::set<std::string> templates;
  std::string previous;
  for (auto &p : doc["patterns"].GetArray()) {
    const std::string id = p["id"].GetString();
    EXPECT_GT(id, previous) << r.body;
    previous = id;
    EXPECT_EQ(p["count"].GetInt64(), 100);
    EXPECT_EQ(p["total_count"].GetInt64(), 100);
    EXPECT_EQ(std::string(p["service"].GetString()), "sshd");
    EXPECT_EQ(std::string(p["sample"]["pattern_id"].GetString()), id);
    templates.insert(p["template"].GetString());
    // Its minutes add up to its count, and /query/logs?pattern_id= gives its records.
    HttpResponse m = http(base + "/query/patterns/" + id);
    ASSERT_EQ(m.status, 200) << m.body;
    rapidjson::Document minutes;
    minutes.Parse(m.body.c_str());
    int64_t sum = 0;
    for (auto &minute : minutes["minutes"].GetArray()) sum += minute["count"].GetInt64();
    EXPECT_EQ(sum, 100) << m.body;
    HttpResponse l = http(base + "/query/logs?limit=1000&pattern_id=" + id);
    rapidjson::Document rows;
    rows.Parse(l.body.c_str());
    ASSERT_TRUE(rows.IsArray()) << l.body;
    EXPECT_EQ(rows.Size(), 100u);
    for (auto &row : rows.GetArray()) EXPECT_EQ(std::string(row["pattern_id"].GetString()), id);
  }
  EXPECT_EQ(templates, (std::set<std::string>{"Accepted password for root from <*> port <*>",
                                              "Connection closed by <*> [preauth]",
                                              "session opened for user app"}));
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

// A table of the release before patterns, served while the mariadb output upgrades it: the
// running query engine finds the new column and table (it looks again every few seconds while
// they are missing), no restart.
TEST(QueryMariaDbStore, ATableUpgradedWhileServedShowsItsPatternsWithoutARestart) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  ASSERT_EQ(db.sql(previous_release_table() +
                       ";INSERT INTO log_events (timestamp, source, service, host, level, message, "
                       "event_id) VALUES (UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE, 'old', 'svc', 'h', "
                       "'INFO', 'written by the previous release', UNHEX(MD5('old')))",
                   nullptr, &err),
            0)
      << err;
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto q = query_engine(d, db, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << q->err();
  HttpResponse r = http(base + "/query/patterns");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"patterns\":[]"), std::string::npos) << r.body;
  r = http(base + "/query/logs");
  EXPECT_NE(r.body.find("\"pattern_id\":null"), std::string::npos) << r.body;

  auto e = engine(d,
                  plugins_head("  exit_when_done: true\n") +
                      "  inputs:\n    - {name: dummy, rate: 0, count: 30, service: svc,"
                      " message: 'new row {seq}'}\n"
                      "  filters:\n    - {name: patterns}\n"
                      "  outputs:\n    - {name: mariadb, " +
                      connection(db) + "}\n",
                  "upgrade");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  rapidjson::Document doc;
  ASSERT_TRUE(wait_until(
      [&] {
        r = http(base + "/query/patterns");
        doc.Parse(r.body.c_str());
        return r.status == 200 && doc.IsObject() && doc["patterns"].Size() == 1;
      },
      30s))
      << r.body;
  EXPECT_EQ(std::string(doc["patterns"][0]["template"].GetString()), "new row <*>");
  EXPECT_EQ(doc["patterns"][0]["count"].GetInt64(), 30);
  const std::string id = doc["patterns"][0]["id"].GetString();
  r = http(base + "/query/logs?limit=100&pattern_id=" + id);
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsArray()) << r.body;
  EXPECT_EQ(doc.Size(), 30u);
  r = http(base + "/query/logs?limit=100&service=svc&order=asc");
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsArray()) << r.body;
  ASSERT_EQ(doc.Size(), 31u);
  EXPECT_TRUE(doc[0]["pattern_id"].IsNull()) << "the old row has none";
  EXPECT_EQ(std::string(doc[1]["pattern_id"].GetString()), id);
  q->kill(SIGTERM);
  EXPECT_EQ(q->wait_exit(20s), 0) << q->err();
}

TEST(QueryMariaDbStore, HealthIs503WhileTheServerIsDownAndQueriesRecoverAfter) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  make_store(d, db);
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, db, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  ASSERT_EQ(http(base + "/query/logs?limit=5").status, 200);  // pooled connections now exist
  db.stop();
  HttpResponse h = http(base + "/health");
  EXPECT_EQ(h.status, 503) << h.body;
  EXPECT_NE(h.body.find("mariadb"), std::string::npos) << h.body;
  EXPECT_EQ(http(base + "/query/logs").status, 503);
  ASSERT_TRUE(db.start(&err)) << err;
  EXPECT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s));
  EXPECT_EQ(http(base + "/query/logs?limit=5").status, 200);
}

TEST(QueryMariaDbStore, WrongPasswordMakesHealth503WithTheServersReason) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  const int port = free_port();
  write_file(d / "q.yaml",
             plugins_head() +
                 "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                 "  outputs:\n    - {name: query, match: none, store: mariadb, listen: 127.0.0.1:" +
                 std::to_string(port) + ", socket: " + db.socket() + ", password: wrong}\n");
  Process e({DEVMESH_BIN, "-c", d / "q.yaml"}, d.path(), "q");
  HttpResponse h;
  ASSERT_TRUE(wait_until(
      [&] {
        return (h = http("http://127.0.0.1:" + std::to_string(port) + "/health")).status != 0;
      },
      20s))
      << e.err();
  EXPECT_EQ(h.status, 503);
  EXPECT_NE(h.body.find("Access denied"), std::string::npos) << h.body;
}

TEST(QueryMariaDbStore, QueryPastTheStatementTimeLimitGets504) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  make_store(d, db);
  // 300k rows whose messages all match: the full-text match and its sort take a while.
  ASSERT_EQ(
      db.sql(
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
          " SELECT TIMESTAMP'2025-01-01 00:00:00' + INTERVAL seq SECOND, 's', 'big', 'h', 'INFO',"
          " CONCAT('common words ', seq), UNHEX(MD5(CONCAT('big', seq))) FROM seq_1_to_300000",
          nullptr, &err),
      0)
      << err;
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, db, port, ", statement_timeout: 10ms");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base + "/query/logs?q=common+words&order=asc&limit=10000");
  EXPECT_EQ(r.status, 504) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("statement_timeout"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_EQ(http(base + "/health").status, 200) << "the server goes on serving";
  // A query the index answers at once (a plain newest-first page can itself pass 10 ms on a
  // cold buffer pool): the plugin serves on after a time-out. On a loaded machine even this one
  // may pass 10 ms now and then (CI saw a 504), so it is asked again until it is answered.
  int status = 0;
  EXPECT_TRUE(wait_until(
      [&] { return (status = http(base + "/query/logs?service=absent&limit=5").status) == 200; },
      20s))
      << status;
}

// POST /explain/incident builds its context pack with up to ~110 store queries before it calls
// the model. A stop during the build gives up at the next query: none of the pack's per-pattern
// queries runs (the server's general log shows them), and the client gets 503. The first store
// query is held by a table lock the test takes, so the stop comes mid-build for certain.
TEST(QueryMariaDbStore, AStopDuringAnIncidentExplanationGivesUpBetweenStoreQueriesWith503) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  make_store(d, db);
  // Ten error/warning patterns in the window: a pack of a dozen queries and more.
  ASSERT_EQ(db.sql("UPDATE log_events SET pattern_id = CRC32(message) % 10 + 1", nullptr, &err), 0)
      << err;
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  // Nothing listens on the chat_url: the model is never reached either way.
  auto e = query_engine(d, db, port,
                        ", statement_timeout: 10m, timeout: 1h, model: m, chat_url: "
                        "http://127.0.0.1:" +
                            std::to_string(free_port()) + "/v1/chat/completions");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();

  Process locker({"/usr/bin/mariadb", "--no-defaults", "--protocol=socket", "-S", db.socket(),
                  "-uroot", "-N", "-B", std::string("-D") + MariaDb::kDatabase, "-e",
                  "LOCK TABLES log_events WRITE; SELECT SLEEP(3600);"},
                 d.path(), "locker");
  const std::string sleeping =
      "FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP(3600)%'";
  ASSERT_TRUE(wait_until([&] { return db.number("SELECT COUNT(*) " + sleeping) == 1; }, 30s));

  // Every statement the server runs, from here on.
  ASSERT_EQ(db.sql("SET GLOBAL log_output = 'TABLE'; SET GLOBAL general_log = 1", nullptr, &err), 0)
      << err;
  HttpResponse r;
  std::thread client([&] {
    r = http(base + "/explain/incident", {"Content-Type: application/json"}, "POST",
             R"({"start_time": "2025-11-28T00:00:00Z", "end_time": "2025-11-28T01:00:00Z"})");
  });
  // Its first store query waits for the lock.
  EXPECT_TRUE(wait_until(
      [&] {
        return db.number(
                   "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE "
                   "'Waiting for table metadata lock'") >= 1;
      },
      30s));
  e->kill(SIGTERM);
  EXPECT_TRUE(wait_until(
      [&] { return e->err().find("abandoning 1 running model request") != std::string::npos; },
      30s))
      << e->err();
  // The lock goes: the query that waited finishes, and the stop is noticed before the next.
  const long long id = db.number("SELECT ID " + sleeping);
  ASSERT_EQ(db.sql("KILL " + std::to_string(id), nullptr, &err), 0) << err;
  client.join();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
  ASSERT_EQ(db.sql("SET GLOBAL general_log = 0", nullptr, &err), 0) << err;
  // The window's patterns were asked for (the query the lock held); then nothing: not the
  // window before's, not any pattern's sample rows.
  std::string statements;
  db.sql("SELECT command_type, LEFT(argument, 150) FROM mysql.general_log", &statements);
  const std::string engine_statements =
      "FROM mysql.general_log WHERE command_type IN ('Query', 'Execute') AND argument LIKE ";
  EXPECT_EQ(db.number("SELECT COUNT(*) " + engine_statements + "'%SELECT pattern_id, COUNT(*)%'"),
            1)
      << statements;
  EXPECT_EQ(db.number("SELECT COUNT(*) " + engine_statements + "'%meta_json, pattern_id FROM%'"), 0)
      << statements;
}

TEST(QueryMariaDbStore, FullTextQueryOnATableWithoutTheIndexIs400) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  make_store(d, db, false);
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, db, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base + "/query/logs?q=OOM");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad parameter 'q': this store has no full-text index"), std::string::npos)
      << r.body;
  EXPECT_EQ(http(base + "/query/logs?service=kernel").status, 200);
}

TEST(QueryMariaDbStore, PaginationAcrossTenThousandRowsWhileInsertsRunMissesAndRepeatsNothing) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = engine(
      d, plugins_head() +
             "  inputs:\n"
             "    - {name: dummy, tag: base, rate: 0, count: 10000, batch: 1000, service: base}\n"
             "    - {name: dummy, tag: live, rate: 400, service: live, message: 'live {seq}'}\n"
             "  outputs:\n"
             "    - {name: mariadb, flush_interval: 50ms, " +
             connection(db) +
             "}\n"
             "    - {name: query, store: mariadb, listen: 127.0.0.1:" +
             std::to_string(port) + ", flush_interval: 50ms, " + connection(db) + "}\n");
  ASSERT_TRUE(wait_until(
      [&] { return db.number("SELECT COUNT(*) FROM log_events WHERE service='base'") == 10000; },
      60s))
      << e->err();
  const long long live_before = db.number("SELECT COUNT(*) FROM log_events WHERE service='live'");
  for (std::string order : {"desc", "asc"}) {
    std::set<int64_t> ids;
    std::map<std::string, int> base_seen;
    std::string cursor;
    long repeats = 0;
    for (int page = 0; page < 1000; ++page) {
      HttpResponse r = http(base + "/query/logs?order=" + order + "&limit=250" +
                            (cursor.empty() ? "" : "&cursor=" + cursor));
      ASSERT_EQ(r.status, 200) << r.body;
      rapidjson::Document doc;
      doc.Parse(r.body.c_str());
      for (auto &row : doc.GetArray()) {
        if (!ids.insert(row["id"].GetInt64()).second) ++repeats;
        if (std::string(row["service"].GetString()) == "base")
          base_seen[row["message"].GetString()]++;
      }
      cursor = r.headers["x-next-cursor"];
      if (cursor.empty()) break;
    }
    EXPECT_EQ(repeats, 0) << order;
    EXPECT_EQ(base_seen.size(), 10000u) << order << ": base rows missed";
    for (auto &[m, n] : base_seen) ASSERT_EQ(n, 1) << m;
  }
  EXPECT_GT(db.number("SELECT COUNT(*) FROM log_events WHERE service='live'"), live_before)
      << "inserts ran during the walk";
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

}  // namespace
