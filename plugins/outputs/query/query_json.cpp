// JSON rendering for the query endpoints: rows, stats, errors (store-independent).
#include "query_json.h"

#include <rapidjson/encodings.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <limits>

#include "timestamp.hpp"
#include "utf8.hpp"

namespace devmesh::query {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// The writer as a reader's handler, numbers kept as their text: rapidjson 1.1.0's
// Writer::RawNumber writes a number as a string ("123"), and a parse into int or double would
// rewrite 1.50 as 1.5 and round big integers. A typed meta value comes back as it was stored.
struct Copy : Writer {
  using Writer::Writer;
  bool RawNumber(const Ch *s, rapidjson::SizeType n, bool) {
    return RawValue(s, n, rapidjson::kNumberType);
  }
};

rapidjson::SizeType json_size(size_t n) {
  return static_cast<rapidjson::SizeType>(
      std::min<size_t>(n, std::numeric_limits<uint32_t>::max()));
}

}  // namespace

void write_string(Writer &w, std::string_view s, std::string &scratch) {
  s = valid_utf8(s, scratch);
  w.String(s.data() ? s.data() : "", json_size(s.size()));
}

size_t format_time(int64_t ns, TimeFormat f, char *buf, size_t cap) {
  size_t n = format_rfc3339_us(ns, buf, cap);
  if (f == TimeFormat::kPrototype && n > 0 && buf[n - 1] == 'Z') buf[--n] = '\0';
  return n;
}

std::string format_time(int64_t ns, TimeFormat f) {
  char buf[64];
  return std::string(buf, format_time(ns, f, buf, sizeof buf));
}

JsonRows::JsonRows(uint32_t limit, TimeFormat tf, bool envelope)
    : w_(out_), limit_(limit), tf_(tf), envelope_(envelope) {
  if (envelope_) {
    w_.StartObject();
    w_.Key("logs");
  }
  w_.StartArray();
}

void JsonRows::string(std::string_view s) {
  write_string(w_, s, clean_);
}

void JsonRows::nullable(const char *key, bool has, std::string_view v) {
  w_.Key(key);
  if (has)
    string(v);
  else
    w_.Null();
}

void JsonRows::row(const LogRow &r) {
  if (count_ >= limit_) {
    more_ = true;
    return;
  }
  ++count_;
  last_ = RowKey{r.timestamp_ns, r.id};
  w_.StartObject();
  w_.Key("id");
  w_.Int64(r.id);
  w_.Key("timestamp");
  char ts[64];
  w_.String(ts, json_size(format_time(r.timestamp_ns, tf_, ts, sizeof ts)));
  w_.Key("source");
  string(r.source);
  w_.Key("service");
  string(r.service);
  w_.Key("host");
  string(r.host);
  w_.Key("level");
  string(r.level);
  nullable("trace_id", r.has_trace_id, r.trace_id);
  nullable("span_id", r.has_span_id, r.span_id);
  nullable("event_type", r.has_event_type, r.event_type);
  nullable("error_code", r.has_error_code, r.error_code);
  w_.Key("message");
  string(r.message);
  w_.Key("meta_json");
  if (!r.has_meta_json) {
    w_.Null();
  } else {
    // Stored JSON text goes out as an object (as the prototype returned it), re-validated so a
    // hand-edited row cannot break the response; text that is not valid JSON goes out as a string.
    // Iterative: a row nested a million levels deep (hand-edited, or stored by an older
    // release) costs heap, not the loop thread's stack.
    rapidjson::StringBuffer sub;
    Copy sw(sub);
    rapidjson::Reader reader;
    rapidjson::MemoryStream ms(r.meta_json.data(), r.meta_json.size());
    if (reader.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag |
                     rapidjson::kParseNumbersAsStringsFlag>(ms, sw) &&
        sw.IsComplete())
      w_.RawValue(sub.GetString(), sub.GetSize(), rapidjson::kObjectType);
    else
      string(r.meta_json);
  }
  w_.EndObject();
}

std::string JsonRows::finish(const std::optional<std::string> &next) {
  w_.EndArray();
  if (envelope_) {
    w_.Key("next");
    if (next)
      w_.String(next->data(), json_size(next->size()));
    else
      w_.Null();
    w_.EndObject();
  }
  return std::string(out_.GetString(), out_.GetSize());
}

std::string stats_json(const StatsResult &s, int64_t since_ns, int64_t until_ns, TimeFormat tf) {
  rapidjson::StringBuffer out;
  Writer w(out);
  std::string scratch;
  w.StartObject();
  w.Key("since");
  write_string(w, format_time(since_ns, tf), scratch);
  w.Key("until");
  write_string(w, format_time(until_ns, tf), scratch);
  w.Key("total");
  w.Int64(s.total);
  auto group = [&](const char *key, const std::vector<StatsGroup> &g) {
    w.Key(key);
    w.StartObject();
    for (const auto &e : g) {
      std::string_view k = valid_utf8(e.key, scratch);
      w.Key(k.data() ? k.data() : "", json_size(k.size()));
      w.Int64(e.count);
    }
    w.EndObject();
  };
  group("by_service", s.by_service);
  group("by_level", s.by_level);
  group("by_host", s.by_host);
  w.EndObject();
  return std::string(out.GetString(), out.GetSize());
}

std::string object_json(std::initializer_list<std::pair<const char *, std::string>> fields) {
  rapidjson::StringBuffer out;
  Writer w(out);
  std::string scratch;
  w.StartObject();
  for (const auto &[k, v] : fields) {
    w.Key(k);
    write_string(w, v, scratch);
  }
  w.EndObject();
  return std::string(out.GetString(), out.GetSize());
}

std::string error_json(std::string_view message) {
  return object_json({{"error", std::string(message)}});
}

}  // namespace devmesh::query
