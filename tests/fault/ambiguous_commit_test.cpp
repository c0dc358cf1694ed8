// Fault test 4 (issue 6): an ambiguous commit. A TCP proxy between the mariadb output and
// mariadbd lets the client's COMMIT through, holds back the server's OK and cuts the connection:
// the server committed, the output only saw a lost connection and sends the batch again. MariaDB
// must end with every record once, none missing, none twice.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"
#include "tcp_proxy.h"

using namespace devmesh::test;

namespace {

constexpr long kRecords = 30000;

TEST(AmbiguousCommit, ABatchWhoseCommitAnswerWasCutIsRetriedWithoutDuplicateRows) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  TcpProxy proxy(db.port());
  ASSERT_TRUE(proxy.ok());
  // Every third COMMIT is cut, eight times: the retried batch's own COMMIT can be cut again.
  proxy.cut_after_commits(3, 8);

  const int port = free_port();
  Engine engine(d, "engine",
                service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n") +
                    "  inputs:\n    - {name: dummy, rate: 0, batch: 500, count: " +
                    std::to_string(kRecords) + "}\n  outputs:\n" +
                    mariadb_output(db, d / "dead.ndjson",
                                   "      workers: 2\n      batch_size: 1000\n"
                                   "      full_text: false\n      retry_wait: 50ms\n"
                                   "      retry_max_wait: 500ms\n",
                                   proxy.port()));
  engine.start();
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << engine.err();
  // Delivered: the output acknowledged every record (the dummy's count).
  std::string metrics;
  const bool delivered = wait_until(
      [&] {
        metrics = scrape_metrics(port, d.path());
        return metric_value(metrics, "devmesh_records_out_total", "plugin=\"mariadb\"") >= kRecords;
      },
      180s);
  ASSERT_TRUE(delivered) << "not delivered; proxy: " << proxy.commits() << " commits, "
                         << proxy.cuts() << " cuts\n"
                         << metrics << engine.err();
  const double lost = metric_value(metrics, "devmesh_mariadb_connection_lost_total", "");
  const double duplicates = metric_value(metrics, "devmesh_mariadb_rows_duplicate_total", "");
  const double inserted = metric_value(metrics, "devmesh_mariadb_rows_inserted_total", "");
  engine.proc().kill(SIGTERM);
  EXPECT_EQ(engine.proc().wait_exit(30s), 0) << engine.err();

  AcceptedSet accepted;
  accepted.add_range(1, kRecords);
  ConservationReport report;
  EXPECT_TRUE(store_conserves(db, accepted, dummy_event_id, &report));
  EXPECT_FALSE(std::filesystem::exists(d / "dead.ndjson")) << "dead-lettered records";
  // The faults happened as meant: cuts after COMMITs the server had answered OK, each seen by
  // the output as a lost connection, and the retried rows found already stored.
  EXPECT_EQ(proxy.cuts(), 8);
  EXPECT_GE(proxy.cuts_committed(), 1) << "no cut COMMIT had committed: nothing was ambiguous";
  EXPECT_GE(lost, proxy.cuts()) << metrics;
  EXPECT_GT(duplicates, 0) << "no retried row was found already stored\n" << metrics;
  // A cut batch's rows count as duplicates on the retry that finds them (its first attempt
  // never learnt that it inserted them): together each record once.
  EXPECT_EQ(inserted + duplicates, kRecords) << metrics;
  std::cout << "  " << kRecords << " records, " << proxy.commits() << " COMMITs through the proxy, "
            << proxy.cuts() << " cut (" << proxy.cuts_committed()
            << " answered OK by the server, never seen by the client); output: " << lost
            << " lost connections, " << inserted << " rows inserted, " << duplicates
            << " retried rows already stored\n  " << report.describe() << "\n";
}

}  // namespace
