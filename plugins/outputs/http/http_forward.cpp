// http_forward output: POSTs batches to another devmesh (or the prototype's API) as
// {"logs":[...]} or NDJSON, optionally gzip or zstd, with libcurl's multi interface driven by the
// engine loop: no thread per request, connections reused, `workers` requests in flight at once. A
// receiver's per-record rejections (a devmesh http input's 200 or 422 with "errors") become
// per-record errors for the engine: those records go to this output's dead-letter file with
// the receiver's reason instead of counting as delivered. Credentials in the url are masked
// wherever it is printed.
// First: it sets up rapidjson (SSE2) for every rapidjson header of this file.
#include <body_codec.hpp>
#include <curl_multi.hpp>
#include <record_json.hpp>
#include <url_redact.hpp>

#include <curl/curl.h>
#include <rapidjson/document.h>
#include <devmesh/plugin.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace devmesh {
namespace {

const char *const kFormats[] = {"json", "ndjson", nullptr};
const char *const kCompressions[] = {"none", "gzip", "zstd", nullptr};

const dm_option kOptions[] = {
    {"url", DM_OPT_STRING, DM_OPT_REQUIRED, nullptr, 0, 0, nullptr,
     "receiver, e.g. http://aggregator:8000/ingest/logs (http or https)", 0},
    {"format", DM_OPT_STRING, 0, "json", 0, 0, kFormats,
     "json: the prototype's {\"logs\":[...]} body; ndjson: one record per line", 0},
    {"compression", DM_OPT_STRING, 0, nullptr, 0, 0, kCompressions,
     "none (the default), gzip (ISA-L igzip, level 1) or zstd (level 1; the receiver must take "
     "Content-Encoding: zstd, as a devmesh http input does)",
     0},
    {"gzip", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "the older spelling of compression: gzip (true is the same; false leaves compression as "
     "it is)",
     0},
    {"headers", DM_OPT_MAP, 0, nullptr, 0, 0, nullptr, "extra request headers", 0},
    {"auth_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "sent as 'Authorization: Bearer <token>'", 0},
    {"ca_file", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "PEM file of the CA certificates that verify the receiver (default: the system's)", 0},
    {"tls_verify", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "verify the receiver's certificate and host name", 0},
    {"client_cert", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "PEM client certificate, for receivers that require one", 0},
    {"client_key", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "PEM private key of client_cert", 0},
    {"connect_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "10s", 1, 3600000, nullptr,
     "give up connecting after this long (then retry)", 0},
    {"timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "30s", 1, 3600000, nullptr,
     "give up on a whole request after this long (then retry)", 0},
};

// A receiver's Retry-After is honoured up to this; a larger one is a misconfiguration.
constexpr uint32_t kMaxRetryAfterMs = 300000;
// Response bytes kept: enough for a devmesh receiver's per-record errors of a large batch (a
// cut response cannot be read, and then its rejections could not be kept).
constexpr size_t kMaxResponse = 8u << 20;
// A response buffer grown past this is given back rather than kept.
constexpr size_t kKeepResponse = 64 << 10;
constexpr size_t kReasonBody = 512;
// Body buffers grown by one huge batch are given back rather than kept.
constexpr size_t kKeepBufferBytes = 8u << 20;

class HttpForward;

// One request: its easy handle (reused, so is its connection) and its body buffers.
struct Transfer {
  HttpForward *self = nullptr;
  CURL *easy = nullptr;
  dm_flush_token *token = nullptr;
  const dm_batch *batch = nullptr;
  RecordEncoder encoder{true};  // nanoseconds and priority survive the hop
  // Made on first use, then reused by every request of this slot: its output buffer is sized by
  // the largest body, so the memory of compression is bounded by slots x that body's bound.
  std::unique_ptr<BodyCompressor> compressor;
  std::string_view body;  // what is sent: the encoder's buffer or the compressor's
  std::string response;
  bool response_cut = false;  // more than kMaxResponse arrived
  char error[CURL_ERROR_SIZE] = {};
  const char *encode_error = nullptr;

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
  }
};

bool has_line_break(std::string_view s) {
  return s.find_first_of("\r\n") != s.npos;
}

class HttpForward {
 public:
  HttpForward(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    url_ = c.string("url");
    shown_url_ = redact_url(url_);
    ndjson_ = c.string("format") == "ndjson";
    if (c.has("compression")) {
      const std::string name = c.string("compression");
      codec_ = name == "gzip"   ? BodyCodec::kGzip
               : name == "zstd" ? BodyCodec::kZstd
                                : BodyCodec::kNone;
      if (c.boolean("gzip") && codec_ != BodyCodec::kGzip)
        problems.add("gzip", "gzip: true contradicts compression: " + name + " (drop gzip)");
    } else if (c.boolean("gzip")) {
      codec_ = BodyCodec::kGzip;
    }
    tls_verify_ = c.boolean("tls_verify");
    connect_timeout_ms_ = c.integer("connect_timeout");
    timeout_ms_ = c.integer("timeout");
    if (c.has("ca_file")) ca_file_ = readable(c.string("ca_file"), "ca_file", problems);
    if (c.has("client_cert"))
      client_cert_ = readable(c.string("client_cert"), "client_cert", problems);
    if (c.has("client_key")) client_key_ = readable(c.string("client_key"), "client_key", problems);
    if (!client_key_.empty() && client_cert_.empty())
      problems.add("client_key", "needs client_cert");

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
      throw std::runtime_error("curl_global_init failed");
    curl_ready_ = true;
    check_url(problems);

    auto add = [&](const std::string &line) {
      curl_slist *l = curl_slist_append(headers_, line.c_str());
      if (!l) throw std::runtime_error("curl_slist_append failed");
      headers_ = l;
    };
    add(ndjson_ ? "Content-Type: application/x-ndjson" : "Content-Type: application/json");
    if (codec_ == BodyCodec::kGzip) add("Content-Encoding: gzip");
    if (codec_ == BodyCodec::kZstd) add("Content-Encoding: zstd");
    add("Expect:");  // no 100-continue round trip before each body
    if (c.has("auth_token")) {
      std::string token = c.string("auth_token");
      if (token.empty() || has_line_break(token))
        problems.add("auth_token", "must be one non-empty line");
      else
        add("Authorization: Bearer " + token);
    }
    for (uint32_t i = 0, n = c.has("headers") ? c.count("headers") : 0; i < n; ++i) {
      std::string k = c.map_key("headers", i), v = c.item("headers", i);
      if (k.empty() || has_line_break(k) || has_line_break(v) || k.find(':') != k.npos)
        problems.add("headers." + k, "'" + k + "' is not a valid header");
      else
        add(k + ": " + v);
    }
    problems.refuse_if_any();

    multi_ = std::make_unique<CurlMulti>(host, inst, on_done, this);

    for (const char *code : {"2xx", "408", "413", "429", "4xx", "5xx", "other", "error"}) {
      std::string label = std::string("code=\"") + code + "\"";
      m_requests_[code] = host->metric_counter(
          inst, "http_forward_requests_total",
          "requests finished, by response class (error: no response)", label.c_str());
    }
    m_bytes_ = host->metric_counter(inst, "http_forward_body_bytes_total",
                                    "request body bytes sent (after compression)", nullptr);
    m_rejected_ = host->metric_counter(
        inst, "http_forward_records_rejected_total",
        "records a receiver rejected one by one (a devmesh receiver's 200 or 422 \"rejected\"): "
        "dead-lettered here with its reason",
        nullptr);
  }

  ~HttpForward() {
    for (auto &t : active_)
      if (t->easy) multi_->remove(t->easy);
    active_.clear();
    idle_.clear();
    multi_.reset();
    if (headers_) curl_slist_free_all(headers_);
    if (curl_ready_) curl_global_cleanup();
  }

  int start() { return multi_->start() ? 0 : 1; }

  // The engine stops outputs once everything is delivered; anything still here is answered so
  // no flush is left open.
  void stop() {
    stopped_ = true;
    for (auto &t : active_) {
      multi_->remove(t->easy);
      host_->flush_done(t->token, DM_FLUSH_RETRY, 0, "output stopped");
      idle_.push_back(std::move(t));
    }
    active_.clear();
    multi_->stop();
  }

  dm_flush_status flush(void *, const dm_batch *batch, dm_flush_token *token,
                        dm_flush_result *res) {
    if (stopped_) {
      std::snprintf(res->reason, sizeof res->reason, "output stopped");
      return DM_FLUSH_RETRY;
    }
    std::unique_ptr<Transfer> t = acquire();
    t->token = token;
    t->batch = batch;
    Transfer *raw = t.get();
    // Encoding (and compressing) a batch is CPU work: the engine's thread pool does it, the
    // loop only starts the request.
    if (host_->queue_work(inst_, encode_work, encode_done, raw) != DM_OK) {
      idle_.push_back(std::move(t));
      std::snprintf(res->reason, sizeof res->reason, "cannot queue the encoding work");
      return DM_FLUSH_RETRY;
    }
    encoding_.push_back(std::move(t));
    return DM_FLUSH_PENDING;
  }

 private:
  // "" is unset: a shipped configuration's ${VAR:-} for a TLS file the node does not use.
  static std::string readable(const std::string &path, const char *key, ConfigProblems &problems) {
    if (!path.empty() && access(path.c_str(), R_OK) != 0) problems.add(key, "cannot read " + path);
    return path;
  }

  void check_url(ConfigProblems &problems) {
    CURLU *u = curl_url();
    char *scheme = nullptr;
    const bool ok = u && curl_url_set(u, CURLUPART_URL, url_.c_str(), 0) == CURLUE_OK &&
                    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK;
    const std::string s = scheme ? scheme : "";
    curl_free(scheme);
    curl_url_cleanup(u);
    if (!ok)
      problems.add("url", "'" + shown_url_ + "' is not a URL");
    else if (s != "http" && s != "https")
      problems.add("url", "scheme must be http or https, not '" + s + "'");
  }

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
    curl_easy_setopt(e, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "devmesh/0.1");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout_ms_));
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms_));
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_response_data);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t.get());
    curl_easy_setopt(e, CURLOPT_PRIVATE, t.get());
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, tls_verify_ ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, tls_verify_ ? 2L : 0L);
    if (!ca_file_.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, ca_file_.c_str());
    if (!client_cert_.empty()) curl_easy_setopt(e, CURLOPT_SSLCERT, client_cert_.c_str());
    if (!client_key_.empty()) curl_easy_setopt(e, CURLOPT_SSLKEY, client_key_.c_str());
    return t;
  }

  // Back to the pool; buffers grown by a huge batch are given back.
  void release(std::unique_ptr<Transfer> t) {
    t->token = nullptr;
    t->batch = nullptr;
    if (t->encoder.out.GetSize() > kKeepBufferBytes) {
      t->encoder.out.Clear();
      t->encoder.out.ShrinkToFit();
    }
    if (t->compressor && t->compressor->buffer_bytes() > kKeepBufferBytes) t->compressor->release();
    t->body = {};
    if (t->response.capacity() > kKeepResponse) std::string().swap(t->response);
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

  // ---- encoding (thread pool) -------------------------------------------------------------------

  static void encode_work(void *arg) {
    auto *t = static_cast<Transfer *>(arg);
    t->encode_error = nullptr;
    try {
      t->self->encode(*t);
    } catch (...) {
      t->encode_error = "cannot encode the batch (out of memory?)";
    }
  }

  void encode(Transfer &t) const {
    JsonBuffer &out = t.encoder.out;
    out.Clear();
    if (!ndjson_) {
      static constexpr std::string_view kHead = "{\"logs\":[";
      for (char ch : kHead) out.Put(ch);
    }
    for (uint32_t i = 0; i < t.batch->count; ++i) {
      if (i && !ndjson_) out.Put(',');
      t.encoder.record(t.batch->records[i]);
      if (ndjson_) out.Put('\n');
    }
    if (!ndjson_) {
      out.Put(']');
      out.Put('}');
    }
    t.body = {out.GetString(), out.GetSize()};
    if (codec_ != BodyCodec::kNone) {
      if (!t.compressor) t.compressor = std::make_unique<BodyCompressor>(codec_);
      t.body = t.compressor->compress(t.body.data(), t.body.size());
    }
  }

  // Back on the loop: start the request.
  static void encode_done(void *arg) {
    auto *raw = static_cast<Transfer *>(arg);
    HttpForward *self = raw->self;
    std::unique_ptr<Transfer> t = take(self->encoding_, raw);
    if (!t) return;
    dm_flush_token *token = t->token;
    if (self->stopped_ || t->encode_error) {
      const char *why = t->encode_error ? t->encode_error : "output stopped";
      self->release(std::move(t));
      self->host_->flush_done(token, DM_FLUSH_RETRY, 0, why);
      return;
    }
    const char *body = t->body.data();
    const size_t len = t->body.size();
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(len));
    t->response.clear();
    t->response_cut = false;
    t->error[0] = '\0';
    self->host_->metric_add(self->m_bytes_, static_cast<double>(len));
    CURL *easy = t->easy;
    self->active_.push_back(std::move(t));
    const CURLMcode rc = self->multi_->add(easy);
    if (rc != CURLM_OK) {
      std::unique_ptr<Transfer> back = take(self->active_, raw);
      self->release(std::move(back));
      self->host_->flush_done(token, DM_FLUSH_RETRY, 0, curl_multi_strerror(rc));
    }
  }

  // ---- curl on the loop -------------------------------------------------------------------------

  static size_t on_response_data(char *p, size_t size, size_t n, void *arg) {
    auto *t = static_cast<Transfer *>(arg);
    const size_t len = size * n;
    const size_t keep = std::min(len, kMaxResponse - std::min(kMaxResponse, t->response.size()));
    t->response.append(p, keep);
    if (keep < len) t->response_cut = true;
    return len;  // the rest is read and dropped, so the connection stays reusable
  }

  // A request finished (CurlMulti took it out of the multi).
  static void on_done(void *owner, CURL *easy, CURLcode result) {
    auto *self = static_cast<HttpForward *>(owner);
    Transfer *raw = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char **>(&raw));
    std::unique_ptr<Transfer> t = take(self->active_, raw);
    if (t) self->finish(std::move(t), result);
  }

  // Maps the outcome to the engine's: 2xx delivered, but for records a devmesh receiver rejected
  // one by one (200 or 422 with "errors": each an error with its reason); 408, 429, 5xx and
  // transport errors retried (Retry-After honoured); 413 split; any other 4xx an error for the
  // dead-letter file.
  void finish(std::unique_ptr<Transfer> t, CURLcode result) {
    dm_flush_token *token = t->token;
    long code = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    dm_flush_status status;
    uint32_t retry_after_ms = 0;
    std::string reason;
    const char *klass;
    if (result != CURLE_OK) {
      klass = "error";
      status = DM_FLUSH_RETRY;
      reason = "POST " + shown_url_ + ": " + (t->error[0] ? t->error : curl_easy_strerror(result));
    } else if (code >= 200 && code < 300) {
      klass = "2xx";
      status = rejections(*t, code, reason);
    } else if (code == 422 && (status = rejections(*t, code, reason)) == DM_FLUSH_OK) {
      klass = "4xx";  // every record refused, each with its own reason (dead-lettered one by one)
    } else {
      klass = code == 408                 ? "408"
              : code == 413               ? "413"
              : code == 429               ? "429"
              : code >= 500 && code < 600 ? "5xx"
              : code >= 400 && code < 500 ? "4xx"
                                          : "other";
      reason = "HTTP " + std::to_string(code) + " from " + shown_url_;
      if (!t->response.empty())
        reason += ": " + t->response.substr(0, std::min(kReasonBody, t->response.size()));
      if (code == 413) {
        status = DM_FLUSH_SPLIT;
      } else if (code == 408 || code == 429 || (code >= 500 && code < 600)) {
        status = DM_FLUSH_RETRY;
        curl_off_t after = 0;
        if (curl_easy_getinfo(t->easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
          retry_after_ms =
              static_cast<uint32_t>(std::min<curl_off_t>(after * 1000, kMaxRetryAfterMs));
      } else if (code >= 400 && code < 500) {
        status = DM_FLUSH_ERROR;
      } else {
        status = DM_FLUSH_RETRY;  // 1xx/3xx: a receiver or URL problem that a fix can resolve
      }
    }
    host_->metric_add(m_requests_[klass], 1);
    release(std::move(t));
    host_->flush_done(token, status, retry_after_ms, reason.c_str());
  }

  // A devmesh receiver answers 200 (some accepted) or 422 (none) with the records it rejected,
  // by index into the body sent: {"accepted":a,"rejected":r,"errors":[{"index":i,"reason":..}]}.
  // Those can never be delivered as they are: each is marked an error with the receiver's
  // reason, for this output's dead-letter file, instead of counting as delivered. Returns OK
  // (the marks apply) or, when rejections are announced but cannot all be located (a cut or
  // odd body), ERROR for the whole batch, so that nothing rejected is counted delivered (the
  // accepted ones land in the dead-letter file too, harmless next to a lost record). A 2xx
  // without a devmesh body (another receiver) is OK as it is; a 422 without one is ERROR.
  dm_flush_status rejections(const Transfer &t, long code, std::string &reason) {
    const uint32_t sent = t.batch ? t.batch->count : 0;
    const std::string quote = t.response.substr(0, std::min(kReasonBody, t.response.size()));
    reason = "HTTP " + std::to_string(code) + " from " + shown_url_ + ": " + quote;
    rapidjson::Document d;
    // Iterative: a receiver's megabytes of '[' must not recurse that deep on the loop's stack.
    if (!t.response_cut)
      d.Parse<rapidjson::kParseIterativeFlag>(t.response.data(), t.response.size());
    const bool devmesh_body = !t.response_cut && !d.HasParseError() && d.IsObject() &&
                              d.HasMember("rejected") && d["rejected"].IsUint();
    if (!devmesh_body) {
      if (t.response_cut) reason += " (response cut at " + std::to_string(kMaxResponse) + " bytes)";
      return code == 422 || t.response_cut ? DM_FLUSH_ERROR : DM_FLUSH_OK;
    }
    const unsigned rejected = d["rejected"].GetUint();
    // Every record sent is either accepted or rejected: a receiver that accounts for fewer lost
    // some without saying which (nothing of the batch can be called delivered then).
    if (d.HasMember("accepted") && d["accepted"].IsUint() &&
        static_cast<uint64_t>(d["accepted"].GetUint()) + rejected != sent) {
      host_->log(inst_, DM_LOG_ERROR,
                 "%s accounted for %u accepted + %u rejected of %u records sent: the whole batch "
                 "goes to the dead-letter file",
                 shown_url_.c_str(), d["accepted"].GetUint(), rejected, sent);
      reason += " (accounts for " + std::to_string(d["accepted"].GetUint() + rejected) + " of " +
                std::to_string(sent) + " records)";
      return DM_FLUSH_ERROR;
    }
    if (rejected == 0) return code == 422 ? DM_FLUSH_ERROR : DM_FLUSH_OK;
    std::vector<std::pair<uint32_t, std::string>> found;
    std::vector<bool> seen(sent, false);
    auto errors = d.FindMember("errors");
    if (errors != d.MemberEnd() && errors->value.IsArray()) {
      for (const auto &e : errors->value.GetArray()) {
        if (!e.IsObject() || !e.HasMember("index") || !e["index"].IsUint()) continue;
        const uint32_t i = e["index"].GetUint();
        if (i >= sent || seen[i]) continue;
        seen[i] = true;
        std::string why = e.HasMember("reason") && e["reason"].IsString()
                              ? std::string(e["reason"].GetString(), e["reason"].GetStringLength())
                              : "no reason given";
        found.emplace_back(i, "rejected by " + shown_url_ + ": " + why);
      }
    }
    host_->metric_add(m_rejected_, rejected);
    if (found.size() != rejected) {
      host_->log(inst_, DM_LOG_ERROR,
                 "%s rejected %u of %u records but named %zu of them: the whole batch goes to "
                 "the dead-letter file",
                 shown_url_.c_str(), rejected, sent, found.size());
      return DM_FLUSH_ERROR;
    }
    host_->log(inst_, DM_LOG_WARN, "%s rejected %u of %u records (to the dead-letter file): %s",
               shown_url_.c_str(), rejected, sent, quote.c_str());
    for (auto &[i, why] : found)
      host_->flush_record_status(t.token, i, DM_FLUSH_ERROR, why.c_str());
    return DM_FLUSH_OK;
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string url_, shown_url_;  // shown_url_: url_ with its password masked, for printing
  std::string ca_file_, client_cert_, client_key_;
  bool ndjson_ = false, tls_verify_ = true;
  BodyCodec codec_ = BodyCodec::kNone;
  int64_t connect_timeout_ms_ = 0, timeout_ms_ = 0;
  bool curl_ready_ = false;
  bool stopped_ = false;
  curl_slist *headers_ = nullptr;
  std::unique_ptr<CurlMulti> multi_;
  std::vector<std::unique_ptr<Transfer>> idle_, encoding_, active_;

  std::unordered_map<std::string_view, dm_metric *> m_requests_;
  dm_metric *m_bytes_, *m_rejected_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::HttpForward>::describe(
    DM_OUTPUT, "http_forward", "0.1.0",
    "POSTs records to another devmesh http input or the prototype's /ingest/logs (JSON or "
    "NDJSON, gzip or zstd, TLS); libcurl on the engine loop",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
