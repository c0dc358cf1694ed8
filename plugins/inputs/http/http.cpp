// http input: the prototype's POST /ingest/logs ({"logs":[...]} or NDJSON, optionally gzip,
// deflate or zstd),
// parsed in place into the batch arena; answers per-record rejections, 2xx once queued or once
// delivered (ack: delivered), 503 with Retry-After under backpressure. Compressed and large
// bodies are decompressed and parsed on the engine's pool, so the loop (which also runs the HTTP
// server and every other plugin) only checks, submits and answers; small bodies stay inline.
//
// Answers: 200 {"accepted":N,"rejected":M,"errors":[{"index":i,"reason":"..."}]} when any
// record was accepted (or the list was empty); with ack: delivered it comes once every output
// is done and adds "delivered" and "dead_lettered" (dead-lettered records are done: kept in the
// output's dead-letter file, so no 5xx that would only bring them back); 500 with that body plus
// "failed" and "error" when any record failed for good and was not kept. 422 with the same body
// when every record was rejected. 400 for a malformed JSON body (naming the byte offset; nothing
// accepted), a body without a "logs" array, or JSON nested deeper than 64 levels (naming the
// byte); in NDJSON a malformed or too deep line rejects that record only. 401 without the
// bearer token, 413 above max_body (before or after decompression), 415 for an unknown encoding
// or a Content-Type other than JSON or NDJSON (absent = JSON), 503 + Retry-After when the
// queues are full or on shutdown, or when ack: delivered|durable has no acknowledgement
// within ack_timeout (the records keep going; the body says a re-send is safe: each record's
// event_id makes the store keep it once, and a re-sent body keeps its first arrival time).
// Records: message required; level case-insensitive, absent = INFO; source absent = "http",
// service/host absent = "unknown"; timestamp RFC 3339 or epoch s/ms, absent = arrival time with
// meta timestamp_source=arrival; unknown keys ignored; numbers where text is expected are taken
// as their text; meta_json values become strings (nested values their JSON text, null absent).
// Bounds per record, each a rejection naming it: more than max_meta_keys meta keys or
// max_meta_bytes of them, a message longer than max_message. Without a client event_id the id
// is a hash of every stored field (meta in any key order): exact re-sends share it.
// rapidjson scans strings 16 bytes at a time with SSE2 (every x86-64 has it).
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2
#endif
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <crash_point.hpp>
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <ack_waits.hpp>
#include <bearer_token.hpp>
#include <listen_tls.hpp>
#include <resent_bodies.hpp>
#include "ingest_parser.hpp"

namespace devmesh {
namespace {

using http_ingest::IngestParser;
using http_ingest::kReasonCount;
using http_ingest::kReasonLabels;
using http_ingest::Rejection;

constexpr const char *kJson = "application/json";

const char *const kAckModes[] = {"accepted", "delivered", "durable", nullptr};

const dm_option kOptions[] = {
    {"listen", DM_OPT_STRING, DM_OPT_LISTEN, "127.0.0.1:8000", 0, 0, nullptr,
     "address and port to serve on; other plugins naming the same address share the listener", 0},
    {"path", DM_OPT_STRING, DM_OPT_ROUTE, "/ingest/logs", 0, 0, nullptr,
     "path that takes POSTed logs", 0},
    {"max_body", DM_OPT_SIZE, DM_OPT_BOUNDED, "16MiB", 1024, 64.0 * 1024 * 1024, nullptr,
     "largest body accepted, after decompression; larger gets 413 (the server itself "
     "refuses bodies above 64MiB)",
     0},
    {"auth_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "when set, requests must carry 'Authorization: Bearer <token>'; others get 401", 0},
    {"ack", DM_OPT_STRING, 0, "accepted", 0, 0, kAckModes,
     "accepted: answer 2xx once the records are queued; delivered: answer only once every "
     "output is done with them (end to end); durable: answer once they are fsynced to "
     "service.storage (needs it), or sooner if every output finished them first",
     0},
    // Below the clients' own timeouts (http_forward's default is 30 s, Vector's http sink 60 s),
    // so a client hears "retry after" from us rather than timing out with nothing to go on.
    {"ack_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "20s", 100, 3600000, nullptr,
     "with ack: delivered or durable, longest wait for the acknowledgement: past it the request "
     "gets 503 with Retry-After (retry_after) while its records keep going; a re-send of the "
     "same body is absorbed by the records' event_ids (counted in "
     "http_ack_timeouts_total)",
     0},
    // Generous for any log shipper (Fluent Bit, Vector and journald records carry tens of
    // fields) while one request stays cheap to refuse.
    {"max_meta_keys", DM_OPT_INT, DM_OPT_BOUNDED, "1024", 1, 1e6, nullptr,
     "most meta_json keys in one record; a record with more is rejected", 0},
    {"max_meta_bytes", DM_OPT_SIZE, DM_OPT_BOUNDED, "1MiB", 64, 64.0 * 1024 * 1024, nullptr,
     "most bytes of meta_json keys and values in one record; a record with more is rejected", 0},
    // The journald input's max_field_size default: a sidecar's journald record is always
    // accepted by its aggregator.
    {"max_message", DM_OPT_SIZE, DM_OPT_BOUNDED, "1MiB", 64, 64.0 * 1024 * 1024, nullptr,
     "longest message in bytes (as stored: invalid UTF-8 counts as U+FFFD); a longer record is "
     "rejected",
     0},
    {"retry_after", DM_OPT_DURATION, DM_OPT_BOUNDED, "1s", 1000, 3600000, nullptr,
     "Retry-After sent with 503 while the pipeline's queues are full or the engine shuts down", 0},
    DM_TLS_OPTIONS(ListenTls, tls),
};

class HttpInput {
 public:
  HttpInput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst), limits_(limits(host, cfg)), waits_(host, inst), resent_(host) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    listen_ = c.string("listen");
    path_ = c.string("path");
    max_body_ = static_cast<size_t>(c.integer("max_body"));
    if (c.has("auth_token")) {
      auth_token_ = c.string("auth_token");
      if (auth_token_.empty()) problems.add("auth_token", "must not be empty");
    }
    delivered_ = c.string("ack") == "delivered";
    durable_ = c.string("ack") == "durable";
    if (durable_ && !host->storage_enabled(inst))
      problems.add("ack",
                   "durable needs service.storage (records are durable only on disk); use ack: "
                   "delivered without storage");
    retry_after_ = std::to_string((c.integer("retry_after") + 999) / 1000);
    const uint64_t ack_timeout_ms = static_cast<uint64_t>(c.integer("ack_timeout"));
    timeout_text_ =
        json_string("not acknowledged within ack_timeout (" + std::to_string(ack_timeout_ms) +
                    " ms): the records are still being delivered; re-sending this "
                    "body is safe (each record's event_id makes the store keep it once)");
    host->config_bind(cfg, &tls_);
    if (path_.empty() || path_[0] != '/') problems.add("path", "must start with '/'");
    problems.refuse_if_any();

    for (int code : {200, 400, 401, 413, 415, 422, 500, 503}) status_metric(code);
    m_accepted_ = host->metric_counter(inst, "http_records_accepted_total",
                                       "records accepted and submitted to the pipeline", nullptr);
    for (int r = 0; r < kReasonCount; ++r) {
      std::string label = std::string("reason=\"") + kReasonLabels[r] + "\"";
      m_rejected_[r] = host->metric_counter(inst, "http_records_rejected_total",
                                            "records rejected, by reason", label.c_str());
    }
    m_bytes_ = host->metric_counter(inst, "http_request_bytes_total",
                                    "request body bytes received (before decompression)", nullptr);
    waits_.configure(ack_timeout_ms,
                     host->metric_gauge(inst, "http_requests_waiting",
                                        "requests waiting for delivery (ack: delivered)", nullptr),
                     [this](Waiting &w) { expired(w); });
    m_dead_ = host->metric_counter(
        inst, "http_records_dead_lettered_total",
        "accepted records that an output dead-lettered (reported with ack: delivered)", nullptr);
    m_failed_ = host->metric_counter(
        inst, "http_records_failed_total",
        "accepted record deliveries that failed and were not kept (ack: delivered answers 500)",
        nullptr);
    m_timeouts_ = host->metric_counter(
        inst, "http_ack_timeouts_total",
        "requests answered 503 because their records were not acknowledged within ack_timeout",
        nullptr);
    resent_.count_in(host->metric_counter(
        inst, "http_resent_bodies_total",
        "bodies identical to one answered by ack_timeout, stamped with its arrival time", nullptr));
    m_late_acks_ = host->metric_counter(
        inst, "http_late_acks_total",
        "acknowledgements that came after their request was answered by ack_timeout", nullptr);
  }

  static http_ingest::Limits limits(const dm_host_api *host, const dm_config *cfg) {
    Config c{host, cfg};
    http_ingest::Limits l;
    l.max_meta_keys = static_cast<uint32_t>(c.integer("max_meta_keys"));
    l.max_meta_bytes = static_cast<size_t>(c.integer("max_meta_bytes"));
    l.max_message = static_cast<size_t>(c.integer("max_message"));
    return l;
  }

  ~HttpInput() {
    // The server is stopped by now (it answered these 503): a reply only frees what it holds.
    *alive_ = nullptr;  // parses still running find no instance and only free their batch
    for (IngestJob *j : parsing_) host_->http_reply(j->req, 503, kJson, "", 0);
    waits_.for_each([&](Waiting &w) { host_->http_reply(w.req, 503, kJson, "", 0); });
  }

  int start() {
    if (!serve_tls(host_, inst_, listen_, tls_.tls, !auth_token_.empty())) return 1;
    if (host_->http_route(inst_, listen_.c_str(), "POST", path_.c_str(), on_request, this) != DM_OK)
      return 1;
    host_->log(inst_, DM_LOG_INFO, "serving POST %s on %s (ack: %s)", path_.c_str(),
               listen_.c_str(),
               delivered_ ? "delivered"
               : durable_ ? "durable"
                          : "accepted");
    return 0;
  }

  void stop() { stopped_ = true; }
  void pause() { paused_ = true; }
  void resume() { paused_ = false; }

  void on_ack(const dm_ack &ack) {
    if (ack.stage == DM_ACK_STORED && !durable_) return;  // delivered waits for DONE
    std::optional<Waiting> waiting = waits_.take(ack.ticket);
    if (!waiting) return late_ack(ack);
    Waiting &w = *waiting;
    // A STORED ack that already counts records failed and not kept (every output finished the
    // ticket before its block's fsync) promises them nothing: answered as at DONE, a 500.
    if (ack.stage == DM_ACK_STORED && !ack.failed) return reply(w.req, 200, w.body), after_2xx();
    // Dead-lettered records are done for the pipeline (kept in the output's dead-letter file):
    // a 5xx would only make the client send them again, into the same file. The response
    // says how many.
    if (ack.dead_lettered) {
      host_->metric_add(m_dead_, ack.dead_lettered);
      host_->log(inst_, DM_LOG_WARN, "%u record deliveries of a request were dead-lettered",
                 ack.dead_lettered);
    }
    w.body.insert(w.body.size() - 1, ",\"delivered\":" + std::to_string(ack.delivered) +
                                         ",\"dead_lettered\":" + std::to_string(ack.dead_lettered));
    if (ack.failed) return failed_reply(w, ack);
    reply(w.req, 200, w.body);
    after_2xx();
  }

  static void after_2xx() { DM_CRASH_POINT("after_2xx"); }

 private:
  struct Waiting {
    dm_http_request *req;
    std::string body;    // the response, completed when the ack arrives
    int64_t arrival_ns;  // the time records without a timestamp were stamped with
  };

  // A request past ack_timeout: 503, so the client keeps its copy and sends it again later; its
  // records are not recalled (they may be in an output already), so the re-send is absorbed by
  // their event_ids at the store, its records stamped with the remembered arrival time. Only
  // these bodies are remembered here: the 500 for records failed for good is not, where the
  // otlp input remembers its 503 for them too (a difference kept as it was).
  void expired(Waiting &w) {
    resent_.remember(host_->http_body(w.req), w.arrival_ns);
    host_->metric_add(m_timeouts_, 1);
    host_->http_add_header(w.req, "Retry-After", retry_after_.c_str());
    w.body.insert(w.body.size() - 1, ",\"error\":" + timeout_text_);
    reply(w.req, 503, w.body);
  }

  // The ack of a request answered by ack_timeout: no client waits for it any more. What it
  // reports is still counted, as for an answered request.
  void late_ack(const dm_ack &ack) {
    if (!waits_.late(ack.ticket)) return;
    host_->metric_add(m_late_acks_, 1);
    if (ack.dead_lettered) host_->metric_add(m_dead_, ack.dead_lettered);
    if (ack.failed) {
      host_->metric_add(m_failed_, ack.failed);
      host_->log(inst_, DM_LOG_ERROR,
                 "%u record deliveries of a request answered by ack_timeout failed permanently "
                 "and were not kept (its client was told to re-send): %s",
                 ack.failed, ack.failed_reason ? ack.failed_reason : "no reason given");
    }
  }

  // Records an output refused for good and could not keep are lost here: no 2xx may promise
  // them. 500, not 422: the record may be fine (the receiver's dead-letter file was missing),
  // and the client keeps what a 5xx answered and sends it again; the parts already delivered
  // are absorbed then by their event_id.
  void failed_reply(Waiting &w, const dm_ack &ack) {
    host_->metric_add(m_failed_, ack.failed);
    const std::string why = ack.failed_reason ? ack.failed_reason : "no reason given";
    const std::string error = std::to_string(ack.failed) +
                              " record deliveries failed permanently and were not kept: " + why;
    host_->log(inst_, DM_LOG_ERROR, "answering 500: %s", error.c_str());
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> jw(sb);
    jw.String(error.data(), static_cast<rapidjson::SizeType>(error.size()));
    w.body.insert(w.body.size() - 1, ",\"failed\":" + std::to_string(ack.failed) +
                                         ",\"error\":" + std::string(sb.GetString(), sb.GetSize()));
    reply(w.req, 500, w.body);
  }

  static void on_request(void *arg, dm_http_request *req) {
    auto *self = static_cast<HttpInput *>(arg);
    if (!guarded(self->host_, self->inst_, 1, [&] { return self->handle(req), 0; })) return;
    self->error_reply(req, 500, "internal error");
  }

  void handle(dm_http_request *req) {
    if (stopped_) return shutting_down(req);
    if (!auth_token_.empty() && !authorized(req)) {
      host_->http_add_header(req, "WWW-Authenticate", "Bearer");
      return error_reply(req, 401, "missing or wrong bearer token");
    }
    const std::string_view type = sv(host_->http_header(req, "Content-Type"));
    const http_ingest::MediaType media = http_ingest::media_type(type);
    if (media == http_ingest::MediaType::kUnsupported)
      return error_reply(req, 415, http_ingest::unsupported_media_type(type).c_str());
    // Under backpressure nothing is parsed: the client is told when to come back.
    if (paused_) return busy(req);
    const dm_str raw = host_->http_body(req);
    host_->metric_add(m_bytes_, static_cast<double>(raw.len));
    if (raw.len > max_body_) return error_reply(req, 413, "body larger than max_body");
    const http_ingest::Encoding encoding =
        http_ingest::body_encoding(sv(host_->http_header(req, "Content-Encoding")));
    if (encoding == http_ingest::Encoding::kUnsupported)
      return error_reply(
          req, 415,
          http_ingest::unsupported_encoding(sv(host_->http_header(req, "Content-Encoding")))
              .c_str());

    auto job = std::make_unique<IngestJob>();
    job->owner = alive_;
    job->host = host_;
    job->inst = inst_;
    job->req = req;
    job->parser = take_parser();
    job->encoding = encoding;
    job->lines = media == http_ingest::MediaType::kNdjson;
    job->max_body = max_body_;
    job->arrival =
        delivered_ || durable_ ? resent_.arrival_of(raw) : static_cast<int64_t>(host_->now_ns());
    job->body = sv(raw);
    // A pool round trip costs tens of microseconds of CPU (the body's copy, two thread switches,
    // records built on another core): measured with bench_http --records 50 (10 KB bodies), the
    // pool took 54 us of CPU per request against 35 inline, and 23.5k requests/s against 27.5k.
    // From about 300 records (64 KB) the pool wins on two cores (7.6-8.7k requests/s against
    // 6.8-7.0k) and frees the loop. Every compressed body goes to the pool: inflating is the
    // part the loop must not pay for.
    if (encoding == http_ingest::Encoding::kIdentity && raw.len < kPoolBytes) {
      IngestJob::work(job.get());
      return finish_job(std::move(job));
    }
    // The body is copied: the HTTP server answers a pending request itself when it stops (the
    // engine's SIGTERM), and its body goes with it while work() may still read it.
    job->copy.assign(raw.ptr ? raw.ptr : "", raw.len);
    job->body = job->copy;
    IngestJob *j = job.release();
    parsing_.insert(j);
    if (host_->queue_work(inst_, &IngestJob::work, &IngestJob::done, j) != DM_OK) {
      IngestJob::work(j);
      IngestJob::done(j);
    }
  }

  // One body's decompression and parse into a new batch: on the pool, or inline for a small body.
  struct IngestJob {
    std::shared_ptr<HttpInput *> owner;  // nullptr once the instance is gone
    const dm_host_api *host = nullptr;
    dm_instance *inst = nullptr;
    dm_http_request *req = nullptr;
    std::unique_ptr<IngestParser> parser;
    http_ingest::Encoding encoding = http_ingest::Encoding::kIdentity;
    bool lines = false;
    size_t max_body = 0;
    int64_t arrival = 0;
    std::string copy;       // the body, for a job on the pool
    std::string_view body;  // the request's body, or copy
    // results
    int status = 0;  // 0, or the HTTP status answered with `error`
    std::string error;
    dm_batch *batch = nullptr;

    static void work(void *arg) {
      auto *j = static_cast<IngestJob *>(arg);
      try {
        j->parse();
      } catch (const std::exception &e) {
        j->fail(500, std::string("internal error: ") + e.what());
      }
    }
    void fail(int code, std::string why) {
      status = code;
      error = std::move(why);
      if (batch) host->batch_free(batch);
      batch = nullptr;
    }
    void parse() {
      std::string_view text = body;
      if (encoding != http_ingest::Encoding::kIdentity) {
        const int st = parser->decompress(encoding, body, max_body, text);
        if (st) return fail(st, parser->error());
      }
      const uint32_t hint = static_cast<uint32_t>(std::min<size_t>(text.size() / 256 + 16, 65536));
      batch = host->batch_new(inst, hint);
      if (!batch) return fail(500, "internal error: batch_new failed");
      if (!parser->parse(batch, text, lines, arrival)) return fail(400, parser->error());
    }
    static void done(void *arg) {
      std::unique_ptr<IngestJob> j(static_cast<IngestJob *>(arg));
      HttpInput *self = *j->owner;
      if (self == nullptr) {  // answered (503) when the instance went
        if (j->batch) j->host->batch_free(j->batch);
        return;
      }
      self->parsing_.erase(j.get());
      self->finish_job(std::move(j));
    }
  };

  void finish_job(std::unique_ptr<IngestJob> j) {
    if (guarded(host_, inst_, 1, [&] { return finish(*j), 0; })) {  // finish threw
      if (j->batch) host_->batch_free(j->batch);
      j->batch = nullptr;
      error_reply(j->req, 500, "internal error");
    }
    give_parser(std::move(j->parser));
  }

  // Back on the loop: submit what was parsed and answer (now, or when acknowledged).
  void finish(IngestJob &j) {
    dm_http_request *req = j.req;
    if (j.status == 500) {
      host_->log(inst_, DM_LOG_ERROR, "%s", j.error.c_str());
      return error_reply(req, 500, "internal error");
    }
    if (j.status) return error_reply(req, j.status, j.error.c_str());
    BatchOwner batch(host_, j.batch);
    j.batch = nullptr;
    // Stopped while this body was parsed: nothing more is submitted, and the client is told to
    // come back (the HTTP server stops later, once everything accepted is delivered).
    if (stopped_) return shutting_down(req);
    const IngestParser &parser = *j.parser;
    const uint32_t accepted = parser.accepted();
    const std::vector<Rejection> &rejections = parser.rejections();
    const bool waits = delivered_ || durable_;

    uint64_t ticket = 0;
    if (accepted > 0) {
      const int rc = host_->submit(inst_, batch.get(), &ticket);
      if (rc == DM_ERR_FULL) return busy(req);
      if (rc != DM_OK) return shutting_down(req);
      batch.release();
    }
    host_->metric_add(m_accepted_, accepted);
    for (const Rejection &r : rejections) host_->metric_add(m_rejected_[r.reason], 1);

    std::string answer = parser.response_body();
    // Every record rejected: nothing of the request can succeed as sent.
    if (accepted == 0 && !rejections.empty()) return reply(req, 422, answer);
    if (waits && accepted > 0)
      return waits_.add(ticket, Waiting{req, std::move(answer), j.arrival});
    reply(req, 200, answer);
    after_2xx();
  }

  // Parsers keep their buffers (inflate state, scratch) between bodies: a few are kept for the
  // next requests, as many as parse at once on a busy pool.
  std::unique_ptr<IngestParser> take_parser() {
    if (spare_parsers_.empty()) return std::make_unique<IngestParser>(host_, limits_);
    std::unique_ptr<IngestParser> p = std::move(spare_parsers_.back());
    spare_parsers_.pop_back();
    return p;
  }
  void give_parser(std::unique_ptr<IngestParser> p) {
    if (p && spare_parsers_.size() < kSpareParsers) spare_parsers_.push_back(std::move(p));
  }

  bool authorized(dm_http_request *req) {
    return bearer_token_matches(sv(host_->http_header(req, "Authorization")), auth_token_);
  }

  // During the grace period: the client is told to come back, as the restarted engine (or the
  // next replica) takes the request then.
  void shutting_down(dm_http_request *req) {
    host_->http_add_header(req, "Retry-After", retry_after_.c_str());
    error_reply(req, 503, "shutting down");
  }

  void busy(dm_http_request *req) {
    host_->http_add_header(req, "Retry-After", retry_after_.c_str());
    error_reply(req, 503, "queues full, retry later");
  }

  static std::string json_string(const std::string &text) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
    return std::string(sb.GetString(), sb.GetSize());
  }

  void error_reply(dm_http_request *req, int status, const char *msg) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.StartObject();
    w.Key("error");
    w.String(msg);
    w.EndObject();
    reply(req, status, std::string(sb.GetString(), sb.GetSize()));
  }

  void reply(dm_http_request *req, int status, const std::string &body) {
    host_->metric_add(status_metric(status), 1);
    host_->http_reply(req, status, kJson, body.data(), body.size());
  }

  dm_metric *status_metric(int status) {
    auto it = m_status_.find(status);
    if (it != m_status_.end()) return it->second;
    std::string label = "status=\"" + std::to_string(status) + "\"";
    dm_metric *m = host_->metric_counter(inst_, "http_requests_total",
                                         "requests answered, by HTTP status", label.c_str());
    m_status_.emplace(status, m);
    return m;
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string listen_, path_, auth_token_, retry_after_;
  ListenTls tls_;
  size_t max_body_ = 0;
  bool delivered_ = false;
  bool durable_ = false;  // ack: durable (2xx at the STORED ack)
  bool stopped_ = false, paused_ = false;

  // libuv's pool has 4 threads unless UV_THREADPOOL_SIZE says otherwise.
  static constexpr size_t kSpareParsers = 4;
  static constexpr size_t kPoolBytes = 64 * 1024;

  http_ingest::Limits limits_;
  std::shared_ptr<HttpInput *> alive_ = std::make_shared<HttpInput *>(this);
  std::unordered_set<IngestJob *> parsing_;  // parses on the pool; answered 503 at destroy
  std::vector<std::unique_ptr<IngestParser>> spare_parsers_;
  AckWaits<Waiting> waits_;  // requests waiting for their ack (ack: delivered or durable)
  ResentBodies resent_;      // arrival times of bodies answered by ack_timeout

  std::string timeout_text_;  // the 503's "error", as JSON text

  std::unordered_map<int, dm_metric *> m_status_;
  dm_metric *m_accepted_, *m_bytes_, *m_dead_, *m_failed_, *m_timeouts_, *m_late_acks_;
  dm_metric *m_rejected_[kReasonCount];
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::HttpInput>::describe(
    DM_INPUT, "http", "0.1.0",
    "takes the prototype's POST /ingest/logs (JSON {\"logs\":[...]} or NDJSON, optionally gzip, "
    "deflate or zstd)",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_ACK_STAGES))
