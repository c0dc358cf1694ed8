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
struct LogQuery {
  std::optional<std::string> service, host, trace_id;
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
  std::string kind;   // "sqlite" | "mariadb"
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

// The level names stored at or above `name`'s rank (WARN and WARNING rank alike); empty for an
// unknown name.
std::vector<std::string> levels_at_or_above(std::string_view name);

// The words of a full-text query: maximal runs of letters, digits and bytes >= 0x80 (UTF-8),
// everything else dropped, so no backend's query syntax can appear in them.
std::vector<std::string> query_terms(std::string_view q);

}  // namespace devmesh::query
