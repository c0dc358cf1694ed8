// The query plugin over the MariaDB store (store: mariadb) against a private mariadbd: the same
// rows and expectations as the SQLite query tests, SQL injection, stats, /health while the
// server is down, the statement time limit, a store without FULLTEXT, and pagination across
// 10,000 rows while the mariadb output inserts.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <set>

#include "mariadb.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

constexpr int kRows = 350;
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

std::unique_ptr<Process> query_engine(const TempDir &d, const MariaDb &db, int port,
                                      const std::string &extra = "") {
  return engine(
      d,
      plugins_head() +
          "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
          "  outputs:\n    - {name: query, match: none, store: mariadb, listen: 127.0.0.1:" +
          std::to_string(port) + ", " + connection(db) + extra + "}\n",
      "query");
}

class QueryMariaDb : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    db_ = new MariaDb(dir_->path());
    std::string err;
    ASSERT_TRUE(db_->start(&err)) << err;
    make_store(*dir_, *db_);
    port_ = free_port();
    engine_ = query_engine(*dir_, *db_, port_).release();
    ASSERT_TRUE(wait_until([] { return http(base() + "/health").status == 200; }, 20s))
        << engine_->err();
  }
  static void TearDownTestSuite() {
    engine_->kill(SIGTERM);
    engine_->wait_exit(20s);
    delete engine_;
    delete db_;
    delete dir_;
  }
  static std::string base() { return "http://127.0.0.1:" + std::to_string(port_); }

  static rapidjson::Document logs(const std::string &query, HttpResponse *resp = nullptr) {
    HttpResponse r = http(base() + "/query/logs?" + query);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    EXPECT_FALSE(doc.HasParseError()) << r.body;
    if (resp) *resp = r;
    return doc;
  }
  static size_t count(const std::string &query) {
    auto doc = logs(query);
    return doc.IsArray() ? doc.Size() : 0;
  }

  static TempDir *dir_;
  static MariaDb *db_;
  static int port_;
  static Process *engine_;
};
TempDir *QueryMariaDb::dir_;
MariaDb *QueryMariaDb::db_;
int QueryMariaDb::port_;
Process *QueryMariaDb::engine_;

TEST_F(QueryMariaDb, DefaultAnswerIsThePrototypesArrayNewestFirstWithAHundredRows) {
  auto doc = logs("");
  ASSERT_TRUE(doc.IsArray());
  ASSERT_EQ(doc.Size(), 100u);
  const auto &r = doc[0];
  for (const char *k : {"id", "timestamp", "source", "service", "host", "level", "trace_id",
                        "span_id", "event_type", "error_code", "message", "meta_json"})
    EXPECT_TRUE(r.HasMember(k)) << k;
  EXPECT_EQ(std::string(r["message"].GetString()), "message number " + std::to_string(kRows - 1));
  EXPECT_EQ(std::string(r["timestamp"].GetString()), "2025-11-28T00:05:49.123456");
  EXPECT_TRUE(r["meta_json"].IsObject());
  EXPECT_EQ(std::string(r["meta_json"]["i"].GetString()), std::to_string(kRows - 1));
  EXPECT_TRUE(r["trace_id"].IsNull());
  EXPECT_TRUE(r["error_code"].IsNull());
  EXPECT_EQ(std::string(doc[2]["error_code"].GetString()), "HTTP_500");  // 347 % 7 == 4
  for (rapidjson::SizeType i = 1; i < doc.Size(); ++i)
    EXPECT_GT(std::string(doc[i - 1]["timestamp"].GetString()),
              std::string(doc[i]["timestamp"].GetString()));
}

TEST_F(QueryMariaDb, EachFilterParameterSelectsExactlyItsRows) {
  EXPECT_EQ(count("service=kernel&limit=10000"), 116u);
  EXPECT_EQ(count("host=gpu-node&limit=10000"), 175u);
  EXPECT_EQ(count("level=ERROR&limit=10000"), 50u);
  EXPECT_EQ(count("level=error&limit=10000"), 50u);
  EXPECT_EQ(count("level=WARN&limit=10000"), 50u) << "WARN and WARNING stay distinct for level=";
  EXPECT_EQ(count("min_level=ERROR&limit=10000"), 150u);
  EXPECT_EQ(count("min_level=WARN&limit=10000"), 250u) << "WARNING ranks with WARN";
  EXPECT_EQ(count("trace_id=trace-5&limit=10000"), 35u);
  EXPECT_EQ(count("start_time=2025-11-28T00:01:00Z&limit=10000"), static_cast<size_t>(kRows - 60));
  EXPECT_EQ(count("end_time=2025-11-28T00:00:09.5Z&limit=10000"), 10u);
  EXPECT_EQ(count("start_time=2025-11-28T00:00:10Z&end_time=2025-11-28T00:00:19.9Z"), 10u);
  // Microsecond bounds: the row at 00:00:10.123456 is inside [.123456, .123456] only.
  EXPECT_EQ(count("start_time=2025-11-28T00:00:10.123456Z&end_time=2025-11-28T00:00:10.123456Z"),
            1u);
  EXPECT_EQ(count("start_time=2025-11-28T00:00:10.1234561Z&end_time=2025-11-28T00:00:10.9Z"), 0u);
  EXPECT_EQ(count("start_time=2025-11-28T02:00:01%2B02:00&end_time=2025-11-28T00:00:01.5Z"), 1u);
  EXPECT_EQ(count("start_time=2025-11-28&limit=10000"), static_cast<size_t>(kRows));
  EXPECT_EQ(count("start_time=2025-11-29"), 0u);
  EXPECT_EQ(count("limit=7"), 7u);
  EXPECT_EQ(count("service=kernel&host=gpu-node&min_level=CRITICAL&limit=10000"), 17u);
  EXPECT_EQ(count("service=&host=&limit=10000"), static_cast<size_t>(kRows));
  EXPECT_EQ(count("service=nope"), 0u);
}

TEST_F(QueryMariaDb, FullTextQueryMatchesWordsAsOnePhrase) {
  auto doc = logs("q=OOM+killer&limit=100");
  ASSERT_EQ(doc.Size(), 7u);
  for (auto &r : doc.GetArray())
    EXPECT_NE(std::string(r["message"].GetString()).find("OOM killer"), std::string::npos);
  EXPECT_EQ(count("q=killer+OOM"), 0u) << "a phrase: word order matters";
  EXPECT_EQ(count("q=oom"), 7u) << "case-insensitive";
  EXPECT_EQ(count("q=OOM&service=kernel&limit=100"), 2u);
  // Boolean-mode operators are only words here.
  for (std::string q : {"OOM -killer", "+OOM +message", "\"OOM", "OOM*", "(OOM killer)", "~OOM",
                        "@3 OOM", "OOM OR message", "<OOM >killer"}) {
    HttpResponse r = http(base() + "/query/logs?q=" + url_encode(q));
    EXPECT_EQ(r.status, 200) << q << ": " << r.body;
  }
  EXPECT_EQ(count("q=" + url_encode("OOM -killer")), 7u) << "no operator: the words OOM killer";
  EXPECT_EQ(count("q=" + url_encode("OOM-killer")), 7u) << "punctuation separates words";
  EXPECT_EQ(count("q=number+0+OOM"), 1u) << "short words count, in their place";
  EXPECT_EQ(count("q=number+1+OOM"), 0u);
  EXPECT_EQ(count("q=OO"), 0u) << "whole words only";
  // A narrow window (one service, at most a day) is matched without the full-text index: the
  // same answers.
  const std::string window = "&start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T12:00:00Z";
  EXPECT_EQ(count("q=OOM+killer&service=kernel" + window), 2u);
  EXPECT_EQ(count("q=oom&service=loki.service" + window), 3u);  // i in {0, 150, 300}
  EXPECT_EQ(count("q=killer+OOM&service=kernel" + window), 0u);
  EXPECT_EQ(count("q=OO&service=kernel" + window), 0u);
  EXPECT_EQ(count("q=" + url_encode("\"OOM killer\"")), 7u);
}

TEST_F(QueryMariaDb, OrderAscReturnsOldestFirst) {
  auto doc = logs("order=asc&limit=3");
  ASSERT_EQ(doc.Size(), 3u);
  EXPECT_EQ(std::string(doc[0]["message"].GetString()), "message number 0 OOM killer invoked");
  EXPECT_EQ(std::string(doc[2]["message"].GetString()), "message number 2");
}

TEST_F(QueryMariaDb, CursorWalksEveryRowOnceInBothOrders) {
  for (std::string order : {"desc", "asc"}) {
    std::set<int64_t> ids;
    std::string cursor;
    int pages = 0;
    do {
      HttpResponse r;
      auto doc = logs(
          "order=" + order + "&limit=40&service=&" + (cursor.empty() ? "" : "cursor=" + cursor),
          &r);
      ASSERT_TRUE(doc.IsArray());
      for (auto &row : doc.GetArray())
        EXPECT_TRUE(ids.insert(row["id"].GetInt64()).second) << "repeated " << row["id"].GetInt64();
      cursor = r.headers["x-next-cursor"];
      ASSERT_LT(++pages, 20);
    } while (!cursor.empty());
    EXPECT_EQ(ids.size(), static_cast<size_t>(kRows)) << order;
    EXPECT_EQ(pages, 9) << "350 rows in pages of 40, no empty last page";
  }
  // Rows sharing one timestamp are told apart by id.
  db_->sql("UPDATE log_events SET timestamp = TIMESTAMP'2025-11-28 00:00:00.5' WHERE id % 4 = 0");
  std::set<int64_t> ids;
  std::string cursor;
  do {
    HttpResponse r;
    auto doc = logs("limit=7" + (cursor.empty() ? "" : "&cursor=" + cursor), &r);
    for (auto &row : doc.GetArray()) EXPECT_TRUE(ids.insert(row["id"].GetInt64()).second);
    cursor = r.headers["x-next-cursor"];
  } while (!cursor.empty());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kRows));
}

TEST_F(QueryMariaDb, SqlInjectionInEveryParameterGets400OrNoRowsNeverAServerError) {
  const std::string attacks[] = {
      "' OR '1'='1",
      "' OR 1=1 -- ",
      "\"; DROP TABLE log_events; --",
      "kernel' UNION SELECT id, timestamp, source, service, host, level, trace_id, span_id, "
      "event_type, error_code, message, meta_json FROM log_events -- ",
      "1) OR (1=1",
      "%' OR '%'='",
      "\\' OR 1=1 #",
      "\\'; DROP TABLE log_events; #",
      "` OR 1=1",
      "'); DELETE FROM log_events; -- ",
      "*/ OR 1=1 /*",
      "x' AND SLEEP(5) AND '1'='1",
  };
  const char *params[] = {"service",  "host",  "level", "min_level", "trace_id", "start_time",
                          "end_time", "limit", "q",     "order",     "cursor",   "envelope"};
  for (const char *p : params) {
    for (const auto &a : attacks) {
      HttpResponse r = http(base() + "/query/logs?" + p + "=" + url_encode(a));
      EXPECT_TRUE(r.status == 400 || (r.status == 200 && r.body == "[]"))
          << p << "=" << a << " -> " << r.status << " " << r.body.substr(0, 200);
    }
  }
  for (const char *p : {"since", "top"})
    for (const auto &a : attacks)
      EXPECT_EQ(http(base() + "/query/stats?" + p + "=" + url_encode(a)).status, 400) << p << a;
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM log_events"), kRows);
}

TEST_F(QueryMariaDb, StatsCountByServiceLevelAndHostSinceAWindow) {
  ASSERT_EQ(
      db_->sql(
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
          " SELECT UTC_TIMESTAMP(6) - INTERVAL seq SECOND, 's', IF(seq <= 15, 'api', 'db'), 'h1',"
          " IF(seq <= 5, 'ERROR', 'INFO'), CONCAT('fresh ', seq), UNHEX(MD5(CONCAT('f', seq)))"
          " FROM seq_1_to_20"),
      0);
  HttpResponse r = http(base() + "/query/stats?since=1h");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["total"].GetInt64(), 20);
  EXPECT_EQ(doc["by_service"]["api"].GetInt64(), 15);
  EXPECT_EQ(doc["by_service"]["db"].GetInt64(), 5);
  EXPECT_EQ(doc["by_level"]["ERROR"].GetInt64(), 5);
  EXPECT_EQ(doc["by_level"]["INFO"].GetInt64(), 15);
  EXPECT_EQ(doc["by_host"]["h1"].GetInt64(), 20);
  r = http(base() + "/query/stats?since=1h&top=1");
  doc.Parse(r.body.c_str());
  EXPECT_EQ(doc["by_service"].MemberCount(), 1u) << r.body;
  EXPECT_TRUE(doc["by_service"].HasMember("api"));
  r = http(base() + "/query/stats?since=30d");
  doc.Parse(r.body.c_str());
  EXPECT_EQ(doc["total"].GetInt64(), 20) << "the fixed rows are from 2025-11-28";
}

TEST_F(QueryMariaDb, HealthInfoAndThePrototypesDocumentedQuery) {
  HttpResponse h = http(base() + "/health");
  EXPECT_EQ(h.status, 200);
  HttpResponse i = http(base() + "/info");
  EXPECT_EQ(i.status, 200);
  EXPECT_EQ(i.body.find(MariaDb::kPassword), std::string::npos) << i.body;
  auto rows = logs("service=loki.service&level=ERROR&start_time=2025-11-28T00:00:00Z&limit=100");
  ASSERT_TRUE(rows.IsArray());
  EXPECT_EQ(rows.Size(), 16u);
  for (auto &r : rows.GetArray()) {
    EXPECT_EQ(std::string(r["service"].GetString()), "loki.service");
    EXPECT_EQ(std::string(r["level"].GetString()), "ERROR");
  }
  EXPECT_EQ(count("service=docker.service&level=ERROR&limit=10"), 10u);
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
  // cold buffer pool): the plugin serves on after a time-out.
  EXPECT_EQ(http(base + "/query/logs?service=absent&limit=5").status, 200);
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
