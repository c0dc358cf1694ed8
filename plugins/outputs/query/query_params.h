// Request parameters of the query endpoints, store-independent: decoding the query string,
// validating every parameter into a LogQuery / StatsQuery / TailFilter (or one 400 message
// naming the parameter), and the keyset pagination cursor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "query_store.h"

namespace devmesh::query {

inline constexpr uint32_t kMaxLimit = 10000;
inline constexpr uint32_t kDefaultLimit = 100;

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

bool parse_stats_request(const std::vector<std::pair<std::string, std::string>> &params,
                         int64_t now_ns, const DurationParser &parse_duration, StatsQuery &out,
                         std::string &error);

// GET /tail: which records a subscriber receives.
struct TailFilter {
  std::string service, host;  // empty: any
  int level = 0;              // exact dm_level, 0: any
  int min_rank = 0;           // dm_level_rank at or above, 0: any
};
bool parse_tail_request(const std::vector<std::pair<std::string, std::string>> &params,
                        TailFilter &out, std::string &error);

// The cursor: "d.<timestamp_ns>.<id>" (desc) or "a.<timestamp_ns>.<id>" (asc). Opaque to
// clients; readable for whoever debugs it.
std::string encode_cursor(const RowKey &key, bool descending);
bool decode_cursor(std::string_view text, bool descending, RowKey &key, std::string &error);

// The raw query string with any cursor= removed and cursor=<next> appended (for Link).
std::string with_cursor(std::string_view raw_query, const std::string &cursor);

// dm_level for an (upper- or lower-case) level name; 0 when unknown.
int level_from_name(std::string_view name);

}  // namespace devmesh::query
