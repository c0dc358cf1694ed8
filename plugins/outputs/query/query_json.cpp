// JSON rendering for the query endpoints: rows, stats, errors (store-independent).
#include "query_json.h"

#include <rapidjson/encodings.h>
#include <rapidjson/reader.h>

#include <algorithm>
#include <limits>
#include <map>

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

void write_row(Writer &w, const LogRow &r, TimeFormat tf, std::string &scratch) {
  auto nullable = [&](const char *key, bool has, std::string_view v) {
    w.Key(key);
    if (has)
      write_string(w, v, scratch);
    else
      w.Null();
  };
  w.StartObject();
  w.Key("id");
  w.Int64(r.id);
  w.Key("timestamp");
  char ts[64];
  w.String(ts, json_size(format_time(r.timestamp_ns, tf, ts, sizeof ts)));
  w.Key("source");
  write_string(w, r.source, scratch);
  w.Key("service");
  write_string(w, r.service, scratch);
  w.Key("host");
  write_string(w, r.host, scratch);
  w.Key("level");
  write_string(w, r.level, scratch);
  nullable("trace_id", r.has_trace_id, r.trace_id);
  nullable("span_id", r.has_span_id, r.span_id);
  nullable("event_type", r.has_event_type, r.event_type);
  nullable("error_code", r.has_error_code, r.error_code);
  w.Key("message");
  write_string(w, r.message, scratch);
  w.Key("meta_json");
  if (!r.has_meta_json) {
    w.Null();
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
      w.RawValue(sub.GetString(), sub.GetSize(), rapidjson::kObjectType);
    else
      write_string(w, r.meta_json, scratch);
  }
  // After the prototype's columns: its clients read the keys they know.
  w.Key("pattern_id");
  if (r.has_pattern_id)
    write_string(w, pattern_id_hex(r.pattern_id), scratch);
  else
    w.Null();
  w.EndObject();
}

void JsonRows::row(const LogRow &r) {
  if (count_ >= limit_) {
    more_ = true;
    return;
  }
  ++count_;
  last_ = RowKey{r.timestamp_ns, r.id};
  write_row(w_, r, tf_, clean_);
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

namespace {

// The patterns table's side of a pattern: what it is and its all-time range and count.
void write_pattern_info(Writer &w, const PatternSummary &p, TimeFormat tf, std::string &scratch) {
  w.Key("id");
  write_string(w, pattern_id_hex(p.id), scratch);
  w.Key("service");
  write_string(w, p.service, scratch);
  w.Key("template");
  if (p.has_template)
    write_string(w, p.template_text, scratch);
  else
    w.Null();
  w.Key("first_seen");
  write_string(w, format_time(p.first_seen_ns, tf), scratch);
  w.Key("last_seen");
  write_string(w, format_time(p.last_seen_ns, tf), scratch);
  w.Key("total_count");
  w.Int64(p.total_count);
}

void write_window(Writer &w, int64_t start_ns, int64_t end_ns, TimeFormat tf,
                  std::string &scratch) {
  w.Key("start_time");
  write_string(w, format_time(start_ns, tf), scratch);
  w.Key("end_time");
  write_string(w, format_time(end_ns, tf), scratch);
}

}  // namespace

std::string patterns_json(const std::vector<PatternSummary> &patterns, int64_t start_ns,
                          int64_t end_ns, TimeFormat tf) {
  rapidjson::StringBuffer out;
  Writer w(out);
  std::string scratch;
  w.StartObject();
  write_window(w, start_ns, end_ns, tf, scratch);
  w.Key("patterns");
  w.StartArray();
  for (const PatternSummary &p : patterns) {
    w.StartObject();
    write_pattern_info(w, p, tf, scratch);
    w.Key("count");
    w.Int64(p.count);
    w.Key("first");
    write_string(w, format_time(p.first_ns, tf), scratch);
    w.Key("last");
    write_string(w, format_time(p.last_ns, tf), scratch);
    if (!p.hosts.empty()) {
      w.Key("hosts");
      w.StartArray();
      for (const auto &h : p.hosts) write_string(w, h, scratch);
      w.EndArray();
    }
    w.Key("sample");
    if (p.sample)
      write_row(w, p.sample->view(), tf, scratch);
    else
      w.Null();
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(out.GetString(), out.GetSize());
}

std::string pattern_minutes_json(const PatternSummary &info, int64_t start_ns, int64_t end_ns,
                                 const std::vector<MinuteCount> &minutes, TimeFormat tf) {
  rapidjson::StringBuffer out;
  Writer w(out);
  std::string scratch;
  w.StartObject();
  write_pattern_info(w, info, tf, scratch);
  write_window(w, start_ns, end_ns, tf, scratch);
  int64_t total = 0;
  for (const auto &m : minutes) total += m.count;
  w.Key("count");
  w.Int64(total);
  w.Key("minutes");
  w.StartArray();
  for (const auto &m : minutes) {
    w.StartObject();
    w.Key("minute");
    write_string(w, format_time(m.minute_ns, tf), scratch);
    w.Key("count");
    w.Int64(m.count);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(out.GetString(), out.GetSize());
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

std::string histogram_json(const HistogramQuery &q, const std::vector<LevelBucket> &counts,
                           TimeFormat tf) {
  // Every bucket, empty ones too, so a chart plots the answer as it is; levels by name within one.
  std::vector<std::map<std::string, int64_t>> buckets(q.buckets);
  std::map<std::string, int64_t> levels;
  int64_t total = 0;
  for (const LevelBucket &c : counts) {
    if (c.bucket >= q.buckets) continue;
    buckets[c.bucket][c.level] += c.count;
    levels[c.level] += c.count;
    total += c.count;
  }
  rapidjson::StringBuffer out;
  Writer w(out);
  std::string scratch;
  auto counts_object = [&](const std::map<std::string, int64_t> &m) {
    w.StartObject();
    for (const auto &[level, n] : m) {
      std::string_view k = valid_utf8(level, scratch);
      w.Key(k.data() ? k.data() : "", json_size(k.size()));
      w.Int64(n);
    }
    w.EndObject();
  };
  w.StartObject();
  w.Key("start_time");
  write_string(w, format_time(*q.filters.start_ns, tf), scratch);
  w.Key("end_time");
  write_string(w, format_time(*q.filters.end_ns, tf), scratch);
  w.Key("bucket_seconds");
  w.Double(static_cast<double>(q.step_ns) / 1e9);
  w.Key("total");
  w.Int64(total);
  w.Key("levels");
  counts_object(levels);
  w.Key("buckets");
  w.StartArray();
  for (uint32_t i = 0; i < q.buckets; ++i) {
    w.StartObject();
    w.Key("start");
    write_string(w, format_time(*q.filters.start_ns + int64_t{i} * q.step_ns, tf), scratch);
    w.Key("counts");
    counts_object(buckets[i]);
    w.EndObject();
  }
  w.EndArray();
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
