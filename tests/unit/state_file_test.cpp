// The plugins' state files (plugins/common/state_file.hpp, checkpointer.hpp), on real files:
// replaced whole, older generations never over newer ones, failures leaving the old file; and
// the checkpoint schedule journald and tail share, against a host whose thread pool and timers
// the test runs by hand.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checkpointer.hpp"
#include "state_file.hpp"

namespace fs = std::filesystem;

namespace {

// The names in dir, sorted: a write leaves the state file and no temporary beside it.
std::vector<std::string> names(const fs::path &dir) {
  std::vector<std::string> out;
  for (const auto &e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string read(const fs::path &p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "devmesh-state-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path &path() const { return path_; }

 private:
  fs::path path_;
};

TEST(StateFile, ReplacesTheFileWholeAndLeavesNoTemporary) {
  TempDir d;
  const fs::path p = d.path() / "state";
  devmesh::StateFile f(p.string());
  EXPECT_EQ(f.dir(), d.path().string());
  EXPECT_EQ(f.temporary_prefix(), p.string() + ".tmp.");
  EXPECT_TRUE(f.is_temporary(p.string() + ".tmp.123.a1B2c3"));
  EXPECT_FALSE(f.is_temporary(p.string() + ".tmp."));
  EXPECT_TRUE(f.is_temporary(p.string() + ".tmp"));  // the previous release's fixed name
  EXPECT_FALSE(f.is_temporary(p.string()));
  ASSERT_EQ(f.write("first\n", 1), 0);
  EXPECT_EQ(read(p), "first\n");
  ASSERT_EQ(f.write("second, longer\n", 2), 0);
  EXPECT_EQ(read(p), "second, longer\n");
  ASSERT_EQ(f.write("3\n", 3), 0);
  EXPECT_EQ(read(p), "3\n");
  EXPECT_EQ(f.written(), 3u);
  EXPECT_EQ(names(d.path()), std::vector<std::string>{"state"});
}

TEST(StateFile, NamesTheDirectoryOfAPathWithoutOneOrAtTheRoot) {
  EXPECT_EQ(devmesh::StateFile("state").dir(), ".");
  EXPECT_EQ(devmesh::StateFile("/state").dir(), "/");
  EXPECT_EQ(devmesh::StateFile("a/b/state").dir(), "a/b");
}

TEST(StateFile, SkipsAWriteNotNewerThanTheNewestWritten) {
  TempDir d;
  const fs::path p = d.path() / "state";
  devmesh::StateFile f(p.string());
  ASSERT_EQ(f.write("new", 5), 0);
  EXPECT_EQ(f.write("old", 4), 0);
  EXPECT_EQ(f.write("same generation", 5), 0);
  EXPECT_EQ(read(p), "new");
  EXPECT_EQ(f.written(), 5u);
}

TEST(StateFile, AFailedWriteLeavesNoTemporaryAndIsRetriedAtTheSameGeneration) {
  TempDir d;
  const fs::path p = d.path() / "state";
  // A non-empty directory where the file goes: the rename over it fails.
  fs::create_directories(p / "in-the-way");
  devmesh::StateFile f(p.string());
  EXPECT_NE(f.write("lost", 1), 0);
  EXPECT_EQ(f.written(), 0u);
  EXPECT_EQ(names(d.path()), std::vector<std::string>{"state"});  // the directory in the way
  EXPECT_TRUE(fs::is_directory(p / "in-the-way"));
  fs::remove_all(p);
  ASSERT_EQ(f.write("kept", 1), 0);
  EXPECT_EQ(read(p), "kept");
}

TEST(StateFile, WritersOnManyThreadsLeaveTheNewestGeneration) {
  TempDir d;
  const fs::path p = d.path() / "state";
  devmesh::StateFile f(p.string());
  std::vector<uint64_t> generations;
  for (uint64_t g = 1; g <= 64; ++g) generations.push_back(g);
  std::shuffle(generations.begin(), generations.end(), std::mt19937(7));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < generations.size(); i += 4)
        EXPECT_EQ(f.write("generation " + std::to_string(generations[i]), generations[i]), 0);
    });
  for (auto &t : threads) t.join();
  EXPECT_EQ(read(p), "generation 64");
  EXPECT_EQ(f.written(), 64u);
}

// The old and the new plugin instance across a reload each hold their own StateFile for one
// path, each locking only itself: every write still lands whole (one writer's text, never a
// mix or a torn one) and none fails for the other's temporary.
TEST(StateFile, TwoObjectsForOnePathNeverMixTheirWrites) {
  TempDir d;
  const fs::path p = d.path() / "state";
  devmesh::StateFile old_instance(p.string()), new_instance(p.string());
  const std::string a(200000, 'a'), b(70000, 'b');
  std::atomic<int> running{2};
  auto writer = [&](devmesh::StateFile &f, const std::string &text) {
    for (uint64_t g = 1; g <= 150; ++g) EXPECT_EQ(f.write(text, g), 0) << "generation " << g;
    --running;
  };
  std::thread t1(writer, std::ref(old_instance), std::cref(a));
  std::thread t2(writer, std::ref(new_instance), std::cref(b));
  int mixed = 0;
  while (running > 0) {
    const std::string now = read(p);
    if (!now.empty() && now != a && now != b) ++mixed;
  }
  t1.join();
  t2.join();
  EXPECT_EQ(mixed, 0);
  const std::string last = read(p);
  EXPECT_TRUE(last == a || last == b) << last.size() << " bytes";
  EXPECT_EQ(names(d.path()), std::vector<std::string>{"state"});
}

// A crash between the temporary's creation and the rename leaves it behind; with a name of its
// own for each write, they would pile up crash after crash. The first write removes those of
// writers that are gone, and never one of a running process (this one's: another instance's
// write may be under way).
TEST(StateFile, TheFirstWriteRemovesTheTemporariesOfCrashedWritersAndThePreviousReleasesOnly) {
  TempDir d;
  const fs::path p = d.path() / "state";
  const std::string dead = p.string() + ".tmp.2147483646.AbCdEf";  // above any pid_max
  const std::string ours = p.string() + ".tmp." + std::to_string(::getpid()) + ".AbCdEf";
  const std::string parent = p.string() + ".tmp." + std::to_string(::getppid()) + ".AbCdEf";
  const std::string other = (d.path() / "other.tmp.2147483646.AbCdEf").string();
  const std::string previous_release = p.string() + ".tmp";  // its fixed name
  for (const std::string &f : {dead, ours, parent, other, previous_release})
    std::ofstream(f) << "partial";
  devmesh::StateFile f(p.string());
  EXPECT_TRUE(f.is_temporary(previous_release));
  EXPECT_TRUE(f.is_temporary(dead));
  EXPECT_FALSE(f.is_temporary(p.string()));
  ASSERT_EQ(f.write("new", 1), 0);
  EXPECT_EQ(read(p), "new");
  std::vector<std::string> left = {"other.tmp.2147483646.AbCdEf", "state",
                                   fs::path(ours).filename().string(),
                                   fs::path(parent).filename().string()};
  std::sort(left.begin(), left.end());
  EXPECT_EQ(names(d.path()), left);
}

// ---- the checkpoint schedule, against a host the test drives --------------------------------

struct FakeTimer {
  dm_timer_cb cb;
  void *arg;
  bool running = false;
  uint64_t timeout_ms = 0;
};

struct Work {
  dm_work_cb work, done;
  void *arg;
};

struct FakeHost {
  dm_host_api api{};
  bool pool = true;
  std::vector<Work> queued;
  std::vector<FakeTimer *> timers;
  std::vector<std::string> logs;
  double errors = 0;
  uint64_t now_ms = 1000000;  // the clock the Checkpointer reads

  static uint64_t clock() { return current()->now_ms; }

  static void log(dm_instance *, dm_log_level, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    current()->logs.emplace_back(buf);
  }

  static FakeHost *&current() {
    static FakeHost *h = nullptr;
    return h;
  }

  FakeHost() {
    current() = this;
    api.struct_size = sizeof api;
    api.log = log;
    api.timer_new = [](dm_instance *, dm_timer_cb cb, void *arg) {
      auto *t = new FakeTimer{cb, arg};
      current()->timers.push_back(t);
      return reinterpret_cast<dm_timer *>(t);
    };
    api.timer_start = [](dm_timer *t, uint64_t timeout_ms, uint64_t) {
      auto *ft = reinterpret_cast<FakeTimer *>(t);
      ft->running = true;
      ft->timeout_ms = timeout_ms;
    };
    api.timer_free = [](dm_timer *t) {
      auto &v = current()->timers;
      v.erase(std::find(v.begin(), v.end(), reinterpret_cast<FakeTimer *>(t)));
      delete reinterpret_cast<FakeTimer *>(t);
    };
    api.queue_work = [](dm_instance *, dm_work_cb work, dm_work_cb done, void *arg) {
      if (!current()->pool) return static_cast<int>(DM_ERR);
      current()->queued.push_back(Work{work, done, arg});
      return static_cast<int>(DM_OK);
    };
    api.metric_add = [](dm_metric *, double d) { current()->errors += d; };
  }
  ~FakeHost() {
    for (FakeTimer *t : timers) delete t;
    current() = nullptr;
  }

  // Runs the oldest queued write on "the pool", then its completion on "the loop".
  void run_one() {
    ASSERT_FALSE(queued.empty());
    const Work w = queued.front();
    queued.erase(queued.begin());
    w.work(w.arg);
    w.done(w.arg);
  }

  // The one timer's callback, as the loop would call it.
  void fire() {
    ASSERT_EQ(timers.size(), 1u);
    ASSERT_TRUE(timers[0]->running);
    timers[0]->running = false;
    timers[0]->cb(timers[0]->arg);
  }
};

dm_metric *const kErrorsMetric = reinterpret_cast<dm_metric *>(1);

struct Saved {
  int n = 0;
  std::string text() { return "state " + std::to_string(n) + "\n"; }
};

TEST(Checkpointer, WritesAChangeAtOnceOnThePoolAndTheNextNoSoonerThanTheInterval) {
  TempDir d;
  FakeHost host;
  Saved state;
  devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
  c.open((d.path() / "state").string(), 3600 * 1000, [&] { return state.text(); }, kErrorsMetric);
  c.changed();
  c.save();  // not started: nothing is written before start()
  EXPECT_TRUE(host.queued.empty());
  ASSERT_TRUE(c.start());
  state.n = 1;
  c.save();
  ASSERT_EQ(host.queued.size(), 1u);
  EXPECT_FALSE(fs::exists(d.path() / "state"));  // the loop does not write it
  host.run_one();
  EXPECT_EQ(read(d.path() / "state"), "state 1\n");

  state.n = 2;
  c.changed();
  c.save();
  EXPECT_TRUE(host.queued.empty());
  ASSERT_TRUE(host.timers[0]->running);
  EXPECT_EQ(host.timers[0]->timeout_ms, 3600u * 1000);

  host.now_ms += 1000;  // early: waits for the rest
  host.fire();
  EXPECT_TRUE(host.queued.empty());
  EXPECT_EQ(host.timers[0]->timeout_ms, 3599u * 1000);
  host.now_ms += 3599 * 1000;
  host.fire();
  host.run_one();
  EXPECT_EQ(read(d.path() / "state"), "state 2\n");
}

TEST(Checkpointer, WritesOneAtATimeAndThenTheNewestState) {
  TempDir d;
  FakeHost host;
  Saved state;
  devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
  c.open((d.path() / "state").string(), 0, [&] { return state.text(); }, kErrorsMetric);
  ASSERT_TRUE(c.start());
  for (state.n = 1; state.n <= 3; ++state.n) {
    c.changed();
    c.save();
  }
  ASSERT_EQ(host.queued.size(), 1u);  // the first; the others wait for it
  state.n = 9;
  host.run_one();  // its completion starts the next, with the state as it is then
  EXPECT_EQ(read(d.path() / "state"), "state 1\n");
  ASSERT_EQ(host.queued.size(), 1u);
  host.run_one();
  EXPECT_EQ(read(d.path() / "state"), "state 9\n");
  EXPECT_TRUE(host.queued.empty());  // nothing changed since
  c.save();
  EXPECT_TRUE(host.queued.empty());
}

TEST(Checkpointer, AFailedWriteIsCountedLoggedOnceAndRetriedASecondLater) {
  TempDir d;
  FakeHost host;
  Saved state;
  const fs::path p = d.path() / "state";
  fs::create_directories(p / "in-the-way");
  devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
  c.open(
      p.string(), 0, [&] { return state.text(); }, kErrorsMetric);
  ASSERT_TRUE(c.start());
  c.changed();
  c.save();
  host.run_one();
  EXPECT_EQ(host.errors, 1);
  ASSERT_EQ(host.logs.size(), 1u);
  EXPECT_NE(host.logs[0].find("state_file " + p.string() + ": write failed"), std::string::npos);
  EXPECT_NE(host.logs[0].find("(retrying)"), std::string::npos);
  EXPECT_TRUE(host.queued.empty());
  ASSERT_TRUE(host.timers[0]->running);
  EXPECT_EQ(host.timers[0]->timeout_ms, 1000u);  // even with an interval of 0

  host.now_ms += 1000;
  host.fire();  // a second later: retried, fails again, counted, not logged again
  host.run_one();
  EXPECT_EQ(host.errors, 2);
  EXPECT_EQ(host.logs.size(), 1u);

  fs::remove_all(p);
  state.n = 4;
  host.now_ms += 1000;
  host.fire();
  host.run_one();
  EXPECT_EQ(read(p), "state 4\n");
  EXPECT_EQ(host.errors, 2);
}

TEST(Checkpointer, TheFinalWriteSavesTheNewestStateAndAWriteStillOnThePoolCannotUndoIt) {
  TempDir d;
  FakeHost host;
  Saved state;
  const fs::path p = d.path() / "state";
  {
    devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
    c.open(
        p.string(), 0, [&] { return state.text(); }, kErrorsMetric);
    ASSERT_TRUE(c.start());
    state.n = 1;
    c.changed();
    c.save();
    ASSERT_EQ(host.queued.size(), 1u);  // still on the pool at shutdown
    state.n = 2;
    c.changed();
    c.finish(true);
    EXPECT_EQ(read(p), "state 2\n");
  }
  host.run_one();  // completes after the instance is gone: writes nothing older, calls nobody
  EXPECT_EQ(read(p), "state 2\n");
  EXPECT_TRUE(host.logs.empty());
}

TEST(Checkpointer, TheFinalWriteIsSkippedWhenThereIsNothingToSaveOrNothingNew) {
  TempDir d;
  FakeHost host;
  Saved state;
  const fs::path p = d.path() / "state";
  devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
  c.open(
      p.string(), 0, [&] { return state.text(); }, kErrorsMetric);
  ASSERT_TRUE(c.start());
  c.changed();
  c.finish(false);  // not ready (journald: nothing acknowledged yet)
  EXPECT_FALSE(fs::exists(p));

  devmesh::Checkpointer saved(&host.api, nullptr, FakeHost::clock);
  saved.open(
      p.string(), 0, [&] { return state.text(); }, kErrorsMetric);
  ASSERT_TRUE(saved.start());
  state.n = 1;
  saved.changed();
  saved.save();
  host.run_one();
  state.n = 2;  // not a change it was told about
  saved.finish(true);
  EXPECT_EQ(read(p), "state 1\n");
}

TEST(Checkpointer, WithoutAThreadPoolWritesOnTheLoop) {
  TempDir d;
  FakeHost host;
  host.pool = false;
  Saved state;
  devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
  c.open((d.path() / "state").string(), 0, [&] { return state.text(); }, kErrorsMetric);
  ASSERT_TRUE(c.start());
  state.n = 5;
  c.changed();
  c.save();
  EXPECT_EQ(read(d.path() / "state"), "state 5\n");
}

TEST(Checkpointer, WithoutAStateFileDoesNothing) {
  FakeHost host;
  devmesh::Checkpointer c(&host.api, nullptr, FakeHost::clock);
  EXPECT_FALSE(c.enabled());
  EXPECT_TRUE(c.start());
  c.changed();
  c.save_now();
  c.finish(true);
  EXPECT_TRUE(host.queued.empty());
  EXPECT_TRUE(host.timers.empty());
}

}  // namespace
