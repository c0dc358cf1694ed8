// The parser filter's formats: each turns one message into a list of named fields, typed as
// meta values are (dm_meta_type), or refuses it. json (simdjson On Demand), logfmt, key=value
// with configurable separators, and PCRE2 regexes with named groups (regex.hpp). Field views
// point into the message or into the format's own buffers: valid until its next parse.
#pragma once

#include <devmesh/plugin.h>
#include <simdjson.h>
#include <regex.hpp>

#include <charconv>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace devmesh::parser {

struct Field {
  std::string_view key, value;
  uint32_t type;  // dm_meta_type
};
// The fields of one message: a vector that is only ever grown, so a line's parse allocates
// nothing once the longest line so far has been seen.
class Fields {
 public:
  void clear() { n_ = 0; }
  bool empty() const { return n_ == 0; }
  size_t size() const { return n_; }
  // Member by member: a Field built on the stack and copied whole costs a store-forwarding
  // stall per field (half of a logfmt parse in perf).
  void add(std::string_view key, std::string_view value, uint32_t type) {
    if (n_ == v_.size()) v_.resize(v_.empty() ? 32 : 2 * v_.size());
    Field &f = v_[n_++];
    f.key = key;
    f.value = value;
    f.type = type;
  }
  const Field *begin() const { return v_.data(); }
  const Field *end() const { return v_.data() + n_; }

 private:
  std::vector<Field> v_;
  size_t n_ = 0;
};

inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// A double-quoted value starting at s[p] == '"': its unescaped text (\" \\ \n \t \r; any other
// escaped byte is itself) appended to scratch, which never reallocates (reserved for the whole
// message). p ends past the closing quote; false when there is none.
inline bool read_quoted(std::string_view s, size_t &p, std::string &scratch,
                        std::string_view &value) {
  const size_t start = scratch.size();
  for (++p; p < s.size(); ++p) {
    char c = s[p];
    if (c == '"') {
      ++p;
      value = std::string_view(scratch.data() + start, scratch.size() - start);
      return true;
    }
    if (c == '\\' && p + 1 < s.size()) {
      c = s[++p];
      c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
    }
    scratch.push_back(c);
  }
  return false;
}

// logfmt (key=value key="quoted value" ...), strictly: every token must be a key=value pair,
// so plain prose is not taken for a row of bare keys.
class Logfmt {
 public:
  bool parse(std::string_view s, Fields &out) {
    scratch_.clear();
    scratch_.reserve(s.size());
    size_t p = 0;
    while (true) {
      while (p < s.size() && is_space(s[p])) ++p;
      if (p == s.size()) break;
      const size_t k = p;
      while (p < s.size() && s[p] > ' ' && s[p] != '=' && s[p] != '"') ++p;
      if (p == k || p == s.size() || s[p] != '=') return false;
      const std::string_view key = s.substr(k, p - k);
      ++p;
      std::string_view value;
      if (p < s.size() && s[p] == '"') {
        if (!read_quoted(s, p, scratch_, value)) return false;
        if (p < s.size() && !is_space(s[p])) return false;
      } else {
        const size_t v = p;
        while (p < s.size() && !is_space(s[p])) {
          if (s[p] == '"') return false;
          ++p;
        }
        value = s.substr(v, p - v);
      }
      out.add(key, value, DM_META_STRING);
    }
    return !out.empty();
  }

 private:
  std::string scratch_;
};

// key=value pairs with configurable separators (Vector's parse_key_value): words without the
// key separator are skipped; values may be double-quoted; at least one pair must be found.
class KeyValue {
 public:
  KeyValue(std::string kv_sep, std::string pair_sep)
      : kv_(std::move(kv_sep)), pair_(std::move(pair_sep)) {}

  bool parse(std::string_view s, Fields &out) {
    scratch_.clear();
    scratch_.reserve(s.size());
    size_t p = 0;
    while (p < s.size()) {
      // Leading separators and blanks between pairs.
      while (p < s.size()) {
        if (s.compare(p, pair_.size(), pair_) == 0)
          p += pair_.size();
        else if (is_space(s[p]))
          ++p;
        else
          break;
      }
      if (p == s.size()) break;
      const size_t kv = s.find(kv_, p), next = s.find(pair_, p);
      if (kv == std::string_view::npos) break;  // only standalone words left
      if (next != std::string_view::npos && next < kv) {
        p = next;  // a standalone word
        continue;
      }
      const std::string_view key = trim(s.substr(p, kv - p));
      p = kv + kv_.size();
      while (p < s.size() && (s[p] == ' ' || s[p] == '\t') && pair_.find(s[p]) == std::string::npos)
        ++p;
      std::string_view value;
      if (p < s.size() && s[p] == '"') {
        if (!read_quoted(s, p, scratch_, value)) return false;
      } else {
        const size_t end = std::min(s.find(pair_, p), s.size());
        value = trim(s.substr(p, end - p));
        p = end;
      }
      if (key.empty()) return false;
      out.add(key, value, DM_META_STRING);
    }
    return !out.empty();
  }

 private:
  std::string kv_, pair_, scratch_;
};

// The regex format: a PCRE2 pattern (regex.hpp) whose named groups become the fields.
class Regex {
 public:
  // false with error set (PCRE2's message and offset) on a bad pattern or one without named
  // groups (it could fill nothing).
  bool compile(std::string_view pattern, std::string &error) {
    if (!re_.compile(pattern, error, Pcre2Regex::Captures::all_groups)) return false;
    names_ = re_.named_groups();
    if (names_.empty()) {
      error = "the regex has no named group (?<name>...): it would fill no field";
      return false;
    }
    return true;
  }

  bool parse(std::string_view s, Fields &out) {
    const int rc = re_.match(s);
    if (rc <= 0) return false;
    const PCRE2_SIZE *ov = re_.ovector();
    for (const auto &[group, name] : names_) {
      if (group >= static_cast<uint32_t>(rc) || ov[2 * group] == PCRE2_UNSET) continue;
      out.add(name, s.substr(ov[2 * group], ov[2 * group + 1] - ov[2 * group]), DM_META_STRING);
    }
    return true;
  }

  bool jit() const { return re_.jit(); }

 private:
  Pcre2Regex re_;
  std::vector<std::pair<uint32_t, std::string>> names_;
};

// A message that is one JSON object: its members, typed (strings unescaped, numbers, objects and
// arrays as JSON text). simdjson's DOM API, which picks the CPU's fastest kernel at run time (its
// On Demand API compiles to the portable fallback kernel without -march); rapidjson was slower
// (see the parser's README section for the measurement).
class Json {
 public:
  bool parse(std::string_view s, Fields &out) {
    size_t b = 0;
    while (b < s.size() && is_space(s[b])) ++b;
    if (b == s.size() || s[b] != '{') return false;  // cheap refusal of the common non-JSON line
    if (buf_.size() < s.size() + simdjson::SIMDJSON_PADDING)
      buf_.resize(s.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(buf_.data(), s.data(), s.size());
    simdjson::dom::element root;
    if (parser_.parse(reinterpret_cast<const uint8_t *>(buf_.data()), s.size(), false).get(root))
      return false;
    simdjson::dom::object obj;
    if (root.get_object().get(obj)) return false;
    // Number texts and nested JSON live in text_, reserved so views into it stay valid.
    text_.clear();
    text_.reserve(s.size() + 32 * obj.size());
    for (auto [key, v] : obj) {
      Field f{key, {}, DM_META_STRING};
      switch (v.type()) {
        case simdjson::dom::element_type::STRING:
          f.value = std::string_view(v);
          break;
        case simdjson::dom::element_type::INT64:
          f.value = number(int64_t(v));
          f.type = DM_META_INT;
          break;
        case simdjson::dom::element_type::UINT64:
          f.value = number(uint64_t(v));
          f.type = DM_META_INT;
          break;
        case simdjson::dom::element_type::DOUBLE:
          f.value = number(double(v));
          f.type = DM_META_FLOAT;
          break;
        case simdjson::dom::element_type::BOOL:
          f.value = bool(v) ? "true" : "false";
          f.type = DM_META_BOOL;
          break;
        case simdjson::dom::element_type::NULL_VALUE:
          f.value = "null";
          f.type = DM_META_NULL;
          break;
        default: {  // an object or an array
          const std::string json = simdjson::minify(v);
          if (text_.size() + json.size() > text_.capacity()) return false;  // cannot happen
          const size_t at = text_.size();
          text_ += json;
          f.value = std::string_view(text_.data() + at, json.size());
          f.type = DM_META_JSON;
          break;
        }
      }
      out.add(f.key, f.value, f.type);
    }
    return true;
  }

 private:
  template <class T>
  std::string_view number(T x) {
    char tmp[40];
    auto [end, ec] = std::to_chars(tmp, tmp + sizeof tmp, x);
    if (ec != std::errc()) return "0";
    const size_t at = text_.size(), n = static_cast<size_t>(end - tmp);
    if (at + n > text_.capacity()) return "0";  // reserved above: cannot happen
    text_.append(tmp, n);
    return std::string_view(text_.data() + at, n);
  }

  simdjson::dom::parser parser_;
  std::vector<char> buf_;
  std::string text_;
};

}  // namespace devmesh::parser
