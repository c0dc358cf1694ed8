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
  switch (done.status) {
    case DM_FLUSH_OK:
      o->last_error.clear();
      o->m_out->add(n);
      o->m_bytes->add(c->bytes);
      chunk_done(c, true, {});
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

void Engine::chunk_done(Chunk *c, bool delivered, const std::string &) {
  OutputInstance *o = c->out;
  for (auto &r : c->runs) {
    // Records loaded back from storage reach their ticket (if it is still waiting) through
    // their block; read it before block_progress may free the block.
    Ticket *t = r.ticket ? r.ticket : r.block ? r.block->ticket : nullptr;
    if (r.block) block_progress(r.block, o, r.count);
    if (t) ticket_progress(t, delivered ? r.count : 0, delivered ? 0 : r.count);
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
  if (!o->dead_letter_path.empty()) {
    std::string buf;
    buf.reserve(n * 256);
    for (auto &r : c->records) append_dead_letter_json(buf, r, o->name, reason);
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
    if (!written)
      log_msg(DM_LOG_ERROR, o->name.c_str(), "cannot write dead-letter file %s: %s",
              o->dead_letter_path.c_str(), strerror(errno));
  }
  if (written) {
    o->m_dead->add(n);
  } else {
    o->m_failed->add(n);
    log_msg(DM_LOG_ERROR, o->name.c_str(), "%zu records failed permanently and were not kept%s", n,
            o->dead_letter_path.empty() ? " (set dead_letter_path to keep them)" : "");
  }
  chunk_done(c, false, reason);
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
    if (in->full_outputs > 0 && !in->plugin_paused && in->desc.pause && in->created) {
      in->plugin_paused = true;
      PluginCall call(in->name.c_str(), "pause");
      in->desc.pause(in->state);
    }
  });
}

void Engine::resume_input(InputInstance *in) {
  if (--in->full_outputs != 0) return;
  in->m_paused->set(0);
  defer([in] {
    if (in->full_outputs == 0 && in->plugin_paused && in->desc.resume && in->created &&
        !in->stopped) {
      in->plugin_paused = false;
      PluginCall call(in->name.c_str(), "resume");
      in->desc.resume(in->state);
    }
  });
}

}  // namespace devmesh
