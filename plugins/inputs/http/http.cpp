// http input: the prototype's POST /ingest/logs ({"logs":[...]} or NDJSON, optionally gzip),
// parsed in place into the batch arena; answers per-record rejections, 2xx once queued or once
// delivered (ack: delivered), 503 with Retry-After under backpressure.
//
// Answers: 200 {"accepted":N,"rejected":M,"errors":[{"index":i,"reason":"..."}]} when any
// record was accepted (or the list was empty); with ack: delivered it comes once every output
// is done and adds "delivered" and "dead_lettered" (dead-lettered records are done: kept in the
// output's dead-letter file, so no 5xx that would only bring them back); 500 with that body plus
// "failed" and "error" when any record failed for good and was not kept. 422 with the same body
// when every record was rejected. 400 for a malformed JSON body (naming the byte offset; nothing
// accepted), a body without a "logs" array, or JSON nested deeper than 64 levels (naming the
// byte); in NDJSON a malformed or too deep line rejects that record only. 401 without the
// bearer token, 413 above max_body (before or after gzip), 415 for an unknown Content-Encoding
// or a Content-Type other than JSON or NDJSON (absent = JSON), 503 + Retry-After when the
// queues are full or on shutdown.
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
#include <openssl/crypto.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <crash_point.hpp>
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

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
     "largest body accepted, after gzip decompression; larger gets 413 (the server itself "
     "refuses bodies above 64MiB)",
     0},
    {"auth_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "when set, requests must carry 'Authorization: Bearer <token>'; others get 401", 0},
    {"ack", DM_OPT_STRING, 0, "accepted", 0, 0, kAckModes,
     "accepted: answer 2xx once the records are queued; delivered: answer only once every "
     "output is done with them (end to end); durable: answer once they are fsynced to "
     "service.storage (needs it)",
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
};

class HttpInput {
 public:
  HttpInput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst), parser_(host, limits(host, cfg)) {
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
    m_waiting_ = host->metric_gauge(inst, "http_requests_waiting",
                                    "requests waiting for delivery (ack: delivered)", nullptr);
    m_dead_ = host->metric_counter(
        inst, "http_records_dead_lettered_total",
        "accepted records that an output dead-lettered (reported with ack: delivered)", nullptr);
    m_failed_ = host->metric_counter(
        inst, "http_records_failed_total",
        "accepted record deliveries that failed and were not kept (ack: delivered answers 500)",
        nullptr);
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
    for (auto &[ticket, w] : waiting_) host_->http_reply(w.req, 503, kJson, "", 0);
  }

  int start() {
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
    auto it = waiting_.find(ack.ticket);
    if (it == waiting_.end()) return;
    Waiting w = std::move(it->second);
    waiting_.erase(it);
    host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
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
    std::string body;  // the response, completed when the ack arrives
  };

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

    const uint32_t hint = static_cast<uint32_t>(std::min<size_t>(raw.len / 256 + 16, 65536));
    BatchOwner batch(host_, host_->batch_new(inst_, hint));
    if (!batch.get()) throw std::runtime_error("batch_new failed");
    std::string_view body = sv(raw);
    switch (http_ingest::body_encoding(sv(host_->http_header(req, "Content-Encoding")))) {
      case http_ingest::Encoding::kIdentity:
        break;
      case http_ingest::Encoding::kUnsupported:
        return error_reply(req, 415, "unsupported Content-Encoding (gzip or deflate)");
      case http_ingest::Encoding::kCompressed: {
        const int status = parser_.inflate(body, max_body_, body);
        if (status == 413) return error_reply(req, 413, "decompressed body larger than max_body");
        if (status) return error_reply(req, 400, "corrupt compressed body");
        break;
      }
    }
    const bool lines = media == http_ingest::MediaType::kNdjson;
    if (!parser_.parse(batch.get(), body, lines, static_cast<int64_t>(host_->now_ns())))
      return error_reply(req, 400, parser_.error().c_str());
    const uint32_t accepted = parser_.accepted();
    const std::vector<Rejection> &rejections = parser_.rejections();

    uint64_t ticket = 0;
    if (accepted > 0) {
      const int rc = host_->submit(inst_, batch.get(), &ticket);
      if (rc == DM_ERR_FULL) return busy(req);
      if (rc != DM_OK) return shutting_down(req);
      batch.release();
    }
    host_->metric_add(m_accepted_, accepted);
    for (const Rejection &r : rejections) host_->metric_add(m_rejected_[r.reason], 1);

    std::string answer = parser_.response_body();
    // Every record rejected: nothing of the request can succeed as sent.
    if (accepted == 0 && !rejections.empty()) return reply(req, 422, answer);
    if ((delivered_ || durable_) && accepted > 0) {
      waiting_.emplace(ticket, Waiting{req, std::move(answer)});
      host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
      return;
    }
    reply(req, 200, answer);
    after_2xx();
  }

  bool authorized(dm_http_request *req) {
    std::string_view h = sv(host_->http_header(req, "Authorization"));
    if (h.size() < 7 || !http_ingest::ieq(h.substr(0, 7), "bearer ")) return false;
    h.remove_prefix(7);
    while (!h.empty() && h.front() == ' ') h.remove_prefix(1);
    // Constant time in the token's content; only its length can be learnt by timing.
    return h.size() == auth_token_.size() &&
           CRYPTO_memcmp(h.data(), auth_token_.data(), h.size()) == 0;
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
  size_t max_body_ = 0;
  bool delivered_ = false;
  bool durable_ = false;  // ack: durable (2xx at the STORED ack)
  bool stopped_ = false, paused_ = false;

  IngestParser parser_;
  std::unordered_map<uint64_t, Waiting> waiting_;  // ticket -> request (ack: delivered)

  std::unordered_map<int, dm_metric *> m_status_;
  dm_metric *m_accepted_, *m_bytes_, *m_waiting_, *m_dead_, *m_failed_;
  dm_metric *m_rejected_[kReasonCount];
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::HttpInput>::describe(
    DM_INPUT, "http", "0.1.0",
    "takes the prototype's POST /ingest/logs (JSON {\"logs\":[...]} or NDJSON, optionally gzip)",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_ACK_STAGES))
