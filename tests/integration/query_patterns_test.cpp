// Patterns through the query API over SQLite, with the real binary and a real HTTP client: the
// shared pattern contract (pattern_contract.h) on a store filled with its fixture, then the
// whole path: records POSTed to the http input, given ids by the patterns filter, stored by the
// sqlite output and read back through /query/patterns, /query/patterns/{id} and
// /query/logs?pattern_id=.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "pattern_contract.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// Makes a store with the sqlite output (the plugin's own schema, the patterns table included)
// and empties it.
void make_empty_store(const TempDir &d, const std::string &db) {
  auto e = start_engine(d,
                        plugins_head("  exit_when_done: true\n") +
                            "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: setup}\n"
                            "  outputs:\n    - {name: sqlite, path: " +
                            db + "}\n",
                        "setup");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  SqliteDb s(db);
  s.exec("DELETE FROM log_events; DELETE FROM log_patterns;");
  s.exec("INSERT INTO log_events_fts(log_events_fts) VALUES('delete-all')");
}

std::string quoted(const std::string &s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// A query output alone on a store, on a free port; its base URL.
std::string start_query(const TempDir &d, const std::string &db, const std::string &name,
                        Process *&engine) {
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  engine = start_engine(d,
                        plugins_head() +
                            "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                            "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                            std::to_string(port) + ", path: " + db + "}\n",
                        name)
               .release();
  EXPECT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s))
      << engine->err();
  return base;
}

}  // namespace

// The contract's SQLite backend: the fixture in a store of the plugin's schema, and a table as
// the release before patterns made it.
struct SqlitePatternStore {
  static void start() {
    dir = new TempDir;
    const std::string db = *dir / "store/devmesh.db";
    make_empty_store(*dir, db);
    std::string sql = "BEGIN;";
    for (const PatternFixtureRow &r : pattern_fixture_rows())
      sql +=
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
          " pattern_id) VALUES (" +
          std::to_string(r.timestamp_ns) + ", 'fixture', " + quoted(r.service) + ", " +
          quoted(r.host) + ", " + quoted(r.level) + ", " + quoted(r.message) +
          ", randomblob(16), " +
          (r.pattern_id ? std::to_string(static_cast<int64_t>(*r.pattern_id)) : "NULL") + ");";
    for (const PatternFixturePattern &p : pattern_fixture_table())
      sql +=
          "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count)"
          " VALUES (" +
          std::to_string(static_cast<int64_t>(p.id)) + ", " + quoted(p.service) + ", " +
          (p.template_text ? quoted(*p.template_text) : "NULL") + ", " +
          std::to_string(p.first_seen_ns) + ", " + std::to_string(p.last_seen_ns) + ", " +
          std::to_string(p.count) + ");";
    sql += "INSERT INTO log_events_fts(rowid, message) SELECT id, message FROM log_events; COMMIT;";
    SqliteDb(db).exec(sql);
    url = start_query(*dir, db, "query", engine);

    const std::string legacy_db = *dir / "legacy/devmesh.db";
    std::filesystem::create_directories(*dir / "legacy");
    {
      SqliteDb s(legacy_db);
      // The previous release's DDL, verbatim (as sqlite_test's upgrade test has it).
      s.exec(
          "CREATE TABLE \"log_events\" (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
          "  timestamp INTEGER NOT NULL,\n  source TEXT NOT NULL,\n  service TEXT NOT NULL,\n"
          "  host TEXT NOT NULL,\n  level TEXT NOT NULL CHECK (level IN "
          "('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL')),\n  trace_id TEXT,\n"
          "  span_id TEXT,\n  event_type TEXT,\n  error_code TEXT,\n  message TEXT NOT NULL,\n"
          "  meta_json TEXT,\n  event_id BLOB NOT NULL\n);\n"
          "CREATE UNIQUE INDEX \"log_events_event_id\" ON \"log_events\" (event_id);\n"
          "CREATE INDEX \"log_events_idx_timestamp\" ON \"log_events\" (timestamp);");
      s.exec("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < " +
             std::to_string(kLegacyRows) +
             ") INSERT INTO log_events (timestamp, source, service, host, level, message,"
             " event_id) SELECT 946684800000000000 + i, 'old', 'svc', 'h', 'INFO', 'old row ' ||"
             " i, randomblob(16) FROM n");
    }
    legacy_url = start_query(*dir, legacy_db, "legacy", legacy_engine);
  }
  static void stop() {
    for (Process *e : {engine, legacy_engine}) {
      e->kill(SIGTERM);
      e->wait_exit(20s);
      delete e;
    }
    delete dir;
  }
  static std::string base() { return url; }
  static std::string legacy_base() { return legacy_url; }

  static inline TempDir *dir;
  static inline std::string url, legacy_url;
  static inline Process *engine, *legacy_engine;
};

namespace devmesh::test {
INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, PatternContract, SqlitePatternStore);
}

namespace {

// One template's records: what is posted, and which template it must come out as.
struct Line {
  std::string when;  // 2025-11-28T<when>Z
  const char *level;
  std::string message;
  int template_index;
};

std::string post_body(const std::vector<Line> &lines) {
  std::string body = "[";
  for (size_t i = 0; i < lines.size(); ++i)
    body += std::string(i ? "," : "") + "{\"timestamp\":\"2025-11-28T" + lines[i].when +
            "Z\",\"source\":\"e2e\",\"service\":\"api\",\"host\":\"web-1\",\"level\":\"" +
            lines[i].level + "\",\"message\":\"" + lines[i].message + "\"}";
  return body + "]";
}

// http input -> patterns -> sqlite -> query: the ids the filter gives are the ones the API
// serves, grouped as the templates are, counted per minute.
TEST(QueryPatterns, RecordsPostedThroughThePatternsFilterAreServedByTemplateWithMinutesAddingUp) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  const std::string db = d / "data/devmesh.db";
  const std::string metrics_at = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, plugins_head("  http_listen: " + metrics_at + "\n") +
                               "  inputs:\n    - {name: http, listen: " + listen +
                               ", ack: delivered}\n"
                               "  filters:\n    - {name: patterns}\n"
                               "  outputs:\n"
                               "    - {name: sqlite, path: " +
                               db +
                               ", flush_interval: 50ms}\n"
                               "    - {name: query, listen: " +
                               listen + ", path: " + db + ", flush_interval: 50ms}\n");
  const std::string base = "http://" + listen;
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();

  // Template 0 in minutes 10:00 (10), 10:01 (12), 10:02 (8), later 10:30 (5); template 1 in
  // 10:00-10:01 (20); template 2 only at 10:30 (4): the one new in [10:30, 11:00).
  std::vector<Line> first, second;
  char when[32];
  for (int i = 0; i < 30; ++i) {
    const int minute = i < 10 ? 0 : i < 22 ? 1 : 2;
    std::snprintf(when, sizeof when, "10:%02d:%02d.%06d", minute, i, i);
    first.push_back({when, "INFO",
                     "request " + std::to_string(1000 + i * 7) + " served in " +
                         std::to_string(3 + i % 5) + " ms",
                     0});
  }
  for (int i = 0; i < 20; ++i) {
    std::snprintf(when, sizeof when, "10:0%d:%02d.500000", i % 2, 30 + i);
    first.push_back(
        {when, "WARN",
         "user " + std::to_string(500 + i) + " logged in from 10.0.0." + std::to_string(i + 1), 1});
  }
  for (int i = 0; i < 5; ++i) {
    std::snprintf(when, sizeof when, "10:30:%02d.000000", i);
    second.push_back(
        {when, "INFO",
         "request " + std::to_string(9000 + i) + " served in " + std::to_string(40 + i) + " ms",
         0});
  }
  for (int i = 0; i < 4; ++i) {
    std::snprintf(when, sizeof when, "10:30:%02d.000000", 10 + i);
    second.push_back({when, "ERROR",
                      "disk /dev/sda" + std::to_string(i + 1) + " is full at " +
                          std::to_string(90 + i) + " percent",
                      2});
  }
  for (const auto *batch : {&first, &second}) {
    HttpResponse post =
        http(base + "/ingest/logs", {"Content-Type: application/json"}, "POST", post_body(*batch));
    ASSERT_GE(post.status, 200) << post.body;
    ASSERT_LT(post.status, 300) << post.body;
  }

  // Every stored record has an id; one template, one id; different templates, different ids.
  HttpResponse r = http(base + "/query/logs?service=api&limit=1000");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document rows;
  rows.Parse(r.body.c_str());
  ASSERT_TRUE(rows.IsArray()) << r.body;
  ASSERT_EQ(rows.Size(), 59u);
  std::map<std::string, int> template_of_message;
  for (const auto *batch : {&first, &second})
    for (const Line &l : *batch) template_of_message[l.message] = l.template_index;
  std::map<int, std::set<std::string>> ids_of_template;
  for (auto &row : rows.GetArray()) {
    ASSERT_TRUE(row["pattern_id"].IsString()) << row["message"].GetString();
    const std::string id = row["pattern_id"].GetString();
    EXPECT_EQ(id.size(), 16u);
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    ids_of_template[template_of_message.at(row["message"].GetString())].insert(id);
  }
  ASSERT_EQ(ids_of_template.size(), 3u);
  std::string id[3];
  for (int t = 0; t < 3; ++t) {
    ASSERT_EQ(ids_of_template[t].size(), 1u) << "template " << t;
    id[t] = *ids_of_template[t].begin();
  }
  EXPECT_NE(id[0], id[1]);
  EXPECT_NE(id[0], id[2]);
  EXPECT_NE(id[1], id[2]);

  // The hour: three patterns by count, each with its template and a sample of its own.
  const std::string hour = "start_time=2025-11-28T10:00:00Z&end_time=2025-11-28T10:59:59Z";
  r = http(base + "/query/patterns?" + hour);
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  ASSERT_EQ(doc["patterns"].Size(), 3u) << r.body;
  const int64_t counts[] = {35, 20, 4};
  for (rapidjson::SizeType i = 0; i < 3; ++i) {
    const auto &p = doc["patterns"][i];
    EXPECT_EQ(std::string(p["id"].GetString()), id[i]) << r.body;
    EXPECT_EQ(p["count"].GetInt64(), counts[i]);
    EXPECT_EQ(p["total_count"].GetInt64(), counts[i]);
    EXPECT_EQ(std::string(p["service"].GetString()), "api");
    EXPECT_EQ(std::string(p["sample"]["pattern_id"].GetString()), id[i]);
    ASSERT_TRUE(p["template"].IsString()) << r.body;
  }
  EXPECT_EQ(std::string(doc["patterns"][0]["template"].GetString()),
            "request <*> served in <*> ms");
  EXPECT_EQ(std::string(doc["patterns"][0]["first"].GetString()), "2025-11-28T10:00:00.000000");
  EXPECT_EQ(std::string(doc["patterns"][0]["last"].GetString()), "2025-11-28T10:30:04.000000");
  EXPECT_EQ(std::string(doc["patterns"][0]["sample"]["message"].GetString()),
            "request 9004 served in 44 ms");

  // new=1 over the second half hour: only the template first seen there.
  r = http(base +
           "/query/patterns?new=1&start_time=2025-11-28T10:30:00Z"
           "&end_time=2025-11-28T10:59:59Z");
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  ASSERT_EQ(doc["patterns"].Size(), 1u) << r.body;
  EXPECT_EQ(std::string(doc["patterns"][0]["id"].GetString()), id[2]);
  EXPECT_EQ(doc["patterns"][0]["count"].GetInt64(), 4);
  r = http(base + "/query/patterns?start_time=2025-11-28T10:30:00Z&end_time=2025-11-28T10:59:59Z");
  doc.Parse(r.body.c_str());
  EXPECT_EQ(doc["patterns"].Size(), 2u) << "without new=1, template 0 is there too: " << r.body;
  r = http(base + "/query/patterns?" + hour + "&min_level=WARN");
  doc.Parse(r.body.c_str());
  ASSERT_EQ(doc["patterns"].Size(), 2u) << r.body;
  EXPECT_EQ(std::string(doc["patterns"][0]["id"].GetString()), id[1]);

  // Template 0's minutes add up to its count.
  r = http(base + "/query/patterns/" + id[0] + "?" + hour);
  ASSERT_EQ(r.status, 200) << r.body;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  const std::pair<std::string, int64_t> minutes[] = {{"2025-11-28T10:00:00.000000", 10},
                                                     {"2025-11-28T10:01:00.000000", 12},
                                                     {"2025-11-28T10:02:00.000000", 8},
                                                     {"2025-11-28T10:30:00.000000", 5}};
  ASSERT_EQ(doc["minutes"].Size(), std::size(minutes)) << r.body;
  int64_t sum = 0;
  for (rapidjson::SizeType i = 0; i < std::size(minutes); ++i) {
    EXPECT_EQ(std::string(doc["minutes"][i]["minute"].GetString()), minutes[i].first);
    EXPECT_EQ(doc["minutes"][i]["count"].GetInt64(), minutes[i].second);
    sum += doc["minutes"][i]["count"].GetInt64();
  }
  EXPECT_EQ(sum, 35);
  EXPECT_EQ(doc["count"].GetInt64(), 35);

  // /query/logs?pattern_id= gives exactly that template's records.
  r = http(base + "/query/logs?limit=1000&pattern_id=" + id[0]);
  rows.Parse(r.body.c_str());
  ASSERT_TRUE(rows.IsArray()) << r.body;
  EXPECT_EQ(rows.Size(), 35u);
  for (auto &row : rows.GetArray())
    EXPECT_EQ(template_of_message.at(row["message"].GetString()), 0) << row["message"].GetString();

  // An unknown pattern is a 404, a malformed one a 400: each counted by its outcome.
  auto outcome = [&](const char *name) {
    return metric_value(http("http://" + metrics_at + "/metrics").body,
                        "devmesh_query_requests_total", std::string("outcome=\"") + name + "\"");
  };
  const double not_found = outcome("not_found"), bad = outcome("bad_parameter");
  EXPECT_EQ(http(base + "/query/patterns/00000000000000ff?" + hour).status, 404);
  EXPECT_EQ(http(base + "/query/patterns/ff?" + hour).status, 400);
  EXPECT_EQ(http(base + "/query/patterns?new=maybe").status, 400);
  EXPECT_EQ(outcome("not_found"), not_found + 1);
  EXPECT_EQ(outcome("bad_parameter"), bad + 2);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

// A level filter is read through the level index when its rows are rare, through the time
// index otherwise: the counts, first and last are the same either way.
TEST(QueryPatterns, LevelFiltersCountTheSameWhicheverIndexReadsTheRows) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  make_empty_store(d, db);
  // 20000 rows a second apart, pattern i % 50 (ids 1..50), host i % 2; ERROR for i % 101 == 0
  // (rare: the level index), WARN for i % 10 == 0, else INFO (common: the time index).
  constexpr int kRows = 20000;
  auto level_of = [](int i) { return i % 101 == 0 ? "ERROR" : i % 10 == 0 ? "WARN" : "INFO"; };
  SqliteDb(db).exec(
      "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < " +
      std::to_string(kRows - 1) +
      ") INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
      " pattern_id) SELECT 1764288000000000000 + i * 1000000000, 's', 'svc', 'h' || (i % 2),"
      " CASE WHEN i % 101 = 0 THEN 'ERROR' WHEN i % 10 = 0 THEN 'WARN' ELSE 'INFO' END,"
      " 'line ' || i, randomblob(16), 1 + i % 50 FROM n;"
      "INSERT INTO log_patterns SELECT pattern_id, 'svc', 'line <*>', min(timestamp),"
      " max(timestamp), count(*) FROM log_events GROUP BY pattern_id;");
  Process *engine = nullptr;
  const std::string base = start_query(d, db, "query", engine);
  std::unique_ptr<Process> owned(engine);
  struct Want {
    int64_t count = 0;
    int first = -1, last = -1;
  };
  auto check = [&](const std::string &query, auto keep) {
    std::map<std::string, Want> want;
    for (int i = 0; i < kRows; ++i) {
      if (!keep(i)) continue;
      Want &w = want[hex_id(static_cast<uint64_t>(1 + i % 50))];
      ++w.count;
      if (w.first < 0) w.first = i;
      w.last = i;
    }
    HttpResponse r = http(base + "/query/patterns?start_time=2025-11-28&limit=100&" + query);
    ASSERT_EQ(r.status, 200) << query << ": " << r.body.substr(0, 300);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    ASSERT_TRUE(doc.IsObject()) << r.body.substr(0, 300);
    ASSERT_EQ(doc["patterns"].Size(), want.size()) << query;
    for (auto &p : doc["patterns"].GetArray()) {
      const Want &w = want[p["id"].GetString()];
      EXPECT_EQ(p["count"].GetInt64(), w.count) << query << " " << p["id"].GetString();
      char first[64], last[64];
      std::snprintf(first, sizeof first, "2025-11-28T%02d:%02d:%02d.000000", w.first / 3600,
                    w.first / 60 % 60, w.first % 60);
      std::snprintf(last, sizeof last, "2025-11-28T%02d:%02d:%02d.000000", w.last / 3600,
                    w.last / 60 % 60, w.last % 60);
      EXPECT_EQ(std::string(p["first"].GetString()), first) << query;
      EXPECT_EQ(std::string(p["last"].GetString()), last) << query;
      EXPECT_EQ(std::string(p["sample"]["timestamp"].GetString()), last) << query;
      EXPECT_EQ(std::string(p["sample"]["level"].GetString()).empty(), false);
    }
  };
  check("level=ERROR", [&](int i) { return std::string(level_of(i)) == "ERROR"; });
  check("min_level=ERROR", [&](int i) { return std::string(level_of(i)) == "ERROR"; });
  check("min_level=WARN", [&](int i) { return std::string(level_of(i)) != "INFO"; });
  check("level=INFO", [&](int i) { return std::string(level_of(i)) == "INFO"; });
  check("min_level=ERROR&host=h1", [&](int i) { return level_of(i)[0] == 'E' && i % 2 == 1; });
  check("min_level=ERROR&service=svc", [&](int i) { return level_of(i)[0] == 'E'; });
  check("", [](int) { return true; });
  check("end_time=2025-11-28T00:00:30Z", [](int i) { return i <= 30; });
}

// A store of the release before patterns, served while the sqlite output upgrades it: the
// running query engine sees the new column and table at once, no restart.
TEST(QueryPatterns, AStoreUpgradedWhileServedShowsItsPatternsWithoutARestart) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  {
    SqliteDb s(db);
    s.exec(
        "CREATE TABLE \"log_events\" (\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "  timestamp INTEGER NOT NULL,\n  source TEXT NOT NULL,\n  service TEXT NOT NULL,\n"
        "  host TEXT NOT NULL,\n  level TEXT NOT NULL CHECK (level IN "
        "('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL')),\n  trace_id TEXT,\n"
        "  span_id TEXT,\n  event_type TEXT,\n  error_code TEXT,\n  message TEXT NOT NULL,\n"
        "  meta_json TEXT,\n  event_id BLOB NOT NULL\n);\n"
        "CREATE UNIQUE INDEX \"log_events_event_id\" ON \"log_events\" (event_id);\n"
        "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
        " VALUES (1, 'old', 'svc', 'h', 'INFO', 'written by the previous release',"
        " randomblob(16));");
  }
  Process *engine = nullptr;
  const std::string base = start_query(d, db, "query", engine);
  std::unique_ptr<Process> owned(engine);
  HttpResponse r = http(base + "/query/patterns?start_time=0");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"patterns\":[]"), std::string::npos) << r.body;
  r = http(base + "/query/logs");
  EXPECT_NE(r.body.find("\"pattern_id\":null"), std::string::npos) << r.body;

  auto e = start_engine(d,
                        plugins_head("  exit_when_done: true\n") +
                            "  inputs:\n    - {name: dummy, rate: 0, count: 30, service: svc,"
                            " message: 'new row {seq}'}\n"
                            "  filters:\n    - {name: patterns}\n"
                            "  outputs:\n    - {name: sqlite, path: " +
                            db + "}\n",
                        "upgrade");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  r = http(base + "/query/patterns?start_time=0");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  ASSERT_EQ(doc["patterns"].Size(), 1u) << r.body;
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
}

// The statement time limit covers the whole patterns call, not each of its statements.
TEST(QueryPatterns, APatternsQueryPastTheStatementTimeLimitGets504) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  make_empty_store(d, db);
  // 400k rows of 2000 patterns: with min_level every row is read (well over 10 ms).
  SqliteDb(db).exec(
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000)"
      " INSERT INTO log_events (timestamp, source, service, host, level, message, event_id,"
      " pattern_id) SELECT i, 's', 'big', 'h', 'WARN', 'line ' || i, randomblob(16), i % 2000"
      " FROM n;"
      "INSERT INTO log_patterns SELECT pattern_id, 'big', 'line <*>', min(timestamp),"
      " max(timestamp), count(*) FROM log_events GROUP BY pattern_id;");
  Process *engine = nullptr;
  const std::string base = start_query(d, db, "query", engine);
  std::unique_ptr<Process> owned(engine);
  // statement_timeout: the option's floor, set in a second engine on the same store.
  const int port = free_port();
  auto e = start_engine(d,
                        plugins_head() +
                            "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                            "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                            std::to_string(port) + ", path: " + db + ", statement_timeout: 10ms}\n",
                        "limited");
  const std::string limited = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_TRUE(wait_until([&] { return http(limited + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(limited + "/query/patterns?start_time=0&min_level=WARN&limit=10000");
  EXPECT_EQ(r.status, 504) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("statement_timeout"), std::string::npos) << r.body.substr(0, 300);
  // The same query without the limit answers, every pattern counted.
  r = http(base + "/query/patterns?start_time=0&min_level=WARN&limit=10000");
  ASSERT_EQ(r.status, 200) << r.body.substr(0, 300);
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(doc["patterns"].Size(), 2000u);
  EXPECT_EQ(http(limited + "/health").status, 200) << "the server goes on serving";
}

}  // namespace
