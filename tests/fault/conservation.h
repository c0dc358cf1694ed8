// Conservation checker for the fault tests: the store must end with exactly the set of numbered
// records that the inputs accepted, each once, each with its expected event_id and with every
// content field as the test sent it (no merge of two records, no field lost or changed).
#pragma once

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
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

// A record's content fields as log_events holds them and the mariadb client prints them (-B):
// timestamp as DATETIME(6) in UTC ("2026-01-01 00:00:00.000000"), NULL as "NULL" (the tests
// send no such string), meta_json with its object keys sorted (normalise_json) so that the
// order a plugin wrote them in does not matter.
struct Fields {
  std::string timestamp, source, service, host, level,
      trace_id = "NULL", span_id = "NULL", event_type = "NULL", error_code = "NULL", message,
      meta_json = "NULL";

  static constexpr const char *kNames[] = {"timestamp",  "source",   "service",  "host",
                                           "level",      "trace_id", "span_id",  "event_type",
                                           "error_code", "message",  "meta_json"};
  // The fields in kNames order, tab-separated: what a stored row's content is compared with.
  std::string joined() const {
    std::string s;
    for (const std::string *f : {&timestamp, &source, &service, &host, &level, &trace_id, &span_id,
                                 &event_type, &error_code, &message, &meta_json})
      s += (f == &timestamp ? "" : "\t") + *f;
    return s;
  }
};

// A DATETIME(6) as the client prints it, from microseconds since the epoch (UTC).
inline std::string datetime6(int64_t usec) {
  const time_t secs = static_cast<time_t>(usec / 1000000);
  struct tm t;
  gmtime_r(&secs, &t);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d.%06lld", t.tm_year + 1900, t.tm_mon + 1,
           t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<long long>(usec % 1000000));
  return buf;
}

// JSON text rewritten with every object's keys sorted and no spaces; "NULL" and text that is
// not JSON stay as they are (and so differ from any expectation written as JSON).
inline std::string normalise_json(const std::string &text) {
  rapidjson::Document d;
  if (text == "NULL" || d.Parse(text.c_str()).HasParseError()) return text;
  std::function<void(rapidjson::Value &)> sort = [&](rapidjson::Value &v) {
    if (v.IsObject()) {
      for (auto &m : v.GetObject()) sort(m.value);
      std::sort(v.MemberBegin(), v.MemberEnd(), [](const auto &a, const auto &b) {
        return std::string_view(a.name.GetString(), a.name.GetStringLength()) <
               std::string_view(b.name.GetString(), b.name.GetStringLength());
      });
    } else if (v.IsArray()) {
      for (auto &e : v.GetArray()) sort(e);
    }
  };
  sort(d);
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  d.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

// One stored row: the number its message ends with, its event_id in lower-case hex, and its
// content (Fields::joined's form, meta_json normalised).
struct StoredRow {
  uint64_t number = 0;
  std::string event_id;
  std::string content;
};

// Every row of log_events (the whole table, through the real client). The number is the last
// word of the message ("dummy record 17", "entry 17", "fault 17"); 0 when it has none.
inline std::vector<StoredRow> stored_rows(MariaDb &db, std::string *error = nullptr) {
  std::string out, err;
  std::vector<StoredRow> rows;
  const int rc = db.sql(
      "SELECT CAST(SUBSTRING_INDEX(message, ' ', -1) AS UNSIGNED), LOWER(HEX(event_id)), "
      "timestamp, source, service, host, level, trace_id, span_id, event_type, error_code, "
      "message, meta_json FROM log_events",
      &out, &err);
  if (rc != 0) {
    if (error) *error = "mariadb client exited " + std::to_string(rc) + ": " + err;
    return rows;
  }
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    StoredRow r;
    r.number = std::strtoull(line.c_str(), nullptr, 10);
    const auto id_at = line.find('\t');
    if (id_at != std::string::npos) {
      const auto content_at = line.find('\t', id_at + 1);
      r.event_id = line.substr(id_at + 1, content_at - id_at - 1);
      if (content_at != std::string::npos) {
        r.content = line.substr(content_at + 1);
        const auto meta_at = r.content.rfind('\t');
        if (meta_at != std::string::npos)
          r.content.replace(meta_at + 1, std::string::npos,
                            normalise_json(r.content.substr(meta_at + 1)));
      }
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

// How a stored content differs from the expected one: "level: stored WARN, sent ERROR; ...".
inline std::string field_differences(const std::string &stored, const std::string &expected) {
  const auto split = [](const std::string &s) {
    std::vector<std::string> v;
    size_t at = 0;
    for (;;) {
      const auto tab = s.find('\t', at);
      v.push_back(s.substr(at, tab - at));
      if (tab == std::string::npos) return v;
      at = tab + 1;
    }
  };
  const auto a = split(stored), b = split(expected);
  std::string out;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const std::string x = i < a.size() ? a[i] : "(none)", y = i < b.size() ? b[i] : "(none)";
    if (x == y) continue;
    out += std::string(out.empty() ? "" : "; ") +
           (i < std::size(Fields::kNames) ? Fields::kNames[i] : "extra field") + ": stored [" + x +
           "], sent [" + y + "]";
  }
  return out;
}

// What the store holds against what was accepted.
struct ConservationReport {
  uint64_t accepted = 0, rows = 0;
  std::vector<uint64_t> missing;       // accepted, not stored
  std::vector<uint64_t> duplicated;    // stored more than once (one entry per extra copy)
  std::vector<uint64_t> unexpected;    // stored, never accepted
  std::vector<uint64_t> wrong_id;      // stored with another event_id than its number's
  std::vector<uint64_t> wrong_fields;  // stored with another content than the record sent
  std::string first_wrong_fields;      // how the first of those differs, field by field
  uint64_t distinct_ids = 0;
  uint64_t distinct_contents = 0;  // rows that differ in some content field (merges shrink it)
  bool contents_checked = false;

  bool ok() const {
    return missing.empty() && duplicated.empty() && unexpected.empty() && wrong_id.empty() &&
           wrong_fields.empty() && rows == accepted && distinct_ids == rows &&
           (!contents_checked || distinct_contents == rows);
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
      << distinct_ids;
    if (contents_checked) s << ", distinct contents " << distinct_contents;
    s << "; missing " << missing.size() << " [" << ranges(missing) << "]; duplicated "
      << duplicated.size() << " [" << ranges(duplicated) << "]; never accepted "
      << unexpected.size() << " [" << ranges(unexpected) << "]; wrong event_id " << wrong_id.size()
      << " [" << ranges(wrong_id) << "]";
    if (contents_checked)
      s << "; wrong fields " << wrong_fields.size() << " [" << ranges(wrong_fields) << "]"
        << (first_wrong_fields.empty() ? "" : " (first: " + first_wrong_fields + ")");
    return s.str();
  }
};

// What each accepted record must be in the store: its event_id (lower-case hex) and its
// content fields, as the test sent them. Either may be left empty (not compared).
struct Expected {
  std::function<std::string(uint64_t)> event_id;
  std::function<Fields(uint64_t)> fields;
};

// Compares the rows with the accepted numbers, and with `expected` where it says.
inline ConservationReport check_conservation(const std::vector<StoredRow> &rows,
                                             const AcceptedSet &accepted,
                                             const Expected &expected = {}) {
  ConservationReport r;
  r.accepted = accepted.count();
  r.rows = rows.size();
  r.contents_checked = static_cast<bool>(expected.fields);
  uint64_t bound = accepted.bound();
  for (const auto &row : rows) bound = std::max(bound, row.number + 1);
  std::vector<uint32_t> seen(bound, 0);
  std::vector<std::string> ids, contents;
  ids.reserve(rows.size());
  for (const auto &row : rows) {
    if (seen[row.number]++ > 0) r.duplicated.push_back(row.number);
    if (!accepted.contains(row.number)) r.unexpected.push_back(row.number);
    if (expected.event_id && row.event_id != expected.event_id(row.number))
      r.wrong_id.push_back(row.number);
    if (expected.fields) {
      Fields sent = expected.fields(row.number);
      sent.meta_json = normalise_json(sent.meta_json);
      const std::string want = sent.joined();
      if (row.content != want) {
        if (r.wrong_fields.empty())
          r.first_wrong_fields =
              "record " + std::to_string(row.number) + ": " + field_differences(row.content, want);
        r.wrong_fields.push_back(row.number);
      }
      contents.push_back(row.content);
    }
    ids.push_back(row.event_id);
  }
  for (uint64_t n = 0; n < accepted.bound(); ++n)
    if (accepted.contains(n) && seen[n] == 0) r.missing.push_back(n);
  const auto distinct = [](std::vector<std::string> &v) {
    std::sort(v.begin(), v.end());
    return static_cast<uint64_t>(std::unique(v.begin(), v.end()) - v.begin());
  };
  r.distinct_ids = distinct(ids);
  r.distinct_contents = distinct(contents);
  for (auto *v : {&r.duplicated, &r.unexpected, &r.wrong_id, &r.wrong_fields})
    std::sort(v->begin(), v->end());
  return r;
}

// The gtest form: success, or a failure naming the missing, duplicated and altered numbers.
// The fault tests all say what each record must hold (expected.fields): a store that kept every
// number but merged, truncated or mixed up fields must fail them too.
inline ::testing::AssertionResult store_conserves(MariaDb &db, const AcceptedSet &accepted,
                                                  const Expected &expected,
                                                  ConservationReport *report = nullptr) {
  if (!expected.fields)
    return ::testing::AssertionFailure() << "store_conserves needs the records' expected fields";
  std::string err;
  const auto rows = stored_rows(db, &err);
  if (!err.empty()) return ::testing::AssertionFailure() << "cannot read the store: " << err;
  ConservationReport r = check_conservation(rows, accepted, expected);
  if (report) *report = r;
  if (r.ok()) return ::testing::AssertionSuccess() << r.describe();
  return ::testing::AssertionFailure() << "conservation broken: " << r.describe();
}

}  // namespace devmesh::test
