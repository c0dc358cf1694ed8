// Pipeline configuration: loading the YAML file, env expansion, value parsing and validation.
#include "config.h"
#include "state_paths.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <tuple>

#include <yaml-cpp/depthguard.h>

namespace devmesh {

namespace {

namespace fs = std::filesystem;

// A scalar whose env expansion failed in load_pipeline carries this tag, so validation later
// skips it instead of reporting a second, confusing problem about the same text.
constexpr const char *kUnexpandedTag = "!devmesh-unexpanded";

// Bounds on what a config file may make the loader do. A real pipeline file is a few KiB, a
// few hundred nodes, under ten levels deep; these are far above that and far below harm.
constexpr size_t kMaxFileBytes = 4 << 20;
constexpr size_t kMaxNodes = 200000;            // nodes visited, aliases expanded (billion laughs)
constexpr size_t kMaxDepth = 100;               // nesting of mappings and sequences
constexpr size_t kMaxValueBytes = 1 << 20;      // one value after ${VAR} expansion
constexpr size_t kMaxExpandedBytes = 16 << 20;  // all values after expansion
constexpr int kMaxDefaultNesting = 16;          // ${A:-${B:-...}}
constexpr size_t kMaxUnsetListed = 32;          // unset variables named in one problem

// ---- small text helpers --------------------------------------------------------------------

std::string lower(std::string_view s) {
  std::string r(s);
  for (char &c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

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

const char *node_kind(const YAML::Node &n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "empty";
    default:
      return "a scalar";
  }
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

// ---- environment expansion -----------------------------------------------------------------

bool is_name_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}

// Expands `in` into `out`, collecting unset variables (in order, once each) and stopping only on
// a syntax error. Defaults are expanded lazily, like the shell: only when used.
bool expand_into(std::string_view in, std::string &out, std::vector<std::string> &unset,
                 std::string &error, int nesting = 0) {
  if (nesting > kMaxDefaultNesting) {
    error = "defaults nested deeper than " + std::to_string(kMaxDefaultNesting) + " levels";
    return false;
  }
  size_t i = 0;
  while (i < in.size()) {
    if (out.size() > kMaxValueBytes) {
      error = "expands to more than " + std::to_string(kMaxValueBytes >> 20) + " MiB";
      return false;
    }
    char c = in[i];
    if (c != '$' || i + 1 == in.size() || (in[i + 1] != '$' && in[i + 1] != '{')) {
      out += c;  // a lone '$' is literal
      ++i;
      continue;
    }
    if (in[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    size_t start = i;
    size_t j = i + 2;
    size_t name_begin = j;
    if (j < in.size() && is_name_start(in[j])) {
      while (j < in.size() && is_name_char(in[j])) ++j;
    }
    std::string name(in.substr(name_begin, j - name_begin));
    auto bad = [&] {
      size_t close = in.find('}', start);
      std::string_view ref =
          in.substr(start, close == std::string_view::npos ? close : close - start + 1);
      error = "invalid reference '" + std::string(ref) + "' (expected ${VAR} or ${VAR:-default})";
      return false;
    };
    if (j >= in.size()) {
      error = "unterminated '${' (missing '}')";
      return false;
    }
    if (name.empty()) return bad();
    if (in[j] == '}') {
      const char *v = std::getenv(name.c_str());
      if (v) {
        out += v;
      } else if (unset.size() < kMaxUnsetListed &&
                 std::find(unset.begin(), unset.end(), name) == unset.end()) {
        unset.push_back(name);
      }
      i = j + 1;
      continue;
    }
    // ${VAR:-default} uses the default when unset or empty; ${VAR-default} only when unset.
    bool colon = in[j] == ':';
    if (colon) ++j;
    if (j >= in.size()) {
      error = "unterminated '${' (missing '}')";
      return false;
    }
    if (in[j] != '-') return bad();
    ++j;
    size_t def_begin = j;
    int depth = 0;
    for (; j < in.size(); ++j) {
      if (in[j] == '$' && j + 1 < in.size() && (in[j + 1] == '$' || in[j + 1] == '{')) {
        if (in[j + 1] == '{') ++depth;
        ++j;
      } else if (in[j] == '}') {
        if (depth == 0) break;
        --depth;
      }
    }
    if (j >= in.size()) {
      error = "unterminated '${' (missing '}')";
      return false;
    }
    const char *v = std::getenv(name.c_str());
    bool use_default = !v || (colon && !*v);
    if (use_default) {
      if (!expand_into(in.substr(def_begin, j - def_begin), out, unset, error, nesting + 1))
        return false;
    } else {
      out += v;
    }
    i = j + 1;
  }
  if (out.size() > kMaxValueBytes) {
    error = "expands to more than " + std::to_string(kMaxValueBytes >> 20) + " MiB";
    return false;
  }
  return true;
}

// ---- suggestions ---------------------------------------------------------------------------

// Optimal string alignment distance (a swap of two neighbours counts as one edit).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The closest candidate within two edits (fewer for short words), or "" when none is close.
std::string closest(std::string_view key, const std::vector<std::string> &candidates) {
  if (key.size() > 64) return "";  // no option is that long; the distance costs len x len
  std::string k = lower(key);
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto &c : candidates) {
    size_t d = edit_distance(k, lower(c));
    size_t longest = std::max(k.size(), c.size());
    // Two edits turn any two-letter word into any other: also require most letters to agree.
    if (d <= 2 && d * 2 < longest && d < best_d) {
      best = c;
      best_d = d;
    }
  }
  return best;
}

std::string unknown_key_message(std::string_view key, const std::vector<std::string> &candidates) {
  std::string msg = "unknown key '" + std::string(key) + "'";
  std::string near = closest(key, candidates);
  if (!near.empty()) msg += " (did you mean '" + near + "'?)";
  return msg;
}

// ---- YAML helpers --------------------------------------------------------------------------

std::string key_text(const YAML::Node &key) {
  if (key.IsScalar()) return key.Scalar();
  return std::string("<") + node_kind(key) + ">";
}

std::string join_path(const std::string &base, std::string_view key) {
  if (base.empty()) return std::string(key);
  return base + "." + std::string(key);
}

std::string index_path(const std::string &base, size_t i) {
  return base + "[" + std::to_string(i) + "]";
}

bool unexpanded(const YAML::Node &n) {
  return n.IsScalar() && n.Tag() == kUnexpandedTag;
}

// First value for `key` in a mapping, without inserting (operator[] on a non-const node would).
bool find_key(const YAML::Node &map, std::string_view key, YAML::Node &key_node,
              YAML::Node &value) {
  if (!map.IsMap()) return false;
  for (const auto &kv : map) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) {
      key_node = kv.first;
      value = kv.second;
      return true;
    }
  }
  return false;
}

// Loads a config's YAML text: on a syntax error adds a problem and returns false.
bool parse_yaml(const std::string &text, const std::string &file, YAML::Node &root,
                Problems &problems) {
  try {
    root = YAML::Load(text);
    return true;
  } catch (const YAML::DeepRecursion &e) {
    problems.add(file, e.mark, "",
                 "invalid YAML: nested deeper than " + std::to_string(e.depth() - 1) + " levels");
  } catch (const YAML::Exception &e) {
    problems.add(file, e.mark, "", "invalid YAML: " + e.msg);
  } catch (const std::exception &e) {
    problems.add(file, YAML::Mark::null_mark(), "", std::string("invalid YAML: ") + e.what());
  }
  return false;
}

// The state of one walk over the document.
struct Walk {
  Walk(const std::string &f, Problems &p) : file(f), problems(p) {}
  const std::string &file;
  Problems &problems;
  std::set<int> done;               // positions of scalars already expanded
  std::vector<YAML::Node> parents;  // the containers above the current node
  size_t nodes = 0;                 // nodes visited, counting each alias expansion
  size_t expanded_bytes = 0;
  bool refused = false;  // a bound was passed: the walk stops, the file is refused
};

// Walks the whole tree once: expands ${VAR} in every scalar value in place (marks stay those of
// the original text) and reports duplicate mapping keys. `done` holds the positions of scalars
// already expanded: an alias shares its anchor's node and must not be expanded twice.
// `parents` are the containers above `node`; an alias back to one of them is a cycle.
// yaml-cpp shares an anchor's node among its aliases, so the document itself stays small; it
// is this walk (and every later one) that would visit 10^9 nodes of a "billion laughs" file:
// it counts what it visits and refuses the file past kMaxNodes.
void expand_tree(YAML::Node node, const std::string &path, Walk &w) {
  if (w.refused) return;
  if (++w.nodes > kMaxNodes) {
    w.problems.add(w.file, node.Mark(), path,
                   "the document expands to more than " + std::to_string(kMaxNodes) +
                       " nodes through aliases (anchors reused inside each other?): refused");
    w.refused = true;
    return;
  }
  if (node.IsSequence() || node.IsMap()) {
    if (w.parents.size() >= kMaxDepth) {
      w.problems.add(w.file, node.Mark(), path,
                     "nested deeper than " + std::to_string(kMaxDepth) + " levels: refused");
      w.refused = true;
      return;
    }
    for (const auto &p : w.parents) {
      if (p.is(node)) {
        w.problems.add(w.file, node.Mark(), path, "contains itself through an alias");
        return;
      }
    }
  }
  if (node.IsScalar()) {
    const std::string &text = node.Scalar();
    if (text.find('$') == std::string::npos) return;
    int pos = node.Mark().pos;
    if (pos >= 0 && !w.done.insert(pos).second) return;
    std::string out, error;
    if (expand_env(text, out, error)) {
      w.expanded_bytes += out.size();
      if (w.expanded_bytes > kMaxExpandedBytes) {
        w.problems.add(w.file, node.Mark(), path,
                       "the values expand to more than " + std::to_string(kMaxExpandedBytes >> 20) +
                           " MiB in all: refused");
        w.refused = true;
        return;
      }
      node = out;
    } else {
      w.problems.add(w.file, node.Mark(), path, error);
      node.SetTag(kUnexpandedTag);
    }
  } else if (node.IsSequence()) {
    w.parents.push_back(node);
    for (size_t i = 0; i < node.size() && !w.refused; ++i) {
      expand_tree(node[i], index_path(path, i), w);
    }
    w.parents.pop_back();
  } else if (node.IsMap()) {
    w.parents.push_back(node);
    std::map<std::string, int> seen;  // key -> 1-based line of its first use
    for (auto it = node.begin(); it != node.end() && !w.refused; ++it) {
      std::string key = key_text(it->first);
      auto [first, fresh] = seen.emplace(key, it->first.Mark().line + 1);
      if (!fresh) {
        w.problems.add(w.file, it->first.Mark(), join_path(path, key),
                       "duplicate key '" + key + "' (first on line " +
                           std::to_string(first->second) + "; the first one is used)");
        continue;
      }
      expand_tree(it->second, join_path(path, key), w);
    }
    w.parents.pop_back();
  }
}

// ---- validating a mapping against a schema -------------------------------------------------

struct Schema {
  std::vector<const dm_option *> options;
  std::vector<std::string> skip;  // keys handled elsewhere (allowed, not validated here)
  const dm_option *find(std::string_view key) const {
    for (const dm_option *o : options) {
      if (o && o->key && key == o->key) return o;  // the first declaration wins
    }
    return nullptr;
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> r(skip);
    for (const dm_option *o : options) {
      if (o && o->key) r.emplace_back(o->key);
    }
    return r;
  }
};

struct Checker {
  const std::string &file;
  Problems &problems;

  void add(const YAML::Mark &mark, const std::string &path, std::string message) {
    problems.add(file, mark, path, std::move(message));
  }

  // Bounds and allowed values of an already parsed value; `what` prefixes a bad default.
  bool check_limits(const dm_option &opt, const OptionValue &v, const YAML::Mark &mark,
                    const std::string &path, const std::string &what) {
    bool ok = true;
    bool numeric = opt.type == DM_OPT_INT || opt.type == DM_OPT_DOUBLE ||
                   opt.type == DM_OPT_DURATION || opt.type == DM_OPT_SIZE;
    if ((opt.flags & DM_OPT_BOUNDED) && numeric && (v.number < opt.min || v.number > opt.max)) {
      add(mark, path,
          what + "must be between " + format_bound(opt.type, opt.min) + " and " +
              format_bound(opt.type, opt.max));
      ok = false;
    }
    if (opt.allowed && opt.type == DM_OPT_STRING && !is_allowed(opt, v.text)) {
      add(mark, path, what + "must be one of: " + allowed_list(opt));
      ok = false;
    }
    return ok;
  }

  static bool is_allowed(const dm_option &opt, const std::string &text) {
    for (const char *const *a = opt.allowed; *a; ++a) {
      if (text == *a) return true;
    }
    return false;
  }

  static std::string allowed_list(const dm_option &opt) {
    std::string r;
    for (const char *const *a = opt.allowed; *a; ++a) {
      if (!r.empty()) r += ", ";
      r += *a;
    }
    return r;
  }

  // One list item (a scalar) checked against the option's allowed values.
  bool list_item(const dm_option &opt, const YAML::Node &item, const std::string &path,
                 OptionValue &v) {
    if (unexpanded(item)) return false;
    if (!item.IsScalar()) {
      add(item.Mark(), path, std::string("must be a string, not ") + node_kind(item));
      return false;
    }
    if (opt.allowed && !is_allowed(opt, item.Scalar())) {
      add(item.Mark(), path, "must be one of: " + allowed_list(opt));
      return false;
    }
    v.items.push_back(item.Scalar());
    return true;
  }

  // Converts one value node to the option's type; false after reporting a problem (or on a
  // list item or map value whose env expansion failed, which load_pipeline reported).
  bool value(const dm_option &opt, const YAML::Node &key, const YAML::Node &node,
             const std::string &path, OptionValue &v) {
    v = OptionValue{};
    v.type = opt.type;
    if (node.IsNull() && opt.type != DM_OPT_LIST && opt.type != DM_OPT_MAP) {
      // A null's mark points past the key, often at the next line: report at the key.
      add(key.Mark(), path,
          opt.default_value ? "has no value (remove the key to use the default)" : "has no value");
      return false;
    }
    switch (opt.type) {
      case DM_OPT_LIST: {
        bool ok = true;
        if (node.IsNull()) return true;  // an empty list
        if (node.IsScalar()) {
          ok = list_item(opt, node, path, v);  // a scalar is a one-item list
        } else if (node.IsSequence()) {
          for (size_t i = 0; i < node.size(); ++i) {
            ok = list_item(opt, node[i], index_path(path, i), v) && ok;
          }
        } else {
          add(node.Mark(), path, expectation(opt.type));
          return false;
        }
        for (size_t i = 0; i < v.items.size(); ++i) v.text += (i ? "," : "") + v.items[i];
        return ok;
      }
      case DM_OPT_MAP: {
        if (node.IsNull()) return true;  // an empty mapping
        if (!node.IsMap()) {
          add(node.Mark(), path, expectation(opt.type));
          return false;
        }
        bool ok = true;
        std::set<std::string> seen;
        for (const auto &kv : node) {
          std::string k = key_text(kv.first);
          std::string item_path = join_path(path, k);
          if (!seen.insert(k).second) continue;  // duplicate: reported by load_pipeline
          if (!kv.first.IsScalar()) {
            add(kv.first.Mark(), item_path, "keys must be strings");
            ok = false;
          } else if (unexpanded(kv.second)) {
            ok = false;
          } else if (kv.second.IsNull()) {
            add(kv.first.Mark(), item_path, "has no value (use '' for an empty string)");
            ok = false;
          } else if (!kv.second.IsScalar()) {
            add(kv.second.Mark(), item_path,
                std::string("must be a string, not ") + node_kind(kv.second));
            ok = false;
          } else {
            v.entries.emplace_back(k, kv.second.Scalar());
            v.text += (v.text.empty() ? "" : ",") + k + "=" + kv.second.Scalar();
          }
        }
        return ok;
      }
      default:
        break;
    }
    if (!node.IsScalar()) {
      add(node.Mark(), path, expectation(opt.type) + ", not " + node_kind(node));
      return false;
    }
    std::string error;
    if (!parse_value(opt.type, node.Scalar(), v, error)) {
      add(node.Mark(), path, error);
      return false;
    }
    return check_limits(opt, v, node.Mark(), path, "");
  }

  // Validates every key of `map` (at `path`, reported at `mark` when a key is missing) into
  // `values`, then applies defaults. False when a problem was found.
  bool mapping(const YAML::Node &map, const YAML::Mark &mark, const std::string &path,
               const Schema &schema, std::map<std::string, OptionValue, std::less<>> &values) {
    size_t before = problems.size();
    bool blocked = false;  // a bad value; its env expansion may have been reported already
    std::set<std::string> present;
    if (map.IsMap()) {
      std::vector<std::string> candidates = schema.keys();
      for (const auto &kv : map) {
        std::string key = key_text(kv.first);
        std::string key_path = join_path(path, key);
        if (!present.insert(key).second) continue;  // duplicate: reported by load_pipeline
        if (std::find(schema.skip.begin(), schema.skip.end(), key) != schema.skip.end()) continue;
        const dm_option *opt = kv.first.IsScalar() ? schema.find(key) : nullptr;
        if (!opt) {
          add(kv.first.Mark(), key_path, unknown_key_message(key, candidates));
          continue;
        }
        OptionValue v;
        if (unexpanded(kv.second)) {
          blocked = true;
        } else if (value(*opt, kv.first, kv.second, key_path, v)) {
          values[key] = std::move(v);
        } else {
          blocked = true;  // usually with a problem; none for a list item already reported
        }
      }
    } else if (!map.IsNull()) {
      add(map.Mark(), path, std::string("must be a mapping, not ") + node_kind(map));
      return false;
    }
    for (const dm_option *opt : schema.options) {
      if (!opt || !opt->key || present.count(opt->key)) continue;
      if (opt->flags & DM_OPT_REQUIRED) {
        add(mark, path, std::string("missing required key '") + opt->key + "'");
      } else if (opt->default_value && !values.count(opt->key)) {
        apply_default(*opt, mark, path, values);
      }
    }
    return problems.size() == before && !blocked;
  }

  // A default is the plugin author's text; a bad one is reported like a bad value.
  void apply_default(const dm_option &opt, const YAML::Mark &mark, const std::string &path,
                     std::map<std::string, OptionValue, std::less<>> &values) {
    std::string key_path = join_path(path, opt.key);
    std::string what = std::string("default '") + opt.default_value + "' ";
    OptionValue v;
    std::string error;
    if (!parse_value(opt.type, opt.default_value, v, error)) {
      add(mark, key_path, what + error);
      return;
    }
    if (!check_limits(opt, v, mark, key_path, what)) return;
    if (opt.allowed && opt.type == DM_OPT_LIST) {
      for (const auto &item : v.items) {
        if (!is_allowed(opt, item)) {
          add(mark, key_path, what + "must be one of: " + allowed_list(opt));
          return;
        }
      }
    }
    values[opt.key] = std::move(v);
  }
};

// ---- the file's shape ----------------------------------------------------------------------

std::string resolve_path(const std::string &dir, const std::string &p) {
  if (p.empty()) return p;
  fs::path path(p);
  if (path.is_absolute()) return path.lexically_normal().string();
  return (fs::path(dir) / path).lexically_normal().string();
}

std::string directory_of(const std::string &file) {
  std::error_code ec;
  fs::path parent = fs::path(file).parent_path();
  fs::path dir = parent.empty() ? fs::current_path(ec) : fs::absolute(parent, ec);
  if (ec) return parent.empty() ? "." : parent.string();
  return dir.lexically_normal().string();
}

const char *const kLogLevels[] = {"error", "warn", "info", "debug", nullptr};

// The service section, declared with the same schema type plugins use.
const dm_option kServiceOptions[] = {
    {"flush_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "200ms", 1, 3600000, nullptr,
     "how often inputs' partial batches are flushed", 0},
    {"grace", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 0, 86400000, nullptr,
     "how long shutdown waits for in-flight batches", 0},
    {"log_level", DM_OPT_STRING, 0, "info", 0, 0, kLogLevels, "engine log verbosity", 0},
    {"plugins_dir", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr, "directories searched for plugins", 0},
    {"http_listen", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr, "address of the engine endpoint", 0},
    {"exit_when_done", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "exit once every input finished and all is acknowledged", 0},
    // 5s: a filter handles a batch in micro- to milliseconds, so 5s is no slow batch but a
    // stuck one; it is logged well before clients (30s) and systemd (WatchdogSec) give up.
    {"watchdog", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 0, 3600000, nullptr,
     "a plugin call on the event loop running longer than this is logged as a stall, counted "
     "and shown in /health (0: off)",
     0},
    {"watchdog_flush", DM_OPT_DURATION, DM_OPT_BOUNDED, "60s", 0, 86400000, nullptr,
     "the same bound for an output's flush on its worker thread (databases may be slow; 0: off)",
     0},
};

const char *const kSyncPolicies[] = {"always", "interval", "never", nullptr};
const char *const kWhenFull[] = {"pause", "drop_oldest", nullptr};

const dm_option kStorageOptions[] = {
    {"path", DM_OPT_STRING, DM_OPT_REQUIRED, nullptr, 0, 0, nullptr,
     "directory of the segment files (relative to the config file); one devmesh per directory", 0},
    {"sync", DM_OPT_STRING, 0, "interval", 0, 0, kSyncPolicies,
     "when appended blocks are fsynced (and STORED acks sent): always (group commit after each "
     "write), interval (every sync_interval), never (left to the OS)",
     0},
    {"sync_interval", DM_OPT_DURATION, DM_OPT_BOUNDED, "1s", 1, 3600000, nullptr,
     "fsync period with sync: interval", 0},
    {"max_size", DM_OPT_SIZE, DM_OPT_BOUNDED, nullptr, 1 << 20, 9.0e18, nullptr,
     "disk space the segment files may use (unbounded when unset); see when_full", 0},
    {"when_full", DM_OPT_STRING, 0, "pause", 0, 0, kWhenFull,
     "at max_size: pause every input (journald stops reading, http answers 503), or drop the "
     "oldest segment (each undelivered record counted)",
     0},
    {"segment_size", DM_OPT_SIZE, DM_OPT_BOUNDED, "8MiB", 64 << 10, 1 << 30, nullptr,
     "segment files rotate at this size (at most max_size/4, so whole segments can be freed)", 0},
};

template <size_t N>
Schema schema_of(const dm_option (&options)[N], std::vector<std::string> skip = {}) {
  Schema s;
  for (const dm_option &o : options) s.options.push_back(&o);
  s.skip = std::move(skip);
  return s;
}

void load_service(const YAML::Node &key, const YAML::Node &node, PipelineConfig &out,
                  Checker &check) {
  std::map<std::string, OptionValue, std::less<>> v;
  check.mapping(node, key.Mark(), "service", schema_of(kServiceOptions, {"storage"}), v);
  ServiceConfig &s = out.service;
  if (v.count("flush_interval")) s.flush_interval_ms = v["flush_interval"].integer;
  if (v.count("grace")) s.grace_ms = v["grace"].integer;
  if (v.count("log_level")) s.log_level = v["log_level"].text;
  if (v.count("plugins_dir")) {
    for (const auto &d : v["plugins_dir"].items) s.plugins_dir.push_back(resolve_path(out.dir, d));
  }
  if (v.count("http_listen")) s.http_listen = v["http_listen"].text;
  if (v.count("exit_when_done")) s.exit_when_done = v["exit_when_done"].integer != 0;
  if (v.count("watchdog")) s.watchdog_ms = v["watchdog"].integer;
  if (v.count("watchdog_flush")) s.watchdog_flush_ms = v["watchdog_flush"].integer;

  YAML::Node storage_key, storage;
  if (!find_key(node, "storage", storage_key, storage)) return;
  std::map<std::string, OptionValue, std::less<>> st;
  check.mapping(storage, storage_key.Mark(), "service.storage", schema_of(kStorageOptions), st);
  if (st.count("path")) {
    if (st["path"].text.empty()) {
      YAML::Node pk, pv;
      find_key(storage, "path", pk, pv);
      check.add(pv.Mark(), "service.storage.path", "must not be empty");
    } else {
      s.storage_path = resolve_path(out.dir, st["path"].text);
      // A fresh node has no state directory yet: start makes it (mkdir -p); a dry run says
      // whether it could, so "configuration OK" means the start will not fail on it.
      std::string error, note;
      if (!prepare_directory(s.storage_path, false, error, note)) {
        YAML::Node pk, pv;
        find_key(storage, "path", pk, pv);
        check.add(pv.Mark(), "service.storage.path", error);
      }
    }
  }
  if (st.count("sync")) s.storage_sync = st["sync"].text;
  if (st.count("sync_interval")) s.storage_sync_interval_ms = st["sync_interval"].integer;
  if (st.count("max_size")) s.storage_max_size = st["max_size"].integer;
  if (st.count("when_full")) s.storage_when_full = st["when_full"].text;
  if (st.count("segment_size")) s.storage_segment_size = st["segment_size"].integer;
}

// Reads one of name/alias/path: a non-empty string when present.
bool entry_string(const YAML::Node &entry, const char *key, const std::string &where,
                  Checker &check, std::string &out) {
  YAML::Node k, v;
  if (!find_key(entry, key, k, v)) return false;
  if (unexpanded(v)) return false;
  std::string path = join_path(where, key);
  if (v.IsNull()) {
    check.add(k.Mark(), path, "has no value");  // a null's own mark may be on the next line
    return false;
  }
  if (!v.IsScalar()) {
    check.add(v.Mark(), path, std::string("must be a string, not ") + node_kind(v));
    return false;
  }
  if (v.Scalar().empty()) {
    check.add(v.Mark(), path, "must not be empty");
    return false;
  }
  out = v.Scalar();
  return true;
}

void load_section(const std::string &section, const YAML::Node &node, PipelineConfig &out,
                  std::map<std::string, std::string> &aliases, Checker &check) {
  std::string path = "pipeline." + section;
  if (node.IsNull()) return;  // `inputs:` with nothing under it
  if (!node.IsSequence()) {
    check.add(
        node.Mark(), path,
        std::string("must be a list of plugin entries (- name: ...), not ") + node_kind(node));
    return;
  }
  auto &list = section == "inputs" ? out.inputs : section == "filters" ? out.filters : out.outputs;
  for (size_t i = 0; i < node.size(); ++i) {
    YAML::Node item = node[i];
    PluginEntry e;
    e.section = section;
    e.index = static_cast<int>(i);
    e.node = item;
    std::string where = e.where();
    if (!item.IsMap()) {
      check.add(item.Mark(), where,
                std::string("must be a mapping with at least a 'name' (- name: stdout), not ") +
                    node_kind(item));
      continue;
    }
    YAML::Node name_key, name_value;
    bool named = false;
    if (!find_key(item, "name", name_key, name_value)) {
      check.add(item.Mark(), where, "missing required key 'name'");
    } else {
      named = entry_string(item, "name", where, check, e.name);
    }
    if (entry_string(item, "alias", where, check, e.alias)) {
      auto [it, fresh] = aliases.emplace(e.alias, where);
      if (!fresh) {
        YAML::Node k, v;
        find_key(item, "alias", k, v);
        check.add(v.Mark(), join_path(where, "alias"),
                  "alias '" + e.alias + "' is already used by " + it->second);
      }
    }
    if (entry_string(item, "plugin_path", where, check, e.path))
      e.path = resolve_path(out.dir, e.path);
    // Without a name there is no plugin to validate the rest against: leave the entry out.
    if (named) list.push_back(std::move(e));
  }
}

void load_pipeline_section(const YAML::Node &node, PipelineConfig &out, Checker &check) {
  if (node.IsNull()) return;
  if (!node.IsMap()) {
    check.add(
        node.Mark(), "pipeline",
        std::string("must be a mapping with inputs, filters and outputs, not ") + node_kind(node));
    return;
  }
  static const std::vector<std::string> sections = {"inputs", "filters", "outputs"};
  std::map<std::string, std::string> aliases;
  std::set<std::string> seen;
  for (const auto &kv : node) {
    std::string k = key_text(kv.first);
    if (!seen.insert(k).second) continue;  // duplicate: already reported
    if (std::find(sections.begin(), sections.end(), k) == sections.end()) {
      check.add(kv.first.Mark(), join_path("pipeline", k), unknown_key_message(k, sections));
      continue;
    }
    load_section(k, kv.second, out, aliases, check);
  }
}

// The whole file: syntax, env expansion, then the shape of each section.
void load_root(const std::string &text, const std::string &file, PipelineConfig &out,
               Problems &problems) {
  if (text.size() > kMaxFileBytes) {
    problems.add(file, YAML::Mark::null_mark(), "",
                 "the file has " + std::to_string(text.size()) +
                     " bytes or more; a pipeline file " + "may have at most " +
                     std::to_string(kMaxFileBytes >> 20) + " MiB");
    return;
  }
  YAML::Node root;
  if (!parse_yaml(text, file, root, problems)) return;
  Walk walk{file, problems};
  expand_tree(root, "", walk);
  if (walk.refused) return;  // every later pass would walk the same expansion

  Checker check{file, problems};
  if (root.IsNull()) {
    check.add(YAML::Mark::null_mark(), "", "the file is empty: expected 'pipeline:'");
    return;
  }
  if (!root.IsMap()) {
    check.add(
        root.Mark(), "",
        std::string("must be a mapping with 'service' and 'pipeline', not ") + node_kind(root));
    return;
  }
  static const std::vector<std::string> top = {"service", "pipeline"};
  std::set<std::string> seen;
  for (const auto &kv : root) {
    std::string k = key_text(kv.first);
    if (!seen.insert(k).second) continue;  // duplicate: already reported
    if (k == "service") {
      load_service(kv.first, kv.second, out, check);
    } else if (k == "pipeline") {
      load_pipeline_section(kv.second, out, check);
    } else {
      check.add(kv.first.Mark(), k, unknown_key_message(k, top));
    }
  }
  if (!seen.count("pipeline")) {
    check.add(YAML::Mark::null_mark(), "", "missing required key 'pipeline'");
  }
}

// Appends `found` to `problems` in file order (problems without a line first), so a report
// reads top to bottom although the checks run in several passes.
void append_in_order(const Problems &found, Problems &problems) {
  std::vector<Problem> list = found.list();
  std::stable_sort(list.begin(), list.end(), [](const Problem &a, const Problem &b) {
    return std::tie(a.line, a.col) < std::tie(b.line, b.col);
  });
  for (auto &p : list) problems.add(std::move(p));
}

}  // namespace

// ---- problems ------------------------------------------------------------------------------

std::string Problem::str() const {
  std::string r = file;
  if (line > 0) r += ":" + std::to_string(line) + ":" + std::to_string(col);
  if (!r.empty()) r += ": ";
  if (!path.empty()) r += path + ": ";
  return r + message;
}

void Problems::add(std::string file, const YAML::Mark &mark, std::string path,
                   std::string message) {
  Problem p;
  p.file = std::move(file);
  if (!mark.is_null() && mark.line >= 0) {
    p.line = mark.line + 1;  // yaml-cpp counts from 0
    p.col = mark.column + 1;
  }
  p.path = std::move(path);
  p.message = std::move(message);
  list_.push_back(std::move(p));
}

std::string Problems::str() const {
  std::string r;
  for (const auto &p : list_) r += p.str() + "\n";
  return r;
}

std::string PluginEntry::where() const {
  return "pipeline." + section + "[" + std::to_string(index) + "]";
}

// ---- loading -------------------------------------------------------------------------------

bool load_pipeline(const std::string &file, PipelineConfig &out, Problems &problems) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    int err = errno;
    out = PipelineConfig{};
    out.file = file;
    out.dir = directory_of(file);
    problems.add(file, YAML::Mark::null_mark(), "",
                 std::string("cannot read the file: ") + std::strerror(err));
    return false;
  }
  // Read at most one byte past the bound: /dev/zero or a huge file is refused, not read.
  std::string text(kMaxFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return load_pipeline_text(text, file, out, problems);
}

bool load_pipeline_text(const std::string &text, const std::string &file, PipelineConfig &out,
                        Problems &problems) {
  Problems found;
  try {
    out = PipelineConfig{};
    out.file = file;
    out.dir = directory_of(file);
    load_root(text, file, out, found);
  } catch (const std::exception &e) {
    // yaml-cpp conversions and filesystem calls may throw; never let it escape.
    found.add(file, YAML::Mark::null_mark(), "", std::string("internal error: ") + e.what());
  }
  append_in_order(found, problems);
  return found.empty();
}

std::unique_ptr<dm_config> validate_entry(const PipelineConfig &cfg, const PluginEntry &entry,
                                          const std::vector<const dm_option *> &options,
                                          Problems &problems) {
  Problems found;
  std::unique_ptr<dm_config> config;
  try {
    Schema schema;
    schema.options = options;
    schema.skip = {"name", "alias", "plugin_path"};
    Checker check{cfg.file, found};
    config = std::make_unique<dm_config>();
    if (!check.mapping(entry.node, entry.node.Mark(), entry.where(), schema, config->values)) {
      config.reset();
    }
  } catch (const std::exception &e) {
    found.add(cfg.file, entry.node.Mark(), entry.where(),
              std::string("internal error: ") + e.what());
    config.reset();
  }
  append_in_order(found, problems);
  return config;
}

// ---- values --------------------------------------------------------------------------------

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

bool expand_env(std::string_view in, std::string &out, std::string &error) {
  out.clear();
  error.clear();
  std::vector<std::string> unset;
  if (!expand_into(in, out, unset, error)) return false;
  if (unset.empty()) return true;
  if (unset.size() == 1) {
    error = "environment variable " + unset[0] + " is not set";
  } else {
    error = "environment variables ";
    for (size_t i = 0; i < unset.size(); ++i) error += (i ? ", " : "") + unset[i];
    error += " are not set";
  }
  return false;
}

}  // namespace devmesh
