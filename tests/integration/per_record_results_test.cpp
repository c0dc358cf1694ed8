// Per-record results (host flush_record_status) at bulk size, through the real binary: one bad
// record in a 10,000-record flush costs one dead-letter line and one flush call, where SPLIT
// would bisect (about 2 log2(10,000) = 28 flushes) to find it. For a test output; for the
// sqlite store, which learns from SQLite which row the table refused; and for the mariadb store,
// which knows before sending which record no statement can carry (max_allowed_packet).
#include <gtest/gtest.h>

#include "mariadb_pipeline.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// 10,000 dummy records ("record 1." ...) submitted as one batch, to an output that flushes on
// 10,000 records (its bytes and time bounds out of reach): one flush can hold them all.
std::string ten_thousand_to(const std::string &output, int port) {
  return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
         "  inputs:\n"
         "    - {name: dummy, rate: 0, count: 10000, batch: 10000, message: 'record {seq}.'}\n"
         "  outputs:\n"
         "    - {" +
         output + ", batch_size: 10000, batch_bytes: 256MiB, flush_interval: 1h}\n";
}

// Waits until the engine answers and its outputs finished with everything; then its /metrics.
std::string settled_metrics(const TempDir &d, int port, Process &e) {
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  EXPECT_TRUE(wait_until([&] { return http_get(url + "/health", nullptr, d.path()) != 0; }, 30s))
      << e.err();
  std::string why, metrics;
  EXPECT_TRUE(wait_settled(port, d.path(), 60s, &why)) << why << e.err();
  EXPECT_EQ(http_get(url + "/metrics", &metrics, d.path()), 200);
  return metrics;
}

TEST(PerRecordResults, OneBadRecordInTenThousandIsOneDeadLetterLineAndOneFlushCall) {
  TempDir d;
  const int port = free_port();
  auto e = start_engine(d, ten_thousand_to("name: flaky, path: " + d / "out.txt" +
                                               ", attempts_path: " + d / "attempts.txt" +
                                               ", poison: 'record 5000.', per_record: true,"
                                               " fail_status: error, dead_letter_path: " +
                                               d / "dead.ndjson",
                                           port));
  const std::string metrics = settled_metrics(d, port, *e);
  ASSERT_FALSE(HasFailure());

  EXPECT_EQ(metric_value(metrics, "devmesh_flaky_flushes_total", ""), 1) << "no bisection";
  EXPECT_EQ(metric_value(metrics, "devmesh_flush_duration_seconds_count", "plugin=\"flaky\""), 1);
  auto attempts = read_lines(d / "attempts.txt");
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_NE(attempts[0].find(" 10000 fail"), std::string::npos) << attempts[0];

  auto dead = read_lines(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_NE(dead[0].find("\"reason\":\"poison record 5000\""), std::string::npos) << dead[0];
  EXPECT_NE(dead[0].find("\"message\":\"record 5000.\""), std::string::npos) << dead[0];
  EXPECT_EQ(metric_value(metrics, "devmesh_records_dead_lettered_total", "plugin=\"flaky\""), 1);

  auto out = read_lines(d / "out.txt");
  EXPECT_EQ(out.size(), 9999u);
  for (const auto &l : out) ASSERT_EQ(l.find("record 5000."), std::string::npos) << l;
  EXPECT_EQ(metric_value(metrics, "devmesh_records_out_total", "plugin=\"flaky\""), 9999);
  EXPECT_EQ(metric_value(metrics, "devmesh_records_retried_total", "plugin=\"flaky\""), 0);
  EXPECT_EQ(metric_value(metrics, "devmesh_dummy_ack_deliveries_total", ""), 9999);
  EXPECT_EQ(metric_value(metrics, "devmesh_dummy_ack_dead_lettered_total", ""), 1);

  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

// SQLite fails only the statement of a row its table refuses (here a trigger's RAISE(ABORT)),
// and the transaction goes on: the store names that row and commits the rest.
TEST(PerRecordResults, ARowTheSqliteTableRefusesIsDeadLetteredAloneInOneFlush) {
  TempDir d;
  const std::string db = d / "logs.db";
  {
    // A first run makes the table; a trigger of the user's then refuses one message.
    auto e = start_engine(d,
                          plugins_head("  exit_when_done: true\n") +
                              "  inputs:\n    - {name: dummy, rate: 0, count: 1, start: 0}\n"
                              "  outputs:\n    - {name: sqlite, path: " +
                              db + "}\n",
                          "setup");
    ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
    SqliteDb s(db);
    s.exec(
        "CREATE TRIGGER refuse_one BEFORE INSERT ON log_events WHEN NEW.message = 'record 5000.' "
        "BEGIN SELECT RAISE(ABORT, 'refused by the trigger refuse_one'); END");
  }
  const int port = free_port();
  auto e = start_engine(
      d, ten_thousand_to("name: sqlite, path: " + db + ", dead_letter_path: " + d / "dead.ndjson",
                         port));
  const std::string metrics = settled_metrics(d, port, *e);
  ASSERT_FALSE(HasFailure());

  EXPECT_EQ(metric_value(metrics, "devmesh_flush_duration_seconds_count", "plugin=\"sqlite\""), 1)
      << "no bisection";
  EXPECT_EQ(metric_value(metrics, "devmesh_sqlite_batches_split_total", ""), 0);
  EXPECT_EQ(metric_value(metrics, "devmesh_sqlite_rows_refused_total", ""), 1);
  EXPECT_EQ(metric_value(metrics, "devmesh_sqlite_rows_inserted_total", ""), 9999);
  EXPECT_EQ(metric_value(metrics, "devmesh_records_out_total", "plugin=\"sqlite\""), 9999);
  EXPECT_EQ(metric_value(metrics, "devmesh_records_dead_lettered_total", "plugin=\"sqlite\""), 1);
  auto dead = read_lines(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_NE(dead[0].find("refused by the trigger refuse_one"), std::string::npos) << dead[0];
  EXPECT_NE(dead[0].find("\"message\":\"record 5000.\""), std::string::npos) << dead[0];

  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 1 + 9999);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE message = 'record 5000.'"), 0);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events WHERE message = 'record 4999.'"), 1);
}

class PerRecordResultsMariaDb : public MariaDbPipelineTest {};

TEST_F(PerRecordResultsMariaDb, ARecordLargerThanMaxAllowedPacketIsDeadLetteredAloneInOneFlush) {
  db_->stop();
  start_server({"--max-allowed-packet=1M"});
  const int port = free_port();
  // 999 small records and one of 1 MiB, one tag, into one 1,000-record flush.
  auto e =
      engine(yaml("    - {name: dummy, tag: app, rate: 0, count: 999, batch: 999, message: "
                  "'small {seq}'}\n"
                  "    - {name: dummy, tag: app, rate: 0, count: 1, start: 100000, message: '" +
                      std::string(1024 * 1024, 'b') + "'}\n",
                  "      batch_size: 1000\n      batch_bytes: 64MiB\n      flush_interval: 1h\n"
                  "      flush: interval\n",
                  "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  const std::string metrics = settled_metrics(d_, port, *e);
  ASSERT_FALSE(HasFailure());

  EXPECT_EQ(metric_value(metrics, "devmesh_flush_duration_seconds_count", "plugin=\"mariadb\""), 1)
      << "no bisection";
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_rows_too_big_total", ""), 1);
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_rows_inserted_total", ""), 999);
  EXPECT_EQ(metric_value(metrics, "devmesh_mariadb_rows_duplicate_total", ""), 0);
  EXPECT_EQ(metric_value(metrics, "devmesh_records_out_total", "plugin=\"mariadb\""), 999);
  EXPECT_EQ(metric_value(metrics, "devmesh_records_dead_lettered_total", "plugin=\"mariadb\""), 1);
  const auto dead = read_lines(d_ / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_NE(dead[0].find("exceeds the server's max_allowed_packet (1048576)"), std::string::npos)
      << dead[0].substr(0, 300);
  EXPECT_NE(dead[0].find(std::string(1024 * 1024, 'b')), std::string::npos) << "kept whole";
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err().substr(0, 4000);
  EXPECT_EQ(rows(), 999);
  EXPECT_EQ(rows("message LIKE 'small %'"), 999);
}

}  // namespace
