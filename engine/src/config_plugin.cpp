// What a plugin's create() gets from its configuration besides the values: its problems placed
// in the pipeline file (host->config_error) and its bound config struct (host->config_bind).
#include <cstring>

#include "config_detail.h"

namespace devmesh {

using namespace config_detail;

Problem plugin_problem(const dm_config &cfg, const char *key, std::string message) {
  Problem p;
  p.file = cfg.file;
  p.path = cfg.where;
  p.message = std::move(message);
  YAML::Node at = cfg.node;  // the deepest node of the path found so far
  YAML::Mark mark = at.IsDefined() ? at.Mark() : YAML::Mark::null_mark();
  bool found = true;
  std::string_view rest = key ? key : "";
  while (!rest.empty()) {
    // An option whose key has a dot of its own (tls.cert, as Fluent Bit writes them) is one key.
    YAML::Node whole_k, whole_v;
    if (found && rest.find('.') != std::string_view::npos && at.IsMap() &&
        find_key(at, std::string(rest), whole_k, whole_v)) {
      p.path = join_path(p.path, std::string(rest));
      mark = whole_v.IsNull() ? whole_k.Mark() : whole_v.Mark();
      break;
    }
    size_t dot = rest.find('.');
    std::string part(rest.substr(0, dot));
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    // A list's items are named by index, as schema problems name them: rules[2].pattern (a
    // scalar stands for a one-item list).
    bool index = !part.empty() && part.size() < 10 &&
                 part.find_first_not_of("0123456789") == std::string::npos &&
                 !(found && at.IsMap());
    p.path = index ? index_path(p.path, std::stoul(part)) : join_path(p.path, part);
    if (!found) continue;
    YAML::Node k, v;
    if (index && at.IsSequence() && std::stoul(part) < at.size()) {
      v = static_cast<const YAML::Node &>(at)[std::stoul(part)];  // const: never inserts
      mark = v.Mark();
    } else if (!index && find_key(at, part, k, v)) {
      // A null's own mark may be on the next line: point at its key.
      mark = v.IsNull() ? k.Mark() : v.Mark();
    } else {
      found = false;  // a default, or a part the plugin made up: the deepest place found
      continue;
    }
    at.reset(v);  // rebinds (operator= would write v into the config's own tree)
  }
  if (!mark.is_null() && mark.line >= 0) {
    p.line = mark.line + 1;  // yaml-cpp counts from 0
    p.col = mark.column + 1;
  }
  return p;
}

void bind_config(const dm_config &cfg, void *dst) {
  auto *base = static_cast<char *>(dst);
  for (const dm_option *opt : cfg.options) {
    if (!opt || !opt->key || !(opt->flags & DM_OPT_BIND)) continue;
    auto it = cfg.values.find(opt->key);
    if (it == cfg.values.end()) continue;  // no value, no default: the field keeps its own
    const OptionValue &v = it->second;
    char *field = base + opt->offset;
    // memcpy: the plugin's struct promises no alignment beyond its own layout.
    auto put = [field](const auto &value) { std::memcpy(field, &value, sizeof value); };
    switch (opt->type) {
      case DM_OPT_STRING:
      case DM_OPT_PATH:  // resolved against the file's directory when read
        put(v.text.c_str());
        break;
      case DM_OPT_INT:
      case DM_OPT_DURATION:
      case DM_OPT_SIZE:
        put(v.integer);
        break;
      case DM_OPT_DOUBLE:
        put(v.number);
        break;
      case DM_OPT_BOOL:
        put(static_cast<int>(v.integer != 0));
        break;
      case DM_OPT_LIST:
      case DM_OPT_MAP: {
        dm_strings s{};
        s.items = v.item_views.empty() ? nullptr : v.item_views.data();
        s.keys = opt->type == DM_OPT_MAP && !v.key_views.empty() ? v.key_views.data() : nullptr;
        s.count = static_cast<uint32_t>(v.item_views.size());
        put(s);
        break;
      }
    }
  }
}

}  // namespace devmesh
