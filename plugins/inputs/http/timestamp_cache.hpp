// The http input's RFC 3339 parsing of record timestamps: parse_rfc3339 (plugins/common) with a
// cache of the last minute, for the parser (ingest_parser.cpp) and the fuzz target that checks
// it against parse_rfc3339 itself (tests/fuzz).
#pragma once

#include <timestamp.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace devmesh::http_ingest {

// RFC 3339 parsing with a cache of the last "YYYY-MM-DDTHH:MM" prefix: the records of one body
// mostly share their minute, and timegm() is the expensive part (two of them per record cost a
// fifth of http -> null while the cache held only a second). Within a minute the value is the
// minute's plus the seconds, exactly as parse_rfc3339 computes it; a leap second (:60) and
// anything else takes the full parse.
class TimestampParser {
 public:
  bool parse(std::string_view s, int64_t &ns) {
    if (s.size() >= 19 && cached_ && std::memcmp(s.data(), prefix_, kPrefix) == 0 && s[16] == ':' &&
        is_digit(s[17]) && is_digit(s[18])) {
      const int64_t ss = (s[17] - '0') * 10 + (s[18] - '0');
      int64_t frac_ns, offset_s, whole;
      if (ss < 60 && parse_suffix(s.substr(19), frac_ns, offset_s) &&
          !__builtin_mul_overflow(minute_s_ + ss - offset_s, 1000000000LL, &whole) &&
          !__builtin_add_overflow(whole, frac_ns, &whole)) {
        ns = whole;
        return true;
      }
    }
    if (!parse_rfc3339(s, ns)) return false;
    // Cache the minute's own value: its prefix parsed again alone (no fraction, no zone = UTC).
    if (s.size() >= 19) {
      char minute[kPrefix + 3];
      std::memcpy(minute, s.data(), kPrefix);
      std::memcpy(minute + kPrefix, ":00", 3);
      int64_t base;
      if (parse_rfc3339(std::string_view(minute, sizeof minute), base)) {
        std::memcpy(prefix_, s.data(), kPrefix);
        minute_s_ = base / 1000000000LL;
        cached_ = true;
      }
    }
    return true;
  }

 private:
  static bool is_digit(char c) { return c >= '0' && c <= '9'; }
  // The part after the seconds: [.digits] then nothing, Z or ±hh:mm (as parse_rfc3339 takes).
  static bool parse_suffix(std::string_view s, int64_t &frac, int64_t &offset_s) {
    size_t i = 0;
    frac = 0;
    if (i < s.size() && s[i] == '.') {
      size_t start = ++i;
      int64_t scale = 100000000;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (i - start < 9) {
          frac += (s[i] - '0') * scale;
          scale /= 10;
        }
        ++i;
      }
      if (i == start) return false;
    }
    offset_s = 0;
    if (i < s.size()) {
      if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == s.size()) {
      } else if ((s[i] == '+' || s[i] == '-') && i + 6 == s.size() && s[i + 3] == ':') {
        int d[4];
        for (int k = 0; k < 4; ++k) {
          char c = s[i + 1 + k + (k >= 2)];
          if (c < '0' || c > '9') return false;
          d[k] = c - '0';
        }
        int oh = d[0] * 10 + d[1], om = d[2] * 10 + d[3];
        if (oh > 23 || om > 59) return false;
        offset_s = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
      } else {
        return false;
      }
    }
    return true;
  }

  static constexpr size_t kPrefix = 16;  // "YYYY-MM-DDTHH:MM"
  char prefix_[kPrefix];
  int64_t minute_s_ = 0;
  bool cached_ = false;
};
}  // namespace devmesh::http_ingest
