// The clickhouse output against a private clickhouse-server 18.16 (tests/support/clickhouse.h)
// and a scripted HTTP server standing in for a misbehaving one: rows and their column types, a
// re-delivered batch stored once, the server killed mid-stream and started again with nothing
// lost, 5xx retried and 4xx dead-lettered with ClickHouse's message, a table of other columns
// refused by name, retention dropping whole days (the server's days, whatever its time zone), the
// cluster DDL's errors told as the server tells them, and a ClickHouse that is down or silent at
// start holding up neither the engine nor its /health, which says why.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <ctime>
#include <string>

#include "clickhouse.h"
#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

constexpr const char *kPasswordEnv = "DEVMESH_TEST_CH_PASSWORD";

std::string connection(const ClickHouse &ch) {
  return "url: '" + ch.url() + "', user: devmesh, password: '${" + kPasswordEnv + "}'";
}

std::unique_ptr<Process> engine(const TempDir &d, const std::string &yaml,
                                const std::string &name = "engine") {
  write_file(d / (name + ".yaml"), yaml);
  return std::make_unique<Process>(
      std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name,
      std::vector<std::string>{std::string(kPasswordEnv) + "=" + ClickHouse::kPassword});
}

std::string metrics(int port) {
  std::string body;
  http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &body, "/tmp");
  return body;
}

std::string health(int port, int *status = nullptr) {
  std::string body;
  const int s = http_get("http://127.0.0.1:" + std::to_string(port) + "/health", &body, "/tmp");
  if (status) *status = s;
  return body;
}

std::string logs_body(int n, const std::string &service) {
  std::string body = "{\"logs\":[";
  for (int i = 0; i < n; ++i)
    body += std::string(i ? "," : "") + "{\"service\":\"" + service + "\",\"message\":\"m " +
            std::to_string(i) + "\"}";
  return body + "]}";
}

// A server that takes connections (the kernel completes them) and never answers: a ClickHouse
// that hangs.
class SilentServer {
 public:
  SilentServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0 && listen(fd_, 64) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len) == 0)
      port_ = ntohs(a.sin_port);
  }
  ~SilentServer() { close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1, port_ = 0;
};

class ClickHouseOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ClickHouse::installed()) GTEST_SKIP() << ClickHouse::kBinary << " is not installed";
    ch = std::make_unique<ClickHouse>(d.path());
  }
  void start() {
    std::string err;
    ASSERT_TRUE(ch->start(&err)) << err;
  }
  long long rows(const std::string &where = "1") {
    return ch->number("SELECT count() FROM devmesh.log_events FINAL WHERE " + where);
  }
  TempDir d;
  std::unique_ptr<ClickHouse> ch;
};

TEST_F(ClickHouseOutput, RowsArriveWithTheirColumnTypesValuesAndPatternId) {
  start();
  auto e = engine(d, plugins_head("  exit_when_done: true\n") +
                         "  inputs:\n    - {name: dummy, rate: 0, count: 3000, service: svc, "
                         "host: h1, level: WARN, meta: {pattern_id: '8000000000000001', k: v}}\n"
                         "  outputs:\n    - {name: clickhouse, compression: gzip, " +
                         connection(*ch) + "}\n");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  EXPECT_EQ(rows(), 3000);
  EXPECT_EQ(ch->number("SELECT uniqExact(event_id) FROM devmesh.log_events"), 3000);
  EXPECT_EQ(ch->sql("SELECT name, type FROM system.columns WHERE database = 'devmesh' AND "
                    "table = 'log_events' FORMAT TabSeparated"),
            "timestamp\tDateTime\ntimestamp_ns\tInt64\nsource\tString\nservice\tString\n"
            "host\tString\nlevel\tString\ntrace_id\tNullable(String)\n"
            "span_id\tNullable(String)\nevent_type\tNullable(String)\n"
            "error_code\tNullable(String)\nmessage\tString\nmeta_json\tNullable(String)\n"
            "event_id\tFixedString(16)\npattern_id\tNullable(Int64)\n");
  EXPECT_EQ(ch->sql("SELECT engine, partition_key, sorting_key FROM system.tables WHERE "
                    "database = 'devmesh' AND name = 'log_events' FORMAT TabSeparated"),
            "ReplacingMergeTree\ttoYYYYMMDD(timestamp)\tservice, timestamp_ns, event_id\n");
  EXPECT_EQ(ch->sql("SELECT source, service, host, level, isNull(trace_id), message, meta_json, "
                    "pattern_id, toUInt32(timestamp) = intDiv(timestamp_ns, 1000000000) FROM "
                    "devmesh.log_events WHERE message = 'dummy record 7' FORMAT TabSeparated"),
            "dummy\tsvc\th1\tWARN\t1\tdummy record 7\t{\"seq\":\"7\",\"k\":\"v\"}\t"
            "-9223372036854775807\t1\n");
}

TEST_F(ClickHouseOutput, ARedeliveredBatchIsStoredOnce) {
  start();
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  auto e = engine(d, plugins_head("  http_listen: " + listen + "\n") +
                         "  inputs:\n    - {name: http, listen: '" + listen +
                         "'}\n  outputs:\n    - {name: clickhouse, flush_interval: 50ms, " +
                         connection(*ch) + "}\n");
  std::string body = "{\"logs\":[";
  for (int i = 0; i < 500; ++i)
    body += std::string(i ? "," : "") + "{\"timestamp\":\"2025-11-28T10:00:00." +
            std::to_string(100000 + i) + "Z\",\"service\":\"api\",\"trace_id\":\"t" +
            std::to_string(i % 7) + "\",\"message\":\"request " + std::to_string(i) + "\"}";
  body += "]}";
  ASSERT_TRUE(wait_until(
      [&] {
        return libcurl_post("http://" + listen + "/ingest/logs", body,
                            {"Content-Type: application/json"})
                   .status == 200;
      },
      30s))
      << e->err();
  ASSERT_TRUE(wait_until([&] { return rows() == 500; }, 30s)) << e->err();
  // The sender did not see the answer and sends the same body again.
  ASSERT_EQ(
      libcurl_post("http://" + listen + "/ingest/logs", body, {"Content-Type: application/json"})
          .status,
      200);
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(port), "devmesh_clickhouse_rows_sent_total", "").value_or(0) ==
               1000;
      },
      30s))
      << metrics(port);
  EXPECT_EQ(rows(), 500) << "FINAL: the copy has the same key";
  EXPECT_EQ(ch->number("SELECT uniqExact(event_id) FROM devmesh.log_events"), 500);
  EXPECT_EQ(rows("trace_id = 't3'"), 71);  // i % 7 == 3 for i < 500
}

TEST_F(ClickHouseOutput, ServerKilledMidStreamThenStartedAgainLosesNothing) {
  start();
  const int port = free_port();
  auto e = engine(d, plugins_head("  exit_when_done: true\n  http_listen: 127.0.0.1:" +
                                  std::to_string(port) + "\n") +
                         "  inputs:\n    - {name: dummy, rate: 2000, count: 20000, batch: 200}\n"
                         "  outputs:\n    - {name: clickhouse, flush_interval: 50ms, "
                         "connect_timeout: 1s, timeout: 5s, " +
                         connection(*ch) + "}\n");
  ASSERT_TRUE(wait_until([&] { return rows() > 0; }, 30s)) << e->err();
  ch->kill_now();  // a crash: a clean shutdown can outlast the whole stream
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(port), "devmesh_clickhouse_requests_total", "code=\"error\"")
                   .value_or(0) > 0;
      },
      30s))
      << e->err();
  start();
  ASSERT_EQ(e->wait_exit(120s), 0) << e->err();
  EXPECT_EQ(rows(), 20000);
  EXPECT_EQ(ch->number("SELECT uniqExact(event_id) FROM devmesh.log_events"), 20000);
}

TEST_F(ClickHouseOutput, FiveHundredIsRetriedAndFourHundredDeadLettersWithTheServersMessage) {
  // Answers the table check with the right columns, then inserts as the script says.
  std::string columns;
  for (const char *c :
       {"timestamp\tDateTime", "timestamp_ns\tInt64", "source\tString", "service\tString",
        "host\tString", "level\tString", "trace_id\tNullable(String)", "span_id\tNullable(String)",
        "event_type\tNullable(String)", "error_code\tNullable(String)", "message\tString",
        "meta_json\tNullable(String)", "event_id\tFixedString(16)", "pattern_id\tNullable(Int64)"})
    columns += std::string(c) + "\n";
  std::atomic<int> inserts{0};
  TestReceiver server([&](const TestReceiver::Request &r, int) {
    TestReceiver::Response resp;
    if (r.body.rfind("SELECT name, type", 0) == 0) {
      resp.body = columns;
      return resp;
    }
    const int n = inserts++;
    if (n == 0) {
      resp.status = 500;
      resp.body = "Code: 252, e.displayText() = DB::Exception: Too many parts (300).";
    } else if (n == 1) {
      resp.status = 200;
      resp.body = "";
    } else {
      resp.status = 400;
      resp.body = "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at position 1";
    }
    return resp;
  });
  const int port = free_port();
  auto e =
      engine(d, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                    "  inputs:\n    - {name: dummy, rate: 0, count: 100, batch: 100}\n"
                    "  outputs:\n    - {name: clickhouse, url: 'http://127.0.0.1:" +
                    std::to_string(server.port()) + "', flush_interval: 10ms, dead_letter_path: '" +
                    (d / "dead.ndjson") + "'}\n");
  // 500 then 200: the batch is retried and delivered.
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(port), "devmesh_clickhouse_rows_sent_total", "").value_or(0) ==
               100;
      },
      30s))
      << e->err();
  const std::string m = metrics(port);
  EXPECT_EQ(metric_value(m, "devmesh_clickhouse_requests_total", "code=\"5xx\""), 1);
  EXPECT_EQ(metric_value(m, "devmesh_clickhouse_requests_total", "code=\"2xx\""), 1);
  e->kill(SIGTERM);
  e->wait_exit(30s);

  // 400: an error no retry can mend, in the log and the dead-letter file with the message.
  auto e2 = engine(d,
                   plugins_head("  exit_when_done: true\n") +
                       "  inputs:\n    - {name: dummy, rate: 0, count: 10, batch: 10}\n"
                       "  outputs:\n    - {name: clickhouse, url: 'http://127.0.0.1:" +
                       std::to_string(server.port()) + "', dead_letter_path: '" +
                       (d / "dead2.ndjson") + "'}\n",
                   "e2");
  EXPECT_EQ(e2->wait_exit(60s), 0) << e2->err();
  EXPECT_NE(e2->err().find("Code: 62"), std::string::npos) << e2->err();
  EXPECT_EQ(read_lines(d / "dead2.ndjson").size(), 10u);
  EXPECT_NE(read_file(d / "dead2.ndjson").find("Syntax error"), std::string::npos);
}

TEST_F(ClickHouseOutput, ATableOfOtherColumnsIsRefusedNamingThem) {
  start();
  std::string err;
  ch->sql("CREATE DATABASE devmesh", &err);
  ch->sql(
      "CREATE TABLE devmesh.mine (timestamp DateTime, message String) ENGINE = MergeTree "
      "ORDER BY timestamp",
      &err);
  ASSERT_EQ(err, "");
  auto e = engine(d, plugins_head() +
                         "  inputs:\n    - {name: dummy, rate: 1}\n"
                         "  outputs:\n    - {name: clickhouse, table: mine, database: devmesh, " +
                         connection(*ch) + "}\n");
  EXPECT_NE(e->wait_exit(30s), 0);
  EXPECT_NE(e->err().find("column timestamp_ns is missing"), std::string::npos) << e->err();
  auto none =
      engine(d,
             plugins_head() +
                 "  inputs:\n    - {name: dummy, rate: 1}\n"
                 "  outputs:\n    - {name: clickhouse, table: absent, create_table: false, " +
                 connection(*ch) + "}\n",
             "none");
  EXPECT_NE(none->wait_exit(30s), 0);
  EXPECT_NE(none->err().find("devmesh.absent does not exist and create_table is false"),
            std::string::npos)
      << none->err();
}

TEST_F(ClickHouseOutput, RetentionDropsDaysOlderThanItAndKeepsToday) {
  start();
  const int port = free_port();
  auto e = engine(d, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                         "  inputs:\n    - {name: dummy, rate: 0, count: 50}\n"
                         "  outputs:\n    - {name: clickhouse, retention: 2d, "
                         "retention_interval: 200ms, " +
                         connection(*ch) + "}\n");
  ASSERT_TRUE(wait_until([&] { return rows() == 50; }, 30s)) << e->err();
  // A day long past, as an older devmesh would have left it.
  ASSERT_EQ(ch->sql("INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service,"
                    " host, level, message, event_id) VALUES (toDateTime(1600000000),"
                    " 1600000000000000000, 's', 'old', 'h', 'INFO', 'old', 'aaaaaaaaaaaaaaaa')"),
            "");
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(port), "devmesh_clickhouse_retention_partitions_dropped_total",
                           "")
                   .value_or(0) >= 1;
      },
      30s))
      << e->err();
  EXPECT_EQ(rows("service = 'old'"), 0);
  EXPECT_EQ(rows(), 50);
}

TEST_F(ClickHouseOutput, ClusterAndReplicatedDdlErrorsAreToldAsTheServerTellsThem) {
  start();
  // One node without remote_servers or ZooKeeper: the DDL fails, retried on each flush.
  auto e = engine(d, plugins_head() +
                         "  inputs:\n    - {name: dummy, rate: 10}\n"
                         "  outputs:\n    - {name: clickhouse, cluster: nowhere, " +
                         connection(*ch) + "}\n");
  EXPECT_TRUE(wait_until([&] { return e->err().find("nowhere") != std::string::npos; }, 30s))
      << e->err();
  e->kill(SIGTERM);
  e->wait_exit(30s);
  auto r = engine(d,
                  plugins_head() +
                      "  inputs:\n    - {name: dummy, rate: 10}\n"
                      "  outputs:\n    - {name: clickhouse, table: replicated_events, "
                      "replicated: true, " +
                      connection(*ch) + "}\n",
                  "replicated");
  EXPECT_TRUE(wait_until(
      [&] {
        return r->err().find("creating table devmesh.replicated_events") != std::string::npos;
      },
      30s))
      << r->err();
  r->kill(SIGTERM);
  r->wait_exit(30s);
}

TEST_F(ClickHouseOutput, DownAtStartTheHttpInputStillAnswersAndEverythingIsStoredOnceItIsUp) {
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = engine(d, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                         "  inputs:\n    - {name: http, listen: '" + listen +
                         "'}\n  outputs:\n    - {name: clickhouse, flush_interval: 50ms, "
                         "retry_wait: 100ms, retry_max_wait: 500ms, connect_timeout: 1s, " +
                         connection(*ch) + "}\n");
  // ClickHouse is not running: the engine serves all the same, and /health says why.
  int status = 0;
  std::string h;
  EXPECT_TRUE(wait_until(
      [&] {
        h = health(port, &status);
        return status == 503 && h.find("table devmesh.log_events") != std::string::npos;
      },
      30s))
      << status << " " << h << e->err();
  EXPECT_NE(h.find(ch->url()), std::string::npos) << h;
  const std::string body = logs_body(300, "early");
  ASSERT_EQ(
      libcurl_post("http://" + listen + "/ingest/logs", body, {"Content-Type: application/json"})
          .status,
      200)
      << e->err();
  // The batch is held: retried, and counted, until the table is checked.
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(port), "devmesh_clickhouse_flushes_not_ready_total", "")
                   .value_or(0) >= 2;
      },
      30s))
      << metrics(port);
  start();
  ASSERT_TRUE(wait_until([&] { return rows("service = 'early'") == 300; }, 60s)) << e->err();
  // Once: not even a copy waiting for a merge.
  EXPECT_EQ(ch->number("SELECT count() FROM devmesh.log_events"), 300);
  EXPECT_EQ(ch->number("SELECT uniqExact(event_id) FROM devmesh.log_events"), 300);
  EXPECT_TRUE(wait_until([&] { return (health(port, &status), status == 200); }, 30s))
      << health(port);
  const std::string m = metrics(port);
  EXPECT_EQ(metric_value(m, "devmesh_clickhouse_rows_sent_total", ""), 300);
  EXPECT_GE(metric_value(m, "devmesh_clickhouse_schema_errors_total", ""), 1);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

TEST_F(ClickHouseOutput, AWrongTableFoundAfterStartIsNamedAndItsBatchesHeldUntilItIsFixed) {
  start();
  std::string err;
  ch->sql("CREATE DATABASE devmesh", &err);
  ch->sql(
      "CREATE TABLE devmesh.log_events (timestamp DateTime, message String) ENGINE = "
      "MergeTree ORDER BY timestamp",
      &err);
  ASSERT_EQ(err, "");
  ch->stop();  // down at start: the table is found wrong only once the engine runs
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = engine(d, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                         "  inputs:\n    - {name: http, listen: '" + listen +
                         "'}\n  outputs:\n    - {name: clickhouse, flush_interval: 50ms, "
                         "retry_wait: 100ms, retry_max_wait: 500ms, connect_timeout: 1s, "
                         "dead_letter_path: '" +
                         (d / "dead.ndjson") + "', " + connection(*ch) + "}\n");
  int status = 0;
  ASSERT_TRUE(wait_until([&] { return (health(port, &status), status == 503); }, 30s)) << e->err();
  ASSERT_EQ(libcurl_post("http://" + listen + "/ingest/logs", logs_body(100, "held"),
                         {"Content-Type: application/json"})
                .status,
            200)
      << e->err();
  start();
  std::string h;
  EXPECT_TRUE(wait_until(
      [&] {
        h = health(port, &status);
        return status == 503 && h.find("column timestamp_ns is missing") != std::string::npos;
      },
      30s))
      << h << e->err();
  EXPECT_NE(e->err().find("table devmesh.log_events was not made by this output"),
            std::string::npos)
      << e->err();
  // Held, not dead-lettered: once the table is dropped the output makes it and delivers.
  ASSERT_EQ(ch->sql("DROP TABLE devmesh.log_events", &err), "") << err;
  ASSERT_TRUE(wait_until([&] { return rows("service = 'held'") == 100; }, 60s)) << e->err();
  EXPECT_TRUE(wait_until([&] { return (health(port, &status), status == 200); }, 30s))
      << health(port);
  EXPECT_EQ(read_file(d / "dead.ndjson"), "");
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

TEST_F(ClickHouseOutput, AServerThatNeverAnswersHoldsUpNeitherTheStartNorTheExit) {
  SilentServer silent;
  ASSERT_GT(silent.port(), 0);
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  // The default timeout (60s) is longer than every wait below: a check that blocked the loop
  // would keep /health from answering.
  auto e = engine(d, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                         "  inputs:\n    - {name: http, listen: '" + listen +
                         "'}\n  outputs:\n    - {name: clickhouse, url: 'http://127.0.0.1:" +
                         std::to_string(silent.port()) + "'}\n");
  int status = 0;
  std::string h;
  EXPECT_TRUE(wait_until(
      [&] {
        h = health(port, &status);
        return status == 503 && h.find("no answer from") != std::string::npos;
      },
      30s))
      << status << " " << h << e->err();
  EXPECT_EQ(libcurl_post("http://" + listen + "/ingest/logs", logs_body(10, "held"),
                         {"Content-Type: application/json"})
                .status,
            200)
      << e->err();
  // The check still waiting on the silent server is abandoned at stop.
  e->kill(SIGTERM);
  const int code = e->wait_exit(30s);
  EXPECT_GE(code, 0) << e->err();    // it exited
  EXPECT_LT(code, 128) << e->err();  // not of a signal (a crash at stop or destroy)
}

TEST_F(ClickHouseOutput, ANonUtcServerHasItsOwnDaysDroppedAndKeepsADayThatIsNotWhollyOld) {
  // UTC-11 all year: its day runs 11 hours behind UTC's.
  ch = std::make_unique<ClickHouse>(d.path(), "Pacific/Pago_Pago");
  start();
  ASSERT_EQ(ch->sql("SELECT timezone() FORMAT TabSeparated"), "Pacific/Pago_Pago\n");
  // The cutoff (now - retention) at 05:00 UTC three days ago: 18:00 the day before there.
  const int64_t now_s = static_cast<int64_t>(std::time(nullptr));
  const int64_t cutoff_s = (now_s / 86400 - 3) * 86400 + 5 * 3600;
  const std::string retention = std::to_string((now_s - cutoff_s) * 1000) + "ms";
  const int port = free_port();
  auto e = engine(d, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                         "  inputs:\n    - {name: dummy, rate: 0, count: 50}\n"
                         "  outputs:\n    - {name: clickhouse, retention: " +
                         retention + ", retention_interval: 200ms, " + connection(*ch) + "}\n");
  ASSERT_TRUE(wait_until([&] { return rows() == 50; }, 30s)) << e->err();
  auto insert = [&](const std::string &service, int64_t at) {
    std::string err;
    ch->sql(
        "INSERT INTO devmesh.log_events (timestamp, timestamp_ns, source, service, host, "
        "level, message, event_id) VALUES (toDateTime(" +
            std::to_string(at) + "), " + std::to_string(at) + "000000000, 's', '" + service +
            "', 'h', 'INFO', 'm', '" + std::string(16, service[0]) + "')",
        &err);
    return err;
  };
  // The cutoff's own day there: one record older than the retention, one younger. UTC's
  // arithmetic would drop that whole day (its date is UTC's day before the cutoff).
  ASSERT_EQ(insert("older", cutoff_s - 3600), "");
  ASSERT_EQ(insert("younger", cutoff_s + 3600), "");
  ASSERT_EQ(ch->number("SELECT toYYYYMMDD(toDateTime(" + std::to_string(cutoff_s + 3600) +
                       ")) = toYYYYMMDD(toDate(toDateTime(" + std::to_string(cutoff_s) +
                       "), 'UTC') - 1)"),
            1);
  // The day before there: wholly older than the retention.
  ASSERT_EQ(insert("gone", cutoff_s - 30 * 3600), "");
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(port), "devmesh_clickhouse_retention_partitions_dropped_total",
                           "")
                   .value_or(0) >= 1;
      },
      30s))
      << e->err();
  // Two more whole passes after the one that dropped it.
  const double passes =
      metric_value(metrics(port), "devmesh_clickhouse_retention_passes_total", "");
  ASSERT_TRUE(wait_until(
      [&] {
        return metric_value(metrics(port), "devmesh_clickhouse_retention_passes_total", "") >=
               passes + 2;
      },
      30s));
  EXPECT_EQ(rows("service = 'gone'"), 0);
  EXPECT_EQ(rows("service = 'older'"), 1);
  EXPECT_EQ(rows("service = 'younger'"), 1);
  EXPECT_EQ(rows(), 52);
  EXPECT_EQ(
      metric_value(metrics(port), "devmesh_clickhouse_retention_partitions_dropped_total", ""), 1);
  EXPECT_NE(e->err().find("(server time zone Pacific/Pago_Pago)"), std::string::npos) << e->err();
}

}  // namespace
