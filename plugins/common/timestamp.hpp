// Timestamps shared by in-tree plugins (header-only, compiled into each plugin): RFC 3339
// parsing with Z or an offset and up to nanosecond fractions, epoch numbers, the year of a
// timestamp written without one, and formatting as the prototype wrote them (UTC,
// microseconds, trailing Z).
#pragma once

#include <time.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace devmesh {

// Parses "2025-11-28T19:55:40.521872Z", "2025-11-28 19:55:40+02:00", "2025-11-28T19:55:40"
// (no zone: UTC, as the prototype's clients sent) or a date alone "2025-11-28". Returns false
// on anything else, leaving ns untouched.
inline bool parse_rfc3339(std::string_view s, int64_t &ns) {
  auto digits = [&](size_t pos, size_t n, int &out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (size_t i = pos; i < pos + n; i++) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  tm t{};
  int year, mon, day, hh = 0, mm = 0, ss = 0;
  if (!digits(0, 4, year) || s.size() < 10 || s[4] != '-' || !digits(5, 2, mon) || s[7] != '-' ||
      !digits(8, 2, day))
    return false;
  size_t i = 10;
  int64_t frac_ns = 0;
  int64_t offset_s = 0;
  if (i < s.size()) {
    if (s[i] != 'T' && s[i] != 't' && s[i] != ' ') return false;
    if (!digits(i + 1, 2, hh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2, mm) ||
        i + 6 >= s.size() || s[i + 6] != ':' || !digits(i + 7, 2, ss))
      return false;
    i += 9;
    if (i < s.size() && s[i] == '.') {
      size_t start = ++i;
      int64_t scale = 100000000;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (i - start < 9) {
          frac_ns += (s[i] - '0') * scale;
          scale /= 10;
        }
        i++;
      }
      if (i == start) return false;
    }
    if (i < s.size()) {
      if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == s.size()) {
        i++;
      } else if ((s[i] == '+' || s[i] == '-') && i + 6 == s.size() && s[i + 3] == ':') {
        int oh, om;
        if (!digits(i + 1, 2, oh) || !digits(i + 4, 2, om) || oh > 23 || om > 59) return false;
        offset_s = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
        i += 6;
      } else {
        return false;
      }
    }
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return false;
  t.tm_year = year - 1900;
  t.tm_mon = mon - 1;
  t.tm_mday = day;
  t.tm_hour = hh;
  t.tm_min = mm;
  t.tm_sec = ss;
  time_t secs = timegm(&t);
  // timegm normalises out-of-range days (Feb 31 -> Mar 3): refuse those.
  tm back;
  gmtime_r(&secs, &back);
  if (back.tm_mday != day && ss != 60) return false;
  // Nanoseconds since the epoch fit an int64 only from 1677 to 2262: refuse, never overflow.
  int64_t whole_ns;
  if (__builtin_mul_overflow(static_cast<int64_t>(secs) - offset_s, 1000000000LL, &whole_ns) ||
      __builtin_add_overflow(whole_ns, frac_ns, &whole_ns))
    return false;
  ns = whole_ns;
  return true;
}

// Epoch seconds (< 1e11) or milliseconds (>= 1e11) as a JSON number, to nanoseconds.
inline bool epoch_number_to_ns(double v, int64_t &ns) {
  if (!(v >= 0) || v > 4102444800000.0) return false;  // NaN, negative, or past year 2100 in ms
  if (v < 1e11 && v > 9223372035.0) return false;      // seconds whose ns overflow an int64
  // Split whole and fraction so large millisecond values keep their exact integer part.
  int64_t whole = static_cast<int64_t>(v);
  double frac = v - static_cast<double>(whole);
  int64_t unit = v < 1e11 ? 1000000000LL : 1000000LL;
  ns = whole * unit + llround(frac * static_cast<double>(unit));
  return true;
}

// The year of a timestamp that has none (RFC 3164's "Mmm dd hh:mm:ss", a time format without
// %Y): the year of now, unless that puts it further ahead of now than window.ahead_ns (then the
// year before: December's lines read in January) or further behind than window.behind_ns (then
// the year after: a sender whose clock is past New Year before ours; 0 never does this).
struct YearlessWindow {
  int64_t ahead_ns;
  int64_t behind_ns;  // 0: a time behind now is always this year's
};

// The syslog input's window: a BSD timestamp is the one nearest the arrival, as rsyslog and
// syslog-ng read them, with a week of clock skew or queueing allowed ahead.
inline constexpr YearlessWindow kSyslogYearWindow{7 * 86400 * 1000000000LL,
                                                  358 * 86400 * 1000000000LL};
// The parser filter's window, as its README section documents it: this year, or the year before
// when more than a day ahead; never next year. It differs from the syslog input's on purpose
// (each is documented and tested as it is): this file only shares the rule's mechanics.
inline constexpr YearlessWindow kParserYearWindow{86400 * 1000000000LL, 0};

// The UTC year of a time in nanoseconds since the epoch.
inline int utc_year(int64_t ns) {
  const time_t s = static_cast<time_t>(ns / 1000000000);
  tm g;
  gmtime_r(&s, &g);
  return g.tm_year + 1900;
}

// Places a year-less time in the year that window picks around now_ns. at_year(year, ns) gives
// the time in a year (false when it has no such date: Feb 29 outside a leap year); what ns
// holds is compared with now_ns, so a caller that adds a fraction later compares without it.
// False when at_year refuses the year it is asked for.
template <class AtYear>
inline bool place_in_year(int64_t now_ns, YearlessWindow window, AtYear &&at_year, int64_t &ns) {
  const int year = utc_year(now_ns);
  if (!at_year(year, ns)) return false;
  if (ns - window.ahead_ns > now_ns) return at_year(year - 1, ns);
  if (window.behind_ns > 0 && ns < now_ns - window.behind_ns) return at_year(year + 1, ns);
  return true;
}

// "2025-11-28T19:55:40.521872Z" into buf (at least 32 bytes); returns the length.
inline size_t format_rfc3339_us(int64_t ns, char *buf, size_t cap) {
  int64_t secs = ns / 1000000000;
  int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    secs -= 1;
  }
  time_t t = static_cast<time_t>(secs);
  tm g;
  gmtime_r(&t, &g);
  int n = snprintf(buf, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", g.tm_year + 1900, g.tm_mon + 1,
                   g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, static_cast<int>(frac / 1000));
  return n < 0 ? 0 : static_cast<size_t>(n) < cap ? static_cast<size_t>(n) : cap - 1;
}

inline std::string format_rfc3339_us(int64_t ns) {
  char buf[64];
  return std::string(buf, format_rfc3339_us(ns, buf, sizeof buf));
}

}  // namespace devmesh
