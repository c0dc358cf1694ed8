// dedup collapse holds the acknowledgement of the repeats it drops until their summary record
// is stored: through the real binary, an http input answering at delivery (or at durability with
// service.storage), the sqlite store, and kill -9 at the moment a client was told "delivered".
#include <gtest/gtest.h>
#include <signal.h>

#include <future>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// One line logged five times in half a second: the first passes, four are repeats collapsed
// into one summary. (Five identical records would be one record sent five times: same
// event_id, absorbed by the store, never repeats.)
std::string five_repeats(const std::string &message) {
  std::string logs;
  for (int i = 0; i < 5; ++i)
    logs += std::string(i ? "," : "") + "{\"timestamp\":\"2025-03-01T10:00:00." +
            std::to_string(i) + "Z\",\"service\":\"api\",\"host\":\"n1\",\"message\":\"" + message +
            "\"}";
  return "{\"logs\":[" + logs + "]}";
}

std::string config(int port, const std::string &db, const std::string &ack,
                   const std::string &window, const std::string &service = "") {
  return plugins_head(service) +
         "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(port) +
         "', ack: " + ack + "}\n  filters:\n    - {name: dedup, mode: collapse, window: " + window +
         "}\n  outputs:\n    - {name: sqlite, path: " + db + ", flush_interval: 50ms}\n";
}

HttpResponse post(int port, const std::string &body) {
  return http("http://127.0.0.1:" + std::to_string(port) + "/ingest/logs",
              {"Content-Type: application/json"}, "POST", body);
}

long summaries(const std::string &db, int repeat_count) {
  if (!std::filesystem::exists(db)) return 0;
  try {
    SqliteDb s(db);
    return s.number(
        "SELECT count(*) FROM log_events WHERE json_extract(meta_json, "
        "'$.repeat_count') = '" +
        std::to_string(repeat_count) + "'");
  } catch (const std::exception &) {
    return 0;  // the table is not made yet
  }
}

long rows(const std::string &db, const std::string &message) {
  if (!std::filesystem::exists(db)) return 0;
  try {
    SqliteDb s(db);
    return s.number("SELECT count(*) FROM log_events WHERE message = '" + message + "'");
  } catch (const std::exception &) {
    return 0;
  }
}

bool ready(int port) {
  return wait_until(
      [&] { return http("http://127.0.0.1:" + std::to_string(port) + "/ingest/logs").status != 0; },
      15s);
}

TEST(DedupHold, DeliveredAnswerForRepeatsComesOnlyOnceTheirSummaryIsStored) {
  TempDir d;
  const int port = free_port();
  const std::string db = d / "logs.db";
  auto e = start_engine(d, config(port, db, "delivered", "2s"));
  ASSERT_TRUE(ready(port)) << e->err();

  const HttpResponse r = post(port, five_repeats("disk almost full"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":5"), std::string::npos) << r.body;
  // Told "delivered": the first occurrence and the summary of the four repeats are both kept
  // already, not only the first occurrence.
  EXPECT_EQ(rows(db, "disk almost full"), 2) << r.body;
  EXPECT_EQ(summaries(db, 4), 1) << r.body;

  // And a crash right after the answer loses nothing the client was told about.
  e->kill(SIGKILL);
  e->wait_exit(30s);
  EXPECT_EQ(summaries(db, 4), 1);
}

TEST(DedupHold, ACrashBeforeTheSummaryLeavesTheClientWithoutA2xxAndItsResendIsStoredWhole) {
  TempDir d;
  const int port = free_port();
  const std::string db = d / "logs.db";
  auto e = start_engine(d, config(port, db, "delivered", "1h"), "first");
  ASSERT_TRUE(ready(port)) << e->err();

  auto pending = std::async(std::launch::async,
                            [&] { return post(port, five_repeats("fan speed critical")); });
  // The first occurrence is stored; the repeats wait in their (hour-long) window.
  ASSERT_TRUE(wait_until([&] { return rows(db, "fan speed critical") == 1; }, 30s)) << e->err();
  EXPECT_EQ(pending.wait_for(300ms), std::future_status::timeout)
      << "the client was answered before the repeats' summary was stored";
  e->kill(SIGKILL);
  e->wait_exit(30s);
  const HttpResponse lost = pending.get();
  EXPECT_NE(lost.status, 200) << "a 2xx for repeats whose summary died with the engine";

  // The client, never told, sends again: this time the engine stops (SIGTERM), which closes the
  // window, and the summary is stored before the answer.
  const int metrics_port = free_port();
  auto again =
      start_engine(d,
                   config(port, db, "delivered", "1h",
                          "  http_listen: '127.0.0.1:" + std::to_string(metrics_port) + "'\n"),
                   "second");
  ASSERT_TRUE(ready(port)) << again->err();
  auto resent = std::async(std::launch::async,
                           [&] { return post(port, five_repeats("fan speed critical")); });
  // The resent repeats are in their window again (dropped, held) when the engine is stopped.
  ASSERT_TRUE(wait_until(
      [&] {
        std::string m;
        http_get("http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics", &m, d.path());
        return metric_value(m, "devmesh_dedup_records_dropped_total", "") >= 4;
      },
      30s))
      << again->err();
  again->kill(SIGTERM);
  const HttpResponse ok = resent.get();
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(again->wait_exit(30s), 0) << again->err();
  EXPECT_EQ(rows(db, "fan speed critical"), 2) << "the first occurrence once and one summary";
  EXPECT_EQ(summaries(db, 4), 1);
}

TEST(DedupHold, DurableAnswerForRepeatsWaitsForTheSummaryOnDiskSoAKillAfterItLosesNothing) {
  TempDir d;
  const int port = free_port();
  const std::string db = d / "logs.db";
  const std::string storage = "  storage: {path: " + (d / "data") + ", sync: always}\n";
  // The summary is durable before the answer; the store may or may not have it when the
  // engine dies, and the replay at the next start delivers it then.
  auto e = start_engine(d, config(port, db, "durable", "1s", storage), "first");
  ASSERT_TRUE(ready(port)) << e->err();
  const HttpResponse r = post(port, five_repeats("raid degraded"));
  ASSERT_EQ(r.status, 200) << r.body;
  e->kill(SIGKILL);
  e->wait_exit(30s);

  auto again = start_engine(d, config(port, db, "durable", "1s", storage), "second");
  ASSERT_TRUE(ready(port)) << again->err();
  EXPECT_TRUE(wait_until([&] { return summaries(db, 4) == 1; }, 30s))
      << "the summary of the repeats answered as durable is missing; " << again->err();
  again->kill(SIGTERM);
  EXPECT_EQ(again->wait_exit(30s), 0) << again->err();
  EXPECT_EQ(rows(db, "raid degraded"), 2);
}

}  // namespace
