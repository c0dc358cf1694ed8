// dedup filter: drops records that repeat a key (host, service, message by default) within a
// window of record time, or collapses the repeats into one summary record per window; memory
// is bounded by max_keys (least recently seen keys are evicted).
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "timestamp.hpp"
#include "window_timer.hpp"

namespace devmesh {
namespace {

const char *const kModes[] = {"drop", "collapse", nullptr};

const dm_option kOptions[] = {
    {"key", DM_OPT_LIST, 0, "[host, service, message]", 0, 0, nullptr,
     "fields that make two records repeats: host, service, message, level, source, event_type, "
     "error_code, trace_id, meta.<name>",
     0},
    {"mode", DM_OPT_STRING, 0, "drop", 0, 0, kModes,
     "drop: repeats within the window are removed; collapse: the first occurrence passes at "
     "once, and when the window closes one record stands for its repeats (meta repeat_count, "
     "first_seen, last_seen); the repeats' submit is acknowledged (http 2xx with ack: "
     "delivered or durable, the journald cursor) only once that record is stored",
     0},
    {"window", DM_OPT_DURATION, DM_OPT_BOUNDED, "10s", 1, 7 * 86400000.0, nullptr,
     "a key's window starts at its first occurrence, on record timestamps (replays after a "
     "restart fall in it too); collapse also closes it after this long on the clock",
     0},
    {"max_keys", DM_OPT_INT, DM_OPT_BOUNDED, "100000", 1, 1e8, nullptr,
     "keys remembered, about 100 bytes each (collapse: plus the text of keys with repeats); "
     "beyond it the least recently seen is evicted (its repeats summarised)",
     0},
};

enum class Field : uint8_t {
  Host,
  Service,
  Message,
  Level,
  Source,
  EventType,
  ErrorCode,
  TraceId,
  Meta
};

struct KeyField {
  Field field = Field::Host;
  std::string meta;  // for Field::Meta
};

bool parse_field(const std::string &name, uint32_t i, KeyField &out, ConfigProblems &problems) {
  static const std::pair<const char *, Field> kNames[] = {{"host", Field::Host},
                                                          {"service", Field::Service},
                                                          {"message", Field::Message},
                                                          {"level", Field::Level},
                                                          {"source", Field::Source},
                                                          {"event_type", Field::EventType},
                                                          {"error_code", Field::ErrorCode},
                                                          {"trace_id", Field::TraceId}};
  for (const auto &[n, f] : kNames)
    if (name == n) return out = KeyField{f, {}}, true;
  if (name.rfind("meta.", 0) == 0 && name.size() > 5)
    return out = KeyField{Field::Meta, name.substr(5)}, true;
  problems.add("key." + std::to_string(i),
               "unknown field '" + name +
                   "' (host, service, message, level, source, event_type, error_code, trace_id or "
                   "meta.<name>)");
  return false;
}

constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
// A level as one key byte.
constexpr char kLevelBytes[8] = {0, 1, 2, 3, 4, 5, 6, 7};

// One remembered key. Entries live in one array sized once (no allocation per record); the
// LRU list and the hash index refer to them by position.
struct Entry {
  uint64_t k0 = 0, k1 = 0;   // the key's XXH3-128
  int64_t window_start = 0;  // record time of the window's first occurrence
  int64_t first_repeat = 0, last_repeat = 0;
  uint64_t opened_wall = 0;   // clock time the window started
  uint8_t first_id[16] = {};  // event_id of the window's first occurrence
  uint32_t repeats = 0;
  uint32_t prev = kNone, next = kNone;  // LRU: head is the most recently seen
  uint32_t tag = 0;
  uint64_t held_in = 0;     // collapse: the filter call whose batch it last took a hold on
  bool pending = false;     // collapse: repeats waiting for their summary
  bool in_pending = false;  // listed in pending_ (cleared by the next tick)
};

class Dedup {
 public:
  Dedup(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    Config c{host, cfg};
    ConfigProblems problems(host, inst);
    const uint32_t n = c.count("key");
    if (n == 0) problems.add("key", "needs at least one field");
    for (uint32_t i = 0; i < n; ++i) {
      KeyField f;
      if (parse_field(c.item("key", i), i, f, problems)) fields_.push_back(std::move(f));
    }
    problems.refuse_if_any();
    parts_.resize(fields_.size());
    collapse_ = c.string("mode") == "collapse";
    window_ns_ = c.integer("window") * 1000000;
    max_keys_ = static_cast<uint32_t>(c.integer("max_keys"));
    const char *name = host->instance_name(inst);
    name_ = name ? name : "dedup";
    // Reserved, not touched: pages are only used as keys arrive.
    entries_.reserve(max_keys_);
    if (collapse_) {
      contents_.reserve(max_keys_);
      holds_.reserve(max_keys_);
    }
    // Holds came with ABI 1.2; an older host has none (repeats are then acknowledged at once).
    can_hold_ = host->struct_size >= offsetof(dm_host_api, hold_release) + sizeof(void *);
    size_t slots = 16;
    while (slots < size_t(max_keys_) * 2) slots <<= 1;
    index_.assign(slots, Slot{});
    mask_ = slots - 1;

    m_dropped_ = host->metric_counter(inst, "dedup_records_dropped_total",
                                      "repeats removed within their window", nullptr);
    m_summaries_ = host->metric_counter(inst, "dedup_summaries_emitted_total",
                                        "collapse records emitted for repeats", nullptr);
    m_redelivered_ = host->metric_counter(
        inst, "dedup_redeliveries_passed_total",
        "records passed because they carry the event_id of their window's first occurrence "
        "(the same record sent again, e.g. after a timeout: never a repeat)",
        nullptr);
    m_evictions_ = host->metric_counter(inst, "dedup_evictions_total",
                                        "keys evicted because max_keys were remembered", nullptr);
    m_keys_ = host->metric_gauge(inst, "dedup_keys", "keys remembered", nullptr);
  }

  ~Dedup() {
    uint64_t pending = 0;
    for (const Entry &e : entries_)
      if (e.pending) pending += e.repeats;
    // stop() summarised every pending key; only a filter never started or stopped gets here
    // with repeats left: say what was not summarised.
    if (pending)
      host_->log(inst_, DM_LOG_INFO, "%llu collapsed repeats were not yet summarised at shutdown",
                 static_cast<unsigned long long>(pending));
  }

  int start() {
    if (!collapse_) return 0;
    return timer_.start(window_ns_, 10, 1000) ? 0 : 1;
  }

  // The engine stops filters right after its inputs and then still delivers what they emit:
  // every key with repeats waiting is summarised now, so that the collapsed record is stored.
  void stop() {
    timer_.stop();
    for (uint32_t idx : pending_) {
      close(idx);
      entries_[idx].in_pending = false;
    }
    pending_.clear();
    emit_closed();
  }

  int filter(dm_batch *batch, uint8_t *verdicts) {
    now_ = host_->now_ns();
    ++calls_;
    const uint32_t tag = tag_index(sv(batch->tag));
    uint64_t dropped = 0, evicted = 0, redelivered = 0;
    // First every key, prefetching its index slot, so that the slots' cache misses overlap
    // instead of stalling one record after another.
    keys_.resize(batch->count);
    for (uint32_t i = 0; i < batch->count; ++i) {
      hash_key(batch->records[i], keys_[i].k0, keys_[i].k1);
      __builtin_prefetch(&index_[keys_[i].k0 & mask_]);
    }
    for (uint32_t i = 0; i < batch->count; ++i) {
      const dm_record &r = batch->records[i];
      const int64_t ts = r.timestamp_ns;
      watermark_ = std::max(watermark_, ts);
      const uint64_t k0 = keys_[i].k0, k1 = keys_[i].k1;
      uint32_t idx = find(k0, k1);
      if (idx == kNone) {
        if (entries_.size() < max_keys_) {
          idx = static_cast<uint32_t>(entries_.size());
          entries_.emplace_back();
          if (collapse_) {
            contents_.emplace_back();
            holds_.emplace_back();
          }
        } else {
          idx = evict();
          ++evicted;
        }
        Entry &e = entries_[idx];
        const bool listed = e.in_pending;  // an evicted slot may still be listed in pending_
        e = Entry{};
        e.in_pending = listed;
        e.k0 = k0, e.k1 = k1;
        e.tag = tag;
        start_window(e, r);
        insert(idx);
        push_front(idx);
        continue;
      }
      Entry &e = entries_[idx];
      move_to_front(idx);
      const int64_t since = ts - e.window_start;
      if (since >= window_ns_) {
        close(idx);  // a new window starts with this record, which passes
        e.tag = tag;
        start_window(e, r);
        continue;
      }
      // The first occurrence itself, delivered again (a client or sidecar re-sent it after a
      // timeout): it must pass. Dropped, its acknowledgement would complete at once while the
      // first copy may still be on its way to the store, and a crash then would lose it.
      if (is_first_occurrence(e, r)) {
        ++redelivered;
        continue;
      }
      // Far older than the window: not a repeat of it (and it does not move the window back).
      if (since <= -window_ns_) continue;
      verdicts[i] = DM_DROP;
      ++dropped;
      if (e.repeats++ == 0) {
        e.first_repeat = e.last_repeat = ts;
        if (collapse_) remember(idx, r);
      } else {
        e.first_repeat = std::min(e.first_repeat, ts);
        e.last_repeat = std::max(e.last_repeat, ts);
      }
      // The summary is the repeats' only trace: their submit is not acknowledged (no 2xx, no
      // cursor move) until it is stored. One hold per key and batch.
      if (collapse_ && can_hold_ && e.held_in != calls_) {
        e.held_in = calls_;
        if (dm_hold *h = host_->hold(inst_, batch)) holds_[idx].push_back(h);
      }
    }
    add(m_dropped_, dropped);
    add(m_redelivered_, redelivered);
    add(m_evictions_, evicted);
    host_->metric_set(m_keys_, static_cast<double>(entries_.size()));
    emit_closed();
    return 0;
  }

 private:
  // Closes collapse windows that ended in record time (the newest record seen is past them)
  // or on the clock (the key went quiet, or records arrive slower than they were logged).
  void tick() {
    now_ = host_->now_ns();
    size_t kept = 0;
    for (uint32_t idx : pending_) {
      Entry &e = entries_[idx];
      if (e.pending && (watermark_ - e.window_start >= window_ns_ ||
                        now_ - e.opened_wall >= static_cast<uint64_t>(window_ns_)))
        close(idx);
      if (e.pending)
        pending_[kept++] = idx;
      else
        e.in_pending = false;
    }
    pending_.resize(kept);
    emit_closed();
  }

  uint32_t tag_index(std::string_view tag) {
    for (uint32_t i = 0; i < tags_.size(); ++i)
      if (tags_[i] == tag) return i;
    tags_.emplace_back(tag);
    return static_cast<uint32_t>(tags_.size() - 1);
  }

  void start_window(Entry &e, const dm_record &r) {
    e.window_start = r.timestamp_ns;
    std::memcpy(e.first_id, r.event_id, sizeof e.first_id);
    e.opened_wall = now_;
    e.repeats = 0;
    e.pending = false;
  }

  // Length-prefixed fields (an absent meta differs from an empty one) into a reused buffer,
  // hashed with the host's XXH3-128.
  void hash_key(const dm_record &r, uint64_t &k0, uint64_t &k1) {
    // The fields' views and the total size first, then one pass of memcpy into a buffer that
    // only ever grows (std::string appends cost more than the hash itself).
    size_t total = 0;
    for (size_t i = 0; i < fields_.size(); ++i) {
      Part &p = parts_[i];
      p.absent = false;
      switch (fields_[i].field) {
        case Field::Host:
          p.value = sv(r.host);
          break;
        case Field::Service:
          p.value = sv(r.service);
          break;
        case Field::Message:
          p.value = sv(r.message);
          break;
        case Field::Source:
          p.value = sv(r.source);
          break;
        case Field::EventType:
          p.value = sv(r.event_type);
          break;
        case Field::ErrorCode:
          p.value = sv(r.error_code);
          break;
        case Field::TraceId:
          p.value = sv(r.trace_id);
          break;
        case Field::Level:
          p.value = std::string_view(kLevelBytes + r.level % 8, 1);
          break;
        case Field::Meta: {
          uint32_t m = 0;
          while (m < r.meta_count && sv(r.meta[m].key) != fields_[i].meta) ++m;
          p.absent = m == r.meta_count;
          p.value = p.absent ? std::string_view() : sv(r.meta[m].value);
          break;
        }
      }
      total += sizeof(uint32_t) + p.value.size();
    }
    if (key_buf_.size() < total) key_buf_.resize(total);
    char *out = key_buf_.data();
    for (size_t i = 0; i < fields_.size(); ++i) {
      // Length-prefixed, so ("ab", "c") and ("a", "bc") differ, and an absent meta entry
      // differs from an empty one.
      const uint32_t len = parts_[i].absent ? kNone : static_cast<uint32_t>(parts_[i].value.size());
      std::memcpy(out, &len, sizeof len);
      out += sizeof len;
      if (!parts_[i].value.empty())
        std::memcpy(out, parts_[i].value.data(), parts_[i].value.size());
      out += parts_[i].value.size();
    }
    uint8_t h[16];
    host_->hash128(key_buf_.data(), total, h);
    std::memcpy(&k0, h, 8);
    std::memcpy(&k1, h + 8, 8);
    // A one-off huge message does not keep a huge buffer.
    if (key_buf_.size() > (1u << 20)) std::vector<char>().swap(key_buf_);
  }

  // ---- the hash index: open addressing, linear probing, backward-shift deletion ----
  // A slot holds the key's low 32 bits beside the entry's position: probing and deleting read
  // only the index, and an entry is read once its fingerprint matched.

  uint32_t find(uint64_t k0, uint64_t k1) const {
    const uint32_t fp = static_cast<uint32_t>(k0);
    for (size_t i = fp & mask_;; i = (i + 1) & mask_) {
      const Slot &s = index_[i];
      if (s.pos == 0) return kNone;
      if (s.fp != fp) continue;
      const Entry &e = entries_[s.pos - 1];
      if (e.k0 == k0 && e.k1 == k1) return s.pos - 1;
    }
  }

  void insert(uint32_t idx) {
    const uint32_t fp = static_cast<uint32_t>(entries_[idx].k0);
    size_t i = fp & mask_;
    while (index_[i].pos != 0) i = (i + 1) & mask_;
    index_[i] = Slot{fp, idx + 1};
  }

  void erase(uint32_t idx) {
    size_t i = static_cast<uint32_t>(entries_[idx].k0) & mask_;
    while (index_[i].pos != idx + 1) i = (i + 1) & mask_;
    index_[i] = Slot{};
    // Pull later slots of the probe run back so that no lookup stops at the hole too early.
    for (size_t j = (i + 1) & mask_; index_[j].pos != 0; j = (j + 1) & mask_) {
      const size_t home = index_[j].fp & mask_;
      const bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      index_[i] = index_[j];
      index_[j] = Slot{};
      i = j;
    }
  }

  // ---- LRU ----

  void push_front(uint32_t idx) {
    Entry &e = entries_[idx];
    e.prev = kNone;
    e.next = head_;
    if (head_ != kNone) entries_[head_].prev = idx;
    head_ = idx;
    if (tail_ == kNone) tail_ = idx;
  }

  void unlink(uint32_t idx) {
    Entry &e = entries_[idx];
    if (e.prev != kNone)
      entries_[e.prev].next = e.next;
    else
      head_ = e.next;
    if (e.next != kNone)
      entries_[e.next].prev = e.prev;
    else
      tail_ = e.prev;
  }

  void move_to_front(uint32_t idx) {
    if (head_ == idx) return;
    unlink(idx);
    push_front(idx);
  }

  // Frees the least recently seen entry (summarising its repeats) and returns its position.
  uint32_t evict() {
    const uint32_t idx = tail_;
    close(idx);
    unlink(idx);
    erase(idx);
    // A full table evicts on every new key: fetch the next victim's neighbour and index slot
    // now, so that the next eviction does not wait for them.
    if (tail_ != kNone) {
      const Entry &next = entries_[tail_];
      if (next.prev != kNone) __builtin_prefetch(&entries_[next.prev]);
      __builtin_prefetch(&index_[next.k0 & mask_]);
    }
    return idx;
  }

  // ---- collapse ----

  // Keeps the first repeat's fields (all of them, meta included) for the summary record: only
  // keys that repeat cost this copy, never a key seen once.
  void remember(uint32_t idx, const dm_record &r) {
    std::string &c = contents_[idx];
    c.clear();
    auto put = [&](dm_str s) {
      const uint32_t len = static_cast<uint32_t>(s.len);
      c.append(reinterpret_cast<const char *>(&len), sizeof len);
      if (s.len) c.append(s.ptr, s.len);
    };
    c.push_back(static_cast<char>(r.level));
    c.push_back(static_cast<char>(r.priority));
    for (dm_str s : {r.source, r.service, r.host, r.trace_id, r.span_id, r.event_type, r.error_code,
                     r.message})
      put(s);
    const uint32_t mc = r.meta_count;
    c.append(reinterpret_cast<const char *>(&mc), sizeof mc);
    for (uint32_t m = 0; m < mc; ++m) {
      put(r.meta[m].key);
      put(r.meta[m].value);
      c.push_back(static_cast<char>(r.meta[m].type));  // the summary keeps the value's type
    }
    Entry &e = entries_[idx];
    e.pending = true;
    if (!e.in_pending) {
      e.in_pending = true;
      pending_.push_back(idx);
    }
  }

  // Ends the entry's window: its repeats (collapse) become a summary for emit_closed().
  void close(uint32_t idx) {
    Entry &e = entries_[idx];
    if (e.pending && e.repeats > 0) {
      Closed s;
      s.tag = e.tag;
      s.repeats = e.repeats;
      s.first = e.first_repeat;
      s.last = e.last_repeat;
      s.window_start = e.window_start;
      s.k0 = e.k0, s.k1 = e.k1;
      s.content.swap(contents_[idx]);
      s.holds.swap(holds_[idx]);
      closed_.push_back(std::move(s));
    }
    e.pending = false;
    e.repeats = 0;
  }

  void emit_closed() {
    if (closed_.empty()) return;
    std::stable_sort(closed_.begin(), closed_.end(),
                     [](const Closed &a, const Closed &b) { return a.tag < b.tag; });
    for (size_t from = 0; from < closed_.size();) {
      size_t to = from;
      while (to < closed_.size() && closed_[to].tag == closed_[from].tag) ++to;
      emit_batch(from, to);
      from = to;
    }
    closed_.clear();
  }

  void emit_batch(size_t from, size_t to) {
    BatchOwner owner(host_, host_->batch_new(inst_, static_cast<uint32_t>(to - from)));
    dm_batch *b = owner.get();
    if (!b) throw std::runtime_error("batch_new failed");
    const std::string &tag = tags_[closed_[from].tag];
    b->tag = host_->arena_copy(b, tag.data(), tag.size());
    for (size_t i = from; i < to; ++i) {
      const Closed &s = closed_[i];
      dm_record *r = host_->batch_add(b);
      if (!r) throw std::runtime_error("batch_add failed");
      restore(b, r, s.content);
      r->timestamp_ns = s.last;
      // The same window of the same key gives the same id (a re-made summary is one row).
      const int64_t id_parts[3] = {static_cast<int64_t>(s.k0), static_cast<int64_t>(s.k1),
                                   s.window_start};
      std::string id = name_ + '\0';
      id.append(reinterpret_cast<const char *>(id_parts), sizeof id_parts);
      host_->hash128(id.data(), id.size(), r->event_id);
      char n[32], t1[64], t2[64];
      const size_t ln = static_cast<size_t>(std::to_chars(n, n + sizeof n, s.repeats).ptr - n);
      meta(b, r, "repeat_count", std::string_view(n, ln));
      meta(b, r, "first_seen", std::string_view(t1, format_rfc3339_us(s.first, t1, sizeof t1)));
      meta(b, r, "last_seen", std::string_view(t2, format_rfc3339_us(s.last, t2, sizeof t2)));
    }
    // The batch carries the holds: freed unemitted, it releases them.
    for (size_t i = from; i < to; ++i)
      for (dm_hold *h : closed_[i].holds) host_->hold_attach(b, h);
    const uint32_t count = b->count;
    if (host_->emit(inst_, b) != DM_OK) {
      host_->log(inst_, DM_LOG_ERROR, "emit refused %u collapse records", count);
      return;  // still ours: the owner frees it
    }
    owner.release();
    add(m_summaries_, count);
  }

  // Rebuilds a record from remember()'s bytes, into the batch's arena.
  void restore(dm_batch *b, dm_record *r, const std::string &c) {
    size_t at = 0;
    auto get = [&]() {
      uint32_t len;
      std::memcpy(&len, c.data() + at, sizeof len);
      at += sizeof len;
      dm_str s = host_->arena_copy(b, c.data() + at, len);
      at += len;
      return s;
    };
    r->level = static_cast<uint8_t>(c[at++]);
    r->priority = static_cast<int8_t>(c[at++]);
    for (dm_str *s : {&r->source, &r->service, &r->host, &r->trace_id, &r->span_id, &r->event_type,
                      &r->error_code, &r->message})
      *s = get();
    uint32_t mc;
    std::memcpy(&mc, c.data() + at, sizeof mc);
    at += sizeof mc;
    for (uint32_t m = 0; m < mc; ++m) {
      const dm_str k = get(), v = get();
      const auto type = static_cast<uint32_t>(static_cast<uint8_t>(c[at++]));
      if (host_->meta_set(b, r, k, v, type) != DM_OK) throw std::runtime_error("meta_set failed");
    }
  }

  void meta(dm_batch *b, dm_record *r, std::string_view k, std::string_view v) {
    if (host_->meta_set(b, r, str(k), str(v), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }

  void add(dm_metric *m, uint64_t v) {
    if (m && v) host_->metric_add(m, static_cast<double>(v));
  }

  struct Closed {
    uint32_t tag = 0;
    uint32_t repeats = 0;
    int64_t first = 0, last = 0, window_start = 0;
    uint64_t k0 = 0, k1 = 0;
    std::string content;
    std::vector<dm_hold *> holds;  // on the submits of the repeats it stands for
  };

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string name_;

  // Configuration.
  std::vector<KeyField> fields_;
  bool collapse_ = false;
  int64_t window_ns_ = 0;
  uint32_t max_keys_ = 0;

  // State (loop thread only).
  std::vector<Entry> entries_;
  std::vector<std::string> contents_;          // collapse: the first repeat's fields, per entry
  std::vector<std::vector<dm_hold *>> holds_;  // collapse: holds on the repeats' submits
  uint64_t calls_ = 0;                         // filter() calls so far
  bool can_hold_ = false;
  struct Slot {
    uint32_t fp = 0;   // the key's low 32 bits (its home slot is fp & mask_)
    uint32_t pos = 0;  // entry position + 1; 0: empty
  };
  struct Key {
    uint64_t k0, k1;
  };
  std::vector<Slot> index_;
  std::vector<Key> keys_;  // the batch's keys, reused across batches
  size_t mask_ = 0;
  uint32_t head_ = kNone, tail_ = kNone;
  std::vector<uint32_t> pending_;
  std::vector<Closed> closed_;
  std::vector<std::string> tags_;
  struct Part {
    std::string_view value;
    bool absent = false;  // a meta entry the record does not have
  };
  std::vector<Part> parts_;  // one per key field, reused for every record
  std::vector<char> key_buf_;
  int64_t watermark_ = std::numeric_limits<int64_t>::min();
  uint64_t now_ = 0;
  WindowTimer<Dedup, &Dedup::tick> timer_{host_, inst_, this};

  static bool is_first_occurrence(const Entry &e, const dm_record &r) {
    static constexpr uint8_t kNoId[16] = {};
    return std::memcmp(r.event_id, e.first_id, sizeof e.first_id) == 0 &&
           std::memcmp(r.event_id, kNoId, sizeof kNoId) != 0;
  }

  dm_metric *m_dropped_, *m_summaries_, *m_redelivered_, *m_evictions_, *m_keys_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Dedup>::describe(
    DM_FILTER, "dedup", "0.1.0",
    "drops or collapses records repeating a key within a window of record time", devmesh::kOptions,
    static_cast<uint32_t>(std::size(devmesh::kOptions))))
