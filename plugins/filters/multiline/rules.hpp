// The multiline filter's rules: which line starts a multi-line record (a Java exception, a
// Python traceback, a Go panic or goroutine dump, or a configured start regex) and which lines
// continue it. A rule keeps a small phase per stream where a trace has parts (Python's chained
// exceptions), so a line is judged by where the trace it would join stands.
#pragma once

#include <regex.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devmesh::multiline {

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
  Pcre2Regex start_, cont_, chain_;  // each with its match data: per filter instance
};

}  // namespace devmesh::multiline
