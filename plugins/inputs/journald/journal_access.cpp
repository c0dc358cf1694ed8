// Whether the journal the input reads has files it may read (see journal_access.hpp): the
// journal files of a directory and of its machine-id subdirectories, each tried with access().
#include "journal_access.hpp"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string_view>
#include <vector>

namespace devmesh::journald {
namespace {

bool is_journal_file(std::string_view name) {
  return name.ends_with(".journal") || name.ends_with(".journal~");
}

struct Scan {
  unsigned files = 0, unreadable = 0;
  std::string example;  // the first path we may not read, with why

  void denied(const std::string &path, int err) {
    ++unreadable;
    if (example.empty()) example = path + ": " + strerror(err);
  }

  // The journal files of dir; at depth 0 also those of its subdirectories (only `only_sub`
  // when it is set: the local machine's).
  void directory(const std::string &dir, int depth, const std::string &only_sub) {
    DIR *d = opendir(dir.c_str());
    if (!d) {
      if (errno == EACCES || errno == EPERM) denied(dir, errno);
      return;
    }
    std::vector<std::string> subs;
    while (dirent *e = readdir(d)) {
      const std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = dir + "/" + std::string(name);
      struct stat st;
      if (::stat(path.c_str(), &st) != 0) continue;
      if (S_ISDIR(st.st_mode)) {
        if (depth == 0 && (only_sub.empty() || name == only_sub)) subs.push_back(path);
      } else if (S_ISREG(st.st_mode) && is_journal_file(name)) {
        ++files;
        if (::access(path.c_str(), R_OK) != 0) denied(path, errno);
      }
    }
    closedir(d);
    for (const std::string &s : subs) directory(s, depth + 1, only_sub);
  }
};

std::string machine_id() {
  std::ifstream f("/etc/machine-id");
  std::string id;
  std::getline(f, id);
  return id.size() == 32 ? id : "";
}

// Who we run as, and whether the systemd-journal group is ours: what an operator needs to
// give this process the system journal.
std::string permission_hint() {
  const uid_t uid = geteuid();
  const passwd *pw = getpwuid(uid);
  const std::string user = pw ? pw->pw_name : std::to_string(uid);
  const std::string who = "user '" + user + "' (uid " + std::to_string(uid) + ")";
  const group *g = getgrnam("systemd-journal");
  if (!g) return "no systemd-journal group exists here; " + who + " needs read access to them";
  bool member = getegid() == g->gr_gid;
  const int n = getgroups(0, nullptr);
  std::vector<gid_t> groups(n > 0 ? static_cast<size_t>(n) : 0);
  if (n > 0 && getgroups(n, groups.data()) == n)
    for (gid_t gid : groups) member = member || gid == g->gr_gid;
  if (member)
    return who +
           " is in the systemd-journal group, yet may not read them: check their mode and "
           "ACLs";
  return "devmesh runs as " + who +
         ", which is not in the systemd-journal group: add it (usermod -aG systemd-journal " +
         user + ") and restart devmesh";
}

}  // namespace

JournalAccess check_journal_access(const Settings &s) {
  JournalAccess a;
  if (!s.files.empty()) return a;
  Scan scan;
  std::string where;
  if (!s.path.empty()) {
    scan.directory(s.path, 0, "");
    where = "directory " + s.path;
  } else {
    // SD_JOURNAL_LOCAL_ONLY: this machine's subdirectory (journal-remote's others are not read).
    const std::string id = machine_id();
    scan.directory("/run/log/journal", 0, id);
    scan.directory("/var/log/journal", 0, id);
    where = "the system journal (/run/log/journal, /var/log/journal)";
  }
  a.files = scan.files;
  a.unreadable = scan.unreadable;
  if (scan.unreadable > 0) {
    a.problem = JournalAccess::kPermission;
    a.reason = "may not read " + std::to_string(scan.unreadable) +
               " journal file(s) or directories in " + where + " (" + scan.example +
               "): " + permission_hint();
  } else if (scan.files == 0) {
    a.problem = JournalAccess::kNoFiles;
    a.reason = "no journal files in " + where +
               (s.path.empty() ? " (journald keeps none: Storage=none, or not running?)"
                               : " (yet): nothing to read until one appears");
  }
  return a;
}

}  // namespace devmesh::journald
