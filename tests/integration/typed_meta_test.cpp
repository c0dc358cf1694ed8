// Typed meta values end to end through the real binary: a record posted to the http input with
// meta of every JSON type is stored by sqlite and mariadb, printed by stdout, forwarded by
// http_forward to another devmesh and returned by the query output with that same meta_json,
// byte for byte (numbers as written, nothing turned into a string).
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <cstdio>
#include <string>
#include <thread>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mariadb_pipeline.h"
#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// Compact JSON, as the stores write it: every type, numbers whose text a parse into double
// would change (1.50, a 23-digit integer, -1.5e3), escapes, nesting, and the string "123"
// beside the number 123.
const std::string kMeta =
    R"({"pid":123,"ok":true,"f":1.5,"n":null,"nested":{"a":1},"arr":[1,"x"],"s":"str",)"
    R"("no":false,"f2":1.50,"big":12345678901234567890123,"e":-1.5e3,"neg":-7,)"
    R"("pid_text":"123","esc":"q\"\\é\n","deep":{"a":{"b":[{"c":null},[],{}]}}})";

// With a timestamp, so the input adds no timestamp_source to the meta.
std::string body(const std::string &message) {
  return R"({"logs":[{"timestamp":"2025-11-28T19:55:40.521872Z","service":"typed",)"
         R"("message":")" +
         message + R"(","meta_json":)" + kMeta + "}]}";
}

std::string listen_on(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// An http input (ack: delivered: its 200 means every output has the record) and /health.
std::string http_input(int port) {
  return "  inputs:\n    - {name: http, listen: '" + listen_on(port) + "', ack: delivered}\n";
}

bool health_answers(int port) {
  return wait_until([&] { return http("http://" + listen_on(port) + "/health").status != 0; }, 20s);
}

HttpResponse post(int port, const std::string &message) {
  return http("http://" + listen_on(port) + "/ingest/logs", {"Content-Type: application/json"},
              "POST", body(message));
}

std::string hex_of(const std::string &s) {
  std::string out;
  char b[3];
  for (unsigned char c : s) std::snprintf(b, sizeof b, "%02X", c), out += b;
  return out;
}

// The meta_json object of a JSON document's text as it appears there, or "" (the encoders add
// no whitespace, so the stored text is a substring when it came out unchanged).
bool holds_meta(const std::string &json) {
  return json.find("\"meta_json\":" + kMeta) != std::string::npos;
}

TEST(TypedMeta, HttpToSqliteStoresThePostedMetaAndTheQueryOutputReturnsItTyped) {
  TempDir d;
  const int port = free_port(), query_port = free_port();
  const std::string db = d / "devmesh.db";
  auto e =
      start_engine(d, plugins_head("  http_listen: " + listen_on(port) + "\n") + http_input(port) +
                          "  outputs:\n    - {name: sqlite, path: " + db +
                          "}\n    - {name: query, match: none, listen: " + listen_on(query_port) +
                          ", path: " + db + "}\n");
  ASSERT_TRUE(health_answers(port)) << e->err();
  const HttpResponse r = post(port, "to sqlite");
  ASSERT_EQ(r.status, 200) << r.body << e->err();
  SqliteDb s(db);
  EXPECT_EQ(s.value("SELECT meta_json FROM log_events WHERE message = 'to sqlite'"), kMeta);
  EXPECT_EQ(s.value("SELECT json_type(meta_json, '$.pid') || json_type(meta_json, '$.n') || "
                    "json_type(meta_json, '$.nested') || json_type(meta_json, '$.pid_text') "
                    "FROM log_events"),
            "integernullobjecttext");
  // /query/logs re-reads the stored text: typed values come back typed, numbers as written.
  const HttpResponse q = http("http://" + listen_on(query_port) + "/query/logs?service=typed");
  ASSERT_EQ(q.status, 200) << q.body;
  EXPECT_TRUE(holds_meta(q.body)) << q.body;
  rapidjson::Document doc;
  doc.Parse(q.body.c_str());
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << q.body;
  const rapidjson::Value &meta = doc[0]["meta_json"];
  EXPECT_TRUE(meta["pid"].IsInt());
  EXPECT_TRUE(meta["ok"].IsTrue());
  EXPECT_TRUE(meta["n"].IsNull());
  EXPECT_TRUE(meta["nested"].IsObject());
  EXPECT_TRUE(meta["pid_text"].IsString());
}

// The first Server-Sent Event's data from url, or "" after 30 s.
std::string first_event(const std::string &url) {
  struct Ctx {
    std::string raw, event;
  } ctx;
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char *p, size_t s, size_t n, void *u) {
        auto *x = static_cast<Ctx *>(u);
        x->raw.append(p, s * n);
        for (size_t at; (at = x->raw.find("\n\n")) != std::string::npos;) {
          const std::string ev = x->raw.substr(0, at);
          x->raw.erase(0, at + 2);
          // The data line of the first data event (an "id: " line comes before it).
          const size_t data = ev.rfind("data: ", 0) == 0 ? 0 : ev.find("\ndata: ");
          if (data != std::string::npos) {
            x->event = ev.substr(data == 0 ? 6 : data + 7);
            return size_t{0};  // ends the transfer
          }
        }
        return s * n;
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
  curl_easy_perform(c);
  curl_easy_cleanup(c);
  return ctx.event;
}

TEST(TypedMeta, TheQueryOutputsTailStreamsThePostedMeta) {
  TempDir d;
  const int port = free_port(), query_port = free_port();
  auto e =
      start_engine(d, plugins_head("  http_listen: " + listen_on(port) + "\n") + http_input(port) +
                          "  outputs:\n    - {name: query, listen: " + listen_on(query_port) +
                          ", path: none.db, flush_interval: 20ms}\n");
  ASSERT_TRUE(health_answers(port)) << e->err();
  std::atomic<bool> got{false};
  std::string event;
  std::thread reader([&] {
    event = first_event("http://" + listen_on(query_port) + "/tail?service=typed");
    got = true;
  });
  // A record posted before the subscriber is there is not streamed: post until one is seen.
  EXPECT_TRUE(wait_until(
      [&] {
        post(port, "to tail");
        return got.load();
      },
      30s));
  reader.join();
  EXPECT_TRUE(holds_meta(event)) << event;
}

TEST(TypedMeta, HttpToStdoutPrintsThePostedMeta) {
  TempDir d;
  const int port = free_port();
  auto e =
      start_engine(d, plugins_head("  http_listen: " + listen_on(port) + "\n") + http_input(port) +
                          "  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n");
  ASSERT_TRUE(health_answers(port)) << e->err();
  const HttpResponse r = post(port, "to stdout");
  ASSERT_EQ(r.status, 200) << r.body << e->err();
  const auto lines = read_lines(d / "out.ndjson");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(holds_meta(lines[0])) << lines[0];
}

TEST(TypedMeta, ANestedValueWithInvalidUtf8IsKeptWithReplacementCharacters) {
  TempDir d;
  const int port = free_port();
  auto e =
      start_engine(d, plugins_head("  http_listen: " + listen_on(port) + "\n") + http_input(port) +
                          "  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n");
  ASSERT_TRUE(health_answers(port)) << e->err();
  // A JSON meta value is valid UTF-8 (meta_set refuses anything else): the input cleans the
  // strings and keys inside it as the outputs clean a string value.
  const HttpResponse r =
      http("http://" + listen_on(port) + "/ingest/logs", {"Content-Type: application/json"}, "POST",
           "{\"logs\":[{\"timestamp\":\"2025-11-28T19:55:40Z\",\"message\":\"m\",\"meta_json\":"
           "{\"nested\":{\"k\xff\":[\"a\xc3\"]}}}]}");
  ASSERT_EQ(r.status, 200) << r.body << e->err();
  EXPECT_NE(r.body.find("\"accepted\":1"), std::string::npos) << r.body;
  const auto lines = read_lines(d / "out.ndjson");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"meta_json\":{\"nested\":{\"k\xEF\xBF\xBD\":[\"a\xEF\xBF\xBD\"]}}"),
            std::string::npos)
      << lines[0];
}

TEST(TypedMeta, HttpForwardToAnotherDevmeshKeepsThePostedMetaIntoItsSqlite) {
  TempDir d;
  const int side_port = free_port(), agg_port = free_port();
  const std::string db = d / "agg.db";
  auto agg = start_engine(d,
                          plugins_head("  http_listen: " + listen_on(agg_port) + "\n") +
                              http_input(agg_port) +
                              "  outputs:\n    - {name: sqlite, path: " + db + "}\n",
                          "agg");
  ASSERT_TRUE(health_answers(agg_port)) << agg->err();
  // The sidecar keeps its own copy too: the meta is unchanged before the hop as well.
  auto side = start_engine(
      d,
      plugins_head("  http_listen: " + listen_on(side_port) + "\n") + http_input(side_port) +
          "  outputs:\n    - {name: stdout, path: " + d / "side.ndjson" +
          "}\n    - {name: http_forward, url: 'http://" + listen_on(agg_port) + "/ingest/logs'}\n",
      "side");
  ASSERT_TRUE(health_answers(side_port)) << side->err();
  // ack: delivered at both ends: the sidecar's 200 comes once the aggregator stored the record.
  const HttpResponse r = post(side_port, "forwarded");
  ASSERT_EQ(r.status, 200) << r.body << side->err() << agg->err();
  const auto lines = read_lines(d / "side.ndjson");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(holds_meta(lines[0])) << lines[0];
  SqliteDb s(db);
  EXPECT_EQ(s.value("SELECT meta_json FROM log_events WHERE message = 'forwarded'"), kMeta);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 1);
}

// The id the http input derives for a record with a timestamp, service "typed", message m and
// one meta entry of type `type` (dm_meta_type) (see derive_event_id): a string entry hashes as
// releases before typed meta hashed every entry.
std::string derived_id(const std::string &m, const std::string &key, const std::string &value,
                       uint64_t type) {
  std::string k;
  auto u64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) k += static_cast<char>(v >> (8 * i));
  };
  auto field = [&](const std::string &f) {
    for (int i = 0; i < 4; ++i) k += static_cast<char>(static_cast<uint32_t>(f.size()) >> (8 * i));
    k += f;
  };
  u64(1764359740521872000ULL);
  k += static_cast<char>(2);   // INFO
  k += static_cast<char>(-1);  // no priority
  for (const char *f : {"http", "typed", "unknown", "", "", "", ""}) field(f);
  field(m);
  u64(1);
  u64(XXH3_64bits_withSeed(
      value.data(), value.size(),
      XXH3_64bits(key.data(), key.size()) + key.size() + type * 0x9E3779B97F4A7C15ULL));
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(k.data(), k.size()));
  return hex_of(std::string(reinterpret_cast<const char *>(c.digest), 16));
}

TEST(TypedMeta, TheString123AndTheNumber123AreTwoRecordsAndAStringKeepsItsOlderId) {
  TempDir d;
  const int port = free_port();
  const std::string db = d / "devmesh.db";
  auto e =
      start_engine(d, plugins_head("  http_listen: " + listen_on(port) + "\n") + http_input(port) +
                          "  outputs:\n    - {name: sqlite, path: " + db + "}\n");
  ASSERT_TRUE(health_answers(port)) << e->err();
  const std::string rec = R"({"timestamp":"2025-11-28T19:55:40.521872Z","service":"typed",)"
                          R"("message":"m","meta_json":{"pid":)";
  for (int round = 0; round < 2; ++round) {  // the second time: the same two records again
    const HttpResponse r =
        http("http://" + listen_on(port) + "/ingest/logs", {"Content-Type: application/json"},
             "POST", R"({"logs":[)" + rec + R"("123"}},)" + rec + "123}}]}");
    ASSERT_EQ(r.status, 200) << r.body << e->err();
  }
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 2);
  EXPECT_EQ(s.value("SELECT hex(event_id) FROM log_events WHERE meta_json = '{\"pid\":\"123\"}'"),
            derived_id("m", "pid", "123", 0 /* DM_META_STRING */));
  EXPECT_EQ(s.value("SELECT hex(event_id) FROM log_events WHERE meta_json = '{\"pid\":123}'"),
            derived_id("m", "pid", "123", 1 /* DM_META_INT */));
}

class TypedMetaMariaDb : public MariaDbPipelineTest {};

TEST_F(TypedMetaMariaDb, HttpToMariaDbStoresThePostedMeta) {
  const int port = free_port();
  auto e = engine(yaml("    - {name: http, listen: '" + listen_on(port) + "', ack: delivered}\n",
                       "", "  http_listen: " + listen_on(port) + "\n"));
  ASSERT_TRUE(health_answers(port)) << e->err();
  const HttpResponse r = post(port, "to mariadb");
  ASSERT_EQ(r.status, 200) << r.body << e->err();
  // As hex: the client would escape the backslashes and the newline of the text.
  EXPECT_EQ(db_->value("SELECT HEX(meta_json) FROM log_events WHERE message = 'to mariadb'"),
            hex_of(kMeta));
  // MariaDB reads it as JSON of those types.
  EXPECT_EQ(db_->value("SELECT JSON_TYPE(JSON_EXTRACT(meta_json, '$.pid_text')) FROM log_events"),
            "STRING");
  EXPECT_EQ(db_->value("SELECT JSON_EXTRACT(meta_json, '$.pid') + 1 FROM log_events"), "124");
  EXPECT_EQ(db_->value("SELECT JSON_LENGTH(meta_json, '$.arr') FROM log_events"), "2");
}

}  // namespace
