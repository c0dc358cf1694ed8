// The pipeline end to end through the real binary: tag matching, flush by size and by time,
// retries with backoff, dead-lettering, poison isolation, backpressure, graceful shutdown,
// and /health and /metrics over HTTP. (A third-party plugin loaded by path: tests/sdk.)
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string head(const std::string &extra_service = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR "]\n" +
         extra_service + "pipeline:\n";
}

std::unique_ptr<Process> start(const TempDir &d, const std::string &yaml,
                               const std::string &name = "engine") {
  write_file(d / (name + ".yaml"), yaml);
  return std::make_unique<Process>(
      std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name);
}

// Sequence numbers in a flaky output file ("seq<TAB>message" lines).
std::vector<long> seqs(const std::string &path) {
  std::vector<long> v;
  for (auto &l : read_lines(path)) v.push_back(std::atol(l.c_str()));
  return v;
}

// Every number 1..n exactly once.
void expect_exactly_once(const std::vector<long> &got, long n) {
  std::map<long, int> count;
  for (long s : got) count[s]++;
  long missing = 0, dup = 0;
  for (long i = 1; i <= n; i++) {
    if (count[i] == 0) missing++;
    if (count[i] > 1) dup++;
  }
  EXPECT_EQ(missing, 0) << "records missing";
  EXPECT_EQ(dup, 0) << "records duplicated";
  EXPECT_EQ(static_cast<long>(got.size()), n);
}

TEST(Pipeline, RecordsGoOnlyToOutputsWhoseMatchFitsTheirTag) {
  TempDir d;
  auto e = start(
      d, head("  exit_when_done: true\n") +
             "  inputs:\n"
             "    - {name: dummy, tag: app.web, rate: 0, count: 30, message: 'web {seq}'}\n"
             "    - {name: dummy, tag: sys.kernel, rate: 0, count: 20, message: 'kernel {seq}'}\n"
             "  outputs:\n"
             "    - {name: flaky, match: 'app.*', path: " +
             d / "app.txt" +
             "}\n"
             "    - {name: flaky, match: '*', path: " +
             d / "all.txt" +
             "}\n"
             "    - {name: flaky, match: 'nothing.*', path: " +
             d / "none.txt" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto app = read_lines(d / "app.txt");
  EXPECT_EQ(app.size(), 30u);
  for (auto &l : app) EXPECT_NE(l.find("\tweb "), std::string::npos) << l;
  EXPECT_EQ(read_lines(d / "all.txt").size(), 50u);
  EXPECT_EQ(read_lines(d / "none.txt").size(), 0u);
}

// Outputs may route by tag (a table, an index, a topic per tag): every flush is given the tag
// of its records, so a chunk never mixes records of two inputs with different tags.
TEST(Pipeline, EachFlushCarriesTheTagOfItsRecordsWhenTwoTagsShareAnOutput) {
  TempDir d;
  // Small batches from two inputs running flat out interleave in the one output's queue.
  auto e = start(d, head("  exit_when_done: true\n") +
                        "  inputs:\n"
                        "    - {name: dummy, tag: alpha, rate: 0, count: 500, batch: 5, "
                        "message: 'alpha {seq}'}\n"
                        "    - {name: dummy, tag: beta, rate: 0, count: 500, batch: 5, "
                        "message: 'beta {seq}'}\n"
                        "  outputs:\n"
                        "    - {name: flaky, match: '*', batch_size: 1000, flush_interval: 1h, "
                        "path: " +
                        d / "out.txt" + ", tags_path: " + d / "tags.txt" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  std::map<std::string, size_t> per_tag;
  size_t wrong = 0;
  for (auto &l : read_lines(d / "tags.txt")) {
    const std::string tag = l.substr(0, l.find('\t'));
    const std::string message = l.substr(l.find('\t') + 1);
    per_tag[tag]++;
    if (message.rfind(tag + " ", 0) != 0 && wrong++ < 5)
      ADD_FAILURE() << "a record flushed with tag '" << tag << "': " << message;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(per_tag["alpha"], 500u);
  EXPECT_EQ(per_tag["beta"], 500u);
  EXPECT_EQ(per_tag.size(), 2u);
  EXPECT_EQ(read_lines(d / "out.txt").size(), 1000u);
}

TEST(Pipeline, FlushesWhenBatchSizeIsReachedAndTheRestOnShutdown) {
  TempDir d;
  const int port = free_port();
  auto e = start(d, head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                        "  inputs:\n"
                        "    - {name: dummy, tag: counted, rate: 0, count: 25}\n"
                        // A second input that never finishes: when every input has finished,
                        // partial chunks are flushed at once, which this test must not see.
                        "    - {name: dummy, tag: idle, rate: 0.001}\n"
                        "  outputs:\n"
                        "    - {name: flaky, match: counted, path: " +
                        d / "out.txt" + ", batch_size: 10, flush_interval: 1h, flush: interval}\n");
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= 20; }, 30s)) << e->err();
  // Settled: the output has all 25, delivered two full batches and holds the other 5 queued.
  std::string m;
  const std::string flaky = "instance=\"flaky.0\"";
  EXPECT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &m, d.path());
        return metric_value(m, "devmesh_records_in_total", flaky) == 25 &&
               metric_value(m, "devmesh_records_out_total", flaky) == 20 &&
               metric_value(m, "devmesh_queue_records", flaky) == 5;
      },
      30s))
      << "a partial batch was flushed before its time, or never queued\n"
      << m;
  EXPECT_EQ(read_lines(d / "out.txt").size(), 20u) << "a partial batch was flushed before its time";
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(10s), 0) << e->err();
  expect_exactly_once(seqs(d / "out.txt"), 25);
}

// flush: adaptive (the default): an output with a free slot and nothing queued does not wait
// for its flush_interval (an hour here) to send what one loop turn gave it.
TEST(Pipeline, AnIdleOutputFlushesASingleRecordWithoutWaitingForItsFlushInterval) {
  TempDir d;
  const int port = free_port();
  auto e = start(d, head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                        "  inputs:\n"
                        "    - {name: dummy, tag: one, rate: 0, count: 1}\n"
                        // Never finishes: a finished pipeline flushes every partial chunk anyway.
                        "    - {name: dummy, tag: idle, rate: 0.001}\n"
                        "  outputs:\n"
                        "    - {name: flaky, match: one, path: " +
                        d / "out.txt" + ", batch_size: 1000, flush_interval: 1h}\n");
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= 1; }, 30s))
      << "the record waited for flush_interval\n"
      << e->err();
  std::string m;
  const std::string flaky = "instance=\"flaky.0\"";
  EXPECT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &m, d.path());
        return find_metric(m, "devmesh_records_out_total", flaky).value_or(-1) == 1 &&
               find_metric(m, "devmesh_queue_records", flaky).value_or(-1) == 0;
      },
      30s))
      << m;
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(10s), 0) << e->err();
  expect_exactly_once(seqs(d / "out.txt"), 1);
}

// A slow output falls behind: the chunks flush_interval seals meanwhile wait in its queue and
// go out merged, up to batch_size, never mixing tags, each record delivered exactly once and
// every ticket answered (records in = records out, nothing left queued).
TEST(Pipeline, AnOutputBehindMergesItsQueuedChunksUpToBatchSize) {
  TempDir d;
  const int port = free_port();
  const long n = 3000;
  auto e = start(d, head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                        "  inputs:\n"
                        "    - {name: dummy, tag: alpha, rate: 2000, batch: 5, count: " +
                        std::to_string(n) +
                        ", message: 'alpha {seq}'}\n"
                        "    - {name: dummy, tag: beta, rate: 50, batch: 5, count: 50, "
                        "message: 'beta {seq}'}\n"
                        "    - {name: dummy, tag: idle, rate: 0.001}\n"
                        "  outputs:\n"
                        "    - {name: flaky, match: alpha, alias: slow, path: " +
                        d / "out.txt" + ", attempts_path: " + d / "attempts.txt" +
                        ", delay: 100ms, batch_size: 400, flush_interval: 5ms}\n"
                        "    - {name: flaky, match: '*a', alias: mixed, path: " +
                        d / "mixed.txt" + ", tags_path: " + d / "tags.txt" +
                        ", delay: 20ms, batch_size: 400, flush_interval: 5ms}\n");
  std::string m;
  const std::string slow = "instance=\"slow\"", mixed = "instance=\"mixed\"";
  ASSERT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &m, d.path());
        return find_metric(m, "devmesh_records_out_total", slow).value_or(-1) == n &&
               find_metric(m, "devmesh_records_out_total", mixed).value_or(-1) == n + 50;
      },
      60s))
      << m << e->err();
  EXPECT_GT(metric_value(m, "devmesh_output_chunks_merged_total", slow), 0) << m;
  EXPECT_GT(metric_value(m, "devmesh_output_chunks_merged_total", mixed), 0) << m;
  EXPECT_EQ(metric_value(m, "devmesh_records_in_total", slow), n);
  EXPECT_EQ(metric_value(m, "devmesh_queue_records", slow), 0);
  EXPECT_EQ(metric_value(m, "devmesh_queue_records", mixed), 0);
  // Each flush is at most batch_size, and merging made some larger than the ~10 records that
  // one 5 ms flush_interval gathers at 2000 records/s.
  size_t largest = 0, flushes = 0;
  for (auto &l : read_lines(d / "attempts.txt")) {
    std::istringstream in(l);
    long ms = 0;
    size_t count = 0;
    in >> ms >> count;
    largest = std::max(largest, count);
    flushes++;
  }
  EXPECT_LE(largest, 400u);
  EXPECT_GT(largest, 50u) << flushes << " flushes";
  expect_exactly_once(seqs(d / "out.txt"), n);
  size_t wrong = 0;
  std::map<std::string, size_t> per_tag;
  for (auto &l : read_lines(d / "tags.txt")) {
    const std::string tag = l.substr(0, l.find('\t'));
    per_tag[tag]++;
    if (l.substr(l.find('\t') + 1).rfind(tag + " ", 0) != 0 && wrong++ < 5)
      ADD_FAILURE() << "a record flushed with tag '" << tag << "': " << l;
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(per_tag["alpha"], static_cast<size_t>(n));
  EXPECT_EQ(per_tag["beta"], 50u);
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(10s), 0) << e->err();
}

TEST(Pipeline, FlushesWhenBatchBytesIsReached) {
  TempDir d;
  auto e = start(d, head("  exit_when_done: true\n") +
                        "  inputs:\n"
                        "    - {name: dummy, rate: 0, count: 40, batch: 40}\n"
                        "  outputs:\n"
                        "    - {name: flaky, path: " +
                        d / "out.txt" + ", attempts_path: " + d / "attempts.txt" +
                        ", batch_size: 100000, batch_bytes: 2KiB, flush_interval: 1h}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  expect_exactly_once(seqs(d / "out.txt"), 40);
  // Each record holds a few hundred bytes: 40 of them cannot fit one 2 KiB chunk.
  auto attempts = read_lines(d / "attempts.txt");
  EXPECT_GE(attempts.size(), 4u);
  for (auto &a : attempts) EXPECT_LT(std::atol(a.substr(a.find(' ') + 1).c_str()), 20) << a;
}

TEST(Pipeline, InputIsAcknowledgedOnlyWhenEveryOutputDelivered) {
  TempDir d;
  int port = free_port();
  std::string metrics = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  auto e = start(d, head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                        "  inputs:\n"
                        "    - {name: dummy, alias: gen, rate: 0, count: 10, batch: 10}\n"
                        "  outputs:\n"
                        "    - {name: 'null', alias: fast}\n"
                        "    - {name: flaky, alias: slow, path: " +
                        d / "out.txt" + ", attempts_path: " + d / "attempts.txt" +
                        ", fail_first: 3, retry_wait: 300ms}\n");
  ASSERT_TRUE(wait_until([&] { return !read_lines(d / "attempts.txt").empty(); }, 10s)) << e->err();
  std::string body;
  ASSERT_EQ(http_get(metrics, &body, d.path()), 200);
  // The fast output has delivered, the slow one has not: the ticket is not done.
  ASSERT_TRUE(wait_until(
      [&] {
        http_get(metrics, &body, d.path());
        return metric_value(body, "devmesh_records_out_total", "instance=\"fast\"") == 10;
      },
      10s))
      << body;
  EXPECT_EQ(metric_value(body, "devmesh_input_acks_total", "instance=\"gen\""), 0) << body;
  ASSERT_TRUE(wait_until(
      [&] {
        http_get(metrics, &body, d.path());
        return metric_value(body, "devmesh_input_acks_total", "instance=\"gen\"") == 1;
      },
      20s))
      << body;
  expect_exactly_once(seqs(d / "out.txt"), 10);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(10s), 0);
}

// A lone record, far below batch_size, is flushed by the timer alone: a second input that never
// finishes rules out the flush at end of input, and the engine is still running when it arrives.
// (How fast is a figure, not a property: tools/bench prints latencies; a bound here would flake
// on a loaded machine.)
TEST(Pipeline, ALoneRecordIsFlushedByTimeWhileTheEngineKeepsRunning) {
  TempDir d;
  auto e = start(d, head("  flush_interval: 400ms\n") +
                        "  inputs:\n"
                        "    - {name: dummy, tag: one, rate: 1, count: 1}\n"
                        "    - {name: dummy, tag: idle, rate: 0.001}\n"
                        "  outputs:\n"
                        "    - {name: stdout, match: one, batch_size: 1000, path: " +
                        d / "out.ndjson" + "}\n");
  ASSERT_TRUE(wait_until([&] { return !read_lines(d / "out.ndjson").empty(); }, 30s)) << e->err();
  EXPECT_EQ(e->wait_exit(0ms), -1)
      << "the record arrived only because the engine stopped: " << e->err();
  EXPECT_EQ(read_lines(d / "out.ndjson").size(), 1u);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0);
}

TEST(Pipeline, OutputFailingThenSucceedingDeliversEveryRecordOnceWithBackoff) {
  TempDir d;
  auto e = start(d, head("  exit_when_done: true\n") +
                        "  inputs:\n"
                        "    - {name: dummy, rate: 0, count: 50, batch: 50}\n"
                        "  outputs:\n"
                        "    - {name: flaky, path: " +
                        d / "out.txt" + ", attempts_path: " + d / "attempts.txt" +
                        ", fail_first: 3, retry_wait: 100ms, batch_size: 50}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  expect_exactly_once(seqs(d / "out.txt"), 50);
  auto attempts = read_lines(d / "attempts.txt");
  ASSERT_EQ(attempts.size(), 4u);
  std::vector<long> at;
  for (auto &a : attempts) at.push_back(std::atol(a.c_str()));
  EXPECT_NE(attempts[3].find("ok"), std::string::npos);
  // Backoff doubles from retry_wait with jitter in [wait/2, wait]: 50..100, 100..200, 200..400.
  EXPECT_GE(at[1] - at[0], 45);
  EXPECT_GE(at[2] - at[1], 95);
  EXPECT_GE(at[3] - at[2], 195);
  EXPECT_NE(e->err().find("injected failure"), std::string::npos);
}

TEST(Pipeline, RecordsGoToTheDeadLetterFileAfterTheRetryLimit) {
  TempDir d;
  auto e = start(d, head("  exit_when_done: true\n") +
                        "  inputs:\n"
                        "    - {name: dummy, rate: 0, count: 20}\n"
                        "  outputs:\n"
                        "    - {name: flaky, path: " +
                        d / "out.txt" + ", fail_always: true, retry_limit: 2," +
                        " retry_wait: 10ms, dead_letter_path: " + d / "dead.ndjson" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  EXPECT_EQ(read_lines(d / "out.txt").size(), 0u);
  auto dead = read_lines(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 20u);
  EXPECT_NE(dead[0].find("\"reason\":\"retry limit 2 reached: injected failure\""),
            std::string::npos)
      << dead[0];
  EXPECT_NE(dead[0].find("\"output\":\"flaky.0\""), std::string::npos) << dead[0];
  EXPECT_NE(dead[0].find("\"seq\":\"1\""), std::string::npos) << dead[0];
}

TEST(Pipeline, PoisonRecordIsIsolatedByBisectionAndTheRestDelivered) {
  TempDir d;
  auto e = start(d, head("  exit_when_done: true\n") +
                        "  inputs:\n"
                        "    - {name: dummy, rate: 0, count: 16, batch: 16}\n"
                        "  outputs:\n"
                        "    - {name: flaky, path: " +
                        d / "out.txt" + ", poison: 'record 7', fail_status: split," +
                        " batch_size: 16, dead_letter_path: " + d / "dead.ndjson" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto got = seqs(d / "out.txt");
  std::set<long> s(got.begin(), got.end());
  EXPECT_EQ(got.size(), 15u);
  EXPECT_EQ(s.count(7), 0u);
  auto dead = read_lines(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_NE(dead[0].find("dummy record 7\""), std::string::npos) << dead[0];
}

TEST(Pipeline, FullQueuePausesTheInputAndMemoryStaysBounded) {
  TempDir d;
  const long n = 300000;
  auto e =
      start(d, head("  exit_when_done: true\n") +
                   "  inputs:\n"
                   "    - {name: dummy, rate: 0, count: " +
                   std::to_string(n) +
                   "}\n"
                   "  outputs:\n"
                   "    - {name: flaky, path: " +
                   d / "out.txt" + ", delay: 2ms, batch_size: 1000," + " queue_limit: 1MiB}\n");
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  expect_exactly_once(seqs(d / "out.txt"), n);
  EXPECT_NE(e->err().find("queue full"), std::string::npos) << e->err();
  EXPECT_NE(e->err().find("resuming its inputs"), std::string::npos);
  // Unbounded, the queue would hold all 300k records (~100 MiB).
  EXPECT_LT(e->max_rss_kib(), 60 * 1024) << "peak RSS";
}

TEST(Pipeline, GracefulShutdownDeliversEverythingQueued) {
  TempDir d;
  auto e = start(d, head("  grace: 20s\n") +
                        "  inputs:\n"
                        "    - {name: dummy, rate: 0}\n"
                        "  outputs:\n"
                        "    - {name: flaky, path: " +
                        d / "out.txt" + ", delay: 20ms, batch_size: 500," +
                        " flush_interval: 1h, queue_limit: 256KiB}\n");
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= 1000; }, 20s))
      << e->err();
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto got = seqs(d / "out.txt");
  long max = 0;
  for (long s : got) max = std::max(max, s);
  expect_exactly_once(got, max);
  EXPECT_EQ(e->err().find("undelivered"), std::string::npos) << e->err();
}

TEST(Pipeline, HealthAndMetricsOverHttpCountRecords) {
  TempDir d;
  int port = free_port();
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = start(d, head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                        "  inputs:\n"
                        "    - {name: dummy, alias: gen, rate: 0, count: 100}\n"
                        "  outputs:\n"
                        "    - {name: 'null', alias: sink}\n"
                        "    - {name: flaky, alias: broken, path: " +
                        d / "x.txt" + ", fail_always: true, retry_wait: 50ms}\n");
  std::string body;
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get(base + "/metrics", &body, d.path()) == 200 &&
               metric_value(body, "devmesh_records_out_total", "instance=\"sink\"") == 100;
      },
      10s))
      << body << e->err();
  EXPECT_EQ(metric_value(body, "devmesh_records_in_total", "instance=\"gen\""), 100);
  EXPECT_EQ(metric_value(body, "devmesh_records_in_total", "instance=\"sink\""), 100);
  EXPECT_GE(metric_value(body, "devmesh_records_retried_total", "instance=\"broken\""), 100);
  EXPECT_EQ(metric_value(body, "devmesh_queue_records", "instance=\"broken\""), 100);
  EXPECT_NE(body.find("# TYPE devmesh_flush_duration_seconds histogram"), std::string::npos);
  EXPECT_GT(metric_value(body, "devmesh_process_resident_memory_bytes", ""), 0);
  EXPECT_EQ(http_get(base + "/health", &body, d.path()), 503) << body;
  EXPECT_NE(body.find("\"instance\":\"broken\",\"healthy\":false"), std::string::npos) << body;
  EXPECT_NE(body.find("injected failure"), std::string::npos) << body;
  EXPECT_NE(body.find("\"instance\":\"sink\",\"healthy\":true"), std::string::npos) << body;
  EXPECT_EQ(http_get(base + "/nope", &body, d.path()), 404);
  e->kill(SIGTERM);
  e->kill(SIGTERM);  // the second signal exits at once, even with records stuck in retry
  EXPECT_NE(e->wait_exit(10s), -1);
}

TEST(Pipeline, HealthIsOkWhenEveryOutputDelivers) {
  TempDir d;
  int port = free_port();
  auto e =
      start(d, head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                   "  inputs:\n    - {name: dummy, rate: 100}\n  outputs:\n    - {name: 'null'}\n");
  std::string body;
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/health", &body, d.path()) ==
               200;
      },
      10s))
      << body << e->err();
  EXPECT_NE(body.find("\"status\":\"ok\""), std::string::npos) << body;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(10s), 0);
}

}  // namespace
