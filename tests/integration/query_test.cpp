// The query plugin over the SQLite store through the real binary and a real HTTP client: the
// shared query contract (query_contract.h) on SQLite, then what is SQLite's own: /health before
// the store exists, bearer tokens, the statement time limit, a store without the full-text
// index, keyset pagination while inserts run, /tail, and the prototype's example unchanged.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <set>
#include <thread>

#include "query_contract.h"
#include "store_test_support.h"
#include "timestamp.hpp"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

constexpr int kRows = kQueryRows;

int64_t base_ns() {
  int64_t ns = 0;
  devmesh::parse_rfc3339("2025-11-28T00:00:00Z", ns);
  return ns;
}

// Creates the store with the sqlite output (so the schema is the plugin's own), then adds the
// contract's rows (query_contract.h).
void make_store(const TempDir &d, const std::string &db) {
  auto e = start_engine(d,
                        plugins_head("  exit_when_done: true\n") +
                            "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: setup}\n"
                            "  outputs:\n    - {name: sqlite, path: " +
                            db + "}\n",
                        "setup");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  SqliteDb s(db);
  s.exec("DELETE FROM log_events");
  s.exec("INSERT INTO log_events_fts(log_events_fts) VALUES('delete-all')");
  std::string sql = "BEGIN;";
  for (int i = 0; i < kRows; ++i) {
    sql +=
        "INSERT INTO log_events (timestamp, source, service, host, level, trace_id, span_id,"
        " event_type, error_code, message, meta_json, event_id) VALUES (" +
        std::to_string(base_ns() + int64_t{i} * 1000000000 + 123456000) + ", 'journald', '" +
        kQueryServices[i % 3] + "', '" + kQueryHosts[i % 2] + "', '" + kQueryLevels[i % 7] + "', " +
        (i % 5 == 0 ? "'trace-" + std::to_string(i % 10) + "'" : "NULL") + ", " +
        (i % 5 == 0 ? "'span'" : "NULL") + ", 'http_request', " +
        (i % 7 == 4 ? "'HTTP_500'" : "NULL") + ", 'message number " + std::to_string(i) +
        (i % 50 == 0 ? " OOM killer invoked" : "") + "', '{\"i\":\"" + std::to_string(i) +
        "\"}', randomblob(16));";
  }
  sql += "INSERT INTO log_events_fts(rowid, message) SELECT id, message FROM log_events; COMMIT;";
  s.exec(sql);
}

}  // namespace

// The contract's SQLite backend: one store and one query engine for the whole suite.
struct SqliteStore {
  static void start() {
    dir = new TempDir;
    db = *dir / "store/devmesh.db";
    make_store(*dir, db);
    port = free_port();
    // The query output gets no records here (match: none): the rows above are the whole store.
    engine =
        start_engine(*dir, plugins_head() +
                               "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                               "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                               std::to_string(port) + ", path: " + db + "}\n")
            .release();
    ASSERT_TRUE(wait_until([] { return http(base() + "/health").status == 200; }, 20s))
        << engine->err();
  }
  static void stop() {
    engine->kill(SIGTERM);
    engine->wait_exit(20s);
    delete engine;
    delete dir;
  }
  static std::string base() { return "http://127.0.0.1:" + std::to_string(port); }
  static long row_count() { return SqliteDb(db).number("SELECT count(*) FROM log_events"); }
  static void add_fresh_rows() {
    SqliteDb(db).exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)"
        " INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
        " SELECT strftime('%s','now') * 1000000000 - i * 1000000000, 's',"
        " CASE WHEN i <= 15 THEN 'api' ELSE 'db' END, 'h1', CASE WHEN i <= 5 THEN 'ERROR'"
        " ELSE 'INFO' END, 'fresh ' || i, randomblob(16) FROM n");
  }
  static void remove_fresh_rows() {
    SqliteDb(db).exec("DELETE FROM log_events WHERE source = 's'");
  }
  static void collide_timestamps() {
    SqliteDb(db).exec("UPDATE log_events SET timestamp = " + std::to_string(base_ns() + 500000000) +
                      " WHERE id % 4 = 0");
  }
  static std::string secret() { return ""; }

  static inline TempDir *dir;
  static inline std::string db;
  static inline int port;
  static inline Process *engine;
};

namespace devmesh::test {
INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, QueryContract, SqliteStore);
}

namespace {

TEST(QueryPlugin, HealthIs503WithTheReasonUntilTheStoreExists) {
  TempDir d;
  int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const std::string db = d / "later/devmesh.db";
  auto e = start_engine(d, plugins_head() +
                               "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                               "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                               std::to_string(port) + ", path: " + db + "}\n");
  HttpResponse h;
  ASSERT_TRUE(wait_until([&] { return (h = http(base + "/health")).status != 0; }, 20s))
      << e->err();
  EXPECT_EQ(h.status, 503);
  EXPECT_NE(h.body.find("\"status\":\"unavailable\""), std::string::npos) << h.body;
  EXPECT_NE(h.body.find("cannot open " + db), std::string::npos) << h.body;
  EXPECT_EQ(http(base + "/query/logs").status, 503);
  make_store(d, db);
  EXPECT_EQ(http(base + "/health").status, 200);
  EXPECT_EQ(http(base + "/query/logs?limit=1").status, 200);
}

TEST(QueryPlugin, BearerTokenIsRequiredEverywhereButHealth) {
  TempDir d;
  int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  make_store(d, d / "devmesh.db");
  auto e = start_engine(d, plugins_head() +
                               "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                               "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                               std::to_string(port) + ", path: " + d / "devmesh.db" +
                               ", auth_token: s3cret-token}\n");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  for (std::string path : {"/query/logs", "/query/stats", "/info", "/tail"}) {
    HttpResponse r = http(base + path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer") << path;
    EXPECT_EQ(http(base + path, {"Authorization: Bearer s3cret-tokeN"}).status, 401) << path;
    EXPECT_EQ(http(base + path, {"Authorization: Bearer s3cret"}).status, 401) << path;
    EXPECT_EQ(http(base + path, {"Authorization: s3cret-token"}).status, 401) << path;
  }
  EXPECT_EQ(http(base + "/query/logs?limit=1", {"Authorization: Bearer s3cret-token"}).status, 200);
  EXPECT_EQ(http(base + "/info", {"Authorization: Bearer s3cret-token"}).status, 200);
  EXPECT_EQ(e->err().find("s3cret"), std::string::npos) << "the token must never be logged";
}

TEST(QueryPlugin, QueryPastTheStatementTimeLimitGets504) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  make_store(d, db);
  {
    SqliteDb s(db);  // 400k rows whose messages all match: the FTS list alone takes a while
    s.exec(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400000)"
        " INSERT INTO log_events (timestamp, source, service, host, level, message, event_id)"
        " SELECT i, 's', 'big', 'h', 'INFO', 'common words ' || i, randomblob(16) FROM n");
    s.exec(
        "INSERT INTO log_events_fts(rowid, message) SELECT id, message FROM log_events"
        " WHERE service = 'big'");
  }
  int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e =
      start_engine(d, plugins_head() +
                          "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                          "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                          std::to_string(port) + ", path: " + db + ", statement_timeout: 10ms}\n");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base + "/query/logs?q=common+words&order=asc&limit=10000");
  EXPECT_EQ(r.status, 504) << r.body.substr(0, 300);
  EXPECT_NE(r.body.find("statement_timeout"), std::string::npos) << r.body.substr(0, 300);
  EXPECT_EQ(http(base + "/health").status, 200) << "the server goes on serving";
}

TEST(QueryPlugin, FullTextQueryOnAStoreWithoutTheIndexIs400) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  auto setup = start_engine(d,
                            plugins_head("  exit_when_done: true\n") +
                                "  inputs:\n    - {name: dummy, rate: 0, count: 5}\n"
                                "  outputs:\n    - {name: sqlite, full_text: false, path: " +
                                db + "}\n",
                            "setup");
  ASSERT_EQ(setup->wait_exit(30s), 0) << setup->err();
  int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto e = start_engine(d, plugins_head() +
                               "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                               "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                               std::to_string(port) + ", path: " + db + "}\n");
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  HttpResponse r = http(base + "/query/logs?q=dummy");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad parameter 'q': this store has no full-text index"), std::string::npos)
      << r.body;
  EXPECT_EQ(http(base + "/query/logs?service=dummy").status, 200);
}

TEST(QueryPlugin, MariadbStorePassesDryRunWithoutReachingAServer) {
  TempDir d;
  // No server listens on this port: a dry run validates the options without connecting.
  write_file(d / "m.yaml", plugins_head() +
                               "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                               "  outputs:\n    - {name: query, store: mariadb, port: " +
                               std::to_string(free_port()) +
                               ", listen: 127.0.0.1:" + std::to_string(free_port()) + "}\n");
  std::string out, err;
  EXPECT_EQ(run({DEVMESH_BIN, "--dry-run", "-c", d / "m.yaml"}, d.path(), &out, &err), 0) << err;
  EXPECT_NE(out.find("configuration OK"), std::string::npos) << out;
}

TEST(QueryPlugin, PaginationAcrossTenThousandRowsWhileInsertsRunMissesAndRepeatsNothing) {
  TempDir d;
  const std::string db = d / "devmesh.db";
  int port = free_port();
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  // base: 10,000 rows first; live: inserted all along the walk.
  auto e = start_engine(
      d, plugins_head() +
             "  inputs:\n"
             "    - {name: dummy, tag: base, rate: 0, count: 10000, batch: 1000, service: base}\n"
             "    - {name: dummy, tag: live, rate: 400, service: live, message: 'live {seq}'}\n"
             "  outputs:\n"
             "    - {name: sqlite, path: " +
             db +
             ", flush_interval: 50ms}\n"
             "    - {name: query, listen: " +
             listen + ", path: " + db + ", flush_interval: 50ms}\n");
  ASSERT_TRUE(wait_until(
      [&] {
        HttpResponse r = http(base + "/query/stats?since=1h");
        return r.body.find("\"base\":10000") != std::string::npos;
      },
      60s))
      << e->err();
  const long live_before =
      SqliteDb(db).number("SELECT count(*) FROM log_events WHERE service='live'");
  for (std::string order : {"desc", "asc"}) {
    std::set<int64_t> ids;
    std::map<std::string, int> base_seen;
    std::string cursor;
    long repeats = 0;
    for (int page = 0; page < 1000; ++page) {
      HttpResponse r = http(base + "/query/logs?order=" + order + "&limit=250" +
                            (cursor.empty() ? "" : "&cursor=" + cursor));
      ASSERT_EQ(r.status, 200) << r.body;
      rapidjson::Document doc;
      doc.Parse(r.body.c_str());
      for (auto &row : doc.GetArray()) {
        if (!ids.insert(row["id"].GetInt64()).second) ++repeats;
        if (std::string(row["service"].GetString()) == "base")
          base_seen[row["message"].GetString()]++;
      }
      cursor = r.headers["x-next-cursor"];
      if (cursor.empty()) break;
    }
    EXPECT_EQ(repeats, 0) << order;
    EXPECT_EQ(base_seen.size(), 10000u) << order << ": base rows missed";
    for (auto &[m, n] : base_seen) ASSERT_EQ(n, 1) << m;
  }
  const long live_after =
      SqliteDb(db).number("SELECT count(*) FROM log_events WHERE service='live'");
  EXPECT_GT(live_after, live_before) << "inserts ran during the walk";
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

// Reads an SSE stream until `want` events arrived (or 15 s); returns their data lines.
struct Sse {
  long status = 0;
  std::string content_type, raw;
  std::vector<std::string> events;
};
// Reads up to `want` events; `seen`, when given, counts them as they come (another thread waits
// on it), and `stop` ends the stream early.
Sse sse(const std::string &url, size_t want, std::atomic<size_t> *seen = nullptr,
        const std::atomic<bool> *stop = nullptr) {
  struct Ctx {
    Sse *out;
    size_t want;
    std::atomic<size_t> *seen;
    const std::atomic<bool> *stop;
  };
  Sse out;
  Ctx ctx{&out, want, seen, stop};
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, stop ? 120L : 15L);
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char *p, size_t s, size_t n, void *u) {
        auto *x = static_cast<Ctx *>(u);
        x->out->raw.append(p, s * n);
        size_t at;
        while ((at = x->out->raw.find("\n\n")) != std::string::npos) {
          std::string ev = x->out->raw.substr(0, at);
          x->out->raw.erase(0, at + 2);
          // One read may hold several events: keep exactly the first `want`.
          if (ev.rfind("data: ", 0) == 0 && x->out->events.size() < x->want)
            x->out->events.push_back(ev.substr(6));
        }
        if (x->seen) *x->seen = x->out->events.size();
        if (x->stop && *x->stop) return size_t{0};
        return x->out->events.size() >= x->want ? size_t{0} : s * n;  // 0 ends the transfer
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
  curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  char *ct = nullptr;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  out.content_type = ct ? ct : "";
  curl_easy_cleanup(c);
  return out;
}

std::string tail_pipeline(const std::string &listen, const std::string &extra = "") {
  return plugins_head() +
         "  inputs:\n"
         "    - {name: dummy, rate: 40, service: web, level: ERROR, message: 'web {seq}'}\n"
         "    - {name: dummy, rate: 40, service: db, level: INFO, message: 'db {seq}'}\n"
         "  outputs:\n"
         "    - {name: query, listen: " +
         listen + ", path: none.db, flush_interval: 50ms" + extra + "}\n";
}

TEST(QueryTail, StreamsMatchingRecordsAsServerSentEventsBeforeAnyStore) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, tail_pipeline(listen));
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  for (std::string filter : {"service=web", "min_level=ERROR", "level=info&host=", "service=db"}) {
    Sse s = sse("http://" + listen + "/tail?" + filter, 10);
    EXPECT_EQ(s.status, 200);
    EXPECT_EQ(s.content_type, "text/event-stream");
    ASSERT_EQ(s.events.size(), 10u) << filter << ": " << s.raw;
    for (auto &ev : s.events) {
      rapidjson::Document doc;
      doc.Parse(ev.c_str());
      ASSERT_TRUE(doc.IsObject()) << ev;
      const std::string svc = doc["service"].GetString();
      EXPECT_EQ(svc,
                filter.find("web") != std::string::npos || filter.find("ERROR") != std::string::npos
                    ? "web"
                    : "db")
          << filter << ": " << ev;
      EXPECT_TRUE(doc["meta_json"].IsObject());
      EXPECT_TRUE(doc["timestamp"].IsString());
    }
  }
  // The query output's store does not exist (path: none.db): /tail does not need one.
  EXPECT_EQ(http("http://" + listen + "/health").status, 503);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

TEST(QueryTail, OpenStreamsDoNotHoldUpShutdown) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, tail_pipeline(listen));
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s));
  std::atomic<size_t> seen{0};
  std::thread reader([&] { sse("http://" + listen + "/tail", 1000000, &seen); });
  // The stream is open once its first event has come.
  ASSERT_TRUE(wait_until([&] { return seen > 0; }, 30s)) << e->err();
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(10s), 0) << e->err();
  reader.join();
}

TEST(QueryTail, SubscribersBeyondTailClientsGet503) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, tail_pipeline(listen, ", tail_clients: 1"));
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s));
  // The first subscriber holds its stream until told to stop; it counts as open once an event
  // has reached it (the server has then registered it).
  std::atomic<size_t> seen{0};
  std::atomic<bool> stop{false};
  Sse first;
  std::thread reader(
      [&] { first = sse("http://" + listen + "/tail?service=web", 1000000, &seen, &stop); });
  const bool open = wait_until([&] { return seen > 0; }, 30s);
  HttpResponse r = http("http://" + listen + "/tail");
  stop = true;
  reader.join();
  ASSERT_TRUE(open) << e->err();
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.body.find("tail_clients"), std::string::npos) << r.body;
  EXPECT_EQ(first.status, 200);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0);
}

}  // namespace

namespace {

// The prototype's documented POST and queries, unchanged, against http input + sqlite + query
// sharing one listener (as the prototype served both on :8000).
TEST(QuerySeed, ThePrototypesExamplePostAndQueriesWorkUnchanged) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  const std::string db = d / "data/devmesh.db";
  auto e = start_engine(d, plugins_head() + "  inputs:\n    - {name: http, listen: " + listen +
                               ", ack: delivered}\n"
                               "  outputs:\n"
                               "    - {name: sqlite, path: " +
                               db +
                               ", flush_interval: 50ms}\n"
                               "    - {name: query, listen: " +
                               listen + ", path: " + db + ", flush_interval: 50ms}\n");
  const std::string base = "http://" + listen;
  ASSERT_TRUE(wait_until([&] { return http(base + "/health").status == 200; }, 20s)) << e->err();
  const std::string body = R"({
  "logs": [
    {
      "timestamp": "2025-11-28T19:00:00.000000Z",
      "source": "journald",
      "service": "loki.service",
      "host": "dev-services",
      "level": "INFO",
      "message": "uploading tables",
      "meta_json": {"pid": "493414", "facility": "3"}
    }
  ]
})";
  for (int i = 0; i < 2; ++i) {  // the shipper re-sends after a restart: stored once
    HttpResponse post =
        http(base + "/ingest/logs", {"Content-Type: application/json"}, "POST", body);
    ASSERT_GE(post.status, 200) << post.body;
    ASSERT_LT(post.status, 300) << post.body;
  }
  HttpResponse r = http(base + "/query/logs?service=loki.service&level=INFO&limit=100");
  ASSERT_EQ(r.status, 200) << r.body;
  rapidjson::Document doc;
  doc.Parse(r.body.c_str());
  ASSERT_TRUE(doc.IsArray()) << r.body;
  ASSERT_EQ(doc.Size(), 1u) << r.body;
  const auto &row = doc[0];
  EXPECT_EQ(std::string(row["timestamp"].GetString()), "2025-11-28T19:00:00.000000");
  EXPECT_EQ(std::string(row["source"].GetString()), "journald");
  EXPECT_EQ(std::string(row["host"].GetString()), "dev-services");
  EXPECT_EQ(std::string(row["message"].GetString()), "uploading tables");
  EXPECT_EQ(std::string(row["meta_json"]["pid"].GetString()), "493414");
  EXPECT_EQ(std::string(row["meta_json"]["facility"].GetString()), "3");
  EXPECT_TRUE(row["id"].IsInt64());
  // The seed's example queries, verbatim.
  r = http(base +
           "/query/logs?service=loki.service&level=ERROR&start_time=2025-11-28T00:00:00Z"
           "&limit=100");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "[]");
  r = http(base + "/query/logs?service=docker.service&level=ERROR&limit=10");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "[]");
  r = http(base + "/query/logs?host=dev-services&limit=5");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("uploading tables"), std::string::npos);
  r = http(base + "/health");
  EXPECT_NE(r.body.find("{\"status\":\"ok\",\"timestamp\":"), std::string::npos) << r.body;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

}  // namespace
