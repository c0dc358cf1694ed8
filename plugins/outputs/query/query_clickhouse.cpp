// The query plugin's ClickHouse backend: the clickhouse output's table (on a cluster its
// Distributed table) over ClickHouse's HTTP interface with libcurl, one blocking request per
// statement on the calling worker thread (easy handles pooled, so connections are reused).
// ClickHouse 18.16 has no query parameters: every value enters the SQL as a literal made by
// clickhouse::quote_string (or as a number). Rows are read with FINAL, so a re-delivered
// record not yet merged away is counted once. max_execution_time bounds each statement.
// Results come back as RowBinary.
#include <curl/curl.h>
#include <url_redact.hpp>

#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "../clickhouse/clickhouse_schema.hpp"
#include "query_store.h"

namespace devmesh::query {
namespace {

using clickhouse::quote_string;

constexpr int kTimeoutExceeded = 159;  // ClickHouse's TIMEOUT_EXCEEDED
constexpr int kTableMissing = 60, kDatabaseMissing = 81;
constexpr size_t kMaxAnswer = 256u << 20;  // a page of 10,000 rows of large messages fits

// The API's row id: ClickHouse has no auto-increment, so it is made from the row itself, the
// millisecond of its time above 20 bits of its event_id's hash. It follows time order, is the
// same on every read, and tells apart rows sharing one timestamp (the keyset's tie-breaker)
// unless their hashes' 20 bits collide (about one pair in 2 million).
constexpr const char *kIdExpr =
    "toInt64(intDiv(timestamp_ns, 1000000) * 1048576 + bitAnd(sipHash64(event_id), 1048575))";

// Reads a RowBinary answer.
class Reader {
 public:
  explicit Reader(std::string_view b) : b_(b) {}
  bool done() const { return at_ >= b_.size(); }
  bool ok() const { return ok_; }
  int64_t i64() {
    int64_t v = 0;
    if (need(8)) std::memcpy(&v, b_.data() + at_, 8), at_ += 8;
    return v;
  }
  uint64_t u64() { return static_cast<uint64_t>(i64()); }
  std::string_view str() {
    uint64_t n = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!need(1)) return {};
      const uint8_t byte = static_cast<uint8_t>(b_[at_++]);
      n |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) break;
    }
    if (!need(n)) return {};
    std::string_view s = b_.substr(at_, n);
    at_ += n;
    return s;
  }
  // Nullable: true when NULL (nothing follows).
  bool null() {
    if (!need(1)) return true;
    return b_[at_++] != 0;
  }

 private:
  bool need(uint64_t n) {
    if (ok_ && b_.size() - at_ >= n) return true;
    ok_ = false;
    at_ = b_.size();
    return false;
  }
  std::string_view b_;
  size_t at_ = 0;
  bool ok_ = true;
};

size_t collect(char *p, size_t size, size_t n, void *arg) {
  auto *s = static_cast<std::string *>(arg);
  const size_t len = size * n;
  if (s->size() + len > kMaxAnswer) return 0;  // aborts the transfer
  s->append(p, len);
  return len;
}

int exception_code(std::string_view body) {
  const size_t at = body.find("Code: ");
  if (at != 0) return -1;
  int code = 0;
  for (size_t i = 6; i < body.size() && body[i] >= '0' && body[i] <= '9'; ++i)
    code = code * 10 + (body[i] - '0');
  return code;
}

// A time bound as the partition column's condition: whole seconds, clamped to DateTime's range.
std::string seconds_of(int64_t ns, bool round_up) {
  int64_t s = ns / 1000000000;
  const int64_t rem = ns % 1000000000;
  if (rem < 0) --s;
  if (round_up && rem > 0) ++s;
  s = std::max<int64_t>(0, std::min<int64_t>(s, 0xffffffffll));
  return "toDateTime(" + std::to_string(s) + ")";
}

class ClickHouseStore : public QueryStore {
 public:
  ClickHouseStore(const StoreSettings &s, std::string url)
      : s_(s), url_(std::move(url)), shown_url_(redact_url(url_)),
        table_(s.database + "." + s.table) {
    const int64_t secs = std::max<int64_t>(1, (s.statement_timeout_ms + 999) / 1000);
    query_url_ = url_ + "/?max_execution_time=" + std::to_string(secs);
  }
  ~ClickHouseStore() override {
    for (CURL *e : pool_) curl_easy_cleanup(e);
    curl_global_cleanup();
  }

  bool query_logs(const LogQuery &q, RowSink &out, StoreError &err) override {
    std::string where;
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    if (q.service) cond("service = " + quote_string(*q.service));
    if (q.host) cond("host = " + quote_string(*q.host));
    if (q.trace_id) cond("trace_id = " + quote_string(*q.trace_id));
    if (q.level) cond("level = " + quote_string(*q.level));
    if (q.pattern_id)
      cond("pattern_id = " + std::to_string(static_cast<int64_t>(*q.pattern_id)));
    if (!q.min_levels.empty()) {
      std::string in;
      for (const std::string &l : q.min_levels) in += (in.empty() ? "" : ", ") + quote_string(l);
      cond("level IN (" + in + ")");
    }
    window(q.start_ns, q.end_ns, cond);
    if (q.after) {
      const char *op = q.descending ? "<" : ">";
      const std::string ts = std::to_string(q.after->timestamp_ns);
      cond(std::string("(timestamp_ns ") + op + " " + ts + " OR (timestamp_ns = " + ts + " AND " +
           kIdExpr + " " + op + " " + std::to_string(q.after->id) + "))");
    }
    if (!q.q_terms.empty()) {
      // A phrase: the words in order, separated by anything but letters and digits, whole
      // words only. The terms are letters, digits and UTF-8 bytes (query_terms), so they cannot
      // be regular expression syntax; the pattern is then quoted as any value is.
      std::string pattern = "(?i)(^|[^[:alnum:]])";
      for (size_t i = 0; i < q.q_terms.size(); ++i)
        pattern += (i ? "[^[:alnum:]]+" : "") + q.q_terms[i];
      pattern += "([^[:alnum:]]|$)";
      cond("match(message, " + quote_string(pattern) + ")");
    }
    const char *dir = q.descending ? "DESC" : "ASC";
    const std::string sql = std::string("SELECT ") + kIdExpr +
                            " AS id, timestamp_ns, source, service, host, level, trace_id, "
                            "span_id, event_type, error_code, message, meta_json, pattern_id FROM " +
                            table_ + " FINAL" + where + " ORDER BY timestamp_ns " + dir + ", id " +
                            dir + " LIMIT " + std::to_string(static_cast<uint64_t>(q.limit) + 1) +
                            " FORMAT RowBinary";
    std::string body;
    if (!run(sql, body, err)) return false;
    Reader r(body);
    LogRow row;
    while (!r.done()) {
      row.id = r.i64();
      row.timestamp_ns = r.i64();
      row.source = r.str();
      row.service = r.str();
      row.host = r.str();
      row.level = r.str();
      auto opt = [&](std::string_view &v, bool &has) {
        has = !r.null();
        v = has ? r.str() : std::string_view();
      };
      opt(row.trace_id, row.has_trace_id);
      opt(row.span_id, row.has_span_id);
      opt(row.event_type, row.has_event_type);
      opt(row.error_code, row.has_error_code);
      row.message = r.str();
      opt(row.meta_json, row.has_meta_json);
      row.has_pattern_id = !r.null();
      row.pattern_id = row.has_pattern_id ? r.u64() : 0;
      if (!r.ok()) return bad_answer(err);
      out.row(row);
    }
    return true;
  }

  bool stats(const StatsQuery &q, StatsResult &out, StoreError &err) override {
    std::string where;
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    window(q.since_ns, q.end_ns, cond);
    std::string body;
    if (!run("SELECT toInt64(count()) FROM " + table_ + " FINAL" + where + " FORMAT RowBinary",
             body, err))
      return false;
    Reader total(body);
    out.total = total.i64();
    if (!total.ok()) return bad_answer(err);
    for (auto [col, vec] : {std::pair{"service", &out.by_service},
                            std::pair{"level", &out.by_level}, std::pair{"host", &out.by_host}}) {
      if (!run(std::string("SELECT ") + col + " AS k, toInt64(count()) AS n FROM " + table_ +
                   " FINAL" + where + " GROUP BY k ORDER BY n DESC, k LIMIT " +
                   std::to_string(q.top) + " FORMAT RowBinary",
               body, err))
        return false;
      Reader r(body);
      while (!r.done()) {
        StatsGroup g;
        g.key = std::string(r.str());
        g.count = r.i64();
        if (!r.ok()) return bad_answer(err);
        vec->push_back(std::move(g));
      }
    }
    return true;
  }

  bool ping(std::string &why) override {
    StoreError err;
    std::string body;
    if (run("SELECT 1 FROM " + table_ + " LIMIT 1 FORMAT RowBinary", body, err)) return true;
    why = err.message;
    return false;
  }

  std::string describe() const override {
    return "clickhouse " + shown_url_ + " database " + s_.database + " table " + s_.table;
  }

 private:
  // timestamp_ns bounds, plus the same on the partition column so that whole days are skipped.
  template <class Cond>
  static void window(std::optional<int64_t> start_ns, std::optional<int64_t> end_ns, Cond &cond) {
    if (start_ns) {
      cond("timestamp >= " + seconds_of(*start_ns, false));
      cond("timestamp_ns >= " + std::to_string(*start_ns));
    }
    if (end_ns) {
      cond("timestamp <= " + seconds_of(*end_ns, true));
      cond("timestamp_ns <= " + std::to_string(*end_ns));
    }
  }
  template <class Cond>
  static void window(int64_t start_ns, std::optional<int64_t> end_ns, Cond &cond) {
    window(std::optional<int64_t>(start_ns), end_ns, cond);
  }

  static bool bad_answer(StoreError &err) {
    err = {StoreStatus::kFailed, "", "clickhouse: an answer that is not the expected RowBinary"};
    return false;
  }

  CURL *acquire() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!pool_.empty()) {
        CURL *e = pool_.back();
        pool_.pop_back();
        return e;
      }
    }
    CURL *e = curl_easy_init();
    if (!e) return nullptr;
    curl_easy_setopt(e, CURLOPT_URL, query_url_.c_str());
    curl_easy_setopt(e, CURLOPT_USERAGENT, "devmesh-query/0.1");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(s_.connect_timeout_ms));
    // The server stops a statement at max_execution_time; the transfer gets a little more.
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     static_cast<long>(s_.statement_timeout_ms + s_.io_timeout_ms));
    curl_easy_setopt(e, CURLOPT_USERNAME, s_.user.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, s_.password.c_str());
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    return e;
  }
  void release(CURL *e, bool broken) {
    if (broken) {
      curl_easy_cleanup(e);
      return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    pool_.push_back(e);
  }

  // POSTs one statement; its answer in `body`. False with err set (never with SQL in it).
  bool run(const std::string &sql, std::string &body, StoreError &err) {
    body.clear();
    CURL *e = acquire();
    if (!e) {
      err = {StoreStatus::kFailed, "", "curl_easy_init failed"};
      return false;
    }
    char error[CURL_ERROR_SIZE] = {};
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, sql.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(sql.size()));
    const CURLcode rc = curl_easy_perform(e);
    long code = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, nullptr);
    release(e, rc != CURLE_OK);
    if (rc != CURLE_OK) {
      err = {rc == CURLE_OPERATION_TIMEDOUT ? StoreStatus::kTimeout : StoreStatus::kUnavailable,
             "", "clickhouse " + shown_url_ + ": " + (error[0] ? error : curl_easy_strerror(rc))};
      return false;
    }
    if (code == 200) return true;
    const int ch = exception_code(body);
    std::string text = body.substr(0, std::min<size_t>(body.size(), 300));
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (ch == kTimeoutExceeded)
      err = {StoreStatus::kTimeout, "",
             "the query took longer than statement_timeout (" +
                 std::to_string(s_.statement_timeout_ms) +
                 " ms); narrow the time range or add service/host"};
    else if (ch == kTableMissing || ch == kDatabaseMissing || code == 401 || code == 403 ||
             code == 503)
      err = {StoreStatus::kUnavailable, "", "clickhouse " + shown_url_ + ": " + text};
    else
      err = {StoreStatus::kFailed, "", "clickhouse " + shown_url_ + ": " + text};
    return false;
  }

  StoreSettings s_;
  std::string url_, shown_url_, query_url_;
  std::string table_;  // database.table, both validated plain names
  std::mutex mu_;
  std::vector<CURL *> pool_;  // idle easy handles
};

}  // namespace

std::unique_ptr<QueryStore> make_clickhouse_store(const StoreSettings &settings,
                                                  std::string &error) {
  if (!clickhouse::valid_identifier(settings.table)) {
    error = "table: '" + settings.table + "' is not a plain name (letters, digits, _; at most 64)";
    return nullptr;
  }
  if (!clickhouse::valid_identifier(settings.database)) {
    error = "database: '" + settings.database +
            "' is not a plain name (letters, digits, _; at most 64)";
    return nullptr;
  }
  std::string url = settings.url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  if (url.compare(0, 7, "http://") != 0 && url.compare(0, 8, "https://") != 0) {
    error = "url: '" + url + "' is not an http or https URL";
    return nullptr;
  }
  // On the loop thread, before any worker: curl's global init is not thread-safe.
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    error = "curl_global_init failed";
    return nullptr;
  }
  return std::make_unique<ClickHouseStore>(settings, std::move(url));
}

}  // namespace devmesh::query
