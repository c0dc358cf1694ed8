// One compiled PCRE2 pattern (UTF mode, JIT-compiled when the platform has a JIT) with its own
// match data, shared by the filters that take regexes from the configuration (the parser's
// named-group format, the multiline rules). Header-only; a plugin using it links libpcre2-8.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace devmesh {

class Pcre2Regex {
 public:
  // What a match keeps: the whole match only (a yes or no, the smallest match data), or every
  // group of the pattern (for reading the groups through ovector()).
  enum class Captures : uint8_t { whole_match, all_groups };

  Pcre2Regex() = default;
  Pcre2Regex(const Pcre2Regex &) = delete;
  Pcre2Regex &operator=(const Pcre2Regex &) = delete;
  ~Pcre2Regex() {
    if (match_) pcre2_match_data_free(match_);
    if (code_) pcre2_code_free(code_);
  }

  // false with error set (PCRE2's message and the offset) on a bad pattern.
  bool compile(std::string_view pattern, std::string &error,
               Captures captures = Captures::whole_match) {
    int code = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF,
                          &code, &offset, nullptr);
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(code, msg, sizeof msg);
      error = "invalid regex at offset " + std::to_string(offset) + ": " +
              reinterpret_cast<const char *>(msg);
      return false;
    }
    // Without a JIT (a platform without one) pcre2_match interprets: slower, same answers.
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
    match_ = captures == Captures::all_groups ? pcre2_match_data_create_from_pattern(code_, nullptr)
                                              : pcre2_match_data_create(1, nullptr);
    return true;
  }

  // pcre2_match's result for subject s: > 0 the number of pairs set in ovector(), 0 a match
  // whose groups did not fit the match data (Captures::whole_match), < 0 no match.
  //
  // pcre2_match, never pcre2_jit_match: pcre2_match runs the JIT code all the same when there
  // is some, after checking the subject is valid UTF-8. pcre2_jit_match skips that check, and
  // JIT code given a broken sequence (at a line's end) reads past the subject: the fuzz target
  // found it in both the multiline rules and the parser's regex (tests/fuzz/regressions/
  // parser_formats). Records are valid UTF-8 by the engine's rules, but the check costs little.
  int match(std::string_view s) const {
    return pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0, 0, match_,
                       nullptr);
  }

  bool matches(std::string_view s) const { return match(s) >= 0; }

  // The last match's offset pairs (start, end per group; PCRE2_UNSET for a group not set).
  const PCRE2_SIZE *ovector() const { return pcre2_get_ovector_pointer(match_); }

  // The pattern's named groups: (group number, name), in the name table's order.
  std::vector<std::pair<uint32_t, std::string>> named_groups() const {
    std::vector<std::pair<uint32_t, std::string>> names;
    uint32_t count = 0, entry = 0;
    PCRE2_SPTR table = nullptr;
    pcre2_pattern_info(code_, PCRE2_INFO_NAMECOUNT, &count);
    pcre2_pattern_info(code_, PCRE2_INFO_NAMEENTRYSIZE, &entry);
    pcre2_pattern_info(code_, PCRE2_INFO_NAMETABLE, &table);
    for (uint32_t i = 0; i < count; ++i) {
      const PCRE2_SPTR e = table + i * entry;
      const uint32_t group = (uint32_t(e[0]) << 8) | e[1];
      names.emplace_back(group, std::string(reinterpret_cast<const char *>(e + 2)));
    }
    return names;
  }

  bool jit() const { return jit_; }

 private:
  pcre2_code *code_ = nullptr;
  pcre2_match_data *match_ = nullptr;  // one per pattern, so per filter instance
  bool jit_ = false;
};

}  // namespace devmesh
