// The ledger journald and tail keep of their submitted batches (plugins/common/ack_ledger.hpp):
// acknowledgements in any order settle batches only in submission order, so a checkpoint never
// passes a batch still in the pipeline.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ack_ledger.hpp"

namespace {

using Ledger = devmesh::AckLedger<std::string>;

std::vector<std::string> ack(Ledger &l, uint64_t ticket) {
  std::vector<std::string> settled;
  const size_t n = l.acknowledged(ticket, [&](std::string &p) { settled.push_back(p); });
  EXPECT_EQ(n, settled.size());
  return settled;
}

using Positions = std::vector<std::string>;

TEST(AckLedger, SettlesABatchOnlyOnceEveryBatchBeforeItIsAcknowledged) {
  Ledger l;
  l.submitted(1, "a");
  l.submitted(2, "b");
  l.submitted(3, "c");
  l.submitted(4, "d");
  EXPECT_EQ(ack(l, 3), Positions{});
  EXPECT_EQ(ack(l, 2), Positions{});
  EXPECT_EQ(l.unsettled(), 4u);
  EXPECT_EQ(ack(l, 1), (Positions{"a", "b", "c"}));
  EXPECT_EQ(l.unsettled(), 1u);
  EXPECT_EQ(ack(l, 4), Positions{"d"});
  EXPECT_EQ(l.unsettled(), 0u);
}

TEST(AckLedger, SettlesInOrderAsAcknowledgementsArrive) {
  Ledger l;
  for (uint64_t t = 1; t <= 3; ++t) l.submitted(t, "p" + std::to_string(t));
  EXPECT_EQ(ack(l, 1), Positions{"p1"});
  EXPECT_EQ(ack(l, 2), Positions{"p2"});
  l.submitted(4, "p4");
  EXPECT_EQ(ack(l, 4), Positions{});
  EXPECT_EQ(ack(l, 3), (Positions{"p3", "p4"}));
}

TEST(AckLedger, AnAcknowledgementOfATicketNotRecordedYetCountsOnceItIs) {
  Ledger l;
  l.submitted(1, "a");
  EXPECT_EQ(ack(l, 2), Positions{});
  l.submitted(2, "b");
  EXPECT_EQ(ack(l, 1), (Positions{"a", "b"}));
}

TEST(AckLedger, HandsEachPositionOverToBeMovedFrom) {
  devmesh::AckLedger<std::vector<int>> l;
  l.submitted(1, std::vector<int>{1, 2, 3});
  std::vector<int> checkpoint;
  l.acknowledged(1, [&](std::vector<int> &p) { checkpoint = std::move(p); });
  EXPECT_EQ(checkpoint, (std::vector<int>{1, 2, 3}));
}

}  // namespace
