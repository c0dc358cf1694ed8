// Helpers for the http input and http_forward tests: engines on free ports, POSTs with the curl
// binary and with libcurl, NDJSON output parsing, expected event ids, and a scripted HTTP
// receiver (status, Retry-After, delay per request) that records what it was sent.
#pragma once

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "process.h"

namespace devmesh::test {

using namespace std::chrono_literals;

inline std::string plugins_head(const std::string &extra_service = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR "]\n" +
         extra_service + "pipeline:\n";
}

// A devmesh process on a pipeline file; `port` answers /health (service.http_listen) when the
// config sets it, so ready() can wait for it.
class Devmesh {
 public:
  Devmesh(const TempDir &d, const std::string &name, const std::string &yaml) {
    config_ = d / (name + ".yaml");
    write_file(config_, yaml);
    proc_ = std::make_unique<Process>(std::vector<std::string>{DEVMESH_BIN, "-c", config_},
                                      d.path(), name);
  }
  Process &proc() { return *proc_; }
  Process *operator->() { return proc_.get(); }
  // Waits until GET /health on port answers (any status).
  bool ready(int port, const TempDir &d) {
    return wait_until(
        [&] {
          return http_get("http://127.0.0.1:" + std::to_string(port) + "/health", nullptr,
                          d.path()) != 0;
        },
        15s);
  }

 private:
  std::string config_;
  std::unique_ptr<Process> proc_;
};

struct HttpResult {
  int status = 0;
  std::string body;
  std::string headers;  // raw response headers
  std::string header(const std::string &name) const {
    std::string lc_headers, lc_name = name;
    for (char c : headers)
      lc_headers += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (char &c : lc_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto at = lc_headers.find("\n" + lc_name + ":");
    if (at == std::string::npos) return "";
    auto start = at + lc_name.size() + 2;
    auto end = headers.find('\r', start);
    std::string v = headers.substr(start, end - start);
    while (!v.empty() && v.front() == ' ') v.erase(0, 1);
    return v;
  }
};

// True when one of the headers ("Name: value", or curl's -H arguments) sets Content-Type.
inline bool sets_content_type(const std::vector<std::string> &headers) {
  for (const std::string &h : headers)
    if (strncasecmp(h.c_str(), "content-type:", 13) == 0) return true;
  return false;
}

// POSTs the file `body_file` with the curl binary (a real HTTP client), with extra arguments
// (headers: "-H", "X: y"). method overrides POST. Without a Content-Type in extra it sends
// application/json (curl's default for --data-binary is a form, which the http input refuses).
inline HttpResult curl_post(const TempDir &d, const std::string &url, const std::string &body_file,
                            std::vector<std::string> extra = {},
                            const std::string &method = "POST") {
  std::vector<std::string> argv = {
      "/usr/bin/curl", "-s", "-o", d / "resp.body", "-D", d / "resp.headers", "-w", "%{http_code}",
      "--max-time",    "30", "-X", method};
  if (!body_file.empty()) {
    argv.push_back("--data-binary");
    argv.push_back("@" + body_file);
  }
  if (!body_file.empty() && !sets_content_type(extra))
    extra.insert(extra.end(), {"-H", "Content-Type: application/json"});
  for (auto &e : extra) argv.push_back(e);
  argv.push_back(url);
  std::string out;
  HttpResult r;
  if (run(argv, d.path(), &out) != 0) return r;
  r.status = std::atoi(out.c_str());
  r.body = read_file(d / "resp.body");
  r.headers = read_file(d / "resp.headers");
  return r;
}

// POSTs with libcurl in this process; Content-Type application/json unless headers set one
// (libcurl's default for POSTFIELDS is a form, which the http input refuses).
inline HttpResult libcurl_post(const std::string &url, const std::string &body,
                               const std::vector<std::string> &headers = {}) {
  HttpResult r;
  CURL *e = curl_easy_init();
  curl_slist *h = nullptr;
  for (auto &x : headers) h = curl_slist_append(h, x.c_str());
  if (!sets_content_type(headers)) h = curl_slist_append(h, "Content-Type: application/json");
  h = curl_slist_append(h, "Expect:");
  auto sink = +[](char *p, size_t s, size_t n, void *arg) {
    static_cast<std::string *>(arg)->append(p, s * n);
    return s * n;
  };
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, sink);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &r.headers);
  if (curl_easy_perform(e) == CURLE_OK) {
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    r.status = static_cast<int>(code);
  }
  curl_slist_free_all(h);
  curl_easy_cleanup(e);
  return r;
}

inline rapidjson::Document parse_json(const std::string &text) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  return d;
}

// The JSON objects of an NDJSON file; lines that do not parse (a write cut by kill -9) are
// counted in *bad.
inline std::vector<rapidjson::Document> read_ndjson(const std::string &path,
                                                    size_t *bad = nullptr) {
  std::vector<rapidjson::Document> out;
  for (auto &l : read_lines(path)) {
    rapidjson::Document d;
    d.Parse(l.c_str());
    if (d.HasParseError() || !d.IsObject()) {
      if (bad) ++*bad;
      continue;
    }
    out.push_back(std::move(d));
  }
  return out;
}

inline std::string str_field(const rapidjson::Value &o, const char *k) {
  auto it = o.FindMember(k);
  return it != o.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

inline std::string hex(const uint8_t *p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// XXH3-128 in canonical byte order, as host->hash128 computes it, in hex.
inline std::string xxh128_hex(const std::string &data) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data.data(), data.size()));
  return hex(c.digest, 16);
}

// The http input's derived event id for a record without meta_json and a timestamp (so no
// timestamp_source meta): timestamp (8 bytes little-endian), level (DM_LEVEL_*), priority
// (-1 absent), then source, service, host, trace_id, span_id, event_type, error_code and
// message, each with its length as 4 bytes little-endian, then the meta entry count and the
// 64-bit sum of the entries' hashes (both zero here).
inline std::string derived_event_id(int64_t ts_ns, const std::string &host,
                                    const std::string &service, const std::string &message,
                                    int level = 2, const std::string &source = "http") {
  std::string k;
  auto u64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) k += static_cast<char>(v >> (8 * i));
  };
  auto field = [&](const std::string &f) {
    for (int i = 0; i < 4; ++i) k += static_cast<char>(static_cast<uint32_t>(f.size()) >> (8 * i));
    k += f;
  };
  u64(static_cast<uint64_t>(ts_ns));
  k += static_cast<char>(level);
  k += static_cast<char>(-1);
  for (const std::string *f : {&source, &service, &host}) field(*f);
  for (int i = 0; i < 4; ++i) field("");  // trace_id, span_id, event_type, error_code
  field(message);
  u64(0);
  u64(0);
  return xxh128_hex(k);
}

// Peak resident set (VmHWM) of a running process, KiB; 0 if gone.
inline long vm_hwm_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return 0;
}

// The peak RSS, KiB, an engine stays under while it refuses a decompression bomb: at most
// max_body (16 MiB) is inflated; unbounded, it would be a gigabyte. AddressSanitizer's quarantine
// keeps the freed growth steps of the buffer: a looser bound there.
#ifdef __SANITIZE_ADDRESS__
inline constexpr long kBombRssBoundKib = 160 * 1024;
#else
inline constexpr long kBombRssBoundKib = 64 * 1024;
#endif

inline size_t file_size(const std::string &path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<size_t>(n);
}

// A scripted HTTP/1.1 receiver on 127.0.0.1 for the http_forward tests: answers each request as
// the script says and records it. Test code only: Content-Length bodies, keep-alive, one thread
// per connection.
class TestReceiver {
 public:
  struct Request {
    std::string method, path, body;
    std::map<std::string, std::string> headers;  // lower-case names
    std::chrono::steady_clock::time_point at;
    int connection = 0;
  };
  struct Response {
    int status = 200;
    std::string body = "{}";
    std::vector<std::pair<std::string, std::string>> headers;
    std::chrono::milliseconds delay{0};
  };
  using Script = std::function<Response(const Request &, int index)>;

  explicit TestReceiver(Script script, int port = 0) : script_(std::move(script)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 || listen(fd_, 64) != 0) {
      close(fd_);
      fd_ = -1;
      return;
    }
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len);
    port_ = ntohs(a.sin_port);
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TestReceiver() {
    stopping_ = true;
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
    if (acceptor_.joinable()) acceptor_.join();
    {
      std::lock_guard<std::mutex> lk(mu_);
      for (int c : conns_) shutdown(c, SHUT_RDWR);
    }
    for (auto &t : threads_) t.join();
    for (int c : conns_) close(c);
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }
  std::string url(const std::string &path = "/ingest/logs") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::vector<Request> requests() {
    std::lock_guard<std::mutex> lk(mu_);
    return requests_;
  }
  size_t request_count() {
    std::lock_guard<std::mutex> lk(mu_);
    return requests_.size();
  }
  int connections() const { return connections_; }

 private:
  void accept_loop() {
    while (!stopping_) {
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        if (stopping_ || errno == EINVAL) return;
        continue;
      }
      int id = ++connections_;
      std::lock_guard<std::mutex> lk(mu_);
      conns_.push_back(c);
      threads_.emplace_back([this, c, id] { serve(c, id); });
    }
  }

  void serve(int c, int id) {
    std::string buf;
    char tmp[65536];
    for (;;) {
      size_t head_end;
      while ((head_end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = recv(c, tmp, sizeof tmp, 0);
        if (n <= 0) return finish(c);
        buf.append(tmp, static_cast<size_t>(n));
      }
      Request r;
      r.connection = id;
      std::istringstream head(buf.substr(0, head_end));
      std::string line;
      std::getline(head, line);
      std::istringstream first(line);
      first >> r.method >> r.path;
      while (std::getline(head, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string k = line.substr(0, colon), v = line.substr(colon + 1);
        for (char &ch : k) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        while (!v.empty() && v.front() == ' ') v.erase(0, 1);
        r.headers[k] = v;
      }
      size_t need = r.headers.count("content-length") ? std::stoul(r.headers["content-length"]) : 0;
      buf.erase(0, head_end + 4);
      while (buf.size() < need) {
        ssize_t n = recv(c, tmp, sizeof tmp, 0);
        if (n <= 0) return finish(c);
        buf.append(tmp, static_cast<size_t>(n));
      }
      r.body = buf.substr(0, need);
      buf.erase(0, need);
      r.at = std::chrono::steady_clock::now();
      int index;
      {
        std::lock_guard<std::mutex> lk(mu_);
        index = static_cast<int>(requests_.size());
        requests_.push_back(r);
      }
      Response resp = script_(r, index);
      if (resp.delay.count()) std::this_thread::sleep_for(resp.delay);
      std::string out = "HTTP/1.1 " + std::to_string(resp.status) +
                        " X\r\nContent-Length: " + std::to_string(resp.body.size()) + "\r\n";
      for (auto &[k, v] : resp.headers) out += k + ": " + v + "\r\n";
      out += "\r\n" + resp.body;
      if (send(c, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
        return finish(c);
    }
  }
  // The socket is closed by the destructor, after every thread is joined.
  void finish(int) {}

  Script script_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
  std::vector<Request> requests_;
};

}  // namespace devmesh::test
