// journald's state file: the cursor of the newest acknowledged entry, as a small JSON document
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

}  // namespace devmesh::journald
