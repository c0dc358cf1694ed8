// The conservation checker itself (no database): it must name missing, duplicated, never
// accepted, mis-identified and altered records, or the fault tests could pass on a broken store.
#include <gtest/gtest.h>

#include "conservation.h"

using namespace devmesh::test;

namespace {

std::string id_of(uint64_t n) {
  return "id" + std::to_string(n);
}

// Record n as a test sends it: its number in the message and in meta, a level of its own.
Fields fields_of(uint64_t n) {
  Fields f;
  f.timestamp = datetime6(1767225600000000 + static_cast<int64_t>(n) * 1000);
  f.source = "test";
  f.service = "svc";
  f.host = "h";
  f.level = n % 2 ? "ERROR" : "INFO";
  f.trace_id = "t" + std::to_string(n);
  f.message = "record " + std::to_string(n);
  f.meta_json = "{\"seq\":\"" + std::to_string(n) + "\",\"k\":\"v\"}";
  return f;
}

// Stored as sent (meta_json normalised, as stored_rows reads it).
StoredRow row_of(uint64_t n) {
  Fields f = fields_of(n);
  f.meta_json = normalise_json(f.meta_json);
  return {n, id_of(n), f.joined()};
}

std::vector<StoredRow> rows_for(std::initializer_list<uint64_t> numbers) {
  std::vector<StoredRow> rows;
  for (uint64_t n : numbers) rows.push_back(row_of(n));
  return rows;
}

TEST(ConservationChecker, AcceptsExactlyTheAcceptedRecordsEachOnce) {
  AcceptedSet accepted;
  accepted.add_range(1, 5);
  const auto r = check_conservation(rows_for({3, 1, 2, 5, 4}), accepted, {id_of, fields_of});
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.distinct_contents, 5u);
}

TEST(ConservationChecker, NamesARecordStoredWithAFieldOtherThanTheOneSent) {
  AcceptedSet accepted;
  accepted.add_range(1, 3);
  auto rows = rows_for({1, 2, 3});
  Fields changed = fields_of(3);
  changed.level = "WARN";
  changed.trace_id = "NULL";
  rows[2].content = changed.joined();
  const auto r = check_conservation(rows, accepted, {id_of, fields_of});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.wrong_fields, std::vector<uint64_t>{3});
  EXPECT_NE(r.describe().find("level: stored [WARN], sent [ERROR]; trace_id: stored [NULL], sent "
                              "[t3]"),
            std::string::npos)
      << r.describe();
}

TEST(ConservationChecker, ComparesMetaJsonWhateverTheOrderOfItsKeys) {
  AcceptedSet accepted;
  accepted.add(1);
  StoredRow row = row_of(1);
  Fields reordered = fields_of(1);
  reordered.meta_json = normalise_json("{\"k\": \"v\", \"seq\": \"1\"}");
  row.content = reordered.joined();
  EXPECT_TRUE(check_conservation({row}, accepted, {id_of, fields_of}).ok());
  reordered.meta_json = normalise_json("{\"seq\":\"1\"}");
  row.content = reordered.joined();
  EXPECT_FALSE(check_conservation({row}, accepted, {id_of, fields_of}).ok());
}

// Two distinct records kept under their own numbers but with one content (a merge that kept
// both ids): the distinct-content count says so even where every other count is right.
TEST(ConservationChecker, CountsTwoRowsWithOneContentAsOneDistinctContent) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  auto rows = rows_for({1, 2});
  rows[1].content = rows[0].content;
  const auto r = check_conservation(rows, accepted, {id_of, fields_of});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.distinct_contents, 1u);
  EXPECT_EQ(r.wrong_fields, std::vector<uint64_t>{2});
}

TEST(ConservationChecker, NamesMissingRecordsAsRanges) {
  AcceptedSet accepted;
  accepted.add_range(1, 10);
  const auto r = check_conservation(rows_for({1, 2, 6, 7, 9}), accepted, {id_of, {}});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(ConservationReport::ranges(r.missing), "3-5, 8, 10");
  EXPECT_NE(r.describe().find("missing 5 [3-5, 8, 10]"), std::string::npos) << r.describe();
}

TEST(ConservationChecker, NamesARecordStoredTwiceUnderAnotherEventId) {
  AcceptedSet accepted;
  accepted.add_range(1, 3);
  auto rows = rows_for({1, 2, 3});
  rows.push_back({2, "summary-of-2", ""});
  const auto r = check_conservation(rows, accepted);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.duplicated, std::vector<uint64_t>{2});
  EXPECT_EQ(r.rows, 4u);
}

TEST(ConservationChecker, NamesRecordsThatWereNeverAccepted) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  const auto r = check_conservation(rows_for({1, 2, 7}), accepted, {id_of, {}});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.unexpected, std::vector<uint64_t>{7});
}

TEST(ConservationChecker, NamesRecordsStoredWithAnotherEventIdThanTheirOwn) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  const auto r = check_conservation({row_of(1), {2, "not-the-id-of-2", row_of(2).content}},
                                    accepted, {id_of, {}});
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.wrong_id, std::vector<uint64_t>{2});
}

TEST(ConservationChecker, CountsTwoRowsWithOneEventIdAsOneDistinctId) {
  AcceptedSet accepted;
  accepted.add_range(1, 2);
  const auto r = check_conservation({{1, "same", ""}, {2, "same", ""}}, accepted);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.distinct_ids, 1u);
}

TEST(ConservationChecker, ShortensLongRangeListsAfterTheLimit) {
  std::vector<uint64_t> numbers;
  for (uint64_t n = 0; n < 100; n += 2) numbers.push_back(n);
  EXPECT_EQ(ConservationReport::ranges(numbers, 3), "0, 2, 4, ...");
}

}  // namespace
