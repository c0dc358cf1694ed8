// The engine's HTTP server: libh2o on the engine's libuv loop. Routes are registered per
// listen address; everything registered on one address shares one listener.
#pragma once

#include <devmesh/plugin.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace devmesh {

class HttpServer;

// What a handler gets; implements the dm_http_request handle of the ABI.
// Lifetime: owned by the server until reply() is called; if the client goes away first, the
// request is marked gone and a later reply() only frees it. A streamed response (stream_start)
// stays valid until its on_close callback has returned.
// Threading: every HttpServer call, including reply(), the stream calls and the accessors, is for
// the loop thread.
class HttpRequest;

using HttpHandler = std::function<void(dm_http_request *req)>;

class HttpServer {
 public:
  explicit HttpServer(uv_loop_t *loop);
  ~HttpServer();
  // Requests refused with 400 for conflicting framing (two differing Content-Length, or
  // Content-Length with Transfer-Encoding), by every server of the process.
  static uint64_t framing_refusals();
  HttpServer(const HttpServer &) = delete;
  HttpServer &operator=(const HttpServer &) = delete;

  // listen: "127.0.0.1:8000", "0.0.0.0:8000", "[::1]:8000", ":8000" (= 127.0.0.1), "8000".
  // path: exact, or a prefix when it ends in '*'. Fails (false + error) on a malformed address
  // or a duplicate (method, path) on the same address. owner: who registered it (an instance;
  // nullptr for the engine's own), for remove_routes. After start() a new address is bound at
  // once (false + error when it cannot be).
  bool add_route(const std::string &listen, const std::string &method, const std::string &path,
                 HttpHandler handler, std::string &error, const void *owner = nullptr);
  // A reload: the owner's routes and TLS claims are removed (requests already in a handler
  // finish; the owner's open streams end, their on_close called before this returns). An
  // address left with no route stops listening at the next loop turn (so removing an owner and
  // adding its successor in one callback keeps the socket); its connections finish their
  // requests and close.
  void remove_routes(const void *owner);
  // TLS for an address (before its first route, or at any time: new connections use it).
  // Owners sharing an address must give equal settings. False + error naming the file or the
  // difference.
  struct Tls {
    std::string cert, key, ca, min_version;  // ca: client certificates required (mTLS)
    bool operator==(const Tls &o) const {
      return cert == o.cert && key == o.key && ca == o.ca && min_version == o.min_version;
    }
  };
  // owner / owner_name: who asks (an instance and its name; the engine's own: nullptr,
  // "service"): a conflict names both sides, and remove_routes(owner) drops the owner's claim.
  // A plain route by an owner without a claim on a TLS address is refused, and the reverse.
  bool set_tls(const std::string &listen, const Tls &tls, std::string &error,
               const void *owner = nullptr, const std::string &owner_name = "");
  // Whether the files of `tls` load (cert chain, matching key, CA): for --dry-run. False + error
  // naming the option and file.
  static bool check_tls(const Tls &tls, std::string &error);
  // A reload re-reads every TLS address's files (renewed certificates); a listener whose files
  // fail to load keeps its current ones and the error names them.
  bool reload_tls(std::string &error);
  // Binds every address that has routes. False + error naming the address on failure.
  bool start(std::string &error);
  // Whether this server listens on `listen` now (a dry-run or a reload does not test-bind its
  // own addresses).
  bool listening(const std::string &listen) const;
  // Whether `listen` could be bound by this process now: false + error ("address in use").
  static bool can_bind(const std::string &listen, std::string &error);
  // One line per address: "https://127.0.0.1:8000 (client certificates required): POST
  // /ingest/logs, GET /query/logs" (the port actually bound).
  std::vector<std::string> describe() const;
  // Stops accepting; open connections are closed. Safe to call twice. Requests still waiting
  // for their handler are answered 503 (the handler's later reply() only frees them).
  // Shutdown order: stop(), run the loop until closed(), then destroy the server outside any
  // loop callback (h2o's context dispose runs the loop once itself).
  void stop();
  // True after stop() once every listener and connection handle has been closed.
  bool closed() const;
  // Client connections currently open (for metrics and tests).
  size_t connection_count() const;
  // The port actually bound for an address (for ":0" in tests); 0 if unknown.
  int bound_port(const std::string &listen) const;
  // Largest accepted request body in bytes (h2o answers 413 above it). Default 64 MiB.
  void set_max_body(size_t bytes);
  // How long stop() lets responses in flight finish before it cuts their connections. Default 5 s.
  void set_shutdown_grace(uint64_t ms);

  // ABI accessors (dm_host_api forwards here).
  static dm_str method(dm_http_request *req);
  static dm_str path(dm_http_request *req);
  static dm_str query(dm_http_request *req);
  static dm_str header(dm_http_request *req, const char *name);
  static dm_str body(dm_http_request *req);
  static void add_header(dm_http_request *req, const char *name, const char *value);
  static void reply(dm_http_request *req, int status, const char *content_type, const char *body,
                    size_t len);

  // Streamed responses (dm_host_api http_stream_*; the rules are documented there).
  static int stream_start(dm_http_request *req, int status, const char *content_type,
                          size_t max_buffered, void (*on_close)(void *arg), void *arg);
  static int stream_write(dm_http_request *req, const void *data, size_t len);
  static void stream_end(dm_http_request *req);
  // Streams whose on_close has not been called yet (for metrics and tests).
  size_t stream_count() const;
  // Bytes accepted by stream_write and not yet written to a socket, over all streams.
  size_t stream_buffered_bytes() const;

 private:
  friend class HttpRequest;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace devmesh
