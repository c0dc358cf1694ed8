// journald's configuration: its options, and the checks that turn them into Settings (a
// problem is thrown, naming the option, before anything is opened).
#include "journald_config.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>

namespace devmesh::journald {
namespace {

const char *const kReadFrom[] = {"head", "tail", nullptr};

const dm_option kOptions[] = {
    {"path", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr,
     "journal directory to read (e.g. one written by systemd-journal-remote); default: the local "
     "system journal",
     0},
    {"files", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr,
     "journal files to read, instead of a directory", 0},
    {"units", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr,
     "only entries of these systemd units (_SYSTEMD_UNIT); a name without a suffix gets .service",
     0},
    {"matches", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr,
     "sd-journal matches FIELD=value: matches on different fields must all hold, several values "
     "of one field are alternatives, an item '+' separates alternative groups (as journalctl)",
     0},
    {"read_from", DM_OPT_STRING, 0, "head", 0, 0, kReadFrom,
     "where to start when there is no saved position: head (the oldest entry) or tail (only "
     "entries written from now on)",
     0},
    {"follow", DM_OPT_BOOL, 0, "true", 0, 0, nullptr,
     "keep reading new entries; false reads to the end, then the input finishes (with "
     "service.exit_when_done the engine exits once everything is delivered)",
     0},
    {"state_file", DM_OPT_PATH, DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE, nullptr, 0, 0, nullptr,
     "file keeping the cursor of the newest entry that it and every earlier one were delivered; "
     "a restart resumes after it. Without it every start begins at read_from",
     0},
    {"checkpoint_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "1s", 0, 3600000, nullptr,
     "at most one state file write per interval (and one at shutdown); 0 writes after every "
     "acknowledgement. After a crash the re-read overlap is the unacknowledged entries plus up "
     "to one interval of acknowledged ones, with the same event_ids",
     0},
    {"host", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "host field of every record; default: the entry's _HOSTNAME", 0},
    {"fields", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr,
     "more journal fields copied into meta, keyed by the field name in lower case without "
     "leading underscores (_SYSTEMD_CGROUP becomes systemd_cgroup)",
     0},
    {"batch", DM_OPT_INT, DM_OPT_BOUNDED, "1024", 1, 100000, nullptr,
     "most entries per submitted batch (fewer when their fields pass 2 MiB); the reader thread "
     "reads up to 8 batches ahead of the pipeline",
     0},
    {"max_field_size", DM_OPT_SIZE, DM_OPT_BOUNDED, "1MiB", 0, 1073741824, nullptr,
     "longest field returned, NAME= included; a longer one is cut to it (sd-journal cuts "
     "compressed fields itself, uncompressed ones are cut here alike) and counted in "
     "journald_fields_truncated_total; 0: no limit",
     0},
    {"remap_after", DM_OPT_SIZE, DM_OPT_BOUNDED, "32MiB", 0, 1099511627776.0, nullptr,
     "re-open the journal after reading about this much of it: sd-journal keeps up to 512 MiB "
     "of journal files mapped, all of it counted as resident memory; 0: never",
     0},
};

bool valid_field_name(std::string_view n) {
  if (n.empty() || n.size() > 64 || (n[0] >= '0' && n[0] <= '9')) return false;
  for (char c : n)
    if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}

// _SYSTEMD_CGROUP -> systemd_cgroup: the style of the built-in meta keys (pid, comm, boot_id).
std::string meta_key_of(std::string_view field) {
  while (!field.empty() && field[0] == '_') field.remove_prefix(1);
  std::string k(field);
  for (char &c : k) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return k;
}

}  // namespace

const dm_option *options() {
  return kOptions;
}

uint32_t option_count() {
  return static_cast<uint32_t>(std::size(kOptions));
}

Settings read_settings(const dm_host_api *host, const dm_config *cfg, ConfigProblems &problems) {
  Settings s;
  Config c{host, cfg};
  if (c.has("path") && c.has("files"))
    problems.add("files", "path and files: set one of them, not both");
  if (c.has("path")) {
    s.path = c.string("path");
    struct stat st;
    if (s.path.empty())
      problems.add("path", "empty");
    else if (::stat(s.path.c_str(), &st) != 0)
      problems.add("path", s.path + ": " + errno_text(errno));
    else if (!S_ISDIR(st.st_mode))
      problems.add("path", s.path + " is not a directory (use files: for journal files)");
    s.source = "directory " + s.path;
  } else if (c.has("files")) {
    for (uint32_t i = 0, n = c.count("files"); i < n; ++i) {
      std::string f = c.item("files", i);
      struct stat st;
      if (::stat(f.c_str(), &st) != 0)
        problems.add("files." + std::to_string(i), f + ": " + errno_text(errno));
      else if (!S_ISREG(st.st_mode))
        problems.add("files." + std::to_string(i), f + " is not a regular file");
      s.files.push_back(std::move(f));
    }
    if (s.files.empty()) problems.add("files", "the list is empty");
    s.source = std::to_string(s.files.size()) + " journal file(s)";
  } else {
    s.source = "the local system journal";
  }

  for (uint32_t i = 0, n = c.count("units"); i < n; ++i) {
    std::string u = c.item("units", i);
    if (u.empty() || u.find_first_of("=/ \t\n") != std::string::npos)
      problems.add("units." + std::to_string(i), "'" + u + "' is not a unit name");
    if (u.find('.') == std::string::npos) u += ".service";
    s.matches.push_back("_SYSTEMD_UNIT=" + u);
  }
  // Units are alternatives of one field; matches on other fields narrow them down. A '+' in
  // matches starts a new alternative group, as in journalctl.
  for (uint32_t i = 0, n = c.count("matches"); i < n; ++i) {
    std::string m = c.item("matches", i);
    const size_t eq = m.find('=');
    if (m == "+") {
      if (s.matches.empty() || s.matches.back() == "+" || i + 1 == n)
        problems.add("matches." + std::to_string(i),
                     "'+' must stand between two groups of matches");
    } else if (eq == std::string::npos || !valid_field_name(std::string_view(m).substr(0, eq))) {
      problems.add("matches." + std::to_string(i),
                   "'" + m + "' is not FIELD=value (FIELD of A-Z, 0-9 and _)");
    }
    s.matches.push_back(std::move(m));
  }
  for (uint32_t i = 0, n = c.count("fields"); i < n; ++i) {
    std::string f = c.item("fields", i);
    if (!valid_field_name(f))
      problems.add("fields." + std::to_string(i),
                   "'" + f + "' is not a journal field name (A-Z, 0-9 and _)");
    s.extras.push_back(ExtraField{f + "=", meta_key_of(f)});
  }

  const std::string read_from = c.string("read_from");
  if (read_from != "head" && read_from != "tail")
    problems.add("read_from", "must be head or tail, not '" + read_from + "'");
  s.from_tail = read_from == "tail";
  s.follow = c.boolean("follow");
  if (c.has("host")) {
    s.host_override = c.string("host");
    s.has_host_override = true;
  }
  s.batch = static_cast<uint32_t>(std::clamp<int64_t>(c.integer("batch"), 1, 100000));
  s.checkpoint_ms = static_cast<uint64_t>(std::max<int64_t>(0, c.integer("checkpoint_interval")));
  s.data_threshold = static_cast<size_t>(std::max<int64_t>(0, c.integer("max_field_size")));
  s.remap_after = static_cast<uint64_t>(std::max<int64_t>(0, c.integer("remap_after")));

  if (c.has("state_file")) {
    const std::string p = c.string("state_file");
    if (p.empty()) problems.add("state_file", "empty");
    const size_t slash = p.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : p.substr(0, slash);
    // A missing directory is created at start (like the stores' data directories); here
    // only check that it can be: its nearest existing ancestor is a writable directory.
    std::string probe = dir;
    struct stat st;
    while (::stat(probe.c_str(), &st) != 0 && errno == ENOENT && probe != "/" && probe != ".") {
      const size_t up = probe.rfind('/');
      probe = up == std::string::npos ? "." : up == 0 ? "/" : probe.substr(0, up);
    }
    if (::stat(probe.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      problems.add("state_file", probe + " is not a directory");
    else if (::access(probe.c_str(), W_OK) != 0)
      problems.add("state_file", "directory " + probe + " is not writable");
    s.state_dir = dir;
    s.state_file = p;
  }
  return s;
}

}  // namespace devmesh::journald
