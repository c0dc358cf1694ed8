// clickhouse output: inserts records into a ClickHouse log table (clickhouse_schema.hpp) over
// ClickHouse's HTTP interface, one INSERT ... FORMAT RowBinary per batch, with libcurl's multi
// interface on the engine loop (common/curl_multi.hpp, as http_forward; `workers` inserts in
// flight, optional gzip). Batches are encoded on the engine's thread pool; the table is created
// or checked there too, never on the loop, and batches wait (retried) until it is known good.
// Idempotent: the table is a ReplacingMergeTree keyed by (service, timestamp_ns, event_id), so a
// re-delivered batch adds nothing once merged (and readers use FINAL). Retention drops whole days
// of the server's time zone (ClickHouse 18.16 has no TTL).
#include <body_codec.hpp>
#include <curl_multi.hpp>
#include <url_redact.hpp>

#include <curl/curl.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/plugin.hpp>
#include <devmesh/record_fields.hpp>
#include <meta_json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "clickhouse_schema.hpp"

namespace devmesh {
namespace {

using clickhouse::kColumnCount;
using clickhouse::kColumns;
using clickhouse::Layout;

const char *const kCompressions[] = {"none", "gzip", nullptr};

const dm_option kOptions[] = {
    {"url", DM_OPT_STRING, 0, "http://127.0.0.1:8123", 0, 0, nullptr,
     "ClickHouse's HTTP interface (http or https), e.g. http://clickhouse:8123", 0},
    {"user", DM_OPT_STRING, 0, "default", 0, 0, nullptr, "ClickHouse user (HTTP basic auth)", 0},
    {"password", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "password of user (use ${ENV})", 0},
    {"database", DM_OPT_STRING, 0, "devmesh", 0, 0, nullptr,
     "database of the table (created with the table when missing)", 0},
    {"table", DM_OPT_STRING, 0, "log_events", 0, 0, nullptr,
     "the log table; on a cluster the Distributed table (rows in TABLE_local on each node)", 0},
    {"create_table", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "create the database and table when missing; else refuse to write until they exist", 0},
    {"cluster", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "a cluster of the server's remote_servers: DDL runs ON CLUSTER, rows go through a "
     "Distributed table sharded by event_id",
     0},
    {"replicated", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "create ReplicatedReplacingMergeTree tables (needs ZooKeeper and the {shard} and {replica} "
     "macros on each node)",
     0},
    {"retention", DM_OPT_DURATION, 0, nullptr, 0, 0, nullptr,
     "drop each day's partition once the whole day is older than this (e.g. 30d); unset keeps "
     "every row",
     0},
    {"retention_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "1h", 100, 86400000, nullptr,
     "how often retention looks for old partitions", 0},
    {"compression", DM_OPT_STRING, 0, "none", 0, 0, kCompressions,
     "none or gzip (ISA-L igzip, level 1) for the insert bodies", 0},
    {"connect_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "10s", 1, 3600000, nullptr,
     "give up connecting after this long (then retry)", 0},
    {"timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "60s", 1, 3600000, nullptr,
     "give up on a whole insert after this long (then retry)", 0},
};

constexpr size_t kMaxResponse = 64 << 10;  // ClickHouse's answer: an error message at most
constexpr size_t kReasonBody = 400;
constexpr size_t kKeepBufferBytes = 8u << 20;
constexpr int kTableMissing = 60;  // ClickHouse's UNKNOWN_TABLE
// How long start() waits for the first schema check: a server that answers within it and
// has a wrong table refuses the start; one that does not is waited for on the loop.
constexpr std::chrono::milliseconds kStartWait{2000};

// RowBinary: little-endian numbers, strings as a LEB128 length and the bytes, Nullable as a
// byte (1: NULL) before the value.
class RowBinary {
 public:
  std::string out;
  void u8(uint8_t v) { out.push_back(static_cast<char>(v)); }
  template <class T>
  void number(T v) {
    char b[sizeof v];
    std::memcpy(b, &v, sizeof v);  // x86-64 and aarch64: already little-endian
    out.append(b, sizeof v);
  }
  void string(std::string_view s) {
    uint64_t n = s.size();
    do {
      uint8_t byte = n & 0x7f;
      n >>= 7;
      if (n) byte |= 0x80;
      u8(byte);
    } while (n);
    out.append(s.data(), s.size());
  }
  void nullable(std::string_view s, bool null) {
    u8(null ? 1 : 0);
    if (!null) string(s);
  }
};

// Records without a level are stored as INFO, as the other stores do.
const char *level_text(uint8_t level) {
  return level >= DM_LEVEL_DEBUG && level <= DM_LEVEL_FATAL ? dm_level_name(level) : "INFO";
}

// meta pattern_id as 16 lowercase hex digits (the patterns filter's), else none.
bool pattern_id(const dm_record &r, uint32_t &index, uint64_t &id) {
  for (uint32_t m = 0; m < r.meta_count; ++m) {
    if (sv(r.meta[m].key) != "pattern_id") continue;
    const std::string_view v = sv(r.meta[m].value);
    if (v.size() != 16) return false;
    uint64_t x = 0;
    for (char c : v) {
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return false;
      x = x << 4 | static_cast<uint64_t>(d);
    }
    index = m;
    id = x;
    return true;
  }
  return false;
}

// A blocking request on a thread of the pool (schema, retention): the SQL in the body.
struct Answer {
  long code = 0;  // 0: no response
  std::string body, error;
  bool ok() const { return code == 200; }
  std::string text() const {
    if (code == 0) return error;
    std::string b = body.substr(0, std::min(body.size(), kReasonBody));
    while (!b.empty() && (b.back() == '\n' || b.back() == ' ')) b.pop_back();
    return "HTTP " + std::to_string(code) + ": " + b;
  }
};

class ClickHouseOutput;

struct Transfer {
  ClickHouseOutput *self = nullptr;
  CURL *easy = nullptr;
  dm_flush_token *token = nullptr;
  const dm_batch *batch = nullptr;
  RowBinary rows;
  rapidjson::StringBuffer meta;
  std::unique_ptr<BodyCompressor> compressor;
  std::string_view body;
  std::string response;
  char error[CURL_ERROR_SIZE] = {};
  std::string encode_error;  // set on the pool: the batch was not sent

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
  }
};

size_t append_capped(char *p, size_t size, size_t n, void *arg) {
  auto *s = static_cast<std::string *>(arg);
  const size_t len = size * n;
  s->append(p, std::min(len, kMaxResponse - std::min(kMaxResponse, s->size())));
  return len;
}

// "Code: 60, e.displayText() = ..." -> 60; -1 when the body is not a ClickHouse exception.
int exception_code(std::string_view body) {
  if (body.substr(0, 6) != "Code: ") return -1;
  int code = 0;
  for (size_t i = 6; i < body.size() && body[i] >= '0' && body[i] <= '9'; ++i)
    code = code * 10 + (body[i] - '0');
  return code;
}

// Plain names only (valid_identifier): nothing to escape.
std::string quote_name(const std::string &s) {
  return "'" + s + "'";
}

// Where ClickHouse is and how to talk to it: a copy of it goes with each schema check, which
// may outlive the output (a check still waiting on a slow server at shutdown).
struct Server {
  static int cancelled(void *arg, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<const std::atomic<bool> *>(arg)->load() ? 1 : 0;
  }

  std::string url, shown_url, user, password;  // shown_url: url with its password masked
  int64_t connect_timeout_ms = 0, timeout_ms = 0;

  void common_options(CURL *e, char *error) const {
    curl_easy_setopt(e, CURLOPT_USERAGENT, "devmesh/0.1");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_ms));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(e, CURLOPT_USERNAME, user.c_str());
    curl_easy_setopt(e, CURLOPT_PASSWORD, password.c_str());
  }

  // A blocking request, for the thread pool only (schema, retention): the SQL in the body.
  // cancel, when given, ends it early once set (the output stopped: a server that does not
  // answer must not hold up the engine's exit for a whole timeout).
  Answer run_sql(const std::string &sql, const std::atomic<bool> *cancel = nullptr) const {
    Answer a;
    CURL *e = curl_easy_init();
    if (!e) {
      a.error = "curl_easy_init failed";
      return a;
    }
    char error[CURL_ERROR_SIZE] = {};
    const std::string u = url + "/";  // names are qualified: the database may not exist yet
    curl_easy_setopt(e, CURLOPT_URL, u.c_str());
    common_options(e, error);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, sql.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(sql.size()));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, append_capped);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &a.body);
    if (cancel) {
      curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
      curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, cancelled);
      curl_easy_setopt(e, CURLOPT_XFERINFODATA, cancel);
    }
    const CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_OK)
      a.error = shown_url + ": " + (error[0] ? error : curl_easy_strerror(rc));
    else
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &a.code);
    curl_easy_cleanup(e);
    return a;
  }
};

struct SchemaOutcome {
  bool ok = false;
  bool permanent = false;  // retrying cannot help: a table (or credentials) to fix
  bool created = false;
  std::string why;  // when not ok: names the table, and the column when it is one
};

// Creates the table when missing and allowed, then checks its columns. Blocking: runs on the
// thread pool.
SchemaOutcome check_schema(const Server &server, const Layout &layout, bool create_table,
                           const std::atomic<bool> &cancel) {
  SchemaOutcome out;
  const std::string where = "table " + layout.qualified(layout.table);
  auto columns = [&](Answer &a) {
    a = server.run_sql(
        "SELECT name, type FROM system.columns WHERE database = " + quote_name(layout.database) +
            " AND table = " + quote_name(layout.table) + " FORMAT TabSeparated",
        &cancel);
    return a.ok();
  };
  Answer a;
  if (!columns(a)) {
    out.why = "checking " + where + ": " + a.text();
    out.permanent = a.code == 401 || a.code == 403 || exception_code(a.body) == 193;
    return out;
  }
  if (a.body.empty()) {
    if (!create_table) {
      out.why = where + " does not exist and create_table is false";
      out.permanent = true;
      return out;
    }
    std::vector<std::string> ddl = {
        "CREATE DATABASE IF NOT EXISTS " + layout.database + layout.on_cluster(),
        layout.create_storage_sql()};
    if (!layout.cluster.empty()) ddl.push_back(layout.create_distributed_sql());
    for (const std::string &sql : ddl) {
      Answer c = server.run_sql(sql, &cancel);
      if (!c.ok()) {
        out.why = "creating " + where + ": " + c.text();
        out.permanent = c.code >= 400 && c.code < 500;
        return out;
      }
    }
    out.created = true;
    if (!columns(a)) {
      out.why = "checking " + where + ": " + a.text();
      return out;
    }
  }
  // Each line: name TAB type.
  std::unordered_map<std::string, std::string> have;
  size_t at = 0;
  while (at < a.body.size()) {
    size_t nl = a.body.find('\n', at);
    if (nl == std::string::npos) nl = a.body.size();
    const std::string line = a.body.substr(at, nl - at);
    const size_t tab = line.find('\t');
    if (tab != std::string::npos) have[line.substr(0, tab)] = line.substr(tab + 1);
    at = nl + 1;
  }
  std::string problems;
  for (const auto &col : kColumns) {
    auto it = have.find(col.name);
    if (it == have.end())
      problems += std::string("; column ") + col.name + " is missing";
    else if (it->second != col.type)
      problems += std::string("; column ") + col.name + " is " + it->second + ", not " + col.type;
  }
  if (!problems.empty()) {
    out.why = where + " was not made by this output (or by an older one)" + problems +
              " (drop it, or name another table)";
    out.permanent = true;
    return out;
  }
  out.ok = true;
  return out;
}

// One schema check on the pool. The output waits on it for a moment at start (a wrong table
// then refuses the start); otherwise its outcome comes back on the loop. The output may be
// gone by then (owner null): the job only frees itself.
struct SchemaJob {
  SchemaJob(ClickHouseOutput *o, const Server &s, const Layout &l, bool create)
      : owner(o), server(s), layout(l), create_table(create) {}
  ClickHouseOutput *owner;
  const Server server;
  const Layout layout;
  const bool create_table;
  std::atomic<bool> cancel{false};  // the output stopped or is gone
  std::mutex mu;
  std::condition_variable cv;
  bool finished = false;  // guarded by mu; out is written before it is set
  SchemaOutcome out;
  bool applied = false;  // loop: start() already acted on the outcome
};

class ClickHouseOutput {
 public:
  ClickHouseOutput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    server_.url = c.string("url");
    while (!server_.url.empty() && server_.url.back() == '/') server_.url.pop_back();
    server_.shown_url = redact_url(server_.url);
    server_.user = c.string("user");
    if (c.has("password")) server_.password = c.string("password");
    layout_.database = c.string("database");
    layout_.table = c.string("table");
    if (c.has("cluster")) layout_.cluster = c.string("cluster");
    layout_.replicated = c.boolean("replicated");
    for (const char *key : {"database", "table", "cluster"}) {
      const std::string v = key == std::string_view("database") ? layout_.database
                            : key == std::string_view("table")  ? layout_.table
                                                                : layout_.cluster;
      if ((key != std::string_view("cluster") || !v.empty()) && !clickhouse::valid_identifier(v))
        problems.add(key, "'" + v + "' is not a plain name (letters, digits, _; at most 64)");
    }
    create_table_ = c.boolean("create_table");
    if (c.has("retention")) retention_ms_ = c.integer("retention");
    if (retention_ms_ < 0) problems.add("retention", "must not be negative");
    retention_interval_ms_ = c.integer("retention_interval");
    gzip_ = c.string("compression") == "gzip";
    server_.connect_timeout_ms = c.integer("connect_timeout");
    server_.timeout_ms = c.integer("timeout");

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw std::runtime_error("curl_global_init failed");
    curl_ready_ = true;
    check_url(problems);
    problems.refuse_if_any();

    // Every insert names its columns: a table with more columns (added by hand) still works.
    insert_url_ = server_.url + "/?query=" +
                  escape("INSERT INTO " + layout_.qualified(layout_.table) + " (" +
                         layout_.column_list() + ") FORMAT RowBinary");
    // On a cluster the insert is acknowledged once every shard has its rows, not when they
    // are queued on this node for later sending.
    if (!layout_.cluster.empty()) insert_url_ += "&insert_distributed_sync=1";
    auto add = [&](const char *line) {
      curl_slist *l = curl_slist_append(headers_, line);
      if (!l) throw std::runtime_error("curl_slist_append failed");
      headers_ = l;
    };
    add("Content-Type: application/octet-stream");
    if (gzip_) add("Content-Encoding: gzip");
    add("Expect:");

    multi_ = std::make_unique<CurlMulti>(host, inst, on_done, this);

    for (const char *code : {"2xx", "4xx", "5xx", "other", "error"}) {
      std::string label = std::string("code=\"") + code + "\"";
      m_requests_[code] = host->metric_counter(
          inst, "clickhouse_requests_total",
          "inserts finished, by response class (error: no response)", label.c_str());
    }
    auto counter = [&](const char *name, const char *help) {
      return host->metric_counter(inst, name, help, nullptr);
    };
    m_rows_ = counter("clickhouse_rows_sent_total",
                      "rows of inserts ClickHouse acknowledged (re-deliveries included: they "
                      "are merged away by event_id)");
    m_bytes_ = counter("clickhouse_body_bytes_total", "insert body bytes sent (after compression)");
    m_schema_errors_ =
        counter("clickhouse_schema_errors_total", "failed attempts to create or check the table");
    m_not_ready_ = counter("clickhouse_flushes_not_ready_total",
                           "flushes retried because the table was not checked yet (ClickHouse "
                           "down or slow, or the table wrong)");
    m_dropped_ = counter("clickhouse_retention_partitions_dropped_total",
                         "daily partitions dropped by retention");
    m_ret_errors_ = counter("clickhouse_retention_errors_total", "failed retention statements");
    m_ret_passes_ = counter("clickhouse_retention_passes_total",
                            "retention passes finished (each looks for days to drop)");
  }

  ~ClickHouseOutput() {
    close_retention();
    if (job_) {
      job_->cancel = true;
      job_->owner = nullptr;  // its done() frees it
    }
    for (auto &t : active_)
      if (t->easy) multi_->remove(t->easy);
    active_.clear();
    idle_.clear();
    multi_.reset();
    if (retention_timer_) host_->timer_free(retention_timer_);
    if (headers_) curl_slist_free_all(headers_);
    if (curl_ready_) curl_global_cleanup();
  }

  // The table is checked (and made) on the pool, not on the loop. A quick answer is waited
  // for, so that a wrong table still refuses the start; a server that is down or slow is not:
  // the engine starts, /health says why, and flushes are retried until the check succeeds.
  int start() {
    if (!multi_->start()) return 1;
    if (retention_ms_ > 0) {
      retention_timer_ = host_->timer_new(inst_, on_retention_timer, this);
      if (!retention_timer_) return 1;
      host_->timer_start(retention_timer_, 0, static_cast<uint64_t>(retention_interval_ms_));
    }
    begin_check();
    SchemaJob *job = job_;
    if (!job) return 1;
    bool finished;
    {
      std::unique_lock<std::mutex> lk(job->mu);
      finished = job->cv.wait_for(lk, kStartWait, [job] { return job->finished; });
    }
    if (!finished) {
      health_ = "no answer from " + server_.shown_url + " yet (checking table " +
                layout_.qualified(layout_.table) + ")";
      host_->log(inst_, DM_LOG_WARN, "%s; flushes are retried until it answers", health_.c_str());
      return 0;
    }
    job->applied = true;
    apply(job->out);
    return job->out.ok || !job->out.permanent ? 0 : 1;
  }

  void stop() {
    stopped_ = true;
    if (job_) job_->cancel = true;
    for (auto &t : active_) {
      multi_->remove(t->easy);
      host_->flush_done(t->token, DM_FLUSH_RETRY, 0, "output stopped");
      idle_.push_back(std::move(t));
    }
    active_.clear();
    multi_->stop();
    if (retention_timer_) host_->timer_stop(retention_timer_);
    retention_->cancel = true;
  }

  dm_flush_status flush(void *, const dm_batch *batch, dm_flush_token *token,
                        dm_flush_result *res) {
    if (stopped_) {
      std::snprintf(res->reason, sizeof res->reason, "output stopped");
      return DM_FLUSH_RETRY;
    }
    if (batch->count == 0) return DM_FLUSH_OK;
    if (!schema_ready_) {
      // Held: the engine retries the batch (with its backoff) until the table is checked.
      begin_check();
      host_->metric_add(m_not_ready_, 1);
      std::snprintf(res->reason, sizeof res->reason, "%s",
                    health_.empty() ? "checking the table" : health_.c_str());
      return DM_FLUSH_RETRY;
    }
    std::unique_ptr<Transfer> t = acquire();
    t->token = token;
    t->batch = batch;
    Transfer *raw = t.get();
    if (host_->queue_work(inst_, encode_work, encode_done, raw) != DM_OK) {
      idle_.push_back(std::move(t));
      std::snprintf(res->reason, sizeof res->reason, "cannot queue the encoding work");
      return DM_FLUSH_RETRY;
    }
    encoding_.push_back(std::move(t));
    return DM_FLUSH_PENDING;
  }

  // ClickHouse unreachable, failing, or the table not usable: the last reason.
  int health(char *buf, size_t cap) {
    if (health_.empty()) return 0;
    std::snprintf(buf, cap, "%s", health_.c_str());
    return 1;
  }

 private:
  static std::string escape(const std::string &s) {
    char *e = curl_easy_escape(nullptr, s.data(), static_cast<int>(s.size()));
    std::string out = e ? e : "";
    curl_free(e);
    return out;
  }

  void check_url(ConfigProblems &problems) {
    CURLU *u = curl_url();
    char *scheme = nullptr;
    const bool ok = u && curl_url_set(u, CURLUPART_URL, server_.url.c_str(), 0) == CURLUE_OK &&
                    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK;
    const std::string s = scheme ? scheme : "";
    curl_free(scheme);
    curl_url_cleanup(u);
    if (!ok)
      problems.add("url", "'" + server_.shown_url + "' is not a URL");
    else if (s != "http" && s != "https")
      problems.add("url", "scheme must be http or https, not '" + s + "'");
  }

  // ---- the schema check (pool), its outcome on the loop ---------------------------------------

  // One check at a time; flushes start one while the table is not known good.
  void begin_check() {
    if (job_ || stopped_) return;
    auto *job = new SchemaJob{this, server_, layout_, create_table_};
    if (host_->queue_work(inst_, schema_work, schema_done, job) != DM_OK) {
      delete job;
      return;
    }
    job_ = job;
  }

  static void schema_work(void *arg) {
    auto *job = static_cast<SchemaJob *>(arg);
    SchemaOutcome out = check_schema(job->server, job->layout, job->create_table, job->cancel);
    {
      std::lock_guard<std::mutex> lk(job->mu);
      job->out = std::move(out);
      job->finished = true;
    }
    job->cv.notify_all();
  }

  static void schema_done(void *arg) {
    auto *job = static_cast<SchemaJob *>(arg);
    if (ClickHouseOutput *self = job->owner) {
      self->job_ = nullptr;
      if (!job->applied) self->apply(job->out);
    }
    delete job;
  }

  // Logged when the reason changes, not at every retry of a server that stays down.
  void apply(const SchemaOutcome &out) {
    if (out.ok) {
      schema_ready_ = true;
      health_.clear();
      logged_.clear();
      if (out.created)
        host_->log(inst_, DM_LOG_INFO, "created table %s",
                   layout_.qualified(layout_.table).c_str());
      host_->log(inst_, DM_LOG_INFO, "%s: table %s ready", server_.shown_url.c_str(),
                 layout_.qualified(layout_.table).c_str());
      return;
    }
    host_->metric_add(m_schema_errors_, 1);
    health_ = out.why;
    if (logged_ == out.why) return;
    logged_ = out.why;
    if (out.permanent)
      host_->log(inst_, DM_LOG_ERROR, "%s", out.why.c_str());
    else
      host_->log(inst_, DM_LOG_WARN, "%s; retrying on each flush", out.why.c_str());
  }

  // ---- transfers ------------------------------------------------------------------------------

  std::unique_ptr<Transfer> acquire() {
    if (!idle_.empty()) {
      std::unique_ptr<Transfer> t = std::move(idle_.back());
      idle_.pop_back();
      return t;
    }
    auto t = std::make_unique<Transfer>();
    t->self = this;
    t->easy = curl_easy_init();
    if (!t->easy) throw std::runtime_error("curl_easy_init failed");
    CURL *e = t->easy;
    curl_easy_setopt(e, CURLOPT_URL, insert_url_.c_str());
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
    server_.common_options(e, t->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, append_capped);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t->response);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    return t;
  }

  void release(std::unique_ptr<Transfer> t) {
    t->token = nullptr;
    t->batch = nullptr;
    if (t->rows.out.capacity() > kKeepBufferBytes) std::string().swap(t->rows.out);
    if (t->compressor && t->compressor->buffer_bytes() > kKeepBufferBytes) t->compressor->release();
    t->body = {};
    idle_.push_back(std::move(t));
  }

  static std::unique_ptr<Transfer> take(std::vector<std::unique_ptr<Transfer>> &v, Transfer *t) {
    auto it = std::find_if(v.begin(), v.end(), [t](const auto &p) { return p.get() == t; });
    if (it == v.end()) return nullptr;
    std::unique_ptr<Transfer> out = std::move(*it);
    *it = std::move(v.back());
    v.pop_back();
    return out;
  }

  static void encode_work(void *arg) {
    auto *t = static_cast<Transfer *>(arg);
    t->encode_error.clear();
    try {
      t->self->encode(*t);
    } catch (...) {
      t->encode_error = "cannot encode the batch (out of memory?)";
    }
  }

  void encode(Transfer &t) const {
    RowBinary &w = t.rows;
    w.out.clear();
    rapidjson::Writer<rapidjson::StringBuffer> json;
    for (uint32_t i = 0; i < t.batch->count; ++i) {
      const dm_record &r = t.batch->records[i];
      int64_t seconds = r.timestamp_ns / 1000000000;
      if (r.timestamp_ns % 1000000000 < 0) --seconds;  // floor
      // DateTime is an unsigned 32-bit second: times outside 1970..2106 keep only timestamp_ns.
      w.number<uint32_t>(seconds < 0              ? 0u
                         : seconds > 0xffffffffll ? 0xffffffffu
                                                  : static_cast<uint32_t>(seconds));
      w.number<int64_t>(r.timestamp_ns);
      for (size_t f = 0; f < kRecordFieldCount; ++f) {
        if (f == kLevelBefore) w.string(level_text(r.level));
        const dm_str s = r.*kRecordFields[f].member;
        if (kRecordFields[f].optional)
          w.nullable(sv(s), s.len == 0);
        else
          w.string(sv(s));
      }
      uint32_t pattern_index = UINT32_MAX;
      uint64_t pattern = 0;
      const bool has_pattern = pattern_id(r, pattern_index, pattern);
      if (r.meta_count > (has_pattern ? 1u : 0u)) {
        t.meta.Clear();
        json.Reset(t.meta);
        json.StartObject();
        for (uint32_t m = 0; m < r.meta_count; ++m) {
          if (m == pattern_index) continue;  // a column of its own
          json.Key(r.meta[m].key.ptr ? r.meta[m].key.ptr : "",
                   static_cast<rapidjson::SizeType>(r.meta[m].key.len));
          if (!write_typed_meta(json, r.meta[m]))
            json.String(r.meta[m].value.ptr ? r.meta[m].value.ptr : "",
                        static_cast<rapidjson::SizeType>(r.meta[m].value.len));
        }
        json.EndObject();
        w.nullable(std::string_view(t.meta.GetString(), t.meta.GetSize()), false);
      } else {
        w.u8(1);
      }
      w.out.append(reinterpret_cast<const char *>(r.event_id), sizeof r.event_id);
      w.u8(has_pattern ? 0 : 1);
      if (has_pattern) w.number<int64_t>(static_cast<int64_t>(pattern));
    }
    t.body = w.out;
    if (gzip_) {
      if (!t.compressor) t.compressor = std::make_unique<BodyCompressor>(BodyCodec::kGzip);
      t.body = t.compressor->compress(t.body.data(), t.body.size());
    }
  }

  static void encode_done(void *arg) {
    auto *raw = static_cast<Transfer *>(arg);
    ClickHouseOutput *self = raw->self;
    std::unique_ptr<Transfer> t = take(self->encoding_, raw);
    if (!t) return;
    dm_flush_token *token = t->token;
    if (self->stopped_ || !t->encode_error.empty()) {
      const std::string why = t->encode_error.empty() ? "output stopped" : t->encode_error;
      self->release(std::move(t));
      self->host_->flush_done(token, DM_FLUSH_RETRY, 0, why.c_str());
      return;
    }
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body.data());
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(t->body.size()));
    t->response.clear();
    t->error[0] = '\0';
    self->host_->metric_add(self->m_bytes_, static_cast<double>(t->body.size()));
    CURL *easy = t->easy;
    self->active_.push_back(std::move(t));
    const CURLMcode rc = self->multi_->add(easy);
    if (rc != CURLM_OK) {
      self->release(take(self->active_, raw));
      self->host_->flush_done(token, DM_FLUSH_RETRY, 0, curl_multi_strerror(rc));
    }
  }

  // ---- curl on the loop -------------------------------------------------------------------------

  // An insert finished (CurlMulti took it out of the multi).
  static void on_done(void *owner, CURL *easy, CURLcode result) {
    auto *self = static_cast<ClickHouseOutput *>(owner);
    Transfer *raw = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char **>(&raw));
    std::unique_ptr<Transfer> t = take(self->active_, raw);
    if (t) self->finish(std::move(t), result);
  }

  // 2xx: delivered. No answer or 5xx (ClickHouse's answer to its own troubles, a replica or
  // ZooKeeper away, too many parts): retried. A missing table (404, code 60): checked and made
  // again, then retried. Any other 4xx (auth, syntax, a table of other columns): an error with
  // ClickHouse's message, for the dead-letter file and the log.
  void finish(std::unique_ptr<Transfer> t, CURLcode result) {
    dm_flush_token *token = t->token;
    const uint32_t count = t->batch ? t->batch->count : 0;
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    dm_flush_status status = DM_FLUSH_RETRY;
    std::string reason;
    const char *klass;
    if (result != CURLE_OK) {
      klass = "error";
      reason = "POST " + server_.shown_url + ": " +
               (t->error[0] ? t->error : curl_easy_strerror(result));
      health_ = reason;
    } else if (code >= 200 && code < 300) {
      klass = "2xx";
      status = DM_FLUSH_OK;
      host_->metric_add(m_rows_, count);
      health_.clear();
    } else {
      klass = code >= 500 && code < 600 ? "5xx" : code >= 400 && code < 500 ? "4xx" : "other";
      Answer a;
      a.code = code;
      a.body = t->response;
      reason = "insert into " + layout_.qualified(layout_.table) + " at " + server_.shown_url +
               ": " + a.text();
      if (code >= 500) health_ = reason;
      if (exception_code(t->response) == kTableMissing) {
        schema_ready_ = false;  // dropped under us: the next flush checks and makes it again
        health_ = reason;
      } else if (code >= 400 && code < 500) {
        status = DM_FLUSH_ERROR;
        host_->log(inst_, DM_LOG_ERROR, "%s", reason.c_str());
      }
    }
    host_->metric_add(m_requests_[klass], 1);
    release(std::move(t));
    host_->flush_done(token, status, 0, reason.c_str());
  }

  // ---- retention --------------------------------------------------------------------------

  // Partitions are days (toYYYYMMDD) of the server's time zone: one is dropped once its last
  // second is older than the retention. Runs on the pool; one pass at a time.
  //
  // The engine may destroy the output (a reload, the end of a stop) while a pass is queued or
  // running, and calls its done() after that. So the work holds the gate, not the output: a
  // pass that has not begun never begins once the output is gone, the destructor waits for one
  // that is running (stop() cancels its requests first, so that is short), and done() touches
  // the output only while it exists.
  struct RetentionGate {
    std::mutex mu;
    std::condition_variable idle;
    ClickHouseOutput *owner = nullptr;  // null once the output is destroyed
    bool running = false;               // a pass is queued or running
    bool in_pass = false;               // the pass is running (the output must outlive it)
    std::atomic<bool> cancel{false};    // set at stop: requests end early
  };
  static void on_retention_timer(void *arg) {
    auto *self = static_cast<ClickHouseOutput *>(arg);
    RetentionGate &g = *self->retention_;
    if (g.running || self->stopped_) return;
    g.running = true;
    auto *hold = new std::shared_ptr<RetentionGate>(self->retention_);
    if (self->host_->queue_work(self->inst_, retention_work, retention_done, hold) != DM_OK) {
      g.running = false;
      delete hold;
    }
  }
  static void retention_work(void *arg) {
    RetentionGate &g = **static_cast<std::shared_ptr<RetentionGate> *>(arg);
    ClickHouseOutput *self;
    {
      std::lock_guard<std::mutex> lk(g.mu);
      if (!g.owner || g.cancel) return;
      self = g.owner;
      g.in_pass = true;
    }
    self->retention_pass(&g.cancel);
    std::lock_guard<std::mutex> lk(g.mu);
    g.in_pass = false;
    g.idle.notify_all();
  }
  static void retention_done(void *arg) {
    std::unique_ptr<std::shared_ptr<RetentionGate>> hold(
        static_cast<std::shared_ptr<RetentionGate> *>(arg));
    std::lock_guard<std::mutex> lk((*hold)->mu);
    (*hold)->running = false;  // the gate outlives the output: nothing else is touched
  }
  static std::shared_ptr<RetentionGate> make_retention_gate(ClickHouseOutput *owner) {
    auto g = std::make_shared<RetentionGate>();
    g->owner = owner;
    return g;
  }
  // The destructor's half: no pass begins from now on, and the one running has returned.
  void close_retention() {
    retention_->cancel = true;
    std::unique_lock<std::mutex> lk(retention_->mu);
    retention_->owner = nullptr;
    retention_->idle.wait(lk, [&] { return !retention_->in_pass; });
  }

  void retention_pass(const std::atomic<bool> *cancel) {
    struct Passed {  // every pass is counted, whatever its end
      const ClickHouseOutput *self;
      ~Passed() { self->host_->metric_add(self->m_ret_passes_, 1); }
    } passed{this};
    const int64_t cutoff_s =
        (static_cast<int64_t>(host_->now_ns()) / 1000000 - retention_ms_) / 1000;
    if (cutoff_s < 2 * 86400) return;  // no day of a DateTime is that old yet
    // The newest day whose end is at or before the cutoff: the day before the cutoff's, in the
    // server's time zone (the one toYYYYMMDD(timestamp) partitions by), so the server says it.
    Answer n = server_.run_sql("SELECT toYYYYMMDD(toDate(toDateTime(" + std::to_string(cutoff_s) +
                                   ")) - 1), timezone() FORMAT TabSeparated",
                               cancel);
    // On a cluster every node has its own parts: ON CLUSTER drops the day everywhere.
    Answer a;
    if (n.ok())
      a = server_.run_sql(
          "SELECT DISTINCT partition FROM system.parts WHERE active AND database = " +
              quote_name(layout_.database) + " AND table = " + quote_name(layout_.storage_table()) +
              " FORMAT TabSeparated",
          cancel);
    const long newest = n.ok() ? std::atol(n.body.c_str()) : 0;  // then a tab, the time zone
    const size_t tab = n.body.find('\t');
    const std::string zone =
        tab == std::string::npos ? "" : n.body.substr(tab + 1, n.body.find('\n') - tab - 1);
    if (!n.ok() || !a.ok() || newest <= 0) {
      host_->metric_add(m_ret_errors_, 1);
      host_->log(inst_, DM_LOG_WARN, "retention: %s", (n.ok() ? a : n).text().c_str());
      return;
    }
    size_t at = 0;
    while (at < a.body.size()) {
      size_t nl = a.body.find('\n', at);
      if (nl == std::string::npos) nl = a.body.size();
      const std::string day = a.body.substr(at, nl - at);
      at = nl + 1;
      if (day.size() != 8 || day.find_first_not_of("0123456789") != std::string::npos) continue;
      if (std::stol(day) > newest) continue;
      if (*cancel) return;  // stopped: the next start's pass drops the rest
      Answer d = server_.run_sql("ALTER TABLE " + layout_.qualified(layout_.storage_table()) +
                                     layout_.on_cluster() + " DROP PARTITION " + day,
                                 cancel);
      if (d.ok()) {
        host_->metric_add(m_dropped_, 1);
        host_->log(inst_, DM_LOG_INFO, "retention: dropped day %s (server time zone %s)",
                   day.c_str(), zone.c_str());
      } else {
        host_->metric_add(m_ret_errors_, 1);
        host_->log(inst_, DM_LOG_WARN, "retention: dropping %s: %s", day.c_str(), d.text().c_str());
      }
    }
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  Server server_;
  std::string insert_url_;
  Layout layout_;
  bool create_table_ = true, gzip_ = false;
  int64_t retention_ms_ = 0, retention_interval_ms_ = 3600000;
  bool curl_ready_ = false, stopped_ = false;
  std::shared_ptr<RetentionGate> retention_ = make_retention_gate(this);
  curl_slist *headers_ = nullptr;
  std::unique_ptr<CurlMulti> multi_;
  dm_timer *retention_timer_ = nullptr;
  std::vector<std::unique_ptr<Transfer>> idle_, encoding_, active_;

  // The loop's view of the table: inserts start only once a check found it good.
  bool schema_ready_ = false;
  SchemaJob *job_ = nullptr;  // the check in flight, if any
  std::string health_;        // why the output is unhealthy; empty: healthy
  std::string logged_;        // the last schema problem logged

  std::unordered_map<std::string_view, dm_metric *> m_requests_;
  dm_metric *m_rows_, *m_bytes_, *m_schema_errors_, *m_not_ready_, *m_dropped_, *m_ret_errors_,
      *m_ret_passes_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::ClickHouseOutput>::describe(
    DM_OUTPUT, "clickhouse", "0.1.0",
    "inserts records into a ClickHouse table (18.16 or later) over its HTTP interface as "
    "RowBinary, idempotent on event_id (ReplacingMergeTree), on one node or a cluster",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
