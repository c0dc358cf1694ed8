// sqlite output: the embedded default store. Writes records into the prototype's log_events
// schema in one SQLite file (WAL), one transaction per batch, idempotent on event_id, with an
// optional FTS5 index on message fed per batch and time-based retention in the background. A row
// the table refuses is refused alone (flush_record_status); the rest of its batch is committed.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sqlite3.h>
#include <devmesh/plugin.hpp>

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <iterator>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include <crash_point.hpp>
#include <devmesh/record_fields.hpp>
#include <meta_json.hpp>
#include <pattern_meta.hpp>
#include <sqlite_schema.hpp>

namespace devmesh {
namespace {

namespace schema = sqlite_schema;

const char *const kSynchronous[] = {"full", "normal", "off", nullptr};

const dm_option kOptions[] = {
    {"path", DM_OPT_PATH, DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE, "./data/devmesh.db", 0, 0,
     nullptr, "database file; its directory is created if missing", 0},
    {"table", DM_OPT_STRING, 0, "log_events", 0, 0, nullptr,
     "table name (letters, digits, underscore); the FTS5 index is <table>_fts", 0},
    {"full_text", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "keep an FTS5 index on message (for the query plugin's q=), fed once per batch", 0},
    {"retention", DM_OPT_DURATION, 0, nullptr, 0, 0, nullptr,
     "delete rows whose timestamp is older than this (e.g. 90d); unset keeps everything", 0},
    {"retention_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "1m", 10, 86400000.0, nullptr,
     "how often the retention pass runs", 0},
    {"retention_batch", DM_OPT_INT, DM_OPT_BOUNDED, "2000", 1, 1000000, nullptr,
     "rows deleted per retention transaction (short transactions never stall inserts for long)", 0},
    {"synchronous", DM_OPT_STRING, 0, "full", 0, 0, kSynchronous,
     "PRAGMA synchronous: full makes every acknowledged batch survive a power loss; normal "
     "survives a crash of the process only",
     0},
    {"busy_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 0, 600000.0, nullptr,
     "how long a write waits for another writer (retention, a second process) before the batch "
     "is retried",
     0},
};

// Pause between two retention transactions, so a waiting insert gets the write lock.
constexpr auto kRetentionYield = std::chrono::milliseconds(20);

// One connection opened with our settings; throws with the path in the message.
sqlite3 *open_db(const std::string &path, int flags, int64_t busy_ms, const std::string &sync) {
  sqlite3 *db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    throw std::runtime_error("path: cannot open " + path + ": " + msg);
  }
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busy_ms));
  std::string pragmas = "PRAGMA synchronous=" + sync + ";";
  if (flags & SQLITE_OPEN_READWRITE) pragmas += "PRAGMA journal_size_limit=67108864;";
  char *err = nullptr;
  if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "?";
    sqlite3_free(err);
    sqlite3_close(db);
    throw std::runtime_error("path: " + path + ": " + msg);
  }
  return db;
}

// Runs SQL that returns no rows; "" or the error.
std::string exec(sqlite3 *db, const std::string &sql) {
  char *err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK) return "";
  std::string msg = err ? err : sqlite3_errmsg(db);
  sqlite3_free(err);
  return msg.empty() ? "error" : msg;
}

// Statements of one writer connection (one per worker thread).
struct Writer {
  sqlite3 *db = nullptr;
  sqlite3_stmt *begin = nullptr, *commit = nullptr, *rollback = nullptr, *insert = nullptr;
  sqlite3_stmt *max_id = nullptr, *fts_feed = nullptr, *upsert_pattern = nullptr;
  rapidjson::StringBuffer meta;  // reused: no heap allocation per record once grown
  BatchPatterns patterns;        // the batch's stored rows by pattern (views into the batch)

  ~Writer() { close(); }
  // Back to the unopened state; the next flush reopens.
  void close() {
    for (sqlite3_stmt *s : {begin, commit, rollback, insert, max_id, fts_feed, upsert_pattern})
      sqlite3_finalize(s);
    sqlite3_close(db);
    db = nullptr;
    begin = commit = rollback = insert = max_id = fts_feed = nullptr;
  }
};

// How a failed SQLite call ends a flush. SPLIT: the row is at fault, not the database (its
// insert is refused alone when SQLite kept the transaction, see write_batch).
dm_flush_status classify(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:  // NOT NULL, CHECK, a trigger's RAISE(ABORT): a row the table refuses
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return DM_FLUSH_SPLIT;
    default:  // BUSY, LOCKED, FULL, IOERR, CANTOPEN, NOMEM, READONLY...: may pass later
      return DM_FLUSH_RETRY;
  }
}

class SqliteOutput {
 public:
  SqliteOutput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    path_ = c.string("path");
    table_ = c.string("table");
    if (!schema::valid_identifier(table_))
      problems.add("table",
                   "'" + table_ + "' is not a plain identifier (letters, digits, underscore)");
    full_text_ = c.boolean("full_text");
    retention_ms_ = c.has("retention") ? c.integer("retention") : 0;
    if (c.has("retention") && retention_ms_ <= 0)
      problems.add("retention", "must be a positive duration (or unset)");
    problems.refuse_if_any();  // the table check below needs a valid name
    retention_interval_ms_ = c.integer("retention_interval");
    retention_batch_ = c.integer("retention_batch");
    synchronous_ = c.string("synchronous");
    busy_ms_ = c.integer("busy_timeout");
    // A file that is already there is checked now, without writing to it, so --dry-run reports
    // an incompatible table too.
    struct stat st;
    if (::stat(path_.c_str(), &st) == 0) {
      sqlite3 *db = nullptr;
      try {
        db = open_db(path_, SQLITE_OPEN_READONLY, busy_ms_, "normal");
      } catch (const std::runtime_error &e) {
        std::string why = e.what();
        problems.add("path", why.rfind("path: ", 0) == 0 ? why.substr(6) : why);
        problems.refuse_if_any();
      }
      std::string problem = schema::check_table(db, table_);
      sqlite3_close(db);
      if (!problem.empty()) problems.add("path", incompatible(problem));
      problems.refuse_if_any();
    }

    m_rows_ = host->metric_counter(inst, "sqlite_rows_inserted_total", "rows inserted", nullptr);
    m_duplicates_ = host->metric_counter(
        inst, "sqlite_rows_duplicate_total",
        "records skipped because their event_id was already stored (re-delivery)", nullptr);
    m_retries_ =
        host->metric_counter(inst, "sqlite_batches_retried_total",
                             "batches handed back for retry (busy, I/O, disk full)", nullptr);
    m_splits_ = host->metric_counter(
        inst, "sqlite_batches_split_total",
        "batches a row was refused in and SQLite ended the transaction, handed back to be split",
        nullptr);
    m_refused_ = host->metric_counter(
        inst, "sqlite_rows_refused_total",
        "rows the table refused (constraint, trigger, too big), dead-lettered one by one", nullptr);
    m_level_defaulted_ = host->metric_counter(inst, "sqlite_level_defaulted_total",
                                              "records without a level, stored as INFO", nullptr);
    m_retention_deleted_ = host->metric_counter(inst, "sqlite_retention_deleted_total",
                                                "rows deleted by retention", nullptr);
    m_retention_errors_ = host->metric_counter(inst, "sqlite_retention_errors_total",
                                               "retention passes that failed", nullptr);
  }

  ~SqliteOutput() { stop(); }

  // Creates the directory, file, schema and WAL mode; starts retention. Nonzero stops the engine.
  int start() {
    std::error_code ec;
    const auto dir = std::filesystem::path(path_).parent_path();
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    if (ec) {
      host_->log(inst_, DM_LOG_ERROR, "path: cannot create %s: %s", dir.c_str(),
                 ec.message().c_str());
      return 1;
    }
    sqlite3 *db =
        open_db(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, busy_ms_, synchronous_);
    std::string err = exec(db, "PRAGMA journal_mode=WAL");
    // Checked again under the write lock: another process may have created it meanwhile.
    if (err.empty()) err = exec(db, "BEGIN IMMEDIATE");
    std::string problem;
    bool rebuild_fts = false;
    if (err.empty()) {
      problem = schema::check_table(db, table_);
      const bool had_fts = schema::table_exists(db, schema::fts_name(table_));
      // A table made by an earlier release gets the columns added since (an upgrade).
      if (problem.empty() && schema::table_exists(db, table_))
        err = schema::add_missing_columns(db, table_);
      // The earlier pattern index (pattern_id, timestamp) is replaced by create_table_sql's, built
      // here in the schema transaction (about 1 s per million rows): said first, so that a long
      // start is not taken for a hang.
      if (problem.empty() && err.empty() &&
          schema::index_exists(db, table_ + "_idx_pattern_timestamp"))
        host_->log(inst_, DM_LOG_WARN,
                   "table %s has the earlier pattern index: building (pattern_id, timestamp, id, "
                   "level) in its place (rows kept; writers wait, readers go on)",
                   table_.c_str());
      if (problem.empty() && err.empty())
        err = exec(db, schema::create_table_sql(table_) + schema::create_patterns_sql(table_));
      if (problem.empty() && err.empty()) {
        if (full_text_ && !had_fts) {
          err = exec(db, schema::create_fts_sql(table_));
          rebuild_fts = true;
        } else if (!full_text_ && had_fts) {
          // Rows written from now on would be missing from it: a stale index answers q= wrongly.
          host_->log(inst_, DM_LOG_INFO, "full_text is off: dropping the FTS index %s",
                     schema::fts_name(table_).c_str());
          err = exec(db, "DROP TABLE " + schema::quote_ident(schema::fts_name(table_)));
        }
      }
      if (err.empty() && rebuild_fts)
        err = exec(db, "INSERT INTO " + schema::quote_ident(schema::fts_name(table_)) + "(" +
                           schema::quote_ident(schema::fts_name(table_)) + ") VALUES('rebuild')");
      err = err.empty() && problem.empty() ? exec(db, "COMMIT") : (exec(db, "ROLLBACK"), err);
    }
    sqlite3_close(db);
    if (!problem.empty()) {
      host_->log(inst_, DM_LOG_ERROR, "%s", incompatible(problem).c_str());
      return 1;
    }
    if (!err.empty()) {
      host_->log(inst_, DM_LOG_ERROR, "%s: %s", path_.c_str(), err.c_str());
      return 1;
    }
    if (retention_ms_ > 0) retention_ = std::thread([this] { retention_loop(); });
    return 0;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (retention_.joinable()) retention_.join();
  }

  int worker_init(uint32_t, void **ws) {
    *ws = new Writer;
    return 0;
  }

  void worker_fini(void *ws) { delete static_cast<Writer *>(ws); }

  dm_flush_status flush(void *ws, const dm_batch *batch, dm_flush_token *token,
                        dm_flush_result *res) {
    auto *w = static_cast<Writer *>(ws);
    if (!w) return fail(res, DM_FLUSH_ERROR, 0, "flush without worker state (workers needed)");
    if (!w->db) {
      if (int rc = prepare(*w)) {
        std::string msg = w->db ? sqlite3_errmsg(w->db) : sqlite3_errstr(rc);
        w->close();
        return fail(res, DM_FLUSH_RETRY, rc, "open " + path_ + ": " + msg);
      }
    }
    int rc = write_batch(*w, batch, token);
    if (rc == SQLITE_OK) return DM_FLUSH_OK;
    std::string msg = sqlite3_errmsg(w->db);
    sqlite3_step(w->rollback);
    sqlite3_reset(w->rollback);
    // Disk full and I/O errors leave the connection usable, but a fresh one after a failure is
    // the safer state to retry from.
    if ((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_CORRUPT) w->close();
    return fail(res, classify(rc), rc, msg);
  }

 private:
  std::string incompatible(const std::string &problem) const {
    return "table " + table_ + " in " + path_ + " is not compatible with devmesh: " + problem +
           ". Move it away (ALTER TABLE " + table_ + " RENAME TO ...) or set table: to a new name";
  }

  dm_flush_status fail(dm_flush_result *res, dm_flush_status st, int rc, const std::string &msg) {
    const char *what = st == DM_FLUSH_SPLIT ? "row refused" : "sqlite";
    std::snprintf(res->reason, sizeof res->reason, "%s (%s): %s", what,
                  rc ? sqlite3_errstr(rc) : "-", msg.c_str());
    if (st == DM_FLUSH_RETRY) host_->metric_add(m_retries_, 1);
    if (st == DM_FLUSH_SPLIT) host_->metric_add(m_splits_, 1);
    return st;
  }

  int prepare(Writer &w) {
    int rc =
        sqlite3_open_v2(path_.c_str(), &w.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return rc;
    sqlite3_extended_result_codes(w.db, 1);
    sqlite3_busy_timeout(w.db, static_cast<int>(busy_ms_));
    if (!exec(w.db, "PRAGMA synchronous=" + synchronous_ + ";PRAGMA journal_size_limit=67108864")
             .empty())
      return sqlite3_errcode(w.db) ? sqlite3_errcode(w.db) : SQLITE_ERROR;
    auto prep = [&](const std::string &sql, sqlite3_stmt **st) {
      return sqlite3_prepare_v3(w.db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, st, nullptr);
    };
    if ((rc = prep("BEGIN IMMEDIATE", &w.begin)) || (rc = prep("COMMIT", &w.commit)) ||
        (rc = prep("ROLLBACK", &w.rollback)) ||
        (rc = prep(schema::insert_sql(table_), &w.insert)) ||
        (rc = prep(schema::upsert_pattern_sql(table_), &w.upsert_pattern)))
      return rc;
    if (full_text_) {
      if ((rc = prep("SELECT coalesce(max(id), 0) FROM " + schema::quote_ident(table_),
                     &w.max_id)) ||
          (rc = prep(schema::fts_feed_sql(table_), &w.fts_feed)))
        return rc;
    }
    return SQLITE_OK;
  }

  static int step_done(sqlite3_stmt *st) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
  }

  static void bind_text(sqlite3_stmt *st, int i, dm_str s) {
    sqlite3_bind_text(st, i, s.ptr ? s.ptr : "", static_cast<int>(s.len), SQLITE_STATIC);
  }
  static void bind_optional(sqlite3_stmt *st, int i, dm_str s) {
    if (s.len)
      sqlite3_bind_text(st, i, s.ptr, static_cast<int>(s.len), SQLITE_STATIC);
    else
      sqlite3_bind_null(st, i);
  }

  // The insert binds the record's fields by kRecordFields; the schema lists the same columns.
  static_assert(
      [] {
        for (size_t f = 0; f < kRecordFieldCount; ++f)
          if (std::string_view(schema::kColumns[2 + f + (f >= kLevelBefore ? 1 : 0)].name) !=
              kRecordFields[f].name)
            return false;
        return std::string_view(schema::kColumns[2 + kLevelBefore].name) == "level";
      }(),
      "the columns are the record's fields");

  // The batch's patterns into the patterns table, in the rows' transaction.
  int write_patterns(Writer &w) {
    int rc = SQLITE_OK;
    for (const auto &[id, p] : w.patterns.rows()) {
      sqlite3_stmt *st = w.upsert_pattern;
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(id));
      sqlite3_bind_text(st, 2, p.service.data(), static_cast<int>(p.service.size()), SQLITE_STATIC);
      if (p.text.empty())
        sqlite3_bind_null(st, 3);
      else
        sqlite3_bind_text(st, 3, p.text.data(), static_cast<int>(p.text.size()), SQLITE_STATIC);
      sqlite3_bind_int64(st, 4, p.first);
      sqlite3_bind_int64(st, 5, p.last);
      sqlite3_bind_int64(st, 6, p.count);
      if ((rc = step_done(st))) break;
    }
    w.patterns.clear();
    return rc;
  }

  // One transaction: the rows, then (full_text) their FTS entries by rowid range, then COMMIT.
  int write_batch(Writer &w, const dm_batch *batch, dm_flush_token *token) {
    w.patterns.clear();  // a failed batch's, pointing into a batch that is gone
    int rc = step_done(w.begin);
    if (rc) return rc;
    int64_t first_new = 0;
    if (full_text_) {
      // Inside the write transaction: every id above this one is a row of this batch.
      if (sqlite3_step(w.max_id) != SQLITE_ROW) {
        rc = sqlite3_errcode(w.db);
        sqlite3_reset(w.max_id);
        return rc ? rc : SQLITE_ERROR;
      }
      first_new = sqlite3_column_int64(w.max_id, 0);
      sqlite3_reset(w.max_id);
    }
    uint64_t inserted = 0, defaulted = 0, refused = 0;
    using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;
    JsonWriter json(w.meta);
    for (uint32_t i = 0; i < batch->count; ++i) {
      const dm_record &r = batch->records[i];
      sqlite3_stmt *st = w.insert;
      sqlite3_bind_int64(st, 1, r.timestamp_ns);
      // The insert's columns: timestamp, the fields with level before the first optional one.
      for (size_t f = 0; f < kRecordFieldCount; ++f) {
        const int col = static_cast<int>(2 + f + (f >= kLevelBefore ? 1 : 0));
        if (kRecordFields[f].optional)
          bind_optional(st, col, r.*kRecordFields[f].member);
        else
          bind_text(st, col, r.*kRecordFields[f].member);
      }
      int level = r.level;
      if (level < DM_LEVEL_DEBUG || level > DM_LEVEL_FATAL) level = DM_LEVEL_INFO, ++defaulted;
      sqlite3_bind_text(st, static_cast<int>(2 + kLevelBefore), dm_level_name(level), -1,
                        SQLITE_STATIC);
      // The patterns filter's id and template are a column and a table row, not meta.
      const PatternMeta pm = pattern_meta(r);
      if (pm.valid)
        sqlite3_bind_int64(st, 13, static_cast<int64_t>(pm.id));
      else
        sqlite3_bind_null(st, 13);
      if (r.meta_count > (pm.valid ? pm.keys : 0u)) {
        w.meta.Clear();
        json.Reset(w.meta);
        json.StartObject();
        for (uint32_t m = 0; m < r.meta_count; ++m) {
          if (pm.taken(m)) continue;
          json.Key(r.meta[m].key.ptr ? r.meta[m].key.ptr : "",
                   static_cast<rapidjson::SizeType>(r.meta[m].key.len));
          if (!write_typed_meta(json, r.meta[m]))
            json.String(r.meta[m].value.ptr ? r.meta[m].value.ptr : "",
                        static_cast<rapidjson::SizeType>(r.meta[m].value.len));
        }
        json.EndObject();
        sqlite3_bind_text(st, 11, w.meta.GetString(), static_cast<int>(w.meta.GetSize()),
                          SQLITE_STATIC);  // read by the step below, before the next Clear()
      } else {
        sqlite3_bind_null(st, 11);
      }
      sqlite3_bind_blob(st, 12, r.event_id, 16, SQLITE_STATIC);
      rc = sqlite3_step(st);
      if (rc != SQLITE_DONE && classify(rc) == DM_FLUSH_SPLIT && !sqlite3_get_autocommit(w.db)) {
        // SQLite undid this row's statement only and the transaction goes on: this record
        // alone is dead-lettered with SQLite's reason (once the flush returns OK), no bisection.
        char why[sizeof(dm_flush_result{}.reason)];
        std::snprintf(why, sizeof why, "row refused (%s): %s", sqlite3_errstr(rc),
                      sqlite3_errmsg(w.db));
        sqlite3_reset(st);
        host_->flush_record_status(token, i, DM_FLUSH_ERROR, why);
        ++refused;
        continue;
      }
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return rc;
      const int changed = sqlite3_changes(w.db);
      inserted += static_cast<uint64_t>(changed);
      if (changed && pm.valid)
        w.patterns.add(
            pm.id, sv(r.service),
            pm.text_index != kNoPatternMeta ? sv(r.meta[pm.text_index].value) : std::string_view(),
            r.timestamp_ns);
    }
    sqlite3_clear_bindings(w.insert);
    if ((rc = write_patterns(w))) return rc;
    if (full_text_ && inserted) {
      sqlite3_bind_int64(w.fts_feed, 1, first_new);
      if ((rc = step_done(w.fts_feed))) return rc;
    }
    if ((rc = step_done(w.commit))) return rc;
    DM_CRASH_POINT("after_output_commit");
    host_->metric_add(m_rows_, static_cast<double>(inserted));
    if (inserted + refused < batch->count)
      host_->metric_add(m_duplicates_, static_cast<double>(batch->count - inserted - refused));
    if (refused) host_->metric_add(m_refused_, static_cast<double>(refused));
    if (defaulted) host_->metric_add(m_level_defaulted_, static_cast<double>(defaulted));
    return SQLITE_OK;
  }

  // Every retention_interval: delete rows older than retention in transactions of at most
  // retention_batch rows (FTS entries first: an external-content index must be told the text
  // it indexed), yielding between them so inserts wait at most one small transaction.
  void retention_loop() {
    sqlite3 *db = nullptr;
    sqlite3_stmt *fts_del = nullptr, *del = nullptr;
    const std::string t = schema::quote_ident(table_);
    const std::string oldest =
        "SELECT id FROM " + t + " WHERE timestamp < ?1 ORDER BY timestamp, id LIMIT ?2";
    auto wait = [&](std::chrono::milliseconds d) {
      std::unique_lock<std::mutex> lk(mu_);
      return !cv_.wait_for(lk, d, [&] { return stopping_; });
    };
    // The first pass runs soon after start: an engine restarted daily still trims.
    auto delay = std::chrono::milliseconds(std::min<int64_t>(retention_interval_ms_, 1000));
    while (wait(delay)) {
      delay = std::chrono::milliseconds(retention_interval_ms_);
      std::string err;
      if (!db) {
        try {
          db = open_db(path_, SQLITE_OPEN_READWRITE, busy_ms_, synchronous_);
        } catch (const std::exception &e) {
          err = e.what();
        }
        if (db && full_text_ &&
            sqlite3_prepare_v2(db,
                               ("INSERT INTO " + schema::quote_ident(schema::fts_name(table_)) +
                                "(" + schema::quote_ident(schema::fts_name(table_)) +
                                ", rowid, message) SELECT 'delete', id, message FROM " + t +
                                " WHERE id IN (" + oldest + ")")
                                   .c_str(),
                               -1, &fts_del, nullptr) != SQLITE_OK)
          err = sqlite3_errmsg(db);
        if (db && err.empty() &&
            sqlite3_prepare_v2(db, ("DELETE FROM " + t + " WHERE id IN (" + oldest + ")").c_str(),
                               -1, &del, nullptr) != SQLITE_OK)
          err = sqlite3_errmsg(db);
      }
      const int64_t cutoff =
          static_cast<int64_t>(host_->now_ns()) - retention_ms_ * int64_t{1000000};
      uint64_t deleted = 0;
      while (err.empty() && !stopping()) {
        err = exec(db, "BEGIN IMMEDIATE");
        if (!err.empty()) break;
        int rc = SQLITE_DONE;
        for (sqlite3_stmt *st : {fts_del, del}) {
          if (!st || rc != SQLITE_DONE) continue;
          sqlite3_bind_int64(st, 1, cutoff);
          sqlite3_bind_int64(st, 2, retention_batch_);
          rc = sqlite3_step(st);
          sqlite3_reset(st);
        }
        const int64_t n = rc == SQLITE_DONE ? sqlite3_changes(db) : 0;
        if (rc != SQLITE_DONE) err = sqlite3_errmsg(db);
        if (err.empty()) err = exec(db, "COMMIT");
        if (!err.empty()) {
          exec(db, "ROLLBACK");
          break;
        }
        deleted += static_cast<uint64_t>(n);
        host_->metric_add(m_retention_deleted_, static_cast<double>(n));
        if (n < retention_batch_) break;
        if (!wait(kRetentionYield)) break;
      }
      // Templates none of whose rows can remain (one short statement: few rows).
      if (err.empty() && !stopping())
        err = exec(db, "DELETE FROM " + schema::quote_ident(schema::patterns_table(table_)) +
                           " WHERE last_seen < " + std::to_string(cutoff));
      if (!err.empty()) {
        host_->metric_add(m_retention_errors_, 1);
        host_->log(inst_, DM_LOG_WARN, "retention pass failed (next in %lld ms): %s",
                   static_cast<long long>(retention_interval_ms_), err.c_str());
        sqlite3_finalize(fts_del);
        sqlite3_finalize(del);
        sqlite3_close(db);
        db = nullptr, fts_del = del = nullptr;
      } else if (deleted) {
        host_->log(inst_, DM_LOG_INFO, "retention deleted %llu rows older than %lld ms",
                   static_cast<unsigned long long>(deleted), static_cast<long long>(retention_ms_));
      }
    }
    sqlite3_finalize(fts_del);
    sqlite3_finalize(del);
    sqlite3_close(db);
  }

  bool stopping() {
    std::lock_guard<std::mutex> lk(mu_);
    return stopping_;
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string path_, table_, synchronous_;
  bool full_text_ = true;
  int64_t retention_ms_ = 0, retention_interval_ms_ = 60000, retention_batch_ = 2000;
  int64_t busy_ms_ = 5000;

  std::thread retention_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;

  dm_metric *m_rows_, *m_duplicates_, *m_retries_, *m_splits_, *m_refused_, *m_level_defaulted_;
  dm_metric *m_retention_deleted_, *m_retention_errors_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::SqliteOutput>::describe(
    DM_OUTPUT, "sqlite", "0.1.0",
    "stores records in an SQLite file (the prototype's log_events schema, WAL, FTS5, retention)",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_FLUSH_ON_WORKER))
