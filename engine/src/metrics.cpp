// Metrics registry and its Prometheus text exposition (format 0.0.4).
#include "metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

namespace devmesh {

namespace {

// Prometheus' default buckets, for a histogram registered without bounds.
const std::vector<double> kDefaultBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                            0.5,   1,    2.5,   5,    10};

// Integral values print as integers (1234567, not 1.23457e+06); others in the shortest form that
// reads back to the same double.
void append_number(std::string &out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  char buf[64];
  std::to_chars_result r;
  if (v == std::trunc(v) && std::fabs(v) < 9.007199254740992e15) {  // 2^53: exact as int64
    r = std::to_chars(buf, buf + sizeof(buf), static_cast<int64_t>(v));
  } else {
    r = std::to_chars(buf, buf + sizeof(buf), v);
  }
  out.append(buf, r.ptr);
}

void append_uint(std::string &out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  out.append(buf, r.ptr);
}

// HELP text escapes backslash and newline (quotes stay as they are there).
std::string escape_help(const std::string &v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// name{labels} or name{labels,extra} or name{extra} or name.
void append_series(std::string &out, const std::string &name, const std::string &labels,
                   const std::string &extra = {}) {
  out += name;
  if (labels.empty() && extra.empty()) return;
  out += '{';
  out += labels;
  if (!labels.empty() && !extra.empty()) out += ',';
  out += extra;
  out += '}';
}

bool valid_metric_name(const std::string &name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string prom_escape(const std::string &v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---- Histogram --------------------------------------------------------------------------------

Histogram::Histogram(std::string name, std::string help, std::string labels,
                     std::vector<double> bounds)
    : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)) {
  if (bounds.empty()) bounds = kDefaultBounds;
  // +Inf is always the implicit last bucket; NaN bounds mean nothing.
  std::erase_if(bounds, [](double b) { return std::isnan(b) || std::isinf(b); });
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  bounds_ = std::move(bounds);
  counts_ = std::vector<std::atomic<uint64_t>>(bounds_.size() + 1);
}

void Histogram::observe(double v) {
  // First bucket whose bound is >= v (Prometheus' "le"), else +Inf.
  size_t i = size_t(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
  // Release after the bucket: a render that sees this count also sees the bucket.
  count_.fetch_add(1, std::memory_order_release);
}

void Histogram::render(std::string &out) const {
  // Read the count first and cap the cumulative buckets at it, so that concurrent observations
  // never make a bucket exceed +Inf (= _count) within one scrape.
  uint64_t count = count_.load(std::memory_order_acquire);
  double sum = sum_.load(std::memory_order_relaxed);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i].load(std::memory_order_relaxed);
    std::string le = "le=\"";
    append_number(le, bounds_[i]);
    le += '"';
    append_series(out, name_ + "_bucket", labels_, le);
    out += ' ';
    append_uint(out, std::min(cumulative, count));
    out += '\n';
  }
  append_series(out, name_ + "_bucket", labels_, "le=\"+Inf\"");
  out += ' ';
  append_uint(out, count);
  out += '\n';
  append_series(out, name_ + "_sum", labels_);
  out += ' ';
  append_number(out, sum);
  out += '\n';
  append_series(out, name_ + "_count", labels_);
  out += ' ';
  append_uint(out, count);
  out += '\n';
}

// ---- MetricsRegistry --------------------------------------------------------------------------

namespace {

const char *type_name(Metric::Kind kind) {
  return kind == Metric::Kind::Counter ? "counter" : "gauge";
}

}  // namespace

// Registering the same (kind, name, labels) again returns the existing metric, so two call sites
// never produce duplicate series. A name already used by another kind, or not a valid Prometheus
// name, gets nullptr: one family has one type.
Metric *MetricsRegistry::counter(const std::string &name, const std::string &help,
                                 const std::string &labels) {
  std::lock_guard lock(mu_);
  if (!valid_metric_name(name)) return nullptr;
  for (const Histogram &h : histograms_)
    if (h.name() == name) return nullptr;
  for (Metric &m : metrics_) {
    if (m.name() != name) continue;
    if (m.kind() != Metric::Kind::Counter) return nullptr;
    if (m.labels() == labels) return &m;
  }
  return &metrics_.emplace_back(Metric::Kind::Counter, name, help, labels);
}

Metric *MetricsRegistry::gauge(const std::string &name, const std::string &help,
                               const std::string &labels) {
  std::lock_guard lock(mu_);
  if (!valid_metric_name(name)) return nullptr;
  for (const Histogram &h : histograms_)
    if (h.name() == name) return nullptr;
  for (Metric &m : metrics_) {
    if (m.name() != name) continue;
    if (m.kind() != Metric::Kind::Gauge) return nullptr;
    if (m.labels() == labels) return &m;
  }
  return &metrics_.emplace_back(Metric::Kind::Gauge, name, help, labels);
}

Histogram *MetricsRegistry::histogram(const std::string &name, const std::string &help,
                                      const std::string &labels, std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  if (!valid_metric_name(name)) return nullptr;
  for (const Metric &m : metrics_)
    if (m.name() == name) return nullptr;
  for (Histogram &h : histograms_)
    if (h.name() == name && h.labels() == labels) return &h;
  return &histograms_.emplace_back(name, help, labels, std::move(bounds));
}

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mu_);
  // Families in the order their first member was registered; members in registration order.
  struct Family {
    const char *type;
    const std::string *help;
    std::vector<const Metric *> metrics;
    std::vector<const Histogram *> histograms;
  };
  std::vector<std::string> order;
  std::map<std::string, Family> families;
  for (const Metric &m : metrics_) {
    auto [it, inserted] =
        families.try_emplace(m.name(), Family{type_name(m.kind()), &m.help(), {}, {}});
    if (inserted) order.push_back(m.name());
    it->second.metrics.push_back(&m);
  }
  for (const Histogram &h : histograms_) {
    auto [it, inserted] = families.try_emplace(h.name(), Family{"histogram", &h.help(), {}, {}});
    if (inserted) order.push_back(h.name());
    it->second.histograms.push_back(&h);
  }

  std::string out;
  for (const std::string &name : order) {
    const Family &f = families.at(name);
    out += "# HELP " + name + ' ' + escape_help(*f.help) + '\n';
    out += "# TYPE " + name + ' ' + f.type + '\n';
    for (const Metric *m : f.metrics) {
      append_series(out, name, m->labels());
      out += ' ';
      append_number(out, m->value());
      out += '\n';
    }
    for (const Histogram *h : f.histograms) h->render(out);
  }
  return out;
}

}  // namespace devmesh
