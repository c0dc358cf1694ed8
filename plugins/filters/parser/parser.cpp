// parser filter: reads structure out of a record's message (json, logfmt, regex, key=value; the
// formats listed are tried in order, the first that parses wins) and maps the fields onto the
// record's columns (timestamp, level, trace_id, span_id, event_type, error_code, message) and
// anything else into typed meta. A message no format parses is left as it was, and counted.
#include <devmesh/plugin.hpp>

#include <fnmatch.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "formats.hpp"
#include "record_columns.hpp"
#include "time_format.hpp"
#include "timestamp.hpp"

namespace devmesh {
namespace {

using parser::Field;
using parser::Fields;

const char *const kFormats[] = {"json", "logfmt", "regex", "kv", nullptr};

struct ParserConfig {
  dm_strings format{};
  dm_strings regex{};
  dm_strings services{};
  const char *time_format = nullptr;
  int keep_original = 0;
  const char *kv_separator = nullptr;
  const char *kv_pair_separator = nullptr;
  dm_strings fields{};
  dm_strings types{};
  int64_t max_services = 0;
};

using C = ParserConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_LIST>("format", &C::format,
                        "formats tried in order, the first that parses the message wins: json (a "
                        "message that is one JSON object), logfmt, regex (the patterns of "
                        "`regex`), kv (key=value with kv_separator and kv_pair_separator)")
        .allowed(kFormats)
        .required(),
    Option<DM_OPT_LIST>("regex", &C::regex,
                        "PCRE2 patterns with named groups ((?<level>\\w+)), tried in order for "
                        "format regex; each group that matched is a field"),
    Option<DM_OPT_LIST>("services", &C::services,
                        "parse only records of these services: names or globs (fnmatch); a "
                        "journald record's service is its systemd unit (nginx.service) when it "
                        "has one, else its SYSLOG_IDENTIFIER; empty: every record"),
    Option<DM_OPT_STRING>(
        "time_format", &C::time_format,
        "format of the timestamp field (time, ts, timestamp, @timestamp, or the one `fields` "
        "maps to timestamp), tried before RFC 3339 and epoch numbers; strptime-like: %Y %y %m %d "
        "%e %H %I %M %S %p %j %b %B %a %A %T %F "
        "%D, %L or %f fractional seconds (1-9 digits), %z (Z, +hh, +hhmm, +hh:mm), %Z (UTC, "
        "GMT, Z), %s epoch seconds; no zone: UTC; no year: this year. Unset: RFC 3339, or epoch "
        "seconds or milliseconds for a number. A time that reads in none of these is counted and "
        "kept in meta"),
    Option<DM_OPT_BOOL>("keep_original", &C::keep_original,
                        "keep the raw message in the message column; the parsed message field "
                        "then goes into meta under its own key")
        .value("false"),
    Option<DM_OPT_STRING>("kv_separator", &C::kv_separator,
                          "format kv: between a key and its value")
        .value("="),
    Option<DM_OPT_STRING>("kv_pair_separator", &C::kv_pair_separator,
                          "format kv: between pairs; unset: a space"),
    Option<DM_OPT_MAP>("fields", &C::fields,
                       "field name -> column, over the default mapping (level/lvl/severity -> "
                       "level, msg/message/log -> message, time/ts -> timestamp, trace_id, "
                       "span_id, event_type, error_code): timestamp, level, trace_id, span_id, "
                       "event_type, error_code, message, or meta to keep a field out of columns"),
    Option<DM_OPT_MAP>("types", &C::types,
                       "field name -> int, float, bool or string: the meta type of a text field "
                       "(logfmt, kv and regex fields are strings otherwise; JSON keeps its own "
                       "types); a value that does not convert stays a string and is counted"),
    Option<DM_OPT_INT>("max_services", &C::max_services,
                       "service names whose `services` match is remembered (beyond it, matched "
                       "again per record)")
        .value("10000")
        .bounded(1, 1e7),
};

enum class Format : uint8_t { json, logfmt, regex, kv };
enum class MetaType : uint8_t { keep, integer, floating, boolean, string };

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

Column column_named(std::string_view name, bool &ok) {
  static const std::pair<std::string_view, Column> kNames[] = {
      {"timestamp", Column::timestamp},   {"level", Column::level},
      {"trace_id", Column::trace_id},     {"span_id", Column::span_id},
      {"event_type", Column::event_type}, {"error_code", Column::error_code},
      {"message", Column::message},       {"meta", Column::none}};
  for (const auto &[n, c] : kNames)
    if (n == name) {
      ok = true;
      return c;
    }
  ok = false;
  return Column::none;
}

class Parser {
 public:
  Parser(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    const ParserConfig c = bound_config<ParserConfig>(host, cfg);
    ConfigProblems problems(host, inst);
    bool wants_regex = false;
    for (uint32_t i = 0; i < c.format.count; ++i) {
      const std::string_view f = sv_item(c.format, i);
      const Format fmt = f == "json"     ? Format::json
                         : f == "logfmt" ? Format::logfmt
                         : f == "regex"  ? Format::regex
                                         : Format::kv;
      if (fmt == Format::regex) wants_regex = true;
      formats_.push_back(fmt);
    }
    if (formats_.empty()) problems.add("format", "lists no format");
    for (uint32_t i = 0; i < c.regex.count; ++i) {
      auto re = std::make_unique<parser::Regex>();
      std::string error;
      if (!re->compile(sv_item(c.regex, i), error))
        problems.add("regex." + std::to_string(i), error);
      regexes_.push_back(std::move(re));
    }
    if (wants_regex && regexes_.empty())
      problems.add("regex", "format lists regex but no pattern is given");
    if (!wants_regex && !regexes_.empty())
      problems.add("regex", "patterns are given but format does not list regex");
    for (uint32_t i = 0; i < c.services.count; ++i) {
      std::string s(sv_item(c.services, i));
      if (s.empty()) problems.add("services." + std::to_string(i), "empty service name");
      services_.push_back(std::move(s));
    }
    if (c.time_format) {
      std::string error;
      if (!time_format_.compile(c.time_format, error))
        problems.add("time_format", error);
      else
        has_time_format_ = true;
    }
    keep_original_ = c.keep_original;
    const std::string kv_sep = c.kv_separator ? c.kv_separator : "=";
    const std::string pair_sep = c.kv_pair_separator ? c.kv_pair_separator : " ";
    if (kv_sep.empty()) problems.add("kv_separator", "is empty");
    if (pair_sep.empty()) problems.add("kv_pair_separator", "is empty");
    if (!kv_sep.empty() && kv_sep == pair_sep)
      problems.add("kv_pair_separator", "is the same as kv_separator");
    kv_ = std::make_unique<parser::KeyValue>(kv_sep, pair_sep);
    for (uint32_t i = 0; i < c.fields.count; ++i) {
      const std::string key(sv_key(c.fields, i)), value(sv_item(c.fields, i));
      bool ok = false;
      const Column col = column_named(value, ok);
      if (!ok)
        problems.add("fields." + key,
                     "unknown column '" + value +
                         "' (one of timestamp, level, trace_id, span_id, event_type, "
                         "error_code, message, meta)");
      else
        field_columns_.emplace(key, col);
    }
    for (uint32_t i = 0; i < c.types.count; ++i) {
      const std::string key(sv_key(c.types, i)), value(sv_item(c.types, i));
      const MetaType t = value == "int"      ? MetaType::integer
                         : value == "float"  ? MetaType::floating
                         : value == "bool"   ? MetaType::boolean
                         : value == "string" ? MetaType::string
                                             : MetaType::keep;
      if (t == MetaType::keep)
        problems.add("types." + key,
                     "unknown type '" + value + "' (one of int, float, bool, string)");
      else
        field_types_.emplace(key, t);
    }
    max_services_ = static_cast<size_t>(c.max_services);
    problems.refuse_if_any();

    for (const char *f : {"json", "logfmt", "regex", "kv"}) {
      const std::string labels = std::string("format=\"") + f + "\"";
      m_parsed_.push_back(host_->metric_counter(inst_, "parser_records_parsed_total",
                                                "records whose message a format parsed",
                                                labels.c_str()));
    }
    m_failed_ = counter("parser_parse_failures_total",
                        "records whose message no format parsed (left unchanged)");
    m_time_failed_ = counter("parser_time_failures_total",
                             "timestamp fields that did not read with time_format (or as RFC "
                             "3339 / epoch): the record keeps its timestamp, the field goes to "
                             "meta");
    m_type_failed_ = counter("parser_type_failures_total",
                             "field values that did not convert to their `types` type (kept "
                             "as strings)");
  }

  int filter(dm_batch *batch, uint8_t *verdicts) {
    uint64_t parsed[4] = {}, failed = 0;
    time_failed_ = type_failed_ = 0;
    now_ns_ = 0;
    for (uint32_t i = 0; i < batch->count; ++i) {
      dm_record &r = batch->records[i];
      if (!services_.empty() && !service_selected(sv(r.service))) continue;
      const std::string_view msg = sv(r.message);
      int ok = -1;
      for (Format f : formats_) {
        fields_.clear();
        if (parse(f, msg)) {
          ok = static_cast<int>(f);
          break;
        }
      }
      if (ok < 0) {
        ++failed;
        continue;
      }
      apply(batch, r);
      verdicts[i] = DM_MODIFIED;
      ++parsed[ok];
    }
    for (int f = 0; f < 4; ++f) add(m_parsed_[f], parsed[f]);
    add(m_failed_, failed);
    add(m_time_failed_, time_failed_);
    add(m_type_failed_, type_failed_);
    return 0;
  }

 private:
  bool parse(Format f, std::string_view msg) {
    switch (f) {
      case Format::json:
        return json_.parse(msg, fields_);
      case Format::logfmt:
        return logfmt_.parse(msg, fields_);
      case Format::kv:
        return kv_->parse(msg, fields_);
      case Format::regex:
        for (auto &re : regexes_) {
          fields_.clear();
          if (re->parse(msg, fields_)) return true;
        }
        return false;
    }
    return false;
  }

  // The column of a field, through a direct-mapped cache of the keys last seen: the lookup in
  // record_columns compares against every alias, and a service's keys repeat on every line.
  Column column_of(std::string_view key) {
    uint32_t h = 2166136261u;
    for (char ch : key) h = (h ^ static_cast<uint8_t>(ch)) * 16777619u;
    CachedColumn &slot = column_cache_[h % std::size(column_cache_)];
    if (slot.valid && slot.key == key) return slot.column;
    Column c = Column::none;
    auto it = field_columns_.find(key);
    if (it != field_columns_.end()) {
      c = it->second;
    } else {
      c = column_for_key(key);
      // service and host stay the input's (journald's unit, the sender's host): the issue's
      // columns for parsed fields are the seven below.
      if (c == Column::service || c == Column::host) c = Column::none;
    }
    if (key.size() <= 64) {  // a long key is rare and would only churn the cache
      slot.key.assign(key);
      slot.column = c;
      slot.valid = true;
    }
    return c;
  }

  void apply(dm_batch *batch, dm_record &r) {
    for (const Field &f : fields_) {
      switch (column_of(f.key)) {
        case Column::message:
          if (keep_original_) break;
          r.message = host_->arena_copy(batch, f.value.data(), f.value.size());
          continue;
        case Column::level: {
          const uint8_t level = level_from_text(f.value);
          if (level == DM_LEVEL_UNSET) break;
          r.level = level;
          continue;
        }
        case Column::timestamp: {
          int64_t ns;
          if (!read_time(f, ns)) {
            ++time_failed_;
            break;
          }
          r.timestamp_ns = ns;
          continue;
        }
        case Column::trace_id:
          r.trace_id = host_->arena_copy(batch, f.value.data(), f.value.size());
          continue;
        case Column::span_id:
          r.span_id = host_->arena_copy(batch, f.value.data(), f.value.size());
          continue;
        case Column::event_type:
          r.event_type = host_->arena_copy(batch, f.value.data(), f.value.size());
          continue;
        case Column::error_code:
          r.error_code = host_->arena_copy(batch, f.value.data(), f.value.size());
          continue;
        default:
          break;
      }
      set_meta(batch, r, f);
    }
  }

  bool read_time(const Field &f, int64_t &ns) {
    if (has_time_format_) {
      if (!now_ns_) now_ns_ = static_cast<int64_t>(host_->now_ns());
      if (time_format_.parse(f.value, now_ns_, ns)) return true;
      // Then as without a format: one rule may list formats whose times are written apart
      // (a regex's syslog time, a JSON line's RFC 3339).
    }
    if (f.type == DM_META_INT || f.type == DM_META_FLOAT ||
        (!f.value.empty() && f.value[0] >= '0' && f.value[0] <= '9' &&
         f.value.find_first_not_of("0123456789.") == std::string_view::npos)) {
      char *end = nullptr;
      const std::string text(f.value);
      const double v = std::strtod(text.c_str(), &end);
      return end == text.c_str() + text.size() && epoch_number_to_ns(v, ns);
    }
    return parser::parse_rfc3339_fast(f.value, ns) || parse_rfc3339(f.value, ns);
  }

  void set_meta(dm_batch *batch, dm_record &r, const Field &f) {
    uint32_t type = f.type;
    std::string_view value = f.value;
    if (!field_types_.empty() && f.type == DM_META_STRING) {
      auto it = field_types_.find(f.key);
      if (it != field_types_.end()) type = convert(it->second, value);
    }
    if (host_->meta_set(batch, &r, str(f.key), str(value), type) != DM_OK) {
      // A type the value does not fit (a JSON number meta_set reads otherwise): as a string.
      ++type_failed_;
      host_->meta_set(batch, &r, str(f.key), str(f.value), DM_META_STRING);
    }
  }

  // The meta type of value under `types`; value may be rewritten (bool spellings).
  uint32_t convert(MetaType t, std::string_view &value) {
    switch (t) {
      case MetaType::string:
        return DM_META_STRING;
      case MetaType::integer: {
        int64_t x;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), x);
        if (ec == std::errc() && end == value.data() + value.size() && !value.empty())
          return DM_META_INT;
        break;
      }
      case MetaType::floating: {
        double x;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), x);
        if (ec == std::errc() && end == value.data() + value.size() && std::isfinite(x))
          return DM_META_FLOAT;
        break;
      }
      case MetaType::boolean:
        for (std::string_view t : {"true", "yes", "on", "1"})
          if (detail::iequals(value, t)) {
            value = "true";
            return DM_META_BOOL;
          }
        for (std::string_view f : {"false", "no", "off", "0"})
          if (detail::iequals(value, f)) {
            value = "false";
            return DM_META_BOOL;
          }
        break;
      case MetaType::keep:
        return DM_META_STRING;
    }
    ++type_failed_;
    return DM_META_STRING;
  }

  bool service_selected(std::string_view service) {
    auto it = selected_.find(service);
    if (it != selected_.end()) return it->second;
    const std::string s(service);
    bool yes = false;
    for (const auto &pattern : services_)
      if (fnmatch(pattern.c_str(), s.c_str(), 0) == 0) {
        yes = true;
        break;
      }
    if (selected_.size() < max_services_) selected_.emplace(s, yes);
    return yes;
  }

  dm_metric *counter(const char *name, const char *help) {
    return host_->metric_counter(inst_, name, help, nullptr);
  }
  void add(dm_metric *m, uint64_t v) {
    if (m && v) host_->metric_add(m, static_cast<double>(v));
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  std::vector<Format> formats_;
  std::vector<std::unique_ptr<parser::Regex>> regexes_;
  std::vector<std::string> services_;
  std::unordered_map<std::string, bool, SvHash, std::equal_to<>> selected_;
  size_t max_services_ = 10000;
  parser::TimeFormat time_format_;
  bool has_time_format_ = false, keep_original_ = false;
  std::unordered_map<std::string, Column, SvHash, std::equal_to<>> field_columns_;
  struct CachedColumn {
    std::string key;
    Column column = Column::none;
    bool valid = false;
  };
  CachedColumn column_cache_[512];
  std::unordered_map<std::string, MetaType, SvHash, std::equal_to<>> field_types_;
  parser::Json json_;
  parser::Logfmt logfmt_;
  std::unique_ptr<parser::KeyValue> kv_;
  Fields fields_;
  int64_t now_ns_ = 0;
  uint64_t time_failed_ = 0, type_failed_ = 0;
  std::vector<dm_metric *> m_parsed_;
  dm_metric *m_failed_, *m_time_failed_, *m_type_failed_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Parser>::describe(
    DM_FILTER, "parser", "0.1.0",
    "parses a record's message (json, logfmt, regex, key=value) into its columns and typed meta",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
