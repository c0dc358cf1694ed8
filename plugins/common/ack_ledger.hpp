// A checkpointing input's ledger of the batches it submitted (journald, tail): each ticket with
// the position its batch reached. Acknowledgements come in any order; a batch is settled once
// it and every batch submitted before it are acknowledged, so the checkpoint is the position of
// the newest settled batch and never runs ahead of a batch still in the pipeline.
#pragma once

#include <devmesh/plugin.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <utility>

namespace devmesh {

template <class Position>
class AckLedger {
 public:
  // A batch handed to submit, which gave it `ticket`; tickets only grow.
  void submitted(uint64_t ticket, Position position) {
    pending_.push_back(Entry{ticket, std::move(position)});
  }

  // The engine acknowledged `ticket`. settle(Position &) is called for each batch this settles,
  // oldest first (the position may be moved from); returns how many it settled.
  template <class Settle>
  size_t acknowledged(uint64_t ticket, Settle &&settle) {
    const uint64_t mark = watermark_.done(ticket);
    size_t settled = 0;
    while (!pending_.empty() && pending_.front().ticket <= mark) {
      settle(pending_.front().position);
      pending_.pop_front();
      ++settled;
    }
    return settled;
  }

  // Batches submitted and not settled yet.
  size_t unsettled() const { return pending_.size(); }

 private:
  struct Entry {
    uint64_t ticket;
    Position position;
  };
  std::deque<Entry> pending_;
  TicketWatermark watermark_;
};

}  // namespace devmesh
