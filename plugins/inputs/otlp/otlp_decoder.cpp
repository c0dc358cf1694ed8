// The otlp input's body decoding (see otlp_decoder.hpp): libprotobuf parses the request (binary,
// or JSON through its JSON mapping), then each log record becomes a devmesh record.
#include "otlp_decoder.hpp"

#include <google/protobuf/arena.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/wire_format_lite.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <devmesh/plugin.hpp>
#include <devmesh/record_fields.hpp>
#include <event_id.hpp>
#include <record_columns.hpp>
#include <utf8.hpp>

#include <charconv>
#include <climits>
#include <cmath>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace devmesh::otlp {

namespace pb = google::protobuf;
using opentelemetry::proto::collector::logs::v1::ExportLogsServiceRequest;
using opentelemetry::proto::collector::logs::v1::ExportLogsServiceResponse;
using opentelemetry::proto::common::v1::AnyValue;
using opentelemetry::proto::common::v1::KeyValue;
using opentelemetry::proto::logs::v1::LogRecord;

const char *const kReasonLabels[kReasonCount] = {"bad_trace_id",     "bad_span_id",
                                                 "bad_timestamp",    "field_too_long",
                                                 "message_too_long", "meta_too_large"};

namespace {

constexpr size_t kMaxExamples = 5;  // rejections named in partial_success.error_message

thread_local std::string protobuf_note;

void note_protobuf_log(pb::LogLevel, const char *, int, const std::string &message) {
  if (protobuf_note.empty()) protobuf_note = message.substr(0, 300);
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v =
        uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (i + 1 < in.size()) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

bool is_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[uint8_t(bytes[i]) >> 4];
    out[2 * i + 1] = kDigits[uint8_t(bytes[i]) & 15];
  }
  return out;
}

// A trace or span id as lowercase hex; false when it is neither empty nor `size` bytes.
// The OTLP JSON mapping writes ids in hex where protobuf's JSON mapping has base64: libprotobuf
// read the hex digits as base64 (every hex digit is a base64 digit), and since 4 digits are 3
// bytes exactly, encoding the bytes back to base64 gives the digits as sent.
bool id_text(const std::string &raw, size_t size, Format format, std::string &out) {
  if (raw.empty()) return out.clear(), true;
  if (format == Format::kProtobuf) {
    if (raw.size() != size) return false;
    out = to_hex(raw);
    return true;
  }
  out = base64(raw);
  if (out.size() != 2 * size || !is_hex(out)) return false;
  for (char &c : out) c = static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  return true;
}

// The level of an OTLP severity number (1-4 TRACE, 5-8 DEBUG, 9-12 INFO, 13-16 WARN, 17-20
// ERROR, 21-24 FATAL); DM_LEVEL_UNSET outside 1..24.
uint8_t level_of_severity(int n) {
  if (n < 1 || n > 24) return DM_LEVEL_UNSET;
  static constexpr uint8_t kLevels[6] = {DM_LEVEL_DEBUG, DM_LEVEL_DEBUG, DM_LEVEL_INFO,
                                         DM_LEVEL_WARN,  DM_LEVEL_ERROR, DM_LEVEL_FATAL};
  return kLevels[(n - 1) / 4];
}

std::string double_text(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, r.ptr);
}

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Nesting is bounded by libprotobuf's parse (100 levels, binary and JSON alike), so this
// recursion is too.
void write_json(JsonWriter &w, const AnyValue &v, std::string &scratch) {
  auto string = [&](std::string_view s) {
    const std::string_view clean = valid_utf8(s, scratch);
    w.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
  };
  switch (v.value_case()) {
    case AnyValue::kStringValue:
      return string(v.string_value());
    case AnyValue::kBoolValue:
      w.Bool(v.bool_value());
      return;
    case AnyValue::kIntValue:
      w.Int64(v.int_value());
      return;
    case AnyValue::kDoubleValue:
      if (std::isfinite(v.double_value())) {
        const std::string t = double_text(v.double_value());
        w.RawValue(t.data(), t.size(), rapidjson::kNumberType);
      } else {
        string(double_text(v.double_value()));
      }
      return;
    case AnyValue::kBytesValue:
      return string(base64(v.bytes_value()));
    case AnyValue::kArrayValue:
      w.StartArray();
      for (const AnyValue &x : v.array_value().values()) write_json(w, x, scratch);
      w.EndArray();
      return;
    case AnyValue::kKvlistValue:
      w.StartObject();
      for (const KeyValue &kv : v.kvlist_value().values()) {
        const std::string_view k = valid_utf8(kv.key(), scratch);
        w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
        write_json(w, kv.value(), scratch);
      }
      w.EndObject();
      return;
    default:
      w.Null();
      return;
  }
}

// A value as meta: its text and type.
struct Typed {
  std::string text;
  uint32_t type;
};

Typed typed(const AnyValue &v) {
  switch (v.value_case()) {
    case AnyValue::kStringValue:
      return {v.string_value(), DM_META_STRING};
    case AnyValue::kBoolValue:
      return {v.bool_value() ? "true" : "false", DM_META_BOOL};
    case AnyValue::kIntValue:
      return {std::to_string(v.int_value()), DM_META_INT};
    case AnyValue::kDoubleValue:
      return {double_text(v.double_value()),
              std::isfinite(v.double_value()) ? uint32_t(DM_META_FLOAT) : uint32_t(DM_META_STRING)};
    case AnyValue::kBytesValue:
      return {base64(v.bytes_value()), DM_META_STRING};
    case AnyValue::kArrayValue:
    case AnyValue::kKvlistValue: {
      rapidjson::StringBuffer sb;
      JsonWriter w(sb);
      std::string scratch;
      write_json(w, v, scratch);
      return {std::string(sb.GetString(), sb.GetSize()), DM_META_JSON};
    }
    default:
      return {"null", DM_META_NULL};
  }
}

// A body as the record's message: a string as it is, anything else as its text (JSON for
// arrays and key-value lists), an empty body as "".
std::string message_text(const AnyValue &v) {
  if (v.value_case() == AnyValue::VALUE_NOT_SET) return {};
  Typed t = typed(v);
  return std::move(t.text);
}

// A string's length in characters as the outputs store it (invalid UTF-8 as U+FFFD).
size_t chars(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

struct Entry {
  std::string key;
  Typed value;
};

void add_attributes(std::vector<Entry> &out, const char *prefix,
                    const pb::RepeatedPtrField<KeyValue> &attrs, std::string_view skip1 = {},
                    std::string_view skip2 = {}) {
  for (const KeyValue &kv : attrs) {
    if (!skip1.empty() && (kv.key() == skip1 || kv.key() == skip2)) continue;
    out.push_back(Entry{prefix + kv.key(), typed(kv.value())});
  }
}

// ---- counting log records before the parse ------------------------------------------------------
// A parsed LogRecord takes about 100 bytes however small its encoding (2 bytes in protobuf, 3 in
// JSON): max_records is checked before libprotobuf builds them, so a body of empty records
// costs a scan, not gigabytes.

// ExportLogsServiceRequest.resource_logs (1) > ResourceLogs.scope_logs (2) > ScopeLogs.log_records
// (2), each length-delimited. False once more than max are seen; a malformed body counts what it
// holds until then (the parse names the problem).
bool proto_count_within(std::string_view b, int level, uint64_t &count, uint64_t max) {
  pb::io::CodedInputStream in(reinterpret_cast<const uint8_t *>(b.data()),
                              static_cast<int>(b.size()));
  for (;;) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return true;
    const uint32_t field = tag >> 3;
    if ((tag & 7) == 2 && field == (level == 0 ? 1u : 2u)) {
      uint32_t len;
      if (!in.ReadVarint32(&len)) return true;
      if (level == 2) {
        if (++count > max) return false;
      } else {
        const int at = in.CurrentPosition();
        if (len > b.size() - static_cast<size_t>(at)) return true;
        if (!proto_count_within(b.substr(static_cast<size_t>(at), len), level + 1, count, max))
          return false;
      }
      if (!in.Skip(static_cast<int>(len))) return true;
    } else if (!pb::internal::WireFormatLite::SkipField(&in, tag)) {
      return true;
    }
  }
}

// The same over JSON with rapidjson's iterative (non-recursive) SAX reader: an object directly
// in an array that is the value of "logRecords" (or "log_records") is a record.
struct JsonRecordCounter : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, JsonRecordCounter> {
  uint64_t count = 0, max = 0;
  std::vector<uint8_t> records_array;  // per open container: an array of log records?
  bool next_is_records = false;
  bool Key(const char *s, rapidjson::SizeType n, bool) {
    const std::string_view k(s, n);
    next_is_records = k == "logRecords" || k == "log_records";
    return true;
  }
  bool StartArray() {
    records_array.push_back(next_is_records);
    next_is_records = false;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    if (!records_array.empty()) records_array.pop_back();
    return true;
  }
  bool StartObject() {
    if (!records_array.empty() && records_array.back()) ++count;
    records_array.push_back(0);
    next_is_records = false;
    return count <= max;
  }
  bool EndObject(rapidjson::SizeType) { return EndArray(0); }
  bool Default() {
    next_is_records = false;
    return true;
  }
};

bool json_count_within(std::string_view b, uint64_t &count, uint64_t max) {
  JsonRecordCounter counter;
  counter.max = max;
  rapidjson::MemoryStream ms(b.data(), b.size());
  rapidjson::Reader reader;
  reader.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseNumbersAsStringsFlag>(ms, counter);
  count = counter.count;
  return counter.count <= max;
}

}  // namespace

// Builds the records of one request; one per decode().
class RecordBuilder {
 public:
  RecordBuilder(LogsDecoder &d, dm_batch *batch, Format format, int64_t arrival_ns)
      : d_(d), host_(d.host_), batch_(batch), format_(format), arrival_ns_(arrival_ns) {}

  int run(const ExportLogsServiceRequest &req) {
    const auto &resources = req.resource_logs();
    for (int ri = 0; ri < resources.size(); ++ri) {
      const auto &rl = resources[ri];
      std::string service, host;
      for (const KeyValue &kv : rl.resource().attributes()) {
        if (kv.key() == "service.name") service = message_text(kv.value());
        if (kv.key() == "host.name") host = message_text(kv.value());
      }
      std::vector<Entry> resource;
      add_attributes(resource, "resource.", rl.resource().attributes(), "service.name",
                     "host.name");
      if (rl.resource().dropped_attributes_count())
        resource.push_back(
            Entry{"otel.resource.dropped_attributes_count",
                  {std::to_string(rl.resource().dropped_attributes_count()), DM_META_INT}});
      const auto &scopes = rl.scope_logs();
      for (int si = 0; si < scopes.size(); ++si) {
        const auto &sl = scopes[si];
        std::vector<Entry> scope = resource;
        add_attributes(scope, "scope.", sl.scope().attributes());
        if (!sl.scope().name().empty())
          scope.push_back(Entry{"otel.scope.name", {sl.scope().name(), DM_META_STRING}});
        if (!sl.scope().version().empty())
          scope.push_back(Entry{"otel.scope.version", {sl.scope().version(), DM_META_STRING}});
        size_t scope_bytes = 0;
        for (const Entry &e : scope) scope_bytes += e.key.size() + e.value.text.size();
        const auto &logs = sl.log_records();
        for (int li = 0; li < logs.size(); ++li) {
          if (!record(logs[li], scope, scope_bytes, service, host)) {
            d_.where_ = "resource_logs[" + std::to_string(ri) + "].scope_logs[" +
                        std::to_string(si) + "].log_records[" + std::to_string(li) + "]";
            d_.reject(reason_, why_.c_str());
          }
          if (output_ > d_.limits_.max_output) {
            d_.error_ = "the records of this request would take more than " +
                        std::to_string(d_.limits_.max_output >> 20) +
                        " MiB (4 x max_body): its resource and scope attributes are repeated on "
                        "every log record; send fewer records per request";
            return 413;
          }
        }
      }
    }
    return 0;
  }

 private:
  bool fail(Reason r, std::string why) {
    reason_ = r;
    why_ = std::move(why);
    return false;
  }

  void meta(dm_record &rec, std::string_view key, std::string_view value, uint32_t type) {
    if (host_->meta_set(batch_, &rec, str(key), str(value), type) != DM_OK)
      throw std::runtime_error("meta_set failed for " + std::string(key));
  }

  bool record(const LogRecord &lr, const std::vector<Entry> &scope, size_t scope_bytes,
              const std::string &service, const std::string &host) {
    dm_record rec;
    std::memset(&rec, 0, sizeof rec);
    rec.priority = -1;
    output_ += sizeof(dm_record);
    if (chars(service) > 255) return fail(kFieldTooLong, "service.name longer than 255 characters");
    if (chars(host) > 255) return fail(kFieldTooLong, "host.name longer than 255 characters");
    if (chars(lr.event_name()) > 100)
      return fail(kFieldTooLong, "event_name longer than 100 characters");
    const char *id_form = format_ == Format::kJson ? "32 hex digits" : "16 bytes";
    if (!id_text(lr.trace_id(), 16, format_, trace_))
      return fail(kBadTraceId, std::string("trace_id is not ") + id_form);
    if (!id_text(lr.span_id(), 8, format_, span_))
      return fail(kBadSpanId, std::string("span_id is not ") +
                                  (format_ == Format::kJson ? "16 hex digits" : "8 bytes"));
    const char *time_source = nullptr;
    uint64_t t = lr.time_unix_nano();
    if (!t && lr.observed_time_unix_nano())
      t = lr.observed_time_unix_nano(), time_source = "observed";
    if (t > uint64_t(INT64_MAX)) return fail(kBadTimestamp, "time_unix_nano is past the year 2262");
    rec.timestamp_ns = t ? static_cast<int64_t>(t) : arrival_ns_;
    if (!t) time_source = "arrival";

    message_ = message_text(lr.body());
    if (valid_utf8(message_, scratch_).size() > d_.limits_.max_message)
      return fail(kMessageTooLong, "body longer than max_message (" +
                                       std::to_string(d_.limits_.max_message) + " bytes)");

    // The level: severity_number, else severity_text, else INFO. What the level does not say
    // (TRACE against DEBUG, INFO3, a text of the application's own) is kept in meta.
    const int number = static_cast<int>(lr.severity_number());
    rec.level = level_of_severity(number);
    if (rec.level == DM_LEVEL_UNSET) rec.level = level_from_text(lr.severity_text());
    if (rec.level == DM_LEVEL_UNSET) rec.level = DM_LEVEL_INFO;

    // What was copied counts towards max_output whether the record is kept or not, so a
    // request of many records that each fail max_meta_bytes late is still bounded.
    size_t meta_bytes = 0, copied = 0;
    auto add = [&](std::string_view k, std::string_view v, uint32_t type) {
      meta_bytes += k.size() + v.size();
      if (meta_bytes > d_.limits_.max_meta_bytes) return;
      meta(rec, k, v, type);
      copied = meta_bytes;
    };
    struct Count {
      size_t &output, &copied;
      const dm_record &rec;
      ~Count() { output += copied + rec.meta_count * sizeof(dm_kv); }
    } count{output_, copied, rec};
    // Resource and scope attributes alone past the limit: every record of the scope is
    // rejected without copying them again.
    if (scope_bytes > d_.limits_.max_meta_bytes)
      return fail(kMetaTooLarge, "resource and scope attributes larger than max_meta_bytes (" +
                                     std::to_string(d_.limits_.max_meta_bytes) + " bytes)");
    for (const Entry &e : scope) add(e.key, e.value.text, e.value.type);
    for (const KeyValue &kv : lr.attributes()) {
      const Typed v = typed(kv.value());
      key_.assign("attributes.").append(kv.key());
      add(key_, v.text, v.type);
    }
    if (!lr.severity_text().empty() && level_from_text(lr.severity_text()) != rec.level)
      add("otel.severity_text", lr.severity_text(), DM_META_STRING);
    if (number != 0 && (number > 24 || (number - 1) % 4 != 0 || number == 1))
      add("otel.severity_number", std::to_string(number), DM_META_INT);
    if (lr.flags()) add("otel.flags", std::to_string(lr.flags()), DM_META_INT);
    if (lr.dropped_attributes_count())
      add("otel.dropped_attributes_count", std::to_string(lr.dropped_attributes_count()),
          DM_META_INT);
    if (time_source) add("otel.timestamp_source", time_source, DM_META_STRING);
    if (meta_bytes > d_.limits_.max_meta_bytes)
      return fail(kMetaTooLarge, "attributes larger than max_meta_bytes (" +
                                     std::to_string(d_.limits_.max_meta_bytes) + " bytes)");

    static constexpr std::string_view kSource = "otlp", kUnknown = "unknown";
    rec.source = str(kSource);
    rec.service = service.empty() ? str(kUnknown) : copy(service);
    rec.host = host.empty() ? str(kUnknown) : copy(host);
    rec.trace_id = copy(trace_);
    rec.span_id = copy(span_);
    rec.event_type = copy(lr.event_name());
    rec.message = copy(message_);
    derive_event_id(host_->hash128, rec, id_);
    dm_record *slot = host_->batch_add(batch_);
    if (!slot) throw std::runtime_error("batch_add failed");
    *slot = rec;
    ++d_.accepted_;
    return true;
  }

  dm_str copy(std::string_view s) {
    if (s.empty()) return dm_str{nullptr, 0};
    output_ += s.size();
    return host_->arena_copy(batch_, s.data(), s.size());
  }

  LogsDecoder &d_;
  const dm_host_api *host_;
  dm_batch *batch_;
  const Format format_;
  const int64_t arrival_ns_;
  size_t output_ = 0;
  Reason reason_ = kBadTraceId;
  std::string why_, trace_, span_, message_, key_, scratch_, id_;
};

LogsDecoder::LogsDecoder(const dm_host_api *host, const Limits &limits)
    : host_(host), limits_(limits) {}

int LogsDecoder::too_many_records() {
  error_ = "the request holds more log records than max_records (" +
           std::to_string(limits_.max_records) + "): send fewer per request";
  return 413;
}

void LogsDecoder::reject(Reason r, const char *why) {
  ++rejected_;
  ++by_reason_[r];
  if (examples_.size() < kMaxExamples) examples_.push_back(where_ + ": " + why);
}

int LogsDecoder::decode(dm_batch *batch, std::string_view body, Format format, int64_t arrival_ns) {
  accepted_ = rejected_ = 0;
  std::memset(by_reason_, 0, sizeof by_reason_);
  examples_.clear();
  error_.clear();
  if (body.size() > INT_MAX) {
    error_ = "body larger than 2 GiB";
    return 413;
  }
  uint64_t count = 0;
  if (format == Format::kProtobuf ? !proto_count_within(body, 0, count, limits_.max_records)
                                  : !json_count_within(body, count, limits_.max_records))
    return too_many_records();
  pb::Arena arena;
  auto *req = pb::Arena::CreateMessage<ExportLogsServiceRequest>(&arena);
  if (format == Format::kProtobuf) {
    protobuf_note.clear();
    if (!req->ParseFromArray(body.data(), static_cast<int>(body.size()))) {
      error_ =
          "the body is not a valid protobuf ExportLogsServiceRequest (malformed, nested deeper "
          "than 100 levels, or a string field that is not UTF-8)";
      if (!protobuf_note.empty()) error_ += ": " + protobuf_note;
      return 400;
    }
  } else {
    pb::util::JsonParseOptions options;
    options.ignore_unknown_fields = true;  // as the OTLP specification asks of receivers
    const auto status =
        pb::util::JsonStringToMessage(pb::StringPiece(body.data(), body.size()), req, options);
    if (!status.ok()) {
      error_ = "the body is not a valid OTLP JSON ExportLogsServiceRequest: " +
               std::string(status.message().data(), status.message().size()).substr(0, 500);
      return 400;
    }
  }
  count = 0;
  for (const auto &rl : req->resource_logs())
    for (const auto &sl : rl.scope_logs()) count += static_cast<uint64_t>(sl.log_records_size());
  if (count > limits_.max_records) return too_many_records();
  RecordBuilder builder(*this, batch, format, arrival_ns);
  return builder.run(*req);
}

std::string LogsDecoder::response(Format format) const {
  ExportLogsServiceResponse resp;
  if (rejected_) {
    auto *partial = resp.mutable_partial_success();
    partial->set_rejected_log_records(rejected_);
    std::string text = std::to_string(rejected_) + " of " + std::to_string(rejected_ + accepted_) +
                       " log records rejected: ";
    for (size_t i = 0; i < examples_.size(); ++i) text += (i ? "; " : "") + examples_[i];
    if (rejected_ > examples_.size()) text += "; ...";
    partial->set_error_message(text);
  }
  std::string out;
  if (format == Format::kProtobuf) {
    resp.SerializeToString(&out);
  } else {
    pb::util::MessageToJsonString(resp, &out);
  }
  return out;
}

bool format_of(std::string_view type, Format &format) {
  type = type.substr(0, type.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  if (detail::iequals(type, "application/x-protobuf")) return format = Format::kProtobuf, true;
  if (detail::iequals(type, "application/json")) return format = Format::kJson, true;
  return false;
}

std::string status_body(Format format, int grpc_code, std::string_view message) {
  if (format == Format::kJson) {
    rapidjson::StringBuffer sb;
    JsonWriter w(sb);
    std::string scratch;
    const std::string_view m = valid_utf8(message, scratch);
    w.StartObject();
    w.Key("code");
    w.Int(grpc_code);
    w.Key("message");
    w.String(m.data(), static_cast<rapidjson::SizeType>(m.size()));
    w.EndObject();
    return std::string(sb.GetString(), sb.GetSize());
  }
  // google.rpc.Status { int32 code = 1; string message = 2; }, written by hand: two fields do
  // not need status.proto vendored.
  std::string scratch;
  message = valid_utf8(message, scratch);
  std::string out;
  auto varint = [&](uint64_t v) {
    while (v >= 0x80) out += static_cast<char>(v | 0x80), v >>= 7;
    out += static_cast<char>(v);
  };
  out += '\x08';
  varint(static_cast<uint64_t>(grpc_code));
  out += '\x12';
  varint(message.size());
  out.append(message);
  return out;
}

void capture_protobuf_log() {
  static std::once_flag once;
  std::call_once(once, [] { pb::SetLogHandler(note_protobuf_log); });
}

}  // namespace devmesh::otlp
