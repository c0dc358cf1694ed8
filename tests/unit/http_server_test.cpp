// The HTTP server against a real libcurl client: routing, bodies, limits, headers, delayed
// replies, disconnects, keep-alive, shutdown and streamed responses, on a real libuv loop.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "http_server.h"

using devmesh::HttpServer;

namespace {

std::string str(dm_str s) {
  return s.len == 0 ? std::string() : std::string(s.ptr, s.len);
}

struct HttpResult {
  CURLcode code = CURLE_OK;
  long status = 0;
  long new_connections = 0;
  std::string body;
  std::string headers;  // raw response header block
};

// One libcurl easy handle; reusing it reuses its connection (keep-alive).
class Client {
 public:
  Client() : curl_(curl_easy_init()) {}
  ~Client() { curl_easy_cleanup(curl_); }
  Client(const Client &) = delete;
  Client &operator=(const Client &) = delete;

  HttpResult request(const std::string &method, const std::string &url,
                     const std::string *body = nullptr,
                     const std::vector<std::string> &headers = {}, long timeout_ms = 10000) {
    HttpResult r;
    curl_easy_reset(curl_);
    curl_easy_setopt(curl_, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl_, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl_, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl_, CURLOPT_WRITEFUNCTION, &Client::append);
    curl_easy_setopt(curl_, CURLOPT_WRITEDATA, &r.body);
    curl_easy_setopt(curl_, CURLOPT_HEADERFUNCTION, &Client::append_header);
    curl_easy_setopt(curl_, CURLOPT_HEADERDATA, &r.headers);
    if (body != nullptr) {
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(curl_, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body->size()));
    }
    if (method != "GET" && !(method == "POST" && body != nullptr))
      curl_easy_setopt(curl_, CURLOPT_CUSTOMREQUEST, method.c_str());
    curl_slist *list = nullptr;
    for (const auto &h : headers) list = curl_slist_append(list, h.c_str());
    curl_easy_setopt(curl_, CURLOPT_HTTPHEADER, list);
    r.code = curl_easy_perform(curl_);
    curl_easy_getinfo(curl_, CURLINFO_RESPONSE_CODE, &r.status);
    curl_easy_getinfo(curl_, CURLINFO_NUM_CONNECTS, &r.new_connections);
    curl_slist_free_all(list);
    return r;
  }

 private:
  static size_t append(char *p, size_t size, size_t n, void *out) {
    static_cast<std::string *>(out)->append(p, size * n);
    return size * n;
  }
  static size_t append_header(char *p, size_t size, size_t n, void *out) {
    static_cast<std::string *>(out)->append(p, size * n);
    return size * n;
  }
  CURL *curl_;
};

// Case-insensitive search for "name: value" in a raw header block.
bool has_header(const std::string &block, const std::string &name, const std::string &value) {
  std::string lc_block, want = name + ": " + value;
  for (char c : block) lc_block += char(std::tolower(static_cast<unsigned char>(c)));
  for (char &c : want) c = char(std::tolower(static_cast<unsigned char>(c)));
  return lc_block.find(want + "\r\n") != std::string::npos;
}

// Calls fn on the loop after delay_ms; the timer frees itself.
void after(uv_loop_t *loop, uint64_t delay_ms, std::function<void()> fn) {
  struct Delayed {
    uv_timer_t timer;
    std::function<void()> fn;
  };
  auto *d = new Delayed{{}, std::move(fn)};
  uv_timer_init(loop, &d->timer);
  d->timer.data = d;
  uv_timer_start(
      &d->timer,
      [](uv_timer_t *t) {
        auto *d = static_cast<Delayed *>(t->data);
        d->fn();
        uv_close(reinterpret_cast<uv_handle_t *>(t),
                 [](uv_handle_t *h) { delete static_cast<Delayed *>(h->data); });
      },
      delay_ms, 0);
}

void reply_text(dm_http_request *req, int status, const std::string &body) {
  HttpServer::reply(req, status, "text/plain", body.data(), body.size());
}

class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { curl_global_init(CURL_GLOBAL_DEFAULT); }
  static void TearDownTestSuite() { curl_global_cleanup(); }

  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    server_ = std::make_unique<HttpServer>(&loop_);
  }

  void TearDown() override {
    if (server_) shut_down_server();
    uv_run(&loop_, UV_RUN_NOWAIT);
    // Every handle the server (or a test) opened has been closed and freed.
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  void shut_down_server() {
    server_->stop();
    run_until([&] { return server_->closed(); });
    EXPECT_TRUE(server_->closed());
    server_.reset();
  }

  void route(const std::string &listen, const std::string &method, const std::string &path,
             devmesh::HttpHandler handler) {
    std::string error;
    ASSERT_TRUE(server_->add_route(listen, method, path, std::move(handler), error)) << error;
  }

  void owned_route(const void *owner, const std::string &listen, const std::string &method,
                   const std::string &path, devmesh::HttpHandler handler) {
    std::string error;
    ASSERT_TRUE(server_->add_route(listen, method, path, std::move(handler), error, owner))
        << error;
  }

  void start() {
    std::string error;
    ASSERT_TRUE(server_->start(error)) << error;
  }

  std::string url(const std::string &listen, const std::string &path) {
    return "http://127.0.0.1:" + std::to_string(server_->bound_port(listen)) + path;
  }

  // Runs the loop while `client` runs on its own thread; returns once the client is done.
  void with_client(std::function<void()> client) {
    uv_async_t done;
    uv_async_init(&loop_, &done, [](uv_async_t *a) { uv_stop(a->loop); });
    std::thread t([&] {
      client();
      uv_async_send(&done);
    });
    uv_run(&loop_, UV_RUN_DEFAULT);
    t.join();
    uv_close(reinterpret_cast<uv_handle_t *>(&done), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }

  // Runs the loop until pred() holds or timeout_ms pass.
  void run_until(const std::function<bool()> &pred, uint64_t timeout_ms = 10000) {
    uv_timer_t tick;
    uv_timer_init(&loop_, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t *) {}, 10, 10);
    uint64_t deadline = uv_now(&loop_) + timeout_ms;
    while (!pred() && uv_now(&loop_) < deadline) uv_run(&loop_, UV_RUN_ONCE);
    uv_close(reinterpret_cast<uv_handle_t *>(&tick), nullptr);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }

  uv_loop_t loop_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(HttpServerTest, GetAndPostReachTheirOwnHandlers) {
  route(":0", "GET", "/things", [](dm_http_request *r) { reply_text(r, 200, "listed"); });
  route(":0", "POST", "/things", [](dm_http_request *r) { reply_text(r, 201, "created"); });
  start();
  with_client([&] {
    Client c;
    auto get = c.request("GET", url(":0", "/things"));
    EXPECT_EQ(get.code, CURLE_OK);
    EXPECT_EQ(get.status, 200);
    EXPECT_EQ(get.body, "listed");
    EXPECT_TRUE(has_header(get.headers, "content-type", "text/plain"));
    std::string body = "x";
    auto post = c.request("POST", url(":0", "/things"), &body);
    EXPECT_EQ(post.status, 201);
    EXPECT_EQ(post.body, "created");
  });
}

TEST_F(HttpServerTest, ExactPathBeatsPrefixAndLongestPrefixWins) {
  route(":0", "GET", "/query/*", [](dm_http_request *r) { reply_text(r, 200, "prefix"); });
  route(":0", "GET", "/query/deep/*", [](dm_http_request *r) { reply_text(r, 200, "deep"); });
  route(":0", "GET", "/query/special", [](dm_http_request *r) { reply_text(r, 200, "exact"); });
  start();
  with_client([&] {
    Client c;
    EXPECT_EQ(c.request("GET", url(":0", "/query/logs")).body, "prefix");
    EXPECT_EQ(c.request("GET", url(":0", "/query/special")).body, "exact");
    EXPECT_EQ(c.request("GET", url(":0", "/query/deep/x?y=1")).body, "deep");
    EXPECT_EQ(c.request("GET", url(":0", "/query")).status, 404);
  });
}

TEST_F(HttpServerTest, UnknownPathIs404WithJsonError) {
  route(":0", "GET", "/known", [](dm_http_request *r) { reply_text(r, 200, "ok"); });
  start();
  with_client([&] {
    Client c;
    auto r = c.request("GET", url(":0", "/unknown"));
    EXPECT_EQ(r.status, 404);
    EXPECT_EQ(r.body, R"({"error":"not found"})");
    EXPECT_TRUE(has_header(r.headers, "content-type", "application/json"));
  });
}

TEST_F(HttpServerTest, KnownPathWithOtherMethodIs405WithAllow) {
  route(":0", "POST", "/ingest", [](dm_http_request *r) { reply_text(r, 202, ""); });
  route(":0", "PUT", "/ingest", [](dm_http_request *r) { reply_text(r, 202, ""); });
  start();
  with_client([&] {
    Client c;
    auto r = c.request("DELETE", url(":0", "/ingest"));
    EXPECT_EQ(r.status, 405);
    EXPECT_EQ(r.body, R"({"error":"method not allowed"})");
    EXPECT_TRUE(has_header(r.headers, "allow", "POST, PUT")) << r.headers;
  });
}

TEST_F(HttpServerTest, PathAndQueryAreSplit) {
  std::string method, path, query;
  route(":0", "GET", "/echo", [&](dm_http_request *r) {
    method = str(HttpServer::method(r));
    path = str(HttpServer::path(r));
    query = str(HttpServer::query(r));
    reply_text(r, 200, "");
  });
  start();
  with_client([&] { Client().request("GET", url(":0", "/echo?a=1&b=two")); });
  EXPECT_EQ(method, "GET");
  EXPECT_EQ(path, "/echo");
  EXPECT_EQ(query, "a=1&b=two");
}

TEST_F(HttpServerTest, LargeBodyArrivesIntact) {
  std::string sent(size_t(1) << 20, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = char('a' + (i * 7919) % 26);
  sent += "-tail";
  std::string received, content_length;
  route(":0", "POST", "/ingest", [&](dm_http_request *r) {
    received = str(HttpServer::body(r));
    content_length = str(HttpServer::header(r, "Content-Length"));
    reply_text(r, 200, "got " + std::to_string(received.size()));
  });
  start();
  with_client([&] {
    auto r = Client().request("POST", url(":0", "/ingest"), &sent);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "got " + std::to_string(sent.size()));
  });
  EXPECT_TRUE(received == sent);
  EXPECT_EQ(content_length, std::to_string(sent.size()));
}

TEST_F(HttpServerTest, BodyOverTheLimitIs413AndAtTheLimitIsAccepted) {
  server_->set_max_body(1024);
  int calls = 0;
  route(":0", "POST", "/ingest", [&](dm_http_request *r) {
    ++calls;
    reply_text(r, 200, "ok");
  });
  start();
  with_client([&] {
    Client c;
    std::string big(2048, 'x'), fits(1024, 'y');
    EXPECT_EQ(c.request("POST", url(":0", "/ingest"), &big).status, 413);
    EXPECT_EQ(c.request("POST", url(":0", "/ingest"), &fits).status, 200);
  });
  EXPECT_EQ(calls, 1);
}

TEST_F(HttpServerTest, HeadersAreFoundWhateverTheirCase) {
  std::string token, token_upper, missing, host;
  route(":0", "GET", "/h", [&](dm_http_request *r) {
    token = str(HttpServer::header(r, "x-token"));
    token_upper = str(HttpServer::header(r, "X-TOKEN"));
    missing = str(HttpServer::header(r, "X-Absent"));
    host = str(HttpServer::header(r, "Host"));
    reply_text(r, 200, "");
  });
  start();
  with_client([&] { Client().request("GET", url(":0", "/h"), nullptr, {"X-Token: abc 123"}); });
  EXPECT_EQ(token, "abc 123");
  EXPECT_EQ(token_upper, "abc 123");
  EXPECT_EQ(missing, "");
  EXPECT_EQ(host, "127.0.0.1:" + std::to_string(server_->bound_port(":0")));
}

TEST_F(HttpServerTest, AddedHeadersAndContentTypeAreSent) {
  route(":0", "POST", "/busy", [](dm_http_request *r) {
    HttpServer::add_header(r, "Retry-After", "5");
    HttpServer::add_header(r, "X-Evil", "a\r\nInjected: yes");  // refused: line break
    std::string body = R"({"error":"queue full"})";
    HttpServer::reply(r, 503, "application/json", body.data(), body.size());
  });
  start();
  with_client([&] {
    std::string body = "{}";
    auto r = Client().request("POST", url(":0", "/busy"), &body);
    EXPECT_EQ(r.status, 503);
    EXPECT_TRUE(has_header(r.headers, "retry-after", "5")) << r.headers;
    EXPECT_TRUE(has_header(r.headers, "content-type", "application/json")) << r.headers;
    EXPECT_EQ(r.headers.find("Injected"), std::string::npos);
    EXPECT_EQ(r.body, R"({"error":"queue full"})");
  });
}

TEST_F(HttpServerTest, NoContentReplyHasNoBodyFraming) {
  route(":0", "DELETE", "/x",
        [](dm_http_request *r) { HttpServer::reply(r, 204, nullptr, "", 0); });
  route(":0", "GET", "/after", [](dm_http_request *r) { reply_text(r, 200, "next"); });
  start();
  with_client([&] {
    Client c;
    auto r = c.request("DELETE", url(":0", "/x"));
    EXPECT_EQ(r.status, 204);
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.headers.find("ransfer-"), std::string::npos) << r.headers;
    EXPECT_EQ(c.request("GET", url(":0", "/after")).body, "next");  // the connection is sane
  });
}

TEST_F(HttpServerTest, DelayedReplyFromATimerIsDelivered) {
  route(":0", "POST", "/ack", [&](dm_http_request *r) {
    // The body must still be readable when the reply comes much later.
    after(&loop_, 200, [r] { reply_text(r, 200, "acked " + str(HttpServer::body(r))); });
  });
  start();
  with_client([&] {
    std::string body = "records";
    auto r = Client().request("POST", url(":0", "/ack"), &body);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "acked records");
  });
}

TEST_F(HttpServerTest, ClientGoneBeforeDelayedReplyIsSafe) {
  bool replied = false;
  route(":0", "POST", "/ack", [&](dm_http_request *r) {
    after(&loop_, 500, [&, r] {
      reply_text(r, 200, std::string(256 * 1024, 'z'));  // written to a closed socket
      replied = true;
    });
  });
  route(":0", "GET", "/alive", [](dm_http_request *r) { reply_text(r, 200, "yes"); });
  start();
  with_client([&] {
    std::string body = "records";
    auto r = Client().request("POST", url(":0", "/ack"), &body, {}, 100);
    EXPECT_EQ(r.code, CURLE_OPERATION_TIMEDOUT);
  });
  run_until([&] { return replied; });
  EXPECT_TRUE(replied);
  // h2o sees the write fail and closes the connection itself.
  run_until([&] { return server_->connection_count() == 0; });
  EXPECT_EQ(server_->connection_count(), 0u);
  with_client([&] { EXPECT_EQ(Client().request("GET", url(":0", "/alive")).body, "yes"); });
}

TEST_F(HttpServerTest, RoutesOnTheSameAddressShareOneListener) {
  route("127.0.0.1:0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "a"); });
  route(":0", "GET", "/b", [](dm_http_request *r) { reply_text(r, 200, "b"); });
  route("0", "GET", "/c", [](dm_http_request *r) { reply_text(r, 200, "c"); });
  start();
  int port = server_->bound_port(":0");
  EXPECT_GT(port, 0);
  EXPECT_EQ(server_->bound_port("127.0.0.1:0"), port);
  EXPECT_EQ(server_->bound_port("0"), port);
  with_client([&] {
    Client c;
    EXPECT_EQ(c.request("GET", url(":0", "/a")).body, "a");
    EXPECT_EQ(c.request("GET", url(":0", "/b")).body, "b");
    EXPECT_EQ(c.request("GET", url(":0", "/c")).body, "c");
  });
}

TEST_F(HttpServerTest, DistinctAddressesGetTheirOwnRoutes) {
  route("127.0.0.1:0", "GET", "/v4", [](dm_http_request *r) { reply_text(r, 200, "v4"); });
  route("127.0.0.2:0", "GET", "/other", [](dm_http_request *r) { reply_text(r, 200, "other"); });
  start();
  int first = server_->bound_port("127.0.0.1:0"), second = server_->bound_port("127.0.0.2:0");
  EXPECT_GT(first, 0);
  EXPECT_GT(second, 0);
  with_client([&] {
    Client c;
    EXPECT_EQ(c.request("GET", url("127.0.0.1:0", "/v4")).body, "v4");
    EXPECT_EQ(c.request("GET", url("127.0.0.1:0", "/other")).status, 404);
    auto r = c.request("GET", "http://127.0.0.2:" + std::to_string(second) + "/other");
    EXPECT_EQ(r.body, "other");
  });
}

TEST_F(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  int n = 0;
  route(":0", "GET", "/n", [&](dm_http_request *r) { reply_text(r, 200, std::to_string(++n)); });
  start();
  with_client([&] {
    Client c;
    for (int i = 1; i <= 5; ++i) {
      auto r = c.request("GET", url(":0", "/n"));
      EXPECT_EQ(r.body, std::to_string(i));
      EXPECT_EQ(r.new_connections, i == 1 ? 1 : 0) << "request " << i;
    }
  });
}

TEST_F(HttpServerTest, ManyConcurrentConnectionsAreAllServed) {
  route(":0", "GET", "/slow",
        [&](dm_http_request *r) { after(&loop_, 20, [r] { reply_text(r, 200, "done"); }); });
  start();
  std::atomic<int> ok{0};
  with_client([&] {
    std::vector<std::thread> clients;
    for (int t = 0; t < 32; ++t) {
      clients.emplace_back([&] {
        Client c;
        for (int i = 0; i < 5; ++i)
          if (c.request("GET", url(":0", "/slow")).body == "done") ++ok;
      });
    }
    for (auto &t : clients) t.join();
  });
  EXPECT_EQ(ok.load(), 32 * 5);
}

TEST_F(HttpServerTest, StopAnswersAPendingRequestAndALaterReplyOnlyFrees) {
  dm_http_request *held = nullptr;
  route(":0", "POST", "/ack", [&](dm_http_request *r) {
    held = r;
    after(&loop_, 50, [&] { server_->stop(); });
  });
  start();
  with_client([&] {
    std::string body = "records";
    auto r = Client().request("POST", url(":0", "/ack"), &body);
    EXPECT_EQ(r.status, 503);
  });
  run_until([&] { return server_->closed(); });
  EXPECT_TRUE(server_->closed());
  server_.reset();
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(HttpServer::body(held).len, 0u);  // gone: no view into freed memory
  reply_text(held, 200, "too late");          // frees it; nothing is sent
}

TEST_F(HttpServerTest, StopClosesIdleKeepAliveConnections) {
  route(":0", "GET", "/x", [](dm_http_request *r) { reply_text(r, 200, "x"); });
  start();
  auto client = std::make_unique<Client>();
  with_client([&] { EXPECT_EQ(client->request("GET", url(":0", "/x")).body, "x"); });
  // The client keeps its connection open; stop() must still finish promptly.
  uint64_t t0 = uv_now(&loop_);
  server_->stop();
  run_until([&] { return server_->closed(); });
  EXPECT_TRUE(server_->closed());
  EXPECT_LT(uv_now(&loop_) - t0, 2000u);
  client.reset();
}

TEST_F(HttpServerTest, StopCutsAClientThatNeverReadsAfterTheGracePeriod) {
  server_->set_shutdown_grace(200);
  bool replied = false;
  route(":0", "GET", "/big", [&](dm_http_request *r) {
    reply_text(r, 200, std::string(size_t(64) << 20, 'b'));  // far more than socket buffers
    replied = true;
  });
  start();
  // A raw client that sends a request and then never reads the response.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(server_->bound_port(":0")));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
  std::string request = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  run_until([&] { return replied; });
  ASSERT_TRUE(replied);
  run_until([] { return false; }, 200);  // the write is stuck, the connection stays
  EXPECT_EQ(server_->connection_count(), 1u);
  uint64_t t0 = uv_now(&loop_);
  server_->stop();
  run_until([&] { return server_->closed(); });
  EXPECT_TRUE(server_->closed());
  EXPECT_GE(uv_now(&loop_) - t0, 150u);
  close(fd);
}

TEST_F(HttpServerTest, RequestPipelinedBehindAResponseInFlightAtStopGets503) {
  int quick_calls = 0;
  bool replied = false;
  route(":0", "GET", "/big", [&](dm_http_request *r) {
    reply_text(r, 200, std::string(size_t(16) << 20, 'b'));
    replied = true;
  });
  route(":0", "GET", "/quick", [&](dm_http_request *r) {
    ++quick_calls;
    reply_text(r, 200, "quick");
  });
  start();
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(server_->bound_port(":0")));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)), 0);
  std::string requests =
      "GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /quick HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, requests.data(), requests.size(), 0), ssize_t(requests.size()));
  run_until([&] { return replied; });
  server_->stop();
  std::string tail;
  size_t total = 0;
  with_client([&] {
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
      total += size_t(n);
      tail.append(buf, size_t(n));
      if (tail.size() > 4096) tail.erase(0, tail.size() - 4096);
    }
  });
  close(fd);
  EXPECT_GT(total, size_t(16) << 20);
  EXPECT_EQ(quick_calls, 0);  // no handler runs after stop()
  EXPECT_NE(tail.find("HTTP/1.1 503"), std::string::npos) << tail.substr(tail.size() - 300);
}

TEST_F(HttpServerTest, BadListenAddressesAndDuplicateRoutesAreRefused) {
  auto h = [](dm_http_request *r) { reply_text(r, 200, ""); };
  std::string error;
  EXPECT_FALSE(server_->add_route("host.example:80", "GET", "/", h, error));
  EXPECT_NE(error.find("host.example"), std::string::npos) << error;
  EXPECT_FALSE(server_->add_route("127.0.0.1:99999", "GET", "/", h, error));
  EXPECT_FALSE(server_->add_route("[::1", "GET", "/", h, error));
  EXPECT_FALSE(server_->add_route("::1:80", "GET", "/", h, error));
  EXPECT_FALSE(server_->add_route(":0", "GET", "no-slash", h, error));
  EXPECT_FALSE(server_->add_route(":0", "GET", "/a*b", h, error));
  EXPECT_TRUE(server_->add_route(":0", "GET", "/dup", h, error)) << error;
  EXPECT_FALSE(server_->add_route("127.0.0.1:0", "GET", "/dup", h, error));
  EXPECT_NE(error.find("already registered"), std::string::npos) << error;
  EXPECT_TRUE(server_->add_route(":0", "POST", "/dup", h, error)) << error;
}

// True when the kernel has ::1 on an interface (IPv6 on and the loopback configured).
static bool kernel_has_ipv6_loopback() {
  FILE *f = std::fopen("/proc/net/if_inet6", "r");
  if (!f) return false;  // IPv6 compiled out or disabled at boot
  char line[256];
  bool has = false;
  while (!has && std::fgets(line, sizeof line, f))
    has = std::strncmp(line, "00000000000000000000000000000001 ", 33) == 0;
  std::fclose(f);
  return has;
}

TEST_F(HttpServerTest, IPv6LoopbackListens) {
  route("[::1]:0", "GET", "/six", [](dm_http_request *r) { reply_text(r, 200, "six"); });
  std::string error;
  // A skip is honest only when the kernel itself has no ::1; with ::1 present a failure to
  // listen on it is the server's bug and fails the test.
  if (!kernel_has_ipv6_loopback())
    GTEST_SKIP() << "the kernel has no ::1 (/proc/net/if_inet6 lacks it)";
  ASSERT_TRUE(server_->start(error)) << "::1 is configured, yet: " << error;
  int port = server_->bound_port("[0:0::1]:0");
  ASSERT_GT(port, 0);
  with_client([&] {
    auto r = Client().request("GET", "http://[::1]:" + std::to_string(port) + "/six");
    EXPECT_EQ(r.body, "six");
  });
}

TEST_F(HttpServerTest, ListenFailureNamesTheAddress) {
  route(":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, ""); });
  start();
  int taken = server_->bound_port(":0");
  HttpServer second(&loop_);
  std::string error;
  ASSERT_TRUE(second.add_route(
      ":" + std::to_string(taken), "GET", "/b", [](dm_http_request *r) { reply_text(r, 200, ""); },
      error));
  EXPECT_FALSE(second.start(error));
  EXPECT_NE(error.find("127.0.0.1:" + std::to_string(taken)), std::string::npos) << error;
  second.stop();
  run_until([&] { return second.closed(); });
  EXPECT_TRUE(second.closed());
}

TEST_F(HttpServerTest, HandlerThatThrowsGets500) {
  route(":0", "GET", "/boom", [](dm_http_request *) { throw std::runtime_error("boom"); });
  start();
  with_client([&] { EXPECT_EQ(Client().request("GET", url(":0", "/boom")).status, 500); });
}

// ---- streamed responses ------------------------------------------------------------------------

// Calls fn on the loop every period_ms until it returns false; the timer then frees itself.
void every(uv_loop_t *loop, uint64_t period_ms, std::function<bool()> fn) {
  struct Ticker {
    uv_timer_t timer;
    std::function<bool()> fn;
  };
  auto *t = new Ticker{{}, std::move(fn)};
  uv_timer_init(loop, &t->timer);
  t->timer.data = t;
  uv_timer_start(
      &t->timer,
      [](uv_timer_t *h) {
        auto *t = static_cast<Ticker *>(h->data);
        if (t->fn()) return;
        uv_timer_stop(h);
        uv_close(reinterpret_cast<uv_handle_t *>(h),
                 [](uv_handle_t *h) { delete static_cast<Ticker *>(h->data); });
      },
      period_ms, period_ms);
}

// Counts on_close calls and checks that a write from inside on_close is refused.
struct CloseProbe {
  int calls = 0;
  int write_in_close = DM_OK;
  dm_http_request *req = nullptr;
  static void on_close(void *arg) {
    auto *p = static_cast<CloseProbe *>(arg);
    ++p->calls;
    if (p->req != nullptr) p->write_in_close = HttpServer::stream_write(p->req, "late", 4);
  }
};

int start_sse(dm_http_request *r, CloseProbe &probe, size_t max_buffered = 0) {
  probe.req = r;
  HttpServer::add_header(r, "Cache-Control", "no-cache");
  return HttpServer::stream_start(r, 200, "text/event-stream", max_buffered, CloseProbe::on_close,
                                  &probe);
}

int write_text(dm_http_request *r, const std::string &text) {
  return HttpServer::stream_write(r, text.data(), text.size());
}

// A libcurl client that reads a stream as it arrives, on the client thread.
class StreamClient {
 public:
  explicit StreamClient(std::string url) : url_(std::move(url)) {}
  // Returns 0 from the write callback (curl then drops the connection) once this many events
  // ("\n\n"-terminated) have arrived.
  void abort_after(int events) { abort_after_ = events; }
  // Blocks the first body write until release(): the client reads nothing meanwhile.
  void hold() { held_ = true; }
  void release() { held_ = false; }

  void run() {
    CURL *curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 20000L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &StreamClient::on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &StreamClient::on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, this);
    code = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
  }

  std::string body() {
    std::lock_guard<std::mutex> lk(mu_);
    return body_;
  }
  std::string headers() {
    std::lock_guard<std::mutex> lk(mu_);
    return headers_;
  }
  std::atomic<int> events{0};
  std::atomic<size_t> bytes{0};
  CURLcode code = CURLE_OK;
  long status = 0;

 private:
  static size_t on_data(char *p, size_t size, size_t n, void *self_) {
    auto *self = static_cast<StreamClient *>(self_);
    while (self->held_) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    {
      std::lock_guard<std::mutex> lk(self->mu_);
      self->body_.append(p, size * n);
    }
    int found = 0;
    for (size_t i = 0; i < size * n; ++i) {
      if (p[i] == '\n' && self->last_ == '\n') ++found;
      self->last_ = p[i];
    }
    self->bytes += size * n;
    self->events += found;
    if (self->abort_after_ >= 0 && self->events >= self->abort_after_) return 0;
    return size * n;
  }
  static size_t on_header(char *p, size_t size, size_t n, void *self_) {
    auto *self = static_cast<StreamClient *>(self_);
    std::lock_guard<std::mutex> lk(self->mu_);
    self->headers_.append(p, size * n);
    return size * n;
  }

  std::string url_;
  int abort_after_ = -1;
  std::atomic<bool> held_{false};
  char last_ = 0;
  std::mutex mu_;
  std::string body_, headers_;
};

// A plain TCP client, for requests libcurl would not send (pipelining, HTTP/1.0, never reading).
int connect_raw(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until `marker` has arrived (or EOF / 10 s); returns everything read.
std::string read_until(int fd, const std::string &marker) {
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  char buf[4096];
  while (got.find(marker) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) break;
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    got.append(buf, size_t(n));
  }
  return got;
}

TEST_F(HttpServerTest, StreamedEventsReachTheClientOneByOneAsTheyAreWritten) {
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    stream = r;
  });
  start();
  StreamClient client(url(":0", "/tail?service=api"));
  std::string expected;
  int sent = 0, end_calls = 0;
  // The next event is written only once the client has the previous one: if anything held
  // events back (buffering, framing), the client would time out.
  every(&loop_, 5, [&] {
    if (stream == nullptr || probe.calls > 0) return probe.calls == 0;
    if (client.events.load() < sent) return true;
    if (sent == 5) {
      if (end_calls++ == 0) HttpServer::stream_end(stream);
      return true;
    }
    ++sent;
    std::string event =
        "id: " + std::to_string(sent) + "\ndata: event " + std::to_string(sent) + "\n\n";
    expected += event;
    EXPECT_EQ(write_text(stream, event), DM_OK);
    return true;
  });
  with_client([&] { client.run(); });
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(client.code, CURLE_OK);
  EXPECT_EQ(client.status, 200);
  EXPECT_EQ(client.body(), expected);
  std::string headers = client.headers();
  EXPECT_TRUE(has_header(headers, "content-type", "text/event-stream")) << headers;
  EXPECT_TRUE(has_header(headers, "cache-control", "no-cache")) << headers;
  EXPECT_TRUE(has_header(headers, "transfer-encoding", "chunked")) << headers;
  EXPECT_EQ(headers.find("ontent-Length"), std::string::npos) << headers;
  EXPECT_EQ(probe.calls, 1);
  EXPECT_EQ(probe.write_in_close, DM_ERR);
  EXPECT_EQ(server_->stream_count(), 0u);
  run_until([] { return false; }, 50);  // the ticker has seen on_close and freed itself
}

TEST_F(HttpServerTest, StreamHeadersGoOutAtStartAndChunksFrameEachWrite) {
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    HttpServer::add_header(r, "Content-Length", "5");  // contradicts the framing: dropped
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    stream = r;
  });
  start();
  int fd = connect_raw(server_->bound_port(":0"));
  ASSERT_GE(fd, 0);
  std::string request = "GET /tail HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string head, chunk, rest;
  // Nothing is written yet: the client must still see the response open (EventSource's onopen).
  with_client([&] { head = read_until(fd, "\r\n\r\n"); });
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << head;
  EXPECT_TRUE(has_header(head, "transfer-encoding", "chunked")) << head;
  EXPECT_TRUE(has_header(head, "content-type", "text/event-stream")) << head;
  EXPECT_TRUE(has_header(head, "connection", "keep-alive")) << head;
  EXPECT_FALSE(has_header(head, "content-length", "5")) << head;
  ASSERT_NE(stream, nullptr);
  EXPECT_EQ(write_text(stream, "data: hello\n\n"), DM_OK);
  with_client([&] { chunk = read_until(fd, "\n\n\r\n"); });
  EXPECT_EQ(chunk, "d\r\ndata: hello\n\n\r\n");
  HttpServer::stream_end(stream);
  with_client([&] { rest = read_until(fd, "0\r\n\r\n"); });
  EXPECT_EQ(rest, "0\r\n\r\n");
  close(fd);
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
}

TEST_F(HttpServerTest, KeepAliveConnectionServesTheNextRequestAfterAStreamEnds) {
  CloseProbe probe;
  route(":0", "GET", "/events", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    // Written and ended before the headers are even out: all of it waits for the first proceed.
    EXPECT_EQ(write_text(r, "data: a\n\n"), DM_OK);
    EXPECT_EQ(write_text(r, "data: b\n\n"), DM_OK);
    HttpServer::stream_end(r);
    EXPECT_EQ(probe.calls, 0);  // never from inside a stream call
  });
  route(":0", "GET", "/after", [](dm_http_request *r) { reply_text(r, 200, "after"); });
  start();
  with_client([&] {
    Client c;
    auto first = c.request("GET", url(":0", "/events"));
    EXPECT_EQ(first.code, CURLE_OK);
    EXPECT_EQ(first.body, "data: a\n\ndata: b\n\n");
    auto second = c.request("GET", url(":0", "/after"));
    EXPECT_EQ(second.body, "after");
    EXPECT_EQ(second.new_connections, 0);  // the chunked framing left the connection usable
  });
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
}

TEST_F(HttpServerTest, ClientLeavingAnIdleStreamIsNoticedWithoutAWrite) {
  CloseProbe probe;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    EXPECT_EQ(write_text(r, "data: only\n\n"), DM_OK);
    // Nothing is written after this: a quiet tail whose client goes away.
  });
  start();
  StreamClient client(url(":0", "/tail"));
  client.abort_after(1);
  with_client([&] { client.run(); });
  EXPECT_EQ(client.code, CURLE_WRITE_ERROR);  // the client dropped the connection
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
  EXPECT_EQ(probe.write_in_close, DM_ERR);
  run_until([&] { return server_->connection_count() == 0; });
  EXPECT_EQ(server_->connection_count(), 0u);
  EXPECT_EQ(server_->stream_count(), 0u);
}

TEST_F(HttpServerTest, WritesAfterTheClientLeftFailAndOnCloseComesOnce) {
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  int ok = 0, refused = 0, other = 0;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    stream = r;
  });
  start();
  // Keeps writing until on_close, as a busy tail would; after on_close the handle is dead.
  every(&loop_, 2, [&] {
    if (probe.calls > 0) return false;
    if (stream == nullptr) return true;
    int rc = write_text(stream, "data: " + std::string(1000, 'x') + "\n\n");
    (rc == DM_OK ? ok : rc == DM_ERR ? refused : other)++;
    return true;
  });
  StreamClient client(url(":0", "/tail"));
  client.abort_after(3);
  with_client([&] { client.run(); });
  run_until([&] { return probe.calls > 0; });
  run_until([] { return false; }, 100);  // no second on_close
  EXPECT_EQ(probe.calls, 1);
  EXPECT_EQ(probe.write_in_close, DM_ERR);
  EXPECT_GE(ok, 3);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(server_->stream_count(), 0u);
}

TEST_F(HttpServerTest, PipelinedRequestIsServedAfterTheStreamEnds) {
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    stream = r;
  });
  route(":0", "GET", "/next", [](dm_http_request *r) { reply_text(r, 200, "next-body"); });
  start();
  int fd = connect_raw(server_->bound_port(":0"));
  ASSERT_GE(fd, 0);
  std::string first = "GET /tail HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, first.data(), first.size(), 0), ssize_t(first.size()));
  run_until([&] { return stream != nullptr; });
  ASSERT_NE(stream, nullptr);
  std::string got;
  with_client([&] {
    got = read_until(fd, "\r\n\r\n");  // the stream's headers: h2o reads no more now
    std::string second = "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(send(fd, second.data(), second.size(), 0), ssize_t(second.size()));
  });
  run_until([] { return false; }, 50);  // the server sees the waiting request
  EXPECT_EQ(probe.calls, 0);            // ... and does not take it for the client leaving
  EXPECT_EQ(write_text(stream, "data: 1\n\n"), DM_OK);
  HttpServer::stream_end(stream);
  with_client([&] { got += read_until(fd, "next-body"); });
  close(fd);
  EXPECT_NE(got.find("data: 1\n\n"), std::string::npos) << got;
  EXPECT_NE(got.find("next-body"), std::string::npos) << got;
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
}

TEST_F(HttpServerTest, ClientThatPipelinedAndLeftIsNoticedByTheNextWrites) {
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  int refused = 0;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    stream = r;
  });
  start();
  int fd = connect_raw(server_->bound_port(":0"));
  ASSERT_GE(fd, 0);
  std::string first = "GET /tail HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, first.data(), first.size(), 0), ssize_t(first.size()));
  with_client([&] {
    read_until(fd, "\r\n\r\n");
    // Unread bytes on the server side keep the poll from seeing the close: writes must.
    std::string more = "GET /tail HTTP/1.1\r\nHost: x\r\n\r\n";
    send(fd, more.data(), more.size(), 0);
  });
  run_until([] { return false; }, 50);
  close(fd);
  every(&loop_, 2, [&] {
    if (probe.calls > 0) return false;
    if (write_text(stream, "data: x\n\n") == DM_ERR) ++refused;
    return true;
  });
  run_until([&] { return probe.calls > 0; });
  run_until([] { return false; }, 50);
  EXPECT_EQ(probe.calls, 1);
  EXPECT_EQ(probe.write_in_close, DM_ERR);
  EXPECT_EQ(server_->stream_count(), 0u);
}

TEST_F(HttpServerTest, StopEndsOpenStreamsAndCallsEveryOnCloseBeforeReturning) {
  CloseProbe probes[2];
  std::vector<dm_http_request *> streams;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_LT(streams.size(), 2u);
    ASSERT_EQ(start_sse(r, probes[streams.size()]), DM_OK);
    EXPECT_EQ(write_text(r, "data: hello\n\n"), DM_OK);
    streams.push_back(r);
  });
  start();
  StreamClient a(url(":0", "/tail")), b(url(":0", "/tail"));
  int closes_at_stop = -1;
  every(&loop_, 5, [&] {
    if (a.events.load() < 1 || b.events.load() < 1) return true;
    for (dm_http_request *r : streams) EXPECT_EQ(write_text(r, "data: last\n\n"), DM_OK);
    server_->stop();
    closes_at_stop = probes[0].calls + probes[1].calls;
    return false;
  });
  with_client([&] {
    std::thread other([&] { b.run(); });
    a.run();
    other.join();
  });
  EXPECT_EQ(closes_at_stop, 2);  // the engine destroys plugins right after stop()
  for (StreamClient *c : {&a, &b}) {
    EXPECT_EQ(c->code, CURLE_OK);  // a clean end of the body, queued data included
    EXPECT_EQ(c->body(), "data: hello\n\ndata: last\n\n");
  }
  run_until([&] { return server_->closed(); });
  EXPECT_TRUE(server_->closed());
  EXPECT_EQ(probes[0].calls, 1);
  EXPECT_EQ(probes[1].calls, 1);
  EXPECT_EQ(probes[0].write_in_close, DM_ERR);
}

TEST_F(HttpServerTest, StopCutsAStreamWhoseClientNeverReads) {
  server_->set_shutdown_grace(200);
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe, 64 * 1024), DM_OK);
    stream = r;
  });
  start();
  int fd = connect_raw(server_->bound_port(":0"));
  ASSERT_GE(fd, 0);
  std::string request = "GET /tail HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string chunk(16 * 1024, 'z');
  int full_ticks = 0;
  every(&loop_, 1, [&] {
    if (stream == nullptr) return true;
    if (write_text(stream, chunk) == DM_ERR_FULL) ++full_ticks;
    return full_ticks < 20;
  });
  run_until([&] { return full_ticks >= 20; }, 20000);
  ASSERT_GE(full_ticks, 20);
  server_->stop();
  EXPECT_EQ(probe.calls, 1);
  run_until([&] { return server_->closed(); });
  EXPECT_TRUE(server_->closed());
  EXPECT_EQ(probe.calls, 1);
  close(fd);
}

TEST_F(HttpServerTest, SlowClientGetsFullPastMaxBufferedAndMemoryStaysBounded) {
  constexpr size_t kMax = 256 * 1024;
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe, kMax), DM_OK);
    stream = r;
  });
  start();
  StreamClient client(url(":0", "/tail"));
  client.hold();  // reads nothing until released: the socket buffers fill, then ours
  std::string accepted;
  size_t peak = 0, full = 0, seq = 0;
  int full_ticks = 0;
  bool released = false, ended = false;
  every(&loop_, 1, [&] {
    if (stream == nullptr) return true;
    if (!released) {
      // Writes until refused, every tick: DM_ERR_FULL must come, and keep coming.
      for (;;) {
        char chunk[16 * 1024];
        std::snprintf(chunk, sizeof(chunk), "%08zu", seq);
        std::memset(chunk + 8, char('a' + seq % 26), sizeof(chunk) - 8);
        int rc = HttpServer::stream_write(stream, chunk, sizeof(chunk));
        peak = std::max(peak, server_->stream_buffered_bytes());
        if (rc == DM_ERR_FULL) {
          ++full;
          break;
        }
        EXPECT_EQ(rc, DM_OK);
        accepted.append(chunk, sizeof(chunk));
        ++seq;
        full_ticks = -1;
      }
      if (++full_ticks >= 50) {
        released = true;
        client.release();
      }
      return true;
    }
    // Once the client reads again, the queue drains and writes are taken again.
    if (server_->stream_buffered_bytes() != 0) return true;
    if (!ended) {
      EXPECT_EQ(write_text(stream, "tail"), DM_OK);
      accepted += "tail";
      HttpServer::stream_end(stream);
      ended = true;
    }
    return probe.calls == 0;
  });
  with_client([&] { client.run(); });
  run_until([&] { return probe.calls > 0; });
  EXPECT_TRUE(released);
  EXPECT_GT(full, 50u);
  EXPECT_LE(peak, kMax);
  EXPECT_EQ(client.code, CURLE_OK);
  EXPECT_EQ(client.bytes.load(), accepted.size());
  EXPECT_TRUE(client.body() == accepted) << "the body differs from what was accepted";
  EXPECT_EQ(probe.calls, 1);
  run_until([] { return false; }, 20);
}

TEST_F(HttpServerTest, OneWriteLargerThanTheLimitIntoAnEmptyQueueIsTaken) {
  CloseProbe probe;
  route(":0", "GET", "/big", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe, 1024), DM_OK);
    EXPECT_EQ(write_text(r, std::string(4096, 'q')), DM_OK);
    EXPECT_EQ(write_text(r, "1"), DM_ERR_FULL);  // the first is still waiting
    EXPECT_EQ(HttpServer::stream_write(r, nullptr, 0), DM_OK);
    EXPECT_EQ(HttpServer::stream_write(r, nullptr, 5), DM_ERR_INVALID);
    HttpServer::stream_end(r);
  });
  start();
  with_client(
      [&] { EXPECT_EQ(Client().request("GET", url(":0", "/big")).body, std::string(4096, 'q')); });
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
}

TEST_F(HttpServerTest, WritesAfterEndAreRefusedAndOnCloseFollowsTheEnd) {
  CloseProbe probe;
  int after_end = DM_OK, second_start = DM_OK;
  route(":0", "GET", "/s", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    second_start = HttpServer::stream_start(r, 200, "text/plain", 0, CloseProbe::on_close, &probe);
    EXPECT_EQ(write_text(r, "a"), DM_OK);
    HttpServer::stream_end(r);
    HttpServer::stream_end(r);  // harmless
    after_end = write_text(r, "b");
    reply_text(r, 500, "ignored");  // the response is the stream's
  });
  start();
  with_client([&] {
    auto res = Client().request("GET", url(":0", "/s"));
    EXPECT_EQ(res.status, 200);
    EXPECT_EQ(res.body, "a");
  });
  EXPECT_EQ(second_start, DM_ERR_INVALID);
  EXPECT_EQ(after_end, DM_ERR);
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
}

TEST_F(HttpServerTest, BadStreamArgumentsAnswer500AndNeverCallOnClose) {
  CloseProbe probe;
  std::vector<int> codes;
  route(":0", "GET", "/no-callback", [&](dm_http_request *r) {
    codes.push_back(HttpServer::stream_start(r, 200, "text/plain", 0, nullptr, nullptr));
  });
  route(":0", "GET", "/no-content", [&](dm_http_request *r) {
    codes.push_back(
        HttpServer::stream_start(r, 204, "text/plain", 0, CloseProbe::on_close, &probe));
  });
  route(":0", "GET", "/bad-status", [&](dm_http_request *r) {
    codes.push_back(HttpServer::stream_start(r, 42, "text/plain", 0, CloseProbe::on_close, &probe));
  });
  route(":0", "GET", "/bad-type", [&](dm_http_request *r) {
    codes.push_back(HttpServer::stream_start(r, 200, "text/plain\r\nX-Injected: 1", 0,
                                             CloseProbe::on_close, &probe));
  });
  start();
  with_client([&] {
    Client c;
    for (const char *path : {"/no-callback", "/no-content", "/bad-status", "/bad-type"}) {
      auto res = c.request("GET", url(":0", path));
      EXPECT_EQ(res.status, 500) << path;
      EXPECT_EQ(res.headers.find("Injected"), std::string::npos);
    }
  });
  EXPECT_EQ(codes, std::vector<int>(4, DM_ERR_INVALID));
  run_until([] { return false; }, 20);
  EXPECT_EQ(probe.calls, 0);
  EXPECT_EQ(server_->stream_count(), 0u);
}

TEST_F(HttpServerTest, StreamStartAfterStopAnsweredTheRequestIsRefused) {
  CloseProbe probe;
  dm_http_request *held = nullptr;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    held = r;
    after(&loop_, 20, [&] { server_->stop(); });
  });
  start();
  with_client([&] { EXPECT_EQ(Client().request("GET", url(":0", "/tail")).status, 503); });
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(start_sse(held, probe), DM_ERR);  // frees it; on_close never comes
  run_until([&] { return server_->closed(); });
  EXPECT_EQ(probe.calls, 0);
}

TEST_F(HttpServerTest, Http10ClientGetsAStreamDelimitedByTheConnectionClose) {
  CloseProbe probe;
  route(":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    EXPECT_EQ(write_text(r, "data: one\n\n"), DM_OK);
    after(&loop_, 20, [r] {
      EXPECT_EQ(write_text(r, "data: two\n\n"), DM_OK);
      HttpServer::stream_end(r);
    });
  });
  start();
  int fd = connect_raw(server_->bound_port(":0"));
  ASSERT_GE(fd, 0);
  std::string request = "GET /tail HTTP/1.0\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string got;
  with_client([&] { got = read_until(fd, "\x01never"); });  // to EOF
  close(fd);
  EXPECT_EQ(got.find("chunked"), std::string::npos) << got;
  size_t body = got.find("\r\n\r\n");
  ASSERT_NE(body, std::string::npos) << got;
  EXPECT_EQ(got.substr(body + 4), "data: one\n\ndata: two\n\n");
  run_until([&] { return probe.calls > 0; });
  EXPECT_EQ(probe.calls, 1);
}

// ---- routes by owner (a reload) ------------------------------------------------------------

// A socket listening on 127.0.0.1 at a port the kernel picks: an address taken by someone else.
int listen_elsewhere(int &port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&addr), len) != 0 || listen(fd, 1) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &len) != 0)
    return -1;
  port = ntohs(addr.sin_port);
  return fd;
}

TEST_F(HttpServerTest, RemovingAnOwnersRoutesKeepsTheOtherOwnersOnItsAddress) {
  int a = 0, b = 0;
  owned_route(&a, ":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "a"); });
  owned_route(&b, ":0", "GET", "/b", [](dm_http_request *r) { reply_text(r, 200, "b"); });
  owned_route(&a, ":0", "POST", "/b", [](dm_http_request *r) { reply_text(r, 200, "a"); });
  start();
  server_->remove_routes(&a);
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(server_->listening(":0"));
  with_client([&] {
    Client c;
    EXPECT_EQ(c.request("GET", url(":0", "/a")).status, 404);
    EXPECT_EQ(c.request("GET", url(":0", "/b")).body, "b");
    std::string body = "x";
    EXPECT_EQ(c.request("POST", url(":0", "/b"), &body).status, 405);
  });
}

TEST_F(HttpServerTest, AnAddressLeftWithoutRoutesStopsListeningAndItsIdleConnectionsClose) {
  int a = 0;
  owned_route(&a, ":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "a"); });
  start();
  int port = server_->bound_port(":0");
  int fd = connect_raw(port);
  ASSERT_GE(fd, 0);
  std::string request = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(send(fd, request.data(), request.size(), 0), ssize_t(request.size()));
  std::string got;
  with_client([&] { got = read_until(fd, "\r\n\r\na"); });
  EXPECT_NE(got.find("200 OK"), std::string::npos) << got;
  EXPECT_EQ(server_->connection_count(), 1u);  // kept alive

  server_->remove_routes(&a);
  run_until([&] { return !server_->listening(":0") && server_->connection_count() == 0; });
  EXPECT_FALSE(server_->listening(":0"));
  EXPECT_EQ(server_->connection_count(), 0u);
  with_client([&] { EXPECT_EQ(read_until(fd, "\x01never"), ""); });  // EOF
  close(fd);
  EXPECT_EQ(connect_raw(port), -1);  // refused
}

TEST_F(HttpServerTest, RoutesSwappedWithinOneLoopTurnKeepTheSocketAndItsConnections) {
  int old_owner = 0, new_owner = 0;
  owned_route(&old_owner, ":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "old"); });
  start();
  int port = server_->bound_port(":0");
  Client c;  // keeps its connection across the swap
  with_client([&] { EXPECT_EQ(c.request("GET", url(":0", "/a")).body, "old"); });
  server_->remove_routes(&old_owner);
  owned_route(&new_owner, ":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "new"); });
  uv_run(&loop_, UV_RUN_NOWAIT);
  EXPECT_TRUE(server_->listening(":0"));
  EXPECT_EQ(server_->bound_port(":0"), port);
  with_client([&] {
    auto r = c.request("GET", url(":0", "/a"));
    EXPECT_EQ(r.body, "new");
    EXPECT_EQ(r.new_connections, 0);
  });
}

TEST_F(HttpServerTest, ARouteOnANewAddressAfterStartIsServedAtOnce) {
  route("127.0.0.1:0", "GET", "/first", [](dm_http_request *r) { reply_text(r, 200, "1"); });
  start();
  EXPECT_FALSE(server_->listening("127.0.0.2:0"));
  route("127.0.0.2:0", "GET", "/second", [](dm_http_request *r) { reply_text(r, 200, "2"); });
  EXPECT_TRUE(server_->listening("127.0.0.2:0"));
  int port = server_->bound_port("127.0.0.2:0");
  ASSERT_GT(port, 0);
  with_client([&] {
    EXPECT_EQ(Client().request("GET", "http://127.0.0.2:" + std::to_string(port) + "/second").body,
              "2");
    EXPECT_EQ(Client().request("GET", url("127.0.0.1:0", "/first")).body, "1");
  });
}

TEST_F(HttpServerTest, AnAddressTakenElsewhereFailsAfterStartNamingItAndCanBindSaysSo) {
  route(":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "a"); });
  start();
  int port = 0;
  int taken = listen_elsewhere(port);
  ASSERT_GE(taken, 0);
  std::string address = "127.0.0.1:" + std::to_string(port), error;
  EXPECT_FALSE(HttpServer::can_bind(address, error));
  EXPECT_NE(error.find(address), std::string::npos) << error;
  EXPECT_NE(error.find("address in use"), std::string::npos) << error;
  EXPECT_FALSE(server_->add_route(
      address, "GET", "/b", [](dm_http_request *r) { reply_text(r, 200, "b"); }, error));
  EXPECT_NE(error.find(address), std::string::npos) << error;
  EXPECT_FALSE(server_->listening(address));
  close(taken);
  EXPECT_TRUE(HttpServer::can_bind(address, error)) << error;
  // Our own listener's address is not free for another socket.
  EXPECT_FALSE(HttpServer::can_bind(":" + std::to_string(server_->bound_port(":0")), error));
  // The failed address can be served once it is free.
  route(address, "GET", "/b", [](dm_http_request *r) { reply_text(r, 200, "b"); });
  EXPECT_TRUE(server_->listening(address));
  with_client([&] { EXPECT_EQ(Client().request("GET", "http://" + address + "/b").body, "b"); });
}

TEST_F(HttpServerTest, ARequestInItsHandlerFinishesAfterItsRoutesAreRemoved) {
  int a = 0;
  bool removed = false;
  owned_route(&a, ":0", "POST", "/ack", [&](dm_http_request *r) {
    after(&loop_, 0, [&, r] {
      server_->remove_routes(&a);
      removed = true;
      // The listener closes at the next turn; the reply comes after that.
      after(&loop_, 1, [r] { reply_text(r, 200, "acked " + str(HttpServer::body(r))); });
    });
  });
  start();
  with_client([&] {
    std::string body = "records";
    auto r = Client().request("POST", url(":0", "/ack"), &body);
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "acked records");
  });
  EXPECT_TRUE(removed);
  run_until([&] { return server_->connection_count() == 0; });
  EXPECT_FALSE(server_->listening(":0"));
  EXPECT_EQ(server_->connection_count(), 0u);
}

TEST_F(HttpServerTest, RemovingAnOwnersRoutesEndsItsStreamsWithOnCloseBeforeReturning) {
  int a = 0;
  CloseProbe probe;
  dm_http_request *stream = nullptr;
  owned_route(&a, ":0", "GET", "/tail", [&](dm_http_request *r) {
    ASSERT_EQ(start_sse(r, probe), DM_OK);
    EXPECT_EQ(write_text(r, "data: one\n\n"), DM_OK);
    stream = r;
  });
  start();
  StreamClient client(url(":0", "/tail"));
  int closes_at_remove = -1;
  every(&loop_, 5, [&] {
    if (client.events.load() < 1) return true;
    server_->remove_routes(&a);
    closes_at_remove = probe.calls;
    return false;
  });
  with_client([&] { client.run(); });
  EXPECT_EQ(closes_at_remove, 1);
  EXPECT_EQ(client.code, CURLE_OK);  // a clean end
  EXPECT_EQ(client.body(), "data: one\n\n");
  EXPECT_EQ(probe.calls, 1);
}

TEST_F(HttpServerTest, DescribeListsEachAddressWithItsRoutes) {
  route(":0", "GET", "/query/logs", [](dm_http_request *r) { reply_text(r, 200, ""); });
  route(":0", "POST", "/ingest/*", [](dm_http_request *r) { reply_text(r, 200, ""); });
  start();
  auto lines = server_->describe();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "http://127.0.0.1:" + std::to_string(server_->bound_port(":0")) +
                          ": GET /query/logs, POST /ingest/*");
}

// ---- TLS ---------------------------------------------------------------------------------------

// A CA and a server certificate for 127.0.0.1 with the given CN, made with the openssl CLI into
// dir (ca.pem, server.pem, server.key); run again, it renews server.pem in place.
bool make_server_certificate(const std::string &dir, const std::string &cn) {
  std::string script =
      "set -e; cd " + dir +
      "\n[ -f ca.pem ] || { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "
      "ca.key; openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=test-ca; }"
      "\nopenssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key"
      "\nopenssl req -new -key server.key -out server.csr -subj /CN=" +
      cn +
      "\nprintf 'subjectAltName=IP:127.0.0.1\\n' > san.cnf"
      "\nopenssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "server.pem -days 2 -extfile san.cnf";
  return std::system(("(" + script + ") >/dev/null 2>&1").c_str()) == 0;
}

struct TlsAnswer {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string subject;  // the server certificate's subject, as curl prints it
  std::string body;
};

// A GET over TLS that trusts only ca; with `reuse` its connection is kept for the next call.
TlsAnswer tls_get(const std::string &url, const std::string &ca, CURL *reuse = nullptr) {
  TlsAnswer a;
  CURL *curl = reuse != nullptr ? reuse : curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(curl, CURLOPT_CAINFO, ca.c_str());
  curl_easy_setopt(curl, CURLOPT_CERTINFO, 1L);
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION, +[](char *p, size_t size, size_t n, void *out) {
        static_cast<std::string *>(out)->append(p, size * n);
        return size * n;
      });
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &a.body);
  a.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.status);
  curl_certinfo *info = nullptr;
  if (curl_easy_getinfo(curl, CURLINFO_CERTINFO, &info) == CURLE_OK && info != nullptr &&
      info->num_of_certs > 0) {
    for (curl_slist *s = info->certinfo[0]; s != nullptr; s = s->next)
      if (std::strncmp(s->data, "Subject:", 8) == 0) a.subject = s->data + 8;
  }
  if (reuse == nullptr) curl_easy_cleanup(curl);
  return a;
}

class HttpTlsTest : public HttpServerTest {
 protected:
  void SetUp() override {
    HttpServerTest::SetUp();
    char tmpl[] = "/tmp/devmesh-tls-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_TRUE(make_server_certificate(dir_, "first")) << "openssl failed in " << dir_;
    tls_.cert = dir_ + "/server.pem";
    tls_.key = dir_ + "/server.key";
  }
  void TearDown() override {
    HttpServerTest::TearDown();
    std::system(("rm -rf " + dir_).c_str());
  }
  std::string https(const std::string &listen, const std::string &path) {
    return "https://127.0.0.1:" + std::to_string(server_->bound_port(listen)) + path;
  }
  std::string dir_;
  HttpServer::Tls tls_;
};

TEST_F(HttpTlsTest, ReloadGivesNewConnectionsTheRenewedCertificateAndAFailedLoadKeepsTheOld) {
  std::string error;
  ASSERT_TRUE(server_->set_tls(":0", tls_, error)) << error;
  route(":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "a"); });
  start();
  const std::string ca = dir_ + "/ca.pem";
  CURL *kept = curl_easy_init();
  with_client([&] {
    auto a = tls_get(https(":0", "/a"), ca, kept);
    EXPECT_EQ(a.code, CURLE_OK);
    EXPECT_EQ(a.body, "a");
    EXPECT_NE(a.subject.find("first"), std::string::npos) << a.subject;
  });

  ASSERT_TRUE(make_server_certificate(dir_, "second"));
  EXPECT_TRUE(server_->reload_tls(error)) << error;
  with_client([&] {
    auto a = tls_get(https(":0", "/a"), ca);
    EXPECT_EQ(a.body, "a");
    EXPECT_NE(a.subject.find("second"), std::string::npos) << a.subject;
    // The connection opened before the reload goes on with its session.
    auto b = tls_get(https(":0", "/a"), ca, kept);
    EXPECT_EQ(b.body, "a");
    long connects = -1;
    curl_easy_getinfo(kept, CURLINFO_NUM_CONNECTS, &connects);
    EXPECT_EQ(connects, 0);
  });
  curl_easy_cleanup(kept);

  {
    std::FILE *f = std::fopen(tls_.cert.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("not a certificate\n", f);
    std::fclose(f);
  }
  EXPECT_FALSE(server_->reload_tls(error));
  EXPECT_NE(error.find("tls.cert " + tls_.cert), std::string::npos) << error;
  EXPECT_NE(error.find("keeping"), std::string::npos) << error;
  with_client([&] {
    auto a = tls_get(https(":0", "/a"), ca);
    EXPECT_EQ(a.body, "a");
    EXPECT_NE(a.subject.find("second"), std::string::npos) << a.subject;
  });
}

TEST_F(HttpTlsTest, OwnersOfOneAddressMustAgreeAndAClaimGoesWithItsOwnersRoutes) {
  int a = 0, b = 0, c = 0;
  std::string error;
  ASSERT_TRUE(server_->set_tls(":0", tls_, error, &a, "in.a")) << error;
  HttpServer::Tls mtls = tls_;
  mtls.ca = dir_ + "/ca.pem";
  EXPECT_FALSE(server_->set_tls(":0", mtls, error, &b, "query.b"));
  EXPECT_NE(error.find("'in.a'"), std::string::npos) << error;
  EXPECT_NE(error.find("tls.ca"), std::string::npos) << error;
  EXPECT_TRUE(server_->set_tls(":0", tls_, error, &b, "query.b")) << error;
  // A route from an owner that gave no TLS settings would be served TLS it did not ask for.
  EXPECT_FALSE(server_->add_route(
      ":0", "GET", "/c", [](dm_http_request *r) { reply_text(r, 200, ""); }, error, &c));
  EXPECT_NE(error.find("serves TLS"), std::string::npos) << error;
  owned_route(&a, ":0", "POST", "/in", [](dm_http_request *r) { reply_text(r, 200, ""); });
  owned_route(&b, ":0", "GET", "/q", [](dm_http_request *r) { reply_text(r, 200, "q"); });
  start();
  EXPECT_EQ(server_->describe().at(0).rfind("https://", 0), 0u) << server_->describe().at(0);
  // A reload replacing both owners with one asking for mTLS: its claim stands alone.
  server_->remove_routes(&a);
  server_->remove_routes(&b);
  EXPECT_TRUE(server_->set_tls(":0", mtls, error, &c, "query.c")) << error;
  owned_route(&c, ":0", "GET", "/q", [](dm_http_request *r) { reply_text(r, 200, "q"); });
  EXPECT_NE(server_->describe().at(0).find("(client certificates required)"), std::string::npos);
  with_client([&] {
    auto r = tls_get(https(":0", "/q"), dir_ + "/ca.pem");
    EXPECT_NE(r.code, CURLE_OK);  // no client certificate
  });
  // Plain routes first: TLS asked later by another owner is refused, naming a route.
  EXPECT_TRUE(server_->add_route(
      "127.0.0.2:0", "GET", "/p", [](dm_http_request *r) { reply_text(r, 200, ""); }, error, &a));
  EXPECT_FALSE(server_->set_tls("127.0.0.2:0", tls_, error, &b, "query.b"));
  EXPECT_NE(error.find("plain HTTP (GET /p)"), std::string::npos) << error;
}

TEST_F(HttpTlsTest, MissingOrMismatchedFilesAreNamed) {
  std::string error;
  HttpServer::Tls t = tls_;
  t.cert = dir_ + "/nope.pem";
  EXPECT_FALSE(server_->set_tls(":0", t, error));
  EXPECT_NE(error.find("tls.cert " + t.cert + ": No such file"), std::string::npos) << error;
  ASSERT_EQ(std::system(("cd " + dir_ +
                         " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
                         "-out other.key >/dev/null 2>&1")
                            .c_str()),
            0);
  t = tls_;
  t.key = dir_ + "/other.key";
  EXPECT_FALSE(server_->set_tls(":0", t, error));
  EXPECT_NE(
      error.find("tls.key " + t.key + " does not match the certificate in tls.cert " + tls_.cert),
      std::string::npos)
      << error;
  EXPECT_FALSE(HttpServer::check_tls(t, error));  // the dry run's check says the same
  EXPECT_NE(error.find("does not match"), std::string::npos) << error;
  EXPECT_TRUE(HttpServer::check_tls(tls_, error)) << error;
  t = tls_;
  t.min_version = "1.1";
  EXPECT_FALSE(server_->set_tls(":0", t, error));
  EXPECT_NE(error.find("tls.min_version"), std::string::npos) << error;
  // Nothing was claimed by the failures: a plain route is still welcome.
  route(":0", "GET", "/a", [](dm_http_request *r) { reply_text(r, 200, "a"); });
}

}  // namespace
