// A plugin's state file (journald's cursor, tail's offsets, the patterns' templates), replaced so
// that a crash at any point leaves either the old or the new contents, never a mix: write a
// temporary beside it, fsync, rename over, fsync the directory. Each write makes its own
// temporary (mkstemp, PATH.tmp.PID.XXXXXX): two StateFile objects for one path (the old and the
// new instance across a reload) each lock only themselves, and with one shared name could write
// into each other's temporary and rename a mix into place. The temporaries a crashed process
// left (another pid, no longer running) are removed at the first write: never this process's,
// which may be another instance's write under way. Writes carry a generation and
// an older one than the newest written is skipped, so a slow write on the thread pool never
// replaces a newer one (the final one made at shutdown). write_off_loop runs a write on the
// engine's thread pool: an fsync must not hold up the loop.
#pragma once

#include <devmesh/plugin.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>

#include <crash_point.hpp>

namespace devmesh {

class StateFile {
 public:
  explicit StateFile(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp.") {
    const size_t slash = path_.rfind('/');
    dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  }

  const std::string &path() const { return path_; }
  const std::string &dir() const { return dir_; }  // where path is; created by the plugin
  // What every temporary's name starts with (then the writer's pid, '.', 6 of mkstemp's).
  const std::string &temporary_prefix() const { return tmp_; }
  // Also the previous release's fixed "PATH.tmp" (removed at the first write).
  bool is_temporary(std::string_view name) const {
    return (name.size() > tmp_.size() && name.substr(0, tmp_.size()) == tmp_) ||
           name == std::string_view(tmp_).substr(0, tmp_.size() - 1);
  }

  // 0, or the errno of the step that failed (the old file is then still intact). A generation
  // not above the newest written is skipped (0): the file already holds something newer. Any
  // thread; writes are serialised.
  int write(std::string_view text, uint64_t generation) {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation <= written_) return 0;
    if (!swept_) sweep_crashed();
    std::string tmp = tmp_ + std::to_string(::getpid()) + ".XXXXXX";
    const int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
    if (fd < 0) return errno;
    // mkstemp makes it 0600; a state file stays as readable as before (0644) for the tools
    // that read one. (Reading the umask means setting it: process-wide, racing other threads.)
    if (::fchmod(fd, 0644) != 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    int err = write_all(fd, text.data(), text.size());
    if (!err && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && !err) err = errno;
    if (!err) DM_CRASH_POINT("during_state_write");
    if (!err && ::rename(tmp.c_str(), path_.c_str()) != 0) err = errno;
    if (err) {
      ::unlink(tmp.c_str());
      return err;
    }
    // The rename is durable only once the directory is.
    const int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return errno;
    if (::fsync(dfd) != 0) err = errno;
    ::close(dfd);
    if (!err) written_ = generation;
    return err;
  }

  // The generation of the newest write that succeeded (0 before any).
  uint64_t written() const {
    std::lock_guard<std::mutex> lock(mu_);
    return written_;
  }

 private:
  // Removes the temporaries of writers that are gone: a pid not this process's and not
  // running (a crash between mkstemp and rename). Under mu_.
  void sweep_crashed() {
    swept_ = true;
    DIR *d = ::opendir(dir_.c_str());
    if (d == nullptr) return;
    const size_t slash = tmp_.rfind('/');
    const std::string_view prefix = slash == std::string::npos
                                        ? std::string_view(tmp_)
                                        : std::string_view(tmp_).substr(slash + 1);
    // The previous release's fixed-name temporary ("PATH.tmp"), left by a crash: no writer of
    // this release makes it, and tail would otherwise read it as a log file.
    const std::string_view old_fixed = prefix.substr(0, prefix.size() - 1);
    while (const dirent *e = ::readdir(d)) {
      const std::string_view name = e->d_name;
      if (name == old_fixed) {
        ::unlinkat(::dirfd(d), e->d_name, 0);
        continue;
      }
      if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) continue;
      const std::string_view rest = name.substr(prefix.size());
      const size_t dot = rest.find('.');
      if (dot == 0 || dot == std::string_view::npos) continue;
      long pid = 0;
      for (char c : rest.substr(0, dot)) {
        if (c < '0' || c > '9' || pid > 1000000000) {
          pid = -1;
          break;
        }
        pid = pid * 10 + (c - '0');
      }
      if (pid <= 0 || pid == ::getpid()) continue;
      if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // still running
      ::unlinkat(::dirfd(d), e->d_name, 0);
    }
    ::closedir(d);
  }

  static int write_all(int fd, const char *p, size_t n) {
    while (n) {
      const ssize_t w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return errno;
      if (w == 0) return EIO;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return 0;
  }

  mutable std::mutex mu_;
  const std::string path_, tmp_;
  std::string dir_;
  uint64_t written_ = 0;  // guarded by mu_
  bool swept_ = false;    // guarded by mu_
};

// Writes text to file on the engine's thread pool, then calls done(err) on the loop; without a
// pool (queue_work refused), writes here and calls done before returning. The write holds the
// file, so it may finish after its plugin instance is gone: done must then find that out for
// itself (it is still called) and do nothing.
inline void write_off_loop(const dm_host_api *host, dm_instance *inst,
                           std::shared_ptr<StateFile> file, std::string text, uint64_t generation,
                           std::function<void(int err)> done) {
  struct Job {
    std::shared_ptr<StateFile> file;
    std::string text;
    uint64_t generation;
    std::function<void(int)> done;
    int err = 0;
    static void work(void *arg) {
      auto *j = static_cast<Job *>(arg);
      j->err = j->file->write(j->text, j->generation);
    }
    static void finish(void *arg) {
      std::unique_ptr<Job> j(static_cast<Job *>(arg));
      j->done(j->err);
    }
  };
  auto job =
      std::make_unique<Job>(Job{std::move(file), std::move(text), generation, std::move(done)});
  if (host->queue_work(inst, &Job::work, &Job::finish, job.get()) == DM_OK) {
    job.release();
    return;
  }
  Job::work(job.get());
  Job::finish(job.release());
}

}  // namespace devmesh
