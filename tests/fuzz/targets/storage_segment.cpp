// Fuzz target: the storage segment format (engine/src/storage_format.*), the bytes the engine
// reads back from disk after a crash. The first input byte picks what the rest is:
//   even: a segment's bytes, scanned as recovery does, each block found then decoded;
//   odd:  a block's payload, given a valid header and CRC here so the record decoder is reached
//         behind the CRC (the fuzzer could never forge one); bit 1 picks the format (0: 1,
//         the older release's, 1: 2, the current).
// Oracle, beyond ASan's bounds checks: every block the scan reports lies inside the input, in
// order, and carries a CRC that the software CRC32C (a path independent of the hardware one the
// scan uses) confirms; a block of the current format that decodes re-encodes to exactly its
// bytes, one of format 1 re-encodes to a current block that decodes to the same records; every
// typed meta value decoded is one meta_set takes; decoding refuses the same block once any byte
// of it is changed or its CRC field does not match.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "batch.h"
#include "storage_format.h"

namespace {

using namespace devmesh;

void check(bool ok, const char *what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz storage_segment: invariant broken: %s\n", what);
  std::abort();
}

uint32_t load32(const uint8_t *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

bool is_magic(uint32_t m) {
  return m == kBlockMagic || m == kBlockMagicV1;
}

bool same(dm_str a, dm_str b) {
  return a.len == b.len && (a.len == 0 || std::memcmp(a.ptr, b.ptr, a.len) == 0);
}

// b's records are a's, field by field and meta type by meta type.
bool same_records(const Batch *a, const Batch *b) {
  if (a->records.size() != b->records.size()) return false;
  for (size_t i = 0; i < a->records.size(); ++i) {
    const dm_record &x = a->records[i], &y = b->records[i];
    if (x.timestamp_ns != y.timestamp_ns || std::memcmp(x.event_id, y.event_id, 16) != 0 ||
        x.level != y.level || x.priority != y.priority || x.flags != y.flags ||
        x.meta_count != y.meta_count)
      return false;
    for (auto f :
         {&dm_record::source, &dm_record::service, &dm_record::host, &dm_record::trace_id,
          &dm_record::span_id, &dm_record::event_type, &dm_record::error_code, &dm_record::message})
      if (!same(x.*f, y.*f)) return false;
    for (uint32_t m = 0; m < x.meta_count; ++m)
      if (!same(x.meta[m].key, y.meta[m].key) || !same(x.meta[m].value, y.meta[m].value) ||
          x.meta[m].type != y.meta[m].type)
        return false;
  }
  return true;
}

bool decodes(const uint8_t *data, size_t len) {
  // An exact-size heap copy: a read one byte past the block is an ASan report.
  std::vector<uint8_t> copy(data, data + len);
  Batch *b = batch_new(0);
  const bool ok = decode_block(copy.data(), copy.size(), b);
  batch_unref(b);
  return ok;
}

// Decodes the block at data[0..len) if it can; checks every oracle that applies.
void decode_and_check(const uint8_t *data, size_t len) {
  std::vector<uint8_t> block(data, data + len);
  Batch *b = batch_new(0);
  const bool ok = decode_block(block.data(), block.size(), b);
  if (ok) {
    check(len >= kBlockHeaderSize + kBlockPayloadMin, "decoded block is at least a header");
    check(is_magic(load32(data)), "decoded block has a magic");
    // The block is a prefix of the bytes given (a reader passes a segment from an offset on).
    const uint32_t payload = load32(data + 4);
    check(payload <= len - kBlockHeaderSize, "decoded block within the bytes given");
    check(crc32c_software(data + kBlockHeaderSize, payload) == load32(data + 8),
          "decode accepted a block whose CRC does not match");
    len = kBlockHeaderSize + payload;
    // Re-encoding what was decoded gives the very same bytes.
    BlockInfo info;
    check(check_block(data, len, info) && info.length == len, "a decoded block checks");
    for (const dm_record &r : b->records)
      for (uint32_t m = 0; m < r.meta_count; ++m)
        check(meta_value_valid(r.meta[m].value, r.meta[m].type) &&
                  (info.format >= 2 || r.meta[m].type == DM_META_STRING),
              "a decoded meta value is valid for its type");
    std::vector<uint8_t> again;
    encode_block(info.id, std::string_view(b->pub.tag.ptr, b->pub.tag.len), b->records.data(),
                 static_cast<uint32_t>(b->records.size()), again);
    if (info.format == 2) {
      check(again.size() == len && std::memcmp(again.data(), data, len) == 0,
            "a decoded block re-encodes to its own bytes");
    } else {
      Batch *back = batch_new(0);
      check(decode_block(again.data(), again.size(), back) && same_records(b, back),
            "a decoded format-1 block re-encodes to a block of the same records");
      batch_unref(back);
    }
    // Any one byte changed (here: one picked by the block's own content), or a wrong CRC field:
    // refused.
    std::vector<uint8_t> bad(data, data + len);
    const size_t at = kBlockHeaderSize + (data[len - 1] * 131u + len) % payload;
    bad[at] ^= static_cast<uint8_t>(1u << (data[len / 2] % 8));
    check(!decodes(bad.data(), bad.size()), "decode accepted a payload with a flipped bit");
    std::vector<uint8_t> wrong_crc(data, data + len);
    wrong_crc[8 + data[len / 3] % 4] ^= 0x40;
    check(!decodes(wrong_crc.data(), wrong_crc.size()), "decode accepted a wrong CRC field");
  }
  batch_unref(b);
}

void segment(const uint8_t *data, size_t len) {
  const ScanResult scan = scan_segment(data, len);
  check(scan.valid_end <= len, "valid_end within the input");
  uint64_t prev_end = 0;
  for (const BlockInfo &info : scan.blocks) {
    check(info.offset >= prev_end, "blocks in order, not overlapping");
    check(info.length >= kBlockHeaderSize + kBlockPayloadMin, "block holds a header");
    check(info.offset + info.length <= len, "block within the input");
    const uint8_t *p = data + info.offset;
    check(is_magic(load32(p)), "block starts with a magic");
    check(load32(p + 4) == info.length - kBlockHeaderSize, "block length is its header's");
    check(crc32c_software(p + kBlockHeaderSize, info.length - kBlockHeaderSize) == load32(p + 8),
          "scan accepted a block whose CRC does not match");
    check(info.tag.data() >= reinterpret_cast<const char *>(p + kBlockHeaderSize) &&
              info.tag.data() + info.tag.size() <= reinterpret_cast<const char *>(p + info.length),
          "tag view inside its block");
    prev_end = info.offset + info.length;
    decode_and_check(p, info.length);
  }
  if (!scan.blocks.empty())
    check(scan.valid_end == scan.blocks.back().offset + scan.blocks.back().length,
          "valid_end is the last block's end");
  // The input as one block, as a reader that trusts an offset would see it.
  decode_and_check(data, len);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0 || size > 1024 * 1024) return 0;
  const uint8_t mode = data[0];
  ++data;
  --size;
  if (mode % 2 == 0) {
    segment(data, size);
    return 0;
  }
  // A payload behind a header that verifies.
  if (size < kBlockPayloadMin) return 0;
  std::vector<uint8_t> block(kBlockHeaderSize + size);
  const auto payload = static_cast<uint32_t>(size);
  const uint32_t crc = crc32c(data, size);
  std::memcpy(block.data(), mode & 2 ? &kBlockMagic : &kBlockMagicV1, 4);
  std::memcpy(block.data() + 4, &payload, 4);
  std::memcpy(block.data() + 8, &crc, 4);
  std::memcpy(block.data() + kBlockHeaderSize, data, size);
  segment(block.data(), block.size());
  return 0;
}
