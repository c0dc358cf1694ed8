// Disk storage: write-ahead segment files (seg-<id>.log) with their ack files (seg-<id>.acks),
// appends on the loop thread, group-commit fsync on a storage thread, reads for outputs'
// disk backlogs, replay scan at start, and deletion once every output is done.
#pragma once

#include <uv.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "metrics.h"
#include "storage_format.h"

namespace devmesh {

enum class SyncPolicy { Always, Interval, Never };
enum class WhenFull { Pause, DropOldest };

struct StorageOptions {
  std::string path;
  SyncPolicy sync = SyncPolicy::Interval;
  uint64_t sync_interval_ms = 1000;
  uint64_t max_size = 0;  // 0: unbounded
  WhenFull when_full = WhenFull::Pause;
  uint64_t segment_size = 8 << 20;
};

struct Segment {
  uint64_t id = 0;
  std::string path, acks_path;
  int rfd = -1;      // reads for backlogs
  int acks_fd = -1;  // opened at the first ack
  uint64_t bytes = 0;
  uint64_t live_blocks = 0;  // blocks some output still has to finish
  uint64_t blocks = 0;
  bool sealed = false;
  bool removed = false;  // deleted (drop_oldest) while blocks in memory still name it
};

// A block seen by the replay scan, with the outputs (by name hash) already done with it.
struct ReplayBlock {
  Segment *seg;
  BlockInfo info;
  const std::set<uint64_t> *acked;  // output hashes
};

class Storage {
 public:
  Storage(StorageOptions opts, MetricsRegistry &metrics);
  ~Storage();
  const StorageOptions &options() const { return opts_; }

  // Creates the directory; false with a message when it cannot be used.
  bool open(std::string &error);
  // Scans existing segments in order (truncating torn tails, skipping corrupt blocks) and
  // calls fn for each valid block. Afterwards new blocks go to a fresh segment.
  void replay(const std::function<bool(const ReplayBlock &)> &fn);  // fn: true when live
  // Starts the storage thread; on_durable(id) runs on the loop when blocks up to id are durable.
  void start(uv_loop_t *loop, std::function<void(uint64_t)> on_durable);
  // Final fsync, joins the thread, closes files; deletes segments every output finished.
  void stop();

  // Appends an encoded block (its id from next_block_id()). Returns its segment, or null when
  // the write failed (logged and counted; last_error() says why). offset receives the block's
  // position.
  Segment *append(uint64_t id, const std::vector<uint8_t> &block, uint64_t &offset);
  // errno of the last failed append or probe (ENOSPC, EDQUOT, EIO...), 0 after a success.
  int last_error() const { return last_error_; }
  // Writes `bytes` to a scratch file in the directory and removes it: true when the space is
  // there again after a failed append.
  bool probe_write(uint64_t bytes);
  uint64_t next_block_id() { return next_block_++; }
  // Reads a block back (pread); false when it is unreadable.
  bool read_block(Segment *seg, uint64_t offset, uint32_t length, std::vector<uint8_t> &buf);
  // Records that an output finished a block (no fsync: losing it means a duplicate only).
  void ack(Segment *seg, uint64_t block_id, uint64_t output_hash);
  // A block of seg is finished by every output.
  void block_done(Segment *seg);
  // Deletes the oldest sealed segment (drop_oldest); the caller removed its blocks first.
  Segment *oldest_sealed();
  void drop_id(uint64_t segment_id);
  // Seals the active segment so it can be deleted or dropped.
  void rotate();

  uint64_t total_bytes() const { return total_bytes_; }
  size_t segment_count() const { return segments_.size(); }
  uint64_t effective_segment_size() const { return segment_size_; }

  static uint64_t output_hash(const std::string &name);

 private:
  Segment *new_segment();
  void maybe_delete(Segment *seg);
  void remove(Segment *seg);
  void sync_main();
  void update_gauges();

  StorageOptions opts_;
  uint64_t segment_size_;
  std::deque<std::unique_ptr<Segment>> segments_;    // oldest first; back() is active when open
  std::vector<std::unique_ptr<Segment>> graveyard_;  // removed, still named by live blocks
  Segment *active_ = nullptr;
  int wfd_ = -1;  // the active segment's write descriptor
  int dir_fd_ = -1;
  uint64_t next_block_ = 1, next_segment_ = 1;
  uint64_t total_bytes_ = 0;
  int last_error_ = 0;
  bool ack_failing_ = false;  // ack file writes fail: logged once until one succeeds

  // Storage thread (sync policies always/interval).
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool dir_dirty_ = false;
  int sync_fd_ = -1;              // the active write fd as the thread sees it
  std::vector<int> retired_fds_;  // write fds of sealed segments: fsync, then close
  uint64_t written_ = 0;          // last block id written
  std::atomic<uint64_t> durable_{0};
  uv_async_t *async_ = nullptr;
  std::function<void(uint64_t)> on_durable_;

  Metric *m_bytes_, *m_segments_, *m_blocks_, *m_fsyncs_, *m_replayed_blocks_, *m_replayed_records_,
      *m_corrupt_, *m_torn_, *m_write_errors_, *m_read_errors_, *m_fsync_errors_;
  Histogram *m_fsync_seconds_;
};

}  // namespace devmesh
