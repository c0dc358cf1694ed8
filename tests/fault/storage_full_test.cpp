// Fault test 5 (issue 6): storage full (a small storage.max_size) while MariaDB is down: the
// http input answers 503 with Retry-After, journald stops reading; once MariaDB is back every
// journal entry and every 2xx-acknowledged http record is stored exactly once.
#include <curl/curl.h>
#include <gtest/gtest.h>

#include <iostream>

#include "conservation.h"
#include "fault_support.h"

using namespace devmesh::test;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";
constexpr long kEntries = 20000;  // ~6 MB stored: several times max_size
constexpr long kBatch = 200;

struct Reply {
  int status = 0;
  std::string retry_after;
};

Reply post(const std::string &url, const std::string &body) {
  Reply r;
  CURL *e = curl_easy_init();
  curl_slist *h = curl_slist_append(nullptr, "Expect:");
  h = curl_slist_append(h, "Content-Type: application/json");  // libcurl's default is a form
  auto sink = +[](char *, size_t s, size_t n, void *) { return s * n; };
  auto header = +[](char *p, size_t s, size_t n, void *arg) {
    std::string line(p, s * n);
    if (strncasecmp(line.c_str(), "retry-after:", 12) == 0) {
      std::string v = line.substr(12);
      v.erase(0, v.find_first_not_of(' '));
      v.erase(v.find_last_not_of("\r\n ") + 1);
      static_cast<Reply *>(arg)->retry_after = v;
    }
    return s * n;
  };
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &r);
  long code = 0;
  if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  r.status = static_cast<int>(code);
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  return r;
}

// Records numbered from first, every field fixed by its number (a retried request keeps its
// event ids).
std::string body(long first) {
  std::string b = "{\"logs\":[";
  for (long i = 0; i < kBatch; i++) b += (i ? "," : "") + http_record(first + i, "full");
  return b + "]}";
}

// What the store must hold for number n: a journal entry, or an http record after them.
Fields sent_fields(uint64_t n) {
  return n <= kEntries ? journal_fields(n, {"app.service", "db.service"}, {6})
                       : http_record_fields(n, "full");
}

TEST(StorageFull, HttpGets503JournaldPausesAndNothingIsLostOnceTheStoreReturns) {
  TempDir d;
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;  // provisions the database and user
  db.stop();                           // the store is down from the start

  TempDir journal;
  Process fixture({kFixture, "-o", journal / "system.journal", "--count", std::to_string(kEntries),
                   "--units", "app.service,db.service"},
                  journal.path(), "fixture");
  ASSERT_EQ(fixture.wait_exit(120s), 0) << fixture.err();

  const int port = free_port(), mport = free_port();
  write_file(d / "sidecar.yaml",
             service_head("  http_listen: " + listen_on(mport) +
                          "\n  storage:\n    path: " + d / "data" + "\n    max_size: 1MiB\n") +
                 "  inputs:\n    - {name: journald, path: " + journal.path() +
                 ", follow: false, batch: 500, state_file: " + d / "state/journald.cursor" +
                 "}\n    - {name: http, retry_after: 1s, listen: '" + listen_on(port) +
                 "'}\n  outputs:\n" +
                 mariadb_output(db, d / "dead.ndjson", "      retry_max_wait: 2s\n"));
  Process e({DEVMESH_BIN, "-c", d / "sidecar.yaml"}, d.path(), "sidecar");
  ASSERT_TRUE(wait_listening(mport, d.path(), 20s)) << e.err();
  const std::string url = "http://" + listen_on(port) + "/ingest/logs";

  // Storage fills with the journal: journald is paused with entries left to read.
  ASSERT_TRUE(wait_until(
      [&] {
        return metric_value(scrape_metrics(mport, d.path()), "devmesh_storage_full", "") == 1;
      },
      60s))
      << e.err();
  // journald is paused with entries left to read, and its read counter stands still: the same
  // on reads a second apart, for several seconds (a paused input that kept reading would move it).
  ASSERT_TRUE(wait_until(
      [&] {
        return scrape_metric(mport, d.path(), "devmesh_input_paused", "instance=\"journald.0\"") ==
               1;
      },
      30s))
      << e.err();
  const double read_at_pause =
      scrape_metric(mport, d.path(), "devmesh_journald_entries_read_total");
  EXPECT_GT(read_at_pause, 0) << "journald read nothing before storage was full";
  EXPECT_LT(read_at_pause, kEntries)
      << "journald read the whole journal: storage never held it back";
  for (int i = 0; i < 4; i++) {
    std::this_thread::sleep_for(1s);
    EXPECT_EQ(scrape_metric(mport, d.path(), "devmesh_journald_entries_read_total"), read_at_pause)
        << "journald kept reading while storage was full";
  }
  EXPECT_EQ(scrape_metric(mport, d.path(), "devmesh_storage_full"), 1);

  // The http client is told to come back later.
  AcceptedSet accepted;
  accepted.add_range(1, kEntries);
  long next = kEntries + 1;
  Reply busy = post(url, body(next));
  EXPECT_EQ(busy.status, 503);
  EXPECT_EQ(busy.retry_after, "1");
  std::string health;
  EXPECT_EQ(http_get("http://" + listen_on(mport) + "/health", &health, d.path()), 503);
  // The fault left its traces: the 503 counted, the output never reached the stopped server.
  std::string m = scrape_metrics(mport, d.path());
  EXPECT_GE(metric_value(m, "devmesh_http_requests_total", "status=\"503\""), 1);
  EXPECT_GT(metric_value(m, "devmesh_mariadb_connect_errors_total", ""), 0);

  // The store returns: the client's batches (each retried after 503 until 2xx) and the rest of
  // the journal all arrive.
  ASSERT_TRUE(db.start(&err)) << err;
  for (int i = 0; i < 10; i++) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;
    Reply r;
    while ((r = post(url, body(next))).status != 200 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::seconds(r.status == 503 ? 1 : 0) + 100ms);
    ASSERT_EQ(r.status, 200) << e.err();
    accepted.add_range(next, next + kBatch - 1);
    next += kBatch;
  }
  const long long want = static_cast<long long>(accepted.count());
  EXPECT_TRUE(
      wait_until([&] { return db.number("SELECT COUNT(*) FROM log_events") >= want; }, 180s))
      << db.number("SELECT COUNT(*) FROM log_events") << " of " << want;
  e.kill(SIGTERM);
  EXPECT_EQ(e.wait_exit(30s), 0) << e.err();
  ConservationReport report;
  EXPECT_TRUE(store_conserves(db, accepted, {{}, sent_fields}, &report));
  std::cout << "storage full: " << report.describe() << "\n";
}

}  // namespace
