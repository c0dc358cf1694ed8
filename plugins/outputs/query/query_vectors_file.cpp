// The template vectors file (query_vectors_file.h): reading both formats, appending, rewriting.
#include "query_vectors_file.h"

#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "query_store.h"

namespace devmesh::query {

namespace {

constexpr std::string_view kHeaderStart = "{\"devmesh_vectors\":";
constexpr int kFormat = 2;

uint32_t crc32(std::string_view s) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : s) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// One template's object (both formats): false when a field is missing or of the wrong type.
bool parse_vector(const rapidjson::Value &t, StoredVector &out) {
  if (!t.IsObject() || !t.HasMember("id") || !t["id"].IsString() || !t.HasMember("vector") ||
      !t["vector"].IsArray() || !t.HasMember("template") || !t["template"].IsString() ||
      !t.HasMember("service") || !t["service"].IsString())
    return false;
  const auto id = parse_pattern_id(t["id"].GetString());
  if (!id) return false;
  out.id = *id;
  out.service = t["service"].GetString();
  out.template_text = t["template"].GetString();
  for (const auto &x : t["vector"].GetArray())
    if (x.IsNumber()) out.vector.push_back(static_cast<float>(x.GetDouble()));
  return true;
}

bool read_format1(const std::string &s, VectorsFile::Contents &out) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag>(s.data(), s.size());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("model") || !d["model"].IsString() ||
      !d.HasMember("templates") || !d["templates"].IsArray())
    return false;
  out.format = 1;
  out.model = d["model"].GetString();
  for (const auto &t : d["templates"].GetArray()) {
    StoredVector v;
    if (parse_vector(t, v)) out.vectors.push_back(std::move(v));
  }
  return true;
}

// Parses "<length> <crc32> " at `s`: the JSON's length, its checksum and where it starts.
bool record_head(std::string_view s, size_t &length, uint32_t &crc, size_t &json_at) {
  size_t i = 0;
  length = 0;
  while (i < s.size() && i < 10 && s[i] >= '0' && s[i] <= '9')
    length = length * 10 + (s[i++] - '0');
  if (i == 0 || i >= s.size() || s[i] != ' ') return false;
  ++i;
  if (s.size() < i + 9 || s[i + 8] != ' ') return false;
  crc = 0;
  for (size_t k = i; k < i + 8; ++k) {
    const char c = s[k];
    const int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return false;
    crc = crc << 4 | static_cast<uint32_t>(v);
  }
  json_at = i + 9;
  return true;
}

// flock(LOCK_EX) on PATH.lock for a scope: the writers of one file (this process's or another's)
// take turns. Per open file description, so two objects in one process exclude each other too.
class WriteLock {
 public:
  explicit WriteLock(const std::string &path)
      : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ < 0) {
      error_ = errno;
      return;
    }
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      error_ = errno;
      break;
    }
  }
  ~WriteLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  WriteLock(const WriteLock &) = delete;
  WriteLock &operator=(const WriteLock &) = delete;
  int error() const { return error_; }

 private:
  int fd_;
  int error_ = 0;
};

}  // namespace

std::string VectorsFile::header_line(const std::string &model) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("devmesh_vectors");
  w.Int(kFormat);
  w.Key("model");
  w.String(model.data(), static_cast<rapidjson::SizeType>(model.size()));
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize()) + "\n";
}

std::string VectorsFile::record_line(const StoredVector &v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("id");
  w.String(pattern_id_hex(v.id).c_str());
  w.Key("service");
  w.String(v.service.data(), static_cast<rapidjson::SizeType>(v.service.size()));
  w.Key("template");
  w.String(v.template_text.data(), static_cast<rapidjson::SizeType>(v.template_text.size()));
  w.Key("vector");
  w.StartArray();
  for (float x : v.vector) w.Double(x);
  w.EndArray();
  w.EndObject();
  const std::string_view json(buf.GetString(), buf.GetSize());
  char head[32];
  std::snprintf(head, sizeof head, "%zu %08x ", json.size(), crc32(json));
  return head + std::string(json) + "\n";
}

bool VectorsFile::read(Contents &out, std::string &error) const {
  out = Contents{};
  std::ifstream in(path(), std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return true;
    error = path() + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  out.found = true;
  if (s.compare(0, kHeaderStart.size(), kHeaderStart) != 0) {
    if (read_format1(s, out)) return true;
    error = path() + ": not a vectors file this plugin wrote";
    return false;
  }
  // The header is never torn: it is only written by a whole (atomic) rewrite.
  const size_t eol = s.find('\n');
  rapidjson::Document h;
  if (eol != std::string::npos) h.Parse(s.data(), eol);
  if (eol == std::string::npos || h.HasParseError() || !h.IsObject() ||
      !h.HasMember("devmesh_vectors") || !h["devmesh_vectors"].IsInt() || !h.HasMember("model") ||
      !h["model"].IsString()) {
    error = path() + ": not a vectors file this plugin wrote (bad header line)";
    return false;
  }
  if (h["devmesh_vectors"].GetInt() != kFormat) {
    error = path() + ": format " + std::to_string(h["devmesh_vectors"].GetInt()) +
            " (this devmesh reads 1 and 2: a newer one wrote it; move it away to start over)";
    return false;
  }
  out.format = kFormat;
  out.model = h["model"].GetString();
  size_t at = eol + 1;
  while (at < s.size()) {
    const std::string_view rest(s.data() + at, s.size() - at);
    size_t length = 0, json_at = 0;
    uint32_t crc = 0;
    if (!record_head(rest, length, crc, json_at) || rest.size() < json_at + length + 1 ||
        rest[json_at + length] != '\n')
      break;
    const std::string_view json = rest.substr(json_at, length);
    if (crc32(json) != crc) break;
    rapidjson::Document r;
    r.Parse(json.data(), json.size());
    StoredVector v;
    if (r.HasParseError() || !parse_vector(r, v)) break;
    out.vectors.push_back(std::move(v));
    at += json_at + length + 1;
  }
  out.good_bytes = at;
  out.torn_bytes = s.size() - at;
  return true;
}

void VectorsFile::adopt(const Contents &c, const std::string &model) {
  model_ = model;
  appendable_ = c.found && c.format == kFormat && c.model == model;
  size_ = c.good_bytes;
  records_ = c.vectors.size();
  // What read() saw, unlocked: another writer may have appended since. The first write looks.
  known_ = false;
}

int VectorsFile::cut_torn_tail(uint64_t &at, uint64_t &torn) {
  at = torn = 0;
  if (!appendable_) return 0;
  WriteLock lock(lock_path_);
  if (lock.error() != 0) {
    appendable_ = false;  // the next write rewrites it whole instead
    return lock.error();
  }
  known_ = false;
  return resync(model_, &at, &torn);
}

int VectorsFile::resync(const std::string &model, uint64_t *cut_at, uint64_t *cut) {
  struct stat st {};
  if (::stat(path().c_str(), &st) != 0) {
    const int err = errno;
    appendable_ = known_ = false;
    return err == ENOENT ? 0 : err;  // gone: rewritten whole
  }
  if (known_ && st.st_dev == dev_ && st.st_ino == ino_ &&
      static_cast<uint64_t>(st.st_size) == size_)
    return 0;
  // Another writer appended or rewrote it (or an append of this one failed half way): its
  // records are read, never cut. Only a torn tail is, as no append is under way now.
  Contents c;
  std::string error;
  known_ = false;
  appendable_ = read(c, error) && c.found && c.format == kFormat && c.model == model;
  if (!appendable_) return 0;  // rewritten whole, with what can be read of it
  if (c.torn_bytes > 0) {
    if (::truncate(path().c_str(), static_cast<off_t>(c.good_bytes)) != 0) {
      appendable_ = false;
      return errno;
    }
    if (cut_at) *cut_at = c.good_bytes;
    if (cut) *cut = c.torn_bytes;
  }
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  size_ = c.good_bytes;
  records_ = c.vectors.size();
  known_ = true;
  return 0;
}

int VectorsFile::append(const std::string &text) {
  const int fd = ::open(path().c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  size_t done = 0;
  while (!err && done < text.size()) {
    const ssize_t n =
        ::pwrite(fd, text.data() + done, text.size() - done, static_cast<off_t>(size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) err = n < 0 ? errno : EIO;
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (!err && ::fdatasync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err) size_ += text.size();
  return err;
}

int VectorsFile::rewrite(const std::string &model, const std::vector<const StoredVector *> &all) {
  // The records of ids this writer does not hold are another writer's: kept, the last of each,
  // but for the ids forgotten as dead (this writer held them; the store no longer has them).
  std::unordered_set<uint64_t> ours;
  for (const StoredVector *v : all) ours.insert(v->id);
  std::vector<StoredVector> theirs;
  Contents c;
  std::string error;
  if (read(c, error) && c.found && c.model == model) {
    std::unordered_map<uint64_t, size_t> at;
    for (StoredVector &v : c.vectors) {
      if (ours.count(v.id) != 0 || dead_.count(v.id) != 0) continue;
      const auto [it, fresh] = at.emplace(v.id, theirs.size());
      if (fresh)
        theirs.push_back(std::move(v));
      else
        theirs[it->second] = std::move(v);
    }
  }
  std::string text = header_line(model);
  for (const StoredVector &v : theirs) text += record_line(v);
  for (const StoredVector *v : all) text += record_line(*v);
  known_ = false;
  const int err = file_.write(text, ++generation_);
  if (err != 0) return err;
  struct stat st {};
  if (::stat(path().c_str(), &st) != 0) {
    appendable_ = false;
    return errno;
  }
  appendable_ = known_ = true;
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  size_ = text.size();
  records_ = theirs.size() + all.size();
  foreign_ = theirs.size();
  dead_.clear();
  return 0;
}

void VectorsFile::forget(const std::vector<uint64_t> &ids) {
  dead_.insert(ids.begin(), ids.end());
}

int VectorsFile::compact(const std::string &model, const std::vector<const StoredVector *> &all,
                         Compaction &out) {
  out = Compaction{};
  model_ = model;
  WriteLock lock(lock_path_);
  if (lock.error() != 0) {
    appendable_ = known_ = false;
    return lock.error();
  }
  // What another writer appended (and a torn tail, cut) counts before the share is judged.
  if (appendable_) {
    const int err = resync(model, nullptr, nullptr);
    if (err != 0) return err;
  }
  out.records_before = out.records_after = records_;
  out.bytes_before = out.bytes_after = size_;
  if (appendable_ ? records_ <= 2 * (all.size() + foreign_) : dead_.empty()) return 0;
  const int err = rewrite(model, all);
  if (err != 0) return err;
  out.rewritten = true;
  out.records_after = records_;
  out.bytes_after = size_;
  return 0;
}

int VectorsFile::write(const std::string &model, const std::vector<const StoredVector *> &added,
                       const std::vector<const StoredVector *> &all) {
  model_ = model;
  WriteLock lock(lock_path_);
  if (lock.error() != 0) {
    appendable_ = known_ = false;
    return lock.error();
  }
  if (appendable_) {
    const int err = resync(model, nullptr, nullptr);
    if (err != 0) return err;
  }
  for (const StoredVector *v : added) dead_.erase(v->id);
  if (appendable_ && records_ + added.size() <= 2 * (all.size() + foreign_) + 64) {
    std::string text;
    for (const StoredVector *v : added) text += record_line(*v);
    const int err = append(text);
    if (err == 0) {
      records_ += added.size();
      return 0;
    }
    appendable_ = known_ = false;
    return err;
  }
  return rewrite(model, all);
}

}  // namespace devmesh::query
