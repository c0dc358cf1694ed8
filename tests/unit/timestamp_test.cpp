// The shared timestamp helpers of in-tree plugins.
#include <gtest/gtest.h>

#include "timestamp.hpp"

using namespace devmesh;

TEST(Timestamp, ParsesTheShapesClientsSend) {
  int64_t ns = 0;
  ASSERT_TRUE(parse_rfc3339("2025-11-28T19:55:40.521872Z", ns));
  EXPECT_EQ(ns, 1764359740521872000LL);
  ASSERT_TRUE(parse_rfc3339("2025-11-28T19:55:40.521872123Z", ns));
  EXPECT_EQ(ns, 1764359740521872123LL);
  ASSERT_TRUE(parse_rfc3339("2025-11-28T21:55:40.5+02:00", ns));
  EXPECT_EQ(ns, 1764359740500000000LL);
  ASSERT_TRUE(parse_rfc3339("2025-11-28T19:55:40", ns));
  EXPECT_EQ(ns, 1764359740000000000LL);
  ASSERT_TRUE(parse_rfc3339("2025-11-28", ns));
  EXPECT_EQ(ns, 1764288000000000000LL);
}

TEST(Timestamp, RefusesWhatIsNotATime) {
  int64_t ns = 7;
  for (const char *bad : {"", "yesterday", "2025-13-01T00:00:00Z", "2025-02-31T00:00:00Z",
                          "2025-11-28T19:55", "2025-11-28T19:55:40.Z", "2025-11-28T19:55:40+2",
                          "2025-11-28T19:55:40Zjunk", "2025-11-28T25:00:00Z"}) {
    EXPECT_FALSE(parse_rfc3339(bad, ns)) << bad;
  }
  EXPECT_EQ(ns, 7);
}

TEST(Timestamp, EpochNumbersAreSecondsOrMilliseconds) {
  int64_t ns;
  ASSERT_TRUE(epoch_number_to_ns(1764359740.5, ns));
  EXPECT_EQ(ns, 1764359740500000000LL);
  ASSERT_TRUE(epoch_number_to_ns(1764359740521.0, ns));
  EXPECT_EQ(ns, 1764359740521000000LL);
  EXPECT_FALSE(epoch_number_to_ns(-1, ns));
}

TEST(Timestamp, FormatsWithMicrosecondsLikeThePrototype) {
  EXPECT_EQ(format_rfc3339_us(1764359740521872123LL), "2025-11-28T19:55:40.521872Z");
  EXPECT_EQ(format_rfc3339_us(-1), "1969-12-31T23:59:59.999999Z");
}

namespace {

int64_t at(const char *rfc3339) {
  int64_t ns = 0;
  EXPECT_TRUE(parse_rfc3339(rfc3339, ns)) << rfc3339;
  return ns;
}

// The year-less time "month day hh:mm:ss" placed in a year by the window, as the syslog input
// and the parser filter call it; false when the date does not exist in the year asked for.
bool place(int month, int day, int hh, int mm, int ss, int64_t now_ns, YearlessWindow window,
           int64_t &ns) {
  auto at_year = [&](int year, int64_t &out) {
    tm t{};
    t.tm_year = year - 1900;
    t.tm_mon = month - 1;
    t.tm_mday = day;
    t.tm_hour = hh;
    t.tm_min = mm;
    t.tm_sec = ss;
    const time_t s = timegm(&t);
    tm back;
    gmtime_r(&s, &back);
    if (back.tm_mday != day) return false;  // Feb 29 outside a leap year
    out = static_cast<int64_t>(s) * 1000000000;
    return true;
  };
  return place_in_year(now_ns, window, at_year, ns);
}

}  // namespace

TEST(YearlessTime, TheUtcYearChangesAtMidnightOfNewYear) {
  EXPECT_EQ(utc_year(at("2025-12-31T23:59:59.999999999Z")), 2025);
  EXPECT_EQ(utc_year(at("2026-01-01T00:00:00Z")), 2026);
}

TEST(YearlessTime, ADecemberTimeReadJustAfterNewYearIsLastYearsInBothWindows) {
  const int64_t now = at("2026-01-01T00:00:30Z");
  int64_t ns = 0;
  ASSERT_TRUE(place(12, 31, 23, 59, 50, now, kSyslogYearWindow, ns));
  EXPECT_EQ(ns, at("2025-12-31T23:59:50Z"));
  ASSERT_TRUE(place(12, 31, 23, 59, 50, now, kParserYearWindow, ns));
  EXPECT_EQ(ns, at("2025-12-31T23:59:50Z"));
}

TEST(YearlessTime, AJanuaryTimeReadJustBeforeNewYearIsNextYearsOnlyForSyslog) {
  const int64_t now = at("2025-12-31T23:59:50Z");
  int64_t ns = 0;
  ASSERT_TRUE(place(1, 1, 0, 0, 10, now, kSyslogYearWindow, ns));
  EXPECT_EQ(ns, at("2026-01-01T00:00:10Z"));
  // The parser's window never looks into next year: this year's January 1st.
  ASSERT_TRUE(place(1, 1, 0, 0, 10, now, kParserYearWindow, ns));
  EXPECT_EQ(ns, at("2025-01-01T00:00:10Z"));
}

TEST(YearlessTime, ATimeExactlyAtTheWindowsEdgeStaysThisYearAndASecondPastItDoesNot) {
  const int64_t now = at("2025-06-15T12:00:00Z");
  int64_t ns = 0;
  ASSERT_TRUE(place(6, 16, 12, 0, 0, now, kParserYearWindow, ns));  // one day ahead
  EXPECT_EQ(ns, at("2025-06-16T12:00:00Z"));
  ASSERT_TRUE(place(6, 16, 12, 0, 1, now, kParserYearWindow, ns));
  EXPECT_EQ(ns, at("2024-06-16T12:00:01Z"));
  ASSERT_TRUE(place(6, 22, 12, 0, 0, now, kSyslogYearWindow, ns));  // seven days ahead
  EXPECT_EQ(ns, at("2025-06-22T12:00:00Z"));
  ASSERT_TRUE(place(6, 22, 12, 0, 1, now, kSyslogYearWindow, ns));
  EXPECT_EQ(ns, at("2024-06-22T12:00:01Z"));
  // Two days ahead: past the parser's day, within syslog's week.
  ASSERT_TRUE(place(6, 17, 12, 0, 0, now, kParserYearWindow, ns));
  EXPECT_EQ(ns, at("2024-06-17T12:00:00Z"));
  ASSERT_TRUE(place(6, 17, 12, 0, 0, now, kSyslogYearWindow, ns));
  EXPECT_EQ(ns, at("2025-06-17T12:00:00Z"));
}

TEST(YearlessTime, ADateTheChosenYearLacksIsRefused) {
  int64_t ns = 0;
  // February 29th read in 2025 (no leap year): refused, not moved to March 1st.
  EXPECT_FALSE(place(2, 29, 8, 0, 0, at("2025-06-15T12:00:00Z"), kParserYearWindow, ns));
  // Read in 2024 it exists.
  ASSERT_TRUE(place(2, 29, 8, 0, 0, at("2024-06-15T12:00:00Z"), kParserYearWindow, ns));
  EXPECT_EQ(ns, at("2024-02-29T08:00:00Z"));
}
