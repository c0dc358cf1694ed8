// The hand-over between journald's reader thread and the engine loop: the thread does the
// sd-journal work (next, every field's bytes copied out, the cursor of a batch's last entry)
// while the loop turns what it read into records and submits them, so sd-journal and the rest
// overlap. The loop asks for a read run; the thread reads raw batches into a short queue
// (waiting while it is full, so a stalled pipeline holds at most kAhead of them in memory) until
// the journal's end, an error, or the loop halts it, and then says how the run ended. Between
// runs the thread waits and the loop may use the sd_journal handle (re-open, follow
// notifications): the journal belongs to whichever side holds the run.
#pragma once

#include <devmesh/plugin.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "event_identity.hpp"

namespace devmesh::journald {

struct Position {
  std::string cursor;
  uint64_t realtime_usec = 0;
};

// A batch built and not yet accepted by submit.
struct ReadBatch {
  dm_batch *batch = nullptr;
  Position last;  // its newest entry
};

// Where the comparisons of alike entries (AlikeRun) start over, before a raw batch's first
// entry: after a seek, on the entry positioned on (n base hashes, oldest first), or with none.
struct RunStart {
  Identity at{};
  uint8_t hashes[kRecent][16] = {};
  uint32_t n = 0;  // 0: nothing to compare the next entry with
};

// One entry as sd-journal gave it: its stamps and its fields, in its RawBatch's bytes.
struct RawEntry {
  uint64_t realtime_usec = 0, monotonic_usec = 0;
  uint8_t boot_id[16];
  uint32_t first_field = 0, fields = 0;  // in RawBatch::fields
  // Its cursor in RawBatch::cursors, or -1. Taken only for an entry stamped as the one read
  // before it (or the first after a seek): only such an entry can be alike to one before it.
  int32_t cursor = -1;
  bool after_skipped = false;  // an entry before it could not be read: compared with none
};

// A raw batch read ends at the first entry that brings its bytes to this bound (entries with
// huge fields: fewer of them per batch), so that the Handoff::kAhead batches read ahead stay a
// few MiB.
inline constexpr size_t kRawBatchBytes = 2u << 20;
// Room reserved beyond the bound for the entry that crosses it: a batch ending just past the
// bound does not double its buffer. Reserved pages hold no memory until written.
inline constexpr size_t kRawBatchSlack = 256u << 10;
// Fields per entry reserved for (a service's entry as systemd writes it has about 23), and
// bytes (a small batch option reserves less than the bound).
inline constexpr size_t kFieldsPerEntry = 24;
inline constexpr size_t kBytesPerEntry = 4096;

// The bytes of a raw batch's fields. The reader thread appends every field of every entry here:
// a bounds check and a memcpy each, inlined, rather than std::vector's out-of-line range insert
// (the reader's own work per field is a few percent of sd-journal's; see bench_journald). The
// memory is left uninitialised, so that reserved pages hold nothing until written.
class FieldBytes {
 public:
  FieldBytes() = default;
  FieldBytes(FieldBytes &&o) noexcept
      : buf_(std::move(o.buf_)), size_(std::exchange(o.size_, 0)), cap_(std::exchange(o.cap_, 0)) {}
  FieldBytes &operator=(FieldBytes &&o) noexcept {
    buf_ = std::move(o.buf_);
    size_ = std::exchange(o.size_, 0);
    cap_ = std::exchange(o.cap_, 0);
    return *this;
  }

  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  const char *data() const { return buf_.get(); }
  void clear() { size_ = 0; }
  void truncate(size_t n) { size_ = std::min(size_, n); }
  void reserve(size_t n) {
    if (n > cap_) grow_to(n);
  }
  void release() { *this = FieldBytes(); }

  // Appends len bytes at p; returns their offset.
  size_t append(const void *p, size_t len) {
    if (len > cap_ - size_ || !buf_) [[unlikely]]
      grow_to(std::max(cap_ * 2, size_ + len));
    const size_t at = size_;
    std::memcpy(buf_.get() + at, p, len);
    size_ = at + len;
    return at;
  }

 private:
  void grow_to(size_t n) {
    std::unique_ptr<char[]> b(new char[n]);  // default-initialised: untouched
    if (size_) std::memcpy(b.get(), buf_.get(), size_);
    buf_ = std::move(b);
    cap_ = n;
  }

  std::unique_ptr<char[]> buf_;
  size_t size_ = 0, cap_ = 0;
};

// Entries read by the thread, not yet made into a batch. Its vectors keep their capacity when
// it is recycled (Handoff::spare), so a steady read allocates only its cursors; a buffer grown
// past what a batch of max_entries needs (a burst of large entries) is released instead of
// being kept for good (recycle).
struct RawBatch {
  struct Field {
    size_t offset, len;  // in bytes: "NAME=value", cut to max_field_size
  };
  FieldBytes bytes;
  std::vector<Field> fields;
  std::vector<RawEntry> entries;
  std::vector<std::string> cursors;
  bool has_run_start = false;
  RunStart run_start;
  Position last;  // its newest entry

  void clear() {
    bytes.clear();
    fields.clear();
    entries.clear();
    cursors.clear();
    has_run_start = false;
    last = Position{};
  }
  // Room for a batch of max_entries, reserved once: no regrowth while reading, and no doubling
  // past the byte bound.
  void reserve(size_t max_entries) {
    const size_t room = std::min(kRawBatchBytes + kRawBatchSlack, max_entries * kBytesPerEntry);
    if (bytes.capacity() < room) bytes.reserve(room);
    if (entries.capacity() < max_entries) entries.reserve(max_entries);
    if (fields.capacity() < max_entries * kFieldsPerEntry)
      fields.reserve(max_entries * kFieldsPerEntry);
  }

  // Empties it for reuse, releasing each buffer grown past what reserve() gives.
  void recycle(size_t max_entries) {
    clear();
    if (bytes.capacity() > kRawBatchBytes + kRawBatchSlack) bytes.release();
    if (fields.capacity() > max_entries * kFieldsPerEntry) decltype(fields)().swap(fields);
    if (entries.capacity() > max_entries) std::vector<RawEntry>().swap(entries);
    if (cursors.capacity() > max_entries) std::vector<std::string>().swap(cursors);
  }

  std::string_view field(const Field &f) const {
    return std::string_view(bytes.data() + f.offset, f.len);
  }
};

// How a read run ended.
struct RunEnd {
  bool at_end = false;  // no entry after the last one read
  bool failed = false;  // a read error: retried after a while
  bool reread = false;  // an entry read before its writer finished it: read again shortly
};

class Handoff {
 public:
  // Batches read ahead of build and submit: enough for the thread to read on through a few
  // milliseconds in which a loaded machine does not run the loop, few enough to bound memory
  // (about 1 MiB each at the default batch of 1024 entries; one ends past 2 MiB).
  static constexpr size_t kAhead = 8;
  // Emptied batches kept for reuse once a read run ends (the journal's end while following, a
  // pause): a couple serve a trickle of entries; more would hold their buffers for good,
  // outside queue_limit. During a run every emptied batch is kept: a new one is made only when
  // none is, so they only stand in for batches of the queue and add nothing to its peak, and
  // the thread reuses their buffers rather than allocate new ones.
  static constexpr size_t kSpares = 2;

  // max_entries: the entries of a batch (the batch option), what a kept buffer is sized for.
  explicit Handoff(size_t max_entries) : max_entries_(max_entries) {}

  // ---- the reader thread ----

  // Waits for a run; false when the thread is to quit. reopen: the journal is to be re-opened
  // first (the loop let go of its notification fd).
  bool wait_for_run(bool &reopen) {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return quit_ || run_requested_; });
    run_requested_ = false;
    reopen = reopen_;
    return !quit_;
  }

  // Waits for room for another batch; false when the run is to end (halted, or quitting).
  bool wait_for_room() {
    std::unique_lock lk(mu_);
    cv_.wait(lk, [&] { return quit_ || halted_ || ready_.size() < kAhead; });
    return !quit_ && !halted_;
  }

  void push(RawBatch &&b) {
    std::lock_guard lk(mu_);
    ready_.push_back(std::move(b));
  }

  // A batch emptied by the loop, whose buffers are already grown, or a new one (reserved
  // outside the lock).
  RawBatch spare() {
    RawBatch b;
    {
      std::lock_guard lk(mu_);
      if (!spare_.empty()) {
        b = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    b.reserve(max_entries_);
    return b;
  }

  // A batch taken with spare() and not pushed (a read of no entry, or a failed one): kept for
  // the next read rather than freed and allocated again (following the journal's end).
  void give_back(RawBatch &&b) {
    b.recycle(max_entries_);
    std::lock_guard lk(mu_);
    keep(std::move(b));
  }

  void end_run(RunEnd end) {
    std::vector<RawBatch> excess;  // freed after the lock
    std::lock_guard lk(mu_);
    while (spare_.size() > kSpares) {
      excess.push_back(std::move(spare_.back()));
      spare_.pop_back();
    }
    end_ = end;
    run_ended_ = true;
  }

  // ---- the loop ----

  void request_run(bool reopen) {
    std::lock_guard lk(mu_);
    halted_ = false;
    reopen_ = reopen;
    run_requested_ = true;
    cv_.notify_all();
  }

  // Pause and stop: the run ends after the batch being read (set), or may go on (cleared).
  void halt(bool on) {
    std::lock_guard lk(mu_);
    halted_ = on;
    cv_.notify_all();
  }

  void quit() {
    std::lock_guard lk(mu_);
    quit_ = true;
    cv_.notify_all();
  }

  // The oldest batch not yet built, left in place until pop(); null when there is none. The
  // thread only appends behind it, which moves no element of a deque.
  RawBatch *front() {
    std::lock_guard lk(mu_);
    return ready_.empty() ? nullptr : &ready_.front();
  }

  // Drops the front batch (built, or dropped): room for the thread, and its buffers for reuse.
  void pop() {
    RawBatch b;
    {
      std::lock_guard lk(mu_);
      b = std::move(ready_.front());
      ready_.pop_front();
      cv_.notify_all();
    }
    // Emptied (and its excess released) outside the lock: the thread does not wait on it.
    b.recycle(max_entries_);
    std::lock_guard lk(mu_);
    keep(std::move(b));
  }

  // After the thread is joined: drops what it read and nobody built.
  void drop_all() {
    std::lock_guard lk(mu_);
    ready_.clear();
    spare_.clear();
  }

  // True once when the run has ended, with how.
  bool run_ended(RunEnd &end) {
    std::lock_guard lk(mu_);
    if (!run_ended_) return false;
    run_ended_ = false;
    end = end_;
    return true;
  }

 private:
  // Under mu_. A batch beyond kAhead (none, in effect) stays the caller's, which frees it after
  // the lock.
  void keep(RawBatch &&b) {
    if (spare_.size() < kAhead) spare_.push_back(std::move(b));
  }

  const size_t max_entries_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RawBatch> ready_;
  std::vector<RawBatch> spare_;
  bool run_requested_ = false, reopen_ = false, halted_ = false, quit_ = false, run_ended_ = false;
  RunEnd end_;
};

}  // namespace devmesh::journald
