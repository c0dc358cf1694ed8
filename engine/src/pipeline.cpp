// The pipeline: submit from inputs, the filter chain, routing to output queues and ticket
// acknowledgements back to the inputs.
#include <fnmatch.h>

#include <algorithm>
#include <cinttypes>
#include <cstring>

#include "engine.h"
#include "log.h"
#include "plugin_call.h"

namespace devmesh {

bool tag_matches(const std::string &pattern, const std::string &tag) {
  return fnmatch(pattern.c_str(), tag.c_str(), 0) == 0;
}

Route *Engine::route_for(const std::string &tag) {
  auto it = routes_.find(tag);
  if (it != routes_.end()) return it->second.get();
  auto r = std::make_unique<Route>();
  for (auto &f : filters_)
    if (tag_matches(f->match, tag)) r->filters.push_back(f.get());
  for (auto &o : outputs_)
    if (tag_matches(o->match, tag)) r->outputs.push_back(o.get());
  Route *p = r.get();
  routes_[tag] = std::move(r);
  return p;
}

int Engine::submit(InputInstance *in, Batch *b, uint64_t *ticket) {
  if (stopping_ || in->stopped) {
    if (in->m_rejected) in->m_rejected->add(b->records.size());
    return DM_ERR;
  }
  if (in->full_outputs > 0) {
    in->m_rejected->add(b->records.size());
    return DM_ERR_FULL;
  }
  const uint64_t seq = in->next_ticket.fetch_add(1, std::memory_order_relaxed);
  if (ticket) *ticket = seq;
  accept(in, b, seq);
  return DM_OK;
}

void Engine::accept(InputInstance *in, Batch *b, uint64_t seq) {
  b->sync();
  b->pub.tag = dm_str{in->tag.c_str(), in->tag.size()};
  auto *t = new Ticket();
  t->input = in;
  t->seq = seq;
  outstanding_tickets_++;
  b->ticket = t;
  in->m_in->add(b->records.size());
  run_chain(b, 0, in->route);
}

int Engine::emit(FilterInstance *f, Batch *b) {
  if (b->pub.tag.len == 0) {
    b->pub.tag = b->arena.copy(f->last_tag.data(), f->last_tag.size());
  }
  b->sync();
  if (!b->holds.empty()) {
    // Its records stand in for records it held: a ticket of its own tells when they are
    // finished (and, with storage, durable), and its end releases the holds.
    auto *t = new Ticket();
    t->input = nullptr;
    t->holds = std::move(b->holds);
    b->holds.clear();
    b->ticket = t;
    outstanding_tickets_++;
  }
  // Never re-enter the chain from inside a filter callback: run it from the loop.
  emitted_.emplace_back(f, b);
  uv_async_send(&wake_);
  return DM_OK;
}

dm_hold *Engine::hold(Batch *b) {
  Ticket *t = b->ticket;
  if (!t) return nullptr;
  t->outstanding++;
  auto *h = new dm_hold{this, t};
  if (storage_) {
    t->unstored_holds++;
  } else {
    h->stored = true;
  }
  return h;
}

void Engine::hold_stored(dm_hold *h) {
  if (h->stored) return;
  h->stored = true;
  Ticket *t = h->ticket;
  if (--t->unstored_holds == 0 && t->stored == Ticket::Stored::WaitingHolds) {
    t->stored = Ticket::Stored::Queued;
    stored_acks_.push_back(t);
    uv_async_send(&wake_);
  }
}

void Engine::release_hold(dm_hold *h, const dm_ack *outcome) {
  Ticket *t = h->ticket;
  hold_stored(h);
  delete h;
  // The held records were counted as dropped by their filter; a stand-in that could not be
  // delivered makes them as undelivered as it is.
  if (outcome && outcome->dead_lettered) t->ack.dead_lettered++;
  if (outcome && outcome->failed) {
    if (t->ack.failed == 0)
      t->failed_reason = outcome->failed_reason ? outcome->failed_reason : "stand-in failed";
    t->ack.failed++;
  }
  t->outstanding--;
  if (t->outstanding == 0 && t->routed) ack_later(t);
}

void Engine::run_chain(Batch *b, size_t first_filter, Route *route) {
  std::vector<uint8_t> verdicts;
  for (size_t fi = first_filter; fi < route->filters.size() && !b->records.empty(); fi++) {
    FilterInstance *f = route->filters[fi];
    f->last_tag.assign(b->pub.tag.ptr, b->pub.tag.len);
    size_t n = b->records.size();
    verdicts.assign(n, DM_KEEP);
    b->sync();
    f->m_in->add(n);
    int rc;
    {
      PluginCall call(f->name.c_str(), "filter", f->last_tag.c_str());
      rc = f->desc.filter(f->state, &b->pub, verdicts.data());
    }
    if (rc != 0) {
      log_msg(DM_LOG_WARN, f->name.c_str(), "filter failed; %zu records pass unchanged", n);
      f->m_filter_failed->add(1);
      f->m_out->add(n);
      continue;
    }
    // A verdict the ABI does not define is a plugin bug: its drops cannot be trusted either.
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
      if (verdicts[i] > DM_MODIFIED) bad = i;
    if (bad != n) {
      const double seen = f->m_bad_verdicts->value();
      f->m_bad_verdicts->add(1);
      // First and then at powers of two: a filter that is always wrong cannot flood the log.
      const uint64_t k = static_cast<uint64_t>(seen) + 1;
      if ((k & (k - 1)) == 0)
        log_msg(DM_LOG_ERROR, f->name.c_str(),
                "filter returned the unknown verdict %u for record %zu of %zu (tag '%s'; "
                "expected 0 keep, 1 drop or 2 modified): a plugin error, the batch passes "
                "unchanged (%" PRIu64 " such batch%s so far)",
                verdicts[bad], bad, n, f->last_tag.c_str(), k, k == 1 ? "" : "es");
      f->m_out->add(n);
      continue;
    }
    // A filter may only change records in place; it cannot add or remove them.
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
      if (verdicts[i] == DM_DROP) continue;
      if (kept != i) b->records[kept] = b->records[i];
      kept++;
    }
    if (kept != n) {
      f->m_dropped->add(n - kept);
      if (b->ticket) b->ticket->ack.dropped += n - kept;
      b->records.resize(kept);
    }
    f->m_out->add(kept);
  }
  b->sync();
  route_batch(b, route);
}

void Engine::route_batch(Batch *b, Route *route) {
  Ticket *t = b->ticket;
  uint32_t n = static_cast<uint32_t>(b->records.size());
  if (n > 0 && route->outputs.empty()) {
    if (t) {
      t->ack.dropped += n;
      if (t->input) t->input->m_unrouted->add(n);
    }
  } else if (n > 0) {
    // After the filters (dropped records are never stored), before any output sees them.
    if (storage_) store_block(b, route);
    for (OutputInstance *o : route->outputs) {
      if (t) t->outstanding += n;
      // Over its queue_limit an output spills: the block waits on disk, in order, and its
      // loader brings it back once the queue has room (memory stays bounded).
      if (b->block && (o->queued_bytes > o->queue_limit || !o->backlog.empty())) {
        o->backlog.push_back(b->block);
        o->backlog_records += n;  // counted in the output's records_in when loaded
        o->m_backlog->set(static_cast<double>(o->backlog_records));
      } else {
        append_to_output(o, b, 0, n);
      }
    }
  }
  if (t) {
    t->routed = true;
    // Nothing to store for it: durable as it is.
    if (storage_ && t->stored == Ticket::Stored::None && (n == 0 || route->outputs.empty())) {
      t->stored = Ticket::Stored::Queued;
      stored_acks_.push_back(t);
      uv_async_send(&wake_);
    }
    if (t->outstanding == 0) ack_later(t);
  }
  batch_unref(b);  // the pipeline's own reference; chunks hold theirs
}

void Engine::append_to_output(OutputInstance *o, Batch *b, uint32_t from, uint32_t n) {
  uint32_t i = from, end = from + n;
  while (i < end) {
    if (!o->filling) {
      o->filling = new Chunk();
      o->filling->out = o;
      o->filling->records.reserve(o->batch_size);
      uv_timer_start(
          o->flush_timer,
          [](uv_timer_t *h) {
            auto *out = static_cast<OutputInstance *>(h->data);
            out->engine->seal(out);
            out->engine->dispatch(out);
          },
          o->flush_interval_ms, 0);
    }
    Chunk *c = o->filling;
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
      o->queued_bytes += bytes;
      o->queued_records += taken;
      o->m_in->add(taken);
    }
    if (c->records.size() >= o->batch_size || c->bytes >= o->batch_bytes || taken == 0) {
      seal(o);
    }
  }
  o->m_qrecords->set(o->queued_records);
  o->m_qbytes->set(o->queued_bytes);
  update_fullness(o);
  dispatch(o);
}

void Engine::ticket_progress(Ticket *t, uint32_t delivered, uint32_t dead) {
  t->ack.delivered += delivered;
  t->ack.dead_lettered += dead;
  t->outstanding -= delivered + dead;
  if (t->outstanding == 0 && t->routed) ack_later(t);
}

// Record deliveries that failed permanently and were not kept: never counted as delivered.
void Engine::ticket_failed(Ticket *t, uint32_t n, const std::string &reason) {
  if (t->ack.failed == 0) t->failed_reason = reason;
  t->ack.failed += n;
  t->outstanding -= n;
  if (t->outstanding == 0 && t->routed) ack_later(t);
}

void Engine::ack_later(Ticket *t) {
  // Every output finished it before its block's fsync: delivered (or kept in a dead-letter
  // file), it is as good as stored, and a replay would only repeat what the outputs have. Its
  // STORED goes out now instead of at the next fsync (up to sync_interval away, which held
  // every ack: delivered answer that long). Tickets finish roughly in order: it is near the
  // front of stored_pending_.
  if (t->stored == Ticket::Stored::AwaitingFsync) {
    auto it = std::find(stored_pending_.begin(), stored_pending_.end(), t);
    if (it != stored_pending_.end()) stored_pending_.erase(it);
    t->stored = Ticket::Stored::Queued;
    stored_acks_.push_back(t);
    uv_async_send(&wake_);
    return;
  }
  // DONE never overtakes STORED: send_stored() queues it once STORED went out.
  if (t->stored == Ticket::Stored::Queued || t->stored == Ticket::Stored::WaitingHolds) return;
  // Acks never run inside another callback (submit, a flush): the input learns its ticket
  // number first, and an input's on_ack may submit again safely.
  acks_.push_back(t);
  uv_async_send(&wake_);
}

void Engine::finish_ticket(Ticket *t) {
  InputInstance *in = t->input;
  t->ack.ticket = t->seq;
  // The write of its block failed: delivered now, it is as good as stored.
  if (storage_ && t->stored != Ticket::Stored::Sent) send_stored(t);
  t->ack.stage = DM_ACK_DONE;
  if (!in) {  // a filter's emitted batch: its end releases what it stood in for
    std::vector<dm_hold *> holds = std::move(t->holds);
    const std::string failed_reason = t->failed_reason;  // t goes before the holds are told
    dm_ack outcome = t->ack;
    outcome.failed_reason = outcome.failed ? failed_reason.c_str() : nullptr;
    delete t;
    outstanding_tickets_--;
    for (dm_hold *h : holds) release_hold(h, &outcome);
    check_idle();
    return;
  }
  t->ack.failed_reason = t->ack.failed ? t->failed_reason.c_str() : nullptr;
  in->m_acked->add(1);
  if (in->desc.on_ack && in->created) {
    PluginCall call(in->name.c_str(), "on_ack", in->tag.c_str());
    in->desc.on_ack(in->state, &t->ack);
  }
  delete t;
  outstanding_tickets_--;
  check_idle();
}

}  // namespace devmesh
