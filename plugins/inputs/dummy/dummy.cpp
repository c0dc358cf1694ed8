// dummy input: generates numbered records at a set rate (or as fast as the pipeline takes them)
// for tests and benchmarks; record N always gets the same event_id, so re-delivery is visible.
#include <devmesh/plugin.hpp>

#include <unistd.h>

#include "timestamp.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace devmesh {
namespace {

const char *const kLevels[] = {"DEBUG",    "INFO",  "WARN", "WARNING", "ERROR",
                               "CRITICAL", "FATAL", "NONE", nullptr};

// The options, bound: config_bind fills a DummyConfig with the validated values and defaults.
// The record's own text (message, service, host, source) is read with config_string instead: a
// bound const char * would end at a NUL the value may hold ("nul\0ctl" is sent as written).
struct DummyConfig {
  double rate = 0;
  int64_t count = 0;
  int64_t batch = 0;
  int64_t start = 0;
  const char *level = nullptr;
  dm_strings meta{};
  int64_t priority = -1;
  dm_strings services{};
  dm_strings messages{};
  const char *timestamp_start = nullptr;  // unset: the clock
  int64_t timestamp_step_ms = -1;         // unset (the schema's bounds start at 0)
};

using C = DummyConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_DOUBLE>("rate", &C::rate,
                          "records per second; 0 generates as fast as the pipeline accepts them")
        .value("1")
        .bounded(0, 1e9),
    Option<DM_OPT_INT>("count", &C::count,
                       "records to generate, then the input finishes; 0 never finishes")
        .value("0")
        .bounded(0, 1e15),
    Option<DM_OPT_INT>(
        "batch", &C::batch,
        "most records per submitted batch (low rates submit smaller batches, never wait to fill)")
        .value("256")
        .bounded(1, 100000),
    Option<DM_OPT_INT>("start", &C::start, "sequence number of the first record")
        .value("1")
        .bounded(0, 1e15),
    {"message", DM_OPT_STRING, 0, "dummy record {seq}", 0, 0, nullptr,
     "message template; each {seq} becomes the record's sequence number", 0},
    {"service", DM_OPT_STRING, 0, "dummy", 0, 0, nullptr, "service field of every record", 0},
    {"host", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "host field of every record; default: this machine's hostname", 0},
    {"source", DM_OPT_STRING, 0, "dummy", 0, 0, nullptr, "source field of every record", 0},
    Option<DM_OPT_STRING>("level", &C::level, "level of every record; NONE leaves it unset")
        .value("INFO")
        .allowed(kLevels),
    Option<DM_OPT_MAP>("meta", &C::meta, "extra meta entries for every record, besides seq=<n>"),
    Option<DM_OPT_INT>("priority", &C::priority, "syslog priority of every record (0..7); -1: none")
        .value("-1")
        .bounded(-1, 7),
    Option<DM_OPT_LIST>("services", &C::services,
                        "services given in turn, one per record (instead of service)"),
    Option<DM_OPT_LIST>("messages", &C::messages,
                        "message templates used in turn, one per record (instead of message)"),
    Option<DM_OPT_STRING>(
        "timestamp_start", &C::timestamp_start,
        "timestamp of the first record (RFC 3339); with it or timestamp_step, record i is stamped "
        "start + i * step instead of with the clock"),
    Option<DM_OPT_DURATION>(
        "timestamp_step", &C::timestamp_step_ms,
        "time between consecutive records' timestamps; default 0 (with timestamp_start)")
        .bounded(0, 86400000),
};

// Bounds the work of one timer tick so the loop serves other handles between ticks.
constexpr int kMaxBatchesPerTick = 50;
// A refused submit (DM_ERR_FULL) normally comes with pause() and resume() restarts us; this is
// only the fallback poll for a host that refuses without pausing.
constexpr uint64_t kRefusedRetryMs = 50;
constexpr uint64_t kErrorRetryMs = 1000;
// Messages up to this size are formatted on the stack and copied once into the arena.
constexpr size_t kStackMessage = 1024;
constexpr size_t kMaxDigits = std::numeric_limits<uint64_t>::digits10 + 1;

// A level name the schema allowed (kLevels); false for another.
bool parse_level(std::string_view name, uint8_t &level) {
  level = DM_LEVEL_UNSET;
  if (name == "NONE") return true;
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (name == dm_level_name(l)) return level = static_cast<uint8_t>(l), true;
  return false;
}

class Dummy {
 public:
  Dummy(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    const DummyConfig c = bound_config<DummyConfig>(host, cfg);
    const Config text{host, cfg};
    ConfigProblems problems(host, inst);
    rate_ = c.rate;
    // The host enforces the schema bounds; these guard a host that does not.
    if (!(rate_ >= 0) || !std::isfinite(rate_)) problems.add("rate", "must be >= 0");
    if (c.count < 0) problems.add("count", "must be >= 0");
    if (c.batch < 1 || c.batch > 100000) problems.add("batch", "must be 1..100000");
    if (c.start < 0) problems.add("start", "must be >= 0");
    count_ = static_cast<uint64_t>(c.count);
    batch_ = static_cast<uint32_t>(c.batch);
    next_seq_ = static_cast<uint64_t>(c.start);

    if (c.messages.count) {
      for (uint32_t i = 0; i < c.messages.count; ++i)
        split_template(std::string(sv_item(c.messages, i)));
    } else {
      split_template(text.string("message"));
    }
    service_ = text.string("service");
    for (uint32_t i = 0; i < c.services.count; ++i) services_.emplace_back(sv_item(c.services, i));
    priority_ = static_cast<int8_t>(std::clamp<int64_t>(c.priority, -1, 7));
    if (c.timestamp_start) {
      const std::string t = c.timestamp_start;
      if (!parse_rfc3339(t, ts_start_))
        problems.add("timestamp_start", "'" + t + "' is not an RFC 3339 time");
      synthetic_ts_ = has_ts_start_ = true;
    }
    if (c.timestamp_step_ms >= 0) {
      ts_step_ = c.timestamp_step_ms * 1000000;
      synthetic_ts_ = true;
    }
    first_seq_ = next_seq_;
    source_ = text.string("source");
    if (!parse_level(c.level ? c.level : "", level_))
      problems.add("level", "unknown level '" + std::string(c.level ? c.level : "") + "'");
    problems.refuse_if_any();
    if (text.has("host")) {
      host_name_ = text.string("host");
    } else {
      char buf[256] = {};
      if (gethostname(buf, sizeof buf - 1) != 0) throw std::runtime_error("gethostname failed");
      host_name_ = buf;
    }
    for (uint32_t i = 0; i < c.meta.count; ++i)
      meta_.emplace_back(sv_key(c.meta, i), sv_item(c.meta, i));
    const char *name = host->instance_name(inst);
    id_prefix_ = std::string(name ? name : "dummy") + ":";

    m_generated_ = host->metric_counter(inst, "dummy_records_generated_total",
                                        "records generated and accepted by the engine", nullptr);
    m_refused_ = host->metric_counter(inst, "dummy_submits_refused_total",
                                      "submits refused by backpressure, retried later", nullptr);
    m_acks_ = host->metric_counter(inst, "dummy_acks_total", "tickets acknowledged", nullptr);
    m_delivered_ = host->metric_counter(inst, "dummy_ack_deliveries_total",
                                        "record deliveries reported by acks", nullptr);
    m_dead_ = host->metric_counter(inst, "dummy_ack_dead_lettered_total",
                                   "record deliveries dead-lettered, reported by acks", nullptr);
    m_failed_ = host->metric_counter(
        inst, "dummy_ack_failed_total",
        "record deliveries that failed and were not kept, reported by acks", nullptr);
    m_dropped_ =
        host->metric_counter(inst, "dummy_ack_dropped_total",
                             "records dropped by filters or unrouted, reported by acks", nullptr);
  }

  ~Dummy() {
    if (timer_) host_->timer_free(timer_);
    if (pending_) host_->batch_free(pending_);
    host_->log(inst_, DM_LOG_INFO, "generated %llu records in %llu batches, %llu acked",
               static_cast<unsigned long long>(accepted_records_),
               static_cast<unsigned long long>(submitted_),
               static_cast<unsigned long long>(acked_));
  }

  int start() {
    timer_ = host_->timer_new(inst_, on_timer, this);
    if (!timer_) {
      host_->log(inst_, DM_LOG_ERROR, "timer_new failed");
      return 1;
    }
    started_ = true;
    last_refill_ns_ = host_->now_ns();
    if (synthetic_ts_ && !has_ts_start_) ts_start_ = static_cast<int64_t>(last_refill_ns_);
    tokens_ = rate_ > 0 ? 1 : 0;  // the first record goes out at once, not after 1/rate s
    schedule(0);
    return 0;
  }

  void stop() {
    stopped_ = true;
    if (timer_) host_->timer_stop(timer_);
  }

  void pause() {
    paused_ = true;
    if (timer_) host_->timer_stop(timer_);
  }

  void resume() {
    paused_ = false;
    // Time spent paused earns no tokens: a rate-limited source does not burst after backpressure.
    last_refill_ns_ = host_->now_ns();
    schedule(0);
  }

  void on_ack(const dm_ack &ack) {
    ++acked_;
    add(m_acks_, 1);
    add(m_delivered_, ack.delivered);
    add(m_dead_, ack.dead_lettered);
    add(m_failed_, ack.failed);
    add(m_dropped_, ack.dropped);
  }

 private:
  static void on_timer(void *arg) {
    auto *self = static_cast<Dummy *>(arg);
    // A failed tick (the host out of batch memory) is logged by guarded(); try again later
    // rather than stall for good.
    if (guarded(self->host_, self->inst_, 1, [&] { return self->tick(), 0; }))
      self->schedule(kErrorRetryMs);
  }

  bool can_run() const { return started_ && !stopped_ && !paused_ && !finished_; }

  void schedule(uint64_t ms) {
    if (can_run()) host_->timer_start(timer_, ms, 0);
  }

  void add(dm_metric *m, double v) {
    if (m && v != 0) host_->metric_add(m, v);
  }

  void tick() {
    if (!can_run()) return;
    // A refused batch keeps its sequence numbers: it goes first, so there are never gaps.
    if (pending_ && !submit_pending()) return;

    const bool limited = rate_ > 0;
    uint64_t budget = std::numeric_limits<uint64_t>::max();
    if (limited) {
      refill();
      budget = static_cast<uint64_t>(tokens_);
    }
    for (int i = 0; i < kMaxBatchesPerTick && can_run(); ++i) {
      uint64_t n = std::min<uint64_t>(batch_, budget);
      if (count_) n = std::min(n, count_ - generated_);
      if (n == 0) break;
      pending_ = make_batch(static_cast<uint32_t>(n));
      generated_ += n;
      budget -= n;
      if (limited) tokens_ -= static_cast<double>(n);
      if (!submit_pending()) return;
    }
    if (count_ && generated_ == count_) return finish();
    if (!limited) return schedule(0);  // yield to the loop, then go on
    const double want = wanted_per_tick();
    if (tokens_ >= want) return schedule(0);
    schedule(
        std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil((want - tokens_) / rate_ * 1e3))));
  }

  // Records worth waking up for: ~10 ms of records, so high rates submit real batches and low
  // rates submit each record as soon as it is due.
  double wanted_per_tick() const {
    double want = std::clamp(rate_ * 0.01, 1.0, static_cast<double>(batch_));
    if (count_) want = std::min(want, static_cast<double>(count_ - generated_));
    return std::max(want, 1.0);
  }

  void refill() {
    const uint64_t now = host_->now_ns();
    const double elapsed =
        now > last_refill_ns_ ? static_cast<double>(now - last_refill_ns_) * 1e-9 : 0;
    last_refill_ns_ = now;
    // Bursts after a stalled loop are capped at ~100 ms worth of records.
    const double burst = std::max(rate_ * 0.1, wanted_per_tick()) + 1;
    tokens_ = std::min(tokens_ + elapsed * rate_, burst);
  }

  // Hands pending_ to the engine; false when it is still ours (and a retry is arranged).
  bool submit_pending() {
    uint64_t ticket = 0;
    const uint32_t n = pending_->count;
    const int rc = host_->submit(inst_, pending_, &ticket);
    if (rc == DM_OK) {
      pending_ = nullptr;
      ++submitted_;
      accepted_records_ += n;
      add(m_generated_, n);
      submit_error_logged_ = false;
      return true;
    }
    if (rc == DM_ERR_FULL) {
      add(m_refused_, 1);
      schedule(kRefusedRetryMs);  // no-op when pause() came with the refusal
      return false;
    }
    if (!submit_error_logged_)
      host_->log(inst_, DM_LOG_ERROR, "submit failed (%d); retrying every %llu ms", rc,
                 static_cast<unsigned long long>(kErrorRetryMs));
    submit_error_logged_ = true;
    schedule(kErrorRetryMs);
    return false;
  }

  void finish() {
    finished_ = true;
    if (timer_) host_->timer_stop(timer_);
    host_->log(inst_, DM_LOG_INFO, "generated all %llu records (seq %llu..%llu)",
               static_cast<unsigned long long>(count_),
               static_cast<unsigned long long>(next_seq_ - count_),
               static_cast<unsigned long long>(next_seq_ - 1));
    host_->input_finished(inst_);
  }

  // A message template split at each {seq}, and its longest formatted length.
  struct Template {
    std::vector<std::string> parts;
    size_t max = 0;
  };

  void split_template(std::string_view t) {
    static constexpr std::string_view kSeq = "{seq}";
    Template tpl;
    for (size_t at; (at = t.find(kSeq)) != std::string_view::npos;
         t.remove_prefix(at + kSeq.size()))
      tpl.parts.emplace_back(t.substr(0, at));
    tpl.parts.emplace_back(t);
    tpl.max = (tpl.parts.size() - 1) * kMaxDigits;
    for (const auto &p : tpl.parts) tpl.max += p.size();
    templates_.push_back(std::move(tpl));
  }

  // Writes the template with `digits` for each {seq} to out (tpl.max bytes); returns length.
  static size_t format_message(const Template &tpl, char *out, std::string_view digits) {
    char *p = out;
    for (size_t i = 0; i < tpl.parts.size(); ++i) {
      if (i) p = std::copy(digits.begin(), digits.end(), p);
      p = std::copy(tpl.parts[i].begin(), tpl.parts[i].end(), p);
    }
    return static_cast<size_t>(p - out);
  }

  dm_str copy(dm_batch *b, std::string_view s) {
    dm_str r = host_->arena_copy(b, s.data(), s.size());
    if (!s.empty() && !r.ptr) throw std::runtime_error("arena_copy failed");
    return r;
  }

  // Builds n records numbered from next_seq_. Fields common to the batch are copied into its
  // arena once; per record only the message and meta are written, into the arena, never the heap.
  dm_batch *make_batch(uint32_t n) {
    BatchOwner owner(host_, host_->batch_new(inst_, n));
    dm_batch *b = owner.get();
    if (!b) throw std::runtime_error("batch_new failed");
    const int64_t ts = static_cast<int64_t>(host_->now_ns());
    const dm_str service = copy(b, service_), source = copy(b, source_), host = copy(b, host_name_);
    // Rotating services are copied once per batch, not per record.
    services_arena_.clear();
    for (const auto &s : services_) services_arena_.push_back(copy(b, s));
    const dm_str seq_key = str("seq");

    char id_buf[256 + kMaxDigits];
    const size_t id_prefix_len = std::min(id_prefix_.size(), sizeof id_buf - kMaxDigits);
    std::copy_n(id_prefix_.data(), id_prefix_len, id_buf);
    char stack_msg[kStackMessage];

    uint64_t seq = next_seq_;
    for (uint32_t i = 0; i < n; ++i, ++seq) {
      dm_record *r = host_->batch_add(b);
      if (!r) throw std::runtime_error("batch_add failed");
      const uint64_t index = seq - first_seq_;  // the record's position since the first
      r->timestamp_ns = synthetic_ts_ ? ts_start_ + static_cast<int64_t>(index) * ts_step_ : ts;
      r->level = level_;
      r->priority = priority_;
      r->service =
          services_arena_.empty() ? service : services_arena_[index % services_arena_.size()];
      r->source = source;
      r->host = host;

      char *digits_end = std::to_chars(id_buf + id_prefix_len, std::end(id_buf), seq).ptr;
      const std::string_view digits(id_buf + id_prefix_len,
                                    static_cast<size_t>(digits_end - (id_buf + id_prefix_len)));
      host_->hash128(id_buf, static_cast<size_t>(digits_end - id_buf), r->event_id);

      const Template &tpl = templates_[index % templates_.size()];
      if (tpl.max <= sizeof stack_msg) {
        r->message = copy(b, std::string_view(stack_msg, format_message(tpl, stack_msg, digits)));
      } else {
        auto *p = static_cast<char *>(host_->arena_alloc(b, tpl.max));
        if (!p) throw std::runtime_error("arena_alloc failed");
        r->message = dm_str{p, format_message(tpl, p, digits)};
      }

      if (host_->meta_set(b, r, seq_key, str(digits), DM_META_STRING) != DM_OK)
        throw std::runtime_error("meta_set failed");
      for (const auto &[k, v] : meta_)
        if (host_->meta_set(b, r, str(k), str(v), DM_META_STRING) != DM_OK)
          throw std::runtime_error("meta_set failed");
    }
    next_seq_ = seq;
    return owner.release();
  }

  const dm_host_api *host_;
  dm_instance *inst_;

  // Configuration.
  double rate_ = 1;
  uint64_t count_ = 0;  // 0: unlimited
  uint32_t batch_ = 256;
  uint8_t level_ = DM_LEVEL_INFO;
  std::vector<Template> templates_;  // `message`, or `messages` used in turn
  std::string service_, source_, host_name_, id_prefix_;
  std::vector<std::string> services_;   // `services` used in turn, if set
  std::vector<dm_str> services_arena_;  // their copies in the batch being built
  int8_t priority_ = -1;
  // timestamp_start / timestamp_step: record i is stamped start + i * step.
  bool synthetic_ts_ = false, has_ts_start_ = false;
  int64_t ts_start_ = 0, ts_step_ = 0;
  uint64_t first_seq_ = 1;
  std::vector<std::pair<std::string, std::string>> meta_;

  // Generation state (loop thread only).
  dm_timer *timer_ = nullptr;
  dm_batch *pending_ = nullptr;  // generated but refused by submit: retried before anything new
  uint64_t next_seq_ = 1;
  uint64_t generated_ = 0;  // records built, including pending_
  uint64_t accepted_records_ = 0, submitted_ = 0, acked_ = 0;
  double tokens_ = 0;
  uint64_t last_refill_ns_ = 0;
  bool started_ = false, stopped_ = false, paused_ = false, finished_ = false;
  bool submit_error_logged_ = false;

  dm_metric *m_generated_, *m_refused_, *m_acks_, *m_delivered_, *m_dead_, *m_dropped_, *m_failed_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Dummy>::describe(
    DM_INPUT, "dummy", "0.1.0",
    "generates numbered records at a set rate, for tests and benchmarks", devmesh::kOptions,
    static_cast<uint32_t>(std::size(devmesh::kOptions))))
