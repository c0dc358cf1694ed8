// Metrics registry: counters, gauges and histograms, lock-free to update from any thread, and
// their Prometheus text exposition.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace devmesh {

class Metric {
 public:
  enum class Kind { Counter, Gauge };
  Metric(Kind kind, std::string name, std::string help, std::string labels)
      : kind_(kind), name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)) {}
  void add(double d) {
    double cur = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
    }
  }
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }
  Kind kind() const { return kind_; }
  const std::string &name() const { return name_; }
  const std::string &help() const { return help_; }
  const std::string &labels() const { return labels_; }

 private:
  Kind kind_;
  std::string name_, help_, labels_;
  std::atomic<double> value_{0};
};

// Fixed-bucket histogram (seconds), cumulative buckets as Prometheus expects.
class Histogram {
 public:
  Histogram(std::string name, std::string help, std::string labels, std::vector<double> bounds);
  void observe(double v);
  const std::string &name() const { return name_; }
  const std::string &help() const { return help_; }
  const std::string &labels() const { return labels_; }
  void render(std::string &out) const;  // the _bucket/_sum/_count lines (no HELP/TYPE)

 private:
  std::string name_, help_, labels_;
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> counts_;  // one per bound, plus +Inf
  std::atomic<double> sum_{0};
  std::atomic<uint64_t> count_{0};
};

class MetricsRegistry {
 public:
  // Registered metrics live as long as the registry; pointers stay valid.
  // labels: Prometheus label pairs without braces, e.g. plugin="dummy",instance="in0".
  Metric *counter(const std::string &name, const std::string &help, const std::string &labels);
  Metric *gauge(const std::string &name, const std::string &help, const std::string &labels);
  Histogram *histogram(const std::string &name, const std::string &help, const std::string &labels,
                       std::vector<double> bounds);
  // Prometheus text format 0.0.4: one HELP and TYPE per family, then its samples.
  std::string render() const;

 private:
  mutable std::mutex mu_;  // guards registration and render, never updates
  std::deque<Metric> metrics_;
  std::deque<Histogram> histograms_;
};

// Escapes a label value for the exposition format.
std::string prom_escape(const std::string &v);

}  // namespace devmesh
