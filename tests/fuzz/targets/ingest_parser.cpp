// Fuzz target: the http input's body parser (plugins/inputs/http/ingest_parser.*) over the
// engine's real batches and host table: JSON, NDJSON, and gzip under a small decompressed cap.
// Byte 0 picks the mode, the rest is the body.
#include <rapidjson/document.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "batch.h"
#include "engine.h"
#include "ingest_parser.hpp"
#include "record_json.h"

namespace {

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz ingest_parser: invariant broken: %s\n", what);
  std::abort();
}

// gzip of `in` (so the fuzzer's bytes reach the parser through inflate and its cap).
std::string gzip(std::string_view in, int level) {
  z_stream z{};
  check(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK,
        "deflateInit2");
  std::string out(deflateBound(&z, in.size()), '\0');
  z.next_in = reinterpret_cast<Bytef *>(const_cast<char *>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef *>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  check(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

struct BatchRef {
  devmesh::Batch *b = devmesh::batch_new(nullptr, 16);
  ~BatchRef() { devmesh::batch_unref(b); }
};

}  // namespace

// Mode byte: bit 0 NDJSON; bits 1-2: 0 plain, 1 the bytes inflated as they are (corrupt
// streams), 2 gzip-compressed then inflated, 3 the same with the cap 64 * (bits 3-7) + 16
// bytes (413 paths).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  const uint8_t mode = data[0];
  std::string_view body(reinterpret_cast<const char *>(data + 1), size - 1);
  const dm_host_api *host = devmesh::Engine::host_api();
  devmesh::http_ingest::IngestParser parser(host);
  BatchRef batch;

  std::string packed;
  const unsigned how = (mode >> 1) & 3;
  if (how != 0) {
    size_t cap = 16u << 20;
    if (how == 3) cap = 64u * (mode >> 3) + 16;
    std::string_view raw = body;
    if (how >= 2) raw = packed = gzip(body, mode & 8 ? 1 : 6);
    std::string_view out;
    const int status = parser.inflate(raw, cap, out);
    check(status == 0 || status == 400 || status == 413, "inflate status");
    if (status) return 0;
    check(out.size() <= cap, "inflated past the cap");
    if (how >= 2) check(out == body, "inflate(gzip(x)) != x");
    body = out;
  }

  const bool ndjson = mode & 1;
  const bool ok = parser.parse(&batch.b->pub, body, ndjson, 1700000000000000000LL);
  if (!ok) {
    check(!ndjson, "NDJSON never fails as a whole");
    check(!parser.error().empty(), "a failed parse says why");
    return 0;
  }
  const dm_batch &pub = batch.b->pub;
  check(pub.count == parser.accepted(), "accepted == records in the batch");

  // Every accepted record is complete, and renders as JSON the way outputs render it.
  std::string json;
  for (uint32_t i = 0; i < pub.count; ++i) {
    const dm_record &r = pub.records[i];
    check(r.message.ptr != nullptr, "accepted record without message");
    check(r.level >= DM_LEVEL_DEBUG && r.level <= DM_LEVEL_FATAL, "level in range");
    check(r.priority >= -1 && r.priority <= 7, "priority in range");
    check(r.source.len && r.service.len && r.host.len, "defaults applied");
    json.clear();
    devmesh::append_record_json(json, r);
    rapidjson::Document d;
    d.Parse(json.data(), json.size());
    check(!d.HasParseError() && d.IsObject(), "record JSON parses");
  }
  uint32_t last = 0;
  bool first = true;
  for (const auto &rej : parser.rejections()) {
    check(rej.reason < devmesh::http_ingest::kReasonCount, "reason in range");
    check(first || rej.index > last, "rejection indexes increase");
    last = rej.index;
    first = false;
  }
  const std::string answer = parser.response_body();
  rapidjson::Document d;
  d.Parse(answer.data(), answer.size());
  check(!d.HasParseError() && d.IsObject() && d.HasMember("errors"), "answer is JSON");
  check(d["accepted"].GetUint() == parser.accepted(), "answer counts the accepted records");
  check(d["errors"].Size() == parser.rejections().size(), "answer lists every rejection");
  return 0;
}
