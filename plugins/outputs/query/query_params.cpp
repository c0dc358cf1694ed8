// Parsing and validation of the query endpoints' parameters (store-independent): every value is
// checked here, so a backend only ever binds well-formed values into parameterised SQL.
#include "query_params.h"

#include <curl/curl.h>
#include <devmesh/plugin.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <map>

#include "ascii.hpp"
#include "timestamp.hpp"
#include "utf8.hpp"

namespace devmesh::query {
namespace {

constexpr size_t kMaxValue = 2048;
constexpr size_t kMaxTerms = 32;
constexpr int64_t kMaxSinceMs = int64_t{3650} * 24 * 3600 * 1000;

std::string lower(std::string_view s) {
  std::string r(s);
  for (char &c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// A parameter name as it may be echoed in an error: printable ASCII, bounded.
std::string printable(std::string_view s) {
  std::string r;
  for (char c : s.substr(0, 64)) r += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) r += "...";
  return r;
}

std::string bad(std::string_view name, std::string_view why) {
  return "bad parameter '" + std::string(name) + "': " + std::string(why);
}

template <class T>
bool parse_int(std::string_view s, T &v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

constexpr const char *kTimeSummary =
    "RFC 3339 time (2025-11-28T00:00:00Z, with an offset, or a date: UTC) or epoch seconds, "
    "from 1970 to 2200";

constexpr uint32_t kMaxHistogramBuckets = 1000;

const ParamSpec kLogParams[] = {
    {"service", "text: exactly this service (empty: any)"},
    {"host", "text: exactly this host (empty: any)"},
    {"level", "DEBUG|INFO|WARN|WARNING|ERROR|CRITICAL|FATAL, any case: exactly this level"},
    {"min_level", "a level name: that level and every one ranking above it"},
    {"trace_id", "text: exactly this trace id"},
    {"pattern_id", "16 hex digits: only the records of this pattern (the patterns filter's id)"},
    {"q", "UTF-8 words (letters, digits) found together, in order, in message; at most 32"},
    {"start_time", "time: timestamp >= it; an RFC 3339 time or epoch seconds"},
    {"end_time", "time: timestamp <= it, not before start_time"},
    {"limit", "integer 1..10000, default 100: rows per page"},
    {"order", "asc|desc, default desc (newest first)"},
    {"cursor", "the X-Next-Cursor of the previous page (also in Link and envelope's next)"},
    {"envelope", "0|1|true|false, default 0: 1 answers {\"logs\":[...],\"next\":cursor}"},
};
const ParamSpec kStatsParams[] = {
    {"since",
     "duration 1ms..3650d (15m, 1h, 7d), default 1h: the window ends now; not with "
     "start_time or end_time"},
    {"start_time", "time, as /query/logs: the window's start (default: one hour before its end)"},
    {"end_time", "time, as /query/logs: the window's end (default: now)"},
    {"top", "integer 1..10000, default 100: most groups per breakdown, by count"},
};
const ParamSpec kPatternsParams[] = {
    {"start_time", "time, as /query/logs: the window's start (default: one hour before its end)"},
    {"end_time", "time, as /query/logs: the window's end (default: now)"},
    {"service", "text: exactly this service"},
    {"host", "text: records from exactly this host"},
    {"level", "a level name: records of exactly this level"},
    {"min_level", "a level name: records of that level and above"},
    {"new", "0|1|true|false, default 0: 1 keeps the patterns first seen in the window"},
    {"limit", "integer 1..10000, default 50: most patterns, by count in the window"},
};
const ParamSpec kPatternParams[] = {
    {"start_time", "time, as /query/logs: the window's start (default: one hour before its end)"},
    {"end_time", "time, as /query/logs: the window's end (default: now)"},
};
const ParamSpec kHistogramParams[] = {
    {"start_time", "time, as /query/logs: the window's start (default: one hour before its end)"},
    {"end_time", "time, as /query/logs: the window's end (default: now)"},
    {"buckets", "integer 1..1000, default 60: equal slices of the window"},
    {"service", "text: exactly this service (empty: any)"},
    {"host", "text: exactly this host (empty: any)"},
    {"level", "a level name: exactly this level"},
    {"min_level", "a level name: that level and every one ranking above it"},
    {"trace_id", "text: exactly this trace id"},
    {"pattern_id", "16 hex digits: only the records of this pattern"},
    {"q", "words found together, in order, in message, as /query/logs's q"},
};
const ParamSpec kTailParams[] = {
    {"service", "text: exactly this service"},
    {"host", "text: exactly this host"},
    {"level", "a level name: exactly this level"},
    {"min_level", "a level name: that level and above"},
    {"q", "words found together, in order, in message (as /query/logs's q, in memory)"},
    {"last_event_id",
     "an event id this stream sent: resume after it (the Last-Event-ID "
     "header, when sent, wins)"},
    {"token", "the auth_token, for a browser's EventSource (or the cookie devmesh_token)"},
};
// The POST endpoints take a JSON object (query_body.h); these are its fields.
const ParamSpec kSimilarFields[] = {
    {"message", "string, required, at most 16384 bytes: the log message to look up"},
    {"service", "string: only this service's templates (empty: any)"},
    {"limit", "integer 1..1000, default 10: most patterns answered"},
    {"records", "integer 0..100, default 5: recent records shown per pattern"},
};
const ParamSpec kSemanticFields[] = {
    {"message", "string, required, at most 16384 bytes: the text to embed and look up"},
    {"service", "string: only this service's templates (empty: any)"},
    {"limit", "integer 1..1000, default 10: most patterns answered"},
};
const ParamSpec kContextParams[] = {
    {"start_time", "time, as /query/logs: the window's start (default: 15 minutes before its end)"},
    {"end_time", "time, as /query/logs: the window's end (default: now)"},
    {"around",
     "time: the window is around - window/2 .. around + window/2; not with start_time "
     "or end_time"},
    {"window", "duration 1s..30d, default 15m: the window's length with around (needs around)"},
    {"service", "text: only this service's records (empty: any)"},
    {"host", "text: only this host's records (empty: any)"},
    {"max_bytes",
     "integer 1024..1048576, default 32768: the answer's size bound; whole items are "
     "left out to keep to it, and the answer says so"},
    {"max_patterns", "integer 1..100, default 20: most patterns shown"},
    {"samples", "integer 0..10, default 3: sample lines per pattern"},
    {"format", "json|text, default json: text is plain prompt-ready text"},
};
// /explain/incident takes /query/context's parameters as body fields, but format (the model
// is always sent the text pack).
const ParamSpec kExplainFields[] = {
    kContextParams[0], kContextParams[1], kContextParams[2], kContextParams[3], kContextParams[4],
    kContextParams[5], kContextParams[6], kContextParams[7], kContextParams[8],
};
const EndpointSpec kEndpoints[] = {
    {"/query/logs", "stored records, newest first, keyset-paginated (JSON array)", kLogParams},
    {"/query/stats", "counts by service, level and host over a time window", kStatsParams},
    {"/query/histogram",
     "records per time bucket and level over a window, with /query/logs's filters (a chart)",
     kHistogramParams},
    {"/query/patterns",
     "the top patterns (templates) in a time window, with counts, first/last seen and a sample",
     kPatternsParams},
    {"/query/patterns/{id}", "one pattern's template and its count per minute in a window",
     kPatternParams},
    {"/query/context",
     "an incident pack for an LLM prompt: the window's error and warning patterns ranked by "
     "surprise against the window before, samples, trace-linked records; bounded by max_bytes",
     kContextParams},
    {"/tail", "live Server-Sent Events of the records passing through, resumable", kTailParams},
    {"/health", "the store's reachability: 200 or 503 (never needs the token)", {}},
    {"/info", "version, node, store and the engine's instances", {}},
    {"/search/similar",
     "the stored templates nearest to a message (exact template match first, then TF-IDF "
     "cosine), each with its recent records",
     kSimilarFields, "POST"},
    {"/search/semantic",
     "templates ranked by cosine between their embeddings and the message's (needs embed_url "
     "and model)",
     kSemanticFields, "POST"},
    {"/explain/incident",
     "the context pack of a window sent to the chat model (needs chat_url and model): "
     "{answer, model, evidence}",
     kExplainFields, "POST"},
};

const EndpointSpec &spec(std::string_view path) {
  return *endpoint(path);
}

// Collects the parameters by name; refuses unknown and repeated ones. An empty value counts as
// absent (the prototype's clients send "service=" for "any").
bool collect(const std::vector<std::pair<std::string, std::string>> &params,
             const EndpointSpec &known, std::map<std::string, std::string> &out,
             std::string &error) {
  for (const auto &param : params) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
    const std::string &name = param.first, &value = param.second;
    if (std::find_if(known.params.begin(), known.params.end(),
                     [&](const ParamSpec &k) { return name == k.name; }) == known.params.end()) {
      error = unknown_parameter(known, name);
      return false;
    }
    if (out.count(name)) {
      error = bad(name, "given more than once");
      return false;
    }
    if (!value.empty()) out.emplace(name, value);
  }
  return true;
}

// The times a parameter may name: 1970-01-01 to 2200-01-01. Logs carry no earlier times, and
// with this range no window, its length, the window before it or a histogram step can
// overflow int64 nanoseconds (a start_time in 1696 did, found by fuzzing).
constexpr int64_t kLatestTimeNs = 7258118400LL * 1000000000LL;  // 2200-01-01T00:00:00Z

// RFC 3339 ("2025-11-28T00:00:00Z", a date, no zone = UTC) or epoch seconds / milliseconds,
// within [1970, 2200].
bool parse_time_any(std::string_view s, int64_t &ns);
bool parse_time(std::string_view s, int64_t &ns) {
  return parse_time_any(s, ns) && ns >= 0 && ns <= kLatestTimeNs;
}
bool parse_time_any(std::string_view s, int64_t &ns) {
  if (parse_rfc3339(s, ns)) return true;
  if (s.empty() || s.size() > 20) return false;
  char *end = nullptr;
  const std::string text(s);
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isdigit(static_cast<unsigned char>(text[0])))
    return false;
  return epoch_number_to_ns(v, ns);
}

// start_time= and end_time=, the same for every endpoint that takes them.
bool parse_time_range(const std::map<std::string, std::string> &p, std::optional<int64_t> &start,
                      std::optional<int64_t> &end, std::string &error) {
  for (const char *name : {"start_time", "end_time"}) {
    auto it = p.find(name);
    if (it == p.end()) continue;
    int64_t ns = 0;
    if (!parse_time(it->second, ns)) {
      error = bad(name,
                  "must be an RFC 3339 time (2025-11-28T00:00:00Z) or epoch seconds, "
                  "from 1970 to 2200");
      return false;
    }
    (name[0] == 's' ? start : end) = ns;
  }
  if (start && end && *end < *start) {
    error = bad("end_time", "is before start_time");
    return false;
  }
  return true;
}

bool parse_q(const std::map<std::string, std::string> &p, std::vector<std::string> &terms,
             std::string &error) {
  auto it = p.find("q");
  if (it == p.end()) return true;
  // Each store matches words as UTF-8 text; bytes that are not UTF-8 made MariaDB's and
  // ClickHouse's regular expressions fail (a 500) and SQLite's tokenizer drop them.
  if (!utf8_valid_from(it->second, 0)) {
    error = bad("q", "is not valid UTF-8");
    return false;
  }
  terms = query_terms(it->second);
  if (terms.empty()) {
    error = bad("q", "has no words to search for (letters or digits)");
    return false;
  }
  if (terms.size() > kMaxTerms) {
    error = bad("q", "has more than " + std::to_string(kMaxTerms) + " words");
    return false;
  }
  return true;
}

bool parse_level_param(const std::map<std::string, std::string> &p, const char *name, int &level,
                       std::string &error) {
  auto it = p.find(name);
  if (it == p.end()) return true;
  level = level_from_name(it->second);
  if (!level)
    error = bad(name, "must be one of DEBUG, INFO, WARN, WARNING, ERROR, CRITICAL, FATAL");
  return level != 0;
}

constexpr int64_t kDefaultWindowNs = int64_t{3600} * 1000 * 1000000;

// A window's start when only its end (or nothing) was given: the hour before, saturating.
int64_t hour_before(int64_t end) {
  return end < INT64_MIN + kDefaultWindowNs ? INT64_MIN : end - kDefaultWindowNs;
}

bool parse_flag(const std::map<std::string, std::string> &p, const char *name, bool &out,
                std::string &error) {
  auto it = p.find(name);
  if (it == p.end()) return true;
  const std::string v = lower(it->second);
  if (v != "0" && v != "1" && v != "true" && v != "false") {
    error = bad(name, "must be 0 or 1");
    return false;
  }
  out = v == "1" || v == "true";
  return true;
}

bool parse_window(const std::map<std::string, std::string> &p, int64_t now_ns, int64_t &start_ns,
                  int64_t &end_ns, std::string &error) {
  std::optional<int64_t> start, end;
  if (!parse_time_range(p, start, end, error)) return false;
  end_ns = end.value_or(now_ns);
  start_ns = start.value_or(hour_before(end_ns));
  if (end_ns < start_ns) {  // only a start after now gets here
    error = bad("start_time", "is after end_time (default: now)");
    return false;
  }
  return true;
}

}  // namespace

int level_from_name(std::string_view name) {
  std::string up(name);
  for (char &c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (up == dm_level_name(l)) return l;
  return 0;
}

std::vector<std::string> levels_at_or_above(std::string_view name) {
  std::vector<std::string> out;
  const int level = level_from_name(name);
  if (!level) return out;
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (dm_level_rank(l) >= dm_level_rank(level)) out.emplace_back(dm_level_name(l));
  return out;
}

// Here, not in query_store.cpp, with the other helpers query_store.h declares: the parsers use
// it, and the fuzz target links the parsers alone.
std::string pattern_id_hex(uint64_t id) {
  static const char digits[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, id >>= 4) out[static_cast<size_t>(i)] = digits[id & 15];
  return out;
}

std::optional<uint64_t> parse_pattern_id(std::string_view hex) {
  if (hex.size() != 16) return std::nullopt;
  uint64_t id = 0;
  for (char c : hex) {
    const int d = c >= '0' && c <= '9'   ? c - '0'
                  : c >= 'a' && c <= 'f' ? c - 'a' + 10
                  : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                         : -1;
    if (d < 0) return std::nullopt;
    id = id << 4 | static_cast<uint64_t>(d);
  }
  return id;
}

std::vector<std::string> query_terms(std::string_view q) {
  std::vector<std::string> terms;
  std::string cur;
  for (char ch : q) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c >= 0x80) {
      cur += ch;
    } else if (!cur.empty()) {
      terms.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) terms.push_back(std::move(cur));
  return terms;
}

bool decode_query_string(std::string_view raw,
                         std::vector<std::pair<std::string, std::string>> &out,
                         std::string &error) {
  auto decode = [&](std::string_view part, std::string &dst) {
    std::string plus(part);
    std::replace(plus.begin(), plus.end(), '+', ' ');
    for (size_t i = 0; i < plus.size(); ++i)
      if (plus[i] == '%' &&
          (i + 2 >= plus.size() || !std::isxdigit(static_cast<unsigned char>(plus[i + 1])) ||
           !std::isxdigit(static_cast<unsigned char>(plus[i + 2])))) {
        error = "malformed percent-encoding in the query string";
        return false;
      }
    int len = 0;
    char *s = curl_easy_unescape(nullptr, plus.data(), static_cast<int>(plus.size()), &len);
    if (!s) {
      error = "malformed query string";
      return false;
    }
    dst.assign(s, static_cast<size_t>(len));
    curl_free(s);
    if (dst.find('\0') != std::string::npos) {
      error = "NUL byte in the query string";
      return false;
    }
    return true;
  };
  while (!raw.empty()) {
    const size_t amp = raw.find('&');
    std::string_view pair = raw.substr(0, amp);
    raw = amp == std::string_view::npos ? std::string_view() : raw.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string name, value;
    if (!decode(pair.substr(0, eq), name)) return false;
    if (eq != std::string_view::npos && !decode(pair.substr(eq + 1), value)) return false;
    if (value.size() > kMaxValue) {
      error = bad(printable(name), "longer than " + std::to_string(kMaxValue) + " bytes");
      return false;
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return true;
}

// The row filters /query/logs and /query/histogram share (not the window, order or cursor).
bool parse_log_filters(std::map<std::string, std::string> &p, LogQuery &q, std::string &error) {
  if (p.count("service")) q.service = p["service"];
  if (p.count("host")) q.host = p["host"];
  if (p.count("trace_id")) q.trace_id = p["trace_id"];
  int level = 0, min_level = 0;
  if (!parse_level_param(p, "level", level, error) ||
      !parse_level_param(p, "min_level", min_level, error))
    return false;
  if (level) q.level = dm_level_name(level);
  if (min_level) q.min_levels = levels_at_or_above(dm_level_name(min_level));
  if (p.count("pattern_id")) {
    q.pattern_id = parse_pattern_id(p["pattern_id"]);
    if (!q.pattern_id) {
      error = bad("pattern_id", "must be 16 hex digits (the meta pattern_id of a record)");
      return false;
    }
  }
  return parse_q(p, q.q_terms, error);
}

bool parse_histogram_request(const std::vector<std::pair<std::string, std::string>> &params,
                             int64_t now_ns, HistogramQuery &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/query/histogram"), p, error)) return false;
  LogQuery &q = out.filters;
  if (!parse_log_filters(p, q, error)) return false;
  int64_t start = 0, end = 0;
  if (!parse_window(p, now_ns, start, end, error)) return false;
  if (p.count("buckets")) {
    if (!parse_int(p["buckets"], out.buckets) || out.buckets < 1 ||
        out.buckets > kMaxHistogramBuckets) {
      error = bad("buckets",
                  "must be an integer between 1 and " + std::to_string(kMaxHistogramBuckets));
      return false;
    }
  }
  // Whole microseconds (what MariaDB stores), so every store cuts the buckets alike; the buckets
  // cover [start, start + buckets * step], end included (the stores put a row at exactly the
  // end, when the step divides the window, in the last bucket). An hour in 60 buckets: 60 s each.
  start -= start % 1000;
  const int64_t span = std::max<int64_t>(1, end - start);
  const int64_t per = (span + out.buckets - 1) / out.buckets;
  out.step_ns = std::max<int64_t>(1000, (per + 999) / 1000 * 1000);
  q.start_ns = start;
  q.end_ns = end;
  return true;
}

bool parse_log_request(const std::vector<std::pair<std::string, std::string>> &params,
                       LogRequest &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/query/logs"), p, error)) return false;
  LogQuery &q = out.query;
  if (!parse_log_filters(p, q, error)) return false;
  if (!parse_time_range(p, q.start_ns, q.end_ns, error)) return false;
  if (p.count("limit")) {
    uint32_t limit = 0;
    if (!parse_int(p["limit"], limit) || limit < 1 || limit > kMaxLimit) {
      error = bad("limit", "must be an integer between 1 and " + std::to_string(kMaxLimit));
      return false;
    }
    q.limit = limit;
  }
  if (p.count("order")) {
    const std::string o = lower(p["order"]);
    if (o != "asc" && o != "desc") {
      error = bad("order", "must be asc or desc");
      return false;
    }
    q.descending = o == "desc";
  }
  if (p.count("cursor")) {
    RowKey key;
    if (!decode_cursor(p["cursor"], q.descending, key, error)) return false;
    q.after = key;
  }
  return parse_flag(p, "envelope", out.envelope, error);
}

bool parse_patterns_request(const std::vector<std::pair<std::string, std::string>> &params,
                            int64_t now_ns, PatternsQuery &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/query/patterns"), p, error)) return false;
  if (!parse_window(p, now_ns, out.start_ns, out.end_ns, error)) return false;
  if (p.count("service")) out.service = p["service"];
  if (p.count("host")) out.host = p["host"];
  int level = 0, min_level = 0;
  if (!parse_level_param(p, "level", level, error) ||
      !parse_level_param(p, "min_level", min_level, error))
    return false;
  if (level) out.level = dm_level_name(level);
  if (min_level) out.min_levels = levels_at_or_above(dm_level_name(min_level));
  if (!parse_flag(p, "new", out.only_new, error)) return false;
  if (p.count("limit")) {
    uint32_t limit = 0;
    if (!parse_int(p["limit"], limit) || limit < 1 || limit > kMaxLimit) {
      error = bad("limit", "must be an integer between 1 and " + std::to_string(kMaxLimit));
      return false;
    }
    out.limit = limit;
  }
  return true;
}

bool parse_pattern_request(std::string_view id_text,
                           const std::vector<std::pair<std::string, std::string>> &params,
                           int64_t now_ns, PatternRequest &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/query/patterns/{id}"), p, error)) return false;
  const auto id = parse_pattern_id(id_text);
  if (!id) {
    error = "bad pattern id '" + printable(id_text) +
            "' in the path: must be 16 hex digits (/query/patterns/0123456789abcdef)";
    return false;
  }
  out.id = *id;
  return parse_window(p, now_ns, out.start_ns, out.end_ns, error);
}

bool parse_stats_request(const std::vector<std::pair<std::string, std::string>> &params,
                         int64_t now_ns, const DurationParser &parse_duration, StatsQuery &out,
                         std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/query/stats"), p, error)) return false;
  if (p.count("since")) {
    // since counts back from now; with a start or an end the window would be two things.
    for (const char *other : {"start_time", "end_time"})
      if (p.count(other)) {
        error = bad("since", std::string("cannot be combined with ") + other +
                                 " (since counts back from now; give start_time instead)");
        return false;
      }
    int64_t since_ms = 0;
    if (!parse_duration(p["since"], since_ms) || since_ms <= 0 || since_ms > kMaxSinceMs) {
      error = bad("since", "must be a duration between 1ms and 3650d (e.g. 15m, 1h, 7d)");
      return false;
    }
    out.since_ns = now_ns - since_ms * 1000000;
  } else {
    std::optional<int64_t> start;
    if (!parse_time_range(p, start, out.end_ns, error)) return false;
    out.since_ns = start ? *start : hour_before(out.end_ns.value_or(now_ns));
  }
  if (p.count("top")) {
    if (!parse_int(p["top"], out.top) || out.top < 1 || out.top > kMaxLimit) {
      error = bad("top", "must be an integer between 1 and " + std::to_string(kMaxLimit));
      return false;
    }
  }
  return true;
}

bool parse_context_request(const std::vector<std::pair<std::string, std::string>> &params,
                           int64_t now_ns, const DurationParser &parse_duration,
                           ContextRequest &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/query/context"), p, error)) return false;
  constexpr int64_t kMs = 1000000;
  constexpr int64_t kDefaultWindowMs = int64_t{15} * 60 * 1000;
  constexpr int64_t kMaxWindowMs = int64_t{30} * 24 * 3600 * 1000;
  ContextQuery &q = out.query;
  int64_t window_ms = kDefaultWindowMs;
  if (p.count("window")) {
    if (!p.count("around")) {
      error = bad("window",
                  "needs around (the window is around +- window/2); for a window "
                  "ending at a time give start_time and end_time");
      return false;
    }
    if (!parse_duration(p["window"], window_ms) || window_ms < 1000 || window_ms > kMaxWindowMs) {
      error = bad("window", "must be a duration between 1s and 30d (e.g. 15m, 1h)");
      return false;
    }
  }
  if (p.count("around")) {
    for (const char *other : {"start_time", "end_time"})
      if (p.count(other)) {
        error = bad("around", std::string("cannot be combined with ") + other +
                                  " (give around and window, or start_time and end_time)");
        return false;
      }
    int64_t around = 0;
    if (!parse_time(p["around"], around)) {
      error = bad("around",
                  "must be an RFC 3339 time (2025-11-28T00:00:00Z) or epoch seconds, "
                  "from 1970 to 2200");
      return false;
    }
    const int64_t half = window_ms * kMs / 2;
    // Saturating: parse_time's range leaves room, but a window never wraps around.
    q.start_ns = around < INT64_MIN + half ? INT64_MIN : around - half;
    q.end_ns = around > INT64_MAX - half ? INT64_MAX : around + half;
  } else {
    std::optional<int64_t> start, end;
    if (!parse_time_range(p, start, end, error)) return false;
    q.end_ns = end.value_or(now_ns);
    const int64_t back = kDefaultWindowMs * kMs;
    q.start_ns = start ? *start : q.end_ns < INT64_MIN + back ? INT64_MIN : q.end_ns - back;
    if (q.end_ns < q.start_ns) {
      error = bad("start_time", "is after now (give end_time too)");
      return false;
    }
  }
  if (p.count("service")) q.service = p["service"];
  if (p.count("host")) q.host = p["host"];
  struct Bound {
    const char *name;
    int64_t lo, hi;
  };
  for (const Bound &b : {Bound{"max_bytes", 1024, 1048576}, Bound{"max_patterns", 1, 100},
                         Bound{"samples", 0, 10}}) {
    if (!p.count(b.name)) continue;
    int64_t v = 0;
    if (!parse_int(p[b.name], v) || v < b.lo || v > b.hi) {
      error = bad(b.name, "must be an integer between " + std::to_string(b.lo) + " and " +
                              std::to_string(b.hi));
      return false;
    }
    const std::string_view n = b.name;
    if (n == "max_bytes") q.max_bytes = static_cast<size_t>(v);
    if (n == "max_patterns") q.max_patterns = static_cast<uint32_t>(v);
    if (n == "samples") q.samples = static_cast<uint32_t>(v);
  }
  if (p.count("format")) {
    const std::string f = lower(p["format"]);
    if (f != "json" && f != "text") {
      error = bad("format", "must be json or text");
      return false;
    }
    out.text = f == "text";
  }
  return true;
}

bool parse_tail_request(const std::vector<std::pair<std::string, std::string>> &params,
                        TailFilter &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, spec("/tail"), p, error)) return false;
  if (p.count("service")) out.service = p["service"];
  if (p.count("host")) out.host = p["host"];
  int min_level = 0;
  if (!parse_level_param(p, "level", out.level, error) ||
      !parse_level_param(p, "min_level", min_level, error))
    return false;
  out.min_rank = min_level ? dm_level_rank(min_level) : 0;
  if (!parse_q(p, out.q_terms, error)) return false;
  if (p.count("last_event_id")) {
    EventId id;
    if (!parse_event_id(p["last_event_id"], id)) {
      error = bad("last_event_id", "is not an event id this server sent (<stream>-<seq>)");
      return false;
    }
    out.resume_after = id;
  }
  return true;  // token= is the caller's (checked before the parameters are)
}

bool message_matches(std::string_view message, const std::vector<std::string> &terms) {
  if (terms.empty()) return true;
  auto word = [](char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return std::isalnum(c) || c >= 0x80;
  };
  // The message's words, in order, as views; then the terms as a run of consecutive words.
  std::vector<std::string_view> words;
  for (size_t i = 0; i < message.size();) {
    if (!word(message[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < message.size() && word(message[j])) ++j;
    words.push_back(message.substr(i, j - i));
    i = j;
  }
  for (size_t start = 0; start + terms.size() <= words.size(); ++start) {
    size_t k = 0;
    while (k < terms.size() && iequals(words[start + k], terms[k])) ++k;
    if (k == terms.size()) return true;
  }
  return false;
}

std::string format_event_id(const EventId &id) {
  return std::to_string(id.stream) + "-" + std::to_string(id.seq);
}

bool parse_event_id(std::string_view text, EventId &id) {
  const size_t dash = text.find('-');
  return dash != std::string_view::npos && dash > 0 && parse_int(text.substr(0, dash), id.stream) &&
         parse_int(text.substr(dash + 1), id.seq);
}

std::span<const EndpointSpec> endpoints() {
  return kEndpoints;
}

const EndpointSpec *endpoint(std::string_view path) {
  for (const EndpointSpec &e : kEndpoints)
    if (path == e.path) return &e;
  return nullptr;
}

const std::string &api_summary() {
  static const std::string text = [] {
    std::string s = "endpoints (every one documented in docs/query-api.md):";
    for (const EndpointSpec &e : kEndpoints) {
      s += "\n    " + std::string(e.method) + " " + e.path + "  " + e.summary;
      if (e.params.empty()) s += "\n        (no parameters)";
      for (const ParamSpec &p : e.params)
        s += "\n        " + std::string(p.name) + ": " + p.summary;
    }
    return s;
  }();
  return text;
}

std::string unknown_parameter(const EndpointSpec &e, std::string_view name) {
  std::string s = "unknown parameter '" + printable(name) + "' (";
  if (e.params.empty()) return s + std::string(e.path) + " takes no parameters)";
  s += "valid for " + std::string(e.path) + ":";
  for (size_t i = 0; i < e.params.size(); ++i)
    s += (i ? ", " : " ") + std::string(e.params[i].name);
  return s + ")";
}

bool no_unknown_parameters(const EndpointSpec &e,
                           const std::vector<std::pair<std::string, std::string>> &params,
                           std::string &error) {
  std::map<std::string, std::string> p;
  return collect(params, e, p, error);
}

std::string encode_cursor(const RowKey &key, bool descending) {
  return std::string(descending ? "d." : "a.") + std::to_string(key.timestamp_ns) + "." +
         std::to_string(key.id);
}

bool decode_cursor(std::string_view text, bool descending, RowKey &key, std::string &error) {
  const size_t dot1 = text.find('.'), dot2 = text.find('.', dot1 + 1);
  if (text.size() < 5 || dot1 != 1 || (text[0] != 'a' && text[0] != 'd') ||
      dot2 == std::string_view::npos || !parse_int(text.substr(2, dot2 - 2), key.timestamp_ns) ||
      !parse_int(text.substr(dot2 + 1), key.id) || key.id < 0) {
    error = bad("cursor", "is not a cursor this server gave out");
    return false;
  }
  if ((text[0] == 'd') != descending) {
    error = bad("cursor", std::string("was made for order=") + (descending ? "asc" : "desc"));
    return false;
  }
  return true;
}

std::string with_cursor(std::string_view raw_query, const std::string &cursor) {
  std::string out;
  while (!raw_query.empty()) {
    const size_t amp = raw_query.find('&');
    std::string_view pair = raw_query.substr(0, amp);
    raw_query = amp == std::string_view::npos ? std::string_view() : raw_query.substr(amp + 1);
    if (pair.empty() || pair.substr(0, 7) == "cursor=" || pair == "cursor") continue;
    out.append(pair).append("&");
  }
  return out + "cursor=" + cursor;
}

}  // namespace devmesh::query
