// Disk storage through the real binary: records survive kill -9 and are replayed, a backlog
// beyond queue_limit waits on disk with memory bounded, storage.max_size pauses inputs (http
// 503 + Retry-After) or drops the oldest segment (counted), ack: durable, bad options.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <iostream>
#include <map>
#include <set>

#include "http_support.h"
#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string head(int port, const std::string &storage, const std::string &extra = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR
         "]\n"
         "  http_listen: 127.0.0.1:" +
         std::to_string(port) + "\n" + extra + (storage.empty() ? "" : "  storage:\n" + storage) +
         "pipeline:\n";
}

std::string metrics(int port, const TempDir &d) {
  std::string body;
  http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &body, d.path());
  return body;
}

double metric(int port, const TempDir &d, const std::string &name, const std::string &labels = "") {
  return metric_value(metrics(port, d), name, labels);
}

// Every number first..last exactly once in a flaky output file ("seq<TAB>message" lines).
void expect_exactly_once(const std::string &path, long first, long last) {
  std::map<long, int> count;
  for (auto &l : read_lines(path)) count[std::atol(l.c_str())]++;
  long missing = 0, dup = 0, extra = 0;
  for (long i = first; i <= last; i++) {
    if (count[i] == 0) missing++;
    if (count[i] > 1) dup++;
  }
  for (auto &[k, v] : count)
    if (k < first || k > last) extra += v;
  EXPECT_EQ(missing, 0) << "records missing";
  EXPECT_EQ(dup, 0) << "records duplicated";
  EXPECT_EQ(extra, 0) << "records never sent";
}

// An http body of records seq first..first+n-1 with a message of `pad` bytes.
std::string logs_body(long first, long n, size_t pad = 200) {
  std::string body = "{\"logs\":[";
  std::string text(pad, 'p');
  for (long i = 0; i < n; i++) {
    if (i) body += ",";
    body += "{\"message\":\"m" + std::to_string(first + i) + " " + text +
            "\",\"meta_json\":{\"seq\":\"" + std::to_string(first + i) + "\"}}";
  }
  return body + "]}";
}

std::string url(int port) {
  return "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
}

}  // namespace

TEST(Storage, RecordsSurviveKillNineAndAreReplayedAfterRestart) {
  TempDir d;
  const long n = 20000;
  int mport = free_port();
  const std::string storage = "    path: " + d / "data" + "\n";
  {
    // The output never succeeds: everything is on disk only when the engine is killed.
    Devmesh e(d, "first",
              head(mport, storage) +
                  "  inputs:\n    - {name: dummy, tag: app, rate: 0, count: " + std::to_string(n) +
                  "}\n  outputs:\n    - {name: flaky, match: '*', fail_always: true, "
                  "retry_wait: 50ms, retry_max_wait: 100ms, queue_limit: 256KiB, path: " +
                  d / "out.txt" + "}\n");
    ASSERT_TRUE(e.ready(mport, d)) << e->err();
    ASSERT_TRUE(
        wait_until([&] { return e->err().find("generated all") != std::string::npos; }, 30s))
        << e->err();
    EXPECT_GT(metric(mport, d, "devmesh_storage_backlog_records"), 0);
    e->kill(SIGKILL);
    e->wait_exit(10s);
  }
  // The second run produces one more record and exits once everything is delivered.
  int mport2 = free_port();
  Devmesh e(d, "second",
            head(mport2, storage, "  exit_when_done: true\n") +
                "  inputs:\n    - {name: dummy, tag: app, rate: 0, count: 1, start: " +
                std::to_string(n + 1) +
                "}\n  outputs:\n    - {name: flaky, match: '*', path: " + d / "out.txt" + "}\n");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_NE(e->err().find("replay: 1 segment(s) found"), std::string::npos) << e->err();
  expect_exactly_once(d / "out.txt", 1, n + 1);
  // Everything delivered: nothing left on disk.
  size_t left = 0;
  for (auto &f : std::filesystem::directory_iterator(d / "data"))
    left += f.path().extension() == ".log";
  EXPECT_EQ(left, 0u);
}

TEST(Storage, AfterACrashOnlyTheOutputsThatHadNotFinishedABlockGetItAgain) {
  TempDir d;
  const long n = 5000;
  int mport = free_port();
  const std::string storage = "    path: " + d / "data" + "\n";
  {
    // `good` delivers everything (and notes it in the ack files); `down` delivers nothing.
    Devmesh e(
        d, "first",
        head(mport, storage) +
            "  inputs:\n    - {name: dummy, tag: app, rate: 0, count: " + std::to_string(n) +
            "}\n  outputs:\n    - {name: flaky, alias: good, match: '*', path: " + d / "good.txt" +
            "}\n    - {name: flaky, alias: down, match: '*', fail_always: true, path: " +
            d / "down.txt" + "}\n");
    // Delivered and acknowledged (the ack entry is written as the completion is handled).
    ASSERT_TRUE(wait_until(
        [&] {  // polled from before the engine listens: an empty scrape is no answer yet
          return find_metric(metrics(mport, d), "devmesh_records_out_total", "instance=\"good\"")
                     .value_or(0) >= n;
        },
        30s))
        << e->err();
    e->kill(SIGKILL);
    e->wait_exit(10s);
  }
  int mport2 = free_port();
  Devmesh e(
      d, "second",
      head(mport2, storage, "  exit_when_done: true\n") +
          "  inputs:\n    - {name: dummy, tag: app, rate: 0, count: 1, start: " +
          std::to_string(n + 1) +
          "}\n  outputs:\n    - {name: flaky, alias: good, match: '*', path: " + d / "good.txt" +
          "}\n    - {name: flaky, alias: down, match: '*', path: " + d / "down.txt" + "}\n");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  expect_exactly_once(d / "good.txt", 1, n + 1);
  expect_exactly_once(d / "down.txt", 1, n + 1);
}

TEST(Storage, ABacklogBeyondQueueLimitWaitsOnDiskWithMemoryBoundedThenDrains) {
  TempDir d;
  const long n = 200000;  // ~60 MB of records on disk
  int mport = free_port();
  // The output fails its first 40 flushes while the input runs flat out (faster than the
  // retries): most of the records go to the disk backlog.
  Devmesh e(d, "engine",
            head(mport, "    path: " + d / "data" + "\n", "  exit_when_done: true\n") +
                "  inputs:\n    - {name: dummy, tag: app, rate: 0, batch: 1000, count: " +
                std::to_string(n) + ", message: '{seq} " + std::string(240, 'x') +
                "'}\n  outputs:\n    - {name: flaky, match: '*', fail_first: 40, retry_wait: "
                "100ms, retry_max_wait: 150ms, queue_limit: 2MiB, path: " +
                d / "out.txt" + "}\n");
  double max_backlog = 0;
  long max_rss = 0;
  while (e->running()) {
    // From the start (and up to the exit): a scrape may find the engine not listening.
    max_backlog =
        std::max(max_backlog,
                 find_metric(metrics(mport, d), "devmesh_storage_backlog_records", "").value_or(0));
    max_rss = std::max(max_rss, e->rss_kib());
    if (e->wait_exit(100ms) >= 0) break;
  }
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  EXPECT_GT(max_backlog, 50000) << "the backlog never went to disk";
  // 60 MB went through; the engine held a 2 MiB queue plus its own working set.
  EXPECT_LT(e->max_rss_kib(), 48 * 1024) << "peak RSS";
  EXPECT_LT(max_rss, 48 * 1024);
  EXPECT_EQ(read_lines(d / "out.txt").size(), static_cast<size_t>(n));
  expect_exactly_once(d / "out.txt", 1, n);
}

// Blocks keep their tag on disk: records loaded back from the backlog reach their output with
// the tag they were submitted with, in chunks of one tag, like records that stayed in memory.
TEST(Storage, RecordsLoadedBackFromTheBacklogAreFlushedWithTheirOwnTag) {
  TempDir d;
  int mport = free_port();
  const std::string pad(200, 'x');
  auto input = [&](const std::string &tag) {
    return "    - {name: dummy, tag: " + tag + ", rate: 0, batch: 10, count: 5000, message: '" +
           tag + " {seq} " + pad + "'}\n";
  };
  // The output fails its first flushes while both inputs run flat out: most records wait on
  // disk and come back through the loader.
  Devmesh e(d, "engine",
            head(mport, "    path: " + d / "data" + "\n", "  exit_when_done: true\n") +
                "  inputs:\n" + input("alpha") + input("beta") +
                "  outputs:\n    - {name: flaky, match: '*', fail_first: 20, retry_wait: 100ms, "
                "retry_max_wait: 150ms, queue_limit: 64KiB, path: " +
                d / "out.txt" + ", tags_path: " + d / "tags.txt" + "}\n");
  double max_backlog = 0;
  while (e->running()) {
    max_backlog =
        std::max(max_backlog,
                 find_metric(metrics(mport, d), "devmesh_storage_backlog_records", "").value_or(0));
    if (e->wait_exit(100ms) >= 0) break;
  }
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_GT(max_backlog, 0) << "nothing went to the disk backlog";
  std::map<std::string, size_t> per_tag;
  size_t wrong = 0;
  for (auto &l : read_lines(d / "tags.txt")) {
    const std::string tag = l.substr(0, l.find('\t'));
    per_tag[tag]++;
    if (l.compare(tag.size() + 1, tag.size() + 1, tag + " ") != 0 && wrong++ < 5)
      ADD_FAILURE() << "a record flushed with tag '" << tag << "': " << l.substr(0, 40);
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(per_tag["alpha"], 5000u);
  EXPECT_EQ(per_tag["beta"], 5000u);
  EXPECT_EQ(per_tag.size(), 2u);
}

TEST(Storage, FullStorageAnswers503WithRetryAfterAndLosesNothingOnceTheStoreReturns) {
  TempDir d;
  int port = free_port(), mport = free_port();
  Devmesh e(d, "engine",
            head(mport, "    path: " + d / "data" + "\n    max_size: 1MiB\n") +
                "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(port) +
                "', retry_after: 2s}\n  outputs:\n    - {name: flaky, match: '*', fail_first: 60, "
                "retry_wait: 100ms, retry_max_wait: 150ms, path: " +
                d / "out.txt" + "}\n");
  ASSERT_TRUE(e.ready(mport, d)) << e->err();
  long next = 1;
  bool saw_503 = false;
  // Posts of 500 records (~150 KB stored) until the storage is full.
  for (int i = 0; i < 40 && !saw_503; i++) {
    HttpResult r = libcurl_post(url(port), logs_body(next, 500));
    if (r.status == 503) {
      saw_503 = true;
      EXPECT_EQ(r.header("Retry-After"), "2");
      std::string health;
      EXPECT_EQ(
          http_get("http://127.0.0.1:" + std::to_string(mport) + "/health", &health, d.path()),
          503);
      EXPECT_NE(health.find("\"storage\":{\"full\":true"), std::string::npos) << health;
      EXPECT_EQ(metric(mport, d, "devmesh_storage_full"), 1);
    } else {
      ASSERT_EQ(r.status, 200) << r.body;
      next += 500;
    }
  }
  ASSERT_TRUE(saw_503) << "max_size never reached";
  // The store comes back: the backlog drains, the inputs resume, the client's retries land.
  ASSERT_TRUE(wait_until(
      [&] {
        HttpResult r = libcurl_post(url(port), logs_body(next, 500));
        if (r.status == 200) next += 500;
        return r.status == 200;
      },
      60s))
      << e->err();
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= size_t(next - 1); }, 60s))
      << e->err();
  std::string why;  // a late duplicate is written by the time the engine settles
  EXPECT_TRUE(wait_settled(mport, d.path(), 60s, &why)) << why;
  expect_exactly_once(d / "out.txt", 1, next - 1);
  EXPECT_EQ(metric(mport, d, "devmesh_storage_full"), 0);
}

TEST(Storage, DropOldestDropsWholeSegmentsAndCountsEveryUndeliveredRecord) {
  TempDir d;
  const long n = 30000;
  int mport = free_port();
  Devmesh e(d, "engine",
            head(mport,
                 "    path: " + d / "data" + "\n    max_size: 1MiB\n    when_full: drop_oldest\n") +
                "  inputs:\n    - {name: dummy, tag: app, rate: 0, count: " + std::to_string(n) +
                ", message: '{seq} " + std::string(200, 'x') +
                "'}\n  outputs:\n    - {name: flaky, match: '*', fail_always: true, queue_limit: "
                "128KiB, path: " +
                d / "out.txt" + "}\n");
  ASSERT_TRUE(e.ready(mport, d)) << e->err();
  ASSERT_TRUE(wait_until([&] { return e->err().find("generated all") != std::string::npos; }, 30s))
      << e->err();
  std::string m = metrics(mport, d);
  double dropped = metric_value(m, "devmesh_storage_records_dropped_total", "");
  double backlog = metric_value(m, "devmesh_storage_backlog_records", "");
  double queued = metric_value(m, "devmesh_queue_records", "instance=\"flaky.0\"");
  EXPECT_GT(dropped, 0);
  // Every record is in exactly one place: dropped (counted), waiting on disk, or in memory.
  EXPECT_EQ(dropped + backlog + queued, n) << dropped << " " << backlog << " " << queued;
  EXPECT_LE(metric_value(m, "devmesh_storage_bytes", ""), 1 << 20);
  EXPECT_NE(e->err().find("dropped the oldest segment"), std::string::npos);
  EXPECT_EQ(metric_value(m, "devmesh_input_paused", ""), 0) << "drop_oldest never pauses";
}

TEST(Storage, AckDurableAnswersOnceStoredAndTheRecordsSurviveKillNine) {
  TempDir d;
  int port = free_port(), mport = free_port();
  const std::string storage = "    path: " + d / "data" + "\n    sync: interval\n";
  {
    Devmesh e(d, "first",
              head(mport, storage) +
                  "  inputs:\n    - {name: http, ack: durable, listen: '127.0.0.1:" +
                  std::to_string(port) +
                  "'}\n  outputs:\n    - {name: flaky, match: '*', fail_always: true, path: " +
                  d / "out.txt" + "}\n");
    ASSERT_TRUE(e.ready(mport, d)) << e->err();
    for (long i = 0; i < 5; i++) {
      // The output never delivers, yet the 200 comes: after the fsync of the block.
      HttpResult r = libcurl_post(url(port), logs_body(1 + i * 100, 100));
      ASSERT_EQ(r.status, 200) << r.body;
    }
    // Never finished, each block had to be fsynced before its answer: one fsync per answer
    // (a request's block is written after the previous answer).
    EXPECT_GE(metric(mport, d, "devmesh_storage_fsyncs_total"), 5);
    e->kill(SIGKILL);
    e->wait_exit(10s);
  }
  int mport2 = free_port();
  Devmesh e(d, "second",
            head(mport2, storage) +
                "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(port) +
                "'}\n  outputs:\n    - {name: flaky, match: '*', path: " + d / "out.txt" + "}\n");
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= 500; }, 30s)) << e->err();
  std::string why;  // a block replayed twice is written by the time the engine settles
  EXPECT_TRUE(wait_settled(mport2, d.path(), 60s, &why)) << why;
  expect_exactly_once(d / "out.txt", 1, 500);
}

// A request every output finished before its block's fsync is answered at once: delivered, its
// records need no replay. With an hour-long sync interval, waiting for the fsync would never
// answer within the client's 30 s. A kill -9 then still leaves each record once.
TEST(Storage, AckDeliveredAndDurableAreAnsweredOnceDeliveredWithoutWaitingForTheNextFsync) {
  TempDir d;
  int port = free_port(), port2 = free_port(), mport = free_port();
  const std::string storage =
      "    path: " + d / "data" + "\n    sync: interval\n    sync_interval: 1h\n";
  {
    Devmesh e(
        d, "first",
        head(mport, storage) + "  inputs:\n    - {name: http, ack: delivered, listen: '127.0.0.1:" +
            std::to_string(port) +
            "'}\n    - {name: http, ack: durable, listen: '127.0.0.1:" + std::to_string(port2) +
            "'}\n  outputs:\n    - {name: flaky, match: '*', path: " + d / "out.txt" + "}\n");
    ASSERT_TRUE(e.ready(mport, d)) << e->err();
    for (long i = 0; i < 3; i++) {
      HttpResult r = libcurl_post(url(port), logs_body(1 + i * 100, 100));
      ASSERT_EQ(r.status, 200) << r.body;
      EXPECT_NE(r.body.find("\"delivered\":100"), std::string::npos) << r.body;
      HttpResult r2 = libcurl_post(url(port2), logs_body(301 + i * 100, 100));
      ASSERT_EQ(r2.status, 200) << r2.body;
    }
    EXPECT_EQ(read_lines(d / "out.txt").size(), 600u);
    e->kill(SIGKILL);
    e->wait_exit(10s);
  }
  int mport2 = free_port();
  Devmesh e(d, "second",
            head(mport2, storage) +
                "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(port) +
                "'}\n  outputs:\n    - {name: flaky, match: '*', path: " + d / "out.txt" + "}\n");
  ASSERT_TRUE(e.ready(mport2, d)) << e->err();
  std::string why;  // a block replayed is written by the time the engine settles
  EXPECT_TRUE(wait_settled(mport2, d.path(), 60s, &why)) << why;
  expect_exactly_once(d / "out.txt", 1, 600);
}

// The aggregator's shape (http ack: delivered -> a store) with an fsync every 5 s: each request
// is answered once delivered, without its fsync. Counted, not timed: sequential requests that
// each waited for an fsync would need one fsync apiece (a request's block is written after the
// previous answer), so N answers with fewer than N fsyncs prove none waited. Every block was
// finished by every output before an fsync: after kill -9 none is replayed (each record once in
// the flaky output's file, which a replay would duplicate) and the segments are deleted.
TEST(Storage, AnAggregatorAnswersDeliveredRequestsWithoutWaitingForFsyncsAndReplaysNoneOfThem) {
  TempDir d;
  const long requests = 10, per = 100;
  int port = free_port(), mport = free_port();
  const std::string storage =
      "    path: " + d / "data" + "\n    sync: interval\n    sync_interval: 5s\n";
  const std::string outputs =
      "  outputs:\n    - {name: sqlite, match: '*', path: " + d / "logs.db" +
      "}\n    - {name: flaky, match: '*', path: " + d / "out.txt" + "}\n";
  {
    Devmesh e(d, "first",
              head(mport, storage, "  flush_interval: 20ms\n") +
                  "  inputs:\n    - {name: http, ack: delivered, listen: '127.0.0.1:" +
                  std::to_string(port) + "'}\n" + outputs);
    ASSERT_TRUE(e.ready(mport, d)) << e->err();
    for (long i = 0; i < requests; i++) {
      HttpResult r = libcurl_post(url(port), logs_body(1 + i * per, per));
      ASSERT_EQ(r.status, 200) << r.body;
      // One delivery per output and record.
      EXPECT_NE(r.body.find("\"delivered\":" + std::to_string(2 * per)), std::string::npos)
          << r.body;
    }
    const std::string m = metrics(mport, d);
    const double fsyncs = metric_value(m, "devmesh_storage_fsyncs_total", "");
    std::cout << requests << " requests answered after " << fsyncs << " fsync(s)\n";
    EXPECT_EQ(metric_value(m, "devmesh_storage_blocks_written_total", ""), requests);
    EXPECT_EQ(metric_value(m, "devmesh_records_out_total", "sqlite"), requests * per);
    EXPECT_LT(fsyncs, requests) << "a request waited for an fsync";
    e->kill(SIGKILL);
    e->wait_exit(10s);
  }
  int mport2 = free_port();
  Devmesh e(d, "second",
            head(mport2, storage) + "  inputs:\n    - {name: http, listen: '127.0.0.1:" +
                std::to_string(port) + "'}\n" + outputs);
  ASSERT_TRUE(e.ready(mport2, d)) << e->err();
  std::string why;
  EXPECT_TRUE(wait_settled(mport2, d.path(), 60s, &why)) << why;
  const std::string m = metrics(mport2, d);
  EXPECT_EQ(metric_value(m, "devmesh_storage_blocks_replayed_total", ""), 0);
  EXPECT_EQ(metric_value(m, "devmesh_records_in_total", "sqlite"), 0);
  EXPECT_EQ(metric_value(m, "devmesh_storage_segments", ""), 0) << "finished segments were kept";
  expect_exactly_once(d / "out.txt", 1, requests * per);
}

// An input that asks for both stages (DM_ACK_STAGES) gets, for a ticket every output finished
// before its fsync, STORED and then DONE, each once, without waiting for the fsync (an hour
// away here: none happens while the run lasts). tests/plugins/threaded keeps the ledger.
TEST(Storage, AStagedInputGetsStoredThenDoneForTicketsFinishedBeforeTheirFsync) {
  TempDir d;
  const uint64_t records = 20000, batch = 100;
  int mport = free_port();
  Devmesh e(
      d, "engine",
      head(mport, "    path: " + d / "data" + "\n    sync: interval\n    sync_interval: 1h\n") +
          "  inputs:\n    - {name: threaded, records: " + std::to_string(records) +
          ", threads: 2, batch: " + std::to_string(batch) + ", report: " + d / "report" +
          "}\n  outputs:\n    - {name: flaky, match: '*', path: " + d / "out.txt" + "}\n");
  ASSERT_TRUE(e.ready(mport, d)) << e->err();
  std::string why;
  ASSERT_TRUE(wait_settled(mport, d.path(), 60s, &why)) << why;
  const std::string m = metrics(mport, d);
  EXPECT_EQ(metric_value(m, "devmesh_records_out_total", "flaky"), records);
  EXPECT_EQ(metric_value(m, "devmesh_storage_fsyncs_total", ""), 0);
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  // The ledger: "key=value ..." on one line.
  const std::string report = read_file(d / "report");
  auto field = [&](const std::string &key) {
    const size_t at = report.find(" " + key + "=");
    return at == std::string::npos ? -1L : std::atol(report.c_str() + at + key.size() + 2);
  };
  const long tickets = static_cast<long>(records / batch);
  EXPECT_EQ(field("acked"), tickets) << report;
  EXPECT_EQ(field("stored"), tickets) << report;
  EXPECT_EQ(field("stored_twice"), 0) << report;
  EXPECT_EQ(field("stored_after_done"), 0) << report;
  EXPECT_EQ(field("duplicate"), 0) << report;
}

// Finished before its fsync with a record refused and not kept (no dead_letter_path): a
// durable answer cannot promise it, so it is the 500 that ack: delivered gives.
TEST(Storage, AckDurableAnswers500ForARecordThatFailedAndWasNotKeptBeforeItsFsync) {
  TempDir d;
  int port = free_port(), mport = free_port();
  Devmesh e(
      d, "engine",
      head(mport, "    path: " + d / "data" + "\n    sync: interval\n    sync_interval: 1h\n") +
          "  inputs:\n    - {name: http, ack: durable, listen: '127.0.0.1:" + std::to_string(port) +
          "'}\n  outputs:\n    - {name: flaky, match: '*', path: " + d / "out.txt" +
          ", poison: POISON, fail_status: error, flush_interval: 20ms}\n");
  ASSERT_TRUE(e.ready(mport, d)) << e->err();
  HttpResult r = libcurl_post(url(port), "{\"logs\":[{\"message\":\"POISON\"}]}");
  EXPECT_EQ(r.status, 500) << r.body;
  EXPECT_NE(r.body.find("\"failed\":1"), std::string::npos) << r.body;
  HttpResult ok = libcurl_post(url(port), logs_body(1, 10));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST(Storage, AckDurableWithoutStorageIsAConfigurationError) {
  TempDir d;
  int mport = free_port();
  Devmesh e(d, "engine",
            head(mport, "") + "  inputs:\n    - {name: http, ack: durable, listen: '127.0.0.1:" +
                std::to_string(free_port()) + "'}\n  outputs:\n    - {name: 'null'}\n");
  EXPECT_NE(e->wait_exit(20s), 0);
  EXPECT_NE(e->err().find("ack: durable needs service.storage"), std::string::npos) << e->err();
}

TEST(Storage, BadStorageOptionsAreReportedWithFileAndLine) {
  TempDir d;
  write_file(d / "p.yaml",
             "service:\n"
             "  storage:\n"
             "    path: ''\n"
             "    sync: sometimes\n"
             "    sync_interval: 0s\n"
             "    max_size: 10\n"
             "    when_full: panic\n"
             "    segment_size: huge\n"
             "    colour: red\n"
             "pipeline:\n  outputs:\n    - name: 'null'\n");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_NE(p.wait_exit(20s), 0);
  std::string err = p.err();
  const std::string f = d / "p.yaml";
  for (const std::string &want :
       {f + ":3:11: service.storage.path: must not be empty",
        f + ":4:11: service.storage.sync: must be one of: always, interval, never",
        f + ":5:20: service.storage.sync_interval:", f + ":6:15: service.storage.max_size:",
        f + ":7:16: service.storage.when_full: must be one of: pause, drop_oldest",
        f + ":8:19: service.storage.segment_size: must be a size",
        f + ":9:5: service.storage.colour: unknown key 'colour'"})
    EXPECT_NE(err.find(want), std::string::npos) << want << "\n" << err;
}

TEST(Storage, AnUnusableStoragePathStopsTheStartWithAClearError) {
  TempDir d;
  write_file(d / "file", "not a directory");
  int mport = free_port();
  Devmesh e(d, "engine",
            head(mport, "    path: " + d / "file" + "/data\n") +
                "  inputs:\n    - {name: dummy, count: 1}\n  outputs:\n    - {name: 'null'}\n");
  EXPECT_EQ(e->wait_exit(20s), 1);
  EXPECT_NE(e->err().find("storage.path"), std::string::npos) << e->err();
}

TEST(Storage, DryRunReportsAStoragePathThatCannotBeMadeWithItsLocation) {
  TempDir d;
  write_file(d / "file", "not a directory");
  write_file(d / "p.yaml", "service:\n  storage:\n    path: " + d / "file" +
                               "/data\npipeline:\n  outputs:\n    - name: 'null'\n");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(20s), 1);
  EXPECT_NE(p.err().find(d / "p.yaml" + ":3:11: service.storage.path: cannot create directory " +
                         d / "file/data: " + d / "file is not a directory"),
            std::string::npos)
      << p.err();
}

// The shipped sidecar on a node that has no state directory yet: the dry run says OK and the
// start makes the directories (it said OK and then failed to start before).
TEST(Storage, TheShippedSidecarStartsOnAFreshNodeWhereItsStateDirectoryDoesNotExist) {
  TempDir d;
  std::string config = read_file(DEVMESH_SOURCE_DIR "/conf/sidecar.yaml");
  config.replace(config.find("service:\n"), 9,
                 "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n");
  const int admin = free_port();
  write_file(d / "sidecar.yaml", config);
  std::filesystem::create_directories(d / "journal");
  const std::vector<std::string> env = {"DEVMESH_STATE_DIR=" + d / "fresh/var/lib/devmesh",
                                        "AGGREGATOR=127.0.0.1:" + std::to_string(free_port()),
                                        "DEVMESH_HTTP_LISTEN=127.0.0.1:" + std::to_string(admin)};
  Process dry({DEVMESH_BIN, "--dry-run", "-c", d / "sidecar.yaml"}, d.path(), "dry", env);
  EXPECT_EQ(dry.wait_exit(30s), 0) << dry.err();
  EXPECT_FALSE(std::filesystem::exists(d / "fresh")) << "a dry run changes nothing";
  EXPECT_NE(
      dry.out().find("service.storage.path: directory " + d / "fresh/var/lib/devmesh/storage" +
                     " does not exist; it will be created at start (mode 0700)"),
      std::string::npos)
      << dry.out();

  Process e({DEVMESH_BIN, "-c", d / "sidecar.yaml"}, d.path(), "sidecar", env);
  EXPECT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(admin) + "/health", nullptr,
                        d.path()) != 0;
      },
      30s))
      << e.err();
  EXPECT_TRUE(std::filesystem::is_directory(d / "fresh/var/lib/devmesh/storage")) << e.err();
  // Made with its parents, for the engine's user only.
  for (const char *dir : {"fresh", "fresh/var/lib/devmesh", "fresh/var/lib/devmesh/storage"}) {
    struct stat st {};
    ASSERT_EQ(stat((d / dir).c_str(), &st), 0) << dir;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << dir << ": " << std::oct << (st.st_mode & 07777);
  }
  e.kill(SIGTERM);
  EXPECT_EQ(e.wait_exit(30s), 0) << e.err();
}

TEST(Storage, GarbageInTheStorageDirectoryNeverStopsTheEngine) {
  TempDir d;
  std::filesystem::create_directories(d / "data");
  write_file(d / "data/seg-0000000000000003.log", std::string(100000, '\x44'));
  write_file(d / "data/seg-0000000000000004.log", "");
  write_file(d / "data/seg-0000000000000004.acks", "short");
  int mport = free_port();
  Devmesh e(d, "engine",
            head(mport, "    path: " + d / "data" + "\n", "  exit_when_done: true\n") +
                "  inputs:\n    - {name: dummy, rate: 0, count: 100}\n  outputs:\n    - {name: "
                "flaky, match: '*', path: " +
                d / "out.txt" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  expect_exactly_once(d / "out.txt", 1, 100);
  EXPECT_NE(e->err().find("torn tail"), std::string::npos) << e->err();
}
