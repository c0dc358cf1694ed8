// The requests an input holds until their records are acknowledged (ack: delivered or durable),
// each with an ack_timeout deadline: the http and otlp inputs keep them here. A request past its
// deadline is handed to the input to answer ("retry later") and its ticket remembered, so the
// ack that still comes for it is known as late. Header-only.
#pragma once

#include <devmesh/plugin.hpp>
#include <monotonic_ms.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace devmesh {

// Request: what the input needs to answer one request later (its dm_http_request and the
// response prepared for it).
template <class Request>
class AckWaits {
 public:
  // expired answers a request past its deadline (it is no longer waiting by then).
  using Expired = std::function<void(Request &)>;

  AckWaits(const dm_host_api *host, dm_instance *inst) : host_(host), inst_(inst) {}
  AckWaits(const AckWaits &) = delete;
  AckWaits &operator=(const AckWaits &) = delete;
  ~AckWaits() {
    if (timer_) host_->timer_free(timer_);
  }

  // Once, from the input's constructor: the deadline, the gauge of waiting requests, and who
  // answers a request whose deadline passes.
  void configure(uint64_t timeout_ms, dm_metric *waiting, Expired expired) {
    timeout_ms_ = timeout_ms;
    m_waiting_ = waiting;
    expired_ = std::move(expired);
  }

  uint64_t timeout_ms() const { return timeout_ms_; }
  size_t size() const { return waiting_.size(); }

  // A request now waiting for ticket's ack; expired() answers it at its deadline unless the
  // ack comes first.
  void add(uint64_t ticket, Request r) {
    waiting_.emplace(ticket, std::move(r));
    host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
    // One timeout for all, so arrival order is deadline order: one timer, set for the oldest.
    deadlines_.push_back(Deadline{monotonic_ms() + timeout_ms_, ticket});
    if (!timer_) timer_ = host_->timer_new(inst_, on_timer, this);
    if (deadlines_.size() == 1 && timer_) host_->timer_start(timer_, timeout_ms_, 0);
  }

  // The request waiting for ticket, taken out for its answer; none when it was answered by its
  // deadline already (see late()) or never waited.
  std::optional<Request> take(uint64_t ticket) {
    auto it = waiting_.find(ticket);
    if (it == waiting_.end()) return std::nullopt;
    std::optional<Request> r(std::move(it->second));
    waiting_.erase(it);
    host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
    drop_answered_deadlines();
    return r;
  }

  // True, once, for the ack of a request answered by its deadline: no client waits for it, but
  // what it reports is still to be counted.
  bool late(uint64_t ticket) { return timed_out_.erase(ticket) > 0; }

  // Every request still waiting (at destroy, to answer them).
  template <class F>
  void for_each(F &&f) {
    for (auto &[ticket, r] : waiting_) f(r);
  }

 private:
  struct Deadline {
    uint64_t at_ms;  // monotonic
    uint64_t ticket;
  };

  static void on_timer(void *arg) {
    auto *self = static_cast<AckWaits *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->expire(), 0; });
  }

  // Hands every request past its deadline to expired(): its records are not recalled (they may
  // be in an output already), so the client's re-send is absorbed by their event_ids.
  void expire() {
    const uint64_t now = monotonic_ms();
    while (!deadlines_.empty() && deadlines_.front().at_ms <= now) {
      const uint64_t ticket = deadlines_.front().ticket;
      deadlines_.pop_front();
      auto it = waiting_.find(ticket);
      if (it == waiting_.end()) continue;  // answered by its ack already
      Request r = std::move(it->second);
      waiting_.erase(it);
      timed_out_.insert(ticket);
      expired_(r);
    }
    host_->metric_set(m_waiting_, static_cast<double>(waiting_.size()));
    drop_answered_deadlines();
    if (!deadlines_.empty()) host_->timer_start(timer_, deadlines_.front().at_ms - now, 0);
  }

  // Acknowledged requests leave their deadlines behind; those at the front go at once (so the
  // queue holds about the requests still waiting, and the timer is set for one of them).
  void drop_answered_deadlines() {
    while (!deadlines_.empty() && !waiting_.count(deadlines_.front().ticket))
      deadlines_.pop_front();
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  uint64_t timeout_ms_ = 0;
  dm_metric *m_waiting_ = nullptr;
  Expired expired_;
  std::unordered_map<uint64_t, Request> waiting_;  // ticket -> request
  std::deque<Deadline> deadlines_;                 // in arrival order, which is deadline order
  dm_timer *timer_ = nullptr;
  // Tickets answered by their deadline whose ack is still to come (each ticket gets one).
  std::unordered_set<uint64_t> timed_out_;
};

}  // namespace devmesh
