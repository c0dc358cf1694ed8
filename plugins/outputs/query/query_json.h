// JSON rendering of the query endpoints (store-independent): the prototype's row objects, the
// stats document, error bodies and the timestamp text, all through RapidJSON and always valid
// UTF-8 whatever bytes the store holds.
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "query_store.h"

namespace devmesh::query {

enum class TimeFormat {
  kPrototype,  // "2025-11-28T15:23:11.234567": what the prototype's API returned (naive UTC)
  kRfc3339     // "2025-11-28T15:23:11.234567Z"
};

size_t format_time(int64_t ns, TimeFormat f, char *buf, size_t cap);
std::string format_time(int64_t ns, TimeFormat f);

// Renders rows as the prototype's JSON array (or inside {"logs": [...]}), keeping the first
// `limit` and noting whether one more came (then there is a next page).
class JsonRows : public RowSink {
 public:
  JsonRows(uint32_t limit, TimeFormat tf, bool envelope);
  void row(const LogRow &r) override;
  // Closes the document; `next` is the cursor for the following page, or null.
  std::string finish(const std::optional<std::string> &next);
  bool more() const { return more_; }
  const RowKey &last() const { return last_; }
  uint32_t count() const { return count_; }

 private:
  rapidjson::StringBuffer out_;
  rapidjson::Writer<rapidjson::StringBuffer> w_;
  std::string clean_;
  uint32_t limit_, count_ = 0;
  TimeFormat tf_;
  bool envelope_, more_ = false;
  RowKey last_;
};

// Writes one row as the prototype's object (plus pattern_id); what JsonRows writes per row.
void write_row(rapidjson::Writer<rapidjson::StringBuffer> &w, const LogRow &r, TimeFormat tf,
               std::string &scratch);

// GET /query/patterns: {"start_time","end_time","patterns":[{id, service, template, count,
// first, last, first_seen, last_seen, total_count, sample}]}.
std::string patterns_json(const std::vector<PatternSummary> &patterns, int64_t start_ns,
                          int64_t end_ns, TimeFormat tf);

// GET /query/patterns/{id}: the pattern's table row, the window, its count there and per minute.
std::string pattern_minutes_json(const PatternSummary &info, int64_t start_ns, int64_t end_ns,
                                 const std::vector<MinuteCount> &minutes, TimeFormat tf);

// GET /query/histogram's answer: the window, the step, every bucket with its counts by level.
std::string histogram_json(const HistogramQuery &q, const std::vector<LevelBucket> &counts,
                           TimeFormat tf);

std::string stats_json(const StatsResult &s, int64_t since_ns, int64_t until_ns, TimeFormat tf);

// {"error":"..."} with the message escaped.
std::string error_json(std::string_view message);

// {"k":"v",...} from pairs of already-known keys and (escaped) string values.
std::string object_json(std::initializer_list<std::pair<const char *, std::string>> fields);

// Writes s to w as a JSON string; bytes that are not valid UTF-8 become U+FFFD.
void write_string(rapidjson::Writer<rapidjson::StringBuffer> &w, std::string_view s,
                  std::string &scratch);

}  // namespace devmesh::query
