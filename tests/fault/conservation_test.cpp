// The conservation checker itself (no database): it must name missing, duplicated, never
// accepted and mis-identified records, or the fault tests could pass on a broken store.
#include <gtest/gtest.h>

#include "conservation.h"

using namespace devmesh::test;

namespace {

std::string id_of(uint64_t n) {
  return "id" + std::to_string(n);
}

std::vector<StoredRow> rows_for(std::initializer_list<uint64_t> numbers) {
  std::vector<StoredRow> rows;
  for (uint64_t n : numbers) rows.push_back({n, id_of(n)});
  return rows;
}

TEST(ConservationChecker, AcceptsExactlyTheAcceptedRecordsEachOnce) {
  AcceptedSet accepted;
  accepted.add_range(1, 5);
  const auto r = check_conservation(rows_for({3, 1, 2, 5, 4}), accepted, id_of);
  EXPECT_TRUE(r.ok()) << r.describe();
}

TEST(ConservationChecker, NamesMissingRecordsAsRanges) {
  AcceptedSet accepted;
  accepted.add_range(1, 10);
  const auto r = check_conservation(rows_for({1, 2, 6, 7, 9}), accepted, id_of);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(ConservationReport::ranges(r.missing), "3-5, 8, 10");
  EXPECT_NE(r.describe().find("missing 5 [3-5, 8, 10]"), std::string::npos) << r.describe();
}

TEST(ConservationChecker, NamesARecordStoredTwiceUnderAnotherEventId) {
  AcceptedSet accepted;
  accepted.add_range(1, 3);
  auto rows = rows_for({1, 2, 3});
  rows.push_back({2, "summary-of-2"});
  const auto r = check_conservation(rows, accepted);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.duplicated, std::vector<uint64_t>{2});
  EXPECT_EQ(r.rows, 4u);
}

TEST(ConservationChecker, NamesRecordsThatWereNeverAccepted) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  const auto r = check_conservation(rows_for({1, 2, 7}), accepted, id_of);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.unexpected, std::vector<uint64_t>{7});
}

TEST(ConservationChecker, NamesRecordsStoredWithAnotherEventIdThanTheirOwn) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  const auto r = check_conservation({{1, id_of(1)}, {2, "not-the-id-of-2"}}, accepted, id_of);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.wrong_id, std::vector<uint64_t>{2});
}

TEST(ConservationChecker, CountsTwoRowsWithOneEventIdAsOneDistinctId) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  const auto r = check_conservation({{1, "same"}, {2, "same"}}, accepted);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.distinct_ids, 1u);
}

TEST(ConservationChecker, ShortensLongRangeListsAfterTheLimit) {
  std::vector<uint64_t> numbers;
  for (uint64_t n = 0; n < 100; n += 2) numbers.push_back(n);
  EXPECT_EQ(ConservationReport::ranges(numbers, 3), "0, 2, 4, ...");
}

}  // namespace
