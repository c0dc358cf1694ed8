// journald's state file: the cursor of the newest acknowledged entry, as a small JSON document
// replaced atomically (temp file, fsync, rename, fsync of the directory), and its parser.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>

#include <crash_point.hpp>

namespace devmesh::journald {

// What a state file says, or why it cannot be used.
struct SavedPosition {
  bool ok = false;
  std::string cursor;
  std::string problem;  // set when !ok: "missing", "empty", "truncated or not JSON", ...
};

inline std::string state_text(std::string_view cursor, uint64_t realtime_usec) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  w.StartObject();
  w.Key("version");
  w.Int(1);
  w.Key("cursor");
  w.String(cursor.data(), static_cast<rapidjson::SizeType>(cursor.size()));
  w.Key("realtime_usec");
  w.Uint64(realtime_usec);
  w.EndObject();
  out.Put('\n');
  return std::string(out.GetString(), out.GetSize());
}

inline SavedPosition parse_state(const std::string &path) {
  SavedPosition s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    s.problem = errno == ENOENT ? "missing" : std::string("unreadable: ") + strerror(errno);
    return s;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      s.problem = std::string("unreadable: ") + strerror(errno);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1u << 20)) break;  // a cursor is ~150 bytes: this is not our file
  }
  ::close(fd);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    s.problem = "empty";
    return s;
  }
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());  // no recursion per level
  if (d.HasParseError()) {
    s.problem = "truncated or not JSON";
    return s;
  }
  if (!d.IsObject() || !d.HasMember("cursor") || !d["cursor"].IsString() ||
      d["cursor"].GetStringLength() == 0) {
    s.problem = "without a \"cursor\" string";
    return s;
  }
  s.cursor.assign(d["cursor"].GetString(), d["cursor"].GetStringLength());
  s.ok = true;
  return s;
}

// Writes state files; shared between the loop thread and the thread pool. Every write carries
// a generation: a write older than the newest one written is skipped, so a slow background
// write can never replace the final one made at shutdown.
class StateWriter {
 public:
  explicit StateWriter(std::string path) : path_(std::move(path)), tmp_(path_ + ".tmp") {
    const size_t slash = path_.rfind('/');
    dir_ = slash == std::string::npos ? "." : slash == 0 ? "/" : path_.substr(0, slash);
  }

  const std::string &path() const { return path_; }

  // 0, or the errno of the step that failed (the old file is then still intact).
  int write(const std::string &text, uint64_t generation) {
    std::lock_guard<std::mutex> lock(mu_);
    if (generation <= written_) return 0;
    const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return errno;
    int err = write_all(fd, text.data(), text.size());
    if (!err && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && !err) err = errno;
    if (!err) DM_CRASH_POINT("during_state_write");
    if (!err && ::rename(tmp_.c_str(), path_.c_str()) != 0) err = errno;
    if (err) {
      ::unlink(tmp_.c_str());
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

 private:
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

  std::mutex mu_;
  const std::string path_, tmp_;
  std::string dir_;
  uint64_t written_ = 0;  // guarded by mu_
};

}  // namespace devmesh::journald
