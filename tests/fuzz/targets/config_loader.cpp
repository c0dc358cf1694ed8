// Fuzz target: the YAML pipeline loader (engine/src/config.*) and the validation of every entry
// against the schema of a real plugin (the .so files of this build) plus the engine's keys;
// every value of an entry that validates is then read back through the host table.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "config.h"
#include "engine.h"
#include "engine_options.h"
#include "plugin_loader.h"

namespace {

struct Schemas {
  devmesh::PluginLoader loader{devmesh::Engine::host_api(), {DEVMESH_PLUGIN_DIR}};
  std::vector<const devmesh::LoadedPlugin *> by_kind[3];  // input, filter, output

  Schemas() {
    // ${DM_FUZZ_SET} expands, ${DM_FUZZ_UNSET} is the unset-variable problem.
    setenv("DM_FUZZ_SET", "127.0.0.1:8000", 1);
    unsetenv("DM_FUZZ_UNSET");
    for (const std::string &file : loader.available()) {
      const std::string name = std::filesystem::path(file).stem().string();
      std::string error;
      const devmesh::LoadedPlugin *p = loader.load(name, "", error);
      if (p && p->desc.kind >= DM_INPUT && p->desc.kind <= DM_OUTPUT)
        by_kind[p->desc.kind - DM_INPUT].push_back(p);
    }
    for (const auto &kind : by_kind) {
      if (kind.empty()) {
        std::fprintf(stderr, "fuzz config_loader: no plugins of every kind in %s\n",
                     DEVMESH_PLUGIN_DIR);
        std::abort();
      }
    }
  }

  // The plugin the entry names, or (unknown names) one picked by the name: every entry is
  // validated against some real schema.
  const devmesh::LoadedPlugin *pick(const devmesh::PluginEntry &e) const {
    const auto &list = by_kind[e.section == "inputs" ? 0 : e.section == "filters" ? 1 : 2];
    for (const auto *p : list)
      if (e.name == p->desc.name) return p;
    return list[std::hash<std::string>()(e.name) % list.size()];
  }
};

const Schemas &schemas() {
  static const Schemas s;
  return s;
}

void read_back(const dm_config *cfg, const std::vector<const dm_option *> &opts) {
  const dm_host_api *h = devmesh::Engine::host_api();
  volatile size_t sink = 0;  // keeps the reads
  for (const dm_option *o : opts) {
    if (!h->config_has(cfg, o->key)) {
      if (o->flags & DM_OPT_REQUIRED) std::abort();  // validation let a required key through
      continue;
    }
    switch (o->type) {
      case DM_OPT_STRING:
      case DM_OPT_PATH: {
        const dm_str s = h->config_string(cfg, o->key);
        if (s.ptr[s.len] != '\0') std::abort();  // promised NUL-terminated
        sink = sink + s.len;
        break;
      }
      case DM_OPT_INT:
      case DM_OPT_DURATION:
      case DM_OPT_SIZE: {
        const int64_t v = h->config_int(cfg, o->key);
        if ((o->flags & DM_OPT_BOUNDED) &&
            (static_cast<double>(v) < o->min || static_cast<double>(v) > o->max)) {
          std::fprintf(stderr, "%s = %lld is out of its bounds\n", o->key,
                       static_cast<long long>(v));
          std::abort();
        }
        sink = sink + static_cast<size_t>(v);
        break;
      }
      case DM_OPT_DOUBLE:
        sink = sink + static_cast<size_t>(h->config_double(cfg, o->key) != 0);
        break;
      case DM_OPT_BOOL:
        sink = sink + static_cast<size_t>(h->config_bool(cfg, o->key));
        break;
      case DM_OPT_LIST:
      case DM_OPT_MAP: {
        const uint32_t n = h->config_count(cfg, o->key);
        for (uint32_t i = 0; i <= n; ++i) {  // one past the end too: must be harmless
          sink = sink + h->config_item(cfg, o->key, i).len;
          if (o->type == DM_OPT_MAP) sink = sink + h->config_map_key(cfg, o->key, i).len;
        }
        break;
      }
      default:
        break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0;  // a config file, not a data set
  const Schemas &s = schemas();
  const std::string text(reinterpret_cast<const char *>(data), size);
  devmesh::PipelineConfig cfg;
  devmesh::Problems problems;
  if (!devmesh::load_pipeline_text(text, "fuzz.yaml", cfg, problems)) {
    if (problems.empty()) std::abort();  // a refusal names its problem
    (void)problems.str();
    return 0;
  }
  for (const auto *section : {&cfg.inputs, &cfg.filters, &cfg.outputs}) {
    for (const devmesh::PluginEntry &e : *section) {
      const devmesh::LoadedPlugin *p = s.pick(e);
      std::vector<const dm_option *> opts;
      for (uint32_t i = 0; i < p->desc.option_count; ++i) opts.push_back(&p->desc.options[i]);
      for (const dm_option &o : devmesh::engine_options(e.section)) opts.push_back(&o);
      devmesh::Problems entry_problems;
      auto config = devmesh::validate_entry(cfg, e, opts, entry_problems);
      if (!config) {
        if (entry_problems.empty()) std::abort();
        (void)entry_problems.str();
        continue;
      }
      read_back(config.get(), opts);
    }
  }
  return 0;
}
