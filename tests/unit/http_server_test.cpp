// The HTTP server against a real libcurl client: routing, bodies, limits, headers, delayed
// replies, disconnects, keep-alive and shutdown, on a real libuv loop.
#include <curl/curl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
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

TEST_F(HttpServerTest, IPv6LoopbackListens) {
  route("[::1]:0", "GET", "/six", [](dm_http_request *r) { reply_text(r, 200, "six"); });
  std::string error;
  if (!server_->start(error)) GTEST_SKIP() << "no IPv6 loopback here: " << error;
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

}  // namespace
