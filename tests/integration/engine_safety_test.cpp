// The engine's own safety through the real binary: a plugin that crashes is named before the
// process dies of the signal, a plugin call that blocks is reported by the watchdog (log,
// /health, metric, and the systemd watchdog goes unfed), an unknown filter verdict is a plugin
// error, a full disk pauses the inputs like storage.max_size and resumes them when space
// returns, and a hostile YAML file (billion laughs, deep nesting) is refused at once.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/un.h>

#include <future>
#include <regex>
#include <set>

#include "http_support.h"
#include "notify_socket.h"
#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string head(int health_port, const std::string &extra = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR
         "]\n  http_listen: 127.0.0.1:" +
         std::to_string(health_port) + "\n" + extra + "pipeline:\n";
}

std::string http_input(int port, const std::string &tag, const std::string &extra = "") {
  return "  inputs:\n    - {name: http, tag: " + tag +
         ", listen: 127.0.0.1:" + std::to_string(port) + extra + "}\n";
}

std::string url(int port, const std::string &path = "/ingest/logs") {
  return "http://127.0.0.1:" + std::to_string(port) + path;
}

// A JSON body of records whose messages are the given strings.
std::string body_of(const std::vector<std::string> &messages) {
  std::string b = "[";
  for (size_t i = 0; i < messages.size(); i++)
    b += std::string(i ? "," : "") + "{\"service\":\"s\",\"host\":\"h\",\"level\":\"INFO\"," +
         "\"message\":\"" + messages[i] + "\",\"meta_json\":{\"seq\":\"" + std::to_string(i) +
         "\"}}";
  return b + "]";
}

HttpResult post(const TempDir &d, int port, const std::vector<std::string> &messages,
                const std::string &name = "body.json") {
  write_file(d / name, body_of(messages));
  return curl_post(d, url(port), d / name);
}

double metric(const TempDir &d, int port, const std::string &name, const std::string &labels = "") {
  std::string body;
  http_get(url(port, "/metrics"), &body, d.path());
  return metric_value(body, name, labels);
}

bool log_has(Devmesh &e, const std::string &text) {
  return e->err().find(text) != std::string::npos;
}

// Crashes below dump no core into the test's directory (core_pattern may be a plain file).
void no_core_files() {
  rlimit r{0, 0};
  setrlimit(RLIMIT_CORE, &r);
}

}  // namespace

// ---- unknown verdicts ----------------------------------------------------------------------

TEST(EngineSafety, AnUnknownFilterVerdictIsAPluginErrorAndItsBatchPassesUnchanged) {
  TempDir d;
  const int hport = free_port(), port = free_port();
  Devmesh e(d, "verdict",
            head(hport) + http_input(port, "app.v") +
                "  filters:\n    - {name: misbehave, alias: wrong, match: '*', verdict_on: ODD, "
                "verdict: 9, drop_on: DROPME}\n"
                "  outputs:\n    - {name: flaky, match: '*', path: " +
                d / "out.txt" + "}\n");
  ASSERT_TRUE(e.ready(hport, d)) << e->err();
  // One batch: a record the filter drops, one with verdict 9, one untouched. A verdict outside
  // the ABI makes every verdict of the batch suspect: nothing of it is dropped.
  auto r = post(d, port, {"DROPME first", "ODD second", "plain third"});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= 3; }, 30s)) << e->err();
  ASSERT_TRUE(wait_until(
      [&] {
        return metric(d, hport, "devmesh_filter_errors_total",
                      "instance=\"wrong\",plugin=\"misbehave\",kind=\"filter\",reason=\"bad_"
                      "verdict\"") == 1;
      },
      30s));
  EXPECT_EQ(read_lines(d / "out.txt").size(), 3u);
  EXPECT_TRUE(log_has(e, "[wrong] filter returned the unknown verdict 9 for record 1 of 3"))
      << e->err();
  EXPECT_EQ(metric(d, hport, "devmesh_records_dropped_total", "instance=\"wrong\""), 0);

  // A batch without the bad verdict is filtered as usual.
  r = post(d, port, {"DROPME fourth", "plain fifth"});
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.txt").size() >= 4; }, 30s));
  EXPECT_TRUE(wait_until(
      [&] { return metric(d, hport, "devmesh_records_dropped_total", "instance=\"wrong\"") == 1; },
      30s));
  EXPECT_EQ(read_lines(d / "out.txt").size(), 4u);
}

// ---- crashes -------------------------------------------------------------------------------

namespace {

// Sends a record that makes the misbehave filter crash (`option: TRIGGER`); returns the
// engine's exit code (128 + signal) and leaves its stderr in *err.
int crash_with(const std::string &option, std::string *err) {
  no_core_files();
  TempDir d;
  const int hport = free_port(), port = free_port();
  Devmesh e(d, "crash",
            head(hport) + http_input(port, "app.crash") +
                "  filters:\n    - {name: misbehave, alias: crashy, match: 'app.*', " + option +
                ": TRIGGER}\n  outputs:\n    - {name: 'null', match: '*'}\n");
  if (!e.ready(hport, d)) {
    *err = e->err();
    return -2;
  }
  EXPECT_EQ(post(d, port, {"harmless"}).status, 200);
  post(d, port, {"first", "the TRIGGER record"});  // no answer: the engine is gone
  int code = e->wait_exit(30s);
  *err = e->err();
  return code;
}

}  // namespace

TEST(EngineSafety, ACrashingFilterIsNamedWithItsTagAndTheEngineDiesOfTheSameSignal) {
  std::string err;
  int code = crash_with("crash_on", &err);
  EXPECT_EQ(code, 128 + SIGSEGV) << err;
  EXPECT_NE(err.find("error [crashy] fatal signal SIGSEGV (address 0x0) in plugin instance "
                     "'crashy', callback filter, batch tag 'app.crash', on the loop thread"),
            std::string::npos)
      << err;
}

TEST(EngineSafety, AStackOverflowInAFilterIsReportedFromTheAlternateStack) {
  std::string err;
  int code = crash_with("overflow_on", &err);
  EXPECT_EQ(code, 128 + SIGSEGV) << err;
  EXPECT_NE(err.find("fatal signal SIGSEGV"), std::string::npos) << err;
  EXPECT_NE(err.find("in plugin instance 'crashy', callback filter, batch tag 'app.crash'"),
            std::string::npos)
      << err;
}

TEST(EngineSafety, AnAbortingFilterIsNamedAndTheEngineDiesOfSigabrt) {
  std::string err;
  int code = crash_with("abort_on", &err);
  EXPECT_EQ(code, 128 + SIGABRT) << err;
  EXPECT_NE(err.find("fatal signal SIGABRT in plugin instance 'crashy', callback filter, batch "
                     "tag 'app.crash'"),
            std::string::npos)
      << err;
}

// ---- stalls --------------------------------------------------------------------------------

TEST(EngineSafety, AFilterThatBlocksTheLoopIsLoggedByTheWatchdogAndSoIsItsReturn) {
  TempDir d;
  const int hport = free_port(), port = free_port();
  Devmesh e(d, "stall",
            head(hport, "  watchdog: 1s\n") + http_input(port, "app.slow") +
                "  filters:\n    - {name: misbehave, alias: sleepy, match: '*', sleep_on: NAP, "
                "sleep: 4s}\n  outputs:\n    - {name: 'null', match: '*'}\n");
  ASSERT_TRUE(e.ready(hport, d)) << e->err();
  auto answer =
      std::async(std::launch::async, [&] { return libcurl_post(url(port), body_of({"NAP now"})); });
  const std::string stalled = "[sleepy] watchdog: the filter callback has run for";
  ASSERT_TRUE(wait_until([&] { return log_has(e, stalled); }, 30s)) << e->err();
  EXPECT_TRUE(log_has(e, "(bound 1.0 s, tag 'app.slow') and holds the loop thread")) << e->err();
  const std::string back = "[sleepy] watchdog: the filter callback returned after";
  ASSERT_TRUE(wait_until([&] { return log_has(e, back); }, 30s)) << e->err();
  std::string err = e->err();
  EXPECT_LT(err.find(stalled), err.find(back));
  EXPECT_EQ(answer.get().status, 200);
  EXPECT_EQ(metric(d, hport, "devmesh_watchdog_stalls_total"), 1);
  // Logged once per stall, not once per watchdog tick.
  size_t lines = 0;
  for (size_t at = err.find(stalled); at != std::string::npos; at = err.find(stalled, at + 1))
    lines++;
  EXPECT_EQ(lines, 1u) << err;
}

TEST(EngineSafety, AFlushStuckOnAWorkerMakesHealthUnhealthyUntilItReturns) {
  TempDir d;
  const int hport = free_port(), port = free_port();
  Devmesh e(d, "slowflush",
            head(hport, "  watchdog_flush: 1s\n") + http_input(port, "app.db") +
                "  outputs:\n    - {name: flaky, alias: slowdb, match: '*', delay: 8s, path: " +
                d / "out.txt" + "}\n");
  ASSERT_TRUE(e.ready(hport, d)) << e->err();
  ASSERT_EQ(post(d, port, {"one"}).status, 200);
  ASSERT_TRUE(wait_until(
      [&] { return log_has(e, "[slowdb] watchdog: the flush callback has run for"); }, 30s))
      << e->err();
  // The loop is free: /health answers, and names the stuck call.
  std::string body;
  int status = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        status = http_get(url(hport, "/health"), &body, d.path());
        return body.find("\"stalled\"") != std::string::npos || log_has(e, "returned after");
      },
      30s));
  EXPECT_EQ(status, 503) << body;
  EXPECT_NE(body.find("\"stalled\":{\"instance\":\"slowdb\",\"callback\":\"flush\",\"thread\":"
                      "\"worker\",\"seconds\":"),
            std::string::npos)
      << body;
  ASSERT_TRUE(
      wait_until([&] { return log_has(e, "[slowdb] watchdog: the flush callback returned"); }, 30s))
      << e->err();
  EXPECT_TRUE(wait_until(
      [&] {
        return http_get(url(hport, "/health"), &body, d.path()) == 200 &&
               body.find("stalled") == std::string::npos;
      },
      30s))
      << body;
}

TEST(EngineSafety, TheSystemdWatchdogIsFedWhileTheLoopRunsAndNotWhileAPluginHoldsIt) {
  TempDir d;
  NotifySocket sd(d / "notify.sock");
  ASSERT_TRUE(sd.bound());
  const int hport = free_port(), port = free_port();
  const std::string yaml =
      head(hport, "  watchdog: 1s\n") + http_input(port, "app.sd") +
      "  filters:\n    - {name: misbehave, alias: sleepy, match: '*', "
      "sleep_on: NAP, sleep: 5s}\n  outputs:\n    - {name: 'null', match: '*'}\n";
  write_file(d / "sd.yaml", yaml);
  Process p({DEVMESH_BIN, "-c", d / "sd.yaml"}, d.path(), "sd",
            {"NOTIFY_SOCKET=" + d / "notify.sock", "WATCHDOG_USEC=1000000"});
  ASSERT_TRUE(wait_until([&] { return sd.count("READY=1") == 1; }, 30s)) << p.err();
  // periodic: more than one
  ASSERT_TRUE(wait_until([&] { return sd.count("WATCHDOG=1") >= 2; }, 30s)) << p.err();

  auto answer =
      std::async(std::launch::async, [&] { return libcurl_post(url(port), body_of({"NAP"})); });
  const std::string stalled = "[sleepy] watchdog: the filter callback has run for";
  const std::string back = "[sleepy] watchdog: the filter callback returned after";
  ASSERT_TRUE(wait_until([&] { return p.err().find(stalled) != std::string::npos; }, 30s))
      << p.err();
  // Keep-alives go out every 0.5 s and the stall is reported after 1 s of it: the last one
  // before the stall has been received by now. From here until the call returned, none.
  const size_t at_stall = sd.count("WATCHDOG=1");
  size_t before_return = at_stall;
  ASSERT_TRUE(wait_until(
      [&] {
        const size_t n = sd.count("WATCHDOG=1");  // read before the log: sent before the return
        if (p.err().find(back) != std::string::npos) return true;
        before_return = n;
        return false;
      },
      30s))
      << p.err();
  EXPECT_EQ(before_return, at_stall) << "WATCHDOG=1 sent while the loop was blocked";
  EXPECT_TRUE(wait_until([&] { return sd.count("WATCHDOG=1") > before_return; }, 30s))
      << "not fed again after the stall";
  EXPECT_EQ(answer.get().status, 200);
  p.kill(SIGTERM);
  EXPECT_EQ(p.wait_exit(30s), 0) << p.err();
}

// ---- a full disk ---------------------------------------------------------------------------

namespace {

// A small tmpfs of our own (the test runs as root); unmounted at the end.
class SmallDisk {
 public:
  SmallDisk(const std::string &dir, const std::string &size) : dir_(dir) {
    std::filesystem::create_directories(dir);
    std::string opts = "size=" + size;
    mounted_ = mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
    if (!mounted_) error_ = strerror(errno);
  }
  ~SmallDisk() {
    if (mounted_) umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string &error() const { return error_; }

 private:
  std::string dir_, error_;
  bool mounted_ = false;
};

}  // namespace

TEST(EngineSafety, AFullDiskPausesInputsWith503AndResumesWhenSpaceReturnsLosingNothing) {
  TempDir d;
  SmallDisk disk(d / "disk", "1m");
  // A real full disk, not a simulated one: this test needs root (mount). Fail, never skip.
  ASSERT_TRUE(disk.mounted()) << "cannot mount a 1 MiB tmpfs (" << disk.error()
                              << "): run this test as root";
  write_file(d / "disk/filler", std::string(600 << 10, 'f'));  // removed later: space returns

  std::atomic<bool> open{false};
  TestReceiver rx([&](const TestReceiver::Request &, int) {
    TestReceiver::Response r;
    if (!open) r.status = 503;
    return r;
  });
  const int hport = free_port(), port = free_port();
  Devmesh e(d, "full",
            head(hport, "  storage: {path: " + d / "disk/store" +
                            ", sync: always, segment_size: 64KiB}\n") +
                http_input(port, "app.disk", ", ack: durable") +
                "  outputs:\n    - {name: http_forward, alias: fwd, match: '*', url: " + rx.url() +
                ", retry_wait: 100ms, retry_max_wait: 500ms}\n");
  ASSERT_TRUE(e.ready(hport, d)) << e->err();

  // Numbered records of 1 KB, 20 a request, sent one request at a time from a thread: the
  // request whose block met the full disk waits for delivery (its records are in memory).
  std::mutex mu;
  std::set<long> accepted;
  std::vector<int> statuses;
  std::string last_body;
  std::atomic<bool> stop_sending{false};
  auto sender = std::async(std::launch::async, [&] {
    for (long req = 0; req < 200 && !stop_sending; req++) {
      std::vector<std::string> msgs;
      for (long i = 0; i < 20; i++)
        msgs.push_back("r" + std::to_string(req * 20 + i) + " " + std::string(1000, 'x'));
      // libcurl in this process: curl runs of two threads would share their output files.
      HttpResult r = libcurl_post(url(port), body_of(msgs));
      std::lock_guard<std::mutex> lk(mu);
      statuses.push_back(r.status);
      last_body = r.body;
      if (r.status == 200)
        for (long i = 0; i < 20; i++) accepted.insert(req * 20 + i);
      if (r.status != 200) return;  // 503 (full), or no answer in 30 s
    }
  });
  // However the test ends (declared after the sender: runs before its future waits): the sender
  // stops and the receiver takes everything, so the engine can be stopped and the mount released.
  struct Release {
    std::atomic<bool> &stop, &open;
    ~Release() { stop = open = true; }
  } release{stop_sending, open};
  ASSERT_TRUE(wait_until([&] { return metric(d, hport, "devmesh_storage_full") == 1; }, 60s))
      << e->err() << [&] {
           std::lock_guard<std::mutex> lk(mu);
           std::string r = "statuses:";
           for (int st : statuses) r += " " + std::to_string(st);
           return r + "; last answer: " + last_body;
         }();
  stop_sending = true;

  // Full: a new request is refused at once with 503 and Retry-After; /health says why.
  auto refused = post(d, port, {"r-refused"}, "refused");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_FALSE(refused.header("Retry-After").empty()) << refused.headers;
  std::string health;
  EXPECT_EQ(http_get(url(hport, "/health"), &health, d.path()), 503);
  EXPECT_NE(health.find("\"full\":true,\"reason\":\"cannot write segments in"), std::string::npos)
      << health;
  EXPECT_NE(health.find("No space left on device"), std::string::npos) << health;
  EXPECT_GE(metric(d, hport, "devmesh_storage_records_unstored_total"), 20);
  EXPECT_GE(metric(d, hport, "devmesh_storage_write_errors_total"), 1);
  EXPECT_GE(metric(d, hport, "devmesh_input_paused", "instance=\"http.0\""), 1);

  // Space returns (the receiver still refuses, so nothing was freed by delivery): the write
  // is retried, the inputs resume, and a durable request is stored again.
  std::filesystem::remove(d / "disk/filler");
  ASSERT_TRUE(wait_until([&] { return metric(d, hport, "devmesh_storage_full") == 0; }, 30s))
      << e->err();
  EXPECT_TRUE(log_has(e, "[storage] segment writes work again")) << e->err();
  auto again = post(d, port, {"r100000 after the disk had room again"}, "again");
  EXPECT_EQ(again.status, 200) << again.body;
  if (again.status == 200) accepted.insert(100000);

  // Deliver everything: every record that got a 200 arrives.
  open = true;
  sender.get();
  std::set<long> arrived;
  std::regex seq("\"message\":\"r([0-9]+) ");
  ASSERT_TRUE(wait_until(
      [&] {
        arrived.clear();
        for (auto &req : rx.requests())
          for (std::sregex_iterator it(req.body.begin(), req.body.end(), seq), end; it != end; ++it)
            arrived.insert(std::stol((*it)[1]));
        return std::includes(arrived.begin(), arrived.end(), accepted.begin(), accepted.end());
      },
      60s))
      << "accepted " << accepted.size() << ", arrived " << arrived.size();
  EXPECT_GT(accepted.size(), 20u);
}

// ---- hostile YAML --------------------------------------------------------------------------

TEST(EngineSafety, ABillionLaughsConfigIsRefusedByDryRunAtOnceWithItsLocation) {
  TempDir d;
  std::string y = "service:\n  log_level: info\n  plugins_dir: &a0 [l, l, l, l, l, l, l, l, l]\n";
  y += "pipeline:\n  inputs:\n    - name: dummy\n      tag: x\n";
  for (int i = 1; i <= 9; i++) {
    y += "      a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 9; k++) y += (k ? ", *a" : "*a") + std::to_string(i - 1);
    y += "]\n";
  }
  write_file(d / "bomb.yaml", y);
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "bomb.yaml"}, d.path(), "bomb");
  int code = p.wait_exit(30s);  // unbounded before: 9^9 nodes walked
  if (code == -1) p.kill(SIGKILL);
  EXPECT_EQ(code, 1) << p.err();
  EXPECT_TRUE(std::regex_search(p.err(), std::regex("bomb\\.yaml:[0-9]+:[0-9]+: .*: the document "
                                                    "expands to more than 200000 nodes")))
      << p.err();
}

TEST(EngineSafety, DeeplyNestedYamlIsRefusedWithoutOverflowingTheStack) {
  TempDir d;
  for (size_t depth : {300u, 1000000u}) {
    write_file(d / "deep.yaml",
               "pipeline:\n  inputs: " + std::string(depth, '[') + std::string(depth, ']') + "\n");
    Process p({DEVMESH_BIN, "--dry-run", "-c", d / "deep.yaml"}, d.path(), "deep");
    EXPECT_EQ(p.wait_exit(30s), 1) << depth << ": " << p.err();
    EXPECT_NE(p.err().find("nested deeper than"), std::string::npos) << p.err();
  }
}
