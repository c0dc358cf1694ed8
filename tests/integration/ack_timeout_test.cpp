// The http input's ack_timeout with ack: delivered, against a real MariaDB that goes away: the
// waiting client gets 503 with Retry-After and a body saying a re-send is safe, the records are
// stored once the server is back, and the client's re-send of the same body (records with and
// without a timestamp of their own) leaves every record stored once.
#include <gtest/gtest.h>

#include "http_support.h"
#include "mariadb_pipeline.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

class AckTimeout : public MariaDbPipelineTest {
 protected:
  std::string metrics() {
    std::string body;
    http_get(base_ + "/metrics", &body, d_.path());
    return body;
  }
  double metric(const std::string &name) { return find_metric(metrics(), name, "").value_or(-1); }

  const int port_ = free_port();
  const std::string listen_ = "127.0.0.1:" + std::to_string(port_);
  const std::string base_ = "http://" + listen_;
};

}  // namespace

TEST_F(AckTimeout, UnacknowledgedRequestGets503AndItsResendIsStoredOnce) {
  auto e = engine(yaml("    - {name: http, listen: '" + listen_ +
                           "', ack: delivered, ack_timeout: 1s, retry_after: 7s}\n",
                       "      retry_wait: 100ms\n      retry_max_wait: 500ms\n",
                       "  http_listen: " + listen_ + "\n"));
  ASSERT_TRUE(
      wait_until([&] { return http_get(base_ + "/health", nullptr, d_.path()) == 200; }, 30s))
      << e->err();

  // Two records with their own timestamps, one stamped at arrival.
  const std::string body =
      R"({"logs":[{"timestamp":"2026-01-02T03:04:05Z","service":"a","message":"seq 1"},)"
      R"({"timestamp":"2026-01-02T03:04:06Z","service":"a","message":"seq 2"},)"
      R"({"service":"a","message":"seq 3, no timestamp"}]})";
  db_->stop();
  HttpResult r = libcurl_post(base_ + "/ingest/logs", body);
  ASSERT_EQ(r.status, 503) << r.body << e->err();
  EXPECT_EQ(r.header("Retry-After"), "7") << r.headers;
  auto doc = parse_json(r.body);
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["accepted"].GetUint(), 3u) << r.body;
  EXPECT_NE(str_field(doc, "error").find("re-sending this body is safe"), std::string::npos)
      << r.body;
  EXPECT_EQ(metric("devmesh_http_ack_timeouts_total"), 1);
  EXPECT_EQ(metric("devmesh_http_requests_waiting"), 0);

  // The records kept going: once the server is back they are stored, and their ticket's
  // acknowledgement, which no client waits for any more, is counted.
  std::string err;
  ASSERT_TRUE(db_->start(&err)) << err;
  ASSERT_TRUE(wait_until([&] { return rows() == 3; }, 60s)) << rows() << e->err();
  ASSERT_TRUE(wait_until([&] { return metric("devmesh_http_late_acks_total") == 1; }, 30s))
      << metrics();

  // The client re-sends what got the 503: answered 200, and absorbed by the event_ids.
  r = libcurl_post(base_ + "/ingest/logs", body);
  ASSERT_EQ(r.status, 200) << r.body << e->err();
  EXPECT_EQ(parse_json(r.body)["delivered"].GetUint(), 3u) << r.body;
  std::string why;
  ASSERT_TRUE(wait_settled(port_, d_.path(), 60s, &why)) << why;
  EXPECT_EQ(rows(), 3);
  EXPECT_EQ(db_->number("SELECT COUNT(DISTINCT event_id) FROM log_events"), 3);
  EXPECT_EQ(rows("message = 'seq 3, no timestamp'"), 1);
  const std::string m = metrics();
  EXPECT_EQ(metric_value(m, "devmesh_http_resent_bodies_total", ""), 1);
  EXPECT_EQ(metric_value(m, "devmesh_mariadb_rows_duplicate_total", ""), 3);
  EXPECT_EQ(metric_value(m, "devmesh_http_ack_timeouts_total", ""), 1);
  EXPECT_EQ(metric_value(m, "devmesh_http_requests_total", "status=\"503\""), 1);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

// Without the remembered arrival time a body of records without timestamps, posted again after
// its 503, would be stored twice; two different posts of the same text are two events, and
// stay so once nothing timed out.
TEST_F(AckTimeout, IdenticalBodiesThatWereNeverAnswered503AreTwoSetsOfRecords) {
  auto e = engine(yaml("    - {name: http, listen: '" + listen_ + "', ack: delivered}\n", "",
                       "  http_listen: " + listen_ + "\n"));
  ASSERT_TRUE(
      wait_until([&] { return http_get(base_ + "/health", nullptr, d_.path()) == 200; }, 30s))
      << e->err();
  const std::string body = R"({"logs":[{"service":"a","message":"heartbeat"}]})";
  ASSERT_EQ(libcurl_post(base_ + "/ingest/logs", body).status, 200);
  ASSERT_EQ(libcurl_post(base_ + "/ingest/logs", body).status, 200);
  EXPECT_EQ(rows("message = 'heartbeat'"), 2);
  EXPECT_EQ(metric("devmesh_http_resent_bodies_total"), 0);
}
