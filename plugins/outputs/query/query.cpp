// query output: the prototype's HTTP API over the store (GET /query/logs, /query/stats,
// /health, /info), the patterns (GET /query/patterns, /query/patterns/{id}) plus GET /tail, a live
// SSE stream of the records passing through the pipeline. Requests are parsed on the loop; store
// reads run on the engine's work queue.
#include <openssl/crypto.h>
#include <unistd.h>
#include <devmesh/plugin.hpp>

#include <atomic>
#include <functional>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <bearer_token.hpp>
#include <listen_tls.hpp>
#include <sqlite_schema.hpp>

#include "console/console.h"
#include "query_ai.h"
#include "query_body.h"
#include "query_context.h"
#include "query_json.h"
#include "query_params.h"
#include "query_similar.h"
#include "query_store.h"
#include "query_tail.h"

namespace devmesh {
namespace {

using namespace query;

const char *const kStores[] = {"sqlite", "mariadb", "clickhouse", nullptr};
const char *const kTimeFormats[] = {"prototype", "rfc3339", nullptr};

const dm_option kOptions[] = {
    {"listen", DM_OPT_STRING, DM_OPT_LISTEN, "127.0.0.1:8000", 0, 0, nullptr,
     "address to serve on; the http input on the same address shares the listener (the "
     "prototype served /ingest/logs and /query/logs on one port)",
     0},
    {"store", DM_OPT_STRING, 0, "sqlite", 0, 0, kStores, "which store to read", 0},
    {"table", DM_OPT_STRING, 0, "log_events", 0, 0, nullptr, "table name, as in the output", 0},
    {"path", DM_OPT_PATH, 0, "./data/devmesh.db", 0, 0, nullptr,
     "sqlite: the database file the sqlite output writes (opened read-only)", 0},
    {"host", DM_OPT_STRING, 0, "127.0.0.1", 0, 0, nullptr, "mariadb: server host", 0},
    {"port", DM_OPT_INT, DM_OPT_BOUNDED, "3306", 1, 65535, nullptr, "mariadb: server port", 0},
    {"socket", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "mariadb: unix socket path (instead of host/port)", 0},
    {"user", DM_OPT_STRING, 0, "devmesh", 0, 0, nullptr, "mariadb, clickhouse: user", 0},
    {"password", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "mariadb, clickhouse: password (use ${ENV})", 0},
    {"database", DM_OPT_STRING, 0, "devmesh", 0, 0, nullptr, "mariadb, clickhouse: database", 0},
    // The same keys as the mariadb output (DEVMESH_MARIADB_CONNECTION_OPTIONS there).
    {"tls", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "mariadb: require TLS (implied by ssl_ca, ssl_cert or ssl_key)", 0},
    {"ssl_ca", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "mariadb: PEM file of the CA that signed the server's certificate", 0},
    {"ssl_cert", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "mariadb: PEM client certificate", 0},
    {"ssl_key", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "mariadb: PEM client private key", 0},
    {"ssl_verify", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "mariadb: with TLS, verify the server's certificate and host name", 0},
    {"connect_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 1000, 3600000, nullptr,
     "mariadb, clickhouse: time limit for connecting", 0},
    {"timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "30s", 1000, 3600000, nullptr,
     "mariadb: time limit for each network read or write; clickhouse: added to "
     "statement_timeout for a whole answer",
     0},
    {"url", DM_OPT_STRING, 0, "http://127.0.0.1:8123", 0, 0, nullptr,
     "clickhouse: the server's HTTP interface (user, password, database, connect_timeout and "
     "timeout as for mariadb; on a cluster, table names the Distributed table)",
     0},
    {"statement_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 10, 600000.0, nullptr,
     "longest a query may run; past it the request gets 504", 0},
    {"max_queries", DM_OPT_INT, DM_OPT_BOUNDED, "8", 1, 1024, nullptr,
     "queries running at once; more get 503 with Retry-After", 0},
    {"auth_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "when set, every endpoint but /health needs 'Authorization: Bearer <token>'; /tail also "
     "takes it as the cookie devmesh_token or the parameter token (for a browser's EventSource)",
     0},
    {"node", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "node name shown by /info; default: this machine's hostname", 0},
    {"timestamp_format", DM_OPT_STRING, 0, "prototype", 0, 0, kTimeFormats,
     "prototype: 2025-11-28T15:23:11.234567 (as the prototype's API answered); rfc3339: with Z", 0},
    {"tail_history", DM_OPT_SIZE, DM_OPT_BOUNDED, "256KiB", 0, 1073741824.0, nullptr,
     "bytes of recent records /tail keeps so a client that reconnects with Last-Event-ID gets "
     "what it missed (kept while a subscriber is connected and for a minute after the last one "
     "left); 0: no resuming",
     0},
    {"tail_clients", DM_OPT_INT, DM_OPT_BOUNDED, "32", 0, 10000, nullptr,
     "most /tail subscribers at once; 0 turns /tail off", 0},
    {"tail_buffer", DM_OPT_SIZE, DM_OPT_BOUNDED, "1MiB", 4096, 1073741824.0, nullptr,
     "bytes a /tail subscriber may fall behind before records are dropped for it (counted, and "
     "told to it as an SSE comment)",
     0},
    {"console", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "serve the browser console (search, histogram, live tail, patterns, context pack) at "
     "console_path; its files are built into the plugin and need no network",
     0},
    {"console_path", DM_OPT_STRING, 0, "/", 0, 0, nullptr,
     "path prefix of the console: the page at it, its files under <console_path>assets/ (a "
     "missing final '/' is added; e.g. /console/)",
     0},
    // Optional model server (query_ai.h, query_embed.h); off while embed_url and chat_url are
    // unset.
    {"embed_url", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "OpenAI-compatible embeddings endpoint (e.g. http://127.0.0.1:11434/v1/embeddings): "
     "templates are embedded for POST /search/semantic; unset: off",
     0},
    {"chat_url", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "OpenAI-compatible chat endpoint (e.g. http://127.0.0.1:11434/v1/chat/completions) for "
     "POST /explain/incident; unset: off",
     0},
    {"model", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "model name sent to embed_url and chat_url (required with either)", 0},
    {"api_key", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "sent to the model server as 'Authorization: Bearer <key>' (use ${ENV})", 0},
    {"embed_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "10s", 100, 600000, nullptr,
     "longest an embeddings request may take; past it a search gets 504", 0},
    {"chat_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "120s", 100, 3600000, nullptr,
     "longest a chat request may take; past it /explain/incident gets 504", 0},
    {"vectors_path", DM_OPT_PATH, 0, "./data/template_vectors.json", 0, 0, nullptr,
     "with embed_url: the file the template vectors are kept in (rewritten atomically, read at "
     "start)",
     0},
    {"embed_queue", DM_OPT_INT, DM_OPT_BOUNDED, "10000", 1, 10000000, nullptr,
     "templates waiting to be embedded; more are dropped (counted in query_embed_dropped_total)",
     0},
    {"embed_batch", DM_OPT_INT, DM_OPT_BOUNDED, "32", 1, 2048, nullptr,
     "templates per embeddings request", 0},
    {"vectors_refresh", DM_OPT_DURATION, DM_OPT_BOUNDED, "10m", 100, 86400000, nullptr,
     "with embed_url: how often the stored templates are read again; the vectors of templates "
     "the store no longer has (retention) are dropped then, and vectors_path compacted once "
     "they are half of it",
     0},
    DM_TLS_OPTIONS(ListenTls, tls),
};

constexpr const char *kJson = "application/json";

// What in-flight work shares with the plugin; outlives it until the last job is done (the
// engine may destroy the plugin while a query still runs on the work queue).
struct Core {
  const dm_host_api *host;
  dm_instance *inst;
  std::unique_ptr<QueryStore> store;
  TimeFormat tf = TimeFormat::kPrototype;
  dm_metric *m_ok, *m_bad, *m_unauthorized, *m_busy, *m_timeout, *m_unavailable, *m_failed,
      *m_not_found;
};

// kWork: the job's own `work` reads the store and renders the body (every endpoint past the
// prototype's: one function per endpoint, no new case here).
enum class Kind { kLogs, kStats, kHealth, kWork };

struct Job;
// Runs on a worker: fills job.body (and job.status when not 200); false with `err` on a store
// failure (then the status comes from err).
using Work = std::function<bool(Core &core, Job &job, StoreError &err)>;

struct Job {
  std::shared_ptr<Core> core;
  std::atomic<uint32_t> *in_flight;  // the plugin's counter; only touched on the loop
  std::shared_ptr<bool> alive;       // false once the plugin is destroyed
  dm_http_request *req;
  Kind kind;
  LogRequest logs;
  StatsQuery stats;
  Work work;
  int64_t now_ns = 0;
  std::string raw_query;
  // Results, filled on the worker.
  int status = 200;
  std::string body;
  std::string next_cursor;
  const char *content_type = kJson;
};

int http_status(StoreStatus s) {
  switch (s) {
    case StoreStatus::kBadParameter:
      return 400;
    case StoreStatus::kTimeout:
      return 504;
    case StoreStatus::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

void run_job(void *arg) {
  auto *job = static_cast<Job *>(arg);
  Core &core = *job->core;
  StoreError err;
  bool ok = false;
  switch (job->kind) {
    case Kind::kLogs: {
      JsonRows rows(job->logs.query.limit, core.tf, job->logs.envelope);
      ok = core.store->query_logs(job->logs.query, rows, err);
      if (ok) {
        std::optional<std::string> next;
        if (rows.more()) next = encode_cursor(rows.last(), job->logs.query.descending);
        job->body = rows.finish(next);
        if (next) job->next_cursor = *next;
      }
      break;
    }
    case Kind::kStats: {
      StatsResult result;
      ok = core.store->stats(job->stats, result, err);
      if (ok)
        job->body = stats_json(result, job->stats.since_ns, job->stats.end_ns.value_or(job->now_ns),
                               core.tf);
      break;
    }
    case Kind::kWork:
      ok = job->work(core, *job, err);
      break;
    case Kind::kHealth: {
      std::string why;
      const std::string ts = format_time(job->now_ns, core.tf);
      if (core.store->ping(why)) {
        job->body = object_json({{"status", "ok"}, {"timestamp", ts}});
      } else {
        job->status = 503;
        job->body = object_json({{"status", "unavailable"}, {"reason", why}, {"timestamp", ts}});
      }
      return;
    }
  }
  if (!ok) {
    job->status = http_status(err.status);
    job->body = error_json(err.message);
  }
}

void job_done(void *arg) {
  std::unique_ptr<Job> job(static_cast<Job *>(arg));
  Core &core = *job->core;
  const dm_host_api *host = core.host;
  if (*job->alive) {
    job->in_flight->fetch_sub(1);
    dm_metric *m = core.m_ok;
    if (job->status == 400) m = core.m_bad;
    if (job->status == 504) m = core.m_timeout;
    if (job->status == 503) m = core.m_unavailable;
    if (job->status == 500) m = core.m_failed;
    if (job->status == 404) m = core.m_not_found;
    host->metric_add(m, 1);
    if (job->status == 500)
      host->log(core.inst, DM_LOG_WARN, "query failed: %s", job->body.c_str());
  }
  if (!job->next_cursor.empty()) {
    host->http_add_header(job->req, "X-Next-Cursor", job->next_cursor.c_str());
    const std::string link =
        "</query/logs?" + with_cursor(job->raw_query, job->next_cursor) + ">; rel=\"next\"";
    host->http_add_header(job->req, "Link", link.c_str());
  }
  host->http_add_header(job->req, "Cache-Control", "no-store");
  // Safe even after the engine stopped serving: then reply only frees the request.
  host->http_reply(job->req, job->status, job->content_type, job->body.data(), job->body.size());
}

class Query {
 public:
  Query(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst), core_(std::make_shared<Core>()) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    listen_ = c.string("listen");
    StoreSettings s;
    s.kind = c.string("store");
    s.table = c.string("table");
    if (!sqlite_schema::valid_identifier(s.table))
      problems.add("table",
                   "'" + s.table + "' is not a plain identifier (letters, digits, underscore)");
    s.statement_timeout_ms = c.integer("statement_timeout");
    s.path = c.string("path");
    s.host = c.string("host");
    s.port = c.integer("port");
    if (c.has("socket")) s.socket = c.string("socket");
    s.user = c.string("user");
    if (c.has("password")) s.password = c.string("password");
    s.database = c.string("database");
    s.tls = c.boolean("tls");
    if (c.has("ssl_ca")) s.tls_ca = c.string("ssl_ca");
    if (c.has("ssl_cert")) s.tls_cert = c.string("ssl_cert");
    if (c.has("ssl_key")) s.tls_key = c.string("ssl_key");
    s.tls_verify = c.boolean("ssl_verify");
    s.connect_timeout_ms = c.integer("connect_timeout");
    s.io_timeout_ms = c.integer("timeout");
    s.url = c.string("url");
    max_queries_ = static_cast<uint32_t>(c.integer("max_queries"));
    host->config_bind(cfg, &tls_);
    if (c.has("auth_token")) {
      token_ = c.string("auth_token");
      if (token_.empty()) problems.add("auth_token", "must not be empty when set");
    }
    if (c.has("node")) {
      node_ = c.string("node");
    } else {
      char buf[256] = {};
      if (gethostname(buf, sizeof buf - 1) == 0) node_ = buf;
    }
    problems.refuse_if_any();  // the store is opened only with valid settings
    std::string error;
    core_->store = make_query_store(s, error);
    if (!core_->store) {
      // The store's errors read "option: what is wrong"; named by that option when they do.
      const size_t colon = error.find(": ");
      const std::string key = colon == std::string::npos ? "" : error.substr(0, colon);
      if (!key.empty() && key.find_first_not_of("abcdefghijklmnopqrstuvwxyz_") == std::string::npos)
        problems.add(key, error.substr(colon + 2));
      else
        problems.add(nullptr, error);
      problems.refuse_if_any();
    }
    core_->host = host;
    core_->inst = inst;
    core_->tf =
        c.string("timestamp_format") == "rfc3339" ? TimeFormat::kRfc3339 : TimeFormat::kPrototype;
    auto counter = [&](const char *name, const char *help, const char *labels) {
      return host->metric_counter(inst, name, help, labels);
    };
    const char *req = "query_requests_total";
    const char *help = "query API requests by outcome";
    core_->m_ok = counter(req, help, "outcome=\"ok\"");
    core_->m_bad = counter(req, help, "outcome=\"bad_parameter\"");
    core_->m_unauthorized = counter(req, help, "outcome=\"unauthorized\"");
    core_->m_busy = counter(req, help, "outcome=\"busy\"");
    core_->m_timeout = counter(req, help, "outcome=\"timeout\"");
    core_->m_unavailable = counter(req, help, "outcome=\"unavailable\"");
    core_->m_failed = counter(req, help, "outcome=\"failed\"");
    core_->m_not_found = counter(req, help, "outcome=\"not_found\"");
    if (c.boolean("console")) {
      console_path_ = Console::normalize_path(c.string("console_path"));
      const std::string why = Console::check_path(console_path_);
      if (!why.empty()) {
        problems.add("console_path", why);
        problems.refuse_if_any();
      }
      console_ = std::make_unique<Console>(host, inst);
    }
    tail_ = std::make_unique<Tail>(host, inst, static_cast<uint32_t>(c.integer("tail_clients")),
                                   static_cast<size_t>(c.integer("tail_buffer")),
                                   static_cast<size_t>(c.integer("tail_history")), core_->tf);
    configure_model(c, problems);
  }

  ~Query() {
    *alive_ = false;
    stop_model();
  }

  int start() {
    struct Route {
      const char *method;
      const char *path;  // ending in '*': a prefix
      void (Query::*fn)(dm_http_request *);
    };
    static const Route routes[] = {
        {"GET", "/query/logs", &Query::serve_logs},
        {"GET", "/query/stats", &Query::serve_stats},
        {"GET", "/query/histogram", &Query::serve_histogram},
        {"GET", "/query/patterns", &Query::serve_patterns},
        {"GET", "/query/patterns/*", &Query::serve_pattern},
        {"GET", "/query/context", &Query::serve_context},
        {"GET", "/health", &Query::serve_health},
        {"GET", "/info", &Query::serve_info},
        {"GET", "/tail", &Query::serve_tail},
        {"POST", "/search/similar", &Query::serve_similar},
        {"POST", "/search/semantic", &Query::serve_semantic},
        {"POST", "/explain/incident", &Query::serve_explain},
    };
    if (!serve_tls(host_, inst_, listen_, tls_.tls, !token_.empty())) return 1;
    route_args_.reserve(std::size(routes));  // handlers keep pointers into it
    for (const Route &r : routes) {
      route_args_.push_back({this, r.fn});
      if (host_->http_route(inst_, listen_.c_str(), r.method, r.path, on_request,
                            &route_args_.back()) != DM_OK)
        return 1;
    }
    if (console_ && !console_->route(listen_, console_path_)) return 1;
    if (embedder_) embedder_->start(core_->store.get());
    if (requests_ && !requests_->start()) return 1;
    return 0;
  }

  void stop() {
    stop_model();
    tail_->close_all();
  }

  // Records pass through on their way to the stores: fan them out to /tail subscribers. Never
  // fails: the stores are the other outputs' business.
  dm_flush_status flush(void *, const dm_batch *batch, dm_flush_token *, dm_flush_result *) {
    tail_->publish(*batch);
    if (embedder_) embedder_->offer(*batch);
    return DM_FLUSH_OK;
  }

 private:
  struct RouteArg {
    Query *self;
    void (Query::*fn)(dm_http_request *);
  };

  static void on_request(void *arg, dm_http_request *req) {
    auto *ra = static_cast<RouteArg *>(arg);
    Query *self = ra->self;
    guarded(self->host_, self->inst_, 0, [&] {
      if (!self->authorized(req)) return 0;
      (self->*(ra->fn))(req);
      return 0;
    });
  }

  void reply(dm_http_request *req, int status, const std::string &body) {
    host_->http_reply(req, status, kJson, body.data(), body.size());
  }

  // Constant time in the token's content; only its length can be learnt by timing.
  bool token_matches(std::string_view given) const {
    return given.size() == token_.size() &&
           CRYPTO_memcmp(given.data(), token_.data(), given.size()) == 0;
  }

  bool bearer_matches(dm_http_request *req) const {
    return bearer_token_matches(sv(host_->http_header(req, "Authorization")), token_);
  }

  // /tail only: a browser's EventSource cannot send an Authorization header, so the token may
  // come as the cookie devmesh_token or the parameter token=. The JSON endpoints are read with
  // fetch(), which can send the header, so they keep to it (a token in a URL ends up in
  // histories and proxy logs).
  bool browser_token_matches(dm_http_request *req) const {
    bool ok = false;
    std::string_view cookies = sv(host_->http_header(req, "Cookie"));
    while (!cookies.empty()) {
      const size_t semi = cookies.find(';');
      std::string_view c = cookies.substr(0, semi);
      cookies = semi == std::string_view::npos ? std::string_view() : cookies.substr(semi + 1);
      while (!c.empty() && c.front() == ' ') c.remove_prefix(1);
      constexpr std::string_view kName = "devmesh_token=";
      if (c.substr(0, kName.size()) != kName) continue;
      c.remove_prefix(kName.size());
      if (c.size() >= 2 && c.front() == '"' && c.back() == '"') c = c.substr(1, c.size() - 2);
      ok |= token_matches(c);
    }
    std::vector<std::pair<std::string, std::string>> p;
    std::string error;  // a malformed query string is answered by the handler, once authorized
    if (decode_query_string(sv(host_->http_query(req)), p, error))
      for (const auto &[name, value] : p)
        if (name == "token") ok |= token_matches(value);
    return ok;
  }

  bool authorized(dm_http_request *req) {
    const std::string_view path = sv(host_->http_path(req));
    if (token_.empty() || path == "/health") return true;
    if (bearer_matches(req) || (path == "/tail" && browser_token_matches(req))) return true;
    host_->metric_add(core_->m_unauthorized, 1);
    host_->http_add_header(req, "WWW-Authenticate", "Bearer");
    reply(req, 401,
          error_json(path == "/tail" ? "missing or wrong token (Authorization: Bearer, "
                                       "cookie devmesh_token or parameter token)"
                                     : "missing or wrong bearer token"));
    return false;
  }

  // Parses the query string; answers 400 and returns false on any problem.
  bool params(dm_http_request *req, std::vector<std::pair<std::string, std::string>> &out) {
    std::string error;
    if (decode_query_string(sv(host_->http_query(req)), out, error)) return true;
    bad_request(req, error);
    return false;
  }

  void bad_request(dm_http_request *req, const std::string &error) {
    host_->metric_add(core_->m_bad, 1);
    reply(req, 400, error_json(error));
  }

  // Hands a job to the work queue, or answers 503 when max_queries are already running.
  void submit(std::unique_ptr<Job> job) {
    if (in_flight_.load() >= max_queries_) {
      host_->metric_add(core_->m_busy, 1);
      host_->http_add_header(job->req, "Retry-After", "1");
      reply(job->req, 503, error_json("too many queries running; retry shortly"));
      return;
    }
    job->core = core_;
    job->in_flight = &in_flight_;
    job->alive = alive_;
    job->now_ns = static_cast<int64_t>(host_->now_ns());
    in_flight_.fetch_add(1);
    dm_http_request *req = job->req;
    if (host_->queue_work(inst_, run_job, job_done, job.get()) != DM_OK) {
      in_flight_.fetch_sub(1);
      host_->metric_add(core_->m_failed, 1);
      reply(req, 500, error_json("cannot queue the query"));
      return;
    }
    (void)job.release();  // job_done owns it now
  }

  void serve_logs(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    auto job = std::make_unique<Job>();
    job->req = req;
    job->kind = Kind::kLogs;
    std::string error;
    if (!parse_log_request(p, job->logs, error)) return bad_request(req, error);
    job->raw_query = std::string(sv(host_->http_query(req)));
    submit(std::move(job));
  }

  void serve_stats(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    auto job = std::make_unique<Job>();
    job->req = req;
    job->kind = Kind::kStats;
    std::string error;
    auto parse_duration = [this](std::string_view text, int64_t &ms) {
      return host_->parse_duration_ms(str(text), &ms) == DM_OK;
    };
    if (!parse_stats_request(p, static_cast<int64_t>(host_->now_ns()), parse_duration, job->stats,
                             error))
      return bad_request(req, error);
    submit(std::move(job));
  }

  // A job whose `work` renders the answer (see Kind::kWork).
  void submit_work(dm_http_request *req, Work work) {
    auto job = std::make_unique<Job>();
    job->req = req;
    job->kind = Kind::kWork;
    job->work = std::move(work);
    submit(std::move(job));
  }

  void serve_histogram(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    HistogramQuery q;
    std::string error;
    if (!parse_histogram_request(p, static_cast<int64_t>(host_->now_ns()), q, error))
      return bad_request(req, error);
    submit_work(req, [q](Core &core, Job &job, StoreError &err) {
      std::vector<LevelBucket> counts;
      if (!core.store->histogram(q, counts, err)) return false;
      job.body = histogram_json(q, counts, core.tf);
      return true;
    });
  }

  void serve_patterns(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    PatternsQuery q;
    std::string error;
    if (!parse_patterns_request(p, static_cast<int64_t>(host_->now_ns()), q, error))
      return bad_request(req, error);
    submit_work(req, [q](Core &core, Job &job, StoreError &err) {
      std::vector<PatternSummary> found;
      if (!core.store->patterns(q, found, err)) return false;
      job.body = patterns_json(found, q.start_ns, q.end_ns, core.tf);
      return true;
    });
  }

  void serve_pattern(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    constexpr std::string_view kPrefix = "/query/patterns/";
    const std::string_view path = sv(host_->http_path(req));
    PatternRequest pr;
    std::string error;
    if (!parse_pattern_request(path.substr(std::min(path.size(), kPrefix.size())), p,
                               static_cast<int64_t>(host_->now_ns()), pr, error))
      return bad_request(req, error);
    submit_work(req, [pr](Core &core, Job &job, StoreError &err) {
      PatternSummary info;
      bool found = false;
      std::vector<MinuteCount> minutes;
      if (!core.store->pattern_minutes(pr.id, pr.start_ns, pr.end_ns, info, found, minutes, err))
        return false;
      if (!found) {
        job.status = 404;
        job.body = error_json("no pattern " + pattern_id_hex(pr.id) + " in the store");
      } else {
        job.body = pattern_minutes_json(info, pr.start_ns, pr.end_ns, minutes, core.tf);
      }
      return true;
    });
  }

  void serve_context(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    ContextRequest cr;
    std::string error;
    auto parse_duration = [this](std::string_view text, int64_t &ms) {
      return host_->parse_duration_ms(str(text), &ms) == DM_OK;
    };
    if (!parse_context_request(p, static_cast<int64_t>(host_->now_ns()), parse_duration, cr, error))
      return bad_request(req, error);
    submit_work(req, [cr](Core &core, Job &job, StoreError &err) {
      if (!cr.text) return build_context_json(*core.store, cr.query, core.tf, job.body, err);
      if (!build_context_text(*core.store, cr.query, core.tf, job.body, err)) return false;
      job.content_type = "text/plain; charset=utf-8";
      return true;
    });
  }

  void serve_health(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    std::string error;
    if (!no_unknown_parameters(*endpoint("/health"), p, error)) return bad_request(req, error);
    auto job = std::make_unique<Job>();
    job->req = req;
    job->kind = Kind::kHealth;
    submit(std::move(job));
  }

  void serve_info(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    std::string error;
    if (!no_unknown_parameters(*endpoint("/info"), p, error)) return bad_request(req, error);
    rapidjson::StringBuffer out;
    rapidjson::Writer<rapidjson::StringBuffer> w(out);
    std::string scratch;
    w.StartObject();
    w.Key("name");
    w.String("devmesh");
    w.Key("version");
    w.String(kVersion);
    w.Key("node");
    write_string(w, node_, scratch);
    w.Key("store");
    write_string(w, core_->store->describe(), scratch);
    // The engine's version and every loaded instance (the prototype showed version and node).
    dm_str engine = host_->engine_info(inst_);
    w.Key("engine");
    w.RawValue(engine.ptr, engine.len, rapidjson::kObjectType);
    w.EndObject();
    reply(req, 200, std::string(out.GetString(), out.GetSize()));
  }

  // A POST endpoint's body, or false once 413 is answered.
  bool body(dm_http_request *req, std::string_view &out) {
    out = sv(host_->http_body(req));
    if (out.size() <= kMaxBodyBytes) return true;
    host_->metric_add(core_->m_bad, 1);
    reply(req, 413, error_json("body larger than " + std::to_string(kMaxBodyBytes) + " bytes"));
    return false;
  }

  void serve_similar(dm_http_request *req) {
    std::string_view text;
    if (!body(req, text)) return;
    SimilarRequest r;
    std::string error;
    if (!parse_similar_body(text, r, error)) return bad_request(req, error);
    const int64_t now = static_cast<int64_t>(host_->now_ns());
    submit_work(req,
                [r = std::move(r), index = similar_, now](Core &core, Job &job, StoreError &err) {
                  return search_similar(*core.store, *index, r, now, core.tf, job.body, err);
                });
  }

  // The model server's options; nothing starts here (start() does).
  void configure_model(Config &c, ConfigProblems &problems) {
    ModelSettings m;
    if (c.has("embed_url")) m.embed_url = c.string("embed_url");
    if (c.has("chat_url")) m.chat_url = c.string("chat_url");
    if (m.embed_url.empty() && m.chat_url.empty()) return;
    for (const auto &[key, url] : {std::pair{"embed_url", &m.embed_url}, {"chat_url", &m.chat_url}})
      if (!url->empty() && url->rfind("http://", 0) != 0 && url->rfind("https://", 0) != 0)
        problems.add(key, "must be an http:// or https:// URL");
    if (c.has("model")) m.model = c.string("model");
    if (m.model.empty())
      problems.add("model", "required with embed_url or chat_url (the model's name)");
    if (c.has("api_key")) m.api_key = c.string("api_key");
    m.embed_timeout_ms = c.integer("embed_timeout");
    m.chat_timeout_ms = c.integer("chat_timeout");
    problems.refuse_if_any();
    client_ = std::make_unique<ModelClient>(m, model_stopping_);
    model_metrics_ = std::make_unique<ModelMetrics>(host_, inst_);
    if (!m.embed_url.empty()) {
      Embedder::Settings e;
      e.vectors_path = c.string("vectors_path");
      e.queue_max = static_cast<size_t>(c.integer("embed_queue"));
      e.batch = static_cast<size_t>(c.integer("embed_batch"));
      e.refresh_ms = c.integer("vectors_refresh");
      embedder_ = std::make_unique<Embedder>(host_, inst_, *client_, *model_metrics_, e);
      std::string error;
      if (!embedder_->load(error)) problems.add("vectors_path", error);
      problems.refuse_if_any();
    }
    auto core = core_;
    requests_ = std::make_unique<ModelRequests>(host_, inst_, 2, max_queries_, [core](int status) {
      dm_metric *m = status == 200   ? core->m_ok
                     : status == 400 ? core->m_bad
                     : status == 503 ? core->m_unavailable
                     : status == 504 ? core->m_timeout
                                     : core->m_failed;
      core->host->metric_add(m, 1);
    });
  }

  void stop_model() {
    model_stopping_ = true;
    if (embedder_) embedder_->stop();
    if (requests_) requests_->stop();
  }

  // Hands model work to its threads, or answers why it cannot run.
  void submit_model(dm_http_request *req, ModelRequests::Work work) {
    if (requests_->submit(req, std::move(work))) return;
    host_->metric_add(core_->m_busy, 1);
    host_->http_add_header(req, "Retry-After", "1");
    reply(req, 503, error_json("too many model requests waiting; retry shortly"));
  }

  void serve_semantic(dm_http_request *req) {
    std::string_view text;
    if (!body(req, text)) return;
    SemanticRequest r;
    std::string error;
    if (!parse_semantic_body(text, r, error)) return bad_request(req, error);
    if (!embedder_) {
      host_->metric_add(core_->m_bad, 1);
      return reply(req, 501, error_json("semantic search is off: set embed_url and model"));
    }
    // Hits are checked against /search/similar's template list when it is fresh: semantic
    // search itself never reads the store (a slow or failing store would hold up the model
    // threads), and the embedder drops the vectors of removed templates at its own refresh.
    const int64_t now = static_cast<int64_t>(host_->now_ns());
    auto stored = [index = similar_, now] { return index->peek(now); };
    submit_model(req, [this, stored, r = std::move(r)](int &status, std::string &out) {
      search_semantic(*client_, *model_metrics_, *embedder_, r, stored, status, out);
    });
  }

  void serve_explain(dm_http_request *req) {
    std::string_view text;
    if (!body(req, text)) return;
    ExplainRequest r;
    std::string error;
    auto duration = [this](std::string_view t, int64_t &ms) {
      return host_->parse_duration_ms(str(t), &ms) == DM_OK;
    };
    if (!parse_explain_body(text, static_cast<int64_t>(host_->now_ns()), duration, r, error))
      return bad_request(req, error);
    if (!client_ || client_->settings().chat_url.empty()) {
      host_->metric_add(core_->m_bad, 1);
      return reply(req, 501, error_json("incident explanation is off: set chat_url and model"));
    }
    // The work keeps the store alive through core (the threads are joined in stop()).
    submit_model(req, [this, core = core_, r = std::move(r)](int &status, std::string &out) {
      explain_incident(*core->store, *client_, *model_metrics_, r, core->tf, model_stopping_,
                       status, out);
    });
  }

  void serve_tail(dm_http_request *req) {
    std::vector<std::pair<std::string, std::string>> p;
    if (!params(req, p)) return;
    TailFilter f;
    std::string error;
    if (!parse_tail_request(p, f, error)) return bad_request(req, error);
    // An EventSource reconnecting sends the last id it got as a header, with the URL it was
    // opened with: the header is newer than any last_event_id= in that URL.
    const std::string_view header = sv(host_->http_header(req, "Last-Event-ID"));
    if (!header.empty()) {
      EventId id;
      if (!parse_event_id(header, id))
        return bad_request(req,
                           "bad header 'Last-Event-ID': is not an event id this server sent "
                           "(<stream>-<seq>)");
      f.resume_after = id;
    }
    tail_->subscribe(req, std::move(f));
  }

 public:
  static constexpr const char *kVersion = "0.1.0";

 private:
  const dm_host_api *host_;
  dm_instance *inst_;
  std::shared_ptr<Core> core_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  std::atomic<uint32_t> in_flight_{0};
  uint32_t max_queries_ = 8;
  std::string listen_, token_, node_;
  ListenTls tls_;
  std::vector<RouteArg> route_args_;
  std::unique_ptr<Tail> tail_;
  std::string console_path_;
  std::unique_ptr<Console> console_;  // null with console: false
  // Templates are re-read for /search/similar once the index is this old.
  // The model server (all null while embed_url and chat_url are unset).
  std::atomic<bool> model_stopping_{false};
  std::unique_ptr<ModelClient> client_;
  std::unique_ptr<ModelMetrics> model_metrics_;
  std::unique_ptr<Embedder> embedder_;
  std::unique_ptr<ModelRequests> requests_;
  std::shared_ptr<SimilarIndex> similar_ = std::make_shared<SimilarIndex>(int64_t{5} * 1000000000);
};

}  // namespace
}  // namespace devmesh

namespace devmesh {
namespace {
// The description and its endpoint list, from the parsers' own tables (query_params.cpp).
const char *description() {
  static const std::string text =
      "serves the prototype's query API (/query/logs, /query/stats, /health, /info) and the "
      "patterns (/query/patterns) over the sqlite, mariadb or clickhouse store, and /tail: a live "
      "SSE stream of the records passing through, and a browser console at / (console_path) "
      "(give this output a short flush_interval, e.g. 50ms, so /tail follows closely)\n  " +
      query::api_summary();
  return text.c_str();
}
}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Query>::describe(
    DM_OUTPUT, "query", devmesh::Query::kVersion, devmesh::description(), devmesh::kOptions,
    static_cast<uint32_t>(std::size(devmesh::kOptions))))
