// devmesh command line: run a pipeline, validate it (--dry-run), list or describe plugins,
// version.
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "config.h"
#include "crash_report.h"
#include "engine.h"
#include "engine_options.h"
#include "log.h"
#include "pipeline_checks.h"

using namespace devmesh;

static void usage(FILE *to) {
  fprintf(to,
          "usage: devmesh -c FILE            run the pipeline in FILE\n"
          "       devmesh --dry-run -c FILE  load every plugin, validate everything, exit 0 or 1\n"
          "       devmesh --describe NAME [-c FILE]  print a plugin's options\n"
          "       devmesh --list [-c FILE]   print the plugins found: name, kind, version, file\n"
          "       devmesh --version\n");
}

static const char *type_name(dm_opt_type t) {
  switch (t) {
    case DM_OPT_STRING:
      return "string";
    case DM_OPT_INT:
      return "integer";
    case DM_OPT_DOUBLE:
      return "number";
    case DM_OPT_BOOL:
      return "bool";
    case DM_OPT_DURATION:
      return "duration";
    case DM_OPT_SIZE:
      return "size";
    case DM_OPT_LIST:
      return "list";
    case DM_OPT_MAP:
      return "map";
    case DM_OPT_PATH:
      return "path";
  }
  return "?";
}

static std::string bound(double v, dm_opt_type t) {
  char b[64];
  snprintf(b, sizeof b, "%.15g%s", v, t == DM_OPT_DURATION ? "ms" : t == DM_OPT_SIZE ? "B" : "");
  return b;
}

static void print_option(const dm_option &o) {
  printf("  %-18s %-8s", o.key, type_name(o.type));
  if (o.flags & DM_OPT_REQUIRED) printf(" required");
  if (o.default_value)
    printf(" default %s", (o.flags & DM_OPT_SECRET) ? "(secret)" : o.default_value);
  if (o.flags & DM_OPT_BOUNDED)
    printf(" [%s..%s]", bound(o.min, o.type).c_str(), bound(o.max, o.type).c_str());
  if (o.allowed) {
    printf(" one of:");
    for (const char *const *a = o.allowed; *a; a++) printf(" %s", *a);
  }
  if (o.flags & DM_OPT_SECRET) printf(" secret");
  if (o.type == DM_OPT_PATH) printf(" (relative to the config file)");
  if (o.flags & (DM_OPT_MAKES_DIR | DM_OPT_MAKES_PARENT)) printf(" (directory made at start)");
  if (o.flags & DM_OPT_EXCLUSIVE) printf(" (one writer per file)");
  printf("\n      %s\n", o.description ? o.description : "");
}

// The service section of config_file (plugins_dir), or the defaults without one; false after
// printing its problems.
static bool service_of(const std::string &config_file, PipelineConfig &cfg) {
  if (config_file.empty()) return true;
  Problems problems;
  if (load_pipeline(config_file, cfg, problems)) return true;
  fprintf(stderr, "%s\n", problems.str().c_str());
  return false;
}

// Every plugin in the search path load() builds (plugins_dir, or the default directories), one
// line each; a file that does not load says why in place of its kind and version.
static int list_plugins(const std::string &config_file) {
  PipelineConfig cfg;
  if (!service_of(config_file, cfg)) return 1;
  Engine engine(cfg);
  Problems problems;
  std::vector<std::string> errors;
  engine.load(problems, errors, false);  // only to set up the loader's search path
  for (const std::string &name : engine.loader().available()) {
    std::string err;
    const LoadedPlugin *p = engine.loader().load(name, "", err);
    if (!p) {
      printf("%-16s (not loadable: %s)\n", name.c_str(), err.c_str());
      continue;
    }
    printf("%-16s %-7s %-10s %s\n", p->desc.name, kind_name(p->desc.kind),
           p->desc.version ? p->desc.version : "?", p->file.c_str());
  }
  return 0;
}

static int describe(const std::string &name, const std::string &config_file) {
  PipelineConfig cfg;
  if (!service_of(config_file, cfg)) return 1;
  Engine engine(cfg);
  Problems problems;
  std::vector<std::string> errors;
  engine.load(problems, errors, false);  // only to set up the loader's search path
  std::string err;
  const LoadedPlugin *p = engine.loader().load(name, "", err);
  if (!p) {
    fprintf(stderr, "devmesh: %s\n", err.c_str());
    auto avail = engine.loader().available();
    if (!avail.empty()) {
      fprintf(stderr, "available:");
      for (auto &a : avail) fprintf(stderr, " %s", a.c_str());
      fprintf(stderr, "\n");
    }
    return 1;
  }
  const dm_plugin &d = p->desc;
  printf("%s (%s plugin, version %s, ABI %u.%u)\n  %s\n  file: %s\n\noptions:\n", d.name,
         kind_name(d.kind), d.version ? d.version : "?", d.abi_major, d.abi_minor,
         d.description ? d.description : "", p->file.c_str());
  for (uint32_t i = 0; i < d.option_count; i++) print_option(d.options[i]);
  std::string section = d.kind == DM_INPUT ? "inputs" : d.kind == DM_FILTER ? "filters" : "outputs";
  printf("\nengine options for every %s:\n", kind_name(d.kind));
  for (const dm_option &o : engine_options(section)) print_option(o);
  return 0;
}

int main(int argc, char **argv) {
  install_crash_report();  // before any plugin code runs: create() may crash too
  static option long_opts[] = {{"config", required_argument, nullptr, 'c'},
                               {"dry-run", no_argument, nullptr, 'n'},
                               {"describe", required_argument, nullptr, 'd'},
                               {"version", no_argument, nullptr, 'V'},
                               {"help", no_argument, nullptr, 'h'},
                               {"list", no_argument, nullptr, 'l'},
                               {nullptr, 0, nullptr, 0}};
  std::string config_file, describe_name;
  bool dry_run = false, list = false;
  int c;
  while ((c = getopt_long(argc, argv, "c:nd:Vh", long_opts, nullptr)) != -1) {
    switch (c) {
      case 'c':
        config_file = optarg;
        break;
      case 'n':
        dry_run = true;
        break;
      case 'd':
        describe_name = optarg;
        break;
      case 'l':
        list = true;
        break;
      case 'V':
        printf("devmesh %s (plugin ABI %d.%d)\n", DEVMESH_VERSION, DM_ABI_MAJOR, DM_ABI_MINOR);
        return 0;
      case 'h':
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "devmesh: unexpected argument '%s'\n", argv[optind]);
    usage(stderr);
    return 2;
  }
  if (!describe_name.empty()) return describe(describe_name, config_file);
  if (list) return list_plugins(config_file);
  if (config_file.empty()) {
    usage(stderr);
    return 2;
  }

  PipelineConfig cfg;
  Problems problems;
  if (!load_pipeline(config_file, cfg, problems)) {
    fprintf(stderr, "%s\n", problems.str().c_str());
    fprintf(stderr, "devmesh: %zu problem%s in %s\n", problems.size(),
            problems.size() == 1 ? "" : "s", config_file.c_str());
    return 1;
  }
  dm_log_level lvl;
  if (parse_log_level(cfg.service.log_level, lvl)) set_log_level(lvl);

  Engine engine(cfg);
  std::vector<std::string> errors;
  bool ok = engine.load(problems, errors, true);
  std::vector<std::string> warnings = engine.warnings();
  for (const Problem &p : engine.addresses_in_use().list()) {
    if (!dry_run) {
      problems.add(p);  // the bind would fail: refused here, with its place
      ok = false;
    } else {
      Problem w = p;
      w.message += "; a start would fail while it is in use";
      warnings.push_back(warning_str(w));
    }
  }
  if (!ok) {
    if (!problems.empty()) fprintf(stderr, "%s\n", problems.str().c_str());
    for (auto &e : errors) fprintf(stderr, "%s\n", e.c_str());
    for (auto &w : warnings) fprintf(stderr, "%s\n", w.c_str());
    size_t n = problems.size() + errors.size();
    fprintf(stderr, "devmesh: %zu problem%s in %s\n", n, n == 1 ? "" : "s", config_file.c_str());
    return 1;
  }
  if (dry_run) {
    for (auto &w : warnings) fprintf(stderr, "%s\n", w.c_str());
    for (auto &n : engine.notes()) printf("%s\n", n.c_str());
    printf("%s: configuration OK\n", config_file.c_str());
    return 0;
  }
  return engine.run();
}
