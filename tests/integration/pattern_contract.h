// The patterns part of the query API's contract, written once and run against every store
// backend (query_patterns_test.cpp: SQLite; a MariaDB backend instantiates it the same way):
// pattern_id in /query/logs rows and as its filter, GET /query/patterns (the window, every
// filter, new=1, the order, the sample), GET /query/patterns/{id} (per-minute counts), every
// bad parameter, and a store made before patterns (no column, no table) answering empty lists.
//
// A backend is a type with static members:
//   start(), stop()     fill a store with pattern_fixture_rows() and pattern_fixture_table()
//                       (the rows' pattern_id as the store keeps it: a 64-bit id stored signed)
//                       and start a query engine over it
//   base()              "http://127.0.0.1:PORT" of that engine
//   legacy_base()       a query engine over a table as a release before patterns made it (no
//                       pattern_id column, no patterns table) holding kLegacyRows rows
#pragma once

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store_test_support.h"
#include "timestamp.hpp"

namespace devmesh::test {

// The fixture's patterns. P1's id has the top bit set (stored negative), P5's sorts before P1's
// as 16 hex digits but after it as a signed number: the order of ties is the hex one.
inline constexpr uint64_t kP1 = 0x8000000000000001ull;  // api "GET <*> took <*> ms"
inline constexpr uint64_t kP2 = 0x00000000000000a2ull;  // api "user <*> logged in"
inline constexpr uint64_t kP3 = 0xfedcba9876543210ull;  // db "slow query <*>", new
inline constexpr uint64_t kP4 = 0x0123456789abcdefull;  // db, template not stored yet, new
inline constexpr uint64_t kP5 = 0x1111111111111111ull;  // api "cache miss <*>", new
inline constexpr uint64_t kP6 = 0x6666666666666666ull;  // api "old pattern <*>", none in window
inline constexpr int kLegacyRows = 20;

inline std::string hex_id(uint64_t id) {
  static const char digits[] = "0123456789abcdef";
  std::string s(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) s[static_cast<size_t>(i)] = digits[id & 15];
  return s;
}

// 2025-11-28T00:00:00Z: the window under test is this hour, [B, B + 1h).
inline int64_t pattern_base_ns() {
  int64_t ns = 0;
  parse_rfc3339("2025-11-28T00:00:00Z", ns);
  return ns;
}
inline constexpr int64_t kSecondNs = 1000000000;
inline constexpr int64_t kMinuteNs = 60 * kSecondNs;
inline constexpr int64_t kDayNs = 24 * 60 * kMinuteNs;

struct PatternFixtureRow {
  int64_t timestamp_ns;
  std::string service, host, level, message;
  std::optional<uint64_t> pattern_id;
};

// The rows (source "fixture", no trace, span, event type, error code or meta):
//   P1: 60 rows, one a minute at B + i min + 10 s (i = 0..59), host h1 for even i, h2 for odd,
//       ERROR for i % 10 == 0 else INFO; and 5 rows a day before (B - 1 d + k s), h1, INFO
//   P2: 30 rows at B + 2i min + 20 s (i = 0..29), h1, INFO; and 1 row at B - 2 d
//   P3: 6 rows, db, h2, WARN: 3 in minute 0 (B + 1, 2, 3 s), 1 in minute 1, 2 in minute 5
//   P4: 4 rows, db, h1, ERROR, in minute 10 (B + 10 min + k s)
//   P5: 5 rows at B + (30 + i) min + 40 s (i = 0..4), api, h1, WARN
//   P6: 3 rows a day before (B - 1 d + 100 + k s), api, h1, INFO
//   no pattern: 10 rows at B + i min + 50 s, service kernel, h1, INFO
inline std::vector<PatternFixtureRow> pattern_fixture_rows() {
  const int64_t b = pattern_base_ns();
  std::vector<PatternFixtureRow> rows;
  for (int i = 0; i < 60; ++i)
    rows.push_back({b + i * kMinuteNs + 10 * kSecondNs, "api", i % 2 ? "h2" : "h1",
                    i % 10 ? "INFO" : "ERROR", "GET /item/" + std::to_string(i) + " took 5 ms",
                    kP1});
  for (int k = 0; k < 5; ++k)
    rows.push_back({b - kDayNs + k * kSecondNs, "api", "h1", "INFO", "GET /old took 1 ms", kP1});
  for (int i = 0; i < 30; ++i)
    rows.push_back({b + 2 * i * kMinuteNs + 20 * kSecondNs, "api", "h1", "INFO",
                    "user u" + std::to_string(i) + " logged in", kP2});
  rows.push_back({b - 2 * kDayNs, "api", "h1", "INFO", "user first logged in", kP2});
  for (int64_t at : {1, 2, 3, 61, 5 * 60 + 1, 5 * 60 + 2})
    rows.push_back(
        {b + at * kSecondNs, "db", "h2", "WARN", "slow query " + std::to_string(at), kP3});
  for (int k = 0; k < 4; ++k)
    rows.push_back({b + 10 * kMinuteNs + k * kSecondNs, "db", "h1", "ERROR",
                    "disk error " + std::to_string(k), kP4});
  for (int i = 0; i < 5; ++i)
    rows.push_back({b + (30 + i) * kMinuteNs + 40 * kSecondNs, "api", "h1", "WARN",
                    "cache miss k" + std::to_string(i), kP5});
  for (int k = 0; k < 3; ++k)
    rows.push_back({b - kDayNs + (100 + k) * kSecondNs, "api", "h1", "INFO",
                    "old pattern " + std::to_string(k), kP6});
  for (int i = 0; i < 10; ++i)
    rows.push_back({b + i * kMinuteNs + 50 * kSecondNs, "kernel", "h1", "INFO",
                    "kernel line " + std::to_string(i), std::nullopt});
  return rows;
}

struct PatternFixturePattern {
  uint64_t id;
  std::string service;
  std::optional<std::string> template_text;
  int64_t first_seen_ns, last_seen_ns, count;
};

// The patterns table: one row per pattern, consistent with the rows above.
inline std::vector<PatternFixturePattern> pattern_fixture_table() {
  const int64_t b = pattern_base_ns();
  return {
      {kP1, "api", "GET <*> took <*> ms", b - kDayNs, b + 59 * kMinuteNs + 10 * kSecondNs, 65},
      {kP2, "api", "user <*> logged in", b - 2 * kDayNs, b + 58 * kMinuteNs + 20 * kSecondNs, 31},
      {kP3, "db", "slow query <*>", b + kSecondNs, b + 302 * kSecondNs, 6},
      {kP4, "db", std::nullopt, b + 10 * kMinuteNs, b + 10 * kMinuteNs + 3 * kSecondNs, 4},
      {kP5, "api", "cache miss <*>", b + 30 * kMinuteNs + 40 * kSecondNs,
       b + 34 * kMinuteNs + 40 * kSecondNs, 5},
      {kP6, "api", "old pattern <*>", b - kDayNs + 100 * kSecondNs, b - kDayNs + 102 * kSecondNs,
       3},
  };
}

template <class Backend>
class PatternContract : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { Backend::start(); }
  static void TearDownTestSuite() { Backend::stop(); }

  // The hour under test, as parameters.
  static std::string window() {
    return "start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T00:59:59.999Z";
  }
  static rapidjson::Document get(const std::string &base, const std::string &path_query,
                                 long want_status = 200) {
    HttpResponse r = http(base + path_query);
    EXPECT_EQ(r.status, want_status) << path_query << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/json") << path_query;
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    EXPECT_FALSE(doc.HasParseError()) << r.body;
    return doc;
  }
  static rapidjson::Document patterns(const std::string &query) {
    return get(Backend::base(), "/query/patterns?" + query);
  }
  // The ids of /query/patterns?<query>, in the answer's order, with their counts.
  static std::vector<std::pair<std::string, int64_t>> ids(const std::string &query) {
    auto doc = patterns(query);
    std::vector<std::pair<std::string, int64_t>> out;
    if (!doc.IsObject() || !doc.HasMember("patterns") || !doc["patterns"].IsArray()) {
      ADD_FAILURE() << query << ": no patterns array";
      return out;
    }
    for (auto &p : doc["patterns"].GetArray())
      out.emplace_back(p["id"].GetString(), p["count"].GetInt64());
    return out;
  }
  static std::vector<std::pair<std::string, int64_t>> want(
      std::initializer_list<std::pair<uint64_t, int64_t>> l) {
    std::vector<std::pair<std::string, int64_t>> out;
    for (auto [id, n] : l) out.emplace_back(hex_id(id), n);
    return out;
  }
  static rapidjson::Document logs(const std::string &base, const std::string &query) {
    return get(base, "/query/logs?" + query);
  }
};

TYPED_TEST_SUITE_P(PatternContract);

TYPED_TEST_P(PatternContract, TopPatternsOfAWindowComeByCountWithTheirTableRowAndASample) {
  auto doc = this->patterns(this->window());
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(std::string(doc["start_time"].GetString()), "2025-11-28T00:00:00.000000");
  EXPECT_EQ(std::string(doc["end_time"].GetString()), "2025-11-28T00:59:59.999000");
  ASSERT_TRUE(doc["patterns"].IsArray());
  ASSERT_EQ(doc["patterns"].Size(), 5u) << "P6 has no row in the window";
  const auto &p1 = doc["patterns"][0];
  EXPECT_EQ(std::string(p1["id"].GetString()), hex_id(kP1));
  EXPECT_EQ(std::string(p1["service"].GetString()), "api");
  EXPECT_EQ(std::string(p1["template"].GetString()), "GET <*> took <*> ms");
  EXPECT_EQ(p1["count"].GetInt64(), 60);
  EXPECT_EQ(std::string(p1["first"].GetString()), "2025-11-28T00:00:10.000000");
  EXPECT_EQ(std::string(p1["last"].GetString()), "2025-11-28T00:59:10.000000");
  EXPECT_EQ(std::string(p1["first_seen"].GetString()), "2025-11-27T00:00:00.000000");
  EXPECT_EQ(std::string(p1["last_seen"].GetString()), "2025-11-28T00:59:10.000000");
  EXPECT_EQ(p1["total_count"].GetInt64(), 65);
  // The sample: the newest row of the pattern in the window, as a /query/logs row.
  const auto &s = p1["sample"];
  ASSERT_TRUE(s.IsObject());
  for (const char *k :
       {"id", "timestamp", "source", "service", "host", "level", "trace_id", "span_id",
        "event_type", "error_code", "message", "meta_json", "pattern_id"})
    EXPECT_TRUE(s.HasMember(k)) << k;
  EXPECT_EQ(std::string(s["message"].GetString()), "GET /item/59 took 5 ms");
  EXPECT_EQ(std::string(s["timestamp"].GetString()), "2025-11-28T00:59:10.000000");
  EXPECT_EQ(std::string(s["host"].GetString()), "h2");
  EXPECT_EQ(std::string(s["pattern_id"].GetString()), hex_id(kP1));
  // A pattern whose template has not been stored yet: template null, the rest as the others.
  const auto &p4 = doc["patterns"][4];
  EXPECT_EQ(std::string(p4["id"].GetString()), hex_id(kP4));
  EXPECT_TRUE(p4["template"].IsNull());
  EXPECT_EQ(p4["count"].GetInt64(), 4);
  EXPECT_EQ(std::string(p4["sample"]["message"].GetString()), "disk error 3");
  EXPECT_EQ(this->ids(this->window()),
            this->want({{kP1, 60}, {kP2, 30}, {kP3, 6}, {kP5, 5}, {kP4, 4}}));
}

TYPED_TEST_P(PatternContract, EachFilterCountsOnlyItsRecordsAndNewKeepsPatternsFirstSeenInIt) {
  const std::string w = this->window();
  EXPECT_EQ(this->ids(w + "&service=api"), this->want({{kP1, 60}, {kP2, 30}, {kP5, 5}}));
  EXPECT_EQ(this->ids(w + "&service=db"), this->want({{kP3, 6}, {kP4, 4}}));
  EXPECT_EQ(this->ids(w + "&service=kernel"), this->want({})) << "rows without a pattern";
  EXPECT_EQ(this->ids(w + "&host=h2"), this->want({{kP1, 30}, {kP3, 6}}));
  EXPECT_EQ(this->ids(w + "&level=error"), this->want({{kP1, 6}, {kP4, 4}}));
  EXPECT_EQ(this->ids(w + "&level=WARNING"), this->want({})) << "WARN and WARNING are distinct";
  // Ties by id as 16 hex digits: P1 (8000...) before P3 (fedc...).
  EXPECT_EQ(this->ids(w + "&min_level=WARNING"),
            this->want({{kP1, 6}, {kP3, 6}, {kP5, 5}, {kP4, 4}}));
  EXPECT_EQ(this->ids(w + "&new=1"), this->want({{kP3, 6}, {kP5, 5}, {kP4, 4}}));
  EXPECT_EQ(this->ids(w + "&new=true&service=db"), this->want({{kP3, 6}, {kP4, 4}}));
  EXPECT_EQ(this->ids(w + "&new=0"), this->ids(w));
  EXPECT_EQ(this->ids(w + "&limit=2"), this->want({{kP1, 60}, {kP2, 30}}));
  EXPECT_EQ(this->ids(w + "&new=1&limit=1"), this->want({{kP3, 6}}));
  EXPECT_EQ(this->ids(w + "&service=api&host=h1&min_level=ERROR"), this->want({{kP1, 6}}));
  // A narrower window; a tie between P5 (1111...) and P1 (8000..., negative when stored signed).
  EXPECT_EQ(this->ids("start_time=2025-11-28T00:30:00Z&end_time=2025-11-28T00:34:59Z"),
            this->want({{kP5, 5}, {kP1, 5}, {kP2, 3}}));
  EXPECT_EQ(this->ids("start_time=2025-11-28T00:30:00Z&end_time=2025-11-28T00:34:59Z&new=1"),
            this->want({{kP5, 5}}));
  // The day before: P1, P6 and P2's first row; none of them new there but P1's, P6's and P2's
  // first_seen fall in [B - 2 d, B).
  EXPECT_EQ(this->ids("start_time=2025-11-26T00:00:00Z&end_time=2025-11-27T23:59:59Z"),
            this->want({{kP1, 5}, {kP6, 3}, {kP2, 1}}));
  EXPECT_EQ(this->ids("start_time=2025-11-26T00:00:00Z&end_time=2025-11-27T23:59:59Z&new=1"),
            this->want({{kP1, 5}, {kP6, 3}, {kP2, 1}}));
  EXPECT_EQ(this->ids("start_time=2025-11-27T00:00:01Z&end_time=2025-11-27T23:59:59Z&new=1"),
            this->want({{kP6, 3}}));
  // The sample follows the filters: the newest of the pattern's rows that match them.
  EXPECT_EQ(this->ids(w + "&service=api&host=h1"), this->want({{kP2, 30}, {kP1, 30}, {kP5, 5}}));
  auto doc = this->patterns(w + "&service=api&host=h1");
  ASSERT_EQ(doc["patterns"].Size(), 3u);
  EXPECT_EQ(std::string(doc["patterns"][1]["sample"]["message"].GetString()),
            "GET /item/58 took 5 ms");
  doc = this->patterns(w + "&level=ERROR&limit=1");
  EXPECT_EQ(std::string(doc["patterns"][0]["sample"]["message"].GetString()),
            "GET /item/50 took 5 ms");
  EXPECT_EQ(std::string(doc["patterns"][0]["last"].GetString()), "2025-11-28T00:50:10.000000");
  EXPECT_EQ(this->ids("start_time=2020-01-01&end_time=2020-01-02"), this->want({}));
  // Without a window: the last hour, which holds none of the fixture's rows.
  EXPECT_EQ(this->ids(""), this->want({}));
}

TYPED_TEST_P(PatternContract, APatternsMinutesAddUpToItsCountInTheWindow) {
  auto doc = this->get(TypeParam::base(), "/query/patterns/" + hex_id(kP3) + "?" + this->window());
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(std::string(doc["id"].GetString()), hex_id(kP3));
  EXPECT_EQ(std::string(doc["service"].GetString()), "db");
  EXPECT_EQ(std::string(doc["template"].GetString()), "slow query <*>");
  EXPECT_EQ(doc["total_count"].GetInt64(), 6);
  EXPECT_EQ(std::string(doc["first_seen"].GetString()), "2025-11-28T00:00:01.000000");
  EXPECT_EQ(doc["count"].GetInt64(), 6);
  ASSERT_TRUE(doc["minutes"].IsArray());
  ASSERT_EQ(doc["minutes"].Size(), 3u);
  const std::pair<const char *, int64_t> minutes[] = {{"2025-11-28T00:00:00.000000", 3},
                                                      {"2025-11-28T00:01:00.000000", 1},
                                                      {"2025-11-28T00:05:00.000000", 2}};
  for (rapidjson::SizeType i = 0; i < 3; ++i) {
    EXPECT_EQ(std::string(doc["minutes"][i]["minute"].GetString()), minutes[i].first);
    EXPECT_EQ(doc["minutes"][i]["count"].GetInt64(), minutes[i].second);
  }
  // P1: one a minute, 60 in the hour; its rows of the day before are outside.
  doc = this->get(TypeParam::base(), "/query/patterns/" + hex_id(kP1) + "?" + this->window());
  EXPECT_EQ(doc["count"].GetInt64(), 60);
  EXPECT_EQ(doc["minutes"].Size(), 60u);
  int64_t sum = 0;
  for (auto &m : doc["minutes"].GetArray()) sum += m["count"].GetInt64();
  EXPECT_EQ(sum, 60);
  EXPECT_EQ(doc["total_count"].GetInt64(), 65);
  // Any case in the path; a window with none of its rows: found, no minutes.
  std::string upper = hex_id(kP3);
  for (char &c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  doc = this->get(TypeParam::base(), "/query/patterns/" + upper +
                                         "?start_time=2025-11-28T00:05:00Z"
                                         "&end_time=2025-11-28T00:05:59Z");
  EXPECT_EQ(doc["count"].GetInt64(), 2);
  doc = this->get(TypeParam::base(), "/query/patterns/" + hex_id(kP6) + "?" + this->window());
  EXPECT_EQ(doc["count"].GetInt64(), 0);
  EXPECT_EQ(doc["minutes"].Size(), 0u);
  EXPECT_EQ(std::string(doc["template"].GetString()), "old pattern <*>");
  doc = this->get(TypeParam::base(), "/query/patterns/" + hex_id(kP4) + "?" + this->window());
  EXPECT_TRUE(doc["template"].IsNull());
  // Unknown: 404.
  doc = this->get(TypeParam::base(), "/query/patterns/00000000000000ff?" + this->window(), 404);
  EXPECT_NE(std::string(doc["error"].GetString()).find("no pattern 00000000000000ff"),
            std::string::npos);
}

TYPED_TEST_P(PatternContract, LogRowsCarryTheirPatternIdAndPatternIdFiltersThem) {
  auto doc = this->logs(TypeParam::base(), "pattern_id=" + hex_id(kP3) + "&limit=100");
  ASSERT_TRUE(doc.IsArray());
  ASSERT_EQ(doc.Size(), 6u);
  for (auto &r : doc.GetArray()) EXPECT_EQ(std::string(r["pattern_id"].GetString()), hex_id(kP3));
  EXPECT_EQ(std::string(doc[0]["message"].GetString()), "slow query 302") << "newest first";
  EXPECT_EQ(this->logs(TypeParam::base(), "pattern_id=" + hex_id(kP1) + "&limit=1000").Size(), 65u);
  EXPECT_EQ(
      this->logs(TypeParam::base(), "pattern_id=" + hex_id(kP1) + "&limit=1000&" + this->window())
          .Size(),
      60u);
  EXPECT_EQ(this->logs(TypeParam::base(), "pattern_id=8000000000000001&host=h1&level=ERROR").Size(),
            6u);
  EXPECT_EQ(this->logs(TypeParam::base(), "pattern_id=FEDCBA9876543210").Size(), 6u) << "any case";
  EXPECT_EQ(this->logs(TypeParam::base(), "pattern_id=00000000000000ff").Size(), 0u);
  // Paging through one pattern with the cursor.
  std::string cursor;
  size_t seen = 0;
  for (int page = 0; page < 20; ++page) {
    HttpResponse r = http(TypeParam::base() + "/query/logs?pattern_id=" + hex_id(kP1) + "&limit=7" +
                          (cursor.empty() ? "" : "&cursor=" + cursor));
    rapidjson::Document d;
    d.Parse(r.body.c_str());
    ASSERT_TRUE(d.IsArray()) << r.body;
    seen += d.Size();
    cursor = r.headers["x-next-cursor"];
    if (cursor.empty()) break;
  }
  EXPECT_EQ(seen, 65u);
  // A row without a pattern: null.
  doc = this->logs(TypeParam::base(), "service=kernel&limit=1");
  ASSERT_EQ(doc.Size(), 1u);
  EXPECT_TRUE(doc[0]["pattern_id"].IsNull());
}

TYPED_TEST_P(PatternContract, EveryBadPatternParameterGets400NamingIt) {
  const std::pair<std::string, std::string> cases[] = {
      {"/query/logs?pattern_id=123", "bad parameter 'pattern_id': must be 16 hex digits"},
      {"/query/logs?pattern_id=0x23456789abcdef", "bad parameter 'pattern_id'"},
      {"/query/logs?pattern_id=0123456789abcdefa", "bad parameter 'pattern_id'"},
      {"/query/logs?pattern_id=g123456789abcdef", "bad parameter 'pattern_id'"},
      {"/query/logs?pattern_id=-123456789abcdef", "bad parameter 'pattern_id'"},
      {"/query/logs?pattern_id=" + url_encode("0123456789abcde "), "bad parameter 'pattern_id'"},
      {"/query/logs?pattern_id=1&pattern_id=2", "bad parameter 'pattern_id': given more than once"},
      {"/query/patterns?new=2", "bad parameter 'new': must be 0 or 1"},
      {"/query/patterns?new=yes", "bad parameter 'new'"},
      {"/query/patterns?limit=0", "bad parameter 'limit': must be an integer between 1 and 10000"},
      {"/query/patterns?limit=10001", "bad parameter 'limit'"},
      {"/query/patterns?limit=x", "bad parameter 'limit'"},
      {"/query/patterns?level=LOUD", "bad parameter 'level': must be one of DEBUG"},
      {"/query/patterns?min_level=7", "bad parameter 'min_level'"},
      {"/query/patterns?start_time=soon", "bad parameter 'start_time': must be an RFC 3339 time"},
      {"/query/patterns?end_time=2025-13-01", "bad parameter 'end_time'"},
      {"/query/patterns?start_time=2025-11-28T01:00:00Z&end_time=2025-11-28T00:00:00Z",
       "bad parameter 'end_time': is before start_time"},
      {"/query/patterns?start_time=2200-01-01", "bad parameter 'start_time': is after end_time"},
      {"/query/patterns?service=a&service=b", "bad parameter 'service': given more than once"},
      {"/query/patterns?pattern_id=" + hex_id(kP1),
       "unknown parameter 'pattern_id' (valid for /query/patterns: start_time, end_time, "
       "service, host, level, min_level, new, limit)"},
      {"/query/patterns/xyz", "bad pattern id 'xyz' in the path: must be 16 hex digits"},
      {"/query/patterns/", "bad pattern id '' in the path"},
      {"/query/patterns/0123456789abcde", "bad pattern id '0123456789abcde'"},
      {"/query/patterns/0123456789abcdef0", "bad pattern id"},
      {"/query/patterns/0123456789abcdef/minutes", "bad pattern id '0123456789abcdef/minutes'"},
      {"/query/patterns/" + hex_id(kP1) + "?end_time=x", "bad parameter 'end_time'"},
      {"/query/patterns/" + hex_id(kP1) + "?start_time=2025-11-28T01:00:00Z&end_time=2025-11-28",
       "bad parameter 'end_time': is before start_time"},
      {"/query/patterns/" + hex_id(kP1) + "?service=api",
       "unknown parameter 'service' (valid for /query/patterns/{id}: start_time, end_time)"},
  };
  for (const auto &[path_query, message] : cases) {
    HttpResponse r = http(TypeParam::base() + path_query);
    EXPECT_EQ(r.status, 400) << path_query << ": " << r.body;
    EXPECT_NE(r.body.find(message), std::string::npos) << path_query << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/json") << path_query;
  }
  // Injection attempts are values like any other: a 400 or an empty answer.
  for (std::string a : {"' OR '1'='1", "1; DROP TABLE log_patterns; --", "\" OR \"\"=\""}) {
    for (std::string p : {"service", "host"}) {
      HttpResponse r = http(TypeParam::base() + "/query/patterns?" + this->window() + "&" + p +
                            "=" + url_encode(a));
      EXPECT_EQ(r.status, 200) << p << "=" << a;
      EXPECT_NE(r.body.find("\"patterns\":[]"), std::string::npos) << p << "=" << a << r.body;
    }
    for (std::string p : {"level", "min_level", "new", "limit", "start_time", "end_time"})
      EXPECT_EQ(http(TypeParam::base() + "/query/patterns?" + p + "=" + url_encode(a)).status, 400)
          << p << "=" << a;
    EXPECT_EQ(http(TypeParam::base() + "/query/logs?pattern_id=" + url_encode(a)).status, 400);
    EXPECT_EQ(http(TypeParam::base() + "/query/patterns/" + url_encode(a)).status, 400);
  }
  EXPECT_EQ(this->ids(this->window()).size(), 5u) << "the store is unchanged";
}

TYPED_TEST_P(PatternContract, AStoreFromBeforePatternsAnswersEmptyListsAndServesItsRows) {
  const std::string base = TypeParam::legacy_base();
  auto doc = this->get(base, "/query/patterns?start_time=2000-01-01");
  ASSERT_TRUE(doc.IsObject());
  EXPECT_EQ(doc["patterns"].Size(), 0u);
  this->get(base, "/query/patterns/" + hex_id(kP1) + "?start_time=2000-01-01", 404);
  auto rows = this->logs(base, "limit=1000");
  ASSERT_TRUE(rows.IsArray());
  EXPECT_EQ(rows.Size(), static_cast<size_t>(kLegacyRows));
  for (auto &r : rows.GetArray()) EXPECT_TRUE(r["pattern_id"].IsNull());
  EXPECT_EQ(this->logs(base, "pattern_id=" + hex_id(kP1)).Size(), 0u);
  EXPECT_EQ(http(base + "/query/logs?pattern_id=zz").status, 400);
}

REGISTER_TYPED_TEST_SUITE_P(PatternContract,
                            TopPatternsOfAWindowComeByCountWithTheirTableRowAndASample,
                            EachFilterCountsOnlyItsRecordsAndNewKeepsPatternsFirstSeenInIt,
                            APatternsMinutesAddUpToItsCountInTheWindow,
                            LogRowsCarryTheirPatternIdAndPatternIdFiltersThem,
                            EveryBadPatternParameterGets400NamingIt,
                            AStoreFromBeforePatternsAnswersEmptyListsAndServesItsRows);

}  // namespace devmesh::test
