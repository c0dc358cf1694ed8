// Finds a log level written inside a message (level=error, lvl=warn, "level":"warn", [ERROR],
// ERROR:) in one pass without allocating; shared by the priority_map filter and its benchmark.
#pragma once

#include <devmesh/plugin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace devmesh {

namespace level_scan_detail {
struct CharClass {
  bool trigger = false;  // '=', ':', '['
  bool word = false;     // letters, digits, '_': a word continues over these
  bool alpha = false;
  bool key_end = false;    // last letter of a key: leve(l), lv(l), severit(y), logleve(l)
  bool level_end = false;  // last letter of a level word (trac(e), debu(g), inf(o), war(n)...)
};

constexpr std::array<CharClass, 256> make_classes() {
  std::array<CharClass, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    t[c].alpha = alpha;
    t[c].word = alpha || (c >= '0' && c <= '9') || c == '_';
    t[c].trigger = c == '=' || c == ':' || c == '[';
    const int l = alpha ? (c | 0x20) : 0;
    t[c].key_end = l == 'l' || l == 'y';
    t[c].level_end = l == 'e' || l == 'g' || l == 'o' || l == 'n' || l == 'r' || l == 't' ||
                     l == 'l' || l == 'c';
  }
  return t;
}

inline constexpr std::array<CharClass, 256> kClasses = make_classes();
}  // namespace level_scan_detail

// Why a scanner and not std::regex: one equivalent case-insensitive std::regex costs several
// microseconds per message (tools/bench/filters prints both), and this runs on every record.
class LevelScanner {
 public:
  // The level written in msg, or DM_LEVEL_UNSET. A key form (level=, lvl=, severity=,
  // "level":"...", level: ...) wins over a bare form ([ERROR], ERROR:); within a form the
  // leftmost wins. Matching is case-insensitive and word-bounded ("errors:" is no level).
  static uint8_t find(std::string_view msg) {
    const char *s = msg.data();
    const size_t n = msg.size();
    uint8_t bare = DM_LEVEL_UNSET;
    // Eight bytes at a time: the mask marks '=', ':' and '[' (and, rarely, a byte after one:
    // at() re-checks), so a message costs its length / 8 plus its triggers.
    size_t i = 0;
    if constexpr (std::endian::native == std::endian::little) {
      for (; i + 8 <= n; i += 8) {
        for (uint64_t m = trigger_mask(s + i); m; m &= m - 1) {
          const size_t at_i = i + static_cast<size_t>(__builtin_ctzll(m) >> 3);
          if (uint8_t l = at(s, n, at_i, bare)) return l;
        }
      }
    }
    for (; i < n; ++i)
      if (uint8_t l = at(s, n, i, bare)) return l;
    return bare;
  }

  // A level name as the config and the word table spell it (case-insensitive): DEBUG, INFO,
  // WARN, WARNING, ERROR, CRITICAL, FATAL; DM_LEVEL_UNSET when it is none of these.
  static uint8_t parse_name(std::string_view name) {
    for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l) {
      std::string_view want = dm_level_name(l);
      if (want.size() != name.size()) continue;
      size_t k = 0;
      while (k < name.size() && lower(name[k]) == lower(want[k])) ++k;
      if (k == name.size()) return static_cast<uint8_t>(l);
    }
    return DM_LEVEL_UNSET;
  }

 private:
  static constexpr size_t kMaxWord = 8;  // "critical", "severity", "loglevel"
  static constexpr auto &kClass = level_scan_detail::kClasses;

  // The high bit of each of the 8 bytes at p that is '=', ':' or '[' (SWAR: such a byte is
  // zero in x ^ b); a borrow may also mark a byte right above a marked one.
  static uint64_t trigger_mask(const char *p) {
    uint64_t x;
    std::memcpy(&x, p, 8);
    constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
    auto zero_byte = [](uint64_t v) { return (v - kOnes) & ~v & kHigh; };
    return zero_byte(x ^ (kOnes * '=')) | zero_byte(x ^ (kOnes * ':')) |
           zero_byte(x ^ (kOnes * '['));
  }

  // Looks at s[i]: the key form's level (the scan ends), or 0 after noting a bare form's.
  static uint8_t at(const char *s, size_t n, size_t i, uint8_t &bare) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (!kClass[c].trigger) return DM_LEVEL_UNSET;
    if (c == '[') {
      if (bare == DM_LEVEL_UNSET) bare = bracket(s, n, i);
      return DM_LEVEL_UNSET;
    }
    // '=' or ':' : a key before it (key form), or a level word right before ':' (bare form).
    if (uint8_t l = keyed(s, n, i)) return l;
    if (c == ':' && bare == DM_LEVEL_UNSET) bare = colon(s, i);
    return DM_LEVEL_UNSET;
  }

  static constexpr char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }
  static bool is_word(const char *s, size_t i) {
    return kClass[static_cast<unsigned char>(s[i])].word;
  }
  static bool is_alpha(char c) { return kClass[static_cast<unsigned char>(c)].alpha; }

  // Up to kMaxWord letters, lower-cased and packed into an integer (first letter in the low
  // byte), so that a word is compared with one instruction; 0 when empty or longer.
  static uint64_t pack(const char *s, size_t from, size_t to) {
    if (to == from || to - from > kMaxWord) return 0;
    uint64_t w = 0;
    for (size_t k = from; k < to; ++k)
      w |= uint64_t(static_cast<uint8_t>(s[k]) | 0x20) << (8 * (k - from));  // letters only
    return w;
  }
  static consteval uint64_t word(std::string_view w) {
    uint64_t v = 0;
    for (size_t k = 0; k < w.size(); ++k) v |= uint64_t(static_cast<uint8_t>(w[k])) << (8 * k);
    return v;
  }

  // The level a packed word names; syslog's names map like priority_map's defaults.
  static uint8_t word_level(uint64_t w) {
    switch (w) {
      case word("trace"):
      case word("debug"):
      case word("dbg"):
        return DM_LEVEL_DEBUG;
      case word("info"):
      case word("notice"):
        return DM_LEVEL_INFO;
      case word("warn"):
        return DM_LEVEL_WARN;
      case word("warning"):
        return DM_LEVEL_WARNING;
      case word("err"):
      case word("error"):
        return DM_LEVEL_ERROR;
      case word("crit"):
      case word("critical"):
      case word("alert"):
        return DM_LEVEL_CRITICAL;
      case word("fatal"):
      case word("panic"):
      case word("emerg"):
        return DM_LEVEL_FATAL;
      default:
        return DM_LEVEL_UNSET;
    }
  }

  static bool is_key(uint64_t w) {
    return w == word("level") || w == word("lvl") || w == word("severity") || w == word("loglevel");
  }

  // The level word starting at s[i] and ending at a word boundary; its end in *end.
  static uint8_t level_at(const char *s, size_t n, size_t i, size_t *end) {
    size_t j = i;
    while (j < n && j - i <= kMaxWord && is_alpha(s[j])) ++j;
    if (j < n && is_word(s, j)) return DM_LEVEL_UNSET;  // "error2", "errors", too long
    *end = j;
    return word_level(pack(s, i, j));
  }

  // The letters ending right before `end`, when they start a word; their start in *start.
  static bool word_before(const char *s, size_t end, size_t *start) {
    size_t b = end;
    while (b > 0 && end - b <= kMaxWord && is_alpha(s[b - 1])) --b;
    if (b == end || end - b > kMaxWord) return false;
    if (b > 0 && is_word(s, b - 1)) return false;
    *start = b;
    return true;
  }

  static size_t skip_spaces(const char *s, size_t n, size_t i) {
    while (i < n && s[i] == ' ') ++i;
    return i;
  }

  // At '=' or ':' s[i]: key=value, key: value, key="value", "key":"value".
  static uint8_t keyed(const char *s, size_t n, size_t i) {
    size_t k_end = i;
    while (k_end > 0 && s[k_end - 1] == ' ') --k_end;
    const bool quoted_key = k_end > 0 && s[k_end - 1] == '"';
    if (quoted_key) --k_end;
    // Most '=' and ':' follow no key at all: reject on the last letter before the walk back.
    if (k_end == 0 || !kClass[static_cast<unsigned char>(s[k_end - 1])].key_end)
      return DM_LEVEL_UNSET;
    size_t k_start;
    if (!word_before(s, k_end, &k_start)) return DM_LEVEL_UNSET;
    if (quoted_key && (k_start == 0 || s[k_start - 1] != '"')) return DM_LEVEL_UNSET;
    if (!is_key(pack(s, k_start, k_end))) return DM_LEVEL_UNSET;
    size_t v = skip_spaces(s, n, i + 1);
    char quote = 0;
    if (v < n && (s[v] == '"' || s[v] == '\'')) quote = s[v++];
    size_t v_end;
    const uint8_t l = level_at(s, n, v, &v_end);
    if (l == DM_LEVEL_UNSET) return DM_LEVEL_UNSET;
    if (quote && (v_end >= n || s[v_end] != quote)) return DM_LEVEL_UNSET;
    return l;
  }

  // At ':' s[i]: ERROR: (the level word right before, at the start, after a blank or after a
  // closing bracket; "/error:" inside a URL or path is no level).
  static uint8_t colon(const char *s, size_t i) {
    if (i == 0 || !kClass[static_cast<unsigned char>(s[i - 1])].level_end) return DM_LEVEL_UNSET;
    size_t start;
    if (!word_before(s, i, &start)) return DM_LEVEL_UNSET;
    if (start > 0) {
      const char before = s[start - 1];
      if (before != ' ' && before != '\t' && before != ']' && before != ')' && before != '>' &&
          before != '|')
        return DM_LEVEL_UNSET;
    }
    return word_level(pack(s, start, i));
  }

  // At '[' s[i]: [ERROR], [ warn].
  static uint8_t bracket(const char *s, size_t n, size_t i) {
    size_t end;
    const uint8_t l = level_at(s, n, skip_spaces(s, n, i + 1), &end);
    if (l == DM_LEVEL_UNSET) return DM_LEVEL_UNSET;
    end = skip_spaces(s, n, end);
    return end < n && s[end] == ']' ? l : static_cast<uint8_t>(DM_LEVEL_UNSET);
  }
};

}  // namespace devmesh
