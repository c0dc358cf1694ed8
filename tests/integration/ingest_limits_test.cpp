// The ingest path under hostile and careless input (issue 16), through the real binary: records
// that differ in any one field are stored apart (and an exact re-send once), nesting deep enough
// to overflow a recursive parser is a 400 naming it, a record with 100k or 1M meta keys is
// refused quickly while /health answers, messages and meta are bounded per record, bodies that
// are not JSON get 415, conflicting Content-Length / Transfer-Encoding a 400, and the query
// plugin takes the bearer scheme in any case.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <future>
#include <string>
#include <vector>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// An engine with an http input and /health on one port, into `outputs` (YAML list entries).
struct Engine {
  TempDir d;
  int port = free_port();
  std::string base = "http://127.0.0.1:" + std::to_string(port);
  std::string url = base + "/ingest/logs";
  std::unique_ptr<Process> proc;
  bool ready = false;

  explicit Engine(const std::string &outputs, const std::string &input_options = "") {
    const std::string listen = "127.0.0.1:" + std::to_string(port);
    proc = start_engine(d, plugins_head("  http_listen: " + listen + "\n") +
                               "  inputs:\n    - {name: http, listen: '" + listen + "'" +
                               (input_options.empty() ? "" : ", " + input_options) +
                               "}\n  outputs:\n" + outputs);
    ready = wait_until([&] { return http(base + "/health").status != 0; }, 20s);
  }
  ~Engine() {
    proc->kill(SIGTERM);
    proc->wait_exit(10s);
  }
  HttpResponse post(const std::string &body,
                    std::vector<std::string> headers = {"Content-Type: application/json"}) {
    return http(url, std::move(headers), "POST", body);
  }
  double metric(const std::string &name, const std::string &labels = "") {
    return metric_value(http(base + "/metrics").body, name, labels);
  }
  bool alive() { return proc->running() && http(base + "/health").status == 200; }
};

std::string null_output() {
  return "    - {name: 'null', match: '*'}\n";
}

// One record with n meta keys "0".."n-1" (hex), all with the value "v".
std::string many_keys(size_t n) {
  std::string body = R"({"logs":[{"message":"many keys","meta_json":{)";
  body.reserve(n * 12 + 64);
  char key[32];
  for (size_t i = 0; i < n; ++i) {
    const int len = std::snprintf(key, sizeof key, "%s\"%zx\":\"v\"", i ? "," : "", i);
    body.append(key, static_cast<size_t>(len));
  }
  return body + "}}]}";
}

// Sends raw bytes and returns everything the server answers until it closes (or 10 s pass).
std::string raw_request(int port, const std::string &bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    close(fd);
    return "";
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)!write(fd, bytes.data(), bytes.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

TEST(IngestLimits, RecordsThatDifferInAnyOneFieldAreStoredApartAndAnExactReSendOnce) {
  TempDir keep;
  const std::string db = keep / "devmesh.db";
  Engine e("    - {name: sqlite, match: '*', path: " + db + ", flush_interval: 20ms}\n");
  ASSERT_TRUE(e.ready) << e.proc->err();
  // The same timestamp, host, service and message: the fields the id used to cover.
  const std::string same = R"("timestamp":"2025-01-01T00:00:00Z","host":"h","service":"s",)"
                           R"("message":"same line")";
  std::vector<std::string> records;
  for (const char *differs :
       {"", R"(,"level":"ERROR")", R"(,"trace_id":"t1")", R"(,"span_id":"s1")",
        R"(,"source":"app")", R"(,"event_type":"e")", R"(,"error_code":"E1")", R"(,"priority":3)",
        R"(,"meta_json":{"k":"v"})", R"(,"meta_json":{"k":"w"})", R"(,"meta_json":{"kv":""})",
        R"(,"meta_json":{"k":"v","a":"1"})"})
    records.push_back("{" + same + differs + "}");
  std::string body = R"({"logs":[)";
  for (size_t i = 0; i < records.size(); ++i) body += (i ? "," : "") + records[i];
  body += "]}";
  const long n = static_cast<long>(records.size());
  HttpResponse r = e.post(body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":" + std::to_string(n)), std::string::npos) << r.body;
  ASSERT_TRUE(wait_until([&] { return e.metric("devmesh_sqlite_rows_inserted_total") >= n; }, 30s));
  // An exact re-send, and the last record with its meta keys in the other order (a JSON object
  // is unordered, and both are stored alike): nothing new.
  ASSERT_EQ(e.post(body).status, 200);
  ASSERT_EQ(e.post("{\"logs\":[{" + same + R"(,"meta_json":{"a":"1","k":"v"}}]})").status, 200);
  ASSERT_TRUE(
      wait_until([&] { return e.metric("devmesh_sqlite_rows_duplicate_total") >= n + 1; }, 30s));
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), n);
  EXPECT_EQ(s.number("SELECT count(DISTINCT event_id) FROM log_events"), n);
}

TEST(IngestLimits, NestingDeeperThan64LevelsIsA400NamingItAndTheEngineLives) {
  Engine e(null_output());
  ASSERT_TRUE(e.ready) << e.proc->err();
  HttpResponse r = e.post(std::string(500000, '['));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("JSON nested deeper than 64 levels at byte 64"), std::string::npos)
      << r.body;
  ASSERT_TRUE(e.alive()) << e.proc->err();

  // 8M '[' gzip-compressed: a few KB on the wire.
  write_file(e.d / "deep.json", std::string(8u << 20, '['));
  ASSERT_EQ(run({"/bin/gzip", "-9", e.d / "deep.json"}, e.d.path()), 0);
  const std::string packed = read_file(e.d / "deep.json.gz");
  ASSERT_LT(packed.size(), 64u << 10);
  r = e.post(packed, {"Content-Type: application/json", "Content-Encoding: gzip"});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("JSON nested deeper than 64 levels"), std::string::npos) << r.body;
  ASSERT_TRUE(e.alive()) << e.proc->err();

  // Inside a record's meta value; and an NDJSON line, which rejects only its record.
  const std::string deep_meta = std::string(70, '[') + std::string(70, ']');
  r = e.post(R"({"logs":[{"message":"m","meta_json":{"k":)" + deep_meta + "}}]}");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("JSON nested deeper than 64 levels"), std::string::npos) << r.body;
  r = e.post(
      "{\"message\":\"fine\"}\n{\"message\":\"m\",\"meta_json\":{\"k\":" + deep_meta + "}}\n",
      {"Content-Type: application/x-ndjson"});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"("accepted":1,"rejected":1)"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("JSON nested deeper than 64 levels at byte"), std::string::npos) << r.body;
  // 64 levels in all is still fine.
  r = e.post(R"({"logs":[{"message":"m","meta_json":{"k":)" + std::string(60, '[') +
             std::string(60, ']') + "}}]}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(e.alive()) << e.proc->err();
}

// Posts body in the background; meanwhile /health must answer. The post must complete within
// a generous bound (it took minutes before meta lookups were indexed and bounded).
HttpResponse post_while_health_answers(Engine &e, const std::string &body) {
  auto post = std::async(std::launch::async, [&] { return e.post(body); });
  EXPECT_TRUE(wait_until([&] { return http(e.base + "/health").status == 200; }, 30s));
  EXPECT_EQ(post.wait_for(30s), std::future_status::ready) << "the request still runs";
  return post.get();
}

TEST(IngestLimits, RecordsWith100kOr1MMetaKeysAreRefusedQuicklyWhileHealthAnswers) {
  Engine e(null_output());
  ASSERT_TRUE(e.ready) << e.proc->err();
  for (size_t n : {size_t(100000), size_t(1000000)}) {
    HttpResponse r = post_while_health_answers(e, many_keys(n));
    EXPECT_EQ(r.status, 422) << n;
    EXPECT_NE(r.body.find(R"({"index":0,"reason":"meta_json has more than 1024 keys"})"),
              std::string::npos)
        << r.body.substr(0, 300);
  }
  EXPECT_EQ(e.metric("devmesh_http_records_rejected_total", "reason=\"meta_too_large\""), 2);
  // At the limit, a record is kept.
  EXPECT_EQ(e.post(many_keys(1024)).status, 200);
  // Bytes: one value above 1 MiB.
  HttpResponse r = e.post(R"({"logs":[{"message":"m","meta_json":{"k":")" +
                          std::string((1u << 20) + 1, 'x') + "\"}}]}");
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(r.body.find("meta_json larger than 1048576 bytes"), std::string::npos) << r.body;
  EXPECT_TRUE(e.alive()) << e.proc->err();
}

TEST(IngestLimits, MetaBytesAreCountedAsStoredSoAnAggregatorTakesWhatASidecarTook) {
  Engine e(null_output(), "max_meta_bytes: 1KiB");
  ASSERT_TRUE(e.ready) << e.proc->err();
  // 400 invalid bytes are 400 U+FFFD (1200 bytes) in every output and in a forwarded body.
  HttpResponse r =
      e.post(R"({"logs":[{"message":"m","meta_json":{"k":")" + std::string(400, '\xff') +
             R"("}},{"message":"m","meta_json":{"k":")" + std::string(1000, 'x') + "\"}}]}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"({"index":0,"reason":"meta_json larger than 1024 bytes)"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"("accepted":1)"), std::string::npos) << r.body;
}

// A nested meta value counts toward max_meta_bytes as it is read: one past the limit rejects
// its record (named, by index) and the rest of it is skipped, not copied; the next record of
// the body is taken.
TEST(IngestLimits, ANestedMetaValuePastMaxMetaBytesRejectsItsRecordAndTheNextIsTaken) {
  Engine e(null_output(), "max_meta_bytes: 1KiB");
  ASSERT_TRUE(e.ready) << e.proc->err();
  std::string nested = "[";
  for (int i = 0; i < 20000; ++i) nested += std::string(i ? "," : "") + "{\"a\":[1,\"xx\"]}";
  nested += "]";
  HttpResponse r = e.post(R"({"logs":[{"message":"m","meta_json":{"big":)" + nested +
                          R"(,"after":1}},{"message":"m","meta_json":{"small":{"a":1}}}]})");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"({"index":0,"reason":"meta_json larger than 1024 bytes)"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find(R"("accepted":1)"), std::string::npos) << r.body;
}

TEST(IngestLimits, MetaLookupsAreLinearSo200kKeysAreTakenQuicklyWhenAllowed) {
  Engine e(null_output(), "max_meta_keys: 1000000, max_meta_bytes: 16MiB");
  ASSERT_TRUE(e.ready) << e.proc->err();
  // Duplicates too: a repeated key replaces its value (through the index).
  std::string body = many_keys(200000);
  body.insert(body.size() - 4, R"(,"0":"again","1f":"again")");
  HttpResponse r = post_while_health_answers(e, body);
  EXPECT_EQ(r.status, 200) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find(R"("accepted":1)"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_TRUE(e.alive()) << e.proc->err();
}

TEST(IngestLimits, AMessageLongerThanMaxMessageIsRejectedNamingTheLimit) {
  Engine e(null_output(), "max_message: 1KiB");
  ASSERT_TRUE(e.ready) << e.proc->err();
  HttpResponse r = e.post(R"({"logs":[{"message":")" + std::string(1024, 'x') +
                          R"("},{"message":")" + std::string(1025, 'x') + "\"}]}");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find(R"({"index":1,"reason":"message longer than 1024 bytes"})"),
            std::string::npos)
      << r.body;
  // Counted as stored: 400 invalid bytes become 400 U+FFFD (1200 bytes) in every output.
  r = e.post(R"({"logs":[{"message":")" + std::string(400, '\xff') + "\"}]}");
  EXPECT_EQ(r.status, 422) << r.body;
  EXPECT_EQ(e.metric("devmesh_http_records_rejected_total", "reason=\"field_too_long\""), 2);
}

TEST(IngestLimits, BodiesThatAreNotJsonAreRefusedWith415NamingTheType) {
  Engine e(null_output());
  ASSERT_TRUE(e.ready) << e.proc->err();
  const std::string body = R"({"logs":[{"message":"m"}]})";
  for (const char *type : {"text/plain", "application/xml", "multipart/form-data; boundary=x",
                           "application/x-www-form-urlencoded"}) {
    HttpResponse r = e.post(body, {std::string("Content-Type: ") + type});
    EXPECT_EQ(r.status, 415) << type;
    const std::string bare = std::string(type).substr(0, std::string(type).find(';'));
    EXPECT_NE(r.body.find("unsupported Content-Type " + bare), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("send Content-Type: application/json"), std::string::npos) << r.body;
  }
  // curl -d sends a form: the answer says so.
  EXPECT_NE(e.post(body, {"Content-Type: application/x-www-form-urlencoded"}).body.find("curl -d"),
            std::string::npos);
  // Taken: no Content-Type at all (libcurl drops the header for "Content-Type:"), JSON with a
  // charset, a +json type, NDJSON.
  for (const char *type : {"Content-Type:", "Content-Type: application/json; charset=utf-8",
                           "Content-Type: application/vnd.devmesh+json"})
    EXPECT_EQ(e.post(body, {type}).status, 200) << type;
  EXPECT_EQ(e.post(R"({"message":"m"})", {"Content-Type: Application/X-NDJSON"}).status, 200);
  EXPECT_EQ(e.metric("devmesh_http_requests_total", "status=\"415\""), 5);
}

TEST(IngestLimits, ConflictingContentLengthAndTransferEncodingAreRefusedWith400) {
  TempDir keep;
  Engine e("    - {name: stdout, match: '*', path: " + keep / "out.ndjson" +
           ", flush_interval: 20ms}\n");
  ASSERT_TRUE(e.ready) << e.proc->err();
  const std::string head =
      "POST /ingest/logs HTTP/1.1\r\nHost: x\r\n"
      "Content-Type: application/json\r\nConnection: close\r\n";
  const std::string body = R"({"logs":[{"message":"smuggled"}]})";  // 33 bytes
  const std::string chunked = "21\r\n" + body + "\r\n0\r\n\r\n";
  for (const std::string &framing :
       {"Content-Length: 33\r\nContent-Length: 5\r\n\r\n" + body,
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
        "Transfer-Encoding: chunked\r\nContent-Length: 33\r\n\r\n" + chunked}) {
    const std::string answer = raw_request(e.port, head + framing);
    EXPECT_EQ(answer.rfind("HTTP/1.1 400", 0), 0u) << answer;
  }
  EXPECT_EQ(e.metric("devmesh_http_framing_refused_total"), 3);
  // The same length twice is no conflict; one framing alone is fine.
  for (const std::string &framing : {"Content-Length: 33\r\nContent-Length: 33\r\n\r\n" + body,
                                     "Transfer-Encoding: chunked\r\n\r\n" + chunked}) {
    const std::string answer = raw_request(e.port, head + framing);
    EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  }
  ASSERT_TRUE(wait_until([&] { return read_lines(keep / "out.ndjson").size() >= 2; }, 30s));
  EXPECT_EQ(e.metric("devmesh_http_records_accepted_total"), 2);
}

TEST(IngestLimits, QueryTakesTheBearerSchemeInAnyCase) {
  TempDir d;
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto p = start_engine(
      d, plugins_head() +
             "  inputs:\n    - {name: dummy, rate: 0.001}\n"
             "  outputs:\n    - {name: sqlite, match: '*', path: " +
             d / "devmesh.db" +
             "}\n    - {name: query, match: none, listen: 127.0.0.1:" + std::to_string(port) +
             ", path: " + d / "devmesh.db" + ", auth_token: s3cret-token}\n");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << p->err();
  for (const char *scheme : {"Bearer", "bearer", "BEARER", "bEaReR"})
    EXPECT_EQ(http(base + "/query/logs?limit=1",
                   {std::string("Authorization: ") + scheme + " s3cret-token"})
                  .status,
              200)
        << scheme;
  EXPECT_EQ(http(base + "/query/logs?limit=1", {"Authorization: bearer s3cret-tokeN"}).status, 401);
  EXPECT_EQ(http(base + "/query/logs?limit=1", {"Authorization: bearers3cret-token"}).status, 401);
  p->kill(SIGTERM);
  p->wait_exit(10s);
}

}  // namespace
