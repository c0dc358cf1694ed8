// Fault tests on the shipped aggregator's pipeline shape (conf/aggregator.yaml: http input with
// ack: delivered -> dedup in collapse mode -> mariadb): a sidecar whose requests time out while
// MariaDB is frozen sends them again; the store must still hold every record once.
//
// These tests found a bug, since fixed: dedup keyed on content (host, service, message) only,
// so a transport re-delivery (same event_id) was taken for a repeat and dropped at once; with
// ack: delivered the sidecar got its 2xx while the first copy still waited for MariaDB, and a
// kill -9 then lost it (406 of 20,000 missing); not killed, collapse added a summary row per
// re-sent record (818 extra rows). dedup now passes a record carrying its window's first
// event_id (dedup_redeliveries_passed_total); the control test runs the same faults without
// dedup. The faults are timed by counters (rows stored, requests timed out, records sent
// again, redeliveries seen), and each leaves that trace.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

constexpr long kRecords = 20000;

class ShippedAggregator : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;
  }

  // The aggregator as conf/aggregator.yaml has it (dedup collapse, window 10s), or without
  // the dedup filter.
  std::string aggregator_yaml(bool dedup = true) {
    return service_head("  http_listen: " + listen_on(port_) + "\n  grace: 5s\n") +
           "  inputs:\n    - {name: http, listen: '" + listen_on(port_) + "', ack: delivered}\n" +
           (dedup ? "  filters:\n    - {name: dedup, match: '*', mode: collapse, window: 10s}\n"
                  : "") +
           "  outputs:\n" +
           mariadb_output(db_, d_ / "aggregator-dead.ndjson",
                          "      workers: 2\n      full_text: false\n      flush_interval: 50ms\n");
  }
  // Numbered records at 2,000/s; requests give up after 2 s (then retry).
  std::string sidecar_yaml() {
    return service_head("  exit_when_done: true\n  grace: 5s\n  http_listen: " +
                        listen_on(sidecar_port_) + "\n") +
           "  inputs:\n    - {name: dummy, rate: 2000, count: " + std::to_string(kRecords) +
           kDummyFields + "}\n  outputs:\n    - {name: http_forward, url: 'http://" +
           listen_on(port_) +
           "/ingest/logs', timeout: 2s, retry_wait: 50ms, retry_max_wait: 500ms, "
           "dead_letter_path: " +
           d_ / "sidecar-dead.ndjson" + "}\n";
  }

  // What dedup did so far in the running aggregator: repeats dropped, summaries emitted.
  std::string dedup_figures() {
    const std::string m = scrape_metrics(port_, d_.path());
    return "dedup dropped " +
           std::to_string(metric_value(m, "devmesh_dedup_records_dropped_total", "")) +
           " records, emitted " +
           std::to_string(metric_value(m, "devmesh_dedup_summaries_emitted_total", "")) +
           " summaries; http input accepted " +
           std::to_string(metric_value(m, "devmesh_http_records_accepted_total", "")) + " records";
  }

  void check(const std::string &what) {
    AcceptedSet accepted;
    accepted.add_range(1, kRecords);
    ConservationReport report;
    EXPECT_TRUE(store_conserves(db_, accepted, {dummy_event_id, dummy_fields}, &report)) << what;
    std::cout << "  " << what << ": " << report.describe() << "\n";
  }

  // Starts the aggregator and the sidecar, and freezes MariaDB once the aggregator has stored
  // some records; returns once the freeze has done what it is for: the sidecar's requests timed
  // out and it sent their records again (and, with dedup, those reached dedup as redeliveries).
  void freeze_until_records_are_sent_again(Engine &aggregator, Engine &sidecar, bool dedup) {
    aggregator.start();
    ASSERT_TRUE(wait_listening(port_, d_.path(), 30s)) << aggregator.err();
    sidecar.start();
    ASSERT_TRUE(wait_listening(sidecar_port_, d_.path(), 30s)) << sidecar.err();
    wait_for(port_, "devmesh_mariadb_rows_inserted_total", "", 1000, aggregator);
    db_.freeze();
    wait_for(sidecar_port_, "devmesh_http_forward_requests_total", "code=\"error\"", 1, sidecar);
    wait_for(sidecar_port_, "devmesh_records_retried_total", "http_forward", 1, sidecar);
    if (dedup) wait_for(port_, "devmesh_dedup_redeliveries_passed_total", "", 1, aggregator);
  }

  // Waits until a counter of the engine on `port` reaches at_least (a failure if it never does).
  void wait_for(int port, const std::string &name, const std::string &labels, double at_least,
                Engine &engine) {
    double v = -1;
    EXPECT_TRUE(wait_until(
        [&] { return (v = scrape_metric(port, d_.path(), name, labels)) >= at_least; }, 60s))
        << name << " " << labels << " is " << v << ", not " << at_least << "\n"
        << engine.err();
  }

  TempDir d_;
  MariaDb db_{d_.path()};
  int port_ = free_port(), sidecar_port_ = free_port();
};

// Requests that timed out during a freeze are sent again and reach dedup as redeliveries; none
// is taken for a repeat (every record differs), so dedup drops nothing and has no summary to
// emit, and the aggregator settles with every record stored once.
TEST_F(ShippedAggregator, RecordsSentAgainAfterATimeoutAreStoredOnce) {
  Engine aggregator(d_, "aggregator", aggregator_yaml());
  Engine sidecar(d_, "sidecar", sidecar_yaml());
  freeze_until_records_are_sent_again(aggregator, sidecar, true);
  db_.thaw();
  ASSERT_EQ(sidecar.proc().wait_exit(120s), 0) << sidecar.err();
  std::string why;
  EXPECT_TRUE(wait_settled(port_, d_.path(), 60s, &why)) << why;
  const std::string m = scrape_metrics(port_, d_.path());
  std::cout << "  " << dedup_figures() << "\n";
  EXPECT_EQ(metric_value(m, "devmesh_dedup_records_dropped_total", ""), 0)
      << "a re-sent record was taken for a repeat";
  EXPECT_EQ(metric_value(m, "devmesh_dedup_summaries_emitted_total", ""), 0);
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();
  check("retries during a freeze");
}

// The same, and the aggregator is killed -9 while MariaDB is still frozen.
TEST_F(ShippedAggregator, RecordsSentAgainAfterATimeoutSurviveAnAggregatorKill) {
  Engine aggregator(d_, "aggregator", aggregator_yaml());
  Engine sidecar(d_, "sidecar", sidecar_yaml());
  freeze_until_records_are_sent_again(aggregator, sidecar, true);
  std::cout << "  before the kill: " << dedup_figures() << "\n";
  aggregator.kill9();
  aggregator.start();
  db_.thaw();
  ASSERT_EQ(sidecar.proc().wait_exit(120s), 0) << sidecar.err();
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();
  check("retries during a freeze, aggregator killed");
}

// Control: the same faults without the dedup filter.
TEST_F(ShippedAggregator, WithoutDedupRecordsSentAgainAfterATimeoutSurviveAnAggregatorKill) {
  Engine aggregator(d_, "aggregator", aggregator_yaml(false));
  Engine sidecar(d_, "sidecar", sidecar_yaml());
  freeze_until_records_are_sent_again(aggregator, sidecar, false);
  aggregator.kill9();
  aggregator.start();
  db_.thaw();
  ASSERT_EQ(sidecar.proc().wait_exit(120s), 0) << sidecar.err();
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();
  check("without dedup: retries during a freeze, aggregator killed");
}

}  // namespace
