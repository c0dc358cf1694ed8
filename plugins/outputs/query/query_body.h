// The JSON bodies of the query plugin's POST endpoints (/search/similar, /search/semantic,
// /explain/incident): one object, its fields checked against the endpoint's table, every
// problem one 400 message naming the field; and each endpoint's request, parsed from it.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "query_context.h"
#include "query_params.h"

namespace devmesh::query {

// Bodies past this are refused with 413 before they are parsed.
inline constexpr size_t kMaxBodyBytes = 65536;

class BodyFields {
 public:
  // Parses `body` as one JSON object whose fields are all in `spec`'s table. False with
  // `error` ("body is not JSON: ...", "unknown field 'x' (valid for /search/similar: ...)").
  bool parse(const EndpointSpec &spec, std::string_view body, std::string &error);

  // Each getter leaves `out` as it is when the field is absent; false with `error` naming the
  // field when it is present but wrong.
  bool text(const char *name, size_t max_len, std::optional<std::string> &out, std::string &error);
  bool integer(const char *name, int64_t min, int64_t max, std::optional<int64_t> &out,
               std::string &error);
  bool has(const char *name) const;
  // Every field as a name=value pair, as a query string would give it: strings as they are,
  // numbers and booleans as their JSON text, null left out. False with `error` naming a field
  // that is an object or an array.
  bool as_parameters(std::vector<std::pair<std::string, std::string>> &out, std::string &error);

 private:
  rapidjson::Document doc_;
};

// "bad field 'limit': why".
std::string bad_field(std::string_view name, std::string_view why);

// POST /search/similar.
struct SimilarRequest {
  std::string message;
  std::optional<std::string> service;  // only this service's templates
  uint32_t limit = 10;                 // most patterns answered
  uint32_t records = 5;                // recent records per pattern (0: none)
};

// The body's fields into `out`; false with `error` naming the field.
bool parse_similar_body(std::string_view body, SimilarRequest &out, std::string &error);

// POST /search/semantic.
struct SemanticRequest {
  std::string message;
  std::optional<std::string> service;
  uint32_t limit = 10;
};
bool parse_semantic_body(std::string_view body, SemanticRequest &out, std::string &error);

// POST /explain/incident: /query/context's parameters as JSON fields (but format).
struct ExplainRequest {
  ContextQuery query;
};
bool parse_explain_body(std::string_view body, int64_t now_ns, const DurationParser &duration,
                        ExplainRequest &out, std::string &error);

}  // namespace devmesh::query
