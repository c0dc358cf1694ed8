// Segment block format: CRC32C, encode/decode of records, and the resynchronising scan.
#include "storage_format.h"

#include <boost/crc.hpp>
#include <cstring>
#include <devmesh/record_fields.hpp>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "batch.h"

namespace devmesh {

// ---- CRC32C --------------------------------------------------------------------------------

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_hardware(const void *data, size_t len) {
  const auto *p = static_cast<const uint8_t *>(data);
  uint64_t crc = 0xFFFFFFFFu;
  while (len >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    crc = _mm_crc32_u64(crc, v);
    p += 8;
    len -= 8;
  }
  auto c = static_cast<uint32_t>(crc);
  while (len--) c = _mm_crc32_u8(c, *p++);
  return c ^ 0xFFFFFFFFu;
}
bool crc32c_has_hardware() {
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
}
#else
uint32_t crc32c_hardware(const void *data, size_t len) {
  return crc32c_software(data, len);
}
bool crc32c_has_hardware() {
  return false;
}
#endif

uint32_t crc32c_software(const void *data, size_t len) {
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> c;
  c.process_bytes(data, len);
  return c.checksum();
}

uint32_t crc32c(const void *data, size_t len) {
  return crc32c_has_hardware() ? crc32c_hardware(data, len) : crc32c_software(data, len);
}

// ---- encoding ------------------------------------------------------------------------------

namespace {

template <class T>
void put(std::vector<uint8_t> &out, T v) {
  size_t at = out.size();
  out.resize(at + sizeof v);
  memcpy(out.data() + at, &v, sizeof v);
}

void put_str(std::vector<uint8_t> &out, const char *p, size_t len) {
  put<uint32_t>(out, static_cast<uint32_t>(len));
  if (len) out.insert(out.end(), p, p + len);
}

void put_str(std::vector<uint8_t> &out, dm_str s) {
  put_str(out, s.ptr, s.len);
}

// A bounds-checked reader over a payload.
struct Reader {
  const uint8_t *p, *end;
  template <class T>
  bool get(T &v) {
    if (static_cast<size_t>(end - p) < sizeof v) return false;
    memcpy(&v, p, sizeof v);
    p += sizeof v;
    return true;
  }
  bool get_str(std::string_view &s) {
    uint32_t len;
    if (!get(len) || static_cast<size_t>(end - p) < len) return false;
    s = std::string_view(reinterpret_cast<const char *>(p), len);
    p += len;
    return true;
  }
};

uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

// The format a magic names, or 0.
uint8_t block_format(uint32_t magic) {
  return magic == kBlockMagic ? 2 : magic == kBlockMagicV1 ? 1 : 0;
}

}  // namespace

void encode_block(uint64_t block_id, std::string_view tag, const dm_record *records, uint32_t count,
                  std::vector<uint8_t> &out) {
  out.clear();
  out.resize(kBlockHeaderSize);
  put<uint64_t>(out, block_id);
  put<uint32_t>(out, count);
  put_str(out, tag.data(), tag.size());
  for (uint32_t i = 0; i < count; i++) {
    const dm_record &r = records[i];
    put<int64_t>(out, r.timestamp_ns);
    out.insert(out.end(), r.event_id, r.event_id + 16);
    put<uint8_t>(out, r.level);
    put<int8_t>(out, r.priority);
    put<uint16_t>(out, r.flags);
    put<uint32_t>(out, r.meta_count);
    for (const RecordField &f : kRecordFields) put_str(out, r.*f.member);
    for (uint32_t m = 0; m < r.meta_count; m++) {
      put_str(out, r.meta[m].key);
      put_str(out, r.meta[m].value);
      put<uint8_t>(out, static_cast<uint8_t>(r.meta[m].type));
    }
  }
  const uint32_t payload = static_cast<uint32_t>(out.size() - kBlockHeaderSize);
  const uint32_t crc = crc32c(out.data() + kBlockHeaderSize, payload);
  memcpy(out.data(), &kBlockMagic, 4);
  memcpy(out.data() + 4, &payload, 4);
  memcpy(out.data() + 8, &crc, 4);
}

bool check_block(const uint8_t *data, size_t len, BlockInfo &info) {
  if (len < kBlockHeaderSize + kBlockPayloadMin) return false;
  info.format = block_format(load32(data));
  if (!info.format) return false;
  const uint32_t payload = load32(data + 4);
  if (payload < kBlockPayloadMin || payload > kBlockMaxPayload) return false;
  if (payload > len - kBlockHeaderSize) return false;
  if (crc32c(data + kBlockHeaderSize, payload) != load32(data + 8)) return false;
  Reader r{data + kBlockHeaderSize, data + kBlockHeaderSize + payload};
  if (!r.get(info.id) || !r.get(info.count) || !r.get_str(info.tag)) return false;
  info.length = static_cast<uint32_t>(kBlockHeaderSize + payload);
  return true;
}

bool decode_block(const uint8_t *data, size_t len, Batch *out) {
  BlockInfo info;
  if (!check_block(data, len, info)) return false;
  Reader r{data + kBlockHeaderSize + kBlockPayloadMin + info.tag.size(), data + info.length};
  // Each record takes at least 64 bytes: a count beyond that is corruption the CRC missed.
  if (info.count > (info.length - kBlockHeaderSize) / 64) return false;
  out->records.reserve(info.count);
  out->pub.tag = out->arena.copy(info.tag.data(), info.tag.size());
  for (uint32_t i = 0; i < info.count; i++) {
    dm_record *rec = out->add();
    if (!r.get(rec->timestamp_ns)) return false;
    if (static_cast<size_t>(r.end - r.p) < 16) return false;
    memcpy(rec->event_id, r.p, 16);
    r.p += 16;
    uint32_t meta_count;
    if (!r.get(rec->level) || !r.get(rec->priority) || !r.get(rec->flags) || !r.get(meta_count))
      return false;
    for (const RecordField &f : kRecordFields) {
      std::string_view v;
      if (!r.get_str(v)) return false;
      rec->*f.member = out->arena.copy(v.data(), v.size());
    }
    // Each meta entry takes at least 8 bytes (9 in format 2).
    if (meta_count > static_cast<size_t>(r.end - r.p) / 8) return false;
    if (meta_count) {
      rec->meta = static_cast<dm_kv *>(out->arena.alloc(sizeof(dm_kv) * meta_count));
      rec->meta_cap = meta_count;
      for (uint32_t m = 0; m < meta_count; m++) {
        std::string_view k, v;
        uint8_t type = DM_META_STRING;  // format 1 kept no type: every value was a string
        if (!r.get_str(k) || !r.get_str(v) || (info.format >= 2 && !r.get(type))) return false;
        const dm_str value = out->arena.copy(v.data(), v.size());
        if (type != DM_META_STRING && !meta_value_valid(value, type)) return false;
        rec->meta[m].key = out->arena.copy(k.data(), k.size());
        rec->meta[m].value = value;
        rec->meta[m].type = type;
        rec->meta[m].reserved = 0;
        rec->meta_count = m + 1;
      }
    }
  }
  out->sync();
  return r.p == r.end;
}

ScanResult scan_segment(const uint8_t *data, size_t len) {
  ScanResult res;
  size_t pos = 0;
  while (pos < len) {
    BlockInfo info;
    if (check_block(data + pos, len - pos, info)) {
      info.offset = pos;
      pos += info.length;
      res.valid_end = pos;
      res.blocks.push_back(info);
      continue;
    }
    // Resynchronise: the next magic (of either format: "DMB" and a digit) whose header and CRC
    // verify.
    size_t next = pos + 1;
    bool found = false;
    while (next + kBlockHeaderSize <= len) {
      const void *hit = memmem(data + next, len - next, &kBlockMagic, 3);
      if (!hit) break;
      next = static_cast<const uint8_t *>(hit) - data;
      BlockInfo probe;
      if (check_block(data + next, len - next, probe)) {
        found = true;
        break;
      }
      next++;
    }
    if (!found) {
      res.torn_tail = true;
      break;
    }
    res.corrupt++;
    pos = next;
  }
  return res;
}

}  // namespace devmesh
