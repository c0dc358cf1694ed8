// The on-disk format of storage segments: CRC32C, block encoding and decoding, and the scan
// that finds valid blocks in a segment's bytes. Pure functions over memory (no I/O), fuzzable.
#pragma once

#include <devmesh/plugin.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh {

struct Batch;

// CRC32C (Castagnoli, RFC 3720): the CPU's instruction when it has SSE 4.2, else Boost.CRC.
uint32_t crc32c(const void *data, size_t len);
uint32_t crc32c_hardware(const void *data, size_t len);  // requires crc32c_has_hardware()
uint32_t crc32c_software(const void *data, size_t len);
bool crc32c_has_hardware();

// A block on disk: header {magic, payload length, crc32c of payload}, then the payload
// {block id u64, record count u32, tag length u32, tag, records}. Little-endian. A record:
// {timestamp i64, event id 16 bytes, level u8, priority i8, flags u16, meta count u32, the
// string fields (u32 length, bytes) in kRecordFields' order, meta entries}. A meta entry is
// {key, value} in format 1 (every value a string) and {key, value, type u8} in format 2.
// Blocks are written in format 2; both are read, so segments left by an older release are
// replayed after an upgrade.
constexpr uint32_t kBlockMagic = 0x32424d44;    // "DMB2": the format written
constexpr uint32_t kBlockMagicV1 = 0x31424d44;  // "DMB1": meta values without types
constexpr size_t kBlockHeaderSize = 12;
constexpr size_t kBlockPayloadMin = 16;          // id, count, tag length
constexpr uint32_t kBlockMaxPayload = 1u << 30;  // longer is corruption, never a block
constexpr size_t kAckEntrySize = 16;             // {block id u64, output hash u64}

// Encodes the batch's records as one block (header included) into out (cleared, reused).
void encode_block(uint64_t block_id, std::string_view tag, const dm_record *records, uint32_t count,
                  std::vector<uint8_t> &out);

// What the scan learns of a block without decoding its records.
struct BlockInfo {
  uint64_t offset = 0;  // of the header in the segment
  uint32_t length = 0;  // header + payload
  uint64_t id = 0;
  uint32_t count = 0;
  uint8_t format = 0;    // 1 or 2, by the magic
  std::string_view tag;  // a view into the scanned bytes
};

// Checks the header at data[0..len) and its payload's CRC; fills info (offset left 0).
bool check_block(const uint8_t *data, size_t len, BlockInfo &info);

// Decodes a whole block (header included, CRC checked) into a fresh batch's records and
// arena, and sets its tag. False (batch left partly filled) when it does not verify, or holds
// a typed meta value meta_set would refuse (the outputs write those verbatim into JSON).
bool decode_block(const uint8_t *data, size_t len, Batch *out);

// Result of scanning a segment's bytes.
struct ScanResult {
  std::vector<BlockInfo> blocks;  // valid blocks in order
  uint32_t corrupt = 0;           // corrupt stretches skipped before a later valid block
  uint64_t valid_end = 0;         // end of the last valid block: truncate the file here
  bool torn_tail = false;         // bytes after valid_end that hold no valid block
};

// Walks the blocks; on a bad header or CRC searches forward for the next verifying block.
ScanResult scan_segment(const uint8_t *data, size_t len);

}  // namespace devmesh
