// Honest receipts (issue 16, findings 4, 5 and 7), through real devmesh processes: a record
// that failed for good and was not kept is never answered 2xx; an output's per-record results
// (flush_record_status) dead-letter or retry just those records; a sidecar keeps in its own
// dead-letter file what its aggregator rejected, with the aggregator's reason; dead-letter
// directories are made at start and checked by --dry-run; a password in a url is never printed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// A devmesh process with its /health and /metrics on `port`; `body` is the pipeline section.
struct Engine {
  const TempDir &d;
  int port = free_port();
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::unique_ptr<Devmesh> dm;
  bool ready = false;

  Engine(const TempDir &dir, const std::string &name, const std::string &body,
         const std::string &service = "")
      : d(dir) {
    dm = std::make_unique<Devmesh>(
        d, name,
        plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n" + service) + body);
    ready = dm->ready(port, d);
  }
  ~Engine() {
    dm->proc().kill(SIGTERM);
    dm->proc().wait_exit(10s);
  }
  std::string get(const std::string &path) {
    std::string body;
    http_get(base + path, &body, d.path());
    return body;
  }
  double metric(const std::string &name, const std::string &labels = "") {
    return metric_value(get("/metrics"), name, labels);
  }
  // Waits until the metric reaches at least `want`; false after 30 s.
  bool wait_metric(const std::string &name, double want, const std::string &labels = "") {
    return wait_until([&] { return metric(name, labels) >= want; }, 30s);
  }
};

// An engine with an http input (ack: delivered) on its own port and the given outputs.
struct Receiver : Engine {
  int in_port;
  std::string url;
  Receiver(const TempDir &dir, const std::string &outputs, int input_port = free_port())
      : Engine(dir, "receiver",
               "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(input_port) +
                   "', ack: delivered}\n  outputs:\n" + outputs),
        in_port(input_port),
        url("http://127.0.0.1:" + std::to_string(input_port) + "/ingest/logs") {}
  HttpResult post(const std::string &body) {
    return libcurl_post(url, body, {"Content-Type: application/json"});
  }
};

// {"logs":[...]} of n records "m<i>" with meta seq=i (1-based); record `poison` (1-based, 0:
// none) says POISON instead.
std::string numbered(int n, int poison = 0) {
  std::string s = "{\"logs\":[";
  for (int i = 1; i <= n; i++) {
    s += std::string(i > 1 ? "," : "") + "{\"message\":\"" + (i == poison ? "POISON" : "m") +
         std::to_string(i) + "\",\"meta_json\":{\"seq\":\"" + std::to_string(i) + "\"}}";
  }
  return s + "]}";
}

// ---- finding 4: no 2xx for a record thrown away ------------------------------------------------

TEST(Receipts, AckDeliveredAnswers500WhenAnOutputRefusedARecordThatWasNotKept) {
  TempDir d;
  // No dead_letter_path: the refused batch is lost for that output.
  Receiver rx(d, "    - {name: flaky, path: " + d / "out.txt" +
                     ", poison: POISON, fail_status: error, flush_interval: 20ms}\n");
  ASSERT_TRUE(rx.ready) << rx.dm->proc().err();
  const HttpResult r = rx.post(numbered(1, 1));
  EXPECT_EQ(r.status, 500) << r.body;
  auto doc = parse_json(r.body);
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["accepted"].GetUint(), 1u);
  EXPECT_EQ(doc["delivered"].GetUint(), 0u);
  EXPECT_EQ(doc["dead_lettered"].GetUint(), 0u) << "a record not kept is not dead-lettered";
  EXPECT_EQ(doc["failed"].GetUint(), 1u);
  EXPECT_NE(str_field(doc, "error").find("not kept: injected failure (no dead_letter_path)"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(rx.metric("devmesh_records_failed_total"), 1);
  EXPECT_EQ(rx.metric("devmesh_records_dead_lettered_total"), 0);
  EXPECT_EQ(rx.metric("devmesh_http_records_failed_total"), 1);
  EXPECT_EQ(rx.metric("devmesh_http_requests_total", "status=\"500\""), 1);
  // A request whose records all arrive is still a 200.
  const HttpResult ok = rx.post(numbered(2));
  EXPECT_EQ(ok.status, 200) << ok.body;
}

// journald moves its cursor past an entry an output refused and could not keep (holding it
// would replay a record refused for its content forever), but counts and logs every one.
TEST(Receipts, JournaldCountsAndLogsEntriesThatFailedAndWereNotKept) {
  TempDir d;
  std::filesystem::create_directories(d / "journal");
  std::string out, err;
  ASSERT_EQ(run({DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture", "-o",
                 d / "journal/system.journal", "--count", "5"},
                d.path(), &out, &err),
            0)
      << err;
  Engine e(d, "engine",
           "  inputs:\n    - {name: journald, path: " + d / "journal" +
               ", follow: false, state_file: " + d / "cursor" +
               "}\n  outputs:\n    - {name: flaky, path: " + d / "out.txt" +
               ", poison: 'entry 3', per_record: true, fail_status: error, flush_interval: "
               "20ms}\n");
  ASSERT_TRUE(e.ready) << e.dm->proc().err();
  ASSERT_TRUE(e.wait_metric("devmesh_journald_entries_acknowledged_total", 5))
      << e.dm->proc().err();
  EXPECT_EQ(e.metric("devmesh_journald_deliveries_failed_total"), 1);
  EXPECT_EQ(e.metric("devmesh_records_failed_total"), 1);
  EXPECT_NE(e.dm->proc().err().find("failed permanently and were not kept (they stay in the "
                                    "journal): poison record"),
            std::string::npos)
      << e.dm->proc().err();
  EXPECT_EQ(read_lines(d / "out.txt").size(), 4u);
}

// Records dropped from full storage (when_full: drop_oldest) are lost: their inputs are told
// so (failed), not that they were merely dropped like a filter's drop.
TEST(Receipts, DeliveriesDroppedFromFullStorageAreReportedFailedToTheirInput) {
  TempDir d;
  Engine e(
      d, "engine",
      "  inputs:\n    - {name: dummy, rate: 0, count: 30000, message: '{seq} " +
          std::string(200, 'x') +
          "'}\n  outputs:\n    - {name: flaky, fail_always: true, queue_limit: 128KiB, "
          "path: " +
          d / "out.txt" + "}\n",
      "  storage:\n    path: " + d / "data" + "\n    max_size: 1MiB\n    when_full: drop_oldest\n");
  ASSERT_TRUE(e.ready) << e.dm->proc().err();
  ASSERT_TRUE(e.wait_metric("devmesh_dummy_ack_failed_total", 1)) << e.dm->proc().err();
  EXPECT_GT(e.metric("devmesh_storage_records_dropped_total"), 0);
  EXPECT_EQ(e.metric("devmesh_dummy_ack_deliveries_total"), 0);
  EXPECT_EQ(e.metric("devmesh_dummy_ack_dropped_total"), 0);
}

// ---- per-record results from an output (flush_record_status, ABI 1.2) ------------------------

TEST(Receipts, ARecordAnOutputRefusesAloneIsDeadLetteredWithItsReasonAndTheRestDelivered) {
  TempDir d;
  Receiver rx(d, "    - {name: flaky, path: " + d / "out.txt" +
                     ", attempts_path: " + d / "attempts.txt" +
                     ", poison: POISON, per_record: true, fail_status: error, flush_interval: "
                     "20ms, dead_letter_path: " +
                     d / "dead.ndjson" + "}\n");
  ASSERT_TRUE(rx.ready) << rx.dm->proc().err();
  const HttpResult r = rx.post(numbered(100, 42));
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["delivered"].GetUint(), 99u) << r.body;
  EXPECT_EQ(doc["dead_lettered"].GetUint(), 1u) << r.body;
  EXPECT_EQ(read_lines(d / "out.txt").size(), 99u);
  EXPECT_EQ(read_lines(d / "attempts.txt").size(), 1u) << "one flush, no bisection";
  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(str_field(dead[0], "reason"), "poison record 42");
  EXPECT_EQ(str_field(dead[0]["record"], "message"), "POISON42");
  EXPECT_EQ(rx.metric("devmesh_records_dead_lettered_total"), 1);
  EXPECT_EQ(rx.metric("devmesh_records_out_total", "plugin=\"flaky\""), 99);
}

TEST(Receipts, ARecordAnOutputRefusesAloneWithoutADeadLetterFileIsAnswered500) {
  TempDir d;
  Receiver rx(d, "    - {name: flaky, path: " + d / "out.txt" +
                     ", poison: POISON, per_record: true, fail_status: error, flush_interval: "
                     "20ms}\n");
  ASSERT_TRUE(rx.ready) << rx.dm->proc().err();
  const HttpResult r = rx.post(numbered(10, 3));
  ASSERT_EQ(r.status, 500) << r.body;
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["delivered"].GetUint(), 9u) << r.body;
  EXPECT_EQ(doc["failed"].GetUint(), 1u) << r.body;
  EXPECT_NE(str_field(doc, "error").find("poison record 3"), std::string::npos) << r.body;
  EXPECT_EQ(rx.metric("devmesh_records_failed_total"), 1);
}

TEST(Receipts, ARecordAnOutputAsksToRetryAloneIsRetriedAloneUntilTheRetryLimit) {
  TempDir d;
  Receiver rx(d, "    - {name: flaky, path: " + d / "out.txt" +
                     ", attempts_path: " + d / "attempts.txt" +
                     ", poison: POISON, per_record: true, fail_status: retry, retry_limit: 2,"
                     " retry_wait: 10ms, flush_interval: 20ms, dead_letter_path: " +
                     d / "dead.ndjson" + "}\n");
  ASSERT_TRUE(rx.ready) << rx.dm->proc().err();
  const HttpResult r = rx.post(numbered(20, 7));
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["delivered"].GetUint(), 19u) << r.body;
  EXPECT_EQ(doc["dead_lettered"].GetUint(), 1u) << r.body;
  // The first flush had all 20; each retry only the one record.
  auto attempts = read_lines(d / "attempts.txt");
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_NE(attempts[0].find(" 20 fail"), std::string::npos) << attempts[0];
  EXPECT_NE(attempts[1].find(" 1 fail"), std::string::npos) << attempts[1];
  EXPECT_NE(attempts[2].find(" 1 fail"), std::string::npos) << attempts[2];
  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(str_field(dead[0], "reason"), "retry limit 2 reached: poison record 7");
  // Counted per failed try, as for whole chunks: three, the last one given up.
  EXPECT_EQ(rx.metric("devmesh_records_retried_total"), 3);
}

// ---- finding 5: a sidecar keeps what its aggregator rejected -----------------------------------

// A sidecar: dummy records (services in turn) -> http_forward -> url, its own dead-letter file.
std::string sidecar(const TempDir &d, const std::string &url, int count,
                    const std::string &services) {
  return "  inputs:\n    - {name: dummy, rate: 0, count: " + std::to_string(count) +
         ", services: " + services +
         "}\n"
         "  outputs:\n    - {name: http_forward, url: '" +
         url +
         "', batch_size: 1000, flush_interval: 20ms, dead_letter_path: " + d / "side/dead.ndjson" +
         "}\n";
}

const std::string kLongService(300, 's');  // the aggregator's http input takes 255 at most

TEST(Receipts, ASidecarDeadLettersWhatItsAggregatorRejectedWithTheAggregatorsReason) {
  TempDir d;
  Receiver agg(d, "    - {name: stdout, path: " + d / "agg.ndjson" + ", flush_interval: 20ms}\n");
  ASSERT_TRUE(agg.ready) << agg.dm->proc().err();
  // Records 2 and 4 have a service the aggregator rejects: it answers 200 with two errors.
  Engine side(d, "sidecar", sidecar(d, agg.url, 4, "[ok, " + kLongService + "]"));
  ASSERT_TRUE(side.ready) << side.dm->proc().err();
  ASSERT_TRUE(side.wait_metric("devmesh_dummy_acks_total", 1)) << side.dm->proc().err();
  EXPECT_EQ(side.metric("devmesh_dummy_ack_deliveries_total"), 2);
  EXPECT_EQ(side.metric("devmesh_dummy_ack_dead_lettered_total"), 2)
      << "the sidecar's input must not be told the rejected records were delivered";
  EXPECT_EQ(side.metric("devmesh_records_dead_lettered_total"), 2);
  EXPECT_EQ(side.metric("devmesh_records_out_total", "plugin=\"http_forward\""), 2);
  EXPECT_EQ(side.metric("devmesh_http_forward_records_rejected_total"), 2);
  auto dead = read_ndjson(d / "side/dead.ndjson");
  ASSERT_EQ(dead.size(), 2u);
  for (auto &line : dead) {
    EXPECT_EQ(str_field(line, "reason"),
              "rejected by " + agg.url + ": service longer than 255 characters");
    EXPECT_EQ(str_field(line["record"], "service"), kLongService);
  }
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 2u);
}

TEST(Receipts, ASidecarDeadLettersEachRecordOfABatchItsAggregatorRefusedWhole) {
  TempDir d;
  Receiver agg(d, "    - {name: stdout, path: " + d / "agg.ndjson" + ", flush_interval: 20ms}\n");
  ASSERT_TRUE(agg.ready) << agg.dm->proc().err();
  // Every record rejected: the aggregator answers 422 with per-record errors.
  Engine side(d, "sidecar", sidecar(d, agg.url, 3, "[" + kLongService + "]"));
  ASSERT_TRUE(side.ready) << side.dm->proc().err();
  ASSERT_TRUE(side.wait_metric("devmesh_dummy_acks_total", 1)) << side.dm->proc().err();
  EXPECT_EQ(side.metric("devmesh_dummy_ack_deliveries_total"), 0);
  EXPECT_EQ(side.metric("devmesh_dummy_ack_dead_lettered_total"), 3);
  auto dead = read_ndjson(d / "side/dead.ndjson");
  ASSERT_EQ(dead.size(), 3u);
  for (auto &line : dead)
    EXPECT_EQ(str_field(line, "reason"),
              "rejected by " + agg.url + ": service longer than 255 characters");
}

// A receiver's answer that cannot be matched to the records sent: nothing of the batch may
// count as delivered, so all of it is kept in the dead-letter file.
void expect_whole_batch_dead_lettered(const std::string &answer) {
  TempDir d;
  TestReceiver rx([&](const TestReceiver::Request &, int) {
    TestReceiver::Response r;
    r.body = answer;
    return r;
  });
  Engine side(d, "sidecar", sidecar(d, rx.url(), 3, "[a]"));
  ASSERT_TRUE(side.ready) << side.dm->proc().err();
  ASSERT_TRUE(side.wait_metric("devmesh_dummy_acks_total", 1)) << side.dm->proc().err();
  EXPECT_EQ(side.metric("devmesh_dummy_ack_deliveries_total"), 0) << answer;
  EXPECT_EQ(side.metric("devmesh_dummy_ack_dead_lettered_total"), 3) << answer;
  EXPECT_EQ(read_lines(d / "side/dead.ndjson").size(), 3u) << answer;
}

TEST(Receipts, RejectionsAReceiverCountsButDoesNotNameSendTheWholeBatchToTheDeadLetterFile) {
  expect_whole_batch_dead_lettered(
      R"({"accepted":1,"rejected":2,"errors":[{"index":0,"reason":"bad"}]})");
}

TEST(Receipts, AReceiverAccountingForFewerRecordsThanSentSendsTheWholeBatchToTheDeadLetterFile) {
  expect_whole_batch_dead_lettered(R"({"accepted":2,"rejected":0,"errors":[]})");
}

// ---- dead-letter paths made at start, checked by --dry-run -------------------------------------

std::string dead_letter_config(const std::string &dead_letter_path) {
  return plugins_head() +
         "  inputs:\n    - {name: dummy, count: 1}\n"
         "  outputs:\n    - name: 'null'\n      dead_letter_path: " +
         dead_letter_path + "\n";
}

TEST(Receipts, AMissingDeadLetterDirectoryIsCreatedAtStartAndThenKeepsRecords) {
  TempDir d;
  const std::string dir = d / "missing/deeper";
  Receiver rx(d, "    - {name: flaky, path: " + d / "out.txt" +
                     ", poison: POISON, fail_status: error, flush_interval: 20ms,"
                     " dead_letter_path: " +
                     dir + "/dead.ndjson}\n");
  ASSERT_TRUE(rx.ready) << rx.dm->proc().err();
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777 & ~0750, 0u) << std::oct << (st.st_mode & 07777);
  const HttpResult r = rx.post(numbered(1, 1));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["dead_lettered"].GetUint(), 1u) << r.body;
  EXPECT_EQ(read_lines(dir + "/dead.ndjson").size(), 1u);
}

TEST(Receipts, ADeadLetterPathThatCannotBeCreatedFailsStartNamingItsLocation) {
  TempDir d;
  write_file(d / "plain", "a file, not a directory\n");
  write_file(d / "p.yaml", dead_letter_config(d / "plain/sub/dead.ndjson"));
  Process p({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "start");
  EXPECT_NE(p.wait_exit(30s), 0);
  EXPECT_NE(p.err().find(d / "p.yaml:8:25: pipeline.outputs[0].dead_letter_path: cannot create "
                             "directory " +
                         d / "plain/sub: " + d / "plain is not a directory"),
            std::string::npos)
      << p.err();
}

TEST(Receipts, DryRunReportsADeadLetterPathThatCannotBeCreated) {
  TempDir d;
  write_file(d / "plain", "a file, not a directory\n");
  write_file(d / "p.yaml", dead_letter_config(d / "plain/dead.ndjson"));
  std::string out, err;
  EXPECT_EQ(run({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), &out, &err), 1);
  EXPECT_NE(err.find(d / "p.yaml:8:25: pipeline.outputs[0].dead_letter_path: " +
                     d / "plain is not a directory"),
            std::string::npos)
      << err;
}

TEST(Receipts, DryRunSaysAMissingDeadLetterDirectoryWouldBeCreatedAndDoesNotCreateIt) {
  TempDir d;
  write_file(d / "p.yaml", dead_letter_config(d / "new/dead.ndjson"));
  std::string out, err;
  EXPECT_EQ(run({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), &out, &err), 0) << err;
  EXPECT_NE(out.find(d / "p.yaml:8:25: pipeline.outputs[0].dead_letter_path: directory " +
                     d / "new does not exist; it will be created at start"),
            std::string::npos)
      << out;
  struct stat st;
  EXPECT_NE(stat((d / "new").c_str(), &st), 0) << "a dry run changes nothing on the machine";
}

// ---- finding 7: credentials in the open --------------------------------------------------------

TEST(Receipts, APasswordInAForwardUrlIsPrintedNowhere) {
  TempDir d;
  const std::string secret = "s3cret-Pa55";
  std::filesystem::create_directory(d / "side");  // this test is not about making it
  std::atomic<bool> got_basic_auth{false};
  // Refuses every batch (400): they go to the dead-letter file with the url in the reason.
  TestReceiver rx([&](const TestReceiver::Request &req, int) {
    auto it = req.headers.find("authorization");
    if (it != req.headers.end() && it->second.rfind("Basic ", 0) == 0) got_basic_auth = true;
    TestReceiver::Response r;
    r.status = 400;
    r.body = R"({"error":"no"})";
    return r;
  });
  const std::string refusing =
      "http://user:" + secret + "@127.0.0.1:" + std::to_string(rx.port()) + "/ingest/logs";
  // Nothing listens at `unreachable`: that output keeps failing, so /health shows its error.
  const std::string unreachable =
      "http://user:" + secret + "@127.0.0.1:" + std::to_string(free_port()) + "/ingest/logs";
  Engine side(d, "sidecar",
              sidecar(d, refusing, 4, "[ok]") + "    - {name: http_forward, alias: down, url: '" +
                  unreachable + "', retry_wait: 10ms, flush_interval: 20ms}\n");
  ASSERT_TRUE(side.ready) << side.dm->proc().err();
  ASSERT_TRUE(
      side.wait_metric("devmesh_records_dead_lettered_total", 4, "instance=\"http_forward.0\""))
      << side.dm->proc().err();
  ASSERT_TRUE(side.wait_metric("devmesh_records_retried_total", 8, "instance=\"down\""));
  const std::string health = side.get("/health"), metrics = side.get("/metrics");
  const std::string dead = read_file(d / "side/dead.ndjson");
  EXPECT_NE(health.find("user:***@127.0.0.1"), std::string::npos) << health;
  EXPECT_NE(dead.find("user:***@127.0.0.1"), std::string::npos) << dead;
  EXPECT_EQ(health.find(secret), std::string::npos) << health;
  EXPECT_EQ(metrics.find(secret), std::string::npos);
  EXPECT_EQ(dead.find(secret), std::string::npos) << dead;
  side.dm->proc().kill(SIGTERM);
  side.dm->proc().wait_exit(10s);
  EXPECT_NE(side.dm->proc().err().find("user:***@127.0.0.1"), std::string::npos);
  EXPECT_EQ(side.dm->proc().err().find(secret), std::string::npos) << side.dm->proc().err();
  EXPECT_EQ(side.dm->proc().out().find(secret), std::string::npos);
  // The credentials still reach the receiver they are for.
  EXPECT_TRUE(got_basic_auth);
}

TEST(Receipts, AnInvalidForwardUrlIsReportedWithoutItsPassword) {
  TempDir d;
  write_file(d / "p.yaml",
             plugins_head() +
                 "  inputs:\n    - {name: dummy, count: 1}\n"
                 "  outputs:\n    - {name: http_forward, url: 'http://u:hunter2@a b/x'}\n");
  std::string out, err;
  EXPECT_EQ(run({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), &out, &err), 1);
  EXPECT_NE(err.find("url: 'http://u:***@a b/x' is not a URL"), std::string::npos) << err;
  EXPECT_EQ((out + err).find("hunter2"), std::string::npos) << err;
}

}  // namespace
