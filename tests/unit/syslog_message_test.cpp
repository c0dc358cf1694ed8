// The syslog input's message parser (plugins/inputs/syslog/syslog_message.cpp) on its own: the
// year of a BSD timestamp across New Year, which an integration test cannot place (it depends on
// the arrival time), the field boundaries of each format, and arbitrary bytes never read past
// their end.
#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <string>

#include "syslog_message.hpp"
#include "timestamp.hpp"

namespace {

using devmesh::parse_rfc3339;
namespace syslog = devmesh::syslog;

int64_t at(const char *rfc3339) {
  int64_t ns = 0;
  EXPECT_TRUE(parse_rfc3339(rfc3339, ns)) << rfc3339;
  return ns;
}

TEST(SyslogBsdYear, ADecemberMessageReadInJanuaryIsFromThePreviousYear) {
  EXPECT_EQ(syslog::bsd_time_ns(12, 31, 23, 59, 50, 0, at("2026-01-01T00:00:30Z")),
            at("2025-12-31T23:59:50Z"));
}

TEST(SyslogBsdYear, AJanuaryMessageFromASenderAheadOfUsIsFromTheNextYear) {
  EXPECT_EQ(syslog::bsd_time_ns(1, 1, 0, 0, 10, 0, at("2025-12-31T23:59:50Z")),
            at("2026-01-01T00:00:10Z"));
}

TEST(SyslogBsdYear, AMessageAFewDaysAheadOrMonthsBehindStaysInTheCurrentYear) {
  const int64_t now = at("2025-06-15T12:00:00Z");
  EXPECT_EQ(syslog::bsd_time_ns(6, 20, 12, 0, 0, 0, now), at("2025-06-20T12:00:00Z"));
  EXPECT_EQ(syslog::bsd_time_ns(1, 2, 3, 4, 5, 500000000, now), at("2025-01-02T03:04:05.5Z"));
  // More than a week ahead: last year's.
  EXPECT_EQ(syslog::bsd_time_ns(7, 1, 0, 0, 0, 0, now), at("2024-07-01T00:00:00Z"));
}

// Parses a copy kept for the whole test program (the message holds views into its text).
syslog::Message parsed(const std::string &text) {
  static std::deque<std::string> kept;
  kept.push_back(text);
  syslog::Message m;
  syslog::parse(kept.back(), at("2025-11-28T20:00:00Z"), m);
  return m;
}

TEST(SyslogParse, Rfc5424FieldsNilValuesAndStructuredData) {
  auto m = parsed(
      R"(<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application"][x@1 a="\]\"\\"] BOM-less)");
  EXPECT_EQ(m.failure, syslog::Failure::none);
  EXPECT_TRUE(m.rfc5424);
  EXPECT_EQ(m.pri, 165);
  EXPECT_EQ(m.timestamp_ns, at("2003-10-11T22:14:15.003Z"));
  EXPECT_EQ(m.hostname, "mymachine.example.com");
  EXPECT_EQ(m.app_name, "evntslog");
  EXPECT_EQ(m.procid, "");
  EXPECT_EQ(m.msgid, "ID47");
  ASSERT_EQ(m.sd.size(), 3u);
  EXPECT_EQ(m.sd[1].name, "eventSource");
  std::string scratch;
  EXPECT_EQ(syslog::unescape(m.sd[2].raw_value, scratch), "]\"\\");
  EXPECT_EQ(m.message, "BOM-less");
  m = parsed("<13>1 - - - - - -");
  EXPECT_EQ(m.failure, syslog::Failure::none);
  EXPECT_FALSE(m.has_timestamp);
  EXPECT_EQ(m.message, "");
}

TEST(SyslogParse, Rfc5424FailuresKeepTheWholeTextAndThePri) {
  for (const char *bad :
       {"<13>1 2025-13-01T00:00:00Z h a p m - x", "<13>1 -", "<13>1 - h a p",
        "<13>1 - h a p m [unterminated", "<13>1 - h a p m [id k=v]", "<13>1 - h a p m -x"}) {
    auto m = parsed(bad);
    EXPECT_NE(m.failure, syslog::Failure::none) << bad;
    EXPECT_EQ(m.message, bad);
    EXPECT_EQ(m.pri, 13) << bad;
  }
  // RFC 5424's field limits: an APP-NAME of 49 characters is no header.
  EXPECT_EQ(parsed("<13>1 - h " + std::string(49, 'a') + " - - - x").failure,
            syslog::Failure::header);
}

TEST(SyslogParse, PriMustBeOneToThreeDigitsUpTo191) {
  for (const char *bad : {"", "<", "<>", "<1234>x", "<192>x", "<-1>x", "13>x", "<13"})
    EXPECT_EQ(parsed(bad).failure, syslog::Failure::pri) << bad;
  EXPECT_EQ(parsed("<0>x").pri, 0);
  EXPECT_EQ(parsed("<191>x").pri, 191);
}

TEST(SyslogParse, Rfc3164Variants) {
  auto m = parsed("<34>Oct 11 22:14:15 mymachine su: 'su root' failed");
  EXPECT_EQ(m.hostname, "mymachine");
  EXPECT_EQ(m.app_name, "su");
  EXPECT_EQ(m.message, "'su root' failed");
  EXPECT_EQ(m.timestamp_ns, at("2025-10-11T22:14:15Z"));
  m = parsed("<34>Oct  1 02:04:05 sshd[77]: no host");
  EXPECT_EQ(m.hostname, "");
  EXPECT_EQ(m.app_name, "sshd");
  EXPECT_EQ(m.procid, "77");
  EXPECT_EQ(m.message, "no host");
  EXPECT_EQ(m.timestamp_ns, at("2025-10-01T02:04:05Z"));
  m = parsed("<34>Oct 11 22:14:15.250 host app[1] bare pid");
  EXPECT_EQ(m.timestamp_ns, at("2025-10-11T22:14:15.25Z"));
  EXPECT_EQ(m.app_name, "app");
  EXPECT_EQ(m.message, "bare pid");
  m = parsed("<34>2025-11-28T19:55:40+01:00 host app: iso");
  EXPECT_EQ(m.timestamp_ns, at("2025-11-28T18:55:40Z"));
  EXPECT_EQ(m.hostname, "host");
  m = parsed("<34>host and words, no tag");
  EXPECT_FALSE(m.has_timestamp);
  EXPECT_EQ(m.hostname, "");
  EXPECT_EQ(m.app_name, "");
  EXPECT_EQ(m.message, "host and words, no tag");
  m = parsed("<34>Oct 11 22:14:15 onlyword");
  EXPECT_EQ(m.hostname, "");
  EXPECT_EQ(m.message, "onlyword");
  // Not a BSD timestamp (a day past 31): all of it is content.
  m = parsed("<34>Oct 32 22:14:15 host app: x");
  EXPECT_FALSE(m.has_timestamp);
  EXPECT_EQ(m.failure, syslog::Failure::none);
}

TEST(SyslogParse, ArbitraryBytesNeverCrashAndEveryViewStaysInside) {
  std::mt19937 rng(12345);
  const std::string alphabet = "<>0123456789 -[]=\"\\:1TZ.+abcNovOct\xff\n";
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 64);
    for (int j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
    if (i % 2) s = "<13>1 " + s;
    syslog::Message m;
    syslog::parse(s, at("2025-11-28T20:00:00Z"), m);
    for (std::string_view v : {m.hostname, m.app_name, m.procid, m.msgid, m.message})
      if (!v.empty()) {
        ASSERT_GE(v.data(), s.data()) << s;
        ASSERT_LE(v.data() + v.size(), s.data() + s.size()) << s;
      }
  }
}

}  // namespace
