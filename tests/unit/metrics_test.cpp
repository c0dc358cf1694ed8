// The metrics registry: Prometheus text rendering, histogram buckets, escaping and concurrent
// updates.
#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "metrics.h"

using devmesh::MetricsRegistry;

namespace {

TEST(Metrics, RenderGroupsSeriesUnderOneHelpAndType) {
  MetricsRegistry reg;
  reg.counter("devmesh_records_in_total", "Records received", R"(instance="a")")->add(3);
  reg.gauge("devmesh_queue_records", "Records queued", "")->set(7);
  reg.counter("devmesh_records_in_total", "Records received", R"(instance="b")")->add(1234567);
  EXPECT_EQ(reg.render(),
            "# HELP devmesh_records_in_total Records received\n"
            "# TYPE devmesh_records_in_total counter\n"
            "devmesh_records_in_total{instance=\"a\"} 3\n"
            "devmesh_records_in_total{instance=\"b\"} 1234567\n"
            "# HELP devmesh_queue_records Records queued\n"
            "# TYPE devmesh_queue_records gauge\n"
            "devmesh_queue_records 7\n");
}

TEST(Metrics, NumbersPrintWithoutExponentWhenIntegralAndExactlyOtherwise) {
  MetricsRegistry reg;
  reg.gauge("g_big", "", "")->set(1e15);
  reg.gauge("g_frac", "", "")->set(0.25);
  reg.gauge("g_neg", "", "")->set(-42);
  reg.gauge("g_third", "", "")->set(1.0 / 3);
  std::string out = reg.render();
  EXPECT_NE(out.find("g_big 1000000000000000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("g_frac 0.25\n"), std::string::npos) << out;
  EXPECT_NE(out.find("g_neg -42\n"), std::string::npos) << out;
  EXPECT_NE(out.find("g_third 0.3333333333333333\n"), std::string::npos) << out;
}

TEST(Metrics, HistogramBucketsAreCumulativeWithSumAndCount) {
  MetricsRegistry reg;
  auto *h = reg.histogram("devmesh_flush_duration_seconds", "Flush latency", R"(output="db")",
                          {0.1, 0.01, 1});  // unsorted on purpose
  for (double v : {0.005, 0.01, 0.05, 0.5, 3.0}) h->observe(v);
  EXPECT_EQ(reg.render(),
            "# HELP devmesh_flush_duration_seconds Flush latency\n"
            "# TYPE devmesh_flush_duration_seconds histogram\n"
            "devmesh_flush_duration_seconds_bucket{output=\"db\",le=\"0.01\"} 2\n"
            "devmesh_flush_duration_seconds_bucket{output=\"db\",le=\"0.1\"} 3\n"
            "devmesh_flush_duration_seconds_bucket{output=\"db\",le=\"1\"} 4\n"
            "devmesh_flush_duration_seconds_bucket{output=\"db\",le=\"+Inf\"} 5\n"
            "devmesh_flush_duration_seconds_sum{output=\"db\"} 3.565\n"
            "devmesh_flush_duration_seconds_count{output=\"db\"} 5\n");
}

TEST(Metrics, HistogramWithoutLabelsOrBoundsUsesDefaultBuckets) {
  MetricsRegistry reg;
  reg.histogram("h", "help", "", {})->observe(0.2);
  std::string out = reg.render();
  EXPECT_NE(out.find("h_bucket{le=\"0.005\"} 0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_bucket{le=\"0.25\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_bucket{le=\"10\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_bucket{le=\"+Inf\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_count 1\n"), std::string::npos) << out;
}

TEST(Metrics, EscapesLabelValuesAndHelpText) {
  EXPECT_EQ(devmesh::prom_escape("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  MetricsRegistry reg;
  reg.counter("c", "line one\nback\\slash \"quoted\"",
              "path=\"" + devmesh::prom_escape("C:\\logs\n") + "\"");
  std::string out = reg.render();
  EXPECT_NE(out.find("# HELP c line one\\nback\\\\slash \"quoted\"\n"), std::string::npos) << out;
  EXPECT_NE(out.find("c{path=\"C:\\\\logs\\n\"} 0\n"), std::string::npos) << out;
}

TEST(Metrics, RegisteringTheSameSeriesTwiceReturnsTheSameMetric) {
  MetricsRegistry reg;
  auto *a = reg.counter("dup_total", "h", "k=\"v\"");
  auto *b = reg.counter("dup_total", "h", "k=\"v\"");
  EXPECT_EQ(a, b);
  EXPECT_NE(reg.counter("dup_total", "h", "k=\"w\""), a);
}

TEST(Metrics, ANameUsedByAnotherKindOrInvalidIsRefused) {
  MetricsRegistry reg;
  ASSERT_NE(reg.counter("used_total", "h", ""), nullptr);
  EXPECT_EQ(reg.gauge("used_total", "h", "x=\"1\""), nullptr);
  EXPECT_EQ(reg.histogram("used_total", "h", "", {1}), nullptr);
  EXPECT_EQ(reg.counter("bad-name", "h", ""), nullptr);
  EXPECT_EQ(reg.counter("9starts_with_digit", "h", ""), nullptr);
}

TEST(Metrics, ConcurrentAddsFromThreadsSumExactly) {
  MetricsRegistry reg;
  auto *c = reg.counter("adds_total", "h", "");
  auto *h = reg.histogram("obs", "h", "", {0.5});
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100000; ++i) {
        c->add(1);
        h->observe(i % 2 ? 1.0 : 0.25);
      }
    });
  }
  // Rendering while others update must be safe (and stay well-formed).
  for (int i = 0; i < 50; ++i)
    EXPECT_NE(reg.render().find("# TYPE obs histogram"), std::string::npos);
  for (auto &t : threads) t.join();
  EXPECT_EQ(c->value(), 800000.0);
  std::string out = reg.render();
  EXPECT_NE(out.find("adds_total 800000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("obs_bucket{le=\"0.5\"} 400000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("obs_count 800000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("obs_sum 500000\n"), std::string::npos) << out;
}

}  // namespace
