// Plugin loading: search, dlopen(RTLD_NOW|RTLD_LOCAL), and the ABI checks that refuse a
// plugin before any of its callbacks run.
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "config_detail.h"

namespace devmesh {

const char *kind_name(dm_plugin_kind kind) {
  switch (kind) {
    case DM_INPUT:
      return "input";
    case DM_FILTER:
      return "filter";
    case DM_OUTPUT:
      return "output";
  }
  return "unknown";
}

const char *section_kind_name(const std::string &section) {
  if (section == "inputs") return "input";
  if (section == "filters") return "filter";
  return "output";
}

static bool file_exists(const std::string &p) {
  return access(p.c_str(), F_OK) == 0;
}

const LoadedPlugin *PluginLoader::load(const std::string &name, const std::string &explicit_path,
                                       std::string &error) {
  std::string file;
  if (!explicit_path.empty()) {
    if (!file_exists(explicit_path)) {
      error = "plugin '" + name + "': file not found: " + explicit_path;
      return nullptr;
    }
    file = explicit_path;
  } else {
    if (name.find('/') != std::string::npos || name.find("..") != std::string::npos) {
      error = "plugin name '" + name + "' is not a plain name (use path: for a file)";
      return nullptr;
    }
    std::string looked;
    for (const auto &d : dirs_) {
      std::string candidate = d + "/" + name + ".so";
      if (file_exists(candidate)) {
        file = candidate;
        break;
      }
      looked += (looked.empty() ? "" : ", ") + candidate;
    }
    if (file.empty()) {
      error = "plugin '" + name + "' not found";
      const std::string near = config_detail::closest(name, available());
      if (!near.empty()) error += " (did you mean '" + near + "'?)";
      error += "; looked for " +
               (looked.empty() ? std::string("it in no directory (plugins_dir is empty)") : looked);
      return nullptr;
    }
  }
  const LoadedPlugin *p = open_file(file, error);
  if (!p) return nullptr;
  if (name != p->desc.name) {
    error =
        "plugin file " + p->file + " provides plugin '" + p->desc.name + "', not '" + name + "'";
    return nullptr;
  }
  return p;
}

const LoadedPlugin *PluginLoader::open_file(const std::string &file, std::string &error) {
  char real[PATH_MAX];
  std::string key = realpath(file.c_str(), real) ? real : file;
  if (auto it = by_file_.find(key); it != by_file_.end()) return it->second.get();

  void *h = dlopen(key.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    error = "cannot load plugin " + key + ": " + (e ? e : "unknown dlopen error");
    return nullptr;
  }
  auto entry = reinterpret_cast<dm_plugin_entry_fn>(dlsym(h, DM_ENTRY_SYMBOL));
  if (!entry) {
    error = key + " is not a devmesh plugin: it exports no " DM_ENTRY_SYMBOL " symbol";
    return nullptr;  // the handle is kept: dlclose of foreign code is never worth the risk
  }
  const dm_plugin *d = entry(host_);
  if (!d) {
    error = key + ": " DM_ENTRY_SYMBOL " returned no descriptor";
    return nullptr;
  }
  auto ver = [](uint32_t a, uint32_t b) { return std::to_string(a) + "." + std::to_string(b); };
  if (d->abi_major == 1) {
    // The one older major there is: say what changed, so its author knows what to do.
    error = key + " was built for plugin ABI " + ver(d->abi_major, d->abi_minor) +
            ", but this engine speaks ABI " + ver(DM_ABI_MAJOR, DM_ABI_MINOR) +
            ", which a 1.x plugin cannot use (meta values carry a type, meta_set takes it, "
            "options can bind to a config struct, config problems are reported with "
            "config_error): rebuild the plugin against devmesh's 2.0 SDK (find_package(devmesh) "
            "or pkg-config devmesh); README: \"Writing a plugin\" lists the changes";
    return nullptr;
  }
  if (d->abi_major != DM_ABI_MAJOR) {
    error = key + " was built for plugin ABI " + ver(d->abi_major, d->abi_minor) +
            ", but this engine speaks ABI " + ver(DM_ABI_MAJOR, DM_ABI_MINOR) +
            " (major versions must match): rebuild the plugin against this engine's plugin.h";
    return nullptr;
  }
  if (d->abi_minor > DM_ABI_MINOR) {
    error = key + " needs plugin ABI " + ver(d->abi_major, d->abi_minor) +
            ", newer than this engine's " + ver(DM_ABI_MAJOR, DM_ABI_MINOR) + ": upgrade devmesh";
    return nullptr;
  }
  if (d->struct_size < offsetof(dm_plugin, health)) {
    error = key + ": descriptor struct_size " + std::to_string(d->struct_size) +
            " is smaller than ABI " + ver(DM_ABI_MAJOR, 0) + " requires";
    return nullptr;
  }
  if (!d->name || !*d->name || !d->create || !d->destroy ||
      (d->kind != DM_INPUT && d->kind != DM_FILTER && d->kind != DM_OUTPUT)) {
    error = key + ": descriptor lacks a name, a valid kind, create or destroy";
    return nullptr;
  }
  if ((d->kind == DM_FILTER && !d->filter) || (d->kind == DM_OUTPUT && !d->flush)) {
    error = key + ": " + kind_name(d->kind) + " plugin without its " +
            (d->kind == DM_FILTER ? "filter" : "flush") + " callback";
    return nullptr;
  }
  if (auto it = by_name_.find(d->name); it != by_name_.end()) {
    error = "duplicate plugin name '" + std::string(d->name) + "': provided by both " +
            it->second->file + " and " + key;
    return nullptr;
  }
  auto lp = std::make_unique<LoadedPlugin>();
  lp->file = key;
  memcpy(&lp->desc, d, std::min<size_t>(d->struct_size, sizeof(dm_plugin)));
  const LoadedPlugin *out = lp.get();
  by_name_[d->name] = out;
  by_file_[key] = std::move(lp);
  return out;
}

std::vector<const LoadedPlugin *> PluginLoader::loaded() const {
  std::vector<const LoadedPlugin *> v;
  for (auto &[k, p] : by_file_) v.push_back(p.get());
  return v;
}

std::vector<std::string> PluginLoader::available() const {
  std::vector<std::string> names;
  for (const auto &d : dirs_) {
    DIR *dir = opendir(d.c_str());
    if (!dir) continue;
    while (dirent *e = readdir(dir)) {
      std::string n = e->d_name;
      if (n.size() > 3 && n.compare(n.size() - 3, 3, ".so") == 0) {
        n.resize(n.size() - 3);
        if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
      }
    }
    closedir(dir);
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace devmesh
