// Fault test 3 (issue 6): MariaDB stopped for 30 s (and until the output's queue has filled)
// while a client posts numbered records at 5,000 records/s to the http input (honouring 503 +
// Retry-After), then started again: every record answered 2xx is stored once with every field
// as sent, the backlog drains, and the engine's memory stays within its queue_limit plus a
// stated overhead.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

constexpr int kRatePerSecond = 5000;
constexpr int kPerRequest = 250;                          // 20 requests a second
constexpr long kStoredBeforeOutage = 5 * kRatePerSecond;  // about 5 s of traffic
constexpr auto kOutage = 30s;  // at least; longer if the queue has not filled by then
constexpr auto kAfterOutage = 15s;
constexpr long kQueueLimitMiB = 16;
// queue_limit counts the queued records' field bytes; the memory behind them is about three
// times that (measured with queue_limit 48MiB, never full: 37.7 MiB counted, 116 MiB more RSS):
// the batch arenas hold the request bodies the fields point into, and the record arrays. So the
// stated overhead is twice queue_limit for those, plus 32 MiB for the engine itself (libuv, h2o,
// libmariadb, the plugins, allocator caches). Without backpressure this outage's backlog would
// take about 130 MiB, well above the bound.
constexpr long kOverheadMiB = 2 * kQueueLimitMiB + 32;

// The event_id the client gives record n (32 hex digits: stored as they are).
std::string client_event_id(uint64_t n) {
  return xxh128_hex("fault-client:" + std::to_string(n));
}

// Posts numbered records at a fixed rate, each batch again until it is answered 2xx: after a
// 503 it waits Retry-After, after a connection error 100 ms. Counts what the input accepted.
class PacedClient {
 public:
  explicit PacedClient(std::string url) : url_(std::move(url)) {}
  ~PacedClient() { stop(); }

  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
  }
  AcceptedSet accepted() {
    std::lock_guard<std::mutex> lk(mu_);
    return accepted_;
  }
  uint64_t sent() const { return next_ - 1; }
  int status_503() const { return status_503_; }
  int connection_errors() const { return connection_errors_; }
  std::string problems() {
    std::lock_guard<std::mutex> lk(mu_);
    return problems_;
  }

 private:
  void run() {
    CURL *e = curl_easy_init();
    curl_slist *h = curl_slist_append(nullptr, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    std::string body, response, headers;
    auto sink = +[](char *p, size_t s, size_t n, void *arg) {
      static_cast<std::string *>(arg)->append(p, s * n);
      return s * n;
    };
    curl_easy_setopt(e, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &response);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sink);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &headers);
    const auto period = std::chrono::microseconds(1000000LL * kPerRequest / kRatePerSecond);
    auto due = std::chrono::steady_clock::now();
    while (!stopping_) {
      std::this_thread::sleep_until(due);
      due += period;
      const uint64_t first = next_;
      body = "{\"logs\":[";
      for (uint64_t n = first; n < first + kPerRequest; ++n)
        body += (n == first ? "" : ",") +
                http_record(n, "fault", ",\"event_id\":\"" + client_event_id(n) + "\"");
      body += "]}";
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
      // The same batch until it is taken (a real client's retry loop).
      for (;;) {
        response.clear();
        headers.clear();
        long code = 0;
        if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
        if (code >= 200 && code < 300) {
          std::lock_guard<std::mutex> lk(mu_);
          if (response.find("\"accepted\":" + std::to_string(kPerRequest)) == std::string::npos)
            problems_ += "unexpected answer: " + response + "\n";
          accepted_.add_range(first, first + kPerRequest - 1);
          break;
        }
        if (code == 503) {
          ++status_503_;
          long wait_s = 1;
          for (char &c : headers)
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
          const auto at = headers.find("\nretry-after:");
          if (at == std::string::npos) {
            std::lock_guard<std::mutex> lk(mu_);
            problems_ += "503 without Retry-After\n";
          } else {
            wait_s = std::atol(headers.c_str() + at + 13);
          }
          std::this_thread::sleep_for(std::chrono::seconds(std::max(wait_s, 1L)));
        } else if (code == 0) {
          ++connection_errors_;
          std::this_thread::sleep_for(100ms);
        } else {
          std::lock_guard<std::mutex> lk(mu_);
          problems_ += "HTTP " + std::to_string(code) + ": " + response + "\n";
          break;
        }
        if (stopping_) break;
      }
      next_ = first + kPerRequest;
      // After a wait the schedule is not caught up in a burst: the rate stays the rate.
      due = std::max(due, std::chrono::steady_clock::now());
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
  }

  std::string url_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_{1};
  std::atomic<int> status_503_{0}, connection_errors_{0};
  std::mutex mu_;
  AcceptedSet accepted_;
  std::string problems_;
};

long vm_kib(pid_t pid, const char *key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
  return 0;
}

TEST(DatabaseOutage, RecordsTakenDuringAThirtySecondOutageAreStoredOnceInBoundedMemory) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  const int port = free_port();
  Engine engine(d, "engine",
                service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n") +
                    "  inputs:\n    - {name: http, listen: '" + listen_on(port) +
                    "', retry_after: 1s}\n  outputs:\n" +
                    mariadb_output(db, d / "dead.ndjson",
                                   "      workers: 2\n      batch_size: 2000\n"
                                   "      full_text: false\n      retry_wait: 100ms\n"
                                   "      retry_max_wait: 1s\n      queue_limit: " +
                                       std::to_string(kQueueLimitMiB) + "MiB\n"));
  engine.start();
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << engine.err();
  const pid_t pid = engine.proc().pid();

  PacedClient client("http://" + listen_on(port) + "/ingest/logs");
  const auto began = std::chrono::steady_clock::now();
  client.start();
  // Traffic flows into the store before the outage.
  EXPECT_TRUE(wait_until(
      [&] {
        return scrape_metric(port, d.path(), "devmesh_mariadb_rows_inserted_total") >=
               kStoredBeforeOutage;
      },
      120s))
      << engine.err();
  const long rss_before_kib = vm_kib(pid, "VmRSS:");
  const uint64_t sent_before = client.sent();
  const double lost_before = scrape_metric(port, d.path(), "devmesh_mariadb_connection_lost_total");

  // The outage lasts 30 s, and until the queue has filled and the input has answered 503 (so
  // the bound is exercised whatever the machine's speed; 120 s at most).
  db.stop();
  const auto stopped_at = std::chrono::steady_clock::now();
  std::string metrics;
  double peak_queue_bytes = 0;
  const bool filled = wait_until(
      [&] {
        metrics = scrape_metrics(port, d.path());
        peak_queue_bytes =
            std::max(peak_queue_bytes,
                     find_metric(metrics, "devmesh_queue_bytes", "plugin=\"mariadb\"").value_or(0));
        return std::chrono::steady_clock::now() >= stopped_at + kOutage &&
               peak_queue_bytes >= kQueueLimitMiB * 1024 * 1024 / 2 && client.status_503() > 0;
      },
      120s);
  const double outage_s = seconds_since(stopped_at);
  EXPECT_TRUE(filled) << "the queue never filled (peak " << peak_queue_bytes
                      << " bytes) or no 503 (" << client.status_503() << ")\n"
                      << metrics;
  const uint64_t sent_in_outage = client.sent() - sent_before;
  ASSERT_TRUE(db.start(&err)) << err;
  const auto restarted_at = std::chrono::steady_clock::now();

  // Drained: the output's queue is back to what a second of traffic leaves in it.
  double drain_s = -1;
  const bool drained = wait_until(
      [&] {
        metrics = scrape_metrics(port, d.path());
        const double q = metric_value(metrics, "devmesh_queue_records", "plugin=\"mariadb\"");
        if (q >= 0 && q <= kRatePerSecond && drain_s < 0) drain_s = seconds_since(restarted_at);
        return drain_s >= 0;
      },
      120s);
  EXPECT_TRUE(drained) << "the backlog did not drain in 120 s\n" << metrics << engine.err();
  const auto keep_until = restarted_at + kAfterOutage;
  if (std::chrono::steady_clock::now() < keep_until) std::this_thread::sleep_until(keep_until);
  client.stop();
  const AcceptedSet accepted = client.accepted();

  // Everything accepted reaches the store.
  const bool stored = wait_until(
      [&] {
        return db.number("SELECT COUNT(*) FROM log_events") >=
               static_cast<long long>(accepted.count());
      },
      120s);
  EXPECT_TRUE(stored) << engine.err();
  // The outage left its traces in the output: connections lost or refused, then made again,
  // and batches sent again.
  metrics = scrape_metrics(port, d.path());
  EXPECT_GT(metric_value(metrics, "devmesh_mariadb_connection_lost_total", "") - lost_before +
                metric_value(metrics, "devmesh_mariadb_connect_errors_total", ""),
            0)
      << metrics;
  EXPECT_GE(metric_value(metrics, "devmesh_mariadb_reconnects_total", ""), 1) << metrics;
  EXPECT_GT(metric_value(metrics, "devmesh_records_retried_total", "plugin=\"mariadb\""), 0)
      << metrics;
  const long hwm_kib = vm_kib(pid, "VmHWM:");
  engine.proc().kill(SIGTERM);
  EXPECT_EQ(engine.proc().wait_exit(30s), 0) << engine.err();

  ConservationReport report;
  EXPECT_TRUE(store_conserves(
      db, accepted, {client_event_id, [](uint64_t n) { return http_record_fields(n, "fault"); }},
      &report));
  EXPECT_EQ(client.problems(), "");
  EXPECT_FALSE(std::filesystem::exists(d / "dead.ndjson")) << "dead-lettered records";
  EXPECT_LE(hwm_kib, (kQueueLimitMiB + kOverheadMiB) * 1024)
      << "peak RSS above queue_limit + " << kOverheadMiB << " MiB";
  std::cout << "  " << accepted.count() << " records accepted of " << client.sent() << " sent in "
            << seconds_since(began) << " s (" << sent_in_outage << " sent during the " << outage_s
            << " s outage); " << client.status_503() << " answers 503, "
            << client.connection_errors() << " connection errors; peak queue "
            << peak_queue_bytes / 1048576 << " MiB (queue_limit " << kQueueLimitMiB
            << " MiB); backlog drained " << drain_s << " s after MariaDB was back; RSS "
            << rss_before_kib / 1024 << " MiB before the outage, peak (VmHWM) " << hwm_kib / 1024
            << " MiB\n  " << report.describe() << "\n";
}

}  // namespace
