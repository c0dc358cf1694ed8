// What the config files share among themselves (not the engine): the YAML helpers, the schema
// checker and the wording of value problems. The engine's view is config.h.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"

namespace devmesh::config_detail {

// A scalar whose env expansion failed in load_pipeline carries this tag, so validation later
// skips it instead of reporting a second, confusing problem about the same text.
constexpr const char *kUnexpandedTag = "!devmesh-unexpanded";

// ---- values (config_values.cpp) ---------------------------------------------------------------

std::string lower(std::string_view s);
// How a bound is printed: a duration as 5s, a size as 64KiB, a number without decimals.
std::string format_bound(dm_opt_type type, double v);
// What a value of `type` must look like; the wording of every type problem.
std::string expectation(dm_opt_type type);

// ---- YAML helpers and suggestions (config_schema.cpp) -----------------------------------------

const char *node_kind(const YAML::Node &n);
std::string key_text(const YAML::Node &key);
std::string join_path(const std::string &base, std::string_view key);
std::string index_path(const std::string &base, size_t i);
bool unexpanded(const YAML::Node &n);
// First value for `key` in a mapping, without inserting (operator[] on a non-const node would).
bool find_key(const YAML::Node &map, std::string_view key, YAML::Node &key_node, YAML::Node &value);
std::string unknown_key_message(std::string_view key, const std::vector<std::string> &candidates);
// The candidate closest to `word` (a few edits), or "" when none is close.
std::string closest(std::string_view word, const std::vector<std::string> &candidates);
// `p` made absolute against `dir` (the directory of the file it was written in), normalized;
// an absolute `p` is only normalized, an empty one stays empty.
std::string resolve_path(const std::string &dir, const std::string &p);

// ---- validating a mapping against a schema (config_schema.cpp) --------------------------------

struct Schema {
  std::vector<const dm_option *> options;
  std::vector<std::string> skip;  // keys handled elsewhere (allowed, not validated here)
  const dm_option *find(std::string_view key) const {
    for (const dm_option *o : options) {
      if (o && o->key && key == o->key) return o;  // the first declaration wins
    }
    return nullptr;
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> r(skip);
    for (const dm_option *o : options) {
      if (o && o->key) r.emplace_back(o->key);
    }
    return r;
  }
};

struct Checker {
  const std::string &file;
  Problems &problems;
  std::string dir = {};  // the file's directory: DM_OPT_PATH values resolve against it

  void add(const YAML::Mark &mark, const std::string &path, std::string message);
  // Bounds and allowed values of an already parsed value; `what` prefixes a bad default.
  bool check_limits(const dm_option &opt, const OptionValue &v, const YAML::Mark &mark,
                    const std::string &path, const std::string &what);
  static bool is_allowed(const dm_option &opt, const std::string &text);
  static std::string allowed_list(const dm_option &opt);
  // One list item (a scalar) checked against the option's allowed values.
  bool list_item(const dm_option &opt, const YAML::Node &item, const std::string &path,
                 OptionValue &v);
  // Converts one value node to the option's type; false after reporting a problem (or on a
  // list item or map value whose env expansion failed, which load_pipeline reported).
  bool value(const dm_option &opt, const YAML::Node &key, const YAML::Node &node,
             const std::string &path, OptionValue &v);
  // Validates every key of `map` (at `path`, reported at `mark` when a key is missing) into
  // `values`, then applies defaults. False when a problem was found.
  bool mapping(const YAML::Node &map, const YAML::Mark &mark, const std::string &path,
               const Schema &schema, std::map<std::string, OptionValue, std::less<>> &values);
  // A default is the plugin author's text; a bad one is reported like a bad value.
  void apply_default(const dm_option &opt, const YAML::Mark &mark, const std::string &path,
                     std::map<std::string, OptionValue, std::less<>> &values);
};

}  // namespace devmesh::config_detail
