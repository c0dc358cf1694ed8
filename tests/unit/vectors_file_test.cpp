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

namespace {

// A writer that also drops templates as the embedder does when the store no longer has them.
struct Dropper : Writer {
  using Writer::Writer;
  void drop(const std::vector<uint64_t> &ids) {
    for (uint64_t id : ids) held.erase(id);
    file.forget(ids);
  }
  VectorsFile::Compaction compact() {
    std::vector<const StoredVector *> all;
    for (const auto &[id, h] : held) all.push_back(&h);
    VectorsFile::Compaction c;
    EXPECT_EQ(file.compact(kModel, all, c), 0);
    return c;
  }
};

}  // namespace

TEST(VectorsFile, DroppedTemplatesLeaveTheFileOnlyOnceTheyAreHalfOfItAndTheLiveOnesStay) {
  TempDir d;
  const std::string path = (d.path / "vectors.json").string();
  Dropper w(path);
  for (uint64_t id = 1; id <= 6; ++id) w.add(vec(id, "template " + std::to_string(id) + " <*>"));
  w.drop({2});
  EXPECT_FALSE(w.compact().rewritten) << "one dead record in six is not worth a rewrite";
  const std::string before = read_all(path);
  w.drop({3, 4, 5});
  const VectorsFile::Compaction c = w.compact();
  EXPECT_TRUE(c.rewritten);
  EXPECT_EQ(c.records_before, 6u);
  EXPECT_EQ(c.records_after, 2u);
  EXPECT_EQ(c.bytes_after, read_all(path).size());
  EXPECT_LT(read_all(path).size(), before.size());
  uint64_t torn = 1;
  const std::map<uint64_t, std::string> want = {{1, "template 1 <*>"}, {6, "template 6 <*>"}};
  EXPECT_EQ(load(path, torn), want) << read_all(path);
  EXPECT_EQ(torn, 0u);
  // Appends go on after the compacted file's end.
  w.add(vec(7, "template 7 <*>"));
  EXPECT_EQ(load(path, torn).size(), 3u) << read_all(path);
}

TEST(VectorsFile, ATemplateThatCameBackBeforeTheCompactionKeepsItsNewVector) {
  TempDir d;
  const std::string path = (d.path / "vectors.json").string();
  Dropper w(path);
  for (uint64_t id = 1; id <= 4; ++id) w.add(vec(id, "template " + std::to_string(id) + " <*>"));
  w.drop({1, 2, 3});
  w.add(vec(2, "template 2 again <*>"));  // embedded again: the store has it again
  EXPECT_TRUE(w.compact().rewritten);
  uint64_t torn = 1;
  const std::map<uint64_t, std::string> want = {{2, "template 2 again <*>"}, {4, "template 4 <*>"}};
  EXPECT_EQ(load(path, torn), want) << read_all(path);
}

// The compaction of the old instance (a reload) while the new one appends, with a torn tail
// left by a crash: the new one's records are kept, the torn tail is cut, only the dead go.
TEST(VectorsFile, ACompactionBesideASecondWriterAndATornTailLosesNoLiveVector) {
  TempDir d;
  const std::string path = (d.path / "vectors.json").string();
  Dropper old_one(path);
  for (uint64_t id = 1; id <= 5; ++id) old_one.add(vec(id, "old " + std::to_string(id) + " <*>"));
  Dropper new_one(path);  // the reload: it reads what the old one wrote
  new_one.add(vec(100, "new first <*>"));
  old_one.add(vec(6, "old 6 <*>"));
  new_one.add(vec(101, "new second <*>"));
  // A writer that crashed half way through a record.
  const std::string line = VectorsFile::record_line(vec(102, "torn <*>"));
  append_raw(path, line.substr(0, line.size() / 2));
  const ino_t before = inode_of(path);
  old_one.drop({2, 3, 4, 5});
  new_one.drop({2, 3, 4, 5});  // its store says the same, at its own refresh
  EXPECT_TRUE(old_one.compact().rewritten);
  EXPECT_NE(inode_of(path), before);
  new_one.add(vec(103, "new third <*>"));  // to the compacted file, not the inode it knew
  old_one.add(vec(7, "old 7 <*>"));
  uint64_t torn = 1;
  const std::map<uint64_t, std::string> want = {{1, "old 1 <*>"},        {6, "old 6 <*>"},
                                                {7, "old 7 <*>"},        {100, "new first <*>"},
                                                {101, "new second <*>"}, {103, "new third <*>"}};
  EXPECT_EQ(load(path, torn), want) << read_all(path);
  EXPECT_EQ(torn, 0u) << read_all(path);
  // The new one compacts too: nothing of the old one's is lost, nothing dead comes back.
  for (int i = 0; i < 20; ++i) new_one.add(vec(100, "new first v" + std::to_string(i) + " <*>"));
  new_one.compact();
  auto after = load(path, torn);
  EXPECT_EQ(after.size(), want.size()) << read_all(path);
  EXPECT_EQ(after.count(7), 1u);
  EXPECT_EQ(after.count(3), 0u);
}
