// Fault test 1 (issue 6): the aggregator (http input, ack: delivered -> mariadb) is killed -9 at
// random every 0.5 to 3 s and restarted on the same port while a sidecar (numbered dummy
// records -> http_forward) forwards to it; MariaDB must end with every record exactly once.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

// The issue asks for 500k records; DEVMESH_FAULT_AGGREGATOR_RECORDS sets another count.
constexpr long kCiRecords = 500000;

TEST(AggregatorKilled, EveryForwardedRecordIsStoredOnceWhileTheAggregatorIsKilledAtRandom) {
  const long records = env_size("DEVMESH_FAULT_AGGREGATOR_RECORDS", kCiRecords);
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;

  const int port = free_port(), sidecar_port = free_port();
  Engine aggregator(
      d, "aggregator",
      service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n") +
          "  inputs:\n    - {name: http, listen: '" + listen_on(port) +
          "', ack: delivered}\n  outputs:\n" +
          mariadb_output(db, d / "aggregator-dead.ndjson",
                         "      workers: 2\n      full_text: false\n      flush_interval: 50ms\n"));
  // Fast retries so that each aggregator life gets work at once; no retry limit (the default).
  Engine sidecar(
      d, "sidecar",
      service_head(
          "  exit_when_done: true\n  grace: 5s\n  http_listen: " + listen_on(sidecar_port) + "\n") +
          "  inputs:\n    - {name: dummy, rate: 0, batch: 1000, count: " + std::to_string(records) +
          kDummyFields + "}\n  outputs:\n    - {name: http_forward, url: 'http://" +
          listen_on(port) +
          "/ingest/logs', workers: 2, batch_size: 2000, retry_wait: 50ms, "
          "retry_max_wait: 500ms, timeout: 20s, dead_letter_path: " +
          d / "sidecar-dead.ndjson" + "}\n");

  aggregator.start();
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << aggregator.err();
  const auto began = std::chrono::steady_clock::now();
  sidecar.start();

  std::mt19937 rng(std::random_device{}());
  // At most 1.2 s between kills: the whole run may take only a few seconds on an idle machine
  // (500k records in under 6 s), and it must still see at least three kills.
  std::uniform_int_distribution<int> pause_ms(200, 1200);
  int kills = 0;
  double sidecar_retried = 0, sidecar_unanswered = 0;
  const auto deadline = began + 15min;
  while (sidecar.running() && std::chrono::steady_clock::now() < deadline) {
    // Sleep in small steps so a finished sidecar ends the loop at once.
    const auto kill_at =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(pause_ms(rng));
    while (sidecar.running() && std::chrono::steady_clock::now() < kill_at)
      std::this_thread::sleep_for(20ms);
    if (!sidecar.running()) break;
    // The sidecar's view so far: records it had to send again and requests that got no answer
    // (each kill cuts requests). Absent only when the sidecar has just finished.
    const std::string m = scrape_metrics(sidecar_port, d.path());
    sidecar_retried =
        find_metric(m, "devmesh_records_retried_total", "http_forward").value_or(sidecar_retried);
    sidecar_unanswered = find_metric(m, "devmesh_http_forward_requests_total", "code=\"error\"")
                             .value_or(sidecar_unanswered);
    ASSERT_TRUE(aggregator.running()) << "the aggregator died on its own:\n" << aggregator.err();
    aggregator.kill9();
    ++kills;
    aggregator.start();  // same port: the sidecar's retries find it again
  }
  ASSERT_EQ(sidecar.proc().wait_exit(60s), 0) << "the sidecar did not finish:\n" << sidecar.err();
  const double took = seconds_since(began);
  // The last kill may have come after the sidecar's final answer: its successor, just started,
  // must be up (its signal handlers in place) before SIGTERM, or the signal ends it (143).
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << aggregator.err();
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();

  AcceptedSet accepted;  // the dummy input's records, all taken by the sidecar
  accepted.add_range(1, static_cast<uint64_t>(records));
  ConservationReport report;
  EXPECT_TRUE(store_conserves(db, accepted, {dummy_event_id, dummy_fields}, &report));
  EXPECT_FALSE(std::filesystem::exists(d / "sidecar-dead.ndjson")) << "dead-lettered records";
  EXPECT_FALSE(std::filesystem::exists(d / "aggregator-dead.ndjson")) << "dead-lettered records";
  EXPECT_GE(kills, 3) << "too few kills to mean anything";
  // The kills left their trace in the sidecar: requests cut without an answer, records sent
  // again (read before the last kill, so the earlier kills').
  EXPECT_GT(sidecar_unanswered, 0) << "no request of the sidecar was ever cut";
  EXPECT_GT(sidecar_retried, 0) << "the sidecar never sent a record again";
  std::cout << "  " << records << " records, " << kills << " kills -9 of the aggregator, " << took
            << " s, " << sidecar_retried << " records sent again by the sidecar, "
            << sidecar_unanswered << " of its requests unanswered; " << report.describe() << "\n";
}

}  // namespace
