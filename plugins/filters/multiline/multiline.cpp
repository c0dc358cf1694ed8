// multiline filter: joins the lines of a stack trace (Java, Python, Go panics and goroutine
// dumps, or a configured start/continue regex pair) that arrive as separate records into one
// record per stream (service + pid by default). The lines it holds are dropped from their
// batches under a hold on their submits, so an input's checkpoint never passes a line that is
// only in memory; the joined record, emitted at the next line of the stream, at flush_timeout
// or at stop, carries those holds and releases them once it is delivered.
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rules.hpp"

namespace devmesh {
namespace {

using multiline::Rule;
using multiline::RuleKind;

const char *const kRules[] = {"java", "python", "go", "regex", nullptr};

struct MultilineConfig {
  dm_strings rules{};
  const char *start_regex = nullptr;
  const char *continue_regex = nullptr;
  dm_strings key{};
  int64_t flush_timeout_ms = 0;
  int64_t max_lines = 0;
  int64_t max_bytes = 0;
};

using C = MultilineConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_LIST>("rules", &C::rules,
                        "what starts and continues a multi-line record, tried in order for a "
                        "start: java (an exception line, then indented \"at\" frames, \"Caused "
                        "by:\", \"... N more\"), python (\"Traceback (most recent call last):\" "
                        "to the exception line, chained tracebacks included), go (panic:, fatal "
                        "error:, goroutine dumps), regex (start_regex and continue_regex)")
        .allowed(kRules)
        .required(),
    Option<DM_OPT_STRING>("start_regex", &C::start_regex,
                          "rule regex: a line matching this PCRE2 pattern starts a record"),
    Option<DM_OPT_STRING>("continue_regex", &C::continue_regex,
                          "rule regex: a line matching this PCRE2 pattern continues the open "
                          "record of its stream"),
    Option<DM_OPT_LIST>("key", &C::key,
                        "the fields whose values name a stream (lines join only within one): "
                        "service, host, source, or a meta key (journald puts the process id "
                        "in meta pid; an http client sends it as meta_json.pid)")
        .value("[service, pid]"),
    Option<DM_OPT_DURATION>("flush_timeout", &C::flush_timeout_ms,
                            "a record is emitted at most this long after its first line "
                            "arrived, whether or not more lines could follow")
        .value("1s")
        .bounded(1, 3600000),
    Option<DM_OPT_INT>("max_lines", &C::max_lines,
                       "a record is emitted once it has this many lines; later continuation "
                       "lines pass on their own")
        .value("1000")
        .bounded(2, 1e6),
    Option<DM_OPT_SIZE>("max_bytes", &C::max_bytes,
                        "a record is emitted once its message has this many bytes; a line that "
                        "would pass it passes on its own instead (and ends the record)")
        .value("1MiB")
        .bounded(1024, 64.0 * 1024 * 1024),
};

enum class KeyField : uint8_t { service, host, source, meta };

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// A record held while its stream's lines join: its fields copied out of the batch it came in.
struct Held {
  std::string tag, source, service, host, trace_id, span_id, event_type, error_code, message;
  struct Meta {
    std::string key, value;
    uint32_t type;
  };
  std::vector<Meta> meta;
  int64_t timestamp_ns = 0;
  uint8_t level = DM_LEVEL_UNSET;
  int8_t priority = -1;
  uint8_t first_id[16] = {}, last_id[16] = {};
  uint32_t lines = 0;
};

struct Stream {
  bool open = false;
  const Rule *rule = nullptr;
  uint8_t phase = 0;
  uint64_t generation = 0;  // of the open record: tells its deadline from an earlier record's
  uint64_t held_in = 0;     // the filter call whose batch it last took a hold on
  Held record;
  std::vector<dm_hold *> holds;
};

enum Reason { kNextLine = 0, kTimeout = 1, kMaxLines = 2, kMaxBytes = 3, kStop = 4, kReasons = 5 };
const char *const kReasonNames[kReasons] = {"next_line", "timeout", "max_lines", "max_bytes",
                                            "stop"};

class Multiline {
 public:
  Multiline(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    const MultilineConfig c = bound_config<MultilineConfig>(host, cfg);
    ConfigProblems problems(host, inst);
    bool wants_regex = false;
    for (uint32_t i = 0; i < c.rules.count; ++i) {
      const std::string_view r = sv_item(c.rules, i);
      if (r == "regex") {
        wants_regex = true;
        if (!c.start_regex || !c.continue_regex) {
          problems.add("rules", "rule regex needs start_regex and continue_regex");
          continue;
        }
        std::string error;
        bool start_bad = false;
        auto rule = Rule::custom(c.start_regex, c.continue_regex, error, start_bad);
        if (!rule)
          problems.add(start_bad ? "start_regex" : "continue_regex", error);
        else
          rules_.push_back(std::move(rule));
      } else {
        rules_.push_back(Rule::builtin(r == "java"     ? RuleKind::java
                                       : r == "python" ? RuleKind::python
                                                       : RuleKind::go));
      }
    }
    if (c.rules.count == 0) problems.add("rules", "lists no rule");
    if (!wants_regex && (c.start_regex || c.continue_regex))
      problems.add(c.start_regex ? "start_regex" : "continue_regex",
                   "is set but rules does not list regex");
    for (uint32_t i = 0; i < c.key.count; ++i) {
      const std::string k(sv_item(c.key, i));
      if (k.empty()) {
        problems.add("key[" + std::to_string(i) + "]", "empty field name");
        continue;
      }
      keys_.push_back({k == "service"  ? KeyField::service
                       : k == "host"   ? KeyField::host
                       : k == "source" ? KeyField::source
                                       : KeyField::meta,
                       k});
    }
    timeout_ns_ = c.flush_timeout_ms * 1000000;
    max_lines_ = static_cast<uint32_t>(c.max_lines);
    max_bytes_ = static_cast<size_t>(c.max_bytes);
    problems.refuse_if_any();
    can_hold_ = DM_HOST_HAS(host, hold_release);
    m_joined_ = host->metric_counter(inst, "multiline_records_joined_total",
                                     "records emitted that joined two lines or more", nullptr);
    m_lines_ =
        host->metric_counter(inst, "multiline_lines_joined_total",
                             "lines folded into a joined record (its first included)", nullptr);
    for (int r = 0; r < kReasons; ++r) {
      const std::string labels = std::string("reason=\"") + kReasonNames[r] + "\"";
      m_flushes_[r] = host->metric_counter(
          inst, "multiline_flushes_total",
          "held records emitted: at the next line of their stream that does not continue them, "
          "at flush_timeout, at max_lines, at max_bytes, at stop",
          labels.c_str());
    }
    m_held_ =
        host->metric_gauge(inst, "multiline_streams_open", "streams holding a record", nullptr);
  }

  ~Multiline() {
    if (timer_) host_->timer_free(timer_);
    // stop() emitted every open record; a filter never started lets its holds go.
    for (auto &[k, s] : streams_)
      for (dm_hold *h : s.holds) host_->hold_release(h);
  }

  int start() {
    timer_ = host_->timer_new(inst_, on_timer, this);
    if (!timer_) {
      host_->log(inst_, DM_LOG_ERROR, "timer_new failed");
      return 1;
    }
    return 0;
  }

  // The engine stops filters after its inputs and still delivers what they emit.
  void stop() {
    if (timer_) host_->timer_stop(timer_);
    for (auto &[k, s] : streams_)
      if (s.open) flush(s, kStop);
    deadlines_.clear();
    gauge();
  }

  int filter(dm_batch *batch, uint8_t *verdicts) {
    ++calls_;
    const std::string_view tag = sv(batch->tag);
    for (uint32_t i = 0; i < batch->count; ++i) {
      dm_record &r = batch->records[i];
      const std::string_view line = sv(r.message);
      Stream *s = nullptr;
      if (open_ > 0) {
        stream_key(tag, r);
        auto it = streams_.find(key_);
        if (it != streams_.end() && it->second.open) s = &it->second;
      }
      if (s) {
        // A line that would take the record past max_bytes ends it and is judged on its own.
        if (s->record.message.size() + 1 + line.size() > max_bytes_) {
          flush(*s, kMaxBytes);
        } else if (s->rule->continues(line, s->phase)) {
          append(*s, r, batch);
          verdicts[i] = DM_DROP;
          if (s->record.lines >= max_lines_) flush(*s, kMaxLines);
          continue;
        } else {
          flush(*s, kNextLine);
        }
      }
      const Rule *rule = nullptr;
      for (const auto &candidate : rules_)
        if (candidate->starts(line)) {
          rule = candidate.get();
          break;
        }
      if (!rule) continue;
      if (!s) {
        stream_key(tag, r);
        s = &streams_[key_];
      }
      open(*s, *rule, tag, r, batch);
      verdicts[i] = DM_DROP;
    }
    arm();
    gauge();
    return 0;
  }

 private:
  // key_ = tag, then each key field's value, NUL-separated.
  void stream_key(std::string_view tag, const dm_record &r) {
    key_.assign(tag);
    for (const auto &[field, name] : keys_) {
      key_.push_back('\0');
      switch (field) {
        case KeyField::service:
          key_.append(sv(r.service));
          break;
        case KeyField::host:
          key_.append(sv(r.host));
          break;
        case KeyField::source:
          key_.append(sv(r.source));
          break;
        case KeyField::meta:
          for (uint32_t m = 0; m < r.meta_count; ++m)
            if (sv(r.meta[m].key) == name) {
              key_.append(sv(r.meta[m].value));
              break;
            }
          break;
      }
    }
  }

  void hold(Stream &s, dm_batch *batch) {
    // One hold per stream and batch: the joined record stands in for every line it dropped.
    if (!can_hold_ || s.held_in == calls_) return;
    s.held_in = calls_;
    if (dm_hold *h = host_->hold(inst_, batch)) s.holds.push_back(h);
  }

  void open(Stream &s, const Rule &rule, std::string_view tag, const dm_record &r,
            dm_batch *batch) {
    Held &h = s.record;
    h.tag.assign(tag);
    h.source.assign(sv(r.source));
    h.service.assign(sv(r.service));
    h.host.assign(sv(r.host));
    h.trace_id.assign(sv(r.trace_id));
    h.span_id.assign(sv(r.span_id));
    h.event_type.assign(sv(r.event_type));
    h.error_code.assign(sv(r.error_code));
    h.message.assign(sv(r.message));
    h.meta.resize(r.meta_count);
    for (uint32_t m = 0; m < r.meta_count; ++m) {
      h.meta[m].key.assign(sv(r.meta[m].key));
      h.meta[m].value.assign(sv(r.meta[m].value));
      h.meta[m].type = r.meta[m].type;
    }
    h.timestamp_ns = r.timestamp_ns;
    h.level = r.level;
    h.priority = r.priority;
    std::copy(std::begin(r.event_id), std::end(r.event_id), h.first_id);
    std::copy(std::begin(r.event_id), std::end(r.event_id), h.last_id);
    h.lines = 1;
    s.open = true;
    s.rule = &rule;
    s.phase = 0;
    s.held_in = 0;
    s.generation = ++generations_;
    ++open_;
    hold(s, batch);
    deadlines_.push_back(
        {host_->now_ns() + static_cast<uint64_t>(timeout_ns_), key_, s.generation});
  }

  void append(Stream &s, const dm_record &r, dm_batch *batch) {
    Held &h = s.record;
    h.message.push_back('\n');
    h.message.append(sv(r.message));
    // The most severe line's level: a trace's exception line may be logged at ERROR.
    if (dm_level_rank(r.level) > dm_level_rank(h.level)) {
      h.level = r.level;
      h.priority = r.priority;
    }
    std::copy(std::begin(r.event_id), std::end(r.event_id), h.last_id);
    ++h.lines;
    hold(s, batch);
  }

  // Emits the stream's record (joined or a lone start line) with its holds.
  void flush(Stream &s, Reason reason) {
    s.open = false;
    --open_;
    Held &h = s.record;
    BatchOwner owner(host_, host_->batch_new(inst_, 1));
    dm_batch *b = owner.get();
    if (!b) throw std::runtime_error("batch_new failed");
    b->tag = host_->arena_copy(b, h.tag.data(), h.tag.size());
    dm_record *r = host_->batch_add(b);
    if (!r) throw std::runtime_error("batch_add failed");
    auto copy = [&](const std::string &v) { return host_->arena_copy(b, v.data(), v.size()); };
    r->timestamp_ns = h.timestamp_ns;
    r->level = h.level;
    r->priority = h.priority;
    r->source = copy(h.source);
    r->service = copy(h.service);
    r->host = copy(h.host);
    r->trace_id = copy(h.trace_id);
    r->span_id = copy(h.span_id);
    r->event_type = copy(h.event_type);
    r->error_code = copy(h.error_code);
    r->message = copy(h.message);
    for (const auto &m : h.meta) host_->meta_set(b, r, str(m.key), str(m.value), m.type);
    if (h.lines == 1) {
      std::copy(std::begin(h.first_id), std::end(h.first_id), r->event_id);
    } else {
      // The same lines joined again (re-read after a crash) give the same id.
      uint8_t parts[36];
      std::copy(std::begin(h.first_id), std::end(h.first_id), parts);
      std::copy(std::begin(h.last_id), std::end(h.last_id), parts + 16);
      std::memcpy(parts + 32, &h.lines, sizeof h.lines);
      host_->hash128(parts, sizeof parts, r->event_id);
    }
    for (dm_hold *hd : s.holds) host_->hold_attach(b, hd);
    s.holds.clear();
    if (host_->emit(inst_, b) != DM_OK) {
      host_->log(inst_, DM_LOG_ERROR, "emit refused a joined record of %u lines", h.lines);
      return;  // the owner frees the batch, which releases its holds
    }
    owner.release();
    add(m_flushes_[reason], 1);
    if (h.lines > 1) {
      add(m_joined_, 1);
      add(m_lines_, h.lines);
    }
  }

  // A deadline names its stream by key (streams come and go from the map) and its record by
  // generation (the stream may have opened another since).
  struct Deadline {
    uint64_t at_ns;
    std::string key;
    uint64_t generation;
  };

  Stream *live(const Deadline &d) {
    auto it = streams_.find(d.key);
    return it != streams_.end() && it->second.open && it->second.generation == d.generation
               ? &it->second
               : nullptr;
  }

  // Emits every record whose deadline came; re-arms for the next one.
  void expire() {
    const uint64_t now = host_->now_ns();
    while (!deadlines_.empty()) {
      Stream *s = live(deadlines_.front());
      if (s && deadlines_.front().at_ns > now) break;
      if (s) flush(*s, kTimeout);
      deadlines_.pop_front();
    }
    arm();
    gauge();
  }

  // A one-shot timer for the oldest open record's deadline. Deadlines are in arrival order (one
  // timeout for all), so the front of the queue is always the next one due. Closed streams are
  // forgotten here, once they outnumber the open ones (a pid is rarely seen again).
  void arm() {
    while (!deadlines_.empty() && !live(deadlines_.front())) deadlines_.pop_front();
    if (streams_.size() > 2 * open_ + 1024)
      for (auto it = streams_.begin(); it != streams_.end();)
        it = it->second.open ? std::next(it) : streams_.erase(it);
    if (!timer_) return;
    if (deadlines_.empty()) {
      host_->timer_stop(timer_);
      return;
    }
    const uint64_t now = host_->now_ns(), at = deadlines_.front().at_ns;
    host_->timer_start(timer_, at > now ? (at - now + 999999) / 1000000 : 0, 0);
  }

  static void on_timer(void *arg) {
    auto *self = static_cast<Multiline *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->expire(), 0; });
  }

  void gauge() { host_->metric_set(m_held_, static_cast<double>(open_)); }
  void add(dm_metric *m, uint64_t v) {
    if (m && v) host_->metric_add(m, static_cast<double>(v));
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  std::vector<std::unique_ptr<Rule>> rules_;
  std::vector<std::pair<KeyField, std::string>> keys_;
  int64_t timeout_ns_ = 1000000000;
  uint32_t max_lines_ = 1000;
  size_t max_bytes_ = 1 << 20;
  bool can_hold_ = false;
  std::unordered_map<std::string, Stream, SvHash, std::equal_to<>> streams_;
  std::deque<Deadline> deadlines_;
  std::string key_;
  uint64_t calls_ = 0, generations_ = 0;
  size_t open_ = 0;
  dm_timer *timer_ = nullptr;
  dm_metric *m_joined_, *m_lines_, *m_flushes_[kReasons], *m_held_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Multiline>::describe(
    DM_FILTER, "multiline", "0.1.0",
    "joins the lines of stack traces and panics (java, python, go, or a regex pair) into one "
    "record per stream",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
