// Fault test (issue 17): an aggregator with disk storage (http ack: delivered -> mariadb,
// sync_interval 5s) answers each request once it is delivered, before its block's fsync. It is
// killed -9 three times mid-stream while a sidecar (numbered dummy records -> http_forward)
// forwards to it: MariaDB must end with every record exactly once, and each restart replays
// only what was still unanswered when it died (about the requests in flight): blocks every
// output finished before their fsync are named in the .acks files and never delivered again.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

constexpr long kCiRecords = 100000;
constexpr int kWorkers = 2, kBatch = 2000;  // the sidecar's

TEST(StorageAggregatorKilled, RecordsDeliveredBeforeTheirFsyncAreStoredOnceAndNeverReplayed) {
  const long records = env_size("DEVMESH_FAULT_STORAGE_AGGREGATOR_RECORDS", kCiRecords);
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;

  const int port = free_port(), sidecar_port = free_port();
  Engine aggregator(
      d, "aggregator",
      service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n  storage:\n    path: " +
                   d / "data" + "\n    sync: interval\n    sync_interval: 5s\n") +
          "  inputs:\n    - {name: http, listen: '" + listen_on(port) +
          "', ack: delivered}\n  outputs:\n" +
          mariadb_output(db, d / "aggregator-dead.ndjson",
                         "      workers: 2\n      full_text: false\n      flush_interval: 50ms\n"));
  Engine sidecar(
      d, "sidecar",
      service_head(
          "  exit_when_done: true\n  grace: 5s\n  http_listen: " + listen_on(sidecar_port) + "\n") +
          "  inputs:\n    - {name: dummy, rate: 0, batch: 1000, count: " + std::to_string(records) +
          kDummyFields + "}\n  outputs:\n    - {name: http_forward, url: 'http://" +
          listen_on(port) + "/ingest/logs', workers: " + std::to_string(kWorkers) +
          ", batch_size: " + std::to_string(kBatch) +
          ", gzip: false, retry_wait: 50ms, retry_max_wait: 500ms, timeout: 20s, "
          "dead_letter_path: " +
          d / "sidecar-dead.ndjson" + "}\n");

  aggregator.start();
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << aggregator.err();
  const auto began = std::chrono::steady_clock::now();
  sidecar.start();

  // Kills timed by rows stored (a quarter, half, three quarters), never by a sleep.
  int kills = 0;
  double replayed = 0, fsyncs_before_kills = 0, answered_before_kills = 0;
  for (int k = 1; k <= 3; k++) {
    const long long mark = records * k / 4;
    ASSERT_TRUE(wait_until(
        [&] { return !sidecar.running() || db.number("SELECT COUNT(*) FROM log_events") >= mark; },
        300s))
        << "rows stuck below " << mark << "\n"
        << aggregator.err();
    if (!sidecar.running()) break;
    ASSERT_TRUE(aggregator.running()) << "the aggregator died on its own:\n" << aggregator.err();
    const std::string m = scrape_metrics(port, d.path());
    fsyncs_before_kills += metric_value(m, "devmesh_storage_fsyncs_total", "");
    answered_before_kills +=
        find_metric(m, "devmesh_http_requests_total", "status=\"200\"").value_or(0);
    // None of this life's blocks was fsynced (no fsync in 5 s); a replay of the blocks it
    // delivered would bring back at least this many.
    const double delivered = metric_value(m, "devmesh_records_out_total", "mariadb");
    aggregator.kill9();
    ++kills;
    aggregator.start();
    ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << aggregator.err();
    // The replay ran before the listener opened: what this life found unfinished on disk.
    const double r = scrape_metric(port, d.path(), "devmesh_storage_records_replayed_total");
    EXPECT_LT(r, delivered) << "a restart replayed blocks delivered before the kill";
    replayed += r;
  }
  ASSERT_EQ(sidecar.proc().wait_exit(300s), 0) << "the sidecar did not finish:\n" << sidecar.err();
  const double took = seconds_since(began);
  std::string why;
  EXPECT_TRUE(wait_settled(port, d.path(), 60s, &why)) << why;
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();

  AcceptedSet accepted;  // the dummy input's records, all taken by the sidecar
  accepted.add_range(1, static_cast<uint64_t>(records));
  ConservationReport report;
  EXPECT_TRUE(store_conserves(db, accepted, {dummy_event_id, dummy_fields}, &report));
  EXPECT_FALSE(std::filesystem::exists(d / "sidecar-dead.ndjson")) << "dead-lettered records";
  EXPECT_FALSE(std::filesystem::exists(d / "aggregator-dead.ndjson")) << "dead-lettered records";
  EXPECT_EQ(kills, 3) << "the stream ended before the third kill";
  // Requests were answered without waiting for fsyncs (one fsync per answer at most would mean
  // each waited for one).
  EXPECT_GT(answered_before_kills, fsyncs_before_kills);
  std::cout << "  " << records << " records, " << kills << " kills -9 of the aggregator, " << took
            << " s; before the kills " << answered_before_kills << " requests answered, "
            << fsyncs_before_kills << " fsyncs; " << replayed << " records replayed in all; "
            << report.describe() << "\n";
}

}  // namespace
