// otlp input: OpenTelemetry logs over OTLP/HTTP (POST /v1/logs), in protobuf
// (application/x-protobuf) or the OTLP JSON mapping (application/json), optionally gzip or zstd.
// Each log record becomes a record (see otlp_decoder.hpp for the mapping and the meta keys).
// Bodies are decompressed and decoded on the engine's pool (a large JSON body takes libprotobuf
// a second); submitting and answering happen back on the loop.
//
// Answers, as the OTLP/HTTP specification has them, in the request's encoding:
// 200 with an ExportLogsServiceResponse (partial_success with rejected_log_records and an
// error_message naming the first rejected records' places and reasons, when any was rejected);
// with ack: delivered or durable the 200 comes once the records are done (or stored).
// Errors carry a google.rpc.Status: 400 for a body that does not decode (nothing accepted), 401
// without the bearer token, 413 above max_body (before or after decompression) or max_records,
// 415 for another Content-Type or Content-Encoding, 503 with Retry-After (retryable under the
// specification) when the queues are full, on shutdown, when ack_timeout passes, or when
// records failed for good and were not kept (a re-send is absorbed by their event_ids).
#include <ack_waits.hpp>
#include <bearer_token.hpp>
#include <body_codec.hpp>
#include <devmesh/plugin.hpp>
#include <listen_tls.hpp>
#include <record_columns.hpp>
#include <resent_bodies.hpp>

#include <algorithm>
#include <iterator>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "otlp_decoder.hpp"

namespace devmesh {
namespace {

using otlp::Format;

const char *const kAckModes[] = {"accepted", "delivered", "durable", nullptr};

// google.rpc.Code values of the answers.
enum GrpcCode { kInvalidArgument = 3, kInternal = 13, kUnavailable = 14, kUnauthenticated = 16 };

const dm_option kOptions[] = {
    {"listen", DM_OPT_STRING, DM_OPT_LISTEN, "127.0.0.1:4318", 0, 0, nullptr,
     "address and port to serve on (4318 is OTLP/HTTP's port); other plugins naming the same "
     "address share the listener",
     0},
    {"path", DM_OPT_STRING, DM_OPT_ROUTE, "/v1/logs", 0, 0, nullptr,
     "path that takes POSTed ExportLogsServiceRequests", 0},
    {"max_body", DM_OPT_SIZE, DM_OPT_BOUNDED, "16MiB", 1024, 64.0 * 1024 * 1024, nullptr,
     "largest body accepted, before and after decompression; larger gets 413 (the server itself "
     "refuses bodies above 64MiB)",
     0},
    {"max_records", DM_OPT_INT, DM_OPT_BOUNDED, "100000", 1, 1e7, nullptr,
     "most log records in one request; a request with more gets 413", 0},
    {"max_message", DM_OPT_SIZE, DM_OPT_BOUNDED, "1MiB", 64, 64.0 * 1024 * 1024, nullptr,
     "longest body of a log record, as stored; a longer record is rejected (partial_success)", 0},
    {"max_meta_bytes", DM_OPT_SIZE, DM_OPT_BOUNDED, "1MiB", 64, 64.0 * 1024 * 1024, nullptr,
     "most bytes of meta keys and values in one record (its resource, scope and own "
     "attributes); a record with more is rejected (partial_success)",
     0},
    {"auth_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "when set, requests must carry 'Authorization: Bearer <token>'; others get 401", 0},
    {"ack", DM_OPT_STRING, 0, "accepted", 0, 0, kAckModes,
     "accepted: answer 200 once the records are queued; delivered: answer only once every "
     "output is done with them (end to end); durable: answer once they are fsynced to "
     "service.storage (needs it), or sooner if every output finished them first",
     0},
    // Below the clients' own timeouts (the OpenTelemetry Collector's and SDKs' exporters wait
    // 10 s by default, Fluent Bit longer), so that a client hears "retry after" from us.
    {"ack_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "8s", 100, 3600000, nullptr,
     "with ack: delivered or durable, longest wait for the acknowledgement: past it the request "
     "gets 503 with Retry-After while its records keep going (counted in "
     "otlp_ack_timeouts_total); a re-send is absorbed by the records' event_ids",
     0},
    {"retry_after", DM_OPT_DURATION, DM_OPT_BOUNDED, "1s", 1000, 3600000, nullptr,
     "Retry-After sent with 503 while the pipeline's queues are full or the engine shuts down", 0},
    DM_TLS_OPTIONS(ListenTls, tls),
};

const char *content_type(Format f) {
  return f == Format::kJson ? "application/json" : "application/x-protobuf";
}

class OtlpInput {
 public:
  OtlpInput(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
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
    host->config_bind(cfg, &tls_);
    if (path_.empty() || path_[0] != '/') problems.add("path", "must start with '/'");
    problems.refuse_if_any();

    for (int code : {200, 400, 401, 413, 415, 503}) status_metric(code);
    m_accepted_ =
        host->metric_counter(inst, "otlp_records_accepted_total",
                             "log records accepted and submitted to the pipeline", nullptr);
    for (int r = 0; r < otlp::kReasonCount; ++r) {
      const std::string label = std::string("reason=\"") + otlp::kReasonLabels[r] + "\"";
      m_rejected_[r] = host->metric_counter(
          inst, "otlp_records_rejected_total",
          "log records rejected (answered in partial_success), by reason", label.c_str());
    }
    m_bytes_ = host->metric_counter(inst, "otlp_request_bytes_total",
                                    "request body bytes received (before decompression)", nullptr);
    waits_.configure(ack_timeout_ms,
                     host->metric_gauge(inst, "otlp_requests_waiting",
                                        "requests waiting for their acknowledgement (ack: "
                                        "delivered or durable)",
                                        nullptr),
                     [this](Waiting &w) { expired(w); });
    m_dead_ = host->metric_counter(
        inst, "otlp_records_dead_lettered_total",
        "accepted records that an output dead-lettered (reported with ack: delivered)", nullptr);
    m_failed_ = host->metric_counter(
        inst, "otlp_records_failed_total",
        "accepted record deliveries that failed and were not kept (answered 503)", nullptr);
    m_timeouts_ = host->metric_counter(
        inst, "otlp_ack_timeouts_total",
        "requests answered 503 because their records were not acknowledged within ack_timeout",
        nullptr);
    resent_.count_in(host->metric_counter(
        inst, "otlp_resent_bodies_total",
        "bodies identical to one answered 503 after submission, stamped with its arrival time",
        nullptr));
  }

  static otlp::Limits limits(const dm_host_api *host, const dm_config *cfg) {
    Config c{host, cfg};
    otlp::Limits l;
    l.max_records = static_cast<uint32_t>(c.integer("max_records"));
    l.max_message = static_cast<size_t>(c.integer("max_message"));
    l.max_meta_bytes = static_cast<size_t>(c.integer("max_meta_bytes"));
    l.max_output = 4 * static_cast<size_t>(c.integer("max_body"));
    return l;
  }

  ~OtlpInput() {
    *alive_ = nullptr;  // decodes still running find no instance and only free their batch
    for (DecodeJob *j : decoding_) host_->http_reply(j->req, 503, content_type(j->format), "", 0);
    waits_.for_each(
        [&](Waiting &w) { host_->http_reply(w.req, 503, content_type(w.format), "", 0); });
  }

  int start() {
    otlp::capture_protobuf_log();
    if (!serve_tls(host_, inst_, listen_, tls_.tls, !auth_token_.empty())) return 1;
    if (host_->http_route(inst_, listen_.c_str(), "POST", path_.c_str(), on_request, this) != DM_OK)
      return 1;
    host_->log(inst_, DM_LOG_INFO, "serving OTLP/HTTP logs on POST %s on %s (ack: %s)",
               path_.c_str(), listen_.c_str(),
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
    // A STORED ack that already counts failed records promises them nothing: answered as DONE.
    if (ack.stage == DM_ACK_STORED && !ack.failed) return reply(w.req, 200, w.format, w.body);
    // Dead-lettered records are kept (in the output's dead-letter file): done for the client.
    if (ack.dead_lettered) {
      host_->metric_add(m_dead_, ack.dead_lettered);
      host_->log(inst_, DM_LOG_WARN, "%u record deliveries of a request were dead-lettered",
                 ack.dead_lettered);
    }
    if (ack.failed) return failed_reply(w, ack);
    reply(w.req, 200, w.format, w.body);
  }

 private:
  struct Waiting {
    dm_http_request *req;
    Format format;
    std::string body;    // the 200's ExportLogsServiceResponse
    int64_t arrival_ns;  // the time records without one were stamped with
  };
  // A request past ack_timeout: 503, so the client keeps its copy and sends it again; its
  // records are not recalled, so the re-send is absorbed by their event_ids at the store, its
  // records stamped with the remembered arrival time.
  void expired(Waiting &w) {
    resent_.remember(host_->http_body(w.req), w.arrival_ns);
    host_->metric_add(m_timeouts_, 1);
    retry_later(w.req, w.format,
                "not acknowledged within ack_timeout (" + std::to_string(waits_.timeout_ms()) +
                    " ms): the records are still being delivered; re-sending this request is "
                    "safe (each record's event_id makes the store keep it once)");
  }

  // The ack of a request answered by ack_timeout: nobody waits for it, what it reports is
  // still counted.
  void late_ack(const dm_ack &ack) {
    if (!waits_.late(ack.ticket)) return;
    if (ack.dead_lettered) host_->metric_add(m_dead_, ack.dead_lettered);
    if (ack.failed) {
      host_->metric_add(m_failed_, ack.failed);
      host_->log(inst_, DM_LOG_ERROR,
                 "%u record deliveries of a request answered by ack_timeout failed permanently "
                 "and were not kept (its client was told to re-send): %s",
                 ack.failed, ack.failed_reason ? ack.failed_reason : "no reason given");
    }
  }

  // Records an output refused for good and could not keep: no 200 may promise them. 503, the
  // status OTLP clients retry (a 500 would make them drop the request); the parts already
  // delivered are absorbed by their event_ids when it comes again.
  void failed_reply(Waiting &w, const dm_ack &ack) {
    host_->metric_add(m_failed_, ack.failed);
    const std::string error = std::to_string(ack.failed) +
                              " record deliveries failed permanently and were not kept: " +
                              (ack.failed_reason ? ack.failed_reason : "no reason given");
    host_->log(inst_, DM_LOG_ERROR, "answering 503: %s", error.c_str());
    resent_.remember(host_->http_body(w.req), w.arrival_ns);
    retry_later(w.req, w.format, error);
  }

  static void on_request(void *arg, dm_http_request *req) {
    auto *self = static_cast<OtlpInput *>(arg);
    if (!guarded(self->host_, self->inst_, 1, [&] { return self->handle(req), 0; })) return;
    self->error_reply(req, 500, Format::kJson, kInternal, "internal error");
  }

  void handle(dm_http_request *req) {
    const std::string_view type = sv(host_->http_header(req, "Content-Type"));
    Format format = Format::kProtobuf;
    const bool known = otlp::format_of(type, format);
    if (stopped_) return retry_later(req, format, "shutting down");
    if (!auth_token_.empty() && !authorized(req)) {
      host_->http_add_header(req, "WWW-Authenticate", "Bearer");
      return error_reply(req, 401, format, kUnauthenticated, "missing or wrong bearer token");
    }
    // A client that sends neither type is likely a person with curl: answered in JSON.
    if (!known)
      return error_reply(req, 415, Format::kJson, kInvalidArgument,
                         "unsupported Content-Type '" + std::string(type.substr(0, 100)) +
                             "': send application/x-protobuf or application/json");
    // Under backpressure nothing is decoded: the client is told when to come back.
    if (paused_) return retry_later(req, format, "queues full, retry later");
    const dm_str raw = host_->http_body(req);
    host_->metric_add(m_bytes_, static_cast<double>(raw.len));
    if (raw.len > max_body_)
      return error_reply(req, 413, format, kInvalidArgument, "body larger than max_body");
    const std::string_view encoding = sv(host_->http_header(req, "Content-Encoding"));
    if (!encoding.empty() && !detail::iequals(encoding, "gzip") &&
        !detail::iequals(encoding, "x-gzip") && !detail::iequals(encoding, "zstd") &&
        !detail::iequals(encoding, "identity"))
      return error_reply(req, 415, format, kInvalidArgument,
                         "unsupported Content-Encoding '" + std::string(encoding.substr(0, 100)) +
                             "': send gzip, zstd or none");

    // Decompressing and decoding run on the engine's pool: a large JSON body takes libprotobuf
    // a second, which the loop (every other request, every input) must not wait for. The body
    // is copied: a request is answered at stop even while its decode still runs.
    auto job = std::make_unique<DecodeJob>();
    job->owner = alive_;
    job->host = host_;
    job->inst = inst_;
    job->req = req;
    job->format = format;
    job->raw.assign(raw.ptr ? raw.ptr : "", raw.len);
    job->encoding = std::string(encoding);
    job->max_body = max_body_;
    job->limits = limits_;
    job->arrival =
        delivered_ || durable_ ? resent_.arrival_of(raw) : static_cast<int64_t>(host_->now_ns());
    DecodeJob *j = job.release();
    decoding_.insert(j);
    if (host_->queue_work(inst_, &DecodeJob::work, &DecodeJob::done, j) != DM_OK) {
      DecodeJob::work(j);
      DecodeJob::done(j);
    }
  }

  // One request's decode, off the loop.
  struct DecodeJob {
    std::shared_ptr<OtlpInput *> owner;  // nullptr once the instance is gone
    const dm_host_api *host = nullptr;
    dm_instance *inst = nullptr;
    dm_http_request *req = nullptr;
    Format format = Format::kProtobuf;
    std::string raw, encoding;
    size_t max_body = 0;
    otlp::Limits limits;
    int64_t arrival = 0;
    // results
    int status = 0;  // 0, or the HTTP status of an error answered with `error`
    std::string error, answer;
    dm_batch *batch = nullptr;
    uint32_t accepted = 0;
    uint32_t rejected[otlp::kReasonCount] = {};

    static void work(void *arg) {
      auto *j = static_cast<DecodeJob *>(arg);
      try {
        j->decode();
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
    void decode() {
      std::string_view body = raw;
      std::string why;
      BodyDecompressor inflater;
      BodyDecompressor::Status s = BodyDecompressor::kOk;
      if (detail::iequals(encoding, "gzip") || detail::iequals(encoding, "x-gzip"))
        s = inflater.gunzip(body, max_body, body, why);
      else if (detail::iequals(encoding, "zstd"))
        s = inflater.unzstd(body, max_body, body, why);
      if (s == BodyDecompressor::kTooLarge)
        return fail(413, "body larger than max_body once decompressed");
      if (s != BodyDecompressor::kOk)
        return fail(400, "the body is not valid " + encoding + ": " + why);
      const uint32_t hint = static_cast<uint32_t>(std::min<size_t>(body.size() / 128 + 16, 65536));
      batch = host->batch_new(inst, hint);
      if (!batch) return fail(500, "internal error: batch_new failed");
      otlp::LogsDecoder decoder(host, limits);
      const int st = decoder.decode(batch, body, format, arrival);
      if (st) return fail(st, decoder.error());
      accepted = decoder.accepted();
      for (int r = 0; r < otlp::kReasonCount; ++r) rejected[r] = decoder.rejected(otlp::Reason(r));
      answer = decoder.response(format);
    }
    static void done(void *arg) {
      std::unique_ptr<DecodeJob> j(static_cast<DecodeJob *>(arg));
      OtlpInput *self = *j->owner;
      if (self == nullptr) {  // answered (503) when the instance went
        if (j->batch) j->host->batch_free(j->batch);
        return;
      }
      self->decoding_.erase(j.get());
      if (!guarded(self->host_, self->inst_, 1, [&] { return self->finish(*j), 0; })) return;
      if (j->batch) j->host->batch_free(j->batch);
      self->error_reply(j->req, 500, Format::kJson, kInternal, "internal error");
    }
  };

  // Back on the loop: submit what was decoded and answer (now, or when acknowledged).
  void finish(DecodeJob &j) {
    dm_http_request *req = j.req;
    const Format format = j.format;
    if (j.status) {
      const int code = j.status == 500 ? kInternal : kInvalidArgument;
      return error_reply(req, j.status, j.status == 500 ? Format::kJson : format, code, j.error);
    }
    BatchOwner batch(host_, j.batch);
    j.batch = nullptr;
    if (stopped_) return retry_later(req, format, "shutting down");
    const bool waits = delivered_ || durable_;
    uint64_t ticket = 0;
    if (j.accepted > 0) {
      const int rc = host_->submit(inst_, batch.get(), &ticket);
      if (rc == DM_ERR_FULL) return retry_later(req, format, "queues full, retry later");
      if (rc != DM_OK) return retry_later(req, format, "shutting down");
      batch.release();
    }
    host_->metric_add(m_accepted_, j.accepted);
    for (int r = 0; r < otlp::kReasonCount; ++r)
      if (j.rejected[r]) host_->metric_add(m_rejected_[r], j.rejected[r]);
    if (waits && j.accepted > 0)
      return waits_.add(ticket, Waiting{req, format, std::move(j.answer), j.arrival});
    reply(req, 200, format, j.answer);
  }

  bool authorized(dm_http_request *req) {
    return bearer_token_matches(sv(host_->http_header(req, "Authorization")), auth_token_);
  }

  // 503 with Retry-After: the OTLP status a client retries after the time given.
  void retry_later(dm_http_request *req, Format format, const std::string &why) {
    host_->http_add_header(req, "Retry-After", retry_after_.c_str());
    error_reply(req, 503, format, kUnavailable, why);
  }

  void error_reply(dm_http_request *req, int status, Format format, int grpc_code,
                   const std::string &msg) {
    reply(req, status, format, otlp::status_body(format, grpc_code, msg));
  }

  void reply(dm_http_request *req, int status, Format format, const std::string &body) {
    host_->metric_add(status_metric(status), 1);
    host_->http_reply(req, status, content_type(format), body.data(), body.size());
  }

  dm_metric *status_metric(int status) {
    auto it = m_status_.find(status);
    if (it != m_status_.end()) return it->second;
    const std::string label = "status=\"" + std::to_string(status) + "\"";
    dm_metric *m = host_->metric_counter(inst_, "otlp_requests_total",
                                         "requests answered, by HTTP status", label.c_str());
    m_status_.emplace(status, m);
    return m;
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string listen_, path_, auth_token_, retry_after_;
  ListenTls tls_;
  size_t max_body_ = 0;
  bool delivered_ = false, durable_ = false;
  bool stopped_ = false, paused_ = false;

  otlp::Limits limits_;
  std::shared_ptr<OtlpInput *> alive_ = std::make_shared<OtlpInput *>(this);
  std::unordered_set<DecodeJob *> decoding_;  // decodes on the pool; answered 503 at destroy
  AckWaits<Waiting> waits_;  // requests waiting for their ack (ack: delivered or durable)
  ResentBodies resent_;      // arrival times of bodies answered 503 after submission

  std::unordered_map<int, dm_metric *> m_status_;
  dm_metric *m_accepted_, *m_bytes_, *m_dead_, *m_failed_, *m_timeouts_;
  dm_metric *m_rejected_[otlp::kReasonCount];
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::OtlpInput>::describe(
    DM_INPUT, "otlp", "0.1.0",
    "takes OpenTelemetry logs over OTLP/HTTP (POST /v1/logs, protobuf or JSON, optionally gzip "
    "or zstd)",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_ACK_STAGES))
