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
