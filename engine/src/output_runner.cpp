// Output queues: sealing chunks, dispatching flushes (on the loop or on worker threads),
// completions, retries with backoff and jitter, bisecting poison chunks, dead-lettering, and
// the backpressure that pauses inputs when a queue is full.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>

#include "engine.h"
#include "log.h"
#include "plugin_call.h"
#include "record_json.h"

namespace devmesh {

OutputInstance::~OutputInstance() = default;

static void fill_view(Chunk *c) {
  c->view.records = c->records.data();
  c->view.count = static_cast<uint32_t>(c->records.size());
  c->view.tag = dm_str{nullptr, 0};
  c->view.host_private = c;
}

void Engine::seal(OutputInstance *o) {
  Chunk *c = o->filling;
  if (!c) return;
  o->filling = nullptr;
  uv_timer_stop(o->flush_timer);
  fill_view(c);
  o->ready.push_back(c);
}

void Engine::dispatch(OutputInstance *o) {
  if (o->dispatching) return;  // the loop below picks up whatever a completion queued
  o->dispatching = true;
  while (!o->ready.empty() && o->inflight < o->workers) {
    Chunk *c = o->ready.front();
    o->ready.pop_front();
    o->inflight++;
    c->flush_start_ns = monotonic_ns();
    if (o->desc.flags & DM_FLUSH_ON_WORKER) {
      {
        std::lock_guard<std::mutex> lk(o->wq_mu);
        o->wq.push_back(c);
      }
      o->wq_cv.notify_one();
    } else {
      flush_now(o, c);
    }
  }
  o->dispatching = false;
}

void Engine::flush_now(OutputInstance *o, Chunk *c) {
  dm_flush_result res;
  memset(&res, 0, sizeof res);
  dm_flush_status st;
  {
    PluginCall call(o->name.c_str(), "flush");
    st = o->desc.flush(o->state, nullptr, &c->view, reinterpret_cast<dm_flush_token *>(c), &res);
  }
  if (st != DM_FLUSH_PENDING) {
    // A synchronous result is handled at once (no loop round trip per chunk); the plugin's
    // flush has returned, and acks to inputs are deferred, so nothing re-enters a plugin.
    Completion done{c, st, res.retry_after_ms, res.reason};
    on_completion(done);
  }
}

void Engine::worker_main(OutputInstance *o, uint32_t index, std::promise<int> *init) {
  WatchedThread watched("worker", static_cast<uint64_t>(cfg_.service.watchdog_flush_ms) * 1000000);
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
      std::unique_lock<std::mutex> lk(o->wq_mu);
      o->wq_cv.wait(lk, [o] { return o->wq_stop || !o->wq.empty(); });
      if (o->wq.empty()) break;  // stopping and nothing left
      c = o->wq.front();
      o->wq.pop_front();
    }
    dm_flush_result res;
    memset(&res, 0, sizeof res);
    dm_flush_status st;
    {
      PluginCall call(o->name.c_str(), "flush");
      st = o->desc.flush(o->state, ws, &c->view, reinterpret_cast<dm_flush_token *>(c), &res);
    }
    if (st != DM_FLUSH_PENDING) complete(Completion{c, st, res.retry_after_ms, res.reason});
  }
  if (o->desc.worker_fini) {
    PluginCall call(o->name.c_str(), "worker_fini");
    o->desc.worker_fini(o->state, ws);
  }
}

bool Engine::start_workers(OutputInstance *o, std::string &error) {
  if (!(o->desc.flags & DM_FLUSH_ON_WORKER)) return true;
  for (uint32_t i = 0; i < o->workers; i++) {
    std::promise<int> init;
    auto fut = init.get_future();
    o->threads.emplace_back([this, o, i, &init] { worker_main(o, i, &init); });
    if (fut.get() != 0) {
      error = o->name + ": worker " + std::to_string(i) + " failed to start";
      return false;
    }
  }
  return true;
}

void Engine::stop_workers(OutputInstance *o) {
  {
    std::lock_guard<std::mutex> lk(o->wq_mu);
    o->wq_stop = true;
  }
  o->wq_cv.notify_all();
  for (auto &t : o->threads)
    if (t.joinable()) t.join();
  o->threads.clear();
}

void Engine::complete(Completion c) {
  std::lock_guard<std::mutex> lk(cq_mu_);
  if (wake_closed_) {
    // A late completion after shutdown: the records were never acknowledged, so their inputs
    // re-send them after a restart. The process is exiting; the chunk is left to it.
    return;
  }
  cq_.push_back(std::move(c));
  uv_async_send(&wake_);
}

void Engine::on_completion(Completion &done) {
  Chunk *c = done.chunk;
  OutputInstance *o = c->out;
  o->inflight--;
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
      o->last_error.clear();
      if (!marks.empty()) {
        finish_marked(c, marks);
        break;
      }
      o->m_out->add(n);
      o->m_bytes->add(c->bytes);
      chunk_done(c, Outcome::Delivered, {});
      break;
    case DM_FLUSH_RETRY:
      c->attempts++;
      o->last_error = reason;
      o->m_retried->add(n);
      if (o->retry_limit >= 0 && c->attempts > static_cast<uint64_t>(o->retry_limit)) {
        log_msg(DM_LOG_ERROR, o->name.c_str(), "giving up on %zu records after %u tries: %s", n,
                c->attempts, reason.c_str());
        dead_letter(c, "retry limit " + std::to_string(o->retry_limit) + " reached: " + reason);
      } else {
        log_msg(DM_LOG_WARN, o->name.c_str(), "flush of %zu records failed (try %u): %s", n,
                c->attempts, reason.c_str());
        schedule_retry(c, done.retry_after_ms);
      }
      break;
    case DM_FLUSH_SPLIT:
      if (n > 1) {
        // Bisect: the halves go back to the front of the queue, in order.
        auto *second = new Chunk();
        second->out = o;
        size_t half = n / 2;
        second->records.assign(c->records.begin() + half, c->records.end());
        c->records.resize(half);
        // Split the ticket runs at the same record.
        std::vector<TicketRun> first_runs, second_runs;
        size_t seen = 0;
        for (auto r : c->runs) {
          if (seen + r.count <= half)
            first_runs.push_back(r);
          else if (seen >= half)
            second_runs.push_back(r);
          else {
            uint32_t a = static_cast<uint32_t>(half - seen);
            first_runs.push_back(TicketRun{r.ticket, a, r.block});
            second_runs.push_back(TicketRun{r.ticket, r.count - a, r.block});
          }
          seen += r.count;
        }
        c->runs = std::move(first_runs);
        second->runs = std::move(second_runs);
        second->sources = c->sources;
        for (Batch *b : second->sources) b->refs++;
        c->bytes = 0;
        for (auto &r : c->records) c->bytes += record_bytes(r);
        second->bytes = 0;
        for (auto &r : second->records) second->bytes += record_bytes(r);
        c->attempts = second->attempts = 0;
        fill_view(c);
        fill_view(second);
        log_msg(DM_LOG_WARN, o->name.c_str(), "splitting %zu records into %zu + %zu: %s", n,
                c->records.size(), second->records.size(), reason.c_str());
        o->ready.push_front(second);
        o->ready.push_front(c);
        break;
      }
      [[fallthrough]];
    case DM_FLUSH_ERROR:
    default:
      o->last_error = reason;
      log_msg(DM_LOG_ERROR, o->name.c_str(), "%zu records cannot be delivered: %s", n,
              reason.c_str());
      dead_letter(c, reason);
      break;
  }
  dispatch(o);
}

// A flush that succeeded with some records refused one by one (flush_record_status): the
// refused ones are dead-lettered with their own reasons (or counted failed), the ones to retry
// go back as a chunk of their own, and only the rest count as delivered.
void Engine::finish_marked(Chunk *c, std::vector<RecordMark> &marks) {
  OutputInstance *o = c->out;
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
  chunk_done(c, Outcome::Delivered, {});
  if (refused) {
    o->last_error = refused->reasons.front();
    log_msg(DM_LOG_ERROR, o->name.c_str(), "%zu of %zu records refused one by one: %s",
            refused->records.size(), n, refused->reasons.front().c_str());
    dead_letter(refused, refused->reasons.front());
  }
  if (again) {
    if (retry_reason.empty()) retry_reason = "no reason given";
    again->attempts++;
    o->m_retried->add(again->records.size());
    if (o->retry_limit >= 0 && again->attempts > static_cast<uint64_t>(o->retry_limit)) {
      log_msg(DM_LOG_ERROR, o->name.c_str(), "giving up on %zu records after %u tries: %s",
              again->records.size(), again->attempts, retry_reason.c_str());
      dead_letter(again,
                  "retry limit " + std::to_string(o->retry_limit) + " reached: " + retry_reason);
    } else {
      log_msg(DM_LOG_WARN, o->name.c_str(), "%zu of %zu records to retry (try %u): %s",
              again->records.size(), n, again->attempts, retry_reason.c_str());
      schedule_retry(again, 0);
    }
  }
}

// Moves the records of c whose keep[i] is 0 into a new chunk (null when there are none), in
// order, with their ticket runs cut at the same records; both chunks hold every source batch.
Chunk *Engine::split_off(Chunk *c, const std::vector<uint8_t> &keep) {
  const size_t n = c->records.size();
  size_t moving = 0;
  for (size_t i = 0; i < n; i++) moving += keep[i] ? 0 : 1;
  if (moving == 0) return nullptr;
  auto *out = new Chunk();
  out->out = c->out;
  out->attempts = c->attempts;
  std::vector<dm_record> stay;
  std::vector<TicketRun> stay_runs;
  stay.reserve(n - moving);
  out->records.reserve(moving);
  auto add_run = [](std::vector<TicketRun> &runs, const TicketRun &r) {
    if (!runs.empty() && runs.back().ticket == r.ticket && runs.back().block == r.block &&
        (r.ticket || r.block))
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
  out->sources = c->sources;
  for (Batch *b : out->sources) b->refs++;
  c->bytes = 0;
  for (auto &r : c->records) c->bytes += record_bytes(r);
  for (auto &r : out->records) out->bytes += record_bytes(r);
  fill_view(c);
  fill_view(out);
  return out;
}

void Engine::chunk_done(Chunk *c, Outcome outcome, const std::string &reason) {
  OutputInstance *o = c->out;
  size_t first = 0;  // index of the run's first record (its reason, when per record)
  for (auto &r : c->runs) {
    // Records loaded back from storage reach their ticket (if it is still waiting) through
    // their block; read it before block_progress may free the block.
    Ticket *t = r.ticket ? r.ticket : r.block ? r.block->ticket : nullptr;
    if (r.block) block_progress(r.block, o, r.count);
    if (t) {
      if (outcome == Outcome::Failed)
        ticket_failed(t, r.count, first < c->reasons.size() ? c->reasons[first] : reason);
      else if (outcome == Outcome::Delivered)
        ticket_progress(t, r.count, 0);
      else
        ticket_progress(t, 0, r.count);
    }
    first += r.count;
  }
  o->queued_bytes -= c->bytes;
  o->queued_records -= c->records.size();
  o->m_qrecords->set(o->queued_records);
  o->m_qbytes->set(o->queued_bytes);
  for (Batch *b : c->sources) batch_unref(b);
  delete c;
  update_fullness(o);
  check_idle();
}

void Engine::schedule_retry(Chunk *c, uint32_t retry_after_ms) {
  OutputInstance *o = c->out;
  // Exponential backoff with jitter in [base/2, base], capped; the output's retry_after wins
  // when it asks for longer.
  double base =
      std::min<double>(o->retry_max_wait_ms,
                       o->retry_wait_ms * std::pow(2.0, std::min<uint32_t>(c->attempts - 1, 30)));
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  double wait = base / 2 + std::uniform_real_distribution<double>(0, base / 2)(rng);
  uint64_t delay = std::max<uint64_t>(static_cast<uint64_t>(wait), retry_after_ms);
  if (stopping_) delay = std::min<uint64_t>(delay, 250);  // hurry within the grace period
  o->retrying++;
  auto *t = new uv_timer_t;
  uv_timer_init(&loop_, t);
  t->data = c;
  o->retry_timers.insert(t);
  uv_timer_start(
      t,
      [](uv_timer_t *h) {
        auto *ch = static_cast<Chunk *>(h->data);
        OutputInstance *out = ch->out;
        out->retrying--;
        out->retry_timers.erase(h);
        out->ready.push_front(ch);
        out->engine->dispatch(out);
        uv_close(reinterpret_cast<uv_handle_t *>(h),
                 [](uv_handle_t *hh) { delete reinterpret_cast<uv_timer_t *>(hh); });
      },
      delay, 0);
}

void Engine::dead_letter(Chunk *c, const std::string &reason) {
  OutputInstance *o = c->out;
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
    chunk_done(c, Outcome::DeadLettered, reason);
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
  chunk_done(c, Outcome::Failed, reason + why);
}

void Engine::update_fullness(OutputInstance *o) {
  if (storage_) {
    // With storage a full queue spills to disk instead of pausing its inputs.
    if (!o->backlog.empty() && o->queued_bytes <= o->queue_limit / 2) schedule_pump(o);
    return;
  }
  bool full = o->queued_bytes > o->queue_limit;
  bool empty_enough = o->queued_bytes <= o->queue_limit / 2;
  if (!o->full && full) {
    o->full = true;
    log_msg(DM_LOG_WARN, o->name.c_str(), "queue full (%zu bytes): pausing its inputs",
            o->queued_bytes);
    for (InputInstance *in : o->feeders) pause_input(in);
  } else if (o->full && empty_enough) {
    o->full = false;
    log_msg(DM_LOG_INFO, o->name.c_str(), "queue drained (%zu bytes): resuming its inputs",
            o->queued_bytes);
    for (InputInstance *in : o->feeders) resume_input(in);
  }
}

// Pauses are counted: an input resumes once nothing (no output, not the storage) holds it.
void Engine::pause_input(InputInstance *in) {
  if (in->full_outputs++ != 0) return;
  in->m_paused->set(1);
  defer([in] {
    if (in->full_outputs > 0 && !in->plugin_paused && in->created) {
      in->plugin_paused = true;
      // Its threads get DM_ERR_FULL from here on; without a pause() too (they cannot wait for
      // a resume(), but nor can they fill memory).
      in->inbox.set_paused(true);
      if (in->desc.pause) {
        PluginCall call(in->name.c_str(), "pause");
        in->desc.pause(in->state);
      }
    }
  });
}

void Engine::resume_input(InputInstance *in) {
  if (--in->full_outputs != 0) return;
  in->m_paused->set(0);
  defer([in] {
    if (in->full_outputs == 0 && in->plugin_paused && in->created && !in->stopped) {
      in->plugin_paused = false;
      in->inbox.set_paused(false);  // before resume(): a woken thread may submit at once
      if (in->desc.resume) {
        PluginCall call(in->name.c_str(), "resume");
        in->desc.resume(in->state);
      }
    }
  });
}

}  // namespace devmesh
