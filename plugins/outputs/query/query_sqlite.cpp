// The query plugin's SQLite backend: read-only connections (WAL lets them read while the sqlite
// output writes), pooled so each query thread uses its own, parameterised SQL only, and a
// statement time limit through the progress handler. Patterns: the rows' pattern_id column and
// the patterns table the sqlite output writes beside the rows (both absent from a table made by
// an earlier release, which then answers no patterns).
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <unordered_map>
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
  // Learnt once true (a column or table is never dropped under a running store); while false,
  // asked again at every call, so a store upgraded by the output is seen without a restart.
  bool has_pattern_column = false, has_patterns_table = false;
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
    start_clock(*conn);  // the checks below run statements too: never under a past deadline
    const bool patterns = pattern_column(*conn);
    // A table made before the column: its rows have no pattern, so none matches pattern_id=.
    if (q.pattern_id && !patterns) return true;
    std::string sql =
        "SELECT id, timestamp, source, service, host, level, trace_id, span_id, event_type, "
        "error_code, message, meta_json" +
        std::string(patterns ? ", pattern_id" : "") + " FROM " + t + " WHERE 1";
    std::vector<Bind> binds;
    if (!log_filters(*conn, q, sql, binds, err)) return false;
    sql += q.descending ? " ORDER BY timestamp DESC, id DESC" : " ORDER BY timestamp ASC, id ASC";
    sql += " LIMIT ?";
    binds.push_back({false, {}, static_cast<int64_t>(q.limit) + 1});

    sqlite3_stmt *st = prepare(*conn, sql, err);
    if (!st) return false;
    bind_all(st, binds);
    start_clock(*conn);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) out.row(read_row(st, patterns));
    return finish(*conn, st, rc, err);
  }

  // Appends q's filters to `sql` (which ends in a WHERE clause) as " AND ..." conditions, their
  // values to `binds` in placeholder order (every value goes through a ? placeholder). False
  // with err when q asks what the store lacks.
  bool log_filters(Conn &conn, const LogQuery &q, std::string &sql, std::vector<Bind> &binds,
                   StoreError &err) {
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
    // The (pattern_id, timestamp, id, level) index gives this pattern's rows in the keyset order.
    if (q.pattern_id) integer("pattern_id = ?", static_cast<int64_t>(*q.pattern_id));
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
      if (!has_fts(conn.db)) {
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
    return true;
  }

  bool histogram(const HistogramQuery &h, std::vector<LevelBucket> &out, StoreError &err) override {
    out.clear();
    Lease conn(this, err);
    if (!conn) return false;
    start_clock(*conn);
    const LogQuery &q = h.filters;
    if (q.pattern_id && !pattern_column(*conn)) return true;
    // The bucket: the offset into the window divided by the step; min() puts the window's last
    // instant, when the step divides the window, into the last bucket.
    std::string sql = "SELECT min((timestamp - ?) / ?, ?) AS b, level, count(*) FROM " +
                      schema::quote_ident(s_.table) + " WHERE 1";
    std::vector<Bind> binds = {{false, {}, *q.start_ns},
                               {false, {}, h.step_ns},
                               {false, {}, static_cast<int64_t>(h.buckets) - 1}};
    if (!log_filters(*conn, q, sql, binds, err)) return false;
    sql += " GROUP BY b, level";
    sqlite3_stmt *st = prepare(*conn, sql, err);
    if (!st) return false;
    bind_all(st, binds);
    start_clock(*conn);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const auto *level = reinterpret_cast<const char *>(sqlite3_column_text(st, 1));
      out.push_back({static_cast<uint32_t>(sqlite3_column_int64(st, 0)),
                     level ? std::string(level, static_cast<size_t>(sqlite3_column_bytes(st, 1)))
                           : std::string(),
                     sqlite3_column_int64(st, 2)});
    }
    return finish(*conn, st, rc, err);
  }

  static void bind_all(sqlite3_stmt *st, const std::vector<Bind> &binds) {
    for (size_t i = 0; i < binds.size(); ++i) {
      const int at = static_cast<int>(i) + 1;
      if (binds[i].is_text)
        sqlite3_bind_text(st, at, binds[i].text.data(), static_cast<int>(binds[i].text.size()),
                          SQLITE_STATIC);
      else
        sqlite3_bind_int64(st, at, binds[i].number);
    }
  }

  bool patterns(const PatternsQuery &q, std::vector<PatternSummary> &out,
                StoreError &err) override {
    out.clear();
    Lease conn(this, err);
    if (!conn) return false;
    start_clock(*conn);
    if (!pattern_column(*conn) || !patterns_table(*conn)) return true;
    Snapshot snap(*conn);
    std::vector<PatternSummary> found;
    if (!count_patterns(*conn, q, found, err)) return false;
    // The window's order: count descending, ties by id (as 16 hex digits, unsigned).
    std::sort(found.begin(), found.end(), [](const PatternSummary &a, const PatternSummary &b) {
      return a.count != b.count ? a.count > b.count : a.id < b.id;
    });
    if (found.size() > q.limit) found.resize(q.limit);
    // The patterns table's side, for the ones kept only.
    Statement info(this, *conn, pattern_info_sql(), err);
    if (!info) return false;
    for (PatternSummary &p : found) {
      bool in_table = false;
      if (!read_pattern_info(info, p.id, p, in_table)) return false;
    }
    for (PatternSummary &p : found) {
      if (q.with_sample && !read_sample(*conn, q, p, err)) return false;
      if (q.max_hosts && !read_hosts(*conn, q, p, err)) return false;
    }
    out = std::move(found);
    return true;
  }

  bool pattern_minutes(uint64_t id, int64_t start_ns, int64_t end_ns, PatternSummary &info,
                       bool &found, std::vector<MinuteCount> &out, StoreError &err) override {
    found = false;
    out.clear();
    Lease conn(this, err);
    if (!conn) return false;
    start_clock(*conn);
    if (!pattern_column(*conn) || !patterns_table(*conn)) return true;
    Snapshot snap(*conn);
    {
      Statement st(this, *conn, pattern_info_sql(), err);
      if (!st || !read_pattern_info(st, id, info, found)) return false;
    }
    if (!found) return true;
    // The (pattern_id, timestamp, id, level) index gives the timestamps in order (no row is read),
    // so the minutes fill one after the other here, with no GROUP BY and its temporary b-tree.
    Statement st(this, *conn,
                 "SELECT timestamp FROM " + table() +
                     " WHERE pattern_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3"
                     " ORDER BY timestamp",
                 err);
    if (!st) return false;
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(id));
    sqlite3_bind_int64(st, 2, start_ns);
    sqlite3_bind_int64(st, 3, end_ns);
    constexpr int64_t kMinuteNs = int64_t{60} * 1000000000;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const int64_t at = sqlite3_column_int64(st, 0);
      const int64_t minute =
          at - ((at % kMinuteNs) + kMinuteNs) % kMinuteNs;  // floor, pre-1970 too
      if (out.empty() || out.back().minute_ns != minute) out.push_back({minute, 0});
      ++out.back().count;
    }
    return st.finish(rc);
  }

  bool templates(const TemplatesQuery &q, std::vector<PatternSummary> &out,
                 StoreError &err) override {
    out.clear();
    Lease conn(this, err);
    if (!conn) return false;
    start_clock(*conn);
    if (!patterns_table(*conn)) return true;
    std::string sql = "SELECT id, service, template, first_seen, last_seen, count FROM " +
                      patterns_name() + " WHERE 1";
    if (q.service) sql += " AND service = ?1";
    if (q.seen_since_ns) sql += " AND last_seen >= ?2";
    sql += " ORDER BY last_seen DESC, id LIMIT ?3";
    Statement st(this, *conn, sql, err);
    if (!st) return false;
    if (q.service)
      sqlite3_bind_text(st, 1, q.service->data(), static_cast<int>(q.service->size()),
                        SQLITE_STATIC);
    if (q.seen_since_ns) sqlite3_bind_int64(st, 2, *q.seen_since_ns);
    sqlite3_bind_int64(st, 3, q.limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      PatternSummary p;
      read_pattern_columns(st, p);
      out.push_back(std::move(p));
    }
    return st.finish(rc);
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

  // A prepared statement for one call, finalized at the end of its scope. Prepared without
  // restarting the call's clock: a call's statements share one statement_timeout.
  class Statement {
   public:
    Statement(SqliteStore *s, Conn &c, const std::string &sql, StoreError &err)
        : s_(s), c_(c), err_(err) {
      if (sqlite3_prepare_v2(c.db, sql.c_str(), static_cast<int>(sql.size()), &st_, nullptr) !=
          SQLITE_OK) {
        s_->fail(c_, sqlite3_errcode(c.db), err_);
        sqlite3_finalize(st_);
        st_ = nullptr;
      }
    }
    ~Statement() { sqlite3_finalize(st_); }
    Statement(const Statement &) = delete;
    Statement &operator=(const Statement &) = delete;
    explicit operator bool() const { return st_ != nullptr; }
    operator sqlite3_stmt *() const { return st_; }
    // After the last step: true when it ended well, else `err` set.
    bool finish(int rc) {
      sqlite3_reset(st_);
      return rc == SQLITE_DONE || s_->fail(c_, rc, err_);
    }

   private:
    SqliteStore *s_;
    Conn &c_;
    StoreError &err_;
    sqlite3_stmt *st_ = nullptr;
  };

  // One read transaction for a call's statements: counts, table rows and samples agree.
  class Snapshot {
   public:
    explicit Snapshot(Conn &c) : c_(c) {
      ok_ = sqlite3_exec(c.db, "BEGIN", nullptr, nullptr, nullptr) == SQLITE_OK;
    }
    ~Snapshot() {
      if (ok_) sqlite3_exec(c_.db, "COMMIT", nullptr, nullptr, nullptr);
    }

   private:
    Conn &c_;
    bool ok_;
  };

  std::string table() const { return schema::quote_ident(s_.table); }
  std::string patterns_name() const {
    return schema::quote_ident(schema::patterns_table(s_.table));
  }

  bool pattern_column(Conn &c) {
    if (!c.has_pattern_column)
      c.has_pattern_column = schema::column_exists(c.db, s_.table, "pattern_id");
    return c.has_pattern_column;
  }
  bool patterns_table(Conn &c) {
    if (!c.has_patterns_table)
      c.has_patterns_table = schema::table_exists(c.db, schema::patterns_table(s_.table));
    return c.has_patterns_table;
  }

  static bool text_column(sqlite3_stmt *st, int i, std::string_view &v) {
    const auto *p = reinterpret_cast<const char *>(sqlite3_column_text(st, i));
    v = p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(st, i)))
          : std::string_view();
    return p != nullptr;
  }

  // A row of kRowColumns (plus pattern_id when `with_pattern`); views into the statement.
  static LogRow read_row(sqlite3_stmt *st, bool with_pattern) {
    LogRow r;
    r.id = sqlite3_column_int64(st, 0);
    r.timestamp_ns = sqlite3_column_int64(st, 1);
    text_column(st, 2, r.source);
    text_column(st, 3, r.service);
    text_column(st, 4, r.host);
    text_column(st, 5, r.level);
    r.has_trace_id = text_column(st, 6, r.trace_id);
    r.has_span_id = text_column(st, 7, r.span_id);
    r.has_event_type = text_column(st, 8, r.event_type);
    r.has_error_code = text_column(st, 9, r.error_code);
    text_column(st, 10, r.message);
    r.has_meta_json = text_column(st, 11, r.meta_json);
    if (with_pattern && sqlite3_column_type(st, 12) != SQLITE_NULL) {
      r.has_pattern_id = true;
      r.pattern_id = static_cast<uint64_t>(sqlite3_column_int64(st, 12));
    }
    return r;
  }

  // The row filters of a PatternsQuery other than the window, as SQL with ?NNN placeholders
  // from `first` on, and their binding.
  struct RowFilter {
    std::string sql;
    std::vector<std::string> values;
    void bind(sqlite3_stmt *st, int first) const {
      for (size_t i = 0; i < values.size(); ++i)
        sqlite3_bind_text(st, first + static_cast<int>(i), values[i].data(),
                          static_cast<int>(values[i].size()), SQLITE_STATIC);
    }
  };
  // by_level: the level condition may drive the scan (the level index), nothing else may.
  static RowFilter row_filter(const PatternsQuery &q, bool with_service, int first,
                              bool by_level = false) {
    RowFilter f;
    const std::string level = by_level ? "level" : "+level";
    auto add = [&](const std::string &cond, const std::string &v) {
      f.sql += " AND " + cond + "?" + std::to_string(first + static_cast<int>(f.values.size()));
      f.values.push_back(v);
    };
    if (with_service && q.service) add(by_level ? "+service = " : "service = ", *q.service);
    if (q.host) add(by_level ? "+host = " : "host = ", *q.host);
    if (q.level) add(level + " = ", *q.level);
    if (!q.min_levels.empty()) {
      f.sql += " AND " + level + " IN (";
      for (size_t i = 0; i < q.min_levels.size(); ++i) {
        f.sql += (i ? ",?" : "?") + std::to_string(first + static_cast<int>(f.values.size()));
        f.values.push_back(q.min_levels[i]);
      }
      f.sql += ")";
    }
    return f;
  }

  // The patterns that may have rows in the window, from the patterns table (the sqlite output
  // writes a pattern's row in the transaction of its records, and retention keeps it while any
  // of them is kept): its seen range must meet the window. With service= and new=1 applied, as
  // they are the table's columns (a pattern's records all have its service: the id hashes the
  // service with the template).
  bool candidates(Conn &c, const PatternsQuery &q, std::vector<int64_t> &ids, StoreError &err) {
    std::string sql =
        "SELECT id FROM " + patterns_name() + " WHERE first_seen <= ?2 AND last_seen >= ?1";
    if (q.only_new) sql += " AND first_seen >= ?1";
    if (q.service) sql += " AND service = ?3";
    Statement st(this, c, sql, err);
    if (!st) return false;
    sqlite3_bind_int64(st, 1, q.start_ns);
    sqlite3_bind_int64(st, 2, q.end_ns);
    if (q.service)
      sqlite3_bind_text(st, 3, q.service->data(), static_cast<int>(q.service->size()),
                        SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const int64_t id = sqlite3_column_int64(st, 0);
      if (q.ids.empty() ||
          std::find(q.ids.begin(), q.ids.end(), static_cast<uint64_t>(id)) != q.ids.end())
        ids.push_back(id);
    }
    if (!st.finish(rc)) return false;
    std::sort(ids.begin(), ids.end());
    return true;
  }

  // Each candidate pattern's count and first and last occurrence in the window (no table
  // fields yet); patterns without rows there are left out.
  bool count_patterns(Conn &c, const PatternsQuery &q, std::vector<PatternSummary> &out,
                      StoreError &err) {
    std::vector<int64_t> ids;
    if (!candidates(c, q, ids, err)) return false;
    if (ids.empty()) return true;
    auto add = [&](sqlite3_stmt *st, int64_t id, int first_col) {
      PatternSummary p;
      p.id = static_cast<uint64_t>(id);
      p.count = sqlite3_column_int64(st, first_col);
      p.first_ns = sqlite3_column_int64(st, first_col + 1);
      p.last_ns = sqlite3_column_int64(st, first_col + 2);
      if (p.count) out.push_back(std::move(p));
    };
    // host is not in the (pattern_id, timestamp, id, level) index: only the rows have it.
    bool read_rows = q.host.has_value(), by_level = false;
    if (!read_rows) {
      // A window holding few rows for its number of patterns: reading its rows costs less than
      // one index range per pattern (about kRowsPerRange rows' worth each, measured on 1M rows).
      constexpr int64_t kRowsPerRange = 8;
      const int64_t enough = kRowsPerRange * static_cast<int64_t>(ids.size());
      Statement probe(this, c,
                      "SELECT count(*) FROM (SELECT 1 FROM " + table() +
                          " WHERE timestamp >= ?1 AND timestamp <= ?2 LIMIT ?3)",
                      err);
      if (!probe) return false;
      sqlite3_bind_int64(probe, 1, q.start_ns);
      sqlite3_bind_int64(probe, 2, q.end_ns);
      sqlite3_bind_int64(probe, 3, enough);
      int rc = sqlite3_step(probe);
      if (rc != SQLITE_ROW) return probe.finish(rc);
      read_rows = sqlite3_column_int64(probe, 0) < enough;
      if (!probe.finish(SQLITE_DONE)) return false;
    }
    if (!read_rows && !q.service && (q.level || !q.min_levels.empty())) {
      // Levels with few rows in the whole table for the window's size: their rows, by the level
      // index, cost less than the window's pattern index entries, about ten entries a row (on
      // a day of 1M rows, 10% of them ERROR: 82 ms by the level index, 104 ms for the index
      // entries of the whole day). The window's size from the ids of its first and last rows
      // (two seeks: rows arrive roughly in time order, and a wrong guess costs time, never a
      // wrong answer); the levels' rows counted on their index, up to a tenth of that.
      constexpr int64_t kSmallWindow = 4096;
      int64_t first_id = 0, last_id = 0, level_rows = 0;
      if (!window_edge(c, q, true, first_id, err) || !window_edge(c, q, false, last_id, err))
        return false;
      const int64_t tenth = (last_id - first_id + 1) / 10;
      if (tenth > kSmallWindow / 10) {
        const RowFilter lf = row_filter(q, false, 3, true);
        if (!capped_count(c, lf.sql.substr(5), q, tenth, level_rows, err, &lf)) return false;
        by_level = level_rows < tenth;
        read_rows = read_rows || by_level;
      }
    }
    if (read_rows) {
      // One pass over the window's rows (that match the filters), by whichever index the
      // planner finds narrowest ((host, timestamp), (service, timestamp) or timestamp), or by
      // the level index (by_level, above).
      const RowFilter f = row_filter(q, true, 3, by_level);
      const std::string ts = by_level ? "+timestamp" : "timestamp";
      // Counted here, not by GROUP BY: its temporary b-tree costs more than reading the rows
      // (800k matching rows of 1M: 0.6 s of CPU with it).
      Statement st(this, c,
                   "SELECT pattern_id, timestamp FROM " + table() +
                       " WHERE pattern_id IS NOT NULL AND " + ts + " >= ?1 AND " + ts + " <= ?2" +
                       f.sql,
                   err);
      if (!st) return false;
      sqlite3_bind_int64(st, 1, q.start_ns);
      sqlite3_bind_int64(st, 2, q.end_ns);
      f.bind(st, 3);
      std::unordered_map<int64_t, PatternSummary> by_id;
      int rc;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const int64_t id = sqlite3_column_int64(st, 0), at = sqlite3_column_int64(st, 1);
        PatternSummary &p = by_id[id];
        if (!p.count++) {
          p.id = static_cast<uint64_t>(id);
          p.first_ns = p.last_ns = at;
        }
        p.first_ns = std::min(p.first_ns, at);
        p.last_ns = std::max(p.last_ns, at);
      }
      if (!st.finish(rc)) return false;
      for (auto &[id, p] : by_id)
        if (std::binary_search(ids.begin(), ids.end(), id)) out.push_back(std::move(p));
      return true;
    }
    // No filter outside the (pattern_id, timestamp, id, level) index: it alone answers, one
    // range of it per pattern, its entries of other levels skipped there ("+level": never by
    // the level index). Only the window's index entries are walked; the rows are never read.
    const RowFilter f = row_filter(q, false, 4);
    Statement st(this, c,
                 "SELECT count(*), min(timestamp), max(timestamp) FROM " + table() +
                     " WHERE pattern_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3" + f.sql,
                 err);
    if (!st) return false;
    sqlite3_bind_int64(st, 2, q.start_ns);
    sqlite3_bind_int64(st, 3, q.end_ns);
    f.bind(st, 4);
    for (int64_t id : ids) {
      sqlite3_bind_int64(st, 1, id);
      int rc = sqlite3_step(st);
      if (rc != SQLITE_ROW) return st.finish(rc);
      add(st, id, 0);
      sqlite3_reset(st);
    }
    return true;
  }

  // The rows matching `where` (its ?1 and ?2 the window, ?3... the filter f's), counted up to
  // `cap` only: the index that `where` leads to is walked, never more than cap entries of it.
  bool capped_count(Conn &c, const std::string &where, const PatternsQuery &q, int64_t cap,
                    int64_t &n, StoreError &err, const RowFilter *f = nullptr) {
    const int cap_at = 3 + static_cast<int>(f ? f->values.size() : 0);
    Statement st(this, c,
                 "SELECT count(*) FROM (SELECT 1 FROM " + table() + " WHERE " + where + " LIMIT ?" +
                     std::to_string(cap_at) + ")",
                 err);
    if (!st) return false;
    if (!f) {
      sqlite3_bind_int64(st, 1, q.start_ns);
      sqlite3_bind_int64(st, 2, q.end_ns);
    } else {
      f->bind(st, 3);
    }
    sqlite3_bind_int64(st, cap_at, cap);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) return st.finish(rc);
    n = sqlite3_column_int64(st, 0);
    return st.finish(SQLITE_DONE);
  }

  // The id of the window's first (or last) row by time; 0 when the window is empty.
  bool window_edge(Conn &c, const PatternsQuery &q, bool first, int64_t &id, StoreError &err) {
    const char *order =
        first ? " ORDER BY timestamp ASC, id ASC" : " ORDER BY timestamp DESC, id DESC";
    Statement st(this, c,
                 "SELECT id FROM " + table() + " WHERE timestamp >= ?1 AND timestamp <= ?2" +
                     order + " LIMIT 1",
                 err);
    if (!st) return false;
    sqlite3_bind_int64(st, 1, q.start_ns);
    sqlite3_bind_int64(st, 2, q.end_ns);
    int rc = sqlite3_step(st);
    id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    return st.finish(rc == SQLITE_ROW ? SQLITE_DONE : rc);
  }

  std::string pattern_info_sql() const {
    return "SELECT id, service, template, first_seen, last_seen, count FROM " + patterns_name() +
           " WHERE id = ?1";
  }

  static void read_pattern_columns(sqlite3_stmt *st, PatternSummary &p) {
    p.id = static_cast<uint64_t>(sqlite3_column_int64(st, 0));
    std::string_view v;
    if (text_column(st, 1, v)) p.service = v;
    p.has_template = text_column(st, 2, v);
    if (p.has_template) p.template_text = v;
    p.first_seen_ns = sqlite3_column_int64(st, 3);
    p.last_seen_ns = sqlite3_column_int64(st, 4);
    p.total_count = sqlite3_column_int64(st, 5);
  }

  // The patterns table's row of `id` into p (left as it is, `found` false, when there is none).
  static bool read_pattern_info(Statement &st, uint64_t id, PatternSummary &p, bool &found) {
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(id));
    int rc = sqlite3_step(st);
    found = rc == SQLITE_ROW;
    if (found) {
      const int64_t count = p.count, first = p.first_ns, last = p.last_ns;
      read_pattern_columns(st, p);
      p.count = count, p.first_ns = first, p.last_ns = last;
      rc = SQLITE_DONE;
    }
    return st.finish(rc);
  }

  // The pattern's newest row in the window that passes the filters: at last_ns, which the count
  // found (so a pattern whose matching rows are rare is not walked back from the window's end).
  bool read_sample(Conn &c, const PatternsQuery &q, PatternSummary &p, StoreError &err) {
    const RowFilter f = row_filter(q, true, 4);
    Statement st(this, c,
                 "SELECT id, timestamp, source, service, host, level, trace_id, span_id, "
                 "event_type, error_code, message, meta_json, pattern_id FROM " +
                     table() + " WHERE pattern_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3" +
                     f.sql + " ORDER BY timestamp DESC, id DESC LIMIT 1",
                 err);
    if (!st) return false;
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(p.id));
    sqlite3_bind_int64(st, 2, p.last_ns);
    sqlite3_bind_int64(st, 3, p.last_ns);
    f.bind(st, 4);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      p.sample = StoredRow::from(read_row(st, true));
      rc = SQLITE_DONE;
    }
    return st.finish(rc);
  }

  // Up to max_hosts hosts among the pattern's newest kHostRows rows of the window: bounded, so
  // a pattern with a million rows costs what one with a thousand does (a host seen only in
  // its older rows may be left out).
  bool read_hosts(Conn &c, const PatternsQuery &q, PatternSummary &p, StoreError &err) {
    constexpr int kHostRows = 10000;
    const RowFilter f = row_filter(q, true, 5);
    Statement st(this, c,
                 "SELECT host FROM (SELECT host FROM " + table() +
                     " WHERE pattern_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3" + f.sql +
                     " ORDER BY timestamp DESC LIMIT " + std::to_string(kHostRows) +
                     ") GROUP BY host ORDER BY count(*) DESC, host LIMIT ?4",
                 err);
    if (!st) return false;
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(p.id));
    sqlite3_bind_int64(st, 2, q.start_ns);
    sqlite3_bind_int64(st, 3, q.end_ns);
    sqlite3_bind_int64(st, 4, q.max_hosts);
    f.bind(st, 5);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      std::string_view h;
      text_column(st, 0, h);
      p.hosts.emplace_back(h);
    }
    return st.finish(rc);
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
