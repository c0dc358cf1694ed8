// The pipeline file's shape: reading it within bounds, YAML syntax, duplicate keys and
// ${VAR} expansion over the document, the service section, and the three plugin sections as
// lists of entries each with a name. Problems found in a config file are printed from here too.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <set>
#include <tuple>

#include <yaml-cpp/depthguard.h>

#include "config_detail.h"

namespace devmesh {

namespace {

using namespace config_detail;

namespace fs = std::filesystem;

// Bounds on what a config file may make the loader do. A real pipeline file is a few KiB, a
// few hundred nodes, under ten levels deep; these are far above that and far below harm.
constexpr size_t kMaxFileBytes = 4 << 20;
constexpr size_t kMaxNodes = 200000;            // nodes visited, aliases expanded (billion laughs)
constexpr size_t kMaxDepth = 100;               // nesting of mappings and sequences
constexpr size_t kMaxExpandedBytes = 16 << 20;  // all values after expansion

bool parse_yaml(const std::string &text, const std::string &file, YAML::Node &root,
                Problems &problems) {
  try {
    root = YAML::Load(text);
    return true;
  } catch (const YAML::DeepRecursion &e) {
    problems.add(file, e.mark, "",
                 "invalid YAML: nested deeper than " + std::to_string(e.depth() - 1) + " levels");
  } catch (const YAML::Exception &e) {
    problems.add(file, e.mark, "", "invalid YAML: " + e.msg);
  } catch (const std::exception &e) {
    problems.add(file, YAML::Mark::null_mark(), "", std::string("invalid YAML: ") + e.what());
  }
  return false;
}

// The state of one walk over the document.
struct Walk {
  Walk(const std::string &f, Problems &p) : file(f), problems(p) {}
  const std::string &file;
  Problems &problems;
  std::set<int> done;               // positions of scalars already expanded
  std::vector<YAML::Node> parents;  // the containers above the current node
  size_t nodes = 0;                 // nodes visited, counting each alias expansion
  size_t expanded_bytes = 0;
  bool refused = false;  // a bound was passed: the walk stops, the file is refused
};

// Walks the whole tree once: expands ${VAR} in every scalar value in place (marks stay those of
// the original text) and reports duplicate mapping keys. `done` holds the positions of scalars
// already expanded: an alias shares its anchor's node and must not be expanded twice.
// `parents` are the containers above `node`; an alias back to one of them is a cycle.
// yaml-cpp shares an anchor's node among its aliases, so the document itself stays small; it
// is this walk (and every later one) that would visit 10^9 nodes of a "billion laughs" file:
// it counts what it visits and refuses the file past kMaxNodes.
void expand_tree(YAML::Node node, const std::string &path, Walk &w) {
  if (w.refused) return;
  if (++w.nodes > kMaxNodes) {
    w.problems.add(w.file, node.Mark(), path,
                   "the document expands to more than " + std::to_string(kMaxNodes) +
                       " nodes through aliases (anchors reused inside each other?): refused");
    w.refused = true;
    return;
  }
  if (node.IsSequence() || node.IsMap()) {
    if (w.parents.size() >= kMaxDepth) {
      w.problems.add(w.file, node.Mark(), path,
                     "nested deeper than " + std::to_string(kMaxDepth) + " levels: refused");
      w.refused = true;
      return;
    }
    for (const auto &p : w.parents) {
      if (p.is(node)) {
        w.problems.add(w.file, node.Mark(), path, "contains itself through an alias");
        return;
      }
    }
  }
  if (node.IsScalar()) {
    const std::string &text = node.Scalar();
    if (text.find('$') == std::string::npos) return;
    int pos = node.Mark().pos;
    if (pos >= 0 && !w.done.insert(pos).second) return;
    std::string out, error;
    if (expand_env(text, out, error)) {
      w.expanded_bytes += out.size();
      if (w.expanded_bytes > kMaxExpandedBytes) {
        w.problems.add(w.file, node.Mark(), path,
                       "the values expand to more than " + std::to_string(kMaxExpandedBytes >> 20) +
                           " MiB in all: refused");
        w.refused = true;
        return;
      }
      node = out;
    } else {
      w.problems.add(w.file, node.Mark(), path, error);
      node.SetTag(kUnexpandedTag);
    }
  } else if (node.IsSequence()) {
    w.parents.push_back(node);
    for (size_t i = 0; i < node.size() && !w.refused; ++i) {
      expand_tree(node[i], index_path(path, i), w);
    }
    w.parents.pop_back();
  } else if (node.IsMap()) {
    w.parents.push_back(node);
    std::map<std::string, int> seen;  // key -> 1-based line of its first use
    for (auto it = node.begin(); it != node.end() && !w.refused; ++it) {
      std::string key = key_text(it->first);
      auto [first, fresh] = seen.emplace(key, it->first.Mark().line + 1);
      if (!fresh) {
        w.problems.add(w.file, it->first.Mark(), join_path(path, key),
                       "duplicate key '" + key + "' (first on line " +
                           std::to_string(first->second) + "; the first one is used)");
        continue;
      }
      expand_tree(it->second, join_path(path, key), w);
    }
    w.parents.pop_back();
  }
}

// ---- the file's shape ----------------------------------------------------------------------

std::string directory_of(const std::string &file) {
  std::error_code ec;
  fs::path parent = fs::path(file).parent_path();
  fs::path dir = parent.empty() ? fs::current_path(ec) : fs::absolute(parent, ec);
  if (ec) return parent.empty() ? "." : parent.string();
  return dir.lexically_normal().string();
}

const char *const kLogLevels[] = {"error", "warn", "info", "debug", nullptr};

// The service section, declared with the same schema type plugins use.
const dm_option kServiceOptions[] = {
    {"flush_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "200ms", 1, 3600000, nullptr,
     "how often inputs' partial batches are flushed", 0},
    {"grace", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 0, 86400000, nullptr,
     "how long shutdown waits for in-flight batches", 0},
    {"log_level", DM_OPT_STRING, 0, "info", 0, 0, kLogLevels, "engine log verbosity", 0},
    {"plugins_dir", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr,
     "directories searched for plugins (relative to the config file)", 0},
    {"http_listen", DM_OPT_STRING, DM_OPT_LISTEN, nullptr, 0, 0, nullptr,
     "address of the engine endpoint", 0},
    {"http_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr,
     "when set, GET /metrics and POST /reload on http_listen need 'Authorization: Bearer "
     "<token>' (GET /health stays open for probes); use ${ENV}; a reload applies a new one",
     0},
    {"tls.cert", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "serve http_listen over TLS with this PEM certificate chain (with tls.key)", 0},
    {"tls.key", DM_OPT_PATH, DM_OPT_SECRET, nullptr, 0, 0, nullptr, "PEM private key of tls.cert",
     0},
    {"tls.ca", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "PEM CA bundle: clients of http_listen must present a certificate it signed (mutual TLS)", 0},
    {"tls.min_version", DM_OPT_STRING, 0, "1.2", 0, 0, dm_tls_versions,
     "lowest TLS version accepted on http_listen", 0},
    {"exit_when_done", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "exit once every input finished and all is acknowledged", 0},
    // 5s: a filter handles a batch in micro- to milliseconds, so 5s is no slow batch but a
    // stuck one; it is logged well before clients (30s) and systemd (WatchdogSec) give up.
    {"watchdog", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 0, 3600000, nullptr,
     "a plugin call on the event loop running longer than this is logged as a stall, counted "
     "and shown in /health (0: off)",
     0},
    {"watchdog_flush", DM_OPT_DURATION, DM_OPT_BOUNDED, "60s", 0, 86400000, nullptr,
     "the same bound for an output's flush on its worker thread (databases may be slow; 0: off)",
     0},
};

const char *const kSyncPolicies[] = {"always", "interval", "never", nullptr};
const char *const kWhenFull[] = {"pause", "drop_oldest", nullptr};

const dm_option kStorageOptions[] = {
    {"path", DM_OPT_PATH, DM_OPT_REQUIRED | DM_OPT_MAKES_DIR, nullptr, 0, 0, nullptr,
     "directory of the segment files (relative to the config file); one devmesh per directory", 0},
    {"sync", DM_OPT_STRING, 0, "interval", 0, 0, kSyncPolicies,
     "when appended blocks are fsynced (and STORED acks sent): always (group commit after each "
     "write), interval (every sync_interval), never (left to the OS)",
     0},
    {"sync_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "1s", 1, 3600000, nullptr,
     "fsync period with sync: interval", 0},
    {"max_size", DM_OPT_SIZE, DM_OPT_BOUNDED, nullptr, 1 << 20, 9.0e18, nullptr,
     "disk space the segment files may use (unbounded when unset); see when_full", 0},
    {"when_full", DM_OPT_STRING, 0, "pause", 0, 0, kWhenFull,
     "at max_size: pause every input (journald stops reading, http answers 503), or drop the "
     "oldest segment (each undelivered record counted)",
     0},
    {"segment_size", DM_OPT_SIZE, DM_OPT_BOUNDED, "8MiB", 64 << 10, 1 << 30, nullptr,
     "segment files rotate at this size (at most max_size/4, so whole segments can be freed)", 0},
};

template <size_t N>
Schema schema_of(const dm_option (&options)[N], std::vector<std::string> skip = {}) {
  Schema s;
  for (const dm_option &o : options) s.options.push_back(&o);
  s.skip = std::move(skip);
  return s;
}

void load_service(const YAML::Node &key, const YAML::Node &node, PipelineConfig &out,
                  Checker &check) {
  std::map<std::string, OptionValue, std::less<>> v;
  check.mapping(node, key.Mark(), "service", schema_of(kServiceOptions, {"storage"}), v);
  ServiceConfig &s = out.service;
  if (v.count("flush_interval")) s.flush_interval_ms = v["flush_interval"].integer;
  if (v.count("grace")) s.grace_ms = v["grace"].integer;
  if (v.count("log_level")) s.log_level = v["log_level"].text;
  if (v.count("plugins_dir")) {
    for (const auto &d : v["plugins_dir"].items) s.plugins_dir.push_back(resolve_path(out.dir, d));
  }
  if (v.count("http_listen")) {
    s.http_listen = v["http_listen"].text;
    YAML::Node lk, lv;
    if (find_key(node, "http_listen", lk, lv)) s.http_listen_mark = lv.Mark();
  }
  // tls.* are DM_OPT_PATH: validation made them absolute already.
  if (v.count("tls.cert")) s.tls_cert = v["tls.cert"].text;
  if (v.count("tls.key")) s.tls_key = v["tls.key"].text;
  if (v.count("tls.ca")) s.tls_ca = v["tls.ca"].text;
  if (v.count("tls.min_version")) s.tls_min_version = v["tls.min_version"].text;
  if (v.count("http_token")) {
    s.http_token = v["http_token"].text;
    YAML::Node tk, tv;
    if (s.http_token.empty() && find_key(node, "http_token", tk, tv))
      check.add(tv.Mark(), "service.http_token", "must not be empty (leave it out for none)");
  }
  if (v.count("exit_when_done")) s.exit_when_done = v["exit_when_done"].integer != 0;
  if (v.count("watchdog")) s.watchdog_ms = v["watchdog"].integer;
  if (v.count("watchdog_flush")) s.watchdog_flush_ms = v["watchdog_flush"].integer;

  YAML::Node storage_key, storage;
  if (!find_key(node, "storage", storage_key, storage)) return;
  std::map<std::string, OptionValue, std::less<>> st;
  check.mapping(storage, storage_key.Mark(), "service.storage", schema_of(kStorageOptions), st);
  if (st.count("path")) {
    YAML::Node pk, pv;
    find_key(storage, "path", pk, pv);
    if (st["path"].text.empty()) {
      check.add(pv.Mark(), "service.storage.path", "must not be empty");
    } else {
      // Resolved by the checker; whether it can be made is a whole-pipeline check
      // (pipeline_checks.cpp), so --dry-run and a start report it alike.
      s.storage_path = st["path"].text;
      s.storage_path_mark = pv.Mark();
    }
  }
  if (st.count("sync")) s.storage_sync = st["sync"].text;
  if (st.count("sync_interval")) s.storage_sync_interval_ms = st["sync_interval"].integer;
  if (st.count("max_size")) s.storage_max_size = st["max_size"].integer;
  if (st.count("when_full")) s.storage_when_full = st["when_full"].text;
  if (st.count("segment_size")) s.storage_segment_size = st["segment_size"].integer;
}

// Reads one of name/alias/path: a non-empty string when present.
bool entry_string(const YAML::Node &entry, const char *key, const std::string &where,
                  Checker &check, std::string &out) {
  YAML::Node k, v;
  if (!find_key(entry, key, k, v)) return false;
  if (unexpanded(v)) return false;
  std::string path = join_path(where, key);
  if (v.IsNull()) {
    check.add(k.Mark(), path, "has no value");  // a null's own mark may be on the next line
    return false;
  }
  if (!v.IsScalar()) {
    check.add(v.Mark(), path, std::string("must be a string, not ") + node_kind(v));
    return false;
  }
  if (v.Scalar().empty()) {
    check.add(v.Mark(), path, "must not be empty");
    return false;
  }
  out = v.Scalar();
  return true;
}

// `name: null` is the null output, as Fluent Bit users write it; YAML reads the word as "no
// value", so the file's text tells `null` (or `~`) written out from a key left empty.
bool written_null(const YAML::Node &value, std::string_view text) {
  if (!value.IsNull() || value.Mark().pos < 0) return false;
  const std::string_view at = text.substr(std::min(text.size(), size_t(value.Mark().pos)));
  for (std::string_view word : {"null", "Null", "NULL", "~"}) {
    if (at.substr(0, word.size()) != word) continue;
    const std::string_view rest = at.substr(word.size());
    if (rest.empty() || std::string_view(" \t\r\n,}#").find(rest[0]) != std::string_view::npos)
      return true;
  }
  return false;
}

void load_section(const std::string &section, const YAML::Node &node, PipelineConfig &out,
                  std::map<std::string, std::string> &aliases, Checker &check,
                  std::string_view text) {
  std::string path = "pipeline." + section;
  if (node.IsNull()) return;  // `inputs:` with nothing under it
  if (!node.IsSequence()) {
    check.add(
        node.Mark(), path,
        std::string("must be a list of plugin entries (- name: ...), not ") + node_kind(node));
    return;
  }
  auto &list = section == "inputs" ? out.inputs : section == "filters" ? out.filters : out.outputs;
  for (size_t i = 0; i < node.size(); ++i) {
    YAML::Node item = node[i];
    PluginEntry e;
    e.section = section;
    e.index = static_cast<int>(i);
    e.node = item;
    std::string where = e.where();
    if (!item.IsMap()) {
      check.add(item.Mark(), where,
                std::string("must be a mapping with at least a 'name' (- name: stdout), not ") +
                    node_kind(item));
      continue;
    }
    YAML::Node name_key, name_value;
    bool named = false;
    if (!find_key(item, "name", name_key, name_value)) {
      check.add(item.Mark(), where, "missing required key 'name'");
    } else if (written_null(name_value, text)) {
      e.name = "null";
      named = true;
    } else {
      named = entry_string(item, "name", where, check, e.name);
    }
    if (entry_string(item, "alias", where, check, e.alias)) {
      auto [it, fresh] = aliases.emplace(e.alias, where);
      if (!fresh) {
        YAML::Node k, v;
        find_key(item, "alias", k, v);
        check.add(v.Mark(), join_path(where, "alias"),
                  "alias '" + e.alias + "' is already used by " + it->second);
      }
    }
    if (entry_string(item, "plugin_path", where, check, e.path))
      e.path = resolve_path(out.dir, e.path);
    // Without a name there is no plugin to validate the rest against: leave the entry out.
    if (named) list.push_back(std::move(e));
  }
}

void load_pipeline_section(const YAML::Node &node, PipelineConfig &out, Checker &check,
                           std::string_view text) {
  if (node.IsNull()) return;
  if (!node.IsMap()) {
    check.add(
        node.Mark(), "pipeline",
        std::string("must be a mapping with inputs, filters and outputs, not ") + node_kind(node));
    return;
  }
  static const std::vector<std::string> sections = {"inputs", "filters", "outputs"};
  std::map<std::string, std::string> aliases;
  std::set<std::string> seen;
  for (const auto &kv : node) {
    std::string k = key_text(kv.first);
    if (!seen.insert(k).second) continue;  // duplicate: already reported
    if (std::find(sections.begin(), sections.end(), k) == sections.end()) {
      check.add(kv.first.Mark(), join_path("pipeline", k), unknown_key_message(k, sections));
      continue;
    }
    load_section(k, kv.second, out, aliases, check, text);
  }
}

// The whole file: syntax, env expansion, then the shape of each section.
void load_root(const std::string &text, const std::string &file, PipelineConfig &out,
               Problems &problems) {
  if (text.size() > kMaxFileBytes) {
    problems.add(file, YAML::Mark::null_mark(), "",
                 "the file has " + std::to_string(text.size()) +
                     " bytes or more; a pipeline file " + "may have at most " +
                     std::to_string(kMaxFileBytes >> 20) + " MiB");
    return;
  }
  YAML::Node root;
  if (!parse_yaml(text, file, root, problems)) return;
  Walk walk{file, problems};
  expand_tree(root, "", walk);
  if (walk.refused) return;  // every later pass would walk the same expansion

  Checker check{file, problems, out.dir};
  if (root.IsNull()) {
    check.add(YAML::Mark::null_mark(), "", "the file is empty: expected 'pipeline:'");
    return;
  }
  if (!root.IsMap()) {
    check.add(
        root.Mark(), "",
        std::string("must be a mapping with 'service' and 'pipeline', not ") + node_kind(root));
    return;
  }
  static const std::vector<std::string> top = {"service", "pipeline"};
  std::set<std::string> seen;
  for (const auto &kv : root) {
    std::string k = key_text(kv.first);
    if (!seen.insert(k).second) continue;  // duplicate: already reported
    if (k == "service") {
      load_service(kv.first, kv.second, out, check);
    } else if (k == "pipeline") {
      out.pipeline_mark = kv.first.Mark();
      load_pipeline_section(kv.second, out, check, text);
    } else {
      check.add(kv.first.Mark(), k, unknown_key_message(k, top));
    }
  }
  if (!seen.count("pipeline")) {
    check.add(YAML::Mark::null_mark(), "", "missing required key 'pipeline'");
  }
}

}  // namespace

// ---- problems ------------------------------------------------------------------------------

std::string Problem::str() const {
  std::string r = file;
  if (line > 0) r += ":" + std::to_string(line) + ":" + std::to_string(col);
  if (!r.empty()) r += ": ";
  if (!path.empty()) r += path + ": ";
  return r + message;
}

void Problems::add(std::string file, const YAML::Mark &mark, std::string path,
                   std::string message) {
  Problem p;
  p.file = std::move(file);
  if (!mark.is_null() && mark.line >= 0) {
    p.line = mark.line + 1;  // yaml-cpp counts from 0
    p.col = mark.column + 1;
  }
  p.path = std::move(path);
  p.message = std::move(message);
  list_.push_back(std::move(p));
}

std::string Problems::str() const {
  std::string r;
  for (const auto &p : list_) r += p.str() + "\n";
  return r;
}

std::string PluginEntry::where() const {
  return "pipeline." + section + "[" + std::to_string(index) + "]";
}

// ---- loading -------------------------------------------------------------------------------

bool load_pipeline(const std::string &file, PipelineConfig &out, Problems &problems) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    int err = errno;
    out = PipelineConfig{};
    out.file = file;
    out.dir = directory_of(file);
    problems.add(file, YAML::Mark::null_mark(), "",
                 std::string("cannot read the file: ") + std::strerror(err));
    return false;
  }
  // Read at most one byte past the bound: /dev/zero or a huge file is refused, not read.
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return load_pipeline_text(text, file, out, problems);
}

bool load_pipeline_text(const std::string &text, const std::string &file, PipelineConfig &out,
                        Problems &problems) {
  Problems found;
  try {
    out = PipelineConfig{};
    out.file = file;
    out.dir = directory_of(file);
    load_root(text, file, out, found);
  } catch (const std::exception &e) {
    // yaml-cpp conversions and filesystem calls may throw; never let it escape.
    found.add(file, YAML::Mark::null_mark(), "", std::string("internal error: ") + e.what());
  }
  append_in_order(found, problems);
  return found.empty();
}

}  // namespace devmesh
