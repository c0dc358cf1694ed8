// Live reload (SIGHUP, POST /reload) through the real binary: a reload during a steady stream
// (http and journald) loses and repeats nothing, a broken file is refused while the pipeline
// runs on, a listener moves, a changed output keeps its disk backlog, and SIGHUP no longer ends
// the process with records in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http_support.h"
// SqliteDb from the store tests' support; its plugins_head is http_support.h's twin.
#define plugins_head store_plugins_head
#include "store_test_support.h"
#undef plugins_head

using namespace devmesh::test;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";

std::string url(int port, const std::string &path) {
  return "http://127.0.0.1:" + std::to_string(port) + path;
}

// POST /reload with the curl binary: status, body in *body.
int post_reload(int port, const TempDir &d, std::string *body) {
  std::string out;
  run({"/usr/bin/curl", "-s", "-X", "POST", "-o", d / "reload.body", "-w", "%{http_code}",
       "--max-time", "60", url(port, "/reload")},
      d.path(), &out);
  if (body) *body = read_file(d / "reload.body");
  return std::atoi(out.c_str());
}

std::string metrics(int port, const TempDir &d) {
  std::string body;
  http_get(url(port, "/metrics"), &body, d.path());
  return body;
}

double reloads(int port, const TempDir &d, const std::string &result) {
  return find_metric(metrics(port, d), "devmesh_reloads_total", "result=\"" + result + "\"")
      .value_or(0);
}

// The sum of a counter over the series whose labels contain `label` (a changed instance and its
// predecessor share a series).
double sum_metric(const std::string &text, const std::string &name, const std::string &label) {
  std::istringstream in(text);
  std::string line;
  double sum = 0;
  while (std::getline(in, line))
    if (line.rfind(name + "{", 0) == 0 && line.find(label) != std::string::npos)
      sum += std::atof(line.substr(line.rfind(' ') + 1).c_str());
  return sum;
}

std::string records_body(uint64_t first, uint64_t n) {
  std::string b = "[";
  for (uint64_t i = 0; i < n; i++) {
    if (i) b += ",";
    b += R"({"timestamp":"2026-01-01T00:00:00Z","host":"h","service":"s","message":"http )" +
         std::to_string(first + i) + "\"}";
  }
  return b + "]";
}

// Numbers in the messages "<prefix> N" stored in a table, each with how often it is there.
std::map<uint64_t, int> stored_numbers(const std::string &db, const std::string &prefix) {
  SqliteDb s(db);
  std::map<uint64_t, int> out;
  for (auto &row : s.rows("SELECT message FROM log_events WHERE message LIKE '" + prefix + " %'"))
    out[std::strtoull(row[0].c_str() + prefix.size() + 1, nullptr, 10)]++;
  return out;
}

long distinct_event_ids(const std::string &db, const std::string &prefix) {
  SqliteDb s(db);
  return s.number("SELECT COUNT(DISTINCT event_id) FROM log_events WHERE message LIKE '" + prefix +
                  " %'");
}

// A client posting numbered records (ack: delivered) at a steady rate from several threads;
// the numbers answered 200 are the ones the pipeline owes the store.
class Stream {
 public:
  Stream(int port, int threads, int per_post, int posts_per_second_per_thread)
      : port_(port), per_post_(per_post) {
    for (int t = 0; t < threads; t++)
      threads_.emplace_back([this, t, threads, posts_per_second_per_thread] {
        const auto period = std::chrono::microseconds(1000000 / posts_per_second_per_thread);
        auto next = std::chrono::steady_clock::now();
        for (uint64_t k = 0; !stop_; k++) {
          const uint64_t first = (k * threads + t) * per_post_ + 1;
          HttpResult r = libcurl_post(url(port_, "/ingest/logs"), records_body(first, per_post_));
          {
            std::lock_guard<std::mutex> lk(mu_);
            if (r.status == 200)
              for (int i = 0; i < per_post_; i++) acked_.insert(first + i);
            else
              failures_.push_back(std::to_string(r.status) + " " + r.body);
          }
          next += period;
          std::this_thread::sleep_until(next);
        }
      });
  }
  ~Stream() { stop(); }
  void stop() {
    stop_ = true;
    for (auto &t : threads_)
      if (t.joinable()) t.join();
  }
  size_t acked() {
    std::lock_guard<std::mutex> lk(mu_);
    return acked_.size();
  }
  std::set<uint64_t> acked_set() {
    std::lock_guard<std::mutex> lk(mu_);
    return acked_;
  }
  std::vector<std::string> failures() {
    std::lock_guard<std::mutex> lk(mu_);
    return failures_;
  }

 private:
  int port_, per_post_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::set<uint64_t> acked_;
  std::vector<std::string> failures_;
};

std::string head(int admin) {
  return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(admin) +
                      "\n  flush_interval: 50ms\n");
}

}  // namespace

TEST(Reload, SighupWithRecordsInFlightStoresThemAndTheProcessKeepsRunning) {
  TempDir d;
  const int admin = free_port(), port = free_port();
  // A long flush interval (flush: interval, never sooner): the 3 accepted records wait in the
  // output's queue at the SIGHUP.
  const std::string yaml =
      plugins_head("  http_listen: 127.0.0.1:" + std::to_string(admin) + "\n") +
      "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
      "}\n"
      "  outputs:\n    - {name: sqlite, path: " +
      d / "db.sqlite" + ", flush_interval: 1h, flush: interval}\n";
  Devmesh e(d, "engine", yaml);
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  HttpResult r = libcurl_post(url(port, "/ingest/logs"), records_body(1, 3));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":3"), std::string::npos) << r.body;

  e->kill(SIGHUP);
  ASSERT_TRUE(wait_until([&] { return reloads(admin, d, "applied") == 1; }, 30s)) << e->err();
  EXPECT_TRUE(e->running());
  // Still serving after it.
  EXPECT_EQ(http_get(url(admin, "/health"), nullptr, d.path()), 200);

  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
  EXPECT_EQ(stored_numbers(d / "db.sqlite", "http").size(), 3u) << e->err();
}

TEST(Reload, ABrokenFileIsRefusedWithEveryProblemAndThePipelineKeepsDelivering) {
  TempDir d;
  const int admin = free_port(), port = free_port();
  const std::string good =
      head(admin) + "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
      ", ack: delivered}\n"
      "  filters:\n    - {name: priority_map, alias: levels}\n"
      "  outputs:\n    - {name: sqlite, path: " +
      d / "db.sqlite" + "}\n";
  Devmesh e(d, "engine", good);
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  ASSERT_EQ(libcurl_post(url(port, "/ingest/logs"), records_body(1, 5)).status, 200);

  // A syntax error: the file cannot be read at all.
  write_file(d / "engine.yaml", good + "  - {name: [\n");
  std::string body;
  EXPECT_EQ(post_reload(admin, d, &body), 422);
  EXPECT_NE(body.find("\"status\":\"refused\""), std::string::npos) << body;
  EXPECT_NE(body.find("engine.yaml:"), std::string::npos) << body;
  EXPECT_NE(body.find("invalid YAML"), std::string::npos) << body;

  // Semantic errors: an unknown option and a service option that needs a restart. Both listed.
  std::string semantic = head(free_port()) + good.substr(head(admin).size());
  semantic.replace(semantic.find("alias: levels}"), 14, "alias: levels, no_such_option: 1}");
  write_file(d / "engine.yaml", semantic);
  EXPECT_EQ(post_reload(admin, d, &body), 422);
  EXPECT_NE(body.find("no_such_option"), std::string::npos) << body;
  EXPECT_NE(body.find("service.http_listen"), std::string::npos) << body;
  EXPECT_NE(body.find("needs a restart"), std::string::npos) << body;
  EXPECT_NE(e->err().find("pipeline.filters[0].no_such_option"), std::string::npos) << e->err();

  EXPECT_EQ(reloads(admin, d, "refused"), 2);
  EXPECT_EQ(reloads(admin, d, "applied"), 0);
  std::string health;
  http_get(url(admin, "/health"), &health, d.path());
  EXPECT_NE(health.find("\"last_reload\""), std::string::npos) << health;
  EXPECT_NE(health.find("\"result\":\"refused\""), std::string::npos) << health;
  EXPECT_NE(health.find("no_such_option"), std::string::npos) << health;

  // The running pipeline is untouched: it still delivers.
  ASSERT_EQ(libcurl_post(url(port, "/ingest/logs"), records_body(6, 5)).status, 200);
  EXPECT_EQ(stored_numbers(d / "db.sqlite", "http").size(), 10u);

  // A good file again is applied.
  write_file(d / "engine.yaml", good);
  EXPECT_EQ(post_reload(admin, d, &body), 200) << body;
  EXPECT_NE(body.find("\"status\":\"applied\""), std::string::npos) << body;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0);
}

// 20 reloads under ~5,000 http records/s plus a journal being read, each changing a filter and
// an output: every acknowledged record is stored once, every journal entry once, and every
// output delivered each record once (its records_out counter; the store would absorb repeats).
TEST(Reload, TwentyReloadsDuringASteadyStreamLoseAndRepeatNothing) {
  TempDir d;
  const int admin = free_port(), port = free_port();
  std::filesystem::create_directories(d / "journal");
  const std::string journal = d / "journal/system.journal";
  ASSERT_EQ(run({kFixture, "-o", journal, "--count", "3000"}, d.path()), 0);

  auto config = [&](int generation) {
    const char *level = generation % 2 ? "DEBUG" : "INFO";
    return head(admin) + "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
           ", ack: delivered}\n"
           "    - {name: journald, path: " +
           d / "journal" + ", state_file: " + d / "journald.state" +
           ", follow: true}\n"
           "  filters:\n    - {name: priority_map, alias: levels, default_level: " +
           level +
           "}\n"
           "  outputs:\n    - {name: sqlite, alias: all, path: " +
           d / "all.sqlite" +
           ", synchronous: normal}\n"
           "    - {name: sqlite, alias: second, path: " +
           d / "second.sqlite" +
           ", synchronous: normal, batch_size: " + std::to_string(100 + generation) + "}\n";
  };
  Devmesh e(d, "engine", config(0));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();

  // 10 threads x 10 posts/s x 50 records: 5,000 records/s (a post waits for delivery, ~60 ms).
  const auto began = std::chrono::steady_clock::now();
  Stream stream(port, 10, 50, 10);
  for (int i = 1; i <= 20; i++) {
    const size_t before = stream.acked();
    // Traffic between two reloads: ~0.2 s of the stream answered.
    ASSERT_TRUE(wait_until([&] { return stream.acked() >= before + 1000; }, 30s));
    write_file(d / "engine.yaml", config(i));
    if (i == 10) {  // more journal entries while it runs
      ASSERT_EQ(run({kFixture, "-o", journal, "--count", "3000", "--start", "3001"}, d.path()), 0);
    }
    if (i % 2) {
      e->kill(SIGHUP);
      ASSERT_TRUE(wait_until([&] { return reloads(admin, d, "applied") == i; }, 30s))
          << "reload " << i << "\n"
          << e->err();
    } else {
      std::string body;
      ASSERT_EQ(post_reload(admin, d, &body), 200) << body;
      EXPECT_NE(body.find("\"changed\":[\"levels\",\"second\"]"), std::string::npos) << body;
    }
  }
  stream.stop();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
  std::printf("%zu http records acknowledged in %.1f s (%.0f/s) over 20 reloads\n", stream.acked(),
              secs, static_cast<double>(stream.acked()) / secs);
  EXPECT_TRUE(stream.failures().empty())
      << stream.failures().size() << " posts failed, first: " << stream.failures().front();
  EXPECT_EQ(reloads(admin, d, "applied"), 20);
  EXPECT_EQ(reloads(admin, d, "refused"), 0);
  EXPECT_GE(stream.acked(), 20000u);
  // Every journal entry read and acknowledged, and the outputs settled.
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string m = metrics(admin, d);
        return find_metric(m, "devmesh_journald_entries_acknowledged_total", "").value_or(0) ==
                   6000 &&
               unsettled_outputs(m).empty();
      },
      60s))
      << unsettled_outputs(metrics(admin, d)) << e->err();

  const std::string m = metrics(admin, d);
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();

  const std::set<uint64_t> acked = stream.acked_set();
  for (const char *db : {"all.sqlite", "second.sqlite"}) {
    SCOPED_TRACE(db);
    const auto http = stored_numbers(d / db, "http");
    size_t missing = 0;
    for (uint64_t n : acked) missing += http.count(n) ? 0 : 1;
    EXPECT_EQ(missing, 0u) << "of " << acked.size() << " acknowledged records";
    EXPECT_EQ(http.size(), acked.size());  // nothing stored that was not acknowledged
    EXPECT_EQ(distinct_event_ids(d / db, "http"), static_cast<long>(acked.size()));
    const auto entries = stored_numbers(d / db, "entry");
    EXPECT_EQ(entries.size(), 6000u);
    EXPECT_EQ(distinct_event_ids(d / db, "entry"), 6000);
  }
  // Each output delivered each record once (retiring and new generations share the series).
  const double total = static_cast<double>(acked.size() + 6000);
  EXPECT_EQ(sum_metric(m, "devmesh_records_out_total", "instance=\"all\""), total);
  EXPECT_EQ(sum_metric(m, "devmesh_records_out_total", "instance=\"second\""), total);
  EXPECT_EQ(find_metric(m, "devmesh_journald_entries_read_total", "").value_or(0), 6000);
}

TEST(Reload, AReloadMovesTheHttpListenerAndKeepsEveryRecord) {
  TempDir d;
  const int admin = free_port(), first = free_port(), second = free_port();
  auto config = [&](int port) {
    return head(admin) + "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
           ", ack: delivered}\n"
           "  outputs:\n    - {name: sqlite, path: " +
           d / "db.sqlite" + "}\n";
  };
  Devmesh e(d, "engine", config(first));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  ASSERT_EQ(libcurl_post(url(first, "/ingest/logs"), records_body(1, 10)).status, 200);

  write_file(d / "engine.yaml", config(second));
  std::string body;
  ASSERT_EQ(post_reload(admin, d, &body), 200) << body << e->err();
  EXPECT_NE(body.find("\"changed\":[\"http.0\"]"), std::string::npos) << body;
  // The new address serves; the old one no longer accepts connections.
  ASSERT_EQ(libcurl_post(url(second, "/ingest/logs"), records_body(11, 10)).status, 200)
      << e->err();
  // The old listener closes at the loop's next turn: wait for the refusal, then post.
  EXPECT_TRUE(wait_until(
      [&] { return http_get(url(first, "/ingest/logs"), nullptr, d.path()) == 0; }, 10s));
  EXPECT_EQ(libcurl_post(url(first, "/ingest/logs"), records_body(21, 10)).status, 0);

  // And back.
  write_file(d / "engine.yaml", config(first));
  ASSERT_EQ(post_reload(admin, d, &body), 200) << body;
  ASSERT_EQ(libcurl_post(url(first, "/ingest/logs"), records_body(31, 10)).status, 200);
  EXPECT_TRUE(wait_until(
      [&] { return http_get(url(second, "/ingest/logs"), nullptr, d.path()) == 0; }, 10s));
  EXPECT_EQ(libcurl_post(url(second, "/ingest/logs"), records_body(41, 10)).status, 0);

  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  const auto stored = stored_numbers(d / "db.sqlite", "http");
  EXPECT_EQ(stored.size(), 30u);
  for (uint64_t n : {1, 10, 11, 20, 31, 40}) EXPECT_EQ(stored.count(n), 1u) << n;
}

// A renamed http input (a new alias, same address and path) is a removed input and an added
// one: the added one starts once the removed one is gone, and then serves the same path (it
// must not be left unstarted behind the old one's route, or the port closes).
TEST(Reload, ARenamedHttpInputServesTheSameAddressAndPathAfterTheOldOneGoes) {
  TempDir d;
  const int admin = free_port(), port = free_port();
  auto config = [&](const std::string &alias) {
    return head(admin) + "  inputs:\n    - {name: http, alias: " + alias +
           ", listen: 127.0.0.1:" + std::to_string(port) +
           ", ack: delivered}\n"
           "  outputs:\n    - {name: sqlite, path: " +
           d / "db.sqlite" + "}\n";
  };
  Devmesh e(d, "engine", config("ingest_a"));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  ASSERT_EQ(libcurl_post(url(port, "/ingest/logs"), records_body(1, 10)).status, 200);

  write_file(d / "engine.yaml", config("ingest_b"));
  std::string body;
  ASSERT_EQ(post_reload(admin, d, &body), 200) << body << e->err();
  EXPECT_NE(body.find("\"added\":[\"ingest_b\"]"), std::string::npos) << body;
  EXPECT_NE(body.find("\"removed\":[\"ingest_a\"]"), std::string::npos) << body;
  EXPECT_EQ(body.find("errors"), std::string::npos) << body;
  // Served by the new input (a 503 from the old one while it drained is retryable).
  EXPECT_TRUE(wait_until(
      [&] { return libcurl_post(url(port, "/ingest/logs"), records_body(11, 10)).status == 200; },
      20s))
      << e->err();
  EXPECT_EQ(libcurl_post(url(port, "/ingest/logs"), records_body(21, 10)).status, 200);
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  const auto stored = stored_numbers(d / "db.sqlite", "http");
  for (uint64_t n = 1; n <= 30; n++) EXPECT_EQ(stored.count(n), 1u) << n;
}

// Storage on, the output's receiver down: records wait in its disk backlog. A reload changes
// the output; its successor (same name) takes the backlog over and delivers it once the
// receiver is up, each record once.
TEST(Reload, AChangedOutputTakesOverItsDiskBacklog) {
  TempDir d;
  const int admin = free_port(), port = free_port(), sink = free_port();
  auto config = [&](const std::string &retry_wait) {
    return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(admin) +
                        "\n  flush_interval: 50ms\n  storage: {path: " + d / "storage" +
                        ", sync: always}\n") +
           "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
           ", ack: durable}\n"
           "  outputs:\n    - {name: http_forward, alias: out, url: " +
           url(sink, "/ingest/logs") + ", retry_wait: " + retry_wait +
           ", retry_max_wait: 200ms, queue_limit: 4KiB, batch_size: 10}\n";
  };
  Devmesh e(d, "engine", config("100ms"));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  for (int i = 0; i < 20; i++)
    ASSERT_EQ(libcurl_post(url(port, "/ingest/logs"), records_body(i * 10 + 1, 10)).status, 200);
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(admin, d), "devmesh_storage_backlog_records", "out")
                   .value_or(0) > 0;
      },
      30s))
      << metrics(admin, d);

  write_file(d / "engine.yaml", config("150ms"));
  std::string body;
  ASSERT_EQ(post_reload(admin, d, &body), 200) << body;
  EXPECT_NE(body.find("\"changed\":[\"out\"]"), std::string::npos) << body;

  std::mutex mu;
  std::map<std::string, int> seen;  // message -> times received
  TestReceiver receiver(
      [&](const TestReceiver::Request &r, int) {
        auto doc = parse_json(r.body);
        std::lock_guard<std::mutex> lk(mu);
        if (doc.IsObject() && doc.HasMember("logs") && doc["logs"].IsArray())
          for (auto &rec : doc["logs"].GetArray()) seen[str_field(rec, "message")]++;
        return TestReceiver::Response{};
      },
      sink);
  ASSERT_TRUE(wait_until(
      [&] {
        std::lock_guard<std::mutex> lk(mu);
        return seen.size() >= 200;
      },
      60s))
      << e->err();
  ASSERT_TRUE(wait_until([&] { return unsettled_outputs(metrics(admin, d)).empty(); }, 30s))
      << unsettled_outputs(metrics(admin, d));
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  std::lock_guard<std::mutex> lk(mu);
  EXPECT_EQ(seen.size(), 200u);
  EXPECT_NE(e->err().find("its successor takes over"), std::string::npos) << e->err();
  for (auto &[message, times] : seen) EXPECT_EQ(times, 1) << message;
}

// A changed journald input: its successor starts from the predecessor's final checkpoint, so
// changing it while entries arrive reads each entry once.
TEST(Reload, AChangedJournaldInputResumesFromItsPredecessorsCheckpoint) {
  TempDir d;
  const int admin = free_port();
  std::filesystem::create_directories(d / "journal");
  const std::string journal = d / "journal/system.journal";
  ASSERT_EQ(run({kFixture, "-o", journal, "--count", "2000"}, d.path()), 0);
  auto config = [&](int batch) {
    return head(admin) + "  inputs:\n    - {name: journald, path: " + d / "journal" +
           ", state_file: " + d / "journald.state" +
           ", follow: true, batch: " + std::to_string(batch) +
           "}\n"
           "  outputs:\n    - {name: sqlite, path: " +
           d / "db.sqlite" + ", synchronous: normal}\n";
  };
  Devmesh e(d, "engine", config(100));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  for (int i = 1; i <= 5; i++) {
    ASSERT_EQ(run({kFixture, "-o", journal, "--count", "1000", "--start",
                   std::to_string(1001 + i * 1000)},
                  d.path()),
              0);
    write_file(d / "engine.yaml", config(100 + i));
    std::string body;
    ASSERT_EQ(post_reload(admin, d, &body), 200) << body << e->err();
    EXPECT_NE(body.find("\"changed\":[\"journald.0\"]"), std::string::npos) << body;
  }
  const double total = 7000;
  ASSERT_TRUE(wait_until(
      [&] {
        return sum_metric(metrics(admin, d), "devmesh_journald_entries_acknowledged_total",
                          "journald") == total;
      },
      60s))
      << metrics(admin, d) << e->err();
  const std::string m = metrics(admin, d);
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  // Read once over all generations, and each entry stored once.
  EXPECT_EQ(sum_metric(m, "devmesh_journald_entries_read_total", "journald"), total);
  EXPECT_EQ(sum_metric(m, "devmesh_records_out_total", "sqlite"), total);
  const auto entries = stored_numbers(d / "db.sqlite", "entry");
  EXPECT_EQ(entries.size(), 7000u);
  EXPECT_EQ(e->err().find("may read them again"), std::string::npos) << e->err();
}

// An input whose tickets stay open (its output flushes hourly) holds the reload past the grace
// period: a SIGHUP meanwhile is applied after it, and a SIGTERM during one ends the process
// cleanly with every accepted record stored.
TEST(Reload, ASecondSighupWaitsForTheFirstAndShutdownDuringAReloadKeepsEveryRecord) {
  TempDir d;
  const int admin = free_port(), port = free_port();
  auto config = [&](int max_body_kib) {
    return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(admin) + "\n  grace: 2s\n") +
           "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
           ", max_body: " + std::to_string(max_body_kib) +
           "KiB}\n"
           "  outputs:\n    - {name: sqlite, path: " +
           d / "db.sqlite" + ", flush_interval: 1h, flush: interval}\n";
  };
  Devmesh e(d, "engine", config(1024));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  ASSERT_EQ(libcurl_post(url(port, "/ingest/logs"), records_body(1, 3)).status, 200);

  write_file(d / "engine.yaml", config(2048));
  e->kill(SIGHUP);
  // The retiring input waits for its 3 records (they sit in the output's queue for an hour).
  ASSERT_TRUE(wait_until([&] { return e->err().find("reload applied") != std::string::npos; }, 30s))
      << e->err();
  e->kill(SIGHUP);  // while the first is still applying
  ASSERT_TRUE(wait_until([&] { return reloads(admin, d, "applied") == 2; }, 30s)) << e->err();
  EXPECT_NE(e->err().find("a reload is being applied: another one follows it"), std::string::npos)
      << e->err();
  EXPECT_NE(e->err().find("may read them again"), std::string::npos) << e->err();
  ASSERT_TRUE(wait_until(
      [&] { return libcurl_post(url(port, "/ingest/logs"), records_body(4, 3)).status == 200; },
      30s))
      << e->err();

  // Shutdown while a reload waits for the input's tickets.
  write_file(d / "engine.yaml", config(4096));
  e->kill(SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string err = e->err();
        size_t n = 0;
        for (size_t at = err.find("reload applied"); at != std::string::npos;
             at = err.find("reload applied", at + 1))
          n++;
        return n == 3;
      },
      30s))
      << e->err();
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
  EXPECT_EQ(stored_numbers(d / "db.sqlite", "http").size(), 6u) << e->err();
}

// A changed dedup filter emits the summary of the repeats it holds at its stop(), through the
// old chain: the request waiting for them (ack: delivered) is answered, nothing is left held.
TEST(Reload, AChangedFilterReleasesWhatItHolds) {
  TempDir d;
  const int admin = free_port(), port = free_port();
  auto config = [&](const std::string &window) {
    return head(admin) + "  inputs:\n    - {name: http, listen: 127.0.0.1:" + std::to_string(port) +
           ", ack: delivered}\n"
           "  filters:\n    - {name: dedup, alias: repeats, mode: collapse, window: " +
           window +
           "}\n"
           "  outputs:\n    - {name: sqlite, path: " +
           d / "db.sqlite" + "}\n";
  };
  Devmesh e(d, "engine", config("1h"));
  ASSERT_TRUE(e.ready(admin, d)) << e->err();
  // Five times one line: the first passes, four are held for the summary (an hour away).
  std::string logs;
  for (int i = 0; i < 5; ++i)
    logs += std::string(i ? "," : "") + R"({"timestamp":"2025-03-01T10:00:00.)" +
            std::to_string(i) + R"(Z","service":"api","host":"n1","message":"disk full"})";
  auto answer = std::async(std::launch::async, [&] {
    return libcurl_post(url(port, "/ingest/logs"), "{\"logs\":[" + logs + "]}");
  });
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(metrics(admin, d), "devmesh_http_requests_waiting", "").value_or(0) == 1;
      },
      30s));
  EXPECT_EQ(answer.wait_for(0s), std::future_status::timeout);

  write_file(d / "engine.yaml", config("2h"));
  std::string body;
  ASSERT_EQ(post_reload(admin, d, &body), 200) << body;
  EXPECT_NE(body.find("\"changed\":[\"repeats\"]"), std::string::npos) << body;
  ASSERT_EQ(answer.wait_for(30s), std::future_status::ready) << e->err();
  HttpResult r = answer.get();
  EXPECT_EQ(r.status, 200) << r.body;
  SqliteDb db(d / "db.sqlite");
  EXPECT_EQ(db.number("SELECT COUNT(*) FROM log_events"), 2);  // the first and the summary
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

// service.http_token: /metrics and POST /reload need the bearer token, /health stays open for
// probes; refusals are 401 with WWW-Authenticate and counted; a reload applies a new token.
TEST(Reload, HttpTokenGuardsMetricsAndReloadButNotHealthAndAReloadChangesIt) {
  TempDir d;
  const int admin = free_port();
  auto config = [&](const std::string &token) {
    return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(admin) +
                        "\n  http_token: " + token + "\n") +
           "  inputs:\n    - {name: dummy, count: 1}\n  outputs:\n    - {name: 'null'}\n";
  };
  Devmesh e(d, "engine", config("first-secret"));
  ASSERT_TRUE(wait_until([&] { return http(url(admin, "/health")).status == 200; }, 20s))
      << e->err();
  const std::string first = "Authorization: Bearer first-secret";
  EXPECT_EQ(http(url(admin, "/metrics")).status, 401);
  const HttpResponse wrong = http(url(admin, "/metrics"), {"Authorization: Bearer nope"});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_NE(wrong.body.find("service.http_token"), std::string::npos) << wrong.body;
  EXPECT_EQ(http(url(admin, "/reload"), {}, "POST").status, 401);
  const HttpResponse m = http(url(admin, "/metrics"), {"authorization: bearer first-secret"});
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(find_metric(m.body, "devmesh_http_unauthorized_total", "").value_or(0), 3) << m.body;
  EXPECT_EQ(find_metric(m.body, "devmesh_reloads_total", "result=\"applied\"").value_or(0), 0);
  // The secret is never printed.
  EXPECT_EQ(e->err().find("first-secret"), std::string::npos) << e->err();

  write_file(d / "engine.yaml", config("second-secret"));
  const HttpResponse r = http(url(admin, "/reload"), {first}, "POST");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(http(url(admin, "/metrics"), {first}).status, 401);
  EXPECT_EQ(http(url(admin, "/metrics"), {"Authorization: Bearer second-secret"}).status, 200);
  EXPECT_EQ(http(url(admin, "/health")).status, 200);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0);

  // An empty token is a configuration problem, not "no token".
  write_file(d / "empty.yaml", config("''"));
  std::string out, err;
  EXPECT_NE(run({DEVMESH_BIN, "--dry-run", "-c", d / "empty.yaml"}, d.path(), &out, &err), 0);
  EXPECT_NE(err.find("service.http_token"), std::string::npos) << err;
  EXPECT_NE(err.find("must not be empty"), std::string::npos) << err;
}
