// Where a named field of a structured log lands in a devmesh record, and how a level written as
// text or as a syslog priority reads as a dm_level. Shared by every plugin that turns structured
// input into records (the parser filter, the syslog, otlp and forward inputs) so that "lvl",
// "severity" or a syslog PRI mean the same thing wherever they come from.
#pragma once

#include <devmesh/plugin.h>

#include <cstdint>
#include <string_view>

#include "ascii.hpp"

namespace devmesh {

enum class Column : uint8_t {
  none,  // not a column: the field goes into meta
  timestamp,
  level,
  trace_id,
  span_id,
  event_type,
  error_code,
  message,
  service,
  host
};

namespace detail {
using devmesh::iequals;  // the name the parser filter and the otlp input call it by
}  // namespace detail

// The column a field named `key` fills by default (case-insensitive), the names Fluent Bit,
// Vector, logfmt loggers, OpenTelemetry and ECS use; Column::none for anything else.
inline Column column_for_key(std::string_view key) {
  struct Alias {
    std::string_view name;
    Column column;
  };
  static constexpr Alias kAliases[] = {
      {"time", Column::timestamp},
      {"ts", Column::timestamp},
      {"timestamp", Column::timestamp},
      {"@timestamp", Column::timestamp},
      {"level", Column::level},
      {"lvl", Column::level},
      {"severity", Column::level},
      {"loglevel", Column::level},
      {"log.level", Column::level},
      {"trace_id", Column::trace_id},
      {"traceid", Column::trace_id},
      {"trace.id", Column::trace_id},
      {"span_id", Column::span_id},
      {"spanid", Column::span_id},
      {"span.id", Column::span_id},
      {"event_type", Column::event_type},
      {"event.type", Column::event_type},
      {"error_code", Column::error_code},
      {"error.code", Column::error_code},
      {"message", Column::message},
      {"msg", Column::message},
      {"log", Column::message},
      {"service", Column::service},
      {"service.name", Column::service},
      {"host", Column::host},
      {"hostname", Column::host},
      {"host.name", Column::host},
  };
  for (const Alias &a : kAliases)
    if (iequals(a.name, key)) return a.column;
  return Column::none;
}

// A syslog priority's severity (0 emerg .. 7 debug) as a level, the mapping priority_map uses by
// default. DM_LEVEL_UNSET outside 0..7.
inline uint8_t level_from_priority(int priority) {
  static constexpr uint8_t kMap[8] = {DM_LEVEL_FATAL, DM_LEVEL_CRITICAL, DM_LEVEL_CRITICAL,
                                      DM_LEVEL_ERROR, DM_LEVEL_WARN,     DM_LEVEL_INFO,
                                      DM_LEVEL_INFO,  DM_LEVEL_DEBUG};
  return priority >= 0 && priority <= 7 ? kMap[priority] : static_cast<uint8_t>(DM_LEVEL_UNSET);
}

// A level written as text (case-insensitive): the prototype's names plus the usual spellings
// (trace, dbg, information, notice, warn, err, crit, alert, emerg, panic, fatal) and syslog's
// numeric priorities "0".."7". DM_LEVEL_UNSET when it is none of these.
inline uint8_t level_from_text(std::string_view text) {
  struct Alias {
    std::string_view name;
    uint8_t level;
  };
  static constexpr Alias kAliases[] = {
      {"trace", DM_LEVEL_DEBUG},   {"debug", DM_LEVEL_DEBUG},      {"dbg", DM_LEVEL_DEBUG},
      {"info", DM_LEVEL_INFO},     {"information", DM_LEVEL_INFO}, {"informational", DM_LEVEL_INFO},
      {"notice", DM_LEVEL_INFO},   {"warn", DM_LEVEL_WARN},        {"warning", DM_LEVEL_WARNING},
      {"error", DM_LEVEL_ERROR},   {"err", DM_LEVEL_ERROR},        {"critical", DM_LEVEL_CRITICAL},
      {"crit", DM_LEVEL_CRITICAL}, {"alert", DM_LEVEL_CRITICAL},   {"fatal", DM_LEVEL_FATAL},
      {"emerg", DM_LEVEL_FATAL},   {"emergency", DM_LEVEL_FATAL},  {"panic", DM_LEVEL_FATAL},
  };
  for (const Alias &a : kAliases)
    if (iequals(a.name, text)) return a.level;
  if (text.size() == 1 && text[0] >= '0' && text[0] <= '7')
    return level_from_priority(text[0] - '0');
  return DM_LEVEL_UNSET;
}

}  // namespace devmesh
