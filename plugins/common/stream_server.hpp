// A TCP listener, plain or TLS, on the engine's loop, for input plugins that speak a byte-stream
// protocol on their own port (syslog over TCP, Fluentd's forward). The engine's HTTP server
// covers HTTP; this covers the rest with the host's fd watches (dm_watch), so such a plugin needs
// no thread and no loop of its own. TLS is OpenSSL on the non-blocking socket, with the same
// context (files, mutual TLS, minimum version) as the engine's HTTP listeners.
//
// The handler sees a connection's bytes as they arrive and frames them itself; it answers with
// write(), which queues what the socket does not take at once. A connection's reading can be
// paused (backpressure) without closing it. Connections are found again by id, so an answer
// sent later (an acknowledgement after the records are kept) never touches a closed one.
#pragma once

#include <devmesh/plugin.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "monotonic_ms.hpp"
#include "tls_server_context.hpp"

namespace devmesh {

class StreamServer;

class StreamConnection {
 public:
  uint64_t id() const { return id_; }
  // The peer as "address:port" (for logs and meta).
  const std::string &peer() const { return peer_; }
  // With mutual TLS, the verified client certificate's subject; empty otherwise.
  const std::string &peer_subject() const { return subject_; }
  bool tls() const { return ssl_ != nullptr; }

  // Queues bytes for the peer; false when the connection is closing (nothing is sent).
  bool write(const void *data, size_t len);
  // Closes once what is queued is sent (or at once with `now`). The handler's on_close runs.
  void close(bool now = false);
  // Stops reading from this connection (the peer's own buffers then fill and it waits), and
  // starts again. Bytes already read but not yet handed over stay queued.
  void pause_reading();
  void resume_reading();
  bool reading_paused() const { return paused_; }
  size_t queued_bytes() const { return out_.size() - out_sent_; }

  void *user = nullptr;  // the handler's per-connection state

 private:
  friend class StreamServer;
  StreamServer *server_ = nullptr;
  uint64_t id_ = 0;
  int fd_ = -1;
  dm_watch *watch_ = nullptr;
  SSL *ssl_ = nullptr;
  std::string peer_, subject_;
  std::string out_;
  size_t out_sent_ = 0;
  bool paused_ = false, closing_ = false, dead_ = false;
  bool ssl_wants_write_ = false;  // a TLS read needs the socket writable (a handshake step)
  bool handshake_done_ = false;
  uint64_t last_active_ms_ = 0;  // monotonic: the last bytes read (or the accept)
};

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void on_open(StreamConnection &) {}
  // Bytes from the peer, in order. Frame them; a protocol error is answered (if the protocol
  // has a way) and the connection closed with c.close().
  virtual void on_data(StreamConnection &c, const char *data, size_t len) = 0;
  // The connection is gone (peer closed, error, or close()); c.user is the handler's to free.
  // `reason` is empty for an orderly close by either side.
  virtual void on_close(StreamConnection &c, const std::string &reason) = 0;
  // A peer accepted and closed at once because max_connections were open ("address:port").
  virtual void on_refused(const std::string & /*peer*/) {}
  // A TLS peer gone before its handshake completed (so before any on_open): the handshake
  // failed (a wrong version, no client certificate), the peer left, or kIdleReason.
  virtual void on_handshake_failed(const std::string & /*peer*/, const std::string & /*reason*/) {}
};

class StreamServer {
 public:
  StreamServer(const dm_host_api *host, dm_instance *inst, StreamHandler &handler)
      : host_(host), inst_(inst), handler_(handler) {}
  ~StreamServer() { stop(); }
  StreamServer(const StreamServer &) = delete;
  StreamServer &operator=(const StreamServer &) = delete;

  // Listens on `listen` ("host:port", ":port", "port", "[::1]:port"), over TLS when tls.cert is
  // set. From the plugin's start(); false with an error naming the address or TLS file.
  bool listen(const std::string &listen, const dm_tls_config &tls, std::string &error) {
    auto set = [](const char *s) { return s != nullptr && *s != '\0'; };
    if (set(tls.cert) || set(tls.key) || set(tls.ca)) {
      ctx_ = make_server_ssl_ctx(set(tls.cert) ? tls.cert : "", set(tls.key) ? tls.key : "",
                                 set(tls.ca) ? tls.ca : "",
                                 set(tls.min_version) ? tls.min_version : "1.2", error);
      if (ctx_ == nullptr) return false;
    }
    std::string host, port;
    if (!split_address(listen, host, port)) {
      error = "listen " + listen + ": not an address (host:port, :port or [v6]:port)";
      return false;
    }
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const int rc =
        getaddrinfo(host.empty() ? "127.0.0.1" : host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0) {
      error = "listen " + listen + ": " + gai_strerror(rc);
      return false;
    }
    int fd = -1;
    std::string why;
    for (addrinfo *a = res; a != nullptr && fd < 0; a = a->ai_next) {
      fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      const int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 511) != 0) {
        why = std::strerror(errno);
        ::close(fd);
        fd = -1;
      }
    }
    freeaddrinfo(res);
    if (fd < 0) {
      error = "listen " + listen + ": " + (why.empty() ? "no usable address" : why);
      return false;
    }
    listen_fd_ = fd;
    listen_watch_ = host_->watch_new(inst_, fd, &StreamServer::on_accept_ready, this);
    if (listen_watch_ == nullptr || host_->watch_set(listen_watch_, DM_READABLE) != DM_OK) {
      error = "listen " + listen + ": cannot watch the socket";
      stop();
      return false;
    }
    if (idle_timeout_ms_ > 0) {
      idle_timer_ = host_->timer_new(inst_, &StreamServer::on_idle_check, this);
      // A quarter of the timeout between checks: a connection goes at most 25% late.
      const uint64_t period =
          std::max<uint64_t>(50, std::min<uint64_t>(idle_timeout_ms_ / 4, 1000));
      if (idle_timer_ != nullptr) host_->timer_start(idle_timer_, period, period);
    }
    return true;
  }

  // Closes the listener and every connection (their on_close runs). From stop()/destroy().
  void stop() {
    if (idle_timer_ != nullptr) host_->timer_free(idle_timer_);
    idle_timer_ = nullptr;
    if (listen_watch_ != nullptr) host_->watch_free(listen_watch_);
    listen_watch_ = nullptr;
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    while (!conns_.empty()) finish(*conns_.begin()->second, "server stopped");
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
    ctx_ = nullptr;
  }

  // Stops accepting (new peers wait in the backlog) and starts again: with the engine's
  // pause()/resume(), together with pause_reading on each connection.
  void pause_accepting() {
    accept_paused_ = true;
    update_listen_watch();
  }
  void resume_accepting() {
    accept_paused_ = false;
    update_listen_watch();
  }
  void pause_all() {
    pause_accepting();
    for (auto &entry : conns_) entry.second->pause_reading();
  }
  void resume_all() {
    resume_accepting();
    // Resuming may read (TLS-buffered bytes), and a handler may close connections meanwhile.
    std::vector<uint64_t> ids;
    for (auto &entry : conns_) ids.push_back(entry.first);
    for (uint64_t id : ids)
      if (StreamConnection *c = find(id)) c->resume_reading();
  }

  // A connection by id, or nullptr once it is closed.
  StreamConnection *find(uint64_t id) {
    auto it = conns_.find(id);
    return it == conns_.end() || it->second->closing_ ? nullptr : it->second.get();
  }
  size_t connections() const { return conns_.size(); }
  // Peers refused because max_connections were open.
  uint64_t refused() const { return refused_; }
  void set_max_connections(size_t n) { max_connections_ = n; }
  void set_read_chunk(size_t n) { read_chunk_ = n < 512 ? 512 : n; }
  // Closes a connection that has read nothing for `ms` (0: never), including one whose TLS
  // handshake never completes (a slow-loris peer holds no slot for longer). Its on_close gets
  // kIdleReason. Call before listen().
  void set_idle_timeout(uint64_t ms) { idle_timeout_ms_ = ms; }
  uint64_t idle_closed() const { return idle_closed_; }
  static constexpr const char *kIdleReason = "idle timeout";

 private:
  friend class StreamConnection;

  static bool split_address(const std::string &s, std::string &host, std::string &port) {
    if (!s.empty() && s.front() == '[') {
      const size_t close = s.find(']');
      if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
      host = s.substr(1, close - 1);
      port = s.substr(close + 2);
    } else {
      const size_t colon = s.rfind(':');
      if (colon == std::string::npos) {
        port = s;
      } else {
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
      }
    }
    if (host == "localhost") host = "127.0.0.1";
    if (port.empty() || port.size() > 5) return false;
    for (char ch : port)
      if (ch < '0' || ch > '9') return false;
    return std::stoi(port) <= 65535;
  }

  static std::string describe(const sockaddr_storage &ss) {
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(reinterpret_cast<const sockaddr *>(&ss), sizeof ss, host, sizeof host, serv,
                    sizeof serv, NI_NUMERICHOST | NI_NUMERICSERV) != 0)
      return "unknown";
    return ss.ss_family == AF_INET6 ? "[" + std::string(host) + "]:" + serv
                                    : std::string(host) + ":" + serv;
  }

  void update_listen_watch() {
    if (listen_watch_ != nullptr)
      host_->watch_set(listen_watch_, accept_paused_ || out_of_fds_ ? 0 : DM_READABLE);
  }

  static void on_idle_check(void *arg) {
    auto *self = static_cast<StreamServer *>(arg);
    self->graveyard_.clear();  // no connection's callback is on the stack in a timer's
    const uint64_t now = monotonic_ms();
    std::vector<StreamConnection *> idle;
    // A paused connection reads nothing because we do not read it: not idle (closing it would
    // lose what its sender already wrote).
    for (auto &entry : self->conns_)
      if (!entry.second->paused_ && now - entry.second->last_active_ms_ >= self->idle_timeout_ms_)
        idle.push_back(entry.second.get());
    for (StreamConnection *c : idle) {
      ++self->idle_closed_;
      self->finish(*c, kIdleReason);
    }
  }

  static void on_accept_ready(void *arg, int) {
    auto *self = static_cast<StreamServer *>(arg);
    self->graveyard_.clear();
    // A bounded number per wake-up, so one busy listener cannot hold the loop.
    for (int i = 0; i < 64 && self->listen_fd_ >= 0; ++i) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      const int fd = accept4(self->listen_fd_, reinterpret_cast<sockaddr *>(&ss), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        // Out of descriptors, the pending peer stays in the backlog and the level-triggered
        // watch would call back at once, forever: stop accepting until a connection closes.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          self->out_of_fds_ = true;
          self->update_listen_watch();
        }
        return;  // EAGAIN, or a per-peer error (ECONNABORTED) the next wake-up is past
      }
      if (self->conns_.size() >= self->max_connections_) {
        ++self->refused_;
        ::close(fd);
        self->handler_.on_refused(describe(ss));
        continue;
      }
      self->adopt(fd, describe(ss));
    }
  }

  void adopt(int fd, std::string peer) {
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto c = std::make_unique<StreamConnection>();
    c->server_ = this;
    c->id_ = ++next_id_;
    c->fd_ = fd;
    c->peer_ = std::move(peer);
    c->last_active_ms_ = monotonic_ms();
    if (ctx_ != nullptr) {
      c->ssl_ = SSL_new(ctx_);
      if (c->ssl_ == nullptr) {
        ::close(fd);
        ERR_clear_error();
        return;
      }
      SSL_set_fd(c->ssl_, fd);
      SSL_set_accept_state(c->ssl_);
      SSL_set_mode(c->ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    } else {
      c->handshake_done_ = true;
    }
    c->watch_ = host_->watch_new(inst_, fd, &StreamServer::on_conn_ready, c.get());
    StreamConnection &ref = *c;
    conns_.emplace(c->id_, std::move(c));
    if (ref.watch_ == nullptr) {
      finish(ref, "cannot watch the socket");
      return;
    }
    update_watch(ref);
    if (ref.handshake_done_) handler_.on_open(ref);
  }

  void update_watch(StreamConnection &c) {
    if (c.watch_ == nullptr) return;
    int events = 0;
    if (!c.paused_ && !c.closing_) events |= DM_READABLE;
    if (c.queued_bytes() > 0 || c.ssl_wants_write_) events |= DM_WRITABLE;
    // A closing TLS connection still reads until its queue is out (a handshake step may need it)
    if (c.closing_ && c.ssl_ != nullptr && c.queued_bytes() > 0) events |= DM_READABLE;
    host_->watch_set(c.watch_, events);
  }

  static void on_conn_ready(void *arg, int events) {
    auto *c = static_cast<StreamConnection *>(arg);
    StreamServer *self = c->server_;
    const uint64_t id = c->id_;
    // No other connection's callback is on the stack here (and a finished connection's watch
    // never calls back): the finished ones can go.
    self->graveyard_.clear();
    if ((events & DM_WRITABLE) || c->ssl_wants_write_) {
      c->ssl_wants_write_ = false;
      if (!self->flush(*c)) return;  // finished
    }
    if (self->conns_.count(id) == 0) return;
    if (!c->paused_ && !c->closing_) {
      self->read_some(*c);
    } else if (c->closing_ && c->ssl_ != nullptr && (events & DM_READABLE)) {
      // Readable while closing (TLS only): read what came and drop it, or the level-triggered
      // watch calls back at once, forever.
      if (!self->drain(*c)) return;
    }
    if (self->conns_.count(id) == 0) return;
    if (c->closing_ && c->queued_bytes() == 0) {
      self->finish(*c, "");
      return;
    }
    self->update_watch(*c);
  }

  // Sends what is queued. False when the connection was finished (an error).
  bool flush(StreamConnection &c) {
    while (c.queued_bytes() > 0) {
      const char *p = c.out_.data() + c.out_sent_;
      const size_t n = c.queued_bytes();
      ssize_t wrote;
      if (c.ssl_ != nullptr) {
        ERR_clear_error();
        const int r = SSL_write(c.ssl_, p, static_cast<int>(n > (1u << 30) ? (1u << 30) : n));
        if (r <= 0) {
          const int e = SSL_get_error(c.ssl_, r);
          if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) break;
          finish(c, "TLS write failed: " + ssl_reason());
          return false;
        }
        wrote = r;
      } else {
        wrote = ::send(c.fd_, p, n, MSG_NOSIGNAL);
        if (wrote < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          finish(c, std::string("write failed: ") + std::strerror(errno));
          return false;
        }
      }
      c.out_sent_ += static_cast<size_t>(wrote);
    }
    if (c.out_sent_ == c.out_.size()) {
      c.out_.clear();
      c.out_sent_ = 0;
    } else if (c.out_sent_ > (1u << 20) && c.out_sent_ * 2 > c.out_.size()) {
      c.out_.erase(0, c.out_sent_);
      c.out_sent_ = 0;
    }
    return true;
  }

  // Reads and drops a closing TLS connection's bytes; false when it was finished.
  bool drain(StreamConnection &c) {
    char sink[4096];
    for (int i = 0; i < 16; ++i) {
      ERR_clear_error();
      const int r = SSL_read(c.ssl_, sink, sizeof sink);
      if (r > 0) continue;
      const int e = SSL_get_error(c.ssl_, r);
      if (e == SSL_ERROR_WANT_READ) return true;
      if (e == SSL_ERROR_WANT_WRITE) {
        c.ssl_wants_write_ = true;
        return true;
      }
      finish(c, e == SSL_ERROR_ZERO_RETURN ? std::string() : "TLS failed: " + ssl_reason());
      return false;
    }
    return true;
  }

  void read_some(StreamConnection &c) {
    const uint64_t id = c.id_;
    buf_.resize(read_chunk_);
    // A bounded number of reads per wake-up, so one fast peer cannot hold the loop.
    for (int i = 0; i < 16; ++i) {
      ssize_t got;
      if (c.ssl_ != nullptr) {
        ERR_clear_error();
        const int r = SSL_read(c.ssl_, buf_.data(), static_cast<int>(buf_.size()));
        if (r <= 0) {
          const int e = SSL_get_error(c.ssl_, r);
          if (e == SSL_ERROR_WANT_READ) break;
          if (e == SSL_ERROR_WANT_WRITE) {
            c.ssl_wants_write_ = true;
            break;
          }
          if (e == SSL_ERROR_ZERO_RETURN) {
            finish(c, "");
            return;
          }
          finish(c, e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0
                        ? std::string("connection reset")
                        : "TLS failed: " + ssl_reason());
          return;
        }
        got = r;
        c.last_active_ms_ = monotonic_ms();
        if (!c.handshake_done_) open_tls(c);
        if (conns_.count(id) == 0) return;
      } else {
        got = ::recv(c.fd_, buf_.data(), buf_.size(), 0);
        if (got < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
          finish(c, std::string("read failed: ") + std::strerror(errno));
          return;
        }
        if (got == 0) {
          finish(c, "");
          return;
        }
        c.last_active_ms_ = monotonic_ms();
      }
      handler_.on_data(c, buf_.data(), static_cast<size_t>(got));
      if (conns_.count(id) == 0 || c.paused_ || c.closing_) return;
    }
    // The handshake may complete without application data (a client that waits for us).
    if (c.ssl_ != nullptr && !c.handshake_done_ && SSL_is_init_finished(c.ssl_)) open_tls(c);
  }

  void open_tls(StreamConnection &c) {
    c.handshake_done_ = true;
    if (X509 *cert = SSL_get_peer_certificate(c.ssl_)) {
      char name[512];
      X509_NAME_oneline(X509_get_subject_name(cert), name, sizeof name);
      c.subject_ = name;
      X509_free(cert);
    }
    handler_.on_open(c);
  }

  static std::string ssl_reason() {
    const unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
    std::string text = reason != nullptr ? reason : "unknown error";
    ERR_clear_error();
    return text;
  }

  // Frees a connection after telling the handler (the object goes when this returns).
  void finish(StreamConnection &c, const std::string &reason) {
    if (c.dead_) return;
    c.dead_ = true;
    if (c.handshake_done_)
      handler_.on_close(c, reason);
    else
      handler_.on_handshake_failed(c.peer_, reason.empty() ? "closed by the peer" : reason);
    if (c.watch_ != nullptr) host_->watch_free(c.watch_);
    c.watch_ = nullptr;
    if (c.ssl_ != nullptr) {
      if (reason.empty()) SSL_shutdown(c.ssl_);
      SSL_free(c.ssl_);
      ERR_clear_error();
    }
    c.ssl_ = nullptr;
    if (c.fd_ >= 0) ::close(c.fd_);
    c.fd_ = -1;
    // The object stays valid until the watch callback that may be on the stack returns: it
    // moves to a graveyard emptied at the top of the next watch callback.
    auto it = conns_.find(c.id_);
    if (it != conns_.end()) {
      graveyard_.push_back(std::move(it->second));
      conns_.erase(it);
    }
    if (out_of_fds_) {  // a descriptor is free again
      out_of_fds_ = false;
      update_listen_watch();
    }
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  StreamHandler &handler_;
  SSL_CTX *ctx_ = nullptr;
  int listen_fd_ = -1;
  dm_watch *listen_watch_ = nullptr;
  dm_timer *idle_timer_ = nullptr;
  bool accept_paused_ = false, out_of_fds_ = false;
  uint64_t idle_timeout_ms_ = 0, idle_closed_ = 0;
  std::map<uint64_t, std::unique_ptr<StreamConnection>> conns_;
  std::vector<std::unique_ptr<StreamConnection>> graveyard_;
  std::vector<char> buf_;
  uint64_t next_id_ = 0, refused_ = 0;
  size_t max_connections_ = 1024, read_chunk_ = 64 * 1024;
};

inline bool StreamConnection::write(const void *data, size_t len) {
  if (closing_ || dead_) return false;
  out_.append(static_cast<const char *>(data), len);
  if (server_->flush(*this)) server_->update_watch(*this);
  return !dead_;
}

inline void StreamConnection::close(bool now) {
  if (dead_) return;
  if (now || queued_bytes() == 0) {
    server_->finish(*this, "");
    return;
  }
  closing_ = true;
  server_->update_watch(*this);
}

inline void StreamConnection::pause_reading() {
  if (paused_ || dead_) return;
  paused_ = true;
  server_->update_watch(*this);
}

inline void StreamConnection::resume_reading() {
  if (!paused_ || dead_) return;
  paused_ = false;
  last_active_ms_ = devmesh::monotonic_ms();  // the idle clock restarts with the reading
  server_->update_watch(*this);
  // TLS may hold decrypted bytes that no readable event will announce.
  if (ssl_ != nullptr && SSL_pending(ssl_) > 0) server_->read_some(*this);
}

}  // namespace devmesh
