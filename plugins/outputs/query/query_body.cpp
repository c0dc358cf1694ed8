// Reading the POST endpoints' JSON bodies (query_body.h).
#include "query_body.h"

#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace devmesh::query {

std::string bad_field(std::string_view name, std::string_view why) {
  return "bad field '" + std::string(name) + "': " + std::string(why);
}

namespace {

// A field name as it may be echoed in an error: printable ASCII, bounded.
std::string printable(std::string_view s) {
  std::string r;
  for (char c : s.substr(0, 64)) r += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) r += "...";
  return r;
}

}  // namespace

bool BodyFields::parse(const EndpointSpec &spec, std::string_view body, std::string &error) {
  // Iterative: a body of nested brackets must not recurse on the loop thread's stack.
  doc_.Parse<rapidjson::kParseIterativeFlag>(body.data(), body.size());
  if (doc_.HasParseError()) {
    error = "body is not JSON: " + std::string(rapidjson::GetParseError_En(doc_.GetParseError())) +
            " at offset " + std::to_string(doc_.GetErrorOffset());
    return false;
  }
  if (!doc_.IsObject()) {
    error = "body must be a JSON object";
    return false;
  }
  for (auto it = doc_.MemberBegin(); it != doc_.MemberEnd(); ++it) {
    const std::string_view name(it->name.GetString(), it->name.GetStringLength());
    bool known = false;
    for (const ParamSpec &p : spec.params) known = known || name == p.name;
    if (known) continue;
    error = "unknown field '" + printable(name) + "' (valid for " + spec.path + ":";
    for (size_t i = 0; i < spec.params.size(); ++i)
      error += std::string(i ? ", " : " ") + spec.params[i].name;
    error += ")";
    return false;
  }
  return true;
}

bool BodyFields::has(const char *name) const {
  return doc_.IsObject() && doc_.HasMember(name) && !doc_[name].IsNull();
}

bool BodyFields::text(const char *name, size_t max_len, std::optional<std::string> &out,
                      std::string &error) {
  if (!has(name)) return true;
  const rapidjson::Value &v = doc_[name];
  if (!v.IsString()) {
    error = bad_field(name, "must be a string");
    return false;
  }
  if (v.GetStringLength() > max_len) {
    error = bad_field(name, "longer than " + std::to_string(max_len) + " bytes");
    return false;
  }
  out.emplace(v.GetString(), v.GetStringLength());
  return true;
}

bool BodyFields::integer(const char *name, int64_t min, int64_t max, std::optional<int64_t> &out,
                         std::string &error) {
  if (!has(name)) return true;
  const rapidjson::Value &v = doc_[name];
  if (!v.IsInt64() || v.GetInt64() < min || v.GetInt64() > max) {
    error =
        bad_field(name, "must be an integer " + std::to_string(min) + ".." + std::to_string(max));
    return false;
  }
  out = v.GetInt64();
  return true;
}

bool BodyFields::as_parameters(std::vector<std::pair<std::string, std::string>> &out,
                               std::string &error) {
  for (auto it = doc_.MemberBegin(); it != doc_.MemberEnd(); ++it) {
    std::string name(it->name.GetString(), it->name.GetStringLength());
    const rapidjson::Value &v = it->value;
    if (v.IsNull()) continue;
    if (v.IsString()) {
      out.emplace_back(std::move(name), std::string(v.GetString(), v.GetStringLength()));
    } else if (v.IsNumber() || v.IsBool()) {
      rapidjson::StringBuffer b;
      rapidjson::Writer<rapidjson::StringBuffer> w(b);
      v.Accept(w);
      out.emplace_back(std::move(name), std::string(b.GetString(), b.GetSize()));
    } else {
      error = bad_field(name, "must be a string or a number");
      return false;
    }
  }
  return true;
}

namespace {

constexpr size_t kMaxMessage = 16384;

}  // namespace

bool parse_similar_body(std::string_view body, SimilarRequest &out, std::string &error) {
  BodyFields f;
  if (!f.parse(*endpoint("/search/similar"), body, error)) return false;
  std::optional<std::string> message, service;
  std::optional<int64_t> limit, records;
  if (!f.text("message", kMaxMessage, message, error) ||
      !f.text("service", kMaxMessage, service, error) ||
      !f.integer("limit", 1, 1000, limit, error) || !f.integer("records", 0, 100, records, error))
    return false;
  if (!message || message->empty()) {
    error = bad_field("message", "required: the log message to look up");
    return false;
  }
  out.message = std::move(*message);
  if (service && !service->empty()) out.service = std::move(*service);
  if (limit) out.limit = static_cast<uint32_t>(*limit);
  if (records) out.records = static_cast<uint32_t>(*records);
  return true;
}

bool parse_semantic_body(std::string_view body, SemanticRequest &out, std::string &error) {
  BodyFields f;
  if (!f.parse(*endpoint("/search/semantic"), body, error)) return false;
  std::optional<std::string> message, service;
  std::optional<int64_t> limit;
  if (!f.text("message", kMaxMessage, message, error) ||
      !f.text("service", kMaxMessage, service, error) || !f.integer("limit", 1, 1000, limit, error))
    return false;
  if (!message || message->empty()) {
    error = bad_field("message", "required: the text to look up");
    return false;
  }
  out.message = std::move(*message);
  if (service && !service->empty()) out.service = std::move(*service);
  if (limit) out.limit = static_cast<uint32_t>(*limit);
  return true;
}

bool parse_explain_body(std::string_view body, int64_t now_ns, const DurationParser &duration,
                        ExplainRequest &out, std::string &error) {
  BodyFields f;
  if (!f.parse(*endpoint("/explain/incident"), body, error)) return false;
  // The fields are /query/context's parameters (but format: the model is sent text), so the
  // window and the bounds mean the same in both; GET's parser checks them.
  std::vector<std::pair<std::string, std::string>> params;
  if (!f.as_parameters(params, error)) return false;
  ContextRequest r;
  if (!parse_context_request(params, now_ns, duration, r, error)) {
    constexpr std::string_view kParam = "bad parameter";
    if (error.starts_with(kParam)) error = "bad field" + error.substr(kParam.size());
    return false;
  }
  out.query = r.query;
  return true;
}

}  // namespace devmesh::query
