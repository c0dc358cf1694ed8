// The otlp input through the real binary: Fluent Bit's out_opentelemetry (protobuf, gzip)
// shipping records that end in SQLite and come back from the query API; curl with OTLP JSON
// bodies; protobuf bodies built with the generated classes; partial success for rejected
// records (answered and counted); every bad body (malformed protobuf, wrong JSON types, hostile
// depth, size and count, invalid UTF-8, gzip bombs, other types and encodings) answered with a
// clear error and the engine still serving; ack: delivered with its ack_timeout and failures;
// the bearer token and TLS.
#include <gtest/gtest.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb.h>
#include <rapidjson/document.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;
namespace otlpv1 = opentelemetry::proto;
using otlpv1::collector::logs::v1::ExportLogsServiceRequest;
using otlpv1::collector::logs::v1::ExportLogsServiceResponse;

namespace {

std::string listen_on(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// An engine whose otlp input, /health and /metrics share one port, into SQLite (and the query
// output on query_port when it is not 0).
struct Engine {
  TempDir &d;
  int port = free_port();
  std::string db;
  std::unique_ptr<devmesh::test::Process> proc;

  Engine(TempDir &dir, const std::string &input_options, const std::string &outputs = "",
         int query_port = 0)
      : d(dir), db(dir / "devmesh.db") {
    std::string out = outputs.empty() ? "    - {name: sqlite, path: " + db + "}\n" : outputs;
    if (query_port)
      out += "    - {name: query, match: none, listen: '" + listen_on(query_port) +
             "', path: " + db + "}\n";
    proc = start_engine(d, plugins_head("  http_listen: " + listen_on(port) + "\n") +
                               "  inputs:\n    - {name: otlp, listen: '" + listen_on(port) + "'" +
                               input_options + "}\n  outputs:\n" + out);
  }
  bool ready() {
    return wait_until([&] { return http("http://" + listen_on(port) + "/health").status != 0; },
                      20s);
  }
  std::string url() const { return "http://" + listen_on(port) + "/v1/logs"; }
  HttpResponse post_json(const std::string &body, std::vector<std::string> headers = {}) {
    headers.push_back("Content-Type: application/json");
    return http(url(), headers, "POST", body);
  }
  HttpResponse post_proto(const std::string &body, std::vector<std::string> headers = {}) {
    headers.push_back("Content-Type: application/x-protobuf");
    return http(url(), headers, "POST", body);
  }
  std::string metrics() { return http("http://" + listen_on(port) + "/metrics").body; }
  double metric(const std::string &name, const std::string &labels = "") {
    return metric_value(metrics(), "devmesh_" + name, labels);
  }
  long count(const std::string &where = "1") {
    return std::stol(SqliteDb(db).value("SELECT count(*) FROM log_events WHERE " + where));
  }
  bool settled() { return wait_settled(port, d.path(), 30s); }
};

// An OTLP JSON body: one resource (service.name, host.name, an int attribute), one scope, the
// given logRecords array.
std::string json_body(const std::string &records) {
  return R"({"resourceLogs":[{"resource":{"attributes":[)"
         R"({"key":"service.name","value":{"stringValue":"checkout"}},)"
         R"({"key":"host.name","value":{"stringValue":"node-7"}},)"
         R"({"key":"k8s.pod.restarts","value":{"intValue":"3"}}]},)"
         R"("scopeLogs":[{"scope":{"name":"shop.lib","version":"2.1","attributes":[)"
         R"({"key":"enabled","value":{"boolValue":true}}]},"logRecords":)" +
         records + "}]}]}";
}

rapidjson::Document parse(const std::string &text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  return d;
}

ExportLogsServiceRequest proto_request(const std::string &service) {
  ExportLogsServiceRequest req;
  auto *rl = req.add_resource_logs();
  auto *attr = rl->mutable_resource()->add_attributes();
  attr->set_key("service.name");
  attr->mutable_value()->set_string_value(service);
  rl->add_scope_logs()->mutable_scope()->set_name("proto.scope");
  return req;
}

otlpv1::logs::v1::LogRecord *add_record(ExportLogsServiceRequest &req, const std::string &body) {
  auto *r = req.mutable_resource_logs(0)->mutable_scope_logs(0)->add_log_records();
  r->mutable_body()->set_string_value(body);
  r->set_time_unix_nano(1700000000123456789ull);
  return r;
}

std::string serialized(const ExportLogsServiceRequest &req) {
  std::string out;
  req.SerializeToString(&out);
  return out;
}

// The google.rpc.Status of an error answer in protobuf: {code, message}.
std::pair<int, std::string> proto_status(const std::string &body) {
  // Two fields written by the server by hand; read them the same way.
  size_t i = 0;
  int code = -1;
  std::string message;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0; i < body.size(); shift += 7) {
      const uint8_t b = static_cast<uint8_t>(body[i++]);
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    return v;
  };
  while (i < body.size()) {
    const uint64_t tag = varint();
    if (tag == 0x08) code = static_cast<int>(varint());
    if (tag == 0x12) {
      const size_t n = varint();
      message = body.substr(i, n);
      i += n;
    }
  }
  return {code, message};
}

// A POST with the curl binary (the client people test an endpoint with): status and body.
struct CurlResult {
  int status = 0;
  std::string body, headers;
};
CurlResult curl_post(const TempDir &d, const std::string &url, const std::string &body_file,
                     std::vector<std::string> extra = {"-H", "Content-Type: application/json"}) {
  std::vector<std::string> argv = {
      "/usr/bin/curl",    "-s",           "-o",           d / "resp.body", "-D",
      d / "resp.headers", "-w",           "%{http_code}", "--max-time",    "30",
      "--data-binary",    "@" + body_file};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  std::string out;
  CurlResult r;
  if (run(argv, d.path(), &out) != 0) return r;
  r.status = std::atoi(out.c_str());
  r.body = read_file(d / "resp.body");
  r.headers = read_file(d / "resp.headers");
  return r;
}

std::string gzip_file(const TempDir &d, const std::string &body) {
  write_file(d / "plain.bin", body);
  EXPECT_EQ(
      run({"/bin/sh", "-c", "cd " + d.path() + " && gzip -c plain.bin > packed.gz"}, d.path()), 0);
  return read_file(d / "packed.gz");
}

TEST(OtlpInput, FluentBitOpenTelemetryRecordsAreAllStoredAndQueryable) {
  if (access(FLUENT_BIT_BIN, X_OK) != 0) GTEST_SKIP() << "no Fluent Bit at " FLUENT_BIT_BIN;
  TempDir d;
  const int query_port = free_port();
  Engine e(d, "", "", query_port);
  ASSERT_TRUE(e.ready()) << e.proc->err();
  constexpr int kRecords = 1000;
  // Fluent Bit's dummy input, one record per millisecond (each its own timestamp), sent by
  // out_opentelemetry as protobuf, gzip-compressed, the message as the body and the other keys
  // as attributes.
  write_file(d / "fluent-bit.yaml",
             "service:\n  flush: 0.2\n  log_level: info\npipeline:\n  inputs:\n"
             "    - name: dummy\n"
             "      dummy: '{\"message\":\"fluentbit otlp record\",\"app\":\"shop\",\"n\":7}'\n"
             "      samples: " +
                 std::to_string(kRecords) +
                 "\n      rate: 1000\n  outputs:\n    - name: opentelemetry\n      match: '*'\n"
                 "      host: 127.0.0.1\n      port: " +
                 std::to_string(e.port) +
                 "\n      logs_uri: /v1/logs\n      compress: gzip\n"
                 "      logs_body_key: $message\n      logs_body_key_attributes: true\n");
  Process fb({FLUENT_BIT_BIN, "-c", d / "fluent-bit.yaml"}, d.path(), "fluent-bit");
  ASSERT_TRUE(wait_until([&] { return e.count() == kRecords; }, 60s)) << e.count() << " stored\n"
                                                                      << fb.err() << e.proc->err();
  ASSERT_TRUE(e.settled());
  EXPECT_EQ(e.count(), kRecords);
  EXPECT_EQ(e.metric("otlp_records_accepted_total"), kRecords);
  EXPECT_EQ(e.metric("otlp_requests_total", "status=\"400\""), 0);
  EXPECT_EQ(e.count("message = 'fluentbit otlp record' AND source = 'otlp' AND level = 'INFO' AND "
                    "json_extract(meta_json, '$.\"attributes.app\"') = 'shop' AND "
                    "json_type(meta_json, '$.\"attributes.n\"') = 'integer'"),
            kRecords);
  const HttpResponse q =
      http("http://" + listen_on(query_port) + "/query/logs?q=fluentbit+otlp+record&limit=10000");
  ASSERT_EQ(q.status, 200) << q.body;
  const rapidjson::Document doc = parse(q.body);
  ASSERT_TRUE(doc.IsArray()) << q.body.substr(0, 500);
  EXPECT_EQ(doc.Size(), static_cast<rapidjson::SizeType>(kRecords));
  EXPECT_STREQ(doc[0]["meta_json"]["attributes.app"].GetString(), "shop");
}

TEST(OtlpInput, CurlJsonBodyMapsResourceScopeAndRecordFieldsIntoColumnsAndTypedMeta) {
  TempDir d;
  Engine e(d, ", ack: delivered");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  write_file(
      d / "body.json",
      json_body(
          R"([{"timeUnixNano":"1700000000123456789","observedTimeUnixNano":1,)"
          R"("severityNumber":17,"severityText":"ERROR",)"
          R"("traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174",)"
          R"("eventName":"payment.failed","flags":1,)"
          R"("body":{"stringValue":"card declined"},"attributes":[)"
          R"({"key":"http.status","value":{"intValue":402}},)"
          R"({"key":"ratio","value":{"doubleValue":0.25}},)"
          R"({"key":"raw","value":{"bytesValue":"AAEC"}},)"
          R"({"key":"none","value":{}},)"
          R"({"key":"cart","value":{"kvlistValue":{"values":[{"key":"items",)"
          R"("value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"x"}]}}}]}}}]},)"
          R"({"observedTimeUnixNano":"1700000000000000042","severityText":"warning",)"
          R"("body":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}},)"
          R"({"severityNumber":2,"body":{"arrayValue":{"values":[{"boolValue":false}]}}}])"));
  const CurlResult r = curl_post(d, e.url(), d / "body.json");
  ASSERT_EQ(r.status, 200) << r.body << e.proc->err();
  EXPECT_EQ(r.body, "{}");  // an ExportLogsServiceResponse without partial_success
  EXPECT_NE(r.headers.find("content-type: application/json"), std::string::npos) << r.headers;
  SqliteDb s(e.db);
  EXPECT_EQ(s.rows("SELECT service, host, level, trace_id, span_id, event_type, source FROM "
                   "log_events WHERE message = 'card declined'"),
            (std::vector<std::vector<std::string>>{
                {"checkout", "node-7", "ERROR", "5b8efff798038103d269b633813fc60c",
                 "eee19b7ec3c1b174", "payment.failed", "otlp"}}));
  EXPECT_EQ(e.count("message = 'card declined' AND timestamp = 1700000000123456789"), 1)
      << s.value("SELECT timestamp FROM log_events");
  const rapidjson::Document meta =
      parse(s.value("SELECT meta_json FROM log_events WHERE message = 'card declined'"));
  ASSERT_TRUE(meta.IsObject());
  EXPECT_EQ(meta["resource.k8s.pod.restarts"].GetInt(), 3);
  EXPECT_FALSE(meta.HasMember("resource.service.name"));  // it is the service column
  EXPECT_TRUE(meta["scope.enabled"].IsTrue());
  EXPECT_STREQ(meta["otel.scope.name"].GetString(), "shop.lib");
  EXPECT_STREQ(meta["otel.scope.version"].GetString(), "2.1");
  EXPECT_EQ(meta["attributes.http.status"].GetInt(), 402);
  EXPECT_DOUBLE_EQ(meta["attributes.ratio"].GetDouble(), 0.25);
  EXPECT_STREQ(meta["attributes.raw"].GetString(), "AAEC");
  EXPECT_TRUE(meta["attributes.none"].IsNull());
  EXPECT_EQ(meta["attributes.cart"]["items"][0].GetInt(), 1);
  EXPECT_EQ(meta["otel.flags"].GetInt(), 1);
  EXPECT_FALSE(meta.HasMember("otel.severity_text"));  // ERROR says it all
  // A body that is a key-value list is stored as its JSON; the observed time stands in for a
  // missing time; a severity text is read when there is no number.
  EXPECT_EQ(e.count("message = '{\"k\":\"v\"}' AND level = 'WARNING' AND "
                    "json_extract(meta_json, '$.\"otel.timestamp_source\"') = 'observed' AND "
                    "timestamp = 1700000000000000042"),
            1);
  // TRACE2 is DEBUG, with the number kept; no time at all is the arrival time.
  EXPECT_EQ(e.count("message = '[false]' AND level = 'DEBUG' AND "
                    "json_extract(meta_json, '$.\"otel.severity_number\"') = 2 AND "
                    "json_extract(meta_json, '$.\"otel.timestamp_source\"') = 'arrival'"),
            1);
  // The same body again is absorbed: the records' event_ids are those of the first time.
  ASSERT_EQ(curl_post(d, e.url(), d / "body.json").status, 200);
  EXPECT_EQ(e.count("message = 'card declined'"), 1);
}

TEST(OtlpInput, ProtobufBodyIsStoredAndAnsweredInProtobuf) {
  TempDir d;
  Engine e(d, ", ack: delivered, path: /otlp/v1/logs");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  ExportLogsServiceRequest req = proto_request("billing");
  auto *r = add_record(req, "invoice sent");
  r->set_severity_number(otlpv1::logs::v1::SEVERITY_NUMBER_INFO);
  r->set_trace_id(
      std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\xff", 16));
  r->set_span_id(std::string("\xde\xad\xbe\xef\x00\x01\x02\x03", 8));
  auto *a = r->add_attributes();
  a->set_key("order");
  a->mutable_value()->set_int_value(-12);
  const HttpResponse resp = http("http://" + listen_on(e.port) + "/otlp/v1/logs",
                                 {"Content-Type: application/x-protobuf"}, "POST", serialized(req));
  ASSERT_EQ(resp.status, 200) << resp.body << e.proc->err();
  EXPECT_EQ(resp.headers.at("content-type"), "application/x-protobuf");
  ExportLogsServiceResponse answer;
  ASSERT_TRUE(answer.ParseFromString(resp.body));
  EXPECT_FALSE(answer.has_partial_success());
  EXPECT_EQ(e.count("message = 'invoice sent' AND service = 'billing' AND host = 'unknown' AND "
                    "level = 'INFO' AND trace_id = '0102030405060708090a0b0c0d0e0fff' AND "
                    "span_id = 'deadbeef00010203' AND "
                    "json_extract(meta_json, '$.\"attributes.order\"') = -12 AND "
                    "json_extract(meta_json, '$.\"otel.scope.name\"') = 'proto.scope'"),
            1);
}

TEST(OtlpInput, GzipBodiesAreDecompressedAndABombIsRefusedWith413) {
  TempDir d;
  Engine e(d, ", max_body: 64KiB");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  ExportLogsServiceRequest req = proto_request("zipped");
  add_record(req, "compressed record");
  HttpResponse r = e.post_proto(gzip_file(d, serialized(req)), {"Content-Encoding: gzip"});
  ASSERT_EQ(r.status, 200) << r.body;
  write_file(d / "b.json", json_body(R"([{"body":{"stringValue":"compressed json"}}])"));
  ASSERT_EQ(run({"/bin/sh", "-c", "cd " + d.path() + " && gzip -c b.json > b.json.gz"}, d.path()),
            0);
  const CurlResult c =
      curl_post(d, e.url(), d / "b.json.gz",
                {"-H", "Content-Type: application/json", "-H", "Content-Encoding: gzip"});
  EXPECT_EQ(c.status, 200) << c.body;
  ASSERT_TRUE(e.settled());
  EXPECT_EQ(e.count("message IN ('compressed record', 'compressed json')"), 2);
  // 16 MiB of zeros in 16 KiB: refused once it passes max_body, whatever the gzip trailer says.
  ASSERT_EQ(
      run({"/bin/sh", "-c", "head -c 16777216 /dev/zero | gzip -c > " + d / "bomb.gz"}, d.path()),
      0);
  r = e.post_proto(read_file(d / "bomb.gz"), {"Content-Encoding: gzip"});
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(proto_status(r.body).second.find("max_body"), std::string::npos) << r.body;
  // A corrupt gzip stream is a 400 naming it.
  r = e.post_json("not gzip at all, but long enough", {"Content-Encoding: gzip"});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("gzip"), std::string::npos) << r.body;
  // zstd is taken too; deflate is not an OTLP encoding.
  r = e.post_json("{}", {"Content-Encoding: br"});
  EXPECT_EQ(r.status, 415);
  EXPECT_NE(r.body.find("Content-Encoding 'br'"), std::string::npos) << r.body;
}

TEST(OtlpInput, RejectedRecordsAreAnsweredAsPartialSuccessAndCounted) {
  TempDir d;
  Engine e(d, ", max_message: 64, max_meta_bytes: 128");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  // JSON: a short trace id, a span id that is not hex, a body over max_message, attributes over
  // max_meta_bytes, and one good record.
  const std::string long_body(100, 'x'), long_value(200, 'v');
  const HttpResponse r = e.post_json(
      json_body(R"([{"traceId":"abcd","body":{"stringValue":"bad trace"}},)"
                R"({"spanId":"zzzzzzzzzzzzzzzz","body":{"stringValue":"bad span"}},)"
                R"({"body":{"stringValue":")" +
                long_body +
                R"("}},)"
                R"({"body":{"stringValue":"big meta"},"attributes":[{"key":"a","value":)"
                R"({"stringValue":")" +
                long_value +
                R"("}}]},)"
                R"({"body":{"stringValue":"good one"}}])"));
  ASSERT_EQ(r.status, 200) << r.body;
  const rapidjson::Document doc = parse(r.body);
  ASSERT_TRUE(doc.IsObject() && doc.HasMember("partialSuccess")) << r.body;
  // int64 is a string in the OTLP JSON mapping.
  EXPECT_STREQ(doc["partialSuccess"]["rejectedLogRecords"].GetString(), "4");
  const std::string why = doc["partialSuccess"]["errorMessage"].GetString();
  EXPECT_NE(why.find("4 of 5 log records rejected"), std::string::npos) << why;
  EXPECT_NE(why.find("log_records[0]: trace_id is not 32 hex digits"), std::string::npos) << why;
  EXPECT_NE(why.find("log_records[1]: span_id is not 16 hex digits"), std::string::npos) << why;
  EXPECT_NE(why.find("log_records[2]: body longer than max_message"), std::string::npos) << why;
  EXPECT_NE(why.find("log_records[3]: attributes larger than max_meta_bytes"), std::string::npos)
      << why;
  // Protobuf: a trace id of 5 bytes and a time past 2262.
  ExportLogsServiceRequest req = proto_request("p");
  add_record(req, "short id")->set_trace_id("12345");
  add_record(req, "far future")->set_time_unix_nano(UINT64_MAX);
  add_record(req, "fine");
  const HttpResponse p = e.post_proto(serialized(req));
  ASSERT_EQ(p.status, 200) << p.body;
  ExportLogsServiceResponse answer;
  ASSERT_TRUE(answer.ParseFromString(p.body));
  EXPECT_EQ(answer.partial_success().rejected_log_records(), 2);
  EXPECT_NE(answer.partial_success().error_message().find(
                "resource_logs[0].scope_logs[0].log_records[1]: time_unix_nano is past the year "
                "2262"),
            std::string::npos)
      << answer.partial_success().error_message();
  ASSERT_TRUE(e.settled());
  EXPECT_EQ(e.count(), 2);
  EXPECT_EQ(e.count("message IN ('good one', 'fine')"), 2);
  EXPECT_EQ(e.metric("otlp_records_rejected_total", "reason=\"bad_trace_id\""), 2);
  EXPECT_EQ(e.metric("otlp_records_rejected_total", "reason=\"bad_span_id\""), 1);
  EXPECT_EQ(e.metric("otlp_records_rejected_total", "reason=\"message_too_long\""), 1);
  EXPECT_EQ(e.metric("otlp_records_rejected_total", "reason=\"meta_too_large\""), 1);
  EXPECT_EQ(e.metric("otlp_records_rejected_total", "reason=\"bad_timestamp\""), 1);
  EXPECT_EQ(e.metric("otlp_records_accepted_total"), 2);
}

TEST(OtlpInput, BadBodiesGetAClearErrorAndTheEngineKeepsServing) {
  TempDir d;
  Engine e(d, ", max_body: 4KiB, max_records: 3");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  // Malformed protobuf: a length running past the end.
  HttpResponse r = e.post_proto(std::string("\x0a\x7f\x0a\x02", 4));
  EXPECT_EQ(r.status, 400);
  auto [code, message] = proto_status(r.body);
  EXPECT_EQ(code, 3);  // INVALID_ARGUMENT
  EXPECT_NE(message.find("not a valid protobuf ExportLogsServiceRequest"), std::string::npos)
      << message;
  // Wrong JSON types, each named.
  for (const std::string &bad :
       {std::string(R"({"resourceLogs":[{"scopeLogs":[{"logRecords":[{"timeUnixNano":true}]}]}]})"),
        std::string(R"({"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":"text"}]}]}]})"),
        std::string(R"({"resourceLogs":"none"})"), std::string("[1,2"), std::string("")}) {
    r = e.post_json(bad);
    EXPECT_EQ(r.status, 400) << bad;
    const rapidjson::Document doc = parse(r.body);
    ASSERT_TRUE(doc.IsObject() && doc.HasMember("code")) << bad << " -> " << r.body;
    EXPECT_EQ(doc["code"].GetInt(), 3);
    EXPECT_NE(std::string(doc["message"].GetString()).find("not a valid OTLP JSON"),
              std::string::npos)
        << r.body;
  }
  r = e.post_json(R"({"resourceLogs":[{"scopeLogs":[{"logRecords":[{"severityNumber":[]}]}]}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("severityNumber"), std::string::npos) << r.body;
  // Hostile depth: 2000 nested arrays, in protobuf and in JSON.
  {
    ExportLogsServiceRequest req = proto_request("deep");
    auto *v = add_record(req, "")->mutable_body();
    for (int i = 0; i < 2000; ++i) v = v->mutable_array_value()->add_values();
    const std::string body = serialized(req);
    TempDir d2;
    Engine big(d2, ", max_body: 64KiB");
    ASSERT_TRUE(big.ready()) << big.proc->err();
    r = big.post_proto(body);
    EXPECT_EQ(r.status, 400);
    std::string nested;
    for (int i = 0; i < 2000; ++i) nested += R"({"arrayValue":{"values":[)";
    for (int i = 0; i < 2000; ++i) nested += "]}}";
    r = big.post_json(json_body(R"([{"body":)" + nested + "}]"));
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(r.body.find("not a valid OTLP JSON"), std::string::npos) << r.body;
    EXPECT_EQ(big.post_json(json_body("[]")).status, 200) << big.proc->err();
  }
  // Invalid UTF-8 in a protobuf string field.
  {
    ExportLogsServiceRequest req = proto_request("utf8");
    add_record(req, "bad \xff\xfe byte");
    r = e.post_proto(serialized(req));
    EXPECT_EQ(r.status, 400);
    EXPECT_NE(proto_status(r.body).second.find("UTF-8"), std::string::npos) << r.body;
    r = e.post_json(json_body("[{\"body\":{\"stringValue\":\"bad \xff byte\"}}]"));
    EXPECT_EQ(r.status, 400) << r.body;
  }
  // Size and count.
  r = e.post_json(json_body(R"([{"body":{"stringValue":")" + std::string(5000, 'x') + R"("}}])"));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("max_body"), std::string::npos) << r.body;
  r = e.post_json(json_body("[{},{},{},{}]"));
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(r.body.find("more log records than max_records (3)"), std::string::npos) << r.body;
  // A thousand empty records in protobuf (2 bytes each): counted before they are built.
  {
    ExportLogsServiceRequest req = proto_request("many");
    for (int i = 0; i < 1000; ++i)
      req.mutable_resource_logs(0)->mutable_scope_logs(0)->add_log_records();
    r = e.post_proto(serialized(req));
    EXPECT_EQ(r.status, 413);
    EXPECT_NE(proto_status(r.body).second.find("max_records"), std::string::npos) << r.body;
  }
  // Other content types.
  r = http(e.url(), {"Content-Type: text/plain"}, "POST", "hello");
  EXPECT_EQ(r.status, 415);
  EXPECT_NE(r.body.find("application/x-protobuf or application/json"), std::string::npos) << r.body;
  // Nothing was stored, everything was answered, and the engine still takes good bodies.
  r = e.post_json(json_body(R"([{"body":{"stringValue":"still serving"}}])"));
  EXPECT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(e.settled());
  EXPECT_EQ(e.count(), 1);
  EXPECT_EQ(e.metric("otlp_requests_total", "status=\"400\""), 9);
  EXPECT_EQ(e.metric("otlp_requests_total", "status=\"413\""), 3);
  EXPECT_EQ(e.metric("otlp_requests_total", "status=\"415\""), 1);
}

TEST(OtlpInput, DeliveryFailuresAndAckTimeoutsAnswer503WithRetryAfter) {
  TempDir d;
  // Every flush fails for good and nothing keeps the records: no 200 may promise them.
  Engine failing(d, ", ack: delivered, retry_after: 3s",
                 "    - {name: flaky, path: " + d / "never.ndjson" +
                     ", fail_always: true, fail_status: error}\n");
  ASSERT_TRUE(failing.ready()) << failing.proc->err();
  HttpResponse r = failing.post_json(json_body(R"([{"body":{"stringValue":"lost"}}])"));
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_EQ(r.headers["retry-after"], "3");
  EXPECT_NE(r.body.find("failed permanently"), std::string::npos) << r.body;
  EXPECT_EQ(failing.metric("otlp_records_failed_total"), 1);
  // An output that takes longer than ack_timeout: 503, and the records keep going. The same
  // body sent again (as the client does after a 503) gives its record without a time the
  // first arrival time: the same event_id, so a store keeps it once.
  TempDir d2;
  Engine slow(d2, ", ack: delivered, ack_timeout: 300ms",
              "    - {name: flaky, path: " + d2 / "slow.txt" + ", delay: 2s}\n" +
                  "    - {name: stdout, path: " + d2 / "out.ndjson" + "}\n");
  ASSERT_TRUE(slow.ready()) << slow.proc->err();
  ExportLogsServiceRequest req = proto_request("slow");
  req.mutable_resource_logs(0)
      ->mutable_scope_logs(0)
      ->add_log_records()
      ->mutable_body()
      ->set_string_value("late");
  const std::string body = serialized(req);
  r = slow.post_proto(body);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "1");
  EXPECT_NE(proto_status(r.body).second.find("ack_timeout"), std::string::npos) << r.body;
  EXPECT_EQ(slow.metric("otlp_ack_timeouts_total"), 1);
  r = slow.post_proto(body);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(slow.metric("otlp_resent_bodies_total"), 1);
  ASSERT_TRUE(wait_until([&] { return read_lines(d2 / "out.ndjson").size() == 2; }, 30s));
  const std::vector<std::string> lines = read_lines(d2 / "out.ndjson");
  const rapidjson::Document first = parse(lines[0]), second = parse(lines[1]);
  ASSERT_TRUE(first.IsObject() && second.IsObject()) << lines[0];
  EXPECT_STREQ(first["message"].GetString(), "late");
  EXPECT_STREQ(first["event_id"].GetString(), second["event_id"].GetString());
}

TEST(OtlpInput, FullQueuesAnswer503WithRetryAfterAndEveryAcceptedRecordIsDelivered) {
  TempDir d;
  Engine e(d, ", retry_after: 2s",
           "    - {name: flaky, path: " + d / "out.ndjson" +
               ", delay: 200ms, batch_size: 50, queue_limit: 8KiB}\n");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  ExportLogsServiceRequest req = proto_request("busy");
  for (int i = 0; i < 50; ++i) add_record(req, "m" + std::to_string(i));
  const std::string body = serialized(req);
  long accepted = 0;
  HttpResponse busy;
  for (int i = 0; i < 200 && busy.status != 503; ++i) {
    const HttpResponse r = e.post_proto(body);
    if (r.status == 200) {
      accepted += 50;
    } else {
      busy = r;
    }
  }
  ASSERT_EQ(busy.status, 503) << "the queue never filled";
  EXPECT_EQ(busy.headers["retry-after"], "2");
  EXPECT_NE(proto_status(busy.body).second.find("queues full"), std::string::npos);
  EXPECT_GT(accepted, 0);
  ASSERT_TRUE(e.settled());
  EXPECT_EQ(static_cast<long>(read_lines(d / "out.ndjson").size()), accepted);
  EXPECT_EQ(e.metric("otlp_records_accepted_total"), accepted);
}

TEST(OtlpInput, BearerTokenIsRequiredWhenSet) {
  TempDir d;
  Engine e(d, ", auth_token: s3cret");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  const std::string body = json_body(R"([{"body":{"stringValue":"authorized"}}])");
  HttpResponse r = e.post_json(body);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
  EXPECT_EQ(e.post_json(body, {"Authorization: Bearer wrong"}).status, 401);
  EXPECT_EQ(e.post_json(body, {"Authorization: Bearer s3cret"}).status, 200);
  ASSERT_TRUE(e.settled());
  EXPECT_EQ(e.count(), 1);
}

TEST(OtlpInput, ServesOverTlsWithClientCertificates) {
  ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0) << "openssl is missing: run tools/setup";
  TempDir d;
  const std::string script =
      "set -e; cd " + d.path() +
      "\nkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 "
      "2>/dev/null; }"
      "\nfor k in ca server client; do key $k.key; done"
      "\nopenssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=otlp-test-ca"
      "\nprintf 'subjectAltName=IP:127.0.0.1\\n' > san.cnf"
      "\nopenssl req -new -key server.key -out server.csr -subj /CN=localhost"
      "\nopenssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "server.pem -days 2 -extfile san.cnf 2>/dev/null"
      "\nopenssl req -new -key client.key -out client.csr -subj /CN=client"
      "\nopenssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "client.pem -days 2 2>/dev/null\n";
  ASSERT_EQ(run({"/bin/sh", "-c", script}, d.path()), 0);
  // The input on a port of its own (TLS), /health on the engine's.
  const int tls_port = free_port();
  const int health_port = free_port();
  auto proc =
      start_engine(d, plugins_head("  http_listen: " + listen_on(health_port) + "\n") +
                          "  inputs:\n    - {name: otlp, listen: '" + listen_on(tls_port) +
                          "', tls.cert: server.pem, tls.key: server.key, tls.ca: ca.pem, "
                          "tls.min_version: '1.3'}\n  outputs:\n    - {name: sqlite, path: " +
                          d / "devmesh.db" + "}\n");
  ASSERT_TRUE(wait_until(
      [&] { return http("http://" + listen_on(health_port) + "/health").status != 0; }, 20s))
      << proc->err();
  write_file(d / "body.json", json_body(R"([{"body":{"stringValue":"over tls"}}])"));
  const std::string url = "https://127.0.0.1:" + std::to_string(tls_port) + "/v1/logs";
  // Without a client certificate the handshake fails; with one the request is taken.
  EXPECT_NE(curl_post(d, url, d / "body.json",
                      {"--cacert", d / "ca.pem", "-H", "Content-Type: application/json"})
                .status,
            200);
  const CurlResult r = curl_post(d, url, d / "body.json",
                                 {"--cacert", d / "ca.pem", "--cert", d / "client.pem", "--key",
                                  d / "client.key", "-H", "Content-Type: application/json"});
  EXPECT_EQ(r.status, 200) << r.body << proc->err();
  EXPECT_TRUE(wait_until(
      [&] {
        return std::stol(
                   SqliteDb(d / "devmesh.db")
                       .value("SELECT count(*) FROM log_events WHERE message = 'over tls'")) == 1;
      },
      30s));
}

}  // namespace

namespace {

// A JSON body of tens of thousands of records takes libprotobuf's JSON parser a good part of a
// second: it is decoded on the engine's pool, so a small request that arrives meanwhile is
// answered first (decoded on the loop, it would wait for the large one).
TEST(OtlpInput, ALargeJsonBodyIsDecodedOffTheLoopSoARequestArrivingMeanwhileIsAnsweredFirst) {
  TempDir d;
  Engine e(d, "");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  std::string records = "[";
  for (int i = 0; i < 60000; ++i) {
    if (i) records += ",";
    records += R"({"timeUnixNano":"17000000000)" + std::to_string(10000000 + i) +
               R"(","body":{"stringValue":"request )" + std::to_string(i) +
               R"( served from the cache in 3 ms"},"attributes":[{"key":"i","value":)"
               R"({"intValue":")" +
               std::to_string(i) + R"("}}]})";
  }
  records += "]";
  const std::string big = json_body(records);
  ASSERT_LT(big.size(), 16u << 20);
  std::atomic<int> order{0};
  int big_done = 0, small_done = 0;
  long big_status = 0;
  std::thread sender([&] {
    big_status = e.post_json(big).status;
    big_done = ++order;
  });
  // Once the engine has the whole large body (counted before its decode starts) ...
  EXPECT_TRUE(
      wait_until([&] { return e.metric("otlp_request_bytes_total") >= double(big.size()); }, 30s))
      << e.proc->err();
  // ... a small request goes in, and comes back before the large one.
  ExportLogsServiceRequest req = proto_request("quick");
  add_record(req, "small and quick");
  const HttpResponse small = e.post_proto(serialized(req));
  small_done = ++order;
  sender.join();
  EXPECT_EQ(small.status, 200) << small.body;
  EXPECT_EQ(big_status, 200) << e.proc->err();
  EXPECT_LT(small_done, big_done);
  EXPECT_TRUE(e.settled());
  EXPECT_EQ(e.count(), 60001);
}

// SIGTERM while a large body is still being decoded on the pool: the request is answered (503,
// the client sends it again; or 200 if its records were submitted before the stop) and the engine
// exits cleanly, the decode's batch freed.
TEST(OtlpInput, AStopDuringADecodeAnswersTheRequestAndExitsCleanly) {
  TempDir d;
  Engine e(d, ", ack: delivered");
  ASSERT_TRUE(e.ready()) << e.proc->err();
  std::string records = "[";
  for (int i = 0; i < 60000; ++i)
    records += std::string(i ? "," : "") + R"({"body":{"stringValue":"line )" + std::to_string(i) +
               R"("}})";
  records += "]";
  const std::string big = json_body(records);
  long status = -1;
  std::thread sender([&] { status = e.post_json(big).status; });
  EXPECT_TRUE(
      wait_until([&] { return e.metric("otlp_request_bytes_total") >= double(big.size()); }, 30s));
  e.proc->kill(SIGTERM);
  EXPECT_EQ(e.proc->wait_exit(30s), 0) << e.proc->err();
  sender.join();
  EXPECT_TRUE(status == 503 || status == 200) << status;
}

}  // namespace
