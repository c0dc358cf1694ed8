// Environment expansion in config values: ${VAR}, ${VAR:-default}, ${VAR-default}, $$.
#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "config.h"

namespace devmesh {

namespace {

// Bounds on what one value may make the expansion do (see config_file.cpp for the file's).
constexpr size_t kMaxValueBytes = 1 << 20;  // one value after ${VAR} expansion
constexpr int kMaxDefaultNesting = 16;      // ${A:-${B:-...}}
constexpr size_t kMaxUnsetListed = 32;      // unset variables named in one problem

bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// Expands `in` into `out`, collecting unset variables (in order, once each) and stopping only on
// a syntax error. Defaults are expanded lazily, like the shell: only when used.
bool expand_into(std::string_view in, std::string &out, std::vector<std::string> &unset,
                 std::string &error, int nesting = 0) {
  if (nesting > kMaxDefaultNesting) {
    error = "defaults nested deeper than " + std::to_string(kMaxDefaultNesting) + " levels";
    return false;
  }
  size_t i = 0;
  while (i < in.size()) {
    if (out.size() > kMaxValueBytes) {
      error = "expands to more than " + std::to_string(kMaxValueBytes >> 20) + " MiB";
      return false;
    }
    char c = in[i];
    if (c != '$' || i + 1 == in.size() || (in[i + 1] != '$' && in[i + 1] != '{')) {
      out += c;  // a lone '$' is literal
      ++i;
      continue;
    }
    if (in[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    size_t start = i;
    size_t j = i + 2;
    size_t name_begin = j;
    if (j < in.size() && is_name_start(in[j])) {
      while (j < in.size() && is_name_char(in[j])) ++j;
    }
    std::string name(in.substr(name_begin, j - name_begin));
    auto bad = [&] {
      size_t close = in.find('}', start);
      std::string_view ref =
          in.substr(start, close == std::string_view::npos ? close : close - start + 1);
      error = "invalid reference '" + std::string(ref) + "' (expected ${VAR} or ${VAR:-default})";
      return false;
    };
    if (j >= in.size()) {
      error = "unterminated '${' (missing '}')";
      return false;
    }
    if (name.empty()) return bad();
    if (in[j] == '}') {
      const char *v = std::getenv(name.c_str());
      if (v) {
        out += v;
      } else if (unset.size() < kMaxUnsetListed &&
                 std::find(unset.begin(), unset.end(), name) == unset.end()) {
        unset.push_back(name);
      }
      i = j + 1;
      continue;
    }
    // ${VAR:-default} uses the default when unset or empty; ${VAR-default} only when unset.
    bool colon = in[j] == ':';
    if (colon) ++j;
    if (j >= in.size()) {
      error = "unterminated '${' (missing '}')";
      return false;
    }
    if (in[j] != '-') return bad();
    ++j;
    size_t def_begin = j;
    int depth = 0;
    for (; j < in.size(); ++j) {
      if (in[j] == '$' && j + 1 < in.size() && (in[j + 1] == '$' || in[j + 1] == '{')) {
        if (in[j + 1] == '{') ++depth;
        ++j;
      } else if (in[j] == '}') {
        if (depth == 0) break;
        --depth;
      }
    }
    if (j >= in.size()) {
      error = "unterminated '${' (missing '}')";
      return false;
    }
    const char *v = std::getenv(name.c_str());
    bool use_default = !v || (colon && !*v);
    if (use_default) {
      if (!expand_into(in.substr(def_begin, j - def_begin), out, unset, error, nesting + 1))
        return false;
    } else {
      out += v;
    }
    i = j + 1;
  }
  if (out.size() > kMaxValueBytes) {
    error = "expands to more than " + std::to_string(kMaxValueBytes >> 20) + " MiB";
    return false;
  }
  return true;
}

}  // namespace

bool expand_env(std::string_view in, std::string &out, std::string &error) {
  out.clear();
  error.clear();
  std::vector<std::string> unset;
  if (!expand_into(in, out, unset, error)) return false;
  if (unset.empty()) return true;
  if (unset.size() == 1) {
    error = "environment variable " + unset[0] + " is not set";
  } else {
    error = "environment variables ";
    for (size_t i = 0; i < unset.size(); ++i) error += (i ? ", " : "") + unset[i];
    error += " are not set";
  }
  return false;
}

}  // namespace devmesh
