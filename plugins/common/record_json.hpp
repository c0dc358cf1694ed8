// JSON encoding of records with the prototype's field names (header-only, compiled into each
// plugin): one object per record, invalid UTF-8 replaced by U+FFFD, event_id as 32 hex digits.
// Shared by stdout (NDJSON lines) and the http forward output ({"logs":[...]} or NDJSON), so a
// record written by one devmesh reads back field for field in another.
#pragma once

// rapidjson copies runs of characters that need no escaping 16 bytes at a time with SSE2 (every
// x86-64 has it). Defined before any rapidjson header of the plugin is included.
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2
#endif
#include <rapidjson/encodings.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/plugin.hpp>
#include <devmesh/record_fields.hpp>
#include <meta_json.hpp>
#include <utf8.hpp>

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

namespace devmesh {

// Writes records into `out`; keeps its scratch space between records and batches, so encoding
// allocates only while the buffer grows. One encoder per thread.
class RecordEncoder {
 public:
  // Without full_precision timestamps have microseconds, as the prototype wrote them. With it,
  // nanoseconds are kept when a timestamp has any (else still microseconds), and a known
  // syslog priority is written as "priority": both read back by the http input.
  explicit RecordEncoder(bool full_precision = false) : full_(full_precision) {}
  RecordEncoder(const RecordEncoder &) = delete;
  RecordEncoder &operator=(const RecordEncoder &) = delete;

  rapidjson::StringBuffer out;

  // Appends one record as a JSON object (no separator or newline).
  void record(const dm_record &r) {
    static const char hex[] = "0123456789abcdef";
    writer_.Reset(out);
    writer_.StartObject();
    key("timestamp");
    timestamp(r.timestamp_ns);
    for (size_t f = 0; f < kRecordFieldCount; ++f) {
      if (f == kLevelBefore) {
        key("level");
        writer_.String(dm_level_name(r.level));
      }
      const RecordField &field = kRecordFields[f];
      const dm_str v = r.*field.member;
      if (field.optional && !v.len) continue;  // empty optional fields are left out
      key(field.name);
      string(sv(v));
    }
    key("meta_json");
    writer_.StartObject();
    for (uint32_t i = 0; i < r.meta_count; ++i) {
      key(valid_utf8(sv(r.meta[i].key), clean_));
      if (!write_typed_meta(writer_, r.meta[i])) string(sv(r.meta[i].value));
    }
    writer_.EndObject();
    if (full_ && r.priority >= 0) {
      key("priority");
      writer_.Int(r.priority);
    }
    char id[32];
    for (int i = 0; i < 16; ++i) {
      id[2 * i] = hex[r.event_id[i] >> 4];
      id[2 * i + 1] = hex[r.event_id[i] & 15];
    }
    key("event_id");
    writer_.String(id, sizeof id);
    writer_.EndObject();
  }

 private:
  using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

  // rapidjson 1.1.0's SSE2 copy tests bytes against 0x19, not 0x1F: 0x1A..0x1F would go out
  // unescaped, which is not JSON (found by tests/fuzz). A string holding one is escaped by the
  // portable writer (another flag, so not the SSE2 specialisation) and added as raw JSON.
  using PortableWriter =
      rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                        rapidjson::CrtAllocator, rapidjson::kWriteNanAndInfFlag>;
  static bool sse2_misses(std::string_view s) {
    bool hit = false;
    for (unsigned char c : s) hit |= static_cast<unsigned char>(c - 0x1A) < 6;
    return hit;
  }
  void put(std::string_view s) {
    const auto n = static_cast<rapidjson::SizeType>(
        std::min<size_t>(s.size(), std::numeric_limits<uint32_t>::max()));
    if (!sse2_misses(s)) {
      writer_.String(s.data(), n);
      return;
    }
    escaped_.Clear();
    PortableWriter w(escaped_);
    w.String(s.data(), n);
    writer_.RawValue(escaped_.GetString(), escaped_.GetSize(), rapidjson::kStringType);
  }
  void string(std::string_view s) { put(valid_utf8(s, clean_)); }
  void key(std::string_view k) { put(k); }

  // RFC 3339 UTC: 2025-11-28T19:55:40.521872Z (or .521872123Z with full precision).
  void timestamp(int64_t ns) {
    int64_t sec = ns / 1000000000, sub = ns % 1000000000;
    if (sub < 0) sub += 1000000000, --sec;
    // Records of a batch mostly share their second: its formatted text is kept.
    if (sec != cached_sec_) {
      const time_t t = static_cast<time_t>(sec);
      struct tm tm;
      if (gmtime_r(&t, &tm)) {
        const int n = std::snprintf(sec_text_, sizeof sec_text_, "%04d-%02d-%02dT%02d:%02d:%02d",
                                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                    tm.tm_min, tm.tm_sec);
        sec_len_ = n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof sec_text_ - 1) : 0;
      } else {
        sec_len_ = 0;
      }
      cached_sec_ = sec;
    }
    char text[sizeof sec_text_ + 12];
    std::memcpy(text, sec_text_, sec_len_);
    char *p = text + sec_len_;
    *p++ = '.';
    const int digits = full_ && sub % 1000 != 0 ? 9 : 6;
    int64_t frac = digits == 9 ? sub : sub / 1000;
    for (int i = digits - 1; i >= 0; --i, frac /= 10) p[i] = static_cast<char>('0' + frac % 10);
    p += digits;
    *p++ = 'Z';
    writer_.String(text, static_cast<rapidjson::SizeType>(p - text));
  }

  bool full_;
  JsonWriter writer_{out};
  std::string clean_;
  rapidjson::StringBuffer escaped_;  // see put()
  int64_t cached_sec_ = std::numeric_limits<int64_t>::min();
  char sec_text_[64];
  size_t sec_len_ = 0;
};

}  // namespace devmesh
