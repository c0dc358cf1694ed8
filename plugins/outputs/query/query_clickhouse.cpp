// The query plugin's ClickHouse backend: the clickhouse output's table (on a cluster its
// Distributed table) over ClickHouse's HTTP interface with libcurl, one blocking request per
// statement on the calling worker thread (easy handles pooled, so connections are reused).
// ClickHouse 18.16 has no query parameters: every value enters the SQL as a literal made by
// clickhouse::quote_string (or as a number). A re-delivered record not yet merged away is
// counted once: pages take each key once, counts (stats, histograms, patterns) group by key only
// where duplicates can be (Suspects). max_execution_time bounds each statement. Results come
// back as RowBinary.
#include <curl/curl.h>
#include <url_redact.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
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

// A pattern's newest template: the meta "pattern" that the patterns filter sends when it learns
// or changes one, from the newest row that has it. Aggregated in two steps (once_source): each
// set of rows gives its argMax and the weight it won with, and the weightiest of those wins.
constexpr const char *kTemplateWeight =
    "if(ifNull(visitParamHas(meta_json, 'pattern'), 0) = 1, timestamp_ns, "
    "toInt64(-9223372036854775807))";
constexpr const char *kTemplateText = "ifNull(visitParamExtractString(meta_json, 'pattern'), '')";

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
      : s_(s),
        url_(std::move(url)),
        shown_url_(redact_url(url_)),
        table_(s.database + "." + s.table) {
    const int64_t secs = std::max<int64_t>(1, (s.statement_timeout_ms + 999) / 1000);
    // wait_end_of_query: the server buffers the whole answer before its status line, so an error
    // half-way through (a time limit, a lost replica) is an error status, never a 200 with a
    // short answer and the exception's text after the rows. (18.16 has it.)
    query_url_ = url_ + "/?wait_end_of_query=1&max_execution_time=" + std::to_string(secs);
  }
  ~ClickHouseStore() override {
    for (CURL *e : pool_) curl_easy_cleanup(e);
    curl_global_cleanup();
  }

  // /query/logs's filters (all but the cursor) as " WHERE ..." ("" for none); false when the
  // query asks for a pattern and the table has no pattern_id (no rows can match).
  bool log_where(const LogQuery &q, std::string &where, bool with_window = true) {
    where.clear();
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    if (q.service) cond("service = " + quote_string(*q.service));
    if (q.host) cond("host = " + quote_string(*q.host));
    if (q.trace_id) cond("trace_id = " + quote_string(*q.trace_id));
    if (q.level) cond("level = " + quote_string(*q.level));
    if (q.pattern_id && !has_pattern_column()) return false;
    if (q.pattern_id) cond("pattern_id = " + std::to_string(static_cast<int64_t>(*q.pattern_id)));
    if (!q.min_levels.empty()) {
      std::string in;
      for (const std::string &l : q.min_levels) in += (in.empty() ? "" : ", ") + quote_string(l);
      cond("level IN (" + in + ")");
    }
    if (with_window) window(q.start_ns, q.end_ns, cond);
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
    return true;
  }

  bool query_logs(const LogQuery &q, RowSink &out, StoreError &err) override {
    std::string where;
    if (!log_where(q, where)) return true;  // a table without patterns
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    if (q.after) {
      const char *op = q.descending ? "<" : ">";
      const std::string ts = std::to_string(q.after->timestamp_ns);
      cond(std::string("(timestamp_ns ") + op + " " + ts + " OR (timestamp_ns = " + ts + " AND " +
           kIdExpr + " " + op + " " + std::to_string(q.after->id) + "))");
    }
    const std::string dir = q.descending ? " DESC" : " ASC";
    const std::string order = " ORDER BY timestamp_ns" + dir + ", " + kIdExpr + dir;
    // FINAL would merge every row of the window before the first page could be cut (seconds
    // for a busy hour), so the page's keys are found first, each once (LIMIT 1 BY: a
    // re-delivered copy has the same key), and only those rows are read whole. GLOBAL: on a
    // cluster the keys are found once across the shards, then sent to each.
    const std::string keys = "SELECT timestamp_ns, event_id FROM " + table_ + where + order +
                             " LIMIT 1 BY timestamp_ns, event_id LIMIT " +
                             std::to_string(static_cast<uint64_t>(q.limit) + 1);
    const std::string sql = "SELECT " + row_columns() + " FROM " + table_ + where +
                            (where.empty() ? " WHERE " : " AND ") +
                            "(timestamp_ns, event_id) GLOBAL IN (" + keys + ")" + order +
                            " LIMIT 1 BY timestamp_ns, event_id FORMAT RowBinary";
    return read_rows(sql, err, [&](const LogRow &row) { out.row(row); });
  }

  // Counted once per record (once_source): a re-delivered row counts once.
  bool histogram(const HistogramQuery &h, std::vector<LevelBucket> &out, StoreError &err) override {
    out.clear();
    std::string filters;  // the window goes to once_source on its own
    if (!log_where(h.filters, filters, false)) return true;
    std::string where = filters;
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    window(h.filters.start_ns, h.filters.end_ns, cond);
    Suspects sus;
    if (!suspects(where, sus, err)) return false;
    // The bucket: the offset into the window divided by the step; least() puts the window's
    // last instant, when the step divides the window, into the last bucket.
    const std::string bucket = "toInt64(least(intDiv(timestamp_ns - " +
                               std::to_string(*h.filters.start_ns) + ", " +
                               std::to_string(h.step_ns) + "), " +
                               std::to_string(static_cast<int64_t>(h.buckets) - 1) + "))";
    std::string body;
    if (!run("SELECT k0, k1, toInt64(sum(n)) FROM " +
                 once_source({bucket, "level"}, {"count() AS n"}, {"level"}, filters,
                             h.filters.start_ns, h.filters.end_ns, sus) +
                 " GROUP BY k0, k1 FORMAT RowBinary",
             body, err))
      return false;
    Reader r(body);
    while (!r.done()) {
      LevelBucket b;
      b.bucket = static_cast<uint32_t>(r.i64());
      b.level = std::string(r.str());
      b.count = r.i64();
      if (!r.ok()) return bad_answer(err);
      out.push_back(std::move(b));
    }
    return true;
  }

  bool stats(const StatsQuery &q, StatsResult &out, StoreError &err) override {
    std::string where;
    auto cond = [&](const std::string &c) { where += (where.empty() ? " WHERE " : " AND ") + c; };
    window(q.since_ns, q.end_ns, cond);
    Suspects sus;
    if (!suspects(where, sus, err)) return false;
    // One scan, not four: every count comes from one grouping by (service, level, host), cut to
    // the top ones here. At 10M rows it costs 0.78 CPU-seconds where four scans grouping by
    // nothing, service, level and host cost 1.6 (and with FINAL 4.4); its groups are at most
    // services x levels x hosts, a few MB of answer even for a large fleet.
    std::string body;
    if (!run("SELECT k0, k1, k2, toInt64(sum(n)) FROM " +
                 once_source({"service", "level", "host"}, {"count() AS n"}, {"level", "host"}, "",
                             q.since_ns, q.end_ns, sus) +
                 " GROUP BY k0, k1, k2 FORMAT RowBinary",
             body, err))
      return false;
    std::map<std::string, int64_t, std::less<>> services, levels, hosts;
    out.total = 0;
    Reader r(body);
    while (!r.done()) {
      const std::string_view service = r.str(), level = r.str(), host = r.str();
      const int64_t n = r.i64();
      if (!r.ok()) return bad_answer(err);
      out.total += n;
      services[std::string(service)] += n;
      levels[std::string(level)] += n;
      hosts[std::string(host)] += n;
    }
    for (auto [m, vec] : {std::pair{&services, &out.by_service}, std::pair{&levels, &out.by_level},
                          std::pair{&hosts, &out.by_host}}) {
      for (const auto &[k, n] : *m) vec->push_back(StatsGroup{k, n});
      std::sort(vec->begin(), vec->end(), [](const StatsGroup &x, const StatsGroup &y) {
        return x.count != y.count ? x.count > y.count : x.key < y.key;
      });
      if (vec->size() > q.top) vec->resize(q.top);
    }
    return true;
  }

 private:
  // Counting each record once, fast. The table is a ReplacingMergeTree on (service,
  // timestamp_ns, event_id): a re-delivered record is a second row with the same key until a
  // merge drops it. FINAL merges every row of the window on one thread in 18.16 (10M rows: 6 to
  // 10 s, and seconds even for a plain GROUP BY of the key or uniqExact(event_id); measured, see
  // bench_store_clickhouse). But a part made by a merge (level > 0) holds each key once, so in
  // each partition the largest merged part is clean, and a duplicate pair always has a copy in
  // another part (the "suspect" parts: the newest inserts, a few minutes of rows once merges
  // keep up). Both copies share timestamp_ns, so every duplicate lies in the timestamp_ns range
  // of the suspect rows: rows outside it are count()ed, rows inside it are grouped by key. A
  // suspect part is read only for its range (its _part is pruned before any column is read).
  // The ranges are one per suspect part (merged where they meet), so that an old straggler (a
  // record stamped 1970, a finished day left in two parts) does not stretch one range over
  // everything since. They are read a moment before the counts: a copy inserted in between,
  // outside them, is counted twice by that one answer (the next answer sees its part).
  // Distributed tables (a cluster) keep FINAL: each shard has its own parts, which one node's
  // system.parts cannot name (the shards still merge in parallel, sharded by event_id).
  struct Suspects {
    bool final_ = false;  // use FINAL (a Distributed table, or its engine unknown)
    // The seconds holding suspect rows (their rows are grouped by key), as sorted, disjoint
    // [first, last] ranges, clamped to DateTime's seconds: a suspect row outside DateTime's
    // range is keyed anyway (see once_source).
    std::vector<std::pair<int64_t, int64_t>> seconds;
  };
  static constexpr size_t kMaxSuspectRanges = 64;  // beyond, the nearest ones are joined
  bool suspects(const std::string &where, Suspects &s, StoreError &err) {
    s = {};
    if (!local_table()) {
      s.final_ = true;
      return true;
    }
    std::string body;
    if (!run("SELECT name FROM system.parts WHERE database = " + quote_string(s_.database) +
                 " AND table = " + quote_string(s_.table) +
                 " AND active AND level > 0 ORDER BY partition_id, rows DESC, name LIMIT 1 BY "
                 "partition_id FORMAT RowBinary",
             body, err))
      return false;
    std::string clean;
    Reader parts(body);
    while (!parts.done()) {
      const std::string_view name = parts.str();
      if (!parts.ok()) return bad_answer(err);
      clean += (clean.empty() ? "" : ", ") + quote_string(std::string(name));
    }
    std::string sql = "SELECT min(timestamp_ns), max(timestamp_ns) FROM " + table_ + where;
    if (!clean.empty())
      sql += (where.empty() ? " WHERE " : " AND ") + ("_part NOT IN (" + clean + ")");
    if (!run(sql + " GROUP BY _part FORMAT RowBinary", body, err)) return false;
    constexpr int64_t kNs = 1000000000;
    auto second = [](int64_t ns) {
      const int64_t sec = ns / kNs - (ns % kNs < 0 ? 1 : 0);
      return std::clamp<int64_t>(sec, 0, 0xffffffffll);
    };
    Reader r(body);
    auto &ranges = s.seconds;
    while (!r.done()) {
      const int64_t lo = r.i64(), hi = r.i64();
      if (!r.ok()) return bad_answer(err);
      ranges.emplace_back(second(lo), second(hi));
    }
    std::sort(ranges.begin(), ranges.end());
    size_t n = 0;  // merged in place: ranges that overlap or touch become one
    for (const auto &rg : ranges) {
      if (n && rg.first <= ranges[n - 1].second + 1)
        ranges[n - 1].second = std::max(ranges[n - 1].second, rg.second);
      else
        ranges[n++] = rg;
    }
    ranges.resize(n);
    // Few ranges keep the statement short: join the two nearest until few are left.
    while (ranges.size() > kMaxSuspectRanges) {
      size_t at = 0;
      for (size_t i = 1; i + 1 < ranges.size(); ++i)
        if (ranges[i + 1].first - ranges[i].second < ranges[at + 1].first - ranges[at].second)
          at = i;
      ranges[at].second = ranges[at + 1].second;
      ranges.erase(ranges.begin() + static_cast<ptrdiff_t>(at) + 1);
    }
    return true;
  }

  // A FROM table expression of the rows under `filters` in the window [start_ns, end_ns], grouped
  // by `exprs` (named k0, k1, ...) with `aggs` ("count() AS n", "min(timestamp_ns) AS lo", ...)
  // over each group's records, each re-delivered record once; see Suspects. A group comes in up
  // to two rows, one from each of two disjoint sets of rows that together are the window, so the
  // caller combines them per key: sum(n), min(lo), argMax of an argMax by its max weight, and a
  // minIf/maxIf only where its countIf is not 0 (an empty one answers 0). The two sets:
  //  - plain: the whole seconds inside the window, outside the suspect range, found by the
  //    4-byte `timestamp` alone (the window's bounds on timestamp_ns would read 8 more bytes a row
  //    across the whole window: about a quarter of /query/stats on 10M rows);
  //  - keyed: the rest of the window (its first and last part-seconds, the suspect seconds, and
  //    times DateTime cannot hold, whose `timestamp` is clamped), one row per key (LIMIT 1 BY:
  //    the copies are the same row); its timestamp_ns ranges select whole granules through the
  //    sorting key, so it reads few rows. `columns` are the ones exprs and aggs read.
  // `plain_narrowing`, a condition on the plain rows only, may drop groups the caller drops
  // anyway (a subquery there runs once, not once per set of rows).
  std::string once_source(const std::vector<std::string> &exprs,
                          const std::vector<std::string> &aggs,
                          const std::vector<std::string> &columns, const std::string &filters,
                          std::optional<int64_t> start_ns, std::optional<int64_t> end_ns,
                          const Suspects &s, const std::string &plain_narrowing = "") const {
    std::string cols, keys;
    for (size_t i = 0; i < exprs.size(); ++i) {
      const std::string k = "k" + std::to_string(i);
      cols += exprs[i] + " AS " + k + ", ";
      keys += (i ? ", " : "") + k;
    }
    for (size_t i = 0; i < aggs.size(); ++i) cols += (i ? ", " : "") + aggs[i];
    std::string exact;  // the window as it is asked, to the nanosecond
    auto exact_cond = [&](const std::string &c) { exact += (exact.empty() ? "" : " AND ") + c; };
    window(start_ns, end_ns, exact_cond);
    auto where = [&](const std::string &c) {
      if (c.empty()) return filters;
      return filters + (filters.empty() ? " WHERE " : " AND ") + c;
    };
    if (s.final_) {
      if (!plain_narrowing.empty()) exact_cond(plain_narrowing);
      return "(SELECT " + cols + " FROM " + table_ + " FINAL" + where(exact) + " GROUP BY " + keys +
             ")";
    }
    constexpr int64_t kNs = 1000000000;
    auto floor_div = [](int64_t a) { return a / kNs - (a % kNs < 0 ? 1 : 0); };
    // [first, last]: the whole seconds inside the window that DateTime holds unclamped.
    int64_t first = 1, last = 0xfffffffell;
    if (start_ns) first = std::max(first, -floor_div(-*start_ns));
    if (end_ns) last = std::min(last, floor_div(*end_ns - (kNs - 1)));
    auto seconds = [](int64_t sec) { return "toDateTime(" + std::to_string(sec) + ")"; };
    auto ns_range = [&](int64_t lo_s, int64_t hi_s) {
      return "timestamp_ns BETWEEN " + std::to_string(lo_s * kNs) + " AND " +
             std::to_string(hi_s * kNs + kNs - 1);
    };
    // The suspect seconds are clamped to DateTime's: any suspect row outside them is outside
    // [first, last] too, so keyed already (and a second past 2106 would overflow as nanoseconds).
    std::string plain, keyed = exact;
    if (first <= last) {
      plain = "timestamp BETWEEN " + seconds(first) + " AND " + seconds(last);
      std::string sus_plain, sus_keyed;
      for (const auto &[lo, hi] : s.seconds) {
        if (hi < first || lo > last) continue;  // wholly keyed, or wholly outside the window
        sus_plain += std::string(sus_plain.empty() ? "" : " OR ") + "timestamp BETWEEN " +
                     seconds(lo) + " AND " + seconds(hi);
        sus_keyed += " OR " + ns_range(lo, hi);
      }
      if (!sus_plain.empty()) plain += " AND NOT (" + sus_plain + ")";
      keyed += std::string(keyed.empty() ? "" : " AND ") + "(NOT (" + ns_range(first, last) + ")" +
               sus_keyed + ")";
    }
    std::vector<std::string> read = {"service", "timestamp_ns", "event_id"};
    for (const std::string &c : columns)
      if (std::find(read.begin(), read.end(), c) == read.end()) read.push_back(c);
    std::string row;
    for (const std::string &c : read) row += (row.empty() ? "" : ", ") + c;
    const std::string keyed_source =
        "SELECT " + cols + " FROM (SELECT " + row + " FROM " + table_ + where(keyed) +
        " LIMIT 1 BY service, timestamp_ns, event_id) GROUP BY " + keys;
    if (plain.empty()) return "(" + keyed_source + ")";
    if (!plain_narrowing.empty()) plain += " AND " + plain_narrowing;
    return "(SELECT " + cols + " FROM " + table_ + where(plain) + " GROUP BY " + keys +
           " UNION ALL " + keyed_source + ")";
  }

  // Whether table_ is a MergeTree of this node (not a Distributed table); asked once.
  bool local_table() {
    int v = local_table_.load();
    if (v >= 0) return v == 1;
    StoreError err;
    std::string body;
    if (!run("SELECT engine FROM system.tables WHERE database = " + quote_string(s_.database) +
                 " AND name = " + quote_string(s_.table) + " FORMAT RowBinary",
             body, err))
      return false;
    Reader r(body);
    const std::string_view engine = r.str();
    if (!r.ok()) return false;  // no such table yet: FINAL, and ask again next time
    v = engine.find("MergeTree") != std::string_view::npos ? 1 : 0;
    local_table_.store(v);
    return v == 1;
  }

 private:
  // The columns read_rows() expects, in its order.
  std::string row_columns() const {
    return std::string(kIdExpr) +
           " AS id, timestamp_ns, source, service, host, level, trace_id, span_id, event_type, "
           "error_code, message, meta_json, " +
           (has_pattern_column() ? "pattern_id" : "CAST(NULL AS Nullable(Int64))");
  }

  // Runs sql (selecting row_columns()) and calls on_row for each row.
  template <class OnRow>
  bool read_rows(const std::string &sql, StoreError &err, OnRow on_row) {
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
      on_row(row);
    }
    return true;
  }

  // Whether the table has pattern_id (asked once; a table made by hand may lack it).
  bool has_pattern_column() const {
    int v = pattern_column_.load();
    if (v >= 0) return v == 1;
    StoreError err;
    std::string body;
    if (!const_cast<ClickHouseStore *>(this)->run(
            "SELECT toInt64(count()) FROM system.columns WHERE database = " +
                quote_string(s_.database) + " AND table = " + quote_string(s_.table) +
                " AND name = 'pattern_id' FORMAT RowBinary",
            body, err))
      return true;  // unknown yet: the query itself will tell
    Reader r(body);
    v = r.i64() > 0 ? 1 : 0;
    pattern_column_.store(v);
    return v == 1;
  }

  // Each pattern's all-time figures from the rows themselves (what the other stores keep in their
  // patterns table), each record once: the service, the first and last time, the count and the
  // newest template, as aggregates for once_source, which patterns() joins with its window's.
  static std::vector<std::string> all_time_aggs(bool with_template) {
    std::vector<std::string> aggs = {"any(service) AS a_service", "min(timestamp_ns) AS a_first",
                                     "max(timestamp_ns) AS a_last", "count() AS n"};
    if (with_template) {
      aggs.push_back("argMax(" + std::string(kTemplateText) + ", " + kTemplateWeight +
                     ") AS a_text");
      aggs.push_back("max(" + std::string(kTemplateWeight) + ") AS a_weight");
    }
    return aggs;
  }
  // all_time_aggs() combined across once_source's rows of one pattern, in the order
  // read_all_time() reads them (then the template's, kAllTimeTemplate, if asked).
  static constexpr const char *kAllTimeColumns =
      "any(a_service), min(a_first), max(a_last), toInt64(sum(n))";
  static constexpr const char *kAllTimeTemplate = "argMax(a_text, a_weight)";
  static std::vector<std::string> all_time_read(bool with_template) {
    std::vector<std::string> read = {"service", "timestamp_ns", "pattern_id"};
    if (with_template) read.push_back("meta_json");  // a large column: read only for templates
    return read;
  }
  static void read_all_time(Reader &r, PatternSummary &p) {
    p.service = std::string(r.str());
    p.first_seen_ns = r.i64();
    p.last_seen_ns = r.i64();
    p.total_count = r.i64();
  }
  static void read_template(Reader &r, PatternSummary &p) {
    p.template_text = std::string(r.str());
    p.has_template = !p.template_text.empty();
  }

  // The rows the patterns' all-time figures are read from, and who may be a copy among them.
  bool pattern_suspects(Suspects &sus, StoreError &err) {
    return suspects(" WHERE pattern_id IS NOT NULL", sus, err);
  }

  bool all_time(const std::string &ids_condition, std::optional<std::string> service,
                std::optional<int64_t> seen_since, uint32_t limit, const Suspects &sus,
                std::vector<PatternSummary> &out, StoreError &err) {
    std::string filters = " WHERE pattern_id IS NOT NULL";
    if (!ids_condition.empty()) filters += " AND " + ids_condition;
    if (service) filters += " AND service = " + quote_string(*service);
    std::string sql = "SELECT k0, " + std::string(kAllTimeColumns) + ", " + kAllTimeTemplate +
                      " FROM " +
                      once_source({"pattern_id"}, all_time_aggs(true), all_time_read(true), filters,
                                  std::nullopt, std::nullopt, sus) +
                      " GROUP BY k0";
    if (seen_since) sql += " HAVING max(a_last) >= " + std::to_string(*seen_since);
    sql += " ORDER BY max(a_last) DESC, k0 LIMIT " + std::to_string(limit) + " FORMAT RowBinary";
    std::string body;
    if (!run(sql, body, err)) return false;
    Reader r(body);
    while (!r.done()) {
      PatternSummary p;
      r.null();  // pattern_id is Nullable: never NULL here
      p.id = r.u64();
      read_all_time(r, p);
      read_template(r, p);
      if (!r.ok()) return bad_answer(err);
      out.push_back(std::move(p));
    }
    return true;
  }

  std::string ids_in(const std::vector<uint64_t> &ids) const {
    std::string in;
    for (uint64_t id : ids)
      in += (in.empty() ? "" : ", ") + std::to_string(static_cast<int64_t>(id));
    return "pattern_id IN (" + in + ")";
  }

  // The filters of q on rows (the window, host, level, min_level; service is the pattern's,
  // which is its rows').
  std::string pattern_rows_where(const PatternsQuery &q, bool with_window = true) const {
    std::string where;
    auto cond = [&](const std::string &c) { where += " AND " + c; };
    if (with_window) window(q.start_ns, std::optional<int64_t>(q.end_ns), cond);
    if (q.service) cond("service = " + quote_string(*q.service));
    if (q.host) cond("host = " + quote_string(*q.host));
    if (q.level) cond("level = " + quote_string(*q.level));
    if (!q.min_levels.empty()) {
      std::string in;
      for (const std::string &l : q.min_levels) in += (in.empty() ? "" : ", ") + quote_string(l);
      cond("level IN (" + in + ")");
    }
    if (!q.ids.empty()) cond(ids_in(q.ids));
    return where;
  }

 public:
  bool patterns(const PatternsQuery &q, std::vector<PatternSummary> &out,
                StoreError &err) override {
    out.clear();
    if (!has_pattern_column()) return true;
    Suspects sus;
    if (!pattern_suspects(sus, err)) return false;
    // One statement finds the window's patterns, joins their all-time side (all_time_aggs) and
    // keeps the top `limit`: a window can hold any number of patterns, and an IN list of all
    // their ids (as this once sent) outgrew max_query_size past about 12,000 of them. The
    // window's figures are aggregates of the same rows, each record once (once_source). Only
    // the window's patterns are aggregated (HAVING c > 0 keeps those), the rest of the rows are
    // skipped where the plain rows' condition reads pattern_id alone. GLOBAL: on a cluster the
    // window's ids are found once across the shards.
    std::string in_window = "1";
    {
      const std::string rows = pattern_rows_where(q);  // " AND c1 AND c2 ..."
      if (!rows.empty()) in_window = "(1" + rows + ")";
    }
    std::vector<std::string> aggs = all_time_aggs(false);
    aggs.push_back("countIf(" + in_window + ") AS w_count");
    aggs.push_back("minIf(timestamp_ns, " + in_window + ") AS w_first");
    aggs.push_back("maxIf(timestamp_ns, " + in_window + ") AS w_last");
    std::vector<std::string> read = all_time_read(false);
    read.insert(read.end(), {"timestamp", "host", "level"});
    std::string sql =
        "SELECT k0, toInt64(sum(w_count)) AS c, minIf(w_first, w_count > 0), maxIf(w_last, "
        "w_count > 0), " +
        std::string(kAllTimeColumns) + " FROM " +
        once_source({"pattern_id"}, aggs, read, " WHERE pattern_id IS NOT NULL", std::nullopt,
                    std::nullopt, sus,
                    "pattern_id GLOBAL IN (SELECT pattern_id FROM " + table_ +
                        " WHERE pattern_id IS NOT NULL" + pattern_rows_where(q) + ")") +
        " GROUP BY k0 HAVING c > 0";
    if (q.only_new)
      sql += " AND min(a_first) >= " + std::to_string(q.start_ns) +
             " AND min(a_first) <= " + std::to_string(q.end_ns);
    sql += " ORDER BY c DESC, toUInt64(assumeNotNull(k0)) LIMIT " + std::to_string(q.limit) +
           " FORMAT RowBinary";
    std::string body;
    if (!run(sql, body, err)) return false;
    std::vector<PatternSummary> kept;
    Reader r(body);
    while (!r.done()) {
      PatternSummary p;
      r.null();  // pattern_id is Nullable: never NULL here
      p.id = r.u64();
      p.count = r.i64();
      p.first_ns = r.i64();
      p.last_ns = r.i64();
      read_all_time(r, p);
      if (!r.ok()) return bad_answer(err);
      kept.push_back(std::move(p));
    }
    if (kept.empty()) return true;
    std::vector<uint64_t> ids;
    std::unordered_map<uint64_t, PatternSummary *> kept_by_id;
    for (PatternSummary &p : kept) ids.push_back(p.id), kept_by_id[p.id] = &p;
    // The kept patterns' templates (see kTemplateWeight), apart from the counts so that only
    // their rows' meta is parsed, and of those only the rows that have one (a copy is the same
    // row: argMax needs no counting once).
    if (!run("SELECT pattern_id, argMax(" + std::string(kTemplateText) + ", timestamp_ns) FROM " +
                 table_ + " WHERE " + ids_in(ids) + " AND " +
                 "ifNull(visitParamHas(meta_json, 'pattern'), 0) = 1 GROUP BY pattern_id FORMAT "
                 "RowBinary",
             body, err))
      return false;
    for (Reader t(body); !t.done();) {
      t.null();
      const uint64_t id = t.u64();
      PatternSummary found;
      read_template(t, found);
      if (!t.ok()) return bad_answer(err);
      auto it = kept_by_id.find(id);
      if (it == kept_by_id.end()) continue;
      it->second->template_text = std::move(found.template_text);
      it->second->has_template = found.has_template;
    }
    PatternsQuery only = q;
    only.ids = ids;
    // The sample: the newest of each pattern's rows in the window, at its last time there (the
    // same row in any copy), so only those times are read: the whole window's rows, every
    // column, cost seconds on 10M rows. Past 1,000 patterns the list of times would near
    // max_query_size (256 KiB) and cover as many granules as the window: the window is read.
    std::string lasts;
    if (kept.size() <= 1000) {
      for (const PatternSummary &p : kept)
        lasts += (lasts.empty() ? "" : ", ") + std::to_string(p.last_ns);
      lasts = " AND timestamp_ns IN (" + lasts + ")";
    }
    if (q.with_sample &&
        !read_rows(
            "SELECT " + row_columns() + " FROM " + table_ + " WHERE pattern_id IS NOT NULL" +
                pattern_rows_where(only) + lasts +
                " ORDER BY timestamp_ns DESC, id DESC LIMIT 1 BY pattern_id FORMAT RowBinary",
            err, [&](const LogRow &row) {
              auto it = kept_by_id.find(row.pattern_id);
              if (it != kept_by_id.end()) it->second->sample = StoredRow::from(row);
            }))
      return false;
    if (q.max_hosts) {
      // Hosts by their count of records, each once.
      if (!run("SELECT k0, k1 FROM " +
                   once_source({"pattern_id", "host"}, {"count() AS n"}, {"pattern_id", "host"},
                               " WHERE pattern_id IS NOT NULL" + pattern_rows_where(only, false),
                               q.start_ns, q.end_ns, sus) +
                   " GROUP BY k0, k1 ORDER BY k0, sum(n) DESC, k1 LIMIT " +
                   std::to_string(q.max_hosts) + " BY k0 FORMAT RowBinary",
               body, err))
        return false;
      Reader h(body);
      while (!h.done()) {
        h.null();
        const uint64_t id = h.u64();
        const std::string_view host = h.str();
        if (!h.ok()) return bad_answer(err);
        auto it = kept_by_id.find(id);
        if (it != kept_by_id.end()) it->second->hosts.emplace_back(host);
      }
    }
    out = std::move(kept);
    return true;
  }

  bool pattern_minutes(uint64_t id, int64_t start_ns, int64_t end_ns, PatternSummary &info,
                       bool &found, std::vector<MinuteCount> &out, StoreError &err) override {
    found = false;
    out.clear();
    if (!has_pattern_column()) return true;
    Suspects sus;
    if (!pattern_suspects(sus, err)) return false;
    std::vector<PatternSummary> all;
    if (!all_time(ids_in({id}), std::nullopt, std::nullopt, 1, sus, all, err)) return false;
    if (all.empty()) return true;
    found = true;
    info = std::move(all[0]);
    std::string body;
    // The minute's start: floor, pre-1970 too.
    if (!run("SELECT k0, toInt64(sum(n)) FROM " +
                 once_source({"timestamp_ns - ((timestamp_ns % 60000000000) + 60000000000) % "
                              "60000000000"},
                             {"count() AS n"}, {"pattern_id"}, " WHERE " + ids_in({id}), start_ns,
                             end_ns, sus) +
                 " GROUP BY k0 ORDER BY k0 FORMAT RowBinary",
             body, err))
      return false;
    Reader r(body);
    info.count = 0;
    while (!r.done()) {
      MinuteCount m;
      m.minute_ns = r.i64();
      m.count = r.i64();
      if (!r.ok()) return bad_answer(err);
      info.count += m.count;
      out.push_back(m);
    }
    return true;
  }

  bool templates(const TemplatesQuery &q, std::vector<PatternSummary> &out,
                 StoreError &err) override {
    out.clear();
    if (!has_pattern_column()) return true;
    Suspects sus;
    if (!pattern_suspects(sus, err)) return false;
    return all_time("", q.service, q.seen_since_ns, q.limit, sus, out, err);
  }

 public:
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
      err = {rc == CURLE_OPERATION_TIMEDOUT ? StoreStatus::kTimeout : StoreStatus::kUnavailable, "",
             "clickhouse " + shown_url_ + ": " + (error[0] ? error : curl_easy_strerror(rc))};
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
  std::vector<CURL *> pool_;                     // idle easy handles
  mutable std::atomic<int> pattern_column_{-1};  // -1: not asked yet
  std::atomic<int> local_table_{-1};             // -1: not asked yet
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
