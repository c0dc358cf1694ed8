// Fault tests beside issue 6's list, on the database side: mariadbd killed -9 mid-stream (crash
// recovery, transactions cut at any point), and mariadbd frozen for longer than the output's
// read timeout (connections that time out while their transaction stays open on the server).
// Each fault is timed by the output's counters (rows stored, connections lost and re-made,
// batches retried), not by sleeps, and each must leave that trace.
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
        service_head("  exit_when_done: true\n  grace: 5s\n  http_listen: " + listen_on(mport_) +
                     "\n") +
            "  inputs:\n    - {name: dummy, rate: 5000, count: " + std::to_string(kRecords) +
            kDummyFields + "}\n  outputs:\n" +
            mariadb_output(db_, d_ / "dead.ndjson",
                           "      workers: 2\n      full_text: false\n      retry_wait: 100ms\n"
                           "      retry_max_wait: 1s\n" +
                               output_extra));
    engine_->start();
    ASSERT_TRUE(wait_listening(mport_, d_.path(), 30s)) << engine_->err();
  }

  // A counter of the running engine (the mariadb output's, or the engine's for it).
  double counter(const std::string &name) {
    return scrape_metric(mport_, d_.path(), name,
                         name.find("devmesh_mariadb_") == 0 ? "" : "plugin=\"mariadb\"");
  }

  // Waits until `name` reaches `at_least`; a failure says where it stopped.
  void wait_for(const std::string &name, double at_least, const std::string &what) {
    double v = -1;
    EXPECT_TRUE(wait_until([&] { return (v = counter(name)) >= at_least; }, 60s))
        << what << ": " << name << " is " << v << ", not " << at_least << "\n"
        << scrape_metrics(mport_, d_.path()) << engine_->err();
  }

  void expect_every_record_once(const std::string &what) {
    ASSERT_EQ(engine_->proc().wait_exit(180s), 0) << engine_->err();
    AcceptedSet accepted;
    accepted.add_range(1, kRecords);
    ConservationReport report;
    EXPECT_TRUE(store_conserves(db_, accepted, {dummy_event_id, dummy_fields}, &report));
    EXPECT_FALSE(std::filesystem::exists(d_ / "dead.ndjson")) << "dead-lettered records";
    std::cout << "  " << what << ": " << report.describe() << "\n";
  }

  TempDir d_;
  MariaDb db_{d_.path()};
  int mport_ = free_port();
  std::unique_ptr<Engine> engine_;
};

// Each kill comes once a quarter more of the records is stored (mid-stream, whatever the
// machine's speed); the restart once the output has seen the server gone.
TEST_F(DatabaseCrash, EveryRecordIsStoredOnceWhenMariadbIsKilledMidStreamAndRestarted) {
  start_engine();
  for (int crash = 0; crash < 2; ++crash) {
    wait_for("devmesh_mariadb_rows_inserted_total", kRecords * (crash + 1) / 4.0,
             "stored before crash " + std::to_string(crash + 1));
    const double lost = counter("devmesh_mariadb_connection_lost_total"),
                 refused = counter("devmesh_mariadb_connect_errors_total"),
                 retried = counter("devmesh_records_retried_total");
    db_.kill_now();
    // The output noticed: a statement lost its connection, or a new one was refused.
    double seen = 0;
    EXPECT_TRUE(wait_until(
        [&] {
          seen = counter("devmesh_mariadb_connection_lost_total") - lost +
                 counter("devmesh_mariadb_connect_errors_total") - refused;
          return seen > 0;
        },
        60s))
        << "the output never noticed mariadbd's death\n"
        << engine_->err();
    // ...and the engine is sending a batch again.
    wait_for("devmesh_records_retried_total", retried + 1, "retried while mariadbd was down");
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;  // InnoDB crash recovery
    // Each crash leaves its trace: the output connected again.
    wait_for("devmesh_mariadb_reconnects_total", crash + 1, "reconnected after crash");
  }
  expect_every_record_once("mariadbd killed -9 twice");
}

// Frozen once a quarter of the records is stored, thawed once the output's 3 s read timeout
// has fired (a statement lost its connection) and a reconnection has failed to connect in
// time: the freeze outlasted both timeouts, whatever the machine's speed.
TEST_F(DatabaseCrash, EveryRecordIsStoredOnceWhenMariadbFreezesLongerThanTheReadTimeout) {
  start_engine("      timeout: 3s\n      connect_timeout: 2s\n");
  wait_for("devmesh_mariadb_rows_inserted_total", kRecords / 4.0, "stored before the freeze");
  const double lost = counter("devmesh_mariadb_connection_lost_total"),
               refused = counter("devmesh_mariadb_connect_errors_total"),
               retried = counter("devmesh_records_retried_total");
  db_.freeze();
  wait_for("devmesh_mariadb_connection_lost_total", lost + 1, "a read timed out in the freeze");
  wait_for("devmesh_mariadb_connect_errors_total", refused + 1,
           "a connection timed out in the freeze");
  wait_for("devmesh_records_retried_total", retried + 1, "retried in the freeze");
  db_.thaw();
  wait_for("devmesh_mariadb_reconnects_total", 1, "reconnected after the freeze");
  expect_every_record_once("mariadbd frozen past the 3 s read timeout and the 2 s connect timeout");
}

}  // namespace
