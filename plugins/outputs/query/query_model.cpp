// The model server client (query_model.h).
#include "query_model.h"

#include <curl/curl.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <url_redact.hpp>

#include <stdexcept>

namespace devmesh::query {

namespace {

// Answers past this are refused: a vector or a chat answer is far smaller.
constexpr size_t kMaxResponse = 64 << 20;

struct Transfer {
  std::string *out;
  bool too_big = false;
  const std::atomic<bool> *stopping;
};

size_t on_data(char *p, size_t size, size_t n, void *arg) {
  auto *t = static_cast<Transfer *>(arg);
  if (t->out->size() + size * n > kMaxResponse) {
    t->too_big = true;
    return 0;
  }
  t->out->append(p, size * n);
  return size * n;
}

int on_progress(void *arg, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<Transfer *>(arg)->stopping->load() ? 1 : 0;
}

}  // namespace

ModelClient::ModelClient(ModelSettings s, const std::atomic<bool> &stopping)
    : s_(std::move(s)), stopping_(stopping) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    throw std::runtime_error("curl_global_init failed");
}

ModelClient::~ModelClient() {
  curl_global_cleanup();
}

const char *outcome_name(ModelOutcome o) {
  switch (o) {
    case ModelOutcome::kOk:
      return "ok";
    case ModelOutcome::kTimeout:
      return "timeout";
    case ModelOutcome::kDown:
      return "down";
    case ModelOutcome::kError:
      return "error";
    case ModelOutcome::kBadResponse:
      return "bad_response";
    case ModelOutcome::kStopped:
      return "stopped";
  }
  return "error";
}

ModelOutcome ModelClient::post(const std::string &url, const std::string &body, int64_t timeout_ms,
                               std::string &response, std::string &why) const {
  // Stopped already: not even a connection (the progress callback would abort it, later).
  if (stopping_.load()) {
    why = "stopping";
    return ModelOutcome::kStopped;
  }
  CURL *c = curl_easy_init();
  if (!c) {
    why = "cannot start an HTTP client";
    return ModelOutcome::kError;
  }
  Transfer t{&response, false, &stopping_};
  curl_slist *headers = curl_slist_append(nullptr, "Content-Type: application/json");
  std::string auth;
  if (!s_.api_key.empty()) {
    auth = "Authorization: Bearer " + s_.api_key;
    headers = curl_slist_append(headers, auth.c_str());
  }
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(timeout_ms, 10000)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &t);
  const CURLcode rc = curl_easy_perform(c);
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  const std::string where = redact_url(url);
  switch (rc) {
    case CURLE_OK:
      break;
    case CURLE_OPERATION_TIMEDOUT:
      why = where + ": no answer within " + std::to_string(timeout_ms) + " ms";
      return ModelOutcome::kTimeout;
    case CURLE_ABORTED_BY_CALLBACK:
      why = "stopping";
      return ModelOutcome::kStopped;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      why = where + ": " + curl_easy_strerror(rc);
      return ModelOutcome::kDown;
    default:
      why = where + ": " + (t.too_big ? "answer too large" : curl_easy_strerror(rc));
      return ModelOutcome::kError;
  }
  if (status < 200 || status > 299) {
    why = where + ": HTTP " + std::to_string(status) + ": " + response.substr(0, 200);
    return ModelOutcome::kError;
  }
  return ModelOutcome::kOk;
}

namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void string(Writer &w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}

}  // namespace

ModelOutcome ModelClient::embed(const std::vector<std::string> &inputs,
                                std::vector<std::vector<float>> &vectors, std::string &why) const {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("model");
  string(w, s_.model);
  w.Key("input");
  w.StartArray();
  for (const std::string &in : inputs) string(w, in);
  w.EndArray();
  w.EndObject();
  std::string response;
  const ModelOutcome o = post(s_.embed_url, std::string(buf.GetString(), buf.GetSize()),
                              s_.embed_timeout_ms, response, why);
  if (o != ModelOutcome::kOk) return o;
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(response.data(), response.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("data") || !d["data"].IsArray() ||
      d["data"].Size() != inputs.size()) {
    why = redact_url(s_.embed_url) + ": not an embeddings answer (data[] with one per input)";
    return ModelOutcome::kBadResponse;
  }
  vectors.assign(inputs.size(), {});
  for (const auto &item : d["data"].GetArray()) {
    size_t index = &item - &d["data"][0];
    if (item.IsObject() && item.HasMember("index") && item["index"].IsUint())
      index = item["index"].GetUint();
    if (index >= inputs.size() || !item.IsObject() || !item.HasMember("embedding") ||
        !item["embedding"].IsArray() || item["embedding"].Empty()) {
      why = redact_url(s_.embed_url) + ": an embedding is missing or malformed";
      return ModelOutcome::kBadResponse;
    }
    for (const auto &x : item["embedding"].GetArray()) {
      if (!x.IsNumber()) {
        why = redact_url(s_.embed_url) + ": an embedding holds a value that is not a number";
        return ModelOutcome::kBadResponse;
      }
      vectors[index].push_back(static_cast<float>(x.GetDouble()));
    }
  }
  for (const auto &v : vectors)
    if (v.empty() || v.size() != vectors[0].size()) {
      why = redact_url(s_.embed_url) + ": embeddings of different lengths";
      return ModelOutcome::kBadResponse;
    }
  return ModelOutcome::kOk;
}

ModelOutcome ModelClient::chat(std::string_view system, std::string_view user, std::string &answer,
                               std::string &why) const {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  w.Key("model");
  string(w, s_.model);
  w.Key("stream");
  w.Bool(false);
  w.Key("messages");
  w.StartArray();
  for (const auto &[role, content] : {std::pair{"system", system}, std::pair{"user", user}}) {
    w.StartObject();
    w.Key("role");
    w.String(role);
    w.Key("content");
    string(w, content);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  std::string response;
  const ModelOutcome o = post(s_.chat_url, std::string(buf.GetString(), buf.GetSize()),
                              s_.chat_timeout_ms, response, why);
  if (o != ModelOutcome::kOk) return o;
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(response.data(), response.size());
  const rapidjson::Value *content = nullptr;
  if (!d.HasParseError() && d.IsObject() && d.HasMember("choices") && d["choices"].IsArray() &&
      !d["choices"].Empty()) {
    const auto &c = d["choices"][0];
    if (c.IsObject() && c.HasMember("message") && c["message"].IsObject() &&
        c["message"].HasMember("content") && c["message"]["content"].IsString())
      content = &c["message"]["content"];
  }
  if (!content) {
    why = redact_url(s_.chat_url) + ": not a chat completion (choices[0].message.content)";
    return ModelOutcome::kBadResponse;
  }
  answer.assign(content->GetString(), content->GetStringLength());
  return ModelOutcome::kOk;
}

}  // namespace devmesh::query
