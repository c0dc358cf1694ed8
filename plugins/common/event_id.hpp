// The event_id of a record its sender gave none, derived from the record itself: the http,
// forward and otlp inputs all call this, so the same event gets the same id whichever way it
// came in (and a re-sent one is kept once by the stores). Header-only.
#pragma once

#include <devmesh/plugin.h>
#include <devmesh/record_fields.hpp>
// Header-only: the per-meta-entry hashes are inlined (a host call each cost 10% of
// http -> null).
#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace devmesh {

namespace event_id_detail {
// Little-endian, whatever the host: the id must not depend on the machine that computed it.
inline char *put_u64(char *p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
  return p + 8;
}
inline char *put_str(char *p, dm_str s) {
  const uint32_t n = static_cast<uint32_t>(s.len);  // bodies are far below 4 GiB
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(n >> (8 * i));
  if (s.len) std::memcpy(p + 4, s.ptr, s.len);
  return p + 4 + s.len;
}
}  // namespace event_id_detail

// Sets r.event_id from every field the stores keep, as they keep it (level after parsing,
// defaults filled in): two records that would be stored differently never share an id, and the
// same record sent twice gets the same id. Each field is length-prefixed, so no two different
// records encode alike. Meta is unordered (a Rust HashMap or a Go map re-serialized after a
// restart comes in another order): each entry is hashed on its own, its value seeded by its
// key's hash, and the hashes are summed, so {"a":1,"b":2} and {"b":2,"a":1} share the id, for
// two inlined short hashes per entry and no sort. hash128 is the host's (XXH3-128); scratch
// holds the hashed bytes of a record too long for the stack.
inline void derive_event_id(void (*hash128)(const void *, size_t, uint8_t[16]), dm_record &r,
                            std::string &scratch) {
  using event_id_detail::put_str;
  using event_id_detail::put_u64;
  uint64_t meta_sum = 0;
  for (uint32_t i = 0; i < r.meta_count; ++i) {
    const dm_kv &kv = r.meta[i];
    // The type in the seed: "123" and 123 are different records. A string adds nothing, so
    // the ids of records with string meta are those an older release gave them.
    meta_sum += XXH3_64bits_withSeed(
        kv.value.ptr, kv.value.len,
        XXH3_64bits(kv.key.ptr, kv.key.len) + kv.key.len + kv.type * 0x9E3779B97F4A7C15ull);
  }
  size_t size = 8 + 2 + 8 + 8;
  for (const RecordField &f : kRecordFields) size += 4 + (r.*f.member).len;
  // On the stack for the usual record; a long message goes through the scratch buffer.
  char stack[1024];
  char *const key = size <= sizeof stack ? stack : (scratch.resize(size), scratch.data());
  char *p = put_u64(key, static_cast<uint64_t>(r.timestamp_ns));
  *p++ = static_cast<char>(r.level);
  *p++ = static_cast<char>(r.priority);
  for (const RecordField &f : kRecordFields) p = put_str(p, r.*f.member);
  p = put_u64(p, r.meta_count);
  p = put_u64(p, meta_sum);
  hash128(key, static_cast<size_t>(p - key), r.event_id);
}

}  // namespace devmesh
