// stdout output: writes each record as one NDJSON line (the prototype's field names) to stdout,
// or appends to a file; one write per batch, on the engine's worker threads.
#include <rapidjson/encodings.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/plugin.hpp>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devmesh {
namespace {

const dm_option kOptions[] = {
    {"path", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "append to this file (created if missing) instead of writing to stdout"},
};

// A buffer grown by one huge batch is given back rather than kept for the process lifetime.
constexpr size_t kKeepBufferBytes = 8u << 20;

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Byte streams over a bounded view for rapidjson's UTF-8 validator; past the end it reads NUL,
// which no multi-byte sequence accepts, so a truncated sequence is invalid.
struct ViewStream {
  using Ch = char;
  std::string_view s;
  size_t pos;
  Ch Take() { return pos < s.size() ? s[pos++] : (++pos, '\0'); }
  size_t Tell() const { return pos; }
};
struct NullStream {
  using Ch = char;
  void Put(Ch) {}
};

bool valid_from(std::string_view s, size_t pos) {
  ViewStream is{s, pos};
  NullStream os;
  while (is.Tell() < s.size())
    if (!rapidjson::UTF8<>::Validate(is, os)) return false;
  return true;
}

// Returns s when it is valid UTF-8; else a copy in `clean` where each byte that starts no valid
// sequence is replaced by U+FFFD, so every line is valid JSON whatever the input held.
std::string_view valid_utf8(std::string_view s, std::string &clean) {
  size_t i = 0;
  while (i < s.size() && static_cast<unsigned char>(s[i]) < 0x80) ++i;
  if (i == s.size() || valid_from(s, i)) return s;
  clean.assign(s.data(), i);
  NullStream os;
  while (i < s.size()) {
    ViewStream is{s, i};
    if (rapidjson::UTF8<>::Validate(is, os)) {
      clean.append(s.data() + i, is.Tell() - i);
      i = is.Tell();
    } else {
      clean.append("\xEF\xBF\xBD");
      ++i;
    }
  }
  return clean;
}

// Per worker thread: the batch's text and scratch space, reused across flushes.
struct Scratch {
  rapidjson::StringBuffer out;
  JsonWriter writer{out};
  std::string clean;
  // Records of a batch mostly share their second: its formatted text is kept.
  int64_t cached_sec = std::numeric_limits<int64_t>::min();
  char sec_text[64];
  size_t sec_len = 0;

  void string(std::string_view s) {
    s = valid_utf8(s, clean);
    writer.String(s.data(), static_cast<rapidjson::SizeType>(
                                std::min<size_t>(s.size(), std::numeric_limits<uint32_t>::max())));
  }
  void key(std::string_view k) { writer.Key(k.data(), static_cast<rapidjson::SizeType>(k.size())); }
  void field(std::string_view k, dm_str v) {
    key(k);
    string(sv(v));
  }
  void optional(std::string_view k, dm_str v) {
    if (v.len) field(k, v);
  }

  // RFC 3339 UTC with microseconds, like the prototype: 2025-11-28T19:55:40.521872Z.
  void timestamp(int64_t ns) {
    int64_t sec = ns / 1000000000, sub = ns % 1000000000;
    if (sub < 0) sub += 1000000000, --sec;
    if (sec != cached_sec) {
      const time_t t = static_cast<time_t>(sec);
      struct tm tm;
      if (gmtime_r(&t, &tm)) {
        const int n = std::snprintf(sec_text, sizeof sec_text, "%04d-%02d-%02dT%02d:%02d:%02d",
                                    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                                    tm.tm_min, tm.tm_sec);
        sec_len = n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof sec_text - 1) : 0;
      } else {
        sec_len = 0;
      }
      cached_sec = sec;
    }
    char text[sizeof sec_text + 9];
    std::memcpy(text, sec_text, sec_len);
    char *p = text + sec_len;
    *p++ = '.';
    int64_t us = sub / 1000;
    for (int i = 5; i >= 0; --i, us /= 10) p[i] = static_cast<char>('0' + us % 10);
    p += 6;
    *p++ = 'Z';
    writer.String(text, static_cast<rapidjson::SizeType>(p - text));
  }

  void record(const dm_record &r) {
    static const char hex[] = "0123456789abcdef";
    writer.Reset(out);
    writer.StartObject();
    key("timestamp");
    timestamp(r.timestamp_ns);
    field("source", r.source);
    field("service", r.service);
    field("host", r.host);
    key("level");
    writer.String(dm_level_name(r.level));
    optional("trace_id", r.trace_id);
    optional("span_id", r.span_id);
    optional("event_type", r.event_type);
    optional("error_code", r.error_code);
    field("message", r.message);
    key("meta_json");
    writer.StartObject();
    for (uint32_t i = 0; i < r.meta_count; ++i) {
      key(valid_utf8(sv(r.meta[i].key), clean));
      string(sv(r.meta[i].value));
    }
    writer.EndObject();
    char id[32];
    for (int i = 0; i < 16; ++i) {
      id[2 * i] = hex[r.event_id[i] >> 4];
      id[2 * i + 1] = hex[r.event_id[i] & 15];
    }
    key("event_id");
    writer.String(id, sizeof id);
    writer.EndObject();
    out.Put('\n');
  }
};

class Stdout {
 public:
  Stdout(const dm_host_api *host, dm_instance *, const dm_config *cfg) {
    Config c{host, cfg};
    if (c.has("path")) {
      path_ = c.string("path");
      fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd_ < 0) throw std::runtime_error("path: cannot open " + path_ + ": " + strerror(errno));
    } else {
      path_ = "stdout";
    }
  }

  ~Stdout() {
    if (fd_ != STDOUT_FILENO) ::close(fd_);
  }

  int worker_init(uint32_t, void **ws) {
    *ws = new Scratch;
    return 0;
  }

  void worker_fini(void *ws) { delete static_cast<Scratch *>(ws); }

  dm_flush_status flush(void *ws, const dm_batch *batch, dm_flush_token *, dm_flush_result *res) {
    // Without worker_init (a host that flushes on one thread) the instance's scratch serves.
    std::unique_lock<std::mutex> fallback_lock;
    auto *s = static_cast<Scratch *>(ws);
    if (!s) {
      fallback_lock = std::unique_lock<std::mutex>(fallback_mu_);
      if (!fallback_) fallback_ = std::make_unique<Scratch>();
      s = fallback_.get();
    }
    s->out.Clear();
    for (uint32_t i = 0; i < batch->count; ++i) s->record(batch->records[i]);
    const int err = write_batch(s->out.GetString(), s->out.GetSize());
    if (s->out.GetSize() > kKeepBufferBytes) {
      s->out.Clear();
      s->out.ShrinkToFit();
    }
    if (err == 0) return DM_FLUSH_OK;
    std::snprintf(res->reason, sizeof res->reason, "write %s: %s", path_.c_str(), strerror(err));
    return DM_FLUSH_RETRY;
  }

 private:
  // One batch is written whole under the lock, so lines of concurrent workers never interleave.
  // A write that failed mid-line leaves a partial line: it is ended first, so the retried
  // batch (the engine re-sends it whole) starts on a line of its own.
  int write_batch(const char *p, size_t n) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (mid_line_) {
      size_t done = 0;
      if (int err = write_all("\n", 1, done)) return err;
      mid_line_ = false;
    }
    size_t done = 0;
    const int err = write_all(p, n, done);
    if (err) mid_line_ = done > 0 && p[done - 1] != '\n';
    return err;
  }

  // Writes all n bytes despite EINTR, partial writes and a non-blocking fd; 0 or an errno.
  int write_all(const char *p, size_t n, size_t &done) {
    while (done < n) {
      const ssize_t w = ::write(fd_, p + done, n - done);
      if (w > 0) {
        done += static_cast<size_t>(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        struct pollfd pfd = {fd_, POLLOUT, 0};
        if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return errno;
      } else {
        return w < 0 ? errno : EIO;
      }
    }
    return 0;
  }

  std::string path_;
  int fd_ = STDOUT_FILENO;
  std::mutex write_mu_;
  bool mid_line_ = false;  // guarded by write_mu_
  std::mutex fallback_mu_;
  std::unique_ptr<Scratch> fallback_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Stdout>::describe(
    DM_OUTPUT, "stdout", "0.1.0",
    "writes records as NDJSON lines with the prototype's field names to stdout or a file",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_FLUSH_ON_WORKER))
