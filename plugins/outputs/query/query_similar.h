// POST /search/similar: the stored templates nearest to a message, then their recent records,
// with no model. The message is masked and tokenised exactly as the patterns filter does
// (log_tokens.hpp); a template it fits token for token (<*> matching any token) is an exact
// match and comes first; the rest are ranked by TF-IDF cosine over template tokens. The index
// is built from QueryStore::templates() on a worker thread and rebuilt there once stale.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "query_body.h"
#include "query_json.h"
#include "query_store.h"

namespace devmesh::query {

// The template tokens of a message (masked), or of a stored template (taken as they are).
std::vector<std::string> message_tokens(std::string_view message);
std::vector<std::string> template_tokens(std::string_view template_text);

// Whether a message's masked tokens fit a template's: same count, each equal, or the template's
// "<*>", or the template's "key=<*>" where the message has "key=" anything.
bool fits_template(const std::vector<std::string> &message,
                   const std::vector<std::string> &template_tokens);

// An immutable index over a snapshot of the templates.
class TemplateIndex {
 public:
  explicit TemplateIndex(std::vector<PatternSummary> templates);
  struct Hit {
    size_t index;  // into patterns()
    double score;  // 1 for an exact match; the cosine otherwise
    bool exact;
  };
  // Exact matches first (most seen first), then the others with a cosine above 0, best first.
  std::vector<Hit> search(std::string_view message, const std::optional<std::string> &service,
                          uint32_t limit) const;
  const std::vector<PatternSummary> &patterns() const { return patterns_; }
  // Whether the list is the store's whole list: neither empty (a store that keeps no templates
  // looks like one whose retention removed them all) nor cut at TemplatesQuery's limit.
  bool complete() const;
  bool has(uint64_t id) const { return ids_.count(id) != 0; }

 private:
  struct Doc {
    std::vector<std::string> tokens;
    std::vector<std::pair<uint32_t, double>> weights;  // term, tf-idf / norm
  };
  std::vector<PatternSummary> patterns_;
  std::unordered_set<uint64_t> ids_;
  std::vector<Doc> docs_;
  std::vector<std::string> terms_;
  std::vector<double> idf_;
  std::vector<std::vector<std::pair<uint32_t, double>>> postings_;  // term -> (doc, weight)
  std::vector<uint32_t> order_;                                     // term ids by text, for term()
  uint32_t term(std::string_view t) const;
};

// The current index, shared by the requests; rebuilt by the request that finds it stale (the
// others keep using the previous one meanwhile). Call from workers (or the model threads, for
// /search/semantic), never from the loop.
class SimilarIndex {
 public:
  explicit SimilarIndex(int64_t max_age_ns) : max_age_ns_(max_age_ns) {}
  std::shared_ptr<const TemplateIndex> get(QueryStore &store, int64_t now_ns, StoreError &err);
  // The current index when it is fresh, else null; never reads the store (for /search/semantic,
  // which must not wait on a slow or failing store).
  std::shared_ptr<const TemplateIndex> peek(int64_t now_ns);

 private:
  const int64_t max_age_ns_;
  std::mutex mu_, build_mu_;
  std::shared_ptr<const TemplateIndex> current_;
  int64_t built_ns_ = 0;
};

// The bound on one request's record fetching: records come with the first patterns only, at
// most this many patterns (one store query each) and this many records in all.
constexpr size_t kSimilarRecordQueries = 20;
constexpr size_t kSimilarRecordsBudget = 1000;

// The answer's JSON; false with `err` when the store fails.
bool search_similar(QueryStore &store, SimilarIndex &index, const SimilarRequest &req,
                    int64_t now_ns, TimeFormat tf, std::string &out, StoreError &err);

}  // namespace devmesh::query
