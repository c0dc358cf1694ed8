// The record's string fields, declared once (C++ only, header-only): name, member and the
// prototype's column rules. The storage format, the JSON encoders, the stores' columns and the
// http input's parser all walk this table, so a field is added or renamed here and nowhere else.
// It lives beside plugin.h, not in plugins/common, because the engine (storage, dead-letter
// JSON) and the in-tree plugins both need it and the engine includes nothing from plugins/;
// plugins built against the SDK may use it too.
#pragma once

#include <devmesh/plugin.h>

#include <cstddef>
#include <iterator>
#include <string_view>

namespace devmesh {

struct RecordField {
  std::string_view name;  // the prototype's name: JSON key and column
  dm_str dm_record::*member;
  size_t max_chars;  // the prototype's column limit in characters (VARCHAR); 0: unlimited
  bool optional;     // a nullable column: NULL (SQL) or left out (JSON) when empty
};

// In dm_record's order, which is also their order in a storage block and in the http input's
// derived event id: a new field is appended (with a new block format), never inserted. The JSON
// encoders and the stores write `level` before the first optional field, as the prototype's schema
// has it.
inline constexpr RecordField kRecordFields[] = {
    {"source", &dm_record::source, 255, false},
    {"service", &dm_record::service, 255, false},
    {"host", &dm_record::host, 255, false},
    {"trace_id", &dm_record::trace_id, 64, true},
    {"span_id", &dm_record::span_id, 32, true},
    {"event_type", &dm_record::event_type, 100, true},
    {"error_code", &dm_record::error_code, 50, true},
    {"message", &dm_record::message, 0, false},
};
inline constexpr size_t kRecordFieldCount = std::size(kRecordFields);

// Every dm_str of dm_record is listed: they are contiguous, from source to message.
static_assert(offsetof(dm_record, message) - offsetof(dm_record, source) ==
                  (kRecordFieldCount - 1) * sizeof(dm_str),
              "a string field of dm_record is missing from kRecordFields");
static_assert(offsetof(dm_record, meta) == offsetof(dm_record, message) + sizeof(dm_str),
              "a string field of dm_record is missing from kRecordFields");

// Index of the first optional field: where `level` goes in the prototype's column order.
inline constexpr size_t kLevelBefore = [] {
  size_t i = 0;
  while (i < kRecordFieldCount && !kRecordFields[i].optional) ++i;
  return i;
}();

}  // namespace devmesh
