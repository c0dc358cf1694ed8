// Delivery accounting: the one owner of tickets (an input's acknowledgements), of stored
// blocks (.acks files and segment deletion, through Storage), of filters' holds, and of the
// rule that STORED comes before DONE. Every way a record finishes for an output (a flush's
// result, a stored block that cannot be read back, a segment dropped from full storage) comes
// through finished(): a reader follows one function from an output's result to an input's ack.
//
// Like Vector's EventFinalizer/BatchNotifier, a ticket and a block are reference counts: a
// ticket ends when its last record delivery (or hold) is finished, a block when its last
// output is. Loop thread only.
#pragma once

#include <devmesh/plugin.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "output_queue.h"

namespace devmesh {

class Engine;
class InputInstance;
class OutputInstance;
class Storage;
struct Segment;
struct Batch;
struct Ticket;

}  // namespace devmesh

// A filter's hold on a ticket (see dm_host_api.hold): released once, then freed.
struct dm_hold {
  devmesh::Engine *engine;
  devmesh::Ticket *ticket;
  bool stored = false;  // its stand-in is durable (or storage is off)
};

namespace devmesh {

// A submit's acknowledgement state: done when `outstanding` record deliveries reach zero.
// A ticket with no input stands for a filter's emitted batch that carries holds: its end
// releases them instead of acknowledging an input.
struct Ticket {
  InputInstance *input = nullptr;
  uint64_t seq = 0;
  uint64_t outstanding = 0;  // record deliveries plus holds not yet released
  dm_ack ack{};
  bool routed = false;  // routing finished (so outstanding == 0 means done)
  // With storage: STORED always precedes DONE. None: no block waits (nothing stored, or the
  // write failed: then STORED is sent just before DONE). WaitingHolds: its own block is
  // durable, a held stand-in's is not yet.
  enum class Stored : uint8_t {
    None,
    AwaitingFsync,
    Queued,
    WaitingHolds,
    Sent
  } stored = Stored::None;
  uint64_t block_id = 0;
  uint32_t unstored_holds = 0;   // with storage: holds whose stand-in is not durable yet
  std::vector<dm_hold *> holds;  // input-less tickets: the holds their end releases
  std::string failed_reason;     // the first not-kept failure's (ack.failed_reason points here)
};

// A block in the segment files and who still has to finish it. Lives until every output it
// was routed to delivered, dead-lettered or dropped all of its records.
struct StoredBlock {
  uint64_t id = 0;
  Segment *seg = nullptr;
  uint64_t seg_id = 0;
  uint64_t offset = 0;
  uint32_t length = 0;
  uint32_t count = 0;
  Ticket *ticket = nullptr;         // null for replayed and filter-emitted blocks
  uint32_t outputs_left = 0;        // outputs with records outstanding
  std::vector<uint32_t> remaining;  // by output name slot (Engine::output_slot): records left
};

class Delivery {
 public:
  explicit Delivery(Engine *engine) : engine_(engine) {}
  ~Delivery();
  // With storage: blocks are acknowledged and deleted through it (set before replay).
  void set_storage(Storage *storage) { storage_ = storage; }

  // --- tickets ---
  Ticket *open(InputInstance *in, uint64_t seq);         // a submit, under its ticket number
  Ticket *open_for_holds(std::vector<dm_hold *> holds);  // a filter's emitted stand-in
  void will_deliver(Ticket *t, uint32_t n) { t->outstanding += n; }
  void dropped(Ticket *t, uint32_t n) { t->ack.dropped += n; }  // by a filter, or unrouted
  // Routing is over: outstanding == 0 now means done. nothing_to_store: with storage, no block
  // was written for it because there was nothing to write (STORED at once).
  void routed(Ticket *t, bool nothing_to_store);

  // --- stored blocks ---
  // A block just written for b (its ticket, if any, waits for the block's fsync).
  StoredBlock *stored(Batch *b, uint64_t id, Segment *seg, uint64_t offset, uint32_t length,
                      const std::vector<OutputInstance *> &outputs, size_t output_count);
  void on_durable(uint64_t block_id);  // Storage: every block up to this one is fsynced

  // --- holds ---
  dm_hold *hold(Ticket *t);
  // Releases a hold: its stand-in was finished with `outcome` (null: none was emitted).
  void release_hold(dm_hold *h, const dm_ack *outcome);

  // THE entry point: output o finished these records (runs) with this outcome. Failed records
  // carry reasons[i] for the i-th record when given, else `reason`.
  void finished(OutputInstance *o, const std::vector<TicketRun> &runs, Outcome outcome,
                const std::string &reason = {}, const std::vector<std::string> *reasons = nullptr);

  // From the engine's drain(): STORED acks first, then the DONE acks that may follow them.
  // Returns whether it did anything.
  bool send_acks();

  uint64_t open_tickets() const { return open_tickets_; }
  bool acks_due() const { return !acks_.empty(); }
  bool stored_due() const { return !stored_acks_.empty(); }
  // Every STORED owed is sent (stopping waits for these, not for disk backlogs).
  bool stored_settled() const { return stored_acks_.empty() && stored_pending_.empty(); }

 private:
  void ticket_finished_some(Ticket *t, Outcome outcome, uint32_t n, const std::string &reason);
  void block_progress(StoredBlock *blk, OutputInstance *o, uint32_t n);
  void hold_stored(dm_hold *h);
  void queue_stored(Ticket *t);
  void ack_later(Ticket *t);
  void send_stored(Ticket *t);
  void finish_ticket(Ticket *t);

  Engine *engine_;
  Storage *storage_ = nullptr;
  uint64_t open_tickets_ = 0;
  std::deque<Ticket *> stored_pending_;  // waiting for the fsync of their block, in order
  std::vector<Ticket *> stored_acks_;    // STORED acks to send from drain()
  std::vector<Ticket *> acks_;           // done tickets whose input is told from drain()
};

}  // namespace devmesh
