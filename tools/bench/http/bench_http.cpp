// bench_http: the http input and http_forward output through the real devmesh binary.
//  1. http -> null: wrk posts 500-record JSON bodies over 4 connections (closed loop): records/s,
//     p50/p99 request latency, the engine's peak RSS and CPU per request.
//  2. The raw ceiling in the same run: the same bodies to a bare libh2o server on libuv (this
//     program with --raw-server) that receives each body whole and answers without parsing.
//  3. p99 at half the load of 1: a paced libcurl-multi client, latency counted from each
//     request's scheduled time (so a stalled server cannot hide its queueing).
//  4. sidecar -> aggregator: dummy -> http_forward -> devmesh http input -> null, records/s and
//     both peak RSS, once per compression (none, gzip, zstd: interleaved in each run, so their
//     ratio to none is a same-run figure), and the CPU each side spends per record (steadier than
//     records/s on a shared machine) and the load average as each run starts; next to it the
//     generation ceiling (dummy -> null in one process). --forward-only runs only this part;
//     --forward-ack delivered --forward-sink sqlite makes the aggregator a receiver that answers
//     late (each request waits for its commit), and --forward-in-flight N keeps N requests per
//     sidecar worker open. --forward-link-mbit N runs it all in a network namespace of its own
//     whose loopback carries N Mbit/s (tc tbf; needs root and iproute2): a LAN between sidecar
//     and aggregator, where compression decides how many records fit through the wire.
// Medians of --runs runs are printed. Needs wrk (Debian package) for 1 and 2.
#ifndef H2O_USE_LIBUV
#define H2O_USE_LIBUV 1
#endif
#include <curl/curl.h>
#include <h2o.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "bench_support.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef DEVMESH_BENCH_BINARY
#define DEVMESH_BENCH_BINARY ""
#endif
#ifndef DEVMESH_BENCH_PLUGIN_DIR
#define DEVMESH_BENCH_PLUGIN_DIR ""
#endif

extern char **environ;

namespace devmesh {
namespace {

namespace fs = std::filesystem;
using bench::Child;
using bench::free_port;
using bench::median;
using bench::percentile;
using bench::port_open;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string devmesh = DEVMESH_BENCH_BINARY, plugins = DEVMESH_BENCH_PLUGIN_DIR;
  std::string wrk = "/usr/bin/wrk";
  int records = 500;  // per body
  int connections = 4;
  int seconds = 8;  // per load run
  int runs = 3;
  long forward_count = 2000000;
  int forward_workers = 4;
  int forward_batch = 1000;
  // The sidecar's; "default" leaves the key out (the engine's default, 40MiB).
  std::string forward_queue_limit = "16MiB";
  // Each run forwards once per entry, in this order: none, gzip (sent as `gzip: true`, which every
  // build takes) and zstd.
  std::vector<std::string> forward_compressions = {"none", "gzip", "zstd"};
  bool forward_only = false;
  // The aggregator: its http input's ack (accepted answers at once; delivered waits for its
  // output, a receiver that answers late) and its output (null, or sqlite: a commit per flush).
  std::string forward_ack = "accepted", forward_sink = "null";
  int forward_in_flight = 1;  // the sidecar's in_flight (1: the key is left out, as older builds
                              // do not know it)
  int link_mbit = 0;          // > 0: everything runs on a loopback shaped to this rate
};

void usage(const char *argv0) {
  std::printf(
      "usage: %s [--seconds N] [--runs N] [--records N] [--connections N]\n"
      "          [--forward-count N] [--forward-workers N] [--forward-batch N] [--forward-gzip]\n"
      "          [--forward-queue-limit SIZE|default] [--forward-compressions none,gzip,zstd]\n"
      "          [--forward-only] [--forward-ack accepted|delivered] [--forward-sink "
      "null|sqlite|'{YAML}']\n"
      "          [--forward-in-flight N] [--forward-link-mbit N]\n"
      "          [--devmesh PATH] [--plugins DIR] [--wrk PATH]\n"
      "       %s --raw-server PORT   (the raw ceiling: a bare libh2o receiver)\n"
      "       %s [--seconds N] [--records N] [--connections N] --paced URL RATE\n",
      argv0, argv0, argv0);
}

// ---- the raw ceiling: a bare libh2o receiver ----------------------------------------------------

struct RawServer {
  uv_loop_t loop;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  h2o_accept_ctx_t accept_ctx{};
  uv_tcp_t listener;
};

int raw_on_req(h2o_handler_t *, h2o_req_t *req) {
  // The body is in req->entity, received whole, as the engine's server gets it; not parsed.
  static const char kBody[] = "{\"accepted\":0}";
  req->res.status = 200;
  req->res.reason = "OK";
  h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr,
                 H2O_STRLIT("application/json"));
  req->res.content_length = sizeof kBody - 1;
  h2o_send_inline(req, kBody, sizeof kBody - 1);
  return 0;
}

void raw_on_connection(uv_stream_t *listener, int status) {
  if (status != 0) return;
  auto *srv = static_cast<RawServer *>(listener->data);
  auto *conn = static_cast<uv_tcp_t *>(h2o_mem_alloc(sizeof(uv_tcp_t)));
  uv_tcp_init(listener->loop, conn);
  if (uv_accept(listener, reinterpret_cast<uv_stream_t *>(conn)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t *>(conn), reinterpret_cast<uv_close_cb>(free));
    return;
  }
  uv_tcp_nodelay(conn, 1);
  h2o_socket_t *sock = h2o_uv_socket_create(reinterpret_cast<uv_stream_t *>(conn),
                                            reinterpret_cast<uv_close_cb>(free));
  h2o_accept(&srv->accept_ctx, sock);
}

int raw_server(int port) {
  signal(SIGPIPE, SIG_IGN);
  static RawServer srv;
  uv_loop_init(&srv.loop);
  h2o_config_init(&srv.config);
  srv.config.max_request_entity_size = 64 << 20;
  srv.config.http1.upgrade_to_http2 = 0;
  h2o_hostconf_t *host =
      h2o_config_register_host(&srv.config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
  h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
  h2o_handler_t *handler = h2o_create_handler(path, sizeof(h2o_handler_t));
  handler->on_req = raw_on_req;
  h2o_context_init(&srv.ctx, &srv.loop, &srv.config);
  srv.accept_ctx.ctx = &srv.ctx;
  srv.accept_ctx.hosts = srv.config.hosts;
  uv_tcp_init(&srv.loop, &srv.listener);
  srv.listener.data = &srv;
  sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", port, &addr);
  if (uv_tcp_bind(&srv.listener, reinterpret_cast<sockaddr *>(&addr), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t *>(&srv.listener), 511, raw_on_connection) != 0) {
    std::fprintf(stderr, "raw server: cannot listen on 127.0.0.1:%d\n", port);
    return 1;
  }
  return uv_run(&srv.loop, UV_RUN_DEFAULT);
}

// ---- load
// -----------------------------------------------------------------------------------------

using LoadResult = bench::WrkResult;

// wrk, closed loop: as fast as `connections` connections go.
LoadResult wrk_run(const Options &o, const std::string &dir, const std::string &url) {
  return bench::wrk_post(o.wrk, o.connections, o.seconds, dir, dir + "/body.json", url);
}

// libcurl multi, open loop: request i is due at start + i/rate on the next free connection;
// its latency runs from when it was due, so time spent waiting for a connection counts.
LoadResult paced_run(const Options &o, const std::string &url, const std::string &body,
                     double rate) {
  struct Conn {
    CURL *easy;
    Clock::time_point due;
  };
  CURLM *multi = curl_multi_init();
  curl_slist *h = curl_slist_append(nullptr, "Content-Type: application/json");
  h = curl_slist_append(h, "Expect:");
  auto sink = +[](char *, size_t s, size_t n, void *) { return s * n; };
  std::vector<Conn> conns(static_cast<size_t>(o.connections));
  std::vector<Conn *> idle;
  for (auto &c : conns) {
    c.easy = curl_easy_init();
    curl_easy_setopt(c.easy, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c.easy, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c.easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    curl_easy_setopt(c.easy, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c.easy, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c.easy, CURLOPT_PRIVATE, &c);
    // No signal juggling around every call.
    curl_easy_setopt(c.easy, CURLOPT_NOSIGNAL, 1L);
    idle.push_back(&c);
  }
  std::vector<double> lat_ms;
  LoadResult r;
  const auto start = Clock::now();
  const auto end = start + std::chrono::seconds(o.seconds);
  const auto interval = std::chrono::duration<double>(1.0 / rate);
  long issued = 0;
  int running = 0;
  for (;;) {
    const auto now = Clock::now();
    // Start every request that is due, while a connection is free.
    while (!idle.empty()) {
      auto due = start + std::chrono::duration_cast<Clock::duration>(interval *
                                                                     static_cast<double>(issued));
      if (due > now || due >= end) break;
      Conn *c = idle.back();
      idle.pop_back();
      c->due = due;
      ++issued;
      curl_multi_add_handle(multi, c->easy);
    }
    curl_multi_perform(multi, &running);
    int left;
    while (CURLMsg *m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      Conn *c;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, reinterpret_cast<char **>(&c));
      long code = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
      if (m->data.result != CURLE_OK || code != 200) ++r.errors;
      lat_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - c->due).count());
      curl_multi_remove_handle(multi, m->easy_handle);
      idle.push_back(c);
    }
    if (Clock::now() >= end && running == 0 && idle.size() == conns.size()) break;
    // Sleep until the next request is due or a socket is ready, to the microsecond: no busy
    // loop (the client shares the cores with the server) and no millisecond rounding (a late
    // send would count as server latency).
    auto wake = Clock::now() + std::chrono::milliseconds(100);
    if (!idle.empty()) {
      wake = std::min(wake, start + std::chrono::duration_cast<Clock::duration>(
                                        interval * static_cast<double>(issued)));
    }
    long curl_ms = -1;
    curl_multi_timeout(multi, &curl_ms);
    if (curl_ms >= 0) wake = std::min(wake, Clock::now() + std::chrono::milliseconds(curl_ms));
    const auto remaining = std::max(Clock::duration::zero(), wake - Clock::now());
    const auto left_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(remaining).count();
    timespec ts{static_cast<time_t>(left_ns / 1000000000), static_cast<long>(left_ns % 1000000000)};
    fd_set rd, wr, ex;
    FD_ZERO(&rd);
    FD_ZERO(&wr);
    FD_ZERO(&ex);
    int maxfd = -1;
    curl_multi_fdset(multi, &rd, &wr, &ex, &maxfd);
    if (maxfd >= 0) {
      pselect(maxfd + 1, &rd, &wr, &ex, &ts, nullptr);
    } else {
      nanosleep(&ts, nullptr);
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  for (auto &c : conns) curl_easy_cleanup(c.easy);
  curl_slist_free_all(h);
  curl_multi_cleanup(multi);
  std::sort(lat_ms.begin(), lat_ms.end());
  r.requests = static_cast<long>(lat_ms.size());
  r.requests_per_s = static_cast<double>(r.requests) / secs;
  r.p50_ms = percentile(lat_ms, 50);
  r.p99_ms = percentile(lat_ms, 99);
  return r;
}

// ---- the runs
// -------------------------------------------------------------------------------------

std::string head(const Options &o) {
  return "service:\n  plugins_dir: [" + o.plugins + "]\n  log_level: warn\npipeline:\n";
}

Child start_engine(const Options &o, const std::string &dir, const std::string &name,
                   const std::string &yaml, int wait_port) {
  std::ofstream(dir + "/" + name + ".yaml") << yaml;
  Child c = Child::spawn({o.devmesh, "-c", dir + "/" + name + ".yaml"}, dir + "/" + name + ".log");
  auto end = Clock::now() + std::chrono::seconds(10);
  while (wait_port && !port_open(wait_port) && Clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return c;
}

struct IngestRun {
  LoadResult load;
  long peak_rss_kib = 0;
  double cpu_us_per_request = 0;
};

IngestRun ingest_run(const Options &o, const std::string &dir) {
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  Child e = start_engine(o, dir, "ingest",
                         head(o) + "  inputs:\n    - {name: http, listen: '" + listen +
                             "'}\n  outputs:\n    - {name: 'null'}\n",
                         port);
  IngestRun r;
  const double cpu0 = e.cpu_s();
  r.load = wrk_run(o, dir, "http://" + listen + "/ingest/logs");
  r.cpu_us_per_request =
      r.load.requests ? (e.cpu_s() - cpu0) * 1e6 / static_cast<double>(r.load.requests) : 0;
  r.peak_rss_kib = e.hwm_kib();
  e.stop();
  return r;
}

LoadResult raw_run(const Options &o, const std::string &dir, const std::string &self) {
  const int port = free_port();
  Child s = Child::spawn({self, "--raw-server", std::to_string(port)}, dir + "/raw.log");
  auto end = Clock::now() + std::chrono::seconds(10);
  while (!port_open(port) && Clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  LoadResult r = wrk_run(o, dir, "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs");
  s.stop();
  return r;
}

struct HalfRun {
  LoadResult load;
  long peak_rss_kib = 0;
};

HalfRun half_run(const Options &o, const std::string &dir, const std::string &body, double rate) {
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  Child e = start_engine(o, dir, "half",
                         head(o) + "  inputs:\n    - {name: http, listen: '" + listen +
                             "'}\n  outputs:\n    - {name: 'null'}\n",
                         port);
  HalfRun r;
  r.load = paced_run(o, "http://" + listen + "/ingest/logs", body, rate);
  r.peak_rss_kib = e.hwm_kib();
  e.stop();
  return r;
}

struct ForwardRun {
  double records_per_s = 0;
  long sidecar_rss_kib = 0, aggregator_rss_kib = 0;
  // CPU per forwarded record: on a machine shared with other work, records/s and its ratios
  // swing with the neighbours' load; the CPU each side spends per record does much less.
  double sidecar_cpu_us = 0, aggregator_cpu_us = 0;
  double load_before = 0;  // the 1-minute load average as the run started: how shared it was
  bool ok = false;
};

double load_average() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : 0;
}

ForwardRun forward_run(const Options &o, const std::string &dir, const std::string &compression) {
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  fs::remove(dir + "/agg.db");
  fs::remove(dir + "/agg.db-wal");
  fs::remove(dir + "/agg.db-shm");
  // Or any output as a YAML mapping: a receiver of a fixed latency is e.g. the test plugin flaky
  // with `delay` (--plugins 'BUILD/plugins, BUILD/tests/plugins').
  const std::string sink = o.forward_sink == "sqlite" ? "{name: sqlite, path: " + dir + "/agg.db}"
                           : o.forward_sink.rfind('{', 0) == 0 ? o.forward_sink
                                                               : "{name: 'null'}";
  Child agg = start_engine(o, dir, "aggregator",
                           head(o) + "  inputs:\n    - {name: http, listen: '" + listen +
                               "', ack: " + o.forward_ack + "}\n  outputs:\n    - " + sink + "\n",
                           port);
  const std::string n = std::to_string(o.forward_count), b = std::to_string(o.forward_batch);
  std::ofstream(dir + "/sidecar.yaml")
      << "service:\n  plugins_dir: [" << o.plugins
      << "]\n  log_level: warn\n  exit_when_done: true\n"
      << "pipeline:\n  inputs:\n    - {name: dummy, rate: 0, count: " << n << ", batch: " << b
      << "}\n  outputs:\n    - {name: http_forward, url: 'http://" << listen
      << "/ingest/logs', workers: " << o.forward_workers << ", batch_size: " << b
      << (o.forward_queue_limit == "default" ? "" : ", queue_limit: " + o.forward_queue_limit)
      << (o.forward_in_flight > 1 ? ", in_flight: " + std::to_string(o.forward_in_flight) : "")
      << (compression == "gzip"   ? ", gzip: true"
          : compression == "none" ? ""
                                  : ", compression: " + compression)
      << "}\n";
  // The sidecar is the only child waited for in between: its CPU is the children's delta.
  auto children_cpu_s = [] {
    rusage ru{};
    getrusage(RUSAGE_CHILDREN, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  };
  const double side_cpu0 = children_cpu_s(), agg_cpu0 = agg.cpu_s();
  const double load = load_average();
  const auto t0 = Clock::now();
  Child side = Child::spawn({o.devmesh, "-c", dir + "/sidecar.yaml"}, dir + "/sidecar.log");
  const int rc = side.wait(600);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  ForwardRun r;
  r.load_before = load;
  r.ok = rc == 0;
  r.records_per_s = static_cast<double>(o.forward_count) / secs;
  r.sidecar_rss_kib = side.max_rss_kib;
  r.aggregator_rss_kib = agg.hwm_kib();
  const double millions = static_cast<double>(o.forward_count) / 1e6;
  r.sidecar_cpu_us = (children_cpu_s() - side_cpu0) / millions;
  r.aggregator_cpu_us = (agg.cpu_s() - agg_cpu0) / millions;
  agg.stop();
  if (!r.ok) std::fprintf(stderr, "sidecar exited %d; see %s/sidecar.log\n", rc, dir.c_str());
  return r;
}

// The generation ceiling of the forwarding run: dummy -> null in one process.
double generate_run(const Options &o, const std::string &dir) {
  std::ofstream(dir + "/generate.yaml")
      << "service:\n  plugins_dir: [" << o.plugins
      << "]\n  log_level: warn\n  exit_when_done: true\n"
      << "pipeline:\n  inputs:\n    - {name: dummy, rate: 0, count: " << o.forward_count
      << ", batch: " << o.forward_batch
      << "}\n  outputs:\n    - {name: 'null', batch_size: " << o.forward_batch << "}\n";
  const auto t0 = Clock::now();
  Child c = Child::spawn({o.devmesh, "-c", dir + "/generate.yaml"}, dir + "/generate.log");
  c.wait(600);
  return static_cast<double>(o.forward_count) /
         std::chrono::duration<double>(Clock::now() - t0).count();
}

int run_benchmarks(const Options &o, const std::string &self) {
  if (access(o.devmesh.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "no devmesh binary at '%s' (--devmesh)\n", o.devmesh.c_str());
    return 2;
  }
  if (access(o.wrk.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "wrk not found at %s (apt-get install wrk, or --wrk)\n", o.wrk.c_str());
    return 2;
  }
  char tmpl[] = "/tmp/bench-http-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string body = bench::make_ingest_body(o.records);
  std::ofstream(dir + "/body.json") << body;
  std::printf(
      "bench_http: %d-record bodies (%zu bytes), %d connections, %d s per run, %d runs, "
      "%u cores; medians\n",
      o.records, body.size(), o.connections, o.seconds, o.runs,
      std::thread::hardware_concurrency());

  std::vector<double> rps, p50, p99, rss, cpu, raw_rps, raw_p99, ratios;
  for (int i = 0; i < (o.forward_only ? 0 : o.runs); ++i) {
    IngestRun r = ingest_run(o, dir);
    LoadResult raw = raw_run(o, dir, self);
    std::printf(
        "  run %d: devmesh %.0f req/s (p50 %.2f ms, p99 %.2f ms, %ld errors, %.0f us CPU/req, "
        "peak RSS %.1f MiB); raw h2o %.0f req/s\n",
        i + 1, r.load.requests_per_s, r.load.p50_ms, r.load.p99_ms, r.load.errors,
        r.cpu_us_per_request, r.peak_rss_kib / 1024.0, raw.requests_per_s);
    rps.push_back(r.load.requests_per_s);
    p50.push_back(r.load.p50_ms);
    p99.push_back(r.load.p99_ms);
    rss.push_back(static_cast<double>(r.peak_rss_kib));
    cpu.push_back(r.cpu_us_per_request);
    raw_rps.push_back(raw.requests_per_s);
    raw_p99.push_back(raw.p99_ms);
    if (raw.requests_per_s > 0) ratios.push_back(r.load.requests_per_s / raw.requests_per_s);
  }
  const double max_rps = o.forward_only ? 0 : median(rps);
  const double half_rate = max_rps / 2;
  std::vector<double> half_p50, half_p99, half_rps, half_rss, raw_half_p50, raw_half_p99;
  for (int i = 0; i < (o.forward_only ? 0 : o.runs); ++i) {
    HalfRun h = half_run(o, dir, body, half_rate);
    // The same paced load on the bare receiver: what the client, the kernel and the machine
    // alone cost in latency.
    const int raw_port = free_port();
    Child raw = Child::spawn({self, "--raw-server", std::to_string(raw_port)}, dir + "/raw.log");
    for (auto end = Clock::now() + std::chrono::seconds(10);
         !port_open(raw_port) && Clock::now() < end;)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    LoadResult rh = paced_run(o, "http://127.0.0.1:" + std::to_string(raw_port) + "/ingest/logs",
                              body, half_rate);
    raw.stop();
    std::printf("  run %d: raw h2o at the same pace: p50 %.2f ms, p99 %.2f ms\n", i + 1, rh.p50_ms,
                rh.p99_ms);
    raw_half_p50.push_back(rh.p50_ms);
    raw_half_p99.push_back(rh.p99_ms);
    std::printf("  run %d: paced %.0f req/s: p50 %.2f ms, p99 %.2f ms, %ld errors\n", i + 1,
                h.load.requests_per_s, h.load.p50_ms, h.load.p99_ms, h.load.errors);
    half_p50.push_back(h.load.p50_ms);
    half_p99.push_back(h.load.p99_ms);
    half_rps.push_back(h.load.requests_per_s);
    half_rss.push_back(static_cast<double>(h.peak_rss_kib));
  }
  const size_t kinds = o.forward_compressions.size();
  std::vector<std::vector<double>> fwd(kinds), fwd_side(kinds), fwd_agg(kinds);
  std::vector<std::vector<double>> fwd_side_cpu(kinds), fwd_agg_cpu(kinds), fwd_ratio(kinds);
  std::vector<double> gen, loads;
  for (int i = 0; i < o.runs; ++i) {
    for (size_t k = 0; k < kinds; ++k) {
      ForwardRun f = forward_run(o, dir, o.forward_compressions[k]);
      std::printf(
          "  run %d: forwarding, compression %-4s %8.0f records/s (sidecar %.1f MiB, %.2f us CPU "
          "per record; aggregator %.1f MiB, %.2f us; load %.2f)%s\n",
          i + 1, o.forward_compressions[k].c_str(), f.records_per_s, f.sidecar_rss_kib / 1024.0,
          f.sidecar_cpu_us, f.aggregator_rss_kib / 1024.0, f.aggregator_cpu_us, f.load_before,
          f.ok ? "" : " FAILED");
      loads.push_back(f.load_before);
      fwd[k].push_back(f.records_per_s);
      fwd_side_cpu[k].push_back(f.sidecar_cpu_us);
      fwd_agg_cpu[k].push_back(f.aggregator_cpu_us);
      fwd_side[k].push_back(static_cast<double>(f.sidecar_rss_kib));
      fwd_agg[k].push_back(static_cast<double>(f.aggregator_rss_kib));
    }
    // Each compression's ratio to none within this run (the figure that is compared).
    for (size_t k = 0; k < kinds; ++k)
      for (size_t z = 0; z < kinds; ++z)
        if (o.forward_compressions[z] == "none" && fwd[z].back() > 0)
          fwd_ratio[k].push_back(fwd[k].back() / fwd[z].back());
    double g = generate_run(o, dir);
    std::printf("  run %d: dummy -> null %.0f records/s\n", i + 1, g);
    gen.push_back(g);
  }
  std::fflush(stdout);

  if (!o.forward_only) {
    const double recs = o.records;
    std::printf("\nhttp input -> null (wrk, %d connections, closed loop)\n", o.connections);
    std::printf("  records/s          %10.0f   (%.0f requests/s)\n", max_rps * recs, max_rps);
    std::printf("  request latency    p50 %.2f ms, p99 %.2f ms\n", median(p50), median(p99));
    std::printf("  engine CPU         %.0f us per %d-record request (%.2f us per record)\n",
                median(cpu), o.records, median(cpu) / recs);
    std::printf("  peak RSS           %.1f MiB\n", median(rss) / 1024);
    std::printf(
        "  raw ceiling        %10.0f records/s (%.0f requests/s, p99 %.2f ms): bare libh2o "
        "receiving the same bodies unparsed\n",
        median(raw_rps) * recs, median(raw_rps), median(raw_p99));
    std::printf("  ratio to ceiling   %.2f (median of same-run ratios %.2f)\n",
                median(raw_rps) > 0 ? max_rps / median(raw_rps) : 0, median(ratios));
    std::printf("half load (paced libcurl, %.0f requests/s = %.0f records/s, open loop)\n",
                half_rate, half_rate * recs);
    std::printf("  achieved           %.0f requests/s\n", median(half_rps));
    std::printf("  request latency    p50 %.2f ms, p99 %.2f ms\n", median(half_p50),
                median(half_p99));
    std::printf(
        "  raw ceiling        p50 %.2f ms, p99 %.2f ms (the same paced load on bare libh2o)\n",
        median(raw_half_p50), median(raw_half_p99));
    std::printf("  peak RSS           %.1f MiB\n", median(half_rss) / 1024);
  }
  std::printf(
      "sidecar -> aggregator (dummy -> http_forward x%d, in_flight %d, %d-record batches, "
      "queue_limit %s -> http, ack: %s -> %s), %ld records\n",
      o.forward_workers, o.forward_in_flight, o.forward_batch, o.forward_queue_limit.c_str(),
      o.forward_ack.c_str(), o.forward_sink.c_str(), o.forward_count);
  // Same-run ratios: each compression's median over the median without compression.
  double none_rps = 0;
  for (size_t k = 0; k < kinds; ++k)
    if (o.forward_compressions[k] == "none") none_rps = median(fwd[k]);
  for (size_t k = 0; k < kinds; ++k) {
    const double r = median(fwd[k]);
    std::printf("  compression %-4s   %10.0f records/s", o.forward_compressions[k].c_str(), r);
    if (none_rps > 0 && o.forward_compressions[k] != "none")
      std::printf(" (%.2f of none; median of same-run ratios %.2f)", r / none_rps,
                  fwd_ratio[k].empty() ? 0.0 : median(fwd_ratio[k]));
    std::printf("; peak RSS sidecar %.1f MiB, aggregator %.1f MiB\n", median(fwd_side[k]) / 1024,
                median(fwd_agg[k]) / 1024);
    std::printf("    CPU per record     sidecar %.2f us, aggregator %.2f us\n",
                median(fwd_side_cpu[k]), median(fwd_agg_cpu[k]));
  }
  std::printf("  generation ceiling %10.0f records/s (dummy -> null, one process)\n", median(gen));
  if (!loads.empty())
    std::printf("  load average       %.2f median at the runs' starts (%.2f to %.2f), %u cores\n",
                median(loads), *std::min_element(loads.begin(), loads.end()),
                *std::max_element(loads.begin(), loads.end()), std::thread::hardware_concurrency());
  fs::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace devmesh

// ---- a shaped link: the whole run inside a network namespace ------------------------------------

// Set in the re-executed bench: the namespace it runs in.
constexpr const char *kNetnsEnv = "DEVMESH_BENCH_NETNS";

// Runs argv to its end (stdout and stderr shared); its exit code, or -1.
int run_command(const std::vector<std::string> &argv) {
  std::vector<char *> args;
  for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid;
  if (posix_spawnp(&pid, args[0], nullptr, nullptr, args.data(), environ) != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Makes a network namespace whose loopback is shaped to mbit Mbit/s (a token bucket holding 10 ms
// of traffic, at least two 64 KiB loopback packets), runs this bench again inside it and removes
// the namespace. Every process the bench starts inherits the namespace: the sidecar's requests
// to the aggregator cross the shaped loopback, and nothing outside the namespace is slowed.
int run_on_shaped_link(int argc, char **argv, const char *self, int mbit) {
  if (geteuid() != 0) {
    std::fprintf(stderr, "--forward-link-mbit needs root (ip netns, tc)\n");
    return 2;
  }
  const std::string ns = "devmesh-bench-" + std::to_string(getpid());
  const std::string rate = std::to_string(mbit) + "mbit";
  const std::string burst =
      std::to_string(std::max<long>(128 * 1024, long(mbit) * 1000 * 1000 / 8 / 100));
  if (run_command({"ip", "netns", "add", ns}) != 0) {
    std::fprintf(stderr, "ip netns add %s failed\n", ns.c_str());
    return 2;
  }
  int rc = 2;
  if (run_command({"ip", "-n", ns, "link", "set", "lo", "up"}) == 0 &&
      run_command({"tc", "-n", ns, "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate,
                   "burst", burst, "latency", "50ms"}) == 0) {
    setenv(kNetnsEnv, ns.c_str(), 1);
    std::vector<std::string> inner = {"ip", "netns", "exec", ns, self};
    for (int i = 1; i < argc; ++i) inner.push_back(argv[i]);
    rc = run_command(inner);
  } else {
    std::fprintf(stderr, "shaping the loopback of %s failed (tc tbf)\n", ns.c_str());
  }
  run_command({"ip", "netns", "del", ns});
  return rc;
}

int main(int argc, char **argv) {
  using namespace devmesh;
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage(argv[0]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--raw-server") return raw_server(std::atoi(next().c_str()));
    if (a == "--paced") {
      // The paced client alone against URL at RATE requests/s (for a receiver of your own).
      const std::string url = next();
      const double rate = std::atof(next().c_str());
      curl_global_init(CURL_GLOBAL_DEFAULT);
      signal(SIGPIPE, SIG_IGN);
      LoadResult r = paced_run(o, url, bench::make_ingest_body(o.records), rate);
      std::printf("%.0f requests/s, p50 %.2f ms, p99 %.2f ms, %ld errors\n", r.requests_per_s,
                  r.p50_ms, r.p99_ms, r.errors);
      return 0;
    }
    if (a == "--seconds")
      o.seconds = std::atoi(next().c_str());
    else if (a == "--runs")
      o.runs = std::atoi(next().c_str());
    else if (a == "--records")
      o.records = std::atoi(next().c_str());
    else if (a == "--connections")
      o.connections = std::atoi(next().c_str());
    else if (a == "--forward-count")
      o.forward_count = std::atol(next().c_str());
    else if (a == "--forward-workers")
      o.forward_workers = std::atoi(next().c_str());
    else if (a == "--forward-batch")
      o.forward_batch = std::atoi(next().c_str());
    else if (a == "--forward-gzip")
      o.forward_compressions = {"gzip"};
    else if (a == "--forward-compressions") {
      o.forward_compressions.clear();
      std::stringstream list(next());
      for (std::string c; std::getline(list, c, ',');) {
        if (c != "none" && c != "gzip" && c != "zstd") {
          usage(argv[0]);
          return 2;
        }
        o.forward_compressions.push_back(c);
      }
    } else if (a == "--forward-queue-limit")
      o.forward_queue_limit = next();
    else if (a == "--forward-only")
      o.forward_only = true;
    else if (a == "--forward-ack")
      o.forward_ack = next();
    else if (a == "--forward-sink")
      o.forward_sink = next();
    else if (a == "--forward-in-flight")
      o.forward_in_flight = std::max(1, std::atoi(next().c_str()));
    else if (a == "--forward-link-mbit")
      o.link_mbit = std::max(1, std::atoi(next().c_str()));
    else if (a == "--devmesh")
      o.devmesh = next();
    else if (a == "--plugins")
      o.plugins = next();
    else if (a == "--wrk")
      o.wrk = next();
    else {
      usage(argv[0]);
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  signal(SIGPIPE, SIG_IGN);
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 2;
  self[n] = 0;
  if (o.link_mbit > 0 && !getenv(kNetnsEnv)) {
    if (!o.forward_only) {
      std::fprintf(stderr, "--forward-link-mbit needs --forward-only\n");
      return 2;
    }
    return run_on_shaped_link(argc, argv, self, o.link_mbit);
  }
  if (o.link_mbit > 0)
    std::printf("link: loopback of network namespace %s shaped to %d Mbit/s (tc tbf)\n",
                getenv(kNetnsEnv), o.link_mbit);
  return run_benchmarks(o, self);
}
