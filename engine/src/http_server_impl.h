// The state shared by the HTTP server's two files, private to them: http_server.cpp (listeners,
// routing, plain replies and the request accessors) and http_stream.cpp (streamed responses).
#pragma once

#include "http_server.h"

#ifndef H2O_USE_LIBUV
#define H2O_USE_LIBUV 1
#endif
#include <h2o.h>

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace devmesh {
namespace http_internal {

constexpr size_t kDefaultMaxBody = size_t{64} << 20;
constexpr int kBacklog = 511;
// h2o 2.2 times the whole request read (headers and body) and the keep-alive idle period with one
// timer; its 10 s default cuts off large bodies from slow senders.
constexpr uint64_t kRequestReadTimeoutMs = 30000;
// After stop(), connections still writing a response get this long before their sockets are shut
// down both ways, so a client that never reads cannot keep the loop alive.
constexpr uint64_t kDefaultShutdownGraceMs = 5000;
// A stream's max_buffered when the plugin passes 0.
constexpr size_t kDefaultStreamBuffer = size_t{1} << 20;
// A stream's send buffers keep their capacity up to this much between writes; a burst above it is
// given back once written, so that many idle streams do not each hold their largest burst.
constexpr size_t kStreamKeepCapacity = size_t{64} << 10;

struct MethodHandler {
  std::string method;
  // Shared so that a request holds its handler while it runs, even if a remove_routes inside it
  // drops the route.
  std::shared_ptr<const HttpHandler> handler;
  const void *owner = nullptr;
};

// One registered path: exact, or a prefix (registered with a trailing '*').
struct Route {
  std::string match;  // the path, or the prefix without its '*'
  bool prefix = false;
  std::vector<MethodHandler> methods;
};

struct ListenAddress {
  std::string key;  // canonical "ip:port" / "[ip6]:port"; equal keys share one listener
  sockaddr_storage addr{};
};

bool parse_listen(const std::string &spec, ListenAddress &out, std::string &error);
const char *reason_phrase(int status);
// A header name or value from a plugin must not smuggle a line break into the response.
bool has_line_break(const char *s);
// Fills in and sends a complete response on an h2o request; the body is copied into its pool.
void send_response(h2o_req_t *req, int status, const char *content_type, const char *body,
                   size_t len);
void send_json_error(h2o_req_t *req, int status, const char *message);

// TLS on one address (http_tls.cpp): the settings, the context built from their files, and who
// asked for it. An address has an entry only while some owner claims it.
struct TlsAddress {
  struct Claim {
    const void *owner;
    std::string name;
  };
  HttpServer::Tls settings;
  SSL_CTX *ctx = nullptr;  // one reference, ours; each connection's SSL holds its own
  std::vector<Claim> claims;
};
// A server context from the files of `tls`; null + error naming the option and file.
SSL_CTX *make_ssl_ctx(const HttpServer::Tls &tls, std::string &error);

}  // namespace http_internal

// Lives in the request's pool; h2o calls on_pool_dispose when it frees the request, so a reply()
// after that knows not to touch it. (h2o 2.2's HTTP/1 stops reading while a handler runs, so a
// client that left is only noticed when the reply is written; the slot covers any path that
// frees the request first.)
struct DisposeSlot {
  HttpRequest *owner;
};

// A streamed response. h2o allows one h2o_send in flight per request: `inflight` is what h2o is
// writing (it must stay put until proceed), `queued` collects stream_write()s meanwhile.
// Two lifetimes meet here: h2o's (until the request's pool is disposed: response done or
// connection closed) and the plugin's (until on_close has returned). The HttpRequest is freed
// when both are over, so neither a late proceed from h2o nor a late call from the plugin can
// touch freed memory.
struct StreamState;
struct StreamGenerator {
  h2o_generator_t super;  // first: h2o calls back with a pointer to it
  StreamState *state;
};

struct StreamState {
  StreamGenerator gen{};
  HttpRequest *owner = nullptr;
  void (*on_close)(void *arg) = nullptr;
  void *arg = nullptr;
  size_t max_buffered = 0;
  bool chunked = false;      // HTTP/1.1: we frame the chunks ourselves (see stream_start)
  char chunk_head[24] = {};  // the in-flight chunk's size line
  std::string inflight, queued;
  bool sending = false;          // an h2o_send is in flight: wait for proceed
  bool ending = false;           // stream_end (or stop): finish once the queue is out
  bool final_sent = false;       // the final (or error) h2o_send is done: h2o calls back no more
  bool client_gone = false;      // the client left or the connection failed
  bool close_scheduled = false;  // queued for on_close
  bool notified = false;         // on_close called: the plugin's handle is dead
  uv_poll_t *watch = nullptr;    // watches a dup of the socket for the client leaving
  int watch_fd = -1;
};

class HttpRequest {
 public:
  // h2o freed a streamed request (response complete, or connection closed); in http_stream.cpp.
  void stream_disposed();

  // Detaches from h2o: the server stops tracking it and the pool disposer forgets it.
  void detach() {
    if (slot_ != nullptr) slot_->owner = nullptr;
    slot_ = nullptr;
    if (pending_ != nullptr) pending_->erase(this);
    pending_ = nullptr;
    req_ = nullptr;
  }

  h2o_req_t *req_ = nullptr;  // null once detached: replied, answered by stop(), or disposed
  std::unordered_set<HttpRequest *> *pending_ = nullptr;  // the server's set while attached
  DisposeSlot *slot_ = nullptr;
  const void *owner_ = nullptr;   // the route's owner, for remove_routes to end its streams
  bool in_handler_ = false;       // the handler is still running: reply() must not free yet
  bool replied_ = false;          // reply() or stream_start() was called
  char content_length_[24] = {};  // h2o keeps Content-Length out of the header list
  HttpServer::Impl *server_ = nullptr;
  std::unique_ptr<StreamState> stream_;  // set by stream_start()
};

namespace http_internal {

inline HttpRequest *from_abi(dm_http_request *req) {
  return reinterpret_cast<HttpRequest *>(req);
}
inline dm_http_request *to_abi(HttpRequest *req) {
  return reinterpret_cast<dm_http_request *>(req);
}
inline dm_str view(h2o_iovec_t v) {
  return dm_str{v.base, v.len};
}

}  // namespace http_internal

struct HttpServer::Impl {
  struct Listener;

  // The catch-all h2o handler of the one hostconf every listener uses.
  struct RouterHandler {
    h2o_handler_t super;  // first: h2o hands us a pointer to it
    Impl *impl;
  };

  // h2o keeps the accept context's host list in each connection (conn->hosts); the list lives
  // here, first, so that a request finds its listener from it.
  struct HostList {
    h2o_hostconf_t *hosts[2] = {nullptr, nullptr};  // first
    Listener *listener = nullptr;
  };

  struct Listener {
    HostList host_list;
    Impl *impl = nullptr;
    http_internal::ListenAddress address;
    std::vector<http_internal::Route> routes;
    std::vector<const http_internal::Route *> prefixes;  // longest first
    uv_tcp_t *tcp = nullptr;                             // owned; freed in on_listener_closed
    int port = 0;
    h2o_accept_ctx_t accept_ctx{};
    size_t conns = 0;      // accepted connections not yet closed; they point at accept_ctx
    bool retired = false;  // no longer listening: freed once tcp is closed and conns is 0
  };

  // One accepted connection. h2o owns the socket wrapper; we own the uv_tcp_t, which h2o closes
  // and then hands back through on_conn_closed.
  struct Conn {
    uv_tcp_t tcp;  // first: the close callback gets a pointer to it
    Impl *impl;
    Listener *listener;
  };

  ~Impl() {
    for (auto &[key, t] : tls) SSL_CTX_free(t.ctx);
  }
  explicit Impl(uv_loop_t *l) : loop(l) {
    h2o_config_init(&config);
    config.server_name = h2o_iovec_init(H2O_STRLIT("devmesh"));
    config.max_request_entity_size = http_internal::kDefaultMaxBody;
    config.http1.req_timeout = http_internal::kRequestReadTimeoutMs;
    // HTTP/1.1 only: with h2c an HTTP/2 stream reset frees a request under a pending handler,
    // and no client of ours needs cleartext HTTP/2.
    config.http1.upgrade_to_http2 = 0;
  }

  bool add_route(const std::string &listen, const std::string &method, const std::string &path,
                 HttpHandler handler, std::string &error, const void *owner);
  void remove_routes(const void *owner);
  bool start(std::string &error);
  void init_context();
  bool open_listener(Listener &l, std::string &error);
  static void rebuild_prefixes(Listener &l);
  // Stops listening on an address with no routes left; its connections finish and close.
  void retire(const std::string &key);
  void maybe_free_listener(Listener *l);
  static void on_sweep(uv_timer_t *t);
  std::vector<std::string> describe() const;

  // TLS (http_tls.cpp).
  bool set_tls(const std::string &listen, const Tls &t, std::string &error, const void *owner,
               const std::string &owner_name);
  bool reload_tls(std::string &error);
  void drop_tls_claims(const void *owner);
  // Why `owner` may not add a plain route on `key` (an owner's TLS there); "" when it may.
  std::string tls_conflict(const std::string &key, const void *owner) const;
  SSL_CTX *ssl_ctx_of(const std::string &key) const;
  void stop();
  void handle_closed();
  bool closed() const { return stopping && open_handles == 0; }

  static void on_connection(uv_stream_t *server, int status);
  static void on_conn_closed(uv_handle_t *h);
  static void on_listener_closed(uv_handle_t *h);
  static void on_grace_timer(uv_timer_t *t);
  static int on_req(h2o_handler_t *self, h2o_req_t *req);

  // Streams.
  static void on_stream_proceed(h2o_generator_t *gen, h2o_req_t *req);
  static void on_stream_stop(h2o_generator_t *gen, h2o_req_t *req);
  static void on_watch(uv_poll_t *p, int status, int events);
  static void maybe_free(HttpRequest *hr);
  void kick(HttpRequest *hr);
  void start_watch(HttpRequest *hr);
  void close_watch(HttpRequest *hr);
  void client_left(HttpRequest *hr);
  void schedule_close(HttpRequest *hr);
  // The server ends a stream (stop, or its owner's routes removed): the response is finished
  // and the connection not kept; the plugin hears on_close from drain_close_queue().
  void end_stream(HttpRequest *hr);
  void drain_close_queue();
  void deliver_close(HttpRequest *hr);

  uv_loop_t *loop;
  h2o_globalconf_t config;
  h2o_context_t ctx;
  bool ctx_ready = false;
  bool started = false;
  bool stopping = false;
  h2o_hostconf_t *host = nullptr;  // the one hostconf; its handler routes by listener
  std::map<std::string, std::unique_ptr<Listener>> listeners;  // by canonical address
  std::vector<std::unique_ptr<Listener>> retired;        // closed, waiting for their connections
  std::map<std::string, http_internal::TlsAddress> tls;  // by canonical address
  // Closes listeners left without routes at the next loop turn, so that a reload removing an
  // owner's routes and adding its successor's in one callback keeps the socket open.
  uv_timer_t *sweep = nullptr;
  std::unordered_set<Conn *> conns;
  std::unordered_set<HttpRequest *> pending;  // handed to handlers, not yet replied
  std::unordered_set<HttpRequest *> streams;  // streamed responses whose on_close is still due
  std::deque<HttpRequest *> close_queue;      // on_close calls waiting for the notify timer
  uv_timer_t *notify = nullptr;               // owned; delivers on_close outside any stream call
  uint64_t grace_ms = http_internal::kDefaultShutdownGraceMs;
  uv_timer_t *grace = nullptr;             // owned; freed in its close callback
  size_t open_handles = 0;                 // our uv handles not yet through their close cb
  std::vector<uv_handle_t *> h2o_handles;  // created by h2o_context_init; h2o closes them
};

}  // namespace devmesh
