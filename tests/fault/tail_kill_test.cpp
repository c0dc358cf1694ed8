// Fault test (issue 12): an application writes numbered lines to a log file that is rotated by
// rename every few thousand lines (the writer keeps appending to the renamed file for a while,
// as a real one does until it reopens), while devmesh tails it (state file -> mariadb) and is
// killed -9 again and again and restarted. MariaDB must end with every line written exactly once.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <thread>

#include "fault_support.h"

using namespace devmesh::test;

namespace {

// The count; DEVMESH_FAULT_TAIL_LINES sets another.
constexpr long kCiLines = 100000;
constexpr long kLinesPerFile = 8000;
constexpr long kLateLines = 200;  // written to the renamed file after each rotation

// The writer: numbered lines in chunks, rotation by rename, late lines to the renamed file.
class LogWriter {
 public:
  LogWriter(std::string dir, long lines) : dir_(std::move(dir)), lines_(lines) {
    thread_ = std::thread([this] { run(); });
  }
  ~LogWriter() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_; }
  long written() const { return written_; }
  int rotations() const { return rotations_; }
  void join() { thread_.join(); }

 private:
  int open_log() {
    return ::open((dir_ + "/app.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  }
  void write_lines(int fd, long count) {
    std::string chunk;
    for (long i = 0; i < count && written_ < lines_; ++i) {
      char line[32];
      snprintf(line, sizeof line, "line %07ld\n", ++written_);
      chunk += line;
    }
    for (size_t off = 0; off < chunk.size();) {
      const ssize_t w = ::write(fd, chunk.data() + off, chunk.size() - off);
      if (w <= 0) return;
      off += static_cast<size_t>(w);
    }
  }
  void run() {
    int fd = open_log();
    long in_file = 0;
    while (written_ < lines_) {
      write_lines(fd, 100);
      in_file += 100;
      // About 10,000 lines a second: the kills land all over the stream.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (in_file >= kLinesPerFile && written_ < lines_) {
        const std::string rotated = dir_ + "/app.log." + std::to_string(++rotations_);
        std::filesystem::rename(dir_ + "/app.log", rotated);
        write_lines(fd, kLateLines);  // not reopened yet
        ::close(fd);
        fd = open_log();
        in_file = 0;
      }
    }
    ::close(fd);
    done_ = true;
  }

  std::string dir_;
  long lines_;
  std::atomic<long> written_{0};
  std::atomic<int> rotations_{0};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// "a-b" ranges of the numbers in v (sorted), for failure messages.
std::string ranges(const std::vector<long> &v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size() && i < 2000;) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    s << (i ? "," : "") << v[i];
    if (j > i) s << "-" << v[j];
    i = j + 1;
  }
  return s.str();
}

TEST(TailKilled, EveryLineOfARotatedFileIsStoredOnceWhenTheEngineIsKilledWhileTailing) {
  const long lines = env_size("DEVMESH_FAULT_TAIL_LINES", kCiLines);
  TempDir d;
  std::filesystem::create_directories(d / "logs");
  MariaDb db(d.path());
  std::string err;
  ASSERT_TRUE(db.start(&err)) << err;
  const int port = free_port();
  Engine engine(d, "tail",
                service_head("  http_listen: " + listen_on(port) + "\n  grace: 5s\n") +
                    "  inputs:\n    - {name: tail, path: " + d / "logs/app.log" +
                    ", state_file: " + d / "state/tail.json" +
                    ", checkpoint_interval: 200ms, rotate_wait: 1s}\n  outputs:\n" +
                    mariadb_output(db, d / "dead.ndjson",
                                   "      workers: 2\n      batch_size: 2000\n"
                                   "      full_text: false\n      flush_interval: 50ms\n"));
  const auto began = std::chrono::steady_clock::now();
  LogWriter writer(d / "logs", lines);
  std::mt19937 rng(12345);
  int kills = 0;
  std::vector<long long> stored_at_kill;
  // Killed once it has acknowledged a random 1,000..6,000 lines in this run (an event, not a
  // time), until the writer is done.
  while (!writer.done() && std::chrono::steady_clock::now() < began + 10min) {
    engine.start();
    ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << engine.err();
    const double target = 1000 + static_cast<double>(rng() % 5000);
    wait_until(
        [&] {
          return writer.done() || find_metric(scrape_metrics(port, d.path()),
                                              "devmesh_tail_lines_acknowledged_total", "")
                                          .value_or(0) >= target;
        },
        60s);
    if (writer.done()) break;
    engine.kill9();
    ++kills;
    stored_at_kill.push_back(db.number("SELECT COUNT(*) FROM log_events"));
  }
  writer.join();
  // The last run reads the rest: it has settled once its outputs hold nothing and its counters
  // stand still (a loss shows below as missing numbers, not as a time-out here).
  if (!engine.running()) engine.start();
  ASSERT_TRUE(wait_listening(port, d.path(), 30s)) << engine.err();
  std::string why;
  EXPECT_TRUE(wait_until(
      [&] {
        return find_metric(scrape_metrics(port, d.path()), "devmesh_tail_files_open", "")
                       .value_or(0) == 1 &&
               wait_settled(port, d.path(), 60s, &why, 1s);
      },
      5min))
      << why;
  const double took = seconds_since(began);
  const std::string metrics = scrape_metrics(port, d.path());
  engine.proc().kill(SIGTERM);
  EXPECT_EQ(engine.proc().wait_exit(30s), 0) << engine.err();

  // Count every stored line by its number: each once, none missing, nothing else.
  std::string out;
  ASSERT_EQ(db.sql("SELECT message FROM log_events", &out), 0);
  std::vector<int> seen(static_cast<size_t>(lines) + 1, 0);
  long other = 0;
  std::istringstream in(out);
  for (std::string row; std::getline(in, row);) {
    long n = 0;
    if (sscanf(row.c_str(), "line %ld", &n) == 1 && n >= 1 && n <= lines)
      ++seen[static_cast<size_t>(n)];
    else
      ++other;
  }
  std::vector<long> missing, repeated;
  for (long n = 1; n <= lines; ++n) {
    if (seen[static_cast<size_t>(n)] == 0) missing.push_back(n);
    if (seen[static_cast<size_t>(n)] > 1) repeated.push_back(n);
  }
  EXPECT_TRUE(missing.empty()) << missing.size() << " lines missing: " << ranges(missing);
  EXPECT_TRUE(repeated.empty()) << repeated.size() << " lines stored twice: " << ranges(repeated);
  EXPECT_EQ(other, 0) << "rows that are no line written";
  EXPECT_FALSE(std::filesystem::exists(d / "dead.ndjson")) << "dead-lettered lines";

  // The faults happened and left their trace.
  EXPECT_GE(kills, 3) << "the writer finished before the engine was killed three times";
  EXPECT_GE(writer.rotations(), 5);
  EXPECT_TRUE(std::any_of(stored_at_kill.begin(), stored_at_kill.end(),
                          [&](long long n) { return n > 0 && n < lines; }));
  int resumed = 0, finished_rotated = 0;
  for (int run = 1; run < engine.starts(); ++run) {
    const std::string log = read_file(d / ("tail." + std::to_string(run) + ".stderr"));
    resumed += count_lines_with(log, "(saved position)");
    finished_rotated += count_lines_with(log, "(rotated away before this start): finishing it");
  }
  EXPECT_GE(resumed, 1) << "no restart resumed from a saved position";
  std::ostringstream progress;
  for (auto n : stored_at_kill) progress << " " << n;
  std::cout << "  " << lines << " lines in " << writer.rotations() + 1 << " files (rotated by "
            << "rename), " << kills << " kills -9, " << engine.starts() << " starts, " << took
            << " s; " << resumed << " files resumed at a saved offset, " << finished_rotated
            << " files found rotated away at a restart (by inode, beside their old path) and "
               "finished; rows "
            << "stored at each kill:" << progress.str() << "\n  last run: rotations "
            << find_metric(metrics, "devmesh_tail_rotations_total", "rename").value_or(-1)
            << ", files closed "
            << find_metric(metrics, "devmesh_tail_files_closed_total", "").value_or(-1) << "\n";
}

}  // namespace
