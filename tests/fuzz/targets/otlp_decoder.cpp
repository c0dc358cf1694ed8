// Fuzz target: the otlp input's body decoder (plugins/inputs/otlp/otlp_decoder.*) over the
// engine's real batches and host table, protobuf and JSON. Byte 0 picks the mode (bit 0: JSON;
// bit 1: small limits, so the rejection and 413 paths are reached), the rest is the body.
// Beyond "no crash" it checks: the status is 0, 400 or 413, a failure says why, accepted equals
// the records in the batch, every accepted record is complete (source, service, host, a level,
// ids as lowercase hex of their size), and the answer decodes and counts the rejections.
#include <google/protobuf/util/json_util.h>
#include <opentelemetry/proto/collector/logs/v1/logs_service.pb.h>
#include <rapidjson/document.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <devmesh/plugin.hpp>
#include "batch.h"
#include "engine.h"

#include "otlp_decoder.hpp"

namespace {

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz otlp_decoder: invariant broken: %s\n", what);
  std::abort();
}

bool lower_hex(std::string_view s, size_t digits) {
  if (s.empty()) return true;
  if (s.size() != digits) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

struct BatchRef {
  devmesh::Batch *b = devmesh::batch_new(16);
  ~BatchRef() { devmesh::batch_unref(b); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  devmesh::otlp::capture_protobuf_log();
  const uint8_t mode = data[0];
  const std::string_view body(reinterpret_cast<const char *>(data + 1), size - 1);
  const auto format = mode & 1 ? devmesh::otlp::Format::kJson : devmesh::otlp::Format::kProtobuf;
  devmesh::otlp::Limits limits;
  if (mode & 2) {
    limits.max_message = 16;
    limits.max_meta_bytes = 64;
    limits.max_records = 4;
    limits.max_output = 4096;
  }
  devmesh::otlp::LogsDecoder decoder(devmesh::Engine::host_api(), limits);
  BatchRef batch;
  const int status = decoder.decode(&batch.b->pub, body, format, 1700000000000000000LL);
  check(status == 0 || status == 400 || status == 413, "status is 0, 400 or 413");
  if (status) {
    check(!decoder.error().empty(), "a failed decode says why");
    return 0;
  }
  const dm_batch &pub = batch.b->pub;
  check(pub.count == decoder.accepted(), "accepted == records in the batch");
  for (uint32_t i = 0; i < pub.count; ++i) {
    const dm_record &r = pub.records[i];
    check(r.source.len && r.service.len && r.host.len, "source, service and host set");
    check(r.level >= DM_LEVEL_DEBUG && r.level <= DM_LEVEL_FATAL, "level in range");
    check(lower_hex(devmesh::sv(r.trace_id), 32), "trace_id is 32 lowercase hex digits");
    check(lower_hex(devmesh::sv(r.span_id), 16), "span_id is 16 lowercase hex digits");
    check(r.message.len <= limits.max_message * 3, "message within max_message");
  }
  const std::string answer = decoder.response(format);
  opentelemetry::proto::collector::logs::v1::ExportLogsServiceResponse resp;
  if (format == devmesh::otlp::Format::kProtobuf) {
    check(resp.ParseFromString(answer), "the protobuf answer decodes");
  } else {
    rapidjson::Document d;
    d.Parse(answer.data(), answer.size());
    check(!d.HasParseError() && d.IsObject(), "the JSON answer parses");
    check(google::protobuf::util::JsonStringToMessage(answer, &resp).ok(),
          "the JSON answer is an ExportLogsServiceResponse");
  }
  check(resp.partial_success().rejected_log_records() == decoder.rejected(),
        "the answer counts the rejected records");
  return 0;
}
