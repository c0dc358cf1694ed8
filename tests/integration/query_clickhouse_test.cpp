// The query plugin over the ClickHouse store (store: clickhouse) against a private
// clickhouse-server 18.16: the shared query contract (query_contract.h) on ClickHouse, a
// re-delivered record counted once by every endpoint, /health while the server is down, the
// statement time limit, and the literal quoting that stands in for query parameters (18.16 has
// none), fuzzed against the server.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <random>
#include <tuple>

#include "../../plugins/outputs/clickhouse/clickhouse_schema.hpp"
#include "clickhouse.h"
#include "pattern_contract.h"
#include "query_contract.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

constexpr const char *kPasswordEnv = "DEVMESH_TEST_CH_PASSWORD";

std::string connection(const ClickHouse &ch) {
  return "url: '" + ch.url() + "', user: devmesh, password: '${" + kPasswordEnv + "}'";
}

std::unique_ptr<Process> engine(const TempDir &d, const std::string &yaml,
                                const std::string &name = "engine") {
  write_file(d / (name + ".yaml"), yaml);
  return std::make_unique<Process>(
      std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name,
      std::vector<std::string>{std::string(kPasswordEnv) + "=" + ClickHouse::kPassword});
}

// Creates the table with the clickhouse output (so the schema is the plugin's own), then puts
// in the contract's rows (query_contract.h).
void make_store(const TempDir &d, ClickHouse &ch, int rows = kQueryRows) {
  auto e = engine(d,
                  plugins_head("  exit_when_done: true\n") +
                      "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: setup}\n"
                      "  outputs:\n    - {name: clickhouse, " +
                      connection(ch) + "}\n",
                  "setup");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  std::string err;
  ch.sql("TRUNCATE TABLE devmesh.log_events", &err);
  ASSERT_EQ(err, "");
  if (rows == 0) return;  // 18.16 drops the connection on an INSERT SELECT of no rows
  ch.sql(
      "INSERT INTO devmesh.log_events SELECT toDateTime(1764288000 + number),"
      " toInt64(1764288000123456000 + number * 1000000000), 'journald',"
      " ['loki.service', 'docker.service', 'kernel'][number % 3 + 1],"
      " ['dev-services', 'gpu-node'][number % 2 + 1],"
      " ['DEBUG', 'INFO', 'WARN', 'WARNING', 'ERROR', 'CRITICAL', 'FATAL'][number % 7 + 1],"
      " if(number % 5 = 0, concat('trace-', toString(number % 10)), NULL),"
      " if(number % 5 = 0, 'span', NULL), 'http_request',"
      " if(number % 7 = 4, 'HTTP_500', NULL),"
      " concat('message number ', toString(number), if(number % 50 = 0, ' OOM killer invoked',"
      " '')), concat('{\"i\":\"', toString(number), '\"}'), MD5(toString(number)), NULL"
      " FROM numbers(" +
          std::to_string(rows) + ")",
      &err);
  ASSERT_EQ(err, "");
}

// Rewrites the table keeping the rows `keep` selects, with `select` as their columns: the
// sorting key (timestamp_ns) cannot be updated in place.
void rewrite(ClickHouse &ch, const std::string &select, const std::string &keep) {
  std::string err;
  for (const std::string &sql : std::vector<std::string>{
           "DROP TABLE IF EXISTS devmesh.rewrite",
           "CREATE TABLE devmesh.rewrite AS devmesh.log_events",
           "INSERT INTO devmesh.rewrite SELECT " + select +
               " FROM devmesh.log_events FINAL WHERE " + keep,
           std::string("TRUNCATE TABLE devmesh.log_events"),
           std::string("INSERT INTO devmesh.log_events SELECT * FROM devmesh.rewrite"),
           std::string("DROP TABLE devmesh.rewrite")}) {
    ch.sql(sql, &err);
    ASSERT_EQ(err, "") << sql;
  }
}

// A time after 1970 as a parameter ("...T00:00:00.123456789Z"), or with `micros` as the API
// answers it by default ("...T00:00:00.123456").
std::string rfc3339(int64_t ns, bool micros = false) {
  const time_t s = static_cast<time_t>(ns / 1000000000);
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[64];
  if (micros)
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lld", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(ns % 1000000000 / 1000));
  else
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<long long>(ns % 1000000000));
  return std::string(buf);
}

std::unique_ptr<Process> query_engine(const TempDir &d, const ClickHouse &ch, int port,
                                      const std::string &extra = "",
                                      const std::string &name = "query") {
  return engine(d,
                plugins_head() +
                    "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                    "  outputs:\n    - {name: query, match: none, store: clickhouse, listen: "
                    "127.0.0.1:" +
                    std::to_string(port) + ", " + connection(ch) + extra + "}\n",
                name);
}

}  // namespace

// The pattern contract's ClickHouse backend: the fixture's rows, each pattern's template in the
// meta "pattern" of its first row (as the patterns filter sends it, and where this store keeps
// it: ClickHouse has no patterns table, the rows are the patterns' record); and a table made
// without pattern_id for the legacy engine.
struct ClickHousePatternStore {
  static void start() {
    if (!ClickHouse::installed()) GTEST_SKIP() << ClickHouse::kBinary << " is not installed";
    dir = new TempDir;
    ch = new ClickHouse(dir->path());
    std::string err;
    ASSERT_TRUE(ch->start(&err)) << err;
    make_store(*dir, *ch, 0);
    std::map<uint64_t, std::string> templates;
    for (const auto &p : pattern_fixture_table())
      if (p.template_text) templates[p.id] = *p.template_text;
    auto rows = pattern_fixture_rows();
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto &a, const auto &b) { return a.timestamp_ns < b.timestamp_ns; });
    using devmesh::clickhouse::quote_string;
    std::string values;
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto &r = rows[i];
      std::string meta = "NULL";
      if (r.pattern_id && templates.count(*r.pattern_id)) {
        meta = quote_string("{\"pattern\":\"" + templates[*r.pattern_id] + "\"}");
        templates.erase(*r.pattern_id);
      }
      values += std::string(i ? "," : "") + "(toDateTime(" +
                std::to_string(r.timestamp_ns / 1000000000) + ")," +
                std::to_string(r.timestamp_ns) + ",'fixture'," + quote_string(r.service) + "," +
                quote_string(r.host) + "," + quote_string(r.level) + ",NULL,NULL,NULL,NULL," +
                quote_string(r.message) + "," + meta + ",MD5('" + std::to_string(i) + "')," +
                (r.pattern_id ? std::to_string(static_cast<int64_t>(*r.pattern_id)) : "NULL") + ")";
    }
    ch->sql("INSERT INTO devmesh.log_events VALUES " + values, &err);
    ASSERT_EQ(err, "");
    ch->sql(
        "CREATE TABLE devmesh.legacy_events (timestamp DateTime, timestamp_ns Int64, source "
        "String, service String, host String, level String, trace_id Nullable(String), "
        "span_id Nullable(String), event_type Nullable(String), error_code "
        "Nullable(String), message String, meta_json Nullable(String), event_id "
        "FixedString(16)) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMMDD(timestamp) "
        "ORDER BY (service, timestamp_ns, event_id)",
        &err);
    ASSERT_EQ(err, "");
    ch->sql(
        "INSERT INTO devmesh.legacy_events SELECT toDateTime(1764288000 + number), "
        "toInt64(1764288000000000000 + number * 1000000000), 'old', 'api', 'h1', 'INFO', "
        "NULL, NULL, NULL, NULL, concat('legacy ', toString(number)), NULL, "
        "MD5(toString(number)) FROM numbers(" +
            std::to_string(kLegacyRows) + ")",
        &err);
    ASSERT_EQ(err, "");
    port = free_port();
    legacy_port = free_port();
    engine = query_engine(*dir, *ch, port).release();
    legacy = engine_on(*dir, *ch, legacy_port, "legacy_events").release();
    ASSERT_TRUE(wait_until([] { return http(base() + "/health").status == 200; }, 20s))
        << engine->err();
    ASSERT_TRUE(wait_until([] { return http(legacy_base() + "/health").status == 200; }, 20s))
        << legacy->err();
  }
  static std::unique_ptr<Process> engine_on(const TempDir &d, const ClickHouse &c, int p,
                                            const std::string &table) {
    return query_engine(d, c, p, ", table: " + table, "legacy");
  }
  static void stop() {
    for (Process *e : {engine, legacy})
      if (e) {
        e->kill(SIGTERM);
        e->wait_exit(20s);
        delete e;
      }
    delete ch;
    delete dir;
  }
  static std::string base() { return "http://127.0.0.1:" + std::to_string(port); }
  static std::string legacy_base() { return "http://127.0.0.1:" + std::to_string(legacy_port); }

  static inline TempDir *dir;
  static inline ClickHouse *ch;
  static inline int port, legacy_port;
  static inline Process *engine, *legacy;
};

namespace devmesh::test {
INSTANTIATE_TYPED_TEST_SUITE_P(ClickHouse, PatternContract, ClickHousePatternStore);
}

// The contract's ClickHouse backend: one server, one store and one query engine for the suite.
struct ClickHouseStore {
  static void start() {
    if (!ClickHouse::installed()) GTEST_SKIP() << ClickHouse::kBinary << " is not installed";
    dir = new TempDir;
    ch = new ClickHouse(dir->path());
    std::string err;
    ASSERT_TRUE(ch->start(&err)) << err;
    make_store(*dir, *ch);
    port = free_port();
    engine = query_engine(*dir, *ch, port).release();
    ASSERT_TRUE(wait_until([] { return http(base() + "/health").status == 200; }, 20s))
        << engine->err();
  }
  static void stop() {
    if (engine) {
      engine->kill(SIGTERM);
      engine->wait_exit(20s);
    }
    delete engine;
    delete ch;
    delete dir;
  }
  static std::string base() { return "http://127.0.0.1:" + std::to_string(port); }
  static long row_count() {
    return static_cast<long>(ch->number("SELECT count() FROM devmesh.log_events FINAL"));
  }
  static void add_fresh_rows() {
    std::string err;
    ch->sql(
        "INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service, host, level,"
        " message, event_id) SELECT toDateTime(intDiv(ns, 1000000000)), ns, 's',"
        " if(number <= 15, 'api', 'db'), 'h1', if(number <= 5, 'ERROR', 'INFO'),"
        " concat('fresh ', toString(number)), MD5(concat('f', toString(number)))"
        " FROM (SELECT number + 1 AS number, toInt64(toUInt64(now()) - number - 1) * 1000000000"
        " AS ns FROM numbers(20))",
        &err);
    ASSERT_EQ(err, "");
  }
  static void remove_fresh_rows() { rewrite(*ch, "*", "source != 's'"); }
  static void collide_timestamps() {
    std::string select;
    for (const auto &c : devmesh::clickhouse::kColumns) {
      const std::string name = c.name;
      select += select.empty() ? "" : ", ";
      if (name == "timestamp")
        select += "if(timestamp_ns % 4000000000 < 1000000000, toDateTime(1764288000), timestamp)";
      else if (name == "timestamp_ns")
        select +=
            "if(timestamp_ns % 4000000000 < 1000000000, toInt64(1764288000500000000), "
            "timestamp_ns)";
      else
        select += name;
    }
    rewrite(*ch, select, "1");
  }
  static std::string secret() { return ClickHouse::kPassword; }

  static inline TempDir *dir;
  static inline ClickHouse *ch;
  static inline int port;
  static inline Process *engine;
};

namespace devmesh::test {
INSTANTIATE_TYPED_TEST_SUITE_P(ClickHouse, QueryContract, ClickHouseStore);
}

namespace {

class QueryClickHouseStore : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ClickHouse::installed()) GTEST_SKIP() << ClickHouse::kBinary << " is not installed";
    ch = std::make_unique<ClickHouse>(d.path());
    std::string err;
    ASSERT_TRUE(ch->start(&err)) << err;
  }
  TempDir d;
  std::unique_ptr<ClickHouse> ch;
};

TEST_F(QueryClickHouseStore, ARedeliveredRecordIsCountedOnceByLogsAndStats) {
  make_store(d, *ch, 100);
  // The same rows again, as an output's retried insert leaves them: another part, not merged.
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events SELECT * FROM devmesh.log_events WHERE "
                    "service = 'kernel'"),
            "");
  ASSERT_EQ(ch->number("SELECT count() FROM devmesh.log_events"), 133);
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base + "/query/logs?limit=1000");
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsArray()) << r.body;
  EXPECT_EQ(doc.Size(), 100u);
  std::set<int64_t> ids;
  for (auto &row : doc.GetArray()) ids.insert(row["id"].GetInt64());
  EXPECT_EQ(ids.size(), 100u);
  r = http(base + "/query/stats?start_time=2025-11-28T00:00:00Z");
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["total"].GetInt64(), 100);
  EXPECT_EQ(doc["by_service"]["kernel"].GetInt64(), 33);
}

// Counts group by key only the rows outside each partition's largest merged part: here the
// history is one merged part, a re-delivered copy of the kernel rows a newer part, and a new
// record twice in one insert (an insert is not deduplicated until its part is merged).
TEST_F(QueryClickHouseStore, ARedeliveredRecordBesideAMergedPartIsCountedOnceByStatsAndHistogram) {
  make_store(d, *ch, 100);
  ASSERT_EQ(ch->sql("OPTIMIZE TABLE devmesh.log_events FINAL"), "");
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events SELECT * FROM devmesh.log_events WHERE "
                    "service = 'kernel'"),
            "");
  const std::string twice =
      "('2025-11-28 00:00:30', 1764288030123456001, 'journald', 'kernel', 'h-new', 'ERROR', "
      "'twice', 'aaaaaaaaaaaaaaaa')";
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service, "
                    "host, level, message, event_id) VALUES " +
                    twice + ", " + twice),
            "");
  ASSERT_EQ(ch->sql("SELECT toString(groupArray(level)) FROM (SELECT level FROM system.parts "
                    "WHERE table = 'log_events' AND active ORDER BY level DESC)"),
            "[1,0,0]\n")
      << "one merged part and two new ones";
  ASSERT_EQ(ch->number("SELECT count() FROM devmesh.log_events"), 135);
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  rapidjson::Document doc;
  HttpResponse r = http(base + "/query/stats?start_time=2025-11-28T00:00:00Z");
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["total"].GetInt64(), 101);
  EXPECT_EQ(doc["by_service"]["kernel"].GetInt64(), 34);
  EXPECT_EQ(doc["by_service"]["loki.service"].GetInt64(), 34);
  EXPECT_EQ(doc["by_host"]["h-new"].GetInt64(), 1);
  r = http(base +
           "/query/histogram?start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T00:01:"
           "39.999999Z&buckets=10&service=kernel");
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["total"].GetInt64(), 34);
  r = http(base + "/query/logs?limit=1000");
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsArray()) << r.body;
  EXPECT_EQ(doc.Size(), 101u);
}

// Stats and histograms count the plain rows by whole seconds and the rest by key (once_source):
// every window, cut anywhere inside a second, counts what FINAL counts with the window's exact
// nanoseconds. Rows every 137 ms across 5 minutes (merged history), re-delivered copies and new
// rows in fresh parts, and rows in 2150, whose DateTime is clamped.
TEST_F(QueryClickHouseStore, StatsAndHistogramCountEveryWindowToTheNanosecond) {
  make_store(d, *ch, 0);
  const std::string rows =
      "SELECT toDateTime(least(intDiv(ns, 1000000000), 4294967295)), ns, 'journald',"
      " ['a', 'b', 'c'][number % 3 + 1],"
      " 'h', ['INFO', 'ERROR'][number % 2 + 1], NULL, NULL, NULL, NULL, 'm', NULL,"
      " MD5(toString(ns)), NULL FROM (SELECT number, toInt64(";
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events " + rows +
                    "1764288000000000000 + number * 137000000) AS ns FROM numbers(2200))"),
            "");
  ASSERT_EQ(ch->sql("OPTIMIZE TABLE devmesh.log_events FINAL"), "");
  // Re-delivered: every fourth row of two stretches (one inside a second's rows, one across the
  // last minute); new: a few rows past the history and some in 2150 (whose DateTime the output
  // clamps to its last second, as here).
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events SELECT * FROM devmesh.log_events WHERE "
                    "cityHash64(event_id) % 4 = 0 AND (timestamp_ns BETWEEN 1764288040000000000 "
                    "AND 1764288041500000000 OR timestamp_ns >= 1764288240000000000)"),
            "");
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events " + rows +
                    "1764288301000000000 + number * 333000000) AS ns FROM numbers(20))"),
            "");
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events " + rows +
                    "5680281600000000000 + number * 250000000) AS ns FROM numbers(40))"),
            "");
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  std::mt19937_64 rng(20261207);
  std::vector<std::pair<int64_t, int64_t>> windows = {
      {1764288000000000000, 1764288400000000000},  // everything of 2025
      {1764288040000000001, 1764288040999999999},  // inside one second
      {1764288040500000000, 1764288041200000000},  // across one boundary, among copies
      {5680281600000000000, 5680281609000000000},  // 2150
      {1764288000000000000, 5680281605123456789},  // from 2025 into 2150
  };
  for (int i = 0; i < 25; ++i) {
    const int64_t start = 1764287999000000000 + static_cast<int64_t>(rng() % 320000000000ull);
    windows.emplace_back(start, start + static_cast<int64_t>(rng() % 120000000000ull));
  }
  for (const auto &[start, end] : windows) {
    const std::string range = "start_time=" + rfc3339(start) + "&end_time=" + rfc3339(end);
    SCOPED_TRACE(range);
    const std::string exact = " FROM devmesh.log_events FINAL WHERE timestamp_ns BETWEEN " +
                              std::to_string(start) + " AND " + std::to_string(end);
    const long long want = ch->number("SELECT count()" + exact);
    HttpResponse r = http(base + "/query/stats?" + range);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsObject()) << r.body;
    EXPECT_EQ(doc["total"].GetInt64(), want);
    if (want > 0) {
      EXPECT_EQ(doc["by_service"].HasMember("b") ? doc["by_service"]["b"].GetInt64() : 0,
                ch->number("SELECT count()" + exact + " AND service = 'b'"));
      EXPECT_EQ(doc["by_level"]["ERROR"].GetInt64(),
                ch->number("SELECT count()" + exact + " AND level = 'ERROR'"));
    }
    r = http(base + "/query/histogram?buckets=7&" + range);
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsObject()) << r.body;
    EXPECT_EQ(doc["total"].GetInt64(), want);
  }
}

// A window may hold any number of patterns: the top ones are chosen by the server, not from an
// id list sent back to it (which outgrew max_query_size past about 12,000 patterns: a 500).
TEST_F(QueryClickHouseStore, AWindowOfTwentyThousandPatternsAnswersItsTopOnes) {
  make_store(d, *ch, 0);
  // 20,000 patterns once each, and pattern 7 three times; ids with the high bit set are the
  // longest as SQL literals (stored signed: 20 digits and a sign).
  ASSERT_EQ(
      ch->sql(
          "INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service,"
          " host, level, message, event_id, pattern_id) SELECT toDateTime(1764288000"
          " + intDiv(number, 10)), toInt64(1764288000000000000 + number * 100000000),"
          " 's', 'api', 'h1', 'INFO', concat('m ', toString(number)),"
          " MD5(toString(number)), toInt64(if(number >= 20000, 7, -9000000000000000000 + number))"
          " FROM numbers(20003)"),
      "");
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base +
                        "/query/patterns?start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T01:"
                        "00:00Z&limit=10000");
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body.substr(0, 300);
  ASSERT_EQ(doc["patterns"].Size(), 10000u);
  EXPECT_EQ(std::string(doc["patterns"][0]["id"].GetString()), "0000000000000007");
  EXPECT_EQ(doc["patterns"][0]["count"].GetInt64(), 3);
  EXPECT_EQ(std::string(doc["patterns"][1]["id"].GetString()), "831993af1d7c0000");
  EXPECT_EQ(doc["patterns"][1]["count"].GetInt64(), 1);
  EXPECT_EQ(std::string(doc["patterns"][2]["id"].GetString()), "831993af1d7c0001");
}

TEST_F(QueryClickHouseStore, HealthIs503WhileTheServerIsDownAndQueriesRecoverAfter) {
  make_store(d, *ch, 10);
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  ASSERT_EQ(http(base + "/query/logs?limit=5").status, 200);
  ch->stop();
  HttpResponse h = http(base + "/health");
  EXPECT_EQ(h.status, 503) << h.body;
  EXPECT_NE(h.body.find("clickhouse"), std::string::npos) << h.body;
  EXPECT_EQ(http(base + "/query/logs").status, 503);
  std::string err;
  ASSERT_TRUE(ch->start(&err)) << err;
  EXPECT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s));
  EXPECT_EQ(http(base + "/query/logs?limit=5").status, 200);
}

TEST_F(QueryClickHouseStore, WrongPasswordMakesHealth503WithTheServersReason) {
  make_store(d, *ch, 10);
  const int port = free_port();
  auto e = engine(d,
                  plugins_head() +
                      "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                      "  outputs:\n    - {name: query, match: none, store: clickhouse, listen: "
                      "127.0.0.1:" +
                      std::to_string(port) + ", url: '" + ch->url() +
                      "', user: devmesh, password: wrong}\n",
                  "q");
  HttpResponse h;
  ASSERT_TRUE(wait_until(
      [&] {
        return (h = http("http://127.0.0.1:" + std::to_string(port) + "/health")).status != 0;
      },
      20s))
      << e->err();
  EXPECT_EQ(h.status, 503);
  EXPECT_NE(h.body.find("Wrong password"), std::string::npos) << h.body;
}

TEST_F(QueryClickHouseStore, QueryPastTheStatementTimeLimitGets504) {
  make_store(d, *ch, 10);
  // 20M rows whose messages all match: the page's keys are sorted out of all of them (several
  // seconds even on a quiet machine; the limit is 1 s, the least max_execution_time takes, and
  // 5M rows were done within it on a quiet machine).
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service,"
                    " host, level, message, event_id) SELECT toDateTime(1735689600 + intDiv(number,"
                    " 1000)), toInt64(1735689600000000000 + number * 1000000), 's', 'big', 'h',"
                    " 'INFO', concat('common words ', toString(number)), MD5(toString(number))"
                    " FROM numbers(20000000)"),
            "");
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port, ", statement_timeout: 10ms");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base + "/query/logs?q=common+words&order=asc&limit=10000");
  EXPECT_EQ(r.status, 504) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("statement_timeout"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_EQ(http(base + "/health").status, 200) << "the server goes on serving";
}

// A statement that fails after its first megabyte of answer (the server's output buffer) has
// already been sent: without wait_end_of_query the status line said 200 before the failure, and
// the rows and the exception's text came as one body. Here the failure is the devmesh user's
// max_result_rows, reached after 5,000 rows of 300 bytes, sent 100 rows a block.
TEST_F(QueryClickHouseStore, AFailureHalfWayThroughAnAnswerIsAnErrorNotAShortPage) {
  ch->stop();
  ch->devmesh_settings =
      "<max_block_size>100</max_block_size><max_result_rows>5000</max_result_rows>"
      "<result_overflow_mode>throw</result_overflow_mode>";
  std::string err;
  ASSERT_TRUE(ch->start(&err)) << err;
  make_store(d, *ch, 0);
  ch->sql(
      "INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service, host,"
      " level, message, event_id) SELECT toDateTime(1764288000 + number),"
      " toInt64(1764288000000000000 + number * 1000000000), 's', 'api', 'h1', 'INFO',"
      " concat('m ', toString(number), ' " +
          std::string(300, 'x') + "'), MD5(toString(number)) FROM numbers(10000)",
      &err);
  ASSERT_EQ(err, "");
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  ASSERT_EQ(http(base + "/query/logs?limit=100").status, 200) << "a page under the limit";
  HttpResponse r = http(base + "/query/logs?limit=10000");
  EXPECT_EQ(r.status, 500) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("Limit for result exceeded"), std::string::npos) << r.body.substr(0, 300);
}

// quote_string is what keeps values from being SQL: any bytes at all must come back from the
// server as they went in.
TEST_F(QueryClickHouseStore, QuotedLiteralsOfRandomBytesReadBackUnchanged) {
  std::mt19937 rng(20261207);
  const std::string specials = "\\'\"`\n\r\t\0%_;-/*{}?#$x";
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 40, '\0');
    for (char &c : s)
      c = rng() % 3 ? specials[rng() % specials.size()] : static_cast<char>(rng() % 256);
    std::string want;
    for (unsigned char c : s) {
      static const char kHex[] = "0123456789ABCDEF";
      want += kHex[c >> 4];
      want += kHex[c & 15];
    }
    std::string err;
    const std::string got =
        ch->sql("SELECT hex(" + devmesh::clickhouse::quote_string(s) + ")", &err);
    ASSERT_EQ(got, want + "\n") << "case " << i << ": " << err;
  }
}

// The rows of a TSV answer, split into fields.
std::vector<std::vector<std::string>> tsv(const std::string &body) {
  std::vector<std::vector<std::string>> rows;
  size_t at = 0;
  while (at < body.size()) {
    const size_t end = body.find('\n', at);
    const std::string line = body.substr(at, end - at);
    at = end == std::string::npos ? body.size() : end + 1;
    std::vector<std::string> fields;
    for (size_t f = 0;;) {
      const size_t tab = line.find('\t', f);
      fields.push_back(line.substr(f, tab - f));
      if (tab == std::string::npos) break;
      f = tab + 1;
    }
    rows.push_back(std::move(fields));
  }
  return rows;
}

// /query/patterns and /query/patterns/{id} count without FINAL on one node (once_source): here
// a merged history over two days (two partitions), re-delivered copies of a stretch of it and of
// its newest rows (with the patterns' newest templates) in a fresh part, a record twice in one
// insert (with a newer template) and a new pattern whose only record came twice. Every figure of
// every pattern, in windows cut inside seconds and all time, is what FINAL gives.
TEST_F(QueryClickHouseStore, EveryPatternFigureCountsEachRecordOnceAsFinalDoes) {
  make_store(d, *ch, 0);
  const int64_t b = 1764288000000000000;  // 2025-11-28T00:00:00Z
  constexpr int64_t kS = 1000000000;
  auto rows = [](const std::string &ns, const std::string &from) {
    // A pattern per number % 3 (one id with the top bit set), its service with it; a template
    // in the meta of every 50th record of each.
    return "INSERT INTO devmesh.log_events SELECT toDateTime(intDiv(ns, 1000000000)), ns, 's',"
           " ['api', 'api', 'db'][number % 3 + 1], ['h1', 'h2', 'h3'][intHash32(number) % 3 + 1],"
           " ['INFO', 'ERROR'][number % 2 + 1], NULL, NULL, NULL, NULL,"
           " concat('m ', toString(number)), if(number % 50 < 3, concat('{\"pattern\":\"t ',"
           " toString(number), '\"}'), NULL), MD5(toString(ns)),"
           " [toInt64(-9000000000000000000), 162, 7][number % 3 + 1] FROM (SELECT number, "
           "toInt64(" +
           ns + ") AS ns FROM " + from + ")";
  };
  // 900 records every 7.3 s from B - 1 h, and 6 a day before.
  ASSERT_EQ(ch->sql(rows(std::to_string(b - 3600 * kS) + " + number * 7300000000", "numbers(900)")),
            "");
  ASSERT_EQ(ch->sql(rows(std::to_string(b - 86400 * kS) + " + number * 1000000", "numbers(6)")),
            "");
  ASSERT_EQ(ch->sql("OPTIMIZE TABLE devmesh.log_events PARTITION 20251127 FINAL"), "");
  ASSERT_EQ(ch->sql("OPTIMIZE TABLE devmesh.log_events PARTITION 20251128 FINAL"), "");
  // Copies: every record of a stretch in the hour before B, and every other record of the last
  // 60 (the newest templates among them).
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events SELECT * FROM devmesh.log_events WHERE "
                    "timestamp_ns BETWEEN " +
                    std::to_string(b - 680 * kS) + " AND " + std::to_string(b - 534 * kS) +
                    " OR (timestamp_ns >= " + std::to_string(b - 3600 * kS + 840 * 7300000000) +
                    " AND cityHash64(event_id) % 2 = 0)"),
            "");
  // Twice in one insert: a record of pattern 162 with a newer template, and the only record of
  // pattern 99.
  for (const auto &[ns, id, meta] :
       {std::tuple{b + 6600 * kS + 500000000, 162, "'{\"pattern\":\"t new\"}'"},
        std::tuple{b + 6601 * kS + 250000000, 99, "NULL"}}) {
    const std::string row = "(toDateTime(" + std::to_string(ns / kS) + "), " + std::to_string(ns) +
                            ", 's', 'api', 'h9', 'WARN', NULL, NULL, NULL, NULL, 'twice', " + meta +
                            ", MD5('" + std::to_string(ns) + "'), " + std::to_string(id) + ")";
    ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events VALUES " + row + ", " + row), "");
  }
  const long long records = ch->number("SELECT count() FROM devmesh.log_events FINAL");
  ASSERT_EQ(records, 908);
  ASSERT_GT(ch->number("SELECT count() FROM devmesh.log_events"), records + 20)
      << "the copies are not merged away yet";
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = query_engine(d, *ch, port);
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();

  // What FINAL gives, per pattern: all time, and in [start, end].
  struct Figures {
    long long count = 0;
    int64_t first = 0, last = 0;
    std::string service, text;
  };
  auto final_figures = [&](const std::string &where) {
    std::map<uint64_t, Figures> out;
    for (const auto &f : tsv(ch->sql(
             "SELECT pattern_id, count(), min(timestamp_ns), max(timestamp_ns), any(service), "
             "argMax(ifNull(visitParamExtractString(meta_json, 'pattern'), ''), "
             "if(ifNull(visitParamHas(meta_json, 'pattern'), 0) = 1, timestamp_ns, "
             "toInt64(-9223372036854775807))) FROM devmesh.log_events FINAL WHERE "
             "pattern_id IS NOT NULL" +
             where + " GROUP BY pattern_id"))) {
      if (f.size() != 6) continue;
      out[static_cast<uint64_t>(std::stoll(f[0]))] = {std::stoll(f[1]), std::stoll(f[2]),
                                                      std::stoll(f[3]), f[4], f[5]};
    }
    return out;
  };
  const auto all_time = final_figures("");
  ASSERT_EQ(all_time.size(), 4u);
  EXPECT_EQ(all_time.at(162).text, "t new");
  EXPECT_EQ(all_time.at(99).count, 1);
  auto expect_all_time = [&](const rapidjson::Value &p, uint64_t id) {
    const Figures &want = all_time.at(id);
    EXPECT_EQ(p["total_count"].GetInt64(), want.count);
    EXPECT_EQ(std::string(p["first_seen"].GetString()), rfc3339(want.first, true));
    EXPECT_EQ(std::string(p["last_seen"].GetString()), rfc3339(want.last, true));
    EXPECT_EQ(std::string(p["service"].GetString()), want.service);
    if (want.text.empty())
      EXPECT_TRUE(p["template"].IsNull());
    else
      EXPECT_EQ(std::string(p["template"].GetString()), want.text);
  };

  std::vector<std::pair<int64_t, int64_t>> windows = {
      {b - 2 * 86400 * kS, b + 7200 * kS},                     // everything
      {b - 700 * kS - 300000000, b - 500 * kS - 700000000},    // the first copies
      {b + 2500 * kS + 123000000, b + 6600 * kS + 900000000},  // the newest copies
      {b + 6601 * kS, b + 6602 * kS},                          // only pattern 99
      {b - 86400 * kS + 2500000, b - 86400 * kS + 4500000},    // inside a second
  };
  std::mt19937_64 rng(20261207);
  for (int i = 0; i < 6; ++i) {
    const int64_t start = b - 3700 * kS + static_cast<int64_t>(rng() % (10400ull * kS));
    windows.emplace_back(start, start + static_cast<int64_t>(rng() % (3000ull * kS)));
  }
  for (const auto &[start, end] : windows) {
    const std::string range = "start_time=" + rfc3339(start) + "&end_time=" + rfc3339(end);
    SCOPED_TRACE(range);
    const auto in_window = final_figures(" AND timestamp_ns BETWEEN " + std::to_string(start) +
                                         " AND " + std::to_string(end));
    rapidjson::Document doc;
    HttpResponse r = http(base + "/query/patterns?limit=100&" + range);
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsObject()) << r.body.substr(0, 300);
    ASSERT_EQ(doc["patterns"].Size(), in_window.size());
    for (const auto &p : doc["patterns"].GetArray()) {
      const uint64_t id = std::stoull(p["id"].GetString(), nullptr, 16);
      SCOPED_TRACE(p["id"].GetString());
      ASSERT_EQ(in_window.count(id), 1u);
      const Figures &want = in_window.at(id);
      EXPECT_EQ(p["count"].GetInt64(), want.count);
      EXPECT_EQ(std::string(p["first"].GetString()), rfc3339(want.first, true));
      EXPECT_EQ(std::string(p["last"].GetString()), rfc3339(want.last, true));
      expect_all_time(p, id);
    }
    // new=1: the patterns first seen in the window, by their first record.
    size_t fresh = 0;
    for (const auto &[id, f] : all_time) fresh += in_window.count(id) && f.first >= start;
    r = http(base + "/query/patterns?new=1&limit=100&" + range);
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsObject()) << r.body.substr(0, 300);
    EXPECT_EQ(doc["patterns"].Size(), fresh);
    // Each pattern's minutes: what FINAL counts in each.
    for (const auto &[id, f] : all_time) {
      r = http(base + "/query/patterns/" + hex_id(id) + "?" + range);
      doc.Parse(r.body.c_str());
      ASSERT_TRUE(doc.IsObject()) << r.body.substr(0, 300);
      expect_all_time(doc, id);
      EXPECT_EQ(doc["count"].GetInt64(), in_window.count(id) ? in_window.at(id).count : 0);
      std::string want, got;
      for (const auto &m : tsv(ch->sql(
               "SELECT intDiv(timestamp_ns, 60000000000) * 60000000000 AS m, count() FROM "
               "devmesh.log_events FINAL WHERE pattern_id = " +
               std::to_string(static_cast<int64_t>(id)) + " AND timestamp_ns BETWEEN " +
               std::to_string(start) + " AND " + std::to_string(end) + " GROUP BY m ORDER BY m")))
        if (m.size() == 2) want += rfc3339(std::stoll(m[0]), true) + " " + m[1] + "\n";
      for (const auto &m : doc["minutes"].GetArray())
        got += std::string(m["minute"].GetString()) + " " + std::to_string(m["count"].GetInt64()) +
               "\n";
      EXPECT_EQ(got, want) << hex_id(id);
    }
  }
}

}  // namespace
