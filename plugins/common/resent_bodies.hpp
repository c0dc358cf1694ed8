// The arrival times of request bodies a client was told to send again after their records were
// submitted (the http and otlp inputs). A record without a timestamp is stamped with its
// arrival time, which its derived event_id hashes: a re-sent body stamped anew would get other
// ids and be stored twice. So such a body's arrival time is kept for a while (kWindowMs, at most
// kBodies bodies) and a byte-identical body re-sent meanwhile is stamped with it: its records
// get their first ids again. Only the bodies an input chooses to remember are kept, so two
// bodies that happen to be identical are otherwise two sets of records. Header-only.
#pragma once

#include <devmesh/plugin.hpp>
#include <monotonic_ms.hpp>

#include <cstdint>
#include <cstring>
#include <deque>
#include <unordered_map>

namespace devmesh {

class ResentBodies {
 public:
  static constexpr uint64_t kWindowMs = 15 * 60 * 1000;
  static constexpr size_t kBodies = 4096;

  // resent counts the bodies recognised as re-sent (each input names its own counter).
  explicit ResentBodies(const dm_host_api *host) : host_(host) {}
  void count_in(dm_metric *resent) { m_resent_ = resent; }

  // The arrival time for a body that just came: the remembered one for a re-send, else now.
  int64_t arrival_of(dm_str raw) {
    const uint64_t now = monotonic_ms();
    while (!order_.empty() && (order_.size() > kBodies || now - order_.front().at_ms > kWindowMs)) {
      arrivals_.erase(order_.front().key);
      order_.pop_front();
    }
    if (!arrivals_.empty()) {
      if (auto it = arrivals_.find(key_of(raw)); it != arrivals_.end()) {
        host_->metric_add(m_resent_, 1);
        return it->second;
      }
    }
    return static_cast<int64_t>(host_->now_ns());
  }

  // Remembers a body answered with "send it again" and the arrival time its records got (the
  // first one is kept for a body remembered twice).
  void remember(dm_str raw, int64_t arrival_ns) {
    const Key key = key_of(raw);
    if (arrivals_.emplace(key, arrival_ns).second)
      order_.push_back(Remembered{monotonic_ms(), key});
  }

 private:
  // A request body's XXH3-128 (as received, before decompression).
  struct Key {
    uint8_t bytes[16];
    bool operator==(const Key &o) const { return std::memcmp(bytes, o.bytes, 16) == 0; }
  };
  struct KeyHash {
    size_t operator()(const Key &k) const {
      size_t h;
      std::memcpy(&h, k.bytes, sizeof h);
      return h;
    }
  };
  struct Remembered {
    uint64_t at_ms;  // monotonic
    Key key;
  };

  Key key_of(dm_str raw) const {
    Key key;
    host_->hash128(raw.ptr, raw.len, key.bytes);
    return key;
  }

  const dm_host_api *host_;
  dm_metric *m_resent_ = nullptr;
  std::unordered_map<Key, int64_t, KeyHash> arrivals_;
  std::deque<Remembered> order_;  // in the order remembered, for the window and the bound
};

}  // namespace devmesh
