// JSON encoding of records with the prototype's field names (header-only, compiled into each
// plugin): one object per record, invalid UTF-8 replaced by U+FFFD, event_id as 32 hex digits.
// Shared by stdout (NDJSON lines) and the http forward output ({"logs":[...]} or NDJSON), so a
// record written by one devmesh reads back field for field in another.
//
// Written by hand rather than with rapidjson's Writer, which was 40% of a gzip-forwarding
// sidecar's CPU: strings are scanned 16 bytes at a time and their clean runs stored whole, keys
// are preformatted, and the text goes into one buffer that keeps its size between batches. The
// bytes are those rapidjson's portable Writer writes (the fuzz target tests/fuzz ingest_parser
// compares them with it): the same escapes (\" \\ \b \f \n \r \t, other control bytes as
// \u00XX), '/' and DEL as they are, typed meta values as their JSON text.
#pragma once

// rapidjson's SSE2 scanning for the plugins that include rapidjson headers after this one (as
// before this encoder stopped using rapidjson): defined before any of them is included.
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2
#endif
#include <devmesh/plugin.hpp>
#include <devmesh/record_fields.hpp>
#include <meta_json.hpp>
#include <utf8.hpp>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <string_view>

namespace devmesh {

// The encoder's output: a growing byte buffer with the part of rapidjson's StringBuffer
// interface its users call (Clear, Put, GetString, GetSize, ShrinkToFit).
class JsonBuffer {
 public:
  JsonBuffer() = default;
  ~JsonBuffer() { std::free(data_); }
  JsonBuffer(const JsonBuffer &) = delete;
  JsonBuffer &operator=(const JsonBuffer &) = delete;

  void Clear() { size_ = 0; }
  void Put(char c) { *room(1) = c, ++size_; }
  // NUL-terminated, as rapidjson's; the NUL is not counted in GetSize().
  const char *GetString() const {
    if (!data_) return "";
    data_[size_] = '\0';
    return data_;
  }
  size_t GetSize() const { return size_; }
  void ShrinkToFit() {
    if (size_ == 0) {
      std::free(data_);
      data_ = nullptr;
      cap_ = 0;
    }
  }
  void append(const char *s, size_t n) {
    if (n) std::memcpy(room(n), s, n);
    size_ += n;
  }
  void append(std::string_view s) { append(s.data(), s.size()); }

  // At least n writable bytes at the end (plus one for GetString's NUL); the pointer is valid
  // until the buffer grows again. Written bytes are kept by commit().
  char *room(size_t n) {
    if (cap_ - size_ < n + 1) grow(n + 1);
    return data_ + size_;
  }
  void commit(char *end) { size_ = static_cast<size_t>(end - data_); }
  char *end() { return data_ + size_; }

 private:
  void grow(size_t n) {
    size_t cap = std::max<size_t>(cap_ * 2, 4096);
    while (cap - size_ < n) cap *= 2;
    char *p = static_cast<char *>(std::realloc(data_, cap));
    if (!p) throw std::bad_alloc();
    data_ = p;
    cap_ = cap;
  }

  char *data_ = nullptr;
  size_t size_ = 0, cap_ = 0;
};

// Writes records into `out`; keeps its scratch space between records and batches, so encoding
// allocates only while the buffer grows. One encoder per thread.
class RecordEncoder {
 public:
  // Without full_precision timestamps have microseconds, as the prototype wrote them. With it,
  // nanoseconds are kept when a timestamp has any (else still microseconds), and a known
  // syslog priority is written as "priority": both read back by the http input.
  explicit RecordEncoder(bool full_precision = false) : full_(full_precision) {
    for (size_t f = 0; f < kRecordFieldCount; ++f)
      keys_[f] = ",\"" + std::string(kRecordFields[f].name) + "\":";
  }
  RecordEncoder(const RecordEncoder &) = delete;
  RecordEncoder &operator=(const RecordEncoder &) = delete;

  JsonBuffer out;

  // Appends one record as a JSON object (no separator or newline).
  void record(const dm_record &r) {
    static const char hex[] = "0123456789abcdef";
    out.append("{\"timestamp\":");
    timestamp(r.timestamp_ns);
    for (size_t f = 0; f < kRecordFieldCount; ++f) {
      if (f == kLevelBefore) {
        out.append(",\"level\":");
        const char *name = dm_level_name(r.level);
        string(name ? std::string_view(name) : std::string_view(), false);
      }
      const RecordField &field = kRecordFields[f];
      const dm_str v = r.*field.member;
      if (field.optional && !v.len) continue;  // empty optional fields are left out
      out.append(keys_[f]);
      string(sv(v), true);
    }
    out.append(",\"meta_json\":{");
    for (uint32_t i = 0; i < r.meta_count; ++i) {
      const dm_kv &kv = r.meta[i];
      if (i) out.Put(',');
      string(sv(kv.key), true);
      out.Put(':');
      if (kv.type == DM_META_STRING)
        string(sv(kv.value), true);
      else
        out.append(kv.value.ptr ? kv.value.ptr : "", kv.value.len);  // JSON text meta_set checked
    }
    out.Put('}');
    if (full_ && r.priority >= 0) {
      out.append(",\"priority\":");
      if (r.priority >= 100) out.Put(static_cast<char>('0' + r.priority / 100));
      if (r.priority >= 10) out.Put(static_cast<char>('0' + r.priority / 10 % 10));
      out.Put(static_cast<char>('0' + r.priority % 10));
    }
    char *p = out.room(sizeof ",\"event_id\":\"\"}" - 1 + 32);
    static constexpr std::string_view kId = ",\"event_id\":\"";
    std::memcpy(p, kId.data(), kId.size());
    p += kId.size();
    for (int i = 0; i < 16; ++i) {
      *p++ = hex[r.event_id[i] >> 4];
      *p++ = hex[r.event_id[i] & 15];
    }
    *p++ = '"';
    *p++ = '}';
    out.commit(p);
  }

 private:
  // Bit i set when p[i] is not written as it is: '"', '\\', below 0x20, or (clean) non-ASCII.
  static unsigned stop_mask(const char *p, bool clean) {
#if defined(__SSE2__)
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    const __m128i stop = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v));  // v <= 0x1F
    unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(stop));
    if (clean) mask |= static_cast<unsigned>(_mm_movemask_epi8(v));
    return mask;
#else
    unsigned mask = 0;
    for (unsigned i = 0; i < 16; ++i) {
      const unsigned char c = static_cast<unsigned char>(p[i]);
      if (c == '"' || c == '\\' || c < 0x20 || (clean && c >= 0x80)) mask |= 1u << i;
    }
    return mask;
#endif
  }

  // s as a JSON string. With clean, each byte that starts no valid UTF-8 sequence becomes
  // U+FFFD (as valid_utf8 makes it). Clean 16-byte runs are stored whole; the buffer keeps
  // room for the rest of s as it is plus one escape, and grows at each byte that needs one.
  void string(std::string_view s, bool clean) {
    static const char kHex[] = "0123456789ABCDEF";
    const char *const src = s.data();
    const size_t n = s.size();
    const size_t kSlack = 16;  // a whole block is stored even where fewer bytes are left
    char *w = out.room(n + 2 + kSlack);
    char *limit = w + n + 2 + kSlack;  // room ends here
    *w++ = '"';
    size_t i = 0;
    for (;;) {
      // The next byte that is not copied as it is: '"', '\\', a control byte, or (cleaning)
      // a non-ASCII byte.
      unsigned mask = 0;
      while (i < n) {
        unsigned valid = 0xFFFF;
        alignas(16) char block[16];
        const char *b = src + i;
        if (n - i < 16) {
          std::memset(block, 'a', sizeof block);
          std::memcpy(block, src + i, n - i);
          b = block;
          valid = (1u << (n - i)) - 1;
        }
        mask = stop_mask(b, clean) & valid;
        std::memcpy(w, b, 16);  // the clean part is kept, the rest is written over
        if (mask) {
          const unsigned k = static_cast<unsigned>(__builtin_ctz(mask));
          w += k;
          i += k;
          break;
        }
        const size_t k = std::min<size_t>(16, n - i);
        w += k;
        i += k;
      }
      if (!mask) break;
      // Room for the rest as it is, the closing quote, and this byte's longest form (6).
      const size_t need = (n - i) + 1 + kSlack + 6;
      if (static_cast<size_t>(limit - w) < need) {
        out.commit(w);
        w = out.room(need);
        limit = w + need;
      }
      const unsigned char c = static_cast<unsigned char>(src[i]);
      if (c >= 0x80) {
        utf8_detail::ViewStream is{s, i};
        utf8_detail::NullStream os;
        if (rapidjson::UTF8<>::Validate(is, os)) {
          const size_t len = is.Tell() - i;  // 2 to 4 bytes, as they are
          std::memcpy(w, src + i, len);
          w += len;
          i += len;
        } else {
          std::memcpy(w, "\xEF\xBF\xBD", 3);
          w += 3;
          ++i;
        }
        continue;
      }
      *w++ = '\\';
      switch (c) {
        case '"':
        case '\\':
          *w++ = static_cast<char>(c);
          break;
        case '\b':
          *w++ = 'b';
          break;
        case '\f':
          *w++ = 'f';
          break;
        case '\n':
          *w++ = 'n';
          break;
        case '\r':
          *w++ = 'r';
          break;
        case '\t':
          *w++ = 't';
          break;
        default:
          std::memcpy(w, "u00", 3);
          w[3] = kHex[c >> 4];
          w[4] = kHex[c & 15];
          w += 5;
          break;
      }
      ++i;
    }
    *w++ = '"';
    out.commit(w);
  }

  // RFC 3339 UTC: "2025-11-28T19:55:40.521872Z" (or .521872123Z with full precision), quoted.
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
    char *p = out.room(sec_len_ + 13);
    *p++ = '"';
    std::memcpy(p, sec_text_, sec_len_);
    p += sec_len_;
    *p++ = '.';
    const int digits = full_ && sub % 1000 != 0 ? 9 : 6;
    int64_t frac = digits == 9 ? sub : sub / 1000;
    for (int i = digits - 1; i >= 0; --i, frac /= 10) p[i] = static_cast<char>('0' + frac % 10);
    p += digits;
    *p++ = 'Z';
    *p++ = '"';
    out.commit(p);
  }

  bool full_;
  std::string keys_[kRecordFieldCount];  // ,"name": of each record field
  int64_t cached_sec_ = std::numeric_limits<int64_t>::min();
  char sec_text_[64];
  size_t sec_len_ = 0;
};

}  // namespace devmesh
