// GET /query/context: the incident pack for an LLM prompt. The window's error and warning
// patterns ranked by surprise against the window of the same length just before it, each with
// its counts, hosts and sample lines, then the records sharing the samples' trace ids; rendered
// as JSON or plain text and cut to max_bytes whole items at a time. Built only from the store
// contract (patterns(), query_logs()), so it answers the same on every backend.
#include "query_context.h"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "utf8.hpp"

namespace devmesh::query {

namespace {

// Patterns of the window read for ranking: a new pattern with few rows must not lose its place
// to the top-by-count cut of the store, so many more than are shown.
constexpr uint32_t kCandidatePatterns = 1000;
constexpr uint32_t kHostsPerPattern = 10;
// Sample lines are chosen among this many times as many of the pattern's newest rows.
constexpr uint32_t kSampleChoice = 5;
constexpr size_t kMaxAffected = 50;  // services and hosts listed in the summary
// The trace-linked records: traces followed (from the samples, in rank order), records per
// trace and in all. Bounded so a trace of a million spans cannot make the pack slow.
constexpr size_t kMaxTraces = 10;
constexpr uint32_t kRowsPerTrace = 20;
constexpr size_t kMaxTraceRows = 100;

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

// Collects up to `limit` rows (the store sends one more to tell a next page exists).
class KeepRows : public RowSink {
 public:
  explicit KeepRows(size_t limit) : limit_(limit) {}
  void row(const LogRow &r) override {
    if (rows.size() < limit_) rows.push_back(StoredRow::from(r));
  }
  std::vector<StoredRow> rows;

 private:
  size_t limit_;
};

}  // namespace

struct ContextPattern {
  PatternSummary s;  // the window's counts, first and last occurrence, hosts
  int64_t before = 0;
  // First seen (all time) inside the window; without a patterns-table row to tell, no rows in
  // the window before. A pattern seen long ago, quiet in the window before and back now is not
  // new: its change ranks it.
  bool is_new = false;
  double change = 0;  // (count + 1) / (before + 1): the rate's jump (the windows are as long)
  std::string level;  // of its newest row in the window
  std::vector<StoredRow> samples;
};

struct ContextPack {
  ContextQuery q;
  int64_t before_start_ns = 0, before_end_ns = 0;
  size_t patterns_in_window = 0;             // error/warning patterns with rows in the window
  bool more_patterns = false;                // the store had more than kCandidatePatterns
  std::vector<std::string> services, hosts;  // affected, most rows first
  std::vector<ContextPattern> patterns;      // ranked, at most q.max_patterns
  std::vector<StoredRow> trace_rows;         // by trace (rank order), then by time
};

namespace {

bool build_pack(QueryStore &store, const ContextQuery &q, ContextPack &pack, StoreError &err) {
  pack.q = q;
  // Checked before each store query: a stop waits for the one running at most.
  auto stopped = [&] {
    if (q.stopping == nullptr || !q.stopping->load()) return false;
    err.status = StoreStatus::kUnavailable;
    err.message = "the query output is stopping";
    return true;
  };
  if (stopped()) return false;
  // The window before: as long as the window (its bounds are inclusive), ending just before it.
  // In unsigned arithmetic: a window may span more than half the int64 range; the window before
  // stops at the range's start (and is empty for a window starting there).
  const uint64_t len = static_cast<uint64_t>(q.end_ns) - static_cast<uint64_t>(q.start_ns) + 1;
  const uint64_t room = static_cast<uint64_t>(q.start_ns) - static_cast<uint64_t>(INT64_MIN);
  pack.before_end_ns = q.start_ns == INT64_MIN ? INT64_MIN : q.start_ns - 1;
  pack.before_start_ns =
      len >= room ? INT64_MIN : static_cast<int64_t>(static_cast<uint64_t>(q.start_ns) - len);

  const std::vector<std::string> levels = levels_at_or_above("WARN");
  PatternsQuery now;
  now.start_ns = q.start_ns;
  now.end_ns = q.end_ns;
  now.service = q.service;
  now.host = q.host;
  now.min_levels = levels;
  now.limit = kCandidatePatterns;
  now.with_sample = false;  // the samples come from query_logs, several per pattern
  now.max_hosts = kHostsPerPattern;
  std::vector<PatternSummary> found;
  if (!store.patterns(now, found, err)) return false;
  pack.patterns_in_window = found.size();
  pack.more_patterns = found.size() >= kCandidatePatterns;
  if (found.empty()) return true;

  PatternsQuery before = now;
  before.start_ns = pack.before_start_ns;
  before.end_ns = pack.before_end_ns;
  before.max_hosts = 0;
  before.limit = static_cast<uint32_t>(found.size());
  for (const PatternSummary &p : found) before.ids.push_back(p.id);
  std::vector<PatternSummary> earlier;
  if (stopped() || (q.start_ns != INT64_MIN && !store.patterns(before, earlier, err))) return false;
  std::unordered_map<uint64_t, int64_t> before_count;
  for (const PatternSummary &p : earlier) before_count[p.id] = p.count;

  std::vector<ContextPattern> ranked;
  ranked.reserve(found.size());
  for (PatternSummary &p : found) {
    ContextPattern c;
    auto it = before_count.find(p.id);
    c.before = it == before_count.end() ? 0 : it->second;
    c.is_new = p.total_count > 0 ? p.first_seen_ns >= q.start_ns : c.before == 0;
    c.change = static_cast<double>(p.count + 1) / static_cast<double>(c.before + 1);
    c.s = std::move(p);
    ranked.push_back(std::move(c));
  }
  // New patterns first, then by the rate's jump, then by count; the id keeps it deterministic.
  std::sort(ranked.begin(), ranked.end(), [](const ContextPattern &a, const ContextPattern &b) {
    if (a.is_new != b.is_new) return a.is_new;
    if (a.change != b.change) return a.change > b.change;
    if (a.s.count != b.s.count) return a.s.count > b.s.count;
    return a.s.id < b.s.id;
  });
  const size_t shown = std::min<size_t>(ranked.size(), q.max_patterns);

  std::unordered_set<int64_t> sample_ids;
  std::vector<std::string> traces;
  for (size_t i = 0; i < shown; ++i) {
    ContextPattern &c = ranked[i];
    LogQuery lq;
    lq.pattern_id = c.s.id;
    lq.service = q.service;
    lq.host = q.host;
    lq.min_levels = levels;
    lq.start_ns = q.start_ns;
    lq.end_ns = q.end_ns;
    // One at least (the pattern's level), and a few more than shown to choose from.
    lq.limit = std::max<uint32_t>(q.samples * kSampleChoice, 1);
    KeepRows rows(lq.limit);
    if (stopped() || !store.query_logs(lq, rows, err)) return false;
    if (!rows.rows.empty()) c.level = rows.rows.front().level;
    if (c.s.service.empty() && !rows.rows.empty()) c.s.service = rows.rows.front().service;
    // The newest lines, those with a trace id first: a sample's trace is what links it to the
    // rest of its request. Shown newest first.
    std::stable_partition(rows.rows.begin(), rows.rows.end(),
                          [](const StoredRow &r) { return r.has_trace_id && !r.trace_id.empty(); });
    if (rows.rows.size() > q.samples) rows.rows.resize(q.samples);
    std::stable_sort(
        rows.rows.begin(), rows.rows.end(), [](const StoredRow &a, const StoredRow &b) {
          return a.timestamp_ns != b.timestamp_ns ? a.timestamp_ns > b.timestamp_ns : a.id > b.id;
        });
    for (const StoredRow &r : rows.rows) {
      sample_ids.insert(r.id);
      if (r.has_trace_id && !r.trace_id.empty() && traces.size() < kMaxTraces &&
          std::find(traces.begin(), traces.end(), r.trace_id) == traces.end())
        traces.push_back(r.trace_id);
    }
    c.samples = std::move(rows.rows);
  }
  // Affected services and hosts, over every error/warning pattern of the window (not only the
  // ones shown): services by rows, hosts by the rows of the patterns they appear in.
  std::map<std::string, int64_t> services, hosts;
  for (const ContextPattern &c : ranked) {
    // A pattern whose table row has not arrived has no service but from its rows: known only
    // for the ones shown.
    if (!c.s.service.empty()) services[c.s.service] += c.s.count;
    for (const std::string &h : c.s.hosts) hosts[h] += c.s.count;
  }
  auto ranked_names = [](const std::map<std::string, int64_t> &m) {
    std::vector<std::pair<std::string, int64_t>> v(m.begin(), m.end());
    std::stable_sort(v.begin(), v.end(),
                     [](const auto &a, const auto &b) { return a.second > b.second; });
    std::vector<std::string> names;
    for (size_t i = 0; i < v.size() && i < kMaxAffected; ++i) names.push_back(v[i].first);
    return names;
  };
  pack.services = ranked_names(services);
  pack.hosts = ranked_names(hosts);

  ranked.resize(shown);
  pack.patterns = std::move(ranked);

  // The records of the window that share a sample's trace id, whatever their service, host or
  // level: what else that request did. The samples themselves are not repeated.
  for (const std::string &t : traces) {
    if (pack.trace_rows.size() >= kMaxTraceRows) break;
    LogQuery lq;
    lq.trace_id = t;
    lq.start_ns = q.start_ns;
    lq.end_ns = q.end_ns;
    lq.descending = false;  // a trace reads in time order
    lq.limit = kRowsPerTrace;
    KeepRows rows(kRowsPerTrace);
    if (stopped() || !store.query_logs(lq, rows, err)) return false;
    for (StoredRow &r : rows.rows)
      if (!sample_ids.count(r.id) && pack.trace_rows.size() < kMaxTraceRows)
        pack.trace_rows.push_back(std::move(r));
  }
  return true;
}

// ---- Cutting to max_bytes ------------------------------------------------------------------
//
// Both formats are a head, the patterns (each a head, its samples and a tail), a separator,
// the trace records and a closing part that says what was left out. Every piece is rendered
// whole first; then pieces are taken in priority order while they fit: each shown pattern with
// one sample, then the trace records (what the top samples' requests did), then the other
// samples. A piece that does not fit is left out whole (so no line is ever cut and JSON stays
// valid), and the closing part says so.

struct PatternPieces {
  std::string head, tail;
  std::vector<std::string> samples;
};

struct Pieces {
  std::string head, head_short;  // head_short: without the optional summary (filters, lists)
  std::vector<PatternPieces> patterns;
  std::string middle;  // between the patterns and the trace records
  std::vector<std::string> traces;
  std::string sep;  // between two items of a list
};

struct Omitted {
  size_t patterns = 0, samples = 0, traces = 0;
  bool any() const { return patterns || samples || traces; }
};

using CloseFn = std::string (*)(const ContextPack &, size_t shown, const Omitted &);

std::string assemble(const ContextPack &pack, const Pieces &p, size_t max_bytes, CloseFn close) {
  // The closing part is budgeted at its longest: every count at its largest possible value.
  size_t total_samples = 0;
  for (const PatternPieces &pp : p.patterns) total_samples += pp.samples.size();
  const Omitted worst{p.patterns.size(), total_samples, p.traces.size()};
  // "truncated":false is a byte longer than true: the longest of both closes is budgeted.
  const size_t close_max = std::max(close(pack, p.patterns.size(), worst).size(),
                                    close(pack, p.patterns.size(), Omitted{}).size());
  const size_t fixed = close_max + p.middle.size();
  // The optional summary gets at most a quarter of the budget: the patterns come first.
  const bool long_head = p.head.size() + fixed <= max_bytes && p.head.size() <= max_bytes / 4;
  const std::string &head = long_head ? p.head : p.head_short;
  size_t used = head.size() + fixed;
  Omitted om;
  std::vector<int> take(p.patterns.size(), -1);  // samples taken; -1: left out
  size_t shown = 0;
  auto fits = [&](size_t n) { return used + n <= max_bytes; };
  for (size_t i = 0; i < p.patterns.size(); ++i) {
    const PatternPieces &pp = p.patterns[i];
    const size_t base = (shown ? p.sep.size() : 0) + pp.head.size() + pp.tail.size();
    if (!pp.samples.empty() && fits(base + pp.samples[0].size())) {
      used += base + pp.samples[0].size();
      take[i] = 1;
    } else if (fits(base)) {
      used += base;
      take[i] = 0;
    } else {
      ++om.patterns;
      continue;
    }
    ++shown;
  }
  std::vector<bool> trace_taken(p.traces.size(), false);
  size_t traces_shown = 0;
  for (size_t i = 0; i < p.traces.size(); ++i) {
    const size_t n = (traces_shown ? p.sep.size() : 0) + p.traces[i].size();
    if (!fits(n)) {
      ++om.traces;
      continue;
    }
    used += n;
    trace_taken[i] = true;
    ++traces_shown;
  }

  for (size_t i = 0; i < p.patterns.size(); ++i) {
    if (take[i] < 0) continue;
    const PatternPieces &pp = p.patterns[i];
    while (static_cast<size_t>(take[i]) < pp.samples.size()) {
      const size_t n =
          (take[i] ? p.sep.size() : 0) + pp.samples[static_cast<size_t>(take[i])].size();
      if (!fits(n)) break;
      used += n;
      ++take[i];
    }
  }
  for (size_t i = 0; i < p.patterns.size(); ++i)
    om.samples += p.patterns[i].samples.size() - static_cast<size_t>(std::max(take[i], 0));
  std::string out;
  out.reserve(used);
  out += head;
  bool first = true;
  for (size_t i = 0; i < p.patterns.size(); ++i) {
    if (take[i] < 0) continue;
    if (!first) out += p.sep;
    first = false;
    const PatternPieces &pp = p.patterns[i];
    out += pp.head;
    for (int s = 0; s < take[i]; ++s) {
      if (s) out += p.sep;
      out += pp.samples[static_cast<size_t>(s)];
    }
    out += pp.tail;
  }
  out += p.middle;
  first = true;
  for (size_t i = 0; i < p.traces.size(); ++i) {
    if (!trace_taken[i]) continue;
    if (!first) out += p.sep;
    first = false;
    out += p.traces[i];
  }
  out += close(pack, shown, om);
  return out;
}

// ---- JSON ----------------------------------------------------------------------------------

std::string text_of(const rapidjson::StringBuffer &b) {
  return std::string(b.GetString(), b.GetSize());
}

void key_string(Writer &w, const char *key, std::string_view v, std::string &scratch) {
  w.Key(key);
  write_string(w, v, scratch);
}

void key_time(Writer &w, const char *key, int64_t ns, TimeFormat tf) {
  char buf[64];
  w.Key(key);
  w.String(buf, static_cast<rapidjson::SizeType>(format_time(ns, tf, buf, sizeof buf)));
}

// A record as the pack shows it: the /query/logs row without meta_json, source and event_type
// (what a reader of the incident needs, in fewer bytes).
std::string row_json(const StoredRow &r, TimeFormat tf, bool with_pattern) {
  rapidjson::StringBuffer b;
  Writer w(b);
  std::string scratch;
  w.StartObject();
  w.Key("id");
  w.Int64(r.id);
  key_time(w, "timestamp", r.timestamp_ns, tf);
  key_string(w, "service", r.service, scratch);
  key_string(w, "host", r.host, scratch);
  key_string(w, "level", r.level, scratch);
  w.Key("trace_id");
  if (r.has_trace_id)
    write_string(w, r.trace_id, scratch);
  else
    w.Null();
  if (r.has_span_id) key_string(w, "span_id", r.span_id, scratch);
  if (r.has_error_code) key_string(w, "error_code", r.error_code, scratch);
  if (with_pattern) {
    w.Key("pattern_id");
    if (r.has_pattern_id)
      w.String(pattern_id_hex(r.pattern_id).c_str());
    else
      w.Null();
  }
  key_string(w, "message", r.message, scratch);
  w.EndObject();
  return text_of(b);
}

std::string json_close(const ContextPack &, size_t shown, const Omitted &om) {
  rapidjson::StringBuffer b;
  Writer w(b);
  // The writer needs an open object to write keys into; its "{" is dropped below.
  w.StartObject();
  w.Key("patterns_shown");
  w.Uint64(shown);
  w.Key("truncated");
  w.Bool(om.any());
  w.Key("omitted");
  w.StartObject();
  w.Key("patterns");
  w.Uint64(om.patterns);
  w.Key("samples");
  w.Uint64(om.samples);
  w.Key("trace_records");
  w.Uint64(om.traces);
  w.EndObject();
  w.EndObject();
  return "]," + text_of(b).substr(1);
}

std::string json_head(const ContextPack &pack, TimeFormat tf, bool summary) {
  rapidjson::StringBuffer b;
  Writer w(b);
  std::string scratch;
  const ContextQuery &q = pack.q;
  w.StartObject();
  w.Key("window");
  w.StartObject();
  key_time(w, "start", q.start_ns, tf);
  key_time(w, "end", q.end_ns, tf);
  key_time(w, "before_start", pack.before_start_ns, tf);
  key_time(w, "before_end", pack.before_end_ns, tf);
  if (summary && q.service) key_string(w, "service", *q.service, scratch);
  if (summary && q.host) key_string(w, "host", *q.host, scratch);
  w.EndObject();
  w.Key("levels");
  w.String("WARN and above");
  w.Key("ranking");
  w.String(
      "new patterns first (first seen in the window), then by change = "
      "(count+1)/(count_before+1)");
  w.Key("patterns_in_window");
  w.Uint64(pack.patterns_in_window);
  if (pack.more_patterns) {
    w.Key("patterns_in_window_capped");
    w.Bool(true);
  }
  if (summary) {
    for (auto [key, names] :
         {std::pair{"services", &pack.services}, std::pair{"hosts", &pack.hosts}}) {
      w.Key(key);
      w.StartArray();
      for (const std::string &n : *names) write_string(w, n, scratch);
      w.EndArray();
    }
  }
  w.Key("patterns");
  w.StartArray();
  // An open array inside an open object: the rest of the document is appended as text.
  return text_of(b);
}

PatternPieces json_pattern(const ContextPattern &c, TimeFormat tf) {
  rapidjson::StringBuffer b;
  Writer w(b);
  std::string scratch;
  const PatternSummary &s = c.s;
  w.StartObject();
  w.Key("pattern_id");
  w.String(pattern_id_hex(s.id).c_str());
  key_string(w, "service", s.service, scratch);
  w.Key("level");
  if (c.level.empty())
    w.Null();
  else
    write_string(w, c.level, scratch);
  w.Key("template");
  if (s.has_template)
    write_string(w, s.template_text, scratch);
  else
    w.Null();
  w.Key("new");
  w.Bool(c.is_new);
  w.Key("count");
  w.Int64(s.count);
  w.Key("count_before");
  w.Int64(c.before);
  w.Key("change");
  w.SetMaxDecimalPlaces(2);
  w.Double(c.change);
  key_time(w, "first", s.first_ns, tf);
  key_time(w, "last", s.last_ns, tf);
  if (s.total_count > 0) key_time(w, "first_seen", s.first_seen_ns, tf);
  w.Key("hosts");
  w.StartArray();
  for (const std::string &h : s.hosts) write_string(w, h, scratch);
  w.EndArray();
  w.Key("samples");
  w.StartArray();
  PatternPieces pp;
  pp.head = text_of(b);
  pp.tail = "]}";
  for (const StoredRow &r : c.samples) pp.samples.push_back(row_json(r, tf, false));
  return pp;
}

// ---- Text ----------------------------------------------------------------------------------

// A value on one line of the text: valid UTF-8, control characters as spaces, and a message's
// own line breaks kept but indented under it so a multi-line record stays one item.
std::string clean(std::string_view s, const char *indent = "") {
  std::string scratch;
  s = valid_utf8(s, scratch);
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '\n') {
      if (i + 1 < s.size()) out.append("\n").append(indent);
    } else if (c == '\r' || (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string join(const std::vector<std::string> &v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + clean(v[i]);
  return out;
}

std::string text_row(const StoredRow &r, TimeFormat tf, const char *prefix, bool with_service) {
  std::string line = prefix + format_time(r.timestamp_ns, tf);
  if (with_service) line += " " + clean(r.service);
  line += " " + clean(r.host) + " " + clean(r.level);
  if (r.has_trace_id) line += " trace=" + clean(r.trace_id);
  if (r.has_span_id) line += " span=" + clean(r.span_id);
  if (r.has_error_code) line += " code=" + clean(r.error_code);
  return line + ": " + clean(r.message, "        ") + "\n";
}

std::string text_head(const ContextPack &pack, TimeFormat tf, bool summary) {
  const ContextQuery &q = pack.q;
  std::string s = "Incident context (devmesh /query/context)\n";
  s += "Window: " + format_time(q.start_ns, tf) + " to " + format_time(q.end_ns, tf) +
       " UTC, compared with the window before: " + format_time(pack.before_start_ns, tf) + " to " +
       format_time(pack.before_end_ns, tf) + "\n";
  if (summary && (q.service || q.host)) {
    s += "Filter:";
    if (q.service) s += " service=" + clean(*q.service);
    if (q.host) s += " host=" + clean(*q.host);
    s += "\n";
  }
  s += "Error and warning patterns in the window: " + std::to_string(pack.patterns_in_window) +
       (pack.more_patterns ? " or more" : "") + "\n";
  if (summary && !pack.services.empty()) s += "Services affected: " + join(pack.services) + "\n";
  if (summary && !pack.hosts.empty()) s += "Hosts affected: " + join(pack.hosts) + "\n";
  if (!pack.patterns.empty())
    s += "\nPatterns, most surprising first (NEW: first seen in the window; xN: rate change "
         "(count+1)/(before+1) against the window before):\n";
  return s;
}

PatternPieces text_pattern(const ContextPattern &c, size_t rank, TimeFormat tf) {
  const PatternSummary &s = c.s;
  char change[32];
  std::snprintf(change, sizeof change, "x%.2f", c.change);
  std::string h = "\n#" + std::to_string(rank) + " " + (c.is_new ? "NEW" : change) + " " +
                  (c.level.empty() ? "" : clean(c.level) + " ") + "service " + clean(s.service) +
                  ": " + std::to_string(s.count) + " in the window, " + std::to_string(c.before) +
                  " before\n";
  h += "   template: " + (s.has_template ? clean(s.template_text, "     ") : "(not known)") + "\n";
  h += "   first " + format_time(s.first_ns, tf) + ", last " + format_time(s.last_ns, tf);
  if (s.total_count > 0) h += ", first seen ever " + format_time(s.first_seen_ns, tf);
  h += "\n";
  if (!s.hosts.empty()) h += "   hosts: " + join(s.hosts) + "\n";
  h += "   pattern_id " + pattern_id_hex(s.id) + "\n";
  PatternPieces pp;
  pp.head = std::move(h);
  for (const StoredRow &r : c.samples) pp.samples.push_back(text_row(r, tf, "   > ", false));
  return pp;
}

std::string text_close(const ContextPack &pack, size_t, const Omitted &om) {
  if (!om.any())
    return pack.patterns.empty() ? "\nNo error or warning records in the window.\n" : "";
  return "\n[cut to max_bytes=" + std::to_string(pack.q.max_bytes) + ": " +
         std::to_string(om.patterns) + " patterns, " + std::to_string(om.samples) +
         " sample lines, " + std::to_string(om.traces) + " trace records left out]\n";
}

}  // namespace

bool build_context_json(QueryStore &store, const ContextQuery &q, TimeFormat tf, std::string &out,
                        StoreError &err) {
  ContextPack pack;
  if (!build_pack(store, q, pack, err)) return false;
  Pieces p;
  p.head = json_head(pack, tf, true);
  p.head_short = json_head(pack, tf, false);
  for (const ContextPattern &c : pack.patterns) p.patterns.push_back(json_pattern(c, tf));
  p.middle = "],\"trace_records\":[";
  for (const StoredRow &r : pack.trace_rows) p.traces.push_back(row_json(r, tf, true));
  p.sep = ",";
  out = assemble(pack, p, q.max_bytes, json_close);
  return true;
}

bool build_context_text(QueryStore &store, const ContextQuery &q, TimeFormat tf, std::string &out,
                        StoreError &err) {
  ContextPack pack;
  if (!build_pack(store, q, pack, err)) return false;
  Pieces p;
  p.head = text_head(pack, tf, true);
  p.head_short = text_head(pack, tf, false);
  for (size_t i = 0; i < pack.patterns.size(); ++i)
    p.patterns.push_back(text_pattern(pack.patterns[i], i + 1, tf));
  if (!pack.trace_rows.empty())
    p.middle = "\nRecords sharing the samples' trace ids (by trace, in time order):\n";
  for (const StoredRow &r : pack.trace_rows) p.traces.push_back(text_row(r, tf, "   ", true));
  out = assemble(pack, p, q.max_bytes, text_close);
  return true;
}

}  // namespace devmesh::query
