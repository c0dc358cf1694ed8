// The gate between one plugin instance and the pool work it queued (host queue_work). A reload
// or a shutdown destroys an instance whose work may still be queued or running on libuv's pool:
// its work() would then read a freed state, and its done() would run on the loop after destroy.
// close() (called just before destroy) lets no queued work() start, waits for one that is
// running to return, and from then on the loop skips done(); the work's arg is then the
// plugin's to have freed at destroy, or is leaked (plugin.h says so).
#pragma once

#include <condition_variable>
#include <mutex>

namespace devmesh {

class WorkGate {
 public:
  // [pool] before work(): false once the instance is being destroyed (skip the work).
  bool enter() {
    std::lock_guard<std::mutex> lk(mu_);
    if (!open_) return false;
    ++running_;
    return true;
  }
  // [pool] after work().
  void leave() {
    std::lock_guard<std::mutex> lk(mu_);
    if (--running_ == 0) idle_.notify_all();
  }
  // [loop] whether done() may be called.
  bool open() {
    std::lock_guard<std::mutex> lk(mu_);
    return open_;
  }
  // [loop] before destroy: no work() starts from now on, and one running has returned.
  void close() {
    std::unique_lock<std::mutex> lk(mu_);
    open_ = false;
    idle_.wait(lk, [&] { return running_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  bool open_ = true;
  int running_ = 0;
};

}  // namespace devmesh
