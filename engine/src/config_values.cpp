// Option values: the scalar syntax of each dm_opt_type (integers, numbers, booleans, durations
// like 5s, sizes like 64KiB, lists and maps written inline) and how bounds are printed.
#include <cctype>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>

#include "config_detail.h"

namespace devmesh {

namespace {

using namespace config_detail;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// Prints a double bound without decimals when it is a whole number.
std::string format_number(double v) {
  char buf[64];
  if (std::isfinite(v) && v == std::trunc(v) && std::fabs(v) < 1e18) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  } else {
    std::snprintf(buf, sizeof buf, "%g", v);
  }
  return buf;
}

std::string format_duration(double ms) {
  if (!std::isfinite(ms) || ms != std::trunc(ms) || std::fabs(ms) >= 9e18) {
    return format_number(ms) + "ms";
  }
  auto v = static_cast<int64_t>(ms);
  static const std::pair<int64_t, const char *> units[] = {
      {86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
  for (auto [factor, name] : units) {
    if (v != 0 && v % factor == 0) return std::to_string(v / factor) + name;
  }
  return std::to_string(v) + "ms";
}

std::string format_size(double bytes) {
  if (!std::isfinite(bytes) || bytes != std::trunc(bytes) || std::fabs(bytes) >= 9e18) {
    return format_number(bytes) + "B";
  }
  auto v = static_cast<int64_t>(bytes);
  static const std::pair<int64_t, const char *> units[] = {
      {int64_t{1} << 40, "TiB"}, {int64_t{1} << 30, "GiB"},
      {int64_t{1} << 20, "MiB"}, {int64_t{1} << 10, "KiB"},
      {1000000000000, "TB"},     {1000000000, "GB"},
      {1000000, "MB"},           {1000, "KB"}};
  for (auto [factor, name] : units) {
    if (v != 0 && v % factor == 0) return std::to_string(v / factor) + name;
  }
  return std::to_string(v) + "B";
}

// ---- numbers with units --------------------------------------------------------------------

// A non-negative decimal number split from its unit; integers stay exact.
struct Amount {
  uint64_t whole = 0;
  double frac = 0;
  std::string_view unit;
};

bool split_amount(std::string_view s, Amount &a) {
  size_t i = 0, digits = 0;
  for (; i < s.size() && is_digit(s[i]); ++i, ++digits) {
    if (__builtin_mul_overflow(a.whole, 10u, &a.whole) ||
        __builtin_add_overflow(a.whole, static_cast<unsigned>(s[i] - '0'), &a.whole)) {
      return false;
    }
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    double scale = 0.1;
    for (; i < s.size() && is_digit(s[i]); ++i, ++digits, scale /= 10) {
      a.frac += (s[i] - '0') * scale;
    }
  }
  if (digits == 0) return false;
  while (i < s.size() && s[i] == ' ') ++i;  // "5 s" reads like "5s"
  a.unit = s.substr(i);
  return true;
}

// amount * factor, rounded to a whole unit; false on overflow of int64.
bool scale_amount(const Amount &a, uint64_t factor, int64_t &out) {
  uint64_t v;
  if (__builtin_mul_overflow(a.whole, factor, &v)) return false;
  auto extra = static_cast<uint64_t>(std::llround(a.frac * static_cast<double>(factor)));
  if (__builtin_add_overflow(v, extra, &v)) return false;
  if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
  out = static_cast<int64_t>(v);
  return true;
}

// from_chars refuses a leading '+'; accept one, but not "+-1".
bool strip_plus(std::string_view &s) {
  if (s.empty() || s[0] != '+') return true;
  s.remove_prefix(1);
  return !s.empty() && s[0] != '-' && s[0] != '+';
}

bool parse_int(std::string_view s, int64_t &out) {
  if (!strip_plus(s) || s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool parse_double(std::string_view s, double &out) {
  if (!strip_plus(s) || s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(out);
}

bool parse_bool(std::string_view s, bool &out) {
  std::string v = lower(s);
  if (v == "true" || v == "yes" || v == "on") {
    out = true;
    return true;
  }
  if (v == "false" || v == "no" || v == "off") {
    out = false;
    return true;
  }
  return false;
}

}  // namespace

namespace config_detail {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char &c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

std::string format_bound(dm_opt_type type, double v) {
  switch (type) {
    case DM_OPT_DURATION:
      return format_duration(v);
    case DM_OPT_SIZE:
      return format_size(v);
    default:
      return format_number(v);
  }
}

// What a value of `type` must look like; the wording of every type problem.
std::string expectation(dm_opt_type type) {
  switch (type) {
    case DM_OPT_STRING:
    case DM_OPT_PATH:  // resolved against the file's directory when read
      return "must be a string";
    case DM_OPT_INT:
      return "must be an integer";
    case DM_OPT_DOUBLE:
      return "must be a number";
    case DM_OPT_BOOL:
      return "must be true or false";
    case DM_OPT_DURATION:
      return "must be a duration like 200ms, 5s, 1m, 7d";
    case DM_OPT_SIZE:
      return "must be a size like 64KiB, 10MB";
    case DM_OPT_LIST:
      return "must be a list of strings";
    case DM_OPT_MAP:
      return "must be a mapping of strings";
  }
  return "has an unknown option type";
}

}  // namespace config_detail

bool parse_duration_ms(std::string_view text, int64_t &ms) {
  Amount a;
  if (!split_amount(text, a)) return false;
  static const std::pair<std::string_view, uint64_t> units[] = {
      {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
  for (auto [name, factor] : units) {
    if (a.unit == name) return scale_amount(a, factor, ms);
  }
  return false;
}

bool parse_size(std::string_view text, int64_t &bytes) {
  Amount a;
  if (!split_amount(text, a)) return false;
  // KB is 1000 and KiB 1024; a lone K means 1024, as in Fluent Bit.
  constexpr uint64_t K = 1024, M = K * K, G = M * K, T = G * K;
  static const std::pair<std::string_view, uint64_t> units[] = {{"", 1},
                                                                {"b", 1},
                                                                {"k", K},
                                                                {"kib", K},
                                                                {"kb", 1000},
                                                                {"m", M},
                                                                {"mib", M},
                                                                {"mb", 1000000},
                                                                {"g", G},
                                                                {"gib", G},
                                                                {"gb", 1000000000},
                                                                {"t", T},
                                                                {"tib", T},
                                                                {"tb", 1000000000000}};
  std::string unit = lower(a.unit);
  for (auto [name, factor] : units) {
    if (unit == name) return scale_amount(a, factor, bytes);
  }
  return false;
}

bool parse_value(dm_opt_type type, const std::string &text, OptionValue &out, std::string &error) {
  out = OptionValue{};
  out.type = type;
  out.text = text;
  error.clear();
  try {
    switch (type) {
      case DM_OPT_STRING:
      case DM_OPT_PATH:  // resolved against the file's directory when read
        return true;
      case DM_OPT_INT:
        if (!parse_int(text, out.integer)) break;
        out.number = static_cast<double>(out.integer);
        return true;
      case DM_OPT_DOUBLE:
        if (!parse_double(text, out.number)) break;
        if (std::fabs(out.number) < 9e18) out.integer = static_cast<int64_t>(out.number);
        return true;
      case DM_OPT_BOOL: {
        bool b = false;
        if (!parse_bool(text, b)) break;
        out.integer = b;
        out.number = b;
        return true;
      }
      case DM_OPT_DURATION:
        if (!parse_duration_ms(text, out.integer)) break;
        out.number = static_cast<double>(out.integer);
        return true;
      case DM_OPT_SIZE:
        if (!parse_size(text, out.integer)) break;
        out.number = static_cast<double>(out.integer);
        return true;
      case DM_OPT_LIST: {
        // "[a, b]" is a YAML list (as in a default); any other text is a one-item list.
        if (text.empty()) return true;
        if (text[0] != '[') {
          out.items.push_back(text);
          return true;
        }
        YAML::Node n = YAML::Load(text);
        if (!n.IsSequence()) break;
        for (const auto &item : n) {
          if (!item.IsScalar()) {
            error = expectation(type);
            return false;
          }
          out.items.push_back(item.Scalar());
        }
        return true;
      }
      case DM_OPT_MAP: {
        if (text.empty()) return true;
        YAML::Node n = YAML::Load(text);  // "{a: b}" or block text
        if (!n.IsMap()) break;
        for (const auto &kv : n) {
          if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
            error = expectation(type);
            return false;
          }
          out.entries.emplace_back(kv.first.Scalar(), kv.second.Scalar());
        }
        return true;
      }
    }
  } catch (const std::exception &) {
    // a malformed "[..." or "{..." default: reported below like any other bad value
  }
  error = expectation(type);
  return false;
}

}  // namespace devmesh
