// Fault test 6 (issue 6): a sidecar with disk storage (journald with a state file and http with
// ack: durable -> mariadb) crashes at each named point (DEVMESH_CRASH_AT, compiled in with
// DEVMESH_CRASH_POINTS) three times in a row, restarting after each; the store must end with
// every journal entry and every 2xx-acknowledged http record exactly once.
#include <gtest/gtest.h>

#include <filesystem>
#include <iostream>

#include <curl/curl.h>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";
constexpr long kEntries = 3000;  // journal entries "entry 1".."entry 3000"
constexpr long kBatch = 100;     // http records per POST, numbered after the journal's
constexpr int kPostsPerRun = 12;

// POSTs with libcurl; the status, 0 when the connection failed.
int post(const std::string &url, const std::string &body) {
  CURL *e = curl_easy_init();
  curl_slist *h = curl_slist_append(nullptr, "Expect:");
  h = curl_slist_append(h, "Content-Type: application/json");  // libcurl's default is a form
  auto sink = +[](char *, size_t s, size_t n, void *) { return s * n; };
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  long code = 0;
  if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  return static_cast<int>(code);
}

class CrashPoints : public ::testing::TestWithParam<const char *> {
 protected:
  static void SetUpTestSuite() {
    journal_ = new TempDir;
    Process fixture({kFixture, "-o", *journal_ / "system.journal", "--count",
                     std::to_string(kEntries), "--units", "app.service,db.service"},
                    journal_->path(), "fixture");
    fixture_code_ = fixture.wait_exit(120s);
  }
  static void TearDownTestSuite() {
    delete journal_;
    journal_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(fixture_code_, 0);
    std::string err;
    ASSERT_TRUE(db_.start(&err)) << err;
  }

  std::string config(int port, int mport) const {
    return service_head("  http_listen: " + listen_on(mport) +
                        "\n  grace: 5s\n"
                        "  storage:\n    path: " +
                        d_ / "data" + "\n    sync_interval: 100ms\n    segment_size: 64KiB\n") +
           "  inputs:\n    - {name: journald, path: " + journal_->path() +
           ", follow: false, batch: 200, state_file: " + d_ / "state/journald.cursor" +
           "}\n    - {name: http, ack: durable, listen: '" + listen_on(port) + "'}\n  outputs:\n" +
           // flush: interval: deliveries lag the 100 ms fsyncs, so every run has records in
           // flight across several of them (delivered first, a ticket's STORED comes at once and
           // the posts end before the Nth fsync a point waits for).
           mariadb_output(db_, d_ / "dead.ndjson",
                          "      batch_size: 300\n      flush: interval\n");
  }

  // POST n: records numbered from `first`, every field fixed by its number, so a retried
  // request carries the same event ids.
  static std::string body(long first) {
    std::string b = "{\"logs\":[";
    for (long i = 0; i < kBatch; i++) b += (i ? "," : "") + http_record(first + i, "crash");
    return b + "]}";
  }

  // What the store must hold for number n: a journal entry, or an http record after them.
  static Fields sent_fields(uint64_t n) {
    return n <= kEntries ? journal_fields(n, {"app.service", "db.service"}, {6})
                         : http_record_fields(n, "crash");
  }

  TempDir d_;
  MariaDb db_{d_.path()};
  static TempDir *journal_;
  static int fixture_code_;
};

TempDir *CrashPoints::journal_ = nullptr;
int CrashPoints::fixture_code_ = -1;

TEST_P(CrashPoints, ThreeCrashesInARowLoseAndDuplicateNothing) {
  const std::string point = GetParam();
  const std::string yaml_path = d_ / "sidecar.yaml";
  AcceptedSet accepted;
  accepted.add_range(1, kEntries);
  long next = kEntries + 1;  // the next http record number to send
  int fired = 0;
  for (int run = 0; run < 4; run++) {
    const bool crash = run < 3;
    const int port = free_port(), mport = free_port();
    write_file(yaml_path, config(port, mport));
    std::vector<std::string> env;
    // The Nth hit of the point in run N (a crash later in the flow each time); the state file
    // is written only while the journal has unacknowledged entries, so that one crashes at its
    // first write in every run (the crash keeps the old state, so there always is one).
    const int nth = point == "during_state_write" ? 1 : run + 1;
    if (crash) env.push_back("DEVMESH_CRASH_AT=" + point + ":" + std::to_string(nth));
    Process p({DEVMESH_BIN, "-c", yaml_path}, d_.path(), "sidecar." + std::to_string(run), env);
    // Listening, or already crashed (a point early in the start-up: waiting out the deadline
    // for a dead process cost 20 s a run).
    ASSERT_TRUE(wait_until(
        [&] { return p.wait_exit(0ms) >= 0 || wait_listening(mport, d_.path(), 0ms); }, 20s))
        << p.err();
    // The client sends until the engine dies; an unanswered request is sent again (same
    // records) to the next run, as a real client retries.
    for (int i = 0; i < kPostsPerRun && p.wait_exit(0ms) < 0; i++) {
      if (post("http://" + listen_on(port) + "/ingest/logs", body(next)) != 200) break;
      accepted.add_range(next, next + kBatch - 1);
      next += kBatch;
    }
    if (crash) {
      // The journal, segment deletes and state writes go on after the posts: give the point
      // time to come.
      if (p.wait_exit(15s) == 137) fired++;
      p.kill(SIGKILL);
      p.wait_exit(10s);
      continue;
    }
    // The last run has no crash point: everything accepted must arrive, once.
    const long long want = static_cast<long long>(accepted.count());
    bool all =
        wait_until([&] { return db_.number("SELECT COUNT(*) FROM log_events") >= want; }, 120s);
    p.kill(SIGTERM);
    EXPECT_EQ(p.wait_exit(30s), 0) << p.err();
    EXPECT_TRUE(all) << db_.number("SELECT COUNT(*) FROM log_events") << " of " << want << "\n"
                     << p.err();
  }
  EXPECT_EQ(fired, 3) << "the crash point " << point << " did not fire in every run";
  ConservationReport report;
  EXPECT_TRUE(store_conserves(db_, accepted, {{}, sent_fields}, &report));
  std::cout << point << ": " << fired << " crashes, " << report.describe() << "\n";
}

INSTANTIATE_TEST_SUITE_P(Named, CrashPoints,
                         ::testing::Values("after_append", "after_fsync", "after_2xx",
                                           "after_output_commit", "during_segment_delete",
                                           "during_state_write"),
                         [](const auto &info) { return std::string(info.param); });

}  // namespace
