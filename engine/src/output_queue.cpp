// One output's queue (see output_queue.h): sealing chunks, dispatching flushes (on the loop or
// on worker threads), completions, retries with backoff and jitter, bisecting poison chunks,
// dead-lettering, and the fullness that pauses inputs or spills to the disk backlog.
#include "output_queue.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "engine.h"
#include "log.h"
#include "plugin_call.h"
#include "record_json.h"

namespace devmesh {

OutputQueue::~OutputQueue() = default;

Engine *OutputQueue::engine() const {
  return out_->engine;
}

static void fill_view(Chunk *c) {
  c->view.records = c->records.data();
  c->view.count = static_cast<uint32_t>(c->records.size());
  c->view.tag = dm_str{c->tag.c_str(), c->tag.size()};
  c->view.host_private = c;
}

void OutputQueue::init(uv_loop_t *loop) {
  flush_timer_ = new uv_timer_t;
  uv_timer_init(loop, flush_timer_);
  flush_timer_->data = this;
  // A prepare handle runs just before the loop blocks for I/O: whatever the turn's inputs
  // submitted is in the filling chunk by then, so an idle output sends it all in one flush.
  turn_end_ = new uv_prepare_t;
  uv_prepare_init(loop, turn_end_);
  turn_end_->data = this;
}

uint32_t OutputQueue::slots() const {
  // A worker thread blocks in its flush: more than one per thread would only wait in line.
  return out_->desc.flags & DM_FLUSH_ON_WORKER ? out_->workers : out_->workers * out_->in_flight;
}

bool OutputQueue::behind() const {
  return !ready_.empty() || inflight_ >= slots() || !retry_timers_.empty() ||
         !backlog.blocks.empty();
}

void OutputQueue::on_turn_end() {
  // Behind, the chunk keeps filling up to batch_size, batch_bytes or flush_interval; the
  // handle stays active, so the first turn that finds a free slot sends it.
  if (filling_ && behind()) return;
  if (!filling_) uv_prepare_stop(turn_end_);
  seal();
  dispatch();
}

bool OutputQueue::over_limit() const {
  return queued_bytes_ > out_->queue_limit;
}

void OutputQueue::count_queued() {
  out_->m_qrecords->set(queued_records_);
  out_->m_qbytes->set(queued_bytes_);
}

// A chunk's record array is memory held whether or not it is filled: its capacity counts.
void OutputQueue::recount_array(Chunk *c) {
  const size_t now = c->records.capacity() * sizeof(dm_record);
  queued_bytes_ = queued_bytes_ + now - c->array_bytes;
  c->held = c->held + now - c->array_bytes;
  c->array_bytes = now;
}

void OutputQueue::append(Batch *b, uint32_t from, uint32_t n) {
  OutputInstance *o = out_;
  const size_t share = batch_share(b);
  const std::string_view tag(b->pub.tag.ptr, b->pub.tag.len);
  // One tag per chunk: the output is told its records' tag (it may route by it).
  if (filling_ && n > 0 && filling_->tag != tag) seal();
  uint32_t i = from, end = from + n;
  while (i < end) {
    if (!filling_) {
      filling_ = new Chunk();
      filling_->out = o;
      filling_->tag.assign(tag);
      // Only what this append brings (a turn-end flush sends small chunks): the array grows
      // as more comes, and its capacity is counted against queue_limit.
      filling_->records.reserve(std::min<size_t>(o->batch_size, end - i));
      uv_timer_start(
          flush_timer_, [](uv_timer_t *h) { static_cast<OutputQueue *>(h->data)->flush_all(); },
          o->flush_interval_ms, 0);
      if (o->adaptive_flush && turn_end_)
        uv_prepare_start(
            turn_end_, [](uv_prepare_t *h) { static_cast<OutputQueue *>(h->data)->on_turn_end(); });
    }
    Chunk *c = filling_;
    uint32_t start = i;
    size_t bytes = 0;
    while (i < end && c->records.size() < o->batch_size && c->bytes + bytes < o->batch_bytes) {
      bytes += record_bytes(b->records[i]);
      c->records.push_back(b->records[i]);
      i++;
    }
    uint32_t taken = i - start;
    if (taken) {
      if (c->sources.empty() || c->sources.back() != b) {
        b->refs++;
        c->sources.push_back(b);
      }
      if (!c->runs.empty() && c->runs.back().ticket == b->ticket &&
          c->runs.back().block == b->block && (b->ticket || b->block))
        c->runs.back().count += taken;
      else
        c->runs.push_back(TicketRun{b->ticket, taken, b->block});
      c->bytes += bytes;
      c->held += share * taken;
      queued_bytes_ += share * taken;
      recount_array(c);
      queued_records_ += taken;
      o->m_in->add(taken);
    }
    if (c->records.size() >= o->batch_size || c->bytes >= o->batch_bytes || taken == 0) seal();
  }
  count_queued();
  update_fullness();
  dispatch();
}

void OutputQueue::seal() {
  Chunk *c = filling_;
  if (!c) return;
  filling_ = nullptr;
  uv_timer_stop(flush_timer_);
  if (turn_end_) uv_prepare_stop(turn_end_);
  fill_view(c);
  ready_.push_back(c);
}

void OutputQueue::dispatch() {
  if (dispatching_) return;  // the loop below picks up whatever a completion queued
  dispatching_ = true;
  while (!ready_.empty() && inflight_ < slots()) {
    Chunk *c = ready_.front();
    ready_.pop_front();
    merge_ready(c);
    inflight_++;
    c->flush_start_ns = monotonic_ns();
    if (out_->desc.flags & DM_FLUSH_ON_WORKER) {
      {
        std::lock_guard<std::mutex> lk(wq_mu_);
        wq_.push_back(c);
      }
      wq_cv_.notify_one();
    } else {
      flush_now(c);
    }
  }
  dispatching_ = false;
}

// Chunks still waiting behind c (sealed while every slot was busy) join it, up to batch_size
// and batch_bytes: a backlog goes out in full batches, not in the small chunks each turn or
// flush_interval sealed. Only fresh chunks of c's tag that follow it directly: order is kept,
// and ticket runs, sources and block references move over unchanged, so Delivery hears of
// exactly the same records.
void OutputQueue::merge_ready(Chunk *c) {
  if (c->no_merge) return;
  const OutputInstance *o = out_;
  uint32_t merged = 0;
  while (!ready_.empty()) {
    Chunk *n = ready_.front();
    if (n->no_merge || n->tag != c->tag || c->records.size() + n->records.size() > o->batch_size ||
        c->bytes + n->bytes > o->batch_bytes)
      break;
    ready_.pop_front();
    c->records.insert(c->records.end(), n->records.begin(), n->records.end());
    c->sources.insert(c->sources.end(), n->sources.begin(), n->sources.end());  // their refs
    for (const TicketRun &r : n->runs) {
      if (!c->runs.empty() && c->runs.back().ticket == r.ticket &&
          c->runs.back().block == r.block && (r.ticket || r.block))
        c->runs.back().count += r.count;
      else
        c->runs.push_back(r);
    }
    c->bytes += n->bytes;
    // n's shares move to c; n's array is freed with it, c's may have grown.
    c->held += n->held - n->array_bytes;
    queued_bytes_ -= n->array_bytes;
    recount_array(c);
    delete n;
    merged++;
  }
  if (!merged) return;
  fill_view(c);
  out_->m_merged->add(merged);
}

void OutputQueue::flush_now(Chunk *c) {
  OutputInstance *o = out_;
  dm_flush_result res;
  memset(&res, 0, sizeof res);
  dm_flush_status st;
  {
    PluginCall call(o->name.c_str(), "flush", c->tag.c_str());
    st = o->desc.flush(o->state, nullptr, &c->view, reinterpret_cast<dm_flush_token *>(c), &res);
  }
  if (st != DM_FLUSH_PENDING) {
    // A synchronous result is handled at once (no loop round trip per chunk); the plugin's
    // flush has returned, and acks to inputs are deferred, so nothing re-enters a plugin.
    Completion done{c, st, res.retry_after_ms, res.reason};
    on_completion(done);
  }
}

void OutputQueue::worker_main(uint32_t index, std::promise<int> *init) {
  OutputInstance *o = out_;
  WatchedThread watched(
      "worker", static_cast<uint64_t>(engine()->config().service.watchdog_flush_ms) * 1000000);
  void *ws = nullptr;
  int rc = 0;
  if (o->desc.worker_init) {
    PluginCall call(o->name.c_str(), "worker_init");
    rc = o->desc.worker_init(o->state, index, &ws);
  }
  init->set_value(rc);
  if (rc != 0) return;
  for (;;) {
    Chunk *c;
    {
      std::unique_lock<std::mutex> lk(wq_mu_);
      wq_cv_.wait(lk, [this] { return wq_stop_ || !wq_.empty(); });
      if (wq_.empty()) break;  // stopping and nothing left
      c = wq_.front();
      wq_.pop_front();
    }
    dm_flush_result res;
    memset(&res, 0, sizeof res);
    dm_flush_status st;
    {
      PluginCall call(o->name.c_str(), "flush", c->tag.c_str());
      st = o->desc.flush(o->state, ws, &c->view, reinterpret_cast<dm_flush_token *>(c), &res);
    }
    if (st != DM_FLUSH_PENDING)
      engine()->complete(Completion{c, st, res.retry_after_ms, res.reason});
  }
  if (o->desc.worker_fini) {
    PluginCall call(o->name.c_str(), "worker_fini");
    o->desc.worker_fini(o->state, ws);
  }
}

bool OutputQueue::start_workers(std::string &error) {
  if (!(out_->desc.flags & DM_FLUSH_ON_WORKER)) return true;
  for (uint32_t i = 0; i < out_->workers; i++) {
    std::promise<int> init;
    auto fut = init.get_future();
    threads_.emplace_back([this, i, &init] { worker_main(i, &init); });
    if (fut.get() != 0) {
      error = out_->name + ": worker " + std::to_string(i) + " failed to start";
      return false;
    }
  }
  return true;
}

void OutputQueue::stop_workers() {
  {
    std::lock_guard<std::mutex> lk(wq_mu_);
    wq_stop_ = true;
  }
  wq_cv_.notify_all();
  for (auto &t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

void OutputQueue::release_all() {
  std::vector<Chunk *> left(ready_.begin(), ready_.end());
  if (filling_) left.push_back(filling_);
  for (uv_timer_t *t : retry_timers_) {
    left.push_back(static_cast<Chunk *>(t->data));
    uv_close(reinterpret_cast<uv_handle_t *>(t),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
  }
  retry_timers_.clear();
  ready_.clear();
  filling_ = nullptr;
  for (Chunk *c : left) {
    for (Batch *b : c->sources) batch_unref(b);
    delete c;
  }
  if (flush_timer_)
    uv_close(reinterpret_cast<uv_handle_t *>(flush_timer_),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
  flush_timer_ = nullptr;
  if (turn_end_)
    uv_close(reinterpret_cast<uv_handle_t *>(turn_end_),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_prepare_t *>(h); });
  turn_end_ = nullptr;
}

void OutputQueue::on_completion(Completion &done) {
  Chunk *c = done.chunk;
  OutputInstance *o = out_;
  inflight_--;
  double secs = (monotonic_ns() - c->flush_start_ns) / 1e9;
  o->m_latency->observe(secs);
  size_t n = c->records.size();
  std::string reason = done.reason.empty() ? "no reason given" : done.reason;
  std::vector<RecordMark> marks;
  {
    // Marks belong to this try only: a retried or split chunk starts without them.
    std::lock_guard<std::mutex> lk(c->marks_mu);
    marks.swap(c->marks);
  }
  switch (done.status) {
    case DM_FLUSH_OK:
      last_error_.clear();
      if (!marks.empty()) {
        finish_marked(c, marks);
        break;
      }
      o->m_out->add(n);
      o->m_bytes->add(c->bytes);
      this->done(c, Outcome::Delivered, {});
      break;
    case DM_FLUSH_RETRY:
      c->attempts++;
      last_error_ = reason;
      o->m_retried->add(n);
      retry_or_give_up(c, reason, done.retry_after_ms);
      break;
    case DM_FLUSH_SPLIT:
      if (n > 1) {
        // Bisect: the halves go back to the front of the queue, in order.
        std::vector<uint8_t> keep(n, 0);
        std::fill(keep.begin(), keep.begin() + n / 2, 1);
        Chunk *second = split_off(c, keep);
        c->attempts = second->attempts = 0;
        log_msg(DM_LOG_WARN, o->name.c_str(), "splitting %zu records into %zu + %zu: %s", n,
                c->records.size(), second->records.size(), reason.c_str());
        ready_.push_front(second);
        ready_.push_front(c);
        break;
      }
      [[fallthrough]];
    case DM_FLUSH_ERROR:
    default:
      last_error_ = reason;
      log_msg(DM_LOG_ERROR, o->name.c_str(), "%zu records cannot be delivered: %s", n,
              reason.c_str());
      dead_letter(c, reason);
      break;
  }
  dispatch();
}

// A chunk whose try failed (attempts already counted): another try later, or dead-lettered
// once over retry_limit.
void OutputQueue::retry_or_give_up(Chunk *c, const std::string &reason, uint32_t retry_after_ms) {
  OutputInstance *o = out_;
  const size_t n = c->records.size();
  if (o->retry_limit >= 0 && c->attempts > static_cast<uint64_t>(o->retry_limit)) {
    log_msg(DM_LOG_ERROR, o->name.c_str(), "giving up on %zu records after %u tries: %s", n,
            c->attempts, reason.c_str());
    dead_letter(c, "retry limit " + std::to_string(o->retry_limit) + " reached: " + reason);
  } else {
    log_msg(DM_LOG_WARN, o->name.c_str(), "flush of %zu records failed (try %u): %s", n,
            c->attempts, reason.c_str());
    c->no_merge = true;
    schedule_retry(c, retry_after_ms);
  }
}

// A flush that succeeded with some records refused one by one (flush_record_status): the
// refused ones are dead-lettered with their own reasons (or counted failed), the ones to retry
// go back as a chunk of their own, and only the rest count as delivered.
void OutputQueue::finish_marked(Chunk *c, std::vector<RecordMark> &marks) {
  OutputInstance *o = out_;
  const size_t n = c->records.size();
  enum : uint8_t { kOk = 0, kRetry = 1, kError = 2 };
  std::vector<uint8_t> cls(n, kOk);
  std::vector<const std::string *> why(n, nullptr);
  size_t stray = 0;
  for (const RecordMark &m : marks) {
    if (m.index >= n) {
      stray++;
      continue;
    }
    cls[m.index] = m.status == DM_FLUSH_OK ? kOk : m.status == DM_FLUSH_RETRY ? kRetry : kError;
    why[m.index] = &m.reason;
  }
  if (stray)
    log_msg(DM_LOG_ERROR, o->name.c_str(),
            "%zu record results name no record of a %zu-record flush: ignored (a plugin bug)",
            stray, n);

  std::vector<uint8_t> keep(n);
  for (size_t i = 0; i < n; i++) keep[i] = cls[i] != kError;
  Chunk *refused = split_off(c, keep);
  if (refused) {
    // split_off keeps the order, so the refused records' reasons follow their indexes.
    for (size_t i = 0; i < n; i++)
      if (cls[i] == kError)
        refused->reasons.push_back(why[i]->empty() ? "refused by the output" : *why[i]);
  }
  std::vector<uint8_t> remaining;  // over c's records after the first split
  std::string retry_reason;
  for (size_t i = 0; i < n; i++) {
    if (cls[i] == kError) continue;
    remaining.push_back(cls[i] != kRetry);
    if (cls[i] == kRetry && retry_reason.empty()) retry_reason = *why[i];
  }
  Chunk *again = split_off(c, remaining);

  o->m_out->add(c->records.size());
  o->m_bytes->add(c->bytes);
  done(c, Outcome::Delivered, {});
  if (refused) {
    last_error_ = refused->reasons.front();
    log_msg(DM_LOG_ERROR, o->name.c_str(), "%zu of %zu records refused one by one: %s",
            refused->records.size(), n, refused->reasons.front().c_str());
    dead_letter(refused, refused->reasons.front());
  }
  if (again) {
    if (retry_reason.empty()) retry_reason = "no reason given";
    again->attempts++;
    o->m_retried->add(again->records.size());
    retry_or_give_up(again, retry_reason, 0);
  }
}

// Moves the records of c whose keep[i] is 0 into a new chunk (null when there are none), in
// order, with their ticket runs cut at the same records; both chunks hold every source batch.
Chunk *OutputQueue::split_off(Chunk *c, const std::vector<uint8_t> &keep) {
  const size_t n = c->records.size();
  size_t moving = 0;
  for (size_t i = 0; i < n; i++) moving += keep[i] ? 0 : 1;
  if (moving == 0) return nullptr;
  auto *out = new Chunk();
  out->out = c->out;
  out->tag = c->tag;
  out->attempts = c->attempts;
  std::vector<dm_record> stay;
  std::vector<TicketRun> stay_runs;
  stay.reserve(n - moving);
  out->records.reserve(moving);
  auto add_run = [](std::vector<TicketRun> &runs, const TicketRun &r) {
    // Runs of neither ticket nor block merge too: nothing is told about them.
    if (!runs.empty() && runs.back().ticket == r.ticket && runs.back().block == r.block)
      runs.back().count++;
    else
      runs.push_back(TicketRun{r.ticket, 1, r.block});
  };
  size_t run = 0;
  uint32_t used = 0;  // records of c->runs[run] already walked
  const TicketRun none{nullptr, 1, nullptr};
  for (size_t i = 0; i < n; i++) {
    while (run < c->runs.size() && used == c->runs[run].count) {
      run++;
      used = 0;
    }
    const TicketRun &r = run < c->runs.size() ? c->runs[run] : none;
    used++;
    if (keep[i]) {
      stay.push_back(c->records[i]);
      add_run(stay_runs, r);
    } else {
      out->records.push_back(c->records[i]);
      add_run(out->runs, r);
    }
  }
  c->records = std::move(stay);
  c->runs = std::move(stay_runs);
  c->no_merge = out->no_merge = true;
  out->sources = c->sources;
  for (Batch *b : out->sources) b->refs++;
  c->bytes = 0;
  for (auto &r : c->records) c->bytes += record_bytes(r);
  for (auto &r : out->records) out->bytes += record_bytes(r);
  // The records' shares go with them (records of one batch share evenly; by count is close
  // enough across batches, and the total is kept exactly); both arrays are new.
  const size_t shares = c->held - c->array_bytes;
  out->held = shares * moving / n;
  c->held -= out->held;
  recount_array(c);
  recount_array(out);
  fill_view(c);
  fill_view(out);
  return out;
}

void OutputQueue::done(Chunk *c, Outcome outcome, const std::string &failed_reason) {
  engine()->delivery().finished(out_, c->runs, outcome, failed_reason, &c->reasons);
  queued_bytes_ -= c->held;
  queued_records_ -= c->records.size();
  count_queued();
  for (Batch *b : c->sources) batch_unref(b);
  delete c;
  update_fullness();
  engine()->check_idle();
  if (out_->retiring) engine()->wake();  // a reload waits for its queue to empty
}

void OutputQueue::schedule_retry(Chunk *c, uint32_t retry_after_ms) {
  OutputInstance *o = out_;
  // Exponential backoff with jitter in [base/2, base], capped; the output's retry_after wins
  // when it asks for longer.
  double base =
      std::min<double>(o->retry_max_wait_ms,
                       o->retry_wait_ms * std::pow(2.0, std::min<uint32_t>(c->attempts - 1, 30)));
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  double wait = base / 2 + std::uniform_real_distribution<double>(0, base / 2)(rng);
  uint64_t delay = std::max<uint64_t>(static_cast<uint64_t>(wait), retry_after_ms);
  if (engine()->stopping()) delay = std::min<uint64_t>(delay, 250);  // hurry within the grace
  auto *t = new uv_timer_t;
  uv_timer_init(engine()->loop(), t);
  t->data = c;
  retry_timers_.insert(t);
  uv_timer_start(
      t,
      [](uv_timer_t *h) {
        auto *ch = static_cast<Chunk *>(h->data);
        OutputQueue &q = ch->out->queue;
        q.retry_timers_.erase(h);
        q.ready_.push_front(ch);
        q.dispatch();
        uv_close(reinterpret_cast<uv_handle_t *>(h),
                 [](uv_handle_t *hh) { delete reinterpret_cast<uv_timer_t *>(hh); });
      },
      delay, 0);
}

void OutputQueue::dead_letter(Chunk *c, const std::string &reason) {
  OutputInstance *o = out_;
  size_t n = c->records.size();
  bool written = false;
  std::string write_error;
  if (!o->dead_letter_path.empty()) {
    std::string buf;
    buf.reserve(n * 256);
    for (size_t i = 0; i < n; i++)
      append_dead_letter_json(buf, c->records[i], o->name,
                              i < c->reasons.size() ? c->reasons[i] : reason);
    int fd = open(o->dead_letter_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd >= 0) {
      size_t off = 0;
      while (off < buf.size()) {
        ssize_t w = write(fd, buf.data() + off, buf.size() - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
      }
      written = off == buf.size() && fsync(fd) == 0;
      close(fd);
    }
    if (!written) {
      write_error = strerror(errno);
      log_msg(DM_LOG_ERROR, o->name.c_str(), "cannot write dead-letter file %s: %s",
              o->dead_letter_path.c_str(), write_error.c_str());
    }
  }
  if (written) {
    o->m_dead->add(n);
    done(c, Outcome::DeadLettered, {});
    return;
  }
  // Lost for this output: its tickets say so (failed, never delivered or dead-lettered), so an
  // input that answers for delivery does not answer 2xx for them.
  o->m_failed->add(n);
  log_msg(DM_LOG_ERROR, o->name.c_str(), "%zu records failed permanently and were not kept%s", n,
          o->dead_letter_path.empty() ? " (set dead_letter_path to keep them)" : "");
  const std::string why = o->dead_letter_path.empty()
                              ? " (no dead_letter_path)"
                              : " (dead-letter file not writable: " + write_error + ")";
  for (auto &r : c->reasons) r += why;
  done(c, Outcome::Failed, reason + why);
}

void OutputQueue::update_fullness() {
  OutputInstance *o = out_;
  Engine *e = engine();
  if (e->storage_on()) {
    // With storage a full queue spills to disk instead of pausing its inputs.
    if (!backlog.blocks.empty() && queued_bytes_ <= o->queue_limit / 2) e->schedule_pump(o);
    return;
  }
  bool full = queued_bytes_ > o->queue_limit;
  bool empty_enough = queued_bytes_ <= o->queue_limit / 2;
  if (!full_ && full) {
    full_ = true;
    log_msg(DM_LOG_WARN, o->name.c_str(), "queue full (%zu bytes): pausing its inputs",
            queued_bytes_);
    for (InputInstance *in : o->feeders) e->pause_input(in);
  } else if (full_ && empty_enough) {
    full_ = false;
    log_msg(DM_LOG_INFO, o->name.c_str(), "queue drained (%zu bytes): resuming its inputs",
            queued_bytes_);
    for (InputInstance *in : o->feeders) e->resume_input(in);
  }
}

}  // namespace devmesh
