// Batches: the records of one submit plus the arena that holds their strings. The engine side
// of dm_batch; filters and outputs see only the public dm_batch fields.
#pragma once

#include <devmesh/plugin.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace devmesh {

// Bump allocator; blocks grow geometrically, pointers stay valid until the arena dies. The
// blocks of a dead arena are kept (a few MiB per thread) for the next arenas of that thread:
// at a batch per few hundred records, fresh blocks from malloc cost page faults and heap
// trims for every batch.
class Arena {
 public:
  Arena() = default;
  ~Arena();
  Arena(const Arena &) = delete;
  Arena &operator=(const Arena &) = delete;
  // Inline: a dozen of each per journald record.
  void *alloc(size_t len) {
    len = (len + 7) & ~size_t(7);
    if (static_cast<size_t>(end_ - cur_) < len) return alloc_block(len);
    void *p = cur_;
    cur_ += len;
    used_ += len;
    return p;
  }
  dm_str copy(const void *data, size_t len) {
    if (len == 0) return dm_str{"", 0};
    char *p = static_cast<char *>(alloc(len + 1));
    std::memcpy(p, data, len);
    p[len] = '\0';  // NUL-terminated for the convenience of C plugins
    return dm_str{p, len};
  }
  size_t bytes() const { return used_; }
  // What its blocks take from the heap: used bytes plus each block's unused tail.
  size_t reserved() const { return reserved_; }

  // Most bytes of blocks kept for reuse per thread, and the largest block kept.
  static constexpr size_t kCacheBytes = size_t(4) << 20;
  static constexpr size_t kMaxBlock = size_t(1) << 20;
  // Bytes of blocks this thread keeps for reuse now (for tests).
  static size_t cached_bytes();

 private:
  void *alloc_block(size_t len);  // a new block, then len bytes of it

  struct Block {
    std::unique_ptr<char[]> mem;
    size_t size;
  };
  std::vector<Block> blocks_;
  char *cur_ = nullptr, *end_ = nullptr;  // free part of the newest block
  size_t used_ = 0;
  size_t reserved_ = 0;
};

struct Ticket;
struct StoredBlock;

// Engine-side batch. `pub.host_private` points back here.
struct Batch {
  dm_batch pub{};
  Arena arena;
  std::vector<dm_record> records;
  Ticket *ticket = nullptr;      // set on submit; null for filter-emitted records
  StoredBlock *block = nullptr;  // with storage: the block its records were written as
  // The pipeline plus every chunk holding records. Touched only by the batch's owner: the
  // thread that made it until submit or emit (a plugin's own thread may batch_free it), the loop
  // after. Its arena's blocks go to the cache of whichever thread frees it.
  int refs = 1;
  std::vector<dm_hold *> holds;  // attached by a filter before emit (dm_host_api.hold_attach)
  // What one of its records holds of real memory, for queue_limit: the batch's heap (arena
  // blocks with their unused tails, the record array's capacity) shared evenly by the records
  // routed. 0 until first queued (batch_share); the batch does not change after routing.
  size_t share = 0;

  dm_record *add();
  void sync() {  // keep the public view in step with the vector
    pub.records = records.data();
    pub.count = static_cast<uint32_t>(records.size());
  }
  static Batch *from(const dm_batch *b) { return static_cast<Batch *>(b->host_private); }
};

Batch *batch_new(uint32_t capacity_hint);
void batch_unref(Batch *b);
// type: dm_meta_type, not checked here (the host entry checks it with meta_value_valid).
int meta_set(Batch *b, dm_record *rec, dm_str key, dm_str value, uint32_t type = DM_META_STRING);
// Whether value is valid for type as dm_meta_type defines it: any bytes for a STRING; a JSON
// number for FLOAT, one without fraction or exponent for INT; true/false for BOOL; null for
// NULL; for JSON an object or array, valid UTF-8, nested at most kMetaMaxDepth levels, with
// nothing before or after it. The outputs write the non-string types verbatim into JSON, so
// this is what keeps their documents valid.
bool meta_value_valid(dm_str value, uint32_t type);
constexpr unsigned kMetaMaxDepth = 64;  // the http input's bound on a body's nesting
// Keys meta_set compared on this thread so far: the fuzz oracle's measure of work per input
// byte (a quadratic lookup shows up here, with no clock).
extern thread_local uint64_t meta_set_probes;
// Approximate memory a record holds (its struct plus its strings): the size of a flush
// (batch_bytes) and of what was delivered.
size_t record_bytes(const dm_record &r);
// Real memory per record of b (Batch::share), computed at its first call.
size_t batch_share(Batch *b);

}  // namespace devmesh
