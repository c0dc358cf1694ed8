// The parser filter's timestamp formats: a strptime-like format compiled once at create() and
// matched against a field's text without allocation, with fractional seconds (%L or %f, 1 to 9
// digits) and zones (%z: Z, +hh, +hhmm, +hh:mm; %Z: UTC, GMT, Z). strptime itself knows neither
// fractions nor offsets portably, and reads the C locale's month names through the locale.
#pragma once

#include <time.h>
#include <timestamp.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::parser {

class TimeFormat {
 public:
  // The RFC 3339 forms a log line carries ("2025-11-28T19:55:40.431Z", with an offset, a space
  // for the T, any fraction), parsed without timegm (a libc call with locks and normalisation,
  // a third of the parser's time on a logfmt line). Anything else: false, for the general
  // parse_rfc3339 in timestamp.hpp to try.
  static bool rfc3339(std::string_view text, int64_t &ns) {
    static const TimeFormat kFrac = make("%Y-%m-%dT%H:%M:%S.%f%z"),
                            kWhole = make("%Y-%m-%dT%H:%M:%S%z");
    if (text.size() > 10 && (text[10] == ' ' || text[10] == 't')) return false;
    return (text.size() > 19 && text[19] == '.' ? kFrac : kWhole).parse(text, 0, ns);
  }

  // Compiles format; false with error set (the unknown or unfinished conversion) on a bad one.
  bool compile(std::string_view format, std::string &error) {
    ops_.clear();
    has_year_ = false;
    for (size_t i = 0; i < format.size(); ++i) {
      const char c = format[i];
      if (c != '%') {
        if (c == ' ' || c == '\t')
          ops_.push_back({kSpace, 0});
        else
          ops_.push_back({kLiteral, c});
        continue;
      }
      if (++i == format.size()) {
        error = "ends with a lone '%'";
        return false;
      }
      switch (format[i]) {
        case 'Y':
        case 'y':
        case 's':
          has_year_ = true;
          [[fallthrough]];
        case 'm':
        case 'd':
        case 'e':
        case 'H':
        case 'I':
        case 'M':
        case 'S':
        case 'j':
        case 'p':
        case 'b':
        case 'h':
        case 'B':
        case 'a':
        case 'A':
        case 'z':
        case 'Z':
          ops_.push_back({kConv, format[i] == 'h' ? 'b' : format[i]});
          break;
        case 'L':
        case 'f':
          ops_.push_back({kConv, 'f'});
          break;
        case 'T':
          for (char x : std::string_view("H:M:S"))
            ops_.push_back(x == ':' ? Op{kLiteral, ':'} : Op{kConv, x});
          break;
        case 'F':
          has_year_ = true;
          for (char x : std::string_view("Y-m-d"))
            ops_.push_back(x == '-' ? Op{kLiteral, '-'} : Op{kConv, x});
          break;
        case 'D':
          has_year_ = true;
          for (char x : std::string_view("m/d/y"))
            ops_.push_back(x == '/' ? Op{kLiteral, '/'} : Op{kConv, x});
          break;
        case '%':
          ops_.push_back({kLiteral, '%'});
          break;
        default:
          error = std::string("unknown conversion '%") + format[i] +
                  "' (known: %Y %y %m %d %e %H %I %M %S %L %f %p %j %b %B %a %A %z %Z %s %T %F "
                  "%D %%)";
          return false;
      }
    }
    return true;
  }

  // Parses text (the whole of it) to UTC nanoseconds. A format without a year (syslog's
  // "%b %d %H:%M:%S") takes the year of now_ns, or the year before when that would put the time
  // more than a day ahead of now_ns (December's lines read in January): kParserYearWindow.
  bool parse(std::string_view text, int64_t now_ns, int64_t &ns) const {
    int year = 1970, mon = 1, day = 1, hour = 0, min = 0, sec = 0, yday = -1;
    int64_t frac_ns = 0, offset_s = 0, epoch = 0;
    bool pm = false, has_pm = false, has_epoch = false, twelve = false;
    size_t p = 0;
    auto digits = [&](int max_len, int &out) {
      size_t start = p;
      out = 0;
      while (p < text.size() && p - start < size_t(max_len) && text[p] >= '0' && text[p] <= '9')
        out = out * 10 + (text[p++] - '0');
      return p > start;
    };
    for (const Op &op : ops_) {
      if (op.kind == kSpace) {
        while (p < text.size() && (text[p] == ' ' || text[p] == '\t')) ++p;
        continue;
      }
      if (op.kind == kLiteral) {
        if (p >= text.size() || text[p] != op.c) return false;
        ++p;
        continue;
      }
      switch (op.c) {
        case 'Y': {
          bool neg = p < text.size() && text[p] == '-';
          if (neg) ++p;
          if (!digits(4, year)) return false;
          if (neg) year = -year;
          break;
        }
        case 'y':
          if (!digits(2, year)) return false;
          year += year < 69 ? 2000 : 1900;  // POSIX: 69..99 are 19xx
          break;
        case 'm':
          if (!digits(2, mon)) return false;
          break;
        case 'd':
        case 'e':
          if (op.c == 'e' && p < text.size() && text[p] == ' ') ++p;
          if (!digits(2, day)) return false;
          break;
        case 'H':
          if (!digits(2, hour)) return false;
          break;
        case 'I':
          if (!digits(2, hour)) return false;
          twelve = true;
          break;
        case 'M':
          if (!digits(2, min)) return false;
          break;
        case 'S':
          if (!digits(2, sec)) return false;
          break;
        case 'j':
          if (!digits(3, yday)) return false;
          break;
        case 'f': {
          size_t start = p;
          int64_t scale = 100000000;
          while (p < text.size() && text[p] >= '0' && text[p] <= '9') {
            if (p - start < 9) {
              frac_ns += (text[p] - '0') * scale;
              scale /= 10;
            }
            ++p;
          }
          if (p == start) return false;
          break;
        }
        case 'p':
          if (match_word(text, p, "AM")) {
            pm = false;
          } else if (match_word(text, p, "PM")) {
            pm = true;
          } else {
            return false;
          }
          has_pm = true;
          break;
        case 'b':
        case 'B': {
          int m = month_name(text, p);
          if (m == 0) return false;
          mon = m;
          break;
        }
        case 'a':
        case 'A':
          if (!weekday_name(text, p)) return false;
          break;
        case 'z':
          if (!zone_offset(text, p, offset_s)) return false;
          break;
        case 'Z':
          if (match_word(text, p, "UTC") || match_word(text, p, "GMT") || match_word(text, p, "Z"))
            break;
          return false;
        case 's': {
          size_t start = p;
          while (p < text.size() && text[p] >= '0' && text[p] <= '9' && p - start < 12)
            epoch = epoch * 10 + (text[p++] - '0');
          if (p == start) return false;
          has_epoch = true;
          break;
        }
      }
    }
    if (p != text.size()) return false;
    if (has_epoch) {
      int64_t whole;
      if (__builtin_mul_overflow(epoch, int64_t(1000000000), &whole) ||
          __builtin_add_overflow(whole, frac_ns, &whole))
        return false;
      ns = whole;
      return true;
    }
    if (twelve || has_pm) {
      if (hour < 1 || hour > 12) return false;
      hour = hour % 12 + (pm ? 12 : 0);
    }
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
      return false;
    // Whole seconds, the fraction added once the year is known: the year is picked on them.
    auto at_year = [&](int y, int64_t &whole) {
      int64_t secs;
      return to_epoch(y, mon, day, yday, hour, min, sec, offset_s, secs) &&
             !__builtin_mul_overflow(secs, int64_t(1000000000), &whole);
    };
    int64_t whole;
    if (has_year_ ? !at_year(year, whole)
                  : !place_in_year(now_ns, kParserYearWindow, at_year, whole))
      return false;
    if (__builtin_add_overflow(whole, frac_ns, &whole)) return false;
    ns = whole;
    return true;
  }

 private:
  static TimeFormat make(std::string_view format) {
    TimeFormat f;
    std::string error;
    f.compile(format, error);
    return f;
  }

  enum Kind : uint8_t { kLiteral, kSpace, kConv };
  struct Op {
    Kind kind;
    char c;
  };

  static char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

  // Case-insensitive word at p; advances past it.
  static bool match_word(std::string_view text, size_t &p, std::string_view word) {
    if (text.size() - p < word.size()) return false;
    for (size_t i = 0; i < word.size(); ++i)
      if (lower(text[p + i]) != lower(word[i])) return false;
    p += word.size();
    return true;
  }

  // A month's full or three-letter English name: 1..12, or 0.
  static int month_name(std::string_view text, size_t &p) {
    static const char *const kMonths[] = {"january",   "february", "march",    "april",
                                          "may",       "june",     "july",     "august",
                                          "september", "october",  "november", "december"};
    for (int m = 0; m < 12; ++m) {
      const std::string_view full(kMonths[m]);
      if (match_word(text, p, full) || match_word(text, p, full.substr(0, 3))) return m + 1;
    }
    return 0;
  }

  static bool weekday_name(std::string_view text, size_t &p) {
    static const char *const kDays[] = {"sunday",   "monday", "tuesday", "wednesday",
                                        "thursday", "friday", "saturday"};
    for (const char *d : kDays) {
      const std::string_view full(d);
      if (match_word(text, p, full) || match_word(text, p, full.substr(0, 3))) return true;
    }
    return false;
  }

  // Z, +hh, +hhmm or +hh:mm (and -).
  static bool zone_offset(std::string_view text, size_t &p, int64_t &offset_s) {
    if (p < text.size() && (text[p] == 'Z' || text[p] == 'z')) {
      ++p;
      offset_s = 0;
      return true;
    }
    if (p >= text.size() || (text[p] != '+' && text[p] != '-')) return false;
    const int sign = text[p++] == '+' ? 1 : -1;
    auto two = [&](int &out) {
      if (text.size() - p < 2 || text[p] < '0' || text[p] > '9' || text[p + 1] < '0' ||
          text[p + 1] > '9')
        return false;
      out = (text[p] - '0') * 10 + (text[p + 1] - '0');
      p += 2;
      return true;
    };
    int hh = 0, mm = 0;
    if (!two(hh)) return false;
    if (p < text.size() && text[p] == ':') {
      ++p;
      if (!two(mm)) return false;
    } else if (p < text.size() && text[p] >= '0' && text[p] <= '9') {
      if (!two(mm)) return false;
    }
    if (hh > 23 || mm > 59) return false;
    offset_s = sign * (hh * 3600 + mm * 60);
    return true;
  }

  // Days since the epoch of a civil date (Howard Hinnant's days_from_civil): no timegm, whose
  // normalisation would accept Feb 31.
  static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
  }

  static bool to_epoch(int year, int mon, int day, int yday, int hour, int min, int sec,
                       int64_t offset_s, int64_t &secs) {
    static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    int64_t days;
    if (yday >= 1) {
      if (yday > (leap ? 366 : 365)) return false;
      days = days_from_civil(year, 1, 1) + yday - 1;
    } else {
      if (day > kDays[mon - 1] + (mon == 2 && leap)) return false;
      days = days_from_civil(year, mon, day);
    }
    secs = days * 86400 + hour * 3600 + min * 60 + sec - offset_s;
    return true;
  }

  std::vector<Op> ops_;
  bool has_year_ = false;
};

inline bool parse_rfc3339_fast(std::string_view text, int64_t &ns) {
  return TimeFormat::rfc3339(text, ns);
}

}  // namespace devmesh::parser
