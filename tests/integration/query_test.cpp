// The query plugin over the SQLite store through the real binary and a real HTTP client: the
// shared query contract (query_contract.h) on SQLite, then what is SQLite's own: /health before
// the store exists, bearer tokens, the statement time limit, a store without the full-text
// index, keyset pagination while inserts run, /tail, and the prototype's example unchanged.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <atomic>
#include <map>
#include <set>
#include <sstream>
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
  for (std::string path : {"/query/logs", "/query/stats", "/query/patterns",
                           "/query/patterns/0123456789abcdef", "/info", "/tail"}) {
    HttpResponse r = http(base + path);
    EXPECT_EQ(r.status, 401) << path;
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer") << path;
    EXPECT_EQ(http(base + path, {"Authorization: Bearer s3cret-tokeN"}).status, 401) << path;
    EXPECT_EQ(http(base + path, {"Authorization: Bearer s3cret"}).status, 401) << path;
    EXPECT_EQ(http(base + path, {"Authorization: s3cret-token"}).status, 401) << path;
  }
  EXPECT_EQ(http(base + "/query/logs?limit=1", {"Authorization: Bearer s3cret-token"}).status, 200);
  EXPECT_EQ(http(base + "/info", {"Authorization: Bearer s3cret-token"}).status, 200);
  EXPECT_EQ(http(base + "/query/patterns", {"Authorization: Bearer s3cret-token"}).status, 200);
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

// An SSE stream as read: its data events (with their ids) and its gap events.
struct Sse {
  long status = 0;
  std::string content_type, raw;
  std::vector<std::string> events;  // the data of each data event
  std::vector<std::string> ids;     // the id of each data event ("" when it had none)
  std::vector<std::string> gaps;    // the data of each "event: gap"
};
struct SseOptions {
  std::vector<std::string> headers;
  std::atomic<size_t> *seen = nullptr;        // data events so far (another thread waits on it)
  std::atomic<uint64_t> *last_seq = nullptr;  // the seq of the last id so far
  const std::atomic<bool> *stop = nullptr;    // ends the stream early
};

// The <seq> of a "<stream>-<seq>" event id.
uint64_t seq_of(const std::string &id) {
  return std::stoull(id.substr(id.find('-') + 1));
}

// Reads up to `want` data events (or 15 s; 120 s with a stop flag).
Sse sse(const std::string &url, size_t want, const SseOptions &o = {}) {
  struct Ctx {
    Sse *out;
    size_t want;
    const SseOptions *o;
  };
  Sse out;
  Ctx ctx{&out, want, &o};
  CURL *c = curl_easy_init();
  curl_slist *headers = nullptr;
  for (const auto &h : o.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, o.stop ? 120L : 15L);
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char *p, size_t s, size_t n, void *u) {
        auto *x = static_cast<Ctx *>(u);
        x->out->raw.append(p, s * n);
        size_t at;
        while ((at = x->out->raw.find("\n\n")) != std::string::npos) {
          std::string ev = x->out->raw.substr(0, at) + "\n";
          x->out->raw.erase(0, at + 2);
          std::string id;
          std::string kind;
          std::string data;
          for (size_t b = 0, e; (e = ev.find('\n', b)) != std::string::npos; b = e + 1) {
            const std::string line = ev.substr(b, e - b);
            if (line.rfind("id: ", 0) == 0) id = line.substr(4);
            if (line.rfind("event: ", 0) == 0) kind = line.substr(7);
            if (line.rfind("data: ", 0) == 0) data = line.substr(6);
          }
          if (kind == "gap") x->out->gaps.push_back(data);
          // One read may hold several events: keep exactly the first `want`.
          if (kind.empty() && !data.empty() && x->out->events.size() < x->want) {
            x->out->events.push_back(data);
            x->out->ids.push_back(id);
            if (x->o->last_seq && !id.empty()) *x->o->last_seq = seq_of(id);
          }
        }
        if (x->o->seen) *x->o->seen = x->out->events.size();
        if (x->o->stop && *x->o->stop) return size_t{0};
        return x->out->events.size() >= x->want ? size_t{0} : s * n;  // 0 ends the transfer
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
  curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  char *ct = nullptr;
  curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
  out.content_type = ct ? ct : "";
  curl_easy_cleanup(c);
  curl_slist_free_all(headers);
  return out;
}
Sse sse(const std::string &url, size_t want, std::atomic<size_t> *seen,
        const std::atomic<bool> *stop = nullptr) {
  SseOptions o;
  o.seen = seen;
  o.stop = stop;
  return sse(url, want, o);
}

// A /tail subscriber held open in the background for a test's length: it keeps the server
// keeping records (tail_history) and tells how far the stream got.
struct Witness {
  std::atomic<size_t> seen{0};
  std::atomic<uint64_t> last_seq{0};
  std::atomic<bool> stop{false};
  Sse got;
  std::thread reader;
  explicit Witness(const std::string &url) {
    reader = std::thread([this, url] {
      SseOptions o;
      o.seen = &seen;
      o.last_seq = &last_seq;
      o.stop = &stop;
      got = sse(url, 1000000, o);
    });
  }
  // Ends the stream; what it got.
  const Sse &finish() {
    stop = true;
    if (reader.joinable()) reader.join();
    return got;
  }
  ~Witness() { finish(); }
};

std::string tail_pipeline(const std::string &listen, const std::string &extra = "",
                          const std::string &service = "") {
  return plugins_head(service) +
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

// Behind the patterns filter a /tail event is a /query/logs row as the stores keep it: the
// pattern's id as pattern_id (after meta_json), its keys not in meta_json.
TEST(QueryTail, EventsCarryPatternIdAsARowDoesAndNotInMeta) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  std::string y = tail_pipeline(listen);
  y.replace(y.find("  outputs:"), 0, "  filters:\n    - {name: patterns}\n");
  auto e = start_engine(d, y);
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  Sse s = sse("http://" + listen + "/tail?service=web", 5);
  ASSERT_EQ(s.events.size(), 5u) << s.raw;
  std::set<std::string> ids;
  for (auto &ev : s.events) {
    rapidjson::Document doc;
    doc.Parse(ev.c_str());
    ASSERT_TRUE(doc.IsObject()) << ev;
    ASSERT_TRUE(doc.HasMember("pattern_id") && doc["pattern_id"].IsString()) << ev;
    EXPECT_EQ(std::string(doc["pattern_id"].GetString()).size(), 16u) << ev;
    ids.insert(doc["pattern_id"].GetString());
    if (doc["meta_json"].IsObject()) {
      EXPECT_FALSE(doc["meta_json"].HasMember("pattern_id")) << ev;
      EXPECT_FALSE(doc["meta_json"].HasMember("pattern")) << ev;
    }
  }
  EXPECT_EQ(ids.size(), 1u) << s.raw;  // "web {seq}": one template
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

TEST(QueryTail, EveryEventHasAnIdOneAfterTheLastRecordsId) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, tail_pipeline(listen));
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  // Unfiltered: every record passing through has the next number.
  Sse all = sse("http://" + listen + "/tail", 50);
  ASSERT_EQ(all.ids.size(), 50u) << all.raw;
  const std::string stream = all.ids[0].substr(0, all.ids[0].find('-'));
  for (size_t i = 0; i < all.ids.size(); ++i) {
    EXPECT_EQ(all.ids[i].substr(0, all.ids[i].find('-')), stream) << all.ids[i];
    EXPECT_EQ(seq_of(all.ids[i]), seq_of(all.ids[0]) + i) << all.ids[i];
  }
  // Filtered: the ids still increase (the records in between went to nobody).
  Sse web = sse("http://" + listen + "/tail?service=web", 20);
  ASSERT_EQ(web.ids.size(), 20u) << web.raw;
  for (size_t i = 1; i < web.ids.size(); ++i) EXPECT_GT(seq_of(web.ids[i]), seq_of(web.ids[i - 1]));
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

TEST(QueryTail, ReconnectingWithLastEventIdGetsExactlyTheMissedRecordsWhileRecordsKeepComing) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  const std::string url = "http://" + listen + "/tail";
  auto e = start_engine(d, tail_pipeline(listen));
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  std::map<std::string, std::string> by_id;  // every event the witness saw, by id
  std::vector<Sse> parts;
  {
    Witness witness(url);
    ASSERT_TRUE(wait_until([&] { return witness.seen > 0; }, 30s)) << e->err();
    parts.push_back(sse(url, 20));
    ASSERT_EQ(parts[0].ids.size(), 20u) << parts[0].raw;
    // Away while 40 more records pass; then back with the header an EventSource sends.
    uint64_t last = seq_of(parts.back().ids.back());
    ASSERT_TRUE(wait_until([&] { return witness.last_seq >= last + 40; }, 30s));
    parts.push_back(sse(url, 100, {{"Last-Event-ID: " + parts.back().ids.back()}}));
    // Again with last_event_id= (a client that keeps its own position).
    last = seq_of(parts.back().ids.back());
    ASSERT_TRUE(wait_until([&] { return witness.last_seq >= last + 40; }, 30s));
    parts.push_back(sse(url + "?last_event_id=" + parts.back().ids.back(), 60));
    // The header wins over a stale parameter (an EventSource reconnects to its first URL).
    last = seq_of(parts.back().ids.back());
    ASSERT_TRUE(wait_until([&] { return witness.last_seq >= last + 10; }, 30s));
    parts.push_back(sse(url + "?last_event_id=" + parts[0].ids[0], 30,
                        {{"Last-Event-ID: " + parts.back().ids.back()}}));
    // Until the witness has everything the last part got.
    last = seq_of(parts.back().ids.back());
    ASSERT_TRUE(wait_until([&] { return witness.last_seq >= last; }, 30s));
    const Sse &got = witness.finish();
    for (size_t i = 0; i < got.ids.size(); ++i) by_id[got.ids[i]] = got.events[i];
  }
  // One run of consecutive ids across the four connections: nothing repeated, nothing missed,
  // and each the very record the witness got under that id.
  uint64_t next = seq_of(parts[0].ids[0]);
  for (size_t p = 0; p < parts.size(); ++p) {
    EXPECT_TRUE(parts[p].gaps.empty()) << p << ": " << parts[p].gaps[0];
    for (size_t i = 0; i < parts[p].ids.size(); ++i) {
      ASSERT_EQ(seq_of(parts[p].ids[i]), next) << "part " << p << " event " << i;
      ++next;
      ASSERT_TRUE(by_id.count(parts[p].ids[i])) << parts[p].ids[i];
      EXPECT_EQ(parts[p].events[i], by_id[parts[p].ids[i]]);
    }
  }
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

TEST(QueryTail, ALastEventIdOlderThanTheKeptRecordsGetsAGapEventThenWhatIsKept) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  const std::string url = "http://" + listen + "/tail";
  // 4 KiB: a dozen records.
  const std::string metrics_at = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(
      d, tail_pipeline(listen, ", tail_history: 4KiB", "  http_listen: " + metrics_at + "\n"));
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  Witness witness(url);
  ASSERT_TRUE(wait_until([&] { return witness.seen > 0; }, 30s)) << e->err();
  Sse first = sse(url, 1);
  ASSERT_EQ(first.ids.size(), 1u) << first.raw;
  const uint64_t last = seq_of(first.ids[0]);
  ASSERT_TRUE(wait_until([&] { return witness.last_seq >= last + 100; }, 30s));
  Sse back = sse(url, 5, {{"Last-Event-ID: " + first.ids[0]}});
  ASSERT_EQ(back.gaps.size(), 1u) << back.raw;
  ASSERT_EQ(back.ids.size(), 5u) << back.raw;
  rapidjson::Document gap;
  gap.Parse(back.gaps[0].c_str());
  ASSERT_TRUE(gap.IsObject()) << back.gaps[0];
  EXPECT_EQ(std::string(gap["last_event_id"].GetString()), first.ids[0]);
  // What is kept follows at once, from the oldest kept record: the gap is exactly the rest.
  EXPECT_EQ(gap["missed"].GetUint64(), seq_of(back.ids[0]) - last - 1) << back.gaps[0];
  EXPECT_GT(gap["missed"].GetUint64(), 50u) << back.gaps[0];
  for (size_t i = 1; i < back.ids.size(); ++i)
    EXPECT_EQ(seq_of(back.ids[i]), seq_of(back.ids[0]) + i);
  // An id of another run (a restart, a reload): a gap of unknown size.
  Sse other = sse(url, 1, {{"Last-Event-ID: 1-5"}});
  ASSERT_EQ(other.gaps.size(), 1u) << other.raw;
  EXPECT_NE(other.gaps[0].find("\"missed\":null"), std::string::npos) << other.gaps[0];
  EXPECT_NE(other.gaps[0].find("restarted"), std::string::npos) << other.gaps[0];
  EXPECT_EQ(metric_value(http("http://" + metrics_at + "/metrics").body,
                         "devmesh_query_tail_gaps_total", ""),
            2);
  // Not an id at all: 400, naming where it came from.
  HttpResponse r = http(url, {"Last-Event-ID: yesterday"});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad header 'Last-Event-ID'"), std::string::npos) << r.body;
  r = http(url + "?last_event_id=12");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad parameter 'last_event_id'"), std::string::npos) << r.body;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

TEST(QueryTail, QFindsItsWordsTogetherInTheMessageAsTheStoresDo) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(
      d, plugins_head() +
             "  inputs:\n"
             "    - {name: dummy, rate: 40, service: a, message: 'kernel: oom-killer invoked "
             "{seq}'}\n"
             "    - {name: dummy, rate: 40, service: b, message: 'killer OOM {seq}'}\n"
             "    - {name: dummy, rate: 40, service: c, message: 'OOMkiller {seq}'}\n"
             "    - {name: dummy, rate: 40, service: d, message: 'the OOM Killer struck {seq}'}\n"
             "  outputs:\n"
             "    - {name: query, listen: " +
             listen + ", path: none.db, flush_interval: 50ms}\n");
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  const std::pair<std::string, std::set<std::string>> cases[] = {
      {"q=OOM+killer", {"a", "d"}},       // a phrase, any case, punctuation between words
      {"q=killer+oom", {"b"}},            // word order matters
      {"q=oomkiller", {"c"}},             // whole words only
      {"q=OOM+killer&service=d", {"d"}},  // with the other filters
  };
  for (const auto &[query, services] : cases) {
    Sse s = sse("http://" + listen + "/tail?" + query, 12);
    ASSERT_EQ(s.events.size(), 12u) << query << ": " << s.raw;
    std::set<std::string> seen;
    for (auto &ev : s.events) {
      rapidjson::Document doc;
      doc.Parse(ev.c_str());
      ASSERT_TRUE(doc.IsObject()) << ev;
      seen.insert(doc["service"].GetString());
    }
    for (auto &svc : seen) EXPECT_TRUE(services.count(svc)) << query << ": got " << svc;
  }
  HttpResponse r = http("http://" + listen + "/tail?q=%2B%2B");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("bad parameter 'q': has no words"), std::string::npos) << r.body;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
}

TEST(QueryTail, TheTokenMayComeAsACookieOrAParameterForTailOnly) {
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  const std::string base = "http://" + listen;
  const std::string metrics_at = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, tail_pipeline(listen, ", auth_token: s3cret-token",
                                         "  http_listen: " + metrics_at + "\n"));
  const std::string bearer = "Authorization: Bearer s3cret-token";
  ASSERT_TRUE(wait_until([&] { return http(base + "/info", {bearer}).status == 200; }, 20s))
      << e->err();
  // Accepted: the header (as before), the cookie among others, the parameter.
  for (auto [url, headers] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {base + "/tail", {bearer}},
           {base + "/tail", {"Cookie: theme=dark; devmesh_token=s3cret-token; x=y"}},
           {base + "/tail", {"Cookie: devmesh_token=\"s3cret-token\""}},
           {base + "/tail?service=web&token=s3cret-token", {}},
           {base + "/tail?token=s3cret-token", {"Cookie: devmesh_token=wrong"}},
       }) {
    Sse s = sse(url, 1, {headers});
    EXPECT_EQ(s.status, 200) << url << " " << (headers.empty() ? "" : headers[0]);
    EXPECT_EQ(s.events.size(), 1u) << url << ": " << s.raw;
  }
  // Refused: a wrong or partial token in each form, another cookie's value.
  for (auto [url, headers] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {base + "/tail", {"Cookie: devmesh_token=s3cret-tokeN"}},
           {base + "/tail", {"Cookie: devmesh_token=s3cret"}},
           {base + "/tail", {"Cookie: other_token=s3cret-token"}},
           {base + "/tail", {"Cookie: devmesh_token="}},
           {base + "/tail?token=s3cret-tokeN", {}},
           {base + "/tail?token=", {}},
           {base + "/tail?token=s3cret-token-", {}},
           {base + "/tail?my_token=s3cret-token", {}},
       }) {
    HttpResponse r = http(url, headers);
    EXPECT_EQ(r.status, 401) << url << " " << (headers.empty() ? "" : headers[0]);
    EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
  }
  // The JSON endpoints keep to the header.
  for (std::string path : {"/query/logs", "/query/stats", "/info"}) {
    EXPECT_EQ(http(base + path + "?token=s3cret-token").status, 401) << path;
    EXPECT_EQ(http(base + path, {"Cookie: devmesh_token=s3cret-token"}).status, 401) << path;
  }
  EXPECT_EQ(metric_value(http("http://" + metrics_at + "/metrics").body,
                         "devmesh_query_requests_total", "outcome=\"unauthorized\""),
            14)
      << "every refusal is counted";
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(20s), 0) << e->err();
  EXPECT_EQ(e->err().find("s3cret"), std::string::npos) << "the token must never be logged";
}

// docs/query-api.md against the parser: `devmesh --describe query` lists what the parsers' own
// tables accept (query_params.cpp); the server is asked that it does accept each of them, and
// the document must name each one in its endpoint's section.
TEST(QueryDocs, TheApiDocumentNamesEveryEndpointAndEveryParameterTheParserTakes) {
  std::string out, err;
  ASSERT_EQ(run({DEVMESH_BIN, "--describe", "query"}, ".", &out, &err), 0) << err;
  // GET endpoints with their parameters; POST ones with their body's fields.
  std::vector<std::pair<std::string, std::vector<std::string>>> api, post;
  std::vector<std::string> *fields = nullptr;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("    GET /", 0) == 0) {
      api.push_back({line.substr(8, line.find(' ', 8) - 8), {}});
      fields = &api.back().second;
    } else if (line.rfind("    POST /", 0) == 0) {
      post.push_back({line.substr(9, line.find(' ', 9) - 9), {}});
      fields = &post.back().second;
    } else if (fields && line.rfind("        ", 0) == 0 && line.find(':') != std::string::npos &&
               line[8] != '(') {
      fields->push_back(line.substr(8, line.find(':') - 8));
    } else if (line.rfind("  file:", 0) == 0) {
      break;
    }
  }
  // Every endpoint, and nothing undocumented (add a new endpoint here and to the document).
  const std::set<std::string> want = {"/query/logs",
                                      "/query/stats",
                                      "/query/histogram",
                                      "/query/patterns",
                                      "/query/patterns/{id}",
                                      "/query/context",
                                      "/tail",
                                      "/health",
                                      "/info"};
  std::set<std::string> got;
  for (const auto &e : api) got.insert(e.first);
  ASSERT_EQ(got, want) << out;
  std::set<std::string> got_post;
  for (const auto &e : post) got_post.insert(e.first);
  ASSERT_EQ(got_post,
            (std::set<std::string>{"/search/similar", "/search/semantic", "/explain/incident"}))
      << out;
  // The list is the parser's: each name is taken, and the unknown-parameter error lists them.
  TempDir d;
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  auto e = start_engine(d, plugins_head() +
                               "  inputs:\n    - {name: dummy, rate: 0.001}\n"
                               "  outputs:\n    - {name: query, match: none, listen: " +
                               listen + ", path: none.db}\n");
  ASSERT_TRUE(wait_until([&] { return http("http://" + listen + "/info").status == 200; }, 20s))
      << e->err();
  const std::string doc = read_file(std::string(DEVMESH_SOURCE_DIR) + "/docs/query-api.md");
  ASSERT_FALSE(doc.empty());
  for (const auto &[path, params] : api) {
    // A path segment in braces stands for a value: a well-formed one, so only the parameters
    // are refused.
    std::string url = path;
    if (const size_t brace = url.find("/{"); brace != std::string::npos)
      url = url.substr(0, brace) + "/0123456789abcdef";
    std::string listed;
    for (const auto &p : params) {
      HttpResponse r = http("http://" + listen + url + "?" + p + "=&zz_unknown=1");
      EXPECT_NE(r.body.find("unknown parameter 'zz_unknown'"), std::string::npos)
          << path << "?" << p << ": " << r.body;
      listed += (listed.empty() ? " " : ", ") + p;
    }
    HttpResponse r = http("http://" + listen + url + "?zz_unknown=1");
    EXPECT_NE(r.body.find(params.empty() ? path + " takes no parameters"
                                         : "valid for " + path + ":" + listed + ")"),
              std::string::npos)
        << r.body;
    // The endpoint's section: from its "## GET <path>" heading to the next "## ".
    const size_t at = doc.find("\n## GET " + path + "\n");
    ASSERT_NE(at, std::string::npos) << "no '## GET " << path << "' section";
    const std::string section = doc.substr(at, doc.find("\n## ", at + 1) - at);
    for (const auto &p : params)
      EXPECT_NE(section.find("| `" + p + "` |"), std::string::npos)
          << "docs/query-api.md, GET " << path << ": no table row for `" << p << "`";
  }
  // POST bodies: the unknown-field error lists the fields (checked before the endpoint's own
  // state, so it answers even with the model server off), and the document names each one.
  for (const auto &[path, params] : post) {
    std::string listed;
    for (const auto &p : params) listed += (listed.empty() ? " " : ", ") + p;
    HttpResponse r = http("http://" + listen + path, {"Content-Type: application/json"}, "POST",
                          "{\"zz_unknown\": 1}");
    EXPECT_EQ(r.status, 400) << path << ": " << r.body;
    EXPECT_NE(r.body.find("unknown field 'zz_unknown' (valid for " + path + ":" + listed + ")"),
              std::string::npos)
        << r.body;
    const size_t at = doc.find("\n## POST " + path + "\n");
    ASSERT_NE(at, std::string::npos) << "no '## POST " << path << "' section";
    const std::string section = doc.substr(at, doc.find("\n## ", at + 1) - at);
    for (const auto &p : params)
      EXPECT_NE(section.find("| `" + p + "` |"), std::string::npos)
          << "docs/query-api.md, POST " << path << ": no table row for `" << p << "`";
  }
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
