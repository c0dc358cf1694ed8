// The query plugin's store interface: what a backend (SQLite, MariaDB) implements so that the
// HTTP side (parameters, JSON, cursors, SSE) stays the same whatever the store. A backend only
// writes SQL: every value it receives is already parsed and validated.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::query {

// Position of a row in the keyset order (timestamp, id): the cursor of keyset pagination.
struct RowKey {
  int64_t timestamp_ns = 0;
  int64_t id = 0;
};

// GET /query/logs, validated. Strings are the decoded parameter values.
// Pattern ids: the patterns filter's 64-bit id, stored signed in a pattern_id column, shown and
// taken as 16 lowercase hex digits (the meta pattern_id the filter gives a record).
std::string pattern_id_hex(uint64_t id);
std::optional<uint64_t> parse_pattern_id(std::string_view hex);

struct LogQuery {
  std::optional<std::string> service, host, trace_id;
  std::optional<uint64_t> pattern_id;  // pattern_id=: only this pattern's records
  // level=: an exact level name as stored ("WARN" and "WARNING" are distinct, as in the
  // prototype's ENUM). min_level=: every stored level name ranking at or above it.
  std::optional<std::string> level;
  std::vector<std::string> min_levels;  // empty: no min_level filter
  std::optional<int64_t> start_ns;      // timestamp >= start_ns
  std::optional<int64_t> end_ns;        // timestamp <= end_ns
  // q=: the words of the full-text query (split on anything that is not a letter or digit by
  // query_terms()); the backend matches them as one phrase, in its own safe syntax.
  std::vector<std::string> q_terms;
  bool descending = true;  // order=desc (the prototype's ORDER BY timestamp DESC)
  // Keyset: rows strictly after `after` in the query's order ((ts, id) < after when descending).
  std::optional<RowKey> after;
  uint32_t limit = 100;  // rows to return; a backend fetches limit + 1 to know if more exist
};

// GET /query/stats, validated.
struct StatsQuery {
  int64_t since_ns = 0;           // timestamp >= since_ns
  std::optional<int64_t> end_ns;  // timestamp <= end_ns (end_time=); none: up to now and on
  uint32_t top = 100;             // most groups returned per dimension, by count descending
};

// One result row; views stay valid only during the RowSink::row call. A null column has
// has_x == false (rendered as JSON null).
struct LogRow {
  int64_t id = 0;
  int64_t timestamp_ns = 0;
  std::string_view source, service, host, level, message;
  std::string_view trace_id, span_id, event_type, error_code, meta_json;
  bool has_trace_id = false, has_span_id = false, has_event_type = false, has_error_code = false;
  bool has_meta_json = false;  // meta_json holds JSON text (rendered as an object)
  uint64_t pattern_id = 0;
  bool has_pattern_id = false;  // false also for a table made before the column existed
};

// A row that owns its text: a pattern's sample, a context line.
struct StoredRow {
  int64_t id = 0;
  int64_t timestamp_ns = 0;
  std::string source, service, host, level, message;
  std::string trace_id, span_id, event_type, error_code, meta_json;
  bool has_trace_id = false, has_span_id = false, has_event_type = false, has_error_code = false;
  bool has_meta_json = false;
  uint64_t pattern_id = 0;
  bool has_pattern_id = false;
  static StoredRow from(const LogRow &r);
  LogRow view() const;  // views into this row
};

class RowSink {
 public:
  virtual ~RowSink() = default;
  virtual void row(const LogRow &r) = 0;
};

struct StatsGroup {
  std::string key;
  int64_t count = 0;
};

struct StatsResult {
  int64_t total = 0;
  std::vector<StatsGroup> by_service, by_level, by_host;  // count descending
};

// GET /query/patterns (and what /query/context and /search/* ask of the store), validated.
struct PatternsQuery {
  int64_t start_ns = 0, end_ns = 0;  // the window: rows with start_ns <= timestamp <= end_ns
  std::optional<std::string> service, host, level;
  std::vector<std::string> min_levels;  // as in LogQuery; empty: any level
  bool only_new = false;                // new=1: patterns whose first_seen is in the window
  std::vector<uint64_t> ids;            // not empty: only these patterns
  uint32_t limit = 50;                  // most patterns, by count in the window, descending
                                        // (ties: id ascending, unsigned, as its hex reads)
  bool with_sample = true;              // each with its newest row in the window
  uint32_t max_hosts = 0;               // each with up to this many hosts it came from (0: none)
};

// One pattern: its row of the patterns table, and what the window holds of it.
struct PatternSummary {
  uint64_t id = 0;
  std::string service;
  std::string template_text;  // empty when has_template is false
  bool has_template = false;  // a row whose template has not arrived yet (or was cut)
  int64_t first_seen_ns = 0, last_seen_ns = 0, total_count = 0;  // all time (patterns table)
  int64_t count = 0;                                             // rows in the window
  int64_t first_ns = 0, last_ns = 0;  // first and last occurrence in the window
  std::vector<std::string> hosts;     // with max_hosts: hosts it came from in the window
  std::optional<StoredRow> sample;    // with with_sample: its newest row in the window
};

// All-time templates, for similarity search and embeddings (no window, no rows read).
struct TemplatesQuery {
  std::optional<std::string> service;
  std::optional<int64_t> seen_since_ns;  // last_seen >= this
  uint32_t limit = 100000;               // most recently seen first
};

// GET /query/histogram, validated: the rows matching `filters` (its start_ns and end_ns set: the
// window; no cursor, no limit) counted per level in `buckets` slices of step_ns each, the first
// starting at filters.start_ns (the last one also holds end_ns itself).
struct HistogramQuery {
  LogQuery filters;
  int64_t step_ns = 1;
  uint32_t buckets = 60;
};
struct LevelBucket {
  uint32_t bucket = 0;  // 0 .. buckets - 1
  std::string level;    // as stored; empty for a row without one
  int64_t count = 0;
};

struct MinuteCount {
  int64_t minute_ns = 0;  // start of the minute (UTC)
  int64_t count = 0;
};

// How a store call ended; the HTTP side maps it to a status code.
enum class StoreStatus {
  kOk = 0,
  kBadParameter,  // the request asks what this store cannot do (q without a full-text index):
                  // 400; `param` names the parameter
  kTimeout,       // the statement time limit was reached: 504
  kUnavailable,   // the store cannot be reached or is locked/busy: 503
  kFailed         // anything else: 500 (never caused by a parameter's value)
};

struct StoreError {
  StoreStatus status = StoreStatus::kOk;
  std::string param;    // with kBadParameter
  std::string message;  // for the client (no SQL, no credentials)
};

// Connection keys of the store, from the query plugin's options (same keys as the outputs).
struct StoreSettings {
  std::string kind;   // "sqlite" | "mariadb" | "clickhouse"
  std::string table;  // validated identifier ([A-Za-z_][A-Za-z0-9_]*)
  int64_t statement_timeout_ms = 5000;
  // sqlite
  std::string path;
  // mariadb
  std::string host, socket, user, password, database;
  int64_t port = 3306;
  bool tls = false;
  std::string tls_ca, tls_cert, tls_key;  // options ssl_ca, ssl_cert, ssl_key
  bool tls_verify = true;                 // option ssl_verify
  int64_t connect_timeout_ms = 5000;      // option connect_timeout
  int64_t io_timeout_ms = 30000;          // option timeout
  // clickhouse (user, password, database, connect_timeout and timeout as above)
  std::string url = "http://127.0.0.1:8123";
};

// A backend. Every method may be called concurrently from several worker threads (the engine's
// work queue), never from the event loop: implementations keep their own connections (a pool
// or one per thread) and never share one connection between two calls at once.
class QueryStore {
 public:
  virtual ~QueryStore() = default;
  // Rows matching q, in q's order, at most q.limit + 1 of them (the extra one tells the caller
  // there is a next page; it is not rendered). Returns false with `err` set on failure.
  virtual bool query_logs(const LogQuery &q, RowSink &out, StoreError &err) = 0;
  virtual bool stats(const StatsQuery &q, StatsResult &out, StoreError &err) = 0;
  // Patterns with rows in q's window, by count descending (at most q.limit). A store without
  // a pattern_id column or patterns table (made by a release before patterns) answers an empty
  // list, not an error. count, first_ns, last_ns and the sample count only the rows matching
  // host, level and min_levels; service and only_new are the pattern's (its table row's).
  virtual bool patterns(const PatternsQuery &q, std::vector<PatternSummary> &out,
                        StoreError &err) = 0;
  // One pattern's row of the patterns table (found false when there is none, or no table) and
  // its count per minute in [start_ns, end_ns], oldest first, minutes without rows left out.
  virtual bool pattern_minutes(uint64_t id, int64_t start_ns, int64_t end_ns, PatternSummary &info,
                               bool &found, std::vector<MinuteCount> &out, StoreError &err) = 0;
  // The rows of q's window matching its filters, counted by (bucket, level); only non-zero
  // counts, in any order.
  virtual bool histogram(const HistogramQuery &q, std::vector<LevelBucket> &out,
                         StoreError &err) = 0;
  // The patterns table's rows (count, first and last seen; no window fields, no sample).
  virtual bool templates(const TemplatesQuery &q, std::vector<PatternSummary> &out,
                         StoreError &err) = 0;
  // Cheap reachability check for GET /health; false with a reason.
  virtual bool ping(std::string &why) = 0;
  // What GET /info shows about the store (kind and location, never a password).
  virtual std::string describe() const = 0;
};

// Chooses the backend by settings.kind; nullptr with `error` set when it cannot (unknown kind,
// a backend not built, a store that cannot be opened). Called on the loop thread at start.
std::unique_ptr<QueryStore> make_query_store(const StoreSettings &settings, std::string &error);

// Backends (each in its own file: query_sqlite.cpp, query_mariadb.cpp).
std::unique_ptr<QueryStore> make_sqlite_store(const StoreSettings &settings, std::string &error);
std::unique_ptr<QueryStore> make_mariadb_store(const StoreSettings &settings, std::string &error);
std::unique_ptr<QueryStore> make_clickhouse_store(const StoreSettings &settings,
                                                  std::string &error);

// The level names stored at or above `name`'s rank (WARN and WARNING rank alike); empty for an
// unknown name.
std::vector<std::string> levels_at_or_above(std::string_view name);

// The words of a full-text query: maximal runs of letters, digits and bytes >= 0x80 (UTF-8),
// everything else dropped, so no backend's query syntax can appear in them.
std::vector<std::string> query_terms(std::string_view q);

}  // namespace devmesh::query
