// Request parameters of the query endpoints, store-independent: decoding the query string,
// validating every parameter into a LogQuery / StatsQuery / TailFilter (or one 400 message
// naming the parameter), and the keyset pagination cursor.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "query_context.h"
#include "query_store.h"

namespace devmesh::query {

inline constexpr uint32_t kMaxLimit = 10000;
inline constexpr uint32_t kDefaultLimit = 100;

// What an endpoint accepts. The parsers take the parameter names from these tables, and so do
// the unknown-parameter error, `devmesh --describe query` (api_summary) and the test that checks
// docs/query-api.md mentions every one: the documentation cannot drift from the parser.
struct ParamSpec {
  const char *name;
  const char *summary;  // type, bounds and default, for the description
};
struct EndpointSpec {
  const char *path;  // GET; "{id}" stands for a path segment (/query/patterns/{id})
  const char *summary;
  std::span<const ParamSpec> params;  // for POST: the JSON body's fields
  const char *method = "GET";
};
std::span<const EndpointSpec> endpoints();
// The endpoint served at `path`; nullptr for none.
const EndpointSpec *endpoint(std::string_view path);
// Every endpoint and its parameters, one per line, for the plugin's description.
const std::string &api_summary();
// "unknown parameter 'x' (valid for /query/logs: service, host, ...)".
std::string unknown_parameter(const EndpointSpec &e, std::string_view name);
// Refuses any parameter `e` does not list (400 text in `error`); for /health and /info.
bool no_unknown_parameters(const EndpointSpec &e,
                           const std::vector<std::pair<std::string, std::string>> &params,
                           std::string &error);

// name=value pairs of a raw query string, percent- and '+'-decoded. False with `error` (a
// complete client message) on malformed encoding, a NUL byte or an over-long value.
bool decode_query_string(std::string_view raw,
                         std::vector<std::pair<std::string, std::string>> &out, std::string &error);

// Duration text ("1h", "90d") to milliseconds; the host's parser, injected so this file stays
// free of the host table.
using DurationParser = std::function<bool(std::string_view text, int64_t &ms)>;

struct LogRequest {
  LogQuery query;
  bool envelope = false;  // envelope=1: {"logs":[...],"next":...} instead of the bare array
};

// GET /query/logs. False with `error` ("bad parameter 'limit': ...", "unknown parameter 'x'").
bool parse_log_request(const std::vector<std::pair<std::string, std::string>> &params,
                       LogRequest &out, std::string &error);

// GET /query/histogram: /query/logs's filters, the window as /query/patterns's, and the number
// of buckets (the step rounded up to whole microseconds).
bool parse_histogram_request(const std::vector<std::pair<std::string, std::string>> &params,
                             int64_t now_ns, HistogramQuery &out, std::string &error);

// GET /query/patterns: the window (start_time/end_time as /query/logs takes them; without a
// start, the hour before the end; without an end, now) and the filters.
bool parse_patterns_request(const std::vector<std::pair<std::string, std::string>> &params,
                            int64_t now_ns, PatternsQuery &out, std::string &error);

// GET /query/patterns/{id}: `id_text` is the path's last segment (16 hex digits), the window
// as /query/patterns's.
struct PatternRequest {
  uint64_t id = 0;
  int64_t start_ns = 0, end_ns = 0;
};
bool parse_pattern_request(std::string_view id_text,
                           const std::vector<std::pair<std::string, std::string>> &params,
                           int64_t now_ns, PatternRequest &out, std::string &error);

bool parse_stats_request(const std::vector<std::pair<std::string, std::string>> &params,
                         int64_t now_ns, const DurationParser &parse_duration, StatsQuery &out,
                         std::string &error);

// GET /query/context: the window (start_time/end_time, or around= and window=: around +- window/2;
// default the last 15 minutes), filters and bounds, and the format.
struct ContextRequest {
  ContextQuery query;
  bool text = false;  // format=text
};
bool parse_context_request(const std::vector<std::pair<std::string, std::string>> &params,
                           int64_t now_ns, const DurationParser &parse_duration,
                           ContextRequest &out, std::string &error);

// A /tail event's id, "<stream>-<seq>": seq counts every record that passed through this
// query output since it started (1, 2, ...), stream tells one start (one run, one reload) from
// another, so an id from before a restart is never taken for a position in this one.
struct EventId {
  uint64_t stream = 0, seq = 0;
};
std::string format_event_id(const EventId &id);
bool parse_event_id(std::string_view text, EventId &id);

// GET /tail: which records a subscriber receives, and where it resumes.
struct TailFilter {
  std::string service, host;            // empty: any
  int level = 0;                        // exact dm_level, 0: any
  int min_rank = 0;                     // dm_level_rank at or above, 0: any
  std::vector<std::string> q_terms;     // q=: these words, together, in the message; empty: any
  std::optional<EventId> resume_after;  // last_event_id= (the Last-Event-ID header wins)
};
bool parse_tail_request(const std::vector<std::pair<std::string, std::string>> &params,
                        TailFilter &out, std::string &error);
// Whether `message` holds the words of `terms` (query_terms) one after the other, as whole
// words, ASCII letters compared case-insensitively: the stores' phrase match, in memory.
bool message_matches(std::string_view message, const std::vector<std::string> &terms);

// The cursor: "d.<timestamp_ns>.<id>" (desc) or "a.<timestamp_ns>.<id>" (asc). Opaque to
// clients; readable for whoever debugs it.
std::string encode_cursor(const RowKey &key, bool descending);
bool decode_cursor(std::string_view text, bool descending, RowKey &key, std::string &error);

// The raw query string with any cursor= removed and cursor=<next> appended (for Link).
std::string with_cursor(std::string_view raw_query, const std::string &cursor);

// dm_level for an (upper- or lower-case) level name; 0 when unknown.
int level_from_name(std::string_view name);

}  // namespace devmesh::query
