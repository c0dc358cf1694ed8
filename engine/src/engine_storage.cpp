// The engine's side of storage: writing each routed batch as a block, outputs' disk backlogs
// and their loader, replay at start, and storage.max_size (pause or drop_oldest). The blocks'
// and tickets' accounting (STORED after the fsync, .acks, segment deletion) is Delivery's.
#include <cinttypes>
#include <cstring>

#include "engine.h"
#include "log.h"
#include "plugin_call.h"

namespace devmesh {

bool Engine::open_storage() {
  const ServiceConfig &s = cfg_.service;
  StorageOptions o;
  o.path = s.storage_path;
  o.sync = s.storage_sync == "always"  ? SyncPolicy::Always
           : s.storage_sync == "never" ? SyncPolicy::Never
                                       : SyncPolicy::Interval;
  o.sync_interval_ms = static_cast<uint64_t>(s.storage_sync_interval_ms);
  o.max_size = static_cast<uint64_t>(s.storage_max_size);
  o.when_full = s.storage_when_full == "drop_oldest" ? WhenFull::DropOldest : WhenFull::Pause;
  o.segment_size = static_cast<uint64_t>(s.storage_segment_size);
  storage_ = std::make_unique<Storage>(o, metrics_);
  std::string err;
  if (!storage_->open(err)) {
    log_msg(DM_LOG_ERROR, "storage", "%s", err.c_str());
    storage_.reset();
    return false;
  }
  delivery_.set_storage(storage_.get());
  m_storage_full_ = metrics_.gauge(
      "devmesh_storage_full",
      "1 while storage pauses the inputs (max_size reached, or a segment write failed)", "");
  m_storage_dropped_ = metrics_.counter(
      "devmesh_storage_records_dropped_total",
      "Record deliveries dropped with the oldest segment (when_full: drop_oldest)", "");
  m_storage_lost_ =
      metrics_.counter("devmesh_storage_records_unreadable_total",
                       "Record deliveries lost because their block could not be read back", "");
  m_storage_unstored_ = metrics_.counter(
      "devmesh_storage_records_unstored_total",
      "Records whose block could not be written (disk full, I/O error): delivered from memory "
      "only, so a crash before delivery loses them",
      "");

  // Replay: every unfinished block goes to the disk backlog of each output its tag routes to
  // today (filters ran before it was stored), minus those its ack file names.
  uint64_t orphaned = 0;
  storage_->replay([&](const ReplayBlock &rb) {
    Route *r = route_for(std::string(rb.info.tag));
    auto *blk = new StoredBlock();
    blk->id = rb.info.id;
    blk->seg = rb.seg;
    blk->seg_id = rb.seg->id;
    blk->offset = rb.info.offset;
    blk->length = rb.info.length;
    blk->count = rb.info.count;
    blk->remaining.assign(output_slots_.size(), 0);
    for (OutputInstance *o : r->outputs) {
      if (rb.acked->count(o->name_hash)) continue;
      blk->remaining[o->index] = blk->count;
      blk->outputs_left++;
      o->queue.backlog.blocks.push_back(blk);
      o->queue.backlog.records += blk->count;
    }
    if (blk->outputs_left == 0) {
      if (r->outputs.empty()) orphaned += blk->count;
      delete blk;
      return false;
    }
    return true;
  });
  if (orphaned)
    log_msg(DM_LOG_WARN, "storage",
            "%" PRIu64 " stored records match no configured output any more: discarded", orphaned);
  for (auto &out : outputs_) out->m_backlog->set(static_cast<double>(out->queue.backlog.records));
  storage_->start(&loop_, [this](uint64_t id) { delivery_.on_durable(id); });
  log_msg(DM_LOG_INFO, "storage", "storing in %s (sync %s, segments of %" PRIu64 " bytes%s)",
          o.path.c_str(), s.storage_sync.c_str(), storage_->effective_segment_size(),
          o.max_size ? ", bounded by max_size" : "");
  check_storage_full();
  return true;
}

void Engine::store_block(Batch *b, Route *route) {
  const uint64_t id = storage_->next_block_id();
  encode_block(id, std::string_view(b->pub.tag.ptr, b->pub.tag.len), b->records.data(),
               static_cast<uint32_t>(b->records.size()), encode_buf_);
  uint64_t offset = 0;
  Segment *seg = storage_->append(id, encode_buf_, offset);
  if (!seg) {
    // Logged and counted; the records go on from memory only (nothing accepted is lost).
    storage_write_failed(static_cast<uint32_t>(b->records.size()), encode_buf_.size());
    return;
  }
  b->block = delivery_.stored(b, id, seg, offset, static_cast<uint32_t>(encode_buf_.size()),
                              route->outputs, output_slots_.size());
  if (storage_->options().sync == SyncPolicy::Never) delivery_.on_durable(id);
  check_storage_full();
}

void Engine::schedule_pump(OutputInstance *o) {
  if (o->queue.backlog.pump_scheduled) return;
  o->queue.backlog.pump_scheduled = true;
  defer([this, o] {
    o->queue.backlog.pump_scheduled = false;
    pump(o);
  });
}

// Loads blocks of the output's disk backlog into its queue until the queue is full again.
void Engine::pump(OutputInstance *o) {
  DiskBacklog &bl = o->queue.backlog;
  if (stopping_ || !o->started || bl.blocks.empty()) return;
  int loaded = 0;
  while (!bl.blocks.empty() && o->queue.queued_bytes() < o->queue_limit && loaded < 64) {
    StoredBlock *blk = bl.blocks.front();
    bl.blocks.pop_front();
    const uint32_t n = o->index < blk->remaining.size() ? blk->remaining[o->index] : 0;
    bl.records -= n;
    Batch *b = batch_new(blk->count);
    bool ok = storage_->read_block(blk->seg, blk->offset, blk->length, read_buf_) &&
              decode_block(read_buf_.data(), read_buf_.size(), b) &&
              b->records.size() == blk->count;
    if (!ok || n != blk->count) {
      log_msg(DM_LOG_ERROR, o->name.c_str(),
              "block %" PRIu64 " of %s cannot be read back: %u records lost", blk->id,
              blk->seg->path.c_str(), n);
      m_storage_lost_->add(n);
      o->m_failed->add(n);
      delivery_.finished(o, {TicketRun{nullptr, n, blk}}, Outcome::Failed,
                         "a stored block cannot be read back");
      batch_unref(b);
      continue;
    }
    // The block carries its tag: the output is told it like for records that came from memory.
    b->block = blk;
    o->queue.append(b, 0, n);
    batch_unref(b);
    loaded++;
  }
  o->m_backlog->set(static_cast<double>(bl.records));
  // Bounded work per callback: the loop serves inputs and HTTP between rounds.
  if (!bl.blocks.empty() && o->queue.queued_bytes() < o->queue_limit) schedule_pump(o);
  check_idle();
}

void Engine::storage_freed() {
  if (storage_full_) check_storage_full();  // pause mode: resume once below the mark
}

void Engine::check_storage_full() {
  const uint64_t max = storage_->options().max_size;
  if (!max || finished_) return;
  if (storage_->options().when_full == WhenFull::DropOldest) {
    while (storage_->total_bytes() > max && drop_oldest_segment()) {
    }
    return;
  }
  const uint64_t total = storage_->total_bytes();
  if (!storage_over_max_ && total > max) {
    storage_over_max_ = true;
    log_msg(DM_LOG_WARN, "storage",
            "storage full (%" PRIu64 " bytes of max_size %" PRIu64 "): pausing every input", total,
            max);
    update_storage_pause();
  } else if (storage_over_max_ && total <= max / 10 * 9) {
    storage_over_max_ = false;
    log_msg(DM_LOG_INFO, "storage", "storage below max_size (%" PRIu64 " bytes): resuming inputs",
            total);
    update_storage_pause();
  }
}

// A failed segment write (ENOSPC, EDQUOT, EIO) is treated like max_size: with when_full: pause
// or drop_oldest alike, since dropping our own segments may not free what others filled.
void Engine::storage_write_failed(uint32_t records, size_t bytes) {
  m_storage_unstored_->add(records);
  storage_probe_bytes_ = std::max<uint64_t>(storage_probe_bytes_, bytes);
  if (!storage_error_.empty() || finished_) return;
  const int err = storage_->last_error();
  storage_error_ = std::string("cannot write segments in ") + storage_->options().path + ": " +
                   strerror(err ? err : EIO);
  log_msg(DM_LOG_ERROR, "storage",
          "%s: pausing every input; %u records of the failed block go on from memory only; "
          "retrying the write every second",
          storage_error_.c_str(), records);
  update_storage_pause();
  if (!storage_retry_) {
    storage_retry_ = new uv_timer_t;
    uv_timer_init(&loop_, storage_retry_);
    storage_retry_->data = this;
  }
  uv_timer_start(
      storage_retry_, [](uv_timer_t *t) { static_cast<Engine *>(t->data)->retry_storage_write(); },
      1000, 1000);
}

void Engine::retry_storage_write() {
  if (finished_ || storage_error_.empty()) return;
  if (!storage_->probe_write(storage_probe_bytes_)) return;  // still no room: next tick
  uv_timer_stop(storage_retry_);
  log_msg(DM_LOG_INFO, "storage", "segment writes work again in %s: resuming inputs",
          storage_->options().path.c_str());
  storage_error_.clear();
  storage_probe_bytes_ = 0;
  update_storage_pause();
}

void Engine::update_storage_pause() {
  const bool paused = storage_over_max_ || !storage_error_.empty();
  if (paused == storage_full_) return;
  storage_full_ = paused;
  m_storage_full_->set(paused ? 1 : 0);
  for (auto &in : inputs_) paused ? pause_input(in.get()) : resume_input(in.get());
}

bool Engine::drop_oldest_segment() {
  Segment *seg = storage_->oldest_sealed();
  if (!seg) {
    storage_->rotate();
    seg = storage_->oldest_sealed();
    if (!seg) return false;
  }
  const uint64_t seg_id = seg->id;
  const std::string path = seg->path;
  // Its blocks are a prefix of each backlog (backlogs are in block order, and this is the
  // oldest segment). Records already in memory are still delivered.
  uint64_t dropped = 0;
  for (auto &o : outputs_) {
    uint64_t n_out = 0;
    DiskBacklog &bl = o->queue.backlog;
    while (!bl.blocks.empty() && bl.blocks.front()->seg_id == seg_id) {
      StoredBlock *blk = bl.blocks.front();
      bl.blocks.pop_front();
      const uint32_t n = o->index < blk->remaining.size() ? blk->remaining[o->index] : 0;
      bl.records -= n;
      n_out += n;
      // Lost by policy, but lost: an input answering for delivery must not call them done.
      // Finishing the block may delete the segment once nothing names it.
      delivery_.finished(o.get(), {TicketRun{nullptr, n, blk}}, Outcome::Failed,
                         "dropped from full storage (when_full: drop_oldest)");
    }
    o->m_backlog->set(static_cast<double>(bl.records));
    dropped += n_out;
  }
  m_storage_dropped_->add(static_cast<double>(dropped));
  log_msg(DM_LOG_WARN, "storage",
          "storage full: dropped the oldest segment %s with %" PRIu64
          " undelivered record deliveries (when_full: drop_oldest)",
          path.c_str(), dropped);
  storage_->drop_id(seg_id);  // unless the loop above already deleted it
  return true;
}

}  // namespace devmesh
