// The multiline filter's rules: which line starts a multi-line record (a Java exception, a
// Python traceback, a Go panic or goroutine dump, or a configured start regex) and which lines
// continue it. A rule keeps a small phase per stream where a trace has parts (Python's chained
// exceptions), so a line is judged by where the trace it would join stands.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devmesh::multiline {

// A compiled PCRE2 pattern (JIT when the platform has one) with its own match data.
class Pattern {
 public:
  Pattern() = default;
  Pattern(const Pattern &) = delete;
  Pattern &operator=(const Pattern &) = delete;
  ~Pattern() {
    if (match_) pcre2_match_data_free(match_);
    if (code_) pcre2_code_free(code_);
  }

  // false with error set (PCRE2's message and the offset) on a bad pattern.
  bool compile(std::string_view pattern, std::string &error) {
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
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
    match_ = pcre2_match_data_create(1, nullptr);
    return true;
  }

  bool matches(std::string_view s) const {
    const auto *p = reinterpret_cast<PCRE2_SPTR>(s.data());
    // pcre2_match runs the JIT code when there is some, after checking the line is valid UTF-8;
    // pcre2_jit_match skips that check, and JIT code given a broken sequence at a line's end
    // reads past it (the fuzz target found it). 0 is a match too: one whose groups did not fit
    // the single-pair match data.
    return pcre2_match(code_, p, s.size(), 0, 0, match_, nullptr) >= 0;
  }

 private:
  pcre2_code *code_ = nullptr;
  pcre2_match_data *match_ = nullptr;
};

enum class RuleKind : uint8_t { java, python, go, regex };

// One rule: starts() for a line that opens a record, continues() for a line of an open one
// (phase is the stream's, 0 at its start).
class Rule {
 public:
  // The built-in rules' patterns, after Fluent Bit's built-in multiline parsers (java, python,
  // go) with the shapes of real traces: Java's "Caused by:" and "... 12 more", Python's chained
  // tracebacks, Go's goroutine headers, function lines and "created by".
  static std::unique_ptr<Rule> builtin(RuleKind kind) {
    auto r = std::unique_ptr<Rule>(new Rule(kind));
    std::string error;
    switch (kind) {
      case RuleKind::java:
        r->start_.compile(R"re(^\S.*(?:Exception|Error|Throwable)(?::|\s*$))re", error);
        r->cont_.compile(R"re(^(?:[ \t]+\S|Caused by: |\s*Suppressed: |\s*\.\.\. \d+ ))re", error);
        break;
      case RuleKind::python:
        r->start_.compile(R"re(^Traceback \(most recent call last\):\s*$)re", error);
        r->cont_.compile(R"re(^[ \t]+\S)re", error);  // frames and their source lines
        r->chain_.compile(
            R"re(^(?:During handling of the above exception|The above exception was the direct cause))re",
            error);
        break;
      case RuleKind::go:
        r->start_.compile(
            R"re(^(?:panic: |fatal error: |SIGQUIT: quit|SIGABRT: abort|goroutine \d+ \[[^\]]*\]:$))re",
            error);
        r->cont_.compile(
            R"re(^(?:$|\s|goroutine \d+ \[|created by |\[signal |exit status \d|panic: |fatal error: |PC=|)re"
            R"re([re]?[a-z0-9]{1,3}\s+0x[0-9a-f]+$|[^\s(]+\(.*\)$|\.\.\.))re",
            error);
        break;
      case RuleKind::regex:
        break;
    }
    if (!error.empty()) throw std::logic_error("built-in multiline rule: " + error);
    return r;
  }

  // A start/continue pair of the configuration; false with error set (naming which).
  static std::unique_ptr<Rule> custom(std::string_view start, std::string_view cont,
                                      std::string &error, bool &start_bad) {
    auto r = std::unique_ptr<Rule>(new Rule(RuleKind::regex));
    start_bad = true;
    if (!r->start_.compile(start, error)) return nullptr;
    start_bad = false;
    if (!r->cont_.compile(cont, error)) return nullptr;
    return r;
  }

  RuleKind kind() const { return kind_; }

  bool starts(std::string_view line) const { return start_.matches(line); }

  bool continues(std::string_view line, uint8_t &phase) const {
    if (kind_ != RuleKind::python) return cont_.matches(line);
    // Python: frames (0), then the exception line (-> 1); after it only a blank line or the
    // sentence that chains another traceback (-> 2), whose "Traceback" line starts frames again.
    switch (phase) {
      case 0:
        if (cont_.matches(line)) return true;
        if (line.empty()) return false;
        phase = 1;  // "ValueError: bad value", the traceback's last line
        return true;
      case 1:
        if (line.empty()) return true;
        if (chain_.matches(line)) {
          phase = 2;
          return true;
        }
        return false;
      default:
        if (line.empty()) return true;
        if (start_.matches(line)) {
          phase = 0;
          return true;
        }
        return false;
    }
  }

 private:
  explicit Rule(RuleKind kind) : kind_(kind) {}
  RuleKind kind_;
  Pattern start_, cont_, chain_;
};

}  // namespace devmesh::multiline
