// The mariadb output against a real mariadbd started by the test (temp datadir, unix socket):
// schema creation and refusal, idempotent re-delivery, lost connections, a server outage,
// bad credentials, poison rows, invalid UTF-8, max_allowed_packet, retention and its interval,
// TLS (CA, client certificate, ssl_verify, a wrong CA, a server without TLS), create_table: false;
// the patterns filter's column and table, their counts on re-delivery, their retention, and the
// upgrade of a table made by the previous release.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <sstream>

#include "mariadb_pipeline.h"
#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> read_lines_of(const std::string &text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  return lines;
}

class MariaDbOutput : public MariaDbPipelineTest {
 protected:
  // Every dummy record 1..n stored exactly once (seq is in meta_json and the message).
  void expect_each_seq_once(long long n) {
    EXPECT_EQ(rows(), n) << "rows";
    EXPECT_EQ(db_->number("SELECT COUNT(DISTINCT event_id) FROM log_events"), n) << "event ids";
    EXPECT_EQ(db_->number("SELECT COUNT(DISTINCT JSON_VALUE(meta_json,'$.seq')) FROM log_events"),
              n)
        << "distinct seq";
    EXPECT_EQ(
        db_->number("SELECT MIN(CAST(JSON_VALUE(meta_json,'$.seq') AS UNSIGNED)) FROM log_events"),
        1);
    EXPECT_EQ(
        db_->number("SELECT MAX(CAST(JSON_VALUE(meta_json,'$.seq') AS UNSIGNED)) FROM log_events"),
        n);
  }
};

TEST_F(MariaDbOutput, CreatesTheTableWithThePrototypeSchemaIndexesAndEventIdKey) {
  auto e =
      engine(yaml("    - {name: dummy, rate: 0, count: 10, level: WARN, meta: {pid: '42'}}\n"));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  std::string out;
  ASSERT_EQ(
      db_->sql("SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE FROM information_schema.COLUMNS "
               "WHERE TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events' ORDER BY ORDINAL_POSITION",
               &out),
      0);
  EXPECT_EQ(out,
            "id\tbigint(20)\tNO\n"
            "timestamp\tdatetime(6)\tNO\n"
            "source\tvarchar(255)\tNO\n"
            "service\tvarchar(255)\tNO\n"
            "host\tvarchar(255)\tNO\n"
            "level\tenum('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL')\tNO\n"
            "trace_id\tvarchar(64)\tYES\n"
            "span_id\tvarchar(32)\tYES\n"
            "event_type\tvarchar(100)\tYES\n"
            "error_code\tvarchar(50)\tYES\n"
            "message\tmediumtext\tNO\n"
            "meta_json\tlongtext\tYES\n"
            "event_id\tbinary(16)\tYES\n"
            "pattern_id\tbigint(20)\tYES\n");
  ASSERT_EQ(
      db_->sql("SELECT INDEX_NAME, NON_UNIQUE, INDEX_TYPE, GROUP_CONCAT(COLUMN_NAME ORDER BY "
               "SEQ_IN_INDEX) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='devmesh' "
               "AND TABLE_NAME='log_events' GROUP BY 1,2,3 ORDER BY 1",
               &out),
      0);
  EXPECT_EQ(out,
            "ft_message\t1\tFULLTEXT\tmessage\n"
            "idx_host\t1\tBTREE\thost\n"
            "idx_host_timestamp\t1\tBTREE\thost,timestamp\n"
            "idx_level\t1\tBTREE\tlevel\n"
            "idx_pattern_timestamp_level\t1\tBTREE\tpattern_id,timestamp,id,level\n"
            "idx_service\t1\tBTREE\tservice\n"
            "idx_service_timestamp\t1\tBTREE\tservice,timestamp\n"
            "idx_timestamp\t1\tBTREE\ttimestamp\n"
            "idx_trace_id\t1\tBTREE\ttrace_id\n"
            "PRIMARY\t0\tBTREE\tid\n"
            "uk_event_id\t0\tBTREE\tevent_id\n");
  EXPECT_EQ(
      db_->value("SELECT CONCAT_WS('|', source, service, level, message, trace_id IS NULL, "
                 "JSON_VALUE(meta_json,'$.pid'), JSON_VALUE(meta_json,'$.seq'), LENGTH(event_id)) "
                 "FROM log_events ORDER BY id LIMIT 1"),
      "dummy|dummy|WARN|dummy record 1|1|42|1|16");
  // Stored in UTC with microseconds: within a minute of now.
  EXPECT_LT(
      db_->number(
          "SELECT ABS(TIMESTAMPDIFF(SECOND, MIN(timestamp), UTC_TIMESTAMP())) FROM log_events"),
      60);
  EXPECT_EQ(db_->value("SELECT TABLE_COLLATION FROM information_schema.TABLES WHERE "
                       "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events'")
                .rfind("utf8mb4", 0),
            0u);
}

TEST_F(MariaDbOutput, ConfiguredTableWithoutFullTextGetsNoFullTextIndex) {
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n",
                       "      table: app_logs\n      full_text: false\n"));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM app_logs"), 3);
  EXPECT_EQ(
      db_->number("SELECT COUNT(*) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='devmesh' "
                  "AND TABLE_NAME='app_logs' AND INDEX_TYPE='FULLTEXT'"),
      0);
}

TEST_F(MariaDbOutput, RefusesAnIncompatibleTableAtStartSayingWhatIsWrong) {
  ASSERT_EQ(db_->sql("CREATE TABLE log_events (id INT PRIMARY KEY, timestamp VARCHAR(20), "
                     "message TEXT, owner VARCHAR(10) NOT NULL)"),
            0);
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n"));
  ASSERT_EQ(e->wait_exit(60s), 1) << e->err();
  const std::string err = e->err();
  EXPECT_NE(err.find("table devmesh.log_events is not compatible"), std::string::npos) << err;
  EXPECT_NE(err.find("column timestamp is varchar(20), expected datetime"), std::string::npos)
      << err;
  EXPECT_NE(err.find("no column service"), std::string::npos) << err;
  EXPECT_NE(err.find("column owner is NOT NULL without a default"), std::string::npos) << err;
  EXPECT_EQ(rows(), 0);
}

TEST_F(MariaDbOutput, RefusesAPrototypeTableWithoutEventIdAndNamesTheMigration) {
  std::string ddl =
      "CREATE TABLE log_events (id BIGINT AUTO_INCREMENT PRIMARY KEY, timestamp DATETIME(6) NOT "
      "NULL, "
      "source VARCHAR(255) NOT NULL, service VARCHAR(255) NOT NULL, host VARCHAR(255) NOT NULL, "
      "level ENUM('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL') NOT NULL, "
      "trace_id VARCHAR(64) DEFAULT NULL, span_id VARCHAR(32) DEFAULT NULL, "
      "event_type VARCHAR(100) DEFAULT NULL, error_code VARCHAR(50) DEFAULT NULL, "
      "message TEXT NOT NULL, meta_json JSON DEFAULT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
  ASSERT_EQ(db_->sql(ddl), 0);
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n"));
  ASSERT_EQ(e->wait_exit(60s), 1) << e->err();
  const std::string migration =
      "ALTER TABLE `log_events` ADD COLUMN event_id BINARY(16) DEFAULT NULL, ADD UNIQUE KEY "
      "uk_event_id (event_id)";
  EXPECT_NE(e->err().find(migration), std::string::npos) << e->err();
  // The migration it names makes the table acceptable.
  ASSERT_EQ(db_->sql(migration), 0);
  auto again = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n"), "again");
  ASSERT_EQ(again->wait_exit(60s), 0) << again->err();
  EXPECT_EQ(rows(), 3);
}

TEST_F(MariaDbOutput, SameBatchDeliveredTwiceGivesItsRowsOnce) {
  const std::string inputs = "    - {name: dummy, rate: 0, start: 1, count: 700, batch: 350}\n";
  auto first = engine(yaml(inputs), "first");
  ASSERT_EQ(first->wait_exit(60s), 0) << first->err();
  auto second = engine(yaml(inputs), "second");
  ASSERT_EQ(second->wait_exit(60s), 0) << second->err();
  expect_each_seq_once(700);
  // An overlapping range adds only its new records.
  auto third = engine(yaml("    - {name: dummy, rate: 0, start: 501, count: 400}\n"), "third");
  ASSERT_EQ(third->wait_exit(60s), 0) << third->err();
  expect_each_seq_once(900);
}

TEST_F(MariaDbOutput, KilledConnectionsReconnectAndLoseNothing) {
  const long n = 20000;
  auto e = engine(yaml("    - {name: dummy, rate: 4000, count: " + std::to_string(n) + "}\n",
                       "      workers: 2\n      batch_size: 200\n      retry_wait: 100ms\n"));
  int kills = 0;
  for (long long at : {2000LL, 6000LL, 10000LL, 14000LL}) {
    ASSERT_TRUE(wait_until([&] { return rows() >= at; }, 60s)) << e->err();
    std::string ids;
    db_->sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER='devmesh'", &ids);
    for (auto &id : read_lines_of(ids)) {
      db_->sql("KILL CONNECTION " + id);
      kills++;
    }
  }
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  EXPECT_GE(kills, 4);
  expect_each_seq_once(n);
  EXPECT_NE(e->err().find("reconnected"), std::string::npos) << e->err();
}

TEST_F(MariaDbOutput, ServerDownForTwentySecondsThenBackLosesNothing) {
  const long n = 30000;
  const int port = free_port();
  auto e = engine(
      yaml("    - {name: dummy, rate: 1000, count: " + std::to_string(n) + "}\n",
           "      retry_wait: 200ms\n      retry_max_wait: 2s\n",
           "  exit_when_done: true\n  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  ASSERT_TRUE(wait_until([&] { return rows() >= 3000; }, 60s)) << e->err();
  db_->stop();
  ASSERT_FALSE(db_->running());
  const auto down_since = std::chrono::steady_clock::now();
  std::string body;
  // While the store is gone, /health says so.
  EXPECT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/health", &body, d_.path()) ==
               503;
      },
      15s))
      << body;
  std::this_thread::sleep_until(down_since + 20s);
  std::string err;
  ASSERT_TRUE(db_->start(&err)) << err;
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  expect_each_seq_once(n);
}

TEST_F(MariaDbOutput, WrongPasswordIsAClearErrorAtStart) {
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n"), "engine", "not-the-password");
  ASSERT_EQ(e->wait_exit(30s), 1) << e->err();
  EXPECT_NE(e->err().find("Access denied for user 'devmesh'"), std::string::npos) << e->err();
  EXPECT_NE(e->err().find("failed to start"), std::string::npos) << e->err();
  EXPECT_EQ(e->err().find("not-the-password"), std::string::npos) << "the password was printed";
}

TEST_F(MariaDbOutput, UnknownDatabaseIsAClearErrorAtStart) {
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n", "      database: nosuchdb\n"));
  ASSERT_EQ(e->wait_exit(30s), 1) << e->err();
  EXPECT_NE(e->err().find("nosuchdb"), std::string::npos) << e->err();
}

TEST_F(MariaDbOutput, RequiredTlsAgainstAServerWithoutTlsIsAClearErrorAtStart) {
  // Over TCP: TLS does not apply to a unix socket.
  std::string config = yaml("    - {name: dummy, rate: 0, count: 3}\n", "      tls: true\n");
  config.replace(config.find("socket: " + db_->socket()), ("socket: " + db_->socket()).size(),
                 "host: 127.0.0.1\n      port: " + std::to_string(db_->port()));
  auto e = engine(config);
  ASSERT_EQ(e->wait_exit(30s), 1) << e->err();
  EXPECT_NE(e->err().find("SSL"), std::string::npos) << e->err();
}

// Makes, with the openssl command in dir: a CA; a server certificate for 127.0.0.1 signed by
// it; a client certificate signed by it; and another CA that signed neither.
void make_certificates(const std::string &dir) {
  std::filesystem::create_directories(dir);
  write_file(dir + "/server.ext", "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n");
  write_file(dir + "/client.ext", "basicConstraints=CA:FALSE\n");
  const std::string openssl = "/usr/bin/openssl";
  auto ok = [&](std::vector<std::string> argv) {
    std::string out, err;
    ASSERT_EQ(run(argv, dir, &out, &err), 0) << err;
  };
  for (const char *ca : {"ca", "other-ca"})
    ok({openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
        dir + "/" + ca + "-key.pem", "-out", dir + "/" + ca + ".pem", "-subj",
        std::string("/CN=devmesh test ") + ca});
  for (const char *who : {"server", "client"}) {
    const std::string base = dir + "/" + who;
    ok({openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", base + "-key.pem", "-out",
        base + ".csr", "-subj",
        std::string("/CN=") + (who == std::string("server") ? "127.0.0.1" : "devmesh")});
    ok({openssl, "x509", "-req", "-in", base + ".csr", "-CA", dir + "/ca.pem", "-CAkey",
        dir + "/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", base + ".ext", "-out",
        base + ".pem"});
  }
}

// The config over TCP (TLS does not apply to a unix socket) with extra output keys.
std::string over_tcp(std::string config, const std::string &socket, int port) {
  const std::string line = "socket: " + socket;
  config.replace(config.find(line), line.size(),
                 "host: 127.0.0.1\n      port: " + std::to_string(port));
  return config;
}

// ssl_ca, ssl_cert and ssl_key against a server that refuses every plain TCP connection
// (require_secure_transport) and requires a client certificate of the user (REQUIRE X509):
// rows arriving prove the session was encrypted and the client certificate was sent.
TEST_F(MariaDbOutput,
       TlsWithTheServersCaAndAClientCertificateStoresRowsOnAServerRefusingPlainText) {
  const std::string tls = d_ / "tls";
  make_certificates(tls);
  if (HasFatalFailure()) return;
  db_->stop();
  start_server({"--ssl-ca=" + tls + "/ca.pem", "--ssl-cert=" + tls + "/server.pem",
                "--ssl-key=" + tls + "/server-key.pem", "--require-secure-transport=ON"});
  const std::string inputs = "    - {name: dummy, rate: 0, count: 25}\n";
  // The control: the same user and password without TLS is refused (MariaDB 10.11 answers an
  // insecure connection under require_secure_transport with "Access denied").
  auto plain = engine(over_tcp(yaml(inputs), db_->socket(), db_->port()), "plain");
  ASSERT_EQ(plain->wait_exit(60s), 1) << plain->err();
  EXPECT_NE(plain->err().find("Access denied for user 'devmesh'"), std::string::npos)
      << plain->err();
  ASSERT_EQ(db_->sql("ALTER USER 'devmesh'@'%' REQUIRE X509"), 0);
  const std::string all = "      ssl_ca: " + tls + "/ca.pem\n      ssl_cert: " + tls +
                          "/client.pem\n      ssl_key: " + tls + "/client-key.pem\n";
  auto e = engine(over_tcp(yaml(inputs, all), db_->socket(), db_->port()), "tls");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  expect_each_seq_once(25);
  EXPECT_NE(e->err().find("connected to 127.0.0.1:" + std::to_string(db_->port())),
            std::string::npos)
      << e->err();

  // The control: with TLS but without a client certificate the user is refused.
  auto no_cert = engine(
      over_tcp(yaml(inputs, "      ssl_ca: " + tls + "/ca.pem\n"), db_->socket(), db_->port()),
      "no-cert");
  ASSERT_EQ(no_cert->wait_exit(60s), 1) << no_cert->err();
  EXPECT_NE(no_cert->err().find("Access denied for user 'devmesh'"), std::string::npos)
      << no_cert->err();
  expect_each_seq_once(25);
}

// A server certificate that ssl_ca did not sign is refused at start, with the TLS error; the
// password is not sent to such a server, and nothing is written.
TEST_F(MariaDbOutput, AServerCertificateNotSignedBySslCaIsRefusedAtStartWithAClearError) {
  const std::string tls = d_ / "tls";
  make_certificates(tls);
  if (HasFatalFailure()) return;
  db_->stop();
  start_server({"--ssl-ca=" + tls + "/ca.pem", "--ssl-cert=" + tls + "/server.pem",
                "--ssl-key=" + tls + "/server-key.pem"});
  auto e = engine(over_tcp(
      yaml("    - {name: dummy, rate: 0, count: 3}\n", "      ssl_ca: " + tls + "/other-ca.pem\n"),
      db_->socket(), db_->port()));
  ASSERT_EQ(e->wait_exit(60s), 1) << e->err();
  EXPECT_NE(e->err().find("cannot connect to 127.0.0.1:" + std::to_string(db_->port())),
            std::string::npos)
      << e->err();
  EXPECT_NE(e->err().find("TLS/SSL error: self-signed certificate in certificate chain"),
            std::string::npos)
      << e->err();
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='devmesh'"),
            0);
}

// tls: true without ssl_ca verifies against the system's CAs, which do not know the test CA;
// ssl_verify: false connects anyway (encrypted, the certificate unchecked).
TEST_F(MariaDbOutput, SslVerifyFalseTakesAnUnknownServerCertificateThatTheDefaultRefuses) {
  const std::string tls = d_ / "tls";
  make_certificates(tls);
  if (HasFatalFailure()) return;
  db_->stop();
  start_server({"--ssl-ca=" + tls + "/ca.pem", "--ssl-cert=" + tls + "/server.pem",
                "--ssl-key=" + tls + "/server-key.pem", "--require-secure-transport=ON"});
  const std::string inputs = "    - {name: dummy, rate: 0, count: 5}\n";
  auto verified =
      engine(over_tcp(yaml(inputs, "      tls: true\n"), db_->socket(), db_->port()), "verified");
  ASSERT_EQ(verified->wait_exit(60s), 1) << verified->err();
  EXPECT_NE(verified->err().find("TLS/SSL error"), std::string::npos) << verified->err();
  auto unverified = engine(over_tcp(yaml(inputs, "      tls: true\n      ssl_verify: false\n"),
                                    db_->socket(), db_->port()),
                           "unverified");
  ASSERT_EQ(unverified->wait_exit(60s), 0) << unverified->err();
  expect_each_seq_once(5);
}

TEST_F(MariaDbOutput, OverTcpWithHostAndPortItWorksToo) {
  std::string config = yaml("    - {name: dummy, rate: 0, count: 25}\n");
  config.replace(config.find("socket: " + db_->socket()), ("socket: " + db_->socket()).size(),
                 "host: 127.0.0.1\n      port: " + std::to_string(db_->port()));
  auto e = engine(config);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  expect_each_seq_once(25);
}

TEST_F(MariaDbOutput, PoisonRowIsDeadLetteredWithTheServerMessageWhileTheRestCommit) {
  // One record whose service is longer than VARCHAR(255), in the same batch as 40 good ones.
  const std::string long_service(300, 's');
  auto e = engine(yaml(
      "    - {name: dummy, tag: good, rate: 0, count: 20, message: 'good {seq}'}\n"
      "    - {name: dummy, tag: bad, rate: 0, start: 1000, count: 1, service: " +
          long_service +
          "}\n"
          "    - {name: dummy, tag: good2, rate: 0, start: 21, count: 20, message: 'good {seq}'}\n",
      "      batch_size: 100\n      flush_interval: 1s\n"));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_EQ(rows(), 40);
  EXPECT_EQ(rows("service='" + long_service + "'"), 0);
  auto dead = read_lines(d_ / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u) << e->err();
  EXPECT_NE(dead[0].find(long_service), std::string::npos) << dead[0];
  EXPECT_NE(dead[0].find("Data too long for column 'service'"), std::string::npos) << dead[0];
}

TEST_F(MariaDbOutput, InvalidUtf8IsStoredWithReplacementCharactersNotRefused) {
  auto e = engine(
      yaml("    - {name: dummy, rate: 0, count: 5, message: \"bad \xff\xfe byte {seq} \xc3\", "
           "meta: {\"k\xff\": \"v\xc0\"}}\n"));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_EQ(rows(), 5);
  EXPECT_EQ(db_->value("SELECT HEX(message) FROM log_events ORDER BY id LIMIT 1"),
            "62616420EFBFBDEFBFBD2062797465203120EFBFBD");  // "bad \uFFFD\uFFFD byte 1 \uFFFD"
  EXPECT_EQ(
      db_->value("SELECT JSON_VALUE(meta_json, '$.\"k\xef\xbf\xbd\"') FROM log_events LIMIT 1"),
      "v\xef\xbf\xbd");
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson"));
}

TEST_F(MariaDbOutput, BatchLargerThanMaxAllowedPacketGoesInSeveralStatementsOfOneTransaction) {
  db_->stop();
  start_server({"--max-allowed-packet=1M"});
  const int port = free_port();
  // 2000 records of ~8 KB in batches of 1000: ~8 MB per batch against a 1 MB packet limit.
  const std::string message(8000, 'x');
  auto e = engine(yaml(
      "    - {name: dummy, rate: 0, count: 2000, batch: 1000, message: '" + message + " {seq}'}\n",
      "      batch_size: 1000\n      batch_bytes: 64MiB\n",
      "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  ASSERT_TRUE(wait_until([&] { return rows() >= 2000; }, 60s)) << e->err();
  std::string metrics;
  ASSERT_EQ(http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d_.path()),
            200);
  // ~16 MB in all went as statements of at most 1 MB each.
  EXPECT_GE(metric_value(metrics, "devmesh_mariadb_packet_splits_total", ""), 8) << metrics;
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_rows_inserted_total", ""), 2000) << metrics;
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  expect_each_seq_once(2000);
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson"));
}

TEST_F(MariaDbOutput, RetentionDeletesOldRowsInBoundedTransactionsAndStopsPromptly) {
  // The table with 12,000 rows from 100 days ago and 50 from 10 days ago.
  auto create = engine(yaml("    - {name: dummy, rate: 0, count: 1}\n"), "create");
  ASSERT_EQ(create->wait_exit(60s), 0) << create->err();
  ASSERT_EQ(
      db_->sql(
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id) "
          "SELECT UTC_TIMESTAMP(6) - INTERVAL 100 DAY, 'old', 'old', 'h', 'INFO', CONCAT('old ', "
          "seq), "
          "UNHEX(MD5(CONCAT('old', seq))) FROM seq_1_to_12000;"
          "INSERT INTO log_events (timestamp, source, service, host, level, message, event_id) "
          "SELECT UTC_TIMESTAMP(6) - INTERVAL 10 DAY, 'recent', 'recent', 'h', 'INFO', "
          "CONCAT('recent ', seq), "
          "UNHEX(MD5(CONCAT('recent', seq))) FROM seq_1_to_50"),
      0);
  const int port = free_port();
  auto e = engine(
      yaml("    - {name: dummy, rate: 100, start: 2, count: 1000000}\n",
           "      retention: 90d\n      retention_batch: 1000\n      retention_pause: 10ms\n",
           "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  ASSERT_TRUE(wait_until([&] { return rows("source='old'") == 0; }, 60s)) << e->err();
  EXPECT_EQ(rows("source='recent'"), 50);
  // New records are stored alongside (waited for: the last old rows may go before the first
  // new one is flushed).
  EXPECT_TRUE(wait_until([&] { return rows("source='dummy'") >= 1; }, 30s)) << e->err();
  // The counter moves just after the last DELETE commits: wait for it rather than race it.
  std::string metrics;
  EXPECT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics,
                        d_.path()) == 200 &&
               metric_value(metrics, "devmesh_mariadb_retention_deleted_total", "") >= 12000;
      },
      30s));
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_retention_deleted_total", ""), 12000) << metrics;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(10s), 0) << e->err();
  EXPECT_NE(e->err().find("retention: deleted 12000 rows"), std::string::npos) << e->err();
}

// retention_interval is how often retention looks again once nothing old is left: old rows
// that appear later (here: inserted by hand, twice) are deleted by the next looks. The bound
// (60 s) is generous for the 200 ms interval and still shorter than the 1 m default, so an
// ignored option fails the test without timing anything.
TEST_F(MariaDbOutput, RetentionLooksAgainEveryRetentionIntervalAndDeletesRowsThatBecameOld) {
  const int port = free_port();
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n",
                       "      retention: 1h\n      retention_interval: 200ms\n",
                       "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  ASSERT_TRUE(wait_until([&] { return rows() == 3; }, 60s)) << e->err();
  for (int round = 1; round <= 2; ++round) {
    const std::string tag = "old" + std::to_string(round);
    ASSERT_EQ(db_->sql("INSERT INTO log_events (timestamp, source, service, host, level, message, "
                       "event_id) SELECT UTC_TIMESTAMP(6) - INTERVAL 2 HOUR, '" +
                       tag + "', 'old', 'h', 'INFO', 'old', UNHEX(MD5(CONCAT('" + tag +
                       "', seq))) FROM seq_1_to_100"),
              0);
    ASSERT_TRUE(wait_until([&] { return rows("source='" + tag + "'") == 0; }, 60s))
        << "round " << round << ": " << e->err();
  }
  EXPECT_EQ(rows("source='dummy'"), 3) << "recent rows stay";
  std::string metrics;
  ASSERT_EQ(http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d_.path()),
            200);
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_retention_deleted_total", ""), 200) << metrics;
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_retention_errors_total", ""), 0) << metrics;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

// create_table: false and no table: the engine does not start (so no input accepts anything),
// and says which table and which option.
TEST_F(MariaDbOutput, WithCreateTableFalseAMissingTableIsAClearErrorAtStartAndNothingIsCreated) {
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 3}\n", "      create_table: false\n"));
  ASSERT_EQ(e->wait_exit(30s), 1) << e->err();
  EXPECT_NE(e->err().find("table devmesh.log_events does not exist and create_table is false"),
            std::string::npos)
      << e->err();
  EXPECT_NE(e->err().find("failed to start"), std::string::npos) << e->err();
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='devmesh'"),
            0);
}

// create_table: false with a table made by hand (no FULLTEXT, an extra column, another name for
// nothing else): it is used as it is, not altered.
TEST_F(MariaDbOutput, WithCreateTableFalseAnExistingTableIsUsedAsItIs) {
  ASSERT_EQ(
      db_->sql("CREATE TABLE log_events (id BIGINT AUTO_INCREMENT PRIMARY KEY, timestamp "
               "DATETIME(6) NOT NULL, source VARCHAR(255) NOT NULL, service VARCHAR(255) NOT "
               "NULL, host VARCHAR(255) NOT NULL, level ENUM('DEBUG','INFO','WARN','WARNING',"
               "'ERROR','CRITICAL','FATAL') NOT NULL, trace_id VARCHAR(64), span_id VARCHAR(32), "
               "event_type VARCHAR(100), error_code VARCHAR(50), message LONGTEXT NOT NULL, "
               "meta_json LONGTEXT, event_id BINARY(16), note VARCHAR(20) DEFAULT 'by hand', "
               "UNIQUE KEY uk_event_id (event_id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
      0);
  std::string before, after;
  ASSERT_EQ(db_->sql("SHOW CREATE TABLE log_events", &before), 0);
  auto e = engine(yaml("    - {name: dummy, rate: 0, count: 30}\n", "      create_table: false\n"));
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  expect_each_seq_once(30);
  EXPECT_EQ(rows("note='by hand'"), 30);
  ASSERT_EQ(db_->sql("SHOW CREATE TABLE log_events", &after), 0);
  // The same statement but for the table's next id, if shown.
  const std::regex counter(" AUTO_INCREMENT=[0-9]+");
  EXPECT_EQ(std::regex_replace(after, counter, ""), std::regex_replace(before, counter, ""));
  EXPECT_EQ(e->err().find("created table"), std::string::npos) << e->err();
  EXPECT_NE(e->err().find("has no FULLTEXT index on message"), std::string::npos) << e->err();
}

// create_table: false and the table gone while running (renamed away): the output does not
// recreate it; batches are retried (counted, /health says why), and once the table is back
// every record is stored, once. With a retry limit, what could not wait is dead-lettered with
// the reason, and counted.
TEST_F(MariaDbOutput, WithCreateTableFalseATableGoneWhileRunningIsWaitedForAndNothingIsLost) {
  const long n = 3000;
  const int port = free_port();
  auto create = engine(yaml("    - {name: dummy, rate: 0, start: 100000, count: 1}\n"), "create");
  ASSERT_EQ(create->wait_exit(60s), 0) << create->err();
  ASSERT_EQ(db_->sql("DELETE FROM log_events"), 0);
  auto e = engine(
      yaml("    - {name: dummy, rate: 500, count: " + std::to_string(n) + "}\n",
           "      create_table: false\n      retry_wait: 100ms\n"
           "      retry_max_wait: 500ms\n",
           "  exit_when_done: true\n  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  ASSERT_TRUE(wait_until([&] { return rows() >= 300; }, 60s)) << e->err();
  ASSERT_EQ(db_->sql("RENAME TABLE log_events TO parked"), 0);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::string body, metrics;
  EXPECT_TRUE(wait_until(
      [&] {
        return http_get(base + "/health", &body, d_.path()) == 503 &&
               body.find("does not exist and create_table is false") != std::string::npos;
      },
      30s))
      << body;
  ASSERT_TRUE(wait_until(
      [&] {
        http_get(base + "/metrics", &metrics, d_.path());
        return metric_value(metrics, "devmesh_records_retried_total", "") > 0 &&
               metric_value(metrics, "devmesh_mariadb_connect_errors_total", "") >= 2;
      },
      30s))
      << metrics;
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events'"),
            0)
      << "not recreated";
  ASSERT_EQ(db_->sql("RENAME TABLE parked TO log_events"), 0);
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  expect_each_seq_once(n);
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson"));
}

TEST_F(MariaDbOutput, WithCreateTableFalseAndARetryLimitRecordsThatCannotWaitAreDeadLettered) {
  const long n = 600;
  auto create = engine(yaml("    - {name: dummy, rate: 0, start: 100000, count: 1}\n"), "create");
  ASSERT_EQ(create->wait_exit(60s), 0) << create->err();
  auto e = engine(yaml("    - {name: dummy, rate: 200, count: " + std::to_string(n) + "}\n",
                       "      create_table: false\n      retry_limit: 2\n"
                       "      retry_wait: 50ms\n      retry_max_wait: 100ms\n"),
                  "limited");
  ASSERT_TRUE(wait_until([&] { return rows() >= 50; }, 60s)) << e->err();
  ASSERT_EQ(db_->sql("RENAME TABLE log_events TO parked"), 0);
  // Everything ends stored or dead-lettered (exit_when_done), the table never recreated.
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events'"),
            0);
  const auto dead = read_lines(d_ / "dead.ndjson");
  const long long stored = db_->number("SELECT COUNT(*) FROM parked WHERE source='dummy'") - 1;
  EXPECT_EQ(static_cast<long long>(dead.size()) + stored, n) << "none lost";
  ASSERT_FALSE(dead.empty());
  EXPECT_NE(dead[0].find("does not exist and create_table is false"), std::string::npos) << dead[0];
  EXPECT_NE(e->err().find("giving up on"), std::string::npos) << e->err();
}

TEST_F(MariaDbOutput, ATableDroppedWhileRunningIsRecreatedAndInsertsGoOn) {
  const long n = 6000;
  auto e = engine(yaml("    - {name: dummy, rate: 1500, count: " + std::to_string(n) + "}\n",
                       "      retry_wait: 100ms\n"));
  ASSERT_TRUE(wait_until([&] { return rows() >= 1000; }, 60s)) << e->err();
  ASSERT_EQ(db_->sql("DROP TABLE log_events"), 0);
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  // What was dropped is gone; everything after it is there, once, up to the last record.
  EXPECT_GT(rows(), 0);
  EXPECT_EQ(db_->number("SELECT COUNT(DISTINCT event_id) FROM log_events"), rows());
  EXPECT_EQ(
      db_->number("SELECT MAX(CAST(JSON_VALUE(meta_json,'$.seq') AS UNSIGNED)) FROM log_events"),
      n);
  const std::string err = e->err();
  size_t created = 0;
  for (size_t at = 0; (at = err.find("created table devmesh.log_events", at)) != std::string::npos;
       ++at)
    ++created;
  EXPECT_EQ(created, 2u) << err;
}

TEST_F(MariaDbOutput, DryRunValidatesWithoutConnectingAndRefusesABadTableName) {
  std::string config = yaml("    - {name: dummy, rate: 0, count: 3}\n");
  config.replace(config.find(db_->socket()), db_->socket().size(), d_ / "no-such-socket");
  write_file(d_ / "ok.yaml", config);
  std::string out, err;
  EXPECT_EQ(run({DEVMESH_BIN, "--dry-run", "-c", d_ / "ok.yaml"}, d_.path(), &out, &err), 0) << err;
  write_file(d_ / "bad.yaml",
             yaml("    - {name: dummy, rate: 0, count: 3}\n", "      table: 'x; DROP TABLE y'\n"));
  EXPECT_EQ(run({DEVMESH_BIN, "--dry-run", "-c", d_ / "bad.yaml"}, d_.path(), &out, &err), 1);
  EXPECT_NE(err.find("table: 'x; DROP TABLE y' is not a plain name"), std::string::npos) << err;
}

// The patterns filter's three messages, 100 records each, from service sshd.
const std::string kSshd =
    "    - {name: dummy, rate: 0, count: 300, service: sshd, meta: {pid: '7'},"
    " messages: ['Accepted password for root from 10.0.0.{seq} port {seq}',"
    " 'Connection closed by 10.1.{seq}.2 [preauth]', 'session opened for user app']}\n";
const std::string kPatterns = "  filters:\n    - {name: patterns}\n";

// The rows of log_patterns: service|template|count|first_seen <= last_seen|rows of the id.
std::string pattern_rows(MariaDb &db, const std::string &table = "log_patterns",
                         const std::string &rows_table = "log_events") {
  std::string out;
  EXPECT_EQ(db.sql("SELECT p.service, p.template, p.count, p.first_seen <= p.last_seen,"
                   " (SELECT COUNT(*) FROM " +
                       rows_table + " l WHERE l.pattern_id = p.id) FROM " + table +
                       " p ORDER BY p.template",
                   &out),
            0);
  return out;
}

const char *const kSshdPatterns =
    "sshd\tAccepted password for root from <*> port <*>\t100\t1\t100\n"
    "sshd\tConnection closed by <*> [preauth]\t100\t1\t100\n"
    "sshd\tsession opened for user app\t100\t1\t100\n";

// The id is the pattern_id column (stored signed, the 16 hex digits' 64 bits), the template a
// row of log_patterns; neither stays in meta_json, the other meta keys do.
TEST_F(MariaDbOutput, PatternIdsAreAColumnAndTemplatesRowsOfLogPatterns) {
  auto e = engine(yaml(kSshd) + kPatterns);
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_EQ(rows("service='sshd' AND pattern_id IS NULL"), 0);
  EXPECT_EQ(db_->number("SELECT COUNT(DISTINCT pattern_id) FROM log_events WHERE service='sshd'"),
            3);
  EXPECT_EQ(rows("meta_json LIKE '%pattern%'"), 0);
  EXPECT_EQ(rows("service='sshd' AND JSON_VALUE(meta_json,'$.pid')='7'"), 300);
  const std::string patterns = pattern_rows(*db_);
  EXPECT_NE(patterns.find(kSshdPatterns), std::string::npos) << patterns;
  // Every row's id has its row in log_patterns.
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM log_events l JOIN log_patterns p ON p.id = "
                        "l.pattern_id WHERE l.service='sshd'"),
            300);
  std::string out;
  ASSERT_EQ(db_->sql("SHOW CREATE TABLE log_patterns", &out), 0);
  for (const char *part :
       {"`id` bigint(20) NOT NULL", "`service` varchar(255) NOT NULL",
        "`template` text DEFAULT NULL", "`first_seen` datetime(6) NOT NULL",
        "`last_seen` datetime(6) NOT NULL", "`count` bigint(20) NOT NULL", "PRIMARY KEY (`id`)",
        "KEY `idx_service_last_seen` (`service`,`last_seen`)"})
    EXPECT_NE(out.find(part), std::string::npos) << part << " in " << out;
}

// A batch delivered twice (the same records, the same event ids: a sender's retry) adds its
// rows once and its patterns' counts once; an overlapping range adds only its new rows.
TEST_F(MariaDbOutput, ABatchDeliveredTwiceCountsItsPatternsOnce) {
  const std::string config = yaml(kSshd) + kPatterns;
  for (const char *run : {"first", "second"}) {
    auto e = engine(config, run);
    ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
    EXPECT_EQ(rows(), 300) << run;
    EXPECT_EQ(pattern_rows(*db_), kSshdPatterns) << run;
  }
  // Records 251..450: 50 stored already, 150 new (50 of each message).
  auto third = engine(yaml("    - {name: dummy, rate: 0, start: 251, count: 200, service: sshd, "
                           "meta: {pid: '7'}, messages: ['Accepted password for root from "
                           "10.0.0.{seq} port {seq}', 'Connection closed by 10.1.{seq}.2 "
                           "[preauth]', 'session opened for user app']}\n") +
                          kPatterns,
                      "third");
  ASSERT_EQ(third->wait_exit(60s), 0) << third->err();
  EXPECT_EQ(rows(), 450);
  const std::string patterns = pattern_rows(*db_);
  EXPECT_EQ(db_->number("SELECT SUM(count) FROM log_patterns"), 450) << patterns;
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM log_patterns p WHERE p.count <> (SELECT COUNT(*) "
                        "FROM log_events l WHERE l.pattern_id = p.id)"),
            0)
      << patterns;
}

// Two engines storing the same records at the same time (a sender re-delivering to a second
// aggregator): whichever inserts a row counts it, the other finds it stored, even when both
// send it at once (the insert then reports fewer rows than sent and the batch is retried).
TEST_F(MariaDbOutput, TwoEnginesStoringTheSameRecordsAtOnceCountEachRowOnce) {
  const std::string config =
      yaml(
          "    - {name: dummy, rate: 0, count: 6000, batch: 100, service: sshd, messages: ["
          "'Accepted password for root from 10.0.0.{seq} port {seq}', 'Connection closed by "
          "10.1.{seq}.2 [preauth]', 'session opened for user app']}\n",
          "      workers: 2\n      batch_size: 100\n      retry_wait: 50ms\n") +
      kPatterns;
  auto create = engine(
      yaml("    - {name: dummy, rate: 0, start: 100000, count: 1, service: setup}\n"), "create");
  ASSERT_EQ(create->wait_exit(60s), 0) << create->err();
  auto a = engine(config, "a");
  auto b = engine(config, "b");
  ASSERT_EQ(a->wait_exit(120s), 0) << a->err();
  ASSERT_EQ(b->wait_exit(120s), 0) << b->err();
  EXPECT_EQ(rows("service='sshd'"), 6000);
  const std::string patterns = pattern_rows(*db_);
  EXPECT_EQ(db_->number("SELECT SUM(count) FROM log_patterns"), 6000) << patterns;
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM log_patterns p WHERE p.count <> (SELECT COUNT(*) "
                        "FROM log_events l WHERE l.pattern_id = p.id)"),
            0)
      << patterns;
  EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson"));
}

TEST_F(MariaDbOutput, RetentionDeletesPatternsLastSeenBeforeTheCutoff) {
  auto create = engine(yaml("    - {name: dummy, rate: 0, count: 1}\n"), "create");
  ASSERT_EQ(create->wait_exit(60s), 0) << create->err();
  ASSERT_EQ(db_->sql("INSERT INTO log_patterns (id, service, template, first_seen, last_seen, "
                     "count) VALUES (1, 'svc', 'ancient <*>', UTC_TIMESTAMP(6) - INTERVAL 200 DAY, "
                     "UTC_TIMESTAMP(6) - INTERVAL 100 DAY, 5), (-2, 'svc', 'recent <*>', "
                     "UTC_TIMESTAMP(6) - INTERVAL 200 DAY, UTC_TIMESTAMP(6) - INTERVAL 1 DAY, 5)"),
            0);
  const int port = free_port();
  auto e = engine(yaml("    - {name: dummy, rate: 50}\n",
                       "      retention: 90d\n      retention_interval: 200ms\n",
                       "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  ASSERT_TRUE(wait_until(
      [&] { return db_->number("SELECT COUNT(*) FROM log_patterns WHERE id = 1") == 0; }, 30s))
      << e->err();
  EXPECT_EQ(db_->value("SELECT template FROM log_patterns"), "recent <*>");
  std::string metrics;
  EXPECT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics,
                        d_.path()) == 200 &&
               metric_value(metrics, "devmesh_mariadb_retention_patterns_deleted_total", "") >= 1;
      },
      30s))
      << metrics;
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_retention_patterns_deleted_total", ""), 1);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

// 2,000 rows written as the previous release wrote them.
void fill_previous_release_table(MariaDb &db) {
  ASSERT_EQ(db.sql(previous_release_table()), 0);
  ASSERT_EQ(db.sql("INSERT INTO log_events (timestamp, source, service, host, level, message, "
                   "meta_json, event_id) SELECT UTC_TIMESTAMP(6) - INTERVAL seq SECOND, 'old', "
                   "'sshd', 'h', 'INFO', CONCAT('written by the previous release ', seq), "
                   "'{\"pattern_id\":\"00000000000000ff\"}', UNHEX(MD5(CONCAT('old', seq))) "
                   "FROM seq_1_to_2000"),
            0);
}

// An upgrade: the table of the previous release gets the column (and its index) in place at
// start, its rows kept as they were (pattern_id NULL, meta_json untouched); new rows carry ids.
TEST_F(MariaDbOutput, ATableFromThePreviousReleaseGetsThePatternIdColumnAndIndexAtStart) {
  fill_previous_release_table(*db_);
  auto e = engine(yaml(kSshd) + kPatterns);
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("made by a release before the patterns filter"), std::string::npos)
      << e->err();
  EXPECT_EQ(rows("source='old'"), 2000);
  EXPECT_EQ(rows("source='old' AND pattern_id IS NULL AND JSON_VALUE(meta_json,'$.pattern_id')"
                 " = '00000000000000ff'"),
            2000);
  EXPECT_EQ(rows("service='sshd' AND source='dummy' AND pattern_id IS NOT NULL"), 300);
  EXPECT_EQ(pattern_rows(*db_), kSshdPatterns);
  EXPECT_EQ(db_->value("SELECT GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) FROM "
                       "information_schema.STATISTICS WHERE TABLE_SCHEMA='devmesh' AND "
                       "TABLE_NAME='log_events' AND INDEX_NAME='idx_pattern_timestamp_level'"),
            "pattern_id,timestamp,id,level");
  // The migrated table is the one a new table would be: the next start changes nothing.
  auto again = engine(yaml(kSshd) + kPatterns, "again");
  ASSERT_EQ(again->wait_exit(60s), 0) << again->err();
  EXPECT_EQ(again->err().find("made by a release before"), std::string::npos) << again->err();
  EXPECT_EQ(rows(), 2300);
}

// create_table: false: the table of the previous release is used as it is (no pattern_id, no
// patterns table), the ids stay in meta_json, and the log says what to run.
TEST_F(MariaDbOutput, WithCreateTableFalseATableWithoutPatternIdIsUsedAsItIsAndTheIdsStayInMeta) {
  fill_previous_release_table(*db_);
  auto e = engine(yaml(kSshd, "      create_table: false\n") + kPatterns);
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("ADD COLUMN pattern_id BIGINT"), std::string::npos) << e->err();
  EXPECT_NE(e->err().find("log_patterns does not exist and create_table is false"),
            std::string::npos)
      << e->err();
  EXPECT_EQ(rows("source='dummy'"), 300);
  EXPECT_EQ(rows("source='dummy' AND JSON_VALUE(meta_json,'$.pattern_id') IS NOT NULL"), 300);
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE "
                        "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_events' AND "
                        "COLUMN_NAME='pattern_id'"),
            0);
  EXPECT_EQ(db_->number("SELECT COUNT(*) FROM information_schema.TABLES WHERE "
                        "TABLE_SCHEMA='devmesh' AND TABLE_NAME='log_patterns'"),
            0);
}

}  // namespace
