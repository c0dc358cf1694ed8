// The otlp input's body decoding: an OTLP ExportLogsServiceRequest (protobuf or the OTLP JSON
// mapping) into records of a batch, each record either accepted or rejected with a reason, and
// the ExportLogsServiceResponse (partial_success) or google.rpc.Status answer in the request's
// encoding. No HTTP in here: the plugin and the fuzz target call the same code.
//
// Meta keys, in four namespaces that cannot collide (every key is in exactly one):
//   resource.<key>    a resource attribute (service.name and host.name are the service and host
//                     columns instead)
//   scope.<key>       an instrumentation scope attribute
//   attributes.<key>  a log record attribute
//   otel.<field>      a field of the envelope: otel.scope.name, otel.scope.version,
//                     otel.severity_text and otel.severity_number (when the level does not say
//                     all they say), otel.flags, otel.dropped_attributes_count,
//                     otel.timestamp_source (observed or arrival, when time_unix_nano is 0)
// Values are typed: string, int, double (non-finite ones as the strings "NaN", "Infinity",
// "-Infinity", as in the OTLP JSON mapping), bool, an empty value as null, bytes as a base64
// string, arrays and key-value lists as JSON.
#pragma once

#include <devmesh/plugin.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::otlp {

enum class Format : uint8_t { kProtobuf, kJson };

// Why a record was rejected, each also a metric label (kReasonLabels).
enum Reason : uint8_t {
  kBadTraceId,
  kBadSpanId,
  kBadTimestamp,
  kFieldTooLong,
  kMessageTooLong,
  kMetaTooLarge,
  kReasonCount,
};
extern const char *const kReasonLabels[kReasonCount];

struct Limits {
  size_t max_message = size_t(1) << 20;     // bytes of the body as stored
  size_t max_meta_bytes = size_t(1) << 20;  // keys plus values of one record
  uint32_t max_records = 100000;            // log records in one request
  // Bytes all the records of one request may take (records, strings, meta): resource and scope
  // attributes are repeated on each of their records, so a small body could otherwise expand
  // without bound.
  size_t max_output = size_t(64) << 20;
};

// One per input instance (it keeps its buffers between bodies). Not thread-safe.
class LogsDecoder {
 public:
  // Uses host's batch_add, arena_copy, meta_set and hash128.
  LogsDecoder(const dm_host_api *host, const Limits &limits);

  // Adds every accepted record of body to batch. 0, or 400 (malformed: nothing may be
  // submitted) or 413 (too many records, or records too large) with error() saying why.
  // Records without a time get observed_time_unix_nano, else arrival_ns. Throws
  // std::runtime_error when a host call fails.
  int decode(dm_batch *batch, std::string_view body, Format format, int64_t arrival_ns);

  const std::string &error() const { return error_; }
  uint32_t accepted() const { return accepted_; }
  uint32_t rejected() const { return rejected_; }
  uint32_t rejected(Reason r) const { return by_reason_[r]; }
  // The ExportLogsServiceResponse for the last decode: partial_success when records were
  // rejected (their count, and the first reasons with each record's place in the request).
  std::string response(Format format) const;

 private:
  void reject(Reason r, const char *field_text);
  int too_many_records();

  const dm_host_api *host_;
  const Limits limits_;
  uint32_t accepted_ = 0, rejected_ = 0;
  uint32_t by_reason_[kReasonCount] = {};
  std::vector<std::string> examples_;  // the first rejections, with their place
  std::string where_;                  // the current record's place in the request
  std::string error_;
  friend class RecordBuilder;
};

// The Content-Type's format; false for anything but application/x-protobuf and
// application/json (parameters after ';' ignored).
bool format_of(std::string_view content_type, Format &format);

// A google.rpc.Status (code, message) in the given encoding: the body of an OTLP error answer.
std::string status_body(Format format, int grpc_code, std::string_view message);

// libprotobuf writes its parse complaints (invalid UTF-8 in a string field) to stderr through a
// process-wide handler: this routes them to a per-thread note instead, which decode() adds to
// its 400 message, so a hostile client cannot fill the engine's log. Idempotent.
void capture_protobuf_log();

}  // namespace devmesh::otlp
