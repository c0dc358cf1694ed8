// Fault test 2 (issue 6): a sidecar reading a numbered journal (journald input with a state
// file -> mariadb) is killed -9 every 2 s and restarted until it has read everything; MariaDB
// must end with every journal entry exactly once.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";
// The count; DEVMESH_FAULT_JOURNAL_ENTRIES sets another.
constexpr long kCiEntries = 200000;

TEST(SidecarKilled, EveryJournalEntryIsStoredOnceWhenTheSidecarIsKilledEveryTwoSeconds) {
  const long entries = env_size("DEVMESH_FAULT_JOURNAL_ENTRIES", kCiEntries);
  TempDir d;
  std::filesystem::create_directories(d / "journal");
  // Entry n: MESSAGE "entry n"; several units and priorities, as a node's journal has.
  auto fixture_began = std::chrono::steady_clock::now();
  {
    Process fixture(
        {kFixture, "-o", d / "journal/system.journal", "--count", std::to_string(entries),
         "--units", "app.service,web.service,db.service", "--priorities", "3,4,6"},
        d.path(), "fixture");
    ASSERT_EQ(fixture.wait_exit(300s), 0) << fixture.err();
  }
  const double fixture_s = seconds_since(fixture_began);

  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  Engine sidecar(d, "sidecar",
                 service_head("  exit_when_done: true\n  grace: 5s\n") +
                     "  inputs:\n    - {name: journald, path: " + d / "journal" +
                     ", follow: false, batch: 1000, state_file: " + d / "state/journald.cursor" +
                     "}\n  outputs:\n" +
                     mariadb_output(db, d / "dead.ndjson",
                                    "      workers: 2\n      batch_size: 2000\n"
                                    "      full_text: false\n      flush_interval: 50ms\n"));
  const auto began = std::chrono::steady_clock::now();
  int kills = 0, code = -1;
  std::vector<long long> stored_at_kill;
  while (std::chrono::steady_clock::now() < began + 10min) {
    sidecar.start();
    code = sidecar.proc().wait_exit(2s);
    if (code >= 0) break;
    sidecar.kill9();
    ++kills;
    stored_at_kill.push_back(db.number("SELECT COUNT(*) FROM log_events"));
  }
  ASSERT_EQ(code, 0) << "the sidecar did not finish after " << kills << " kills:\n"
                     << sidecar.err();
  const double took = seconds_since(began);

  AcceptedSet accepted;  // every entry of the fixture
  accepted.add_range(1, static_cast<uint64_t>(entries));
  ConservationReport report;
  EXPECT_TRUE(store_conserves(db, accepted, {}, &report));
  EXPECT_FALSE(std::filesystem::exists(d / "dead.ndjson")) << "dead-lettered entries";
  EXPECT_GE(kills, 2) << "the sidecar finished before it was killed enough to mean anything";
  std::ostringstream progress;
  for (auto n : stored_at_kill) progress << " " << n;
  std::cout << "  " << entries << " journal entries (fixture written in " << fixture_s << " s), "
            << kills << " kills -9 of the sidecar, " << sidecar.starts() << " starts, " << took
            << " s; rows stored at each kill:" << progress.str() << "\n  " << report.describe()
            << "\n";
}

}  // namespace
