// The multiline filter through the real binary: real Java, Python and Go traces written one line
// per journal entry (journal-fixture's export format into systemd-journal-remote), interleaved
// across processes, and posted line by line to the http input; the flush timeout, max_lines,
// the stream key, a start/continue regex pair, a kill -9 while lines are held (the journald
// cursor never passes them), and every bad option.
#include <gtest/gtest.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <filesystem>
#include <map>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";

// A Spring Boot request failure: the log line, then the exception with a cause.
const std::vector<std::string> kJava = {
    "java.lang.IllegalStateException: Failed to load order 42",
    "\tat com.example.shop.OrderService.load(OrderService.java:87)",
    "\tat com.example.shop.OrderController.show(OrderController.java:31)",
    "\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke("
    "DirectMethodHandleAccessor.java:103)",
    "\tat java.base/java.lang.reflect.Method.invoke(Method.java:580)",
    "Caused by: java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not "
    "available, request timed out after 30000ms.",
    "\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)",
    "\tat com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)",
    "\t... 2 common frames omitted"};
const std::string kJavaLogLine =
    "2025-11-28 19:55:40.431 ERROR 4242 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcher"
    "Servlet] : Servlet.service() for servlet [dispatcherServlet] threw exception";

// A Python traceback with a chained exception.
const std::vector<std::string> kPython = {
    "Traceback (most recent call last):",
    "  File \"/app/worker.py\", line 12, in handle",
    "    value = int(payload[\"count\"])",
    "KeyError: 'count'",
    "",
    "During handling of the above exception, another exception occurred:",
    "",
    "Traceback (most recent call last):",
    "  File \"/app/worker.py\", line 30, in <module>",
    "    handle({})",
    "  File \"/app/worker.py\", line 14, in handle",
    "    raise ValueError(\"bad payload\") from None",
    "ValueError: bad payload"};

// A Go panic as the runtime prints it.
const std::vector<std::string> kGoPanic = {
    "panic: runtime error: index out of range [5] with length 3",
    "",
    "goroutine 1 [running]:",
    "main.lookup(...)",
    "\t/src/app/main.go:14",
    "main.main()",
    "\t/src/app/main.go:9 +0x1d",
    "exit status 2"};

// A Go goroutine dump (SIGQUIT), with registers.
const std::vector<std::string> kGoDump = {
    "SIGQUIT: quit",
    "PC=0x46c2a1 m=0 sigcode=0",
    "",
    "goroutine 1 [chan receive]:",
    "main.main()",
    "\t/src/app/main.go:20 +0x65",
    "",
    "goroutine 18 [IO wait]:",
    "internal/poll.runtime_pollWait(0x7f1d2c1e0f08, 0x72)",
    "\t/usr/local/go/src/runtime/netpoll.go:343 +0x85",
    "net/http.(*conn).serve(0xc0000b4000, {0x6ad7f8, 0xc0000a2db0})",
    "\t/usr/local/go/src/net/http/server.go:2009 +0x3bd",
    "created by net/http.(*Server).Serve in goroutine 1",
    "\t/usr/local/go/src/net/http/server.go:3086 +0x5cb",
    "",
    "rax    0xca",
    "rbx    0x0"};

std::string joined(const std::vector<std::string> &lines) {
  std::string s;
  for (size_t i = 0; i < lines.size(); ++i) s += (i ? "\n" : "") + lines[i];
  return s;
}

struct Entry {
  std::string unit;
  int pid;
  std::string message;
};

// Writes the entries, in order, one journal entry each, into dir/system.journal.
::testing::AssertionResult write_journal(const TempDir &d, const std::string &dir,
                                         const std::vector<Entry> &entries, long first_seq = 1) {
  std::string stream;
  long seq = first_seq;
  for (const auto &e : entries) {
    std::string out, err;
    const int rc = run({kFixture, "--export", "--count", "1", "--start", std::to_string(seq++),
                        "--units", e.unit, "--pid", std::to_string(e.pid), "--message", e.message},
                       d.path(), &out, &err);
    if (rc != 0) return ::testing::AssertionFailure() << "journal-fixture: " << err;
    stream += out;
  }
  write_file(d / "export.txt", stream);
  std::string err;
  const int rc = run({"/bin/sh", "-c",
                      "/lib/systemd/systemd-journal-remote --output=" + dir +
                          "/system.journal - < " + d / "export.txt"},
                     d.path(), nullptr, &err);
  if (rc != 0) return ::testing::AssertionFailure() << "systemd-journal-remote: " << err;
  return ::testing::AssertionSuccess();
}

struct Out {
  std::string service, message, level, event_id;
  std::string pid;
};

std::vector<Out> outputs(const std::string &path) {
  std::vector<Out> out;
  for (const auto &doc : read_ndjson(path)) {
    Out o{str_field(doc, "service"), str_field(doc, "message"), str_field(doc, "level"),
          str_field(doc, "event_id"), ""};
    if (doc.HasMember("meta_json") && doc["meta_json"].IsObject()) {
      const auto &m = doc["meta_json"];
      if (m.HasMember("pid"))
        o.pid = m["pid"].IsString() ? m["pid"].GetString() : std::to_string(m["pid"].GetInt64());
    }
    out.push_back(std::move(o));
  }
  return out;
}

size_t count(const std::vector<Out> &v, const std::string &message) {
  size_t n = 0;
  for (const auto &o : v) n += o.message == message;
  return n;
}

// Interleaves two line lists (a, b, a, b, ...).
std::vector<Entry> interleave(const std::vector<Entry> &a, const std::vector<Entry> &b) {
  std::vector<Entry> out;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    if (i < a.size()) out.push_back(a[i]);
    if (i < b.size()) out.push_back(b[i]);
  }
  return out;
}

std::vector<Entry> entries(const std::string &unit, int pid, const std::vector<std::string> &m) {
  std::vector<Entry> out;
  for (const auto &l : m) out.push_back({unit, pid, l});
  return out;
}

std::string dry_run_errors(const std::string &filter) {
  TempDir d;
  write_file(d / "p.yaml", plugins_head() + "  inputs:\n    - {name: dummy}\n  filters:\n    - " +
                               filter + "\n  outputs:\n    - {name: 'null'}\n");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(30s), 1) << p.err();
  return p.err();
}

// ---- journald --------------------------------------------------------------------------------

TEST(Multiline, EachKindOfTraceFromTheJournalBecomesOneRecordPerProcess) {
  TempDir d;
  std::filesystem::create_directories(d / "journal");
  // Two processes of one unit write a Java and a Python trace at once, line by line; a Go panic
  // and a goroutine dump follow from another unit; each process then logs an ordinary line.
  auto java = entries("shop.service", 100, {kJavaLogLine});
  for (auto &e : entries("shop.service", 100, kJava)) java.push_back(e);
  java.push_back({"shop.service", 100, "request 43 served"});
  auto python = entries("shop.service", 200, kPython);
  python.push_back({"shop.service", 200, "worker idle"});
  auto all = interleave(java, python);
  for (auto &e : entries("api.service", 300, kGoPanic)) all.push_back(e);
  all.push_back({"api.service", 300, "restarting"});
  for (auto &e : entries("api.service", 301, kGoDump)) all.push_back(e);
  ASSERT_TRUE(write_journal(d, d / "journal", all));

  // The goroutine dump is the journal's last entry: only flush_timeout ends it.
  write_file(d / "p.yaml",
             plugins_head("  exit_when_done: true\n") +
                 "  inputs:\n    - {name: journald, path: " + d / "journal" +
                 ", follow: false}\n  filters:\n    - {name: multiline, rules: [java, python, "
                 "go], flush_timeout: 300ms}\n  outputs:\n    - {name: stdout, path: " +
                 d / "out.ndjson" + "}\n");
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_EQ(e.wait_exit(60s), 0) << e.err();
  const auto got = outputs(d / "out.ndjson");

  EXPECT_EQ(count(got, joined(kJava)), 1u);
  EXPECT_EQ(count(got, joined(kPython)), 1u);
  EXPECT_EQ(count(got, joined(kGoPanic)), 1u);
  EXPECT_EQ(count(got, joined(kGoDump)), 1u);
  for (const char *alone : {"request 43 served", "worker idle", "restarting"})
    EXPECT_EQ(count(got, alone), 1u) << alone;
  EXPECT_EQ(count(got, kJavaLogLine), 1u) << "the log line before the exception stays itself";
  EXPECT_EQ(got.size(), 8u) << "nothing else: every trace line is inside its record";
  for (const auto &o : got) {
    if (o.message == joined(kJava)) {
      EXPECT_EQ(o.service, "shop.service");
      EXPECT_EQ(o.pid, "100");
    }
    if (o.message == joined(kPython)) {
      EXPECT_EQ(o.pid, "200");
    }
    if (o.message == joined(kGoDump)) {
      EXPECT_EQ(o.service, "api.service");
    }
  }
}

// kill -9 while lines are held: the cursor has not passed them (their submits are held until
// the joined record is delivered), so the next run reads them again and joins them.
TEST(Multiline, HeldLinesSurviveAKillNineBecauseTheCursorNeverPassesThem) {
  TempDir d;
  std::filesystem::create_directories(d / "journal");
  ASSERT_TRUE(write_journal(d, d / "journal", {{"app.service", 10, "ordinary before"}}));
  const int port = free_port();
  auto yaml = [&](const std::string &timeout) {
    return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
           "  inputs:\n    - {name: journald, path: " + d / "journal" +
           ", state_file: " + d / "state.json" +
           ", checkpoint_interval: 50ms}\n  filters:\n    - {name: "
           "multiline, rules: [java], flush_timeout: " +
           timeout + "}\n  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n";
  };
  std::string metrics;
  auto scrape = [&] {
    http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d.path());
    return metrics;
  };
  {
    Devmesh e(d, "first", yaml("1h"));
    ASSERT_TRUE(
        wait_until([&] { return count(outputs(d / "out.ndjson"), "ordinary before") == 1; }, 30s))
        << e->err();
    // The trace (held: flush_timeout is an hour), then a line of another process, which passes.
    ASSERT_TRUE(write_journal(d, d / "journal", entries("app.service", 11, kJava), 2));
    ASSERT_TRUE(wait_until(
        [&] { return find_metric(scrape(), "devmesh_multiline_streams_open", "") == 1; }, 30s))
        << metrics << e->err();
    ASSERT_TRUE(write_journal(d, d / "journal", {{"app.service", 12, "ordinary after"}},
                              2 + static_cast<long>(kJava.size())));
    ASSERT_TRUE(
        wait_until([&] { return count(outputs(d / "out.ndjson"), "ordinary after") == 1; }, 30s))
        << e->err();
    ASSERT_TRUE(wait_settled(port, d.path())) << e->err();
    EXPECT_EQ(metric_value(scrape(), "devmesh_multiline_lines_joined_total", ""), 0);
    EXPECT_EQ(count(outputs(d / "out.ndjson"), joined(kJava)), 0u);
    e->kill(SIGKILL);
    ASSERT_EQ(e->wait_exit(10s), 128 + SIGKILL);
  }
  Devmesh e(d, "second", yaml("100ms"));
  ASSERT_TRUE(wait_until([&] { return count(outputs(d / "out.ndjson"), joined(kJava)) == 1; }, 30s))
      << e->err();
  ASSERT_TRUE(wait_settled(port, d.path())) << e->err();
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  const auto got = outputs(d / "out.ndjson");
  EXPECT_EQ(count(got, joined(kJava)), 1u);
  EXPECT_EQ(count(got, "ordinary before"), 1u) << "the cursor had passed it: not read again";
  for (const auto &l : kJava) EXPECT_EQ(count(got, l), 0u) << "no line on its own: " << l;
}

// ---- http -------------------------------------------------------------------------------------

TEST(Multiline, TracesPostedLineByLineToTheHttpInputJoinPerServiceAndPid) {
  TempDir d;
  const int port = free_port(), metrics_port = free_port();
  Devmesh e(d, "engine",
            plugins_head("  http_listen: 127.0.0.1:" + std::to_string(metrics_port) + "\n") +
                "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(port) +
                "'}\n  filters:\n    - {name: multiline, rules: [python, java]}\n"
                "  outputs:\n    - {name: stdout, path: " +
                d / "out.ndjson" + "}\n");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  ASSERT_TRUE(wait_until([&] { return libcurl_post(url, "{\"logs\":[]}").status == 200; }, 20s))
      << e->err();
  auto post = [&](const std::string &service, int pid, const std::string &line) {
    rapidjson::StringBuffer b;
    rapidjson::Writer<rapidjson::StringBuffer> w(b);
    w.StartObject();
    w.Key("logs");
    w.StartArray();
    w.StartObject();
    w.Key("service");
    w.String(service.c_str());
    w.Key("host");
    w.String("web-1");
    w.Key("message");
    w.String(line.c_str(), static_cast<rapidjson::SizeType>(line.size()));
    w.Key("meta_json");  // the prototype's name for meta
    w.StartObject();
    w.Key("pid");
    w.Int(pid);
    w.EndObject();
    w.EndObject();
    w.EndArray();
    w.EndObject();
    return libcurl_post(url, b.GetString()).status;
  };
  for (const auto &en : interleave(entries("worker", 7, kPython), entries("worker", 8, kJava)))
    ASSERT_EQ(post(en.unit, en.pid, en.message), 200);
  ASSERT_EQ(post("worker", 7, "next job"), 200);
  ASSERT_EQ(post("worker", 8, "next request"), 200);
  std::string metrics;
  ASSERT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics", &metrics,
                 d.path());
        return find_metric(metrics, "devmesh_multiline_records_joined_total", "") == 2;
      },
      30s))
      << metrics << e->err();
  EXPECT_EQ(metric_value(metrics, "devmesh_multiline_lines_joined_total", ""),
            double(kPython.size() + kJava.size()));
  EXPECT_EQ(metric_value(metrics, "devmesh_multiline_flushes_total", "reason=\"next_line\""), 2);
  ASSERT_TRUE(wait_settled(metrics_port, d.path())) << e->err();
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  const auto got = outputs(d / "out.ndjson");
  EXPECT_EQ(count(got, joined(kPython)), 1u);
  EXPECT_EQ(count(got, joined(kJava)), 1u);
  EXPECT_EQ(got.size(), 4u);
}

// SIGTERM while a record is held: the filter emits it at stop and the engine delivers it.
TEST(Multiline, AHeldRecordIsEmittedAndDeliveredAtAGracefulStop) {
  TempDir d;
  const int port = free_port(), metrics_port = free_port();
  Devmesh e(d, "engine",
            plugins_head("  http_listen: 127.0.0.1:" + std::to_string(metrics_port) + "\n") +
                "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(port) +
                "'}\n  filters:\n    - {name: multiline, rules: [go], flush_timeout: 1h}\n"
                "  outputs:\n    - {name: stdout, path: " +
                d / "out.ndjson" + "}\n");
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  ASSERT_TRUE(wait_until([&] { return libcurl_post(url, "{\"logs\":[]}").status == 200; }, 20s))
      << e->err();
  ASSERT_EQ(libcurl_post(url, R"({"logs":[{"service":"api","message":"panic: boom"},)"
                              R"({"service":"api","message":""},)"
                              R"({"service":"api","message":"goroutine 1 [running]:"}]})")
                .status,
            200);
  std::string metrics;
  ASSERT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics", &metrics,
                 d.path());
        return find_metric(metrics, "devmesh_multiline_streams_open", "") == 1;
      },
      30s))
      << metrics << e->err();
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  const auto got = outputs(d / "out.ndjson");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message, "panic: boom\n\ngoroutine 1 [running]:");
}

// ---- options ----------------------------------------------------------------------------------

// A dummy input sending `lines` in turn, once each, through `filter`; engine kept running with
// /metrics until `metric` reads `want`.
std::vector<Out> run_dummy(const std::vector<std::string> &lines, const std::string &filter,
                           const std::string &metric, const std::string &label, double want,
                           const std::string &input_extra = "") {
  TempDir d;
  const int port = free_port();
  std::string msgs = "[";
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string q;
    for (char c : lines[i]) q += c == '\'' ? std::string("''") : std::string(1, c);
    msgs += (i ? ", '" : "'") + q + "'";
  }
  msgs += "]";
  Devmesh e(d, "engine",
            plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                "  inputs:\n    - {name: dummy, rate: 0, count: " + std::to_string(lines.size()) +
                ", messages: " + msgs + input_extra + "}\n  filters:\n    - " + filter +
                "\n  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n");
  std::string metrics;
  EXPECT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d.path());
        return find_metric(metrics, metric, label) == want;
      },
      30s))
      << metric << " " << label << ":\n"
      << metrics << e->err();
  EXPECT_TRUE(wait_settled(port, d.path())) << e->err();
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
  return outputs(d / "out.ndjson");
}

TEST(Multiline, ARecordWhoseStreamGoesQuietIsEmittedAtTheFlushTimeout) {
  // The engine keeps running (no exit, no stop): only the timeout can emit it.
  auto got = run_dummy(kJava, "{name: multiline, rules: [java], flush_timeout: 200ms}",
                       "devmesh_multiline_flushes_total", "reason=\"timeout\"", 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message, joined(kJava));
}

TEST(Multiline, MaxLinesEndsARecordAndLaterLinesPassOnTheirOwn) {
  // Three lines, then two frames on their own; "Caused by: ...Exception:" starts a record of its
  // own, which max_lines ends again, and the last line passes alone.
  auto got = run_dummy(kJava, "{name: multiline, rules: [java], max_lines: 3}",
                       "devmesh_multiline_flushes_total", "reason=\"max_lines\"", 2);
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(count(got, joined({kJava[0], kJava[1], kJava[2]})), 1u);
  EXPECT_EQ(count(got, kJava[3]), 1u);
  EXPECT_EQ(count(got, kJava[4]), 1u);
  EXPECT_EQ(count(got, joined({kJava[5], kJava[6], kJava[7]})), 1u);
  EXPECT_EQ(count(got, kJava[8]), 1u);
}

TEST(Multiline, MaxBytesEndsARecordBeforeALineThatWouldPassIt) {
  // 37 + 3 * (1 + 300) = 940 bytes; a fourth frame would make 1241, past max_bytes (1 KiB).
  std::vector<std::string> lines = {"java.lang.IllegalStateException: big"};
  for (int i = 1; i <= 5; ++i)
    lines.push_back("\tat " + std::string(288, static_cast<char>('a' + i)) + "(X.java)");
  ASSERT_EQ(lines[1].size(), 300u);
  auto got = run_dummy(lines, "{name: multiline, rules: [java], max_bytes: 1KiB}",
                       "devmesh_multiline_flushes_total", "reason=\"max_bytes\"", 1);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(count(got, joined({lines[0], lines[1], lines[2], lines[3]})), 1u);
  EXPECT_EQ(count(got, lines[4]), 1u);
  EXPECT_EQ(count(got, lines[5]), 1u);
}

TEST(Multiline, AStartAndContinueRegexPairJoinsLinesOfAnyShape) {
  const std::vector<std::string> lines = {"BEGIN report 1", "| cpu 93%", "| disk 71%", "unrelated",
                                          "BEGIN report 2", "| mem 12%", "END"};
  auto got = run_dummy(lines,
                       "{name: multiline, rules: [regex], start_regex: '^BEGIN ', continue_regex: "
                       "'^(\\||END$)'}",
                       "devmesh_multiline_records_joined_total", "", 2);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(count(got, "BEGIN report 1\n| cpu 93%\n| disk 71%"), 1u);
  EXPECT_EQ(count(got, "unrelated"), 1u);
  EXPECT_EQ(count(got, "BEGIN report 2\n| mem 12%\nEND"), 1u);
}

TEST(Multiline, TheKeyOptionNamesTheStreams) {
  // One service writes two traces at once, told apart by a meta "thread"; dummy's records
  // alternate between two meta values through its services (the key's first field) instead.
  const std::vector<std::string> lines = {
      "Traceback (most recent call last):",   "Traceback (most recent call last):",
      "  File \"a.py\", line 1, in <module>", "  File \"b.py\", line 2, in <module>",
      "NameError: name 'a' is not defined",   "NameError: name 'b' is not defined"};
  auto got =
      run_dummy(lines, "{name: multiline, rules: [python], key: [service, host]}",
                "devmesh_multiline_records_joined_total", "", 2, ", services: [svc-a, svc-b]");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(count(got,
                  "Traceback (most recent call last):\n  File \"a.py\", line 1, in "
                  "<module>\nNameError: name 'a' is not defined"),
            1u);
  EXPECT_EQ(count(got,
                  "Traceback (most recent call last):\n  File \"b.py\", line 2, in "
                  "<module>\nNameError: name 'b' is not defined"),
            1u);
  // The same lines with a key that puts both services in one stream: they no longer pair up
  // (the second start line is read as the first traceback's last line, the next line ends it).
  got = run_dummy(lines, "{name: multiline, rules: [python], key: [source]}",
                  "devmesh_multiline_flushes_total", "reason=\"next_line\"", 1,
                  ", services: [svc-a, svc-b]");
  EXPECT_EQ(got.size(), 5u);
}

// ---- bad options ------------------------------------------------------------------------------

TEST(MultilineConfig, BadRulesAndRegexesAreNamed) {
  auto err = dry_run_errors("{name: multiline, rules: [regex]}");
  EXPECT_NE(err.find("rules: rule regex needs start_regex and continue_regex"), std::string::npos)
      << err;
  err = dry_run_errors(
      "{name: multiline, rules: [regex], start_regex: '(unclosed', continue_regex: '^x'}");
  EXPECT_NE(err.find("start_regex: invalid regex at offset"), std::string::npos) << err;
  err =
      dry_run_errors("{name: multiline, rules: [regex], start_regex: '^x', continue_regex: '[a-'}");
  EXPECT_NE(err.find("continue_regex: invalid regex at offset"), std::string::npos) << err;
  err = dry_run_errors("{name: multiline, rules: [java], start_regex: '^x'}");
  EXPECT_NE(err.find("start_regex: is set but rules does not list regex"), std::string::npos)
      << err;
  err = dry_run_errors("{name: multiline, rules: [java, ruby]}");
  EXPECT_NE(err.find("rules[1]: must be one of: java, python, go, regex"), std::string::npos)
      << err;
  err = dry_run_errors("{name: multiline, rules: [go], key: [service, '']}");
  EXPECT_NE(err.find("key[1]: empty field name"), std::string::npos) << err;
  err = dry_run_errors("{name: multiline, rules: [go], max_lines: 1, flush_timeout: 0s}");
  EXPECT_NE(err.find("max_lines"), std::string::npos) << err;
  EXPECT_NE(err.find("flush_timeout"), std::string::npos) << err;
}

}  // namespace
