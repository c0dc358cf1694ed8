// Finds a log level written inside a message (level=error, lvl=warn, "level":"warn", [ERROR],
// ERROR:) in one pass without allocating; shared by the priority_map filter and its benchmark.
#pragma once

#include <devmesh/plugin.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace devmesh {

namespace level_scan_detail {
struct CharClass {
  bool trigger = false;  // '=', ':', '['
  bool word = false;     // letters, digits, '_': a word continues over these
  bool alpha = false;
};

constexpr std::array<CharClass, 256> make_classes() {
  std::array<CharClass, 256> t{};
  for (int c = 0; c < 256; ++c) {
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    t[c].alpha = alpha;
    t[c].word = alpha || (c >= '0' && c <= '9') || c == '_';
    t[c].trigger = c == '=' || c == ':' || c == '[';
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
    for (size_t i = 0; i < n; ++i) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (!kClass[c].trigger) continue;
      if (c == '[') {
        if (bare == DM_LEVEL_UNSET) bare = bracket(s, n, i);
        continue;
      }
      // '=' or ':' : a key before it (key form), or a level word right before ':' (bare form).
      if (uint8_t l = keyed(s, n, i)) return l;
      if (c == ':' && bare == DM_LEVEL_UNSET) bare = colon(s, i);
    }
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

  static constexpr char lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c + 32) : c; }
  static bool is_word(const char *s, size_t i) {
    return kClass[static_cast<unsigned char>(s[i])].word;
  }
  static bool is_alpha(char c) { return kClass[static_cast<unsigned char>(c)].alpha; }

  // Lower-cases the letters s[from, to) into buf; false when longer than kMaxWord.
  static bool fold(const char *s, size_t from, size_t to, char *buf) {
    if (to - from > kMaxWord || to == from) return false;
    for (size_t k = from; k < to; ++k) buf[k - from] = lower(s[k]);
    return true;
  }

  // The level a lower-case word names; syslog's names map like priority_map's defaults.
  static uint8_t word_level(std::string_view w) {
    switch (w.size()) {
      case 3:
        if (w == "err") return DM_LEVEL_ERROR;
        if (w == "dbg") return DM_LEVEL_DEBUG;
        break;
      case 4:
        if (w == "info") return DM_LEVEL_INFO;
        if (w == "warn") return DM_LEVEL_WARN;
        if (w == "crit") return DM_LEVEL_CRITICAL;
        break;
      case 5:
        if (w == "error") return DM_LEVEL_ERROR;
        if (w == "debug" || w == "trace") return DM_LEVEL_DEBUG;
        if (w == "fatal" || w == "panic" || w == "emerg") return DM_LEVEL_FATAL;
        if (w == "alert") return DM_LEVEL_CRITICAL;
        break;
      case 6:
        if (w == "notice") return DM_LEVEL_INFO;
        break;
      case 7:
        if (w == "warning") return DM_LEVEL_WARNING;
        break;
      case 8:
        if (w == "critical") return DM_LEVEL_CRITICAL;
        break;
    }
    return DM_LEVEL_UNSET;
  }

  static bool is_key(std::string_view w) {
    return w == "level" || w == "lvl" || w == "severity" || w == "loglevel";
  }

  // The level word starting at s[i] and ending at a word boundary; its end in *end.
  static uint8_t level_at(const char *s, size_t n, size_t i, size_t *end) {
    size_t j = i;
    while (j < n && j - i <= kMaxWord && is_alpha(s[j])) ++j;
    if (j < n && is_word(s, j)) return DM_LEVEL_UNSET;  // "error2", "errors", too long
    char buf[kMaxWord];
    if (!fold(s, i, j, buf)) return DM_LEVEL_UNSET;
    *end = j;
    return word_level(std::string_view(buf, j - i));
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
    size_t k_start;
    if (!word_before(s, k_end, &k_start)) return DM_LEVEL_UNSET;
    if (quoted_key && (k_start == 0 || s[k_start - 1] != '"')) return DM_LEVEL_UNSET;
    char buf[kMaxWord];
    if (!fold(s, k_start, k_end, buf) || !is_key(std::string_view(buf, k_end - k_start)))
      return DM_LEVEL_UNSET;
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
    size_t start;
    if (!word_before(s, i, &start)) return DM_LEVEL_UNSET;
    if (start > 0) {
      const char before = s[start - 1];
      if (before != ' ' && before != '\t' && before != ']' && before != ')' && before != '>' &&
          before != '|')
        return DM_LEVEL_UNSET;
    }
    char buf[kMaxWord];
    if (!fold(s, start, i, buf)) return DM_LEVEL_UNSET;
    return word_level(std::string_view(buf, i - start));
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
