// POST /search/semantic and POST /explain/incident: the endpoints that ask the model server.
// Their work runs on threads of their own (ModelRequests), not on the engine's pool, where a
// hung model server would hold threads the stores' queries and other plugins need; the answer
// is handed back to the loop with an async. Failures of the model server are answered 502
// (down, an error status, a malformed answer) or 504 (timeout), with the reason, and counted.
#pragma once

#include <devmesh/plugin.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "query_body.h"
#include "query_context.h"
#include "query_embed.h"
#include "query_json.h"
#include "query_model.h"
#include "query_params.h"
#include "query_similar.h"
#include "query_store.h"

namespace devmesh::query {

class ModelRequests {
 public:
  // The work's answer: an HTTP status and a JSON body.
  using Work = std::function<void(int &status, std::string &body)>;
  using Done = std::function<void(int status)>;  // [loop] after each reply (for metrics)
  ModelRequests(const dm_host_api *host, dm_instance *inst, size_t threads, size_t max_waiting,
                Done done);
  ~ModelRequests();
  bool start();  // [loop]
  void stop();   // [loop] joins the threads; what has not run is answered 503
  // [loop] False when max_waiting requests already wait (the caller answers 503).
  bool submit(dm_http_request *req, Work work);

 private:
  struct Item {
    dm_http_request *req;
    Work work;
    int status = 500;
    std::string body;
  };
  static void on_async(void *arg);
  void drain();
  void run();

  const dm_host_api *host_;
  dm_instance *inst_;
  size_t threads_n_, max_waiting_;
  Done done_;
  dm_async *async_ = nullptr;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Item> waiting_, finished_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Embeds the message and ranks the templates that have a vector by cosine. `stored` gives the
// store's template list (/search/similar's, a few seconds old at most): a template it no longer
// has is not answered, even before the embedder's next refresh drops its vector. Without a list
// (the store fails), or with one that cannot tell (empty, or cut at its limit), none is left out.
void search_semantic(const ModelClient &client, ModelMetrics &metrics, const Embedder &embedder,
                     const SemanticRequest &req,
                     const std::function<std::shared_ptr<const TemplateIndex>()> &stored,
                     int &status, std::string &body);

// The system prompt sent with every incident (fixed: the evidence is the only variable part).
extern const char *const kExplainSystemPrompt;
// Builds the context pack (as text), sends it to the chat model, answers {answer, model,
// evidence}. Once `stopping` is set it gives up between store queries, and the model call is
// abandoned: 503.
void explain_incident(QueryStore &store, const ModelClient &client, ModelMetrics &metrics,
                      const ExplainRequest &req, TimeFormat tf, const std::atomic<bool> &stopping,
                      int &status, std::string &body);

}  // namespace devmesh::query
