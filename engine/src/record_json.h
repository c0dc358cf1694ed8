// JSON rendering of records in the prototype's field names (dead-letter files, debugging).
#pragma once

#include <devmesh/plugin.h>

#include <string>

namespace devmesh {

// RFC 3339 UTC with microseconds, as the prototype wrote: 2025-11-28T19:55:40.521872Z
std::string format_timestamp(int64_t ns);
// Appends one JSON object (no newline) for the record.
void append_record_json(std::string &out, const dm_record &r);
// Appends one NDJSON line: {"output":..,"reason":..,"time":..,"record":{...}}
void append_dead_letter_json(std::string &out, const dm_record &r, const std::string &output,
                             const std::string &reason);

}  // namespace devmesh
