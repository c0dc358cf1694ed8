// Delivery accounting (see delivery.h): tickets, stored blocks, holds, and STORED before DONE.
#include "delivery.h"

#include <algorithm>

#include "engine.h"
#include "plugin_call.h"

namespace devmesh {

Delivery::~Delivery() = default;

Ticket *Delivery::open(InputInstance *in, uint64_t seq) {
  auto *t = new Ticket();
  t->input = in;
  t->seq = seq;
  in->open_tickets++;  // a reload retires an input only once these are finished
  open_tickets_++;
  return t;
}

Ticket *Delivery::open_for_holds(std::vector<dm_hold *> holds) {
  // Its records stand in for records it held: the ticket tells when they are finished (and,
  // with storage, durable), and its end releases the holds.
  auto *t = new Ticket();
  t->holds = std::move(holds);
  open_tickets_++;
  return t;
}

void Delivery::routed(Ticket *t, bool nothing_to_store) {
  t->routed = true;
  // Nothing to store for it: durable as it is.
  if (storage_ && nothing_to_store && t->stored == Ticket::Stored::None) queue_stored(t);
  if (t->outstanding == 0) ack_later(t);
}

StoredBlock *Delivery::stored(Batch *b, uint64_t id, Segment *seg, uint64_t offset, uint32_t length,
                              const std::vector<OutputInstance *> &outputs, size_t output_count) {
  auto *blk = new StoredBlock();
  blk->id = id;
  blk->seg = seg;
  blk->seg_id = seg->id;
  blk->offset = offset;
  blk->length = length;
  blk->count = static_cast<uint32_t>(b->records.size());
  blk->ticket = b->ticket;
  blk->remaining.assign(output_count, 0);
  for (OutputInstance *o : outputs) blk->remaining[o->index] = blk->count;
  blk->outputs_left = static_cast<uint32_t>(outputs.size());
  if (Ticket *t = b->ticket) {
    t->block_id = id;
    t->stored = Ticket::Stored::AwaitingFsync;
    stored_pending_.push_back(t);
  }
  return blk;
}

void Delivery::on_durable(uint64_t block_id) {
  if (engine_->finished()) return;
  bool any = false;
  while (!stored_pending_.empty() && stored_pending_.front()->block_id <= block_id) {
    Ticket *t = stored_pending_.front();
    stored_pending_.pop_front();
    t->stored = Ticket::Stored::Queued;
    stored_acks_.push_back(t);
    any = true;
  }
  if (any) engine_->wake();  // sent from drain(), never inside a submit
}

dm_hold *Delivery::hold(Ticket *t) {
  t->outstanding++;
  auto *h = new dm_hold{engine_, t};
  if (storage_)
    t->unstored_holds++;
  else
    h->stored = true;
  return h;
}

void Delivery::hold_stored(dm_hold *h) {
  if (h->stored) return;
  h->stored = true;
  Ticket *t = h->ticket;
  if (--t->unstored_holds == 0 && t->stored == Ticket::Stored::WaitingHolds) queue_stored(t);
}

void Delivery::release_hold(dm_hold *h, const dm_ack *outcome) {
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

void Delivery::finished(OutputInstance *o, const std::vector<TicketRun> &runs, Outcome outcome,
                        const std::string &reason, const std::vector<std::string> *reasons) {
  size_t first = 0;  // index of the run's first record (its reason, when per record)
  for (const TicketRun &r : runs) {
    // Records loaded back from storage reach their ticket (if it is still waiting) through
    // their block; read it before block_progress may free the block.
    Ticket *t = r.ticket ? r.ticket : r.block ? r.block->ticket : nullptr;
    if (r.block) block_progress(r.block, o, r.count);
    if (t) {
      const bool own = reasons && first < reasons->size();
      ticket_finished_some(t, outcome, r.count, own ? (*reasons)[first] : reason);
    }
    first += r.count;
  }
}

void Delivery::ticket_finished_some(Ticket *t, Outcome outcome, uint32_t n,
                                    const std::string &reason) {
  switch (outcome) {
    case Outcome::Delivered:
      t->ack.delivered += n;
      break;
    case Outcome::DeadLettered:
      t->ack.dead_lettered += n;
      break;
    case Outcome::Failed:
      // Failed permanently and not kept: never counted as delivered, and the first reason is
      // what an input answering for delivery reports.
      if (t->ack.failed == 0) t->failed_reason = reason;
      t->ack.failed += n;
      break;
  }
  t->outstanding -= n;
  if (t->outstanding == 0 && t->routed) ack_later(t);
}

// A block's records are finished for output o: its .acks file names o once all are, and the
// block leaves its segment (which goes when nothing names it) once every output is done.
void Delivery::block_progress(StoredBlock *blk, OutputInstance *o, uint32_t n) {
  // A block stored before a reload added this output's slot has nothing for it.
  if (o->index >= blk->remaining.size()) return;
  uint32_t &rem = blk->remaining[o->index];
  if (rem == 0) return;
  rem -= std::min(rem, n);
  if (rem != 0) return;
  storage_->ack(blk->seg, blk->id, o->name_hash);
  if (--blk->outputs_left != 0) return;
  storage_->block_done(blk->seg);
  delete blk;
  engine_->storage_freed();  // pause mode: inputs resume once below the mark
}

void Delivery::queue_stored(Ticket *t) {
  t->stored = Ticket::Stored::Queued;
  stored_acks_.push_back(t);
  engine_->wake();
}

void Delivery::ack_later(Ticket *t) {
  // Every output finished it before its block's fsync: delivered (or kept in a dead-letter
  // file), it is as good as stored, and a replay would only repeat what the outputs have. Its
  // STORED goes out now instead of at the next fsync (up to sync_interval away, which held
  // every ack: delivered answer that long). Tickets finish roughly in order: it is near the
  // front of stored_pending_.
  if (t->stored == Ticket::Stored::AwaitingFsync) {
    auto it = std::find(stored_pending_.begin(), stored_pending_.end(), t);
    if (it != stored_pending_.end()) stored_pending_.erase(it);
    queue_stored(t);
    return;
  }
  // DONE never overtakes STORED: send_acks() queues it once STORED went out.
  if (t->stored == Ticket::Stored::Queued || t->stored == Ticket::Stored::WaitingHolds) return;
  // Acks never run inside another callback (submit, a flush): the input learns its ticket
  // number first, and an input's on_ack may submit again safely.
  acks_.push_back(t);
  engine_->wake();
}

bool Delivery::send_acks() {
  // STORED before DONE: a ticket whose DONE is due is queued behind its STORED.
  auto stored = std::move(stored_acks_);
  stored_acks_.clear();
  for (Ticket *t : stored) {
    send_stored(t);
    if (t->stored == Ticket::Stored::Sent && t->routed && t->outstanding == 0) acks_.push_back(t);
  }
  auto acks = std::move(acks_);
  acks_.clear();
  for (Ticket *t : acks) finish_ticket(t);
  return !stored.empty() || !acks.empty();
}

void Delivery::send_stored(Ticket *t) {
  // Held records are durable once their stand-in is: STORED waits for it.
  if (t->unstored_holds > 0) {
    t->stored = Ticket::Stored::WaitingHolds;
    return;
  }
  t->stored = Ticket::Stored::Sent;
  InputInstance *in = t->input;
  if (!in) {  // a filter's emitted batch: its holds' stand-in is durable
    for (dm_hold *h : t->holds) hold_stored(h);
    return;
  }
  if (!(in->desc.flags & DM_ACK_STAGES) || !in->desc.on_ack || !in->created) return;
  dm_ack a = t->ack;
  a.ticket = t->seq;
  a.stage = DM_ACK_STORED;
  a.failed_reason = a.failed ? t->failed_reason.c_str() : nullptr;
  PluginCall call(in->name.c_str(), "on_ack", in->tag.c_str());
  in->desc.on_ack(in->state, &a);
}

void Delivery::finish_ticket(Ticket *t) {
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
    open_tickets_--;
    for (dm_hold *h : holds) release_hold(h, &outcome);
    engine_->check_idle();
    return;
  }
  t->ack.failed_reason = t->ack.failed ? t->failed_reason.c_str() : nullptr;
  in->m_acked->add(1);
  if (in->desc.on_ack && in->created) {
    PluginCall call(in->name.c_str(), "on_ack", in->tag.c_str());
    in->desc.on_ack(in->state, &t->ack);
  }
  delete t;
  open_tickets_--;
  in->open_tickets--;
  engine_->check_idle();
}

}  // namespace devmesh
