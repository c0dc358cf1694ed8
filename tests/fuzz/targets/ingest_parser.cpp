// Fuzz target: the http input's body parser (plugins/inputs/http/ingest_parser.*) over the
// engine's real batches and host table: JSON, NDJSON, and gzip and deflate under
// a small decompressed cap.
// Byte 0 picks the mode, the rest is the body. Beyond "no crash" it checks: any nesting depth is
// refused without recursing (the regressions hold 100k levels and a gzip of 8M), the work done
// is bounded per input byte (meta_set's key comparisons and calls, counted: no clock), and the
// answer's accepted count equals the records in the batch. Each line of the input, read as a
// timestamp, gets from the input's minute cache what parse_rfc3339 gives it. The record encoder of
// the outputs (record_json.hpp) writes each accepted record byte for byte as rapidjson's Writer
// does.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <time.h>
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "batch.h"
#include "engine.h"
#include "ingest_parser.hpp"
#include "record_json.h"
#include "record_json.hpp"
#include "timestamp_cache.hpp"

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

// The host table with meta_set counted.
uint64_t meta_set_calls = 0;
int counted_meta_set(dm_batch *b, dm_record *rec, dm_str key, dm_str value, uint32_t type) {
  ++meta_set_calls;
  return devmesh::Engine::host_api()->meta_set(b, rec, key, value, type);
}
const dm_host_api *counting_host() {
  static const dm_host_api table = [] {
    dm_host_api t = *devmesh::Engine::host_api();
    t.meta_set = counted_meta_set;
    return t;
  }();
  return &table;
}

// The record as rapidjson's portable Writer writes it (the encoder before record_json.hpp
// wrote its own): the reference for RecordEncoder's bytes.
std::string reference_json(const dm_record &r) {
  using devmesh::kRecordFields;
  using devmesh::sv;
  using devmesh::valid_utf8;
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                    rapidjson::CrtAllocator, rapidjson::kWriteNanAndInfFlag>
      w(sb);
  std::string clean;
  auto str = [&](std::string_view s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  };
  w.StartObject();
  w.Key("timestamp");
  // As RecordEncoder(true) formats it (its own checks cover the text: the receiver reads it back).
  char ts[64];
  int64_t sec = r.timestamp_ns / 1000000000, sub = r.timestamp_ns % 1000000000;
  if (sub < 0) sub += 1000000000, --sec;
  const time_t t = static_cast<time_t>(sec);
  struct tm tm;
  int n = 0;
  if (gmtime_r(&t, &tm))
    n = std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::string text(ts, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof ts - 1) : 0);
  char frac[16];
  if (sub % 1000 != 0)
    std::snprintf(frac, sizeof frac, ".%09lldZ", static_cast<long long>(sub));
  else
    std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(sub / 1000));
  str(text + frac);
  for (size_t f = 0; f < devmesh::kRecordFieldCount; ++f) {
    if (f == devmesh::kLevelBefore) {
      w.Key("level");
      w.String(dm_level_name(r.level));
    }
    const dm_str v = r.*kRecordFields[f].member;
    if (kRecordFields[f].optional && !v.len) continue;
    str(kRecordFields[f].name);
    str(valid_utf8(sv(v), clean));
  }
  w.Key("meta_json");
  w.StartObject();
  for (uint32_t i = 0; i < r.meta_count; ++i) {
    str(valid_utf8(sv(r.meta[i].key), clean));
    if (!devmesh::write_typed_meta(w, r.meta[i])) str(valid_utf8(sv(r.meta[i].value), clean));
  }
  w.EndObject();
  if (r.priority >= 0) {
    w.Key("priority");
    w.Int(r.priority);
  }
  char id[33];
  for (int i = 0; i < 16; ++i) std::snprintf(id + 2 * i, 3, "%02x", r.event_id[i]);
  w.Key("event_id");
  w.String(id, 32);
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

struct BatchRef {
  devmesh::Batch *b = devmesh::batch_new(16);
  ~BatchRef() { devmesh::batch_unref(b); }
};

}  // namespace

// Mode byte: bit 0 NDJSON; bits 1-2: 0 plain, 1 the bytes inflated as they are (corrupt
// streams; as deflate, then as gzip), 2 gzip-compressed then inflated, 3 the same with the cap 64 *
// (bits 3-7) + 16 bytes (413 paths). Unless bits 1-2 are 3, bit 3 lifts the meta limits (so
// meta_set's index is fuzzed with many keys).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  const uint8_t mode = data[0];
  std::string_view body(reinterpret_cast<const char *>(data + 1), size - 1);
  {
    // In order, so each line meets the cache the lines before it left.
    devmesh::http_ingest::TimestampParser cache;
    for (size_t pos = 0; pos <= body.size();) {
      const size_t nl = body.find('\n', pos);
      const std::string_view line = body.substr(pos, nl == body.npos ? body.npos : nl - pos);
      int64_t cached = 0, full = 0;
      const bool ok = cache.parse(line, cached);
      check(ok == devmesh::parse_rfc3339(line, full) && (!ok || cached == full),
            "the timestamp cache agrees with parse_rfc3339");
      if (nl == body.npos) break;
      pos = nl + 1;
    }
  }
  const dm_host_api *host = counting_host();
  devmesh::http_ingest::Limits limits;
  if (((mode >> 1) & 3) != 3 && (mode & 8)) {
    limits.max_meta_keys = 1u << 24;
    limits.max_meta_bytes = size_t(1) << 30;
  }
  devmesh::http_ingest::IngestParser parser(host, limits);
  BatchRef batch;

  std::string packed;
  const unsigned how = (mode >> 1) & 3;
  if (how != 0) {
    size_t cap = 16u << 20;
    if (how == 3) cap = 64u * (mode >> 3) + 16;
    std::string_view raw = body;
    if (how >= 2) raw = packed = gzip(body, mode & 8 ? 1 : 6);
    std::string_view out;
    if (how == 1) {
      // The same bytes as deflate: zlib streams and gzip members, one after another.
      const int status = parser.decompress(devmesh::http_ingest::Encoding::kDeflate, raw, cap, out);
      check(status == 0 || status == 400 || status == 413, "inflate status (deflate)");
      check(status || out.size() <= cap, "inflated past the cap (deflate)");
    }
    const int status = parser.decompress(devmesh::http_ingest::Encoding::kGzip, raw, cap, out);
    check(status == 0 || status == 400 || status == 413, "inflate status");
    if (status) return 0;
    check(out.size() <= cap, "inflated past the cap");
    if (how >= 2) check(out == body, "inflate(gzip(x)) != x");
    body = out;
  }

  const bool ndjson = mode & 1;
  const uint64_t probes = devmesh::meta_set_probes;
  meta_set_calls = 0;
  const bool ok = parser.parse(&batch.b->pub, body, ndjson, 1700000000000000000LL);
  // Linear work: a meta entry takes at least 5 bytes ("":0,) and a record without a timestamp
  // one more call. Small arrays are scanned (at most 8 keys), larger ones hashed (about 2
  // probes at load 1/2, plus the rebuild at each doubling): 16 comparisons a byte is far above
  // that, and far below n^2/2 for a record with thousands of keys.
  check(meta_set_calls <= body.size() + 1, "meta_set calls bounded by the body size");
  check(devmesh::meta_set_probes - probes <= 16 * body.size() + 64,
        "meta_set key comparisons linear in the body size");
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
  // Forwarded (http_forward's encoding) to another http input, every record is accepted
  // again with the same time, id, level, priority and (cleaned) message: a sidecar never sends
  // what its aggregator refuses.
  devmesh::RecordEncoder encoder(true);
  std::string clean;
  for (uint32_t i = 0; i < pub.count; ++i) {
    const dm_record &r = pub.records[i];
    encoder.out.Clear();
    encoder.record(r);
    // JSON escapes every byte below 0x20 and the encoder adds no whitespace (a check that does
    // not depend on how lenient a reader is).
    for (size_t k = 0; k < encoder.out.GetSize(); ++k)
      check(static_cast<unsigned char>(encoder.out.GetString()[k]) >= 0x20,
            "encoded record has no raw control byte");
    const std::string reference = reference_json(r);
    if (std::string_view(encoder.out.GetString(), encoder.out.GetSize()) != reference) {
      std::fprintf(stderr, "%.*s\n%s\n", static_cast<int>(encoder.out.GetSize()),
                   encoder.out.GetString(), reference.c_str());
      check(false, "encoded record is rapidjson's Writer's bytes");
    }
    const std::string again =
        "{\"logs\":[" + std::string(encoder.out.GetString(), encoder.out.GetSize()) + "]}";
    devmesh::http_ingest::IngestParser receiver(host, limits);  // an aggregator set alike
    BatchRef forwarded;
    if (!receiver.parse(&forwarded.b->pub, again, false, 0)) {
      std::fprintf(stderr, "%s\n%s\n", again.c_str(), receiver.error().c_str());
      check(false, "a forwarded record parses");
    }
    if (receiver.accepted() != 1) {
      std::fprintf(stderr, "%s\n%s\n", again.c_str(), receiver.response_body().c_str());
      check(false, "a forwarded record is accepted again");
    }
    const dm_record &f = forwarded.b->pub.records[0];
    check(f.timestamp_ns == r.timestamp_ns, "forwarding keeps the timestamp");
    check(std::memcmp(f.event_id, r.event_id, 16) == 0, "forwarding keeps the event id");
    check(f.level == r.level && f.priority == r.priority, "forwarding keeps level and priority");
    check(std::string_view(f.message.ptr, f.message.len) ==
              devmesh::valid_utf8(std::string_view(r.message.ptr, r.message.len), clean),
          "forwarding keeps the message");
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
