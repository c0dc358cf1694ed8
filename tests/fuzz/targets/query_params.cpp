// Fuzz target: the query endpoints' parameter parsing (plugins/outputs/query/query_params.*):
// the raw query string through decoding and every endpoint's validation, cursors both ways, the
// raw input as a /query/patterns/{id} path segment.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config.h"
#include "query_params.h"

namespace {

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz query_params: invariant broken: %s\n", what);
  std::abort();
}

std::string lower_ascii(std::string_view s) {
  std::string r(s);
  for (char &c : r)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  using namespace devmesh::query;
  if (size > 16 * 1024) return 0;  // h2o bounds the request line long before this
  const std::string_view raw(reinterpret_cast<const char *>(data), size);

  // A cursor as a client may send it, alone: both orders.
  for (bool desc : {true, false}) {
    RowKey key;
    std::string error;
    if (decode_cursor(raw, desc, key, error)) {
      RowKey again;
      check(decode_cursor(encode_cursor(key, desc), desc, again, error), "own cursor decodes");
      check(again.timestamp_ns == key.timestamp_ns && again.id == key.id, "cursor round trip");
    } else {
      check(!error.empty(), "a refused cursor says why");
    }
  }
  (void)with_cursor(raw, "d.1.2");
  (void)level_from_name(raw);

  std::vector<std::pair<std::string, std::string>> params;
  std::string error;
  if (!decode_query_string(raw, params, error)) {
    check(!error.empty(), "a refused query string says why");
    return 0;
  }
  for (const auto &[name, value] : params)
    check(name.find('\0') == std::string::npos && value.find('\0') == std::string::npos,
          "no NUL in decoded parameters");

  LogRequest logs;
  error.clear();
  if (parse_log_request(params, logs, error)) {
    const LogQuery &q = logs.query;
    check(q.limit >= 1 && q.limit <= kMaxLimit, "limit in range");
    check(!(q.start_ns && q.end_ns) || *q.start_ns <= *q.end_ns, "start before end");
    if (q.after) {
      RowKey again;
      check(decode_cursor(encode_cursor(*q.after, q.descending), q.descending, again, error),
            "the next page's cursor decodes");
    }
  } else {
    check(!error.empty(), "a refused /query/logs says why");
  }

  StatsQuery stats;
  error.clear();
  const int64_t now = 1700000000000000000LL;
  auto duration = [](std::string_view text, int64_t &ms) {
    return devmesh::parse_duration_ms(text, ms);
  };
  if (parse_stats_request(params, now, duration, stats, error)) {
    check(stats.top >= 1 && stats.top <= kMaxLimit, "stats top in range");
    // since= and no times: a window ending now; start_time/end_time: never an end before start.
    check(stats.end_ns ? stats.since_ns <= *stats.end_ns : true, "stats window in order");
  } else {
    check(!error.empty(), "a refused /query/stats says why");
  }

  HistogramQuery histogram;
  error.clear();
  if (parse_histogram_request(params, now, histogram, error)) {
    const LogQuery &q = histogram.filters;
    check(histogram.buckets >= 1 && histogram.buckets <= 1000, "histogram buckets in range");
    check(q.start_ns && q.end_ns && *q.start_ns <= *q.end_ns, "histogram window in order");
    check(histogram.step_ns >= 1000 && histogram.step_ns % 1000 == 0 && *q.start_ns % 1000 == 0,
          "histogram cut in whole microseconds");
    // The buckets cover the window: its end falls in the last one at the latest.
    check((*q.end_ns - *q.start_ns) / histogram.step_ns <= histogram.buckets,
          "histogram buckets cover the window");
  } else {
    check(!error.empty(), "a refused /query/histogram says why");
  }

  PatternsQuery patterns;
  error.clear();
  if (parse_patterns_request(params, now, patterns, error)) {
    check(patterns.limit >= 1 && patterns.limit <= kMaxLimit, "patterns limit in range");
    check(patterns.start_ns <= patterns.end_ns, "patterns window in order");
  } else {
    check(!error.empty(), "a refused /query/patterns says why");
  }
  PatternRequest pattern;
  error.clear();
  if (parse_pattern_request(raw, params, now, pattern, error)) {
    check(pattern_id_hex(pattern.id) == lower_ascii(raw), "a pattern id round-trips");
    check(pattern.start_ns <= pattern.end_ns, "pattern window in order");
  } else {
    check(!error.empty(), "a refused /query/patterns/{id} says why");
  }
  ContextRequest context;
  error.clear();
  if (parse_context_request(params, now, duration, context, error)) {
    const ContextQuery &q = context.query;
    check(q.start_ns <= q.end_ns, "context window in order");
    check(q.max_bytes >= 1024 && q.max_bytes <= 1048576, "context max_bytes in range");
    check(q.max_patterns >= 1 && q.samples <= 10, "context bounds");
  } else {
    check(!error.empty(), "a refused /query/context says why");
  }

  TailFilter tail;
  error.clear();
  if (!parse_tail_request(params, tail, error)) check(!error.empty(), "a refused /tail says why");
  EventId id;
  if (parse_event_id(raw, id)) {
    EventId again;
    check(parse_event_id(format_event_id(id), again) && again.stream == id.stream &&
              again.seq == id.seq,
          "event id round trip");
  }
  (void)message_matches(raw, query_terms(raw));
  return 0;
}
