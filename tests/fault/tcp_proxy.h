// A TCP proxy on 127.0.0.1 that the test controls, between a MariaDB client and mariadbd: it
// relays both ways, reads the client's MySQL packets and can cut a connection right after the
// client's COMMIT went through (an ambiguous commit: the server commits, the client never hears).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace devmesh::test {

class TcpProxy {
 public:
  // Listens on a free port of 127.0.0.1 and relays every connection to 127.0.0.1:upstream_port.
  explicit TcpProxy(int upstream_port) : upstream_port_(upstream_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = loopback(0);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0 ||
        ::listen(listen_fd_, 64) != 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
      return;
    }
    socklen_t len = sizeof a;
    getsockname(listen_fd_, reinterpret_cast<sockaddr *>(&a), &len);
    port_ = ntohs(a.sin_port);
    if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) stop_pipe_[0] = stop_pipe_[1] = -1;
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TcpProxy() {
    stopping_ = true;
    if (stop_pipe_[1] >= 0) (void)!::write(stop_pipe_[1], "x", 1);
    if (acceptor_.joinable()) acceptor_.join();
    std::vector<std::thread> relays;
    {
      std::lock_guard<std::mutex> lk(mu_);
      relays.swap(relays_);
    }
    for (auto &t : relays) t.join();
    for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]})
      if (fd >= 0) ::close(fd);
  }
  TcpProxy(const TcpProxy &) = delete;
  TcpProxy &operator=(const TcpProxy &) = delete;

  bool ok() const { return listen_fd_ >= 0; }
  int port() const { return port_; }

  // Where a connection is cut.
  enum class Cut {
    // The COMMIT reaches the server, whose answer is read (so the test knows whether it
    // committed) and never forwarded: the server committed, the client only lost its connection.
    kCommitAnswerHeld,
    // Both sides closed right after the COMMIT is forwarded: the server reads COMMIT, then EOF.
    kCommitSent,
    // Both sides closed right after a (bulk) statement execution is forwarded, before COMMIT:
    // the server rolls the transaction back.
    kExecuteSent,
  };

  // Cuts the connection at `where` for every `every`-th such packet the clients send, at most
  // `max_cuts` times.
  void cut(Cut where, int every, int max_cuts) {
    where_ = where;
    every_ = every;
    max_cuts_ = max_cuts;
  }

  int connections() const { return connections_; }
  int commits() const { return commits_; }
  int executes() const { return executes_; }
  int cuts() const { return cuts_; }
  // Cut COMMITs that the server answered with OK (kCommitAnswerHeld): committed, and the
  // client was never told.
  int cuts_committed() const { return cuts_committed_; }

 private:
  static sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    return a;
  }

  void accept_loop() {
    while (!stopping_) {
      pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
      if (stopping_ || (p[1].revents & POLLIN)) return;
      if (!(p[0].revents & POLLIN)) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = loopback(upstream_port_);
      if (::connect(server, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
        ::close(server);
        ::close(client);
        continue;
      }
      int one = 1;
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ++connections_;
      std::lock_guard<std::mutex> lk(mu_);
      relays_.emplace_back([this, client, server] { relay(client, server); });
    }
  }

  static bool write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
      const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return false;
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  // Finds packet boundaries in the client's stream (3-byte little-endian length, sequence byte,
  // payload) and says when a packet that is COM_QUERY "COMMIT" ends.
  struct PacketReader {
    unsigned char header[4];
    size_t header_have = 0;
    size_t remaining = 0;  // payload bytes of the current packet still to come
    size_t length = 0;
    std::string prefix;  // the payload's first bytes (enough to recognise COMMIT)

    enum Kind { kNone, kOther, kCommit, kExecute };

    // Feeds bytes; returns the kind of the last packet that ended inside them (the client
    // waits for the answer to a COMMIT or an execution, so that packet ends its write).
    Kind feed(const char *p, size_t n) {
      Kind last = kNone;
      while (n > 0) {
        if (header_have < 4) {
          header[header_have++] = static_cast<unsigned char>(*p++);
          --n;
          if (header_have == 4) {
            length = header[0] | (header[1] << 8) | (header[2] << 16);
            remaining = length;
            prefix.clear();
            if (remaining == 0) header_have = 0;
          }
          continue;
        }
        const size_t take = std::min(n, remaining);
        if (prefix.size() < 16) prefix.append(p, std::min(take, 16 - prefix.size()));
        p += take;
        n -= take;
        remaining -= take;
        if (remaining == 0) {
          header_have = 0;
          const auto command = static_cast<unsigned char>(prefix[0]);
          if (length == 7 && command == 0x03 && strncasecmp(prefix.data() + 1, "COMMIT", 6) == 0)
            last = kCommit;
          else if (command == 0x17 || command == 0xfa)  // COM_STMT_EXECUTE, COM_STMT_BULK_EXECUTE
            last = kExecute;
          else
            last = kOther;
        }
      }
      return last;
    }
  };

  void relay(int client, int server) {
    PacketReader reader;
    char buf[64 * 1024];
    bool open = true;
    while (open && !stopping_) {
      pollfd p[3] = {{client, POLLIN, 0}, {server, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (::poll(p, 3, -1) < 0) {
        if (errno == EINTR) continue;
        break;
      }
      if (p[2].revents & POLLIN) break;
      if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(client, buf, sizeof buf, 0);
        if (n <= 0 || !write_all(server, buf, static_cast<size_t>(n))) break;
        const PacketReader::Kind kind = reader.feed(buf, static_cast<size_t>(n));
        const bool commit = kind == PacketReader::kCommit;
        if (commit || kind == PacketReader::kExecute) {
          const int seen = commit ? ++commits_ : ++executes_;
          const bool wanted = commit ? where_ != Cut::kExecuteSent : where_ == Cut::kExecuteSent;
          if (wanted && every_ > 0 && seen % every_ == 0 && take_cut()) {
            // The client loses its connection now.
            ::shutdown(client, SHUT_RDWR);
            if (where_ == Cut::kCommitAnswerHeld && server_answered_ok(server)) ++cuts_committed_;
            open = false;
            continue;
          }
        }
      }
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(server, buf, sizeof buf, 0);
        if (n <= 0 || !write_all(client, buf, static_cast<size_t>(n))) break;
      }
    }
    ::close(client);
    ::close(server);
  }

  // Claims one of the max_cuts_ cuts (two connections may see a COMMIT at once).
  bool take_cut() {
    int c = cuts_.load();
    while (c < max_cuts_)
      if (cuts_.compare_exchange_weak(c, c + 1)) return true;
    return false;
  }

  // Reads the server's answer to the COMMIT (one packet, 10 s at most): true for an OK packet.
  static bool server_answered_ok(int server) {
    std::string got;
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < end) {
      if (got.size() >= 5) {
        const size_t len = static_cast<unsigned char>(got[0]) |
                           (static_cast<unsigned char>(got[1]) << 8) |
                           (static_cast<unsigned char>(got[2]) << 16);
        if (got.size() >= 4 + len) return got[4] == 0x00;
      }
      pollfd p{server, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(server, buf, sizeof buf, 0);
      if (n <= 0) return false;
      got.append(buf, static_cast<size_t>(n));
    }
    return false;
  }

  int upstream_port_;
  int listen_fd_ = -1, port_ = 0;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<bool> stopping_{false};
  std::atomic<Cut> where_{Cut::kCommitAnswerHeld};
  std::atomic<int> every_{0}, max_cuts_{0};
  std::atomic<int> connections_{0}, commits_{0}, executes_{0}, cuts_{0}, cuts_committed_{0};
  std::mutex mu_;
  std::vector<std::thread> relays_;
  std::thread acceptor_;
};

}  // namespace devmesh::test
