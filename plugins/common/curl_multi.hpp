// CurlMulti: libcurl's multi interface driven by the engine loop (the host's watches and a
// timer), so an output has many requests in flight without a thread per request and with its
// connections reused. The owner makes and configures the easy handles, adds them, and is told
// on the loop when each one finished (it is already out of the multi then). The http_forward
// and clickhouse outputs share it. The owner calls curl_global_init before making one and
// curl_global_cleanup after destroying it.
#pragma once

#include <curl/curl.h>
#include <devmesh/plugin.h>

#include <stdexcept>
#include <unordered_map>

namespace devmesh {

class CurlMulti {
 public:
  // done(owner, easy, result): a transfer finished (result CURLE_OK: a response came).
  using Done = void (*)(void *owner, CURL *easy, CURLcode result);

  // Makes the multi handle only: no loop handle before start() (create() runs for --dry-run).
  CurlMulti(const dm_host_api *host, dm_instance *inst, Done done, void *owner)
      : host_(host), inst_(inst), done_(done), owner_(owner) {
    multi_ = curl_multi_init();
    if (!multi_) throw std::runtime_error("curl_multi_init failed");
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  }
  CurlMulti(const CurlMulti &) = delete;
  CurlMulti &operator=(const CurlMulti &) = delete;

  // The owner removes (or cleans up) its easy handles first.
  ~CurlMulti() {
    curl_multi_cleanup(multi_);
    for (auto &[fd, s] : sockets_) {
      host_->watch_free(s->watch);
      delete s;
    }
    if (timer_) host_->timer_free(timer_);
  }

  // [loop] From the owner's start(); false when the loop refuses a timer.
  bool start() {
    if (!timer_) timer_ = host_->timer_new(inst_, on_timer, this);
    return timer_ != nullptr;
  }
  // [loop] From the owner's stop(), after it removed its handles.
  void stop() {
    if (timer_) host_->timer_stop(timer_);
  }

  // [loop] Starts a transfer; done() follows unless this fails.
  CURLMcode add(CURL *easy) { return curl_multi_add_handle(multi_, easy); }
  // [loop] Abandons a transfer: done() will not come for it.
  void remove(CURL *easy) { curl_multi_remove_handle(multi_, easy); }

 private:
  // A socket curl asked us to watch.
  struct Socket {
    CurlMulti *self;
    curl_socket_t fd;
    dm_watch *watch;
  };

  static int on_socket(CURL *, curl_socket_t fd, int what, void *userp, void *socketp) {
    auto *self = static_cast<CurlMulti *>(userp);
    auto *s = static_cast<Socket *>(socketp);
    if (what == CURL_POLL_REMOVE) {
      if (s) {
        self->host_->watch_free(s->watch);
        self->sockets_.erase(fd);
        delete s;
        curl_multi_assign(self->multi_, fd, nullptr);
      }
      return 0;
    }
    if (!s) {
      s = new Socket{self, fd, nullptr};
      s->watch = self->host_->watch_new(self->inst_, fd, on_watch, s);
      if (!s->watch) {
        delete s;
        return -1;
      }
      self->sockets_[fd] = s;
      curl_multi_assign(self->multi_, fd, s);
    }
    int events = 0;
    if (what & CURL_POLL_IN) events |= DM_READABLE;
    if (what & CURL_POLL_OUT) events |= DM_WRITABLE;
    return self->host_->watch_set(s->watch, events) == DM_OK ? 0 : -1;
  }

  static void on_watch(void *arg, int events) {
    auto *s = static_cast<Socket *>(arg);
    CurlMulti *self = s->self;
    int flags = 0;
    if (events & DM_READABLE) flags |= CURL_CSELECT_IN;
    if (events & DM_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running = 0;
    // s may be freed inside (CURL_POLL_REMOVE): only self is used after this.
    curl_multi_socket_action(self->multi_, s->fd, flags, &running);
    self->finished();
  }

  static int on_curl_timer(CURLM *, long timeout_ms, void *userp) {
    auto *self = static_cast<CurlMulti *>(userp);
    if (!self->timer_) return 0;
    if (timeout_ms < 0) {
      self->host_->timer_stop(self->timer_);
    } else {
      // Never act from inside curl's callback: a 0 timeout fires on the next loop turn.
      self->host_->timer_start(self->timer_, static_cast<uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static void on_timer(void *arg) {
    auto *self = static_cast<CurlMulti *>(arg);
    int running = 0;
    curl_multi_socket_action(self->multi_, CURL_SOCKET_TIMEOUT, 0, &running);
    self->finished();
  }

  void finished() {
    int left = 0;
    while (CURLMsg *msg = curl_multi_info_read(multi_, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *easy = msg->easy_handle;
      const CURLcode result = msg->data.result;
      curl_multi_remove_handle(multi_, easy);  // msg is invalid from here
      done_(owner_, easy, result);
    }
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  Done done_;
  void *owner_;
  CURLM *multi_ = nullptr;
  dm_timer *timer_ = nullptr;
  std::unordered_map<curl_socket_t, Socket *> sockets_;
};

}  // namespace devmesh
