// A client of an OpenAI-compatible model server (what Ollama and vLLM serve): POST
// /v1/embeddings and /v1/chat/completions with libcurl, each call bounded by its timeout and
// abandoned at once when the plugin stops. Blocking: call it from the query plugin's own model
// threads, never from the loop or the engine's pool (a hung server must not hold either).
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::query {

enum class ModelOutcome {
  kOk,
  kTimeout,      // no full answer within the timeout: 504
  kDown,         // cannot connect (refused, no route, bad name): 502
  kError,        // an HTTP error status from the server: 502
  kBadResponse,  // 2xx, but not the JSON the API defines: 502
  kStopped       // the plugin is stopping
};
const char *outcome_name(ModelOutcome o);  // ok, timeout, down, error, bad_response, stopped

struct ModelSettings {
  std::string embed_url;  // e.g. http://127.0.0.1:11434/v1/embeddings ("" : no embeddings)
  std::string chat_url;   // e.g. http://127.0.0.1:11434/v1/chat/completions ("" : no chat)
  std::string model;
  std::string api_key;  // "" : no Authorization header
  int64_t embed_timeout_ms = 10000;
  int64_t chat_timeout_ms = 120000;
};

class ModelClient {
 public:
  // [loop] libcurl's global state is set up here, before any model thread starts (it is not
  // thread-safe), and released by the destructor, after they are joined.
  ModelClient(ModelSettings s, const std::atomic<bool> &stopping);
  ~ModelClient();
  ModelClient(const ModelClient &) = delete;
  ModelClient &operator=(const ModelClient &) = delete;
  const ModelSettings &settings() const { return s_; }

  // One vector per input, in order. On failure `why` says what happened (for the client).
  ModelOutcome embed(const std::vector<std::string> &inputs,
                     std::vector<std::vector<float>> &vectors, std::string &why) const;
  // The assistant's answer to a system and a user message.
  ModelOutcome chat(std::string_view system, std::string_view user, std::string &answer,
                    std::string &why) const;

 private:
  ModelOutcome post(const std::string &url, const std::string &body, int64_t timeout_ms,
                    std::string &response, std::string &why) const;
  ModelSettings s_;
  const std::atomic<bool> &stopping_;
};

}  // namespace devmesh::query
