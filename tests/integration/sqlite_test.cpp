// The sqlite output through the real binary: the prototype's columns in a WAL file, re-delivery
// stored once, the full-text index kept in step, an incompatible table refused at start, busy
// database retried, retention removing old rows (and templates) in the background, values at the
// ingest limits (1 MiB message, 1 MiB meta) kept whole, and the patterns filter's column and table.
#include <gtest/gtest.h>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string dummy(long count, const std::string &extra = "") {
  return "    - {name: dummy, rate: 0, count: " + std::to_string(count) + ", batch: 500" + extra +
         "}\n";
}

std::string sqlite_out(const std::string &path, const std::string &extra = "") {
  return "  outputs:\n    - {name: sqlite, path: " + path + extra + "}\n";
}

TEST(SqliteOutput, StoresEveryRecordWithThePrototypesColumnsInAWalFile) {
  TempDir d;
  const std::string db = d / "data/sub/devmesh.db";  // directories are created
  auto e = start_engine(d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" +
                               dummy(1200,
                                     ", service: loki.service, host: dev-services, level: ERROR,"
                                     " meta: {pid: '493414'}") +
                               sqlite_out(db));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 1200);
  EXPECT_EQ(s.number("SELECT count(DISTINCT event_id) FROM log_events"), 1200);
  EXPECT_EQ(s.value("PRAGMA journal_mode"), "wal");
  auto row = s.rows(
      "SELECT source, service, host, level, trace_id, message, meta_json, typeof(timestamp), "
      "length(event_id) FROM log_events WHERE message = 'dummy record 7'");
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0], (std::vector<std::string>{
                        "dummy", "loki.service", "dev-services", "ERROR", "NULL", "dummy record 7",
                        "{\"seq\":\"7\",\"pid\":\"493414\"}", "integer", "16"}));
  // The prototype's indexes are there, by the prototype's names (prefixed by the table).
  auto idx = s.rows(
      "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='log_events'"
      " ORDER BY name");
  std::string names;
  for (auto &r : idx) names += r[0] + " ";
  for (const char *want :
       {"idx_timestamp", "idx_service ", "idx_host ", "idx_level", "idx_service_timestamp",
        "idx_host_timestamp", "idx_trace_id", "log_events_event_id"})
    EXPECT_NE(names.find(want), std::string::npos) << want << " missing in " << names;
  // Every row is in the full-text index, and the index is consistent.
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events_fts WHERE log_events_fts MATCH "
                     "'\"record 1199\"'"),
            1);
  EXPECT_NO_THROW(s.exec("INSERT INTO log_events_fts(log_events_fts) VALUES('integrity-check')"));
}

TEST(SqliteOutput, SameBatchDeliveredTwiceGivesItsRowsOnce) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  const std::string yaml =
      plugins_head("  exit_when_done: true\n") + "  inputs:\n" + dummy(1000) + sqlite_out(db);
  for (int run = 0; run < 2; ++run) {
    auto e = start_engine(d, yaml, "run" + std::to_string(run));
    ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  }
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 1000);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events_fts WHERE log_events_fts MATCH 'dummy'"),
            1000);
  EXPECT_NO_THROW(s.exec("INSERT INTO log_events_fts(log_events_fts) VALUES('integrity-check')"));
}

TEST(SqliteOutput, DuplicatesAreCountedInAMetric) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  {
    auto e = start_engine(
        d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" + dummy(300) + sqlite_out(db),
        "first");
    ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  }
  auto e = start_engine(d, plugins_head("  http_listen: " + listen + "\n") + "  inputs:\n" +
                               dummy(500) + sqlite_out(db));
  std::string metrics;
  ASSERT_TRUE(wait_until(
      [&] {
        metrics = http("http://" + listen + "/metrics").body;
        // Polled from before the engine listens: an empty scrape is no answer yet.
        return find_metric(metrics, "devmesh_sqlite_rows_inserted_total", "") == 200;
      },
      20s))
      << metrics << e->err();
  EXPECT_EQ(metric_value(metrics, "devmesh_sqlite_rows_duplicate_total", ""), 300);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0);
  EXPECT_EQ(SqliteDb(db).number("SELECT count(*) FROM log_events"), 500);
}

TEST(SqliteOutput, IncompatibleExistingTableIsRefusedAtStartWithAClearMessage) {
  TempDir d;
  const std::string db = d / "old.db";
  {
    // The prototype's table as a naive port would make it: timestamp as text, no event_id.
    SqliteDb s(db);
    s.exec(
        "CREATE TABLE log_events (id INTEGER PRIMARY KEY, timestamp TEXT NOT NULL,"
        " source TEXT NOT NULL, service TEXT NOT NULL, host TEXT NOT NULL, level TEXT NOT NULL,"
        " trace_id TEXT, span_id TEXT, event_type TEXT, error_code TEXT, message TEXT NOT NULL,"
        " meta_json TEXT)");
    s.exec(
        "INSERT INTO log_events (timestamp, source, service, host, level, message) VALUES"
        " ('2025-11-28T19:00:00Z', 'journald', 'loki.service', 'dev-services', 'INFO', 'x')");
  }
  const std::string yaml = plugins_head() + "  inputs:\n" + dummy(10) + sqlite_out(db);
  auto e = start_engine(d, yaml);
  EXPECT_NE(e->wait_exit(30s), 0);
  const std::string err = e->err();
  EXPECT_NE(err.find("table log_events in " + db + " is not compatible"), std::string::npos) << err;
  EXPECT_NE(err.find("column timestamp is TEXT, devmesh needs INTEGER"), std::string::npos) << err;
  EXPECT_NE(err.find("column event_id is missing"), std::string::npos) << err;
  // --dry-run finds it too, without touching the file.
  std::string out, derr;
  EXPECT_NE(run({DEVMESH_BIN, "--dry-run", "-c", d / "engine.yaml"}, d.path(), &out, &derr), 0);
  EXPECT_NE(derr.find("not compatible"), std::string::npos) << derr;
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 1) << "the old table was changed";
  EXPECT_EQ(s.value("SELECT count(*) FROM sqlite_master WHERE name = 'log_events_fts'"), "0");
}

// The stores keep every value up to the ingest limits whole (plugins/outputs/mariadb/README.md):
// SQLite's TEXT holds up to SQLITE_MAX_LENGTH (1e9 bytes by default), and nothing on the way
// cuts a value.
TEST(SqliteOutput, AMessageAndMetaAtTheIngestLimitsAreStoredWhole) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  const size_t mib = 1u << 20, meta_value = mib - 64;
  auto e = start_engine(d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" +
                               "    - {name: dummy, rate: 0, count: 3, batch: 3, message: '" +
                               std::string(mib - 2, 'b') + " {seq}', meta: {blob: '" +
                               std::string(meta_value, 'c') + "'}}\n" +
                               sqlite_out(db, ", batch_bytes: 16MiB"));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  SqliteDb s(db);
  // hex(zeroblob(n)) is 2n zeros: replacing each "00" makes n copies of one character.
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE length(message) = " +
                     std::to_string(mib) + " AND substr(message, 1, " + std::to_string(mib - 2) +
                     ") = replace(hex(zeroblob(" + std::to_string(mib - 2) + ")), '00', 'b')"),
            3);
  EXPECT_EQ(s.value("SELECT group_concat(substr(message, -2), ',') FROM log_events"), " 1, 2, 3");
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE length(json_extract(meta_json, "
                     "'$.blob')) = " +
                     std::to_string(meta_value) +
                     " AND json_extract(meta_json, '$.blob') = replace(hex(zeroblob(" +
                     std::to_string(meta_value) + ")), '00', 'c')"),
            3);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events_fts WHERE log_events_fts MATCH '\"2\"'"), 1);
}

TEST(SqliteOutput, ATableNameThatIsNotAnIdentifierIsAConfigError) {
  TempDir d;
  auto e = start_engine(d, plugins_head() + "  inputs:\n" + dummy(1) +
                               sqlite_out(d / "x.db", ", table: 'logs; DROP TABLE x'"));
  EXPECT_NE(e->wait_exit(30s), 0);
  EXPECT_NE(e->err().find("table: 'logs; DROP TABLE x' is not a plain identifier"),
            std::string::npos)
      << e->err();
}

TEST(SqliteOutput, UnwritableDirectoryStopsTheStartWithTheReason) {
  TempDir d;
  write_file(d / "file", "x");
  auto e =
      start_engine(d, plugins_head() + "  inputs:\n" + dummy(1) + sqlite_out(d / "file/sub/x.db"));
  EXPECT_NE(e->wait_exit(30s), 0);
  EXPECT_NE(e->err().find("path: cannot create"), std::string::npos) << e->err();
}

TEST(SqliteOutput, BusyDatabaseIsRetriedAndNothingIsLost) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  auto e = start_engine(d, plugins_head("  http_listen: " + listen + "\n") + "  inputs:\n" +
                               "    - {name: dummy, rate: 400, count: 3000, batch: 100}\n" +
                               sqlite_out(db,
                                          ", busy_timeout: 50ms, retry_wait: 50ms,"
                                          " retry_max_wait: 200ms"));
  std::string metrics;
  auto metric = [&](const char *name) {
    metrics = http("http://" + listen + "/metrics").body;
    return find_metric(metrics, name, "").value_or(-1);  // polled from before the engine listens
  };
  ASSERT_TRUE(wait_until([&] { return metric("devmesh_sqlite_rows_inserted_total") > 0; }, 20s))
      << e->err();
  SqliteDb lock(db);
  lock.exec("BEGIN IMMEDIATE");  // another writer takes the write lock and keeps it a while
  ASSERT_TRUE(wait_until([&] { return metric("devmesh_sqlite_batches_retried_total") >= 2; }, 20s))
      << metrics << e->err();
  lock.exec("COMMIT");
  ASSERT_TRUE(wait_until(
      [&] { return SqliteDb(db).number("SELECT count(*) FROM log_events") == 3000; }, 30s))
      << e->err();
  EXPECT_NE(e->err().find("database is locked"), std::string::npos) << e->err();
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0);
}

TEST(SqliteOutput, RetentionRemovesOldRowsAndTheirFullTextEntries) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  {
    auto e = start_engine(
        d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" + dummy(100) + sqlite_out(db),
        "create");
    ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  }
  {
    // 5,000 rows from 100 days ago, indexed like the output indexes its own.
    SqliteDb s(db);
    s.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)"
        " INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
        " SELECT (strftime('%s','now') - 100 * 86400) * 1000000000 + i, 'old', 'svc', 'h',"
        " 'INFO', 'ancient entry ' || i, randomblob(16) FROM n");
    s.exec(
        "INSERT INTO log_events_fts(rowid, message) SELECT id, message FROM log_events"
        " WHERE source = 'old'");
  }
  auto e = start_engine(d, plugins_head() + "  inputs:\n" +
                               "    - {name: dummy, rate: 50, start: 1000}\n" +
                               sqlite_out(db,
                                          ", retention: 90d, retention_interval: 200ms,"
                                          " retention_batch: 700"));
  ASSERT_TRUE(wait_until(
      [&] {
        return SqliteDb(db).number("SELECT count(*) FROM log_events WHERE source = 'old'") == 0;
      },
      30s))
      << e->err();
  EXPECT_NE(e->err().find("retention deleted 5000 rows"), std::string::npos) << e->err();
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
  SqliteDb s(db);
  EXPECT_GE(s.number("SELECT count(*) FROM log_events WHERE source = 'dummy'"), 100);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events_fts WHERE log_events_fts MATCH 'ancient'"),
            0);
  EXPECT_NO_THROW(s.exec("INSERT INTO log_events_fts(log_events_fts) VALUES('integrity-check')"));
}

TEST(SqliteOutput, FullTextOffDropsAStaleIndexAndStillStoresEverything) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  for (std::string ft : {"true", "false"}) {
    auto e = start_engine(d,
                          plugins_head("  exit_when_done: true\n") + "  inputs:\n" +
                              dummy(200, ft == "true" ? "" : ", start: 1000") +
                              sqlite_out(db, ", full_text: " + ft),
                          "run_" + ft);
    ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  }
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 400);
  EXPECT_EQ(s.number("SELECT count(*) FROM sqlite_master WHERE name = 'log_events_fts'"), 0);
}

}  // namespace

namespace {

// The patterns filter's id is the pattern_id column and its template a row of log_patterns,
// neither is left in meta_json; counts are the rows stored (a re-delivery adds none).
TEST(SqliteOutput, PatternIdsAreAColumnAndTemplatesRowsOfLogPatterns) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  auto e = start_engine(
      d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" +
             "    - {name: dummy, rate: 0, count: 300, service: sshd, meta: {pid: '7'},"
             " messages: ['Accepted password for root from 10.0.0.{seq} port {seq}',"
             " 'Connection closed by 10.1.{seq}.2 [preauth]', 'session opened for user app']}\n"
             "  filters:\n    - {name: patterns}\n" +
             sqlite_out(db));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE pattern_id IS NULL"), 0);
  EXPECT_EQ(s.number("SELECT count(DISTINCT pattern_id) FROM log_events"), 3);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE meta_json LIKE '%pattern%'"), 0);
  EXPECT_NE(s.value("SELECT meta_json FROM log_events LIMIT 1").find("\"pid\":\"7\""),
            std::string::npos);
  auto rows = s.rows(
      "SELECT p.service, p.template, p.count, p.first_seen <= p.last_seen,"
      " (SELECT count(*) FROM log_events l WHERE l.pattern_id = p.id)"
      " FROM log_patterns p ORDER BY p.template");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"sshd", "Accepted password for root from <*> port <*>", "100",
                                      "1", "100"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"sshd", "Connection closed by <*> [preauth]", "100",
                                               "1", "100"}));
  EXPECT_EQ(rows[2],
            (std::vector<std::string>{"sshd", "session opened for user app", "100", "1", "100"}));
  auto idx = s.value(
      "SELECT name FROM sqlite_master WHERE type='index' AND name LIKE '%pattern_timestamp%'");
  EXPECT_EQ(idx, "log_events_idx_pattern_timestamp_level");
}

// An upgrade: a table made by the previous release (no pattern_id) gets the column at start;
// its rows stay and read NULL there.
TEST(SqliteOutput, ATableFromThePreviousReleaseGetsThePatternIdColumnAtStart) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  {
    SqliteDb s(db);
    // The previous release's DDL, verbatim.
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
  auto e = start_engine(d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" +
                               dummy(50, ", message: 'new row {seq}'") +
                               "  filters:\n    - {name: patterns}\n" + sqlite_out(db));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  SqliteDb s(db);
  EXPECT_EQ(s.value("SELECT quote(pattern_id) FROM log_events WHERE source = 'old'"), "NULL");
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE source = 'dummy' AND pattern_id"
                     " IS NOT NULL"),
            50);
  EXPECT_EQ(s.value("SELECT template FROM log_patterns"), "new row <*>");
}

TEST(SqliteOutput, RetentionRemovesTemplatesWhoseRowsAreAllGone) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  {
    auto e = start_engine(
        d, plugins_head("  exit_when_done: true\n") + "  inputs:\n" + dummy(10) + sqlite_out(db),
        "create");
    ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
    SqliteDb s(db);
    s.exec(
        "INSERT INTO log_patterns (id, service, template, first_seen, last_seen, count) VALUES"
        " (1, 'svc', 'ancient <*>', 1, 2, 5),"
        " (2, 'svc', 'recent <*>', 1, (strftime('%s','now') - 86400) * 1000000000, 5)");
  }
  auto e = start_engine(d, plugins_head() + "  inputs:\n" + "    - {name: dummy, rate: 50}\n" +
                               sqlite_out(db, ", retention: 90d, retention_interval: 200ms"));
  ASSERT_TRUE(wait_until(
      [&] { return SqliteDb(db).number("SELECT count(*) FROM log_patterns WHERE id = 1") == 0; },
      30s))
      << e->err();
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
  EXPECT_EQ(SqliteDb(db).value("SELECT template FROM log_patterns"), "recent <*>");
}

}  // namespace
