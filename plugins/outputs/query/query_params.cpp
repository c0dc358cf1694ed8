// Parsing and validation of the query endpoints' parameters (store-independent): every value is
// checked here, so a backend only ever binds well-formed values into parameterised SQL.
#include "query_params.h"

#include <curl/curl.h>
#include <devmesh/plugin.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <map>

#include "timestamp.hpp"

namespace devmesh::query {
namespace {

constexpr size_t kMaxValue = 2048;
constexpr size_t kMaxTerms = 32;
constexpr int64_t kMaxSinceMs = int64_t{3650} * 24 * 3600 * 1000;

std::string lower(std::string_view s) {
  std::string r(s);
  for (char &c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// A parameter name as it may be echoed in an error: printable ASCII, bounded.
std::string printable(std::string_view s) {
  std::string r;
  for (char c : s.substr(0, 64)) r += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 64) r += "...";
  return r;
}

std::string bad(std::string_view name, std::string_view why) {
  return "bad parameter '" + std::string(name) + "': " + std::string(why);
}

template <class T>
bool parse_int(std::string_view s, T &v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

// Collects the parameters by name; refuses unknown and repeated ones. An empty value counts as
// absent (the prototype's clients send "service=" for "any").
bool collect(const std::vector<std::pair<std::string, std::string>> &params,
             std::initializer_list<const char *> known, std::map<std::string, std::string> &out,
             std::string &error) {
  for (const auto &param : params) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in a lambda.
    const std::string &name = param.first, &value = param.second;
    if (std::find_if(known.begin(), known.end(), [&](const char *k) { return name == k; }) ==
        known.end()) {
      error = "unknown parameter '" + printable(name) + "'";
      return false;
    }
    if (out.count(name)) {
      error = bad(name, "given more than once");
      return false;
    }
    if (!value.empty()) out.emplace(name, value);
  }
  return true;
}

// RFC 3339 ("2025-11-28T00:00:00Z", a date, no zone = UTC) or epoch seconds / milliseconds.
bool parse_time(std::string_view s, int64_t &ns) {
  if (parse_rfc3339(s, ns)) return true;
  if (s.empty() || s.size() > 20) return false;
  char *end = nullptr;
  const std::string text(s);
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isdigit(static_cast<unsigned char>(text[0])))
    return false;
  return epoch_number_to_ns(v, ns);
}

bool parse_level_param(const std::map<std::string, std::string> &p, const char *name, int &level,
                       std::string &error) {
  auto it = p.find(name);
  if (it == p.end()) return true;
  level = level_from_name(it->second);
  if (!level)
    error = bad(name, "must be one of DEBUG, INFO, WARN, WARNING, ERROR, CRITICAL, FATAL");
  return level != 0;
}

}  // namespace

int level_from_name(std::string_view name) {
  std::string up(name);
  for (char &c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (up == dm_level_name(l)) return l;
  return 0;
}

std::vector<std::string> levels_at_or_above(std::string_view name) {
  std::vector<std::string> out;
  const int level = level_from_name(name);
  if (!level) return out;
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (dm_level_rank(l) >= dm_level_rank(level)) out.emplace_back(dm_level_name(l));
  return out;
}

std::vector<std::string> query_terms(std::string_view q) {
  std::vector<std::string> terms;
  std::string cur;
  for (char ch : q) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c >= 0x80) {
      cur += ch;
    } else if (!cur.empty()) {
      terms.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) terms.push_back(std::move(cur));
  return terms;
}

bool decode_query_string(std::string_view raw,
                         std::vector<std::pair<std::string, std::string>> &out,
                         std::string &error) {
  auto decode = [&](std::string_view part, std::string &dst) {
    std::string plus(part);
    std::replace(plus.begin(), plus.end(), '+', ' ');
    for (size_t i = 0; i < plus.size(); ++i)
      if (plus[i] == '%' &&
          (i + 2 >= plus.size() || !std::isxdigit(static_cast<unsigned char>(plus[i + 1])) ||
           !std::isxdigit(static_cast<unsigned char>(plus[i + 2])))) {
        error = "malformed percent-encoding in the query string";
        return false;
      }
    int len = 0;
    char *s = curl_easy_unescape(nullptr, plus.data(), static_cast<int>(plus.size()), &len);
    if (!s) {
      error = "malformed query string";
      return false;
    }
    dst.assign(s, static_cast<size_t>(len));
    curl_free(s);
    if (dst.find('\0') != std::string::npos) {
      error = "NUL byte in the query string";
      return false;
    }
    return true;
  };
  while (!raw.empty()) {
    const size_t amp = raw.find('&');
    std::string_view pair = raw.substr(0, amp);
    raw = amp == std::string_view::npos ? std::string_view() : raw.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    std::string name, value;
    if (!decode(pair.substr(0, eq), name)) return false;
    if (eq != std::string_view::npos && !decode(pair.substr(eq + 1), value)) return false;
    if (value.size() > kMaxValue) {
      error = bad(printable(name), "longer than " + std::to_string(kMaxValue) + " bytes");
      return false;
    }
    out.emplace_back(std::move(name), std::move(value));
  }
  return true;
}

bool parse_log_request(const std::vector<std::pair<std::string, std::string>> &params,
                       LogRequest &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params,
               {"service", "host", "level", "start_time", "end_time", "limit", "trace_id",
                "min_level", "q", "order", "cursor", "envelope"},
               p, error))
    return false;
  LogQuery &q = out.query;
  if (p.count("service")) q.service = p["service"];
  if (p.count("host")) q.host = p["host"];
  if (p.count("trace_id")) q.trace_id = p["trace_id"];
  int level = 0, min_level = 0;
  if (!parse_level_param(p, "level", level, error) ||
      !parse_level_param(p, "min_level", min_level, error))
    return false;
  if (level) q.level = dm_level_name(level);
  if (min_level) q.min_levels = levels_at_or_above(dm_level_name(min_level));
  for (const char *name : {"start_time", "end_time"}) {
    auto it = p.find(name);
    if (it == p.end()) continue;
    int64_t ns = 0;
    if (!parse_time(it->second, ns)) {
      error = bad(name, "must be an RFC 3339 time (2025-11-28T00:00:00Z) or epoch seconds");
      return false;
    }
    (name[0] == 's' ? q.start_ns : q.end_ns) = ns;
  }
  if (q.start_ns && q.end_ns && *q.end_ns < *q.start_ns) {
    error = bad("end_time", "is before start_time");
    return false;
  }
  if (p.count("limit")) {
    uint32_t limit = 0;
    if (!parse_int(p["limit"], limit) || limit < 1 || limit > kMaxLimit) {
      error = bad("limit", "must be an integer between 1 and " + std::to_string(kMaxLimit));
      return false;
    }
    q.limit = limit;
  }
  if (p.count("q")) {
    q.q_terms = query_terms(p["q"]);
    if (q.q_terms.empty()) {
      error = bad("q", "has no words to search for (letters or digits)");
      return false;
    }
    if (q.q_terms.size() > kMaxTerms) {
      error = bad("q", "has more than " + std::to_string(kMaxTerms) + " words");
      return false;
    }
  }
  if (p.count("order")) {
    const std::string o = lower(p["order"]);
    if (o != "asc" && o != "desc") {
      error = bad("order", "must be asc or desc");
      return false;
    }
    q.descending = o == "desc";
  }
  if (p.count("cursor")) {
    RowKey key;
    if (!decode_cursor(p["cursor"], q.descending, key, error)) return false;
    q.after = key;
  }
  if (p.count("envelope")) {
    const std::string e = lower(p["envelope"]);
    if (e != "0" && e != "1" && e != "true" && e != "false") {
      error = bad("envelope", "must be 0 or 1");
      return false;
    }
    out.envelope = e == "1" || e == "true";
  }
  return true;
}

bool parse_stats_request(const std::vector<std::pair<std::string, std::string>> &params,
                         int64_t now_ns, const DurationParser &parse_duration, StatsQuery &out,
                         std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, {"since", "top"}, p, error)) return false;
  int64_t since_ms = 3600 * 1000;
  if (p.count("since")) {
    if (!parse_duration(p["since"], since_ms) || since_ms <= 0 || since_ms > kMaxSinceMs) {
      error = bad("since", "must be a duration between 1ms and 3650d (e.g. 15m, 1h, 7d)");
      return false;
    }
  }
  out.since_ns = now_ns - since_ms * 1000000;
  if (p.count("top")) {
    if (!parse_int(p["top"], out.top) || out.top < 1 || out.top > kMaxLimit) {
      error = bad("top", "must be an integer between 1 and " + std::to_string(kMaxLimit));
      return false;
    }
  }
  return true;
}

bool parse_tail_request(const std::vector<std::pair<std::string, std::string>> &params,
                        TailFilter &out, std::string &error) {
  std::map<std::string, std::string> p;
  if (!collect(params, {"service", "host", "level", "min_level"}, p, error)) return false;
  if (p.count("service")) out.service = p["service"];
  if (p.count("host")) out.host = p["host"];
  int min_level = 0;
  if (!parse_level_param(p, "level", out.level, error) ||
      !parse_level_param(p, "min_level", min_level, error))
    return false;
  out.min_rank = min_level ? dm_level_rank(min_level) : 0;
  return true;
}

std::string encode_cursor(const RowKey &key, bool descending) {
  return std::string(descending ? "d." : "a.") + std::to_string(key.timestamp_ns) + "." +
         std::to_string(key.id);
}

bool decode_cursor(std::string_view text, bool descending, RowKey &key, std::string &error) {
  const size_t dot1 = text.find('.'), dot2 = text.find('.', dot1 + 1);
  if (text.size() < 5 || dot1 != 1 || (text[0] != 'a' && text[0] != 'd') ||
      dot2 == std::string_view::npos || !parse_int(text.substr(2, dot2 - 2), key.timestamp_ns) ||
      !parse_int(text.substr(dot2 + 1), key.id) || key.id < 0) {
    error = bad("cursor", "is not a cursor this server gave out");
    return false;
  }
  if ((text[0] == 'd') != descending) {
    error = bad("cursor", std::string("was made for order=") + (descending ? "asc" : "desc"));
    return false;
  }
  return true;
}

std::string with_cursor(std::string_view raw_query, const std::string &cursor) {
  std::string out;
  while (!raw_query.empty()) {
    const size_t amp = raw_query.find('&');
    std::string_view pair = raw_query.substr(0, amp);
    raw_query = amp == std::string_view::npos ? std::string_view() : raw_query.substr(amp + 1);
    if (pair.empty() || pair.substr(0, 7) == "cursor=" || pair == "cursor") continue;
    out.append(pair).append("&");
  }
  return out + "cursor=" + cursor;
}

}  // namespace devmesh::query
