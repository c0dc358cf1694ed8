// Fault test 4 (issue 6): an ambiguous commit. A TCP proxy between the mariadb output and
// mariadbd lets the client's COMMIT through, holds back the server's OK and cuts the connection:
// the server committed, the output only saw a lost connection and sends the batch again. MariaDB
// must end with every record once, none missing, none twice. Also: the connection closed right
// after the COMMIT is sent (the server reads COMMIT, then EOF), and cut before the COMMIT.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"
#include "tcp_proxy.h"

using namespace devmesh::test;

namespace {

constexpr long kRecords = 30000;
constexpr int kCuts = 8;

struct CutRun {
  std::string metrics;
  double lost = 0, reconnects = 0, duplicates = 0, inserted = 0;
  ConservationReport report;
};

// Delivers kRecords dummy records through the proxy cutting at `where` (every third such
// packet, kCuts times) and checks conservation.
void deliver_through_cuts(TcpProxy::Cut where, CutRun &run) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  TcpProxy proxy(db.port());
  ASSERT_TRUE(proxy.ok());
  // Every third: the retried batch's own packet can be cut again.
  proxy.cut(where, 3, kCuts);

  const int port = free_port();
  Engine engine(d, "engine",
                service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n") +
                    "  inputs:\n    - {name: dummy, rate: 0, batch: 500, count: " +
                    std::to_string(kRecords) + kDummyFields + "}\n  outputs:\n" +
                    mariadb_output(db, d / "dead.ndjson",
                                   "      workers: 2\n      batch_size: 1000\n"
                                   "      full_text: false\n      retry_wait: 50ms\n"
                                   "      retry_max_wait: 500ms\n",
                                   proxy.port()));
  engine.start();
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << engine.err();
  // Delivered: the output acknowledged every record (the dummy's count).
  const bool delivered = wait_until(
      [&] {
        run.metrics = scrape_metrics(port, d.path());
        return metric_value(run.metrics, "devmesh_records_out_total", "plugin=\"mariadb\"") >=
               kRecords;
      },
      180s);
  ASSERT_TRUE(delivered) << "not delivered; proxy: " << proxy.commits() << " commits, "
                         << proxy.cuts() << " cuts\n"
                         << run.metrics << engine.err();
  // Counted once nothing moves any more: a retried batch that finishes late would add to them.
  std::string why;
  EXPECT_TRUE(wait_settled(port, d.path(), 60s, &why)) << why;
  run.metrics = scrape_metrics(port, d.path());
  run.lost = metric_value(run.metrics, "devmesh_mariadb_connection_lost_total", "");
  run.reconnects = metric_value(run.metrics, "devmesh_mariadb_reconnects_total", "");
  run.duplicates = metric_value(run.metrics, "devmesh_mariadb_rows_duplicate_total", "");
  run.inserted = metric_value(run.metrics, "devmesh_mariadb_rows_inserted_total", "");
  engine.proc().kill(SIGTERM);
  EXPECT_EQ(engine.proc().wait_exit(30s), 0) << engine.err();

  AcceptedSet accepted;
  accepted.add_range(1, kRecords);
  EXPECT_TRUE(store_conserves(db, accepted, {dummy_event_id, dummy_fields}, &run.report));
  EXPECT_FALSE(std::filesystem::exists(d / "dead.ndjson")) << "dead-lettered records";
  // Each cut was seen by the output as a lost connection and its batch retried whole.
  EXPECT_EQ(proxy.cuts(), kCuts);
  EXPECT_GE(run.lost, kCuts) << run.metrics;
  EXPECT_GE(run.reconnects, kCuts) << "each cut connection is made again\n" << run.metrics;
  EXPECT_GE(proxy.connections(), kCuts + 2) << "the proxy saw no new connection after the cuts";
  // A cut batch's rows count as duplicates on the retry that finds them (its first attempt
  // never learnt that it inserted them): together each record once.
  EXPECT_EQ(run.inserted + run.duplicates, kRecords) << run.metrics;
  std::cout << "  " << kRecords << " records, " << proxy.commits() << " COMMITs and "
            << proxy.executes() << " executions through the proxy, " << proxy.cuts() << " cut ("
            << proxy.cuts_committed() << " COMMITs answered OK by the server, never seen by the "
            << "client); output: " << run.lost << " lost connections, " << run.reconnects
            << " reconnections, " << run.inserted << " rows inserted, " << run.duplicates
            << " retried rows already stored\n  " << run.report.describe() << "\n";
  if (where == TcpProxy::Cut::kCommitAnswerHeld) {
    EXPECT_EQ(proxy.cuts_committed(), kCuts) << "a held COMMIT answer was not OK";
  }
}

TEST(AmbiguousCommit, ABatchWhoseCommitAnswerWasCutIsRetriedWithoutDuplicateRows) {
  CutRun run;
  deliver_through_cuts(TcpProxy::Cut::kCommitAnswerHeld, run);
  // The server had committed every cut batch: its rows were all found on the retry.
  EXPECT_GE(run.duplicates, kCuts) << run.metrics;
}

TEST(AmbiguousCommit, AConnectionClosedRightAfterTheCommitIsSentLosesNoRowAndDuplicatesNone) {
  CutRun run;
  deliver_through_cuts(TcpProxy::Cut::kCommitSent, run);
}

TEST(AmbiguousCommit, AConnectionCutBeforeTheCommitRollsBackAndTheRetryStoresEveryRow) {
  CutRun run;
  deliver_through_cuts(TcpProxy::Cut::kExecuteSent, run);
  // Nothing of a cut batch was committed: the retry inserted all of it.
  EXPECT_EQ(run.duplicates, 0) << run.metrics;
}

}  // namespace
