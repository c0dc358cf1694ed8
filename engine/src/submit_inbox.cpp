// The inbox of an input's own threads: tickets taken at submit, batches routed on the loop.
#include "submit_inbox.h"

#include "engine.h"
#include "log.h"

namespace devmesh {

void SubmitInbox::open(uv_loop_t *loop, InputInstance *in) {
  in_ = in;
  uv_async_init(loop, &wake_, [](uv_async_t *a) { static_cast<SubmitInbox *>(a->data)->drain(); });
  wake_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t *>(&wake_));
  std::lock_guard<std::mutex> lk(mu_);
  open_ = true;
}

int SubmitInbox::submit(Batch *b, uint64_t *ticket) {
  const size_t n = b->records.size();
  std::unique_lock<std::mutex> lk(mu_);
  if (!open_ || closed_) {
    lk.unlock();
    if (in_) in_->m_rejected->add(static_cast<double>(n));
    return DM_ERR;
  }
  if (paused_.load(std::memory_order_acquire)) {
    lk.unlock();
    in_->m_rejected->add(static_cast<double>(n));
    return DM_ERR_FULL;
  }
  // Under the lock: tickets enter the queue in the order they are taken.
  const uint64_t seq = in_->next_ticket.fetch_add(1, std::memory_order_relaxed);
  queue_.push_back(Entry{b, seq});
  const bool first = queue_.size() == 1;
  lk.unlock();
  if (ticket) *ticket = seq;
  // A non-empty queue already has a wake-up pending; one more is coalesced anyway.
  if (first) uv_async_send(&wake_);
  return DM_OK;
}

void SubmitInbox::close() {
  std::lock_guard<std::mutex> lk(mu_);
  closed_ = true;
}

// One take per wake-up, not until empty: a thread that keeps submitting would otherwise hold
// the loop here, and the pause that stops it runs from the loop's own wake-up.
void SubmitInbox::drain() {
  std::vector<Entry> taken;
  {
    std::lock_guard<std::mutex> lk(mu_);
    taken.swap(queue_);
  }
  for (const Entry &e : taken) in_->engine->accept(in_, e.batch, e.seq);
  // Hand the capacity back, so the next burst of submits does not grow a vector from zero.
  taken.clear();
  std::lock_guard<std::mutex> lk(mu_);
  if (queue_.empty()) queue_.swap(taken);
}

void SubmitInbox::refuse() {
  std::vector<Entry> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    left.swap(queue_);
  }
  if (left.empty()) return;
  size_t records = 0;
  for (const Entry &e : left) {
    records += e.batch->records.size();
    batch_unref(e.batch);
  }
  in_->m_rejected->add(static_cast<double>(records));
  log_msg(DM_LOG_WARN, in_->name.c_str(),
          "%zu records its threads submitted (%zu tickets) are dropped unrouted: the engine did "
          "not start; they are never acknowledged",
          records, left.size());
}

void SubmitInbox::release(void (*done)(void *), void *arg) {
  if (!in_) return done(arg);  // never opened
  released_ = done;
  released_arg_ = arg;
  uv_close(reinterpret_cast<uv_handle_t *>(&wake_), [](uv_handle_t *h) {
    auto *self = static_cast<SubmitInbox *>(h->data);
    self->released_(self->released_arg_);
  });
}

}  // namespace devmesh
