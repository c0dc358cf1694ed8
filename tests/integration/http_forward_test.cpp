// The http_forward output through the real binary: sidecar to aggregator (every field and the
// event_id across the hop, JSON, gzipped NDJSON and zstd JSON, bearer token, TLS with a client
// certificate through socat), the status mapping against a scripted receiver (retry with
// Retry-After, split on 413, dead-letter on other 4xx, connection errors and timeouts), connection
// reuse, and conservation: the aggregator killed -9 three times mid-stream, and down for 30 s, and
// a reload that swaps the output while its bodies are being compressed.
#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string listen_on(int port) {
  return "127.0.0.1:" + std::to_string(port);
}
std::string ingest_url(int port) {
  return "http://" + listen_on(port) + "/ingest/logs";
}

// An aggregator: http input (ack: delivered) on `port` (with /health) to stdout at `out`.
std::unique_ptr<Devmesh> aggregator(const TempDir &d, const std::string &name, int port,
                                    const std::string &out, const std::string &input_extra = "") {
  auto e = std::make_unique<Devmesh>(d, name,
                                     plugins_head("  http_listen: " + listen_on(port) + "\n") +
                                         "  inputs:\n    - {name: http, listen: '" +
                                         listen_on(port) + "', ack: delivered" + input_extra +
                                         "}\n  outputs:\n    - {name: stdout, path: " + out +
                                         ", flush_interval: 20ms}\n");
  return e;
}

// `count` numbered records from a dummy input to an http_forward output. The extras are YAML
// ", key: value" lists; a key they set replaces the default (rate 0, fast retries).
std::string sidecar_yaml(const std::string &url, long count, const std::string &dummy_extra,
                         const std::string &forward_extra, const std::string &service = "") {
  auto unless = [](const std::string &extra, const std::string &key, const std::string &item) {
    return extra.find(key + ":") == std::string::npos ? item : "";
  };
  return plugins_head("  exit_when_done: true\n" + service) +
         "  inputs:\n    - {name: dummy, count: " + std::to_string(count) +
         unless(dummy_extra, "rate", ", rate: 0") + dummy_extra +
         "}\n  outputs:\n    - {name: http_forward, url: '" + url + "'" +
         unless(forward_extra, "retry_wait", ", retry_wait: 50ms") +
         unless(forward_extra, "retry_max_wait", ", retry_max_wait: 500ms") + forward_extra + "}\n";
}

// Number of records in a {"logs":[...]} body.
size_t records_in(const std::string &body) {
  auto d = parse_json(body);
  return d.IsObject() && d.HasMember("logs") ? d["logs"].Size() : 0;
}

// Every seq 1..n arrived; a seq seen twice carries the same event_id each time, and that id is
// the one the sidecar's dummy gave it.
void expect_every_record_once_by_event_id(const std::string &path, long n) {
  size_t bad = 0;
  auto lines = read_ndjson(path, &bad);
  std::map<long, std::set<std::string>> ids;
  for (auto &l : lines)
    ids[std::atol(str_field(l["meta_json"], "seq").c_str())].insert(str_field(l, "event_id"));
  long missing = 0, mismatched = 0;
  for (long s = 1; s <= n; ++s) {
    auto it = ids.find(s);
    if (it == ids.end()) {
      ++missing;
      continue;
    }
    if (it->second.size() != 1 || *it->second.begin() != xxh128_hex("dummy.0:" + std::to_string(s)))
      ++mismatched;
  }
  EXPECT_EQ(missing, 0) << "records lost";
  EXPECT_EQ(mismatched, 0) << "a record arrived with another event_id";
  EXPECT_EQ(static_cast<long>(ids.size()), n) << "records that were never sent";
  EXPECT_LE(bad, 3u) << "more cut lines than kills";
  std::cout << "  " << lines.size() << " lines for " << n << " records ("
            << lines.size() - static_cast<size_t>(n) << " re-deliveries, " << bad
            << " cut lines)\n";
}

size_t count_of(const std::string &text, const std::string &needle) {
  size_t n = 0;
  for (size_t at = 0; (at = text.find(needle, at)) != std::string::npos; ++at) ++n;
  return n;
}

void hop_keeps_every_field(const std::string &forward_options) {
  TempDir d;
  const int agg_port = free_port(), side_port = free_port();
  auto agg = aggregator(d, "agg", agg_port, d / "agg.ndjson");
  ASSERT_TRUE(agg->ready(agg_port, d)) << (*agg)->err();
  // The sidecar takes records over HTTP too, so that every field can be set; it keeps its own
  // copy in side.ndjson.
  Devmesh side(d, "side",
               plugins_head("  http_listen: " + listen_on(side_port) + "\n") +
                   "  inputs:\n    - {name: http, listen: '" + listen_on(side_port) +
                   "'}\n  outputs:\n    - {name: stdout, path: " + d / "side.ndjson" +
                   "}\n    - {name: http_forward, url: '" + ingest_url(agg_port) + "'" +
                   forward_options + "}\n");
  ASSERT_TRUE(side.ready(side_port, d)) << side->err();
  write_file(d / "body.json", R"({"logs":[
    {"timestamp":"2025-11-28T19:55:40.521872Z","source":"journald","service":"loki.service",
     "host":"dev-services","level":"WARNING","message":"quote \" backslash \\ tab \t newline \n é ✓",
     "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",
     "event_type":"http_request","error_code":"HTTP_500","priority":4,
     "meta_json":{"pid":"493414","unit":"x.service","nested":{"k":[1,2]}}},
    {"message":"no timestamp, id derived at the sidecar"},
    {"message":"client id","event_id":"my-own-id-17","level":"fatal"}]})");
  auto r = curl_post(d, ingest_url(side_port), d / "body.json");
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "agg.ndjson").size() >= 3; }, 30s))
      << side->err() << (*agg)->err();
  // Settled at both ends: the sidecar's two outputs delivered the 3 records, and the aggregator
  // took and wrote those 3 (a late extra one would be counted first).
  std::string sm, am;
  EXPECT_TRUE(wait_until(
      [&] {
        http_get("http://" + listen_on(side_port) + "/metrics", &sm, d.path());
        http_get("http://" + listen_on(agg_port) + "/metrics", &am, d.path());
        return metric_value(sm, "devmesh_records_out_total", "instance=\"stdout.0\"") == 3 &&
               metric_value(sm, "devmesh_records_out_total", "plugin=\"http_forward\"") == 3 &&
               metric_value(am, "devmesh_records_in_total", "instance=\"http.0\"") == 3 &&
               metric_value(am, "devmesh_records_out_total", "instance=\"stdout.0\"") == 3;
      },
      30s))
      << sm << am;
  auto sent = read_lines(d / "side.ndjson"), got = read_lines(d / "agg.ndjson");
  std::sort(sent.begin(), sent.end());
  std::sort(got.begin(), got.end());
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(got, sent) << "the aggregator's records differ from the sidecar's";
}

TEST(HttpForward, EveryFieldAndTheEventIdSurviveTheHopAsJson) {
  hop_keeps_every_field("");
}

TEST(HttpForward, EveryFieldAndTheEventIdSurviveTheHopAsGzippedNdjson) {
  hop_keeps_every_field(", format: ndjson, gzip: true");
}

TEST(HttpForward, EveryFieldAndTheEventIdSurviveTheHopAsZstdJson) {
  hop_keeps_every_field(", compression: zstd");
}

TEST(HttpForward, EveryFieldAndTheEventIdSurviveTheHopAsGzipNamedByCompression) {
  hop_keeps_every_field(", compression: gzip");
}

// What goes on the wire with each compression: the header says which, and the standard tools
// (gzip, zstd) unpack the body to the same JSON.
TEST(HttpForward, CompressionSetsContentEncodingAndTheBodyUnpacksWithTheStandardTools) {
  TempDir d;
  TestReceiver rx([](const auto &, int) { return TestReceiver::Response{}; });
  const int side_port = free_port();
  Devmesh side(d, "side",
               plugins_head("  http_listen: " + listen_on(side_port) + "\n") +
                   "  inputs:\n    - {name: http, listen: '" + listen_on(side_port) +
                   "'}\n  outputs:\n    - {name: http_forward, alias: z, url: '" + rx.url("/z") +
                   "', compression: zstd}\n    - {name: http_forward, alias: g, url: '" +
                   rx.url("/g") +
                   "', compression: gzip}\n    - {name: http_forward, alias: n, url: '" +
                   rx.url("/n") + "', compression: none}\n");
  ASSERT_TRUE(side.ready(side_port, d)) << side->err();
  write_file(d / "b", R"({"logs":[{"message":"packed one"},{"message":"packed two"}]})");
  ASSERT_EQ(curl_post(d, ingest_url(side_port), d / "b").status, 200);
  ASSERT_TRUE(wait_until([&] { return rx.request_count() >= 3; }, 30s)) << side->err();
  std::map<std::string, std::string> plain;
  for (auto &req : rx.requests()) {
    const std::string tool = req.path == "/z" ? "/usr/bin/zstd" : "/bin/gzip";
    if (req.path == "/n") {
      EXPECT_EQ(req.headers.count("content-encoding"), 0u);
      plain[req.path] = req.body;
      continue;
    }
    EXPECT_EQ(req.headers["content-encoding"], req.path == "/z" ? "zstd" : "gzip");
    write_file(d / "packed", req.body);
    std::string text;
    ASSERT_EQ(run({tool, "-dc", d / "packed"}, d.path(), &text), 0) << req.path;
    plain[req.path] = text;
  }
  ASSERT_EQ(plain.size(), 3u);
  EXPECT_EQ(plain["/z"], plain["/n"]);
  EXPECT_EQ(plain["/g"], plain["/n"]);
  EXPECT_EQ(parse_json(plain["/n"])["logs"].Size(), 2u);
}

TEST(HttpForward, GzipTrueWithAnotherCompressionIsAConfigError) {
  TempDir d;
  Devmesh a(d, "a", sidecar_yaml("http://127.0.0.1:1/x", 1, "", ", gzip: true, compression: zstd"));
  EXPECT_NE(a->wait_exit(10s), 0);
  EXPECT_NE(a->err().find("gzip: true contradicts compression: zstd"), std::string::npos)
      << a->err();
  Devmesh b(d, "b", sidecar_yaml("http://127.0.0.1:1/x", 1, "", ", compression: brotli"));
  EXPECT_NE(b->wait_exit(10s), 0);
  EXPECT_NE(b->err().find("compression"), std::string::npos) << b->err();
}

TEST(HttpForward, SendsHeadersTokenAndBodiesThatKeepNanosecondsAndPriority) {
  TempDir d;
  TestReceiver rx([](const auto &, int) { return TestReceiver::Response{}; });
  const int side_port = free_port();
  Devmesh side(d, "side",
               plugins_head("  http_listen: " + listen_on(side_port) + "\n") +
                   "  inputs:\n    - {name: http, listen: '" + listen_on(side_port) +
                   "'}\n  outputs:\n    - {name: http_forward, url: '" + rx.url() +
                   "', auth_token: t0ken, headers: {X-Team: core, X-Node: n1}}\n"
                   "    - {name: http_forward, alias: lines, url: '" +
                   rx.url("/lines") + "', format: ndjson, gzip: true}\n");
  ASSERT_TRUE(side.ready(side_port, d)) << side->err();
  write_file(d / "b", R"({"logs":[{"message":"ns","timestamp":"2025-11-28T19:55:40.123456789Z",
    "priority":3,"event_id":"00112233445566778899aabbccddeeff"},{"message":"second"}]})");
  ASSERT_EQ(curl_post(d, ingest_url(side_port), d / "b").status, 200);
  ASSERT_TRUE(wait_until([&] { return rx.request_count() >= 2; }, 10s)) << side->err();
  for (auto &req : rx.requests()) {
    EXPECT_EQ(req.method, "POST");
    if (req.path == "/ingest/logs") {
      EXPECT_EQ(req.headers["authorization"], "Bearer t0ken");
      EXPECT_EQ(req.headers["x-team"], "core");
      EXPECT_EQ(req.headers["x-node"], "n1");
      EXPECT_EQ(req.headers["content-type"], "application/json");
      EXPECT_EQ(req.headers.count("expect"), 0u);
      EXPECT_EQ(req.headers.count("content-encoding"), 0u);
      auto body = parse_json(req.body);
      ASSERT_TRUE(body.IsObject()) << req.body;
      ASSERT_EQ(body["logs"].Size(), 2u);
      const auto &first = body["logs"][0];
      EXPECT_EQ(str_field(first, "timestamp"), "2025-11-28T19:55:40.123456789Z");
      EXPECT_EQ(first["priority"].GetInt(), 3);
      EXPECT_EQ(str_field(first, "event_id"), "00112233445566778899aabbccddeeff");
      EXPECT_FALSE(body["logs"][1].HasMember("priority"));
    } else {
      EXPECT_EQ(req.path, "/lines");
      EXPECT_EQ(req.headers["content-type"], "application/x-ndjson");
      EXPECT_EQ(req.headers["content-encoding"], "gzip");
      EXPECT_EQ(req.headers.count("authorization"), 0u);
      write_file(d / "lines.gz", req.body);
      std::string text;
      ASSERT_EQ(run({"/bin/gzip", "-dc", d / "lines.gz"}, d.path(), &text), 0);
      std::istringstream in(text);
      std::string line;
      int n = 0;
      while (std::getline(in, line)) {
        EXPECT_TRUE(parse_json(line).IsObject()) << line;
        ++n;
      }
      EXPECT_EQ(n, 2);
    }
  }
}

TEST(HttpForward, RetriesOn429And503And408HonouringRetryAfterThenDelivers) {
  TempDir d;
  TestReceiver rx([](const auto &, int i) {
    TestReceiver::Response r;
    if (i == 0) r.status = 429, r.headers = {{"Retry-After", "2"}}, r.body = "slow down";
    if (i == 1) r.status = 503;
    if (i == 2) r.status = 408;
    return r;
  });
  Devmesh side(d, "side", sidecar_yaml(rx.url(), 10, "", ", batch_size: 10"));
  ASSERT_EQ(side->wait_exit(60s), 0) << side->err();
  auto reqs = rx.requests();
  ASSERT_EQ(reqs.size(), 4u);
  for (auto &r : reqs) EXPECT_EQ(r.body, reqs[0].body) << "a retry sent other records";
  EXPECT_EQ(records_in(reqs[0].body), 10u);
  // retry_wait is 50 ms: only Retry-After explains two seconds.
  EXPECT_GE(reqs[1].at - reqs[0].at, 1900ms);
  EXPECT_NE(side->err().find("HTTP 429"), std::string::npos) << side->err();
  EXPECT_NE(side->err().find("slow down"), std::string::npos);
}

TEST(HttpForward, Other4xxGoesToTheDeadLetterFileWithTheResponseBodyAndIsNotRetried) {
  TempDir d;
  TestReceiver rx([](const auto &, int) {
    TestReceiver::Response r;
    r.status = 400;
    r.body = R"({"error":"schema mismatch"})";
    return r;
  });
  Devmesh side(
      d, "side",
      sidecar_yaml(rx.url(), 20, "", ", batch_size: 20, dead_letter_path: " + d / "dead.ndjson"));
  ASSERT_EQ(side->wait_exit(60s), 0) << side->err();
  EXPECT_EQ(rx.request_count(), 1u);
  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 20u);
  const std::string reason = str_field(dead[0], "reason");
  EXPECT_NE(reason.find("HTTP 400"), std::string::npos) << reason;
  EXPECT_NE(reason.find("schema mismatch"), std::string::npos) << reason;
}

TEST(HttpForward, PayloadTooLargeSplitsTheBatchAndDeadLettersARecordThatNeverFits) {
  TempDir d;
  std::mutex mu;
  std::vector<std::string> delivered;  // messages of the bodies answered 200
  TestReceiver rx([&](const TestReceiver::Request &req, int) {
    TestReceiver::Response r;
    auto body = parse_json(req.body);
    if (body["logs"].Size() > 8 || req.body.find("POISON") != std::string::npos) {
      r.status = 413;
      return r;
    }
    std::lock_guard<std::mutex> lk(mu);
    for (auto &rec : body["logs"].GetArray()) delivered.push_back(str_field(rec, "message"));
    return r;
  });
  Devmesh side(d, "side",
               plugins_head("  exit_when_done: true\n") +
                   "  inputs:\n    - {name: dummy, rate: 0, count: 63, batch: 64}\n"
                   "    - {name: dummy, alias: bad, rate: 0, count: 1, message: 'POISON {seq}'}\n"
                   "  outputs:\n    - {name: http_forward, url: '" +
                   rx.url() + "', batch_size: 64, flush_interval: 500ms, dead_letter_path: " +
                   d / "dead.ndjson" + "}\n");
  ASSERT_EQ(side->wait_exit(60s), 0) << side->err();
  std::lock_guard<std::mutex> lk(mu);
  std::set<std::string> unique(delivered.begin(), delivered.end());
  EXPECT_EQ(delivered.size(), 63u);
  EXPECT_EQ(unique.size(), 63u);
  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(str_field(dead[0]["record"], "message"), "POISON 1");
  EXPECT_NE(str_field(dead[0], "reason").find("HTTP 413"), std::string::npos);
}

TEST(HttpForward, ConnectionRefusedAndTimeoutsAreRetriedUntilTheReceiverAnswers) {
  TempDir d;
  const int port = free_port();  // nobody listens yet
  Devmesh side(d, "side",
               sidecar_yaml("http://127.0.0.1:" + std::to_string(port) + "/ingest/logs", 10, "",
                            ", connect_timeout: 1s, timeout: 1s"));
  ASSERT_TRUE(wait_until(
      [&] {
        return side->err().find("Couldn't connect") != std::string::npos ||
               side->err().find("Connection refused") != std::string::npos;
      },
      10s))
      << side->err();
  // The first request is answered too late: a timeout, retried.
  TestReceiver rx(
      [](const auto &, int i) {
        TestReceiver::Response r;
        if (i == 0) r.delay = 2500ms;
        return r;
      },
      port);
  ASSERT_GT(rx.port(), 0);
  ASSERT_EQ(side->wait_exit(60s), 0) << side->err();
  EXPECT_GE(rx.request_count(), 2u);
  EXPECT_NE(side->err().find("timed out"), std::string::npos) << side->err();
}

TEST(HttpForward, ConnectionsAreReusedAcrossRequests) {
  TempDir d;
  TestReceiver rx([](const auto &, int) { return TestReceiver::Response{}; });
  Devmesh side(d, "side",
               sidecar_yaml(rx.url(), 5000, ", batch: 100", ", batch_size: 100, workers: 2"));
  ASSERT_EQ(side->wait_exit(60s), 0) << side->err();
  size_t records = 0;
  for (auto &r : rx.requests()) records += records_in(r.body);
  EXPECT_EQ(records, 5000u);
  EXPECT_GE(rx.request_count(), 50u);
  EXPECT_LE(rx.connections(), 4) << "a connection per request";
}

TEST(HttpForward, BearerTokenIsCheckedByTheAggregatorAndAWrongOneDeadLetters) {
  TempDir d;
  const int port = free_port();
  auto agg = aggregator(d, "agg", port, d / "agg.ndjson", ", auth_token: right");
  ASSERT_TRUE(agg->ready(port, d)) << (*agg)->err();
  Devmesh good(d, "good", sidecar_yaml(ingest_url(port), 100, "", ", auth_token: right"));
  ASSERT_EQ(good->wait_exit(30s), 0) << good->err();
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 100u);
  Devmesh bad(d, "bad",
              sidecar_yaml(ingest_url(port), 100, "",
                           ", auth_token: wrong, dead_letter_path: " + d / "dead.ndjson"));
  ASSERT_EQ(bad->wait_exit(30s), 0) << bad->err();
  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 100u);
  EXPECT_NE(str_field(dead[0], "reason").find("HTTP 401"), std::string::npos);
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 100u);
}

TEST(HttpForward, TlsVerifiesTheReceiverWithCaFileAndPresentsAClientCertificate) {
  // tools/setup installs both (socat, openssl): a missing one is a broken set-up, and a skip
  // here would silently remove the only test of ca_file and the client certificate.
  ASSERT_EQ(access("/usr/bin/socat", X_OK), 0) << "socat is missing: run tools/setup";
  ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0) << "openssl is missing: run tools/setup";
  TempDir d;
  // A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
  const std::string script =
      "set -e; cd " + d.path() +
      "\nkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 "
      "2>/dev/null; }"
      "\nkey ca.key; key server.key; key client.key"
      "\nopenssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=devmesh-test-ca"
      "\nopenssl req -new -key server.key -out server.csr -subj /CN=127.0.0.1"
      "\nprintf 'subjectAltName=IP:127.0.0.1\\n' > san.cnf"
      "\nopenssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem"
      " -days 2 -extfile san.cnf 2>/dev/null"
      "\nopenssl req -new -key client.key -out client.csr -subj /CN=sidecar"
      "\nopenssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem"
      " -days 2 2>/dev/null\n";
  std::string out, err;
  ASSERT_EQ(run({"/bin/sh", "-c", script}, d.path(), &out, &err), 0) << out << err;
  const int agg_port = free_port(), tls_port = free_port();
  auto agg = aggregator(d, "agg", agg_port, d / "agg.ndjson");
  ASSERT_TRUE(agg->ready(agg_port, d)) << (*agg)->err();
  // socat terminates TLS in front of the aggregator and requires a client certificate.
  Process tls({"/usr/bin/socat",
               "OPENSSL-LISTEN:" + std::to_string(tls_port) +
                   ",bind=127.0.0.1,reuseaddr,fork,cert=" + d / "server.pem" +
                   ",key=" + d / "server.key" + ",cafile=" + d / "ca.pem" + ",verify=1",
               "TCP:127.0.0.1:" + std::to_string(agg_port)},
              d.path(), "socat");
  const std::string url = "https://127.0.0.1:" + std::to_string(tls_port) + "/ingest/logs";
  // Without the CA the receiver is not trusted: retried, never delivered.
  Devmesh untrusted(d, "untrusted", sidecar_yaml(url, 10, "", ""));
  ASSERT_TRUE(
      wait_until([&] { return untrusted->err().find("certificate") != std::string::npos; }, 15s))
      << untrusted->err() << tls.err();
  untrusted->kill(SIGKILL);
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 0u);
  Devmesh trusted(d, "trusted",
                  sidecar_yaml(url, 100, "",
                               ", ca_file: " + d / "ca.pem" + ", client_cert: " + d / "client.pem" +
                                   ", client_key: " + d / "client.key"));
  ASSERT_EQ(trusted->wait_exit(30s), 0) << trusted->err() << tls.err();
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 100u);
}

TEST(HttpForward, UnreadableCaFileOrBadUrlIsAConfigError) {
  TempDir d;
  Devmesh a(d, "a", sidecar_yaml("http://127.0.0.1:1/x", 1, "", ", ca_file: /nonexistent/ca.pem"));
  EXPECT_NE(a->wait_exit(10s), 0);
  EXPECT_NE(a->err().find("ca_file: cannot read /nonexistent/ca.pem"), std::string::npos)
      << a->err();
  Devmesh b(d, "b", sidecar_yaml("ftp://127.0.0.1/x", 1, "", ""));
  EXPECT_NE(b->wait_exit(10s), 0);
  EXPECT_NE(b->err().find("scheme must be http or https"), std::string::npos) << b->err();
}

// Sidecar -> aggregator with the aggregator killed -9 and restarted three times mid-stream:
// every numbered record arrives, re-deliveries only with their own event_id.
TEST(HttpForward, KillingTheAggregatorThreeTimesMidStreamLosesNothing) {
  TempDir d;
  const long n = 100000;
  const int port = free_port();
  const std::string out = d / "agg.ndjson";
  auto agg = aggregator(d, "agg0", port, out);
  ASSERT_TRUE(agg->ready(port, d)) << (*agg)->err();
  Devmesh side(d, "side",
               plugins_head("  exit_when_done: true\n") +
                   "  inputs:\n    - {name: dummy, rate: 20000, count: " + std::to_string(n) +
                   "}\n  outputs:\n    - {name: http_forward, url: '" + ingest_url(port) +
                   "', workers: 2, retry_wait: 100ms, retry_max_wait: 500ms}\n");
  ASSERT_TRUE(wait_until([&] { return file_size(out) > 0; }, 20s)) << side->err();
  const size_t line = read_lines(out)[0].size() + 1;
  for (int kill = 1; kill <= 3; ++kill) {
    ASSERT_TRUE(wait_until([&] { return file_size(out) >= line * 20000 * kill; }, 60s))
        << "stalled before kill " << kill << "\n"
        << side->err();
    (*agg)->kill(SIGKILL);
    (*agg)->wait_exit(10s);
    // Down until the sidecar has seen it fail (the fault happened), however long that takes.
    const size_t failed_before = count_of(side->err(), "failed (try");
    ASSERT_TRUE(
        wait_until([&] { return count_of(side->err(), "failed (try") > failed_before; }, 60s))
        << side->err();
    agg = aggregator(d, "agg" + std::to_string(kill), port, out);
    ASSERT_TRUE(agg->ready(port, d)) << (*agg)->err();
  }
  ASSERT_EQ(side->wait_exit(90s), 0) << side->err();
  // Each outage cost the sidecar failed requests, which it retried.
  EXPECT_GE(count_of(side->err(), "failed (try"), 3u) << side->err();
  expect_every_record_once_by_event_id(out, n);
}

// The aggregator down: the sidecar's queue fills, its input pauses and stays paused (reading
// nothing more) for as long as the aggregator is away, its memory stays flat; once the
// aggregator is back, every record arrives. The outage lasts until those were seen, not a
// fixed time, so a slow machine only makes it longer.
TEST(HttpForward, AggregatorDownPausesTheSidecarLosesNothingAndSidecarMemoryStaysBounded) {
  TempDir d;
  const long n = 300000;
  const int port = free_port(), side_port = free_port();
  const std::string out = d / "agg.ndjson";
  auto agg = aggregator(d, "agg0", port, out);
  ASSERT_TRUE(agg->ready(port, d)) << (*agg)->err();
  Devmesh side(
      d, "side",
      sidecar_yaml(ingest_url(port), n, ", rate: 15000",
                   ", workers: 2, queue_limit: 2MiB, retry_wait: 200ms, retry_max_wait: 1s",
                   "  http_listen: " + listen_on(side_port) + "\n"));
  ASSERT_TRUE(wait_until([&] { return file_size(out) > 0; }, 20s)) << side->err();
  const size_t line = read_lines(out)[0].size() + 1;
  ASSERT_TRUE(wait_until([&] { return file_size(out) >= line * 20000; }, 30s)) << side->err();
  (*agg)->kill(SIGKILL);
  (*agg)->wait_exit(10s);
  long max_rss = 0;
  std::string m;
  auto sample = [&] {
    max_rss = std::max(max_rss, side->rss_kib());
    http_get("http://" + listen_on(side_port) + "/metrics", &m, d.path());
  };
  const std::string dummy = "instance=\"dummy.0\"";
  ASSERT_TRUE(wait_until(
      [&] {
        sample();
        return metric_value(m, "devmesh_input_paused", dummy) == 1;
      },
      60s))
      << "the sidecar's input was never paused by backpressure\n"
      << m;
  // Paused means reading nothing: the input's count stands still over the next samples (a
  // stretch of the outage as long as ten metric reads, however long those take).
  const double read_at_pause = metric_value(m, "devmesh_records_in_total", dummy);
  ASSERT_GT(read_at_pause, 0) << m;
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(200ms);
    sample();
    EXPECT_EQ(metric_value(m, "devmesh_input_paused", dummy), 1)
        << "resumed with the aggregator down";
    EXPECT_EQ(metric_value(m, "devmesh_records_in_total", dummy), read_at_pause)
        << "read while paused";
  }
  EXPECT_LT(read_at_pause, n) << "everything was read before the pause: the test proves nothing";
  agg = aggregator(d, "agg1", port, out);
  ASSERT_TRUE(agg->ready(port, d)) << (*agg)->err();
  ASSERT_EQ(side->wait_exit(90s), 0) << side->err();
  // Paused, the sidecar holds its 2 MiB queue and nothing more; unbounded, the records read at
  // 15k/s during the outage would take well over 100 MiB.
  EXPECT_LT(max_rss, 40 * 1024) << "sidecar RSS during the outage, KiB";
  std::cout << "  sidecar peak RSS during the outage: " << max_rss / 1024 << " MiB\n";
  expect_every_record_once_by_event_id(out, n);
}

}  // namespace

// in_flight: 3 keeps three requests of one worker open at once (the receiver holds the first
// three until all three are there), and each is answered and accounted on its own: one answered
// 503 is re-sent and delivered once, one with a record the receiver rejects sends that record to
// the dead-letter file with its reason, and every other record is delivered exactly once, every
// batch acknowledged to the input.
TEST(HttpForward, InFlightKeepsSeveralRequestsPerWorkerEachAnsweredAndAccountedOnItsOwn) {
  TempDir d;
  std::mutex mu;
  std::condition_variable cv;
  int held = 0, peak = 0;
  TestReceiver rx([&](const TestReceiver::Request &r, int i) {
    if (i < 3) {
      std::unique_lock<std::mutex> lk(mu);
      peak = std::max(peak, ++held);
      cv.notify_all();
      cv.wait_for(lk, 30s, [&] { return peak >= 3; });
    }
    TestReceiver::Response resp;
    if (i == 1) resp.status = 503;  // the second request: re-sent later
    if (i == 2) {
      const size_t n = records_in(r.body);
      resp.body = "{\"accepted\":" + std::to_string(n - 1) +
                  R"(,"rejected":1,"errors":[{"index":2,"reason":"bad record"}]})";
    }
    return resp;
  });
  Devmesh side(d, "side",
               plugins_head("  exit_when_done: true\n  log_level: info\n") +
                   "  inputs:\n    - {name: dummy, rate: 0, count: 60, batch: 10}\n"
                   "  outputs:\n    - {name: http_forward, url: '" +
                   rx.url() +
                   "', workers: 1, in_flight: 3, batch_size: 10, retry_wait: 50ms, "
                   "retry_max_wait: 500ms, dead_letter_path: " +
                   d / "dead.ndjson" + "}\n");
  ASSERT_EQ(side->wait_exit(90s), 0) << side->err();
  {
    std::lock_guard<std::mutex> lk(mu);
    EXPECT_EQ(peak, 3) << "requests of the one worker open at once";
  }
  // What the receiver took: every 200's records but the one it rejected.
  auto reqs = rx.requests();
  std::map<long, int> delivered;
  std::string rejected_seq;
  for (size_t i = 0; i < reqs.size(); ++i) {
    if (i == 1) continue;  // answered 503
    auto body = parse_json(reqs[i].body);
    for (rapidjson::SizeType k = 0; k < body["logs"].Size(); ++k) {
      const std::string seq = str_field(body["logs"][k]["meta_json"], "seq");
      if (i == 2 && k == 2)
        rejected_seq = seq;
      else
        delivered[std::atol(seq.c_str())]++;
    }
  }
  EXPECT_EQ(records_in(reqs[1].body), 10u);
  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(str_field(dead[0]["record"]["meta_json"], "seq"), rejected_seq);
  EXPECT_NE(str_field(dead[0], "reason").find("bad record"), std::string::npos);
  for (long s = 1; s <= 60; ++s) {
    if (std::to_string(s) == rejected_seq) continue;
    EXPECT_EQ(delivered[s], 1) << "seq " << s;
  }
  EXPECT_EQ(delivered.size(), 59u);
  EXPECT_NE(side->err().find("generated 60 records in 6 batches, 6 acked"), std::string::npos)
      << side->err();
}

// Outputs on worker threads flush one at a time per thread: in_flight above 1 there is refused.
TEST(HttpForward, InFlightOnAnOutputWithWorkerThreadsIsAConfigProblem) {
  TempDir d;
  Devmesh e(d, "e",
            plugins_head() +
                "  inputs:\n    - {name: dummy, rate: 0, count: 1}\n"
                "  outputs:\n    - {name: sqlite, path: " +
                d / "x.db" + ", in_flight: 2}\n");
  EXPECT_EQ(e->wait_exit(30s), 1);
  EXPECT_NE(e->err().find("in_flight"), std::string::npos) << e->err();
  EXPECT_NE(e->err().find("raise workers instead"), std::string::npos) << e->err();
}

// Bodies are encoded and compressed on the engine's thread pool, several at once (one per open
// request). A reload that replaces the output mid-stream (gzip to zstd) retires the old one while
// its batches are being compressed or sent: it finishes them, the new one takes the rest, and
// every record arrives with its own event_id.
TEST(HttpForward, AReloadMidStreamLosesNoBatchThatWasBeingCompressed) {
  TempDir d;
  const long n = 200000;
  const int port = free_port(), admin = free_port();
  const std::string out = d / "agg.ndjson";
  auto agg = aggregator(d, "agg", port, out);
  ASSERT_TRUE(agg->ready(port, d)) << (*agg)->err();
  auto yaml = [&](const std::string &compression) {
    return sidecar_yaml(ingest_url(port), n, ", rate: 50000, batch: 1000",
                        ", workers: 4, batch_size: 1000, compression: " + compression,
                        "  http_listen: " + listen_on(admin) + "\n");
  };
  Devmesh side(d, "side", yaml("gzip"));
  ASSERT_TRUE(side.ready(admin, d)) << side->err();
  ASSERT_TRUE(wait_until([&] { return file_size(out) > 0; }, 30s)) << side->err();
  const size_t line = read_lines(out)[0].size() + 1;
  ASSERT_TRUE(wait_until([&] { return file_size(out) >= line * 20000; }, 60s)) << side->err();
  write_file(d / "side.yaml", yaml("zstd"));
  side->kill(SIGHUP);
  std::string m;
  ASSERT_TRUE(wait_until(
      [&] {
        http_get("http://" + listen_on(admin) + "/metrics", &m, d.path());
        return find_metric(m, "devmesh_reloads_total", "result=\"applied\"").value_or(0) == 1;
      },
      30s))
      << m << side->err();
  ASSERT_EQ(side->wait_exit(90s), 0) << side->err();
  expect_every_record_once_by_event_id(out, n);
}
