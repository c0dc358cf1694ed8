// Directories of the engine's state (see state_paths.h). A directory that cannot be written
// turns a start on a fresh node, or every permanent failure, into a surprise found only when it
// happens: so it is checked (dry run: could it be made?) or made before anything starts.
#include "state_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace devmesh {

std::string parent_dir(const std::string &path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

namespace {

// mkdir -p: every missing directory on the way, mode 0700 (the records may hold anything, and
// only the engine's own user needs them).
bool make_dirs(const std::string &dir, std::string &error) {
  for (size_t at = 1; at <= dir.size(); at++) {
    if (at != dir.size() && dir[at] != '/') continue;
    const std::string part = dir.substr(0, at);
    if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
      error = "cannot create directory " + part + ": " + strerror(errno);
      return false;
    }
  }
  return true;
}

}  // namespace

bool prepare_directory(const std::string &dir, bool create, std::string &error, std::string &note) {
  struct stat st;
  if (stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      error = "cannot use directory " + dir + ": " + strerror(errno);
      return false;
    }
    if (create) {
      if (!make_dirs(dir, error)) return false;
      note = "created directory " + dir;
      return true;
    }
    // Would mkdir -p succeed? The nearest existing ancestor must be a writable directory.
    std::string up = dir;
    do {
      up = parent_dir(up);
    } while (stat(up.c_str(), &st) != 0 && (errno == ENOENT || errno == ENOTDIR) && up != "/" &&
             up != ".");
    if (stat(up.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      error = "cannot create directory " + dir + ": " + up + " is not a directory";
      return false;
    }
    if (access(up.c_str(), W_OK | X_OK) != 0) {
      error = "cannot create directory " + dir + ": " + up + ": " + strerror(errno);
      return false;
    }
    note = "directory " + dir + " does not exist; it will be created at start (mode 0700)";
    return true;
  }
  if (!S_ISDIR(st.st_mode)) {
    error = dir + " is not a directory";
    return false;
  }
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    error = "cannot write in directory " + dir + ": " + strerror(errno);
    return false;
  }
  return true;
}

bool prepare_file_path(const std::string &path, bool create, std::string &error,
                       std::string &note) {
  if (path.back() == '/') {
    error = path + " names a directory; give a file name";
    return false;
  }
  struct stat st;
  const bool exists = stat(path.c_str(), &st) == 0;
  // A device or a named pipe (a stdout output writing to /dev/stderr) is opened as it is: its
  // directory (/dev) need not be writable. A regular file's may be (SQLite's -wal file).
  const bool special = exists && !S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode);
  if (!special && !prepare_directory(parent_dir(path), create, error, note)) return false;
  if (exists) {
    if (S_ISDIR(st.st_mode)) {
      error = path + " is a directory; give a file name";
      return false;
    }
    if (access(path.c_str(), W_OK) != 0) {
      error = "cannot write " + path + ": " + strerror(errno);
      return false;
    }
  }
  return true;
}

}  // namespace devmesh
