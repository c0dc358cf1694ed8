// bench_cluster: issue 15's store-tier benchmark. The same records, in the same run, posted by
// several libcurl connections (one keep-alive connection per thread, prepared /ingest/logs
// bodies) to devmesh aggregators (http input, ack: delivered: a 2xx means the store took them):
//   - into the null output: the raw ceiling of the senders and one aggregator;
//   - into one ClickHouse node (tests/support/clickhouse.h, the clickhouse output);
//   - into one MariaDB (tests/support/mariadb.h, the mariadb output);
//   - into tools/cluster's ClickHouse cluster (2 shards x 2 replicas) behind HAProxy, with 1, 2
//     and 3 aggregators taking ingest (the others in HAProxy's maintenance state).
// Every aggregator is conf/cluster/aggregator.yaml.in; only the output differs. A run's figure is
// records / (first post to last 2xx), kept only once the store holds every record (count and
// distinct event_id); each path's figure is the median of --runs runs, the paths' runs
// interleaved (a shared machine's load changes). Also printed: the load average, the CPU (share of
// one core) the senders, the aggregators and the store used (on the cluster: ZooKeeper, the 4
// ClickHouse servers and HAProxy), peak RSS, the ratio ClickHouse node / MariaDB (target >= 10x)
// and the cluster's scaling 2/1 and 3/1.
//   bench_cluster [--records N] [--body N] [--batch N] [--connections N] [--runs N]
//                 [--aggregators 1,2,3]
// The single-node outputs are set as conf/cluster sets the cluster's (clickhouse: workers 2,
// batch_size 10000; mariadb: workers 2, its default batch_size); --batch N sets both batch_sizes.
#include <curl/curl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../common/bench_support.h"
#include "clickhouse.h"
#include "mariadb.h"

namespace devmesh {
namespace {

using Clock = std::chrono::steady_clock;
using test::ClickHouse;
using test::MariaDb;
using test::Process;
using test::TempDir;

struct Options {
  long records = 200000;
  long body = 1000;  // records per POST
  long batch = 0;    // the single-node outputs' batch_size; 0: as conf/cluster sets them
  int connections = 16;
  int runs = 3;
  std::vector<int> aggregators = {1, 2, 3};
};

[[noreturn]] void die(const std::string &why) {
  std::fprintf(stderr, "bench_cluster: %s\n", why.c_str());
  std::exit(1);
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string load_average() {
  std::string s = test::read_file("/proc/loadavg");
  std::istringstream in(s);
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// ---- the records --------------------------------------------------------------------------

// o.records records shaped like the prototype's journald records, in bodies of o.body. Every
// run posts the same records under its own service name, so that each run's rows are told apart
// in a store that keeps the previous runs' (and each record's derived event_id is new).
std::vector<std::string> make_bodies(const Options &o, const std::string &service) {
  std::vector<std::string> bodies;
  char ts[32], rec[768];
  const std::time_t now = std::time(nullptr);
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", std::gmtime(&now));
  for (long first = 0; first < o.records; first += o.body) {
    std::string b = "{\"logs\":[";
    const long last = std::min(o.records, first + o.body);
    for (long i = first; i < last; ++i) {
      const int n = std::snprintf(
          rec, sizeof rec,
          "%s{\"timestamp\":\"%s.%06ldZ\",\"source\":\"journald\",\"service\":\"%s\","
          "\"host\":\"dev-services\",\"level\":\"INFO\",\"message\":\"level=info "
          "ts=2025-11-28T19:55:40.431Z caller=table_manager.go:136 msg=\\\"uploading tables\\\" "
          "index=%ld\",\"meta_json\":{\"pid\":\"493414\",\"comm\":\"loki-linux-amd6\","
          "\"facility\":\"3\"}}",
          i == first ? "" : ",", ts, i % 1000000, service.c_str(), i);
      b.append(rec, static_cast<size_t>(n));
    }
    bodies.push_back(b + "]}");
  }
  return bodies;
}

size_t discard(char *, size_t size, size_t n, void *) {
  return size * n;
}

struct SendResult {
  double seconds = 0;
  long retried = 0;  // 503 (queues full) or 502/504 from HAProxy, posted again
};

// o.connections threads, one keep-alive connection each, post the bodies to url; a body answered
// by anything but 200 is posted again (up to 1000 times). Dies when one is never taken.
SendResult send_all(const Options &o, const std::vector<std::string> &bodies,
                    const std::string &url) {
  std::atomic<size_t> next{0};
  std::atomic<long> retried{0}, failed{0};
  std::string last_error;
  auto sender = [&] {
    CURL *c = curl_easy_init();
    curl_slist *h = curl_slist_append(nullptr, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    for (size_t i; (i = next.fetch_add(1)) < bodies.size();) {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, bodies[i].data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(bodies[i].size()));
      for (int tries = 0;; ++tries) {
        long code = 0;
        const CURLcode rc = curl_easy_perform(c);
        if (rc == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code == 200) break;
        if (tries < 1000 && (rc != CURLE_OK || code == 502 || code == 503 || code == 504)) {
          ++retried;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        if (failed++ == 0)
          last_error = "HTTP " + std::to_string(code) + " (" + curl_easy_strerror(rc) + ")";
        break;
      }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < o.connections; ++i) threads.emplace_back(sender);
  for (auto &t : threads) t.join();
  SendResult r{seconds_since(t0), retried.load()};
  if (failed)
    die(std::to_string(failed.load()) + " bodies not taken by " + url + ": " + last_error);
  return r;
}

// ---- the stores' answers ------------------------------------------------------------------

size_t collect(char *p, size_t size, size_t n, void *arg) {
  static_cast<std::string *>(arg)->append(p, size * n);
  return size * n;
}

// One ClickHouse query over HTTP; the answer (TabSeparated), or "" on any error.
std::string ch_query(const std::string &url, const std::string &sql) {
  std::string out;
  CURL *c = curl_easy_init();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, sql.c_str());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
  long code = 0;
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  return code == 200 ? out : "";
}

struct Stored {
  long long rows = -1, distinct = -1;
};

Stored parse_two(const std::string &tsv) {
  Stored s;
  if (!tsv.empty()) std::sscanf(tsv.c_str(), "%lld %lld", &s.rows, &s.distinct);
  return s;
}

// Waits (60 s at most: a replica may lag) until count() reaches n and the distinct event_ids are
// n; dies when they are not, or when a record is there twice.
void check_stored(const std::string &what, long n, const std::function<Stored()> &ask) {
  Stored s;
  test::wait_until(
      [&] {
        s = ask();
        return s.rows >= n && s.distinct >= n;
      },
      std::chrono::seconds(60));
  if (s.rows != n || s.distinct != n)
    die(what + ": the store holds " + std::to_string(s.rows) + " rows, " +
        std::to_string(s.distinct) + " distinct event_ids, not " + std::to_string(n));
}

// ---- aggregators --------------------------------------------------------------------------

// conf/cluster/aggregator.yaml.in with `output` as its output block.
std::string aggregator_yaml(int port, int http_port, const std::string &output) {
  std::string text = test::read_file(DEVMESH_BENCH_SOURCE_DIR "/conf/cluster/aggregator.yaml.in");
  if (text.empty()) die("cannot read conf/cluster/aggregator.yaml.in");
  const std::map<std::string, std::string> fill = {{"INDEX", "1"},
                                                   {"PORT", std::to_string(port)},
                                                   {"HTTP_PORT", std::to_string(http_port)},
                                                   {"PLUGINS_DIR", DEVMESH_BENCH_PLUGIN_DIR},
                                                   {"OUTPUT", "bench"},
                                                   {"OUTPUT_BLOCK", output}};
  for (const auto &[name, value] : fill)
    for (size_t at; (at = text.find("@" + name + "@")) != std::string::npos;)
      text.replace(at, name.size() + 2, value);
  return text;
}

// The child of this process whose command line names `arg` (tests/support/clickhouse.h keeps its
// server's pid to itself); -1 when there is none.
pid_t child_with(const std::string &arg) {
  const std::string parent = std::to_string(getpid());
  for (const auto &e : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = test::read_file("/proc/" + pid + "/stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream in(stat.substr(close + 2));
    std::string state, ppid;
    in >> state >> ppid;
    if (ppid == parent &&
        test::read_file("/proc/" + pid + "/cmdline").find(arg) != std::string::npos)
      return std::atoi(pid.c_str());
  }
  return -1;
}

// One measured path: its runs' records/s, and the share of one core the senders (this
// process), the aggregators and the store's servers used meanwhile: which one was the bottleneck.
struct Figure {
  std::vector<double> rates, sender_cpu, aggregator_cpu, store_cpu;
  long retried = 0;
};

void print_figure(const std::string &what, const Figure &f, const std::string &extra) {
  std::string runs;
  for (double r : f.rates) runs += (runs.empty() ? "" : ", ") + std::to_string(std::lround(r));
  std::printf(
      "%-42s %8.0f records/s  (runs: %s; retried %ld; CPU: senders %.0f%%, "
      "aggregators %.0f%%, store %.0f%%; load %s)%s\n",
      what.c_str(), bench::median(f.rates), runs.c_str(), f.retried,
      bench::median(f.sender_cpu) * 100, bench::median(f.aggregator_cpu) * 100,
      bench::median(f.store_cpu) * 100, load_average().c_str(), extra.c_str());
}

// Posts the records of one run under `service` to url, then checks the store with ask (unless
// none); adds the run to f.
void measure(const Options &o, const std::string &what, const std::string &service,
             const std::string &url, const std::vector<pid_t> &aggregators,
             const std::vector<pid_t> &store, const std::function<Stored(const std::string &)> &ask,
             Figure &f) {
  const auto bodies = make_bodies(o, service);
  double agg0 = 0, agg1 = 0, store0 = 0, store1 = 0;
  for (pid_t p : aggregators) agg0 += bench::process_cpu_s(p);
  for (pid_t p : store) store0 += bench::process_cpu_s(p);
  const double own0 = bench::rusage_cpu_s(RUSAGE_SELF);
  const SendResult r = send_all(o, bodies, url);
  const double own1 = bench::rusage_cpu_s(RUSAGE_SELF);
  for (pid_t p : aggregators) agg1 += bench::process_cpu_s(p);
  for (pid_t p : store) store1 += bench::process_cpu_s(p);
  if (ask) check_stored(what + ", " + service, o.records, [&] { return ask(service); });
  f.rates.push_back(static_cast<double>(o.records) / r.seconds);
  f.sender_cpu.push_back((own1 - own0) / r.seconds);
  f.aggregator_cpu.push_back((agg1 - agg0) / r.seconds);
  f.store_cpu.push_back((store1 - store0) / r.seconds);
  f.retried += r.retried;
}

// An aggregator of its own (conf/cluster/aggregator.yaml.in with `output`), healthy.
struct Aggregator {
  std::unique_ptr<Process> proc;
  std::string url;

  Aggregator(const TempDir &d, const std::string &name, const std::string &output) {
    const int port = test::free_port(), http_port = test::free_port();
    test::write_file(d / (name + ".yaml"), aggregator_yaml(port, http_port, output));
    proc = std::make_unique<Process>(
        std::vector<std::string>{DEVMESH_BENCH_BINARY, "-c", d / (name + ".yaml")}, d.path(), name);
    url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
    std::string body;
    const std::string health = "http://127.0.0.1:" + std::to_string(http_port) + "/health";
    if (!test::wait_until(
            [&] { return !proc->running() || test::http_get(health, &body, d.path()) == 200; },
            std::chrono::seconds(30)) ||
        !proc->running())
      die("the " + name + " aggregator did not come up: " + proc->err());
  }
  // Its peak RSS (MiB), once stopped with SIGTERM.
  long stop(const std::string &name) {
    const long mib = bench::peak_rss_kib(proc->pid()) / 1024;
    proc->kill(SIGTERM);
    if (proc->wait_exit(std::chrono::minutes(2)) != 0)
      die("the " + name + " aggregator did not exit cleanly: " + proc->err());
    return mib;
  }
};

// ---- the cluster --------------------------------------------------------------------------

// tools/cluster ARGS... --dir D; dies on failure with its output.
void cluster(const std::vector<std::string> &args, const TempDir &d, const std::string &dir) {
  std::vector<std::string> argv = {DEVMESH_BENCH_SOURCE_DIR "/tools/cluster"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"--dir", dir});
  Process p(argv, d.path(), "cluster-" + args[0]);
  if (p.wait_exit(std::chrono::minutes(5)) != 0)
    die("tools/cluster " + args[0] + " failed:\n" + p.out() + p.err());
}

std::map<std::string, std::string> read_env(const std::string &path) {
  std::map<std::string, std::string> env;
  std::istringstream in(test::read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (line.empty() || line[0] == '#' || eq == std::string::npos) continue;
    env[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return env;
}

// One command to HAProxy's runtime API (the admin socket); its answer.
std::string haproxy(const std::string &socket_path, const std::string &command) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket_path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    close(fd);
    die("cannot connect to HAProxy's admin socket " + socket_path);
  }
  const std::string line = command + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    die("cannot write to HAProxy's admin socket");
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  close(fd);
  return out;
}

// Only aggregators 1..n take ingest; returns once HAProxy sees them UP.
void serve_with(const std::string &socket_path, int n, int started) {
  for (int i = 1; i <= started; ++i)
    haproxy(socket_path, "set server aggregators/aggregator-" + std::to_string(i) + " state " +
                             (i <= n ? "ready" : "maint"));
  const bool up = test::wait_until(
      [&] {
        const std::string stat = haproxy(socket_path, "show stat");
        for (int i = 1; i <= n; ++i) {
          const std::string key = "aggregators,aggregator-" + std::to_string(i) + ",";
          const auto at = stat.find(key);
          if (at == std::string::npos) return false;
          const std::string row = stat.substr(at, stat.find('\n', at) - at);
          if (row.find(",UP,") == std::string::npos && row.find(",UP ") == std::string::npos)
            return false;
        }
        return true;
      },
      std::chrono::seconds(30));
  if (!up) die("HAProxy does not see aggregators 1.." + std::to_string(n) + " UP");
}

// Stops the cluster whatever happens after its start.
struct ClusterGuard {
  const TempDir &d;
  std::string dir;
  ~ClusterGuard() {
    Process p({DEVMESH_BENCH_SOURCE_DIR "/tools/cluster", "stop", "--dir", dir}, d.path(),
              "cluster-stop");
    p.wait_exit(std::chrono::minutes(3));
  }
};

int run(const Options &o) {
  if (!ClickHouse::installed()) {
    std::fprintf(stderr, "%s is not installed (tools/setup)\n", ClickHouse::kBinary);
    return 2;
  }
  curl_global_init(CURL_GLOBAL_ALL);
  setvbuf(stdout, nullptr, _IOLBF, 0);  // each line as it comes, also into a pipe
  TempDir d;
  std::printf(
      "bench_cluster: %ld records per run (%ld per body, %d connections), median of %d "
      "runs; %ld cores; load average %s\n",
      o.records, o.body, o.connections, o.runs, sysconf(_SC_NPROCESSORS_ONLN),
      load_average().c_str());
  std::fflush(stdout);

  // The single-node paths, their runs interleaved (null, ClickHouse, MariaDB, then again): a
  // shared machine's load changes from one minute to the next.
  ClickHouse ch(d.path());
  std::string err;
  if (!ch.start(&err)) die(err);
  const std::string ch_sql = ch.url() + "/?user=default";
  if (parse_two(ch_query(ch_sql, "SELECT 0, 0")).rows != 0) die("ClickHouse answers no query");
  // MariaDB as tools/cluster --store mariadb runs it (512M buffer pool, the redo log flushed
  // once a second).
  MariaDb::Options mo;
  mo.buffer_pool = "512M";
  MariaDb db(d.path(), mo);
  if (!db.start(&err)) die(err);

  struct Path {
    std::string name, title;
    Aggregator aggregator;
    std::function<Stored(const std::string &)> ask;
    std::vector<pid_t> store;
    Figure f;
  };
  // Each output as conf/cluster/output-*.yaml.in sets it for the cluster's aggregators.
  const std::string ch_batch = ", batch_size: " + std::to_string(o.batch ? o.batch : 10000),
                    mdb_batch = o.batch ? ", batch_size: " + std::to_string(o.batch) : "";
  std::vector<Path> paths;
  paths.push_back({"null",
                   "senders -> 1 aggregator -> null (ceiling)",
                   Aggregator(d, "null", "    - {name: null, match: '*'}"),
                   nullptr,
                   {},
                   {}});
  paths.push_back({"clickhouse",
                   "1 aggregator -> 1 ClickHouse node",
                   Aggregator(d, "clickhouse",
                              "    - {name: clickhouse, match: '*', url: '" + ch.url() +
                                  "', user: devmesh, password: " + ClickHouse::kPassword +
                                  ", database: devmesh, table: log_events, workers: 2" + ch_batch +
                                  ", dead_letter_path: " + (d / "clickhouse-dead.ndjson") + "}"),
                   [&](const std::string &service) {
                     return parse_two(
                         ch_query(ch_sql,
                                  "SELECT count(), uniqExact(event_id) FROM devmesh.log_events "
                                  "WHERE service = '" +
                                      service + "'"));
                   },
                   {child_with(d / "clickhouse/config.xml")},
                   {}});
  paths.push_back(
      {"mariadb",
       "1 aggregator -> 1 MariaDB",
       Aggregator(d, "mariadb",
                  "    - {name: mariadb, match: '*', socket: " + db.socket() +
                      ", password: " + MariaDb::kPassword + ", database: devmesh, workers: 2" +
                      mdb_batch + ", dead_letter_path: " + (d / "mariadb-dead.ndjson") + "}"),
       [&](const std::string &service) {
         std::string out;
         db.sql("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM log_events WHERE service = '" +
                    service + "'",
                &out);
         return parse_two(out);
       },
       {db.pid()},
       {}});
  for (int run = 1; run <= o.runs; ++run)
    for (auto &p : paths)
      measure(o, p.title, p.name + "-r" + std::to_string(run), p.aggregator.url,
              {p.aggregator.proc->pid()}, p.store, p.ask, p.f);
  for (auto &p : paths) {
    std::string extra =
        "; aggregator peak RSS " + std::to_string(p.aggregator.stop(p.name)) + " MiB";
    if (p.name == "mariadb")
      extra += ", mariadbd " + std::to_string(bench::peak_rss_kib(db.pid()) / 1024) + " MiB";
    print_figure(p.title, p.f, extra);
  }
  db.stop();
  ch.stop();
  std::vector<double> ratios;
  for (int run = 0; run < o.runs; ++run)
    ratios.push_back(paths[1].f.rates[run] / paths[2].f.rates[run]);
  const double ratio = bench::median(paths[1].f.rates) / bench::median(paths[2].f.rates);
  std::string per_run;
  for (double r : ratios) per_run += (per_run.empty() ? "" : ", ") + std::to_string(r).substr(0, 4);
  std::printf("ratio 1 ClickHouse node / 1 MariaDB: %.1fx (each run: %s; target >= 10x: %s)\n",
              ratio, per_run.c_str(), ratio >= 10 ? "met" : "NOT met");

  // The cluster, started once with the most aggregators asked for; HAProxy's maintenance state
  // keeps the others out of rotation.
  const int most = *std::max_element(o.aggregators.begin(), o.aggregators.end());
  const std::string dir = d / "cluster";
  const auto t0 = Clock::now();
  cluster({"start", "--aggregators", std::to_string(most), "--devmesh", DEVMESH_BENCH_BINARY,
           "--plugins-dir", DEVMESH_BENCH_PLUGIN_DIR},
          d, dir);
  ClusterGuard guard{d, dir};
  auto env = read_env(dir + "/endpoints.env");
  std::printf("tools/cluster start (ZooKeeper, ClickHouse 2x2, HAProxy, %d aggregators): %.0f s\n",
              most, seconds_since(t0));
  const std::string ch_url = env["CLICKHOUSE_URL"], table = env["CLUSTER_TABLE"];
  if (ch_url.empty() || table.empty() || env["HAPROXY_ADMIN_SOCKET"].empty())
    die(dir + "/endpoints.env lacks CLICKHOUSE_URL, CLUSTER_TABLE or HAPROXY_ADMIN_SOCKET");
  std::vector<pid_t> aggregator_pids;
  for (int i = 1; i <= most; ++i)
    aggregator_pids.push_back(
        std::atoi(test::read_file(dir + "/aggregator-" + std::to_string(i) + "/pid").c_str()));
  std::vector<pid_t> server_pids;
  for (const char *piece : {"zookeeper", "clickhouse-s1r1", "clickhouse-s1r2", "clickhouse-s2r1",
                            "clickhouse-s2r2", "haproxy"})
    server_pids.push_back(std::atoi(test::read_file(dir + "/" + piece + "/pid").c_str()));
  std::map<int, Figure> per_count;
  for (int run = 1; run <= o.runs; ++run)
    for (int n : o.aggregators) {
      serve_with(env["HAPROXY_ADMIN_SOCKET"], n, most);
      measure(
          o, "cluster", "cluster" + std::to_string(n) + "-r" + std::to_string(run),
          env["DEVMESH_INGEST_URL"], aggregator_pids, server_pids,
          [&](const std::string &service) {
            return parse_two(ch_query(ch_url, "SELECT count(), uniqExact(event_id) FROM " + table +
                                                  " WHERE service = '" + service + "'"));
          },
          per_count[n]);
    }
  std::map<int, double> cluster_rate;
  for (int n : o.aggregators) {
    cluster_rate[n] = bench::median(per_count[n].rates);
    print_figure(
        "cluster (2x2) behind HAProxy, " + std::to_string(n) + " aggregator" + (n == 1 ? "" : "s"),
        per_count[n], "");
  }
  std::string peaks, ch_peaks;
  for (int i = 1; i <= most; ++i) {
    const pid_t pid =
        std::atoi(test::read_file(dir + "/aggregator-" + std::to_string(i) + "/pid").c_str());
    peaks += (i > 1 ? ", " : "") + std::to_string(bench::peak_rss_kib(pid) / 1024);
  }
  for (const char *r : {"s1r1", "s1r2", "s2r1", "s2r2"}) {
    const pid_t pid =
        std::atoi(test::read_file(dir + "/clickhouse-" + std::string(r) + "/pid").c_str());
    ch_peaks += (ch_peaks.empty() ? "" : ", ") + std::to_string(bench::peak_rss_kib(pid) / 1024);
  }
  std::printf("cluster peak RSS: aggregators %s MiB; clickhouse-server %s MiB\n", peaks.c_str(),
              ch_peaks.c_str());
  if (cluster_rate.count(1))
    for (int n : o.aggregators)
      if (n > 1)
        std::printf("cluster scaling %d/1 aggregators: %.2fx\n", n,
                    cluster_rate[n] / cluster_rate[1]);
  std::printf("load average at the end: %s\n", load_average().c_str());
  return 0;
}

}  // namespace
}  // namespace devmesh

int main(int argc, char **argv) {
  devmesh::Options o;
  auto usage = [&] {
    std::fprintf(stderr,
                 "usage: %s [--records N] [--body N] [--batch N] [--connections N] [--runs N] "
                 "[--aggregators 1,2,3]\n",
                 argv[0]);
    return 2;
  };
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return usage();
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--records") {
      o.records = std::atol(v.c_str());
    } else if (k == "--body") {
      o.body = std::atol(v.c_str());
    } else if (k == "--batch") {
      o.batch = std::atol(v.c_str());
    } else if (k == "--connections") {
      o.connections = std::atoi(v.c_str());
    } else if (k == "--runs") {
      o.runs = std::atoi(v.c_str());
    } else if (k == "--aggregators") {
      o.aggregators.clear();
      std::stringstream s(v);
      std::string n;
      while (std::getline(s, n, ',')) o.aggregators.push_back(std::atoi(n.c_str()));
    } else {
      return usage();
    }
  }
  if (o.records < 1 || o.body < 1 || o.connections < 1 || o.runs < 1 || o.aggregators.empty() ||
      *std::min_element(o.aggregators.begin(), o.aggregators.end()) < 1)
    return usage();
  return devmesh::run(o);
}
