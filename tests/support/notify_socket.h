// The service manager's end of systemd's notify protocol for tests: a unix datagram socket
// (what NOTIFY_SOCKET names) and a thread that keeps every message the engine sends, in order.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace devmesh::test {

// The service manager's end of the notify protocol: every datagram received, in order.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string &path) : path_(path) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    path.copy(a.sun_path, sizeof a.sun_path - 1);
    bound_ = fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
    timeval tv{0, 100000};  // recv wakes up to see stop_
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        ssize_t n = recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard<std::mutex> lk(mu_);
        messages_.emplace_back(buf, static_cast<size_t>(n));
      }
    });
  }
  ~NotifySocket() {
    finish();
    close(fd_);
    unlink(path_.c_str());
  }
  // Once the engine has exited: stops the reader and takes what is still queued, so a count
  // of zero means none was sent.
  void finish() {
    if (stop_.exchange(true)) return;
    reader_.join();
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd_, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
      std::lock_guard<std::mutex> lk(mu_);
      messages_.emplace_back(buf, static_cast<size_t>(n));
    }
  }
  bool bound() const { return bound_; }
  std::vector<std::string> messages() {
    std::lock_guard<std::mutex> lk(mu_);
    return messages_;
  }
  // Messages that carry `assignment` (e.g. "READY=1") as one of their lines.
  size_t count(const std::string &assignment) {
    size_t n = 0;
    for (const std::string &m : messages())
      if (("\n" + m + "\n").find("\n" + assignment + "\n") != std::string::npos) ++n;
    return n;
  }
  std::string all() {
    std::string s;
    for (const std::string &m : messages()) s += "[" + m + "] ";
    return s;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> messages_;
  std::thread reader_;
};

}  // namespace devmesh::test
