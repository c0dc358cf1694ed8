// The query plugin's MariaDB backend: pooled connections (one per concurrent call), prepared
// statements cached per connection, every value bound, and a per-statement time limit
// (SET STATEMENT max_statement_time ... FOR SELECT).
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

struct Conn {
  mariadb::Conn m;
  std::unordered_map<std::string, MYSQL_STMT *> stmts;
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
      : s_(s), conn_(std::move(conn)), table_("`" + s.table + "`") {
    char buf[64];
    std::snprintf(buf, sizeof buf, "SET STATEMENT max_statement_time=%.3f FOR ",
                  static_cast<double>(s.statement_timeout_ms) / 1000.0);
    timed_ = buf;
  }

  ~MariaDbStore() override {
    for (Conn *c : pool_) delete c;
  }

  bool query_logs(const LogQuery &q, RowSink &out, StoreError &err) override {
    std::string sql =
        timed_ +
        "SELECT id, timestamp, source, service, host, level, trace_id, span_id, event_type, "
        "error_code, message, meta_json FROM " +
        table_;
    std::vector<Param> params;
    sql += log_where(q, params);
    sql += q.descending ? " ORDER BY timestamp DESC, id DESC" : " ORDER BY timestamp ASC, id ASC";
    sql += " LIMIT ?";
    params.push_back(integer(static_cast<long long>(q.limit) + 1));

    static const std::vector<Out> kCols = {Out::kInt,  Out::kTime, Out::kText, Out::kText,
                                           Out::kText, Out::kText, Out::kText, Out::kText,
                                           Out::kText, Out::kText, Out::kText, Out::kText};
    LogRow r;
    return run(sql, params, kCols, err, [&](const ResultRow &row) {
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
      out.row(r);
    });
  }

  // q's filters as " WHERE ..." (empty without any), their values appended to `params` in
  // placeholder order.
  std::string log_where(const LogQuery &q, std::vector<Param> &params) {
    std::string where;
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    if (q.service) cond("service = ?"), params.push_back(text(*q.service));
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
    return run(sql, params, {Out::kInt, Out::kText, Out::kInt}, err, [&](const ResultRow &row) {
      out.push_back({static_cast<uint32_t>(row.ints[0]), std::string(row.text_at(1)), row.ints[2]});
    });
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

  // Prepares (or reuses) sql, binds params, executes and calls on_row for each result row.
  template <class OnRow>
  bool run(const std::string &sql, std::vector<Param> params, const std::vector<Out> &cols,
           StoreError &err, OnRow on_row) {
    Conn *c = acquire(err);
    if (!c) return false;
    unsigned code = 0;
    std::string why;
    bool ok = execute(*c, sql, params, cols, code, why, on_row);
    if (!ok) {
      // A lost connection, or a statement the server may have dropped with it: start afresh.
      const bool broken = code == 0 || mariadb::is_connection_error(code) ||
                          code == kStatementTimeout || code == kFullTextInterrupted;
      release(c, broken);
      return fail(code, why, err);
    }
    release(c, false);
    return true;
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
  std::string table_;  // quoted, validated identifier
  std::string timed_;  // "SET STATEMENT max_statement_time=... FOR "
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
