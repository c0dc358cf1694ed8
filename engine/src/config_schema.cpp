// Schema checking: a plugin entry's (or the service section's) keys and values against a
// dm_option table, with defaults applied and every problem reported at its place in the file.
#include <algorithm>
#include <exception>
#include <filesystem>
#include <limits>
#include <set>
#include <tuple>

#include "config_detail.h"

namespace devmesh {
namespace config_detail {

const char *node_kind(const YAML::Node &n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "empty";
    default:
      return "a scalar";
  }
}

// ---- suggestions ---------------------------------------------------------------------------

// Optimal string alignment distance (a swap of two neighbours counts as one edit).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The closest candidate within two edits (fewer for short words), or "" when none is close.
std::string closest(std::string_view key, const std::vector<std::string> &candidates) {
  if (key.size() > 64) return "";  // no option is that long; the distance costs len x len
  std::string k = lower(key);
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto &c : candidates) {
    size_t d = edit_distance(k, lower(c));
    size_t longest = std::max(k.size(), c.size());
    // Two edits turn any two-letter word into any other: also require most letters to agree.
    if (d <= 2 && d * 2 < longest && d < best_d) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

std::string unknown_key_message(std::string_view key, const std::vector<std::string> &candidates) {
  std::string msg = "unknown key '" + std::string(key) + "'";
  std::string near = closest(key, candidates);
  if (!near.empty()) msg += " (did you mean '" + near + "'?)";
  return msg;
}

// ---- YAML helpers --------------------------------------------------------------------------

std::string key_text(const YAML::Node &key) {
  if (key.IsScalar()) return key.Scalar();
  return std::string("<") + node_kind(key) + ">";
}

std::string join_path(const std::string &base, std::string_view key) {
  if (base.empty()) return std::string(key);
  return base + "." + std::string(key);
}

std::string index_path(const std::string &base, size_t i) {
  return base + "[" + std::to_string(i) + "]";
}

std::string resolve_path(const std::string &dir, const std::string &p) {
  if (p.empty()) return p;
  std::filesystem::path path(p);
  if (path.is_absolute()) return path.lexically_normal().string();
  return (std::filesystem::path(dir) / path).lexically_normal().string();
}

bool unexpanded(const YAML::Node &n) {
  return n.IsScalar() && n.Tag() == kUnexpandedTag;
}

// First value for `key` in a mapping, without inserting (operator[] on a non-const node would).
bool find_key(const YAML::Node &map, std::string_view key, YAML::Node &key_node,
              YAML::Node &value) {
  if (!map.IsMap()) return false;
  for (const auto &kv : map) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) {
      key_node = kv.first;
      value = kv.second;
      return true;
    }
  }
  return false;
}

void Checker::add(const YAML::Mark &mark, const std::string &path, std::string message) {
  problems.add(file, mark, path, std::move(message));
}

// Bounds and allowed values of an already parsed value; `what` prefixes a bad default.
bool Checker::check_limits(const dm_option &opt, const OptionValue &v, const YAML::Mark &mark,
                           const std::string &path, const std::string &what) {
  bool ok = true;
  bool numeric = opt.type == DM_OPT_INT || opt.type == DM_OPT_DOUBLE ||
                 opt.type == DM_OPT_DURATION || opt.type == DM_OPT_SIZE;
  if ((opt.flags & DM_OPT_BOUNDED) && numeric && (v.number < opt.min || v.number > opt.max)) {
    add(mark, path,
        what + "must be between " + format_bound(opt.type, opt.min) + " and " +
            format_bound(opt.type, opt.max));
    ok = false;
  }
  if (opt.allowed && opt.type == DM_OPT_STRING && !is_allowed(opt, v.text)) {
    add(mark, path, what + "must be one of: " + allowed_list(opt));
    ok = false;
  }
  return ok;
}

bool Checker::is_allowed(const dm_option &opt, const std::string &text) {
  for (const char *const *a = opt.allowed; *a; ++a) {
    if (text == *a) return true;
  }
  return false;
}

std::string Checker::allowed_list(const dm_option &opt) {
  std::string r;
  for (const char *const *a = opt.allowed; *a; ++a) {
    if (!r.empty()) r += ", ";
    r += *a;
  }
  return r;
}

// One list item (a scalar) checked against the option's allowed values.
bool Checker::list_item(const dm_option &opt, const YAML::Node &item, const std::string &path,
                        OptionValue &v) {
  if (unexpanded(item)) return false;
  if (!item.IsScalar()) {
    add(item.Mark(), path, std::string("must be a string, not ") + node_kind(item));
    return false;
  }
  if (opt.allowed && !is_allowed(opt, item.Scalar())) {
    add(item.Mark(), path, "must be one of: " + allowed_list(opt));
    return false;
  }
  v.items.push_back(item.Scalar());
  return true;
}

// Converts one value node to the option's type; false after reporting a problem (or on a
// list item or map value whose env expansion failed, which load_pipeline reported).
bool Checker::value(const dm_option &opt, const YAML::Node &key, const YAML::Node &node,
                    const std::string &path, OptionValue &v) {
  v = OptionValue{};
  v.type = opt.type;
  if (node.IsNull() && opt.type != DM_OPT_LIST && opt.type != DM_OPT_MAP) {
    // A null's mark points past the key, often at the next line: report at the key.
    add(key.Mark(), path,
        opt.default_value ? "has no value (remove the key to use the default)" : "has no value");
    return false;
  }
  switch (opt.type) {
    case DM_OPT_LIST: {
      bool ok = true;
      if (node.IsNull()) return true;  // an empty list
      if (node.IsScalar()) {
        ok = list_item(opt, node, path, v);  // a scalar is a one-item list
      } else if (node.IsSequence()) {
        for (size_t i = 0; i < node.size(); ++i) {
          ok = list_item(opt, node[i], index_path(path, i), v) && ok;
        }
      } else {
        add(node.Mark(), path, expectation(opt.type));
        return false;
      }
      for (size_t i = 0; i < v.items.size(); ++i) v.text += (i ? "," : "") + v.items[i];
      return ok;
    }
    case DM_OPT_MAP: {
      if (node.IsNull()) return true;  // an empty mapping
      if (!node.IsMap()) {
        add(node.Mark(), path, expectation(opt.type));
        return false;
      }
      bool ok = true;
      std::set<std::string> seen;
      for (const auto &kv : node) {
        std::string k = key_text(kv.first);
        std::string item_path = join_path(path, k);
        if (!seen.insert(k).second) continue;  // duplicate: reported by load_pipeline
        if (!kv.first.IsScalar()) {
          add(kv.first.Mark(), item_path, "keys must be strings");
          ok = false;
        } else if (unexpanded(kv.second)) {
          ok = false;
        } else if (kv.second.IsNull()) {
          add(kv.first.Mark(), item_path, "has no value (use '' for an empty string)");
          ok = false;
        } else if (!kv.second.IsScalar()) {
          add(kv.second.Mark(), item_path,
              std::string("must be a string, not ") + node_kind(kv.second));
          ok = false;
        } else {
          v.entries.emplace_back(k, kv.second.Scalar());
          v.text += (v.text.empty() ? "" : ",") + k + "=" + kv.second.Scalar();
        }
      }
      return ok;
    }
    default:
      break;
  }
  if (!node.IsScalar()) {
    add(node.Mark(), path, expectation(opt.type) + ", not " + node_kind(node));
    return false;
  }
  std::string error;
  if (!parse_value(opt.type, node.Scalar(), v, error)) {
    add(node.Mark(), path, error);
    return false;
  }
  if (!check_limits(opt, v, node.Mark(), path, "")) return false;
  // Here, once: config_get_string, config_bind and the engine's checks all see the same path.
  if (opt.type == DM_OPT_PATH) v.text = resolve_path(dir, v.text);
  return true;
}

// Validates every key of `map` (at `path`, reported at `mark` when a key is missing) into
// `values`, then applies defaults. False when a problem was found.
bool Checker::mapping(const YAML::Node &map, const YAML::Mark &mark, const std::string &path,
                      const Schema &schema,
                      std::map<std::string, OptionValue, std::less<>> &values) {
  size_t before = problems.size();
  bool blocked = false;  // a bad value; its env expansion may have been reported already
  std::set<std::string> present;
  if (map.IsMap()) {
    std::vector<std::string> candidates = schema.keys();
    for (const auto &kv : map) {
      std::string key = key_text(kv.first);
      std::string key_path = join_path(path, key);
      if (!present.insert(key).second) continue;  // duplicate: reported by load_pipeline
      if (std::find(schema.skip.begin(), schema.skip.end(), key) != schema.skip.end()) continue;
      const dm_option *opt = kv.first.IsScalar() ? schema.find(key) : nullptr;
      if (!opt) {
        add(kv.first.Mark(), key_path, unknown_key_message(key, candidates));
        continue;
      }
      OptionValue v;
      if (unexpanded(kv.second)) {
        blocked = true;
      } else if (value(*opt, kv.first, kv.second, key_path, v)) {
        values[key] = std::move(v);
      } else {
        blocked = true;  // usually with a problem; none for a list item already reported
      }
    }
  } else if (!map.IsNull()) {
    add(map.Mark(), path, std::string("must be a mapping, not ") + node_kind(map));
    return false;
  }
  for (const dm_option *opt : schema.options) {
    if (!opt || !opt->key || present.count(opt->key)) continue;
    if (opt->flags & DM_OPT_REQUIRED) {
      add(mark, path, std::string("missing required key '") + opt->key + "'");
    } else if (opt->default_value && !values.count(opt->key)) {
      apply_default(*opt, mark, path, values);
    }
  }
  return problems.size() == before && !blocked;
}

// A default is the plugin author's text; a bad one is reported like a bad value.
void Checker::apply_default(const dm_option &opt, const YAML::Mark &mark, const std::string &path,
                            std::map<std::string, OptionValue, std::less<>> &values) {
  std::string key_path = join_path(path, opt.key);
  std::string what = std::string("default '") + opt.default_value + "' ";
  OptionValue v;
  std::string error;
  if (!parse_value(opt.type, opt.default_value, v, error)) {
    add(mark, key_path, what + error);
    return;
  }
  if (!check_limits(opt, v, mark, key_path, what)) return;
  if (opt.type == DM_OPT_PATH) v.text = resolve_path(dir, v.text);  // "./data/x.db" too
  if (opt.allowed && opt.type == DM_OPT_LIST) {
    for (const auto &item : v.items) {
      if (!is_allowed(opt, item)) {
        add(mark, key_path, what + "must be one of: " + allowed_list(opt));
        return;
      }
    }
  }
  values[opt.key] = std::move(v);
}
}  // namespace config_detail

using namespace config_detail;

// Appends `found` to `problems` in file order (problems without a line first), so a report
// reads top to bottom although the checks run in several passes.
void append_in_order(const Problems &found, Problems &problems) {
  std::vector<Problem> list = found.list();
  std::stable_sort(list.begin(), list.end(), [](const Problem &a, const Problem &b) {
    return std::tie(a.line, a.col) < std::tie(b.line, b.col);
  });
  for (auto &p : list) problems.add(std::move(p));
}

std::unique_ptr<dm_config> validate_entry(const PipelineConfig &cfg, const PluginEntry &entry,
                                          const std::vector<const dm_option *> &options,
                                          Problems &problems) {
  Problems found;
  std::unique_ptr<dm_config> config;
  try {
    Schema schema;
    schema.options = options;
    schema.skip = {"name", "alias", "plugin_path"};
    Checker check{cfg.file, found, cfg.dir};
    config = std::make_unique<dm_config>();
    if (!check.mapping(entry.node, entry.node.Mark(), entry.where(), schema, config->values)) {
      config.reset();
    } else {
      config->options = options;
      config->file = cfg.file;
      config->where = entry.where();
      config->node = entry.node;
      for (auto &[key, v] : config->values) {
        for (const auto &item : v.items) v.item_views.push_back(dm_str{item.c_str(), item.size()});
        for (const auto &[k, value] : v.entries) {
          v.key_views.push_back(dm_str{k.c_str(), k.size()});
          v.item_views.push_back(dm_str{value.c_str(), value.size()});
        }
      }
    }
  } catch (const std::exception &e) {
    found.add(cfg.file, entry.node.Mark(), entry.where(),
              std::string("internal error: ") + e.what());
    config.reset();
  }
  append_in_order(found, problems);
  return config;
}

}  // namespace devmesh
