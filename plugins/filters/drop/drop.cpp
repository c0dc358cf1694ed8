// drop filter: cuts noisy services by name or glob, message regex, minimum level and a
// per-service rate limit on record timestamps; every window with drops emits one summary
// record per service, so a drop is visible in the store. keep_level and above always pass.
#include <devmesh/plugin.hpp>

#include <fnmatch.h>
#include <regex.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "timestamp.hpp"
#include "window_timer.hpp"

namespace devmesh {
namespace {

const char *const kLevelNames[] = {"DEBUG", "INFO",     "WARN",  "WARNING",
                                   "ERROR", "CRITICAL", "FATAL", nullptr};
const char *const kSummaryModes[] = {"all", "rate", "none", nullptr};

// The options, bound: config_bind fills a DropConfig with the validated values and defaults.
struct DropConfig {
  dm_strings services{};
  dm_strings message_regex{};
  int regex_ignore_case = 0;
  const char *min_level = nullptr;  // unset: no minimum
  const char *keep_level = nullptr;
  const char *rate = nullptr;  // unset: no rate limit
  int64_t burst = 0;
  int64_t summary_interval_ms = 0;
  const char *summaries = nullptr;
  int64_t max_services = 0;
};

using C = DropConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_LIST>(
        "services", &C::services,
        "drop every record of these services: exact names or globs (fnmatch: *, ?, [...])"),
    Option<DM_OPT_LIST>("message_regex", &C::message_regex,
                        "drop records whose message matches any of these POSIX extended regexes"),
    Option<DM_OPT_BOOL>("regex_ignore_case", &C::regex_ignore_case, "message_regex ignores case")
        .value("false"),
    Option<DM_OPT_STRING>("min_level", &C::min_level,
                          "drop records below this level (records with no level are kept)")
        .allowed(kLevelNames),
    Option<DM_OPT_STRING>("keep_level", &C::keep_level,
                          "records at or above this level are never dropped, by any rule")
        .value("ERROR")
        .allowed(kLevelNames),
    Option<DM_OPT_STRING>(
        "rate", &C::rate,
        "per-service limit N/s, N/m or N/h (e.g. 100/s), measured on record timestamps so a "
        "replayed backlog is limited as it was logged; records over it are dropped"),
    Option<DM_OPT_INT>(
        "burst", &C::burst,
        "records a service may send at once before the rate applies; 0: the rate's N")
        .value("0")
        .bounded(0, 1e9),
    Option<DM_OPT_DURATION>(
        "summary_interval", &C::summary_interval_ms,
        "window of the summaries (on record timestamps; a window also closes after this long on "
        "the clock): one record per service and window with drops")
        .value("60s")
        .bounded(100, 86400000),
    Option<DM_OPT_STRING>("summaries", &C::summaries,
                          "which drops are summarised: all, rate (only the rate limit's) or none")
        .value("all")
        .allowed(kSummaryModes),
    Option<DM_OPT_INT>(
        "max_services", &C::max_services,
        "services tracked for rate limits and summaries; records of services beyond it are not "
        "rate limited (counted in drop_untracked_records_total)")
        .value("10000")
        .bounded(1, 1e7),
};

enum Reason { kService = 0, kLevel = 1, kRegex = 2, kRate = 3, kReasons = 4 };
const char *const kReasonNames[kReasons] = {"service", "level", "regex", "rate"};

constexpr int64_t kNsPerSec = 1000000000;

int64_t floor_div(int64_t a, int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

// A level name the schema allowed (kLevelNames).
uint8_t level_of(std::string_view name) {
  for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
    if (name == dm_level_name(l)) return static_cast<uint8_t>(l);
  return DM_LEVEL_UNSET;
}

// "100/s", "2.5/m", "1000/h" (also sec, second, min, minute, hour): count and unit in ns.
bool parse_rate(std::string_view text, double &count, int64_t &unit_ns) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view num = text.substr(0, slash), unit = text.substr(slash + 1);
  while (!num.empty() && num.back() == ' ') num.remove_suffix(1);
  while (!unit.empty() && unit.front() == ' ') unit.remove_prefix(1);
  auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), count);
  if (num.empty() || ec != std::errc() || end != num.data() + num.size() || !std::isfinite(count) ||
      count <= 0)
    return false;
  if (unit == "s" || unit == "sec" || unit == "second")
    unit_ns = kNsPerSec;
  else if (unit == "m" || unit == "min" || unit == "minute")
    unit_ns = 60 * kNsPerSec;
  else if (unit == "h" || unit == "hour")
    unit_ns = 3600 * kNsPerSec;
  else
    return false;
  return true;
}

// Token arithmetic is exact integers: a token is 1000 * (rate unit in ns), N/unit refills
// round(1000 N) per ns, so round rates and steps never drift by a rounding error.
using Tokens = __int128;
constexpr int64_t kMilli = 1000;

// The longest run of bytes that every match of the POSIX extended regex p contains, or ""
// when none is certain; whole is set when p is nothing but that run. Conservative: runs inside
// groups, before a quantifier ('*', '?', '{' make the last byte optional) or around an
// alternation are not counted.
std::string required_literal(std::string_view p, bool &whole) {
  whole = false;
  if (p.find('|') != std::string_view::npos) return "";
  std::string best, run;
  bool plain = true;
  int depth = 0;
  auto flush = [&] {
    if (run.size() > best.size()) best = run;
    run.clear();
  };
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c != '\\' && !std::strchr(".[]()*+?{}^$", c)) {
      if (depth == 0) run += c;
      continue;
    }
    plain = false;
    switch (c) {
      case '\\':  // an escaped punctuation byte is itself; \w and the like are classes
        if (i + 1 < p.size() && std::ispunct(static_cast<unsigned char>(p[i + 1]))) {
          if (depth == 0) run += p[i + 1];
        } else {
          flush();
        }
        ++i;
        break;
      case '[': {  // a bracket expression, including []...], [^]...] and [[:class:]]
        flush();
        size_t j = i + 1;
        if (j < p.size() && p[j] == '^') ++j;
        if (j < p.size() && p[j] == ']') ++j;
        while (j < p.size() && p[j] != ']') {
          if (p[j] == '[' && j + 1 < p.size() && std::strchr(":.=", p[j + 1])) {
            const char close[3] = {p[j + 1], ']', 0};
            const size_t end = p.find(close, j + 2);
            j = end == std::string_view::npos ? p.size() : end + 2;
          } else {
            ++j;
          }
        }
        i = j;
        break;
      }
      case '*':
      case '?':
      case '{':
        if (!run.empty()) run.pop_back();
        flush();
        if (c == '{') i = std::min(p.size(), p.find('}', i));
        break;
      case '(':
        flush();
        ++depth;
        break;
      case ')':
        flush();
        --depth;
        break;
      default:  // '+', '.', '^', '$', ']', '}'
        flush();
        break;
    }
  }
  flush();
  whole = plain && !best.empty() && best.size() == p.size();
  return best;
}

struct SvHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

// Drops of one service in one window, summarised when the window closes.
struct Window {
  bool open = false;
  int64_t index = 0;  // record time / summary_interval
  uint64_t count = 0, by[kReasons] = {};
  int64_t first_ts = 0, last_ts = 0;
  uint64_t opened_wall = 0;
  std::string host;  // of the first dropped record; reused across windows
};

struct ServiceState {
  std::string service;
  uint32_t tag = 0;              // index into Drop::tags_
  bool service_dropped = false;  // `services` matched, decided once per service
  bool bucket_started = false;
  bool in_open_list = false;
  Tokens tokens = 0;  // in units of 1/(1000 * rate unit ns) of a token
  int64_t bucket_ts = 0;
  uint64_t last_seen_wall = 0;
  Window window;
};

using ServiceMap = std::unordered_map<std::string, ServiceState, SvHash, std::equal_to<>>;

struct TagStates {
  std::string tag;
  ServiceMap services;
};

class Drop {
 public:
  Drop(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    const DropConfig c = bound_config<DropConfig>(host, cfg);
    ConfigProblems problems(host, inst);
    for (uint32_t i = 0; i < c.services.count; ++i) {
      std::string s(sv_item(c.services, i));
      if (s.empty()) problems.add("services." + std::to_string(i), "empty service name");
      services_.push_back(std::move(s));
    }
    const int flags = REG_EXTENDED | REG_NOSUB | (c.regex_ignore_case ? REG_ICASE : 0);
    for (uint32_t i = 0; i < c.message_regex.count; ++i) {
      const std::string pattern(sv_item(c.message_regex, i));
      auto re = std::make_unique<regex_t>();
      if (const int rc = regcomp(re.get(), pattern.c_str(), flags); rc != 0) {
        char why[256];
        regerror(rc, re.get(), why, sizeof why);
        problems.add("message_regex." + std::to_string(i),
                     "'" + pattern + "' is not a valid POSIX extended regex: " + why);
        continue;
      }
      Pattern pat;
      pat.re = std::move(re);
      // Case-insensitive patterns go to regexec alone; the prefilter compares bytes.
      if (!(flags & REG_ICASE)) pat.literal = required_literal(pattern, pat.whole);
      regexes_.push_back(std::move(pat));
    }
    if (c.min_level) min_rank_ = dm_level_rank(level_of(c.min_level));
    keep_rank_ = dm_level_rank(level_of(c.keep_level));
    if (c.rate) {
      const std::string text = c.rate;
      double count = 0;
      if (parse_rate(text, count, rate_unit_ns_) && std::llround(count * kMilli) > 0 &&
          count <= 1e12) {
        rate_milli_ = std::llround(count * kMilli);
        token_ = static_cast<Tokens>(rate_unit_ns_) * kMilli;
        const Tokens tokens = c.burst > 0 ? c.burst : std::max<int64_t>(1, std::llround(count));
        capacity_ = tokens * token_;
        // Time to refill the bucket; a clock jumping back further than this starts it over.
        const Tokens refill_ns = capacity_ / rate_milli_;
        reset_ns_ = static_cast<int64_t>(
            std::clamp<Tokens>(refill_ns, 60 * kNsPerSec, std::numeric_limits<int64_t>::max() / 2));
      } else {
        problems.add(
            "rate",
            "'" + text + "' is not a rate: expected N/s, N/m or N/h with N > 0 (e.g. 100/s)");
      }
    } else if (c.burst > 0) {
      problems.add("burst", "needs rate");
    }
    interval_ns_ = c.summary_interval_ms * 1000000;
    const std::string_view mode = c.summaries;
    summarise_all_ = mode == "all";
    summarise_rate_ = mode != "none";
    max_services_ = static_cast<size_t>(c.max_services);
    problems.refuse_if_any();
    const char *name = host->instance_name(inst);
    name_ = name ? name : "drop";

    for (int r = 0; r < kReasons; ++r) {
      const std::string label = std::string("reason=\"") + kReasonNames[r] + "\"";
      m_dropped_[r] = host->metric_counter(inst, "drop_records_dropped_total",
                                           "records dropped, by reason", label.c_str());
    }
    m_summaries_ = host->metric_counter(inst, "drop_summaries_emitted_total",
                                        "suppression summary records emitted", nullptr);
    m_untracked_ = host->metric_counter(
        inst, "drop_untracked_records_total",
        "records of services beyond max_services (not rate limited, not summarised)", nullptr);
    m_tracked_ = host->metric_gauge(inst, "drop_services_tracked", "services tracked", nullptr);
  }

  ~Drop() {
    for (auto &p : regexes_) regfree(p.re.get());
    // stop() summarised every open window; only a filter never started or stopped gets here
    // with drops left: say what was not summarised.
    uint64_t pending = 0;
    for (auto &t : tags_)
      for (auto &[k, s] : t->services)
        if (s.window.open) pending += s.window.count;
    if (pending)
      host_->log(inst_, DM_LOG_INFO, "%llu dropped records were not yet summarised at shutdown",
                 static_cast<unsigned long long>(pending));
  }

  int start() {
    if (!summarise_rate_) return 0;
    return timer_.start(interval_ns_, 25, 5000) ? 0 : 1;
  }

  // The engine stops filters right after its inputs and then still delivers what they emit:
  // every open window is summarised now, so that its drops reach the store.
  void stop() {
    timer_.stop();
    now_ = host_->now_ns();
    for (ServiceState *st : open_) {
      close_window(*st);
      st->in_open_list = false;
    }
    open_.clear();
    emit_closed();
  }

  int filter(dm_batch *batch, uint8_t *verdicts) {
    if (services_.empty() && regexes_.empty() && min_rank_ < 0 && rate_milli_ == 0) return 0;
    now_ = host_->now_ns();
    swept_ = false;
    const uint32_t tag = tag_index(sv(batch->tag));
    uint64_t dropped[kReasons] = {}, untracked = 0;
    last_ = nullptr;
    for (uint32_t i = 0; i < batch->count; ++i) {
      const dm_record &r = batch->records[i];
      const int rank = r.level == DM_LEVEL_UNSET ? -1 : dm_level_rank(r.level);
      if (rank >= keep_rank_) continue;
      // The service's state is looked up only when a rule or a summary needs it.
      ServiceState *st = nullptr;
      bool looked_up = false;
      auto service_state = [&] {
        if (!looked_up) {
          looked_up = true;
          if (!(st = state(tag, sv(r.service)))) ++untracked;
        }
        return st;
      };
      int reason = -1;
      if (!services_.empty() &&
          (service_state() ? st->service_dropped : service_listed(sv(r.service))))
        reason = kService;
      else if (min_rank_ >= 0 && rank >= 0 && rank < min_rank_)
        reason = kLevel;
      else if (!regexes_.empty() && regex_matches(sv(r.message)))
        reason = kRegex;
      else if (rate_milli_ > 0 && service_state() && !take_token(*st, r.timestamp_ns))
        reason = kRate;
      if (reason < 0) continue;
      verdicts[i] = DM_DROP;
      ++dropped[reason];
      if ((summarise_all_ || (summarise_rate_ && reason == kRate)) && service_state())
        count_drop(*st, r, reason);
    }
    for (int k = 0; k < kReasons; ++k) add(m_dropped_[k], dropped[k]);
    add(m_untracked_, untracked);
    emit_closed();
    return 0;
  }

 private:
  // Closes windows that have been open for summary_interval on the clock (a service that went
  // quiet still gets its summary), and forgets idle services when the table is full.
  void tick() {
    now_ = host_->now_ns();
    size_t kept = 0;
    for (ServiceState *st : open_) {
      if (st->window.open && now_ - st->window.opened_wall >= static_cast<uint64_t>(interval_ns_))
        close_window(*st);
      if (st->window.open) {
        open_[kept++] = st;
      } else {
        st->in_open_list = false;
      }
    }
    open_.resize(kept);
    emit_closed();
    swept_ = false;
  }

  uint32_t tag_index(std::string_view tag) {
    for (uint32_t i = 0; i < tags_.size(); ++i)
      if (tags_[i]->tag == tag) return i;
    tags_.push_back(std::make_unique<TagStates>());
    tags_.back()->tag = std::string(tag);
    return static_cast<uint32_t>(tags_.size() - 1);
  }

  // The service's state, created on first sight; null when max_services are tracked and none
  // is idle. Consecutive records of one service (the usual batch) skip the hash lookup.
  ServiceState *state(uint32_t tag, std::string_view service) {
    if (last_ && last_->tag == tag && last_->service == service) return touch(last_);
    ServiceMap &map = tags_[tag]->services;
    auto it = map.find(service);
    if (it != map.end()) return touch(last_ = &it->second);
    if (tracked_ >= max_services_ && !sweep()) return last_ = nullptr;
    ServiceState &st = map.emplace(std::string(service), ServiceState{}).first->second;
    st.service = std::string(service);
    st.tag = tag;
    st.service_dropped = !services_.empty() && service_listed(st.service);
    host_->metric_set(m_tracked_, static_cast<double>(++tracked_));
    return touch(last_ = &st);
  }

  ServiceState *touch(ServiceState *st) {
    st->last_seen_wall = now_;
    return st;
  }

  // Forgets services idle for a summary interval (and a full bucket's refill), at most once per
  // batch or tick: a flood of new services must not make every record scan the table.
  bool sweep() {
    if (swept_) return false;
    swept_ = true;
    const uint64_t idle_ns = static_cast<uint64_t>(std::max(interval_ns_, reset_ns_));
    for (auto &t : tags_) {
      for (auto it = t->services.begin(); it != t->services.end();) {
        const ServiceState &s = it->second;
        if (!s.window.open && !s.in_open_list && now_ - s.last_seen_wall >= idle_ns) {
          it = t->services.erase(it);
          --tracked_;
        } else {
          ++it;
        }
      }
    }
    last_ = nullptr;
    host_->metric_set(m_tracked_, static_cast<double>(tracked_));
    if (tracked_ < max_services_) return true;
    if (!warned_full_)
      host_->log(inst_, DM_LOG_WARN,
                 "max_services (%zu) services are tracked and none is idle: records of new "
                 "services are not rate limited or summarised",
                 max_services_);
    warned_full_ = true;
    return false;
  }

  bool service_listed(std::string_view service) {
    scratch_.assign(service.data(), service.size());  // fnmatch needs a NUL; reused buffer
    for (const std::string &s : services_)
      if (s == scratch_ || fnmatch(s.c_str(), scratch_.c_str(), 0) == 0) return true;
    return false;
  }

  bool regex_matches(std::string_view msg) const {
    const char *p = msg.empty() ? "" : msg.data();
    for (const Pattern &pat : regexes_) {
      // Most messages lack the pattern's literal: memmem rejects them at memory speed.
      if (!pat.literal.empty()) {
        if (!memmem(p, msg.size(), pat.literal.data(), pat.literal.size())) continue;
        if (pat.whole) return true;
      }
      // REG_STARTEND: match the view in place, no NUL-terminated copy.
      regmatch_t m[1];
      m[0].rm_so = 0;
      m[0].rm_eo = static_cast<regoff_t>(msg.size());
      if (regexec(pat.re.get(), p, 1, m, REG_STARTEND) == 0) return true;
    }
    return false;
  }

  // Token bucket on record time: the first record finds it full.
  bool take_token(ServiceState &st, int64_t ts) {
    if (!st.bucket_started || ts < st.bucket_ts - reset_ns_) {
      st.bucket_started = true;
      st.tokens = capacity_;
      st.bucket_ts = ts;
    } else if (ts > st.bucket_ts) {
      st.tokens =
          std::min(capacity_, st.tokens + static_cast<Tokens>(ts - st.bucket_ts) * rate_milli_);
      st.bucket_ts = ts;
    }
    if (st.tokens < token_) return false;
    st.tokens -= token_;
    return true;
  }

  void count_drop(ServiceState &st, const dm_record &r, int reason) {
    Window &w = st.window;
    const int64_t index = floor_div(r.timestamp_ns, interval_ns_);
    if (w.open && index != w.index) close_window(st);
    if (!w.open) {
      w.open = true;
      w.index = index;
      w.count = 0;
      std::fill(std::begin(w.by), std::end(w.by), 0);
      w.first_ts = w.last_ts = r.timestamp_ns;
      w.opened_wall = now_;
      w.host.assign(sv(r.host));
      if (!st.in_open_list) {
        st.in_open_list = true;
        open_.push_back(&st);
      }
    }
    ++w.count;
    ++w.by[reason];
    w.first_ts = std::min(w.first_ts, r.timestamp_ns);
    w.last_ts = std::max(w.last_ts, r.timestamp_ns);
  }

  // Moves the window's counts into a summary waiting for emit_closed().
  void close_window(ServiceState &st) {
    Window &w = st.window;
    if (!w.open) return;
    w.open = false;
    Summary s;
    s.tag = st.tag;
    s.service = st.service;
    s.host = w.host;
    s.count = w.count;
    std::copy(std::begin(w.by), std::end(w.by), std::begin(s.by));
    s.first_ts = w.first_ts;
    s.last_ts = w.last_ts;
    closed_.push_back(std::move(s));
  }

  // One emitted batch per tag, so each summary carries the tag of the records it stands for.
  void emit_closed() {
    if (closed_.empty()) return;
    std::stable_sort(closed_.begin(), closed_.end(),
                     [](const Summary &a, const Summary &b) { return a.tag < b.tag; });
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
    const std::string &tag = tags_[closed_[from].tag]->tag;
    b->tag = host_->arena_copy(b, tag.data(), tag.size());
    const dm_str source = host_->arena_copy(b, name_.data(), name_.size());
    const dm_str event_type = host_->arena_copy(b, "suppressed", 10);
    char t1[64], t2[64], n[32];
    for (size_t i = from; i < to; ++i) {
      const Summary &s = closed_[i];
      dm_record *r = host_->batch_add(b);
      if (!r) throw std::runtime_error("batch_add failed");
      const size_t l1 = format_rfc3339_us(s.first_ts, t1, sizeof t1);
      const size_t l2 = format_rfc3339_us(s.last_ts, t2, sizeof t2);
      const size_t ln = static_cast<size_t>(std::to_chars(n, n + sizeof n, s.count).ptr - n);
      std::string msg = "suppressed " + std::string(n, ln) + " records from " + s.service +
                        " between " + std::string(t1, l1) + " and " + std::string(t2, l2);
      r->timestamp_ns = s.last_ts;
      r->level = DM_LEVEL_WARN;
      r->service = host_->arena_copy(b, s.service.data(), s.service.size());
      r->host = host_->arena_copy(b, s.host.data(), s.host.size());
      r->source = source;
      r->event_type = event_type;
      r->message = host_->arena_copy(b, msg.data(), msg.size());
      // Same drops, same id: a summary re-made from a replay is one row in the store.
      const std::string id = name_ + '\0' + tag + '\0' + msg;
      host_->hash128(id.data(), id.size(), r->event_id);
      meta(b, r, "suppressed", std::string_view(n, ln));
      meta(b, r, "first_seen", std::string_view(t1, l1));
      meta(b, r, "last_seen", std::string_view(t2, l2));
      for (int k = 0; k < kReasons; ++k) {
        if (!s.by[k]) continue;
        const size_t lk = static_cast<size_t>(std::to_chars(n, n + sizeof n, s.by[k]).ptr - n);
        meta(b, r, std::string("suppressed_by_") + kReasonNames[k], std::string_view(n, lk));
      }
    }
    const uint32_t count = b->count;
    if (host_->emit(inst_, b) != DM_OK) {
      host_->log(inst_, DM_LOG_ERROR, "emit refused %u summary records", count);
      return;  // still ours: the owner frees it
    }
    owner.release();
    add(m_summaries_, count);
  }

  void meta(dm_batch *b, dm_record *r, std::string_view k, std::string_view v) {
    if (host_->meta_set(b, r, str(k), str(v), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }

  void add(dm_metric *m, uint64_t v) {
    if (m && v) host_->metric_add(m, static_cast<double>(v));
  }

  struct Summary {
    uint32_t tag = 0;
    std::string service, host;
    uint64_t count = 0, by[kReasons] = {};
    int64_t first_ts = 0, last_ts = 0;
  };

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string name_;

  // Configuration.
  std::vector<std::string> services_;
  struct Pattern {
    std::unique_ptr<regex_t> re;
    std::string literal;  // every match contains it ("" when nothing is certain)
    bool whole = false;   // the pattern is just that literal: containing it is matching
  };
  std::vector<Pattern> regexes_;
  int min_rank_ = -1;  // -1: no min_level
  int keep_rank_ = 0;
  int64_t rate_milli_ = 0;  // 1000 N of N/unit; 0: no rate limit
  int64_t rate_unit_ns_ = kNsPerSec;
  Tokens token_ = 0, capacity_ = 0;
  int64_t reset_ns_ = 0;
  int64_t interval_ns_ = 60 * kNsPerSec;
  bool summarise_all_ = true, summarise_rate_ = true;
  size_t max_services_ = 10000;

  // State (loop thread only).
  std::vector<std::unique_ptr<TagStates>> tags_;
  size_t tracked_ = 0;
  ServiceState *last_ = nullptr;
  std::vector<ServiceState *> open_;  // services with an open window (or closed since a tick)
  std::vector<Summary> closed_;       // closed windows waiting to be emitted
  std::string scratch_;
  uint64_t now_ = 0;
  bool swept_ = false, warned_full_ = false;
  WindowTimer<Drop, &Drop::tick> timer_{host_, inst_, this};

  dm_metric *m_dropped_[kReasons], *m_summaries_, *m_untracked_, *m_tracked_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Drop>::describe(
    DM_FILTER, "drop", "0.1.0",
    "drops records by service, message regex, level and per-service rate; summarises the drops",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
