// The tail input's line splitting (plugins/inputs/tail/tail_lines.hpp) without files: lines and
// their offsets, the checkpoint boundary, max_line_size's cut at a character boundary, and the
// skipped rest of a long line across reads.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../../plugins/inputs/tail/tail_lines.hpp"

namespace {

using devmesh::tail::Carry;
using devmesh::tail::LineCursor;

struct Split {
  Carry carry;
  LineCursor at;
  std::vector<std::string> lines;
  std::vector<uint64_t> offsets;
  std::vector<bool> cuts;
  size_t skipped = 0;

  // Appends bytes as a read() would, then splits with room for `room` lines.
  bool feed(const std::string &bytes, size_t max_line, size_t room = 1000) {
    std::memcpy(carry.space(bytes.size()), bytes.data(), bytes.size());
    carry.tail += bytes.size();
    return devmesh::tail::split_lines(
        carry, at, max_line, [&] { return lines.size() < room; },
        [&](std::string_view l, uint64_t offset, bool cut) {
          lines.emplace_back(l);
          offsets.push_back(offset);
          cuts.push_back(cut);
        },
        [&](size_t n) { skipped += n; });
  }
};

TEST(TailLines, CompleteLinesAreSplitWithTheirOffsetsAndAnIncompleteOneIsCarried) {
  Split s;
  EXPECT_TRUE(s.feed("ab\ncde\nf", 256));
  EXPECT_EQ(s.lines, (std::vector<std::string>{"ab", "cde"}));
  EXPECT_EQ(s.offsets, (std::vector<uint64_t>{0, 3}));
  EXPECT_EQ(s.at.boundary, 7u);
  EXPECT_EQ(s.carry.view(), "f");
  EXPECT_TRUE(s.feed("g\n", 256));
  EXPECT_EQ(s.lines.back(), "fg");
  EXPECT_EQ(s.offsets.back(), 7u);
  EXPECT_EQ(s.at.boundary, 10u);
  EXPECT_TRUE(s.carry.empty());
}

TEST(TailLines, AFullBatchStopsTheSplitAndKeepsTheRestCarried) {
  Split s;
  EXPECT_FALSE(s.feed("1\n2\n3\n", 256, 2));
  EXPECT_EQ(s.lines.size(), 2u);
  EXPECT_EQ(s.at.boundary, 4u);
  EXPECT_EQ(s.carry.view(), "3\n");
}

TEST(TailLines, ALongLineIsCutAtACharacterBoundaryAndItsRestSkippedAcrossReads) {
  Split s;
  // 255 'x' then a 3-byte euro sign across the 256-byte limit, then more, in two reads.
  const std::string head = std::string(255, 'x') + "\xE2\x82\xAC";
  EXPECT_TRUE(s.feed(head + std::string(100, 'y'), 256));
  ASSERT_EQ(s.lines.size(), 1u);
  EXPECT_EQ(s.lines[0], std::string(255, 'x'));
  EXPECT_TRUE(s.cuts[0]);
  EXPECT_TRUE(s.at.skipping);
  EXPECT_EQ(s.at.boundary, 0u) << "a checkpoint stays before a line not yet ended";
  EXPECT_TRUE(s.feed(std::string(50, 'z') + "\nnext\n", 256));
  EXPECT_EQ(s.lines.back(), "next");
  EXPECT_FALSE(s.at.skipping);
  const uint64_t long_line = head.size() + 100 + 50;  // without its newline
  EXPECT_EQ(s.skipped, long_line - 255);
  EXPECT_EQ(s.offsets.back(), long_line + 1);
  EXPECT_EQ(s.at.boundary, long_line + 1 + 5);
}

TEST(TailLines, ALineOfExactlyMaxLineIsWhole) {
  Split s;
  EXPECT_TRUE(s.feed(std::string(256, 'a') + "\n", 256));
  ASSERT_EQ(s.lines.size(), 1u);
  EXPECT_EQ(s.lines[0].size(), 256u);
  EXPECT_FALSE(s.cuts[0]);
  EXPECT_EQ(s.skipped, 0u);
}

}  // namespace
