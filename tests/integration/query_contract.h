// The query API's contract, written once and run against every store backend (query_test.cpp:
// SQLite, query_mariadb_test.cpp: MariaDB): the prototype's answers, every filter, full text,
// ordering, cursors, bad parameters, SQL injection, stats, the histogram, /health and /info.
//
// A backend is a type with static members:
//   start(), stop()            fill the store with the rows below and start the query engine
//   base()                     "http://127.0.0.1:PORT"
//   row_count()                rows in log_events
//   add_fresh_rows()           20 rows of the last minutes: 15 'api' + 5 'db', 5 ERROR, source 's'
//   remove_fresh_rows()        deletes them again
//   collide_timestamps()       moves every row with id % 4 == 0 to 2025-11-28T00:00:00.5Z
//   secret()                   a credential that must never appear in /info ("" if none)
// The rows: kRows rows, row i at 2025-11-28T00:00:00.123456Z + i s, service i%3 of
// kServices, host i%2 of kHosts, level i%7 of kLevels, trace_id "trace-(i%10)" and span for
// i%5 == 0, error_code HTTP_500 for i%7 == 4, message "message number i" plus " OOM killer
// invoked" for i%50 == 0, meta_json {"i":"i"}.
#pragma once

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <cstdint>
#include <set>
#include <string>

#include "store_test_support.h"

namespace devmesh::test {

inline constexpr int kQueryRows = 350;
inline const char *const kQueryLevels[] = {"DEBUG", "INFO",     "WARN", "WARNING",
                                           "ERROR", "CRITICAL", "FATAL"};
inline const char *const kQueryServices[] = {"loki.service", "docker.service", "kernel"};
inline const char *const kQueryHosts[] = {"dev-services", "gpu-node"};

template <class Backend>
class QueryContract : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { Backend::start(); }
  static void TearDownTestSuite() { Backend::stop(); }

  static std::string base() { return Backend::base(); }
  // GET /query/logs?<query>: the rows (asserting 200 and JSON).
  static rapidjson::Document logs(const std::string &query, HttpResponse *resp = nullptr) {
    HttpResponse r = http(base() + "/query/logs?" + query);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    EXPECT_FALSE(doc.HasParseError()) << r.body;
    if (resp) *resp = r;
    return doc;
  }
  static size_t count(const std::string &query) {
    auto doc = logs(query);
    return doc.IsArray() ? doc.Size() : 0;
  }
  // Walks /query/logs?<query> page by page with the cursor; the ids seen, every one once.
  static std::set<int64_t> walk(const std::string &query, int *pages_out = nullptr) {
    std::set<int64_t> ids;
    std::string cursor;
    int pages = 0;
    do {
      HttpResponse r;
      auto doc = logs(query + (cursor.empty() ? "" : "&cursor=" + cursor), &r);
      if (!doc.IsArray()) break;
      for (auto &row : doc.GetArray())
        EXPECT_TRUE(ids.insert(row["id"].GetInt64()).second) << "repeated " << row["id"].GetInt64();
      cursor = r.headers["x-next-cursor"];
      if (++pages > 1000) break;
    } while (!cursor.empty());
    if (pages_out) *pages_out = pages;
    return ids;
  }
};

TYPED_TEST_SUITE_P(QueryContract);

TYPED_TEST_P(QueryContract, DefaultAnswerIsThePrototypesArrayNewestFirstWithAHundredRows) {
  auto doc = this->logs("");
  ASSERT_TRUE(doc.IsArray());
  ASSERT_EQ(doc.Size(), 100u);
  const auto &r = doc[0];
  for (const char *k : {"id", "timestamp", "source", "service", "host", "level", "trace_id",
                        "span_id", "event_type", "error_code", "message", "meta_json"})
    EXPECT_TRUE(r.HasMember(k)) << k;
  EXPECT_EQ(std::string(r["message"].GetString()),
            "message number " + std::to_string(kQueryRows - 1));
  EXPECT_EQ(std::string(r["timestamp"].GetString()), "2025-11-28T00:05:49.123456");
  EXPECT_TRUE(r["meta_json"].IsObject());
  EXPECT_EQ(std::string(r["meta_json"]["i"].GetString()), std::to_string(kQueryRows - 1));
  EXPECT_TRUE(r["trace_id"].IsNull());
  EXPECT_TRUE(r["error_code"].IsNull());
  EXPECT_EQ(std::string(doc[2]["error_code"].GetString()), "HTTP_500");  // 347 % 7 == 4
  for (rapidjson::SizeType i = 1; i < doc.Size(); ++i)
    EXPECT_GT(std::string(doc[i - 1]["timestamp"].GetString()),
              std::string(doc[i]["timestamp"].GetString()));
}

TYPED_TEST_P(QueryContract, EachFilterParameterSelectsExactlyItsRows) {
  const size_t all = kQueryRows;
  EXPECT_EQ(this->count("service=kernel&limit=10000"), 116u);  // i % 3 == 2 for i < 350
  EXPECT_EQ(this->count("host=gpu-node&limit=10000"), 175u);
  EXPECT_EQ(this->count("level=ERROR&limit=10000"), 50u);
  EXPECT_EQ(this->count("level=error&limit=10000"), 50u) << "level names are case-insensitive";
  EXPECT_EQ(this->count("level=WARN&limit=10000"), 50u) << "WARN and WARNING stay distinct";
  EXPECT_EQ(this->count("min_level=ERROR&limit=10000"), 150u);
  EXPECT_EQ(this->count("min_level=WARN&limit=10000"), 250u) << "WARNING ranks with WARN";
  EXPECT_EQ(this->count("trace_id=trace-5&limit=10000"), 35u);
  EXPECT_EQ(this->count("start_time=2025-11-28T00:01:00Z&limit=10000"), all - 60);
  EXPECT_EQ(this->count("end_time=2025-11-28T00:00:09.5Z&limit=10000"), 10u);
  EXPECT_EQ(this->count("start_time=2025-11-28T00:00:10Z&end_time=2025-11-28T00:00:19.9Z"), 10u);
  // Microsecond bounds: the row at 00:00:10.123456 is inside [.123456, .123456] only.
  EXPECT_EQ(
      this->count("start_time=2025-11-28T00:00:10.123456Z&end_time=2025-11-28T00:00:10.123456Z"),
      1u);
  EXPECT_EQ(this->count("start_time=2025-11-28T00:00:10.1234561Z&end_time=2025-11-28T00:00:10.9Z"),
            0u);
  EXPECT_EQ(this->count("start_time=1764288100&limit=10000"), all - 100)
      << "epoch seconds (2025-11-28T00:01:40Z)";
  EXPECT_EQ(this->count("start_time=2025-11-28T02:00:01%2B02:00&end_time=2025-11-28T00:00:01.5Z"),
            1u)
      << "offsets";
  EXPECT_EQ(this->count("start_time=2025-11-28&limit=10000"), all) << "dates";
  EXPECT_EQ(this->count("start_time=2025-11-29"), 0u) << "dates";
  EXPECT_EQ(this->count("limit=7"), 7u);
  EXPECT_EQ(this->count("service=kernel&host=gpu-node&min_level=CRITICAL&limit=10000"), 17u);
  EXPECT_EQ(this->count("service=&host=&limit=10000"), all) << "empty values mean any";
  EXPECT_EQ(this->count("service=nope"), 0u);
}

TYPED_TEST_P(QueryContract, FullTextQueryMatchesWordsAsOnePhrase) {
  auto doc = this->logs("q=OOM+killer&limit=100");
  ASSERT_EQ(doc.Size(), 7u);
  for (auto &r : doc.GetArray())
    EXPECT_NE(std::string(r["message"].GetString()).find("OOM killer"), std::string::npos);
  EXPECT_EQ(this->count("q=killer+OOM"), 0u) << "a phrase: word order matters";
  EXPECT_EQ(this->count("q=oom"), 7u) << "case-insensitive";
  EXPECT_EQ(this->count("q=OOM&service=kernel&limit=100"), 2u);  // i in {50, 200}
  // The stores' query syntaxes (FTS5, MariaDB boolean mode) are only words here.
  for (std::string q : {"OOM OR message", "\"OOM", "message:OOM", "OOM*", "NEAR(OOM killer)",
                        "OOM AND NOT killer", "^OOM", "{message}: OOM", "OOM -killer",
                        "+OOM +message", "(OOM killer)", "~OOM", "@3 OOM", "<OOM >killer"}) {
    HttpResponse r = http(this->base() + "/query/logs?q=" + url_encode(q));
    EXPECT_EQ(r.status, 200) << q << ": " << r.body;
  }
  EXPECT_EQ(this->count("q=" + url_encode("OOM -killer")), 7u) << "no operator: OOM killer";
  EXPECT_EQ(this->count("q=" + url_encode("OOM-killer")), 7u) << "punctuation separates words";
  EXPECT_EQ(this->count("q=number+0+OOM"), 1u) << "short words count, in their place";
  EXPECT_EQ(this->count("q=number+1+OOM"), 0u);
  EXPECT_EQ(this->count("q=OO"), 0u) << "whole words only";
  EXPECT_EQ(this->count("q=" + url_encode("\"OOM killer\"")), 7u);
  // A narrow window (one service, at most a day) gives the same answers.
  const std::string window = "&start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T12:00:00Z";
  EXPECT_EQ(this->count("q=OOM+killer&service=kernel" + window), 2u);
  EXPECT_EQ(this->count("q=oom&service=loki.service" + window), 3u);  // i in {0, 150, 300}
  EXPECT_EQ(this->count("q=killer+OOM&service=kernel" + window), 0u);
  EXPECT_EQ(this->count("q=OO&service=kernel" + window), 0u);
}

TYPED_TEST_P(QueryContract, OrderAscReturnsOldestFirst) {
  auto doc = this->logs("order=asc&limit=3");
  ASSERT_EQ(doc.Size(), 3u);
  EXPECT_EQ(std::string(doc[0]["message"].GetString()), "message number 0 OOM killer invoked");
  EXPECT_EQ(std::string(doc[2]["message"].GetString()), "message number 2");
  EXPECT_EQ(this->count("order=DESC&limit=3"), 3u);
}

TYPED_TEST_P(QueryContract, CursorWalksEveryRowOnceInBothOrdersWithHeadersAndEnvelope) {
  for (std::string order : {"desc", "asc"}) {
    std::set<int64_t> ids;
    std::string cursor;
    int pages = 0;
    int64_t prev = order == "desc" ? INT64_MAX : INT64_MIN;
    do {
      HttpResponse r;
      auto doc = this->logs(
          "order=" + order + "&limit=40&service=" + (cursor.empty() ? "" : "&cursor=" + cursor),
          &r);
      ASSERT_TRUE(doc.IsArray());
      for (auto &row : doc.GetArray()) {
        int64_t id = row["id"].GetInt64();
        EXPECT_TRUE(ids.insert(id).second) << "repeated " << id;
        EXPECT_TRUE(order == "desc" ? id < prev : id > prev);
        prev = id;
      }
      cursor = r.headers["x-next-cursor"];
      if (!cursor.empty()) {
        EXPECT_NE(r.headers["link"].find("cursor=" + cursor + ">; rel=\"next\""), std::string::npos)
            << r.headers["link"];
        EXPECT_NE(r.headers["link"].find("order=" + order), std::string::npos);
      }
      ASSERT_LT(++pages, 20);
    } while (!cursor.empty());
    EXPECT_EQ(ids.size(), static_cast<size_t>(kQueryRows)) << order;
    EXPECT_EQ(pages, 9) << "350 rows in pages of 40, no empty last page";
  }
  HttpResponse r = http(this->base() + "/query/logs?envelope=1&limit=2&service=kernel");
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["logs"].Size(), 2u);
  ASSERT_TRUE(doc["next"].IsString());
  EXPECT_EQ(std::string(doc["next"].GetString()), r.headers["x-next-cursor"]);
  auto last = this->logs("envelope=true&service=kernel&limit=1000");
  EXPECT_TRUE(last["next"].IsNull());
}

TYPED_TEST_P(QueryContract, EveryBadParameterGets400NamingIt) {
  const std::pair<std::string, std::string> cases[] = {
      {"limit=0", "bad parameter 'limit': must be an integer between 1 and 10000"},
      {"limit=10001", "bad parameter 'limit'"},
      {"limit=ten", "bad parameter 'limit'"},
      {"limit=-5", "bad parameter 'limit'"},
      {"limit=5.5", "bad parameter 'limit'"},
      {"level=LOUD", "bad parameter 'level': must be one of DEBUG"},
      {"min_level=2", "bad parameter 'min_level'"},
      {"start_time=yesterday", "bad parameter 'start_time'"},
      {"end_time=2025-13-01T00:00:00Z", "bad parameter 'end_time'"},
      {"start_time=2025-11-28T01:00:00Z&end_time=2025-11-28T00:00:00Z",
       "bad parameter 'end_time': is before start_time"},
      {"order=sideways", "bad parameter 'order': must be asc or desc"},
      {"cursor=abc", "bad parameter 'cursor'"},
      {"cursor=a.1.2", "bad parameter 'cursor': was made for order=asc"},
      {"envelope=2", "bad parameter 'envelope'"},
      {"q=%20%2B%2B", "bad parameter 'q': has no words"},
      {"service=a&service=b", "bad parameter 'service': given more than once"},
      {"services=kernel", "unknown parameter 'services'"},
      {"service=%zz", "malformed percent-encoding"},
      {"service=a%00b", "NUL byte"},
      {"q=" + std::string(3000, 'a'), "bad parameter 'q': longer than 2048 bytes"},
  };
  for (const auto &[query, want] : cases) {
    HttpResponse r = http(this->base() + "/query/logs?" + query);
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_NE(r.body.find(want), std::string::npos) << query << ": " << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/json") << query;
  }
  for (std::string q : {"since=soon", "since=0s", "top=0", "top=x", "range=1h"}) {
    HttpResponse r = http(this->base() + "/query/stats?" + q);
    EXPECT_EQ(r.status, 400) << q;
    EXPECT_NE(r.body.find(q.substr(0, q.find('=')) + "'"), std::string::npos) << q << r.body;
  }
  HttpResponse t = http(this->base() + "/tail?level=LOUD");
  EXPECT_EQ(t.status, 400);
  EXPECT_NE(t.body.find("bad parameter 'level'"), std::string::npos) << t.body;
}

TYPED_TEST_P(QueryContract, SqlInjectionInEveryParameterGets400OrNoRowsNeverAServerError) {
  const std::string attacks[] = {
      "' OR '1'='1",
      "' OR 1=1 -- ",
      "\"; DROP TABLE log_events; --",
      "kernel' UNION SELECT id, timestamp, source, service, host, level, trace_id, span_id, "
      "event_type, error_code, message, meta_json FROM log_events -- ",
      "1) OR (1=1",
      "%' OR '%'='",
      "\\' OR 1=1 #",
      "\\'; DROP TABLE log_events; #",
      "` OR 1=1",
      "'); DELETE FROM log_events; -- ",
      "*/ OR 1=1 /*",
      "x' AND SLEEP(5) AND '1'='1",
      "log_events_fts MATCH '*'",
      "\" OR \"\"=\"",
  };
  const char *params[] = {"service",  "host",  "level", "min_level", "trace_id", "start_time",
                          "end_time", "limit", "q",     "order",     "cursor",   "envelope"};
  for (const char *p : params) {
    for (const auto &a : attacks) {
      HttpResponse r = http(this->base() + "/query/logs?" + p + "=" + url_encode(a));
      EXPECT_TRUE(r.status == 400 || (r.status == 200 && r.body == "[]"))
          << p << "=" << a << " -> " << r.status << " " << r.body.substr(0, 200);
    }
  }
  for (const char *p : {"since", "top"})
    for (const auto &a : attacks)
      EXPECT_EQ(http(this->base() + "/query/stats?" + p + "=" + url_encode(a)).status, 400)
          << p << a;
  EXPECT_EQ(TypeParam::row_count(), kQueryRows);
}

TYPED_TEST_P(QueryContract, StatsCountByServiceLevelAndHostSinceAWindow) {
  TypeParam::add_fresh_rows();
  HttpResponse r = http(this->base() + "/query/stats?since=1h");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << r.body;
  EXPECT_EQ(doc["total"].GetInt64(), 20);
  EXPECT_EQ(doc["by_service"]["api"].GetInt64(), 15);
  EXPECT_EQ(doc["by_service"]["db"].GetInt64(), 5);
  EXPECT_EQ(doc["by_level"]["ERROR"].GetInt64(), 5);
  EXPECT_EQ(doc["by_level"]["INFO"].GetInt64(), 15);
  EXPECT_EQ(doc["by_host"]["h1"].GetInt64(), 20);
  EXPECT_TRUE(doc["since"].IsString());
  r = http(this->base() + "/query/stats?since=1h&top=1");
  doc.Parse(r.body.c_str());
  EXPECT_EQ(doc["by_service"].MemberCount(), 1u) << r.body;
  EXPECT_TRUE(doc["by_service"].HasMember("api"));
  r = http(this->base() + "/query/stats");  // default: the last hour
  doc.Parse(r.body.c_str());
  EXPECT_EQ(doc["total"].GetInt64(), 20);
  r = http(this->base() + "/query/stats?since=30d");
  doc.Parse(r.body.c_str());
  EXPECT_EQ(doc["total"].GetInt64(), 20) << "the fixed rows are from 2025-11-28";
  TypeParam::remove_fresh_rows();
}

TYPED_TEST_P(QueryContract, HealthInfoAndThePrototypesDocumentedQuery) {
  HttpResponse h = http(this->base() + "/health");
  EXPECT_EQ(h.status, 200);
  EXPECT_NE(h.body.find("{\"status\":\"ok\",\"timestamp\":\""), std::string::npos) << h.body;
  HttpResponse i = http(this->base() + "/info");
  EXPECT_EQ(i.status, 200);
  if (!TypeParam::secret().empty()) {
    EXPECT_EQ(i.body.find(TypeParam::secret()), std::string::npos) << i.body;
  }
  rapidjson::Document doc;
  doc.Parse(i.body.c_str());
  ASSERT_TRUE(doc.IsObject()) << i.body;
  EXPECT_TRUE(doc["version"].IsString());
  EXPECT_TRUE(doc["node"].IsString());
  // The engine's loaded instances, this query output among them.
  ASSERT_TRUE(doc["engine"].IsObject()) << i.body;
  EXPECT_TRUE(doc["engine"]["version"].IsString());
  bool found = false;
  for (auto &inst : doc["engine"]["instances"].GetArray())
    found |= std::string(inst["plugin"].GetString()) == "query" &&
             std::string(inst["kind"].GetString()) == "output";
  EXPECT_TRUE(found) << i.body;
  // From the seed, unchanged (its start_time and filters against the rows above).
  auto rows =
      this->logs("service=loki.service&level=ERROR&start_time=2025-11-28T00:00:00Z&limit=100");
  ASSERT_TRUE(rows.IsArray());
  EXPECT_EQ(rows.Size(), 16u);  // i % 3 == 0 and i % 7 == 4: i = 18 + 21k < 350
  for (auto &r : rows.GetArray()) {
    EXPECT_EQ(std::string(r["service"].GetString()), "loki.service");
    EXPECT_EQ(std::string(r["level"].GetString()), "ERROR");
    EXPECT_EQ(std::string(r["error_code"].GetString()), "HTTP_500");
  }
  EXPECT_EQ(this->count("service=docker.service&level=ERROR&limit=10"), 10u);
}

TYPED_TEST_P(QueryContract, AnUnknownParameterIsNamedWithTheValidOnesForItsEndpoint) {
  const std::pair<std::string, std::string> cases[] = {
      {"/query/logs",
       "(valid for /query/logs: service, host, level, min_level, trace_id, pattern_id, q, "
       "start_time, end_time, limit, order, cursor, envelope)"},
      {"/query/stats", "(valid for /query/stats: since, start_time, end_time, top)"},
      {"/tail", "(valid for /tail: service, host, level, min_level, q, last_event_id, token)"},
      {"/health", "(/health takes no parameters)"},
      {"/info", "(/info takes no parameters)"},
  };
  for (const auto &[path, valid] : cases) {
    HttpResponse r = http(this->base() + path + "?colour=red");
    EXPECT_EQ(r.status, 400) << path;
    EXPECT_NE(r.body.find("unknown parameter 'colour' " + valid), std::string::npos)
        << path << ": " << r.body;
  }
}

TYPED_TEST_P(QueryContract, StatsTakeStartAndEndTimeAsLogsDo) {
  // Stats over a window count exactly the rows /query/logs returns for it.
  auto stats = [&](const std::string &query) {
    HttpResponse r = http(this->base() + "/query/stats?" + query);
    EXPECT_EQ(r.status, 200) << query << ": " << r.body;
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    EXPECT_TRUE(doc.IsObject()) << r.body;
    return doc;
  };
  const std::string windows[] = {
      "start_time=2025-11-28T00:01:00Z&end_time=2025-11-28T00:01:59.9Z",
      "start_time=2025-11-28T00:00:10.123456Z&end_time=2025-11-28T00:00:10.123456Z",
      "start_time=1764288100&end_time=2025-11-28T00:01:49.5Z",
      "start_time=2025-11-28T02:00:01%2B02:00&end_time=2025-11-28T00:00:01.5Z",
      "start_time=2025-11-28T00:05:00Z",
      "end_time=2025-11-28T00:00:59.9Z",
  };
  const int64_t want[] = {60, 1, 10, 1, 50, 60};
  for (size_t i = 0; i < std::size(windows); ++i) {
    auto doc = stats(windows[i]);
    EXPECT_EQ(doc["total"].GetInt64(), want[i]) << windows[i];
    EXPECT_EQ(static_cast<int64_t>(this->count(windows[i] + "&limit=10000")), want[i])
        << windows[i];
  }
  auto doc = stats("start_time=2025-11-28T00:01:00Z&end_time=2025-11-28T00:01:59.9Z&top=2");
  EXPECT_EQ(std::string(doc["since"].GetString()), "2025-11-28T00:01:00.000000");
  EXPECT_EQ(std::string(doc["until"].GetString()), "2025-11-28T00:01:59.900000");
  EXPECT_EQ(doc["by_service"].MemberCount(), 2u);
  EXPECT_EQ(doc["by_host"]["dev-services"].GetInt64(), 30);  // i = 60..119, even i
  EXPECT_EQ(doc["by_level"]["DEBUG"].GetInt64(), 9);         // i % 7 == 0: 63, 70, ..., 119
  // end_time alone: the hour before it.
  doc = stats("end_time=2025-11-28T00:00:59.9Z");
  EXPECT_EQ(std::string(doc["since"].GetString()), "2025-11-27T23:00:59.900000");
  const std::pair<std::string, std::string> bad[] = {
      {"start_time=yesterday", "bad parameter 'start_time': must be an RFC 3339 time"},
      {"end_time=2025-13-01T00:00:00Z", "bad parameter 'end_time'"},
      {"start_time=2025-11-28T01:00:00Z&end_time=2025-11-28T00:00:00Z",
       "bad parameter 'end_time': is before start_time"},
      {"since=1h&start_time=2025-11-28T00:00:00Z",
       "bad parameter 'since': cannot be combined with start_time"},
      {"end_time=2025-11-28T00:00:00Z&since=1h",
       "bad parameter 'since': cannot be combined with end_time"},
      {"start_time=2025-11-28&start_time=2025-11-29", "bad parameter 'start_time': given more"},
  };
  for (const auto &[query, message] : bad) {
    HttpResponse r = http(this->base() + "/query/stats?" + query);
    EXPECT_EQ(r.status, 400) << query;
    EXPECT_NE(r.body.find(message), std::string::npos) << query << ": " << r.body;
  }
}

// Last: it changes the rows' timestamps.
// GET /query/histogram: the window cut into equal buckets, each with its rows counted by level,
// under the same filters as /query/logs. Seven one-minute buckets over the fixed rows (one per
// second from 00:00:00.123456): 60 rows in each of the first five, 50 in the sixth, none after.
TYPED_TEST_P(QueryContract, HistogramCountsEachBucketByLevelUnderTheLogsFilters) {
  const std::string window =
      "start_time=2025-11-28T00:00:00Z&end_time=2025-11-28T00:06:59.999999Z&buckets=7";
  auto histogram = [&](const std::string &extra) {
    HttpResponse r = http(this->base() + "/query/histogram?" + window + extra);
    rapidjson::Document doc;
    doc.Parse(r.body.c_str());
    EXPECT_EQ(r.status, 200) << extra << ": " << r.body;
    EXPECT_TRUE(doc.IsObject()) << r.body;
    return doc;
  };
  rapidjson::Document all = histogram("");
  ASSERT_TRUE(all.IsObject());
  EXPECT_EQ(all["total"].GetInt64(), kQueryRows);
  EXPECT_DOUBLE_EQ(all["bucket_seconds"].GetDouble(), 60.0);
  EXPECT_EQ(std::string(all["start_time"].GetString()).substr(0, 26), "2025-11-28T00:00:00.000000");
  ASSERT_EQ(all["buckets"].Size(), 7u);
  const int64_t per_bucket[] = {60, 60, 60, 60, 60, 50, 0};
  for (rapidjson::SizeType b = 0; b < 7; ++b) {
    const auto &bucket = all["buckets"][b];
    EXPECT_EQ(std::string(bucket["start"].GetString()).substr(0, 19),
              "2025-11-28T00:0" + std::to_string(b) + ":00");
    int64_t sum = 0;
    for (auto &m : bucket["counts"].GetObject()) sum += m.value.GetInt64();
    EXPECT_EQ(sum, per_bucket[b]) << "bucket " << b;
  }
  // Rows 0..59: level i%7, so DEBUG..WARNING 9 each, ERROR..FATAL 8 each.
  const auto &first = all["buckets"][0]["counts"];
  EXPECT_EQ(first["DEBUG"].GetInt64(), 9);
  EXPECT_EQ(first["WARNING"].GetInt64(), 9);
  EXPECT_EQ(first["FATAL"].GetInt64(), 8);
  EXPECT_EQ(all["buckets"][6]["counts"].MemberCount(), 0u);
  EXPECT_EQ(all["levels"]["ERROR"].GetInt64(), 50);

  EXPECT_EQ(histogram("&service=kernel")["total"].GetInt64(), 116);
  EXPECT_EQ(histogram("&host=gpu-node")["total"].GetInt64(), 175);
  EXPECT_EQ(histogram("&level=ERROR")["total"].GetInt64(), 50);
  EXPECT_EQ(histogram("&min_level=ERROR")["total"].GetInt64(), 150);
  EXPECT_EQ(histogram("&trace_id=trace-0")["total"].GetInt64(), 35);
  // q: rows 0, 50, ... 300, one level each, in buckets 0 (two of them) to 5.
  rapidjson::Document oom = histogram("&q=oom+killer");
  EXPECT_EQ(oom["total"].GetInt64(), 7);
  EXPECT_EQ(oom["buckets"][0]["counts"]["DEBUG"].GetInt64(), 1);
  EXPECT_EQ(oom["buckets"][0]["counts"]["INFO"].GetInt64(), 1);
  EXPECT_EQ(oom["buckets"][5]["counts"]["FATAL"].GetInt64(), 1);
  EXPECT_EQ(oom["levels"].MemberCount(), 7u);

  // The window's last instant is in the last bucket: row 59 is at 00:00:59.123456.
  HttpResponse edge = http(this->base() +
                           "/query/histogram?start_time=2025-11-28T00:00:00.123456Z&end_time="
                           "2025-11-28T00:00:59.123456Z&buckets=59");
  rapidjson::Document e;
  e.Parse(edge.body.c_str());
  ASSERT_TRUE(e.IsObject()) << edge.body;
  EXPECT_DOUBLE_EQ(e["bucket_seconds"].GetDouble(), 1.0);
  EXPECT_EQ(e["total"].GetInt64(), 60);
  int64_t last = 0;
  for (auto &m : e["buckets"][58]["counts"].GetObject()) last += m.value.GetInt64();
  EXPECT_EQ(last, 2) << "rows 58 and 59: " << edge.body;

  for (const char *bad : {"buckets=0", "buckets=1001", "buckets=x"}) {
    HttpResponse r = http(this->base() + "/query/histogram?" + bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find("bad parameter 'buckets'"), std::string::npos) << r.body;
  }
  HttpResponse r = http(this->base() + "/query/histogram?level=LOUD");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad parameter 'level'"), std::string::npos) << r.body;
  r = http(this->base() + "/query/histogram?start_time=2025-11-28T01:00:00Z&end_time=2025-11-28");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad parameter 'end_time'"), std::string::npos) << r.body;
  // Times outside 1970..2200 (a start in 1696 overflowed the window's length: fuzzing).
  for (const char *bad : {"start_time=1696-11-28T10:00:00Z&buckets=7", "end_time=2262-01-01"}) {
    r = http(this->base() + "/query/histogram?" + bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_NE(r.body.find("or epoch seconds, from 1970 to 2200"), std::string::npos) << r.body;
  }
}

TYPED_TEST_P(QueryContract, RowsSharingOneTimestampAreToldApartByIdWhenPaging) {
  TypeParam::collide_timestamps();
  EXPECT_EQ(this->walk("limit=7").size(), static_cast<size_t>(kQueryRows));
  EXPECT_EQ(this->walk("limit=7&order=asc").size(), static_cast<size_t>(kQueryRows));
}

// Every store matches words as UTF-8 text: a q that is not UTF-8 is refused the same way by
// each (it was a 500 from MariaDB's and ClickHouse's regular expressions, rows from SQLite),
// while UTF-8 words are searched for.
TYPED_TEST_P(QueryContract, AQueryThatIsNotUtf8Gets400NamingQOnEveryEndpoint) {
  for (std::string q : {"%FF", "caf%C3", "OOM+%FF", "%80abc", "%ED%A0%80", "%C0%AF"}) {
    for (std::string path : {"/query/logs?q=", "/query/histogram?q="}) {
      HttpResponse r = http(this->base() + path + q);
      EXPECT_EQ(r.status, 400) << path << q << ": " << r.body;
      EXPECT_NE(r.body.find("bad parameter 'q': is not valid UTF-8"), std::string::npos)
          << path << q << ": " << r.body;
    }
  }
  EXPECT_EQ(this->count("q=%C3%A9t%C3%A9+OOM"), 0u) << "UTF-8 words are searched for";
  EXPECT_EQ(this->count("q=OOM+killer"), 7u);
}

REGISTER_TYPED_TEST_SUITE_P(
    QueryContract, AQueryThatIsNotUtf8Gets400NamingQOnEveryEndpoint,
    DefaultAnswerIsThePrototypesArrayNewestFirstWithAHundredRows,
    EachFilterParameterSelectsExactlyItsRows, FullTextQueryMatchesWordsAsOnePhrase,
    OrderAscReturnsOldestFirst, CursorWalksEveryRowOnceInBothOrdersWithHeadersAndEnvelope,
    EveryBadParameterGets400NamingIt, SqlInjectionInEveryParameterGets400OrNoRowsNeverAServerError,
    StatsCountByServiceLevelAndHostSinceAWindow, HealthInfoAndThePrototypesDocumentedQuery,
    AnUnknownParameterIsNamedWithTheValidOnesForItsEndpoint, StatsTakeStartAndEndTimeAsLogsDo,
    HistogramCountsEachBucketByLevelUnderTheLogsFilters,
    RowsSharingOneTimestampAreToldApartByIdWhenPaging);

}  // namespace devmesh::test
