// Typed meta values in JSON (header-only, for every plugin that writes meta_json): a value of
// any type but DM_META_STRING is JSON text that meta_set validated, written as it is, so
// {"pid":123,"ok":true,"nested":{"a":1}} comes out as it came in. Kept apart from
// record_json.hpp so that a store writing its own JSON does not take that encoder (and its
// RAPIDJSON_SSE2 switch) along.
#pragma once

#include <devmesh/plugin.h>
#include <rapidjson/rapidjson.h>

namespace devmesh {

// The rapidjson kind of a typed value's text (RawValue wants one; only containers matter to it).
inline rapidjson::Type meta_json_kind(uint32_t type) {
  switch (type) {
    case DM_META_BOOL:
      return rapidjson::kTrueType;
    case DM_META_NULL:
      return rapidjson::kNullType;
    case DM_META_JSON:
      return rapidjson::kObjectType;
    case DM_META_STRING:
      return rapidjson::kStringType;
    default:
      return rapidjson::kNumberType;
  }
}

// Writes a typed value's text as it is and returns true; false for a STRING, which the caller
// writes as a string, cleaned and escaped its own way.
template <class JsonWriter>
bool write_typed_meta(JsonWriter &w, const dm_kv &kv) {
  if (kv.type == DM_META_STRING) return false;
  w.RawValue(kv.value.ptr ? kv.value.ptr : "", kv.value.len, meta_json_kind(kv.type));
  return true;
}

}  // namespace devmesh
