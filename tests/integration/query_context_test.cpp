// GET /query/context through the real binary over an SQLite store and a ClickHouse store (a
// private clickhouse-server 18.16; skipped when it is not installed), each holding a seeded
// incident: a new error pattern, a warning whose rate jumped, a steady warning, steady info noise
// and an error that stopped; each pattern's rows and its log_patterns row as the sqlite output
// writes them (ClickHouse keeps no patterns table: each template rides in the meta "pattern" of its
// pattern's first row, as the patterns filter sends it). Checks the ranking, the trace-linked
// records, max_bytes in both formats, around/window, the filters, an empty window and every bad
// parameter.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "../../plugins/outputs/clickhouse/clickhouse_schema.hpp"
#include "clickhouse_query_store.h"
#include "store_test_support.h"
#include "timestamp.hpp"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// Pattern ids; A's and C's high bit is set, so they are stored as negative integers.
constexpr uint64_t kNewError = 0xa1a1a1a1a1a1a1a1ull;  // api, only in the window
constexpr uint64_t kJumped = 0x0b0b0b0b0b0b0b0bull;    // db, 2 before, 20 in the window
constexpr uint64_t kSteady = 0xc0c0c0c0c0c0c0c0ull;    // api WARNING, 10 and 10
constexpr uint64_t kNoise = 0x0d0d0d0d0d0d0d0dull;     // api INFO, 60 and 60
constexpr uint64_t kStopped = 0x0e0e0e0e0e0e0e0eull;   // api ERROR, only before
constexpr uint64_t kLong = 0x0f0f0f0f0f0f0f0full;      // batch CRITICAL, 3 and 3, long lines
// api ERROR: once at 08:00, then once in the window. Not new (seen before), change 2.
constexpr uint64_t kBack = 0x1212121212121212ull;
// cron WARN, twice in the window; its template has not arrived (NULL in log_patterns).
constexpr uint64_t kUnknown = 0x3434343434343434ull;

std::string hex(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

int64_t at(const char *rfc3339) {
  int64_t ns = 0;
  devmesh::parse_rfc3339(rfc3339, ns);
  return ns;
}

// The window under test is [10:15, 10:30]; the window before is the 15 minutes before it.
const int64_t kBefore = at("2025-11-28T10:01:00Z");  // rows of the window before start here
const int64_t kIn = at("2025-11-28T10:16:00Z");      // rows of the window start here
constexpr int64_t kSec = 1000000000;
const std::string kWindow = "start_time=2025-11-28T10:15:00Z&end_time=2025-11-28T10:30:00Z";

std::string long_message(int i) {
  return "batch " + std::to_string(i) + " failed: " + std::string(900, 'x');
}

class Store {
 public:
  explicit Store(const std::string &db) : db_(db) {}

  void row(int64_t ts, const std::string &service, const std::string &host,
           const std::string &level, const std::string &trace, const std::string &message,
           uint64_t pattern) {
    rows_.push_back({ts, service, host, level, trace, message, pattern});
    sql_ +=
        "INSERT INTO log_events (timestamp, source, service, host, level, trace_id, message,"
        " event_id, pattern_id) VALUES (" +
        std::to_string(ts) + ", 'journald', '" + service + "', '" + host + "', '" + level + "', " +
        (trace.empty() ? "NULL" : "'" + trace + "'") + ", '" + message + "', randomblob(16), " +
        (pattern ? std::to_string(static_cast<int64_t>(pattern)) : "NULL") + ");";
  }
  // The table row as the sqlite output keeps it: seen range and count over the pattern's rows;
  // the template NULL until a record brings it (text empty here).
  void pattern(uint64_t id, const std::string &service, const std::string &text) {
    if (!text.empty()) templates_[id] = text;
    const std::string sid = std::to_string(static_cast<int64_t>(id));
    sql_ +=
        "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count)"
        " SELECT " +
        sid + ", '" + service + "', " + (text.empty() ? "NULL" : "'" + text + "'") +
        ", min(timestamp), max(timestamp), count(*) FROM log_events WHERE pattern_id = " + sid +
        ";";
  }
  void commit() { SqliteDb(db_).exec("BEGIN;" + sql_ + "COMMIT;"); }

  // The same rows into ClickHouse's devmesh.log_events: each template in the meta of its
  // pattern's first row.
  std::string clickhouse_values() {
    using devmesh::clickhouse::quote_string;
    std::stable_sort(rows_.begin(), rows_.end(),
                     [](const Row &a, const Row &b) { return a.ts < b.ts; });
    std::string values;
    for (size_t i = 0; i < rows_.size(); ++i) {
      const Row &r = rows_[i];
      std::string meta = "NULL";
      if (auto t = templates_.find(r.pattern); r.pattern && t != templates_.end()) {
        meta = quote_string("{\"pattern\":\"" + t->second + "\"}");
        templates_.erase(t);
      }
      values += std::string(i ? "," : "") + "(toDateTime(" + std::to_string(r.ts / kSec) + ")," +
                std::to_string(r.ts) + ",'journald'," + quote_string(r.service) + "," +
                quote_string(r.host) + "," + quote_string(r.level) + "," +
                (r.trace.empty() ? "NULL" : quote_string(r.trace)) + ",NULL,NULL,NULL," +
                quote_string(r.message) + "," + meta + ",MD5('" + std::to_string(i) + "')," +
                (r.pattern ? std::to_string(static_cast<int64_t>(r.pattern)) : "NULL") + ")";
    }
    return values;
  }

 private:
  struct Row {
    int64_t ts;
    std::string service, host, level, trace, message;
    uint64_t pattern;
  };
  std::string db_, sql_;
  std::vector<Row> rows_;
  std::map<uint64_t, std::string> templates_;
};

// Seeds the SQLite store at db; the same rows as VALUES for ClickHouse in *clickhouse.
void seed(const std::string &db, std::string *clickhouse) {
  Store s(db);
  for (int i = 0; i < 5; ++i) {
    const int64_t t = kIn + (240 + int64_t{i} * 10) * kSec;  // 10:20:00 + 10 s each
    const std::string trace = "trace-a" + std::to_string(i);
    s.row(t - kSec, "gateway", "h9", "INFO", trace, "request " + std::to_string(i) + " started", 0);
    s.row(t, "api", i % 2 ? "h2" : "h1", "ERROR", trace,
          "connection to db-" + std::to_string(i) + ":5432 refused", kNewError);
    s.row(t + kSec, "db", "h3", "INFO", trace, "query " + std::to_string(i) + " aborted", 0);
    // The same trace later, outside the window: not part of this incident's pack.
    s.row(at("2025-11-28T10:40:00Z"), "gateway", "h9", "INFO", trace, "late " + std::to_string(i),
          0);
  }
  for (int i = 0; i < 2; ++i)
    s.row(kBefore + i * 60 * kSec, "db", "h3", "WARN", "",
          "slow query took " + std::to_string(900 + i) + " ms", kJumped);
  // Only the 14th newest of the window's rows has a trace id: it is among the samples (chosen
  // among the 15 newest).
  for (int i = 0; i < 20; ++i)
    s.row(kIn + i * 30 * kSec, "db", "h3", "WARN", i == 6 ? "trace-b0" : "",
          "slow query took " + std::to_string(1000 + i) + " ms", kJumped);
  s.row(kIn + 181 * kSec, "gateway", "h9", "INFO", "trace-b0", "request b0 answered 504", 0);
  for (int i = 0; i < 10; ++i) {
    s.row(kBefore + i * 60 * kSec, "api", "h1", "WARNING", "", "retrying job " + std::to_string(i),
          kSteady);
    s.row(kIn + i * 60 * kSec, "api", "h1", "WARNING", "", "retrying job " + std::to_string(i),
          kSteady);
  }
  for (int i = 0; i < 60; ++i) {
    s.row(kBefore + i * 10 * kSec, "api", "h1", "INFO", "",
          "request handled in " + std::to_string(i) + " ms", kNoise);
    s.row(kIn + i * 10 * kSec, "api", "h1", "INFO", "",
          "request handled in " + std::to_string(i) + " ms", kNoise);
  }
  for (int i = 0; i < 4; ++i)
    s.row(kBefore + i * 60 * kSec, "api", "h1", "ERROR", "",
          "disk sda" + std::to_string(i) + " full", kStopped);
  for (int i = 0; i < 3; ++i) {
    s.row(kBefore + i * 60 * kSec, "batch", "h4", "CRITICAL", "", long_message(i), kLong);
    s.row(kIn + i * 60 * kSec, "batch", "h4", "CRITICAL", "", long_message(10 + i), kLong);
  }
  s.row(at("2025-11-28T08:00:00Z"), "api", "h1", "ERROR", "", "cache 0 evicted", kBack);
  s.row(kIn + 120 * kSec, "api", "h1", "ERROR", "", "cache 1 evicted", kBack);
  s.row(kIn + 60 * kSec, "cron", "h5", "WARN", "", "job a skipped", kUnknown);
  s.row(kIn + 61 * kSec, "cron", "h5", "WARN", "", "job b skipped", kUnknown);
  s.pattern(kNewError, "api", "connection to <*> refused");
  s.pattern(kBack, "api", "cache <*> evicted");
  s.pattern(kUnknown, "cron", "");
  s.pattern(kJumped, "db", "slow query took <*> ms");
  s.pattern(kSteady, "api", "retrying job <*>");
  s.pattern(kNoise, "api", "request handled in <*> ms");
  s.pattern(kStopped, "api", "disk <*> full");
  s.pattern(kLong, "batch", "batch <*> failed: <*>");
  s.commit();
  *clickhouse = s.clickhouse_values();
  *clickhouse +=
      ",(toDateTime(" + std::to_string(at("2025-11-28T12:00:00Z") / kSec) + ")," +
      std::to_string(at("2025-11-28T12:00:00Z")) +
      ",'journald','api','h1','ERROR',NULL,NULL,NULL,NULL,'panic: boom\\ngoroutine 1\\nmain.go:12 "
      "\xFF','{\"pattern\":\"panic: <*>\"}',MD5('noon'),77)";
  // At noon, alone in its window: a multi-line message with a byte that is not UTF-8.
  SqliteDb(db).exec(
      "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
      " pattern_id) VALUES (" +
      std::to_string(at("2025-11-28T12:00:00Z")) +
      ", 'journald', 'api', 'h1', 'ERROR', 'panic: boom' || char(10) || 'goroutine 1' ||"
      " char(10) || 'main.go:12 ' || CAST(X'FF' AS TEXT), randomblob(16), 77);"
      "INSERT INTO log_patterns SELECT 77, 'api', 'panic: <*>', min(timestamp), max(timestamp),"
      " count(*) FROM log_events WHERE pattern_id = 77");
}

// One store of each kind, each with its query engine, for the whole suite; each test runs on
// both (the parameter names the store).
class QueryContext : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    const std::string db = *dir_ / "store/devmesh.db";
    // The store is made by the sqlite output, so its schema is the plugin's own.
    auto setup = start_engine(*dir_,
                              plugins_head("  exit_when_done: true\n") +
                                  "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: "
                                  "setup, tag: setup}\n"
                                  "  outputs:\n    - {name: sqlite, path: " +
                                  db + "}\n",
                              "setup");
    ASSERT_EQ(setup->wait_exit(30s), 0) << setup->err();
    SqliteDb(db).exec("DELETE FROM log_events");
    std::string clickhouse_rows;
    seed(db, &clickhouse_rows);
    port_ = free_port();
    engine_ =
        start_engine(*dir_, plugins_head() +
                                "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                                "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                                std::to_string(port_) + ", path: " + db + "}\n")
            .release();
    ASSERT_TRUE(wait_until([] { return http(url_of(port_) + "/health").status == 200; }, 20s))
        << engine_->err();
    if (!ClickHouse::installed()) return;
    ch_ = new ClickHouseQueryStore;
    ch_->start(*dir_, clickhouse_rows);
  }
  static void TearDownTestSuite() {
    if (engine_) {
      engine_->kill(SIGTERM);
      engine_->wait_exit(20s);
      delete engine_;
    }
    delete ch_;
    delete dir_;
  }
  void SetUp() override {
    if (GetParam() == "clickhouse" && !ClickHouse::installed())
      GTEST_SKIP() << ClickHouse::kBinary << " is not installed";
    port_now_ = GetParam() == "clickhouse" ? ch_->port : port_;
  }
  static std::string url_of(int port) { return "http://127.0.0.1:" + std::to_string(port); }
  static std::string base() { return url_of(port_now_); }

  static HttpResponse get(const std::string &query) {
    return http(base() + "/query/context?" + query);
  }
  // The JSON pack (asserting 200 and a JSON object).
  static rapidjson::Document pack(const std::string &query, HttpResponse *resp = nullptr) {
    HttpResponse r = get(query);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str(), r.body.size());
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    EXPECT_FALSE(doc.HasParseError()) << query << ": " << r.body;
    EXPECT_TRUE(doc.IsObject()) << r.body;
    if (resp) *resp = r;
    return doc;
  }
  static std::vector<std::string> ids(const rapidjson::Document &doc) {
    std::vector<std::string> out;
    for (const auto &p : doc["patterns"].GetArray()) out.push_back(p["pattern_id"].GetString());
    return out;
  }

  static inline TempDir *dir_;
  static inline int port_, port_now_;
  static inline Process *engine_;
  static inline ClickHouseQueryStore *ch_;
};

INSTANTIATE_TEST_SUITE_P(Stores, QueryContext, ::testing::Values("sqlite", "clickhouse"),
                         [](const auto &info) { return info.param; });

TEST_P(QueryContext, ANewErrorComesFirstThenAJumpedWarningThenSteadyOnesAndInfoNoiseNotAtAll) {
  HttpResponse r;
  auto doc = pack(kWindow, &r);
  EXPECT_EQ(r.headers["content-type"], "application/json");
  // The pattern back after a quiet spell is not new (seen before): its change (2) ranks it.
  // New ones by change: the pattern whose template is not known yet has 2 + 1 / 0 + 1.
  EXPECT_EQ(ids(doc), (std::vector<std::string>{hex(kNewError), hex(kUnknown), hex(kJumped),
                                                hex(kBack), hex(kSteady), hex(kLong)}));
  EXPECT_EQ(doc["patterns_in_window"].GetInt(), 6);
  EXPECT_EQ(doc["patterns_shown"].GetInt(), 6);
  EXPECT_FALSE(doc["patterns"][3]["new"].GetBool());
  EXPECT_EQ(doc["patterns"][3]["count_before"].GetInt(), 0);
  const auto &u = doc["patterns"][1];
  EXPECT_TRUE(u["new"].GetBool());
  EXPECT_TRUE(u["template"].IsNull());
  EXPECT_EQ(std::string(u["service"].GetString()), "cron");
  EXPECT_FALSE(doc["truncated"].GetBool());
  EXPECT_EQ(std::string(doc["window"]["start"].GetString()), "2025-11-28T10:15:00.000000");
  EXPECT_EQ(std::string(doc["window"]["before_end"].GetString()), "2025-11-28T10:14:59.999999");

  const auto &a = doc["patterns"][0];
  EXPECT_TRUE(a["new"].GetBool());
  EXPECT_EQ(a["count"].GetInt(), 5);
  EXPECT_EQ(a["count_before"].GetInt(), 0);
  EXPECT_EQ(std::string(a["service"].GetString()), "api");
  EXPECT_EQ(std::string(a["level"].GetString()), "ERROR");
  EXPECT_EQ(std::string(a["template"].GetString()), "connection to <*> refused");
  EXPECT_EQ(std::string(a["first"].GetString()), "2025-11-28T10:20:00.000000");
  EXPECT_EQ(std::string(a["last"].GetString()), "2025-11-28T10:20:40.000000");
  std::set<std::string> hosts;
  for (const auto &h : a["hosts"].GetArray()) hosts.insert(h.GetString());
  EXPECT_EQ(hosts, (std::set<std::string>{"h1", "h2"}));
  // Three samples by default, newest first, with their trace ids.
  ASSERT_EQ(a["samples"].Size(), 3u);
  EXPECT_EQ(std::string(a["samples"][0]["message"].GetString()), "connection to db-4:5432 refused");
  EXPECT_EQ(std::string(a["samples"][0]["trace_id"].GetString()), "trace-a4");
  EXPECT_EQ(std::string(a["samples"][2]["trace_id"].GetString()), "trace-a2");

  const auto &b = doc["patterns"][2];
  EXPECT_FALSE(b["new"].GetBool());
  EXPECT_EQ(b["count"].GetInt(), 20);
  EXPECT_EQ(b["count_before"].GetInt(), 2);
  EXPECT_DOUBLE_EQ(b["change"].GetDouble(), 7.0);  // (20 + 1) / (2 + 1)
  EXPECT_EQ(std::string(b["level"].GetString()), "WARN");
  // The newest two and the newest with a trace id, newest first.
  ASSERT_EQ(b["samples"].Size(), 3u);
  EXPECT_EQ(std::string(b["samples"][0]["message"].GetString()), "slow query took 1019 ms");
  EXPECT_EQ(std::string(b["samples"][1]["message"].GetString()), "slow query took 1018 ms");
  EXPECT_EQ(std::string(b["samples"][2]["message"].GetString()), "slow query took 1006 ms");
  EXPECT_EQ(std::string(b["samples"][2]["trace_id"].GetString()), "trace-b0");
  EXPECT_EQ(doc["patterns"][4]["count_before"].GetInt(), 10);
  EXPECT_EQ(std::string(doc["patterns"][4]["level"].GetString()), "WARNING");

  std::set<std::string> services;
  for (const auto &s : doc["services"].GetArray()) services.insert(s.GetString());
  EXPECT_EQ(services, (std::set<std::string>{"api", "db", "batch", "cron"}));
  EXPECT_EQ(std::string(doc["services"][0].GetString()), "db") << "most error/warning rows first";
}

TEST_P(QueryContext, TheRecordsSharingTheSamplesTraceIdsFollowInTimeOrderWithoutTheSamples) {
  auto doc = pack(kWindow);
  std::vector<std::string> got;
  for (const auto &t : doc["trace_records"].GetArray())
    got.push_back(std::string(t["trace_id"].GetString()) + " " + t["service"].GetString() + " " +
                  t["message"].GetString());
  // The samples' traces in rank order (newest sample first); each trace in time order; the
  // sample itself and the same trace's records outside the window are not repeated.
  EXPECT_EQ(got, (std::vector<std::string>{
                     "trace-a4 gateway request 4 started", "trace-a4 db query 4 aborted",
                     "trace-a3 gateway request 3 started", "trace-a3 db query 3 aborted",
                     "trace-a2 gateway request 2 started", "trace-a2 db query 2 aborted",
                     "trace-b0 gateway request b0 answered 504"}));
}

TEST_P(QueryContext, TextFormatIsPlainPromptReadyText) {
  HttpResponse r = get(kWindow + "&format=text");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "text/plain; charset=utf-8");
  const std::string &t = r.body;
  EXPECT_EQ(t.find('{'), std::string::npos) << "no JSON in the text";
  const size_t a = t.find("#1 NEW ERROR service api: 5 in the window, 0 before");
  const size_t b = t.find("#3 x7.00 WARN service db: 20 in the window, 2 before");
  ASSERT_NE(a, std::string::npos) << t;
  ASSERT_NE(b, std::string::npos) << t;
  EXPECT_LT(a, b);
  EXPECT_NE(t.find("template: connection to <*> refused"), std::string::npos) << t;
  EXPECT_NE(t.find("   > 2025-11-28T10:20:40.000000 h1 ERROR trace=trace-a4: connection to "
                   "db-4:5432 refused\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("Records sharing the samples' trace ids"), std::string::npos) << t;
  EXPECT_NE(t.find("2025-11-28T10:20:39.000000 gateway h9 INFO trace=trace-a4: request 4 started"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("Services affected: db, "), std::string::npos) << t;
  EXPECT_EQ(t.find("request handled in"), std::string::npos) << "info noise is not in the pack";
  EXPECT_EQ(t.find("[cut to max_bytes"), std::string::npos);
}

TEST_P(QueryContext, AMultiLineMessageStaysOneIndentedItemInTextAndValidUtf8InBoth) {
  const std::string noon = "start_time=2025-11-28T11:59:00Z&end_time=2025-11-28T12:01:00Z";
  HttpResponse r = get(noon + "&format=text");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("   > 2025-11-28T12:00:00.000000 h1 ERROR: panic: boom\n"
                        "        goroutine 1\n"
                        "        main.go:12 \xEF\xBF\xBD\n"),
            std::string::npos)
      << r.body;
  auto doc = pack(noon);
  ASSERT_EQ(doc["patterns"].Size(), 1u);
  EXPECT_EQ(std::string(doc["patterns"][0]["samples"][0]["message"].GetString()),
            "panic: boom\ngoroutine 1\nmain.go:12 \xEF\xBF\xBD");
}

// Just under the whole pack's size: "truncated":false is a byte longer than true, and the
// answer still keeps within max_bytes (it once came out one byte over).
TEST_P(QueryContext, MaxBytesOneUnderTheWholePackIsStillHonoured) {
  HttpResponse whole;
  pack(kWindow + "&max_bytes=1048576", &whole);
  ASSERT_GT(whole.body.size(), 1025u);
  for (size_t under : {1, 2, 3}) {
    const size_t max = whole.body.size() - under;
    HttpResponse r;
    auto doc = pack(kWindow + "&max_bytes=" + std::to_string(max), &r);
    EXPECT_LE(r.body.size(), max) << r.body;
  }
}

TEST_P(QueryContext, MaxBytesIsHonouredInJsonWholeItemsAtATimeAndTheJsonStaysValid) {
  std::set<std::string> seeded;
  for (int i = 0; i < 13; ++i) seeded.insert(long_message(i));
  for (int i = 0; i < 5; ++i)
    seeded.insert("connection to db-" + std::to_string(i) + ":5432 refused");
  for (int i = 0; i < 20; ++i) seeded.insert("slow query took " + std::to_string(1000 + i) + " ms");
  for (int i = 0; i < 10; ++i) seeded.insert("retrying job " + std::to_string(i));
  seeded.insert("cache 1 evicted");
  seeded.insert("slow query took 1006 ms");
  seeded.insert("request b0 answered 504");
  seeded.insert("job a skipped");
  seeded.insert("job b skipped");
  for (int i = 0; i < 5; ++i) {
    seeded.insert("request " + std::to_string(i) + " started");
    seeded.insert("query " + std::to_string(i) + " aborted");
  }
  bool saw_cut_samples = false;
  for (int max : {1024, 1300, 1700, 2200, 3000, 4000, 5500, 7000}) {
    SCOPED_TRACE("max_bytes=" + std::to_string(max));
    HttpResponse r;
    auto doc = pack(kWindow + "&max_bytes=" + std::to_string(max), &r);
    EXPECT_LE(r.body.size(), static_cast<size_t>(max));
    EXPECT_TRUE(doc["truncated"].GetBool()) << "the whole pack is about 6.5 KB";
    const auto &om = doc["omitted"];
    EXPECT_GT(om["patterns"].GetInt() + om["samples"].GetInt() + om["trace_records"].GetInt(), 0);
    saw_cut_samples = saw_cut_samples || om["samples"].GetInt() > 0;
    EXPECT_EQ(doc["patterns_shown"].GetUint(), doc["patterns"].Size());
    if (doc["patterns"].Size() > 0) {
      EXPECT_EQ(std::string(doc["patterns"][0]["pattern_id"].GetString()), hex(kNewError))
          << "the most surprising pattern is kept first";
    }
    for (const auto &p : doc["patterns"].GetArray())
      for (const auto &s : p["samples"].GetArray())
        EXPECT_TRUE(seeded.count(s["message"].GetString()))
            << "cut line: " << s["message"].GetString();
    for (const auto &t : doc["trace_records"].GetArray())
      EXPECT_TRUE(seeded.count(t["message"].GetString())) << t["message"].GetString();
  }
  EXPECT_TRUE(saw_cut_samples);
  EXPECT_GE(pack(kWindow + "&max_bytes=1024")["patterns"].Size(), 1u)
      << "a 1 KiB pack still holds the top pattern";
}

TEST_P(QueryContext, MaxBytesIsHonouredInTextAndTheTextSaysItWasCut) {
  for (int max : {1024, 1300, 1700, 2200, 3000, 4000, 5500}) {
    SCOPED_TRACE("max_bytes=" + std::to_string(max));
    HttpResponse r = get(kWindow + "&format=text&max_bytes=" + std::to_string(max));
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_LE(r.body.size(), static_cast<size_t>(max));
    EXPECT_NE(r.body.find("[cut to max_bytes=" + std::to_string(max) + ": "), std::string::npos)
        << r.body;
    EXPECT_NE(r.body.find("#1 NEW ERROR"), std::string::npos) << r.body;
    // A long line is there whole or not at all.
    for (int i = 10; i < 13; ++i) {
      const std::string head = "batch " + std::to_string(i) + " failed: ";
      if (r.body.find(head) != std::string::npos) {
        EXPECT_NE(r.body.find(long_message(i) + "\n"), std::string::npos) << "cut line";
      }
    }
  }
}

TEST_P(QueryContext, AroundAndWindowGiveTheWindowCenteredOnTheTime) {
  auto centred = pack("around=2025-11-28T10:22:30Z&window=15m");
  auto explicit_window = pack(kWindow);
  EXPECT_EQ(std::string(centred["window"]["start"].GetString()), "2025-11-28T10:15:00.000000");
  EXPECT_EQ(std::string(centred["window"]["end"].GetString()), "2025-11-28T10:30:00.000000");
  EXPECT_EQ(ids(centred), ids(explicit_window));
  // 2 minutes around 10:20:20: only the new error's rows and the jumped warning's rows in it.
  auto narrow = pack("around=2025-11-28T10:20:20Z&window=2m");
  EXPECT_EQ(std::string(narrow["window"]["start"].GetString()), "2025-11-28T10:19:20.000000");
  ASSERT_GE(narrow["patterns"].Size(), 1u);
  EXPECT_EQ(std::string(narrow["patterns"][0]["pattern_id"].GetString()), hex(kNewError));
  // around alone: 15 minutes.
  auto dflt = pack("around=2025-11-28T10:22:30Z");
  EXPECT_EQ(std::string(dflt["window"]["end"].GetString()), "2025-11-28T10:30:00.000000");
}

TEST_P(QueryContext, ServiceHostMaxPatternsAndSamplesNarrowThePack) {
  EXPECT_EQ(ids(pack(kWindow + "&service=db")), (std::vector<std::string>{hex(kJumped)}));
  auto h1 = pack(kWindow + "&host=h1");
  ASSERT_GE(h1["patterns"].Size(), 1u);
  EXPECT_EQ(h1["patterns"][0]["count"].GetInt(), 3) << "the new error's rows on h1 only";
  EXPECT_EQ(h1["patterns"][0]["hosts"].Size(), 1u);
  auto one = pack(kWindow + "&max_patterns=1&samples=1");
  EXPECT_EQ(ids(one), (std::vector<std::string>{hex(kNewError)}));
  EXPECT_EQ(one["patterns_in_window"].GetInt(), 6);
  EXPECT_EQ(one["patterns"][0]["samples"].Size(), 1u);
  EXPECT_EQ(one["trace_records"].Size(), 2u) << "trace-a4's other two records";
  auto none = pack(kWindow + "&samples=0");
  EXPECT_EQ(none["patterns"][0]["samples"].Size(), 0u);
  EXPECT_EQ(std::string(none["patterns"][0]["level"].GetString()), "ERROR");
  EXPECT_EQ(none["trace_records"].Size(), 0u);
}

TEST_P(QueryContext, AnEmptyWindowAnswersAnEmptyPack) {
  auto doc = pack("start_time=2020-01-01T00:00:00Z&end_time=2020-01-01T01:00:00Z");
  EXPECT_EQ(doc["patterns_in_window"].GetInt(), 0);
  EXPECT_EQ(doc["patterns"].Size(), 0u);
  EXPECT_EQ(doc["trace_records"].Size(), 0u);
  EXPECT_FALSE(doc["truncated"].GetBool());
  HttpResponse t = get("start_time=2020-01-01T00:00:00Z&end_time=2020-01-01T01:00:00Z&format=text");
  EXPECT_EQ(t.status, 200);
  EXPECT_NE(t.body.find("No error or warning records in the window."), std::string::npos) << t.body;
  // No time at all: the last 15 minutes, empty here.
  EXPECT_EQ(pack("")["patterns"].Size(), 0u);
  // The widest window the times allow (1970 to 2200): its window before is as long, back to
  // 1740 (the window includes its end), with no overflow. Times outside that range are refused.
  auto wide = pack("start_time=1970-01-01T00:00:00Z&end_time=2200-01-01T00:00:00Z");
  EXPECT_EQ(wide["patterns_in_window"].GetInt(), 8) << "every error/warning pattern seeded";
  EXPECT_EQ(std::string(wide["window"]["before_start"].GetString()), "1739-12-31T23:59:59.999999");
  HttpResponse old = get("start_time=1678-01-01T00:00:00Z&end_time=2262-01-01T00:00:00Z");
  EXPECT_EQ(old.status, 400);
  EXPECT_NE(old.body.find("'start_time': must be an RFC 3339 time (2025-11-28T00:00:00Z) or "
                          "epoch seconds, from 1970 to 2200"),
            std::string::npos)
      << old.body;
}

TEST_P(QueryContext, EveryBadParameterIsA400NamingIt) {
  const std::pair<const char *, const char *> cases[] = {
      {"start_time=yesterday", "start_time"},
      {"end_time=2025-13-01", "end_time"},
      {"start_time=2025-11-28T11:00:00Z&end_time=2025-11-28T10:00:00Z", "end_time"},
      {"start_time=2999-01-01T00:00:00Z", "start_time"},
      {"around=noon", "around"},
      {"around=2025-11-28T10:00:00Z&start_time=2025-11-28T09:00:00Z", "around"},
      {"around=2025-11-28T10:00:00Z&end_time=2025-11-28T11:00:00Z", "around"},
      {"window=15m", "window"},
      {"around=2025-11-28T10:00:00Z&window=500ms", "window"},
      {"around=2025-11-28T10:00:00Z&window=31d", "window"},
      {"around=2025-11-28T10:00:00Z&window=soon", "window"},
      {"max_bytes=1023", "max_bytes"},
      {"max_bytes=1048577", "max_bytes"},
      {"max_bytes=32KiB", "max_bytes"},
      {"max_patterns=0", "max_patterns"},
      {"max_patterns=101", "max_patterns"},
      {"samples=11", "samples"},
      {"samples=-1", "samples"},
      {"format=xml", "format"},
      {"service=a&service=b", "service"},
      {"host=a&host=b", "host"},
      {"colour=red", "colour"},
  };
  for (const auto &[query, name] : cases) {
    HttpResponse r = get(query);
    EXPECT_EQ(r.status, 400) << query << ": " << r.body;
    EXPECT_NE(r.body.find(std::string("parameter '") + name + "'"), std::string::npos)
        << query << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/json") << query;
  }
}

}  // namespace
