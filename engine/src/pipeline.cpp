// The pipeline: submit from inputs, the filter chain, routing to output queues, and pausing
// inputs under backpressure. Acknowledgements are Delivery's (delivery.cpp).
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
  for (auto &o : outputs_)  // a retiring output (reload) drains what it has, takes no more
    if (!o->retiring && tag_matches(o->match, tag)) r->outputs.push_back(o.get());
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
  Ticket *t = delivery_.open(in, seq);
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
    b->ticket = delivery_.open_for_holds(std::move(b->holds));
    b->holds.clear();
  }
  // Never re-enter the chain from inside a filter callback: run it from the loop.
  emitted_.emplace_back(f, b);
  uv_async_send(&wake_);
  return DM_OK;
}

dm_hold *Engine::hold(Batch *b) {
  return b->ticket ? delivery_.hold(b->ticket) : nullptr;
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
      if (b->ticket) delivery_.dropped(b->ticket, static_cast<uint32_t>(n - kept));
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
  // A batch made for many more records than it got (journald following a journal reads a few
  // entries into a batch sized for its `batch`) gives the rest of its array back before it is
  // queued: queue_limit counts the array's capacity, and a few records copied cost less than
  // an idle array per batch held.
  if (b->records.capacity() > 2 * static_cast<size_t>(n) + 16) {
    b->records.shrink_to_fit();
    b->sync();
  }
  if (n > 0 && route->outputs.empty()) {
    if (t) {
      delivery_.dropped(t, n);
      if (t->input) t->input->m_unrouted->add(n);
    }
  } else if (n > 0) {
    // After the filters (dropped records are never stored), before any output sees them.
    if (storage_) store_block(b, route);
    for (OutputInstance *o : route->outputs) {
      if (t) delivery_.will_deliver(t, n);
      // Over its queue_limit an output spills: the block waits on disk, in order, and its
      // loader brings it back once the queue has room (memory stays bounded).
      DiskBacklog &bl = o->queue.backlog;
      if (b->block && (o->queue.over_limit() || !bl.blocks.empty())) {
        bl.blocks.push_back(b->block);
        bl.records += n;  // counted in the output's records_in when loaded
        o->m_backlog->set(static_cast<double>(bl.records));
      } else {
        o->queue.append(b, 0, n);
      }
    }
  }
  if (t) delivery_.routed(t, n == 0 || route->outputs.empty());
  batch_unref(b);  // the pipeline's own reference; chunks hold theirs
}

// Pauses are counted: an input resumes once nothing (no output, not the storage) holds it.
void Engine::pause_input(InputInstance *in) {
  if (in->full_outputs++ != 0) return;
  in->m_paused->set(1);
  defer([in] {
    if (in->full_outputs > 0 && !in->plugin_paused && in->created && in->started) {
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
