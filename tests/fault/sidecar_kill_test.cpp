// Fault test 2 (issue 6): a sidecar reading a numbered journal (journald input with a state
// file -> mariadb, or -> http_forward -> an aggregator -> mariadb) is killed -9 every 2 s and
// restarted until it has read everything; MariaDB must end with every journal entry exactly once.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";
// The count; DEVMESH_FAULT_JOURNAL_ENTRIES sets another.
constexpr long kCiEntries = 200000;

// One fixture journal for both tests (writing it takes seconds).
class SidecarKilled : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    entries_ = env_size("DEVMESH_FAULT_JOURNAL_ENTRIES", kCiEntries);
    journal_dir_ = new TempDir;
    const auto began = std::chrono::steady_clock::now();
    // Entry n: MESSAGE "entry n"; several units and priorities, as a node's journal has.
    Process fixture(
        {kFixture, "-o", *journal_dir_ / "system.journal", "--count", std::to_string(entries_),
         "--units", "app.service,web.service,db.service", "--priorities", "3,4,6"},
        journal_dir_->path(), "fixture");
    fixture_code_ = fixture.wait_exit(300s);
    fixture_err_ = fixture.err();
    fixture_s_ = seconds_since(began);
    std::filesystem::remove(*journal_dir_ / "fixture.stdout");
    std::filesystem::remove(*journal_dir_ / "fixture.stderr");
  }
  static void TearDownTestSuite() {
    delete journal_dir_;
    journal_dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(fixture_code_, 0) << fixture_err_;
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;
  }

  // Starts the sidecar (journald with a state file, then `outputs`) and kills it -9 every 2 s
  // until a run reads to the end and exits 0; then checks that the store has every entry once.
  void kill_every_two_seconds_until_done(const std::string &outputs) {
    Engine sidecar(d_, "sidecar",
                   service_head("  exit_when_done: true\n  grace: 5s\n") +
                       "  inputs:\n    - {name: journald, path: " + journal_dir_->path() +
                       ", follow: false, batch: 1000, state_file: " + d_ / "state/journald.cursor" +
                       "}\n  outputs:\n" + outputs);
    const auto began = std::chrono::steady_clock::now();
    int kills = 0, code = -1;
    std::vector<long long> stored_at_kill;
    while (std::chrono::steady_clock::now() < began + 10min) {
      sidecar.start();
      code = sidecar.proc().wait_exit(2s);
      if (code >= 0) break;
      sidecar.kill9();
      ++kills;
      stored_at_kill.push_back(db_.number("SELECT COUNT(*) FROM log_events"));
    }
    ASSERT_EQ(code, 0) << "the sidecar did not finish after " << kills << " kills:\n"
                       << sidecar.err();
    const double took = seconds_since(began);
    // Records the sidecar delivered are in the store once the aggregator (if any) answered.
    AcceptedSet accepted;  // every entry of the fixture
    accepted.add_range(1, static_cast<uint64_t>(entries_));
    ConservationReport report;
    EXPECT_TRUE(store_conserves(db_, accepted, {{}, journal_fields_of}, &report));
    EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson")) << "dead-lettered entries";
    EXPECT_GE(kills, 1) << "the sidecar finished before it was killed";
    // The kills left their trace: runs that resumed from the state file a killed run saved
    // (so they re-read whatever that run had read but not saved), and a kill mid-stream.
    int resumed = 0;
    for (int run = 1; run < sidecar.starts(); ++run)
      resumed += count_lines_with(read_file(d_ / ("sidecar." + std::to_string(run) + ".stderr")),
                                  "after the saved position");
    EXPECT_GE(resumed, 1) << "no restart resumed from a saved position";
    EXPECT_TRUE(std::any_of(stored_at_kill.begin(), stored_at_kill.end(), [&](long long n) {
      return n > 0 && n < entries_;
    })) << "no kill came while the store held some but not all entries";
    std::ostringstream progress;
    for (auto n : stored_at_kill) progress << " " << n;
    std::cout << "  " << entries_ << " journal entries (fixture written in " << fixture_s_
              << " s), " << kills << " kills -9 of the sidecar, " << sidecar.starts() << " starts, "
              << took << " s, " << resumed << " restarts from the saved position; rows stored at "
              << "each kill:" << progress.str() << "\n  " << report.describe() << "\n";
  }

  // Entry n as the sidecar maps it (the fixture's --units and --priorities above).
  static Fields journal_fields_of(uint64_t n) {
    return journal_fields(n, {"app.service", "web.service", "db.service"}, {3, 4, 6});
  }

  std::string mariadb_options() const {
    return "      workers: 2\n      batch_size: 2000\n      full_text: false\n"
           "      flush_interval: 50ms\n";
  }

  static inline long entries_ = 0;
  static inline TempDir *journal_dir_ = nullptr;
  static inline int fixture_code_ = -1;
  static inline std::string fixture_err_;
  static inline double fixture_s_ = 0;
  TempDir d_;
  MariaDb db_{d_.path()};
};

TEST_F(SidecarKilled, EveryJournalEntryIsStoredOnceWhenTheSidecarIsKilledEveryTwoSeconds) {
  kill_every_two_seconds_until_done(mariadb_output(db_, d_ / "dead.ndjson", mariadb_options()));
}

// The deployment's shape: the sidecar forwards to an aggregator (http input, ack: delivered),
// which stores; only the sidecar is killed.
TEST_F(SidecarKilled, EveryJournalEntryIsStoredOnceThroughAnAggregatorWhenTheSidecarIsKilled) {
  const int port = free_port();
  Engine aggregator(d_, "aggregator",
                    service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n") +
                        "  inputs:\n    - {name: http, listen: '" + listen_on(port) +
                        "', ack: delivered}\n  outputs:\n" +
                        mariadb_output(db_, d_ / "dead.ndjson", mariadb_options()));
  aggregator.start();
  ASSERT_TRUE(wait_listening(port, d_.path(), 30s)) << aggregator.err();
  kill_every_two_seconds_until_done(
      "    - {name: http_forward, url: 'http://" + listen_on(port) +
      "/ingest/logs', gzip: true, workers: 2, batch_size: 2000, retry_wait: 50ms, "
      "retry_max_wait: 500ms, dead_letter_path: " +
      d_ / "dead.ndjson" + "}\n");
  EXPECT_TRUE(aggregator.running()) << aggregator.err();
  aggregator.proc().kill(SIGTERM);
  EXPECT_EQ(aggregator.proc().wait_exit(30s), 0) << aggregator.err();
}

}  // namespace
