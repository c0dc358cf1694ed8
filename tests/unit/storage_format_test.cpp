// Storage block format: CRC32C check values on both paths, block round trips of every record
// field and meta type, blocks of format 1 (an older release's segments) still read, and the
// scan's handling of torn tails, corrupt middles, garbage and empty input.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "batch.h"
#include "storage_format.h"

using namespace devmesh;

namespace {

dm_str S(Batch *b, const std::string &s) {
  return b->arena.copy(s.data(), s.size());
}

std::string str(dm_str s) {
  return std::string(s.ptr ? s.ptr : "", s.len);
}

// A batch of n records whose fields all differ, record 0 with every string empty.
Batch *sample(uint32_t n) {
  Batch *b = batch_new(n);
  for (uint32_t i = 0; i < n; i++) {
    dm_record *r = b->add();
    if (i == 0) continue;  // all empty, no meta, priority -1
    std::string k = std::to_string(i);
    r->timestamp_ns = 1700000000123456789ll + i;
    for (int j = 0; j < 16; j++) r->event_id[j] = static_cast<uint8_t>(i * 16 + j);
    r->level = static_cast<uint8_t>(i % 8);
    r->priority = static_cast<int8_t>(i % 8);
    r->flags = static_cast<uint16_t>(i);
    r->source = S(b, "src" + k);
    r->service = S(b, "svc" + k);
    r->host = S(b, "host" + k);
    r->trace_id = S(b, "trace" + k);
    r->span_id = S(b, "span" + k);
    r->event_type = S(b, "type" + k);
    r->error_code = S(b, "E" + k);
    r->message = S(b, std::string("message ") + k + std::string(1, '\0') + "binary\xff");
    meta_set(b, r, dm_str{"seq", 3}, S(b, k));
    meta_set(b, r, dm_str{"empty", 5}, dm_str{"", 0});
    meta_set(b, r, dm_str{"", 0}, S(b, "empty key"));
    meta_set(b, r, dm_str{"pid", 3}, S(b, k), DM_META_INT);
    meta_set(b, r, dm_str{"nested", 6}, S(b, "{\"a\":[" + k + ",\"x\",null]}"), DM_META_JSON);
  }
  b->sync();
  return b;
}

template <class T>
void put(std::vector<uint8_t> &out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof v);
  memcpy(out.data() + at, &v, sizeof v);
}

void put_str(std::vector<uint8_t> &out, dm_str s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.len));
  if (s.len) out.insert(out.end(), s.ptr, s.ptr + s.len);
}

// Format 1 as the previous release wrote it ("DMB1", meta entries {key, value}, no type): the
// bytes an upgrade finds in its segments. Kept here, not in the engine, which only reads it.
void encode_block_v1(uint64_t id, const std::string &tag, const dm_record *records, uint32_t count,
                     std::vector<uint8_t> &out) {
  out.assign(kBlockHeaderSize, 0);
  put<uint64_t>(out, id);
  put<uint32_t>(out, count);
  put_str(out, dm_str{tag.data(), tag.size()});
  for (uint32_t i = 0; i < count; i++) {
    const dm_record &r = records[i];
    put<int64_t>(out, r.timestamp_ns);
    out.insert(out.end(), r.event_id, r.event_id + 16);
    put<uint8_t>(out, r.level);
    put<int8_t>(out, r.priority);
    put<uint16_t>(out, r.flags);
    put<uint32_t>(out, r.meta_count);
    for (dm_str s : {r.source, r.service, r.host, r.trace_id, r.span_id, r.event_type, r.error_code,
                     r.message})
      put_str(out, s);
    for (uint32_t m = 0; m < r.meta_count; m++) {
      put_str(out, r.meta[m].key);
      put_str(out, r.meta[m].value);
    }
  }
  const auto payload = static_cast<uint32_t>(out.size() - kBlockHeaderSize);
  const uint32_t crc = crc32c(out.data() + kBlockHeaderSize, payload);
  memcpy(out.data(), "DMB1", 4);
  memcpy(out.data() + 4, &payload, 4);
  memcpy(out.data() + 8, &crc, 4);
}

std::vector<uint8_t> block_v1_of(uint64_t id, const std::string &tag, uint32_t n) {
  Batch *b = sample(n);
  std::vector<uint8_t> out;
  encode_block_v1(id, tag, b->records.data(), n, out);
  batch_unref(b);
  return out;
}

// Expects b's records to be a's, field by field; with typed, meta types too (else strings).
void expect_same_records(const Batch *a, const Batch *b, bool typed) {
  ASSERT_EQ(a->records.size(), b->records.size());
  for (size_t i = 0; i < a->records.size(); i++) {
    const dm_record &x = a->records[i], &y = b->records[i];
    EXPECT_EQ(x.timestamp_ns, y.timestamp_ns);
    EXPECT_EQ(0, memcmp(x.event_id, y.event_id, 16));
    EXPECT_EQ(x.level, y.level);
    EXPECT_EQ(x.priority, y.priority);
    EXPECT_EQ(x.flags, y.flags);
    for (auto f :
         {&dm_record::source, &dm_record::service, &dm_record::host, &dm_record::trace_id,
          &dm_record::span_id, &dm_record::event_type, &dm_record::error_code, &dm_record::message})
      EXPECT_EQ(str(x.*f), str(y.*f)) << i;
    ASSERT_EQ(x.meta_count, y.meta_count);
    for (uint32_t m = 0; m < x.meta_count; m++) {
      EXPECT_EQ(str(x.meta[m].key), str(y.meta[m].key));
      EXPECT_EQ(str(x.meta[m].value), str(y.meta[m].value));
      EXPECT_EQ(y.meta[m].type, typed ? x.meta[m].type : uint32_t{DM_META_STRING})
          << i << " " << str(x.meta[m].key);
    }
  }
}

std::vector<uint8_t> block_of(uint64_t id, const std::string &tag, uint32_t n) {
  Batch *b = sample(n);
  std::vector<uint8_t> out;
  encode_block(id, tag, b->records.data(), n, out);
  batch_unref(b);
  return out;
}

// RFC 3720 B.4's vectors and the common check value: each path must give every one of them.
struct CrcVector {
  const char *name;
  std::vector<uint8_t> bytes;
  uint32_t crc;
};

std::vector<CrcVector> crc_vectors() {
  std::vector<CrcVector> v;
  v.push_back({"empty", {}, 0u});
  v.push_back({"123456789", {'1', '2', '3', '4', '5', '6', '7', '8', '9'}, 0xE3069283u});
  v.push_back({"32 zeros", std::vector<uint8_t>(32, 0x00), 0x8A9136AAu});
  v.push_back({"32 ones", std::vector<uint8_t>(32, 0xFF), 0x62A8AB43u});
  std::vector<uint8_t> up(32), down(32);
  for (uint8_t i = 0; i < 32; i++) {
    up[i] = i;
    down[i] = static_cast<uint8_t>(31 - i);
  }
  v.push_back({"0..31", up, 0x46DD794Eu});
  v.push_back({"31..0", down, 0x113FDB5Cu});
  // B.4's SCSI Read (10) command PDU.
  std::vector<uint8_t> pdu(48, 0);
  pdu[0] = 0x01;
  pdu[1] = 0xC0;
  pdu[16] = 0x14;
  pdu[22] = 0x04;
  pdu[27] = 0x14;
  pdu[31] = 0x18;
  pdu[32] = 0x28;
  pdu[40] = 0x02;
  v.push_back({"iSCSI read PDU", pdu, 0xD9963A56u});
  return v;
}

// What the kernel says of the CPU: a skip of the hardware path is honest only when it agrees.
bool cpu_flags_list_sse42() {
  FILE *f = std::fopen("/proc/cpuinfo", "r");
  if (!f) return false;
  char line[4096];
  bool has = false;
  while (!has && std::fgets(line, sizeof line, f))
    if (std::strncmp(line, "flags", 5) == 0 && std::strstr(line, " sse4_2")) has = true;
  std::fclose(f);
  return has;
}

}  // namespace

TEST(Crc32c, SoftwarePathGivesEveryKnownAnswer) {
  for (const CrcVector &v : crc_vectors())
    EXPECT_EQ(crc32c_software(v.bytes.data(), v.bytes.size()), v.crc) << v.name;
}

TEST(Crc32c, HardwareIsDetectedWheneverTheKernelListsSse42) {
#if defined(__x86_64__)
  EXPECT_EQ(crc32c_has_hardware(), cpu_flags_list_sse42())
      << "/proc/cpuinfo and __builtin_cpu_supports disagree on sse4.2";
#else
  EXPECT_FALSE(crc32c_has_hardware());
#endif
}

TEST(Crc32c, HardwarePathGivesEveryKnownAnswer) {
  // The only honest skip: the CPU itself lacks the instruction (checked against the kernel above);
  // the software path is tested regardless.
  if (!crc32c_has_hardware()) GTEST_SKIP() << "this CPU has no SSE 4.2 (per /proc/cpuinfo)";
  for (const CrcVector &v : crc_vectors())
    EXPECT_EQ(crc32c_hardware(v.bytes.data(), v.bytes.size()), v.crc) << v.name;
}

TEST(Crc32c, TheDispatchingEntryGivesEveryKnownAnswer) {
  for (const CrcVector &v : crc_vectors())
    EXPECT_EQ(crc32c(v.bytes.data(), v.bytes.size()), v.crc) << v.name;
}

TEST(Crc32c, HardwareAndSoftwareAgreeOnEveryLengthAndAlignment) {
  if (!crc32c_has_hardware()) GTEST_SKIP() << "this CPU has no SSE 4.2 (per /proc/cpuinfo)";
  std::mt19937 rng(7);
  std::vector<uint8_t> data(300);
  for (auto &c : data) c = static_cast<uint8_t>(rng());
  for (size_t off = 0; off < 9; off++)
    for (size_t len = 0; len + off <= data.size(); len++)
      ASSERT_EQ(crc32c_hardware(data.data() + off, len), crc32c_software(data.data() + off, len))
          << off << " " << len;
}

TEST(BlockFormat, RoundTripsEveryFieldIncludingMetaAndEmptyStrings) {
  Batch *in = sample(5);
  std::vector<uint8_t> buf;
  encode_block(42, "app.web", in->records.data(), 5, buf);
  BlockInfo info;
  ASSERT_TRUE(check_block(buf.data(), buf.size(), info));
  EXPECT_EQ(info.id, 42u);
  EXPECT_EQ(info.count, 5u);
  EXPECT_EQ(info.tag, "app.web");
  EXPECT_EQ(info.length, buf.size());

  Batch *out = batch_new(0);
  ASSERT_TRUE(decode_block(buf.data(), buf.size(), out));
  EXPECT_EQ(str(out->pub.tag), "app.web");
  EXPECT_EQ(info.format, 2);
  expect_same_records(in, out, true);
  EXPECT_EQ(out->records[2].meta[3].type, uint32_t{DM_META_INT});
  EXPECT_EQ(str(out->records[2].meta[4].value), R"({"a":[2,"x",null]})");
  EXPECT_EQ(out->records[0].priority, -1);
  EXPECT_EQ(out->records[0].meta_count, 0u);
  EXPECT_EQ(str(out->records[3].message), std::string("message 3\0binary\xff", 17));
  // A decoded record can take more meta (its array is exactly full).
  EXPECT_EQ(meta_set(out, &out->records[1], dm_str{"added", 5}, dm_str{"x", 1}), DM_OK);
  EXPECT_EQ(out->records[1].meta_count, 6u);
  batch_unref(in);
  batch_unref(out);
}

TEST(BlockFormat, BlocksOfFormat1FromAnOlderReleaseAreReadWithTheirMetaAsStrings) {
  Batch *in = sample(5);
  std::vector<uint8_t> buf;
  encode_block_v1(7, "app.old", in->records.data(), 5, buf);
  BlockInfo info;
  ASSERT_TRUE(check_block(buf.data(), buf.size(), info));
  EXPECT_EQ(info.format, 1);
  EXPECT_EQ(info.id, 7u);
  EXPECT_EQ(info.count, 5u);
  EXPECT_EQ(info.tag, "app.old");
  Batch *out = batch_new(0);
  ASSERT_TRUE(decode_block(buf.data(), buf.size(), out));
  EXPECT_EQ(str(out->pub.tag), "app.old");
  expect_same_records(in, out, false);
  // Written again, it is a block of the current format holding the same records.
  std::vector<uint8_t> again;
  encode_block(7, "app.old", out->records.data(), 5, again);
  ASSERT_TRUE(check_block(again.data(), again.size(), info));
  EXPECT_EQ(info.format, 2);
  Batch *back = batch_new(0);
  ASSERT_TRUE(decode_block(again.data(), again.size(), back));
  expect_same_records(out, back, true);
  batch_unref(in);
  batch_unref(out);
  batch_unref(back);
}

TEST(SegmentScan, ASegmentOfBothFormatsIsReadWholeAndResynchronisesOnEither) {
  // An upgrade appends format-2 blocks to the format-1 segment it found.
  auto a = block_v1_of(1, "t", 2), b = block_v1_of(2, "t", 3), c = block_of(3, "t", 4),
       d = block_v1_of(4, "t", 1);
  std::vector<uint8_t> seg;
  for (auto *blk : {&a, &b, &c, &d}) seg.insert(seg.end(), blk->begin(), blk->end());
  ScanResult r = scan_segment(seg.data(), seg.size());
  ASSERT_EQ(r.blocks.size(), 4u);
  EXPECT_EQ(r.blocks[1].format, 1);
  EXPECT_EQ(r.blocks[2].format, 2);
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_EQ(r.valid_end, seg.size());
  for (const BlockInfo &info : r.blocks) {
    Batch *out = batch_new(0);
    EXPECT_TRUE(decode_block(seg.data() + info.offset, info.length, out)) << info.id;
    EXPECT_EQ(out->records.size(), info.count);
    batch_unref(out);
  }
  // A corrupt block before a block of either format: the scan finds the next one.
  for (auto *next : {&c, &d}) {
    auto bad = b;
    bad[bad.size() / 2] ^= 0xff;
    seg.assign(a.begin(), a.end());
    seg.insert(seg.end(), bad.begin(), bad.end());
    seg.insert(seg.end(), next->begin(), next->end());
    r = scan_segment(seg.data(), seg.size());
    ASSERT_EQ(r.blocks.size(), 2u);
    EXPECT_EQ(r.blocks[1].id, next == &c ? 3u : 4u);
    EXPECT_EQ(r.corrupt, 1u);
  }
}

TEST(BlockFormat, ABlockWithAnUnknownMetaTypeOrAValueNotOfItsTypeIsRefused) {
  // What the CRC cannot catch: the outputs would write such a value verbatim into JSON.
  Batch *in = batch_new(1);
  dm_record *r = in->add();
  meta_set(in, r, dm_str{"k", 1}, dm_str{"123", 3}, DM_META_INT);
  std::vector<uint8_t> good;
  encode_block(1, "t", in->records.data(), 1, good);
  Batch *out = batch_new(0);
  ASSERT_TRUE(decode_block(good.data(), good.size(), out));
  batch_unref(out);
  auto forged = [&](uint8_t type, char digit) {
    auto buf = good;
    buf[buf.size() - 1] = type;   // the last entry's type
    buf[buf.size() - 2] = digit;  // the last byte of its value
    const uint32_t crc = crc32c(buf.data() + kBlockHeaderSize, buf.size() - kBlockHeaderSize);
    memcpy(buf.data() + 8, &crc, 4);
    Batch *b = batch_new(0);
    const bool ok = decode_block(buf.data(), buf.size(), b);
    batch_unref(b);
    return ok;
  };
  EXPECT_TRUE(forged(DM_META_INT, '4'));
  EXPECT_TRUE(forged(DM_META_STRING, 'x'));
  EXPECT_FALSE(forged(DM_META_INT, 'x'));
  EXPECT_FALSE(forged(DM_META_BOOL, '3'));
  EXPECT_FALSE(forged(6, '3'));
  EXPECT_FALSE(forged(0xff, '3'));
  batch_unref(in);
}

TEST(BlockFormat, RejectsABlockWithAChangedByteOrAWrongLength) {
  auto buf = block_of(1, "t", 3);
  BlockInfo info;
  for (size_t i : {size_t(0), size_t(5), size_t(9), buf.size() / 2, buf.size() - 1}) {
    auto bad = buf;
    bad[i] ^= 0x40;
    EXPECT_FALSE(check_block(bad.data(), bad.size(), info)) << i;
    Batch *b = batch_new(0);
    EXPECT_FALSE(decode_block(bad.data(), bad.size(), b)) << i;
    batch_unref(b);
  }
  EXPECT_FALSE(check_block(buf.data(), buf.size() - 1, info));  // short payload
  EXPECT_FALSE(check_block(buf.data(), 5, info));               // short header
}

TEST(BlockFormat, RejectsRecordsThatDoNotFillThePayloadExactly) {
  // A valid CRC over a payload whose record count lies: decode must refuse, never overrun.
  auto buf = block_of(1, "t", 2);
  uint32_t count = 3;
  memcpy(buf.data() + kBlockHeaderSize + 8, &count, 4);
  uint32_t crc = crc32c(buf.data() + kBlockHeaderSize, buf.size() - kBlockHeaderSize);
  memcpy(buf.data() + 8, &crc, 4);
  Batch *b = batch_new(0);
  EXPECT_FALSE(decode_block(buf.data(), buf.size(), b));
  batch_unref(b);
}

TEST(SegmentScan, FindsEveryBlockOfAnIntactSegment) {
  std::vector<uint8_t> seg;
  for (uint64_t id = 1; id <= 4; id++) {
    auto b = block_of(id, "tag" + std::to_string(id), static_cast<uint32_t>(id));
    seg.insert(seg.end(), b.begin(), b.end());
  }
  ScanResult r = scan_segment(seg.data(), seg.size());
  ASSERT_EQ(r.blocks.size(), 4u);
  EXPECT_EQ(r.blocks[2].id, 3u);
  EXPECT_EQ(r.blocks[2].tag, "tag3");
  EXPECT_EQ(r.corrupt, 0u);
  EXPECT_FALSE(r.torn_tail);
  EXPECT_EQ(r.valid_end, seg.size());
}

TEST(SegmentScan, TruncatesATornTailWhateverItHolds) {
  auto a = block_of(1, "t", 2), b = block_of(2, "t", 3);
  std::vector<uint8_t> base(a);
  // A short header, a short payload, a full block with a bad CRC: each is a torn tail.
  std::vector<std::vector<uint8_t>> tails = {
      std::vector<uint8_t>(b.begin(), b.begin() + 7),
      std::vector<uint8_t>(b.begin(), b.end() - 3),
      b,
  };
  tails[2][b.size() - 2] ^= 1;
  for (auto &tail : tails) {
    auto seg = base;
    seg.insert(seg.end(), tail.begin(), tail.end());
    ScanResult r = scan_segment(seg.data(), seg.size());
    EXPECT_EQ(r.blocks.size(), 1u);
    EXPECT_TRUE(r.torn_tail);
    EXPECT_EQ(r.corrupt, 0u);
    EXPECT_EQ(r.valid_end, a.size());
  }
}

TEST(SegmentScan, SkipsACorruptBlockInTheMiddleAndCountsIt) {
  auto a = block_of(1, "t", 2), b = block_of(2, "t", 3), c = block_of(3, "t", 4);
  b[b.size() / 2] ^= 0xff;  // bad CRC
  std::vector<uint8_t> seg(a);
  seg.insert(seg.end(), b.begin(), b.end());
  seg.insert(seg.end(), c.begin(), c.end());
  ScanResult r = scan_segment(seg.data(), seg.size());
  ASSERT_EQ(r.blocks.size(), 2u);
  EXPECT_EQ(r.blocks[0].id, 1u);
  EXPECT_EQ(r.blocks[1].id, 3u);
  EXPECT_EQ(r.corrupt, 1u);
  EXPECT_FALSE(r.torn_tail);

  // An impossible length in the middle: resynchronised the same way.
  auto b2 = block_of(2, "t", 3);
  uint32_t huge = 0x7fffffff;
  memcpy(b2.data() + 4, &huge, 4);
  seg.assign(a.begin(), a.end());
  seg.insert(seg.end(), b2.begin(), b2.end());
  seg.insert(seg.end(), c.begin(), c.end());
  r = scan_segment(seg.data(), seg.size());
  ASSERT_EQ(r.blocks.size(), 2u);
  EXPECT_EQ(r.corrupt, 1u);
}

TEST(SegmentScan, FindsNothingInGarbageOrAnEmptyFile) {
  std::mt19937 rng(3);
  std::vector<uint8_t> junk(100000);
  for (auto &c : junk) c = static_cast<uint8_t>(rng());
  // Sprinkle the magic so the resync has candidates to reject.
  for (size_t i = 0; i + 4 < junk.size(); i += 997)
    memcpy(junk.data() + i, i % 2 ? &kBlockMagic : &kBlockMagicV1, 4);
  ScanResult r = scan_segment(junk.data(), junk.size());
  EXPECT_TRUE(r.blocks.empty());
  EXPECT_TRUE(r.torn_tail);
  EXPECT_EQ(r.valid_end, 0u);

  r = scan_segment(nullptr, 0);
  EXPECT_TRUE(r.blocks.empty());
  EXPECT_FALSE(r.torn_tail);
}

TEST(BlockFormat, DecodingMutatedBlocksWithValidChecksumsNeverOverruns) {
  // What a CRC cannot catch (a writer bug, a collision): every mutation either decodes to
  // records whose views lie inside the batch or is refused. ASan in CI checks the reads.
  auto good = block_of(9, "mutate", 6);
  std::mt19937 rng(11);
  for (int round = 0; round < 2000; round++) {
    auto buf = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; f++) {
      size_t at = kBlockHeaderSize + rng() % (buf.size() - kBlockHeaderSize);
      buf[at] = static_cast<uint8_t>(rng());
    }
    if (rng() % 3 == 0) buf.resize(kBlockHeaderSize + rng() % (buf.size() - kBlockHeaderSize));
    const uint32_t payload = static_cast<uint32_t>(buf.size() - kBlockHeaderSize);
    memcpy(buf.data() + 4, &payload, 4);
    const uint32_t crc = crc32c(buf.data() + kBlockHeaderSize, payload);
    memcpy(buf.data() + 8, &crc, 4);
    Batch *b = batch_new(0);
    if (decode_block(buf.data(), buf.size(), b)) {
      for (auto &r : b->records)
        for (uint32_t m = 0; m < r.meta_count; m++) ASSERT_LE(r.meta[m].key.len, buf.size());
    }
    batch_unref(b);
    ScanResult s = scan_segment(buf.data(), buf.size());
    EXPECT_LE(s.valid_end, buf.size());
  }
}
