// Checks of the whole pipeline (see pipeline_checks.h): each finds what one entry's validation
// cannot, and names the place in the file (FILE:LINE:COL: path) of the entry or option at fault.
#include "pipeline_checks.h"

#include <fnmatch.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "http_server_impl.h"
#include "log.h"
#include "state_paths.h"

namespace devmesh {
namespace {

// The same matching as the engine's routing (tag_matches in pipeline.cpp).
bool matches(const std::string &pattern, const std::string &tag) {
  return fnmatch(pattern.c_str(), tag.c_str(), 0) == 0;
}

const OptionValue *value_of(const dm_config &cfg, const char *key) {
  auto it = cfg.values.find(key);
  return it == cfg.values.end() ? nullptr : &it->second;
}

// "pipeline.outputs[0].path (line 7)": how a second problem points back at the first place.
std::string back_reference(const Problem &p) {
  return p.path + (p.line > 0 ? " (line " + std::to_string(p.line) + ")" : "");
}

struct Checks {
  const PipelineConfig &cfg;
  const std::vector<InstanceView> &instances;
  const Problems &earlier;
  PipelineCheckResult &out;

  // One problem per option: a plugin (or the schema) may have reported it already.
  bool reported(const std::string &path) const {
    for (const auto *list : {&earlier.list(), &out.problems.list()}) {
      for (const Problem &p : *list)
        if (p.path == path) return true;
    }
    return false;
  }

  void warn(const Problem &p) { out.warnings.push_back(warning_str(p)); }

  // ---- where the records go ----------------------------------------------------------------

  void topology() {
    if (cfg.inputs.empty()) {
      Problem p;
      p.file = cfg.file;
      if (!cfg.pipeline_mark.is_null() && cfg.pipeline_mark.line >= 0) {
        p.line = cfg.pipeline_mark.line + 1;
        p.col = cfg.pipeline_mark.column + 1;
      }
      p.path = "pipeline";
      p.message = "there is no input: no record will flow through this pipeline";
      warn(p);
      return;
    }
    std::vector<std::string> tags;
    for (const InstanceView &v : instances)
      if (v.section == "inputs") tags.push_back(v.tag);
    // An input whose entry is invalid has no known tag: its problem is reported already, and
    // a warning about what it would have reached would only mislead.
    if (tags.size() != cfg.inputs.size()) return;
    std::string tag_list;
    for (const std::string &t : std::set<std::string>(tags.begin(), tags.end()))
      tag_list += (tag_list.empty() ? "'" : ", '") + t + "'";
    for (const InstanceView &v : instances) {
      if (v.section == "inputs" || !v.cfg) continue;
      bool reached = false;
      for (const std::string &t : tags) reached = reached || matches(v.match, t);
      if (reached) continue;
      Problem p = plugin_problem(*v.cfg, "match", "");
      p.message = "'" + v.match + "' matches no input's tag (" + tag_list + "): this " +
                  (v.section == "filters" ? "filter sees" : "output receives") + " no record";
      warn(p);
    }
  }

  // ---- flushes in flight -------------------------------------------------------------------

  // A worker thread blocks in its flush: a second flush per worker would only wait in line
  // (and hold records back from merging), so in_flight is for outputs on the loop.
  void in_flight() {
    for (const InstanceView &v : instances) {
      if (v.section != "outputs" || !v.cfg || !v.desc || !(v.desc->flags & DM_FLUSH_ON_WORKER))
        continue;
      const OptionValue *val = value_of(*v.cfg, "in_flight");
      if (!val || val->integer <= 1) continue;
      Problem here = plugin_problem(*v.cfg, "in_flight", "");
      if (reported(here.path)) continue;
      here.message = "'" + std::string(v.desc->name) +
                     "' flushes on worker threads, one flush each: raise workers instead";
      out.problems.add(std::move(here));
    }
  }

  // ---- files with one writer ---------------------------------------------------------------

  void exclusive_files() {
    std::map<std::string, Problem> writers;  // resolved path -> the first option naming it
    for (const InstanceView &v : instances) {
      for (const dm_option *o : v.cfg->options) {
        if (!o || !o->key || !(o->flags & DM_OPT_EXCLUSIVE)) continue;
        const OptionValue *val = value_of(*v.cfg, o->key);
        if (!val || val->text.empty()) continue;
        Problem here = plugin_problem(*v.cfg, o->key, "");
        auto [it, first] = writers.emplace(val->text, here);
        if (first || reported(here.path)) continue;
        here.message = val->text + " is also written by " + back_reference(it->second) +
                       ": two writers on one file corrupt it; give each its own file";
        out.problems.add(std::move(here));
      }
    }
  }

  // ---- addresses ---------------------------------------------------------------------------

  void addresses(const std::set<std::string> &listening) {
    std::map<std::string, Problem> bound;   // canonical address -> first option naming it
    std::map<std::string, Problem> served;  // "address path" -> first route serving it
    auto route = [&](const std::string &key, const std::string &path, Problem here) {
      auto [it, first] = served.emplace(key + " " + path, here);
      if (first || reported(here.path)) return;
      here.message = key + " " + path + " is also served by " + back_reference(it->second) +
                     ": give each its own listen address or path";
      out.problems.add(std::move(here));
    };
    const ServiceConfig &s = cfg.service;
    if (!s.http_listen.empty()) {
      http_internal::ListenAddress a;
      std::string error;
      if (http_internal::parse_listen(s.http_listen, a, error)) {
        Problem here;
        here.file = cfg.file;
        if (!s.http_listen_mark.is_null() && s.http_listen_mark.line >= 0) {
          here.line = s.http_listen_mark.line + 1;
          here.col = s.http_listen_mark.column + 1;
        }
        here.path = "service.http_listen";
        HttpServer::Tls tls{s.tls_cert, s.tls_key, s.tls_ca, s.tls_min_version};
        std::string tls_error;
        if (!HttpServer::check_tls(tls, tls_error)) {
          Problem p = here;
          p.path = "service.tls";
          p.message = tls_error;
          out.problems.add(p);
        }
        bound.emplace(a.key, here);
        route(a.key, "/health", here);
        route(a.key, "/metrics", here);
      }
    }
    for (const InstanceView &v : instances) {
      const dm_option *route_opt = nullptr;
      for (const dm_option *o : v.cfg->options)
        if (o && o->key && (o->flags & DM_OPT_ROUTE) && value_of(*v.cfg, o->key)) route_opt = o;
      for (const dm_option *o : v.cfg->options) {
        if (!o || !o->key || !(o->flags & DM_OPT_LISTEN)) continue;
        const OptionValue *val = value_of(*v.cfg, o->key);
        http_internal::ListenAddress a;
        std::string error;
        // A malformed address is the plugin's to report (it parses it in create()).
        if (!val || !http_internal::parse_listen(val->text, a, error)) continue;
        bound.emplace(a.key, plugin_problem(*v.cfg, o->key, ""));
        if (route_opt)
          route(a.key, value_of(*v.cfg, route_opt->key)->text,
                plugin_problem(*v.cfg, route_opt->key, ""));
      }
    }
    // TLS files that do not load (missing, unreadable, a key not matching its certificate)
    // are found here, not at start, so --dry-run and a reload report them.
    for (const InstanceView &v : instances) {
      const OptionValue *cert = value_of(*v.cfg, "tls.cert");
      if (!cert || cert->text.empty()) continue;
      HttpServer::Tls tls;
      tls.cert = cert->text;
      if (const OptionValue *k = value_of(*v.cfg, "tls.key")) tls.key = k->text;
      if (const OptionValue *c = value_of(*v.cfg, "tls.ca")) tls.ca = c->text;
      if (const OptionValue *m = value_of(*v.cfg, "tls.min_version")) tls.min_version = m->text;
      std::string error;
      if (HttpServer::check_tls(tls, error)) continue;
      Problem here = plugin_problem(*v.cfg, "tls.cert", "");
      if (reported(here.path)) continue;
      here.message = error;
      out.problems.add(here);
    }
    for (auto &[key, here] : bound) {
      if (listening.count(key) || reported(here.path)) continue;
      std::string error;
      if (HttpServer::can_bind(key, error)) continue;
      here.message = error + " (another process serves there?)";
      out.in_use.add(here);
    }
  }

  // ---- directories written -----------------------------------------------------------------

  // dir (MAKES_DIR) or the directory of file (MAKES_PARENT) at `where`, the option `path`.
  void directory(const std::string &value, bool is_file, Problem here) {
    if (reported(here.path)) return;
    std::string error, note;
    const bool ok = is_file ? prepare_file_path(value, false, error, note)
                            : prepare_directory(value, false, error, note);
    std::string where = here.str();
    where.resize(where.size() - 2);  // without the ": " before the (empty) message
    if (!ok) {
      here.message = error;
      out.problems.add(std::move(here));
      return;
    }
    if (!note.empty()) out.notes.push_back(where + ": " + note);
    struct stat st;
    const bool special = is_file && stat(value.c_str(), &st) == 0 && !S_ISREG(st.st_mode);
    if (!special) out.make_dirs.push_back({is_file ? parent_dir(value) : value, where});
  }

  void directories() {
    const ServiceConfig &s = cfg.service;
    if (!s.storage_path.empty()) {
      Problem here;
      here.file = cfg.file;
      if (!s.storage_path_mark.is_null() && s.storage_path_mark.line >= 0) {
        here.line = s.storage_path_mark.line + 1;
        here.col = s.storage_path_mark.column + 1;
      }
      here.path = "service.storage.path";
      directory(s.storage_path, false, here);
    }
    for (const InstanceView &v : instances) {
      for (const dm_option *o : v.cfg->options) {
        if (!o || !o->key || !(o->flags & (DM_OPT_MAKES_DIR | DM_OPT_MAKES_PARENT))) continue;
        const OptionValue *val = value_of(*v.cfg, o->key);
        if (!val) continue;
        Problem here = plugin_problem(*v.cfg, o->key, "");
        if (val->text.empty()) {
          if (!reported(here.path)) {
            here.message = "must not be empty";
            out.problems.add(std::move(here));
          }
          continue;
        }
        directory(val->text, (o->flags & DM_OPT_MAKES_DIR) == 0, here);
      }
    }
  }
};

}  // namespace

void check_pipeline(const PipelineConfig &cfg, const std::vector<InstanceView> &instances,
                    const std::set<std::string> &listening, const Problems &earlier,
                    PipelineCheckResult &out) {
  std::vector<InstanceView> valid;  // every view has its validated config
  for (const InstanceView &v : instances)
    if (v.cfg) valid.push_back(v);
  Checks c{cfg, valid, earlier, out};
  c.topology();
  c.exclusive_files();
  c.in_flight();
  c.addresses(listening);
  c.directories();
}

std::string warning_str(const Problem &p) {
  std::string s = p.file;
  if (p.line > 0) s += ":" + std::to_string(p.line) + ":" + std::to_string(p.col);
  return s + ": warning: " + p.path + ": " + p.message;
}

bool make_directories(const std::vector<DirectoryToMake> &dirs) {
  bool ok = true;
  std::set<std::string> done;
  for (const DirectoryToMake &d : dirs) {
    if (!done.insert(d.dir).second) continue;
    std::string error, note;
    if (!prepare_directory(d.dir, true, error, note)) {
      log_msg(DM_LOG_ERROR, nullptr, "%s: %s", d.where.c_str(), error.c_str());
      ok = false;
    } else if (!note.empty()) {
      log_msg(DM_LOG_INFO, nullptr, "%s: %s", d.where.c_str(), note.c_str());
    }
  }
  return ok;
}

}  // namespace devmesh
