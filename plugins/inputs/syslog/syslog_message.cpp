// Parsing of one syslog message: RFC 5424 when a version follows the PRI, RFC 3164 otherwise.
#include "syslog_message.hpp"

#include <time.h>

#include <timestamp.hpp>

namespace devmesh::syslog {
namespace {

constexpr int64_t kSecond = 1000000000LL;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// "<PRI>" at the start: 1 to 3 digits, at most 191. pos is after '>' on success.
bool parse_pri(std::string_view s, size_t &pos, int &pri) {
  if (s.empty() || s[0] != '<') return false;
  size_t i = 1;
  int v = 0;
  while (i < s.size() && i <= 3 && is_digit(s[i])) v = v * 10 + (s[i++] - '0');
  if (i == 1 || i >= s.size() || s[i] != '>' || v > 191) return false;
  pri = v;
  pos = i + 1;
  return true;
}

// The next space-delimited token from pos; pos moves past it and past one space.
std::string_view token(std::string_view s, size_t &pos) {
  const size_t start = pos;
  while (pos < s.size() && s[pos] != ' ') ++pos;
  std::string_view t = s.substr(start, pos - start);
  if (pos < s.size()) ++pos;
  return t;
}

std::string_view nil_as_empty(std::string_view v) {
  return v == "-" ? std::string_view() : v;
}

std::string_view strip_bom(std::string_view m) {
  if (m.size() >= 3 && m.compare(0, 3, "\xEF\xBB\xBF") == 0) m.remove_prefix(3);
  return m;
}

// Printable US-ASCII except '=', ' ', ']' and '"' (RFC 5424's SD-NAME), 1..32 of them.
bool sd_name_char(char c) {
  return c > 32 && c < 127 && c != '=' && c != ']' && c != '"';
}

// STRUCTURED-DATA from pos: "-" or one or more [id name="value" ...]. pos is after it.
bool parse_sd(std::string_view s, size_t &pos, std::vector<SdParam> &out) {
  if (pos < s.size() && s[pos] == '-') {
    ++pos;
    return true;
  }
  if (pos >= s.size() || s[pos] != '[') return false;
  auto name = [&](std::string_view &n) {
    const size_t start = pos;
    while (pos < s.size() && sd_name_char(s[pos]) && pos - start < 32) ++pos;
    n = s.substr(start, pos - start);
    return !n.empty();
  };
  while (pos < s.size() && s[pos] == '[') {
    ++pos;
    std::string_view id;
    if (!name(id)) return false;
    bool any = false;
    while (pos < s.size() && s[pos] == ' ') {
      ++pos;
      SdParam p;
      p.id = id;
      if (!name(p.name) || pos + 1 >= s.size() || s[pos] != '=' || s[pos + 1] != '"') return false;
      pos += 2;
      const size_t start = pos;
      while (pos < s.size() && s[pos] != '"') pos += s[pos] == '\\' && pos + 1 < s.size() ? 2 : 1;
      if (pos >= s.size()) return false;
      p.raw_value = s.substr(start, pos - start);
      ++pos;
      out.push_back(p);
      any = true;
    }
    if (pos >= s.size() || s[pos] != ']') return false;
    ++pos;
    // An element without parameters says only that it was there: kept as its id, empty.
    if (!any) out.push_back(SdParam{id, {}, {}});
  }
  return true;
}

void parse_5424(std::string_view s, size_t pos, Message &out) {
  // VERSION was checked by the caller; pos is after it and its space.
  std::string_view ts = token(s, pos);
  if (ts.empty()) return void(out.failure = Failure::header);
  if (ts != "-") {
    if (!parse_rfc3339(ts, out.timestamp_ns)) return void(out.failure = Failure::header);
    out.has_timestamp = true;
  }
  // RFC 5424's field limits: 255, 48, 128 and 32 printable characters.
  struct Field {
    std::string_view *dst;
    size_t max;
  } fields[] = {{&out.hostname, 255}, {&out.app_name, 48}, {&out.procid, 128}, {&out.msgid, 32}};
  for (const Field &f : fields) {
    if (pos >= s.size()) return void(out.failure = Failure::header);
    std::string_view t = token(s, pos);
    if (t.empty() || t.size() > f.max) return void(out.failure = Failure::header);
    *f.dst = nil_as_empty(t);
  }
  if (pos > 0 && s[pos - 1] != ' ') return void(out.failure = Failure::header);
  if (!parse_sd(s, pos, out.sd)) return void(out.failure = Failure::structured);
  if (pos < s.size()) {
    if (s[pos] != ' ') return void(out.failure = Failure::structured);
    // rsyslog forwards a local message's leading space after the one that ends SD: dropped,
    // as Fluent Bit's rfc5424 parser does.
    std::string_view m = strip_bom(s.substr(pos + 1));
    while (!m.empty() && m.front() == ' ') m.remove_prefix(1);
    out.message = m;
  }
}

int month_of(std::string_view m) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  for (int i = 0; i < 12; ++i)
    if (m == kMonths[i]) return i + 1;
  return 0;
}

// "Mmm dd hh:mm:ss" (day space- or zero-padded, an optional fraction) at pos, then a space or
// the end. pos is past the space on success.
bool parse_bsd_time(std::string_view s, size_t &pos, int64_t now_ns, int64_t &ns) {
  if (s.size() - pos < 15) return false;
  const std::string_view t = s.substr(pos);
  const int month = month_of(t.substr(0, 3));
  if (month == 0 || t[3] != ' ') return false;
  auto two = [&](size_t at, int &v) {
    if (!is_digit(t[at + 1])) return false;
    v = (t[at] == ' ' ? 0 : t[at] - '0') * 10 + (t[at + 1] - '0');
    return t[at] == ' ' || is_digit(t[at]);
  };
  int day, hh, mm, ss;
  if (!two(4, day) || t[6] != ' ' || !two(7, hh) || t[9] != ':' || !two(10, mm) || t[12] != ':' ||
      !two(13, ss) || t[7] == ' ' || t[10] == ' ' || t[13] == ' ')
    return false;
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return false;
  size_t i = 15;
  int64_t frac = 0;
  if (i < t.size() && t[i] == '.') {
    int64_t scale = kSecond / 10;
    const size_t start = ++i;
    while (i < t.size() && is_digit(t[i])) {
      if (i - start < 9) frac += (t[i] - '0') * scale, scale /= 10;
      ++i;
    }
    if (i == start) return false;
  }
  if (i < t.size() && t[i] != ' ') return false;
  ns = bsd_time_ns(month, day, hh, mm, ss, frac, now_ns);
  pos += i < t.size() ? i + 1 : i;
  return true;
}

// An RFC 3339 timestamp as the first token (rsyslog's RSYSLOG_ForwardFormat sends one).
bool parse_iso_time(std::string_view s, size_t &pos, int64_t &ns) {
  if (pos + 10 > s.size() || !is_digit(s[pos]) || s[pos + 4] != '-') return false;
  size_t end = pos;
  while (end < s.size() && s[end] != ' ') ++end;
  if (!parse_rfc3339(s.substr(pos, end - pos), ns)) return false;
  pos = end < s.size() ? end + 1 : end;
  return true;
}

// TAG[PID]: or TAG: at the start of the content: the tag ends at '[' or ':' (at most 48
// characters, no space); anything else means the content has no tag.
bool parse_tag(std::string_view s, size_t &pos, Message &out) {
  size_t i = pos;
  while (i < s.size() && i - pos <= 48 && s[i] != '[' && s[i] != ':' && s[i] != ' ') ++i;
  if (i == pos || i >= s.size() || (s[i] != '[' && s[i] != ':')) return false;
  std::string_view tag = s.substr(pos, i - pos), pid;
  if (s[i] == '[') {
    const size_t close = s.find(']', i);
    if (close == std::string_view::npos || close - i > 129) return false;
    pid = s.substr(i + 1, close - i - 1);
    i = close + 1;
    // "tag[pid]" followed by a space and no colon is common enough (old BSD loggers).
    if (i < s.size() && s[i] != ':' && s[i] != ' ') return false;
  }
  if (i < s.size() && s[i] == ':') ++i;
  if (i < s.size() && s[i] == ' ') ++i;
  out.app_name = tag;
  out.procid = pid;
  pos = i;
  return true;
}

void parse_3164(std::string_view s, size_t pos, int64_t now_ns, Message &out) {
  int64_t ns = 0;
  const bool timed = parse_bsd_time(s, pos, now_ns, ns) || parse_iso_time(s, pos, ns);
  if (timed) {
    out.has_timestamp = true;
    out.timestamp_ns = ns;
    // HOSTNAME, unless the first word is already the tag (a local sender omits the host) or
    // the only word (then it is the message).
    size_t end = pos;
    while (end < s.size() && s[end] != ' ') ++end;
    const std::string_view word = s.substr(pos, end - pos);
    const bool tag_like =
        word.find('[') != std::string_view::npos || (!word.empty() && word.back() == ':');
    // (no hostname is longer than 255 bytes, the host column's width: such a word is content)
    if (!word.empty() && !tag_like && end < s.size() && word.size() <= 255) {
      out.hostname = word;
      pos = end + 1;
    }
  }
  parse_tag(s, pos, out);
  out.message = s.substr(pos);
}

}  // namespace

int64_t bsd_time_ns(int month, int day, int hh, int mm, int ss, int64_t frac_ns, int64_t now_ns) {
  // timegm normalises a date the year lacks (Feb 29 -> Mar 1): every year is accepted.
  auto at_year = [&](int year, int64_t &ns) {
    tm t{};
    t.tm_year = year - 1900;
    t.tm_mon = month - 1;
    t.tm_mday = day;
    t.tm_hour = hh;
    t.tm_min = mm;
    t.tm_sec = ss;
    ns = static_cast<int64_t>(timegm(&t)) * kSecond + frac_ns;
    return true;
  };
  int64_t ns = 0;
  place_in_year(now_ns, kSyslogYearWindow, at_year, ns);
  return ns;
}

void parse(std::string_view text, int64_t now_ns, Message &out) {
  out = Message{};
  size_t pos = 0;
  if (!parse_pri(text, pos, out.pri)) {
    out.pri = -1;
    out.failure = Failure::pri;
    out.message = text;
    return;
  }
  // VERSION: a nonzero digit (up to 3), then a space. An ISO timestamp also starts with digits
  // but goes on with more of them and '-'.
  size_t v = pos;
  while (v < text.size() && v - pos < 3 && is_digit(text[v])) ++v;
  if (v > pos && text[pos] != '0' && v < text.size() && text[v] == ' ') {
    out.rfc5424 = true;
    parse_5424(text, v + 1, out);
    if (out.failure != Failure::none) {
      const int pri = out.pri;
      const Failure failure = out.failure;
      out = Message{};
      out.pri = pri;
      out.rfc5424 = true;
      out.failure = failure;
      out.message = text;
    }
    return;
  }
  parse_3164(text, pos, now_ns, out);
}

std::string_view unescape(std::string_view raw, std::string &scratch) {
  if (raw.find('\\') == std::string_view::npos) return raw;
  scratch.clear();
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size() &&
        (raw[i + 1] == '"' || raw[i + 1] == '\\' || raw[i + 1] == ']'))
      ++i;
    scratch += raw[i];
  }
  return scratch;
}

std::string_view facility_name(int facility) {
  static constexpr std::string_view kNames[] = {
      "kern",   "user",   "mail",     "daemon", "auth",   "syslog",   "lpr",     "news",
      "uucp",   "cron",   "authpriv", "ftp",    "ntp",    "security", "console", "solaris-cron",
      "local0", "local1", "local2",   "local3", "local4", "local5",   "local6",  "local7"};
  return facility >= 0 && facility < 24 ? kNames[facility] : std::string_view();
}

}  // namespace devmesh::syslog
