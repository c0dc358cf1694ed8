// The HTTP server's streamed responses (dm_host_api http_stream_*): chunked framing, one h2o_send
// in flight with a bounded queue behind it, noticing a client that leaves, and on_close delivered
// outside any stream call.
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "http_server_impl.h"

namespace devmesh {

using namespace http_internal;

void HttpServer::Impl::maybe_free(HttpRequest *hr) {
  if (hr->in_handler_) return;  // on_req frees it once the handler has returned
  if (hr->stream_ && !(hr->stream_->notified && hr->req_ == nullptr)) return;
  delete hr;
}

// Hands h2o the next piece: the queue (one h2o_send in flight at most), the end, or an abort.
// h2o may complete the response and dispose the request inside h2o_send, so nothing here touches
// hr after it (hr is never freed there, though: that needs on_close delivered, which is deferred).
void HttpServer::Impl::kick(HttpRequest *hr) {
  StreamState &s = *hr->stream_;
  if (hr->req_ == nullptr || s.sending || s.final_sent) return;
  h2o_send_state_t state;
  if (s.client_gone) {
    // Nothing more is sent, not even the last chunk: h2o closes the connection, and a client
    // still there sees a body cut short rather than a clean end.
    state = H2O_SEND_STATE_ERROR;
    s.queued.clear();
  } else if (s.ending) {
    state = H2O_SEND_STATE_FINAL;
  } else if (!s.queued.empty()) {
    state = H2O_SEND_STATE_IN_PROGRESS;
  } else {
    return;  // never an empty in-progress send: h2o's HTTP/1 would take it for the end
  }
  s.inflight.swap(s.queued);
  s.queued.clear();
  if (state == H2O_SEND_STATE_IN_PROGRESS) {
    s.sending = true;
  } else {
    s.final_sent = true;
  }
  // h2o copies this array; the bytes it points to must last until proceed (or the dispose).
  h2o_iovec_t bufs[3];
  size_t n = 0;
  if (state != H2O_SEND_STATE_ERROR) {  // an abort sends nothing: h2o closes the connection
    if (!s.inflight.empty()) {
      if (s.chunked) {
        int len = std::snprintf(s.chunk_head, sizeof(s.chunk_head), "%zx\r\n", s.inflight.size());
        bufs[n++] = h2o_iovec_init(s.chunk_head, size_t(len));
      }
      bufs[n++] = h2o_iovec_init(s.inflight.data(), s.inflight.size());
      if (s.chunked) {
        bufs[n++] = state == H2O_SEND_STATE_FINAL ? h2o_iovec_init(H2O_STRLIT("\r\n0\r\n\r\n"))
                                                  : h2o_iovec_init(H2O_STRLIT("\r\n"));
      }
    } else if (s.chunked) {
      bufs[n++] = h2o_iovec_init(H2O_STRLIT("0\r\n\r\n"));
    }
  }
  h2o_send(hr->req_, bufs, n, state);
}

void HttpServer::Impl::on_stream_proceed(h2o_generator_t *gen, h2o_req_t *) {
  StreamState *s = reinterpret_cast<StreamGenerator *>(gen)->state;
  s->sending = false;
  if (s->inflight.capacity() > kStreamKeepCapacity) {
    std::string().swap(s->inflight);
  } else {
    s->inflight.clear();
  }
  HttpRequest *hr = s->owner;
  hr->server_->kick(hr);
}

void HttpServer::Impl::on_stream_stop(h2o_generator_t *gen, h2o_req_t *) {
  // The connection is closing under the response (write error, client reset); the request's pool
  // is disposed right after, which does the rest.
  StreamState *s = reinterpret_cast<StreamGenerator *>(gen)->state;
  s->client_gone = true;
  s->sending = false;
  s->final_sent = true;
}

// h2o 2.2's HTTP/1 does not read from a connection while its response is being produced, so a
// client that leaves an idle stream would only be noticed at the next write. A poll on a dup of
// the socket sees the hang-up without touching h2o's input buffer (the request's headers live in
// it). Best effort: without it, the next failed write still ends the stream.
void HttpServer::Impl::start_watch(HttpRequest *hr) {
  h2o_conn_t *conn = hr->req_->conn;
  h2o_socket_t *sock =
      conn->callbacks->get_socket != nullptr ? conn->callbacks->get_socket(conn) : nullptr;
  int fd = sock != nullptr ? h2o_socket_get_fd(sock) : -1;
  if (fd < 0) return;
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) return;
  auto *p = new uv_poll_t;
  if (uv_poll_init(loop, p, dup_fd) != 0) {
    delete p;
    close(dup_fd);
    return;
  }
  p->data = hr;
  ++open_handles;
  hr->stream_->watch = p;
  hr->stream_->watch_fd = dup_fd;
  if (uv_poll_start(p, UV_READABLE | UV_DISCONNECT, on_watch) != 0) close_watch(hr);
}

void HttpServer::Impl::close_watch(HttpRequest *hr) {
  StreamState &s = *hr->stream_;
  if (s.watch == nullptr) return;
  // uv_close stops the poll (and drops it from epoll) at once, so the dup can be closed now. It
  // must be: the socket is only really closed once every descriptor of it is.
  s.watch->data = this;  // for the close callback; on_watch is not called after uv_close
  uv_close(reinterpret_cast<uv_handle_t *>(s.watch), [](uv_handle_t *h) {
    auto *impl = static_cast<Impl *>(h->data);
    delete reinterpret_cast<uv_poll_t *>(h);
    impl->handle_closed();
  });
  close(s.watch_fd);
  s.watch = nullptr;
  s.watch_fd = -1;
}

void HttpServer::Impl::on_watch(uv_poll_t *p, int status, int events) {
  auto *hr = static_cast<HttpRequest *>(p->data);
  Impl *impl = hr->server_;
  StreamState &s = *hr->stream_;
  bool gone = status < 0 || (events & UV_DISCONNECT) != 0;
  if (!gone) {
    char c;
    ssize_t n = recv(s.watch_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0) {
      // A pipelined request is waiting (h2o reads it once this response is done). The poll would
      // fire for it forever; from here on a failed write is what notices a client leaving.
      impl->close_watch(hr);
      return;
    }
    gone = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
  if (gone) impl->client_left(hr);
}

void HttpServer::Impl::client_left(HttpRequest *hr) {
  StreamState &s = *hr->stream_;
  close_watch(hr);
  s.client_gone = true;
  schedule_close(hr);
  kick(hr);  // with nothing in flight, aborts the response now (else at the next proceed)
}

void HttpServer::Impl::end_stream(HttpRequest *hr) {
  close_watch(hr);
  hr->stream_->ending = true;
  if (hr->req_ != nullptr) {
    hr->req_->http1_is_persistent = 0;
    kick(hr);
  }
  schedule_close(hr);
}

void HttpServer::Impl::schedule_close(HttpRequest *hr) {
  StreamState &s = *hr->stream_;
  if (s.close_scheduled || s.notified) return;
  s.close_scheduled = true;
  close_queue.push_back(hr);
  if (notify != nullptr)
    uv_timer_start(
        notify, [](uv_timer_t *t) { static_cast<Impl *>(t->data)->drain_close_queue(); }, 0, 0);
}

// One at a time from the front: an on_close may end other streams or stop the server, which
// queue or drain more.
void HttpServer::Impl::drain_close_queue() {
  while (!close_queue.empty()) {
    HttpRequest *hr = close_queue.front();
    close_queue.pop_front();
    deliver_close(hr);
  }
}

void HttpServer::Impl::deliver_close(HttpRequest *hr) {
  StreamState &s = *hr->stream_;
  if (s.notified) return;
  s.notified = true;  // from here every stream call on hr is refused
  streams.erase(hr);
  close_watch(hr);
  void (*cb)(void *) = s.on_close;
  s.on_close = nullptr;
  if (cb != nullptr) cb(s.arg);
  maybe_free(hr);
}

void HttpRequest::stream_disposed() {
  HttpServer::Impl *impl = server_;
  StreamState &s = *stream_;
  impl->close_watch(this);
  if (slot_ != nullptr) slot_->owner = nullptr;
  slot_ = nullptr;
  req_ = nullptr;
  s.sending = false;
  s.final_sent = true;
  // h2o has let go of the buffers; the plugin hears of it from the notify timer, never from
  // inside one of its own stream calls (h2o can finish a response within h2o_send).
  if (!s.notified) {
    impl->schedule_close(this);
  } else {
    HttpServer::Impl::maybe_free(this);
  }
}

int HttpServer::stream_start(dm_http_request *req, int status, const char *content_type,
                             size_t max_buffered, void (*on_close)(void *arg), void *arg) {
  HttpRequest *hr = from_abi(req);
  if (hr->stream_) return DM_ERR_INVALID;  // already streaming: change nothing
  if (hr->replied_) return DM_ERR;
  // From here the call completes the request one way or another, like reply().
  bool valid = on_close != nullptr && status >= 200 && status <= 999 && status != 204 &&
               status != 304 && (content_type == nullptr || !has_line_break(content_type));
  if (!valid || hr->req_ == nullptr) {
    if (hr->req_ != nullptr) {
      h2o_req_t *r = hr->req_;
      hr->detach();
      send_json_error(r, 500, "bad streamed response");
    }
    hr->replied_ = true;
    if (!hr->in_handler_) delete hr;
    return valid ? DM_ERR : DM_ERR_INVALID;
  }
  Impl *impl = hr->server_;
  h2o_req_t *r = hr->req_;
  hr->replied_ = true;
  // No longer waiting for a reply: stop() ends it as a stream instead of answering 503.
  if (hr->pending_ != nullptr) hr->pending_->erase(hr);
  hr->pending_ = nullptr;
  hr->stream_ = std::make_unique<StreamState>();
  StreamState &s = *hr->stream_;
  s.gen.super.proceed = Impl::on_stream_proceed;
  s.gen.super.stop = Impl::on_stream_stop;
  s.gen.state = &s;
  s.owner = hr;
  s.on_close = on_close;
  s.arg = arg;
  s.max_buffered = max_buffered != 0 ? max_buffered : kDefaultStreamBuffer;
  impl->streams.insert(hr);

  r->res.status = status;
  r->res.reason = reason_phrase(status);
  if (content_type != nullptr && *content_type != '\0') {
    h2o_iovec_t v = h2o_strdup(&r->pool, content_type, std::strlen(content_type));
    h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_CONTENT_TYPE, nullptr, v.base, v.len);
  }
  // The framing is ours: a Content-Length or Transfer-Encoding from the plugin would contradict it.
  for (const h2o_token_t *t : {H2O_TOKEN_CONTENT_LENGTH, H2O_TOKEN_TRANSFER_ENCODING}) {
    ssize_t i;
    while ((i = h2o_find_header(&r->res.headers, t, -1)) != -1)
      h2o_delete_header(&r->res.headers, i);
  }
  r->res.content_length = SIZE_MAX;
  // HTTP/1.1 gets chunked encoding and keeps its connection; HTTP/1.0 is delimited by the close.
  // The chunks are framed here rather than by h2o's chunked filter (which our Transfer-Encoding
  // header turns off): the filter turns an empty send into a deferred proceed, so the headers
  // would wait for the first write, and it only chunks status 200.
  s.chunked = r->version >= 0x101;
  if (s.chunked) {
    h2o_add_header(&r->pool, &r->res.headers, H2O_TOKEN_TRANSFER_ENCODING, nullptr,
                   H2O_STRLIT("chunked"));
  } else {
    r->http1_is_persistent = 0;
  }
  impl->start_watch(hr);
  h2o_start_response(r, &s.gen.super);
  // Sends the status line and headers now, so that the client sees the stream open before the
  // first event; queued writes follow at proceed.
  s.sending = true;
  h2o_send(r, nullptr, 0, H2O_SEND_STATE_IN_PROGRESS);
  return DM_OK;
}

int HttpServer::stream_write(dm_http_request *req, const void *data, size_t len) {
  HttpRequest *hr = from_abi(req);
  if (!hr->stream_) return DM_ERR_INVALID;
  StreamState &s = *hr->stream_;
  if (s.notified || s.client_gone || s.ending || hr->req_ == nullptr) return DM_ERR;
  if (len == 0) return DM_OK;
  if (data == nullptr) return DM_ERR_INVALID;
  size_t waiting = s.queued.size() + s.inflight.size();
  // A write into an empty queue always goes, so that one piece larger than the limit still can.
  if (waiting != 0 && (len > s.max_buffered || waiting > s.max_buffered - len)) return DM_ERR_FULL;
  s.queued.append(static_cast<const char *>(data), len);
  hr->server_->kick(hr);
  return DM_OK;
}

void HttpServer::stream_end(dm_http_request *req) {
  HttpRequest *hr = from_abi(req);
  if (!hr->stream_) return;
  StreamState &s = *hr->stream_;
  if (s.notified || s.ending) return;
  s.ending = true;
  hr->server_->kick(hr);  // at once when idle, else once the write in flight is done
}

size_t HttpServer::stream_count() const {
  return impl_->streams.size();
}

size_t HttpServer::stream_buffered_bytes() const {
  size_t total = 0;
  for (HttpRequest *hr : impl_->streams)
    total += hr->stream_->queued.size() + hr->stream_->inflight.size();
  return total;
}

}  // namespace devmesh
