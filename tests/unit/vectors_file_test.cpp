// The query plugin's template vectors file (plugins/outputs/query/query_vectors_file.h) with two
// writers on one path, as across a reload (the old instance retires while the new one runs):
// appends and a rewrite interleaved, every record of both read back.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "query_vectors_file.h"

namespace fs = std::filesystem;
using devmesh::query::StoredVector;
using devmesh::query::VectorsFile;

namespace {

const std::string kModel = "mock-model";

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "dm-vectors-XXXXXX").string();
    path = ::mkdtemp(t.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string read_all(const std::string &file) {
  std::ifstream in(file, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void append_raw(const std::string &file, const std::string &text) {
  std::ofstream out(file, std::ios::binary | std::ios::app);
  out << text;
}

StoredVector vec(uint64_t id, const std::string &tpl) {
  StoredVector v;
  v.id = id;
  v.service = "svc";
  v.template_text = tpl;
  v.vector = {1.0f, static_cast<float>(id), 0.5f};
  return v;
}

ino_t inode_of(const std::string &file) {
  struct stat st {};
  EXPECT_EQ(::stat(file.c_str(), &st), 0) << file;
  return st.st_ino;
}

// One instance's writer: what it holds (its `all`) and its file, as the embedder drives them.
struct Writer {
  VectorsFile file;
  std::map<uint64_t, StoredVector> held;

  explicit Writer(const std::string &path) : file(path) {
    VectorsFile::Contents c;
    std::string error;
    EXPECT_TRUE(file.read(c, error)) << error;
    for (StoredVector &v : c.vectors) held[v.id] = std::move(v);
    file.adopt(c, kModel);
  }

  void add(const StoredVector &v) {
    held[v.id] = v;
    std::vector<const StoredVector *> all;
    for (const auto &[id, h] : held) all.push_back(&h);
    ASSERT_EQ(file.write(kModel, {&held[v.id]}, all), 0) << v.template_text;
  }
};

// What a fresh start reads: each id's last record.
std::map<uint64_t, std::string> load(const std::string &path, uint64_t &torn) {
  VectorsFile f(path);
  VectorsFile::Contents c;
  std::string error;
  EXPECT_TRUE(f.read(c, error)) << error;
  torn = c.torn_bytes;
  std::map<uint64_t, std::string> out;
  for (const StoredVector &v : c.vectors) out[v.id] = v.template_text;
  return out;
}

}  // namespace

TEST(VectorsFile, TwoWritersOnOnePathInterleavingAppendsAndARewriteLoseNoRecordOfEither) {
  TempDir d;
  const std::string path = (d.path / "vectors.json").string();
  Writer old_one(path);
  old_one.add(vec(1, "old first <*>"));  // a new file: written whole
  Writer new_one(path);                  // the reload: it reads what the old one wrote
  old_one.add(vec(2, "old second <*>"));
  new_one.add(vec(100, "new first <*>"));  // not at its own idea of the end: after old's 2
  old_one.add(vec(3, "old third <*>"));    // not over new's 100
  // The new one's template 100 changes until its file holds more than twice its live records:
  // it rewrites the file whole (a new inode), keeping the old one's records it does not hold.
  const ino_t before = inode_of(path);
  for (int i = 0; i < 80; ++i) new_one.add(vec(100, "new first v" + std::to_string(i) + " <*>"));
  EXPECT_NE(inode_of(path), before) << "the new one did not rewrite the file";
  old_one.add(vec(4, "old fourth <*>"));  // to the rewritten file, not the inode it knew
  new_one.add(vec(101, "new second <*>"));
  old_one.add(vec(5, "old fifth <*>"));

  uint64_t torn = 1;
  const auto loaded = load(path, torn);
  EXPECT_EQ(torn, 0u) << read_all(path);
  const std::map<uint64_t, std::string> want = {{1, "old first <*>"},   {2, "old second <*>"},
                                                {3, "old third <*>"},   {4, "old fourth <*>"},
                                                {5, "old fifth <*>"},   {100, "new first v79 <*>"},
                                                {101, "new second <*>"}};
  EXPECT_EQ(loaded, want) << read_all(path);
}

TEST(VectorsFile, ATailThatWasAnotherWritersAppendUnderWayIsNotCutAsTorn) {
  TempDir d;
  const std::string path = (d.path / "vectors.json").string();
  {
    Writer first(path);
    first.add(vec(1, "first <*>"));
  }
  const std::string good = read_all(path);
  const std::string line = VectorsFile::record_line(vec(2, "second <*>"));
  // The new instance reads while the other's record is half written ...
  append_raw(path, line.substr(0, line.size() / 2));
  VectorsFile reader(path);
  VectorsFile::Contents c;
  std::string error;
  ASSERT_TRUE(reader.read(c, error)) << error;
  EXPECT_EQ(c.good_bytes, good.size());
  EXPECT_GT(c.torn_bytes, 0u);
  reader.adopt(c, kModel);
  // ... and the record is whole by the time it locks the file to cut the tail.
  append_raw(path, line.substr(line.size() / 2));
  uint64_t at = 0, cut = 0;
  EXPECT_EQ(reader.cut_torn_tail(at, cut), 0);
  EXPECT_EQ(cut, 0u);
  EXPECT_EQ(read_all(path), good + line);
  // A tail that is still torn once locked is cut, and said where.
  append_raw(path, "812 0badf00d {\"id\":\"0000000000");
  reader.adopt(c, kModel);
  EXPECT_EQ(reader.cut_torn_tail(at, cut), 0);
  EXPECT_EQ(at, good.size() + line.size());
  EXPECT_EQ(cut, 30u);
  EXPECT_EQ(read_all(path), good + line);
}
