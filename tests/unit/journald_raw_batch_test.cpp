// The journald reader's raw batch (handoff.hpp), without a journal: the field bytes it appends
// stay intact when the buffer grows past its reservation, and a recycled batch keeps its room
// for the next read unless a burst grew it past the bound.
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "handoff.hpp"

using namespace devmesh::journald;

namespace {

std::string field_text(size_t i) {
  return "FIELD_" + std::to_string(i) + "=" + std::string(i % 97, 'v');
}

TEST(JournaldRawBatch, KeepsEveryFieldsBytesWhenItsBufferGrowsPastTheReservation) {
  RawBatch raw;
  raw.reserve(1);  // 4096 bytes: the fields below need many times that
  const size_t reserved = raw.bytes.capacity();
  for (size_t i = 0; i < 2000; ++i) {
    const std::string f = field_text(i);
    raw.fields.push_back(RawBatch::Field{raw.bytes.append(f.data(), f.size()), f.size()});
  }
  EXPECT_GT(raw.bytes.capacity(), reserved);
  for (size_t i = 0; i < 2000; ++i) EXPECT_EQ(raw.field(raw.fields[i]), field_text(i)) << i;
}

TEST(JournaldRawBatch, AppendsToAnEmptyBufferAndLeavesAMovedFromOneEmpty) {
  FieldBytes a;
  EXPECT_EQ(a.append("", 0), 0u);
  EXPECT_EQ(a.append("MESSAGE=x", 9), 0u);
  EXPECT_EQ(a.append("PRIORITY=6", 10), 9u);
  FieldBytes b = std::move(a);
  EXPECT_EQ(std::string(b.data(), b.size()), "MESSAGE=xPRIORITY=6");
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(a.append("_PID=1", 6), 0u);  // a moved-from buffer is usable again
  EXPECT_EQ(std::string(a.data(), a.size()), "_PID=1");
}

TEST(JournaldRawBatch, RecycledKeepsItsRoomUnlessABurstGrewItPastTheBound) {
  RawBatch kept, grown;
  kept.reserve(1024);
  const size_t room = kept.bytes.capacity();
  kept.bytes.append("MESSAGE=a", 9);
  kept.recycle(1024);
  EXPECT_EQ(kept.bytes.size(), 0u);
  EXPECT_EQ(kept.bytes.capacity(), room);

  grown.reserve(1024);
  const std::string big(kRawBatchBytes + kRawBatchSlack + 1, 'x');
  grown.bytes.append(big.data(), big.size());
  grown.recycle(1024);
  EXPECT_EQ(grown.bytes.capacity(), 0u);
  grown.reserve(1024);
  EXPECT_EQ(grown.bytes.capacity(), room);
}

}  // namespace
