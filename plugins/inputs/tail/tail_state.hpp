// tail's state file: per file followed, the offset up to which every line was acknowledged,
// with the file's identity (inode and first-line fingerprint), as a versioned JSON document
// (written by the common StateFile: replaced atomically), and its parser.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::tail {

// The format this build writes. A file of a newer version is refused at start (it may hold
// positions this build would misread); an older one would be upgraded here.
constexpr int kStateVersion = 1;

// One followed file as saved.
struct SavedFile {
  std::string path;  // where it was last seen (a rotated file is looked for beside it)
  uint64_t dev = 0, inode = 0;
  std::string fingerprint;  // hex; empty while the file had no complete first line
  uint64_t offset = 0;      // every line before it was acknowledged
};

struct SavedState {
  bool ok = false;
  bool newer = false;  // a version above kStateVersion: refuse rather than guess
  int version = 0;
  std::vector<SavedFile> files;
  std::string problem;  // when !ok: "missing", "empty", "truncated or not JSON", ...
};

inline std::string state_text(const std::vector<SavedFile> &files) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w(out);
  w.StartObject();
  w.Key("version");
  w.Int(kStateVersion);
  w.Key("files");
  w.StartArray();
  for (const SavedFile &f : files) {
    w.StartObject();
    w.Key("path");
    w.String(f.path.data(), static_cast<rapidjson::SizeType>(f.path.size()));
    w.Key("dev");
    w.Uint64(f.dev);
    w.Key("inode");
    w.Uint64(f.inode);
    w.Key("fingerprint");
    w.String(f.fingerprint.data(), static_cast<rapidjson::SizeType>(f.fingerprint.size()));
    w.Key("offset");
    w.Uint64(f.offset);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  out.Put('\n');
  return std::string(out.GetString(), out.GetSize());
}

inline SavedState parse_state(const std::string &path) {
  SavedState s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    s.problem = errno == ENOENT ? "missing" : std::string("unreadable: ") + strerror(errno);
    return s;
  }
  std::string text;
  char buf[8192];
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
    if (text.size() > (64u << 20)) break;  // not ours: ~150 bytes per file followed
  }
  ::close(fd);
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
    s.problem = "empty";
    return s;
  }
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject()) {
    s.problem = "truncated or not JSON";
    return s;
  }
  if (!d.HasMember("version") || !d["version"].IsInt()) {
    s.problem = "without a \"version\" number";
    return s;
  }
  s.version = d["version"].GetInt();
  if (s.version > kStateVersion) {
    s.newer = true;
    s.problem = "of version " + std::to_string(s.version) + ", newer than this build's " +
                std::to_string(kStateVersion);
    return s;
  }
  if (s.version < 1 || !d.HasMember("files") || !d["files"].IsArray()) {
    s.problem = "without a \"files\" array";
    return s;
  }
  for (const auto &f : d["files"].GetArray()) {
    if (!f.IsObject() || !f.HasMember("inode") || !f["inode"].IsUint64() ||
        !f.HasMember("offset") || !f["offset"].IsUint64() || !f.HasMember("path") ||
        !f["path"].IsString()) {
      s.problem = "with a file entry without path, inode or offset";
      s.files.clear();
      return s;
    }
    SavedFile e;
    e.path.assign(f["path"].GetString(), f["path"].GetStringLength());
    e.inode = f["inode"].GetUint64();
    e.offset = f["offset"].GetUint64();
    if (f.HasMember("dev") && f["dev"].IsUint64()) e.dev = f["dev"].GetUint64();
    if (f.HasMember("fingerprint") && f["fingerprint"].IsString())
      e.fingerprint.assign(f["fingerprint"].GetString(), f["fingerprint"].GetStringLength());
    s.files.push_back(std::move(e));
  }
  s.ok = true;
  return s;
}

}  // namespace devmesh::tail
