// Replaces a small state file so that a crash at any point leaves either the old or the new
// contents, never a mix: write a temporary beside it, fsync, rename over, fsync the directory.
// For the plugins' checkpoints and saved state (journald's cursor, the patterns' templates).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>

namespace devmesh {

// 0, or the errno of the step that failed (the old file is then intact).
inline int write_file_atomically(const std::string &path, std::string_view text) {
  const std::string tmp = path + ".tmp";
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  const char *p = text.data();
  size_t n = text.size();
  while (n && !err) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0)
      err = errno;
    else if (w == 0)
      err = EIO;
    else {
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    return err;
  }
  // The rename is durable only once the directory is.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno;
  if (::fsync(dfd) != 0) err = errno;
  ::close(dfd);
  return err;
}

}  // namespace devmesh
