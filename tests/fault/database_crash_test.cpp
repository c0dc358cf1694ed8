// Fault tests beside issue 6's list, on the database side: mariadbd killed -9 mid-stream (crash
// recovery, transactions cut at any point), and mariadbd frozen for longer than the output's
// read timeout (connections that time out while their transaction stays open on the server).
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

constexpr long kRecords = 100000;

class DatabaseCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;
  }

  // Numbered records at 5,000/s straight into mariadb; the engine exits once all are stored.
  void start_engine(const std::string &output_extra = "") {
    engine_ = std::make_unique<Engine>(
        d_, "engine",
        service_head("  exit_when_done: true\n  grace: 5s\n") +
            "  inputs:\n    - {name: dummy, rate: 5000, count: " + std::to_string(kRecords) +
            "}\n  outputs:\n" +
            mariadb_output(db_, d_ / "dead.ndjson",
                           "      workers: 2\n      full_text: false\n      retry_wait: 100ms\n"
                           "      retry_max_wait: 1s\n" +
                               output_extra));
    engine_->start();
  }

  void expect_every_record_once(const std::string &what) {
    ASSERT_EQ(engine_->proc().wait_exit(180s), 0) << engine_->err();
    AcceptedSet accepted;
    accepted.add_range(1, kRecords);
    ConservationReport report;
    EXPECT_TRUE(store_conserves(db_, accepted, dummy_event_id, &report));
    EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson")) << "dead-lettered records";
    std::cout << "  " << what << ": " << report.describe() << "\n";
  }

  TempDir d_;
  MariaDb db_{d_.path()};
  std::unique_ptr<Engine> engine_;
};

TEST_F(DatabaseCrash, EveryRecordIsStoredOnceWhenMariadbIsKilledMidStreamAndRestarted) {
  start_engine();
  for (int crash = 0; crash < 2; ++crash) {
    std::this_thread::sleep_for(4s);
    db_.kill_now();
    std::this_thread::sleep_for(3s);
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;  // InnoDB crash recovery
  }
  expect_every_record_once("mariadbd killed -9 twice");
}

TEST_F(DatabaseCrash, EveryRecordIsStoredOnceWhenMariadbFreezesLongerThanTheReadTimeout) {
  start_engine("      timeout: 3s\n      connect_timeout: 2s\n");
  std::this_thread::sleep_for(4s);
  db_.freeze();
  std::this_thread::sleep_for(10s);
  db_.thaw();
  expect_every_record_once("mariadbd frozen 10 s, read timeout 3 s");
}

}  // namespace
