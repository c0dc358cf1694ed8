// Fuzz target: the query output's POST bodies (plugins/outputs/query/query_body.*): the raw
// input as the body of /search/similar, /search/semantic and /explain/incident, and an
// accepted message through the similar-log search's masking, tokenising and ranking
// (query_similar.*) against a few templates and its own masked form, which it must fit.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "query_body.h"
#include "query_similar.h"

namespace {

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz query_body: invariant broken: %s\n", what);
  std::abort();
}

std::string joined(const std::vector<std::string> &tokens) {
  std::string s;
  for (const std::string &t : tokens) s += (s.empty() ? "" : " ") + t;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace devmesh::query;
  if (size > kMaxBodyBytes) return 0;  // refused with 413 before parsing
  const std::string_view raw(reinterpret_cast<const char *>(data), size);
  std::string error;

  SimilarRequest similar;
  if (parse_similar_body(raw, similar, error)) {
    check(!similar.message.empty() && similar.message.size() <= 16384, "message bounded");
    check(similar.limit >= 1 && similar.limit <= 1000, "limit in range");
    check(similar.records <= 100, "records in range");
    const std::vector<std::string> tokens = message_tokens(similar.message);
    check(fits_template(tokens, template_tokens(joined(tokens))), "a message fits its own mask");
    std::vector<PatternSummary> templates(4);
    const char *texts[] = {"connection to <*> refused", "login failed for user=<*>",
                           "disk <*> full", nullptr};
    for (size_t i = 0; i < templates.size(); ++i) {
      templates[i].id = i + 1;
      templates[i].service = i % 2 ? "api" : "db";
      templates[i].template_text = texts[i] ? texts[i] : joined(tokens);
      templates[i].has_template = true;
      templates[i].total_count = static_cast<int64_t>(i);
    }
    const TemplateIndex index(templates);
    const auto hits = index.search(similar.message, similar.service, similar.limit);
    check(hits.size() <= similar.limit, "at most limit hits");
    bool similar_seen = false;
    for (const auto &h : hits) {
      check(h.index < templates.size(), "a hit is a template");
      check(h.score > 0 && h.score <= 1, "score in (0, 1]");
      check(!(h.exact && similar_seen), "exact matches come first");
      similar_seen = similar_seen || !h.exact;
    }
    // Its own mask (service api, the most seen) is the first exact match, unless the service
    // asked for is another.
    if (!similar.service || *similar.service == "api")
      check(!hits.empty() && hits[0].index == 3 && hits[0].exact, "its own mask comes first");
  } else {
    check(!error.empty(), "a refused /search/similar body says why");
  }

  SemanticRequest semantic;
  error.clear();
  if (parse_semantic_body(raw, semantic, error))
    check(!semantic.message.empty() && semantic.limit >= 1 && semantic.limit <= 1000,
          "semantic body bounded");
  else
    check(!error.empty(), "a refused /search/semantic body says why");

  ExplainRequest explain;
  error.clear();
  auto duration = [](std::string_view text, int64_t &ms) {
    return devmesh::parse_duration_ms(text, ms);
  };
  if (parse_explain_body(raw, 1700000000000000000LL, duration, explain, error)) {
    const ContextQuery &q = explain.query;
    check(q.start_ns <= q.end_ns, "explain window in order");
    check(q.max_bytes >= 1024 && q.max_bytes <= 1048576, "explain max_bytes in range");
  } else {
    check(!error.empty(), "a refused /explain/incident body says why");
  }
  return 0;
}
