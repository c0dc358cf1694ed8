// The query plugin's MariaDB backend: pooled connections (one per concurrent call), prepared
// statements cached per connection, every value bound, and a per-statement time limit
// (SET STATEMENT max_statement_time ... FOR SELECT). Patterns: the rows' pattern_id column and
// the patterns table the mariadb output writes beside the rows (both absent from a table made by
// an earlier release, which then answers no patterns).
#include <algorithm>
#include <chrono>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <mariadb_connection.hpp>

#include "query_store.h"

namespace devmesh::query {
namespace {

constexpr unsigned kStatementTimeout = 1969;  // ER_STATEMENT_TIMEOUT
constexpr unsigned kNoFullTextIndex = 1191;   // ER_FT_MATCHING_KEY_NOT_FOUND
// What InnoDB's full-text search reports when max_statement_time interrupts it (the handler
// error HA_ERR_FTS_EXCEED_RESULT_CACHE_LIMIT, also its answer to a result past its cache).
constexpr unsigned kFullTextInterrupted = 188;
constexpr size_t kMaxCachedStatements = 64;  // per connection; SQL varies only by filters used

// InnoDB's defaults: innodb_ft_min_token_size, innodb_ft_max_token_size and its built-in
// stopword list (information_schema.INNODB_FT_DEFAULT_STOPWORD).
constexpr size_t kMinToken = 3, kMaxToken = 84;
constexpr int64_t kNarrowWindowNs = int64_t{24} * 3600 * 1000000000;
const char *const kStopwords[] = {
    "a",    "about", "an",  "are",  "as",   "at",    "be",  "by",   "com",  "de",  "en",   "for",
    "from", "how",   "i",   "in",   "is",   "it",    "la",  "of",   "on",   "or",  "that", "the",
    "this", "to",    "was", "what", "when", "where", "who", "will", "with", "und", "www"};

// Whether InnoDB's full-text index holds this word (length in characters, not bytes).
bool indexable(const std::string &word) {
  size_t chars = 0;
  for (unsigned char c : word) chars += (c & 0xC0) != 0x80;
  if (chars < kMinToken || chars > kMaxToken) return false;
  std::string lower = word;
  for (char &c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const char *s : kStopwords)
    if (lower == s) return false;
  return true;
}

// One bound value of a statement.
struct Param {
  enum Kind { kText, kInt, kTime } kind;
  std::string text;
  long long number = 0;
  MYSQL_TIME time{};
};

Param text(std::string v) {
  return Param{Param::kText, std::move(v), 0, {}};
}
Param integer(long long v) {
  return Param{Param::kInt, {}, v, {}};
}
// DATETIME(6) keeps microseconds: a lower bound rounds up and an upper bound down, so the
// comparison means the same as on the nanosecond value.
Param time_at(int64_t ns, bool round_up) {
  int64_t us = ns / 1000, rem = ns % 1000;
  if (rem < 0) rem += 1000, --us;  // floor
  if (round_up && rem) ++us;
  Param p{Param::kTime, {}, 0, {}};
  mariadb::to_mysql_time(us * 1000, p.time);
  return p;
}

// A result column's kind, in select order.
enum class Out { kInt, kTime, kText };

// The columns of a /query/logs row, in read_row's order (then pattern_id when the table has it).
constexpr const char *kRowColumns =
    "id, timestamp, source, service, host, level, trace_id, span_id, event_type, error_code, "
    "message, meta_json";

std::vector<Out> row_columns(bool with_pattern) {
  std::vector<Out> cols = {Out::kInt,  Out::kTime, Out::kText, Out::kText, Out::kText, Out::kText,
                           Out::kText, Out::kText, Out::kText, Out::kText, Out::kText, Out::kText};
  if (with_pattern) cols.push_back(Out::kInt);
  return cols;
}

// How often a connection looks again for a pattern_id column or patterns table it did not find
// (the mariadb output adds them at its start, which may come after ours).
constexpr auto kSchemaRecheck = std::chrono::seconds(5);
// Ids per IN (...) list; a shorter list repeats its last id, so the statement text (and its
// cached prepared statement) is one of a few.
constexpr size_t kIdsPerStatement = 64;
// read_hosts looks at a pattern's newest rows only, so its cost is bounded.
constexpr int kHostRows = 10000;

struct Conn {
  mariadb::Conn m;
  std::unordered_map<std::string, MYSQL_STMT *> stmts;
  bool checked = false, has_pattern_column = false, has_patterns_table = false;
  std::chrono::steady_clock::time_point checked_at;
  ~Conn() {
    for (auto &[sql, st] : stmts) mysql_stmt_close(st);
  }
};

// Result buffers of one fetch, reused across rows.
struct ResultRow {
  std::vector<MYSQL_BIND> bind;
  std::vector<long long> ints;
  std::vector<MYSQL_TIME> times;
  std::vector<std::vector<char>> texts;
  std::vector<unsigned long> lens;
  std::vector<my_bool> nulls;

  std::string_view text_at(size_t i) const { return std::string_view(texts[i].data(), lens[i]); }
};

class MariaDbStore : public QueryStore {
 public:
  MariaDbStore(const StoreSettings &s, mariadb::Settings conn)
      : s_(s),
        conn_(std::move(conn)),
        table_("`" + s.table + "`"),
        patterns_("`" + mariadb::patterns_table(s.table) + "`") {
    char buf[64];
    std::snprintf(buf, sizeof buf, "SET STATEMENT max_statement_time=%.3f FOR ",
                  static_cast<double>(s.statement_timeout_ms) / 1000.0);
    timed_ = buf;
  }

  ~MariaDbStore() override {
    for (Conn *c : pool_) delete c;
  }

  bool query_logs(const LogQuery &q, RowSink &out, StoreError &err) override {
    Lease c(this, err);
    if (!c || !detect(c, err)) return false;
    const bool patterns = c->has_pattern_column;
    // A table made before the column: its rows have no pattern, so none matches pattern_id=.
    if (q.pattern_id && !patterns) return true;
    std::string sql =
        timed_ + "SELECT " + kRowColumns + (patterns ? ", pattern_id" : "") + " FROM " + table_;
    std::vector<Param> params;
    sql += log_where(q, params);
    sql += q.descending ? " ORDER BY timestamp DESC, id DESC" : " ORDER BY timestamp ASC, id ASC";
    sql += " LIMIT ?";
    params.push_back(integer(static_cast<long long>(q.limit) + 1));

    return c.run(sql, params, row_columns(patterns), err,
                 [&](const ResultRow &row) { out.row(read_row(row, patterns)); });
  }

  // q's filters as " WHERE ..." (empty without any), their values appended to `params` in
  // placeholder order.
  std::string log_where(const LogQuery &q, std::vector<Param> &params) {
    std::string where;
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    if (q.service) cond("service = ?"), params.push_back(text(*q.service));
    // The (pattern_id, timestamp, id, level) index gives this pattern's rows in the keyset order.
    if (q.pattern_id)
      cond("pattern_id = ?"), params.push_back(integer(static_cast<long long>(*q.pattern_id)));
    if (q.host) cond("host = ?"), params.push_back(text(*q.host));
    if (q.trace_id) cond("trace_id = ?"), params.push_back(text(*q.trace_id));
    if (q.level) cond("level = ?"), params.push_back(text(*q.level));
    if (!q.min_levels.empty()) {
      std::string in = "level IN (";
      for (size_t i = 0; i < q.min_levels.size(); ++i) {
        in += i ? ",?" : "?";
        params.push_back(text(q.min_levels[i]));
      }
      cond(in + ")");
    }
    if (q.start_ns) cond("timestamp >= ?"), params.push_back(time_at(*q.start_ns, true));
    if (q.end_ns) cond("timestamp <= ?"), params.push_back(time_at(*q.end_ns, false));
    if (q.after) {
      // Spelled out rather than as a row comparison so the range optimizer sees a timestamp
      // bound (InnoDB's secondary indexes end with the primary key: (timestamp, id) order).
      const char *op = q.descending ? "<" : ">";
      cond(std::string("(timestamp ") + op + " ? OR (timestamp = ? AND id " + op + " ?))");
      const int64_t ts = q.after->timestamp_ns;  // read back from a row: whole microseconds
      params.push_back(time_at(ts, false));
      params.push_back(time_at(ts, false));
      params.push_back(integer(q.after->id));
    }
    if (!q.q_terms.empty()) {
      // InnoDB's phrase search ("w1 w2" in boolean mode) checks word positions in a loop that
      // ignores max_statement_time: minutes on 300k matching rows. So the index finds rows with
      // every word (+w1 +w2: interruptible) and a REGEXP keeps those where the words stand
      // together, as a phrase. The terms are letters and digits only (query_terms), so neither
      // AGAINST nor the pattern can carry an operator.
      std::string against, pattern = "(^|[^[:alnum:]])";
      for (size_t i = 0; i < q.q_terms.size(); ++i) {
        const std::string &t = q.q_terms[i];
        pattern += (i ? "[^[:alnum:]]+" : "") + t;
        // Words the index never holds (too short, stopwords) would make +word match nothing.
        if (indexable(t)) against += "+" + t + " ";
      }
      pattern += "([^[:alnum:]]|$)";
      // Within one service, host or trace and at most a day, the (service, timestamp) style
      // indexes narrow the rows so far that testing each with the REGEXP is cheaper than the
      // full-text index, whose cost follows how common the words are in the whole table
      // (q=status+500 in a one-hour one-service window of 1M rows: seconds with MATCH).
      const bool narrow = (q.service || q.host || q.trace_id) && q.start_ns && q.end_ns &&
                          *q.end_ns - *q.start_ns <= kNarrowWindowNs;
      if (!against.empty() && !narrow) {
        cond("MATCH(message) AGAINST (? IN BOOLEAN MODE)");
        params.push_back(text(against));
      }
      cond("message REGEXP ?");
      params.push_back(text(pattern));
    }
    return where;
  }

  bool histogram(const HistogramQuery &h, std::vector<LevelBucket> &out, StoreError &err) override {
    out.clear();
    Lease c(this, err);
    if (!c || !detect(c, err)) return false;
    if (h.filters.pattern_id && !c->has_pattern_column) return true;
    // Microseconds, as the column stores them (the parser makes the start and the step whole
    // numbers of them); LEAST puts the window's last instant, when the step divides the window,
    // into the last bucket.
    std::vector<Param> params = {time_at(*h.filters.start_ns, true),
                                 integer(static_cast<long long>(h.step_ns / 1000)),
                                 integer(static_cast<long long>(h.buckets) - 1)};
    const std::string sql =
        timed_ +
        "SELECT LEAST(FLOOR(TIMESTAMPDIFF(MICROSECOND, ?, timestamp) / ?), ?) AS b, "
        "CAST(level AS CHAR) AS l, COUNT(*) FROM " +
        table_ + log_where(h.filters, params) + " GROUP BY b, l";
    return c.run(sql, params, {Out::kInt, Out::kText, Out::kInt}, err, [&](const ResultRow &row) {
      out.push_back({static_cast<uint32_t>(row.ints[0]), std::string(row.text_at(1)), row.ints[2]});
    });
  }

  bool patterns(const PatternsQuery &q, std::vector<PatternSummary> &out,
                StoreError &err) override {
    out.clear();
    Lease c(this, err);
    if (!c || !detect(c, err)) return false;
    if (!c->has_pattern_column || !c->has_patterns_table) return true;
    std::vector<PatternSummary> found;
    if (!count_patterns(c, q, found, err)) return false;
    // The patterns table's side, then the window's order: count descending, ties by id as 16
    // hex digits (unsigned, whereas the column holds it signed).
    std::vector<uint64_t> ids;
    for (const PatternSummary &p : found) ids.push_back(p.id);
    std::unordered_map<uint64_t, PatternSummary> info;
    if (!read_pattern_rows(c, ids, info, err)) return false;
    std::erase_if(found, [&](PatternSummary &p) {
      auto it = info.find(p.id);
      // service= and new=1 are the pattern's table row's: one without a row has neither.
      if (it == info.end()) return q.only_new || q.service.has_value();
      const PatternSummary &t = it->second;
      if (q.only_new && (t.first_seen_ns < q.start_ns || t.first_seen_ns > q.end_ns)) return true;
      if (q.service && t.service != *q.service) return true;
      p.service = t.service;
      p.template_text = t.template_text;
      p.has_template = t.has_template;
      p.first_seen_ns = t.first_seen_ns;
      p.last_seen_ns = t.last_seen_ns;
      p.total_count = t.total_count;
      return false;
    });
    std::sort(found.begin(), found.end(), [](const PatternSummary &a, const PatternSummary &b) {
      return a.count != b.count ? a.count > b.count : a.id < b.id;
    });
    if (found.size() > q.limit) found.resize(q.limit);
    for (PatternSummary &p : found) {
      if (q.with_sample && !read_sample(c, q, p, err)) return false;
      if (q.max_hosts && !read_hosts(c, q, p, err)) return false;
    }
    out = std::move(found);
    return true;
  }

  bool pattern_minutes(uint64_t id, int64_t start_ns, int64_t end_ns, PatternSummary &info,
                       bool &found, std::vector<MinuteCount> &out, StoreError &err) override {
    found = false;
    out.clear();
    Lease c(this, err);
    if (!c || !detect(c, err)) return false;
    if (!c->has_pattern_column || !c->has_patterns_table) return true;
    std::unordered_map<uint64_t, PatternSummary> rows;
    if (!read_pattern_rows(c, {id}, rows, err)) return false;
    auto it = rows.find(id);
    if (it == rows.end()) return true;
    found = true;
    info = std::move(it->second);
    // The minute, floored (timestamps before 1970 too); the pattern index holds
    // every value read, so no row is visited.
    return c.run(
        timed_ +
            "SELECT FLOOR(TIMESTAMPDIFF(SECOND, TIMESTAMP'1970-01-01 00:00:00', "
            "timestamp) / 60) AS m, COUNT(*) FROM " +
            table_ +
            " WHERE pattern_id = ? AND timestamp >= ? AND timestamp <= ? GROUP BY m "
            "ORDER BY m",
        {integer(static_cast<long long>(id)), time_at(start_ns, true), time_at(end_ns, false)},
        {Out::kInt, Out::kInt}, err, [&](const ResultRow &row) {
          out.push_back({row.ints[0] * 60 * int64_t{1000000000}, row.ints[1]});
        });
  }

  bool templates(const TemplatesQuery &q, std::vector<PatternSummary> &out,
                 StoreError &err) override {
    out.clear();
    Lease c(this, err);
    if (!c || !detect(c, err)) return false;
    if (!c->has_patterns_table) return true;
    std::string sql = timed_ + "SELECT " + kPatternColumns + " FROM " + patterns_ + " WHERE 1";
    std::vector<Param> params;
    if (q.service) sql += " AND service = ?", params.push_back(text(*q.service));
    if (q.seen_since_ns)
      sql += " AND last_seen >= ?", params.push_back(time_at(*q.seen_since_ns, true));
    sql += " ORDER BY last_seen DESC, id LIMIT ?";
    params.push_back(integer(q.limit));
    return c.run(sql, params, kPatternOut, err,
                 [&](const ResultRow &row) { out.push_back(read_pattern(row)); });
  }

  bool stats(const StatsQuery &q, StatsResult &out, StoreError &err) override {
    // The prototype's operational SQL; four statements, each under the time limit.
    const Param since = time_at(q.since_ns, true);
    std::string window = "timestamp >= ?";
    std::vector<Param> bounds = {since};
    if (q.end_ns) {
      window += " AND timestamp <= ?";
      bounds.push_back(time_at(*q.end_ns, false));
    }
    if (!run(timed_ + "SELECT COUNT(*) FROM " + table_ + " WHERE " + window, bounds, {Out::kInt},
             err, [&](const ResultRow &row) { out.total = row.ints[0]; }))
      return false;
    std::vector<Param> grouped = bounds;
    grouped.push_back(integer(q.top));
    for (auto [col, vec] : {std::pair{"service", &out.by_service},
                            std::pair{"level", &out.by_level}, std::pair{"host", &out.by_host}}) {
      // level is an ENUM: CAST so that ties sort by name, not by the ENUM's position.
      const std::string key = std::string(col) == "level" ? "CAST(level AS CHAR)" : col;
      if (!run(timed_ + "SELECT " + key + " AS k, COUNT(*) AS n FROM " + table_ + " WHERE " +
                   window + " GROUP BY k ORDER BY n DESC, k LIMIT ?",
               grouped, {Out::kText, Out::kInt}, err,
               // Captured by copy: clang 14 (the fuzz build) cannot capture a structured binding.
               [&, groups = vec](const ResultRow &row) {
                 groups->push_back({std::string(row.text_at(0)), row.ints[1]});
               }))
        return false;
    }
    return true;
  }

  bool ping(std::string &why) override {
    StoreError err;
    if (run(timed_ + "SELECT 1 FROM " + table_ + " LIMIT 1", {}, {Out::kInt}, err,
            [](const ResultRow &) {}))
      return true;
    why = err.message;
    return false;
  }

  std::string describe() const override {
    return "mariadb " + conn_.where() + " database " + conn_.database + " table " + s_.table;
  }

 private:
  Conn *acquire(StoreError &err) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!pool_.empty()) {
        Conn *c = pool_.back();
        pool_.pop_back();
        return c;
      }
    }
    unsigned code = 0;
    std::string why;
    mariadb::Conn m = mariadb::connect(conn_, code, why);
    if (!m) {
      err = {StoreStatus::kUnavailable, "", why};
      return nullptr;
    }
    // Autocommit: each SELECT reads the latest committed rows (READ COMMITTED from the session
    // init), and no snapshot is held open between requests.
    auto *c = new Conn;
    c->m = std::move(m);
    return c;
  }

  void release(Conn *c, bool broken) {
    if (broken) {
      delete c;
      return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    pool_.push_back(c);
  }

  // Maps a server or client error to what the client is told; always false.
  bool fail(unsigned code, const std::string &text, StoreError &err) {
    if (code == kStatementTimeout || code == kFullTextInterrupted)
      err = {StoreStatus::kTimeout, "",
             "the query took longer than statement_timeout (" +
                 std::to_string(s_.statement_timeout_ms) +
                 " ms); narrow the time range or add service/host"};
    else if (code == kNoFullTextIndex)
      err = {StoreStatus::kBadParameter, "q",
             "bad parameter 'q': this store has no full-text index (mariadb full_text: false)"};
    else if (mariadb::is_connection_error(code) || code == ER_NO_SUCH_TABLE ||
             code == ER_LOCK_WAIT_TIMEOUT || code == ER_LOCK_DEADLOCK)
      err = {StoreStatus::kUnavailable, "", "mariadb " + conn_.where() + ": " + text};
    else
      err = {StoreStatus::kFailed, "", "mariadb " + conn_.where() + ": " + text};
    return false;
  }

  MYSQL_STMT *statement(Conn &c, const std::string &sql, unsigned &code, std::string &why) {
    auto it = c.stmts.find(sql);
    if (it != c.stmts.end()) return it->second;
    if (c.stmts.size() >= kMaxCachedStatements) {
      for (auto &[k, st] : c.stmts) mysql_stmt_close(st);
      c.stmts.clear();
    }
    MYSQL_STMT *st = mysql_stmt_init(c.m.get());
    if (!st) {
      code = mysql_errno(c.m.get());
      why = "mysql_stmt_init failed";
      return nullptr;
    }
    my_bool update_max = 1;  // store_result then reports each column's longest value
    mysql_stmt_attr_set(st, STMT_ATTR_UPDATE_MAX_LENGTH, &update_max);
    if (mysql_stmt_prepare(st, sql.data(), sql.size()) != 0) {
      code = mysql_stmt_errno(st);
      why = mariadb::error_text(st);
      mysql_stmt_close(st);
      return nullptr;
    }
    c.stmts.emplace(sql, st);
    return st;
  }

  // A pooled connection for the length of one store call: statements run on it in turn, and
  // it goes back to the pool at the end unless a failure left it unusable.
  class Lease {
   public:
    Lease(MariaDbStore *store, StoreError &err) : store_(store), c_(store->acquire(err)) {}
    ~Lease() {
      if (c_) store_->release(c_, broken_);
    }
    Lease(const Lease &) = delete;
    Lease &operator=(const Lease &) = delete;
    explicit operator bool() const { return c_ != nullptr; }
    Conn *operator->() { return c_; }
    Conn &operator*() { return *c_; }

    // Prepares (or reuses) sql, binds params, executes and calls on_row for each result row.
    template <class OnRow>
    bool run(const std::string &sql, std::vector<Param> params, const std::vector<Out> &cols,
             StoreError &err, OnRow on_row) {
      unsigned code = 0;
      std::string why;
      if (store_->execute(*c_, sql, params, cols, code, why, on_row)) return true;
      // A lost connection, or a statement the server may have dropped with it: start afresh.
      broken_ |= code == 0 || mariadb::is_connection_error(code) || code == kStatementTimeout ||
                 code == kFullTextInterrupted;
      // A column or table gone (a table dropped and recreated): look again next time.
      if (code == ER_BAD_FIELD_ERROR || code == ER_NO_SUCH_TABLE) c_->checked = false;
      return store_->fail(code, why, err);
    }

   private:
    MariaDbStore *store_;
    Conn *c_;
    bool broken_ = false;
  };

  template <class OnRow>
  bool run(const std::string &sql, std::vector<Param> params, const std::vector<Out> &cols,
           StoreError &err, OnRow on_row) {
    Lease c(this, err);
    return c && c.run(sql, std::move(params), cols, err, on_row);
  }

  // Whether the table has the pattern_id column and the patterns table exists, once per
  // connection; what was missing is looked for again after kSchemaRecheck.
  bool detect(Lease &c, StoreError &err) {
    const auto now = std::chrono::steady_clock::now();
    if (c->checked &&
        ((c->has_pattern_column && c->has_patterns_table) || now - c->checked_at < kSchemaRecheck))
      return true;
    // The names are validated identifiers, so quoting them as literals is safe.
    const std::string sql =
        "SELECT (SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '" +
        conn_.database + "' AND TABLE_NAME = '" + s_.table +
        "' AND COLUMN_NAME = 'pattern_id'), (SELECT COUNT(*) FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = '" +
        conn_.database + "' AND TABLE_NAME = '" + mariadb::patterns_table(s_.table) + "')";
    return c.run(sql, {}, {Out::kInt, Out::kInt}, err, [&](const ResultRow &row) {
      c->has_pattern_column = row.ints[0] > 0;
      c->has_patterns_table = row.ints[1] > 0;
      c->checked = true;
      c->checked_at = now;
    });
  }

  // A /query/logs row from the columns kRowColumns (+ pattern_id); views into `row`.
  static LogRow read_row(const ResultRow &row, bool with_pattern) {
    LogRow r;
    r.id = row.ints[0];
    r.timestamp_ns = mariadb::from_mysql_time(row.times[1]);
    r.source = row.text_at(2);
    r.service = row.text_at(3);
    r.host = row.text_at(4);
    r.level = row.text_at(5);
    r.has_trace_id = !row.nulls[6], r.trace_id = row.text_at(6);
    r.has_span_id = !row.nulls[7], r.span_id = row.text_at(7);
    r.has_event_type = !row.nulls[8], r.event_type = row.text_at(8);
    r.has_error_code = !row.nulls[9], r.error_code = row.text_at(9);
    r.message = row.text_at(10);
    r.has_meta_json = !row.nulls[11], r.meta_json = row.text_at(11);
    if (with_pattern && !row.nulls[12]) {
      r.has_pattern_id = true;
      r.pattern_id = static_cast<uint64_t>(row.ints[12]);
    }
    return r;
  }

  // The patterns table's columns, in read_pattern's order.
  static constexpr const char *kPatternColumns =
      "id, service, template, first_seen, last_seen, count";
  static inline const std::vector<Out> kPatternOut = {Out::kInt,  Out::kText, Out::kText,
                                                      Out::kTime, Out::kTime, Out::kInt};
  static PatternSummary read_pattern(const ResultRow &row) {
    PatternSummary p;
    p.id = static_cast<uint64_t>(row.ints[0]);
    p.service = row.text_at(1);
    p.has_template = !row.nulls[2];
    if (p.has_template) p.template_text = row.text_at(2);
    p.first_seen_ns = mariadb::from_mysql_time(row.times[3]);
    p.last_seen_ns = mariadb::from_mysql_time(row.times[4]);
    p.total_count = row.ints[5];
    return p;
  }

  // The row filters of a PatternsQuery other than the window (service, host, level, min_level).
  static void row_filters(const PatternsQuery &q, std::string &sql, std::vector<Param> &params) {
    if (q.service) sql += " AND service = ?", params.push_back(text(*q.service));
    if (q.host) sql += " AND host = ?", params.push_back(text(*q.host));
    level_filters(q, sql, params);
  }

  // level and min_level: the pattern index holds level, so they need no row.
  static void level_filters(const PatternsQuery &q, std::string &sql, std::vector<Param> &params) {
    if (q.level) sql += " AND level = ?", params.push_back(text(*q.level));
    if (!q.min_levels.empty()) {
      sql += " AND level IN (";
      for (size_t i = 0; i < q.min_levels.size(); ++i) {
        sql += i ? ",?" : "?";
        params.push_back(text(q.min_levels[i]));
      }
      sql += ")";
    }
  }

  // " IN (?,...)" for ids[from, from + kIdsPerStatement), padded with the last id.
  static std::string in_ids(const std::vector<long long> &ids, size_t from,
                            std::vector<Param> &params) {
    std::string sql = " IN (";
    for (size_t i = 0; i < kIdsPerStatement; ++i) {
      sql += i ? ",?" : "?";
      params.push_back(integer(ids[std::min(from + i, ids.size() - 1)]));
    }
    return sql + ")";
  }

  // Each pattern's count and first and last occurrence in the window (no table fields yet).
  bool count_patterns(Lease &c, const PatternsQuery &q, std::vector<PatternSummary> &out,
                      StoreError &err) {
    auto add = [&](const ResultRow &row) {
      PatternSummary p;
      p.id = static_cast<uint64_t>(row.ints[0]);
      p.count = row.ints[1];
      p.first_ns = mariadb::from_mysql_time(row.times[2]);
      p.last_ns = mariadb::from_mysql_time(row.times[3]);
      if (q.ids.empty() || std::find(q.ids.begin(), q.ids.end(), p.id) != q.ids.end())
        out.push_back(std::move(p));
    };
    const std::vector<Out> cols = {Out::kInt, Out::kInt, Out::kTime, Out::kTime};
    if (q.host) {
      // The filter needs the rows: one pass over the window's rows that match, by whichever
      // index the optimizer finds narrowest ((host, timestamp), level, timestamp).
      std::string sql =
          timed_ + "SELECT pattern_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM " + table_ +
          " WHERE pattern_id IS NOT NULL AND timestamp >= ? AND timestamp <= ?";
      std::vector<Param> params = {time_at(q.start_ns, true), time_at(q.end_ns, false)};
      row_filters(q, sql, params);
      return c.run(sql + " GROUP BY pattern_id", params, cols, err, add);
    }
    // No filter on a column outside the (pattern_id, timestamp, id, level) index: it alone
    // answers, the rows are never read. The ids: given, or the patterns table's (new=1 or
    // service=: a pattern's rows all have its service), or the index's distinct ids with a row
    // in the window (a loose index scan, one seek per pattern); then each pattern's window is
    // one range of the index, its entries of other levels skipped there.
    std::vector<long long> ids;
    const std::vector<Param> window = {time_at(q.start_ns, true), time_at(q.end_ns, false)};
    auto collect = [&](const ResultRow &row) { ids.push_back(row.ints[0]); };
    if (!q.ids.empty()) {
      for (uint64_t id : q.ids) ids.push_back(static_cast<long long>(id));
    } else if (q.only_new || q.service) {
      std::string sql = timed_ + "SELECT id FROM " + patterns_ + " WHERE 1";
      std::vector<Param> params;
      if (q.only_new) {
        sql += " AND first_seen >= ? AND first_seen <= ?";
        params = window;
      }
      if (q.service) sql += " AND service = ?", params.push_back(text(*q.service));
      if (!c.run(sql, params, {Out::kInt}, err, collect)) return false;
    } else if (!c.run(timed_ + "SELECT pattern_id, MIN(timestamp) FROM " + table_ +
                          " WHERE pattern_id IS NOT NULL AND timestamp >= ? AND timestamp <= ?"
                          " GROUP BY pattern_id",
                      window, {Out::kInt, Out::kTime}, err, collect)) {
      return false;
    }
    for (size_t from = 0; from < ids.size(); from += kIdsPerStatement) {
      std::vector<Param> params;
      const std::string in = in_ids(ids, from, params);
      params.insert(params.end(), window.begin(), window.end());
      std::string levels;
      level_filters(q, levels, params);
      if (!c.run(timed_ + "SELECT pattern_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM " +
                     table_ + " WHERE pattern_id" + in + " AND timestamp >= ? AND timestamp <= ?" +
                     levels + " GROUP BY pattern_id",
                 params, cols, err, add))
        return false;
    }
    return true;
  }

  // The patterns table's rows of `ids` (an id without one is left out).
  bool read_pattern_rows(Lease &c, const std::vector<uint64_t> &wanted,
                         std::unordered_map<uint64_t, PatternSummary> &out, StoreError &err) {
    std::vector<long long> ids(wanted.begin(), wanted.end());
    for (size_t from = 0; from < ids.size(); from += kIdsPerStatement) {
      std::vector<Param> params;
      const std::string in = in_ids(ids, from, params);
      if (!c.run(timed_ + "SELECT " + kPatternColumns + " FROM " + patterns_ + " WHERE id" + in,
                 params, kPatternOut, err, [&](const ResultRow &row) {
                   PatternSummary p = read_pattern(row);
                   out[p.id] = std::move(p);
                 }))
        return false;
    }
    return true;
  }

  // The pattern's newest row in the window that passes the filters: at last_ns, which the count
  // found (so a pattern whose matching rows are rare is not walked back from the window's end).
  bool read_sample(Lease &c, const PatternsQuery &q, PatternSummary &p, StoreError &err) {
    std::string sql = timed_ + "SELECT " + kRowColumns + ", pattern_id FROM " + table_ +
                      " WHERE pattern_id = ? AND timestamp >= ? AND timestamp <= ?";
    std::vector<Param> params = {integer(static_cast<long long>(p.id)), time_at(p.last_ns, true),
                                 time_at(p.last_ns, false)};
    row_filters(q, sql, params);
    sql += " ORDER BY timestamp DESC, id DESC LIMIT 1";
    return c.run(sql, params, row_columns(true), err,
                 [&](const ResultRow &row) { p.sample = StoredRow::from(read_row(row, true)); });
  }

  // Up to max_hosts hosts among the pattern's newest kHostRows rows of the window: bounded, so
  // a pattern with a million rows costs what one with a thousand does.
  bool read_hosts(Lease &c, const PatternsQuery &q, PatternSummary &p, StoreError &err) {
    std::string sql = timed_ + "SELECT host FROM (SELECT host FROM " + table_ +
                      " WHERE pattern_id = ? AND timestamp >= ? AND timestamp <= ?";
    std::vector<Param> params = {integer(static_cast<long long>(p.id)), time_at(q.start_ns, true),
                                 time_at(q.end_ns, false)};
    row_filters(q, sql, params);
    sql += " ORDER BY timestamp DESC LIMIT " + std::to_string(kHostRows) +
           ") AS newest GROUP BY host ORDER BY COUNT(*) DESC, host LIMIT ?";
    params.push_back(integer(q.max_hosts));
    return c.run(sql, params, {Out::kText}, err,
                 [&](const ResultRow &row) { p.hosts.emplace_back(row.text_at(0)); });
  }

  template <class OnRow>
  bool execute(Conn &c, const std::string &sql, std::vector<Param> &params,
               const std::vector<Out> &cols, unsigned &code, std::string &why, OnRow &on_row) {
    MYSQL_STMT *st = statement(c, sql, code, why);
    if (!st) return false;
    auto stmt_fail = [&] {
      code = mysql_stmt_errno(st);
      why = mariadb::error_text(st);
      mysql_stmt_free_result(st);
      return false;
    };
    std::vector<MYSQL_BIND> in(params.size());
    std::vector<unsigned long> in_len(params.size());
    for (size_t i = 0; i < params.size(); ++i) {
      MYSQL_BIND &b = in[i];
      std::memset(&b, 0, sizeof b);
      Param &p = params[i];
      switch (p.kind) {
        case Param::kText:
          b.buffer_type = MYSQL_TYPE_STRING;
          b.buffer = p.text.data();
          in_len[i] = static_cast<unsigned long>(p.text.size());
          b.length = &in_len[i];
          break;
        case Param::kInt:
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = &p.number;
          break;
        case Param::kTime:
          b.buffer_type = MYSQL_TYPE_DATETIME;
          b.buffer = &p.time;
          break;
      }
    }
    if ((!in.empty() && mysql_stmt_bind_param(st, in.data()) != 0) || mysql_stmt_execute(st) != 0 ||
        mysql_stmt_store_result(st) != 0)
      return stmt_fail();
    MYSQL_RES *meta = mysql_stmt_result_metadata(st);
    if (!meta) return stmt_fail();
    MYSQL_FIELD *fields = mysql_fetch_fields(meta);
    const size_t n = cols.size();
    if (mysql_num_fields(meta) != n) {
      mysql_free_result(meta);
      why = "unexpected result shape";
      mysql_stmt_free_result(st);
      return false;
    }
    ResultRow row;
    row.bind.resize(n);
    row.ints.resize(n);
    row.times.resize(n);
    row.texts.resize(n);
    row.lens.resize(n);
    row.nulls.resize(n);
    for (size_t i = 0; i < n; ++i) {
      MYSQL_BIND &b = row.bind[i];
      std::memset(&b, 0, sizeof b);
      b.is_null = &row.nulls[i];
      b.length = &row.lens[i];
      switch (cols[i]) {
        case Out::kInt:
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = &row.ints[i];
          break;
        case Out::kTime:
          b.buffer_type = MYSQL_TYPE_DATETIME;
          b.buffer = &row.times[i];
          break;
        case Out::kText:
          row.texts[i].resize(fields[i].max_length + 1);
          b.buffer_type = MYSQL_TYPE_STRING;
          b.buffer = row.texts[i].data();
          b.buffer_length = static_cast<unsigned long>(row.texts[i].size());
          break;
      }
    }
    mysql_free_result(meta);
    if (mysql_stmt_bind_result(st, row.bind.data()) != 0) return stmt_fail();
    int rc;
    while ((rc = mysql_stmt_fetch(st)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
      for (size_t i = 0; i < n; ++i)
        if (row.nulls[i]) row.lens[i] = 0;
      on_row(row);
    }
    if (rc != MYSQL_NO_DATA) return stmt_fail();
    mysql_stmt_free_result(st);
    return true;
  }

  StoreSettings s_;
  mariadb::Settings conn_;
  std::string table_;     // quoted, validated identifier
  std::string patterns_;  // the patterns table's name, quoted
  std::string timed_;     // "SET STATEMENT max_statement_time=... FOR "
  std::mutex mu_;
  std::vector<Conn *> pool_;  // idle connections
};

}  // namespace

std::unique_ptr<QueryStore> make_mariadb_store(const StoreSettings &settings, std::string &error) {
  mariadb::Settings c;
  c.host = settings.host;
  c.port = static_cast<unsigned>(settings.port);
  c.socket = settings.socket;
  c.user = settings.user;
  c.password = settings.password;
  c.database = settings.database;
  c.table = settings.table;
  c.tls = settings.tls || !settings.tls_ca.empty() || !settings.tls_cert.empty();
  c.ssl_ca = settings.tls_ca;
  c.ssl_cert = settings.tls_cert;
  c.ssl_key = settings.tls_key;
  c.ssl_verify = settings.tls_verify;
  c.connect_timeout_s = static_cast<unsigned>((settings.connect_timeout_ms + 999) / 1000);
  c.timeout_s = static_cast<unsigned>((settings.io_timeout_ms + 999) / 1000);
  if (!mariadb::valid_identifier(c.table)) {
    error = "table: '" + c.table + "' is not a plain name (letters, digits, _; at most 64)";
    return nullptr;
  }
  if (!mariadb::valid_identifier(c.database)) {
    error = "database: '" + c.database + "' is not a plain name (letters, digits, _; at most 64)";
    return nullptr;
  }
  // Called on the loop thread before any query thread: libmariadb's global init is not
  // thread-safe.
  if (mysql_library_init(0, nullptr, nullptr) != 0) {
    error = "libmariadb failed to initialise";
    return nullptr;
  }
  return std::make_unique<MariaDbStore>(settings, std::move(c));
}

}  // namespace devmesh::query
