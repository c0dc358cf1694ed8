// The upgrade of the pattern index from the previous release's (pattern_id, timestamp) to
// (pattern_id, timestamp, id, level), on MariaDB and SQLite: a table made with the previous
// release's DDL, rows in it, is started on by this build; the rows stay, the new index replaces
// the old one, and /query/patterns (with min_level, level and neither) answers what it answered
// before. With create_table: false the MariaDB table is left as it is and the log gives the
// statement.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mariadb.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

constexpr const char *kPasswordEnv = "DEVMESH_TEST_DB_PASSWORD";
constexpr int kRows = 3000;

// The previous release's CREATE TABLE and patterns table, verbatim (git show be83c8e:plugins/
// common/mariadb_connection.hpp, full_text: true).
const char *const kPreviousMariaDbTable =
    "CREATE TABLE IF NOT EXISTS `log_events` (\n"
    "  id BIGINT AUTO_INCREMENT PRIMARY KEY,\n"
    "  timestamp DATETIME(6) NOT NULL,\n"
    "  source VARCHAR(255) NOT NULL,\n"
    "  service VARCHAR(255) NOT NULL,\n"
    "  host VARCHAR(255) NOT NULL,\n"
    "  level ENUM('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL') NOT NULL,\n"
    "  trace_id VARCHAR(64) DEFAULT NULL,\n"
    "  span_id VARCHAR(32) DEFAULT NULL,\n"
    "  event_type VARCHAR(100) DEFAULT NULL,\n"
    "  error_code VARCHAR(50) DEFAULT NULL,\n"
    "  message MEDIUMTEXT NOT NULL,\n"
    "  meta_json JSON DEFAULT NULL,\n"
    "  event_id BINARY(16) DEFAULT NULL,\n"
    "  pattern_id BIGINT DEFAULT NULL,\n"
    "  INDEX idx_timestamp (timestamp),\n"
    "  INDEX idx_service (service),\n"
    "  INDEX idx_host (host),\n"
    "  INDEX idx_level (level),\n"
    "  INDEX idx_service_timestamp (service, timestamp),\n"
    "  INDEX idx_host_timestamp (host, timestamp),\n"
    "  INDEX idx_trace_id (trace_id),\n"
    "  INDEX idx_pattern_timestamp (pattern_id, timestamp),\n"
    "  UNIQUE KEY uk_event_id (event_id),\n"
    "  FULLTEXT KEY ft_message (message)\n"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
    "CREATE TABLE IF NOT EXISTS `log_patterns` (\n"
    "  id BIGINT NOT NULL PRIMARY KEY,\n"
    "  service VARCHAR(255) NOT NULL,\n"
    "  template TEXT NULL,\n"
    "  first_seen DATETIME(6) NOT NULL,\n"
    "  last_seen DATETIME(6) NOT NULL,\n"
    "  count BIGINT NOT NULL,\n"
    "  INDEX idx_service_last_seen (service, last_seen)\n"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

// The same for SQLite (git show be83c8e:plugins/common/sqlite_schema.hpp, table log_events).
const char *const kPreviousSqliteTable =
    "CREATE TABLE IF NOT EXISTS \"log_events\" (\n"
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "  timestamp INTEGER NOT NULL,\n"
    "  source TEXT NOT NULL,\n"
    "  service TEXT NOT NULL,\n"
    "  host TEXT NOT NULL,\n"
    "  level TEXT NOT NULL CHECK (level IN "
    "('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL')),\n"
    "  trace_id TEXT,\n"
    "  span_id TEXT,\n"
    "  event_type TEXT,\n"
    "  error_code TEXT,\n"
    "  message TEXT NOT NULL,\n"
    "  meta_json TEXT,\n"
    "  event_id BLOB NOT NULL,\n"
    "  pattern_id INTEGER\n"
    ");\n"
    "CREATE UNIQUE INDEX IF NOT EXISTS \"log_events_event_id\" ON \"log_events\" (event_id);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_timestamp\" ON \"log_events\" (timestamp);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_service\" ON \"log_events\" (service);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_host\" ON \"log_events\" (host);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_level\" ON \"log_events\" (level);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_service_timestamp\" ON \"log_events\" "
    "(service, timestamp);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_host_timestamp\" ON \"log_events\" "
    "(host, timestamp);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_trace_id\" ON \"log_events\" (trace_id);\n"
    "CREATE INDEX IF NOT EXISTS \"log_events_idx_pattern_timestamp\" ON \"log_events\" "
    "(pattern_id, timestamp);\n"
    "CREATE TABLE IF NOT EXISTS \"log_patterns\" (\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  service TEXT NOT NULL,\n"
    "  template TEXT,\n"
    "  first_seen INTEGER NOT NULL,\n"
    "  last_seen INTEGER NOT NULL,\n"
    "  count INTEGER NOT NULL\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS \"log_patterns_idx_service_last_seen\" ON \"log_patterns\" "
    "(service, last_seen);\n";

// The requests compared before and after: one hour holding all the rows, by level and not.
const char *const kWindow = "start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T01:00:00Z";
const char *const kFilters[] = {"&min_level=warning", "&level=error", "&min_level=error&host=h1",
                                ""};

std::unique_ptr<Process> engine(const TempDir &d, const std::string &yaml,
                                const std::string &name) {
  write_file(d / (name + ".yaml"), yaml);
  return std::make_unique<Process>(
      std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name,
      std::vector<std::string>{std::string(kPasswordEnv) + "=" + MariaDb::kPassword});
}

// The /query/patterns answers of kFilters from a query engine on `store` (its output keys).
std::map<std::string, std::string> pattern_answers(const TempDir &d, const std::string &store,
                                                   const std::string &name) {
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto q = engine(d,
                  plugins_head() +
                      "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                      "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                      std::to_string(port) + ", " + store + "}\n",
                  name);
  std::map<std::string, std::string> out;
  EXPECT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 30s)) << q->err();
  for (const char *f : kFilters) {
    HttpResponse r = http(base + "/query/patterns?" + kWindow + f);
    EXPECT_EQ(r.status, 200) << f << ": " << r.body;
    out[f] = r.body;
  }
  return out;
}

// Every filter answered some patterns (so that the comparison compares something).
void expect_patterns_in_each(const std::map<std::string, std::string> &answers) {
  for (const auto &[filter, body] : answers)
    EXPECT_NE(body.find("\"template\":\"template "), std::string::npos) << filter << ": " << body;
}

class MariaDbPatternIndexUpgrade : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;
    // kRows rows a second apart from 2025-11-28T00:00:00Z: 5 patterns, 7 levels, 2 hosts.
    ASSERT_EQ(
        db_.sql(std::string(kPreviousMariaDbTable) +
                    ";INSERT INTO log_events (timestamp, source, service, host, level, message, "
                    "event_id, pattern_id) SELECT TIMESTAMP'2025-11-28 00:00:00' + INTERVAL seq "
                    "SECOND, 'old', 'svc', CONCAT('h', seq % 2), ELT(seq % 7 + 1, 'DEBUG', 'INFO',"
                    " 'WARN', 'WARNING', 'ERROR', 'CRITICAL', 'FATAL'), CONCAT('row ', seq), "
                    "UNHEX(MD5(seq)), seq % 5 + 1 FROM seq_0_to_" +
                    std::to_string(kRows - 1) +
                    ";INSERT INTO log_patterns SELECT pattern_id, 'svc', CONCAT('template ', "
                    "pattern_id, ' <*>'), MIN(timestamp), MAX(timestamp), COUNT(*) FROM "
                    "log_events GROUP BY pattern_id",
                nullptr, &err),
        0)
        << err;
  }

  std::string store() const {
    return "store: mariadb, socket: " + db_.socket() + ", password: '${" + kPasswordEnv + "}'";
  }

  // A mariadb output's start on the table (3 records of now, outside kWindow).
  std::unique_ptr<Process> output_start(const std::string &extra, const std::string &name) {
    return engine(d_,
                  plugins_head("  exit_when_done: true\n") +
                      "  inputs:\n    - {name: dummy, rate: 0, count: 3, service: new}\n"
                      "  outputs:\n    - {name: mariadb, socket: " +
                      db_.socket() + ", password: '${" + kPasswordEnv + "}'" + extra + "}\n",
                  name);
  }

  std::string index_columns(const std::string &name) {
    return db_.value(
        "SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events' AND INDEX_NAME='" +
        name + "'");
  }

  TempDir d_;
  MariaDb db_{d_.path()};
};

}  // namespace

TEST_F(MariaDbPatternIndexUpgrade,
       ThePreviousReleasesTableGetsTheLevelIndexInPlaceAndAnswersTheSame) {
  const auto before = pattern_answers(d_, store(), "query-before");
  expect_patterns_in_each(before);

  auto e = output_start("", "upgrade");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("has the earlier pattern index: replacing its index"), std::string::npos)
      << e->err();
  EXPECT_NE(e->err().find("has the pattern_id column and index"), std::string::npos) << e->err();
  EXPECT_EQ(db_.number("SELECT COUNT(*) FROM log_events WHERE source='old'"), kRows);
  EXPECT_EQ(db_.number("SELECT COUNT(*) FROM log_events WHERE service='new'"), 3);
  EXPECT_EQ(index_columns("idx_pattern_timestamp_level"), "pattern_id,timestamp,id,level");
  EXPECT_EQ(index_columns("idx_pattern_timestamp"), "NULL");

  const auto after = pattern_answers(d_, store(), "query-after");
  for (const char *f : kFilters) EXPECT_EQ(after.at(f), before.at(f)) << f;

  // The upgraded table is the one a new table would be: the next start changes nothing.
  auto again = output_start("", "again");
  ASSERT_EQ(again->wait_exit(60s), 0) << again->err();
  EXPECT_EQ(again->err().find("made by"), std::string::npos) << again->err();
  EXPECT_EQ(again->err().find("earlier pattern index"), std::string::npos) << again->err();
}

TEST_F(MariaDbPatternIndexUpgrade, WithCreateTableFalseTheTableIsLeftAsItIsAndTheLogGivesTheAlter) {
  auto e = output_start(", create_table: false", "no-create");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("ALTER TABLE `log_events` ADD INDEX idx_pattern_timestamp_level "
                          "(pattern_id, timestamp, id, level), DROP INDEX idx_pattern_timestamp"),
            std::string::npos)
      << e->err();
  EXPECT_NE(e->err().find("create_table is false"), std::string::npos) << e->err();
  EXPECT_EQ(index_columns("idx_pattern_timestamp"), "pattern_id,timestamp");
  EXPECT_EQ(index_columns("idx_pattern_timestamp_level"), "NULL");
  EXPECT_EQ(db_.number("SELECT COUNT(*) FROM log_events"), kRows + 3);
  // The old index still answers, by reading the rows.
  expect_patterns_in_each(pattern_answers(d_, store(), "query"));
}

TEST(SqlitePatternIndexUpgrade, ThePreviousReleasesTableGetsTheLevelIndexAtStartAndAnswersTheSame) {
  TempDir d;
  const std::string path = d / "devmesh.db";
  {
    SqliteDb s(path);
    s.exec(kPreviousSqliteTable);
    s.exec(
        "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < " +
        std::to_string(kRows - 1) +
        ") INSERT INTO log_events (timestamp, source, service, host, level, message, event_id, "
        "pattern_id) SELECT 1764288000000000000 + n * 1000000000, 'old', 'svc', 'h' || (n % 2), "
        "CASE n % 7 WHEN 0 THEN 'DEBUG' WHEN 1 THEN 'INFO' WHEN 2 THEN 'WARN' WHEN 3 THEN "
        "'WARNING' WHEN 4 THEN 'ERROR' WHEN 5 THEN 'CRITICAL' ELSE 'FATAL' END, 'row ' || n, "
        "CAST('old' || n AS BLOB), n % 5 + 1 FROM seq;"
        "INSERT INTO log_patterns SELECT pattern_id, 'svc', 'template ' || pattern_id || ' <*>', "
        "min(timestamp), max(timestamp), count(*) FROM log_events GROUP BY pattern_id");
  }
  const std::string store = "path: " + path;
  const auto before = pattern_answers(d, store, "query-before");
  expect_patterns_in_each(before);

  auto e = engine(d,
                  plugins_head("  exit_when_done: true\n") +
                      "  inputs:\n    - {name: dummy, rate: 0, count: 3, service: new}\n"
                      "  outputs:\n    - {name: sqlite, path: " +
                      path + "}\n",
                  "upgrade");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  // Said before the index is built, so that a long start on a big table is not taken for a hang.
  EXPECT_NE(e->err().find("has the earlier pattern index: building"), std::string::npos)
      << e->err();
  {
    SqliteDb s(path);
    EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE source = 'old'"), kRows);
    EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE service = 'new'"), 3);
    EXPECT_EQ(
        s.value("SELECT group_concat(name, ',') FROM (SELECT name FROM "
                "pragma_index_info('log_events_idx_pattern_timestamp_level') ORDER BY seqno)"),
        "pattern_id,timestamp,id,level");
    EXPECT_EQ(s.number("SELECT count(*) FROM sqlite_master WHERE name = "
                       "'log_events_idx_pattern_timestamp'"),
              0);
  }
  const auto after = pattern_answers(d, store, "query-after");
  for (const char *f : kFilters) EXPECT_EQ(after.at(f), before.at(f)) << f;
}
