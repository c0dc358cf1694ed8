// The http input's body parsing: {"logs":[...]} or NDJSON (optionally gzip/deflate, inflated
// under a cap) into validated records of a batch, plus the per-record answer. No HTTP in here:
// the plugin and the fuzz targets (tests/fuzz) call the same code.
#pragma once

#include <devmesh/plugin.h>
#include <zlib.h>
#include <body_codec.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh::http_ingest {

// Rejection reasons, each also a metric label (kReasonLabels).
enum Reason : uint8_t {
  kMissingMessage,
  kBadTimestamp,
  kUnknownLevel,
  kFieldTooLong,
  kBadField,
  kNotAnObject,
  kMalformedLine,
  kMetaTooLarge,
  kReasonCount,
};
extern const char *const kReasonLabels[kReasonCount];

struct Rejection {
  uint32_t index;
  Reason reason;
  const char *text;  // a static text, or null: the next of the parser's line errors
};

// Case-insensitive ASCII comparison (header values, level names).
bool ieq(std::string_view a, std::string_view b);
// Content-Type naming NDJSON / JSON lines (parameters after ';' ignored).
bool is_ndjson(std::string_view content_type);

enum class MediaType : uint8_t { kJson, kNdjson, kUnsupported };
// Content-Type: absent, application/json or application/*+json; the NDJSON types; else
// unsupported (text/plain, XML, forms, multipart: not parsed as JSON on a guess).
MediaType media_type(std::string_view content_type);
// The 415 message for an unsupported Content-Type: names it and what is accepted.
std::string unsupported_media_type(std::string_view content_type);

enum class Encoding : uint8_t { kIdentity, kGzip, kDeflate, kZstd, kUnsupported };
// Content-Encoding: absent or identity, gzip / x-gzip, deflate, zstd, anything else.
Encoding body_encoding(std::string_view content_encoding);
// The 415 message for an unsupported Content-Encoding: names it and what is accepted.
std::string unsupported_encoding(std::string_view content_encoding);

class RecordHandler;

// Nesting deeper than this fails the body (JSON) or the line (NDJSON): rapidjson's reader
// recurses once per level, so this bounds its stack. A record needs 4 ({"logs":[{"meta_json":
// {...}}]}): the rest is room for nested meta values.
constexpr uint32_t kMaxDepth = 64;

// Per-record bounds: the work and memory one record may cost the loop and the stores.
struct Limits {
  uint32_t max_meta_keys = 1024;
  size_t max_meta_bytes = size_t(1) << 20;  // keys plus values
  size_t max_message = size_t(1) << 20;     // bytes
};

// One per input instance (it keeps its buffers between bodies). Not thread-safe.
class IngestParser {
 public:
  // Uses host's batch_add, arena_alloc, arena_copy, meta_set and hash128.
  explicit IngestParser(const dm_host_api *host, const Limits &limits = Limits{});
  ~IngestParser();
  IngestParser(const IngestParser &) = delete;
  IngestParser &operator=(const IngestParser &) = delete;

  // Decompresses a gzip, deflate (zlib) or zstd body, stopping once it exceeds max_body: a small
  // body that expands without bound (a bomb) costs at most max_body of memory. Returns 0 (out
  // views the bytes until the next call or parse), 413, or 400 with error() saying what is wrong.
  int decompress(Encoding e, std::string_view raw, size_t max_body, std::string_view &out);

  // Copies body into batch's arena, parses it there in place and adds every valid record to
  // batch. False when the body as a whole is malformed (a JSON document that does not parse or
  // has the wrong shape): error() is the 400 message, and no record must be submitted. In
  // NDJSON a malformed line only rejects its record. Throws std::runtime_error when a host
  // call fails.
  bool parse(dm_batch *batch, std::string_view body, bool ndjson, int64_t arrival_ns);

  const std::string &error() const { return error_; }
  const Limits &limits() const { return limits_; }
  uint32_t accepted() const { return accepted_; }
  const std::vector<Rejection> &rejections() const { return rejections_; }
  // {"accepted":N,"rejected":M,"errors":[{"index":i,"reason":"..."}]} for the last parse.
  std::string response_body() const;

 private:
  friend class RecordHandler;
  void accept_record(dm_batch *b, const dm_record &r);
  void reject_record(uint32_t index, Reason r, const char *why) {
    rejections_.push_back(Rejection{index, r, why});
  }
  void line_error(std::string why) { line_errors_.push_back(std::move(why)); }
  bool parse_document(char *text, size_t len);
  void parse_lines(char *text, size_t len);
  void bad_json(size_t offset, const char *what);

  void too_deep(size_t offset, std::string &out) const;

  const dm_host_api *host_;
  const Limits limits_;
  // The rejection texts that name a limit (Rejection::text points into them).
  std::string too_many_keys_, meta_too_large_, message_too_long_;
  std::unique_ptr<RecordHandler> handler_;
  uint32_t accepted_ = 0;
  std::vector<Rejection> rejections_;
  std::vector<std::string> line_errors_;
  std::string error_;
  std::string scratch_, id_scratch_;
  int inflate(std::string_view raw, size_t max_body, std::string_view &out);
  z_stream z_;
  bool z_ready_ = false;
  BodyDecompressor bodies_;
};

}  // namespace devmesh::http_ingest
