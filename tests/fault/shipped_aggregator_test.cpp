// Fault tests on the shipped aggregator's pipeline shape (conf/aggregator.yaml: http input with
// ack: delivered -> dedup in collapse mode -> mariadb): a sidecar whose requests time out while
// MariaDB is frozen sends them again; the store must still hold every record once.
//
// BUG found by these tests (dedup, not fixed here; reported): dedup keys on content (host,
// service, message), so a transport re-delivery (same event_id) is taken for a repeat. The
// re-sent request's records are dropped at once, so with ack: delivered the sidecar gets its 2xx
// while the first copy is still waiting for MariaDB: killed -9 then, the aggregator loses them
// (406 of 20,000 missing, exactly the 406 dedup had dropped). Not killed, collapse later adds a
// summary row per re-sent record (818 extra rows, another event_id each). Without dedup the same
// faults lose nothing (the control test). The two tests are DISABLED_ until dedup is fixed; run
// them with --gtest_also_run_disabled_tests.
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
    return service_head("  exit_when_done: true\n  grace: 5s\n") +
           "  inputs:\n    - {name: dummy, rate: 2000, count: " + std::to_string(kRecords) +
           "}\n  outputs:\n    - {name: http_forward, url: 'http://" + listen_on(port_) +
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
    EXPECT_TRUE(store_conserves(db_, accepted, {}, &report)) << what;
    std::cout << "  " << what << ": " << report.describe() << "\n";
  }

  TempDir d_;
  MariaDb db_{d_.path()};
  int port_ = free_port();
};

// Requests that timed out during a 6 s freeze are sent again and reach dedup as repeats.
TEST_F(ShippedAggregator, DISABLED_RecordsSentAgainAfterATimeoutAreStoredOnce) {
  Engine aggregator(d_, "aggregator", aggregator_yaml());
  Engine sidecar(d_, "sidecar", sidecar_yaml());
  aggregator.start();
  ASSERT_TRUE(wait_listening(port_, d_.path(), 30s)) << aggregator.err();
  sidecar.start();
  std::this_thread::sleep_for(3s);
  db_.freeze();
  std::this_thread::sleep_for(6s);
  db_.thaw();
  ASSERT_EQ(sidecar.proc().wait_exit(120s), 0) << sidecar.err();
  std::this_thread::sleep_for(11s);  // the collapse windows close 10 s after they opened
  std::cout << "  " << dedup_figures() << "\n";
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();
  check("retries during a freeze");
}

// The same, and the aggregator is killed -9 while MariaDB is still frozen.
TEST_F(ShippedAggregator, DISABLED_RecordsSentAgainAfterATimeoutSurviveAnAggregatorKill) {
  Engine aggregator(d_, "aggregator", aggregator_yaml());
  Engine sidecar(d_, "sidecar", sidecar_yaml());
  aggregator.start();
  ASSERT_TRUE(wait_listening(port_, d_.path(), 30s)) << aggregator.err();
  sidecar.start();
  std::this_thread::sleep_for(3s);
  db_.freeze();
  std::this_thread::sleep_for(6s);
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
  aggregator.start();
  ASSERT_TRUE(wait_listening(port_, d_.path(), 30s)) << aggregator.err();
  sidecar.start();
  std::this_thread::sleep_for(3s);
  db_.freeze();
  std::this_thread::sleep_for(6s);
  aggregator.kill9();
  aggregator.start();
  db_.thaw();
  ASSERT_EQ(sidecar.proc().wait_exit(120s), 0) << sidecar.err();
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();
  check("without dedup: retries during a freeze, aggregator killed");
}

}  // namespace
