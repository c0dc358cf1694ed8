// Fuzz target: the forward input's framing and event mapping (plugins/inputs/forward) over
// arbitrary bytes fed in pieces, as a connection's reads would give them. FrameScanner must
// either refuse a frame or hand msgpack-c one it decodes whole, at exactly the size it said, and
// within its bounds; each decoded message's events then become records of a real batch through
// the engine's host table, each with the defaults filled in. The first byte picks the piece size.
#include <msgpack.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "batch.h"
#include "engine.h"
#include "forward_records.hpp"
#include "frame_scanner.hpp"

namespace {

using devmesh::forward::FrameScanner;
using devmesh::forward::RecordBuilder;

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz forward_frames: invariant broken: %s\n", what);
  std::abort();
}

constexpr size_t kMaxFrame = 64 * 1024;
constexpr uint32_t kMaxDepth = 31;  // as the plugin's

void check_records(const dm_batch *b, uint32_t from) {
  for (uint32_t i = from; i < b->count; ++i) {
    const dm_record &r = b->records[i];
    check(r.source.len > 0 && r.service.len > 0 && r.host.len > 0, "defaults filled in");
    check(r.level >= DM_LEVEL_DEBUG && r.level <= DM_LEVEL_FATAL, "a level");
    check(r.service.len <= 4 * 255 && r.host.len <= 4 * 255, "service and host cut to columns");
  }
}

// A message as the plugin reads it: [tag, entries | packed | time, ...].
void map_message(RecordBuilder &builder, const msgpack_object &root) {
  if (root.type != MSGPACK_OBJECT_ARRAY || root.via.array.size < 2) return;
  const msgpack_object *item = root.via.array.ptr;
  if (item[0].type != MSGPACK_OBJECT_STR) return;
  const devmesh::forward::Origin origin{{item[0].via.str.ptr, item[0].via.str.size}, "10.0.0.1"};
  devmesh::Batch *batch = devmesh::batch_new(16);
  dm_batch *b = &batch->pub;
  const msgpack_object &second = item[1];
  if (second.type == MSGPACK_OBJECT_ARRAY) {
    for (uint32_t i = 0; i < second.via.array.size; ++i)
      builder.add_entry(b, second.via.array.ptr[i], origin);
  } else if (second.type == MSGPACK_OBJECT_BIN || second.type == MSGPACK_OBJECT_STR) {
    std::string_view packed(second.via.bin.ptr, second.via.bin.size);
    FrameScanner s(packed.size(), kMaxDepth);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    size_t off = 0;
    while (off < packed.size()) {
      s.reset(packed.size() - off);
      if (s.scan(packed.data() + off, packed.size() - off) != FrameScanner::kComplete) break;
      msgpack_object entry;
      size_t used = 0;
      const msgpack_unpack_return rc =
          msgpack_unpack(packed.data() + off, s.size(), &used, &zone, &entry);
      check(rc == MSGPACK_UNPACK_SUCCESS && used == s.size(), "a scanned packed entry decodes");
      builder.add_entry(b, entry, origin);
      off += used;
    }
    msgpack_zone_destroy(&zone);
  } else if (root.via.array.size >= 3) {
    builder.add(b, second, item[2], origin);
  }
  check_records(b, 0);
  devmesh::batch_unref(batch);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  const size_t piece = static_cast<size_t>(data[0]) + 1;
  const char *bytes = reinterpret_cast<const char *>(data + 1);
  const size_t len = size - 1;
  devmesh::forward::Limits limits;
  limits.max_meta_keys = (data[0] & 1) ? 3 : 1024;
  RecordBuilder builder(devmesh::Engine::host_api(), limits);
  FrameScanner scanner(kMaxFrame, kMaxDepth);
  size_t start = 0, have = 0;  // the current frame's first byte, and bytes of it received
  while (start < len) {
    have = std::min(len - start, have + piece);
    const FrameScanner::Result r = scanner.scan(bytes + start, have);
    if (r == FrameScanner::kError) return 0;  // the connection would be closed
    if (r == FrameScanner::kNeedMore) {
      if (start + have >= len) return 0;  // cut short: nothing taken
      continue;
    }
    check(scanner.size() <= have && scanner.size() <= kMaxFrame, "a frame within what it had");
    msgpack_unpacked frame;
    msgpack_unpacked_init(&frame);
    size_t off = 0;
    const msgpack_unpack_return rc =
        msgpack_unpack_next(&frame, bytes + start, scanner.size(), &off);
    check(rc == MSGPACK_UNPACK_SUCCESS && off == scanner.size(), "a scanned frame decodes whole");
    map_message(builder, frame.data);
    msgpack_unpacked_destroy(&frame);
    start += scanner.size();
    have = 0;
    scanner.reset();
  }
  return 0;
}
