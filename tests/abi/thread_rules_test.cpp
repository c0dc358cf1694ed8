// The ABI's thread rules through the real devmesh binary and a test input with threads of its
// own (tests/plugins/threaded): a [loop] entry called from such a thread aborts naming the entry
// (DEVMESH_THREAD_CHECKS), and submit from such threads keeps submit's contract under
// backpressure and at stop: every accepted ticket acknowledged once, every record delivered once.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string head(const std::string &service = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR "]\n" + service +
         "pipeline:\n";
}

// The report's key=value pairs (tests/plugins/threaded writes them at destroy).
std::map<std::string, uint64_t> read_report(const std::string &path) {
  std::map<std::string, uint64_t> r;
  std::istringstream in(read_file(path));
  std::string kv;
  while (in >> kv) {
    const auto eq = kv.find('=');
    if (eq != std::string::npos) r[kv.substr(0, eq)] = std::stoull(kv.substr(eq + 1));
  }
  return r;
}

// How many times each seq appears in the flaky output's "seq<TAB>message" lines.
std::map<uint64_t, int> seqs_in(const std::string &path) {
  std::map<uint64_t, int> seen;
  for (const std::string &line : read_lines(path))
    if (!line.empty()) seen[std::stoull(line.substr(0, line.find('\t')))]++;
  return seen;
}

class LoopOnlyEntryFromAPluginThread : public ::testing::TestWithParam<const char *> {};

TEST_P(LoopOnlyEntryFromAPluginThread, AbortsNamingTheEntry) {
#ifndef DEVMESH_THREAD_CHECKS
  GTEST_SKIP() << "built without DEVMESH_THREAD_CHECKS (a Release build)";
#endif
  const std::string entry = GetParam();
  TempDir d;
  write_file(d / "p.yaml", head() +
                               "  inputs:\n    - name: threaded\n      alias: rogue\n"
                               "      misuse: " +
                               entry + "\n  outputs:\n    - name: 'null'\n");
  Process p({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "devmesh");
  const int code = p.wait_exit(30s);
  EXPECT_EQ(code, 128 + SIGABRT) << p.err();
  const std::string who = entry == "http_reply" ? "unknown" : "rogue";
  EXPECT_NE(p.err().find("devmesh: " + entry + " called off the loop thread (plugin " + who + ")"),
            std::string::npos)
      << p.err();
}

INSTANTIATE_TEST_SUITE_P(ThreadChecks, LoopOnlyEntryFromAPluginThread,
                         ::testing::Values("timer_new", "input_finished", "http_reply"),
                         [](const auto &info) { return std::string(info.param); });

// 200,000 records from two threads into an output that cannot keep up: the threads get
// DM_ERR_FULL, wait for resume() and retry; nothing is lost or repeated.
TEST(SubmitFromPluginThreads, EveryRecordArrivesOnceUnderBackpressure) {
  TempDir d;
  const int port = free_port();
  const uint64_t records = 200000, batch = 100;
  write_file(d / "p.yaml",
             head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                 "  inputs:\n    - name: threaded\n      alias: producer\n      records: " +
                 std::to_string(records) + "\n      threads: 2\n      batch: " +
                 std::to_string(batch) + "\n      report: " + d / "report" +
                 "\n  outputs:\n    - name: flaky\n      path: " + d / "out" +
                 "\n      delay: 4ms\n      batch_size: 200\n      queue_limit: 256KiB\n");
  Process p({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "devmesh");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  std::string text;
  const double tickets = static_cast<double>(records / batch);
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get(url, &text, d.path()) == 200 &&
               find_metric(text, "devmesh_input_acks_total", "instance=\"producer\"") == tickets;
      },
      180s))
      << text << p.err();
  // Backpressure engaged: the engine paused the input, and its threads were refused meanwhile.
  EXPECT_GT(metric_value(text, "devmesh_threaded_pauses_total", "instance=\"producer\""), 0);
  EXPECT_GT(metric_value(text, "devmesh_threaded_full_total", "instance=\"producer\""), 0);
  EXPECT_GT(metric_value(text, "devmesh_input_rejected_total", "instance=\"producer\""), 0);
  EXPECT_EQ(metric_value(text, "devmesh_records_in_total", "instance=\"producer\""), records);
  ASSERT_TRUE(wait_settled(port, d.path(), 60s)) << p.err();
  p.kill(SIGTERM);
  ASSERT_EQ(p.wait_exit(60s), 0) << p.err();

  auto r = read_report(d / "report");
  EXPECT_EQ(r["accepted"], records / batch);
  EXPECT_EQ(r["acked"], records / batch);
  EXPECT_EQ(r["unacked"], 0u);
  EXPECT_EQ(r["unknown"], 0u);
  EXPECT_EQ(r["duplicate"], 0u);
  EXPECT_EQ(r["short"], 0u);
  EXPECT_EQ(r["records"], records);
  EXPECT_EQ(r["delivered"], records);
  EXPECT_EQ(r["refused"], 0u);
  EXPECT_EQ(r["in_order"], 1u);
  EXPECT_GT(r["full"], 0u);
  EXPECT_GT(r["pauses"], 0u);
  const auto seen = seqs_in(d / "out");
  EXPECT_EQ(seen.size(), records);
  size_t repeated = 0;
  for (auto &[seq, n] : seen) repeated += n != 1 || seq >= records;
  EXPECT_EQ(repeated, 0u);
}

// Stopped while its threads are still submitting: what submit accepted (a ticket) is routed and
// acknowledged, what came after the stop began is refused (DM_ERR, the batch still the
// plugin's, counted rejected); nothing is acknowledged twice or lost in between.
TEST(SubmitFromPluginThreads, StoppingMidStreamRoutesEveryAcceptedBatch) {
  TempDir d;
  const int port = free_port();
  write_file(d / "p.yaml",
             head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                 "  inputs:\n    - name: threaded\n      alias: producer\n"
                 "      records: 1000000000\n      threads: 3\n      batch: 50\n"
                 "      submit_at_stop: true\n      report: " +
                 d / "report" + "\n  outputs:\n    - name: flaky\n      path: " + d / "out" +
                 "\n      delay: 1ms\n      batch_size: 200\n      queue_limit: 1MiB\n");
  Process p({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "devmesh");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  std::string text;
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get(url, &text, d.path()) == 200 &&
               find_metric(text, "devmesh_input_acks_total", "instance=\"producer\"").value_or(0) >=
                   100;
      },
      60s))
      << text << p.err();
  p.kill(SIGTERM);
  ASSERT_EQ(p.wait_exit(60s), 0) << p.err();

  auto r = read_report(d / "report");
  EXPECT_GE(r["accepted"], 100u);
  EXPECT_EQ(r["acked"], r["accepted"]);
  EXPECT_EQ(r["unacked"], 0u);
  EXPECT_EQ(r["unknown"], 0u);
  EXPECT_EQ(r["duplicate"], 0u);
  EXPECT_EQ(r["short"], 0u);
  EXPECT_EQ(r["delivered"], r["records"]);
  EXPECT_EQ(r["in_order"], 1u);
  // Each thread submitted once more inside stop(): refused, and freed by the plugin (ASan
  // would see the engine free it too).
  EXPECT_EQ(r["refused"], 3u * 50u);
  const auto seen = seqs_in(d / "out");
  EXPECT_EQ(seen.size(), r["records"]);
  size_t repeated = 0;
  for (auto &[seq, n] : seen) repeated += n != 1;
  EXPECT_EQ(repeated, 0u);
}

}  // namespace
