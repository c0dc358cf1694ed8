// GET /query/context: an incident pack for an LLM prompt, built from the store's patterns and
// rows (store-independent). POST /explain/incident sends the same pack to a chat model.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "query_json.h"
#include "query_store.h"

namespace devmesh::query {

struct ContextQuery {
  int64_t start_ns = 0, end_ns = 0;  // the incident window
  std::optional<std::string> service, host;
  size_t max_bytes = 32768;  // the rendered pack (JSON or text) never exceeds this
  uint32_t max_patterns = 20;
  uint32_t samples = 3;  // sample lines per pattern
  // When set and true, the build gives up between store queries (kUnavailable, "stopping"): a
  // pack is up to ~110 queries, and a plugin's stop must not wait for them all.
  const std::atomic<bool> *stopping = nullptr;
};

struct ContextPack;  // defined in query_context.cpp (its fields are the renderers' business)

// Builds the pack (runs store queries: call on a worker thread, never on the loop) and renders
// it, bounded by q.max_bytes. False with `err` when the store fails.
bool build_context_json(QueryStore &store, const ContextQuery &q, TimeFormat tf, std::string &out,
                        StoreError &err);
bool build_context_text(QueryStore &store, const ContextQuery &q, TimeFormat tf, std::string &out,
                        StoreError &err);

}  // namespace devmesh::query
