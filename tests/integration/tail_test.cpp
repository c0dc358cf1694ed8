// The tail input through the real binary: files by glob, new files as they appear, rotation by
// rename and by truncation, the state file across restarts (and its version), read_from,
// max_line_size, invalid UTF-8, backpressure, no wake-up while idle, and descriptors released
// at reload and stop. Records go to the stdout output's NDJSON file.
#include <gtest/gtest.h>

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// An engine with one tail input (its options as a flow-map tail) and the stdout output writing
// out.ndjson, serving /metrics on `port`.
std::string tail_yaml(const TempDir &d, int port, const std::string &tail_options,
                      const std::string &outputs = "") {
  return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
         "  inputs:\n    - {name: tail" + tail_options + "}\n  outputs:\n" +
         (outputs.empty() ? "    - {name: stdout, path: " + d / "out.ndjson" + "}\n" : outputs);
}

void append(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::app | std::ios::binary);
  f << text;
}

std::string numbered(const std::string &prefix, int from, int to) {
  std::string s;
  for (int i = from; i <= to; ++i) s += prefix + " " + std::to_string(i) + "\n";
  return s;
}

double tail_metric(int port, const TempDir &d, const std::string &name,
                   const std::string &labels = "") {
  std::string m;
  http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &m, d.path());
  return metric_value(m, "devmesh_" + name, labels);
}

// The messages of out.ndjson, in order.
std::vector<std::string> messages(const TempDir &d) {
  std::vector<std::string> out;
  for (auto &doc : read_ndjson(d / "out.ndjson")) out.push_back(str_field(doc, "message"));
  return out;
}

bool wait_messages(const TempDir &d, size_t n, std::chrono::milliseconds deadline = 30s) {
  return wait_until([&] { return messages(d).size() >= n; }, deadline);
}

// Descriptors of process pid: how many are inotify instances, and how many open files under dir.
struct Fds {
  int inotify = 0, files = 0;
};
Fds fds_of(pid_t pid, const std::string &dir) {
  Fds f;
  const std::string base = "/proc/" + std::to_string(pid) + "/fd";
  for (const auto &e : std::filesystem::directory_iterator(base)) {
    std::error_code ec;
    const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
    if (target == "anon_inode:inotify") ++f.inotify;
    if (target.rfind(dir + "/logs/", 0) == 0) ++f.files;
  }
  return f;
}

class Tail : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(d_ / "logs");
    port_ = free_port();
  }
  std::string logs(const std::string &name) const { return d_ / ("logs/" + name); }
  std::unique_ptr<Devmesh> start(const std::string &tail_options, const std::string &outputs = "",
                                 const std::string &name = "engine") {
    auto e = std::make_unique<Devmesh>(d_, name, tail_yaml(d_, port_, tail_options, outputs));
    EXPECT_TRUE(e->ready(port_, d_)) << (*e)->err();
    return e;
  }
  double metric(const std::string &name, const std::string &labels = "") {
    return tail_metric(port_, d_, name, labels);
  }
  TempDir d_;
  int port_ = 0;
};

TEST_F(Tail, EveryLineOfAMatchedFileIsReadWithItsPathInMetaAndItsNameAsService) {
  append(logs("web-app.log"), numbered("hello", 1, 3));
  append(logs("other.txt"), "not matched\n");
  auto e = start(", path: " + logs("*.log"));
  ASSERT_TRUE(wait_messages(d_, 3)) << (*e)->err();
  const auto docs = read_ndjson(d_ / "out.ndjson");
  ASSERT_EQ(docs.size(), 3u);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(str_field(docs[i], "message"), "hello " + std::to_string(i + 1));
    EXPECT_EQ(str_field(docs[i], "service"), "web-app");
    EXPECT_EQ(str_field(docs[i], "source"), "tail");
    EXPECT_EQ(str_field(docs[i], "host"), host);
    EXPECT_EQ(str_field(docs[i]["meta_json"], "path"), logs("web-app.log"));
  }
  EXPECT_EQ(metric("tail_lines_read_total"), 3);
  EXPECT_EQ(metric("tail_files_open"), 1);
}

TEST_F(Tail, ServiceAndHostOptionsReplaceTheFileNameAndTheHostname) {
  append(logs("a.log"), "x\n");
  auto e = start(", path: [" + logs("a.log") + "], service: billing, host: node-7");
  ASSERT_TRUE(wait_messages(d_, 1)) << (*e)->err();
  const auto docs = read_ndjson(d_ / "out.ndjson");
  EXPECT_EQ(str_field(docs[0], "service"), "billing");
  EXPECT_EQ(str_field(docs[0], "host"), "node-7");
}

TEST_F(Tail, AFileCreatedAfterTheStartIsFollowedFromItsHeadUnlessExcluded) {
  auto e = start(", path: " + logs("*.log") + ", exclude: ['*/skip-*']");
  append(logs("late.log"), numbered("late", 1, 5));
  append(logs("skip-me.log"), "excluded\n");
  ASSERT_TRUE(wait_messages(d_, 5)) << (*e)->err();
  append(logs("late.log"), "late 6\n");
  ASSERT_TRUE(wait_messages(d_, 6)) << (*e)->err();
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  const auto m = messages(d_);
  EXPECT_EQ(m.size(), 6u);
  EXPECT_EQ(std::set<std::string>(m.begin(), m.end()).count("excluded"), 0u);
  EXPECT_EQ(metric("tail_files_opened_total"), 1);
}

// Rotation by rename: the writer keeps appending to the renamed file for a while; those lines
// are read, then the new file's, and the renamed file is closed after rotate_wait idle (its last
// line without a newline delivered then).
TEST_F(Tail, ARenamedFileIsFinishedAndClosedAndTheNewFileIsRead) {
  append(logs("app.log"), numbered("old", 1, 3));
  auto e = start(", path: " + logs("app.log") + ", rotate_wait: 300ms");
  ASSERT_TRUE(wait_messages(d_, 3)) << (*e)->err();
  std::filesystem::rename(logs("app.log"), logs("app.log.1"));
  append(logs("app.log.1"), "old 4\nold 5 without newline");
  append(logs("app.log"), numbered("new", 1, 2));
  ASSERT_TRUE(wait_until([&] { return metric("tail_files_closed_total") == 1; }, 30s))
      << (*e)->err();
  ASSERT_TRUE(wait_messages(d_, 7)) << (*e)->err();
  const auto m = messages(d_);
  const std::set<std::string> got(m.begin(), m.end());
  for (const char *want : {"old 4", "old 5 without newline", "new 1", "new 2"})
    EXPECT_EQ(got.count(want), 1u) << want;
  EXPECT_EQ(m.size(), 7u);
  EXPECT_EQ(metric("tail_rotations_total", "kind=\"rename\""), 1);
  EXPECT_EQ(metric("tail_files_open"), 1);
  EXPECT_EQ(fds_of((*e)->pid(), d_.path()).files, 1) << "the renamed file is still open";
}

// A followed file deleted (a rotation that removes instead of renaming): what was written to it
// is read to its end, then its descriptor is released after rotate_wait.
TEST_F(Tail, ADeletedFileIsReadToItsEndAndItsDescriptorReleased) {
  append(logs("app.log"), "kept 1\n");
  auto e = start(", path: " + logs("app.log") + ", rotate_wait: 200ms");
  ASSERT_TRUE(wait_messages(d_, 1)) << (*e)->err();
  {
    std::ofstream still_open(logs("app.log"), std::ios::app);
    std::filesystem::remove(logs("app.log"));
    still_open << "kept 2\n" << std::flush;
  }
  ASSERT_TRUE(wait_until([&] { return metric("tail_files_closed_total") == 1; }, 30s))
      << (*e)->err();
  EXPECT_EQ(messages(d_), (std::vector<std::string>{"kept 1", "kept 2"}));
  EXPECT_EQ(fds_of((*e)->pid(), d_.path()).files, 0);
  EXPECT_EQ(metric("tail_files_open"), 0);
}

// copytruncate: the file is copied then cut to zero and written again. Lines read before the
// cut are not read again; the new ones are, with their own event_ids (the same offsets).
TEST_F(Tail, ATruncatedFileIsReadAgainFromItsStartWithNewEventIds) {
  append(logs("app.log"), numbered("before", 1, 3));
  auto e = start(", path: " + logs("app.log"));
  ASSERT_TRUE(wait_messages(d_, 3)) << (*e)->err();
  std::filesystem::resize_file(logs("app.log"), 0);
  // Longer than before: the size alone would not tell the cut; the first line does.
  append(logs("app.log"), numbered("after the copytruncate", 1, 3));
  ASSERT_TRUE(wait_messages(d_, 6)) << (*e)->err();
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  const auto docs = read_ndjson(d_ / "out.ndjson");
  ASSERT_EQ(docs.size(), 6u);
  EXPECT_EQ(str_field(docs[3], "message"), "after the copytruncate 1");
  EXPECT_NE(str_field(docs[3], "event_id"), str_field(docs[0], "event_id"));
  EXPECT_EQ(metric("tail_rotations_total", "kind=\"truncate\""), 1);
}

// inotify, no polling: with every file idle the input does not wake up at all. The counter can
// move (a write wakes it), so its standing still is a result.
TEST_F(Tail, AnIdleInputDoesNotWakeUp) {
  append(logs("app.log"), numbered("line", 1, 10));
  // The state file in the watched directory, matched by the glob: never followed itself.
  auto e = start(", path: " + logs("*") + ", rotate_wait: 100ms, state_file: " + logs("tail.json"));
  ASSERT_TRUE(wait_messages(d_, 10)) << (*e)->err();
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  const double idle = metric("tail_read_wakeups_total");
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(metric("tail_read_wakeups_total"), idle) << "woke up with nothing to read";
  }
  append(logs("app.log"), "line 11\n");
  ASSERT_TRUE(wait_messages(d_, 11)) << (*e)->err();
  EXPECT_GT(metric("tail_read_wakeups_total"), idle);
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  EXPECT_EQ(messages(d_).size(), 11u);
  EXPECT_EQ(metric("tail_files_opened_total"), 1);
}

// A restart resumes where the acknowledged lines end: nothing twice, nothing missed, also for
// lines written while stopped and a file rotated away meanwhile.
TEST_F(Tail, ARestartResumesAfterTheSavedOffsetAndFinishesAFileRotatedMeanwhile) {
  const std::string opts = ", path: " + logs("*.log") + ", state_file: " + d_ / "state/tail.json" +
                           ", checkpoint_interval: 0s";
  append(logs("app.log"), numbered("first", 1, 4));
  {
    auto e = start(opts, "", "run1");
    ASSERT_TRUE(wait_messages(d_, 4)) << (*e)->err();
    ASSERT_TRUE(wait_settled(port_, d_.path()));
    (*e)->kill(SIGTERM);
    ASSERT_EQ((*e)->wait_exit(30s), 0) << (*e)->err();
  }
  const std::string state = read_file(d_ / "state/tail.json");
  EXPECT_NE(state.find("\"version\":1"), std::string::npos) << state;
  EXPECT_NE(state.find("\"offset\":32"), std::string::npos) << state;  // 4 x "first N\n"
  // While stopped: more lines, then the file rotated away (not matched by *.log any more) and
  // a new one started.
  append(logs("app.log"), numbered("second", 1, 2));
  std::filesystem::rename(logs("app.log"), logs("app.log.1"));
  append(logs("app.log"), numbered("third", 1, 2));
  auto e = start(opts + ", rotate_wait: 200ms", "", "run2");
  ASSERT_TRUE(wait_messages(d_, 8)) << (*e)->err();
  ASSERT_TRUE(wait_until([&] { return metric("tail_files_closed_total") == 1; }, 30s));
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  const auto m = messages(d_);
  EXPECT_EQ(m.size(), 8u);
  EXPECT_EQ(std::set<std::string>(m.begin(), m.end()).size(), 8u) << "a line was read twice";
  EXPECT_EQ(metric("tail_files_resumed_total"), 1);
  EXPECT_NE((*e)->err().find("is now " + logs("app.log.1")), std::string::npos) << (*e)->err();
}

// copytruncate while devmesh was stopped, the file written again past the saved offset: its size
// alone would hide the cut, its first line does not. It is read again from its start.
TEST_F(Tail, AFileTruncatedWhileStoppedIsReadAgainFromItsStart) {
  const std::string opts = ", path: " + logs("app.log") + ", state_file: " + d_ / "tail.json";
  append(logs("app.log"), numbered("before", 1, 2));
  {
    auto e = start(opts, "", "run1");
    ASSERT_TRUE(wait_messages(d_, 2)) << (*e)->err();
    ASSERT_TRUE(wait_settled(port_, d_.path()));
    (*e)->kill(SIGTERM);
    ASSERT_EQ((*e)->wait_exit(30s), 0);
  }
  std::filesystem::resize_file(logs("app.log"), 0);
  append(logs("app.log"), numbered("rewritten after the restart", 1, 2));
  auto e = start(opts, "", "run2");
  ASSERT_TRUE(wait_messages(d_, 4)) << (*e)->err();
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  const auto m = messages(d_);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[2], "rewritten after the restart 1");
  EXPECT_EQ(metric("tail_rotations_total", "kind=\"truncate\""), 1);
}

// read_from tail skips what the files hold at the first start only (a line being written then
// is read whole); after that a file the state
// file does not know appeared while devmesh was stopped, and is read whole.
TEST_F(Tail, ReadFromTailSkipsExistingLinesAtTheFirstStartOnly) {
  const std::string opts =
      ", path: " + logs("*.log") + ", read_from: tail, state_file: " + d_ / "tail.json";
  append(logs("app.log"), numbered("old", 1, 3) + "partial old line");
  {
    auto e = start(opts, "", "run1");
    ASSERT_TRUE(wait_until([&] { return metric("tail_files_open") == 1; }, 30s));
    append(logs("app.log"), " ends now\nnew 1\n");
    ASSERT_TRUE(wait_messages(d_, 2)) << (*e)->err();
    ASSERT_TRUE(wait_settled(port_, d_.path()));
    (*e)->kill(SIGTERM);
    ASSERT_EQ((*e)->wait_exit(30s), 0);
  }
  append(logs("app.log"), "new 2\n");
  append(logs("born-while-stopped.log"), "born 1\n");
  auto e = start(opts, "", "run2");
  ASSERT_TRUE(wait_messages(d_, 4)) << (*e)->err();
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  const auto m = messages(d_);
  EXPECT_EQ(m.size(), 4u);
  // The line being written at the start is read whole, not from the middle.
  EXPECT_EQ(m[0], "partial old line ends now");
  EXPECT_EQ(m[1], "new 1");
  EXPECT_EQ(std::set<std::string>(m.begin(), m.end()),
            (std::set<std::string>{"partial old line ends now", "new 1", "new 2", "born 1"}));
}

// A line longer than max_line_size: its head is the record (meta truncated), the rest up to the
// newline is skipped and counted, and the next line is whole.
TEST_F(Tail, ALongLineIsCutCountedAndItsRestSkipped) {
  std::string long_line(1000, 'x');
  long_line.replace(255, 3, "\xE2\x82\xAC");  // a euro sign across the 256-byte cut
  append(logs("app.log"), "short\n" + long_line + "\nnext\n");
  auto e = start(", path: " + logs("app.log") + ", max_line_size: 256");
  ASSERT_TRUE(wait_messages(d_, 3)) << (*e)->err();
  const auto docs = read_ndjson(d_ / "out.ndjson");
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(str_field(docs[1], "message"), std::string(255, 'x')) << "cut at the character";
  EXPECT_EQ(str_field(docs[1]["meta_json"], "truncated"), "message");
  EXPECT_EQ(str_field(docs[2], "message"), "next");
  EXPECT_EQ(metric("tail_lines_cut_total"), 1);
  EXPECT_EQ(metric("tail_bytes_skipped_total"), 1000 - 255);
}

// Invalid UTF-8 is replaced by U+FFFD (as every input does), \r\n ends a line as \n does, and an
// empty line makes no record but is counted.
TEST_F(Tail, InvalidUtf8IsReplacedAndCountedAndEmptyLinesAreCountedNotKept) {
  append(logs("app.log"), "bad \xff\xfe byte\n\n\r\ngood\r\n");
  auto e = start(", path: " + logs("app.log"));
  ASSERT_TRUE(wait_messages(d_, 2)) << (*e)->err();
  const auto m = messages(d_);
  EXPECT_EQ(m[0], "bad \xEF\xBF\xBD\xEF\xBF\xBD byte");
  EXPECT_EQ(m[1], "good");
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(metric("tail_lines_invalid_utf8_total"), 1);
  EXPECT_EQ(metric("tail_empty_lines_total"), 2);
}

TEST_F(Tail, AStateFileOfANewerVersionIsRefusedAndAnUnreadableOneFallsBack) {
  append(logs("app.log"), "one\n");
  write_file(d_ / "tail.json", "{\"version\":2,\"files\":[]}\n");
  const std::string opts = ", path: " + logs("app.log") + ", state_file: " + d_ / "tail.json";
  {
    Devmesh e(d_, "newer", tail_yaml(d_, port_, opts));
    EXPECT_NE(e->wait_exit(30s), 0);
    EXPECT_NE(e->err().find("of version 2, newer than this build's 1"), std::string::npos)
        << e->err();
  }
  write_file(d_ / "tail.json", "{\"version\":1,\"fil");
  auto e = start(opts, "", "truncated");
  ASSERT_TRUE(wait_messages(d_, 1)) << (*e)->err();
  EXPECT_NE((*e)->err().find("is truncated or not JSON: files are read from their head"),
            std::string::npos)
      << (*e)->err();
}

TEST_F(Tail, BadPathsAreConfigErrorsNamingTheItem) {
  const std::string yaml = tail_yaml(d_, port_,
                                     ", path: ['" + d_.path() + "/*/app.log', " +
                                         d_ / "missing/app.log" + ", " + d_.path() + "/]");
  write_file(d_ / "bad.yaml", yaml);
  std::string out, err;
  EXPECT_NE(run({DEVMESH_BIN, "--dry-run", "-c", d_ / "bad.yaml"}, d_.path(), &out, &err), 0);
  const std::string all = out + err;
  EXPECT_NE(all.find("path[0]: '" + d_.path() +
                     "/*/app.log': wildcards are only allowed in the "
                     "file name"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("path[1]: directory " + d_ / "missing" + ": No such file or directory"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("path[2]: '" + d_.path() + "/' names a directory"), std::string::npos) << all;
  EXPECT_NE(all.find("bad.yaml:"), std::string::npos) << "FILE:LINE:COL " << all;
}

// Backpressure: an output that cannot deliver (503) fills its queue; the input is paused and
// reads nothing more until the receiver is back, then every line arrives.
TEST_F(Tail, BackpressurePausesReadingAndEveryLineArrivesAfterwards) {
  constexpr int kLines = 60000;
  std::atomic<bool> down{true};
  std::mutex mu;
  std::set<std::string> delivered;  // the messages of requests answered 200
  TestReceiver receiver([&](const TestReceiver::Request &req, int) {
    TestReceiver::Response r;
    if (down) {
      r.status = 503;
      r.headers.push_back({"Retry-After", "0"});
      return r;
    }
    const auto doc = parse_json(req.body);
    std::lock_guard<std::mutex> lock(mu);
    if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("logs"))
      for (const auto &rec : doc["logs"].GetArray()) delivered.insert(str_field(rec, "message"));
    return r;
  });
  append(logs("app.log"), numbered("pressure line number", 1, kLines));
  auto e = start(", path: " + logs("app.log") +
                     ", batch: 100, checkpoint_interval: 0s, state_file: " + d_ / "tail.json",
                 "    - {name: http_forward, url: '" + receiver.url() +
                     "', gzip: false, queue_limit: 256KiB, batch_size: 500, retry_wait: 50ms, "
                     "retry_max_wait: 200ms}\n");
  ASSERT_TRUE(wait_until([&] { return metric("input_paused", "instance=\"tail.0\"") == 1; }, 30s))
      << (*e)->err();
  const double read_at_pause = metric("tail_lines_read_total");
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(metric("tail_lines_read_total"), read_at_pause) << "read while paused";
  }
  EXPECT_LT(read_at_pause, kLines) << "everything was read before the pause: proves nothing";
  // Read but not delivered: the checkpoint has not moved past the start of the file.
  const std::string state = read_file(d_ / "tail.json");
  EXPECT_NE(state.find("\"offset\":0}"), std::string::npos) << state;
  down = false;
  ASSERT_TRUE(wait_until([&] { return metric("tail_lines_acknowledged_total") == kLines; }, 60s))
      << (*e)->err();
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(delivered.size(), static_cast<size_t>(kLines));
  }
  const std::string size = std::to_string(std::filesystem::file_size(logs("app.log")));
  EXPECT_TRUE(wait_until(
      [&] { return read_file(d_ / "tail.json").find("\"offset\":" + size) != std::string::npos; },
      30s))
      << read_file(d_ / "tail.json");
}

// follow: false reads the files to their end, the last line without a newline included, and the
// input finishes: with exit_when_done the engine exits once all is delivered.
TEST_F(Tail, FollowFalseReadsToTheEndAndTheEngineExits) {
  append(logs("a.log"), numbered("a", 1, 1000) + "a last line without newline");
  append(logs("b.log"), numbered("b", 1, 500));
  Devmesh e(d_, "engine",
            plugins_head("  exit_when_done: true\n") +
                "  inputs:\n    - {name: tail, path: " + logs("*.log") +
                ", follow: false}\n  outputs:\n    - {name: stdout, path: " + d_ / "out.ndjson" +
                "}\n");
  ASSERT_EQ(e->wait_exit(60s), 0) << e->err();
  const auto m = messages(d_);
  EXPECT_EQ(m.size(), 1501u);
  EXPECT_EQ(std::set<std::string>(m.begin(), m.end()).count("a last line without newline"), 1u);
}

// A changed tail replaced by a reload hands over through the state file: its successor resumes
// where the acknowledged lines end, so a stream across the reload arrives once, in order.
TEST_F(Tail, AReloadHandsOverThroughTheStateFileWithoutLosingOrRepeatingALine) {
  const std::string opts = ", path: " + logs("app.log") + ", state_file: " + d_ / "tail.json";
  append(logs("app.log"), numbered("line", 1, 3000));
  auto e = start(opts);
  ASSERT_TRUE(wait_messages(d_, 1)) << (*e)->err();
  write_file(d_ / "engine.yaml", tail_yaml(d_, port_, opts + ", batch: 64"));
  (*e)->kill(SIGHUP);
  append(logs("app.log"), numbered("line", 3001, 6000));
  ASSERT_TRUE(wait_messages(d_, 6000)) << (*e)->err();
  ASSERT_TRUE(wait_settled(port_, d_.path()));
  EXPECT_EQ(messages(d_), [] {
    std::vector<std::string> want;
    for (int i = 1; i <= 6000; ++i) want.push_back("line " + std::to_string(i));
    return want;
  }());
  EXPECT_NE((*e)->err().find("(saved position)"), std::string::npos) << (*e)->err();
}

// Reload and stop release the inotify instance and every file descriptor: a changed tail
// replaced by reload leaves one inotify and one open log file, and one removed leaves none.
TEST_F(Tail, ReloadAndStopReleaseInotifyAndFileDescriptors) {
  append(logs("a.log"), "a\n");
  append(logs("b.log"), "b\n");
  const std::string cfg = d_ / "engine.yaml";
  auto e = start(", path: " + logs("*.log"));
  ASSERT_TRUE(wait_messages(d_, 2)) << (*e)->err();
  const pid_t pid = (*e)->pid();
  const Fds before = fds_of(pid, d_.path());
  EXPECT_EQ(before.inotify, 1);
  EXPECT_EQ(before.files, 2);
  write_file(cfg, tail_yaml(d_, port_, ", path: " + logs("a.log")));
  (*e)->kill(SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] {
        const Fds now = fds_of(pid, d_.path());
        return now.inotify == 1 && now.files == 1;
      },
      30s))
      << "after a reload to one file: " << fds_of(pid, d_.path()).inotify << " inotify, "
      << fds_of(pid, d_.path()).files << " files\n"
      << (*e)->err();
  write_file(cfg, plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port_) + "\n") +
                      "  inputs:\n    - {name: dummy, count: 1}\n  outputs:\n    - {name: stdout, "
                      "path: " +
                      d_ / "out.ndjson" + "}\n");
  (*e)->kill(SIGHUP);
  ASSERT_TRUE(wait_until(
      [&] {
        const Fds now = fds_of(pid, d_.path());
        return now.inotify == 0 && now.files == 0;
      },
      30s))
      << "after the tail was removed\n"
      << (*e)->err();
}

}  // namespace
