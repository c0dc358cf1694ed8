// Template embeddings for POST /search/semantic: only templates are embedded, never records.
// A record passing through the query output with meta `pattern` (a template created or changed
// by the patterns filter) queues that template; at start, the stored templates without a vector
// are queued too. One thread of its own sends them in batches to the OpenAI-compatible
// /v1/embeddings, so a slow, failing or hung model server never holds the loop or the engine's
// pool: ingestion only pays a bounded queue's push (full: dropped, counted).
//
// The vectors are kept with the template id in a file of the query plugin (vectors_path,
// query_vectors_file.h), appended to after each batch and read back at start, not in the
// store: the query plugin opens the store read-only, and the store's writers (the sqlite and
// mariadb outputs) know nothing of models.
//
// The thread reads the store's template list again every refresh_ms: the vectors of templates
// it no longer has (retention removed their last records) are dropped, so /search/semantic
// stops answering them, and the file is compacted once they are half of it; its templates
// without a vector are queued (one dropped from a full queue, or a vector dropped while its
// template was not yet stored, comes back this way). A vector is dropped only when absent from a
// listing made at least refresh_ms after it was embedded or loaded: the query output sees a new
// template before the store's writer has stored it.
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
#include <unordered_map>
#include <vector>

#include "query_model.h"
#include "query_store.h"
#include "query_vectors_file.h"

namespace devmesh::query {

// Counters of the model calls, by API and outcome (query_model_requests_total).
class ModelMetrics {
 public:
  ModelMetrics(const dm_host_api *host, dm_instance *inst);
  void count(const char *api, ModelOutcome o);  // api: "embeddings" | "chat"  [any]

 private:
  const dm_host_api *host_;
  dm_metric *m_[2][6];
};

class Embedder {
 public:
  struct Settings {
    std::string vectors_path;
    size_t queue_max = 10000;     // templates waiting; more are dropped (counted)
    size_t batch = 32;            // templates per request
    int64_t refresh_ms = 600000;  // the store's template list is read again this often
  };
  Embedder(const dm_host_api *host, dm_instance *inst, const ModelClient &client,
           ModelMetrics &metrics, Settings s);
  ~Embedder();
  // Reads vectors_path (a missing file is an empty start). False with `error` for a file that
  // is there but unreadable. Vectors of another model are dropped (they would not compare).
  bool load(std::string &error);
  // Starts the thread; it first queues the store's templates that have no vector.
  void start(QueryStore *store);
  void stop();  // [loop] joins the thread (an unfinished request is abandoned)

  // [loop] From flush(): the batch's records that carry a template.
  void offer(const dm_batch &batch);

  struct Near {
    uint64_t id;
    std::string service, template_text;
    double score;
  };
  // [any] Templates by cosine to `v`, best first; with `keep`, only the ids it keeps.
  std::vector<Near> nearest(const std::vector<float> &v, const std::optional<std::string> &service,
                            uint32_t limit,
                            const std::function<bool(uint64_t)> &keep = nullptr) const;
  size_t vectors() const;

 private:
  struct Entry : StoredVector {
    double norm = 0;
    uint64_t added_ms = 0;  // monotonic: when it was embedded or loaded
  };
  struct Pending {
    std::string service, template_text;
  };
  void enqueue_locked(uint64_t id, std::string_view service, std::string_view tpl);
  void run();
  void refresh();
  bool save(const std::vector<uint64_t> &added, std::string &error);

  const dm_host_api *host_;
  const ModelClient &client_;
  ModelMetrics &metrics_;
  Settings s_;
  VectorsFile file_;              // vectors_path, written by the thread only
  VectorsFile::Contents loaded_;  // what load() read, for the thread to take over
  QueryStore *store_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<uint64_t> order_;                    // queued ids, oldest first
  std::unordered_map<uint64_t, Pending> queued_;  // the latest text of each queued id
  // Entries are immutable and shared, so save() and nearest() copy pointers under the lock and
  // do their work outside it: offer(), on the loop, never waits for more than that copy.
  std::unordered_map<uint64_t, std::shared_ptr<const Entry>> vectors_;
  std::vector<std::pair<uint64_t, std::shared_ptr<const Entry>>> snapshot() const;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  dm_metric *m_dropped_, *m_embedded_, *m_vectors_, *m_queued_, *m_save_failed_, *m_torn_;
  dm_metric *m_vectors_dropped_, *m_compactions_, *m_refresh_failed_;
  int refresh_failures_ = 0;  // in a row: only the first is logged
  dm_instance *inst_;
};

}  // namespace devmesh::query
