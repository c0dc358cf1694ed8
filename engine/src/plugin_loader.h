// Finds plugin .so files, dlopen()s them and checks their descriptor before anything runs.
#pragma once

#include <devmesh/plugin.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace devmesh {

struct LoadedPlugin {
  std::string file;  // resolved path
  dm_plugin desc{};  // copied; fields past the plugin's struct_size are zero
};

class PluginLoader {
 public:
  PluginLoader(const dm_host_api *host, std::vector<std::string> search_dirs)
      : host_(host), dirs_(std::move(search_dirs)) {}
  // Loads plugin `name` from `explicit_path` (when not empty) or the search dirs. On failure
  // returns nullptr and sets error to a complete sentence naming the file(s) and versions.
  // Plugins are never unloaded: their code may run until the process exits.
  const LoadedPlugin *load(const std::string &name, const std::string &explicit_path,
                           std::string &error);
  const std::vector<std::string> &dirs() const { return dirs_; }
  std::vector<const LoadedPlugin *> loaded() const;
  // Every *.so found in the search dirs (for --describe listings).
  std::vector<std::string> available() const;

 private:
  const LoadedPlugin *open_file(const std::string &file, std::string &error);
  const dm_host_api *host_;
  std::vector<std::string> dirs_;
  std::map<std::string, std::unique_ptr<LoadedPlugin>> by_file_;  // realpath -> plugin
  std::map<std::string, const LoadedPlugin *> by_name_;           // plugin name -> plugin
};

const char *kind_name(dm_plugin_kind kind);                 // "input", "filter", "output"
const char *section_kind_name(const std::string &section);  // "inputs" -> "input"

}  // namespace devmesh
