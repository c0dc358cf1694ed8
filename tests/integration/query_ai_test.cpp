// POST /search/similar, /search/semantic and /explain/incident through the real binary over an
// SQLite store (similar search over a ClickHouse store too: a private clickhouse-server 18.16,
// skipped when it is not installed). Similar search needs no model: a seeded store of templates
// and their rows (ClickHouse keeps each template in the meta "pattern" of its first row). The
// other two talk to tests/support/openai_mock.py, a MOCK OpenAI-compatible server this test
// starts (no model can run here): its vectors are hashed bags of words, so rankings are
// checkable, and it can be told to fail or to hang. A hung or failing model server is answered
// 502/504 and counted, and never slows ingestion (asserted on counts, not on time).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <ctime>
#include <fstream>
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

constexpr uint64_t kRefused = 0xa1a1a1a1a1a1a1a1ull;    // api: connection to <*> refused
constexpr uint64_t kLost = 0x0b0b0b0b0b0b0b0bull;       // api: connection to database lost
constexpr uint64_t kLogin = 0x0c0c0c0c0c0c0c0cull;      // api: login failed for user=<*>
constexpr uint64_t kDisk = 0x0d0d0d0d0d0d0d0dull;       // db: disk <*> full
constexpr uint64_t kDbRefused = 0x0e0e0e0e0e0e0e0eull;  // db: connection to <*> refused
constexpr int64_t kSec = 1000000000;

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

const int64_t kStart = at("2025-11-28T10:00:00Z");

HttpResponse post(const std::string &url, const std::string &body) {
  return http(url, {"Content-Type: application/json"}, "POST", body);
}

rapidjson::Document json(const HttpResponse &r) {
  rapidjson::Document d;
  d.Parse(r.body.c_str(), r.body.size());
  EXPECT_FALSE(d.HasParseError()) << r.body;
  return d;
}

// Makes the store with the sqlite output (its own schema), then seeds rows and templates; the
// same as VALUES for ClickHouse's devmesh.log_events in *clickhouse (when not null).
void make_store(const TempDir &d, const std::string &db, std::string *clickhouse = nullptr) {
  auto setup = start_engine(d,
                            plugins_head("  exit_when_done: true\n") +
                                "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: "
                                "setup, tag: setup}\n"
                                "  outputs:\n    - {name: sqlite, path: " +
                                db + "}\n",
                            "setup");
  ASSERT_EQ(setup->wait_exit(30s), 0) << setup->err();
  std::string sql = "BEGIN; DELETE FROM log_events;";
  int n = 0;
  std::string values;
  std::map<uint64_t, std::string> templates = {{kRefused, "connection to <*> refused"},
                                               {kLost, "connection to database lost"},
                                               {kLogin, "login failed for user=<*>"},
                                               {kDisk, "disk <*> full"},
                                               {kDbRefused, "connection to <*> refused"}};
  auto row = [&](const std::string &service, const std::string &level, const std::string &message,
                 uint64_t pattern) {
    using devmesh::clickhouse::quote_string;
    const int64_t ts = kStart + (n + 1) * kSec;
    std::string meta = "NULL";
    if (auto t = templates.find(pattern); t != templates.end()) {
      meta = quote_string("{\"pattern\":\"" + t->second + "\"}");
      templates.erase(t);
    }
    values += std::string(values.empty() ? "" : ",") + "(toDateTime(" + std::to_string(ts / kSec) +
              ")," + std::to_string(ts) + ",'test','" + service + "','h1','" + level +
              "',NULL,NULL,NULL,NULL," + quote_string(message) + "," + meta + ",MD5('" +
              std::to_string(n) + "')," + std::to_string(static_cast<int64_t>(pattern)) + ")";
    sql +=
        "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
        " pattern_id) VALUES (" +
        std::to_string(kStart + ++n * kSec) + ", 'test', '" + service + "', 'h1', '" + level +
        "', '" + message + "', randomblob(16), " + std::to_string(static_cast<int64_t>(pattern)) +
        ");";
  };
  auto pattern = [&](uint64_t id, const std::string &service, const std::string &text) {
    const std::string sid = std::to_string(static_cast<int64_t>(id));
    sql +=
        "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count) SELECT " +
        sid + ", '" + service + "', '" + text +
        "', min(timestamp), max(timestamp), count(*) FROM log_events WHERE pattern_id = " + sid +
        ";";
  };
  for (int i = 0; i < 5; ++i)
    row("api", "ERROR", "connection to db-" + std::to_string(i) + ":5432 refused", kRefused);
  for (int i = 0; i < 3; ++i) row("api", "ERROR", "connection to database lost", kLost);
  for (const char *u : {"alice", "bob", "carol", "dave"})
    row("api", "WARN", std::string("login failed for user=") + u, kLogin);
  for (int i = 0; i < 2; ++i) row("db", "ERROR", "disk sda" + std::to_string(i) + " full", kDisk);
  for (int i = 0; i < 2; ++i)
    row("db", "ERROR", "connection to 10.0.0." + std::to_string(i) + ":9 refused", kDbRefused);
  pattern(kRefused, "api", "connection to <*> refused");
  pattern(kLost, "api", "connection to database lost");
  pattern(kLogin, "api", "login failed for user=<*>");
  pattern(kDisk, "db", "disk <*> full");
  pattern(kDbRefused, "db", "connection to <*> refused");
  SqliteDb(db).exec(sql + "COMMIT;");
  if (clickhouse) *clickhouse = values;
}

// The ids of an answer's patterns, in order, each with its match kind.
std::vector<std::string> matches(const rapidjson::Document &d) {
  std::vector<std::string> out;
  for (const auto &p : d["patterns"].GetArray())
    out.push_back(std::string(p["pattern_id"].GetString()) + " " + p["match"].GetString());
  return out;
}

// One store of each kind, each with its query engine, for the whole suite; each test runs on
// both (the parameter names the store).
class QuerySimilar : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    const std::string db = *dir_ / "store/devmesh.db";
    std::string clickhouse_rows;
    make_store(*dir_, db, &clickhouse_rows);
    port_ = free_port();
    metrics_ = free_port();
    engine_ =
        start_engine(*dir_,
                     plugins_head("  http_listen: 127.0.0.1:" + std::to_string(metrics_) + "\n") +
                         "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                         "  outputs:\n    - {name: query, match: none, listen: "
                         "127.0.0.1:" +
                         std::to_string(port_) + ", path: " + db + "}\n")
            .release();
    ASSERT_TRUE(wait_until([] { return http(url_of(port_, "/health")).status == 200; }, 20s))
        << engine_->err();
    if (!ClickHouse::installed()) return;
    ch_ = new ClickHouseQueryStore;
    ch_metrics_ = free_port();
    ch_->start(*dir_, clickhouse_rows, ch_metrics_);
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
    clickhouse_ = GetParam() == "clickhouse";
  }
  static std::string url_of(int port, const std::string &path) {
    return "http://127.0.0.1:" + std::to_string(port) + path;
  }
  static std::string url(const std::string &path) {
    return url_of(clickhouse_ ? ch_->port : port_, path);
  }
  static int metrics_port() { return clickhouse_ ? ch_metrics_ : metrics_; }
  // A template stored after the index was built (remove: taken away again), in each store's way.
  static void store_template(uint64_t id, const std::string &service, const std::string &text,
                             bool remove) {
    const std::string sid = std::to_string(static_cast<int64_t>(id));
    if (!clickhouse_) {
      SqliteDb(*dir_ / "store/devmesh.db")
          .exec(remove ? "DELETE FROM log_patterns WHERE id = " + sid
                       : "INSERT INTO log_patterns (id, service, template, first_seen, last_seen,"
                         " count) VALUES (" +
                             sid + ", '" + service + "', '" + text + "', 1, 2, 1)");
      return;
    }
    std::string err;
    ch_->server->sql(
        remove ? "ALTER TABLE devmesh.log_events DELETE WHERE pattern_id = " + sid
               : "INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service,"
                 " host, level, message, meta_json, event_id, pattern_id) VALUES "
                 "('2025-11-28 11:00:00', 1764327600000000000, 'test', '" +
                     service + "', 'h1', 'INFO', 'x', '{\"pattern\":\"" + text + "\"}', MD5('" +
                     sid + "'), " + sid + ")",
        &err);
    ASSERT_EQ(err, "");
  }
  static rapidjson::Document similar(const std::string &body) {
    HttpResponse r = post(url("/search/similar"), body);
    EXPECT_EQ(r.status, 200) << body << ": " << r.body;
    return json(r);
  }
  static inline TempDir *dir_;
  static inline int port_, metrics_, ch_metrics_;
  static inline bool clickhouse_ = false;
  static inline Process *engine_;
  static inline ClickHouseQueryStore *ch_;
};

INSTANTIATE_TEST_SUITE_P(Stores, QuerySimilar, ::testing::Values("sqlite", "clickhouse"),
                         [](const auto &info) { return info.param; });

TEST_P(QuerySimilar, AMessageFittingAStoredTemplateComesFirstAsExactThenTheLexicallyNearest) {
  auto d = similar(R"({"message": "connection to cache-3:6379 refused", "service": "api"})");
  // Masked as the filter masks it: the host part is kept, the numbers are not.
  EXPECT_EQ(std::string(d["masked"].GetString()), "connection to cache-<*> refused");
  ASSERT_GE(d["patterns"].Size(), 2u);
  EXPECT_EQ(matches(d)[0], hex(kRefused) + " exact");
  EXPECT_EQ(matches(d)[1], hex(kLost) + " similar");
  const auto &first = d["patterns"][0];
  EXPECT_EQ(first["score"].GetDouble(), 1.0);
  EXPECT_EQ(std::string(first["template"].GetString()), "connection to <*> refused");
  EXPECT_EQ(std::string(first["service"].GetString()), "api");
  EXPECT_EQ(first["count"].GetInt(), 5);
  const double second = d["patterns"][1]["score"].GetDouble();
  EXPECT_GT(second, 0.0);
  EXPECT_LT(second, 1.0);
  // Only the api service's templates; the disk template shares no word.
  for (const auto &p : d["patterns"].GetArray()) {
    EXPECT_EQ(std::string(p["service"].GetString()), "api");
    EXPECT_NE(std::string(p["pattern_id"].GetString()), hex(kDisk));
  }
  // Its recent records: the default five, newest first, all of this pattern.
  const auto &rows = first["records"];
  ASSERT_EQ(rows.Size(), 5u);
  EXPECT_EQ(std::string(rows[0]["message"].GetString()), "connection to db-4:5432 refused");
  for (const auto &r : rows.GetArray())
    EXPECT_EQ(std::string(r["pattern_id"].GetString()), hex(kRefused));
}

TEST_P(QuerySimilar, WithoutAServiceEveryServicesExactMatchComesFirstMostSeenFirst) {
  auto d = similar(R"({"message": "connection to 192.168.1.1:80 refused", "records": 1})");
  ASSERT_GE(d["patterns"].Size(), 3u);
  EXPECT_EQ(matches(d)[0], hex(kRefused) + " exact");
  EXPECT_EQ(matches(d)[1], hex(kDbRefused) + " exact");
  EXPECT_EQ(matches(d)[2], hex(kLost) + " similar");
  EXPECT_EQ(d["patterns"][0]["records"].Size(), 1u);
  EXPECT_EQ(d["templates"].GetInt(), 5);
}

TEST_P(QuerySimilar, AKeyValueTemplateFitsAnyValueOfItsKey) {
  auto d = similar(R"({"message": "login failed for user=mallory", "limit": 1, "records": 0})");
  ASSERT_EQ(d["patterns"].Size(), 1u);
  EXPECT_EQ(matches(d)[0], hex(kLogin) + " exact");
  EXPECT_EQ(d["patterns"][0]["records"].Size(), 0u);
}

TEST_P(QuerySimilar, AMessageNoTemplateFitsGetsTheLexicallyNearestOnly) {
  auto d = similar(R"({"message": "connection to the database was lost", "service": "api"})");
  ASSERT_GE(d["patterns"].Size(), 2u);
  EXPECT_EQ(matches(d)[0], hex(kLost) + " similar");
  EXPECT_EQ(matches(d)[1], hex(kRefused) + " similar");
  EXPECT_GT(d["patterns"][0]["score"].GetDouble(), d["patterns"][1]["score"].GetDouble());
  // Words no template has: nothing is near.
  auto none = similar(R"({"message": "quantum flux capacitor overheated"})");
  EXPECT_EQ(none["patterns"].Size(), 0u);
}

// The index is rebuilt from the patterns table once stale: a template stored after the first
// search is found by a later one.
TEST_P(QuerySimilar, ATemplateStoredAfterTheIndexWasBuiltIsFoundOnceTheIndexIsRebuilt) {
  const std::string body = R"({"message": "cache eviction storm in shard 7", "records": 0})";
  EXPECT_EQ(similar(body)["patterns"].Size(), 0u);
  const uint64_t storm = 0x1f1f1f1f1f1f1f1full;
  store_template(storm, "cache", "cache eviction storm in shard <*>", false);
  rapidjson::Document d;
  ASSERT_TRUE(wait_until(
      [&] {
        d = similar(body);
        return d["patterns"].Size() > 0;
      },
      30s));
  EXPECT_EQ(matches(d)[0], hex(storm) + " exact");
  store_template(storm, "cache", "", true);
  ASSERT_TRUE(wait_until([&] { return similar(body)["patterns"].Size() == 0; }, 30s));
}

// limit (up to 1000) times records (up to 100) would be that many store queries: records come
// with the first 20 patterns only, and 1000 records at most in all; the others say so by having
// no "records" key. Its 30 templates and their rows are removed again at the end.
TEST_P(QuerySimilar, RecordsComeWithTheFirstPatternsOnlyWithinABudget) {
  // The budget is the HTTP side's, the same for every store; the seeding here is SQLite's.
  if (GetParam() == "clickhouse") GTEST_SKIP() << "seeds SQLite's patterns table";
  const std::string db = *dir_ / "store/devmesh.db";
  std::string sql = "BEGIN;";
  for (int k = 0; k < 30; ++k) {
    const std::string sid = std::to_string(0x2000000000000000ll + k);
    for (int r = 0; r < 3; ++r)
      sql +=
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
          " pattern_id) VALUES (" +
          std::to_string(kStart + (100 + k * 3 + r) * kSec) +
          ", 'test', 'bulk', 'h1', 'INFO', 'bulk event " + std::to_string(k) + " step " +
          std::to_string(r) + "', randomblob(16), " + sid + ");";
    sql +=
        "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count) VALUES (" +
        sid + ", 'bulk', 'bulk event " + std::to_string(k) + " step <*>', 1, 2, 3);";
  }
  SqliteDb(db).exec(sql + "COMMIT;");
  rapidjson::Document d;
  ASSERT_TRUE(wait_until(
      [&] {
        d = similar(R"({"message": "bulk event 7 step 9", "service": "bulk", "limit": 1000,
                        "records": 2})");
        return d["patterns"].Size() == 30;
      },
      30s));
  EXPECT_EQ(d["with_records"].GetInt(), 20);
  for (rapidjson::SizeType i = 0; i < 30; ++i) {
    const auto &p = d["patterns"][i];
    if (i < 20) {
      ASSERT_TRUE(p.HasMember("records")) << i;
      EXPECT_EQ(p["records"].Size(), 2u) << i;
    } else {
      EXPECT_FALSE(p.HasMember("records")) << i;
    }
  }
  // 100 records a pattern: 10 patterns make the 1000-record budget.
  d = similar(R"({"message": "bulk event 7 step 9", "service": "bulk", "limit": 1000,
                  "records": 100})");
  EXPECT_EQ(d["with_records"].GetInt(), 10);
  EXPECT_TRUE(d["patterns"][9].HasMember("records"));
  EXPECT_FALSE(d["patterns"][10].HasMember("records"));
  // Fewer patterns than the bound: all of them carry their records.
  d = similar(R"({"message": "bulk event 7 step 9", "service": "bulk", "limit": 3})");
  EXPECT_EQ(d["with_records"].GetInt(), 3);
  SqliteDb(db).exec(
      "DELETE FROM log_patterns WHERE service = 'bulk'; DELETE FROM log_events WHERE service = "
      "'bulk';");
  ASSERT_TRUE(wait_until(
      [&] { return similar(R"({"message": "bulk event 7 step 9"})")["patterns"].Size() == 0; },
      30s));
}

TEST_P(QuerySimilar, BadBodiesAreRefusedNamingTheFieldAndCounted) {
  const std::string m = "http://127.0.0.1:" + std::to_string(metrics_port()) + "/metrics";
  const double before =
      metric_value(http(m).body, "devmesh_query_requests_total", "outcome=\"bad_parameter\"");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "body is not JSON"},
      {"{\"message\": ", "body is not JSON"},
      {"[\"connection refused\"]", "body must be a JSON object"},
      {"{}", "bad field 'message': required"},
      {"{\"message\": \"\"}", "bad field 'message': required"},
      {"{\"message\": 42}", "bad field 'message': must be a string"},
      {"{\"message\": \"x\", \"service\": [1]}", "bad field 'service': must be a string"},
      {"{\"message\": \"x\", \"limit\": 0}", "bad field 'limit': must be an integer 1..1000"},
      {"{\"message\": \"x\", \"limit\": 2.5}", "bad field 'limit'"},
      {"{\"message\": \"x\", \"records\": \"5\"}", "bad field 'records'"},
      {"{\"message\": \"x\", \"records\": 101}", "bad field 'records'"},
      {"{\"message\": \"x\", \"mesage\": \"y\"}", "unknown field 'mesage'"},
      // Hostile depth within the size limit: parsed without recursion, refused, loop alive.
      {std::string(65000, '['), "body is not JSON"},
      {"{\"message\": " + std::string(60000, '[') + "}", "body is not JSON"},
  };
  for (const auto &[body, want] : cases) {
    HttpResponse r = post(url("/search/similar"), body);
    EXPECT_EQ(r.status, 400) << body;
    EXPECT_NE(r.body.find(want), std::string::npos) << body << ": " << r.body;
  }
  HttpResponse big =
      post(url("/search/similar"), "{\"message\": \"" + std::string(70000, 'x') + "\"}");
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_NE(big.body.find("body larger than 65536 bytes"), std::string::npos) << big.body;
  EXPECT_EQ(metric_value(http(m).body, "devmesh_query_requests_total", "outcome=\"bad_parameter\""),
            before + static_cast<double>(cases.size()) + 1);
  // Off by default: the model endpoints say how to turn them on (after checking the body).
  HttpResponse off = post(url("/search/semantic"), R"({"message": "x"})");
  EXPECT_EQ(off.status, 501);
  EXPECT_NE(off.body.find("set embed_url and model"), std::string::npos) << off.body;
  off = post(url("/explain/incident"), R"({"around": "2025-11-28T10:00:00Z"})");
  EXPECT_EQ(off.status, 501);
  EXPECT_NE(off.body.find("set chat_url and model"), std::string::npos) << off.body;
}

// The mock model server (tests/support/openai_mock.py), on a port of its own.
class Mock {
 public:
  explicit Mock(const TempDir &d)
      : port_(free_port()),
        proc_(
            {"/usr/bin/python3", std::string(DEVMESH_SOURCE_DIR) + "/tests/support/openai_mock.py",
             std::to_string(port_)},
            d.path(), "mock") {
    EXPECT_TRUE(wait_until([&] { return http(base() + "/stats").status == 200; }, 20s))
        << proc_.err();
  }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void mode(const std::string &m) {
    ASSERT_EQ(post(base() + "/control", "{\"mode\": \"" + m + "\"}").status, 200);
  }
  rapidjson::Document stats() { return json(http(base() + "/stats")); }
  int stat(const char *name) { return stats()[name].GetInt(); }

 private:
  int port_;
  Process proc_;
};

// http input -> patterns -> sqlite, and the query output with the model options.
struct ModelPipeline {
  ModelPipeline(const TempDir &d, const Mock &mock, const std::string &extra,
                const std::string &db_name = "data/devmesh.db",
                const std::string &sqlite_extra = "")
      : listen("127.0.0.1:" + std::to_string(free_port())),
        metrics("http://127.0.0.1:" + std::to_string(free_port()) + "/metrics") {
    const std::string db = d / db_name;
    engine = start_engine(
        d, plugins_head("  http_listen: " + metrics.substr(7, metrics.size() - 15) + "\n") +
               "  inputs:\n    - {name: http, listen: " + listen +
               ", ack: delivered}\n"
               "  filters:\n    - {name: patterns}\n"
               "  outputs:\n"
               "    - {name: sqlite, path: " +
               db + ", flush_interval: 50ms" + sqlite_extra +
               "}\n"
               "    - {name: query, listen: " +
               listen + ", path: " + db + ", flush_interval: 50ms, model: mock-model, embed_url: " +
               mock.base() + "/v1/embeddings, chat_url: " + mock.base() +
               "/v1/chat/completions, vectors_path: " + (d / "vectors.json") + extra + "}\n");
    EXPECT_TRUE(wait_until([&] { return http(base() + "/health").status == 200; }, 20s))
        << engine->err();
  }
  std::string base() const { return "http://" + listen; }
  double metric(const std::string &name, const std::string &labels = "") {
    return find_metric(http(metrics).body, name, labels).value_or(-1);
  }
  // Posts lines (service api) and waits for the ack.
  void ingest(const std::vector<std::string> &messages, const std::string &level = "ERROR",
              const char *when = "2025-11-28T10:20:00Z") {
    std::string body = "[";
    for (size_t i = 0; i < messages.size(); ++i)
      body += std::string(i ? "," : "") + "{\"timestamp\":\"" + when +
              "\",\"service\":\"api\",\"host\":\"web-1\",\"level\":\"" + level +
              "\",\"message\":\"" + messages[i] + "\"}";
    HttpResponse r = post(base() + "/ingest/logs", body + "]");
    EXPECT_GE(r.status, 200) << r.body;
    EXPECT_LT(r.status, 300) << r.body;
  }
  std::string listen, metrics;
  std::unique_ptr<Process> engine;
};

const std::vector<std::string> kLines = {
    "connection to db-1:5432 refused",    "connection to db-2:5432 refused",
    "disk sda1 is full at 90 percent",    "disk sdb2 is full at 95 percent",
    "user 500 logged in from 10.0.0.1",   "user 501 logged in from 10.0.0.2",
    "cache miss for key 42 in region eu", "cache miss for key 43 in region us",
};

TEST(QuerySemantic, TemplatesAreEmbeddedOnceAndRankedByCosineAndKeptAcrossARestart) {
  TempDir d;
  Mock mock(d);
  {
    ModelPipeline p(d, mock, ", embed_batch: 2, embed_timeout: 5s, api_key: k3y");
    p.ingest(kLines);
    ASSERT_TRUE(wait_until([&] { return p.metric("devmesh_query_embed_vectors") == 4; }, 30s))
        << p.engine->err();
    // The templates, not the records: four inputs for eight records (a template may be sent
    // again when it changed after it was embedded, but no record ever is).
    EXPECT_GE(mock.stat("inputs"), 4);
    EXPECT_LT(mock.stat("inputs"), 8);
    HttpResponse r =
        post(p.base() + "/search/semantic", R"({"message": "the disk is full", "limit": 2})");
    ASSERT_EQ(r.status, 200) << r.body;
    auto doc = json(r);
    EXPECT_EQ(std::string(doc["model"].GetString()), "mock-model");
    EXPECT_EQ(doc["templates"].GetInt(), 4);
    ASSERT_EQ(doc["patterns"].Size(), 2u);
    EXPECT_EQ(std::string(doc["patterns"][0]["template"].GetString()),
              "disk <*> is full at <*> percent");
    EXPECT_GT(doc["patterns"][0]["score"].GetDouble(), doc["patterns"][1]["score"].GetDouble());
    r = post(p.base() + "/search/semantic", R"({"message": "who logged in from where"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(std::string(json(r)["patterns"][0]["template"].GetString()),
              "user <*> logged in from <*>");
    EXPECT_EQ(p.metric("devmesh_query_model_requests_total", "api=\"embeddings\",outcome=\"ok\""),
              mock.stat("embeddings"));
    EXPECT_EQ(std::string(mock.stats()["authorization"].GetString()), "Bearer k3y");
    p.engine->kill(SIGTERM);
    ASSERT_EQ(p.engine->wait_exit(20s), 0) << p.engine->err();
    EXPECT_EQ(p.engine->err().find("k3y"), std::string::npos) << "the api_key is never logged";
  }
  // A restart reads the vectors back: nothing is embedded again.
  const int inputs = mock.stat("inputs");
  ModelPipeline again(d, mock, "");
  EXPECT_EQ(again.metric("devmesh_query_embed_vectors"), 4);
  HttpResponse r = post(again.base() + "/search/semantic", R"({"message": "cache miss"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(std::string(json(r)["patterns"][0]["template"].GetString()),
            "cache miss for key <*> in region <*>");
  EXPECT_EQ(mock.stat("inputs"), inputs + 1) << "only the query itself was embedded";
}

// The vectors file is appended to after each batch, not rewritten (query_vectors_file.h). A
// file of the previous release (one JSON object) is read, then replaced by the new format at
// the first write; a record torn by a crash during an append is cut at the next start, counted,
// and nothing before it is lost.
TEST(QuerySemantic, TheVectorsFileIsAppendedToReadsThePreviousFormatAndCutsATornRecord) {
  TempDir d;
  Mock mock(d);
  const std::string file = d / "vectors.json";
  std::string legacy_vector;
  for (int i = 0; i < 64; ++i) legacy_vector += std::string(i ? "," : "") + (i == 5 ? "1" : "0");
  write_file(file, R"({"model":"mock-model","templates":[{"id":"00000000000000aa","service":"old",)"
                   R"("template":"legacy template <*>","vector":[)" +
                       legacy_vector + "]}]}");
  std::string appended;
  {
    ModelPipeline p(d, mock, ", embed_batch: 2");
    EXPECT_EQ(p.metric("devmesh_query_embed_vectors"), 1) << "the old file's vector was read";
    p.ingest({kLines[0], kLines[1]});
    ASSERT_TRUE(wait_until([&] { return p.metric("devmesh_query_embed_vectors") == 2; }, 30s))
        << p.engine->err();
    // Rewritten in the new format at the first write, the old file's vector kept.
    const std::string header = "{\"devmesh_vectors\":2,\"model\":\"mock-model\"}\n";
    std::string first;
    ASSERT_TRUE(wait_until([&] { return (first = read_file(file)).rfind(header, 0) == 0; }, 30s))
        << read_file(file);
    EXPECT_NE(first.find("\"id\":\"00000000000000aa\""), std::string::npos) << first;
    p.ingest({kLines[2], kLines[3], kLines[4], kLines[5]});
    ASSERT_TRUE(wait_until([&] { return p.metric("devmesh_query_embed_vectors") == 4; }, 30s))
        << p.engine->err();
    p.engine->kill(SIGTERM);
    ASSERT_EQ(p.engine->wait_exit(20s), 0) << p.engine->err();
    // The next batches were appended: what was there is still there, byte for byte.
    appended = read_file(file);
    EXPECT_EQ(appended.rfind(first, 0), 0u) << "rewritten, not appended to";
    EXPECT_GT(appended.size(), first.size());
  }
  // A crash in the middle of an append: a record's start, no end.
  write_file(file, appended + "812 0badf00d {\"id\":\"0000000000");
  const int inputs = mock.stat("inputs");
  {
    ModelPipeline p(d, mock, ", embed_batch: 2");
    EXPECT_EQ(p.metric("devmesh_query_embed_vectors"), 4) << p.engine->err();
    ASSERT_TRUE(
        wait_until([&] { return p.metric("devmesh_query_embed_torn_bytes_total") > 0; }, 30s))
        << p.engine->err();
    EXPECT_EQ(p.metric("devmesh_query_embed_torn_bytes_total"), 30);
    ASSERT_TRUE(wait_until([&] { return read_file(file) == appended; }, 30s))
        << "the torn record was not cut";
    EXPECT_NE(p.engine->err().find("torn record at byte " + std::to_string(appended.size())),
              std::string::npos)
        << p.engine->err();
    p.ingest({kLines[6], kLines[7]});
    ASSERT_TRUE(wait_until([&] { return p.metric("devmesh_query_embed_vectors") == 5; }, 30s))
        << p.engine->err();
    EXPECT_EQ(read_file(file).rfind(appended, 0), 0u);
    p.engine->kill(SIGTERM);
    ASSERT_EQ(p.engine->wait_exit(20s), 0) << p.engine->err();
  }
  // Everything is read back: nothing embedded again at start.
  const int before_restart = mock.stat("inputs");
  EXPECT_GT(before_restart, inputs);
  ModelPipeline again(d, mock, "");
  EXPECT_EQ(again.metric("devmesh_query_embed_vectors"), 5);
  EXPECT_EQ(again.metric("devmesh_query_embed_torn_bytes_total"), 0);
  HttpResponse r = post(again.base() + "/search/semantic", R"({"message": "cache miss"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(mock.stat("inputs"), before_restart + 1) << "only the query itself was embedded";
}

TEST(QueryExplain, TheContextPackGoesToTheChatModelAndComesBackAsEvidenceWithTheAnswer) {
  TempDir d;
  Mock mock(d);
  ModelPipeline p(d, mock, ", chat_timeout: 30s");
  p.ingest({"connection to db-1:5432 refused", "connection to db-2:5432 refused"});
  p.ingest({"retrying job 7"}, "WARN");
  HttpResponse r = post(p.base() + "/explain/incident",
                        R"({"start_time": "2025-11-28T10:15:00Z", "end_time": 1764325800})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = json(r);
  const std::string evidence = doc["evidence"].GetString();
  EXPECT_NE(evidence.find("template: connection to db-<*> refused"), std::string::npos) << evidence;
  EXPECT_EQ(std::string(doc["model"].GetString()), "mock-model");
  EXPECT_EQ(std::string(doc["answer"].GetString())
                .rfind("MOCK ANSWER: " + std::to_string(evidence.size()) + " bytes of evidence", 0),
            0u)
      << doc["answer"].GetString();
  // What the model was sent: the fixed system prompt and the pack as the user's message.
  auto stats = mock.stats();
  const auto &messages = stats["last_chat"]["messages"];
  EXPECT_EQ(std::string(stats["last_chat"]["model"].GetString()), "mock-model");
  EXPECT_EQ(std::string(messages[0]["role"].GetString()), "system");
  EXPECT_NE(std::string(messages[0]["content"].GetString()).find("site reliability engineer"),
            std::string::npos);
  EXPECT_EQ(std::string(messages[1]["content"].GetString()), evidence);
  // around/window and the bounds are /query/context's; a bad one is a 400 naming the field.
  r = post(p.base() + "/explain/incident",
           R"({"around": "2025-11-28T10:20:00Z", "window": "10m", "max_bytes": 2048,)"
           R"( "max_patterns": 5, "samples": 1, "service": "api", "host": "web-1"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_LE(json(r)["evidence"].GetStringLength(), 2048u);
  for (const auto &[body, want] : std::vector<std::pair<std::string, std::string>>{
           {R"({"around": "yesterday"})", "bad field 'around'"},
           {R"({"around": "2025-11-28T10:20:00Z", "start_time": 1})", "bad field"},
           {R"({"start_time": {"a": 1}})", "bad field 'start_time': must be a string or a number"},
           {R"({"format": "text"})", "unknown field 'format'"},
           {R"({"max_bytes": 10})", "bad field 'max_bytes'"}}) {
    HttpResponse bad = post(p.base() + "/explain/incident", body);
    EXPECT_EQ(bad.status, 400) << body;
    EXPECT_NE(bad.body.find(want), std::string::npos) << body << ": " << bad.body;
  }
  EXPECT_EQ(p.metric("devmesh_query_model_requests_total", "api=\"chat\",outcome=\"ok\""), 2);
}

TEST(QueryModelFailures, AFailingTimedOutOrDownModelServerIsAnswered502Or504AndCounted) {
  TempDir d;
  Mock mock(d);
  ModelPipeline p(d, mock, ", chat_timeout: 1s, embed_timeout: 1s");
  p.ingest({"connection to db-1:5432 refused"});
  const std::string window = R"({"start_time": "2025-11-28T10:00:00Z"})";
  mock.mode("fail");
  HttpResponse r = post(p.base() + "/explain/incident", window);
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(std::string(json(r)["reason"].GetString()), "error");
  EXPECT_NE(r.body.find("HTTP 500"), std::string::npos) << r.body;
  r = post(p.base() + "/search/semantic", R"({"message": "refused"})");
  EXPECT_EQ(r.status, 502) << r.body;
  mock.mode("hang");
  r = post(p.base() + "/explain/incident", window);
  EXPECT_EQ(r.status, 504) << r.body;
  EXPECT_EQ(std::string(json(r)["reason"].GetString()), "timeout");
  r = post(p.base() + "/search/semantic", R"({"message": "refused"})");
  EXPECT_EQ(r.status, 504) << r.body;
  mock.mode("ok");
  EXPECT_GE(p.metric("devmesh_query_model_requests_total", "api=\"chat\",outcome=\"error\""), 1);
  EXPECT_GE(p.metric("devmesh_query_model_requests_total", "api=\"chat\",outcome=\"timeout\""), 1);
  EXPECT_GE(
      p.metric("devmesh_query_model_requests_total", "api=\"embeddings\",outcome=\"timeout\""), 1);
  EXPECT_GE(p.metric("devmesh_query_requests_total", "outcome=\"timeout\""), 2);
  EXPECT_GE(p.metric("devmesh_query_requests_total", "outcome=\"failed\""), 2);

  // Down: nothing listens on the embeddings port.
  TempDir d2;
  const std::string closed = "http://127.0.0.1:" + std::to_string(free_port());
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  const std::string metrics = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d2, plugins_head("  http_listen: " + metrics + "\n") +
                                "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                                "  outputs:\n    - {name: query, match: none, listen: " +
                                listen + ", path: none.db, model: m, embed_url: " + closed +
                                "/v1/embeddings, vectors_path: " + (d2 / "v.json") + "}\n");
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  r = post("http://" + listen + "/search/semantic", R"({"message": "refused"})");
  EXPECT_EQ(r.status, 502) << r.body;
  EXPECT_EQ(std::string(json(r)["reason"].GetString()), "down") << r.body;
  EXPECT_GE(find_metric(http("http://" + metrics + "/metrics").body,
                        "devmesh_query_model_requests_total", "api=\"embeddings\",outcome=\"down\"")
                .value_or(0),
            1);
}

TEST(QueryModelFailures, AModelServerThatHangsNeverSlowsIngestion) {
  TempDir d;
  Mock mock(d);
  mock.mode("hang");
  // A small queue, so the templates that keep coming while the server hangs are dropped,
  // counted.
  ModelPipeline p(d, mock, ", embed_queue: 3, embed_batch: 1, embed_timeout: 600s");
  p.ingest({"first template 1"});
  ASSERT_TRUE(wait_until([&] { return mock.stat("hung") >= 1; }, 30s))
      << "the embedding request never reached the mock";
  // With the embedding thread stuck in its request, records of new templates keep flowing
  // through the query output into the store at once (each post waits for delivery).
  for (int i = 0; i < 20; ++i) {
    std::vector<std::string> batch;
    for (int k = 0; k < 10; ++k)
      batch.push_back("event" + std::string(1, static_cast<char>('a' + i)) + " kind" +
                      std::string(1, static_cast<char>('a' + k)) + " happened " +
                      std::to_string(i * 10 + k));
    p.ingest(batch);
  }
  HttpResponse r = http(p.base() + "/query/logs?limit=1000");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json(r).Size(), 201u);
  EXPECT_EQ(mock.stat("hung"), 1) << "one request hangs; nothing else was sent meanwhile";
  EXPECT_EQ(p.metric("devmesh_query_embed_queued"), 3);
  EXPECT_GT(p.metric("devmesh_query_embed_dropped_total"), 0);
  // Similar search needs no model and still answers.
  EXPECT_EQ(post(p.base() + "/search/similar", R"({"message": "first template 2"})").status, 200);
  // A stop abandons the hung request at once.
  p.engine->kill(SIGTERM);
  EXPECT_EQ(p.engine->wait_exit(30s), 0) << p.engine->err();
}

}  // namespace

namespace {

// The model options are checked at load, each problem naming its option.
TEST(QueryModelConfig, AMissingModelABadUrlOrAVectorsFileThatIsNotOursIsRefusedNamingTheOption) {
  TempDir d;
  write_file(d / "garbage.json", "not json");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"embed_url: http://127.0.0.1:1/v1/embeddings", "model: required with embed_url or chat_url"},
      {"model: m, chat_url: ftp://example/v1/chat/completions",
       "chat_url: must be an http:// or https:// URL"},
      {"model: m, embed_url: 127.0.0.1:1/v1/embeddings",
       "embed_url: must be an http:// or https:// URL"},
      {"model: m, embed_url: http://127.0.0.1:1/v1/embeddings, vectors_path: " +
           (d / "garbage.json"),
       "vectors_path: " + (d / "garbage.json") + ": not a vectors file this plugin wrote"},
  };
  for (const auto &[options, want] : cases) {
    write_file(d / "p.yaml", plugins_head() +
                                 "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                                 "  outputs:\n    - {name: query, match: none, path: none.db, " +
                                 options + "}\n");
    Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
    EXPECT_EQ(p.wait_exit(30s), 1) << options;
    EXPECT_NE(p.err().find(want), std::string::npos) << options << ": " << p.err();
  }
}

}  // namespace

namespace {

// The stored templates of a pipeline's store: template text -> pattern id (hex).
std::map<std::string, std::string> stored_templates(const std::string &db) {
  std::map<std::string, std::string> out;
  for (const auto &r : SqliteDb(db).rows("SELECT id, template FROM log_patterns"))
    out[r[1]] = hex(static_cast<uint64_t>(std::stoll(r[0])));
  return out;
}

// What the sqlite output's retention does to a template whose rows are all old: its rows go,
// then its row of the patterns table.
void remove_as_retention_would(const std::string &db, const std::string &id_hex) {
  const std::string sid = std::to_string(static_cast<int64_t>(std::stoull(id_hex, nullptr, 16)));
  SqliteDb(db).exec("BEGIN; DELETE FROM log_events WHERE pattern_id = " + sid +
                    "; DELETE FROM log_patterns WHERE id = " + sid + "; COMMIT;");
}

std::set<std::string> answered_ids(const HttpResponse &r) {
  std::set<std::string> out;
  auto d = json(r);
  if (!d.IsObject() || !d.HasMember("patterns")) return out;
  for (const auto &p : d["patterns"].GetArray()) out.insert(p["pattern_id"].GetString());
  return out;
}

}  // namespace

// Retention removes three of four templates from the store: their vectors are dropped at the
// next refresh of the template list (counted), /search/semantic and /search/similar stop
// answering them, the vectors file is compacted without them (smaller, the live one kept), and
// a restart reads back only the live one without embedding anything again.
TEST(QuerySemantic, TemplatesRetentionRemovedAreNoLongerAnsweredAndLeaveTheVectorsFile) {
  TempDir d;
  Mock mock(d);
  const std::string file = d / "vectors.json", db = d / "data/devmesh.db";
  std::set<std::string> removed;
  std::string live;
  {
    ModelPipeline p(d, mock, ", vectors_refresh: 200ms");
    p.ingest(kLines);
    ASSERT_TRUE(wait_until([&] { return p.metric("devmesh_query_embed_vectors") == 4; }, 30s))
        << p.engine->err();
    const auto templates = stored_templates(db);
    ASSERT_EQ(templates.size(), 4u);
    for (const auto &[text, id] : templates) {
      if (text.find("connection") != std::string::npos)
        live = id;
      else
        removed.insert(id);
    }
    ASSERT_FALSE(live.empty());
    const size_t full = read_file(file).size();
    for (const std::string &id : removed) remove_as_retention_would(db, id);

    ASSERT_TRUE(
        wait_until([&] { return p.metric("devmesh_query_embed_vectors_dropped_total") == 3; }, 30s))
        << p.engine->err();
    EXPECT_EQ(p.metric("devmesh_query_embed_vectors"), 1);
    HttpResponse r =
        post(p.base() + "/search/semantic", R"({"message": "the disk is full", "limit": 10})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(answered_ids(r), std::set<std::string>{live}) << r.body;
    EXPECT_EQ(json(r)["templates"].GetInt(), 1);
    // The lexical search reads the store's list itself (rebuilt once a few seconds old).
    EXPECT_TRUE(wait_until(
        [&] {
          const auto ids = answered_ids(post(p.base() + "/search/similar",
                                             R"({"message": "disk sda1 is full at 90 percent"})"));
          for (const std::string &id : removed)
            if (ids.count(id)) return false;
          return true;
        },
        30s));
    // Three dead records of four: the file is rewritten without them.
    ASSERT_TRUE(
        wait_until([&] { return p.metric("devmesh_query_embed_compactions_total") >= 1; }, 30s))
        << p.engine->err();
    const std::string compacted = read_file(file);
    EXPECT_LT(compacted.size(), full);
    EXPECT_NE(compacted.find("\"id\":\"" + live + "\""), std::string::npos) << compacted;
    for (const std::string &id : removed)
      EXPECT_EQ(compacted.find("\"id\":\"" + id + "\""), std::string::npos) << id;
    r = post(p.base() + "/search/semantic", R"({"message": "connection refused"})");
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(std::string(json(r)["patterns"][0]["pattern_id"].GetString()), live);
    EXPECT_EQ(p.metric("devmesh_query_embed_vectors_dropped_total"), 3)
        << "a live vector was dropped";
    EXPECT_NE(p.engine->err().find("compacted"), std::string::npos) << p.engine->err();
    p.engine->kill(SIGTERM);
    ASSERT_EQ(p.engine->wait_exit(20s), 0) << p.engine->err();
  }
  const int inputs = mock.stat("inputs");
  ModelPipeline again(d, mock, ", vectors_refresh: 200ms");
  EXPECT_EQ(again.metric("devmesh_query_embed_vectors"), 1);
  HttpResponse r = post(again.base() + "/search/semantic", R"({"message": "connection refused"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(answered_ids(r), std::set<std::string>{live}) << r.body;
  EXPECT_EQ(mock.stat("inputs"), inputs + 1) << "only the query itself was embedded";
}

// Between two refreshes of the embedder (an hour apart here) /search/semantic does not answer a
// template the store no longer has once /search/similar has read the store's template list (a
// few seconds old at most), while the vector is still held; semantic search itself never reads
// the store.
TEST(QuerySemantic, ATemplateTheStoreNoLongerHasIsNotAnsweredEvenBeforeItsVectorIsDropped) {
  TempDir d;
  Mock mock(d);
  const std::string db = d / "data/devmesh.db";
  ModelPipeline p(d, mock, ", vectors_refresh: 1h");
  p.ingest(kLines);
  ASSERT_TRUE(wait_until([&] { return p.metric("devmesh_query_embed_vectors") == 4; }, 30s))
      << p.engine->err();
  std::string disk;
  for (const auto &[text, id] : stored_templates(db))
    if (text.find("disk") != std::string::npos) disk = id;
  ASSERT_FALSE(disk.empty());
  const std::string ask = R"({"message": "the disk is full", "limit": 10})";
  HttpResponse r = post(p.base() + "/search/semantic", ask);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(answered_ids(r).size(), 4u) << r.body;
  EXPECT_EQ(std::string(json(r)["patterns"][0]["pattern_id"].GetString()), disk);
  remove_as_retention_would(db, disk);
  std::set<std::string> ids;
  EXPECT_TRUE(wait_until(
      [&] {
        if (post(p.base() + "/search/similar", ask).status != 200) return false;
        HttpResponse again = post(p.base() + "/search/semantic", ask);
        ids = answered_ids(again);
        return again.status == 200 && ids.size() == 3 && !ids.count(disk);
      },
      30s))
      << "still answered: " << disk;
  EXPECT_EQ(p.metric("devmesh_query_embed_vectors"), 4) << "dropped before its refresh";
  EXPECT_EQ(p.metric("devmesh_query_embed_vectors_dropped_total"), 0);
}

// The same through the sqlite output's own retention (retention: 1h): the records of three
// templates are old, their rows and then their templates are deleted by it, and their vectors
// follow; the template of the fresh records keeps its vector.
TEST(QuerySemantic, TheVectorsOfTemplatesTheSqliteRetentionDeletedAreDroppedAndCompactedAway) {
  TempDir d;
  Mock mock(d);
  const std::string file = d / "vectors.json";
  ModelPipeline p(d, mock, ", vectors_refresh: 200ms", "data/devmesh.db",
                  ", retention: 1h, retention_interval: 200ms");
  char now[32];
  const std::time_t t = std::time(nullptr);
  std::strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  p.ingest({kLines[0], kLines[1]}, "ERROR", now);
  p.ingest({kLines[2], kLines[3], kLines[4], kLines[5], kLines[6], kLines[7]});  // 2025: old
  ASSERT_TRUE(
      wait_until([&] { return p.metric("devmesh_query_embed_vectors_dropped_total") == 3; }, 30s))
      << p.engine->err();
  EXPECT_EQ(p.metric("devmesh_query_embed_vectors"), 1);
  EXPECT_GE(p.metric("devmesh_query_embed_templates_total"), 4);
  HttpResponse r =
      post(p.base() + "/search/semantic", R"({"message": "the disk is full", "limit": 10})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = json(r);
  ASSERT_EQ(doc["patterns"].Size(), 1u) << r.body;
  EXPECT_NE(std::string(doc["patterns"][0]["template"].GetString()).find("connection"),
            std::string::npos)
      << r.body;
  ASSERT_TRUE(
      wait_until([&] { return p.metric("devmesh_query_embed_compactions_total") >= 1; }, 30s))
      << p.engine->err();
  const std::string compacted = read_file(file);
  EXPECT_NE(compacted.find("connection to"), std::string::npos) << compacted;
  for (const char *gone : {"disk <*>", "logged in from", "cache miss"})
    EXPECT_EQ(compacted.find(gone), std::string::npos) << gone << " in " << compacted;
  EXPECT_EQ(p.metric("devmesh_query_embed_vectors_dropped_total"), 3);
}
