// Test support: run the real devmesh binary (or any program) as a child process with its
// output in files, wait with a deadline, signal it, and read its files; plus small helpers
// for temp dirs, configs and HTTP GETs with curl. Header-only, used by abi and integration tests.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace devmesh::test {

inline std::string read_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_file(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

inline std::vector<std::string> read_lines(const std::string &path) {
  std::vector<std::string> lines;
  std::ifstream f(path);
  std::string l;
  while (std::getline(f, l))
    if (!l.empty()) lines.push_back(l);
  return lines;
}

// A fresh directory under $TMPDIR, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "devmesh-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string &path() const { return path_; }
  std::string operator/(const std::string &name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Polls until pred() or the deadline; returns pred()'s last value.
inline bool wait_until(std::function<bool()> pred, std::chrono::milliseconds deadline) {
  auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class Process {
 public:
  // Starts argv[0] with stdout and stderr in files inside dir (out_name.stdout/.stderr).
  Process(std::vector<std::string> argv, const std::string &dir, const std::string &name = "proc",
          std::vector<std::string> env_extra = {}) {
    out_ = dir + "/" + name + ".stdout";
    err_ = dir + "/" + name + ".stderr";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char *> args;
    for (auto &a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<std::string> envs;
    for (char **e = environ; *e; e++) envs.push_back(*e);
    for (auto &e : env_extra) envs.push_back(e);
    std::vector<char *> envp;
    for (auto &e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
  }
  ~Process() {
    if (running()) {
      ::kill(pid_, SIGKILL);
      wait_exit(std::chrono::seconds(10));
    }
  }
  Process(const Process &) = delete;
  Process &operator=(const Process &) = delete;

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !exited_; }
  void kill(int sig) {
    if (running()) ::kill(pid_, sig);
  }
  // Waits for exit; returns the exit code (128+signal when killed), or -1 on timeout.
  int wait_exit(std::chrono::milliseconds deadline) {
    if (pid_ <= 0) return -1;
    auto end = std::chrono::steady_clock::now() + deadline;
    while (!exited_) {
      int status;
      struct rusage ru;
      pid_t r = wait4(pid_, &status, WNOHANG, &ru);
      if (r == pid_) {
        exited_ = true;
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        max_rss_kib_ = ru.ru_maxrss;
        break;
      }
      if (std::chrono::steady_clock::now() > end) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return code_;
  }
  long max_rss_kib() const { return max_rss_kib_; }
  // Current resident set from /proc (KiB), 0 if gone.
  long rss_kib() const {
    std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
    return 0;
  }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }
  const std::string &out_path() const { return out_; }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
  int code_ = -1;
  long max_rss_kib_ = 0;
  std::string out_, err_;
};

// Runs a command to completion (deadline 60 s); returns exit code, output in out/err.
inline int run(std::vector<std::string> argv, const std::string &dir, std::string *out = nullptr,
               std::string *err = nullptr) {
  Process p(std::move(argv), dir, "run");
  int code = p.wait_exit(std::chrono::seconds(60));
  if (out) *out = p.out();
  if (err) *err = p.err();
  return code;
}

// GET with the curl binary (a real HTTP client); returns the status code, body in *body.
inline int http_get(const std::string &url, std::string *body, const std::string &dir) {
  // A file of this call's own: tests running side by side pass the same dir (often /tmp), and a
  // shared name let one read another's body, or an empty one.
  static std::atomic<unsigned> calls{0};
  const std::string file =
      dir + "/curl.body." + std::to_string(getpid()) + "." + std::to_string(calls.fetch_add(1));
  std::string out;
  int rc = run({"/usr/bin/curl", "-s", "-o", file, "-w", "%{http_code}", "--max-time", "10", url},
               dir, &out);
  if (body) *body = read_file(file);
  std::remove(file.c_str());
  if (rc != 0) return 0;
  return std::atoi(out.c_str());
}

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

// The value of the first Prometheus sample named `name` whose line contains label_substring
// (any sample when empty), or nothing when /metrics has none: for the few reads where absence is
// a legitimate answer (a counter created on first use, an engine not listening yet).
inline std::optional<double> find_metric(const std::string &text, const std::string &name,
                                         const std::string &label_substring) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + "{", 0) != 0 && line.rfind(name + " ", 0) != 0) continue;
    if (!label_substring.empty() && line.find(label_substring) == std::string::npos) continue;
    return std::atof(line.substr(line.rfind(' ') + 1).c_str());
  }
  return std::nullopt;
}

// The same, and a test failure when the sample is missing: a misspelt name (or one without the
// engine's devmesh_ prefix) would otherwise read as -1 on every scrape, and a comparison of two
// such reads passes whatever the engine does.
inline double metric_value(const std::string &text, const std::string &name,
                           const std::string &label_substring) {
  const auto v = find_metric(text, name, label_substring);
  if (!v) {
    ADD_FAILURE() << "no sample " << name
                  << (label_substring.empty() ? "" : " with " + label_substring) << " in /metrics ("
                  << text.size() << " bytes)";
    return -1;
  }
  return *v;
}

// Why the engine whose /metrics text is `text` has not settled, or "" once it has: every
// output has finished with what it took in (records_in == records_out + dead_lettered + failed)
// and holds nothing queued in memory or on disk.
inline std::string unsettled_outputs(const std::string &text) {
  std::string why;
  std::istringstream in(text);
  std::string line;
  const std::string dead = "devmesh_records_dead_lettered_total{";
  while (std::getline(in, line)) {
    if (line.rfind(dead, 0) != 0) continue;  // one line per output instance
    const std::string labels = line.substr(dead.size(), line.find('}') - dead.size());
    const auto value = [&](const std::string &name) {
      return find_metric(text, name, labels).value_or(-1);
    };
    const double in_n = value("devmesh_records_in_total"), out = value("devmesh_records_out_total"),
                 dl = value("devmesh_records_dead_lettered_total"),
                 failed = value("devmesh_records_failed_total"),
                 queued = value("devmesh_queue_records"),
                 backlog = find_metric(text, "devmesh_storage_backlog_records", labels).value_or(0);
    if (in_n != out + dl + failed || queued != 0 || backlog != 0)
      why += labels + ": in " + std::to_string(in_n) + ", out " + std::to_string(out) +
             ", dead-lettered " + std::to_string(dl) + ", failed " + std::to_string(failed) +
             ", queued " + std::to_string(queued) + ", on disk " + std::to_string(backlog) + "\n";
  }
  if (text.find(dead) == std::string::npos) why = "no output in /metrics\n";
  return why;
}

// The counters of a /metrics text (every *_total and histogram *_count sample), to compare two
// scrapes: equal when nothing moved in between.
inline std::string metric_counters(const std::string &text) {
  std::istringstream in(text);
  std::string line, out;
  while (std::getline(in, line)) {
    const auto space = line.rfind(' ');
    if (line.empty() || line[0] == '#' || space == std::string::npos) continue;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    if (name.size() > 6 && (name.ends_with("_total") || name.ends_with("_count")))
      out += line + "\n";
  }
  return out;
}

// Waits until the engine serving /metrics on 127.0.0.1:port has settled: its outputs have
// finished with everything they took in (unsettled_outputs), and its counters read the same on
// two scrapes `quiet` apart. A check that nothing more arrives (no late duplicate, no record
// after a refusal) is only meaningful after this; a fixed sleep cannot see a record that comes
// later than the sleep. False at the deadline, with the reason in *why.
inline bool wait_settled(int port, const std::string &dir,
                         std::chrono::milliseconds deadline = std::chrono::seconds(60),
                         std::string *why = nullptr,
                         std::chrono::milliseconds quiet = std::chrono::milliseconds(500)) {
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/metrics";
  const auto end = std::chrono::steady_clock::now() + deadline;
  std::string reason, before;
  for (;;) {
    std::string text;
    if (http_get(url, &text, dir) != 200) {
      reason = "no answer from " + url;
      before.clear();
    } else if (reason = unsettled_outputs(text); !reason.empty()) {
      before.clear();
    } else if (const std::string now = metric_counters(text); now != before) {
      reason = "counters still moving";
      before = now;
    } else {
      return true;
    }
    if (std::chrono::steady_clock::now() >= end) {
      if (why) *why = reason;
      return false;
    }
    std::this_thread::sleep_for(before.empty() ? std::chrono::milliseconds(50) : quiet);
  }
}

}  // namespace devmesh::test
