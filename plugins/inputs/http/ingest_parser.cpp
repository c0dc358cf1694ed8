// The http input's body parsing (see ingest_parser.hpp): a RapidJSON SAX handler that builds
// records straight from the in-situ parse of the body's copy in the batch arena. Its strings are
// scanned by this file's own SSE2 code (see the ParseString specialization below; every x86-64
// has SSE2), which rapidjson's reader calls in place of its own.
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2
#endif
#include "ingest_parser.hpp"

#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/plugin.hpp>
#include <devmesh/record_fields.hpp>
#include <event_id.hpp>
#include <record_json.hpp>
#include <timestamp.hpp>

#include "timestamp_cache.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::http_ingest {

const char *const kReasonLabels[kReasonCount] = {
    "missing_message", "bad_timestamp", "unknown_level",  "field_too_long",
    "bad_field",       "not_an_object", "malformed_line", "meta_too_large"};

bool ieq(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if ((a[i] | 0x20) != (b[i] | 0x20)) return false;
  return true;
}

namespace {

// The prototype's column limits (MariaDB VARCHAR lengths, in characters).
enum Field : uint8_t {
  kNone,
  kTimestamp,
  kSource,
  kService,
  kHost,
  kLevel,
  kTraceId,
  kSpanId,
  kEventType,
  kErrorCode,
  kMessage,
  kMeta,
  kEventId,
  kPriority,
  kIgnored,
};

struct FieldInfo {
  std::string_view name;
  Field field;
  size_t max_chars;        // 0: unlimited
  const char *too_long;    // rejection reason
  const char *wrong_type;  // rejection reason for a value of the wrong JSON type
  Reason wrong_type_reason;
  dm_str dm_record::*member;  // a record string field's member (kRecordFields), else null
};

// A record string field: name, limit and member from kRecordFields[i].
constexpr FieldInfo record_field(Field field, size_t i, const char *too_long,
                                 const char *wrong_type) {
  return FieldInfo{
      kRecordFields[i].name,  field, kRecordFields[i].max_chars, too_long, wrong_type, kBadField,
      kRecordFields[i].member};
}

// In Field order (field_info indexes it).
constexpr FieldInfo kFields[] = {
    {"timestamp", kTimestamp, 0, nullptr, "timestamp is not RFC 3339 or epoch seconds/milliseconds",
     kBadTimestamp, nullptr},
    record_field(kSource, 0, "source longer than 255 characters", "source is not a string"),
    record_field(kService, 1, "service longer than 255 characters", "service is not a string"),
    record_field(kHost, 2, "host longer than 255 characters", "host is not a string"),
    {"level", kLevel, 0, nullptr, "level is not a string", kUnknownLevel, nullptr},
    record_field(kTraceId, 3, "trace_id longer than 64 characters", "trace_id is not a string"),
    record_field(kSpanId, 4, "span_id longer than 32 characters", "span_id is not a string"),
    record_field(kEventType, 5, "event_type longer than 100 characters",
                 "event_type is not a string"),
    record_field(kErrorCode, 6, "error_code longer than 50 characters",
                 "error_code is not a string"),
    record_field(kMessage, 7, nullptr, "message is not a string"),
    {"meta_json", kMeta, 0, nullptr, "meta_json is not an object", kBadField, nullptr},
    {"event_id", kEventId, 0, nullptr, "event_id is not a string", kBadField, nullptr},
    {"priority", kPriority, 0, nullptr, "priority is not a number from 0 to 7", kBadField, nullptr},
};

static_assert(std::size(kFields) == kPriority - kTimestamp + 1);

// Whether text is "<name> longer than <max_chars> characters": the rejection names the limit
// kRecordFields sets.
constexpr bool names_limit(const FieldInfo &f) {
  if (!f.max_chars) return f.too_long == nullptr;
  char digits[24] = {};
  size_t n = 0;
  for (size_t v = f.max_chars; v; v /= 10) digits[n++] = static_cast<char>('0' + v % 10);
  std::string_view text(f.too_long);
  const std::string_view mid = " longer than ";
  if (text.substr(0, f.name.size()) != f.name) return false;
  text.remove_prefix(f.name.size());
  if (text.substr(0, mid.size()) != mid) return false;
  text.remove_prefix(mid.size());
  for (size_t i = 0; i < n; ++i)
    if (i >= text.size() || text[i] != digits[n - 1 - i]) return false;
  return text.substr(n) == " characters";
}
static_assert(
    [] {
      for (const FieldInfo &f : kFields)
        if (f.member && (f.field != kFields[f.field - kTimestamp].field || !names_limit(f)))
          return false;
      return true;
    }(),
    "each string field's limit text names its kRecordFields limit");

// By length first: this runs for every key of every record.
const FieldInfo *field_info(std::string_view key) {
  auto is = [&](Field f) -> const FieldInfo * {
    const FieldInfo &info = kFields[f - kTimestamp];
    return key == info.name ? &info : nullptr;
  };
  switch (key.size()) {
    case 4:
      return is(kHost);
    case 5:
      return is(kLevel);
    case 6:
      return is(kSource);
    case 7:
      if (key[0] == 'm') return is(kMessage);
      return key[0] == 's' && key[1] == 'e' ? is(kService) : is(kSpanId);
    case 8:
      return key[0] == 't' ? is(kTraceId) : key[0] == 'e' ? is(kEventId) : is(kPriority);
    case 9:
      return key[0] == 't' ? is(kTimestamp) : is(kMeta);
    case 10:
      return key[1] == 'v' ? is(kEventType) : is(kErrorCode);
    default:
      return nullptr;
  }
}

constexpr size_t kKeepScratchBytes = 4u << 20;  // buffers grown past this are given back
constexpr size_t kSimdPad = 16;                 // see IngestParser::parse()

// Characters of s as the outputs write it: invalid UTF-8 becomes one U+FFFD per byte
// (valid_utf8), so a field within its limit here is within it in the store and in the next
// devmesh it is forwarded to (found by tests/fuzz: stray continuation bytes counted as nothing).
size_t utf8_chars(std::string_view s, std::string &scratch) {
  size_t n = 0;
  for (unsigned char c : valid_utf8(s, scratch)) n += (c & 0xC0) != 0x80;
  return n;
}

uint8_t parse_level(std::string_view s) {
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (ieq(s, dm_level_name(l))) return static_cast<uint8_t>(l);
  return DM_LEVEL_UNSET;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<char>(c | 0x20);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

bool parse_hex_id(std::string_view s, uint8_t out[16]) {
  if (s.size() != 32) return false;
  for (size_t i = 0; i < 16; ++i) {
    int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace

// SAX handler: builds records straight from the in-situ parse. Strings are views into the body's
// copy in the batch arena, already unescaped and NUL-terminated by rapidjson.
class RecordHandler : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, RecordHandler> {
 public:
  enum Mode : uint8_t {
    kStart,       // before the root
    kTop,         // in the root object, expecting a key
    kTopLogs,     // the value of "logs"
    kLogs,        // in the logs array (NDJSON: at the start of a line)
    kRecord,      // in a record, expecting a key
    kValue,       // a record field's value
    kMetaKeys,    // in meta_json, expecting a key
    kMetaValue,   // a meta value
    kSkip,        // inside a value that is skipped
    kMetaNested,  // inside a nested meta value, captured as JSON text
    kDone,        // the root (JSON) or the line's record (NDJSON) is complete
  };

  explicit RecordHandler(IngestParser *in) : in_(in) {}

  // Per body.
  void begin_body(dm_batch *b, int64_t arrival_ns, bool lines) {
    batch_ = b;
    arrival_ns_ = arrival_ns;
    lines_ = lines;
    index_ = 0;
    saw_logs_ = false;
    error_ = nullptr;
    mode_ = lines ? kLogs : kStart;
    depth_ = 0;
    too_deep_ = false;
    // Buffers one huge nested meta value grew are given back, as the body's scratch is.
    if (nested_clean_.capacity() > kKeepScratchBytes) std::string().swap(nested_clean_);
    if (nested_peak_ > kKeepScratchBytes) {
      nested_text_.Clear();
      nested_text_.ShrinkToFit();
    }
    nested_peak_ = 0;
  }
  // NDJSON: per line. The line's outcome is held until the whole line parsed.
  void begin_line() {
    mode_ = kLogs;
    depth_ = 0;
    line_outcome_ = kNoOutcome;
    line_index_ = index_;
    too_deep_ = false;
  }
  // NDJSON: the line parsed: its record is accepted or rejected now. Else it is malformed.
  void commit_line();
  void malformed_line(std::string reason);

  bool Null() { return scalar(kNull); }
  bool Bool(bool b) { return scalar(b ? kTrue : kFalse); }
  bool RawNumber(const char *s, rapidjson::SizeType n, bool) { return scalar(kNumber, s, n); }
  bool String(const char *s, rapidjson::SizeType n, bool) { return scalar(kString, s, n); }
  bool Key(const char *s, rapidjson::SizeType n, bool);
  bool StartObject() { return open(true); }
  bool EndObject(rapidjson::SizeType) { return close(true); }
  bool StartArray() { return open(false); }
  bool EndArray(rapidjson::SizeType) { return close(false); }

  // Set when the body's shape is wrong (a 400); the parse stops with kParseErrorTermination.
  const char *error() const { return error_; }
  // The parse stopped at a container nested deeper than kMaxDepth.
  bool too_deep() const { return too_deep_; }
  bool saw_logs() const { return saw_logs_; }
  Mode mode() const { return mode_; }

 private:
  enum Kind : uint8_t { kNull, kTrue, kFalse, kNumber, kString };
  enum Outcome : uint8_t { kNoOutcome, kAccepted, kRejected };

  // Skips the value that starts now (scalar) or that was just opened (container) inside the
  // container at depth `container`, then returns to `back`.
  void skip(Mode back, uint32_t container) {
    mode_ = kSkip;
    skip_back_ = back;
    skip_depth_ = container;
  }
  bool fail(const char *why) {
    error_ = why;
    return false;
  }
  void reject(Reason r, const char *why) {
    if (!reason_text_) {
      reason_ = r;
      reason_text_ = why;
    }
  }
  bool scalar(Kind kind, const char *s = nullptr, size_t n = 0);
  bool open(bool object);
  bool close(bool object);
  void not_an_object();
  void start_record();
  void finish_record();
  void set_field(Kind kind, const char *s, size_t n);
  void meta_value(std::string_view v, dm_meta_type type);
  bool nested_skipped();

  IngestParser *in_;
  TimestampParser timestamps_;  // one per input: bodies mostly share their minute
  dm_batch *batch_ = nullptr;
  int64_t arrival_ns_ = 0;
  Mode mode_ = kStart;
  Mode skip_back_ = kStart;
  bool lines_ = false;
  bool saw_logs_ = false;
  bool too_deep_ = false;
  const char *error_ = nullptr;
  uint32_t depth_ = 0, skip_depth_ = 0;
  uint32_t index_ = 0;       // of the next record
  uint32_t line_index_ = 0;  // NDJSON: of the current line's record

  // The record being built: added to the batch only once it is complete and valid.
  dm_record rec_{};
  const FieldInfo *field_ = nullptr;
  dm_str level_{}, event_id_{};
  int64_t ts_ns_ = 0;
  bool has_ts_ = false, has_message_ = false;
  Reason reason_ = kMissingMessage;
  const char *reason_text_ = nullptr;
  Outcome line_outcome_ = kNoOutcome;
  dm_str meta_key_{};
  uint32_t meta_keys_ = 0;  // of the record, as sent (before duplicates are merged)
  size_t meta_bytes_ = 0;
  rapidjson::StringBuffer nested_text_;
  std::string nested_clean_;  // a nested key or string made valid UTF-8
  size_t nested_peak_ = 0;    // the largest nested_text_ of this body
  // Not Writer<StringBuffer>: its SSE2 specialisation in rapidjson 1.1.0 leaves 0x1A..0x1F
  // unescaped (found by tests/fuzz); another flag selects the portable copy.
  rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                    rapidjson::CrtAllocator, rapidjson::kWriteNanAndInfFlag>
      nested_{nested_text_};
};
// ---- the handler's events ---------------------------------------------------------------------

bool RecordHandler::Key(const char *s, rapidjson::SizeType n, bool) {
  const std::string_view k(s, n);
  switch (mode_) {
    case kTop:
      if (k == "logs") {
        mode_ = kTopLogs;
      } else {
        skip(kTop, depth_);  // other keys of the root object are ignored
      }
      return true;
    case kRecord:
      field_ = field_info(k);  // null: an unknown key, whose value is ignored
      mode_ = kValue;
      return true;
    case kMetaKeys:
      meta_key_ = dm_str{s, n};
      mode_ = kMetaValue;
      if (++meta_keys_ > in_->limits_.max_meta_keys)
        reject(kMetaTooLarge, in_->too_many_keys_.c_str());
      return true;
    case kMetaNested: {
      if (nested_skipped()) return true;
      const std::string_view k = valid_utf8(std::string_view(s, n), nested_clean_);
      return nested_.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
    }
    default:
      return true;  // kSkip
  }
}

void RecordHandler::not_an_object() {
  const uint32_t index = index_++;
  if (lines_) {
    reason_ = kNotAnObject;
    reason_text_ = "record is not an object";
    line_outcome_ = kRejected;
  } else {
    in_->reject_record(index, kNotAnObject, "record is not an object");
  }
}

bool RecordHandler::open(bool object) {
  // Refused before rapidjson goes a level deeper: its reader recurses per level.
  if (++depth_ > kMaxDepth) {
    too_deep_ = true;
    return false;
  }
  switch (mode_) {
    case kStart:
      if (object) {
        mode_ = kTop;
      } else {
        saw_logs_ = true;  // a bare array of records is taken too
        mode_ = kLogs;
      }
      return true;
    case kTopLogs:
      if (object) return fail("\"logs\" is not an array");
      saw_logs_ = true;
      mode_ = kLogs;
      return true;
    case kLogs:
      if (object) {
        start_record();
        mode_ = kRecord;
        return true;
      }
      not_an_object();
      skip(lines_ ? kDone : kLogs, depth_ - 1);
      return true;
    case kValue:
      if (field_ && field_->field == kMeta && object) {
        mode_ = kMetaKeys;
        return true;
      }
      if (field_) reject(field_->wrong_type_reason, field_->wrong_type);
      skip(kRecord, depth_ - 1);
      return true;
    case kMetaValue:
      // A nested meta value is kept as its JSON text.
      nested_text_.Clear();
      nested_.Reset(nested_text_);
      skip_depth_ = depth_ - 1;
      mode_ = kMetaNested;
      if (nested_skipped()) return true;
      return object ? nested_.StartObject() : nested_.StartArray();
    case kMetaNested:
      if (nested_skipped()) return true;
      return object ? nested_.StartObject() : nested_.StartArray();
    case kSkip:
      return true;
    default:
      return fail("unexpected JSON structure");
  }
}

bool RecordHandler::close(bool object) {
  --depth_;
  switch (mode_) {
    case kSkip:
      if (depth_ == skip_depth_) mode_ = skip_back_;
      return true;
    case kMetaNested:
      if (!(object ? nested_.EndObject() : nested_.EndArray())) return false;
      if (depth_ == skip_depth_) {
        meta_value(std::string_view(nested_text_.GetString(), nested_text_.GetSize()),
                   DM_META_JSON);
        mode_ = kMetaKeys;
      }
      return true;
    case kMetaKeys:
      mode_ = kRecord;
      return true;
    case kRecord:
      finish_record();
      mode_ = lines_ ? kDone : kLogs;
      return true;
    case kLogs:
      mode_ = depth_ == 0 ? kDone : kTop;  // a bare array ends the body
      return true;
    case kTop:
      mode_ = kDone;
      return true;
    default:
      return fail("unexpected JSON structure");
  }
}

bool RecordHandler::scalar(Kind kind, const char *s, size_t n) {
  switch (mode_) {
    case kStart:
      return fail("body must be an object with a \"logs\" array");
    case kTopLogs:
      return fail("\"logs\" is not an array");
    case kSkip:
      if (depth_ == skip_depth_) mode_ = skip_back_;  // the skipped value was this scalar
      return true;
    case kLogs:
      not_an_object();
      if (lines_) mode_ = kDone;
      return true;
    case kValue:
      set_field(kind, s, n);
      mode_ = kRecord;
      return true;
    case kMetaValue:
      // Each value keeps its JSON type; a number its text as written.
      mode_ = kMetaKeys;
      switch (kind) {
        case kNull:
          meta_value("null", DM_META_NULL);
          break;
        case kTrue:
          meta_value("true", DM_META_BOOL);
          break;
        case kFalse:
          meta_value("false", DM_META_BOOL);
          break;
        case kNumber:
          meta_value(std::string_view(s, n),
                     std::string_view(s, n).find_first_of(".eE") == std::string_view::npos
                         ? DM_META_INT
                         : DM_META_FLOAT);
          break;
        default:
          meta_value(std::string_view(s, n), DM_META_STRING);
          break;
      }
      return true;
    case kMetaNested:
      if (nested_skipped()) return true;
      switch (kind) {
        case kNull:
          return nested_.Null();
        case kTrue:
          return nested_.Bool(true);
        case kFalse:
          return nested_.Bool(false);
        case kNumber:
          return nested_.RawValue(s, n, rapidjson::kNumberType);
        default: {
          // Cleaned here, as a string value is by the outputs: a JSON value is valid UTF-8.
          const std::string_view v = valid_utf8(std::string_view(s, n), nested_clean_);
          return nested_.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
        }
      }
    default:
      return fail("unexpected JSON structure");
  }
}

void RecordHandler::start_record() {
  std::memset(&rec_, 0, sizeof rec_);
  rec_.priority = -1;
  level_ = event_id_ = dm_str{nullptr, 0};
  meta_keys_ = 0;
  meta_bytes_ = 0;
  has_ts_ = has_message_ = false;
  reason_text_ = nullptr;
}

void RecordHandler::set_field(Kind kind, const char *s, size_t n) {
  if (!field_ || kind == kNull) return;  // unknown keys are ignored, null is absent
  const FieldInfo &f = *field_;
  switch (f.field) {
    case kTimestamp: {
      has_ts_ = true;
      // An RFC 3339 string, or epoch seconds / milliseconds as a number (or a numeric string).
      auto epoch = [&] {
        double d = 0;
        auto r = std::from_chars(s, s + n, d);
        return r.ec == std::errc() && r.ptr == s + n && epoch_number_to_ns(d, ts_ns_);
      };
      const bool ok = kind == kString ? timestamps_.parse(std::string_view(s, n), ts_ns_) || epoch()
                                      : kind == kNumber && epoch();
      if (!ok) reject(kBadTimestamp, f.wrong_type);
      return;
    }
    case kPriority: {
      int p = -1;
      auto r = kind == kNumber ? std::from_chars(s, s + n, p)
                               : std::from_chars_result{s, std::errc::invalid_argument};
      if (r.ec != std::errc() || r.ptr != s + n || p < 0 || p > 7) {
        reject(kBadField, f.wrong_type);
      } else {
        rec_.priority = static_cast<int8_t>(p);
      }
      return;
    }
    case kMeta:
      reject(kBadField, f.wrong_type);
      return;
    default:
      break;
  }
  if (kind != kString && kind != kNumber) {
    reject(f.wrong_type_reason, f.wrong_type);
    return;
  }
  // Bytes bound characters from above: count characters only when the bytes exceed the limit.
  if (f.max_chars && n > f.max_chars &&
      utf8_chars(std::string_view(s, n), in_->id_scratch_) > f.max_chars) {
    reject(kFieldTooLong, f.too_long);
    return;
  }
  // As the outputs write it (invalid UTF-8 grows to U+FFFD), so that what is accepted here is
  // accepted by the next devmesh it is forwarded to. Counted only when it could matter.
  if (f.field == kMessage && n > in_->limits_.max_message / 3 &&
      valid_utf8(std::string_view(s, n), in_->id_scratch_).size() > in_->limits_.max_message) {
    reject(kFieldTooLong, in_->message_too_long_.c_str());
    return;
  }
  // A number where text is expected ("error_code": 500) is taken as its text. Raw numbers are
  // not NUL-terminated in place, so they are copied (strings in the arena always are).
  dm_str v{s, n};
  if (kind == kNumber) v = in_->host_->arena_copy(batch_, s, n);
  if (f.member) {
    rec_.*f.member = v;
    has_message_ |= f.field == kMessage;
  } else if (f.field == kLevel) {
    level_ = v;
  } else if (f.field == kEventId) {
    event_id_ = v;
  }
}

void RecordHandler::meta_value(std::string_view v, dm_meta_type type) {
  meta_bytes_ += meta_key_.len + v.size();
  if (meta_bytes_ > in_->limits_.max_meta_bytes)
    reject(kMetaTooLarge, in_->meta_too_large_.c_str());
  if (reason_text_) return;  // the record is rejected: its meta is no longer needed
  if (in_->host_->meta_set(batch_, &rec_, meta_key_, str(v), type) != DM_OK)
    throw std::runtime_error("meta_set failed");
}

// A nested value that passes max_meta_bytes, or belongs to a record already rejected, is
// skipped rather than copied on: the work stays bounded by the limit, not by the body.
bool RecordHandler::nested_skipped() {
  nested_peak_ = std::max(nested_peak_, nested_text_.GetSize());
  if (!reason_text_ &&
      meta_bytes_ + meta_key_.len + nested_text_.GetSize() > in_->limits_.max_meta_bytes)
    reject(kMetaTooLarge, in_->meta_too_large_.c_str());
  if (!reason_text_) return false;
  skip(kMetaKeys, skip_depth_);
  return true;
}

void RecordHandler::finish_record() {
  const uint32_t index = index_++;
  const dm_host_api *h = in_->host_;
  if (!has_message_) reject(kMissingMessage, "message is missing");
  // The meta as the outputs write it (invalid UTF-8 grows to U+FFFD, up to 3 bytes a byte), so
  // that a sidecar never accepts what its aggregator refuses. Counted only when it could matter.
  if (!reason_text_ && meta_bytes_ > in_->limits_.max_meta_bytes / 3) {
    size_t stored = 0;
    for (uint32_t i = 0; i < rec_.meta_count; ++i)
      stored += valid_utf8(sv(rec_.meta[i].key), in_->id_scratch_).size() +
                valid_utf8(sv(rec_.meta[i].value), in_->id_scratch_).size();
    if (stored > in_->limits_.max_meta_bytes) reject(kMetaTooLarge, in_->meta_too_large_.c_str());
  }
  if (level_.len) {
    rec_.level = parse_level(sv(level_));
    if (rec_.level == DM_LEVEL_UNSET)
      reject(kUnknownLevel,
             "level is not one of DEBUG, INFO, WARN, WARNING, ERROR, CRITICAL, FATAL");
  } else {
    rec_.level = DM_LEVEL_INFO;  // the prototype required a level; absent means INFO here
  }
  if (reason_text_) {
    if (lines_) {
      line_outcome_ = kRejected;
    } else {
      in_->reject_record(index, reason_, reason_text_);
    }
    return;
  }
  static constexpr std::string_view kDefaultSource = "http", kUnknown = "unknown";
  if (!rec_.source.len) rec_.source = str(kDefaultSource);
  if (!rec_.service.len) rec_.service = str(kUnknown);
  if (!rec_.host.len) rec_.host = str(kUnknown);
  if (has_ts_) {
    rec_.timestamp_ns = ts_ns_;
  } else {
    rec_.timestamp_ns = arrival_ns_;
    static constexpr std::string_view kKey = "timestamp_source", kArrival = "arrival";
    if (h->meta_set(batch_, &rec_, str(kKey), str(kArrival), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }
  if (event_id_.len) {
    // The client's id: 32 hex digits as they are, any other string by its hash.
    if (!parse_hex_id(sv(event_id_), rec_.event_id))
      h->hash128(event_id_.ptr, event_id_.len, rec_.event_id);
  } else {
    derive_event_id(h->hash128, rec_, in_->id_scratch_);
  }
  if (lines_) {
    line_outcome_ = kAccepted;
  } else {
    in_->accept_record(batch_, rec_);
  }
}

void RecordHandler::commit_line() {
  index_ = line_index_ + 1;
  if (line_outcome_ == kAccepted) {
    in_->accept_record(batch_, rec_);
  } else if (line_outcome_ == kRejected) {
    in_->reject_record(line_index_, reason_, reason_text_);
  } else {
    in_->reject_record(line_index_, kNotAnObject, "record is not an object");
  }
}

void RecordHandler::malformed_line(std::string reason) {
  index_ = line_index_ + 1;  // the line is one record, whatever part of it parsed
  in_->line_error(std::move(reason));
  in_->reject_record(line_index_, kMalformedLine, nullptr);
}

// ---- the parser --------------------------------------------------------------------------------

constexpr unsigned kFlags = rapidjson::kParseInsituFlag | rapidjson::kParseNumbersAsStringsFlag;

}  // namespace devmesh::http_ingest

#if defined(__SSE2__)
// The reader's string scanning for the body, in place of rapidjson 1.1.0's own (it was most of
// http -> null's parsing time): its SSE2 scan goes byte by byte up to a 16-byte boundary, which
// for the short keys and values of log records is most of every string, and its vector compare
// (s <= 0x19) let 0x1A..0x1F through raw where a string crossed a boundary and refused them
// where it did not. Here every string is scanned 16 bytes at a time from its first byte (the
// body's copy has kSimdPad bytes past its end, see IngestParser::parse), each control byte is
// refused, and a run is moved down only after an escape made the text shorter. Escapes, their
// errors and offsets are rapidjson's, on its stream.
template <>
template <>
void rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, rapidjson::CrtAllocator>::
    ParseString<devmesh::http_ingest::kFlags, rapidjson::InsituStringStream,
                devmesh::http_ingest::RecordHandler>(rapidjson::InsituStringStream &is,
                                                     devmesh::http_ingest::RecordHandler &handler,
                                                     bool isKey) {
  // The byte a one-letter escape stands for; 0: not one.
  auto unescape = [](char e) -> char {
    switch (e) {
      case '"':
      case '\\':
      case '/':
        return e;
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      default:
        return 0;
    }
  };
  RAPIDJSON_ASSERT(is.Peek() == '"');
  char *p = is.src_ + 1;
  char *const head = p;
  size_t shift = 0;  // how far escapes moved the text down: the unescaped text ends at p - shift
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
  const __m128i control = _mm_set1_epi8(0x1F);
  for (;;) {
    unsigned mask;
    for (;;) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
      const __m128i stop =
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                       _mm_cmpeq_epi8(_mm_min_epu8(v, control), v));  // v <= 0x1F
      mask = static_cast<unsigned>(_mm_movemask_epi8(stop));
      if (mask) break;
      if (shift) _mm_storeu_si128(reinterpret_cast<__m128i *>(p - shift), v);
      p += 16;
    }
    const unsigned n = static_cast<unsigned>(__builtin_ctz(mask));
    if (shift) std::memmove(p - shift, p, n);
    p += n;
    const char c = *p;
    if (c == '"') {
      char *const end = p - shift;
      *end = '\0';  // NUL-terminated in place, as rapidjson leaves its strings
      is.src_ = p + 1;
      is.dst_ = end + 1;
      const SizeType length = static_cast<SizeType>(end - head);
      if (RAPIDJSON_UNLIKELY(
              !(isKey ? handler.Key(head, length, false) : handler.String(head, length, false))))
        RAPIDJSON_PARSE_ERROR(kParseErrorTermination, is.Tell());
      return;
    }
    is.src_ = p;
    is.dst_ = p - shift;
    if (c != '\\') {  // a control byte: unescaped text is %x20-21 / %x23-5B / %x5D-10FFFF
      RAPIDJSON_PARSE_ERROR(
          c == '\0' ? kParseErrorStringMissQuotationMark : kParseErrorStringEscapeInvalid,
          is.Tell());
    }
    const size_t escapeOffset = is.Tell();  // errors name the backslash
    is.Take();
    const char e = is.Peek();
    if (const char u = unescape(e)) {
      is.Take();
      is.Put(u);
    } else if (e == 'u') {
      is.Take();
      unsigned codepoint = ParseHex4(is, escapeOffset);
      RAPIDJSON_PARSE_ERROR_EARLY_RETURN_VOID;
      if (RAPIDJSON_UNLIKELY(codepoint >= 0xD800 && codepoint <= 0xDBFF)) {
        if (RAPIDJSON_UNLIKELY(!Consume(is, '\\') || !Consume(is, 'u')))
          RAPIDJSON_PARSE_ERROR(kParseErrorStringUnicodeSurrogateInvalid, escapeOffset);
        const unsigned codepoint2 = ParseHex4(is, escapeOffset);
        RAPIDJSON_PARSE_ERROR_EARLY_RETURN_VOID;
        if (RAPIDJSON_UNLIKELY(codepoint2 < 0xDC00 || codepoint2 > 0xDFFF))
          RAPIDJSON_PARSE_ERROR(kParseErrorStringUnicodeSurrogateInvalid, escapeOffset);
        codepoint = (((codepoint - 0xD800) << 10) | (codepoint2 - 0xDC00)) + 0x10000;
      }
      rapidjson::UTF8<>::Encode(is, codepoint);
    } else {
      RAPIDJSON_PARSE_ERROR(kParseErrorStringEscapeInvalid, escapeOffset);
    }
    p = is.src_;
    shift = static_cast<size_t>(is.src_ - is.dst_);
  }
}

#endif  // __SSE2__ (elsewhere rapidjson's own scanning)

namespace devmesh::http_ingest {

namespace {
std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
}  // namespace

bool is_ndjson(std::string_view type) {
  type = trim(type.substr(0, type.find(';')));
  for (std::string_view t : {"application/x-ndjson", "application/ndjson", "application/jsonl",
                             "application/x-jsonlines", "application/jsonlines"})
    if (ieq(type, t)) return true;
  return false;
}

MediaType media_type(std::string_view content_type) {
  const std::string_view t = trim(content_type.substr(0, content_type.find(';')));
  if (t.empty() || ieq(t, "application/json")) return MediaType::kJson;
  if (is_ndjson(t)) return MediaType::kNdjson;
  constexpr std::string_view kApp = "application/", kSuffix = "+json";
  if (t.size() > kApp.size() + kSuffix.size() && ieq(t.substr(0, kApp.size()), kApp) &&
      ieq(t.substr(t.size() - kSuffix.size()), kSuffix) &&
      t.find('/', kApp.size()) == std::string_view::npos)
    return MediaType::kJson;
  return MediaType::kUnsupported;
}

std::string unsupported_media_type(std::string_view content_type) {
  const std::string_view t = trim(content_type.substr(0, content_type.find(';')));
  std::string why = "unsupported Content-Type " + std::string(t.substr(0, 100));
  if (ieq(t, "application/x-www-form-urlencoded")) why += " (a form, as curl -d sends)";
  return why +
         ": send Content-Type: application/json (or application/*+json), or "
         "application/x-ndjson for NDJSON";
}

Encoding body_encoding(std::string_view e) {
  if (e.empty() || ieq(e, "identity")) return Encoding::kIdentity;
  if (ieq(e, "gzip") || ieq(e, "x-gzip")) return Encoding::kGzip;
  if (ieq(e, "deflate")) return Encoding::kDeflate;
  if (ieq(e, "zstd")) return Encoding::kZstd;
  return Encoding::kUnsupported;
}

std::string unsupported_encoding(std::string_view e) {
  return "unsupported Content-Encoding " + std::string(trim(e).substr(0, 100)) +
         ": send gzip, deflate, zstd or none";
}

IngestParser::IngestParser(const dm_host_api *host, const Limits &limits)
    : host_(host),
      limits_(limits),
      too_many_keys_("meta_json has more than " + std::to_string(limits.max_meta_keys) + " keys"),
      meta_too_large_("meta_json larger than " + std::to_string(limits.max_meta_bytes) +
                      " bytes (keys and values)"),
      message_too_long_("message longer than " + std::to_string(limits.max_message) + " bytes"),
      handler_(std::make_unique<RecordHandler>(this)) {}

IngestParser::~IngestParser() {
  if (z_ready_) inflateEnd(&z_);
}

void IngestParser::accept_record(dm_batch *b, const dm_record &r) {
  dm_record *slot = host_->batch_add(b);
  if (!slot) throw std::runtime_error("batch_add failed");
  *slot = r;
  ++accepted_;
}

bool IngestParser::parse(dm_batch *batch, std::string_view body, bool ndjson, int64_t arrival_ns) {
  // The body is copied once into the batch arena and parsed there in place: every string of
  // every record is then a view into it, with no copy per field. rapidjson's SSE2 scanning
  // loads aligned 16-byte blocks, so it may read up to 15 bytes past the terminating NUL:
  // those bytes are ours too.
  char *text = static_cast<char *>(host_->arena_alloc(batch, body.size() + 1 + kSimdPad));
  if (!text) throw std::runtime_error("arena_alloc failed");
  if (!body.empty()) std::memcpy(text, body.data(), body.size());
  std::memset(text + body.size(), 0, 1 + kSimdPad);
  if (scratch_.capacity() > kKeepScratchBytes) std::string().swap(scratch_);

  accepted_ = 0;
  rejections_.clear();
  line_errors_.clear();
  error_.clear();
  handler_->begin_body(batch, arrival_ns, ndjson);
  if (ndjson) {
    parse_lines(text, body.size());
    return true;
  }
  return parse_document(text, body.size());
}

// A JSON body is all or nothing: malformed anywhere, nothing is accepted (400).
bool IngestParser::parse_document(char *text, size_t len) {
  rapidjson::Reader reader;
  rapidjson::InsituStringStream in(text);
  const rapidjson::ParseResult ok = reader.Parse<kFlags>(in, *handler_);
  if (!ok) {
    if (handler_->too_deep()) {
      too_deep(reader.GetErrorOffset(), error_);
    } else if (handler_->error()) {
      error_ = handler_->error();
    } else {
      bad_json(reader.GetErrorOffset(), rapidjson::GetParseError_En(reader.GetParseErrorCode()));
    }
    return false;
  }
  // In-situ parsing stops at the first NUL: one inside the body is malformed JSON.
  if (in.Tell() < len) {
    bad_json(in.Tell(), "NUL byte in the body");
    return false;
  }
  if (!handler_->saw_logs()) {
    error_ = "body has no \"logs\" array";
    return false;
  }
  return true;
}

// rapidjson reports the offset just past the bracket that went too deep.
void IngestParser::too_deep(size_t offset, std::string &out) const {
  out = "JSON nested deeper than " + std::to_string(kMaxDepth) + " levels at byte " +
        std::to_string(offset ? offset - 1 : 0);
}

void IngestParser::bad_json(size_t offset, const char *what) {
  error_ = "malformed JSON at byte " + std::to_string(offset) + ": " + what;
}

// NDJSON: each line is one record; a line that is not JSON rejects that record only.
void IngestParser::parse_lines(char *text, size_t len) {
  size_t pos = 0;
  while (pos < len) {
    char *nl = static_cast<char *>(std::memchr(text + pos, '\n', len - pos));
    const size_t end = nl ? static_cast<size_t>(nl - text) : len;
    text[end] = '\0';
    size_t at = pos;
    pos = end + 1;
    while (at < end && (text[at] == ' ' || text[at] == '\t' || text[at] == '\r')) ++at;
    if (at == end) continue;  // a blank line is no record
    rapidjson::Reader reader;
    rapidjson::InsituStringStream in(text + at);
    handler_->begin_line();
    const rapidjson::ParseResult ok = reader.Parse<kFlags>(in, *handler_);
    if (ok && at + in.Tell() >= end) {
      handler_->commit_line();
    } else if (handler_->too_deep()) {
      std::string why;
      too_deep(at + reader.GetErrorOffset(), why);
      handler_->malformed_line(std::move(why));
    } else {
      const size_t off = ok ? in.Tell() : reader.GetErrorOffset();
      handler_->malformed_line(
          "malformed JSON at byte " + std::to_string(at + off) + ": " +
          (ok ? "NUL byte in the line" : rapidjson::GetParseError_En(reader.GetParseErrorCode())));
    }
  }
}

std::string IngestParser::response_body() const {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("accepted");
  w.Uint(accepted_);
  w.Key("rejected");
  w.Uint(static_cast<unsigned>(rejections_.size()));
  w.Key("errors");
  w.StartArray();
  size_t next_line_error = 0;
  for (const Rejection &r : rejections_) {
    w.StartObject();
    w.Key("index");
    w.Uint(r.index);
    w.Key("reason");
    if (r.text) {
      w.String(r.text);
    } else {
      const std::string &t = line_errors_[next_line_error++];
      w.String(t.data(), static_cast<rapidjson::SizeType>(t.size()));
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

int IngestParser::decompress(Encoding e, std::string_view raw, size_t max_body,
                             std::string_view &out) {
  std::string why;
  int status;
  // Anything not starting with gzip's magic (a zlib stream sent as gzip, as some clients do)
  // goes through zlib, which takes both.
  if (e == Encoding::kGzip && raw.size() >= 2 && raw[0] == '\x1f' && raw[1] == '\x8b')
    status = bodies_.gunzip(raw, max_body, out, why);
  else if (e == Encoding::kZstd)
    status = bodies_.unzstd(raw, max_body, out, why);
  else
    status = inflate(raw, max_body, out);
  const char *name = e == Encoding::kZstd ? "zstd" : e == Encoding::kGzip ? "gzip" : "deflate";
  if (status == 413)
    error_ = "decompressed body larger than max_body (" + std::to_string(max_body) + " bytes)";
  else if (status)
    error_ = std::string("corrupt compressed body (Content-Encoding: ") + name + ")" +
             (why.empty() ? "" : ": " + why);
  return status;
}

int IngestParser::inflate(std::string_view raw, size_t max_body, std::string_view &out) {
  if (!z_ready_) {
    std::memset(&z_, 0, sizeof z_);
    if (inflateInit2(&z_, 15 + 32) != Z_OK) throw std::runtime_error("inflateInit2 failed");
    z_ready_ = true;
  } else {
    inflateReset(&z_);
  }
  scratch_.clear();
  z_.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(raw.data()));
  z_.avail_in = static_cast<uInt>(raw.size());
  for (;;) {
    const size_t have = scratch_.size();
    if (have > max_body) return 413;
    // Grow geometrically, never past max_body + 1 (one byte over proves "too large").
    const size_t want = std::min(max_body + 1, std::max<size_t>(have * 2, 64 << 10));
    scratch_.resize(want);
    z_.next_out = reinterpret_cast<Bytef *>(scratch_.data() + have);
    z_.avail_out = static_cast<uInt>(want - have);
    const int rc = ::inflate(&z_, Z_NO_FLUSH);
    scratch_.resize(want - z_.avail_out);
    if (rc == Z_STREAM_END) {
      if (z_.avail_in == 0) {
        if (scratch_.size() > max_body) return 413;
        out = scratch_;
        return 0;
      }
      inflateReset(&z_);  // gzip allows several members, one after another
      continue;
    }
    if (rc != Z_OK && rc != Z_BUF_ERROR) return 400;
    if (z_.avail_in == 0 && z_.avail_out != 0) return 400;  // the stream was cut short
  }
}

}  // namespace devmesh::http_ingest
