// mariadb output: inserts records into the prototype's log_events table with libmariadb, one
// transaction per batch with bulk array binding, idempotent on event_id; plus background retention.
#include <rapidjson/encodings.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <crash_point.hpp>
#include <devmesh/record_fields.hpp>
#include <mariadb_connection.hpp>
#include <meta_json.hpp>
#include <pattern_meta.hpp>
#include <utf8.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <vector>

namespace devmesh {
namespace {

using mariadb::Conn;
using mariadb::to_mysql_time;

const dm_option kOptions[] = {
    DEVMESH_MARIADB_CONNECTION_OPTIONS,
    {"create_table", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "create the table (schema and indexes) when it is missing; else refuse to start", 0},
    {"full_text", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "give a table this output creates a FULLTEXT index on message (the query's q=); "
     "costs insert rate, see the README of this plugin",
     0},
    {"retention", DM_OPT_DURATION, 0, nullptr, 0, 0, nullptr,
     "delete rows older than this (e.g. 90d) in the background; unset keeps every row", 0},
    {"retention_batch", DM_OPT_INT, DM_OPT_BOUNDED, "5000", 1, 1000000, nullptr,
     "rows deleted per retention transaction (small transactions never stall inserts for long)", 0},
    {"retention_pause", DM_OPT_DURATION, DM_OPT_BOUNDED, "100ms", 0, 60000, nullptr,
     "least pause between two retention transactions while old rows remain; the pause is also "
     "at least as long as the last transaction took, so retention takes at most half the time",
     0},
    {"retention_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "1m", 100, 86400000, nullptr,
     "how often retention looks for old rows once none are left", 0},
};

// Columns of the INSERT, in bind order.
enum Col {
  kTimestamp,
  kSource,
  kService,
  kHost,
  kLevel,
  kTraceId,
  kSpanId,
  kEventType,
  kErrorCode,
  kMessage,
  kMeta,
  kEventId,
  kPatternId,  // last: a table without the column gets the insert without it
  kColumns
};
constexpr const char *kColumnNames[kColumns] = {
    "timestamp",  "source",     "service", "host",      "level",    "trace_id",  "span_id",
    "event_type", "error_code", "message", "meta_json", "event_id", "pattern_id"};

// The column of record field f (kRecordFields): the fields in order, level before the first
// optional one.
constexpr Col field_column(size_t f) {
  return static_cast<Col>(kSource + f + (f >= kLevelBefore ? 1 : 0));
}
static_assert(
    [] {
      for (size_t f = 0; f < kRecordFieldCount; ++f)
        if (std::string_view(kColumnNames[field_column(f)]) != kRecordFields[f].name) return false;
      return std::string_view(kColumnNames[kLevel]) == "level" &&
             field_column(kRecordFieldCount - 1) + 1 == kMeta;
    }(),
    "the columns are the record's fields");

// A bulk request carries per value an indicator byte and a length prefix besides the data.
constexpr size_t kRowOverhead = kColumns * 10 + 16;
// Room left in max_allowed_packet for the request header and the protocol's own framing.
constexpr size_t kPacketMargin = 16 * 1024;
// In-flush attempts after a lost connection or a lock conflict before the engine's backoff.
constexpr int kFlushAttempts = 3;
constexpr uint32_t kConnectRetryAfterMs = 0;  // the engine's backoff decides
constexpr auto kRetentionErrorWait = std::chrono::seconds(5);
// Widening a table copies it: about a minute per million rows here (see the README).
constexpr unsigned kMigrationTimeoutS = 24 * 3600;
// A pending ALTER holds back every other statement on the table while it waits for its lock:
// give up early rather than stall an older devmesh still writing to it.
constexpr unsigned kMigrationLockWaitS = 60;

// ---- text hygiene ---------------------------------------------------------------------------

// Chunked scratch memory for one flush: pointers stay valid until reset(), which keeps the
// blocks for the next flush (no heap traffic per record once warmed up).
class Scratch {
 public:
  char *alloc(size_t n) {
    if (n > kBlock) {
      big_.push_back(std::make_unique<char[]>(n));
      return big_.back().get();
    }
    if (blocks_.empty() || used_ + n > kBlock) {
      if (++cur_ >= blocks_.size()) {
        blocks_.push_back(std::make_unique<char[]>(kBlock));
        cur_ = blocks_.size() - 1;
      }
      used_ = 0;
    }
    char *p = blocks_[cur_].get() + used_;
    used_ += n;
    return p;
  }
  void reset() {
    cur_ = 0;
    used_ = 0;
    big_.clear();
    if (blocks_.size() > kKeepBlocks) blocks_.resize(kKeepBlocks);
  }

 private:
  static constexpr size_t kBlock = 256 * 1024;
  static constexpr size_t kKeepBlocks = 32;  // a huge batch gives back what it grew
  std::vector<std::unique_ptr<char[]>> blocks_;
  std::vector<std::unique_ptr<char[]>> big_;
  size_t cur_ = static_cast<size_t>(-1), used_ = 0;
};

// Returns s when it is valid UTF-8; else a copy in scratch where each byte that starts no valid
// sequence is replaced by U+FFFD, so one bad byte never fails a row or its batch.
std::string_view clean_utf8(std::string_view s, Scratch &scratch, uint64_t &replaced) {
  const size_t i = ascii_prefix(s);
  if (i == s.size() || utf8_valid_from(s, i)) return s;
  char *out = scratch.alloc(s.size() * 3);  // worst case: every byte replaced by 3
  size_t n = i;
  std::memcpy(out, s.data(), i);
  replaced += append_replacing_invalid(s, i, [&](const char *p, size_t len) {
    std::memcpy(out + n, p, len);
    n += len;
  });
  return std::string_view(out, n);
}

// Records without a level are stored as INFO: the column is NOT NULL (as in the prototype),
// and INFO is what the prototype's shipper used for entries without a priority.
const char *level_text(uint8_t level) {
  return level >= DM_LEVEL_DEBUG && level <= DM_LEVEL_FATAL ? dm_level_name(level) : "INFO";
}

// ---- one worker's state ---------------------------------------------------------------------

// Column-wise arrays for bulk binding: for row r, column c, ptr[c][r] / len[c][r] / ind[c][r].
// pattern_id is bound as an array of values (a fixed-size type); the rest as pointers.
struct Columns {
  std::vector<MYSQL_TIME> times;
  std::vector<MYSQL_TIME *> time_ptrs;
  std::vector<const char *> ptr[kColumns];
  std::vector<unsigned long> len[kColumns];
  std::vector<char> ind[kColumns];
  std::vector<long long> pattern_ids;
  std::vector<std::string_view> templates;  // a row's template (cleaned), empty when none
  std::vector<size_t> row_bytes;
  std::vector<uint32_t> batch_row;  // the batch's index of each row (after a compaction)

  void resize(size_t n) {
    times.resize(n);
    time_ptrs.resize(n);
    for (int c = 0; c < kColumns; ++c) {
      ptr[c].resize(n);
      len[c].resize(n);
      ind[c].resize(n);
    }
    pattern_ids.resize(n);
    templates.resize(n);
    row_bytes.resize(n);
    batch_row.resize(n);
  }
  // Row `to` of this gets row `from` of `src`.
  void copy_row(const Columns &src, size_t from, size_t to) {
    times[to] = src.times[from];
    time_ptrs[to] = &times[to];
    for (int c = 0; c < kColumns; ++c) {
      ptr[c][to] = src.ptr[c][from];
      len[c][to] = src.len[c][from];
      ind[c][to] = src.ind[c][from];
    }
    pattern_ids[to] = src.pattern_ids[from];
    templates[to] = src.templates[from];
    row_bytes[to] = src.row_bytes[from];
    batch_row[to] = src.batch_row[from];
  }
};

struct Worker {
  uint32_t index = 0;
  Conn conn;
  MYSQL_STMT *insert = nullptr, *upsert = nullptr;
  size_t max_packet = 16u << 20;
  bool ever_connected = false;
  bool pattern_column = false, patterns_table = false;  // what this connection writes
  bool filled_column = false, filled_table = false;     // what cols was filled for
  Columns cols;
  Columns fresh;  // the rows of cols whose event_id is not stored yet (when patterns are counted)
  BatchPatterns patterns;
  std::unordered_set<std::string> stored_ids;  // event ids already stored (or earlier in the batch)
  std::string sql;                             // scratch for the event id check
  Scratch scratch;
  rapidjson::StringBuffer json;
  std::vector<uint32_t> too_big;  // rows of the last insert() larger than max_packet: left out

  void disconnect() {
    if (insert) mysql_stmt_close(insert);
    if (upsert) mysql_stmt_close(upsert);
    insert = upsert = nullptr;
    conn.reset();
  }
  ~Worker() { disconnect(); }
};

enum class Outcome { kOk, kConnection, kConflict, kData, kTableGone, kOther };

class MariaDbOutput {
 public:
  MariaDbOutput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    settings_ = mariadb::Settings::from(c, problems);
    create_table_ = c.boolean("create_table");
    full_text_ = c.boolean("full_text");
    if (c.has("retention")) retention_ms_ = c.integer("retention");
    if (retention_ms_ < 0) problems.add("retention", "must not be negative");
    problems.refuse_if_any();
    retention_batch_ = c.integer("retention_batch");
    retention_pause_ms_ = c.integer("retention_pause");
    retention_interval_ms_ = c.integer("retention_interval");
    // Not thread-safe, so it runs here, on the loop thread, before any worker connects.
    if (mysql_library_init(0, nullptr, nullptr) != 0)
      throw std::runtime_error("libmariadb failed to initialise");

    for (int with_pattern = 0; with_pattern < 2; ++with_pattern) {
      const int n = with_pattern ? kColumns : kPatternId;
      std::string sql = "INSERT INTO `" + settings_.table + "` (";
      for (int i = 0; i < n; ++i) sql += std::string(i ? "," : "") + "`" + kColumnNames[i] + "`";
      sql += ") VALUES (";
      for (int i = 0; i < n; ++i) sql += i ? ",?" : "?";
      // A re-delivered event_id changes nothing (INSERT IGNORE would also hide real data errors).
      sql += ") ON DUPLICATE KEY UPDATE id=id";
      insert_sql_[with_pattern] = sql;
    }
    // A batch's rows of one pattern: counts add up, the seen range widens, a template replaces
    // the stored one (the newest is the most general), as in the SQLite store.
    upsert_sql_ = "INSERT INTO `" + mariadb::patterns_table(settings_.table) +
                  "` (id, service, template, first_seen, last_seen, count) VALUES (?,?,?,?,?,?) "
                  "ON DUPLICATE KEY UPDATE count = count + VALUES(count), "
                  "first_seen = LEAST(first_seen, VALUES(first_seen)), "
                  "last_seen = GREATEST(last_seen, VALUES(last_seen)), "
                  "template = COALESCE(VALUES(template), template)";

    auto counter = [&](const char *name, const char *help) {
      return host->metric_counter(inst, name, help, nullptr);
    };
    m_inserted_ = counter("mariadb_rows_inserted_total", "rows inserted");
    m_duplicates_ = counter("mariadb_rows_duplicate_total",
                            "rows not inserted because their event_id was already stored");
    m_connect_errors_ = counter("mariadb_connect_errors_total", "failed connection attempts");
    m_reconnects_ = counter("mariadb_reconnects_total", "connections re-established after a loss");
    m_lost_ = counter("mariadb_connection_lost_total",
                      "batches interrupted by a lost connection (retried whole)");
    m_conflicts_ = counter("mariadb_conflicts_total",
                           "batches rolled back by a deadlock, a lock wait timeout or another "
                           "writer storing some of their event ids meanwhile (retried whole)");
    m_data_errors_ =
        counter("mariadb_data_errors_total",
                "batches refused for a bad value (bisected; the bad row dead-lettered)");
    m_other_errors_ =
        counter("mariadb_other_errors_total", "batches failed for another reason (retried)");
    m_packet_splits_ = counter("mariadb_packet_splits_total",
                               "extra statements sent because a batch exceeded max_allowed_packet");
    m_too_big_ = counter("mariadb_rows_too_big_total",
                         "records larger than max_allowed_packet, dead-lettered one by one");
    m_utf8_fixed_ = counter("mariadb_invalid_utf8_bytes_total",
                            "invalid UTF-8 bytes replaced by U+FFFD before insert");
    m_ret_deleted_ = counter("mariadb_retention_deleted_total", "rows deleted by retention");
    m_ret_errors_ = counter("mariadb_retention_errors_total", "failed retention statements");
    m_patterns_ = counter("mariadb_patterns_upserted_total",
                          "rows of the patterns table inserted or updated (one per pattern and "
                          "batch)");
    m_long_templates_ = counter("mariadb_templates_too_long_total",
                                "templates longer than the template column holds (64 KiB), "
                                "stored NULL");
    m_ret_patterns_ = counter("mariadb_retention_patterns_deleted_total",
                              "rows of the patterns table deleted by retention");
  }

  ~MariaDbOutput() { stop(); }

  int start() {
    unsigned err = 0;
    std::string why;
    Conn conn = mariadb::connect(settings_, err, why);
    if (!conn) {
      if (!mariadb::is_transient_connect_error(err)) {
        host_->log(inst_, DM_LOG_ERROR, "%s (check user, password, database and TLS options)",
                   why.c_str());
        return 1;
      }
      // A server that is down (or still starting) is waited for: flushes retry with backoff.
      host_->log(inst_, DM_LOG_WARN, "%s; retrying on each flush", why.c_str());
      set_unhealthy(why);
    } else if (!ensure_schema(conn.get(), why)) {
      host_->log(inst_, DM_LOG_ERROR, "%s", why.c_str());
      return 1;
    } else {
      check_max_packet(conn.get());
      host_->log(inst_, DM_LOG_INFO, "connected to %s, table %s.%s ready",
                 settings_.where().c_str(), settings_.database.c_str(), settings_.table.c_str());
    }
    if (retention_ms_ > 0) retention_thread_ = std::thread([this] { retention_main(); });
    return 0;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(ret_mu_);
      stopping_ = true;
    }
    ret_cv_.notify_all();
    if (retention_thread_.joinable()) retention_thread_.join();
  }

  int worker_init(uint32_t index, void **ws) {
    mysql_thread_init();
    auto *w = new Worker;
    w->index = index;
    *ws = w;
    return 0;
  }

  void worker_fini(void *ws) {
    delete static_cast<Worker *>(ws);
    mysql_thread_end();
  }

  int health(char *buf, size_t cap) {
    if (healthy_.load(std::memory_order_relaxed)) return 0;
    std::lock_guard<std::mutex> lk(health_mu_);
    std::snprintf(buf, cap, "%s", health_reason_.c_str());
    return 1;
  }

  dm_flush_status flush(void *ws, const dm_batch *batch, dm_flush_token *token,
                        dm_flush_result *res) {
    std::unique_lock<std::mutex> fallback_lock;
    auto *w = static_cast<Worker *>(ws);
    if (!w) {  // a host that flushes without worker_init: one shared worker
      fallback_lock = std::unique_lock<std::mutex>(fallback_mu_);
      if (!fallback_) fallback_ = std::make_unique<Worker>();
      w = fallback_.get();
    }
    if (batch->count == 0) return DM_FLUSH_OK;

    std::string why;
    bool filled = false;
    for (int attempt = 0; attempt < kFlushAttempts; ++attempt) {
      if (!w->conn && !connect(*w, why)) {
        reason(res, why);
        res->retry_after_ms = kConnectRetryAfterMs;
        return DM_FLUSH_RETRY;
      }
      // Filled for what this connection's table keeps (a table recreated meanwhile may differ).
      if (!filled || w->filled_column != w->pattern_column ||
          w->filled_table != w->patterns_table) {
        fill(*w, *batch);
        filled = true;
      }
      uint64_t inserted = 0;
      const Outcome o = insert(*w, *batch, inserted, why);
      switch (o) {
        case Outcome::kOk:
          // A record the server can never take is refused alone; the rest is committed.
          for (uint32_t i : w->too_big)
            host_->flush_record_status(token, i, DM_FLUSH_ERROR, too_big_reason(*w, i).c_str());
          add(m_too_big_, w->too_big.size());
          add(m_inserted_, inserted);
          add(m_duplicates_, batch->count - w->too_big.size() - inserted);
          set_healthy();
          return DM_FLUSH_OK;
        case Outcome::kConnection:
          // The commit may or may not have happened: retrying is harmless (event_id is unique).
          add(m_lost_, 1);
          w->disconnect();
          set_unhealthy(why);
          continue;
        case Outcome::kConflict:
          add(m_conflicts_, 1);
          continue;
        case Outcome::kTableGone: {
          // Dropped (or renamed) under us: the next connection checks and recreates it.
          add(m_other_errors_, 1);
          w->disconnect();
          std::lock_guard<std::mutex> lk(schema_mu_);
          schema_ok_ = false;
          continue;
        }
        case Outcome::kData:
          // Which row: only in some messages' text ("at row N"), so the engine bisects.
          add(m_data_errors_, 1);
          reason(res, why);
          return DM_FLUSH_SPLIT;
        case Outcome::kOther:
          add(m_other_errors_, 1);
          reason(res, why);
          return DM_FLUSH_RETRY;
      }
    }
    reason(res, why);
    return DM_FLUSH_RETRY;
  }

 private:
  void add(dm_metric *m, double v) {
    if (m && v != 0) host_->metric_add(m, v);
  }
  static void reason(dm_flush_result *res, const std::string &why) {
    std::snprintf(res->reason, sizeof res->reason, "%s", why.c_str());
  }
  void set_unhealthy(const std::string &why) {
    std::lock_guard<std::mutex> lk(health_mu_);
    health_reason_ = why;
    healthy_.store(false, std::memory_order_relaxed);
  }
  void set_healthy() {
    if (!healthy_.load(std::memory_order_relaxed)) healthy_.store(true, std::memory_order_relaxed);
  }

  // Creates the table when missing and allowed, then checks it; false with a message that
  // says what to change.
  bool ensure_schema(MYSQL *m, std::string &why) {
    std::lock_guard<std::mutex> lk(schema_mu_);
    if (schema_ok_) return true;
    mariadb::TableCheck check;
    if (!mariadb::check_table(m, settings_.database, settings_.table, check, why)) {
      why = "cannot read the schema of " + settings_.table + ": " + why;
      return false;
    }
    if (!check.exists) {
      if (!create_table_) {
        why = "table " + settings_.database + "." + settings_.table +
              " does not exist and create_table is false: create it (the mariadb output's README "
              "gives its schema), or let devmesh create it with create_table: true";
        return false;
      }
      const std::string ddl = mariadb::create_table_sql(settings_.table, full_text_);
      if (mysql_real_query(m, ddl.data(), ddl.size()) != 0) {
        why = "cannot create table " + settings_.table + ": " + mariadb::error_text(m);
        return false;
      }
      host_->log(inst_, DM_LOG_INFO, "created table %s.%s%s", settings_.database.c_str(),
                 settings_.table.c_str(), full_text_ ? " with a FULLTEXT index on message" : "");
      if (!mariadb::check_table(m, settings_.database, settings_.table, check, why)) return false;
    }
    if (!check.problems.empty()) {
      why = "table " + settings_.database + "." + settings_.table +
            " is not compatible with devmesh's log_events schema: ";
      for (size_t i = 0; i < check.problems.size(); ++i) why += (i ? "; " : "") + check.problems[i];
      return false;
    }
    if (!check.short_columns.empty() && !widen_short_columns(m, check, why)) return false;
    if (!ensure_pattern_schema(m, check, why)) return false;
    for (auto &w : check.warnings) host_->log(inst_, DM_LOG_WARN, "%s", w.c_str());
    if (full_text_ && !check.has_full_text)
      host_->log(inst_, DM_LOG_WARN,
                 "table %s has no FULLTEXT index on message, so the query's q= cannot use one; "
                 "add it with ALTER TABLE `%s` ADD FULLTEXT KEY ft_message (message)",
                 settings_.table.c_str(), settings_.table.c_str());
    schema_ok_ = true;
    return true;
  }

  // The pattern_id column with its index, and the patterns table. A table of the previous
  // release lacks them: with create_table true they are added in place (rows kept); else, or
  // when that fails, the output writes without them and says how to add them.
  bool ensure_pattern_schema(MYSQL *m, mariadb::TableCheck &check, std::string &why) {
    const std::string name = settings_.database + "." + settings_.table;
    const std::string ptable = mariadb::patterns_table(settings_.table);
    std::vector<std::string> pending;
    if (!check.has_pattern_id) pending.push_back(mariadb::add_pattern_column_sql(settings_.table));
    if (!check.has_pattern_index)
      pending.push_back(
          mariadb::add_pattern_index_sql(settings_.table, check.has_old_pattern_index));
    std::string statements;
    for (const auto &sql : pending) statements += (statements.empty() ? "" : "; ") + sql;
    // Only the index to replace: a table made with the earlier pattern index, whose patterns are
    // there but counted slowly with a level filter.
    const bool index_only = check.has_pattern_id && check.has_old_pattern_index;
    if (!pending.empty() && !create_table_) {
      host_->log(inst_, DM_LOG_WARN,
                 "table %s has no %s (made by %s): create_table is false, so devmesh does not "
                 "alter it and %s; to add it run: %s",
                 name.c_str(),
                 check.has_pattern_id ? "index on (pattern_id, timestamp, id, level)"
                                      : "pattern_id column",
                 index_only ? "a build with the earlier pattern index"
                            : "a release before the patterns filter",
                 index_only             ? "/query/patterns with level or min_level reads every row "
                                          "of its window"
                 : check.has_pattern_id ? "a pattern's rows are found by a scan"
                                        : "pattern ids are not stored",
                 statements.c_str());
    } else if (index_only) {
      host_->log(inst_, DM_LOG_WARN,
                 "table %s has the earlier pattern index: replacing its index on (pattern_id, "
                 "timestamp) with one on (pattern_id, timestamp, id, level) in place (rows kept; "
                 "other sessions read and write meanwhile, this output's batches wait): %s",
                 name.c_str(), statements.c_str());
    } else if (!pending.empty()) {
      host_->log(inst_, DM_LOG_WARN,
                 "table %s was made by a release before the patterns filter: adding the "
                 "pattern_id column and its index in place (rows kept; writes wait while a table "
                 "with a FULLTEXT index is rebuilt): %s",
                 name.c_str(), statements.c_str());
    }
    if (!pending.empty() && create_table_) {
      const auto began = std::chrono::steady_clock::now();
      std::string failed;
      for (const auto &sql : pending)
        if (!long_ddl(sql, failed)) {
          host_->log(inst_, DM_LOG_WARN,
                     "cannot alter %s (%s): going on without it. It gives up after %u s when a "
                     "session holds the table and needs the ALTER privilege; else run it "
                     "yourself: %s",
                     name.c_str(), failed.c_str(), kMigrationLockWaitS, sql.c_str());
          break;
        }
      if (!mariadb::check_table(m, settings_.database, settings_.table, check, why)) return false;
      if (check.has_pattern_id && check.has_pattern_index)
        host_->log(inst_, DM_LOG_INFO, "table %s has the pattern_id column and index (%.1f s)",
                   name.c_str(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    }
    if (!mariadb::valid_identifier(ptable)) {
      // A table name of 56 to 64 characters leaves no room for the suffix.
      host_->log(inst_, DM_LOG_WARN,
                 "table name %s is too long for a patterns table beside it (%s is over 64 "
                 "characters): templates are not stored",
                 settings_.table.c_str(), ptable.c_str());
      pattern_column_ = check.has_pattern_id;
      patterns_table_ = false;
      return true;
    }
    bool exists = false;
    std::vector<std::string> problems;
    if (!mariadb::check_patterns_table(m, settings_.database, settings_.table, exists, problems,
                                       why)) {
      why = "cannot read the schema of " + ptable + ": " + why;
      return false;
    }
    if (!problems.empty()) {
      why = "table " + settings_.database + "." + ptable +
            " is not compatible with devmesh's patterns table: ";
      for (size_t i = 0; i < problems.size(); ++i) why += (i ? "; " : "") + problems[i];
      return false;
    }
    if (!exists && create_table_) {
      const std::string ddl = mariadb::create_patterns_sql(settings_.table);
      if (mysql_real_query(m, ddl.data(), ddl.size()) != 0) {
        why = "cannot create table " + ptable + ": " + mariadb::error_text(m);
        return false;
      }
      host_->log(inst_, DM_LOG_INFO, "created table %s.%s", settings_.database.c_str(),
                 ptable.c_str());
      exists = true;
    } else if (!exists) {
      host_->log(inst_, DM_LOG_WARN,
                 "table %s.%s does not exist and create_table is false: templates are not "
                 "stored; create it with: %s",
                 settings_.database.c_str(), ptable.c_str(),
                 mariadb::create_patterns_sql(settings_.table).c_str());
    }
    pattern_column_ = check.has_pattern_id;
    patterns_table_ = exists;
    return true;
  }

  // Runs a schema change on a connection of its own: building an index on a big table outlasts
  // `timeout`, and the server would go on with it after the client gave up. It gives up early
  // while another session holds the table, rather than stall an older devmesh writing to it.
  bool long_ddl(const std::string &sql, std::string &why) {
    mariadb::Settings long_reads = settings_;
    long_reads.timeout_s = kMigrationTimeoutS;
    unsigned err = 0;
    Conn conn = mariadb::connect(long_reads, err, why);
    if (!conn) return false;
    const std::string lock_wait =
        "SET SESSION lock_wait_timeout=" + std::to_string(kMigrationLockWaitS);
    if (mysql_real_query(conn.get(), lock_wait.data(), lock_wait.size()) != 0 ||
        mysql_real_query(conn.get(), sql.data(), sql.size()) != 0) {
      why = mariadb::error_text(conn.get());
      return false;
    }
    return true;
  }

  // The previous release made message TEXT (64 KiB): longer messages, accepted at ingest, were
  // refused by the column and dead-lettered. A table this output may create is widened in place
  // once (the check finds MEDIUMTEXT afterwards); with create_table false, or when the ALTER
  // fails, it is used as is, and the log says what it can hold and how to widen it.
  bool widen_short_columns(MYSQL *m, mariadb::TableCheck &check, std::string &why) {
    const std::string name = settings_.database + "." + settings_.table;
    const std::string alter = mariadb::widen_columns_sql(settings_.table, check.short_columns);
    std::string cols;
    for (const auto &c : check.short_columns)
      cols += (cols.empty() ? "" : ", ") + std::string("column ") + c.name + " is " +
              c.column_type + " (at most " + mariadb::bytes_text(c.max_bytes) + ")";
    if (!create_table_) {
      host_->log(inst_, DM_LOG_WARN,
                 "table %s: %s, less than the ingest limits (1 MiB message, 1 MiB meta): the "
                 "table refuses longer values and they are dead-lettered. create_table is false, "
                 "so devmesh does not alter it; to keep them whole run: %s",
                 name.c_str(), cols.c_str(), alter.c_str());
      return true;
    }
    std::vector<std::vector<std::string>> rows;
    std::string ignored;
    const std::string estimate =
        mariadb::query_rows(m,
                            "SELECT IFNULL(TABLE_ROWS,0) FROM information_schema.TABLES WHERE "
                            "TABLE_SCHEMA='" +
                                settings_.database + "' AND TABLE_NAME='" + settings_.table + "'",
                            rows, ignored) &&
                !rows.empty()
            ? rows[0][0]
            : "?";
    host_->log(inst_, DM_LOG_WARN,
               "table %s: %s; widening it to MEDIUMTEXT so that values up to the ingest limits "
               "are kept whole. This runs once, after an upgrade: MariaDB copies the table "
               "(about %s rows) and holds writes to it until done: %s",
               name.c_str(), cols.c_str(), estimate.c_str(), alter.c_str());
    // On a connection of its own: copying a big table outlasts `timeout`, and the server would
    // go on with it after the client gave up.
    mariadb::Settings long_reads = settings_;
    long_reads.timeout_s = kMigrationTimeoutS;
    unsigned err = 0;
    Conn conn = mariadb::connect(long_reads, err, why);
    if (!conn) return false;
    const auto began = std::chrono::steady_clock::now();
    const std::string lock_wait =
        "SET SESSION lock_wait_timeout=" + std::to_string(kMigrationLockWaitS);
    if (mysql_real_query(conn.get(), lock_wait.data(), lock_wait.size()) != 0 ||
        mysql_real_query(conn.get(), alter.data(), alter.size()) != 0) {
      // Not a reason to stay down: the table still takes every value it took before, and the
      // longer ones are dead-lettered, not lost. The next start tries again.
      host_->log(inst_, DM_LOG_WARN,
                 "cannot widen %s (%s): going on with the table as it is, so longer values are "
                 "refused by it and dead-lettered. It gives up after %u s when a session holds "
                 "the table (a long transaction, an older devmesh) and needs the ALTER "
                 "privilege; else run it yourself: %s",
                 name.c_str(), mariadb::error_text(conn.get()).c_str(), kMigrationLockWaitS,
                 alter.c_str());
      return true;
    }
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    if (!mariadb::check_table(m, settings_.database, settings_.table, check, why)) return false;
    if (!check.short_columns.empty()) {
      why = "table " + name + " is still short after: " + alter;
      return false;
    }
    host_->log(inst_, DM_LOG_INFO, "table %s widened in %.1f s", name.c_str(), took);
    return true;
  }

  // Every record within the ingest limits must fit one statement, else it is dead-lettered:
  // said at start, where an operator looks, not at the first large record.
  void check_max_packet(MYSQL *m) {
    std::vector<std::vector<std::string>> rows;
    std::string why;
    if (!mariadb::query_rows(m, "SELECT @@max_allowed_packet", rows, why) || rows.empty()) {
      host_->log(inst_, DM_LOG_WARN, "cannot read max_allowed_packet: %s", why.c_str());
      return;
    }
    const uint64_t packet = std::strtoull(rows[0][0].c_str(), nullptr, 10);
    if (packet < mariadb::kLargestRowBytes + kPacketMargin)
      host_->log(inst_, DM_LOG_WARN,
                 "the server's max_allowed_packet is %s: a record at the ingest limits (1 MiB "
                 "message, 1 MiB meta) can take up to %s in one statement and would be "
                 "dead-lettered; set max_allowed_packet to at least 16M (MariaDB's default) in "
                 "the server's configuration",
                 mariadb::bytes_text(packet).c_str(),
                 mariadb::bytes_text(mariadb::kLargestRowBytes).c_str());
  }

  bool connect(Worker &w, std::string &why) {
    unsigned err = 0;
    w.conn = mariadb::connect(settings_, err, why);
    if (!w.conn) {
      add(m_connect_errors_, 1);
      set_unhealthy(why);
      return false;
    }
    auto fail = [&](std::string msg) {
      why = std::move(msg);
      w.disconnect();
      add(m_connect_errors_, 1);
      set_unhealthy(why);
      return false;
    };
    if (!ensure_schema(w.conn.get(), why)) return fail(why);
    std::vector<std::vector<std::string>> rows;
    if (!mariadb::query_rows(w.conn.get(), "SELECT @@max_allowed_packet", rows, why) ||
        rows.empty())
      return fail("cannot read max_allowed_packet: " + why);
    w.max_packet = std::strtoull(rows[0][0].c_str(), nullptr, 10);
    if (mysql_autocommit(w.conn.get(), 0) != 0)
      return fail("cannot turn autocommit off: " + mariadb::error_text(w.conn.get()));
    {
      std::lock_guard<std::mutex> lk(schema_mu_);
      w.pattern_column = pattern_column_;
      w.patterns_table = patterns_table_;
    }
    const std::string &insert_sql = insert_sql_[w.pattern_column ? 1 : 0];
    w.insert = mysql_stmt_init(w.conn.get());
    if (!w.insert) return fail("mysql_stmt_init failed");
    if (mysql_stmt_prepare(w.insert, insert_sql.data(), insert_sql.size()) != 0)
      return fail("cannot prepare the insert: " + mariadb::error_text(w.insert));
    if (w.patterns_table) {
      w.upsert = mysql_stmt_init(w.conn.get());
      if (!w.upsert) return fail("mysql_stmt_init failed");
      if (mysql_stmt_prepare(w.upsert, upsert_sql_.data(), upsert_sql_.size()) != 0)
        return fail("cannot prepare the patterns upsert: " + mariadb::error_text(w.upsert));
    }
    if (w.ever_connected) {
      add(m_reconnects_, 1);
      host_->log(inst_, DM_LOG_INFO, "worker %u reconnected to %s", w.index,
                 settings_.where().c_str());
    }
    w.ever_connected = true;
    return true;
  }

  // Fills the column arrays from the batch: sanitised text, meta as a JSON object, UTC time.
  // The patterns filter's keys leave meta_json only for where the table keeps them: pattern_id
  // for the column, pattern (the template) for the patterns table.
  void fill(Worker &w, const dm_batch &batch) {
    Columns &c = w.cols;
    const uint32_t n = batch.count;
    c.resize(n);
    w.scratch.reset();
    w.filled_column = w.pattern_column;
    w.filled_table = w.patterns_table;
    uint64_t replaced = 0, long_templates = 0;
    rapidjson::Writer<rapidjson::StringBuffer> json;
    for (uint32_t r = 0; r < n; ++r) {
      const dm_record &rec = batch.records[r];
      size_t bytes = kRowOverhead;
      auto text = [&](Col col, dm_str s, bool null_if_empty) {
        if (null_if_empty && s.len == 0) {
          c.ptr[col][r] = nullptr;
          c.len[col][r] = 0;
          c.ind[col][r] = STMT_INDICATOR_NULL;
          return;
        }
        const std::string_view v = clean_utf8(sv(s), w.scratch, replaced);
        c.ptr[col][r] = v.data() ? v.data() : "";
        c.len[col][r] = static_cast<unsigned long>(v.size());
        c.ind[col][r] = STMT_INDICATOR_NONE;
        bytes += v.size();
      };
      to_mysql_time(rec.timestamp_ns, c.times[r]);
      c.time_ptrs[r] = &c.times[r];
      c.ind[kTimestamp][r] = STMT_INDICATOR_NONE;
      for (size_t f = 0; f < kRecordFieldCount; ++f)
        text(field_column(f), rec.*kRecordFields[f].member, kRecordFields[f].optional);
      const char *lvl = level_text(rec.level);
      c.ptr[kLevel][r] = lvl;
      c.len[kLevel][r] = static_cast<unsigned long>(std::strlen(lvl));
      c.ind[kLevel][r] = STMT_INDICATOR_NONE;
      c.batch_row[r] = r;
      const PatternMeta pm = pattern_meta(rec);
      const bool take_id = pm.valid && w.filled_column;
      const bool take_text = take_id && w.filled_table && pm.text_index != kNoPatternMeta;
      c.pattern_ids[r] = static_cast<long long>(pm.id);
      c.ind[kPatternId][r] = take_id ? STMT_INDICATOR_NONE : STMT_INDICATOR_NULL;
      c.templates[r] = {};
      if (take_text) {
        const std::string_view t =
            clean_utf8(sv(rec.meta[pm.text_index].value), w.scratch, replaced);
        if (t.size() <= mariadb::kTemplateMaxBytes)
          c.templates[r] = t;
        else
          ++long_templates;
      }
      const uint32_t taken = (take_id ? 1 : 0) + (take_text ? 1 : 0);
      if (rec.meta_count == taken) {
        c.ptr[kMeta][r] = nullptr;
        c.len[kMeta][r] = 0;
        c.ind[kMeta][r] = STMT_INDICATOR_NULL;
      } else {
        w.json.Clear();
        json.Reset(w.json);
        json.StartObject();
        for (uint32_t i = 0; i < rec.meta_count; ++i) {
          if ((take_id && i == pm.id_index) || (take_text && i == pm.text_index)) continue;
          const std::string_view k = clean_utf8(sv(rec.meta[i].key), w.scratch, replaced);
          json.Key(k.data() ? k.data() : "", static_cast<rapidjson::SizeType>(k.size()));
          if (write_typed_meta(json, rec.meta[i])) continue;  // valid UTF-8 (meta_set)
          const std::string_view v = clean_utf8(sv(rec.meta[i].value), w.scratch, replaced);
          json.String(v.data() ? v.data() : "", static_cast<rapidjson::SizeType>(v.size()));
        }
        json.EndObject();
        const size_t len = w.json.GetSize();
        char *p = w.scratch.alloc(len);
        std::memcpy(p, w.json.GetString(), len);
        c.ptr[kMeta][r] = p;
        c.len[kMeta][r] = static_cast<unsigned long>(len);
        c.ind[kMeta][r] = STMT_INDICATOR_NONE;
        bytes += len;
      }
      c.ptr[kEventId][r] = reinterpret_cast<const char *>(rec.event_id);
      c.len[kEventId][r] = sizeof rec.event_id;
      c.ind[kEventId][r] = STMT_INDICATOR_NONE;
      c.row_bytes[r] = bytes;
    }
    add(m_utf8_fixed_, static_cast<double>(replaced));
    add(m_long_templates_, static_cast<double>(long_templates));
  }

  Outcome classify(unsigned err, const std::string &text, std::string &why) {
    why = text;
    if (mariadb::is_connection_error(err)) return Outcome::kConnection;
    if (mariadb::is_conflict_error(err)) return Outcome::kConflict;
    if (mariadb::is_data_error(err)) return Outcome::kData;
    if (err == ER_NO_SUCH_TABLE) return Outcome::kTableGone;
    return Outcome::kOther;
  }

  std::string too_big_reason(const Worker &w, uint32_t row) const {
    return "a record of " + std::to_string(w.cols.row_bytes[row]) +
           " bytes exceeds the server's max_allowed_packet (" + std::to_string(w.max_packet) + ")";
  }

  // Executes the batch's rows in one transaction: as few bulk statements as max_allowed_packet
  // allows; a row larger than that alone is left out (w.too_big). With a patterns table, the
  // rows whose event_id is stored already (a re-delivery) are left out first, so that the
  // patterns' counts add only the rows inserted; the upsert of those runs in the same
  // transaction. Rolls back on any failure.
  Outcome insert(Worker &w, const dm_batch &batch, uint64_t &inserted, std::string &why) {
    auto rollback = [&](Outcome o) {
      if (o != Outcome::kConnection && mysql_rollback(w.conn.get()) != 0)
        return Outcome::kConnection;
      return o;
    };
    const Columns *src = &w.cols;
    uint32_t n = batch.count;
    bool counted = false;  // pattern counts: every row sent must be inserted
    if (w.upsert && w.filled_column) {
      bool any = false;
      for (uint32_t r = 0; r < n && !any; ++r)
        any = w.cols.ind[kPatternId][r] == STMT_INDICATOR_NONE;
      if (any) {
        const Outcome o = leave_out_stored(w, n, why);
        if (o != Outcome::kOk) return rollback(o);
        src = &w.fresh;
        counted = true;
      }
    }
    const Columns &c = *src;
    const size_t limit =
        w.max_packet > 2 * kPacketMargin ? w.max_packet - kPacketMargin : w.max_packet / 2;
    const int columns = w.filled_column ? kColumns : kPatternId;
    uint32_t from = 0;
    int statements = 0;
    w.too_big.clear();
    while (from < n) {
      // Known before sending: no statement could carry it, and no bisection is needed to find it.
      if (c.row_bytes[from] > limit) {
        w.too_big.push_back(c.batch_row[from++]);
        continue;
      }
      size_t bytes = 0;
      uint32_t to = from;
      while (to < n && bytes + c.row_bytes[to] <= limit) bytes += c.row_bytes[to++];
      MYSQL_BIND bind[kColumns];
      std::memset(bind, 0, sizeof bind);
      for (int col = 0; col < columns; ++col) {
        MYSQL_BIND &b = bind[col];
        if (col == kTimestamp) {
          b.buffer_type = MYSQL_TYPE_DATETIME;
          b.buffer = const_cast<MYSQL_TIME **>(c.time_ptrs.data() + from);
        } else if (col == kPatternId) {
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = const_cast<long long *>(c.pattern_ids.data() + from);
        } else {
          b.buffer_type = col == kEventId ? MYSQL_TYPE_BLOB : MYSQL_TYPE_STRING;
          b.buffer = const_cast<const char **>(c.ptr[col].data() + from);
          b.length = const_cast<unsigned long *>(c.len[col].data() + from);
        }
        b.u.indicator = const_cast<char *>(c.ind[col].data() + from);
      }
      unsigned int rows = to - from;
      if (mysql_stmt_attr_set(w.insert, STMT_ATTR_ARRAY_SIZE, &rows) != 0 ||
          mysql_stmt_bind_param(w.insert, bind) != 0 || mysql_stmt_execute(w.insert) != 0)
        return rollback(classify(mysql_stmt_errno(w.insert), mariadb::error_text(w.insert), why));
      const my_ulonglong affected = mysql_stmt_affected_rows(w.insert);
      if (affected != static_cast<my_ulonglong>(-1)) inserted += affected;
      ++statements;
      from = to;
    }
    if (counted) {
      // Each row sent had an event_id not stored when checked: fewer inserted means another
      // writer stored some of them meanwhile (the same records re-delivered to a second worker
      // or engine). Which ones is not known, so the batch is retried: the check then finds them.
      if (inserted != n - w.too_big.size()) {
        why = "another writer stored some of this batch's event ids meanwhile";
        return rollback(Outcome::kConflict);
      }
      const Outcome o = upsert_patterns(w, c, n, batch, why);
      if (o != Outcome::kOk) return rollback(o);
    }
    if (mysql_commit(w.conn.get()) != 0)
      return rollback(classify(mysql_errno(w.conn.get()), mariadb::error_text(w.conn.get()), why));
    DM_CRASH_POINT("after_output_commit");
    if (statements > 1) add(m_packet_splits_, statements - 1);
    if (counted) add(m_patterns_, static_cast<double>(w.patterns.size()));
    return Outcome::kOk;
  }

  // Copies into w.fresh the rows of w.cols whose event_id is neither stored nor earlier in the
  // batch; n becomes their number. Read in the rows' transaction, by the unique key.
  Outcome leave_out_stored(Worker &w, uint32_t &n, std::string &why) {
    static constexpr char kHex[] = "0123456789abcdef";
    constexpr uint32_t kIdsPerQuery = 1000;
    const Columns &c = w.cols;
    w.stored_ids.clear();
    std::vector<std::vector<std::string>> found;
    for (uint32_t from = 0; from < n; from += kIdsPerQuery) {
      const uint32_t to = std::min(n, from + kIdsPerQuery);
      w.sql = "SELECT event_id FROM `" + settings_.table + "` WHERE event_id IN (";
      for (uint32_t r = from; r < to; ++r) {
        w.sql += r == from ? "x'" : ",x'";
        const auto *id = reinterpret_cast<const unsigned char *>(c.ptr[kEventId][r]);
        for (unsigned long i = 0; i < c.len[kEventId][r]; ++i) {
          w.sql += kHex[id[i] >> 4];
          w.sql += kHex[id[i] & 15];
        }
        w.sql += '\'';
      }
      w.sql += ')';
      std::string error;
      if (!mariadb::query_rows(w.conn.get(), w.sql, found, error))
        return classify(mysql_errno(w.conn.get()), error, why);
      for (auto &row : found) w.stored_ids.insert(std::move(row[0]));
    }
    w.fresh.resize(n);
    uint32_t kept = 0;
    for (uint32_t r = 0; r < n; ++r) {
      if (!w.stored_ids.emplace(c.ptr[kEventId][r], c.len[kEventId][r]).second) continue;
      w.fresh.copy_row(c, r, kept++);
    }
    n = kept;
    return Outcome::kOk;
  }

  // The patterns of the rows inserted (rows [0, n) of c but those too big), one upsert row
  // each, in id order so that two workers lock the rows they share in the same order.
  Outcome upsert_patterns(Worker &w, const Columns &c, uint32_t n, const dm_batch &batch,
                          std::string &why) {
    w.patterns.clear();
    size_t big = 0;
    for (uint32_t r = 0; r < n; ++r) {
      const uint32_t b = c.batch_row[r];
      if (big < w.too_big.size() && w.too_big[big] == b) {
        ++big;
        continue;
      }
      if (c.ind[kPatternId][r] != STMT_INDICATOR_NONE) continue;
      w.patterns.add(static_cast<uint64_t>(c.pattern_ids[r]),
                     std::string_view(c.ptr[kService][r], c.len[kService][r]), c.templates[r],
                     batch.records[b].timestamp_ns);
    }
    if (w.patterns.empty()) return Outcome::kOk;
    struct Up {
      long long id, count;
      const PatternRows *p;
    };
    std::vector<Up> ups;
    ups.reserve(w.patterns.size());
    for (const auto &[id, p] : w.patterns.rows())
      ups.push_back({static_cast<long long>(id), p.count, &p});
    std::sort(ups.begin(), ups.end(), [](const Up &a, const Up &b) { return a.id < b.id; });
    const size_t m = ups.size();
    std::vector<long long> ids(m), counts(m);
    std::vector<MYSQL_TIME> first(m), last(m);
    std::vector<MYSQL_TIME *> first_ptr(m), last_ptr(m);
    std::vector<const char *> service(m), text(m);
    std::vector<unsigned long> service_len(m), text_len(m), bytes(m);
    std::vector<char> no_ind(m, STMT_INDICATOR_NONE), text_ind(m);
    for (size_t i = 0; i < m; ++i) {
      const PatternRows &p = *ups[i].p;
      ids[i] = ups[i].id;
      counts[i] = ups[i].count;
      to_mysql_time(p.first, first[i]);
      to_mysql_time(p.last, last[i]);
      first_ptr[i] = &first[i];
      last_ptr[i] = &last[i];
      service[i] = p.service.data() ? p.service.data() : "";
      service_len[i] = static_cast<unsigned long>(p.service.size());
      text[i] = p.text.data() ? p.text.data() : "";
      text_len[i] = static_cast<unsigned long>(p.text.size());
      text_ind[i] = p.text.empty() ? STMT_INDICATOR_NULL : STMT_INDICATOR_NONE;
      bytes[i] = kRowOverhead + p.service.size() + p.text.size();
    }
    // Templates are up to 64 KiB each: several statements when max_allowed_packet needs them.
    const size_t limit =
        w.max_packet > 2 * kPacketMargin ? w.max_packet - kPacketMargin : w.max_packet / 2;
    for (size_t from = 0; from < m;) {
      size_t to = from, sum = 0;
      do sum += bytes[to++];
      while (to < m && sum + bytes[to] <= limit);
      MYSQL_BIND bind[6];
      std::memset(bind, 0, sizeof bind);
      bind[0].buffer_type = MYSQL_TYPE_LONGLONG;
      bind[0].buffer = ids.data() + from;
      bind[1].buffer_type = MYSQL_TYPE_STRING;
      bind[1].buffer = service.data() + from;
      bind[1].length = service_len.data() + from;
      bind[2].buffer_type = MYSQL_TYPE_STRING;
      bind[2].buffer = text.data() + from;
      bind[2].length = text_len.data() + from;
      bind[3].buffer_type = MYSQL_TYPE_DATETIME;
      bind[3].buffer = first_ptr.data() + from;
      bind[4].buffer_type = MYSQL_TYPE_DATETIME;
      bind[4].buffer = last_ptr.data() + from;
      bind[5].buffer_type = MYSQL_TYPE_LONGLONG;
      bind[5].buffer = counts.data() + from;
      for (int i = 0; i < 6; ++i)
        bind[i].u.indicator = (i == 2 ? text_ind.data() : no_ind.data()) + from;
      unsigned int rows = static_cast<unsigned int>(to - from);
      if (mysql_stmt_attr_set(w.upsert, STMT_ATTR_ARRAY_SIZE, &rows) != 0 ||
          mysql_stmt_bind_param(w.upsert, bind) != 0 || mysql_stmt_execute(w.upsert) != 0)
        return classify(mysql_stmt_errno(w.upsert), mariadb::error_text(w.upsert), why);
      from = to;
    }
    return Outcome::kOk;
  }

  // ---- retention ----------------------------------------------------------------------------

  // Templates none of whose rows can remain: one short statement (a few thousand rows at most),
  // run when the rows are done. A table without a patterns table has nothing to trim.
  void delete_old_patterns(MYSQL *m, const MYSQL_TIME &cutoff) {
    char at[64];
    std::snprintf(at, sizeof at, "%04u-%02u-%02u %02u:%02u:%02u.%06lu", cutoff.year, cutoff.month,
                  cutoff.day, cutoff.hour, cutoff.minute, cutoff.second, cutoff.second_part);
    const std::string sql = "DELETE FROM `" + mariadb::patterns_table(settings_.table) +
                            "` WHERE last_seen < '" + at + "'";
    if (mysql_real_query(m, sql.data(), sql.size()) != 0) {
      if (mysql_errno(m) == ER_NO_SUCH_TABLE) return;
      add(m_ret_errors_, 1);
      host_->log(inst_, DM_LOG_WARN, "retention of %s: %s",
                 mariadb::patterns_table(settings_.table).c_str(), mariadb::error_text(m).c_str());
      return;
    }
    const my_ulonglong n = mysql_affected_rows(m);
    if (n != static_cast<my_ulonglong>(-1)) add(m_ret_patterns_, static_cast<double>(n));
  }

  // Waits up to `d` or until stop(); true when stopping.
  template <class D>
  bool retention_wait(D d) {
    std::unique_lock<std::mutex> lk(ret_mu_);
    return ret_cv_.wait_for(lk, d, [&] { return stopping_; });
  }

  // Deletes rows older than the retention in bounded transactions on a connection of its own,
  // pausing between them so inserts keep their pace; sleeps when nothing old is left.
  void retention_main() {
    mysql_thread_init();
    Conn conn;
    MYSQL_STMT *del = nullptr;
    const std::string sql = "DELETE FROM `" + settings_.table + "` WHERE `timestamp` < ? LIMIT " +
                            std::to_string(retention_batch_);
    auto drop = [&] {
      if (del) mysql_stmt_close(del);
      del = nullptr;
      conn.reset();
    };
    uint64_t total = 0;
    while (!retention_wait(std::chrono::milliseconds(0))) {
      std::string why;
      if (!conn) {
        unsigned err = 0;
        conn = mariadb::connect(settings_, err, why);
        if (conn) {
          del = mysql_stmt_init(conn.get());
          if (!del || mysql_stmt_prepare(del, sql.data(), sql.size()) != 0) {
            why = del ? mariadb::error_text(del) : "mysql_stmt_init failed";
            drop();
          }
        }
        if (!conn) {
          add(m_ret_errors_, 1);
          host_->log(inst_, DM_LOG_DEBUG, "retention: %s", why.c_str());
          if (retention_wait(kRetentionErrorWait)) break;
          continue;
        }
      }
      MYSQL_TIME cutoff;
      to_mysql_time(static_cast<int64_t>(host_->now_ns()) - retention_ms_ * 1000000, cutoff);
      MYSQL_BIND b;
      std::memset(&b, 0, sizeof b);
      b.buffer_type = MYSQL_TYPE_DATETIME;
      b.buffer = &cutoff;
      const auto began = std::chrono::steady_clock::now();
      if (mysql_stmt_bind_param(del, &b) != 0 || mysql_stmt_execute(del) != 0) {
        add(m_ret_errors_, 1);
        const unsigned err = mysql_stmt_errno(del);
        host_->log(inst_, DM_LOG_WARN, "retention: %s", mariadb::error_text(del).c_str());
        if (mariadb::is_connection_error(err)) drop();
        if (retention_wait(kRetentionErrorWait)) break;
        continue;
      }
      const my_ulonglong n = mysql_stmt_affected_rows(del);
      add(m_ret_deleted_, static_cast<double>(n));
      total += n;
      if (n >= static_cast<my_ulonglong>(retention_batch_)) {
        // Deleting costs the server about what inserting does: pausing at least as long as
        // the last delete took leaves inserts at least half of its time while catching up.
        const auto took = std::chrono::steady_clock::now() - began;
        if (retention_wait(std::max<std::chrono::steady_clock::duration>(
                took, std::chrono::milliseconds(retention_pause_ms_))))
          break;
      } else {
        if (total)
          host_->log(inst_, DM_LOG_INFO, "retention: deleted %llu rows older than %lld ms",
                     static_cast<unsigned long long>(total), static_cast<long long>(retention_ms_));
        total = 0;
        delete_old_patterns(conn.get(), cutoff);
        if (retention_wait(std::chrono::milliseconds(retention_interval_ms_))) break;
      }
    }
    drop();
    mysql_thread_end();
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  mariadb::Settings settings_;
  bool create_table_ = true, full_text_ = true;
  int64_t retention_ms_ = 0, retention_batch_ = 5000, retention_pause_ms_ = 100;
  int64_t retention_interval_ms_ = 60000;
  std::string insert_sql_[2];  // without and with pattern_id
  std::string upsert_sql_;

  std::mutex schema_mu_;
  bool schema_ok_ = false;  // guarded by schema_mu_
  // What the table has (guarded by schema_mu_): a table of the previous release may lack the
  // column (create_table false, or a failed ALTER), and the patterns table may be missing.
  bool pattern_column_ = false, patterns_table_ = false;

  std::atomic<bool> healthy_{true};
  std::mutex health_mu_;
  std::string health_reason_;  // guarded by health_mu_

  std::mutex fallback_mu_;
  std::unique_ptr<Worker> fallback_;

  std::thread retention_thread_;
  std::mutex ret_mu_;
  std::condition_variable ret_cv_;
  bool stopping_ = false;  // guarded by ret_mu_

  dm_metric *m_inserted_, *m_duplicates_, *m_connect_errors_, *m_reconnects_, *m_lost_,
      *m_conflicts_, *m_data_errors_, *m_other_errors_, *m_packet_splits_, *m_too_big_,
      *m_utf8_fixed_, *m_ret_deleted_, *m_ret_errors_, *m_patterns_, *m_long_templates_,
      *m_ret_patterns_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::MariaDbOutput>::describe(
    DM_OUTPUT, "mariadb", "0.1.0",
    "inserts records into MariaDB's log_events table (the prototype's schema), one transaction "
    "per batch, idempotent on event_id, with optional background retention",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_FLUSH_ON_WORKER))
