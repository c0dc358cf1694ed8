// The engine's HTTP server: libh2o (HTTP/1.1) on the engine's libuv loop, one listener per listen
// address, our own router in front of the handlers, plain replies and the request accessors.
// Streamed responses are in http_stream.cpp.
#include "http_server_impl.h"
#include "log.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

// ---- request framing ------------------------------------------------------------------------
// h2o 2.2 takes the first of two Content-Length headers, and Transfer-Encoding over
// Content-Length, without complaint. A proxy in front that reads the other one sees another
// request boundary than we do (request smuggling), so such a request is refused (RFC 9112
// 6.3: a conflict is unrecoverable). h2o exposes neither header to a handler, but it calls
// picohttpparser's phr_parse_request through its PLT: this definition in the executable stands
// in for it, calls the library's, and turns a head with conflicting framing into a parse error,
// which h2o answers with 400 and a closed connection, before any byte of the body is read.
extern "C" {
struct phr_header {  // picohttpparser's layout (unchanged since its first release)
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version, phr_header *headers,
                      size_t *num_headers, size_t last_len);
}

namespace devmesh {
namespace {
std::atomic<uint64_t> framing_refused{0};

bool ieq_name(const phr_header &h, std::string_view name) {
  if (h.name == nullptr || h.name_len != name.size()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(h.name[i])) != name[i]) return false;
  return true;
}

std::string_view trimmed(const phr_header &h) {
  std::string_view v(h.value, h.value_len);
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}
}  // namespace

bool conflicting_framing(const phr_header *headers, size_t n) {
  const phr_header *length = nullptr;
  bool chunked = false;
  for (size_t i = 0; i < n; ++i) {
    if (ieq_name(headers[i], "transfer-encoding")) {
      chunked = true;
    } else if (ieq_name(headers[i], "content-length")) {
      if (length != nullptr && trimmed(*length) != trimmed(headers[i])) return true;
      length = &headers[i];
    }
  }
  return chunked && length != nullptr;
}

uint64_t HttpServer::framing_refusals() {
  return framing_refused.load(std::memory_order_relaxed);
}
}  // namespace devmesh

extern "C" int phr_parse_request(const char *buf, size_t len, const char **method,
                                 size_t *method_len, const char **path, size_t *path_len,
                                 int *minor_version, phr_header *headers, size_t *num_headers,
                                 size_t last_len) {
  using Parse = int (*)(const char *, size_t, const char **, size_t *, const char **, size_t *,
                        int *, phr_header *, size_t *, size_t);
  static const Parse library = reinterpret_cast<Parse>(dlsym(RTLD_NEXT, "phr_parse_request"));
  if (library == nullptr) return -1;  // no h2o below us: nothing can be parsed safely
  const int ret = library(buf, len, method, method_len, path, path_len, minor_version, headers,
                          num_headers, last_len);
  if (ret > 0 && devmesh::conflicting_framing(headers, *num_headers)) {
    devmesh::framing_refused.fetch_add(1, std::memory_order_relaxed);
    return -1;
  }
  return ret;
}

namespace devmesh {
namespace http_internal {
namespace {

bool parse_port(const std::string &s, uint16_t &port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + unsigned(c - '0');
  }
  if (value > 65535) return false;
  port = uint16_t(value);
  return true;
}

bool is_token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("!#$%&'*+-.^_`|~", c);
}

}  // namespace

// Accepts "ip:port", "[ip6]:port", ":port" and "port"; an empty host (or "localhost") means
// 127.0.0.1, because the engine binds loopback unless told otherwise.
bool parse_listen(const std::string &spec, ListenAddress &out, std::string &error) {
  std::string host, port_text;
  bool v6 = false;
  if (!spec.empty() && spec[0] == '[') {
    size_t close = spec.find(']');
    if (close == std::string::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      error = "listen address '" + spec + "': expected [ipv6]:port";
      return false;
    }
    host = spec.substr(1, close - 1);
    port_text = spec.substr(close + 2);
    v6 = true;
  } else {
    size_t colon = spec.rfind(':');
    if (colon == std::string::npos) {
      port_text = spec;
    } else {
      host = spec.substr(0, colon);
      port_text = spec.substr(colon + 1);
      if (host.find(':') != std::string::npos) {
        error = "listen address '" + spec + "': an IPv6 address needs brackets, e.g. [::1]:8000";
        return false;
      }
    }
    if (host.empty() || host == "localhost") host = "127.0.0.1";
  }
  uint16_t port = 0;
  if (!parse_port(port_text, port)) {
    error = "listen address '" + spec + "': bad port '" + port_text + "'";
    return false;
  }
  char canonical[INET6_ADDRSTRLEN] = {};
  if (v6) {
    auto *sa = reinterpret_cast<sockaddr_in6 *>(&out.addr);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &sa->sin6_addr) != 1) {
      error = "listen address '" + spec + "': '" + host + "' is not an IPv6 address";
      return false;
    }
    inet_ntop(AF_INET6, &sa->sin6_addr, canonical, sizeof(canonical));
    out.key = "[" + std::string(canonical) + "]:" + std::to_string(port);
  } else {
    auto *sa = reinterpret_cast<sockaddr_in *>(&out.addr);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(port);
    if (inet_pton(AF_INET, host.c_str(), &sa->sin_addr) != 1) {
      error = "listen address '" + spec + "': '" + host + "' is not an IPv4 address";
      return false;
    }
    inet_ntop(AF_INET, &sa->sin_addr, canonical, sizeof(canonical));
    out.key = std::string(canonical) + ":" + std::to_string(port);
  }
  return true;
}

const char *reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
  }
  if (status < 300) return "OK";
  if (status < 400) return "Redirect";
  if (status < 500) return "Client Error";
  return "Server Error";
}

bool has_line_break(const char *s) {
  return std::strpbrk(s, "\r\n") != nullptr;
}

void send_response(h2o_req_t *req, int status, const char *content_type, const char *body,
                   size_t len) {
  if (status < 100 || status > 999) status = 500;
  req->res.status = status;
  req->res.reason = reason_phrase(status);
  if (content_type != nullptr && *content_type != '\0' && !has_line_break(content_type)) {
    h2o_iovec_t v = h2o_strdup(&req->pool, content_type, std::strlen(content_type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, v.base, v.len);
  }
  // 204 and 304 carry no body and no Content-Length.
  if (status == 204 || status == 304) {
    len = 0;
  } else {
    req->res.content_length = len;
  }
  h2o_send_inline(req, body != nullptr ? body : "", len);
}

void send_json_error(h2o_req_t *req, int status, const char *message) {
  std::string body = std::string("{\"error\":\"") + message + "\"}";
  send_response(req, status, "application/json", body.data(), body.size());
}

}  // namespace http_internal

using namespace http_internal;

namespace {

void on_pool_dispose(void *p) {
  auto *slot = static_cast<DisposeSlot *>(p);
  HttpRequest *hr = slot->owner;
  if (hr == nullptr) return;
  if (hr->stream_) {
    hr->stream_disposed();
  } else {
    hr->detach();
  }
}

}  // namespace

bool HttpServer::Impl::add_route(const std::string &listen, const std::string &method,
                                 const std::string &path, HttpHandler handler, std::string &error,
                                 const void *owner) {
  if (stopping) {
    error = "route " + method + " " + path + ": the HTTP server is stopped";
    return false;
  }
  ListenAddress address;
  if (!parse_listen(listen, address, error)) return false;
  if (method.empty() || !std::all_of(method.begin(), method.end(), is_token_char)) {
    error = "route on " + address.key + ": bad method '" + method + "'";
    return false;
  }
  if (path.empty() || path[0] != '/' || path.find('*') < path.size() - 1) {
    error = "route " + method + " '" + path + "' on " + address.key +
            ": a path starts with '/' and may only end in '*'";
    return false;
  }
  if (!handler) {
    error = "route " + method + " " + path + " on " + address.key + ": no handler";
    return false;
  }
  bool prefix = path.back() == '*';
  std::string match = prefix ? path.substr(0, path.size() - 1) : path;
  auto found = listeners.find(address.key);
  if (found != listeners.end()) {
    for (const Route &r : found->second->routes) {
      if (r.prefix != prefix || r.match != match) continue;
      for (const auto &m : r.methods) {
        if (m.method == method) {
          error = "route " + method + " " + path + " on " + address.key + " is already registered";
          return false;
        }
      }
    }
  }
  std::string conflict = tls_conflict(address.key, owner);
  if (!conflict.empty()) {
    error = "route " + method + " " + path + ": " + conflict;
    return false;
  }
  auto &slot = listeners[address.key];
  const bool fresh = !slot;
  if (fresh) {
    slot = std::make_unique<Listener>();
    slot->impl = this;
    slot->address = address;
  }
  Listener &l = *slot;
  auto it = std::find_if(l.routes.begin(), l.routes.end(),
                         [&](const Route &r) { return r.prefix == prefix && r.match == match; });
  if (it == l.routes.end()) {
    l.routes.push_back(Route{match, prefix, {}});
    it = l.routes.end() - 1;
  }
  it->methods.push_back(
      MethodHandler{method, std::make_shared<const HttpHandler>(std::move(handler)), owner});
  rebuild_prefixes(l);
  if (started && fresh) {
    // A new address after start (a reload): bound now, so that the caller hears of a failure.
    init_context();
    if (!open_listener(l, error)) {
      retire(address.key);
      return false;
    }
  }
  return true;
}

void HttpServer::Impl::rebuild_prefixes(Listener &l) {
  l.prefixes.clear();
  for (const Route &r : l.routes)
    if (r.prefix) l.prefixes.push_back(&r);
  std::sort(l.prefixes.begin(), l.prefixes.end(),
            [](const Route *a, const Route *b) { return a->match.size() > b->match.size(); });
}

void HttpServer::Impl::remove_routes(const void *owner) {
  bool emptied = false;
  for (auto it = listeners.begin(); it != listeners.end();) {
    Listener &l = *it->second;
    for (Route &r : l.routes) {
      r.methods.erase(std::remove_if(r.methods.begin(), r.methods.end(),
                                     [&](const MethodHandler &m) { return m.owner == owner; }),
                      r.methods.end());
    }
    l.routes.erase(std::remove_if(l.routes.begin(), l.routes.end(),
                                  [](const Route &r) { return r.methods.empty(); }),
                   l.routes.end());
    rebuild_prefixes(l);
    if (l.routes.empty() && l.tcp == nullptr && !started) {
      it = listeners.erase(it);  // never opened: nothing to close
      continue;
    }
    if (l.routes.empty()) emptied = true;
    ++it;
  }
  drop_tls_claims(owner);
  // The owner's open streams end as at stop(): the owner hears on_close before this returns,
  // since it is about to go away.
  std::vector<HttpRequest *> open;
  for (HttpRequest *r : streams)
    if (r->owner_ == owner) open.push_back(r);
  for (HttpRequest *r : open) end_stream(r);
  if (!open.empty()) drain_close_queue();
  if (emptied && sweep != nullptr && !stopping) uv_timer_start(sweep, on_sweep, 0, 0);
}

void HttpServer::Impl::on_sweep(uv_timer_t *t) {
  auto *impl = static_cast<Impl *>(t->data);
  std::vector<std::string> empty;
  for (auto &[key, l] : impl->listeners)
    if (l->routes.empty()) empty.push_back(key);
  for (const auto &key : empty) impl->retire(key);
}

void HttpServer::Impl::retire(const std::string &key) {
  auto it = listeners.find(key);
  if (it == listeners.end()) return;
  Listener *l = it->second.get();
  l->retired = true;
  retired.push_back(std::move(it->second));
  listeners.erase(it);
  if (l->tcp != nullptr && !uv_is_closing(reinterpret_cast<uv_handle_t *>(l->tcp)))
    uv_close(reinterpret_cast<uv_handle_t *>(l->tcp), on_listener_closed);
  // Its idle connections read EOF now, busy ones after the response in flight (as at stop()).
  for (Conn *c : conns) {
    uv_os_fd_t fd;
    if (c->listener == l && !uv_is_closing(reinterpret_cast<uv_handle_t *>(&c->tcp)) &&
        uv_fileno(reinterpret_cast<uv_handle_t *>(&c->tcp), &fd) == 0)
      shutdown(fd, SHUT_RD);
  }
  maybe_free_listener(l);
}

void HttpServer::Impl::maybe_free_listener(Listener *l) {
  if (!l->retired || l->tcp != nullptr || l->conns != 0) return;
  auto it = std::find_if(retired.begin(), retired.end(),
                         [&](const std::unique_ptr<Listener> &p) { return p.get() == l; });
  if (it != retired.end()) retired.erase(it);
}

bool HttpServer::Impl::start(std::string &error) {
  if (started) return true;
  started = true;
  if (listeners.empty()) return true;
  init_context();
  for (auto &[key, l] : listeners)
    if (!open_listener(*l, error)) return false;
  return true;
}

void HttpServer::Impl::init_context() {
  if (ctx_ready) return;
  // h2o writes with write(2): a client that went away would otherwise kill the process.
  struct sigaction sa {};
  if (sigaction(SIGPIPE, nullptr, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);

  // One hostconf for every listener: each listener's accept context lists only it, so h2o sends
  // every request there (h2o falls back to the first host) and the router finds the listener
  // from the connection's host list, without looking at Host. Registered before the context is
  // initialised, as h2o expects.
  host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("devmesh")), 65535);
  h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
  auto *handler =
      reinterpret_cast<RouterHandler *>(h2o_create_handler(pathconf, sizeof(RouterHandler)));
  handler->super.on_req = on_req;
  handler->impl = this;

  // h2o_context_init creates uv timers and a uv_async on the loop; the async stays active for
  // the context's life and would keep uv_run from ever returning. Only our listeners and
  // connections should hold the loop open, so unref every handle h2o adds here.
  std::unordered_set<uv_handle_t *> before;
  uv_walk(
      loop,
      [](uv_handle_t *h, void *arg) {
        static_cast<std::unordered_set<uv_handle_t *> *>(arg)->insert(h);
      },
      &before);
  h2o_context_init(&ctx, loop, &config);
  ctx_ready = true;
  struct Walk {
    std::unordered_set<uv_handle_t *> *before;
    std::vector<uv_handle_t *> *added;
  } walk{&before, &h2o_handles};
  uv_walk(
      loop,
      [](uv_handle_t *h, void *arg) {
        auto *w = static_cast<Walk *>(arg);
        if (w->before->count(h)) return;
        uv_unref(h);
        w->added->push_back(h);
      },
      &walk);

  // Active only while on_close calls are queued, so it never holds the loop open by itself.
  notify = new uv_timer_t;
  uv_timer_init(loop, notify);
  notify->data = this;
  ++open_handles;
  // Active only from a remove_routes to the next loop turn.
  sweep = new uv_timer_t;
  uv_timer_init(loop, sweep);
  sweep->data = this;
  ++open_handles;
}

bool HttpServer::Impl::open_listener(Listener &l, std::string &error) {
  l.host_list.hosts[0] = host;
  l.host_list.listener = &l;
  l.accept_ctx.ctx = &ctx;
  l.accept_ctx.hosts = l.host_list.hosts;
  l.accept_ctx.ssl_ctx = ssl_ctx_of(l.address.key);
  l.tcp = new uv_tcp_t;
  int rc = uv_tcp_init(loop, l.tcp);
  if (rc != 0) {
    delete l.tcp;
    l.tcp = nullptr;
    error = "listen " + l.address.key + ": " + uv_strerror(rc);
    return false;
  }
  l.tcp->data = &l;
  ++open_handles;
  rc = uv_tcp_bind(l.tcp, reinterpret_cast<const sockaddr *>(&l.address.addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t *>(l.tcp), kBacklog, on_connection);
  if (rc == 0) {
    sockaddr_storage bound{};
    int len = sizeof(bound);
    rc = uv_tcp_getsockname(l.tcp, reinterpret_cast<sockaddr *>(&bound), &len);
    if (rc == 0) {
      l.port = bound.ss_family == AF_INET6
                   ? ntohs(reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port)
                   : ntohs(reinterpret_cast<sockaddr_in *>(&bound)->sin_port);
    }
  }
  if (rc != 0) {
    error = "listen " + l.address.key + ": " + uv_strerror(rc);
    uv_close(reinterpret_cast<uv_handle_t *>(l.tcp), on_listener_closed);
    return false;
  }
  return true;
}

void HttpServer::Impl::on_connection(uv_stream_t *server, int status) {
  auto *l = static_cast<Listener *>(server->data);
  Impl *impl = l->impl;
  if (status != 0 || impl->stopping || l->retired) return;
  auto *c = new Conn;
  c->impl = impl;
  c->listener = l;
  if (uv_tcp_init(impl->loop, &c->tcp) != 0) {
    delete c;
    return;
  }
  ++impl->open_handles;
  ++l->conns;
  if (uv_accept(server, reinterpret_cast<uv_stream_t *>(&c->tcp)) != 0) {
    uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp), on_conn_closed);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  impl->conns.insert(c);
  h2o_socket_t *sock =
      h2o_uv_socket_create(reinterpret_cast<uv_stream_t *>(&c->tcp), on_conn_closed);
  h2o_accept(&l->accept_ctx, sock);
}

void HttpServer::Impl::on_conn_closed(uv_handle_t *h) {
  // h2o has already freed its socket wrapper; the handle is the first member of our Conn.
  auto *c = reinterpret_cast<Conn *>(h);
  Impl *impl = c->impl;
  Listener *l = c->listener;
  impl->conns.erase(c);
  --l->conns;
  delete c;
  impl->handle_closed();
  impl->maybe_free_listener(l);
}

void HttpServer::Impl::on_listener_closed(uv_handle_t *h) {
  auto *l = static_cast<Listener *>(h->data);
  Impl *impl = l->impl;
  l->tcp = nullptr;
  delete reinterpret_cast<uv_tcp_t *>(h);
  impl->handle_closed();
  impl->maybe_free_listener(l);
}

void HttpServer::Impl::handle_closed() {
  --open_handles;
  if (stopping && conns.empty() && grace != nullptr &&
      !uv_is_closing(reinterpret_cast<uv_handle_t *>(grace))) {
    uv_timer_stop(grace);
    uv_close(reinterpret_cast<uv_handle_t *>(grace), [](uv_handle_t *t) {
      auto *impl = static_cast<Impl *>(t->data);
      impl->grace = nullptr;
      delete reinterpret_cast<uv_timer_t *>(t);
      impl->handle_closed();
    });
  }
}

void HttpServer::Impl::on_grace_timer(uv_timer_t *t) {
  auto *impl = static_cast<Impl *>(t->data);
  // Shutting down the write side too makes a stalled response write fail, so h2o closes it.
  for (Conn *c : impl->conns) {
    uv_os_fd_t fd;
    if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(&c->tcp)) &&
        uv_fileno(reinterpret_cast<uv_handle_t *>(&c->tcp), &fd) == 0)
      shutdown(fd, SHUT_RDWR);
  }
}

void HttpServer::Impl::stop() {
  if (stopping) return;
  stopping = true;
  for (auto &[key, l] : listeners) {
    if (l->tcp != nullptr && !uv_is_closing(reinterpret_cast<uv_handle_t *>(l->tcp)))
      uv_close(reinterpret_cast<uv_handle_t *>(l->tcp), on_listener_closed);
  }
  if (!ctx_ready) return;

  // New requests on open connections now get "Connection: close". (Not through
  // h2o_context_request_shutdown: for HTTP/2, which is off, it links a one-second timeout into
  // the context that h2o_context_dispose would then assert on.)
  ctx.shutdown_requested = 1;

  // Open streams end now: what is queued is still sent, then the terminating chunk, then the
  // connection closes. Every plugin hears on_close before stop() returns, because the engine
  // stops and destroys the plugins right after; h2o finishing the writes later only frees ours.
  std::vector<HttpRequest *> open(streams.begin(), streams.end());
  for (HttpRequest *r : open) end_stream(r);
  drain_close_queue();
  if (sweep != nullptr) {
    uv_timer_stop(sweep);
    uv_close(reinterpret_cast<uv_handle_t *>(sweep), [](uv_handle_t *t) {
      auto *impl = static_cast<Impl *>(t->data);
      delete reinterpret_cast<uv_timer_t *>(t);
      impl->handle_closed();
    });
    sweep = nullptr;
  }
  if (notify != nullptr) {
    uv_timer_stop(notify);
    uv_close(reinterpret_cast<uv_handle_t *>(notify), [](uv_handle_t *t) {
      auto *impl = static_cast<Impl *>(t->data);
      delete reinterpret_cast<uv_timer_t *>(t);
      impl->handle_closed();
    });
    notify = nullptr;
  }

  // A request still waiting for its handler would keep its connection open forever; answer it
  // now. The handler's later reply() then only frees the object.
  std::vector<HttpRequest *> waiting(pending.begin(), pending.end());
  for (HttpRequest *r : waiting) {
    h2o_req_t *req = r->req_;
    r->detach();
    req->http1_is_persistent = 0;
    send_json_error(req, 503, "server shutting down");
  }

  // h2o 2.2 has no call that closes idle HTTP/1 connections. Shutting down the read side makes
  // each one read EOF (now, or right after the response in flight), and h2o closes it itself.
  for (Conn *c : conns) {
    uv_os_fd_t fd;
    if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(&c->tcp)) &&
        uv_fileno(reinterpret_cast<uv_handle_t *>(&c->tcp), &fd) == 0)
      shutdown(fd, SHUT_RD);
  }
  if (!conns.empty()) {
    grace = new uv_timer_t;
    uv_timer_init(loop, grace);
    grace->data = this;
    ++open_handles;
    uv_timer_start(grace, on_grace_timer, grace_ms, 0);
  }
}

int HttpServer::Impl::on_req(h2o_handler_t *self, h2o_req_t *req) {
  Impl *impl = reinterpret_cast<RouterHandler *>(self)->impl;
  Listener *l = reinterpret_cast<HostList *>(req->conn->hosts)->listener;
  std::string_view path(req->path_normalized.base, req->path_normalized.len);
  std::string_view method(req->method.base, req->method.len);
  if (impl->stopping) {
    // A request read after stop() (pipelined behind a response in flight): the handlers may
    // already be stopped, and an unanswered request would hold its connection open.
    req->http1_is_persistent = 0;
    send_json_error(req, 503, "server shutting down");
    return 0;
  }
  if (l->retired) {
    // Read on a connection of an address that no longer listens (a reload moved it).
    req->http1_is_persistent = 0;
    send_json_error(req, 503, "no longer served on this address");
    return 0;
  }

  // Most specific first: the exact path, then prefixes from the longest. The first one that has
  // the method wins; if none has it, 405 lists the methods of all that matched.
  std::vector<const Route *> matched;
  for (const Route &r : l->routes)
    if (!r.prefix && r.match == path) matched.push_back(&r);
  for (const Route *r : l->prefixes)
    if (path.substr(0, r->match.size()) == r->match) matched.push_back(r);
  std::shared_ptr<const HttpHandler> handler;
  const void *owner = nullptr;
  for (const Route *r : matched) {
    for (const MethodHandler &m : r->methods) {
      if (m.method == method) {
        handler = m.handler;
        owner = m.owner;
        break;
      }
    }
    if (handler != nullptr) break;
  }
  if (matched.empty()) {
    send_json_error(req, 404, "not found");
    return 0;
  }
  if (handler == nullptr) {
    std::vector<std::string> allow;
    for (const Route *r : matched)
      for (const MethodHandler &m : r->methods) allow.push_back(m.method);
    std::sort(allow.begin(), allow.end());
    allow.erase(std::unique(allow.begin(), allow.end()), allow.end());
    std::string value;
    for (const auto &m : allow) value += (value.empty() ? "" : ", ") + m;
    h2o_iovec_t v = h2o_strdup(&req->pool, value.data(), value.size());
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, nullptr, v.base, v.len);
    send_json_error(req, 405, "method not allowed");
    return 0;
  }

  auto *r = new HttpRequest;
  r->req_ = req;
  r->server_ = impl;
  r->owner_ = owner;
  r->pending_ = &impl->pending;
  impl->pending.insert(r);
  r->slot_ = static_cast<DisposeSlot *>(
      h2o_mem_alloc_shared(&req->pool, sizeof(DisposeSlot), on_pool_dispose));
  r->slot_->owner = r;
  r->in_handler_ = true;
  const char *failure = nullptr;
  try {
    (*handler)(to_abi(r));
  } catch (const std::exception &e) {
    log_msg(DM_LOG_ERROR, "http", "handler for %.*s %.*s threw: %s", int(method.size()),
            method.data(), int(path.size()), path.data(), e.what());
    failure = "internal error";
  } catch (...) {
    failure = "internal error";
  }
  r->in_handler_ = false;
  if (failure != nullptr && !r->replied_) {
    if (r->req_ != nullptr) {
      h2o_req_t *h = r->req_;
      r->detach();
      send_json_error(h, 500, failure);
    }
    r->replied_ = true;
  }
  if (r->replied_) maybe_free(r);
  return 0;
}

// ---- HttpServer -------------------------------------------------------------------------------

HttpServer::HttpServer(uv_loop_t *loop) : impl_(std::make_unique<Impl>(loop)) {}

HttpServer::~HttpServer() {
  impl_->stop();
  if (impl_->open_handles != 0) {
    // Connections or listeners still reference the h2o context: disposing it now would be a
    // use-after-free once the loop runs their close callbacks. Leak instead; the engine should
    // run the loop until closed() before destroying the server.
    log_msg(DM_LOG_ERROR, "http", "server destroyed with %zu open handles; leaking it",
            impl_->open_handles);
    (void)impl_.release();
    return;
  }
  if (impl_->ctx_ready) {
    // Someone closed h2o's own handles (a uv_walk closing everything on the loop): closing them
    // again would abort in libuv, so the context's memory is left behind instead.
    bool foreign_close = std::any_of(impl_->h2o_handles.begin(), impl_->h2o_handles.end(),
                                     [](uv_handle_t *h) { return uv_is_closing(h) != 0; });
    if (foreign_close) {
      // The handles live inside the context, and libuv may still hold them: keep it all.
      log_msg(DM_LOG_ERROR, "http",
              "h2o's loop handles were closed before the HTTP server was destroyed; leaking its "
              "context");
      (void)impl_.release();
      return;
    }
    // Closes its timers and runs the loop once (UV_RUN_NOWAIT) to finish the closes: this must
    // not happen inside a loop callback.
    h2o_context_dispose(&impl_->ctx);
  }
  h2o_config_dispose(&impl_->config);
}

bool HttpServer::add_route(const std::string &listen, const std::string &method,
                           const std::string &path, HttpHandler handler, std::string &error,
                           const void *owner) {
  return impl_->add_route(listen, method, path, std::move(handler), error, owner);
}

void HttpServer::remove_routes(const void *owner) {
  impl_->remove_routes(owner);
}

bool HttpServer::listening(const std::string &listen) const {
  ListenAddress address;
  std::string error;
  if (!parse_listen(listen, address, error)) return false;
  auto it = impl_->listeners.find(address.key);
  return it != impl_->listeners.end() && it->second->tcp != nullptr &&
         !uv_is_closing(reinterpret_cast<uv_handle_t *>(it->second->tcp));
}

bool HttpServer::can_bind(const std::string &listen, std::string &error) {
  ListenAddress address;
  if (!parse_listen(listen, address, error)) return false;
  int fd = socket(address.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = "listen " + address.key + ": " + std::strerror(errno);
    return false;
  }
  // As libuv binds: SO_REUSEADDR, so that only a socket still listening there counts as taken.
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  socklen_t len = address.addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  // listen() too: a wildcard listener elsewhere on the port may only conflict at listen time.
  bool ok =
      bind(fd, reinterpret_cast<const sockaddr *>(&address.addr), len) == 0 && ::listen(fd, 1) == 0;
  int err = errno;
  close(fd);
  if (!ok) {
    error = "cannot listen on " + address.key + ": " +
            (err == EADDRINUSE ? std::string("address in use") : std::string(std::strerror(err)));
  }
  return ok;
}

std::vector<std::string> HttpServer::describe() const {
  return impl_->describe();
}

std::vector<std::string> HttpServer::Impl::describe() const {
  std::vector<std::string> lines;
  for (const auto &[key, l] : listeners) {
    std::string address = key;
    if (l->port != 0) address = key.substr(0, key.rfind(':') + 1) + std::to_string(l->port);
    auto t = tls.find(key);
    std::string line = (t == tls.end() ? "http://" : "https://") + address;
    if (t != tls.end() && !t->second.settings.ca.empty()) line += " (client certificates required)";
    line += ":";
    std::vector<std::string> routes;
    for (const Route &r : l->routes)
      for (const MethodHandler &m : r.methods)
        routes.push_back(m.method + " " + r.match + (r.prefix ? "*" : ""));
    for (size_t i = 0; i < routes.size(); ++i) line += (i == 0 ? " " : ", ") + routes[i];
    lines.push_back(std::move(line));
  }
  return lines;
}

bool HttpServer::start(std::string &error) {
  return impl_->start(error);
}

void HttpServer::stop() {
  impl_->stop();
}

bool HttpServer::closed() const {
  return impl_->closed();
}

size_t HttpServer::connection_count() const {
  return impl_->conns.size();
}

int HttpServer::bound_port(const std::string &listen) const {
  ListenAddress address;
  std::string error;
  if (!parse_listen(listen, address, error)) return 0;
  auto it = impl_->listeners.find(address.key);
  return it == impl_->listeners.end() ? 0 : it->second->port;
}

void HttpServer::set_max_body(size_t bytes) {
  impl_->config.max_request_entity_size = bytes;
}

void HttpServer::set_shutdown_grace(uint64_t ms) {
  impl_->grace_ms = ms;
}

dm_str HttpServer::method(dm_http_request *req) {
  h2o_req_t *r = from_abi(req)->req_;
  return r != nullptr ? view(r->method) : dm_str{nullptr, 0};
}

dm_str HttpServer::path(dm_http_request *req) {
  h2o_req_t *r = from_abi(req)->req_;
  return r != nullptr ? view(r->path_normalized) : dm_str{nullptr, 0};
}

dm_str HttpServer::query(dm_http_request *req) {
  h2o_req_t *r = from_abi(req)->req_;
  if (r == nullptr || r->query_at == SIZE_MAX || r->query_at >= r->path.len) return {nullptr, 0};
  return dm_str{r->path.base + r->query_at + 1, r->path.len - r->query_at - 1};
}

dm_str HttpServer::header(dm_http_request *req, const char *name) {
  HttpRequest *hr = from_abi(req);
  h2o_req_t *r = hr->req_;
  if (r == nullptr || name == nullptr) return {nullptr, 0};
  // h2o lower-cases request header names as it parses them.
  std::string lc(name);
  for (char &c : lc) c = char(std::tolower(static_cast<unsigned char>(c)));
  // h2o moves Host and Content-Length out of the header list.
  if (lc == "host") return view(r->authority);
  if (lc == "content-length") {
    if (r->entity.base == nullptr) return {nullptr, 0};
    int n = std::snprintf(hr->content_length_, sizeof(hr->content_length_), "%zu", r->entity.len);
    return dm_str{hr->content_length_, size_t(n)};
  }
  ssize_t i = h2o_find_header_by_str(&r->headers, lc.data(), lc.size(), -1);
  if (i < 0) return {nullptr, 0};
  return view(r->headers.entries[i].value);
}

dm_str HttpServer::body(dm_http_request *req) {
  h2o_req_t *r = from_abi(req)->req_;
  if (r == nullptr || r->entity.base == nullptr) return {nullptr, 0};
  return view(r->entity);
}

void HttpServer::add_header(dm_http_request *req, const char *name, const char *value) {
  HttpRequest *hr = from_abi(req);
  h2o_req_t *r = hr->req_;
  if (r == nullptr || hr->replied_ || name == nullptr || value == nullptr || *name == '\0') return;
  if (has_line_break(name) || has_line_break(value)) return;
  size_t len = std::strlen(name);
  // Lower-case so that h2o recognises its known tokens (and never sends one twice).
  auto *lc = static_cast<char *>(h2o_mem_alloc_pool(&r->pool, len));
  for (size_t i = 0; i < len; ++i) lc[i] = char(std::tolower(static_cast<unsigned char>(name[i])));
  h2o_iovec_t v = h2o_strdup(&r->pool, value, std::strlen(value));
  h2o_add_header_by_str(&r->pool, &r->res.headers, lc, len, 1, nullptr, v.base, v.len);
}

void HttpServer::reply(dm_http_request *req, int status, const char *content_type, const char *body,
                       size_t len) {
  HttpRequest *hr = from_abi(req);
  if (hr->replied_) return;  // a second reply from inside the handler; after it, hr is gone
  if (hr->req_ != nullptr) {
    h2o_req_t *r = hr->req_;
    hr->detach();
    send_response(r, status, content_type, body, len);
  }
  hr->replied_ = true;
  if (!hr->in_handler_) delete hr;
}

}  // namespace devmesh
