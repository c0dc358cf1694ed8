// bench_durability: what write-ahead storage costs on the http input. wrk posts 500-record JSON
// bodies over 4 connections (closed loop) to http -> null with
//   memory   no storage (the ceiling of this run),
//   interval storage, sync: interval (1s), ack: accepted,
//   always   storage, sync: always (group commit), ack: accepted,
//   durable  storage, sync: always, ack: durable (each 2xx waits for its fsync),
// and prints records/s, p99 latency and each mode's ratio to memory. Medians of --runs runs.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  std::string wrk = "/usr/bin/wrk";
  std::string dir;  // where the segment files go (default: a temp dir)
  int records = 500, connections = 4, seconds = 5, runs = 3;
};

int free_port() {
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

bool port_open(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

pid_t spawn(const std::vector<std::string> &argv, const std::string &log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char *> args;
  for (auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

std::string read_all(const std::string &path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string make_body(int records) {
  std::string s = "{\"logs\":[";
  char buf[1024];
  for (int i = 0; i < records; ++i) {
    // Shaped like the prototype's journald records (as bench_http sends).
    std::snprintf(
        buf, sizeof buf,
        "%s{\"timestamp\":\"2025-11-28T19:55:%02d.%06dZ\",\"source\":\"journald\","
        "\"service\":\"loki.service\",\"host\":\"dev-services\",\"level\":\"INFO\","
        "\"message\":\"level=info ts=2025-11-28T19:55:40.431Z caller=table_manager.go:136 "
        "msg=\\\"uploading tables\\\" index=%d\",\"meta_json\":{\"pid\":\"493414\","
        "\"comm\":\"loki-linux-amd6\",\"facility\":\"3\"}}",
        i ? "," : "", i % 60, i * 1000 % 1000000, i);
    s += buf;
  }
  return s + "]}";
}

struct Result {
  double records_per_s = 0, p99_ms = 0;
  long errors = 0;
};

Result wrk_run(const Options &o, const std::string &dir, const std::string &url) {
  const std::string lua = dir + "/post.lua";
  std::ofstream(lua) << "wrk.method = \"POST\"\n"
                        "wrk.headers[\"Content-Type\"] = \"application/json\"\n"
                        "local f = io.open(\""
                     << dir
                     << "/body.json\", \"rb\")\n"
                        "wrk.body = f:read(\"*a\")\nf:close()\n"
                        "done = function(s, lat, req)\n"
                        "  io.write(string.format(\"BENCH %d %d %d %d\\n\", s.requests, "
                        "s.duration, lat:percentile(99), s.errors.connect + s.errors.read + "
                        "s.errors.write + s.errors.timeout + s.errors.status))\nend\n";
  pid_t w = spawn({o.wrk, "-t1", "-c" + std::to_string(o.connections),
                   "-d" + std::to_string(o.seconds) + "s", "-s", lua, url},
                  dir + "/wrk.log");
  int st = 0;
  waitpid(w, &st, 0);
  std::string out = read_all(dir + "/wrk.log");
  Result r;
  auto at = out.find("BENCH ");
  if (at == std::string::npos) {
    std::fprintf(stderr, "wrk failed:\n%s\n", out.c_str());
    return r;
  }
  long long reqs, dur_us, p99, errs;
  std::sscanf(out.c_str() + at, "BENCH %lld %lld %lld %lld", &reqs, &dur_us, &p99, &errs);
  r.records_per_s = static_cast<double>(reqs) * o.records / (static_cast<double>(dur_us) / 1e6);
  r.p99_ms = static_cast<double>(p99) / 1000;
  r.errors = errs;
  return r;
}

struct Mode {
  const char *name;
  const char *storage;  // service.storage body, or null
  const char *ack;
};

Result run_mode(const Options &o, const std::string &dir, const Mode &m) {
  const std::string data = (o.dir.empty() ? dir : o.dir) + "/data-" + m.name;
  fs::remove_all(data);
  const int port = free_port();
  std::string yaml = "service:\n  plugins_dir: [" + o.plugins + "]\n  log_level: warn\n";
  if (m.storage) yaml += "  storage:\n    path: " + data + "\n" + m.storage;
  yaml += "pipeline:\n  inputs:\n    - {name: http, ack: " + std::string(m.ack) +
          ", listen: '127.0.0.1:" + std::to_string(port) + "'}\n  outputs:\n    - {name: 'null'}\n";
  std::ofstream(dir + "/engine.yaml") << yaml;
  pid_t e = spawn({o.devmesh, "-c", dir + "/engine.yaml"}, dir + "/engine-" + m.name + ".log");
  for (int i = 0; i < 1000 && !port_open(port); i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  Result r = wrk_run(o, dir, "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs");
  kill(e, SIGTERM);
  int st = 0;
  waitpid(e, &st, 0);
  fs::remove_all(data);
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty()      ? 0
         : v.size() % 2 ? v[v.size() / 2]
                        : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--seconds")
      o.seconds = std::atoi(next().c_str());
    else if (a == "--runs")
      o.runs = std::atoi(next().c_str());
    else if (a == "--connections")
      o.connections = std::atoi(next().c_str());
    else if (a == "--records")
      o.records = std::atoi(next().c_str());
    else if (a == "--dir")
      o.dir = next();
    else if (a == "--devmesh")
      o.devmesh = next();
    else if (a == "--plugins")
      o.plugins = next();
    else if (a == "--wrk")
      o.wrk = next();
    else {
      std::printf(
          "usage: %s [--seconds N] [--runs N] [--connections N] [--records N]\n"
          "          [--dir DIR (segments; default a temp dir)] [--devmesh PATH]\n"
          "          [--plugins DIR] [--wrk PATH]\n",
          argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  if (access(o.wrk.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "wrk not found at %s (apt-get install wrk, or --wrk)\n", o.wrk.c_str());
    return 1;
  }
  std::string tmpl = (fs::temp_directory_path() / "bench-durability-XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());
  std::ofstream(dir + "/body.json") << make_body(o.records);
  const Mode modes[] = {
      {"memory", nullptr, "accepted"},
      {"interval", "    sync: interval\n", "accepted"},
      {"always", "    sync: always\n", "accepted"},
      {"durable", "    sync: always\n", "durable"},
  };
  std::vector<std::vector<double>> rps(4), p99(4);
  std::vector<long> errors(4, 0);
  for (int run = 0; run < o.runs; run++) {
    for (int m = 0; m < 4; m++) {  // interleaved: drift on a shared machine hits every mode
      Result r = run_mode(o, dir, modes[m]);
      rps[m].push_back(r.records_per_s);
      p99[m].push_back(r.p99_ms);
      errors[m] += r.errors;
    }
  }
  std::printf("http -> null, %d records per body, %d connections, %d s x %d runs (medians)\n",
              o.records, o.connections, o.seconds, o.runs);
  std::printf("segments in %s\n", o.dir.empty() ? dir.c_str() : o.dir.c_str());
  const double base = median(rps[0]);
  for (int m = 0; m < 4; m++) {
    const double v = median(rps[m]);
    std::printf("  %-9s %-44s %10.0f records/s  p99 %7.2f ms  ratio to memory %.2f%s\n",
                modes[m].name,
                m == 0   ? "(storage off: the ceiling)"
                : m == 1 ? "(sync: interval 1s, ack: accepted)"
                : m == 2 ? "(sync: always, group commit, ack: accepted)"
                         : "(sync: always, ack: durable)",
                v, median(p99[m]), base > 0 ? v / base : 0, errors[m] ? "  (wrk errors!)" : "");
  }
  std::printf("target: interval / memory >= 0.70: %s\n",
              base > 0 && median(rps[1]) / base >= 0.70 ? "met" : "NOT met");
  fs::remove_all(dir);
  return 0;
}
