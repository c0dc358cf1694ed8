// The http input through the real binary, with real clients (the curl binary and libcurl): the
// prototype's body, partial success, every rejection reason, timestamps, levels, event ids,
// NDJSON, gzip and zstd and their bombs, 400/401/404/405/413/415/422/503, ack: delivered, metrics.
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// An engine whose http input and /health share one port, writing to out.ndjson.
struct Ingest {
  TempDir d;
  int port = free_port();
  std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::unique_ptr<Devmesh> engine;

  // outputs: YAML list entries; @DIR@ stands for this test's temp dir.
  explicit Ingest(const std::string &input_options = "", std::string outputs = "") {
    for (size_t at; (at = outputs.find("@DIR@")) != std::string::npos;)
      outputs.replace(at, 5, d.path());
    if (outputs.empty())
      outputs = "    - {name: stdout, path: " + d / "out.ndjson" + ", flush_interval: 20ms}\n";
    const std::string listen = "127.0.0.1:" + std::to_string(port);
    engine = std::make_unique<Devmesh>(
        d, "engine",
        plugins_head("  http_listen: " + listen + "\n") +
            "  inputs:\n    - {name: http, listen: '" + listen + "'" +
            (input_options.empty() ? "" : ", " + input_options) + "}\n  outputs:\n" + outputs);
    ready = engine->ready(port, d);
  }
  ~Ingest() {
    engine->proc().kill(SIGTERM);
    engine->proc().wait_exit(10s);
  }
  HttpResult post(const std::string &body, std::vector<std::string> extra = {}) {
    write_file(d / "req.body", body);
    return curl_post(d, url, d / "req.body", std::move(extra));
  }
  // The records written once `want` lines are there and the engine has settled: anything
  // beyond `want` (a late duplicate) would by then be counted in and so be waited for.
  std::vector<rapidjson::Document> output(size_t want) {
    wait_until([&] { return read_lines(d / "out.ndjson").size() >= want; }, 30s);
    EXPECT_TRUE(wait_until([&] { return settled(metrics()); }, 30s)) << metrics();
    return read_ndjson(d / "out.ndjson");
  }
  // Nothing in flight: the output took every record the input took, its queue is empty and it
  // delivered them all (one input and one output, as here).
  static bool settled(const std::string &m) {
    const double in = metric_value(m, "devmesh_records_in_total", "kind=\"input\"");
    const double out_in = metric_value(m, "devmesh_records_in_total", "kind=\"output\"");
    const double out = metric_value(m, "devmesh_records_out_total", "kind=\"output\"");
    const double queued = metric_value(m, "devmesh_queue_records", "kind=\"output\"");
    return in >= 0 && in == out_in && out == out_in && queued == 0;
  }
  std::string metrics() {
    std::string body;
    http_get(base + "/metrics", &body, d.path());
    return body;
  }
  bool ready = false;
};

std::string record(const std::string &fields) {
  return "{" + fields + "}";
}
std::string logs(const std::vector<std::string> &records) {
  std::string s = "{\"logs\":[";
  for (size_t i = 0; i < records.size(); ++i) s += (i ? "," : "") + records[i];
  return s + "]}";
}

// The (index, reason) pairs of a response's errors.
std::map<unsigned, std::string> errors_of(const rapidjson::Document &r) {
  std::map<unsigned, std::string> out;
  for (auto &e : r["errors"].GetArray()) out[e["index"].GetUint()] = e["reason"].GetString();
  return out;
}

TEST(HttpInput, PrototypeBodyIsAcceptedAndEveryFieldReachesTheOutput) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  // The seed's example request, plus the optional fields.
  auto r = in.post(R"({"logs":[{"timestamp":"2025-11-28T19:00:00.000000Z","source":"journald",
    "service":"loki.service","host":"dev-services","level":"INFO","message":"uploading tables",
    "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",
    "event_type":"http_request","error_code":"HTTP_500",
    "meta_json":{"pid":"493414","facility":"3","count":7,"ok":true,"nested":{"a":[1,"x"]},"gone":null}}]})",
                   {"-H", "Content-Type: application/json"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"accepted":1,"rejected":0,"errors":[]})");
  EXPECT_NE(r.header("Content-Type").find("application/json"), std::string::npos);
  auto out = in.output(1);
  ASSERT_EQ(out.size(), 1u);
  auto &o = out[0];
  EXPECT_EQ(str_field(o, "timestamp"), "2025-11-28T19:00:00.000000Z");
  EXPECT_EQ(str_field(o, "source"), "journald");
  EXPECT_EQ(str_field(o, "service"), "loki.service");
  EXPECT_EQ(str_field(o, "host"), "dev-services");
  EXPECT_EQ(str_field(o, "level"), "INFO");
  EXPECT_EQ(str_field(o, "message"), "uploading tables");
  EXPECT_EQ(str_field(o, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(str_field(o, "span_id"), "00f067aa0ba902b7");
  EXPECT_EQ(str_field(o, "event_type"), "http_request");
  EXPECT_EQ(str_field(o, "error_code"), "HTTP_500");
  // Meta values keep their JSON type: strings stay strings, the rest is written as it came.
  const auto &meta = o["meta_json"];
  EXPECT_EQ(str_field(meta, "pid"), "493414");
  EXPECT_EQ(str_field(meta, "facility"), "3");
  ASSERT_TRUE(meta["count"].IsInt());
  EXPECT_EQ(meta["count"].GetInt(), 7);
  EXPECT_TRUE(meta["ok"].IsTrue());
  ASSERT_TRUE(meta["nested"].IsObject());
  ASSERT_TRUE(meta["nested"]["a"].IsArray());
  EXPECT_EQ(meta["nested"]["a"].Size(), 2u);
  ASSERT_TRUE(meta.HasMember("gone"));
  EXPECT_TRUE(meta["gone"].IsNull());
  EXPECT_EQ(meta.MemberCount(), 6u);
  EXPECT_EQ(str_field(o, "event_id").size(), 32u);
}

TEST(HttpInput, ValidRecordsAreAcceptedBesideRejectedOnesWhichAreListedWithIndexAndReason) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  auto s = [](size_t n, const std::string &unit = "a") {
    std::string out;
    for (size_t i = 0; i < n; ++i) out += unit;
    return out;
  };
  std::vector<std::string> recs = {
      record(R"("message":"ok 0")"),
      record(R"("level":"INFO")"),                                // 1: no message
      record(R"("message":"x","timestamp":"yesterday")"),         // 2
      record(R"("message":"x","level":"NOTICE")"),                // 3
      record(R"("message":"x","service":")" + s(256) + "\""),     // 4
      record(R"("message":"x","host":")" + s(256) + "\""),        // 5
      record(R"("message":"x","source":")" + s(256) + "\""),      // 6
      record(R"("message":"x","trace_id":")" + s(65) + "\""),     // 7
      record(R"("message":"x","span_id":")" + s(33) + "\""),      // 8
      record(R"("message":"x","event_type":")" + s(101) + "\""),  // 9
      record(R"("message":"x","error_code":")" + s(51) + "\""),   // 10
      "42",                                                       // 11
      record(R"("message":"x","service":{"a":1})"),               // 12
      // At the limits (in characters, not bytes: 255 two-byte characters) all is well.
      record(R"("message":"ok 13","service":")" + s(255, "\xc3\xa9") + R"(","host":")" + s(255) +
             R"(","trace_id":")" + s(64) + R"(","span_id":")" + s(32) + R"(","event_type":")" +
             s(100) + R"(","error_code":")" + s(50) + "\""),
      record(R"("message":"ok 14","level":"error")"),
  };
  auto r = in.post(logs(recs));
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = parse_json(r.body);
  ASSERT_FALSE(doc.HasParseError()) << r.body;
  EXPECT_EQ(doc["accepted"].GetUint(), 3u);
  EXPECT_EQ(doc["rejected"].GetUint(), 12u);
  auto errs = errors_of(doc);
  EXPECT_EQ(errs[1], "message is missing");
  EXPECT_EQ(errs[2], "timestamp is not RFC 3339 or epoch seconds/milliseconds");
  EXPECT_EQ(errs[3], "level is not one of DEBUG, INFO, WARN, WARNING, ERROR, CRITICAL, FATAL");
  EXPECT_EQ(errs[4], "service longer than 255 characters");
  EXPECT_EQ(errs[5], "host longer than 255 characters");
  EXPECT_EQ(errs[6], "source longer than 255 characters");
  EXPECT_EQ(errs[7], "trace_id longer than 64 characters");
  EXPECT_EQ(errs[8], "span_id longer than 32 characters");
  EXPECT_EQ(errs[9], "event_type longer than 100 characters");
  EXPECT_EQ(errs[10], "error_code longer than 50 characters");
  EXPECT_EQ(errs[11], "record is not an object");
  EXPECT_EQ(errs[12], "service is not a string");
  EXPECT_EQ(errs.size(), 12u);

  auto out = in.output(3);
  ASSERT_EQ(out.size(), 3u);
  std::set<std::string> messages;
  for (auto &o : out) messages.insert(str_field(o, "message"));
  EXPECT_EQ(messages, (std::set<std::string>{"ok 0", "ok 13", "ok 14"}));
  std::string m = in.metrics();
  EXPECT_EQ(metric_value(m, "devmesh_http_records_accepted_total", ""), 3);
  EXPECT_EQ(metric_value(m, "devmesh_http_records_rejected_total", "reason=\"field_too_long\""), 7);
  EXPECT_EQ(metric_value(m, "devmesh_http_records_rejected_total", "reason=\"missing_message\""),
            1);
  EXPECT_EQ(metric_value(m, "devmesh_http_records_rejected_total", "reason=\"bad_field\""), 1);
}

TEST(HttpInput, BodyWhoseRecordsAreAllRejectedGets422WithTheReasons) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  auto r = in.post(logs({record(R"("level":"INFO")"), record(R"("message":"x","level":"LOUD")")}));
  EXPECT_EQ(r.status, 422) << r.body;
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["accepted"].GetUint(), 0u);
  EXPECT_EQ(doc["rejected"].GetUint(), 2u);
  // An empty list is fine: nothing to do.
  EXPECT_EQ(in.post(R"({"logs":[]})").status, 200);
}

TEST(HttpInput, TimestampsAreRfc3339WithOffsetsAndNanosecondsOrEpochNumbersOrArrivalTime) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  timespec before;
  clock_gettime(CLOCK_REALTIME, &before);
  auto r = in.post(logs({
      record(R"("message":"z","timestamp":"2025-11-28T19:55:40.521872Z")"),
      record(R"("message":"offset","timestamp":"2025-11-28T21:55:40.123456789+02:00")"),
      record(R"("message":"negative offset","timestamp":"2025-11-28T14:25:40-05:30")"),
      record(R"("message":"seconds","timestamp":1764359740)"),
      record(R"("message":"fraction","timestamp":1764359740.25)"),
      record(R"("message":"millis","timestamp":1764359740123)"),
      record(R"("message":"millis text","timestamp":"1764359740123")"),
      record(R"("message":"missing")"),
  }));
  ASSERT_EQ(r.status, 200) << r.body;
  auto out = in.output(8);
  ASSERT_EQ(out.size(), 8u);
  std::map<std::string, std::string> ts;
  for (auto &o : out) ts[str_field(o, "message")] = str_field(o, "timestamp");
  EXPECT_EQ(ts["z"], "2025-11-28T19:55:40.521872Z");
  EXPECT_EQ(ts["offset"], "2025-11-28T19:55:40.123456Z");
  EXPECT_EQ(ts["negative offset"], "2025-11-28T19:55:40.000000Z");
  EXPECT_EQ(ts["seconds"], "2025-11-28T19:55:40.000000Z");
  EXPECT_EQ(ts["fraction"], "2025-11-28T19:55:40.250000Z");
  EXPECT_EQ(ts["millis"], "2025-11-28T19:55:40.123000Z");
  EXPECT_EQ(ts["millis text"], "2025-11-28T19:55:40.123000Z");
  for (auto &o : out) {
    bool arrival = str_field(o["meta_json"], "timestamp_source") == "arrival";
    EXPECT_EQ(arrival, str_field(o, "message") == "missing");
    if (!arrival) continue;
    tm t{};
    strptime(ts["missing"].c_str(), "%Y-%m-%dT%H:%M:%S", &t);
    EXPECT_NEAR(static_cast<double>(timegm(&t)), static_cast<double>(before.tv_sec), 5);
  }
}

TEST(HttpInput, LevelsAreCaseInsensitiveAndAMissingLevelIsInfo) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  auto r = in.post(logs(
      {record(R"("message":"a","level":"debug")"), record(R"("message":"b","level":"Warning")"),
       record(R"("message":"c","level":"warn")"), record(R"("message":"d","level":"critical")"),
       record(R"("message":"e","level":"FATAL")"), record(R"("message":"f")")}));
  ASSERT_EQ(r.status, 200) << r.body;
  std::map<std::string, std::string> level;
  for (auto &o : in.output(6)) level[str_field(o, "message")] = str_field(o, "level");
  EXPECT_EQ(level, (std::map<std::string, std::string>{{"a", "DEBUG"},
                                                       {"b", "WARNING"},
                                                       {"c", "WARN"},
                                                       {"d", "CRITICAL"},
                                                       {"e", "FATAL"},
                                                       {"f", "INFO"}}));
}

TEST(HttpInput, EventIdIsTheClientsOrDerivedSoTheSameRecordPostedTwiceKeepsItsId) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  const std::string same = record(
      R"("message":"twice","timestamp":"2025-11-28T19:55:40.5Z","host":"h1","service":"s1")");
  ASSERT_EQ(in.post(logs({same})).status, 200);
  ASSERT_EQ(
      in.post(
            logs({same, record(R"("message":"hex","event_id":"0123456789ABCDEF0123456789abcdef")"),
                  record(R"("message":"text","event_id":"client-42")")}))
          .status,
      200);
  auto out = in.output(4);
  ASSERT_EQ(out.size(), 4u);
  std::multimap<std::string, std::string> ids;
  for (auto &o : out) ids.emplace(str_field(o, "message"), str_field(o, "event_id"));
  auto twice = ids.equal_range("twice");
  ASSERT_EQ(std::distance(twice.first, twice.second), 2);
  EXPECT_EQ(twice.first->second, std::next(twice.first)->second);
  EXPECT_EQ(twice.first->second, derived_event_id(1764359740500000000LL, "h1", "s1", "twice"));
  EXPECT_EQ(ids.find("hex")->second, "0123456789abcdef0123456789abcdef");
  EXPECT_EQ(ids.find("text")->second, xxh128_hex("client-42"));
}

TEST(HttpInput, NdjsonBodyTakesOneRecordPerLineAndRejectsOnlyTheBadLines) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  auto r = in.post(
      "{\"message\":\"one\"}\n"
      "\n"
      "{\"message\":\"two\",\"level\":\"ERROR\"}\r\n"
      "{\"message\":\"three\"\n"
      "{\"message\":\"four\"} trailing\n"
      "[1,2]\n"
      "{\"level\":\"INFO\"}\n"
      "{\"message\":\"seven\"}",
      {"-H", "Content-Type: application/x-ndjson"});
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["accepted"].GetUint(), 3u) << r.body;
  auto errs = errors_of(doc);
  EXPECT_NE(errs[2].find("malformed JSON at byte 72"), std::string::npos) << r.body;
  EXPECT_NE(errs[3].find("malformed JSON at byte"), std::string::npos) << r.body;
  EXPECT_EQ(errs[4], "record is not an object");
  EXPECT_EQ(errs[5], "message is missing");
  EXPECT_EQ(errs.size(), 4u);
  std::set<std::string> messages;
  for (auto &o : in.output(3)) messages.insert(str_field(o, "message"));
  EXPECT_EQ(messages, (std::set<std::string>{"one", "two", "seven"}));
}

TEST(HttpInput, GzipBodyIsDecompressed) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  std::vector<std::string> recs;
  for (int i = 0; i < 200; ++i)
    recs.push_back(record("\"message\":\"gz " + std::to_string(i) + "\""));
  write_file(in.d / "plain.json", logs(recs));
  ASSERT_EQ(run({"/bin/sh", "-c", "gzip -c " + in.d / "plain.json" + " > " + in.d / "body.gz"},
                in.d.path()),
            0);
  auto r = curl_post(in.d, in.url, in.d / "body.gz", {"-H", "Content-Encoding: gzip"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["accepted"].GetUint(), 200u);
  EXPECT_EQ(in.output(200).size(), 200u);
  // NDJSON, gzip, through libcurl.
  write_file(in.d / "lines", "{\"message\":\"l1\"}\n{\"message\":\"l2\"}\n");
  ASSERT_EQ(
      run({"/bin/sh", "-c", "gzip -c " + in.d / "lines" + " > " + in.d / "lines.gz"}, in.d.path()),
      0);
  auto r2 = libcurl_post(in.url, read_file(in.d / "lines.gz"),
                         {"Content-Encoding: gzip", "Content-Type: application/x-ndjson"});
  EXPECT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(in.output(202).size(), 202u);
}

TEST(HttpInput, GzipBombGets413AndMemoryStaysBounded) {
  Ingest in;  // max_body 16MiB by default
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  // 1 GiB of zeros in about 1 MiB.
  ASSERT_EQ(run({"/bin/sh", "-c", "head -c 1073741824 /dev/zero | gzip -1 > " + in.d / "bomb.gz"},
                in.d.path()),
            0);
  ASSERT_LT(file_size(in.d / "bomb.gz"), 8u << 20);
  auto r = curl_post(in.d, in.url, in.d / "bomb.gz", {"-H", "Content-Encoding: gzip"});
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(r.body.find("decompressed body larger than max_body"), std::string::npos) << r.body;
  // At most max_body was inflated (kBombRssBoundKib says why the bound is what it is).
  EXPECT_LT(vm_hwm_kib(in.engine->proc().pid()), kBombRssBoundKib);
  // And the engine is still serving.
  EXPECT_EQ(in.post(logs({record(R"("message":"after")")})).status, 200);
  // A corrupt stream and an unknown encoding.
  write_file(in.d / "corrupt.gz", read_file(in.d / "bomb.gz").substr(0, 1000) + "garbage");
  EXPECT_EQ(curl_post(in.d, in.url, in.d / "corrupt.gz", {"-H", "Content-Encoding: gzip"}).status,
            400);
  EXPECT_EQ(in.post(logs({record(R"("message":"x")")}), {"-H", "Content-Encoding: br"}).status,
            415);
}

TEST(HttpInput, ZstdBodyIsDecompressed) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  std::vector<std::string> recs;
  for (int i = 0; i < 200; ++i)
    recs.push_back(record("\"message\":\"zs " + std::to_string(i) + "\""));
  write_file(in.d / "plain.json", logs(recs));
  ASSERT_EQ(run({"/usr/bin/zstd", "-q", "-3", "-c", in.d / "plain.json", "-o", in.d / "body.zst"},
                in.d.path()),
            0);
  auto r = curl_post(in.d, in.url, in.d / "body.zst", {"-H", "Content-Encoding: zstd"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["accepted"].GetUint(), 200u);
  EXPECT_EQ(in.output(200).size(), 200u);
  // NDJSON in two zstd frames one after the other (as zstd's own tools allow), through libcurl.
  write_file(in.d / "a", "{\"message\":\"l1\"}\n");
  write_file(in.d / "b", "{\"message\":\"l2\"}\n{\"message\":\"l3\"}\n");
  ASSERT_EQ(run({"/bin/sh", "-c",
                 "zstd -q -c " + in.d / "a" + " > " + in.d / "ab.zst" + " && zstd -q -c " +
                     in.d / "b" + " >> " + in.d / "ab.zst"},
                in.d.path()),
            0);
  auto r2 = libcurl_post(in.url, read_file(in.d / "ab.zst"),
                         {"Content-Encoding: zstd", "Content-Type: application/x-ndjson"});
  EXPECT_EQ(r2.status, 200) << r2.body;
  EXPECT_EQ(in.output(203).size(), 203u);
}

TEST(HttpInput, GzipBodyOfSeveralMembersIsDecompressedWhole) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  write_file(in.d / "a", "{\"message\":\"m1\"}\n");
  write_file(in.d / "b", "{\"message\":\"m2\"}\n{\"message\":\"m3\"}\n");
  ASSERT_EQ(run({"/bin/sh", "-c",
                 "gzip -c " + in.d / "a" + " > " + in.d / "ab.gz" + " && gzip -c " + in.d / "b" +
                     " >> " + in.d / "ab.gz"},
                in.d.path()),
            0);
  auto r = curl_post(in.d, in.url, in.d / "ab.gz",
                     {"-H", "Content-Encoding: gzip", "-H", "Content-Type: application/x-ndjson"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["accepted"].GetUint(), 3u);
}

// The trailer is checked whole (CRC-32 and ISIZE, the size being more than a hint for the first
// buffer), nothing but zeros may follow the last member, and those zeros (some tools pad) end the
// body. Every refusal is a 400 naming the encoding and counted; the padded body is taken.
TEST(HttpInput, GzipWithAWrongCrcOrSizeOrBytesAfterItGets400AndZeroPaddingIsTaken) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  std::vector<std::string> recs;
  for (int i = 0; i < 50; ++i)
    recs.push_back(record("\"message\":\"t " + std::to_string(i) + "\""));
  write_file(in.d / "plain.json", logs(recs));
  ASSERT_EQ(
      run({"/bin/sh", "-c", "gzip -c " + in.d / "plain.json" + " > " + in.d / "p.gz"}, in.d.path()),
      0);
  const std::string gz = read_file(in.d / "p.gz");
  ASSERT_GT(gz.size(), 18u);
  struct Case {
    const char *what;
    std::string body;
  };
  std::string bad_crc = gz, bad_size = gz;
  bad_crc[gz.size() - 8] = static_cast<char>(bad_crc[gz.size() - 8] ^ 1);
  bad_size[gz.size() - 4] = static_cast<char>(bad_size[gz.size() - 4] ^ 1);
  for (const Case &c : {Case{"wrong CRC-32", bad_crc}, Case{"wrong ISIZE", bad_size},
                        Case{"garbage after the member", gz + "garbage"},
                        Case{"a member cut short after a whole one", gz + gz.substr(0, 30)}}) {
    auto r = in.post(c.body, {"-H", "Content-Encoding: gzip"});
    EXPECT_EQ(r.status, 400) << c.what << ": " << r.body;
    EXPECT_NE(r.body.find("corrupt compressed body (Content-Encoding: gzip): not valid gzip data"),
              std::string::npos)
        << c.what << ": " << r.body;
  }
  auto r = in.post(gz + std::string(16, '\0'), {"-H", "Content-Encoding: gzip"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["accepted"].GetUint(), 50u);
  EXPECT_EQ(in.output(50).size(), 50u);
  const std::string m = in.metrics();
  EXPECT_EQ(metric_value(m, "devmesh_http_requests_total", "status=\"400\""), 4) << m;
  EXPECT_EQ(metric_value(m, "devmesh_http_records_accepted_total", ""), 50) << m;
}

// A zstd frame that declares 1 GiB and one that declares nothing, each 1 GiB of zeros: 413 naming
// max_body, and the engine never holds more than about max_body for it.
TEST(HttpInput, ZstdBombGets413NamingMaxBodyAndMemoryStaysBounded) {
  Ingest in;  // max_body 16MiB by default
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  ASSERT_EQ(run({"/bin/sh", "-c",
                 "head -c 1073741824 /dev/zero | zstd -q -1 --stream-size=1073741824 -c > " +
                     in.d / "declared.zst" + " && head -c 1073741824 /dev/zero | zstd -q -1 -c > " +
                     in.d / "undeclared.zst"},
                in.d.path()),
            0);
  for (const char *name : {"declared.zst", "undeclared.zst"}) {
    ASSERT_LT(file_size(in.d / name), 1u << 20) << name;
    auto r = curl_post(in.d, in.url, in.d / name, {"-H", "Content-Encoding: zstd"});
    EXPECT_EQ(r.status, 413) << name << ": " << r.body;
    EXPECT_NE(r.body.find("decompressed body larger than max_body (16777216 bytes)"),
              std::string::npos)
        << r.body;
  }
  EXPECT_LT(vm_hwm_kib(in.engine->proc().pid()), kBombRssBoundKib);
  EXPECT_EQ(in.post(logs({record(R"("message":"after")")})).status, 200);
}

// The gzip trailer's size is only a hint: a bomb whose trailer claims 1000 bytes still stops at
// max_body with 413.
TEST(HttpInput, GzipBombWithALyingSizeTrailerGets413) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  ASSERT_EQ(run({"/bin/sh", "-c", "head -c 268435456 /dev/zero | gzip -1 > " + in.d / "bomb.gz"},
                in.d.path()),
            0);
  std::string bomb = read_file(in.d / "bomb.gz");
  ASSERT_GT(bomb.size(), 8u);
  const unsigned char small[4] = {0xe8, 0x03, 0, 0};  // 1000, little-endian
  bomb.replace(bomb.size() - 4, 4, reinterpret_cast<const char *>(small), 4);
  write_file(in.d / "liar.gz", bomb);
  auto r = curl_post(in.d, in.url, in.d / "liar.gz", {"-H", "Content-Encoding: gzip"});
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(r.body.find("max_body (16777216 bytes)"), std::string::npos) << r.body;
  EXPECT_EQ(in.post(logs({record(R"("message":"after")")})).status, 200);
}

TEST(HttpInput, CorruptGzipOrZstdGets400NamingTheEncodingAndAnUnknownEncodingGets415) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  std::vector<std::string> recs;
  for (int i = 0; i < 100; ++i)
    recs.push_back(record("\"message\":\"c " + std::to_string(i) + "\""));
  write_file(in.d / "plain.json", logs(recs));
  ASSERT_EQ(run({"/bin/sh", "-c",
                 "gzip -c " + in.d / "plain.json" + " > " + in.d / "p.gz" + " && zstd -q -c " +
                     in.d / "plain.json" + " > " + in.d / "p.zst"},
                in.d.path()),
            0);
  struct Case {
    const char *file, *encoding;
    bool cut;  // cut short instead of flipped bytes
  };
  for (const Case c : {Case{"p.gz", "gzip", false}, Case{"p.gz", "gzip", true},
                       Case{"p.zst", "zstd", false}, Case{"p.zst", "zstd", true}}) {
    std::string body = read_file(in.d / c.file);
    ASSERT_GT(body.size(), 40u);
    if (c.cut)
      body.resize(body.size() / 2);
    else
      for (size_t i = 20; i < 30; ++i) body[i] = static_cast<char>(body[i] ^ 0x5a);
    write_file(in.d / "bad", body);
    auto r = curl_post(in.d, in.url, in.d / "bad",
                       {"-H", std::string("Content-Encoding: ") + c.encoding});
    EXPECT_EQ(r.status, 400) << c.encoding << (c.cut ? " cut: " : " flipped: ") << r.body;
    EXPECT_NE(r.body.find(std::string("corrupt compressed body (Content-Encoding: ") + c.encoding),
              std::string::npos)
        << r.body;
  }
  auto r = in.post(logs({record(R"("message":"x")")}), {"-H", "Content-Encoding: br"});
  EXPECT_EQ(r.status, 415);
  EXPECT_NE(r.body.find("unsupported Content-Encoding br: send gzip, deflate, zstd or none"),
            std::string::npos)
      << r.body;
  std::string m;
  ASSERT_EQ(http_get(in.base + "/metrics", &m, in.d.path()), 200);
  EXPECT_EQ(metric_value(m, "devmesh_http_records_accepted_total", ""), 0) << m;
  EXPECT_EQ(in.post(logs({record(R"("message":"after")")})).status, 200);
}

TEST(HttpInput, MalformedJsonGets400NamingTheByteOffsetAndAcceptsNothing) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  auto r = in.post(R"({"logs":[{"message":"a"},]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("malformed JSON at byte 25"), std::string::npos) << r.body;
  r = in.post(R"({"logs":[{"message":"a"},{"message":"b")");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("malformed JSON at byte 39"), std::string::npos) << r.body;
  r = in.post("");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("malformed JSON at byte 0"), std::string::npos) << r.body;
  // Well-formed, wrong shape.
  r = in.post(R"({"records":[]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("no \\\"logs\\\" array"), std::string::npos) << r.body;
  EXPECT_EQ(in.post(R"({"logs":{"message":"a"}})").status, 400);
  EXPECT_EQ(in.post(R"("logs")").status, 400);
  // A bare array of records is taken.
  EXPECT_EQ(in.post(R"([{"message":"bare"}])").status, 200);
  auto out = in.output(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(str_field(out[0], "message"), "bare");
}

// JSON takes no raw byte below 0x20 in a string. The parser scans strings 16 bytes at a time:
// the byte is refused at every position of a block, with its offset; escaped, it is taken.
TEST(HttpInput, ARawControlByteInAStringGets400WhereverItFallsAndEscapedItIsTaken) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  const std::string head = R"({"logs":[{"message":")";
  for (size_t pad = 0; pad < 34; ++pad) {
    for (char c : {'\x01', '\x09', '\x1a', '\x1f'}) {
      const std::string body = head + std::string(pad, 'x') + c + R"(tail"}]})";
      auto r = in.post(body);
      EXPECT_EQ(r.status, 400) << pad << " " << int(c) << " " << r.body;
      EXPECT_NE(r.body.find("malformed JSON at byte " + std::to_string(head.size() + pad) +
                            ": Invalid escape character in string"),
                std::string::npos)
          << pad << " " << int(c) << " " << r.body;
    }
  }
  EXPECT_EQ(in.post(logs({record(R"("message":"a\u001ab\u0001c")")})).status, 200);
  auto out = in.output(1);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(str_field(out[0], "message"),
            "a\x1a"
            "b\x01"
            "c");
}

TEST(HttpInput, BodyOverMaxBodyGets413) {
  Ingest in("max_body: 4KiB");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  std::vector<std::string> recs;
  for (int i = 0; i < 200; ++i) recs.push_back(record(R"("message":"filler filler filler")"));
  auto r = in.post(logs(recs));
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_EQ(in.post(logs({record(R"("message":"small")")})).status, 200);
}

TEST(HttpInput, MissingOrWrongBearerTokenGets401AndTheRightOneIsAccepted) {
  Ingest in("auth_token: s3cret-token");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  const std::string body = logs({record(R"("message":"authorized")")});
  auto r = in.post(body);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(in.post(body, {"-H", "Authorization: Bearer s3cret-tokeN"}).status, 401);
  EXPECT_EQ(in.post(body, {"-H", "Authorization: Bearer s3cret-token-longer"}).status, 401);
  EXPECT_EQ(in.post(body, {"-H", "Authorization: Basic czNjcmV0LXRva2Vu"}).status, 401);
  EXPECT_EQ(in.post(body, {"-H", "Authorization: Bearer s3cret-token"}).status, 200);
  EXPECT_EQ(libcurl_post(in.url, body, {"Authorization: bearer s3cret-token"}).status, 200);
  EXPECT_EQ(in.output(2).size(), 2u);
  EXPECT_EQ(in.engine->proc().err().find("s3cret"), std::string::npos) << "the token was logged";
}

TEST(HttpInput, UnknownPathGets404AndWrongMethodGets405) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  EXPECT_EQ(curl_post(in.d, in.base + "/ingest/other", "").status, 404);
  auto r = curl_post(in.d, in.url, "", {}, "GET");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "POST");
  EXPECT_EQ(curl_post(in.d, in.url, "", {}, "PUT").status, 405);
  // The engine's /health shares the listener.
  EXPECT_EQ(http_get(in.base + "/health", nullptr, in.d.path()), 200);
}

TEST(HttpInput, FullQueuesAnswer503WithRetryAfterAndNothingAcceptedIsDropped) {
  Ingest in("retry_after: 2s",
            "    - {name: flaky, path: @DIR@/out.txt, delay: 200ms, batch_size: 50,"
            " queue_limit: 8KiB}\n");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  const std::string out = in.d / "out.txt";
  std::vector<std::string> recs;
  for (int i = 0; i < 50; ++i) recs.push_back(record("\"message\":\"m" + std::to_string(i) + "\""));
  const std::string body = logs(recs);
  unsigned accepted = 0;
  HttpResult busy;
  for (int i = 0; i < 200 && busy.status != 503; ++i) {
    auto r = libcurl_post(in.url, body);
    if (r.status == 200) {
      accepted += parse_json(r.body)["accepted"].GetUint();
    } else {
      busy = r;
    }
  }
  ASSERT_EQ(busy.status, 503) << "the queue never filled";
  EXPECT_EQ(busy.header("Retry-After"), "2");
  EXPECT_GT(accepted, 0u);
  // Every record that got a 200 is delivered; none of the refused request's.
  EXPECT_TRUE(wait_until([&] { return read_lines(out).size() >= accepted; }, 60s));
  std::string m;
  EXPECT_TRUE(wait_until([&] { return Ingest::settled(m = in.metrics()); }, 60s)) << m;
  EXPECT_EQ(metric_value(m, "devmesh_records_in_total", "kind=\"input\""), accepted) << m;
  EXPECT_EQ(read_lines(out).size(), accepted);
  // Drained, it takes requests again.
  EXPECT_TRUE(wait_until([&] { return libcurl_post(in.url, logs({recs[0]})).status == 200; }, 30s));
  EXPECT_GE(metric_value(in.metrics(), "devmesh_http_requests_total", "status=\"503\""), 1);
}

// Requests waiting behind a slow output (ack: delivered) are merged into larger flushes: each
// is still answered only once its own records are written, and each record is written once.
TEST(HttpInput, AckDeliveredRequestsMergedIntoOneFlushAreEachAnsweredOnceDelivered) {
  Ingest in("ack: delivered",
            "    - {name: flaky, path: @DIR@/out.txt, delay: 100ms, batch_size: 1000,"
            " flush_interval: 5ms}\n");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  const std::string out = in.d / "out.txt";
  constexpr int kClients = 8, kPosts = 6, kRecords = 5;
  std::atomic<int> answered{0}, early{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; t++)
    clients.emplace_back([&, t] {
      for (int p = 0; p < kPosts; p++) {
        // Clients spread over the output's 100 ms flush: several flush_intervals seal their
        // requests into chunks of their own, which wait for the one slot and are merged.
        std::this_thread::sleep_for(std::chrono::milliseconds(7 * t));
        std::vector<std::string> recs, want;
        for (int k = 0; k < kRecords; k++) {
          want.push_back("c" + std::to_string(t) + "p" + std::to_string(p) + "r" +
                         std::to_string(k));
          recs.push_back(record("\"message\":\"" + want.back() + "\""));
        }
        if (libcurl_post(in.url, logs(recs)).status != 200) return;
        answered++;
        // Answered: every record of this request is in the output already.
        std::set<std::string> written;
        for (auto &l : read_lines(out)) written.insert(l.substr(l.find('\t') + 1));
        for (auto &w : want)
          if (!written.count(w)) early++;
      }
    });
  for (auto &c : clients) c.join();
  EXPECT_EQ(answered, kClients * kPosts);
  EXPECT_EQ(early, 0) << "a request was answered before its records were written";
  std::string m;
  EXPECT_TRUE(wait_until([&] { return Ingest::settled(m = in.metrics()); }, 60s)) << m;
  EXPECT_GT(metric_value(m, "devmesh_output_chunks_merged_total", "kind=\"output\""), 0) << m;
  const auto lines = read_lines(out);
  EXPECT_EQ(lines.size(), static_cast<size_t>(kClients * kPosts * kRecords));
  std::set<std::string> distinct;
  for (auto &l : lines) distinct.insert(l.substr(l.find('\t') + 1));
  EXPECT_EQ(distinct.size(), lines.size()) << "a record was written twice";
}

TEST(HttpInput, AckDeliveredAnswersOnlyOnceTheOutputHasTheRecords) {
  Ingest in("ack: delivered",
            "    - {name: flaky, path: @DIR@/flaky.txt, fail_first: 2, retry_wait: 200ms,"
            " flush_interval: 20ms}\n"
            "    - {name: flaky, alias: poison, path: @DIR@/p.txt, poison: doomed,"
            " fail_status: error, dead_letter_path: @DIR@/dead.ndjson, flush_interval: 20ms}\n");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  const TempDir &d = in.d;
  const std::string out = d / "flaky.txt";
  auto r = in.post(logs({record(R"("message":"first")"), record(R"("message":"second")")}));
  ASSERT_EQ(r.status, 200) << r.body;
  // Retried twice before it was written, and only then answered.
  EXPECT_EQ(read_lines(out).size(), 2u);
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["accepted"].GetUint(), 2u);
  EXPECT_EQ(doc["delivered"].GetUint(), 4u);  // two records to two outputs
  EXPECT_EQ(doc["dead_lettered"].GetUint(), 0u);
  // A record an output dead-letters is done (kept in the dead-letter file): 200, and counted.
  r = in.post(logs({record(R"("message":"doomed")")}));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["dead_lettered"].GetUint(), 1u) << r.body;
  EXPECT_EQ(read_lines(d / "dead.ndjson").size(), 1u);
  EXPECT_EQ(metric_value(in.metrics(), "devmesh_http_records_dead_lettered_total", ""), 1);
}

TEST(HttpInput, ManyConcurrentKeepAliveClientsAreServedAndCountedByStatus) {
  Ingest in("", "    - {name: 'null'}\n");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  constexpr int kClients = 32, kRequests = 5, kRecords = 10;
  std::vector<std::string> recs;
  for (int i = 0; i < kRecords; ++i)
    recs.push_back(record("\"message\":\"c" + std::to_string(i) + "\""));
  const std::string body = logs(recs);
  CURLM *multi = curl_multi_init();
  struct Client {
    CURL *easy;
    int done = 0;
    long connects = 0;
    std::string resp;
  };
  std::vector<Client> clients(kClients);
  auto sink = +[](char *p, size_t s, size_t n, void *arg) {
    static_cast<std::string *>(arg)->append(p, s * n);
    return s * n;
  };
  curl_slist *h = curl_slist_append(nullptr, "Content-Type: application/json");
  for (auto &c : clients) {
    c.easy = curl_easy_init();
    curl_easy_setopt(c.easy, CURLOPT_URL, in.url.c_str());
    curl_easy_setopt(c.easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c.easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c.easy, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c.easy, CURLOPT_WRITEDATA, &c.resp);
    curl_easy_setopt(c.easy, CURLOPT_PRIVATE, &c);
    curl_multi_add_handle(multi, c.easy);
  }
  int ok = 0, running = 1;
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (running && std::chrono::steady_clock::now() < deadline) {
    curl_multi_perform(multi, &running);
    int left;
    while (CURLMsg *m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      Client *c;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char **>(&c));
      long code = 0, connects = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      curl_easy_getinfo(m->easy_handle, CURLINFO_NUM_CONNECTS, &connects);
      c->connects += connects;
      ok += code == 200;
      curl_multi_remove_handle(multi, m->easy_handle);
      if (++c->done < kRequests) {
        c->resp.clear();
        curl_multi_add_handle(multi, m->easy_handle);  // the same handle reuses its connection
        running = 1;
      }
    }
    curl_multi_poll(multi, nullptr, 0, 100, nullptr);
  }
  long connects = 0;
  for (auto &c : clients) {
    connects += c.connects;
    curl_easy_cleanup(c.easy);
  }
  curl_slist_free_all(h);
  curl_multi_cleanup(multi);
  EXPECT_EQ(ok, kClients * kRequests);
  EXPECT_LE(connects, kClients) << "connections were not kept alive";
  std::string m;
  ASSERT_TRUE(wait_until(
      [&] {
        m = in.metrics();
        return metric_value(m, "devmesh_records_out_total", "plugin=\"null\"") ==
               kClients * kRequests * kRecords;
      },
      10s))
      << m;
  EXPECT_EQ(metric_value(m, "devmesh_http_requests_total", "status=\"200\""), kClients * kRequests);
  EXPECT_EQ(metric_value(m, "devmesh_http_records_accepted_total", ""),
            kClients * kRequests * kRecords);
}

TEST(HttpInput, TwoInputsOnOnePortIsAConfigErrorButDistinctPathsShareIt) {
  TempDir d;
  int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  Devmesh e(d, "engine",
            plugins_head("  http_listen: " + listen + "\n") +
                "  inputs:\n    - {name: http, alias: a, listen: '" + listen +
                "', tag: a}\n    - {name: http, alias: b, listen: '" + listen +
                "', path: /other, tag: b}\n  outputs:\n    - {name: stdout, match: b, path: " +
                d / "b.ndjson" + "}\n");
  ASSERT_TRUE(e.ready(port, d)) << e->err();
  write_file(d / "x", logs({record(R"("message":"to b")")}));
  EXPECT_EQ(curl_post(d, "http://" + listen + "/other", d / "x").status, 200);
  EXPECT_EQ(curl_post(d, "http://" + listen + "/ingest/logs", d / "x").status, 200);
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "b.ndjson").size() == 1; }, 10s));
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(10s), 0);

  TempDir d2;
  Devmesh dup(d2, "dup",
              plugins_head() + "  inputs:\n    - {name: http, alias: a, listen: '" + listen +
                  "'}\n    - {name: http, alias: b, listen: '" + listen +
                  "'}\n  outputs:\n    - {name: 'null'}\n");
  EXPECT_NE(dup->wait_exit(10s), 0);
  // Refused before anything starts, at the second input's place (it was found at bind time).
  EXPECT_NE(dup->err().find(d2 / "dup.yaml:6:7: pipeline.inputs[1].path: " + listen +
                            " /ingest/logs is also served by pipeline.inputs[0].path (line 5)"),
            std::string::npos)
      << dup->err();
}

// Bodies of 64 KiB and more are parsed on the engine's pool: the same answers as inline ones,
// the 400 naming the byte, the 422 and the 200 naming each rejected record's index.
TEST(HttpInput, LargeBodiesParsedOffTheLoopGetTheSameAnswers) {
  Ingest in;
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  std::vector<std::string> recs;
  for (int i = 0; i < 5000; ++i)
    recs.push_back(record("\"message\":\"big " + std::to_string(i) + "\""));
  recs[1500] = record("\"level\":\"INFO\"");
  const std::string body = logs(recs);
  ASSERT_GE(body.size(), 64u * 1024);
  auto r = in.post(body);
  ASSERT_EQ(r.status, 200) << r.body;
  auto doc = parse_json(r.body);
  EXPECT_EQ(doc["accepted"].GetUint(), 4999u);
  ASSERT_EQ(doc["errors"].Size(), 1u) << r.body;
  EXPECT_EQ(doc["errors"][0]["index"].GetUint(), 1500u);
  EXPECT_EQ(str_field(doc["errors"][0], "reason"), "message is missing");

  std::vector<std::string> none(5000, record("\"level\":\"INFO\",\"host\":\"h\""));
  const std::string rejected = logs(none);
  ASSERT_GE(rejected.size(), 64u * 1024);
  EXPECT_EQ(in.post(rejected).status, 422);

  const std::string broken = body.substr(0, body.size() - 2);
  auto bad = in.post(broken);
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_NE(bad.body.find("at byte"), std::string::npos) << bad.body;
  EXPECT_EQ(in.output(4999).size(), 4999u);
}

// SIGTERM while large gzip bodies are decompressed and parsed on the pool: every request gets an
// answer, 200 or 503, and exactly the records of the 200s are stored (a 503's are not submitted:
// its client's re-send brings them once).
TEST(HttpInput, StopWhileGzipBodiesAreParsedAnswersEveryRequestAndStoresEvery200) {
  // A queue that holds every body: the stop, not backpressure, is what answers them.
  Ingest in("max_body: 64MiB",
            "    - {name: stdout, path: @DIR@/out.ndjson, queue_limit: 512MiB}\n");
  ASSERT_TRUE(in.ready) << in.engine->proc().err();
  constexpr int kClients = 4, kRecords = 40000;
  std::vector<std::string> bodies;
  size_t total_bytes = 0;
  for (int c = 0; c < kClients; ++c) {
    std::string plain = "{\"logs\":[";
    for (int i = 0; i < kRecords; ++i)
      plain += std::string(i ? "," : "") + "{\"message\":\"c" + std::to_string(c) + " r" +
               std::to_string(i) + "\",\"service\":\"svc\",\"level\":\"warn\"}";
    plain += "]}";
    const std::string name = "plain" + std::to_string(c);
    write_file(in.d / name, plain);
    ASSERT_EQ(run({"/bin/sh", "-c", "gzip -1 -c " + in.d / name + " > " + in.d / name + ".gz"},
                  in.d.path()),
              0);
    bodies.push_back(read_file(in.d / (name + ".gz")));
    total_bytes += bodies.back().size();
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  std::vector<HttpResult> results(kClients);
  // The first is answered before the stop: its records are queued, and stored at the stop.
  results[0] = libcurl_post(in.url, bodies[0], {"Content-Encoding: gzip"});
  ASSERT_EQ(results[0].status, 200) << results[0].body;
  std::atomic<int> answered{1};
  std::vector<std::thread> clients;
  for (int c = 1; c < kClients; ++c)
    clients.emplace_back([&, c] {
      results[c] = libcurl_post(in.url, bodies[c], {"Content-Encoding: gzip"});
      ++answered;
    });
  // Every body has reached the input (its bytes are counted before it is queued for parsing),
  // or one was answered already: the engine is told to stop while the rest are parsed.
  std::string m;
  wait_until(
      [&] {
        m = in.metrics();
        return answered > 1 || metric_value(m, "devmesh_http_request_bytes_total", "") >=
                                   static_cast<double>(total_bytes);
      },
      30s);
  in.engine->proc().kill(SIGTERM);
  for (auto &t : clients) t.join();
  EXPECT_EQ(in.engine->proc().wait_exit(30s), 0) << in.engine->proc().err();
  const std::string log = in.engine->proc().err();

  std::set<std::string> expected;
  int ok = 0;
  for (int c = 0; c < kClients; ++c) {
    ASSERT_TRUE(results[c].status == 200 || results[c].status == 503)
        << "client " << c << ": " << results[c].status << " " << results[c].body << log;
    if (results[c].status != 200) continue;
    ++ok;
    EXPECT_EQ(parse_json(results[c].body)["accepted"].GetUint(), static_cast<unsigned>(kRecords));
    for (int i = 0; i < kRecords; ++i)
      expected.insert("c" + std::to_string(c) + " r" + std::to_string(i));
  }
  std::set<std::string> stored;
  size_t lines = 0;
  for (auto &o : read_ndjson(in.d / "out.ndjson")) {
    stored.insert(str_field(o, "message"));
    ++lines;
  }
  EXPECT_EQ(lines, stored.size()) << "a record was stored twice";
  EXPECT_EQ(stored.size(), expected.size()) << ok << " of " << kClients << " answered 200" << log;
  EXPECT_TRUE(stored == expected) << ok << " of " << kClients << " answered 200";
  std::cerr << ok << " of " << kClients << " requests answered 200 around the stop; the others:";
  for (const HttpResult &r : results)
    if (r.status != 200) std::cerr << " " << r.body;
  std::cerr << "\n";
}

}  // namespace
