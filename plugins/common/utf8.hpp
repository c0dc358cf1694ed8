// UTF-8 hygiene shared by the plugins (header-only): invalid bytes replaced by U+FFFD, so every
// output writes valid text whatever an input held, and fields cut at a character boundary.
#pragma once

#include <rapidjson/encodings.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace devmesh {

namespace utf8_detail {

// Byte streams over a bounded view for rapidjson's UTF-8 validator; past the end it reads NUL,
// which no multi-byte sequence accepts, so a truncated sequence is invalid.
struct ViewStream {
  using Ch = char;
  std::string_view s;
  size_t pos;
  Ch Take() { return pos < s.size() ? s[pos++] : (++pos, '\0'); }
  size_t Tell() const { return pos; }
};
struct NullStream {
  using Ch = char;
  void Put(Ch) {}
};

}  // namespace utf8_detail

// Bytes before the first non-ASCII byte of s: the cheap check most text passes whole.
inline size_t ascii_prefix(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  return i;
}

// True when s from pos on is valid UTF-8.
inline bool utf8_valid_from(std::string_view s, size_t pos) {
  utf8_detail::ViewStream is{s, pos};
  utf8_detail::NullStream os;
  while (is.Tell() < s.size())
    if (!rapidjson::UTF8<>::Validate(is, os)) return false;
  return true;
}

// Hands s from pos on to append(const char *, size_t) piece by piece, each byte that starts no
// valid sequence as U+FFFD (3 bytes: at most 3 bytes out per byte in). Returns how many bytes
// were replaced.
template <class Append>
uint64_t append_replacing_invalid(std::string_view s, size_t pos, Append &&append) {
  uint64_t replaced = 0;
  utf8_detail::NullStream os;
  while (pos < s.size()) {
    utf8_detail::ViewStream is{s, pos};
    if (rapidjson::UTF8<>::Validate(is, os)) {
      append(s.data() + pos, is.Tell() - pos);
      pos = is.Tell();
    } else {
      append("\xEF\xBF\xBD", 3);
      ++pos;
      ++replaced;
    }
  }
  return replaced;
}

// Returns s when it is valid UTF-8; else a copy in `clean` where each byte that starts no valid
// sequence is replaced by U+FFFD, so every document is valid JSON whatever the input held.
inline std::string_view valid_utf8(std::string_view s, std::string &clean) {
  const size_t i = ascii_prefix(s);
  if (i == s.size() || utf8_valid_from(s, i)) return s;
  clean.assign(s.data(), i);
  append_replacing_invalid(s, i, [&](const char *p, size_t n) { clean.append(p, n); });
  return clean;
}

// Bytes of the longest prefix of s that is at most max_chars characters as the outputs write
// them (a valid UTF-8 sequence is one character, each other byte one U+FFFD), cut at a
// character boundary: how an input that cannot refuse a record keeps a field within a column.
inline size_t utf8_prefix_bytes(std::string_view s, size_t max_chars) {
  if (s.size() <= max_chars) return s.size();
  utf8_detail::NullStream os;
  size_t i = 0;
  for (size_t chars = 0; i < s.size() && chars < max_chars; ++chars) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    utf8_detail::ViewStream is{s, i};
    i = rapidjson::UTF8<>::Validate(is, os) ? is.Tell() : i + 1;
  }
  return i;
}

}  // namespace devmesh
