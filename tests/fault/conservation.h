// Conservation checker for the fault tests: the store must end with exactly the set of numbered
// records that the inputs accepted, each once, each with its expected event_id.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "mariadb.h"

namespace devmesh::test {

// The numbers the inputs accepted (a 2xx to the client, an entry in the fixture, a dummy
// record): a bitmap indexed by number.
class AcceptedSet {
 public:
  void add(uint64_t n) {
    if (n >= marks_.size()) marks_.resize(n + 1, 0);
    if (!marks_[n]) ++count_;
    marks_[n] = 1;
  }
  void add_range(uint64_t first, uint64_t last) {
    for (uint64_t n = first; n <= last; ++n) add(n);
  }
  bool contains(uint64_t n) const { return n < marks_.size() && marks_[n]; }
  uint64_t count() const { return count_; }
  uint64_t bound() const { return marks_.size(); }  // every number is below this

 private:
  std::vector<uint8_t> marks_;
  uint64_t count_ = 0;
};

// One stored row: the number its message ends with and its event_id in lower-case hex.
struct StoredRow {
  uint64_t number = 0;
  std::string event_id;
};

// Every row of log_events (the whole table, through the real client). The number is the last
// word of the message ("dummy record 17", "entry 17", "fault 17"); 0 when it has none.
inline std::vector<StoredRow> stored_rows(MariaDb &db, std::string *error = nullptr) {
  std::string out, err;
  std::vector<StoredRow> rows;
  const int rc = db.sql(
      "SELECT CAST(SUBSTRING_INDEX(message, ' ', -1) AS UNSIGNED), LOWER(HEX(event_id)) "
      "FROM log_events",
      &out, &err);
  if (rc != 0) {
    if (error) *error = "mariadb client exited " + std::to_string(rc) + ": " + err;
    return rows;
  }
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto tab = line.find('\t');
    StoredRow r;
    r.number = std::strtoull(line.c_str(), nullptr, 10);
    if (tab != std::string::npos) r.event_id = line.substr(tab + 1);
    rows.push_back(std::move(r));
  }
  return rows;
}

// What the store holds against what was accepted.
struct ConservationReport {
  uint64_t accepted = 0, rows = 0;
  std::vector<uint64_t> missing;     // accepted, not stored
  std::vector<uint64_t> duplicated;  // stored more than once (one entry per extra copy)
  std::vector<uint64_t> unexpected;  // stored, never accepted
  std::vector<uint64_t> wrong_id;    // stored with another event_id than its number's
  uint64_t distinct_ids = 0;

  bool ok() const {
    return missing.empty() && duplicated.empty() && unexpected.empty() && wrong_id.empty() &&
           rows == accepted && distinct_ids == rows;
  }

  // Numbers as ranges ("5-9, 12"), at most `limit` ranges, for a failure message.
  static std::string ranges(const std::vector<uint64_t> &numbers, size_t limit = 20) {
    std::ostringstream s;
    size_t shown = 0, i = 0;
    while (i < numbers.size()) {
      size_t j = i;
      while (j + 1 < numbers.size() && numbers[j + 1] == numbers[j] + 1) ++j;
      if (shown++ == limit) {
        s << ", ...";
        break;
      }
      s << (i ? ", " : "") << numbers[i];
      if (j > i) s << "-" << numbers[j];
      i = j + 1;
    }
    return s.str();
  }

  std::string describe() const {
    std::ostringstream s;
    s << "accepted " << accepted << ", stored rows " << rows << ", distinct event_ids "
      << distinct_ids << "; missing " << missing.size() << " [" << ranges(missing)
      << "]; duplicated " << duplicated.size() << " [" << ranges(duplicated) << "]; never accepted "
      << unexpected.size() << " [" << ranges(unexpected) << "]; wrong event_id " << wrong_id.size()
      << " [" << ranges(wrong_id) << "]";
    return s.str();
  }
};

// Compares the rows with the accepted numbers. expected_id(n), when given, is the event_id
// (lower-case hex) record n must carry.
inline ConservationReport check_conservation(
    const std::vector<StoredRow> &rows, const AcceptedSet &accepted,
    const std::function<std::string(uint64_t)> &expected_id = {}) {
  ConservationReport r;
  r.accepted = accepted.count();
  r.rows = rows.size();
  uint64_t bound = accepted.bound();
  for (const auto &row : rows) bound = std::max(bound, row.number + 1);
  std::vector<uint32_t> seen(bound, 0);
  std::vector<std::string> ids;
  ids.reserve(rows.size());
  for (const auto &row : rows) {
    if (seen[row.number]++ > 0) r.duplicated.push_back(row.number);
    if (!accepted.contains(row.number)) r.unexpected.push_back(row.number);
    if (expected_id && row.event_id != expected_id(row.number)) r.wrong_id.push_back(row.number);
    ids.push_back(row.event_id);
  }
  for (uint64_t n = 0; n < accepted.bound(); ++n)
    if (accepted.contains(n) && seen[n] == 0) r.missing.push_back(n);
  std::sort(ids.begin(), ids.end());
  r.distinct_ids = static_cast<uint64_t>(std::unique(ids.begin(), ids.end()) - ids.begin());
  for (auto *v : {&r.duplicated, &r.unexpected, &r.wrong_id}) std::sort(v->begin(), v->end());
  return r;
}

// The gtest form: success, or a failure naming the missing and duplicated numbers.
inline ::testing::AssertionResult store_conserves(
    MariaDb &db, const AcceptedSet &accepted,
    const std::function<std::string(uint64_t)> &expected_id = {},
    ConservationReport *report = nullptr) {
  std::string err;
  const auto rows = stored_rows(db, &err);
  if (!err.empty()) return ::testing::AssertionFailure() << "cannot read the store: " << err;
  ConservationReport r = check_conservation(rows, accepted, expected_id);
  if (report) *report = r;
  if (r.ok()) return ::testing::AssertionSuccess() << r.describe();
  return ::testing::AssertionFailure() << "conservation broken: " << r.describe();
}

}  // namespace devmesh::test
