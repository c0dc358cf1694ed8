// Pipeline configuration, the engine's view: the YAML file's shape (config_file.cpp), environment
// expansion (config_env.cpp), value parsing (config_values.cpp) and validation of each plugin
// entry against a dm_option schema (config_schema.cpp).
#pragma once

#include <devmesh/plugin.h>
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh {

// One problem found in a config file, reported as FILE:LINE:COL: PATH: MESSAGE.
struct Problem {
  std::string file;
  int line = 0;      // 1-based; 0 when unknown
  int col = 0;       // 1-based
  std::string path;  // e.g. pipeline.outputs[1].batch_size
  std::string message;
  std::string str() const;
};

// Every problem is collected; the caller reports them all at once.
class Problems {
 public:
  void add(std::string file, const YAML::Mark &mark, std::string path, std::string message);
  void add(Problem p) { list_.push_back(std::move(p)); }
  bool empty() const { return list_.empty(); }
  size_t size() const { return list_.size(); }
  const std::vector<Problem> &list() const { return list_; }
  std::string str() const;  // one problem per line

 private:
  std::vector<Problem> list_;
};

// Appends `found` to `problems` in file order (problems without a line first), so a report
// reads top to bottom although the checks run in several passes.
void append_in_order(const Problems &found, Problems &problems);

// A validated option value.
struct OptionValue {
  dm_opt_type type = DM_OPT_STRING;
  std::string text;                // the (expanded) scalar text; for STRING the value itself
  int64_t integer = 0;             // INT, DURATION (ms), SIZE (bytes), BOOL (0/1)
  double number = 0;               // DOUBLE, and INT/DURATION/SIZE as double
  std::vector<std::string> items;  // LIST
  std::vector<std::pair<std::string, std::string>> entries;  // MAP, in file order
  // LIST items (MAP values) and MAP keys as views, what config_bind hands a plugin in a
  // dm_strings; set by validate_entry once the value has its final place in dm_config.
  std::vector<dm_str> item_views, key_views;
};

}  // namespace devmesh

// The engine's side of the opaque dm_config handle: the values of one plugin instance after
// validation, defaults applied. Keys absent from `values` are unset.
struct dm_config {
  std::map<std::string, devmesh::OptionValue, std::less<>> values;
  // The schema the values were checked against (the plugin's options, then the engine's):
  // config_bind writes the DM_OPT_BIND ones.
  std::vector<const dm_option *> options;
  // Where the values came from, so a problem the plugin finds gets its place in the file.
  std::string file;
  std::string where;  // pipeline.filters[1]
  YAML::Node node;    // the entry's mapping
  // Problems the plugin reported through config_error, in the order reported.
  std::vector<devmesh::Problem> problems;
};

namespace devmesh {

// One entry of pipeline.inputs / filters / outputs.
struct PluginEntry {
  std::string section;        // "inputs", "filters" or "outputs"
  int index = 0;              // position in its section
  std::string name;           // plugin name (required)
  std::string alias;          // optional
  std::string path;           // optional explicit .so file (the entry's plugin_path: key)
  YAML::Node node;            // the entry's mapping (for schema validation, marks)
  std::string where() const;  // "pipeline.outputs[1]"
};

struct ServiceConfig {
  int64_t flush_interval_ms = 200;
  int64_t grace_ms = 5000;
  std::string log_level = "info";
  std::vector<std::string> plugins_dir;  // searched in order
  std::string http_listen;               // empty: no engine HTTP endpoint
  bool exit_when_done = false;           // exit once every input finished and all is acked
  int64_t watchdog_ms = 5000;            // a plugin call on the loop longer than this is a stall
  int64_t watchdog_flush_ms = 60000;     // the same for a flush on an output's worker thread
  // service.tls.*: TLS on http_listen (cert empty: plain HTTP); paths resolved
  std::string tls_cert, tls_key, tls_ca, tls_min_version = "1.2";
  // service.http_token: Bearer token /metrics and /reload need (empty: none); a reload applies
  // a new one
  std::string http_token;
  // service.storage: disk-backed queues (off while storage_path is empty)
  std::string storage_path;
  std::string storage_sync = "interval";  // always | interval | never
  int64_t storage_sync_interval_ms = 1000;
  int64_t storage_max_size = 0;             // 0: unbounded
  std::string storage_when_full = "pause";  // pause | drop_oldest
  int64_t storage_segment_size = 8 << 20;
  // Where http_listen and storage.path were written, for the whole-pipeline checks' problems.
  YAML::Mark http_listen_mark = YAML::Mark::null_mark();
  YAML::Mark storage_path_mark = YAML::Mark::null_mark();
};

struct PipelineConfig {
  std::string file;  // path as given
  std::string dir;   // absolute directory of the file: every DM_OPT_PATH value (and
                     // plugins_dir, plugin_path) written relative resolves against it
  ServiceConfig service;
  std::vector<PluginEntry> inputs, filters, outputs;
  YAML::Mark pipeline_mark = YAML::Mark::null_mark();  // the `pipeline` key, for its problems
};

// Reads and checks the file's shape: YAML syntax, `service:` keys and types, the three
// sections as sequences of mappings each with a `name`. ${VAR} / ${VAR:-default} are expanded
// in every scalar (an unset variable without default is a problem naming it). Returns false
// when problems were added.
bool load_pipeline(const std::string &file, PipelineConfig &out, Problems &problems);
// Same, from text (tests, fuzzing); `file` only names it in problems.
bool load_pipeline_text(const std::string &text, const std::string &file, PipelineConfig &out,
                        Problems &problems);

// Validates entry.node's keys against `options` (the plugin's schema followed by the engine's
// keys for that section): unknown key (with a "did you mean" when close), wrong type, out of
// bounds, not allowed, missing required. Applies defaults. Returns nullptr when problems were
// added.
std::unique_ptr<dm_config> validate_entry(const PipelineConfig &cfg, const PluginEntry &entry,
                                          const std::vector<const dm_option *> &options,
                                          Problems &problems);

// A problem a plugin found in its configuration (config_error), placed in the file: `key` is an
// option, or a dotted path into its value ("rules.2.pattern"), or null for the whole entry. The
// place is the deepest part of the path present in the file (the entry's for a default).
Problem plugin_problem(const dm_config &cfg, const char *key, std::string message);

// Writes every DM_OPT_BIND option's value at dst + offset (see dm_option in plugin.h); options
// without a value are left alone.
void bind_config(const dm_config &cfg, void *dst);

// Parses one scalar as `type` into out; on failure returns false with a message such as
// "must be a duration like 200ms, 5s, 1m, 7d".
bool parse_value(dm_opt_type type, const std::string &text, OptionValue &out, std::string &error);
bool parse_duration_ms(std::string_view text, int64_t &ms);  // 200ms 5s 1m 2h 7d; bare = ms
bool parse_size(std::string_view text, int64_t &bytes);      // 4096 64KiB 10MB 1GiB 512k

// Expands ${VAR} and ${VAR:-default}; on an unset variable without default returns false and
// names it in `error`. `$$` is a literal dollar.
bool expand_env(std::string_view in, std::string &out, std::string &error);

}  // namespace devmesh
