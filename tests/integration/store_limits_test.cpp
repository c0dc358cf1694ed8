// The stores' column limits against the ingest limits, on a real mariadbd: a table made by the
// previous release (message TEXT, 64 KiB) is widened at start and keeps its rows; values up to
// the ingest limits (1 MiB message, 1 MiB meta) are stored whole, in statements that fit the
// server's max_allowed_packet; the shipped aggregator answers "delivered" for a 70 KB message
// only because the row holds all of it; create_table: false uses an old table as is and says
// what it can hold. (The sqlite side is in sqlite_test.)
#include <gtest/gtest.h>

#include <filesystem>

#include "http_support.h"
#include "mariadb_pipeline.h"

using namespace devmesh::test;

namespace {

constexpr size_t kMiB = 1u << 20;

// The previous release's CREATE statement, exactly (git show 6531849:plugins/outputs/mariadb/
// mariadb_connection.hpp, create_table_sql with full_text on).
const char *const kPreviousReleaseTable =
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
    "  message TEXT NOT NULL,\n"
    "  meta_json JSON DEFAULT NULL,\n"
    "  event_id BINARY(16) DEFAULT NULL,\n"
    "  INDEX idx_timestamp (timestamp),\n"
    "  INDEX idx_service (service),\n"
    "  INDEX idx_host (host),\n"
    "  INDEX idx_level (level),\n"
    "  INDEX idx_service_timestamp (service, timestamp),\n"
    "  INDEX idx_host_timestamp (host, timestamp),\n"
    "  INDEX idx_trace_id (trace_id),\n"
    "  UNIQUE KEY uk_event_id (event_id),\n"
    "  FULLTEXT KEY ft_message (message)\n"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

size_t count_of(const std::string &text, const std::string &what) {
  size_t n = 0;
  for (size_t at = 0; (at = text.find(what, at)) != std::string::npos; at += what.size()) ++n;
  return n;
}

class StoreLimits : public MariaDbPipelineTest {
 protected:
  std::string column_type(const std::string &column) {
    return db_->value(
        "SELECT COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='devmesh' AND "
        "TABLE_NAME='log_events' AND COLUMN_NAME='" +
        column + "'");
  }
  // 1 when the row of `service` holds exactly `length` bytes of `fill` as its message.
  long long message_whole(const std::string &service, size_t length, char fill) {
    return db_->number("SELECT LENGTH(message) = " + std::to_string(length) +
                       " AND message = REPEAT('" + std::string(1, fill) + "', " +
                       std::to_string(length) + ") FROM log_events WHERE service = '" + service +
                       "'");
  }
};

// (a) The upgrade: the previous release's table with rows in it.
TEST_F(StoreLimits,
       APreviousReleaseTableIsWidenedAtStartKeepsItsRowsAndThenStoresLargeValuesWhole) {
  ASSERT_EQ(db_->sql(kPreviousReleaseTable), 0);
  ASSERT_EQ(db_->sql("INSERT INTO log_events (timestamp, source, service, host, level, message, "
                     "meta_json, event_id) SELECT UTC_TIMESTAMP(6), 'old', 'old', 'h', 'INFO', "
                     "CONCAT('old row ', seq), JSON_OBJECT('seq', seq), UNHEX(MD5(seq)) FROM "
                     "seq_1_to_3"),
            0);
  ASSERT_EQ(column_type("message"), "text");
  // A 70 KB message (over TEXT's 65,535 bytes), and a 1 MiB message with 1 MiB of meta (the
  // ingest limits), in one batch.
  const size_t meta_value = kMiB - 64;  // with its key and seq=1: just under 1 MiB of meta
  const std::string inputs = "    - {name: dummy, rate: 0, count: 1, service: big70, message: '" +
                             std::string(70000, 'a') +
                             "'}\n"
                             "    - {name: dummy, rate: 0, count: 1, service: big1m, message: '" +
                             std::string(kMiB, 'b') + "', meta: {blob: '" +
                             std::string(meta_value, 'c') + "'}}\n";
  auto e = engine(yaml(inputs, "      batch_bytes: 16MiB\n"), "upgrade");
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err().substr(0, 4000);
  const std::string log = e->err();
  EXPECT_EQ(count_of(log, "widening it to MEDIUMTEXT"), 1u) << log.substr(0, 4000);
  EXPECT_NE(log.find("column message is text (at most 65,535 bytes)"), std::string::npos)
      << log.substr(0, 4000);
  EXPECT_NE(log.find("widened in"), std::string::npos) << log.substr(0, 4000);
  EXPECT_EQ(log.find("max_allowed_packet is"), std::string::npos)
      << "the server's default packet holds a record at the ingest limits";

  EXPECT_EQ(column_type("message"), "mediumtext");
  EXPECT_EQ(db_->value("SELECT IS_NULLABLE FROM information_schema.COLUMNS WHERE "
                       "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events' AND "
                       "COLUMN_NAME='message'"),
            "NO");
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE "
                        "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events' AND "
                        "INDEX_NAME='ft_message' AND INDEX_TYPE='FULLTEXT'"),
            1)
      << "the FULLTEXT index survives the ALTER";
  // The old rows are still there, unchanged.
  EXPECT_EQ(rows("source='old'"), 3);
  EXPECT_EQ(db_->value("SELECT GROUP_CONCAT(message ORDER BY id SEPARATOR '|') FROM log_events "
                       "WHERE source='old'"),
            "old row 1|old row 2|old row 3");
  // The new ones whole.
  EXPECT_EQ(message_whole("big70", 70000, 'a'), 1);
  EXPECT_EQ(message_whole("big1m", kMiB, 'b'), 1);
  EXPECT_EQ(db_->number("SELECT JSON_VALUE(meta_json, '$.blob') = REPEAT('c', " +
                        std::to_string(meta_value) + ") FROM log_events WHERE service='big1m'"),
            1);
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson")) << read_file(d_ / "dead.ndjson").size();

  // The migration runs once: the next start finds MEDIUMTEXT and says nothing about it.
  auto again =
      engine(yaml("    - {name: dummy, rate: 0, start: 100, count: 1, service: again}\n"), "again");
  ASSERT_EQ(again->wait_exit(60s), 0) << again->err();
  EXPECT_EQ(again->err().find("widen"), std::string::npos) << again->err();
  EXPECT_EQ(rows(), 6);
}

// A user without the ALTER privilege cannot widen the table: the engine starts anyway (the
// table takes what it took before), says so with the statement to run, and tries at each start.
TEST_F(StoreLimits, APreviousReleaseTableThatCannotBeWidenedIsUsedAsItIsWithAWarning) {
  ASSERT_EQ(db_->sql(kPreviousReleaseTable), 0);
  ASSERT_EQ(db_->sql("REVOKE ALTER ON devmesh.* FROM 'devmesh'@'localhost'"), 0);
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 2}\n"), "no-alter");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("cannot widen devmesh.log_events (error 1142"), std::string::npos)
      << e->err();
  EXPECT_NE(e->err().find("going on with the table as it is"), std::string::npos) << e->err();
  EXPECT_EQ(column_type("message"), "text");
  EXPECT_EQ(rows(), 2);
}

// A session holding the table (here a transaction that read it and sleeps; in an upgrade, an
// older devmesh) keeps the ALTER waiting for its lock, and every later statement on the table
// queues behind it: the widening gives up after its lock wait (60 s) and the engine goes on.
TEST_F(StoreLimits, AWideningBlockedByASessionHoldingTheTableGivesUpAndTheEngineGoesOn) {
  ASSERT_EQ(db_->sql(kPreviousReleaseTable), 0);
  Process holder(
      {"/usr/bin/mariadb", "--no-defaults", "--protocol=socket", "-S", db_->socket(), "-uroot",
       "-Ddevmesh", "-e", "BEGIN; SELECT COUNT(*) FROM log_events; SELECT SLEEP(300); COMMIT;"},
      d_.path(), "holder");
  ASSERT_TRUE(wait_until(
      [&] {
        return db_->number(
                   "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE "
                   "'SELECT SLEEP(300)%'") == 1;
      },
      30s));
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 2}\n"), "held");
  ASSERT_EQ(e->wait_exit(180s), 0) << e->err();
  EXPECT_NE(e->err().find("cannot widen devmesh.log_events (error 1205"), std::string::npos)
      << e->err();
  EXPECT_EQ(column_type("message"), "text");
  EXPECT_EQ(rows(), 2);
  holder.kill(SIGKILL);
}

// A batch of records at the ingest limits is larger than one statement may be: it goes as
// several statements (one transaction), each within the server's default max_allowed_packet.
TEST_F(StoreLimits, ABatchOfRecordsAtTheIngestLimitsIsSplitIntoStatementsThatFitTheDefaultPacket) {
  ASSERT_EQ(db_->number("SELECT @@max_allowed_packet"), 16 * 1024 * 1024) << "MariaDB's default";
  const int port = free_port();
  const long n = 12;  // ~24 MiB in one batch
  const std::string inputs = "    - {name: dummy, rate: 0, count: " + std::to_string(n) +
                             ", batch: 12, service: big, message: '" + std::string(kMiB, 'm') +
                             "', meta: {blob: '" + std::string(kMiB - 64, 'j') + "'}}\n";
  auto e = engine(yaml(inputs, "      batch_size: 100\n      batch_bytes: 64MiB\n",
                       "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"),
                  "split");
  ASSERT_TRUE(wait_until([&] { return rows() >= n; }, 120s)) << e->err().substr(0, 4000);
  std::string metrics;
  ASSERT_EQ(http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d_.path()),
            200);
  EXPECT_GE(metric_value(metrics, "devmesh_mariadb_packet_splits_total", ""), 1) << metrics;
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_rows_inserted_total", ""), n) << metrics;
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err().substr(0, 4000);
  EXPECT_EQ(
      db_->number(
          "SELECT COUNT(*) FROM log_events WHERE LENGTH(message) = " + std::to_string(kMiB) +
          " AND message = REPEAT('m', " + std::to_string(kMiB) +
          ") AND JSON_VALUE(meta_json, '$.blob') = REPEAT('j', " + std::to_string(kMiB - 64) + ")"),
      n);
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson"));
}

// A server whose max_allowed_packet cannot take a record at the ingest limits is named at start,
// not at the first large record.
TEST_F(StoreLimits, AServerPacketTooSmallForARecordAtTheIngestLimitsIsReportedAtStart) {
  db_->stop();
  start_server({"--max-allowed-packet=4M"});
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 1}\n"), "small-packet");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("the server's max_allowed_packet is 4,194,304 bytes: a record at the "
                          "ingest limits"),
            std::string::npos)
      << e->err();
  EXPECT_EQ(rows(), 1);
}

// (b) The shipped aggregator, conf/aggregator.yaml as it is (http ack: delivered -> dedup ->
// mariadb, query), pointed at this test's server by its environment variables.
TEST_F(StoreLimits, TheShippedAggregatorAnswersDeliveredForA70KbMessageAndTheRowHoldsAllOfIt) {
  std::string config = read_file(DEVMESH_SOURCE_DIR "/conf/aggregator.yaml");
  const int listen = free_port(), admin = free_port();
  // Only what a test cannot set from the environment: where the plugins are.
  ASSERT_NE(config.find("service:\n"), std::string::npos);
  config.replace(config.find("service:\n"), 9,
                 "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n");
  auto e =
      engine(config, "aggregator", MariaDb::kPassword,
             {"DEVMESH_LISTEN=127.0.0.1:" + std::to_string(listen),
              "DEVMESH_HTTP_LISTEN=127.0.0.1:" + std::to_string(admin), "DB_HOST=127.0.0.1",
              "DB_PORT=" + std::to_string(db_->port()),
              std::string("DB_PASSWORD=") + MariaDb::kPassword, "DEVMESH_STATE_DIR=" + d_.path()});
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(admin) + "/health", nullptr,
                        d_.path()) == 200;
      },
      60s))
      << e->err();
  const std::string url = "http://127.0.0.1:" + std::to_string(listen) + "/ingest/logs";
  const std::string message(70000, 'q');
  HttpResult r = libcurl_post(
      url, "{\"logs\":[{\"service\":\"big70\",\"host\":\"h1\",\"message\":\"" + message + "\"}]}",
      {"Content-Type: application/json"});
  // 200 with nothing rejected or dead-lettered ("delivered" counts the mariadb and query outputs).
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":1"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("rejected\":1"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("dead_lettered\":1"), std::string::npos) << r.body;
  // Delivered means committed: the row is there now, whole.
  EXPECT_EQ(message_whole("big70", message.size(), 'q'), 1);
  // As large as the ingest limits allow (under 1 MiB, whatever side of it the limit falls).
  const std::string near_limit(1000000, 'w');
  r = libcurl_post(
      url,
      "{\"logs\":[{\"service\":\"big1m\",\"host\":\"h1\",\"message\":\"" + near_limit + "\"}]}",
      {"Content-Type: application/json"});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body.find("dead_lettered\":1"), std::string::npos) << r.body;
  EXPECT_EQ(message_whole("big1m", near_limit.size(), 'w'), 1);
  // The query API of the same aggregator gives it back whole.
  std::string found;
  EXPECT_EQ(http_get("http://127.0.0.1:" + std::to_string(listen) + "/query/logs?service=big1m",
                     &found, d_.path()),
            200);
  EXPECT_NE(found.find("\"" + near_limit + "\""), std::string::npos) << found.substr(0, 300);
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead-letter.ndjson"))
      << read_file(d_ / "dead-letter.ndjson").substr(0, 300);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

// Siblings of the column limits: VARCHAR limits count characters, so 255 four-byte characters
// (1,020 bytes) fit service; NUL, control characters and quotes in message and meta make valid
// JSON that MariaDB's json_valid check takes. All stored as sent, nothing dead-lettered.
TEST_F(StoreLimits, FourByteCharactersAtAVarcharLimitAndControlBytesInTextAndMetaAreStoredAsSent) {
  std::string emoji;
  for (int i = 0; i < 255; ++i) emoji += "\\U0001F600";  // YAML escape: U+1F600, 4 bytes in UTF-8
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 1, service: \"" + emoji +
                       "\", message: \"nul\\0ctl\\x01\\x1f quote\\\" end\", meta: {\"k\\0\": "
                       "\"v\\0\\x02\\\"\"}}\n"),
                  "chars");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_EQ(db_->number("SELECT CHAR_LENGTH(service) * 10000 + LENGTH(service) FROM log_events"),
            255 * 10000 + 1020);
  EXPECT_EQ(db_->value("SELECT HEX(message) FROM log_events"),
            "6E756C0063746C011F2071756F74652220656E64");  // nul\0ctl\x01\x1f quote" end
  // JSON_VALID passed at the insert (the column's CHECK); the text is rapidjson's escaping.
  const std::string meta = R"({"seq":"1","k\u0000":"v\u0000\u0002\""})";
  std::string meta_hex;
  for (unsigned char c : meta) {
    char b[3];
    std::snprintf(b, sizeof b, "%02X", c);
    meta_hex += b;
  }
  EXPECT_EQ(db_->value("SELECT HEX(meta_json) FROM log_events"), meta_hex);
  EXPECT_EQ(db_->value("SELECT HEX(JSON_VALUE(meta_json, '$.seq')) FROM log_events"), "31");
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson")) << read_file(d_ / "dead.ndjson");
}

// A table made by hand whose columns are narrower than what the inputs accept is used, and the
// log says which values it will refuse.
TEST_F(StoreLimits, ATableNarrowerThanTheIngestLimitsIsNamedColumnByColumnAtStart) {
  ASSERT_EQ(
      db_->sql("CREATE TABLE log_events (id BIGINT AUTO_INCREMENT PRIMARY KEY, timestamp "
               "TIMESTAMP(6) NOT NULL, source VARCHAR(255) NOT NULL, service VARCHAR(100) NOT "
               "NULL, host VARCHAR(255) NOT NULL, level VARCHAR(10) NOT NULL, trace_id "
               "VARCHAR(64), span_id VARCHAR(32), event_type VARCHAR(100), error_code "
               "VARCHAR(20), message MEDIUMTEXT NOT NULL, meta_json JSON, event_id BINARY(16), "
               "UNIQUE KEY uk_event_id (event_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
      0);
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 2}\n", "      create_table: false\n"),
                  "narrow");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  const std::string log = e->err();
  EXPECT_NE(log.find("column service is varchar(100): values longer than 100 characters, which "
                     "the inputs accept up to 255, are refused by the table and dead-lettered"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("column error_code is varchar(20)"), std::string::npos) << log;
  EXPECT_NE(log.find("column timestamp is timestamp(6): it holds 1970 to 2038 only"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("column host is"), std::string::npos) << log;
  EXPECT_EQ(rows(), 2);
}

// create_table: false leaves an existing table as it is: the previous release's TEXT column is
// not altered, the log says what it can hold, and a longer message is dead-lettered with the
// server's reason (counted), not lost.
TEST_F(StoreLimits, WithCreateTableFalseAPreviousReleaseTableIsUsedAsIsAndItsLimitIsSaidAtStart) {
  ASSERT_EQ(db_->sql(kPreviousReleaseTable), 0);
  const int port = free_port();
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 1, service: small}\n"
                       "    - {name: dummy, rate: 0, count: 1, service: big70, message: '" +
                           std::string(70000, 'a') + "'}\n",
                       "      create_table: false\n      batch_size: 1\n",
                       "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"),
                  "as-is");
  ASSERT_TRUE(
      wait_until([&] { return rows() >= 1 && std::filesystem::exists(d_ / "dead.ndjson"); }, 60s))
      << e->err();
  std::string metrics;
  ASSERT_EQ(http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d_.path()),
            200);
  EXPECT_GE(metric_value(metrics, "devmesh_mariadb_data_errors_total", ""), 1) << metrics;
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  const std::string log = e->err();
  EXPECT_NE(log.find("column message is text (at most 65,535 bytes), less than the ingest limits"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("create_table is false, so devmesh does not alter it; to keep them whole "
                     "run: ALTER TABLE `log_events` MODIFY `message` MEDIUMTEXT CHARACTER SET "
                     "utf8mb4 COLLATE utf8mb4_general_ci NOT NULL"),
            std::string::npos)
      << log;
  EXPECT_EQ(column_type("message"), "text");
  EXPECT_EQ(rows("service='small'"), 1);
  EXPECT_EQ(rows("service='big70'"), 0);
  const auto dead = read_lines(d_ / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_NE(dead[0].find("Data too long for column 'message'"), std::string::npos)
      << dead[0].substr(0, 300);
  EXPECT_NE(dead[0].find(std::string(70000, 'a')), std::string::npos) << "the record is kept whole";
}

}  // namespace
