// The query plugin's SQLite backend: read-only connections (WAL lets them read while the sqlite
// output writes), pooled so each query thread uses its own, parameterised SQL only, and a
// statement time limit through the progress handler.
#include <sqlite3.h>

#include <chrono>
#include <mutex>
#include <vector>

#include <sqlite_schema.hpp>

#include "query_store.h"

namespace devmesh::query {
namespace {

namespace schema = sqlite_schema;

// Progress handler granularity: VM instructions between two deadline checks (~microseconds).
constexpr int kProgressSteps = 1000;

struct Bind {
  bool is_text;
  std::string text;
  int64_t number;
};

struct Conn {
  sqlite3 *db = nullptr;
  std::chrono::steady_clock::time_point deadline;
  ~Conn() { sqlite3_close(db); }
};

class SqliteStore : public QueryStore {
 public:
  explicit SqliteStore(const StoreSettings &s) : s_(s) {}

  ~SqliteStore() override {
    for (Conn *c : pool_) delete c;
  }

  bool query_logs(const LogQuery &q, RowSink &out, StoreError &err) override {
    Lease conn(this, err);
    if (!conn) return false;
    const std::string t = schema::quote_ident(s_.table);
    std::string sql =
        "SELECT id, timestamp, source, service, host, level, trace_id, span_id, event_type, "
        "error_code, message, meta_json FROM " +
        t + " WHERE 1";
    // Every value goes through a ? placeholder, bound in order.
    std::vector<Bind> binds;
    auto text = [&](const std::string &col, const std::string &v) {
      sql += " AND " + col + " = ?";
      binds.push_back({true, v, 0});
    };
    auto integer = [&](const std::string &cond, int64_t v) {
      sql += " AND " + cond;
      binds.push_back({false, {}, v});
    };
    if (q.service) text("service", *q.service);
    if (q.host) text("host", *q.host);
    if (q.trace_id) text("trace_id", *q.trace_id);
    // "+level": never drive the scan by the level index. A level holds a large share of the
    // rows, so walking it and sorting them all is slow (0.3 s for ERROR on 1M rows); walking the
    // timestamp index newest first and filtering finds a page at once (0.02 s). Measured in
    // tools/bench/store; the cost moves to levels that are nearly absent (a full index walk).
    if (q.level) text("+level", *q.level);
    if (!q.min_levels.empty()) {
      sql += " AND +level IN (";
      for (size_t i = 0; i < q.min_levels.size(); ++i) {
        sql += i ? ",?" : "?";
        binds.push_back({true, q.min_levels[i], 0});
      }
      sql += ")";
    }
    if (q.start_ns) integer("timestamp >= ?", *q.start_ns);
    if (q.end_ns) integer("timestamp <= ?", *q.end_ns);
    if (q.after) {
      // Row values: (timestamp, id) after the cursor in the query's order; the timestamp
      // indexes end with the rowid, so this is a range scan, not a filter.
      sql += q.descending ? " AND (timestamp, id) < (?, ?)" : " AND (timestamp, id) > (?, ?)";
      binds.push_back({false, {}, q.after->timestamp_ns});
      binds.push_back({false, {}, q.after->id});
    }
    if (!q.q_terms.empty()) {
      const std::string fts = schema::quote_ident(schema::fts_name(s_.table));
      if (!has_fts(conn->db)) {
        err = {StoreStatus::kBadParameter, "q",
               "bad parameter 'q': this store has no full-text index (sqlite full_text: false)"};
        return false;
      }
      // One FTS5 phrase of plain words: no operator, column filter or quote can reach MATCH.
      std::string phrase = "\"";
      for (size_t i = 0; i < q.q_terms.size(); ++i) phrase += (i ? " " : "") + q.q_terms[i];
      phrase += "\"";
      sql += " AND id IN (SELECT rowid FROM " + fts + " WHERE " + fts + " MATCH ?)";
      binds.push_back({true, phrase, 0});
    }
    sql += q.descending ? " ORDER BY timestamp DESC, id DESC" : " ORDER BY timestamp ASC, id ASC";
    sql += " LIMIT ?";
    binds.push_back({false, {}, static_cast<int64_t>(q.limit) + 1});

    sqlite3_stmt *st = prepare(*conn, sql, err);
    if (!st) return false;
    for (size_t i = 0; i < binds.size(); ++i) {
      const int at = static_cast<int>(i) + 1;
      if (binds[i].is_text)
        sqlite3_bind_text(st, at, binds[i].text.data(), static_cast<int>(binds[i].text.size()),
                          SQLITE_STATIC);
      else
        sqlite3_bind_int64(st, at, binds[i].number);
    }
    start_clock(*conn);
    LogRow r;
    int rc;
    auto col = [&](int i, std::string_view &v) {
      const auto *p = reinterpret_cast<const char *>(sqlite3_column_text(st, i));
      v = p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(st, i)))
            : std::string_view();
      return p != nullptr;
    };
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      r.id = sqlite3_column_int64(st, 0);
      r.timestamp_ns = sqlite3_column_int64(st, 1);
      col(2, r.source);
      col(3, r.service);
      col(4, r.host);
      col(5, r.level);
      r.has_trace_id = col(6, r.trace_id);
      r.has_span_id = col(7, r.span_id);
      r.has_event_type = col(8, r.event_type);
      r.has_error_code = col(9, r.error_code);
      col(10, r.message);
      r.has_meta_json = col(11, r.meta_json);
      out.row(r);
    }
    return finish(*conn, st, rc, err);
  }

  bool stats(const StatsQuery &q, StatsResult &out, StoreError &err) override {
    Lease conn(this, err);
    if (!conn) return false;
    const std::string t = schema::quote_ident(s_.table);
    // ?1: the window's start, ?3: its end when end_time= gave one.
    const std::string window = q.end_ns ? "timestamp >= ?1 AND timestamp <= ?3" : "timestamp >= ?1";
    auto bind_window = [&](sqlite3_stmt *st) {
      sqlite3_bind_int64(st, 1, q.since_ns);
      if (q.end_ns) sqlite3_bind_int64(st, 3, *q.end_ns);
    };
    // One read transaction: the total and the three breakdowns see the same snapshot.
    if (sqlite3_exec(conn->db, "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK)
      return fail(*conn, sqlite3_errcode(conn->db), err);
    start_clock(*conn);
    bool ok = true;
    {
      sqlite3_stmt *st = prepare(*conn, "SELECT count(*) FROM " + t + " WHERE " + window, err);
      ok = st != nullptr;
      if (ok) {
        bind_window(st);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) out.total = sqlite3_column_int64(st, 0);
        ok = finish(*conn, st, rc == SQLITE_ROW ? SQLITE_DONE : rc, err);
      }
    }
    for (auto [col, vec] : {std::pair{"service", &out.by_service},
                            std::pair{"level", &out.by_level}, std::pair{"host", &out.by_host}}) {
      if (!ok) break;
      sqlite3_stmt *st =
          prepare(*conn,
                  std::string("SELECT ") + col + ", count(*) AS n FROM " + t + " WHERE " + window +
                      " GROUP BY " + col + " ORDER BY n DESC, " + col + " LIMIT ?2",
                  err);
      if (!st) {
        ok = false;
        break;
      }
      bind_window(st);
      sqlite3_bind_int64(st, 2, q.top);
      int rc;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const auto *k = reinterpret_cast<const char *>(sqlite3_column_text(st, 0));
        vec->push_back({k ? std::string(k, static_cast<size_t>(sqlite3_column_bytes(st, 0))) : "",
                        sqlite3_column_int64(st, 1)});
      }
      ok = finish(*conn, st, rc, err);
    }
    sqlite3_exec(conn->db, "COMMIT", nullptr, nullptr, nullptr);
    return ok;
  }

  bool ping(std::string &why) override {
    StoreError err;
    Lease conn(this, err);
    if (!conn) {
      why = err.message;
      return false;
    }
    sqlite3_stmt *st =
        prepare(*conn, "SELECT 1 FROM " + schema::quote_ident(s_.table) + " LIMIT 1", err);
    if (!st) {
      why = err.message;
      return false;
    }
    start_clock(*conn);
    int rc = sqlite3_step(st);
    if (!finish(*conn, st, rc == SQLITE_ROW ? SQLITE_DONE : rc, err)) {
      why = err.message;
      return false;
    }
    return true;
  }

  std::string describe() const override { return "sqlite " + s_.path + " table " + s_.table; }

 private:
  // A pooled connection for the duration of one call.
  class Lease {
   public:
    Lease(SqliteStore *s, StoreError &err) : s_(s), c_(s->acquire(err)) {}
    ~Lease() {
      if (c_) s_->release(c_);
    }
    explicit operator bool() const { return c_ != nullptr; }
    Conn *operator->() const { return c_; }
    Conn &operator*() const { return *c_; }

   private:
    SqliteStore *s_;
    Conn *c_;
  };

  Conn *acquire(StoreError &err) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!pool_.empty()) {
        Conn *c = pool_.back();
        pool_.pop_back();
        return c;
      }
    }
    auto *c = new Conn;
    // Read-only: the query side can never change the store, whatever a request holds. Opening
    // never creates the file: before the output made it, queries answer 503.
    int rc = sqlite3_open_v2(s_.path.c_str(), &c->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                             nullptr);
    if (rc != SQLITE_OK) {
      err = {
          StoreStatus::kUnavailable, "",
          "cannot open " + s_.path + ": " + (c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc))};
      delete c;
      return nullptr;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, static_cast<int>(std::min<int64_t>(s_.statement_timeout_ms, 5000)));
    sqlite3_progress_handler(
        c->db, kProgressSteps,
        [](void *p) {
          return std::chrono::steady_clock::now() > static_cast<Conn *>(p)->deadline ? 1 : 0;
        },
        c);
    return c;
  }

  void release(Conn *c) {
    std::lock_guard<std::mutex> lk(mu_);
    pool_.push_back(c);
  }

  void start_clock(Conn &c) {
    c.deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(s_.statement_timeout_ms);
  }

  bool has_fts(sqlite3 *db) { return schema::table_exists(db, schema::fts_name(s_.table)); }

  sqlite3_stmt *prepare(Conn &c, const std::string &sql, StoreError &err) {
    sqlite3_stmt *st = nullptr;
    start_clock(c);
    int rc = sqlite3_prepare_v2(c.db, sql.c_str(), static_cast<int>(sql.size()), &st, nullptr);
    if (rc != SQLITE_OK) {
      fail(c, rc, err);
      sqlite3_finalize(st);
      return nullptr;
    }
    return st;
  }

  bool finish(Conn &c, sqlite3_stmt *st, int rc, StoreError &err) {
    sqlite3_finalize(st);
    return rc == SQLITE_DONE || fail(c, rc, err);
  }

  // Maps a failure to what the client is told; always false.
  bool fail(Conn &c, int rc, StoreError &err) {
    const std::string msg = sqlite3_errmsg(c.db);
    switch (rc & 0xff) {
      case SQLITE_INTERRUPT:
        err = {StoreStatus::kTimeout, "",
               "the query took longer than statement_timeout (" +
                   std::to_string(s_.statement_timeout_ms) +
                   " ms); narrow the time range or add service/host"};
        break;
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
      case SQLITE_CANTOPEN:
      case SQLITE_IOERR:
      case SQLITE_NOMEM:
      case SQLITE_FULL:
        err = {StoreStatus::kUnavailable, "", "sqlite " + s_.path + ": " + msg};
        break;
      default:
        // "no such table" before the output created it is the common case here.
        err = {
            msg.rfind("no such table", 0) == 0 ? StoreStatus::kUnavailable : StoreStatus::kFailed,
            "", "sqlite " + s_.path + ": " + msg};
    }
    return false;
  }

  StoreSettings s_;
  std::mutex mu_;
  std::vector<Conn *> pool_;  // idle connections
};

}  // namespace

std::unique_ptr<QueryStore> make_sqlite_store(const StoreSettings &settings, std::string &error) {
  if (!schema::valid_identifier(settings.table)) {
    error = "table: '" + settings.table + "' is not a plain identifier";
    return nullptr;
  }
  return std::make_unique<SqliteStore>(settings);
}

}  // namespace devmesh::query
