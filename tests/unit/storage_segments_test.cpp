// Storage segment files on a real directory: appends and replay across instances, torn tails
// truncated on disk, corrupt and garbage files, rotation, deletion once done, ack files.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "batch.h"
#include "metrics.h"
#include "storage.h"

using namespace devmesh;
namespace fs = std::filesystem;

namespace {

struct Dir {
  std::string path;
  Dir() {
    std::string t = (fs::temp_directory_path() / "dm-storage-XXXXXX").string();
    path = mkdtemp(t.data());
  }
  ~Dir() { fs::remove_all(path); }
  std::vector<std::string> files(const std::string &ext) const {
    std::vector<std::string> v;
    for (auto &e : fs::directory_iterator(path))
      if (e.path().extension() == ext) v.push_back(e.path().filename().string());
    std::sort(v.begin(), v.end());
    return v;
  }
};

StorageOptions opts(const Dir &d, uint64_t segment_size = 8 << 20) {
  StorageOptions o;
  o.path = d.path;
  o.sync = SyncPolicy::Never;  // no thread or loop needed; the files are the same
  o.segment_size = segment_size;
  return o;
}

std::vector<uint8_t> block(uint64_t id, const std::string &tag, uint32_t n, size_t msg = 10) {
  Batch *b = batch_new(n);
  std::string text(msg, 'x');
  for (uint32_t i = 0; i < n; i++) b->add()->message = b->arena.copy(text.data(), text.size());
  std::vector<uint8_t> out;
  encode_block(id, tag, b->records.data(), n, out);
  batch_unref(b);
  return out;
}

struct Seen {
  uint64_t id;
  uint32_t count;
  std::string tag;
  std::set<uint64_t> acked;
};

// Replays with a fresh Storage; every block stays live when keep is true.
std::vector<Seen> replay(const Dir &d, MetricsRegistry &m, bool keep = true) {
  Storage s(opts(d), m);
  std::string err;
  EXPECT_TRUE(s.open(err)) << err;
  std::vector<Seen> seen;
  s.replay([&](const ReplayBlock &b) {
    seen.push_back(Seen{b.info.id, b.info.count, std::string(b.info.tag), *b.acked});
    return keep;
  });
  return seen;
}

// Appends blocks 1..n of tag "t" with i records each; returns the storage's segments.
void write_blocks(const Dir &d, MetricsRegistry &m, int n, uint64_t segment_size = 8 << 20) {
  Storage s(opts(d, segment_size), m);
  std::string err;
  ASSERT_TRUE(s.open(err)) << err;
  s.replay([](const ReplayBlock &) { return true; });
  for (int i = 1; i <= n; i++) {
    uint64_t id = s.next_block_id(), off = 0;
    ASSERT_NE(s.append(id, block(id, "t", static_cast<uint32_t>(i)), off), nullptr);
  }
  // Not stopped: a crash leaves the files as they are (stop() would keep them too: live).
}

double metric(MetricsRegistry &m, const std::string &name) {
  std::string text = m.render();
  size_t at = text.find("\n" + name + " ");
  return at == std::string::npos ? -1 : std::atof(text.c_str() + at + name.size() + 2);
}

}  // namespace

TEST(StorageSegments, BlocksWrittenByOneRunAreReplayedByTheNextInOrder) {
  Dir d;
  MetricsRegistry m;
  write_blocks(d, m, 5);
  auto seen = replay(d, m);
  ASSERT_EQ(seen.size(), 5u);
  for (size_t i = 0; i < 5; i++) {
    EXPECT_EQ(seen[i].id, i + 1);
    EXPECT_EQ(seen[i].count, i + 1);
    EXPECT_EQ(seen[i].tag, "t");
  }
  // Block ids go on after the replayed ones.
  Storage s(opts(d), m);
  std::string err;
  ASSERT_TRUE(s.open(err));
  s.replay([](const ReplayBlock &) { return true; });
  EXPECT_EQ(s.next_block_id(), 6u);
}

TEST(StorageSegments, ATornTailIsTruncatedOnDiskAndCounted) {
  Dir d;
  MetricsRegistry m;
  write_blocks(d, m, 3);
  auto segs = d.files(".log");
  ASSERT_EQ(segs.size(), 1u);
  std::string path = d.path + "/" + segs[0];
  auto good = fs::file_size(path);
  auto half = block(4, "t", 4);
  half.resize(half.size() / 2);
  std::ofstream(path, std::ios::binary | std::ios::app)
      .write(reinterpret_cast<const char *>(half.data()), static_cast<long>(half.size()));
  MetricsRegistry m2;
  auto seen = replay(d, m2);
  EXPECT_EQ(seen.size(), 3u);
  EXPECT_EQ(fs::file_size(path), good);
  EXPECT_EQ(metric(m2, "devmesh_storage_torn_tails_total"), 1);
}

TEST(StorageSegments, ACorruptBlockInTheMiddleIsSkippedAndCounted) {
  Dir d;
  MetricsRegistry m;
  write_blocks(d, m, 3);
  std::string path = d.path + "/" + d.files(".log")[0];
  // Damage block 2's payload (block 1 is 12 + 16 + 1 + 64 + 10 bytes long).
  auto first = block(1, "t", 1).size();
  {
    std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(static_cast<long>(first + 30));
    f.put('\x5a');
  }
  MetricsRegistry m2;
  auto seen = replay(d, m2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].id, 1u);
  EXPECT_EQ(seen[1].id, 3u);
  EXPECT_EQ(metric(m2, "devmesh_storage_corrupt_blocks_total"), 1);
}

TEST(StorageSegments, GarbageAndZeroLengthSegmentFilesAreRemovedWithoutCrashing) {
  Dir d;
  std::ofstream(d.path + "/seg-0000000000000001.log") << std::string(5000, 'g');
  std::ofstream(d.path + "/seg-0000000000000002.log");  // zero length
  std::ofstream(d.path + "/seg-zzzz.log") << "not ours by name";
  std::ofstream(d.path + "/seg-0000000000000009.acks") << "orphan";
  MetricsRegistry m;
  auto seen = replay(d, m);
  EXPECT_TRUE(seen.empty());
  EXPECT_EQ(d.files(".log"), std::vector<std::string>{"seg-zzzz.log"});
  EXPECT_TRUE(d.files(".acks").empty());
}

TEST(StorageSegments, RotatesAtSegmentSizeAndDeletesASealedSegmentOnceEveryBlockIsDone) {
  Dir d;
  MetricsRegistry m;
  Storage s(opts(d, 64 << 10), m);
  std::string err;
  ASSERT_TRUE(s.open(err));
  s.replay([](const ReplayBlock &) { return true; });
  struct Written {
    Segment *seg;
    uint64_t seg_id, block_id;  // the segment is freed once deleted: keep its id
  };
  std::vector<Written> written;
  for (int i = 0; i < 10; i++) {  // ~20 KiB each: about three per segment
    uint64_t id = s.next_block_id(), off = 0;
    Segment *seg = s.append(id, block(id, "t", 10, 2000), off);
    ASSERT_NE(seg, nullptr);
    written.push_back({seg, seg->id, id});
  }
  EXPECT_GE(d.files(".log").size(), 3u);
  size_t before = d.files(".log").size();
  uint64_t first_seg = written[0].seg_id;
  // Finish the blocks of the first segment: it is sealed, so it goes, with its ack file.
  for (auto &w : written) {
    if (w.seg_id != first_seg) break;
    s.ack(w.seg, w.block_id, 77);
    s.block_done(w.seg);
  }
  EXPECT_EQ(d.files(".log").size(), before - 1);
  for (auto &f : d.files(".log")) EXPECT_EQ(f.find(std::to_string(first_seg) + ".log"), f.npos);
  EXPECT_TRUE(d.files(".acks").empty());
  // Finishing the rest, the active segment stays until stop() (it may still grow).
  for (auto &w : written)
    if (w.seg_id != first_seg) s.block_done(w.seg);
  EXPECT_EQ(d.files(".log").size(), 1u);
  s.stop();
  EXPECT_TRUE(d.files(".log").empty());
}

TEST(StorageSegments, TheAckFileTellsReplayWhichOutputsFinishedABlock) {
  Dir d;
  MetricsRegistry m;
  {
    Storage s(opts(d), m);
    std::string err;
    ASSERT_TRUE(s.open(err));
    s.replay([](const ReplayBlock &) { return true; });
    for (int i = 0; i < 3; i++) {
      uint64_t id = s.next_block_id(), off = 0;
      Segment *seg = s.append(id, block(id, "t", 2), off);
      ASSERT_NE(seg, nullptr);
      if (id == 1) s.ack(seg, id, Storage::output_hash("out.a"));
      if (id == 2) {
        s.ack(seg, id, Storage::output_hash("out.a"));
        s.ack(seg, id, Storage::output_hash("out.b"));
      }
    }
  }
  // A torn last ack entry (crash mid-write) is ignored.
  std::string acks = d.path + "/" + d.files(".acks")[0];
  std::ofstream(acks, std::ios::binary | std::ios::app) << "1234567";
  MetricsRegistry m2;
  auto seen = replay(d, m2);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].acked, std::set<uint64_t>{Storage::output_hash("out.a")});
  EXPECT_EQ(seen[1].acked.size(), 2u);
  EXPECT_TRUE(seen[2].acked.empty());
}

TEST(StorageSegments, SegmentsWithNothingLeftToDeliverAreDeletedAtReplay) {
  Dir d;
  MetricsRegistry m;
  write_blocks(d, m, 2);
  MetricsRegistry m2;
  auto seen = replay(d, m2, /*keep=*/false);
  EXPECT_EQ(seen.size(), 2u);
  EXPECT_TRUE(d.files(".log").empty());
}

TEST(StorageSegments, ASecondStorageOnTheSameDirectoryIsRefused) {
  Dir d;
  MetricsRegistry m;
  Storage a(opts(d), m);
  std::string err;
  ASSERT_TRUE(a.open(err)) << err;
  MetricsRegistry m2;
  Storage b(opts(d), m2);
  EXPECT_FALSE(b.open(err));
  EXPECT_NE(err.find("in use by another devmesh"), std::string::npos) << err;
}

TEST(StorageSegments, AnUnusableDirectoryIsAClearError) {
  MetricsRegistry m;
  StorageOptions o;
  o.path = "/proc/devmesh-cannot-be-here";
  Storage s(o, m);
  std::string err;
  EXPECT_FALSE(s.open(err));
  EXPECT_NE(err.find("storage.path"), std::string::npos) << err;
}
