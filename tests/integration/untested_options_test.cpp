// Options and promises of the http input that had no test, through the real binary and real
// clients: Content-Encoding: deflate (a zlib stream is taken, several one after another too, a raw
// deflate stream, a wrong Adler-32, a cut stream, trailing bytes and a bomb refused), and
// the 503 with Retry-After for a request arriving while the engine shuts down, with a request
// held (ack: delivered) when SIGTERM arrives still answered 200 once delivered, and never a 2xx
// when the grace period ends before its delivery.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

const char kTwoRecords[] = R"({"logs":[{"message":"deflated one","service":"svc"},)"
                           R"({"message":"deflated two","service":"svc"}]})";

// An engine whose http input, /health and /metrics share one port.
std::string ingest_yaml(int port, const std::string &input_options, const std::string &outputs,
                        const std::string &service_extra = "") {
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  return plugins_head("  http_listen: " + listen + "\n" + service_extra) +
         "  inputs:\n    - {name: http, listen: '" + listen + "'" + input_options +
         "}\n  outputs:\n" + outputs;
}

uint32_t adler32(const std::string &s) {
  uint32_t a = 1, b = 0;
  for (unsigned char c : s) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  return (b << 16) | a;
}

// The same JSON compressed by the gzip tool, then re-wrapped: the raw deflate data inside the
// gzip member (RFC 1952 minus its 10-byte header and 8-byte trailer), and that data as a zlib
// stream (RFC 1950: header 78 9C, the deflate data, Adler-32 big-endian), which is what HTTP's
// "deflate" means (RFC 9110 8.4.1.2).
struct Deflated {
  std::string raw, zlib;
};

Deflated deflate_with_gzip(const TempDir &d, const std::string &plain) {
  write_file(d / "plain.json", plain);
  // -n: no name or time in the header, so it is exactly 10 bytes (no optional fields).
  EXPECT_EQ(
      run({"/bin/sh", "-c", "gzip -n -9 -c < " + d / "plain.json" + " > " + d / "p.gz"}, d.path()),
      0);
  const std::string gz = read_file(d / "p.gz");
  Deflated out;
  if (gz.size() < 18 || static_cast<unsigned char>(gz[0]) != 0x1f || gz[3] != 0) {
    ADD_FAILURE() << "not a plain gzip member (" << gz.size() << " bytes)";
    return out;
  }
  out.raw = gz.substr(10, gz.size() - 18);
  const uint32_t sum = adler32(plain);
  out.zlib = std::string("\x78\x9c", 2) + out.raw;
  for (int shift : {24, 16, 8, 0}) out.zlib += static_cast<char>((sum >> shift) & 0xff);
  return out;
}

// ---- Content-Encoding: deflate ------------------------------------------------------------------

// Which "deflate" to take: RFC 9110 defines it as the zlib format, and the clients that send it
// in requests (Vector's zlib compression, zlib's compress() / PHP gzcompress) send zlib; Fluent
// Bit's out_http sends gzip only and curl --compressed compresses nothing it posts. Raw deflate
// without the zlib header is the old misreading (.NET DeflateStream, PHP gzdeflate): refused with
// a 400 rather than guessed at, and nothing of it is stored.
TEST(HttpInputDeflate, AZlibStreamIsInflatedAndEveryRecordKept) {
  TempDir d;
  const int port = free_port();
  Devmesh dm(d, "engine",
             ingest_yaml(port, "", "    - {name: stdout, path: " + d / "out.ndjson" + "}\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  const Deflated body = deflate_with_gzip(d, kTwoRecords);
  ASSERT_FALSE(body.zlib.empty());
  write_file(d / "body.zlib", body.zlib);
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  auto r = curl_post(d, url, d / "body.zlib",
                     {"-H", "Content-Encoding: deflate", "-H", "Content-Type: application/json"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":2"), std::string::npos) << r.body;
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.ndjson").size() >= 2; }, 30s))
      << dm->err();
  const auto got = read_ndjson(d / "out.ndjson");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(str_field(got[0], "message"), "deflated one");
  EXPECT_EQ(str_field(got[1], "message"), "deflated two");
}

TEST(HttpInputDeflate, ARawDeflateStreamIsRefusedWith400AndNothingIsStored) {
  TempDir d;
  const int port = free_port();
  Devmesh dm(d, "engine",
             ingest_yaml(port, "", "    - {name: stdout, path: " + d / "out.ndjson" + "}\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  const Deflated body = deflate_with_gzip(d, kTwoRecords);
  ASSERT_FALSE(body.raw.empty());
  write_file(d / "body.raw", body.raw);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto r = curl_post(d, base + "/ingest/logs", d / "body.raw",
                     {"-H", "Content-Encoding: deflate", "-H", "Content-Type: application/json"});
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_NE(r.body.find("compressed"), std::string::npos) << r.body;
  std::string m;
  ASSERT_EQ(http_get(base + "/metrics", &m, d.path()), 200);
  EXPECT_EQ(metric_value(m, "devmesh_http_requests_total", "status=\"400\""), 1) << m;
  EXPECT_EQ(metric_value(m, "devmesh_http_records_accepted_total", ""), 0) << m;
  // The engine is still serving, and a good request after the bad one is kept alone.
  write_file(d / "good.json", R"({"logs":[{"message":"after"}]})");
  ASSERT_EQ(
      curl_post(d, base + "/ingest/logs", d / "good.json", {"-H", "Content-Type: application/json"})
          .status,
      200);
  ASSERT_TRUE(wait_until([&] { return !read_lines(d / "out.ndjson").empty(); }, 30s));
  dm->kill(SIGTERM);
  ASSERT_EQ(dm->wait_exit(30s), 0) << dm->err();
  const auto got = read_ndjson(d / "out.ndjson");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(str_field(got[0], "message"), "after");
}

// Several streams one after another are one body, as zlib's inflate took them (each a zlib stream
// or a gzip member, told apart by their first bytes: a gzip body labelled deflate is taken).
TEST(HttpInputDeflate, ZlibStreamsOneAfterAnotherAndAGzipMemberAreInflatedWhole) {
  TempDir d;
  const int port = free_port();
  Devmesh dm(d, "engine",
             ingest_yaml(port, "", "    - {name: stdout, path: " + d / "out.ndjson" + "}\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  const std::string ndjson = "Content-Type: application/x-ndjson";
  const Deflated a = deflate_with_gzip(d, "{\"message\":\"first\"}\n");
  const Deflated b = deflate_with_gzip(d, "{\"message\":\"second\"}\n{\"message\":\"third\"}\n");
  write_file(d / "ab.zlib", a.zlib + b.zlib);
  auto r = curl_post(d, url, d / "ab.zlib", {"-H", "Content-Encoding: deflate", "-H", ndjson});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(parse_json(r.body)["accepted"].GetUint(), 3u) << r.body;
  // deflate_with_gzip left the gzip tool's own member of the last text in p.gz.
  auto g = curl_post(d, url, d / "p.gz", {"-H", "Content-Encoding: deflate", "-H", ndjson});
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(parse_json(g.body)["accepted"].GetUint(), 2u) << g.body;
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.ndjson").size() >= 5; }, 30s))
      << dm->err();
  std::vector<std::string> got;
  for (const auto &o : read_ndjson(d / "out.ndjson")) got.push_back(str_field(o, "message"));
  EXPECT_EQ(got, (std::vector<std::string>{"first", "second", "third", "second", "third"}));
}

// The Adler-32 trailer is checked, and unlike gzip's padding nothing at all may follow the last
// stream (zlib's rules): each a 400 naming deflate, counted, nothing stored.
TEST(HttpInputDeflate, AWrongAdlerACutStreamOrBytesAfterItGet400AndNothingIsStored) {
  TempDir d;
  const int port = free_port();
  Devmesh dm(d, "engine",
             ingest_yaml(port, "", "    - {name: stdout, path: " + d / "out.ndjson" + "}\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const Deflated body = deflate_with_gzip(d, kTwoRecords);
  ASSERT_GT(body.zlib.size(), 6u);
  std::string bad_adler = body.zlib;
  bad_adler.back() = static_cast<char>(bad_adler.back() ^ 1);
  const std::string cases[] = {bad_adler, body.zlib.substr(0, body.zlib.size() - 2),
                               body.zlib + std::string(1, '\0'), body.zlib + "garbage"};
  for (const std::string &c : cases) {
    write_file(d / "bad", c);
    auto r = curl_post(d, base + "/ingest/logs", d / "bad", {"-H", "Content-Encoding: deflate"});
    EXPECT_EQ(r.status, 400) << r.body;
    EXPECT_NE(r.body.find("corrupt compressed body (Content-Encoding: deflate)"), std::string::npos)
        << r.body;
  }
  std::string m;
  ASSERT_EQ(http_get(base + "/metrics", &m, d.path()), 200);
  EXPECT_EQ(metric_value(m, "devmesh_http_requests_total", "status=\"400\""), 4) << m;
  EXPECT_EQ(metric_value(m, "devmesh_http_records_accepted_total", ""), 0) << m;
}

// A small zlib stream of 64 MiB of zeros: 413 naming max_body, counted, and the engine never
// holds much more than max_body (16 MiB by default) for it.
TEST(HttpInputDeflate, AZlibBombGets413NamingMaxBodyAndMemoryStaysBounded) {
  TempDir d;
  const int port = free_port();
  Devmesh dm(d, "engine", ingest_yaml(port, "", "    - {name: 'null'}\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  ASSERT_EQ(
      run({"/bin/sh", "-c", "head -c 67108864 /dev/zero | gzip -n -1 > " + d / "z.gz"}, d.path()),
      0);
  const std::string gz = read_file(d / "z.gz");
  ASSERT_GT(gz.size(), 18u);
  // The deflate data in a zlib wrapper; the Adler-32 of n zeros is (n mod 65521) << 16 | 1.
  const uint32_t sum = ((67108864u % 65521u) << 16) | 1u;
  std::string zlib = std::string("\x78\x01", 2) + gz.substr(10, gz.size() - 18);
  for (int shift : {24, 16, 8, 0}) zlib += static_cast<char>((sum >> shift) & 0xff);
  write_file(d / "bomb.zlib", zlib);
  auto r =
      curl_post(d, base + "/ingest/logs", d / "bomb.zlib", {"-H", "Content-Encoding: deflate"});
  EXPECT_EQ(r.status, 413) << r.body;
  EXPECT_NE(r.body.find("decompressed body larger than max_body (16777216 bytes)"),
            std::string::npos)
      << r.body;
  EXPECT_LT(vm_hwm_kib(dm->pid()), kBombRssBoundKib);
  std::string m;
  ASSERT_EQ(http_get(base + "/metrics", &m, d.path()), 200);
  EXPECT_EQ(metric_value(m, "devmesh_http_requests_total", "status=\"413\""), 1) << m;
  // Still serving.
  write_file(d / "good.json", R"({"logs":[{"message":"after"}]})");
  EXPECT_EQ(curl_post(d, base + "/ingest/logs", d / "good.json", {}).status, 200);
}

// ---- the 503 at shutdown ------------------------------------------------------------------------

// The http input promises "503 + Retry-After when the queues are full or on shutdown". A request
// held for delivery (ack: delivered, the receiver not answering) when SIGTERM arrives; during the
// grace period a new request gets 503 with Retry-After (the client comes back to the restarted
// engine); the held one still gets its 200 once the receiver answers, and the engine exits 0.
TEST(HttpInputShutdown, ARequestDuringTheGracePeriodGets503WithRetryAfterAndAHeldOneItsReply) {
  TempDir d;
  std::atomic<bool> release{false};
  TestReceiver receiver([&](const TestReceiver::Request &, int) {
    wait_until([&] { return release.load(); }, 120s);
    TestReceiver::Response r;
    r.body = R"({"accepted":1})";
    return r;
  });
  ASSERT_GT(receiver.port(), 0);
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  Devmesh dm(d, "engine",
             ingest_yaml(port, ", ack: delivered, retry_after: 7s",
                         "    - {name: http_forward, url: '" + receiver.url() + "'}\n",
                         "  grace: 120s\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();

  HttpResult held;
  std::thread client([&] {
    held = libcurl_post(base + "/ingest/logs", R"({"logs":[{"message":"held"}]})",
                        {"Content-Type: application/json"});
  });
  // Held: the record reached the receiver, which has not answered.
  const bool arrived = wait_until([&] { return receiver.request_count() >= 1; }, 30s);
  if (!arrived) release = true;
  ASSERT_TRUE(arrived) << dm->err();

  dm->kill(SIGTERM);
  ASSERT_TRUE(wait_until([&] { return dm->err().find("shutting down") != std::string::npos; }, 30s))
      << dm->err();
  write_file(d / "late.json", R"({"logs":[{"message":"late"}]})");
  const HttpResult late = curl_post(d, base + "/ingest/logs", d / "late.json",
                                    {"-H", "Content-Type: application/json"});
  release = true;
  client.join();

  EXPECT_EQ(late.status, 503) << late.body;
  EXPECT_EQ(late.header("Retry-After"), "7") << late.headers;
  EXPECT_NE(late.body.find("shutting down"), std::string::npos) << late.body;
  EXPECT_EQ(held.status, 200) << held.body << dm->err();
  EXPECT_NE(held.body.find("\"accepted\":1"), std::string::npos) << held.body;
  ASSERT_EQ(dm->wait_exit(60s), 0) << dm->err();
  // The late record never reached the receiver: only the held one was forwarded.
  const auto reqs = receiver.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].body.find("late"), std::string::npos) << reqs[0].body;
}

// The grace period ends with the record still undelivered (the receiver never answers): the
// engine leaves, and the held client must not have been told 200 for a record not delivered.
TEST(HttpInputShutdown, AHeldRequestTheGracePeriodCannotFinishGetsNo2xx) {
  TempDir d;
  std::atomic<bool> release{false};
  TestReceiver receiver([&](const TestReceiver::Request &, int) {
    wait_until([&] { return release.load(); }, 120s);
    return TestReceiver::Response{};
  });
  const int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  Devmesh dm(
      d, "engine",
      ingest_yaml(port, ", ack: delivered",
                  "    - {name: http_forward, url: '" + receiver.url() + "'}\n", "  grace: 1s\n"));
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  HttpResult held;
  std::thread client([&] {
    held = libcurl_post(base + "/ingest/logs", R"({"logs":[{"message":"held"}]})",
                        {"Content-Type: application/json"});
  });
  const bool arrived = wait_until([&] { return receiver.request_count() >= 1; }, 30s);
  if (arrived) dm->kill(SIGTERM);
  const int code = dm->wait_exit(60s);
  client.join();
  release = true;
  ASSERT_TRUE(arrived) << dm->err();
  EXPECT_EQ(code, 0) << dm->err();
  EXPECT_NE(dm->err().find("grace period over with 1 records undelivered"), std::string::npos)
      << dm->err();
  EXPECT_TRUE(held.status < 200 || held.status > 299) << held.status << " " << held.body;
  std::cout << "  the held client got: " << (held.status ? std::to_string(held.status) : "no reply")
            << "\n";
}

}  // namespace
