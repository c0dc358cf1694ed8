// Batches and their arenas.
#include "batch.h"

#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <xxhash.h>
#include <devmesh/record_fields.hpp>

#include <algorithm>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

namespace devmesh {

namespace {

// Blocks of dead arenas, per thread (no lock; a batch freed on another thread than the one
// that made it just feeds that thread's cache). Bounded by Arena::kCacheBytes.
struct BlockCache {
  struct Kept {
    char *mem;
    size_t size;
  };
  std::vector<Kept> kept;
  size_t bytes = 0;
  static thread_local bool gone;  // the thread is exiting: arenas dying later free their blocks

  ~BlockCache() {
    for (const Kept &k : kept) delete[] k.mem;
    kept.clear();
    bytes = 0;
    gone = true;
  }
  // A kept block of exactly this size (arenas grow through the same sizes), or null.
  char *take(size_t size) {
    if (gone) return nullptr;
    for (size_t i = kept.size(); i-- > 0;) {
      if (kept[i].size != size) continue;
      char *mem = kept[i].mem;
      kept[i] = kept.back();
      kept.pop_back();
      bytes -= size;
      return mem;
    }
    return nullptr;
  }
  // False when full: the caller frees the block.
  bool give(char *mem, size_t size) {
    if (gone || size > Arena::kMaxBlock || bytes + size > Arena::kCacheBytes) return false;
    kept.push_back(Kept{mem, size});
    bytes += size;
    return true;
  }
};

thread_local bool BlockCache::gone = false;
thread_local BlockCache block_cache;

}  // namespace

Arena::~Arena() {
  for (Block &b : blocks_)
    if (block_cache.give(b.mem.get(), b.size)) b.mem.release();
}

size_t Arena::cached_bytes() {
  return block_cache.bytes;
}

void *Arena::alloc_block(size_t len) {
  const size_t last = blocks_.empty() ? 0 : blocks_.back().size;
  size_t size = last ? std::min<size_t>(last * 2, kMaxBlock) : 16 << 10;
  if (size < len) size = len;
  char *mem = block_cache.take(size);
  blocks_.push_back(Block{std::unique_ptr<char[]>(mem ? mem : new char[size]), size});
  reserved_ += size;
  cur_ = blocks_.back().mem.get() + len;
  end_ = blocks_.back().mem.get() + size;
  used_ += len;
  return blocks_.back().mem.get();
}

dm_record *Batch::add() {
  // emplace_back() value-initialises the C struct: zeroed, padding too (a memset after it
  // zeroed it twice, the largest cost of adding a record).
  records.emplace_back();
  dm_record &r = records.back();
  r.priority = -1;
  sync();
  return &r;
}

Batch *batch_new(uint32_t capacity_hint) {
  auto *b = new Batch();
  b->pub.host_private = b;
  b->records.reserve(capacity_hint ? capacity_hint : 16);
  b->sync();
  return b;
}

void batch_unref(Batch *b) {
  if (--b->refs == 0) delete b;
}

namespace {

// Arrays of this capacity or more carry a hash index; below it a scan of a few keys is cheaper
// than hashing one. Without an index, a record with n keys cost n^2/2 key comparisons: 100k keys
// in one request held the loop for seconds.
constexpr uint32_t kIndexFrom = 16;

// The index lives in the arena right after the meta array: a power of two of uint32 slots, at
// least twice the capacity (load <= 1/2), open addressing, each slot 0 (empty) or 1 + a position
// in the array. Only arrays meta_set made carry one; an array that other code made (the storage
// decoder sizes it exactly, meta_count == meta_cap) is replaced by one with an index at its
// first growth, which a full array needs anyway.
uint32_t index_slots(uint32_t cap) {
  uint32_t n = 1;
  while (n < 2 * cap) n <<= 1;
  return n;
}

uint32_t *index_of(const dm_record *rec) {
  return reinterpret_cast<uint32_t *>(rec->meta + rec->meta_cap);
}

// Seeded per process: keys come from clients, who must not be able to pick colliding ones.
uint64_t key_hash(dm_str key) {
  static const uint64_t seed = [] {
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ rd();
  }();
  return XXH3_64bits_withSeed(key.ptr, key.len, seed);
}

// The slot holding key, or the empty slot where it goes.
uint32_t *index_find(const dm_record *rec, dm_str key) {
  uint32_t *slots = index_of(rec);
  const uint32_t mask = index_slots(rec->meta_cap) - 1;
  for (uint32_t i = static_cast<uint32_t>(key_hash(key)) & mask;; i = (i + 1) & mask) {
    const uint32_t s = slots[i];
    if (s == 0) return &slots[i];
    ++meta_set_probes;
    const dm_kv &kv = rec->meta[s - 1];
    if (s - 1 < rec->meta_count && kv.key.len == key.len &&
        std::memcmp(kv.key.ptr, key.ptr, key.len) == 0)
      return &slots[i];
  }
}

// Doubles the array inside the arena; the old one is simply abandoned (it dies with the batch).
// Room for 8 at once: journald sets 5, and a first array of 4 would be copied and abandoned.
void meta_grow(Batch *b, dm_record *rec) {
  const uint32_t cap = rec->meta_cap ? rec->meta_cap * 2 : 8;
  const size_t index_bytes = cap >= kIndexFrom ? sizeof(uint32_t) * index_slots(cap) : 0;
  char *mem = static_cast<char *>(b->arena.alloc(sizeof(dm_kv) * cap + index_bytes));
  auto *arr = reinterpret_cast<dm_kv *>(mem);
  if (rec->meta_count) std::memcpy(arr, rec->meta, sizeof(dm_kv) * rec->meta_count);
  rec->meta = arr;
  rec->meta_cap = cap;
  if (!index_bytes) return;
  std::memset(mem + sizeof(dm_kv) * cap, 0, index_bytes);
  for (uint32_t i = 0; i < rec->meta_count; i++) {
    uint32_t *slot = index_find(rec, arr[i].key);
    if (*slot == 0) *slot = i + 1;
  }
}

}  // namespace

thread_local uint64_t meta_set_probes = 0;

int meta_set(Batch *b, dm_record *rec, dm_str key, dm_str value, uint32_t type) {
  if (rec->meta_cap < kIndexFrom) {
    meta_set_probes += rec->meta_count;
    for (uint32_t i = 0; i < rec->meta_count; i++) {
      dm_kv &kv = rec->meta[i];
      if (kv.key.len == key.len && std::memcmp(kv.key.ptr, key.ptr, key.len) == 0) {
        kv.value = b->arena.copy(value.ptr, value.len);
        kv.type = type;
        return DM_OK;
      }
    }
    if (rec->meta_count == rec->meta_cap) meta_grow(b, rec);
  } else if (rec->meta_count == rec->meta_cap) {
    meta_grow(b, rec);  // a full array may have no index (see index_slots); the new one has
  }
  if (rec->meta_cap >= kIndexFrom) {
    uint32_t *slot = index_find(rec, key);
    if (*slot) {
      rec->meta[*slot - 1].value = b->arena.copy(value.ptr, value.len);
      rec->meta[*slot - 1].type = type;
      return DM_OK;
    }
    *slot = rec->meta_count + 1;
  }
  rec->meta[rec->meta_count].key = b->arena.copy(key.ptr, key.len);
  rec->meta[rec->meta_count].value = b->arena.copy(value.ptr, value.len);
  rec->meta[rec->meta_count].type = type;
  rec->meta[rec->meta_count].reserved = 0;
  rec->meta_count++;
  return DM_OK;
}

namespace {

// The JSON number grammar (RFC 8259): -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool json_number(std::string_view s, bool integer) {
  size_t i = 0;
  auto digits = [&] {
    const size_t from = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > from;
  };
  if (i < s.size() && s[i] == '-') ++i;
  if (i < s.size() && s[i] == '0') {
    ++i;
  } else if (!digits()) {
    return false;
  }
  if (i == s.size()) return true;
  if (integer) return false;
  if (s[i] == '.') {
    ++i;
    if (!digits()) return false;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return false;
  }
  return i == s.size();
}

// Accepts any JSON and counts its nesting.
struct DepthCheck : rapidjson::BaseReaderHandler<rapidjson::UTF8<>, DepthCheck> {
  unsigned depth = 0;
  bool Default() { return true; }
  bool RawNumber(const char *, rapidjson::SizeType, bool) { return true; }
  bool StartObject() { return ++depth <= kMetaMaxDepth; }
  bool EndObject(rapidjson::SizeType) { return --depth, true; }
  bool StartArray() { return ++depth <= kMetaMaxDepth; }
  bool EndArray(rapidjson::SizeType) { return --depth, true; }
};

// Whether rapidjson reads s as one JSON value and nothing more: what every reader of the
// outputs' documents is (the query output, the next devmesh's http input, which refuse 1e999).
bool json_value(std::string_view s) {
  rapidjson::MemoryStream ms(s.data(), s.size());
  DepthCheck h;
  // Kept per thread: a reader allocates its stack on first use (a number is copied onto it).
  static thread_local rapidjson::Reader reader;
  constexpr unsigned kFlags =
      rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag |
      rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseStopWhenDoneFlag;
  // Stopping when the root ends, then checking it ends the text: a NUL inside the text would
  // otherwise read as its end.
  return !reader.Parse<kFlags>(ms, h).IsError() && ms.Tell() == s.size();
}

bool json_container(std::string_view s) {
  return s.size() >= 2 && (s.front() == '{' || s.front() == '[') &&
         (s.back() == '}' || s.back() == ']') && json_value(s);
}

}  // namespace

bool meta_value_valid(dm_str value, uint32_t type) {
  const std::string_view v(value.len ? value.ptr : "", value.len);
  switch (type) {
    case DM_META_STRING:
      return true;
    case DM_META_INT:
    case DM_META_FLOAT:
      // Without an exponent, 300 characters stay below DBL_MAX: readers take it. Else they
      // decide (1e999 overflows a double and is refused).
      return json_number(v, type == DM_META_INT) &&
             ((v.size() <= 300 && v.find_first_of("eE") == std::string_view::npos) ||
              json_value(v));
    case DM_META_BOOL:
      return v == "true" || v == "false";
    case DM_META_NULL:
      return v == "null";
    case DM_META_JSON:
      return json_container(v);
    default:
      return false;
  }
}

size_t record_bytes(const dm_record &r) {
  // The record twice (its batch's array and the output chunk's copy) and its meta array's whole
  // capacity: what a queued record really holds, so queue_limit bounds memory.
  size_t n = 2 * sizeof(dm_record) + sizeof(dm_kv) * r.meta_cap;
  // Unrolled, the member pointers of the constexpr table fold into plain field reads (this
  // runs for every record an output queues).
#pragma GCC unroll 16
  for (const RecordField &f : kRecordFields) n += (r.*f.member).len;
  for (uint32_t i = 0; i < r.meta_count; i++) n += r.meta[i].key.len + r.meta[i].value.len;
  return n;
}

size_t batch_share(Batch *b) {
  if (b->share) return b->share;
  // The arena's reserve, not its use: geometric blocks leave up to half of the last one unused,
  // and an http body's JSON syntax sits there beside the strings (the body is parsed in place).
  const size_t real =
      sizeof(Batch) + b->records.capacity() * sizeof(dm_record) + b->arena.reserved();
  b->share = std::max<size_t>(1, real / std::max<size_t>(1, b->records.size()));
  return b->share;
}

}  // namespace devmesh
