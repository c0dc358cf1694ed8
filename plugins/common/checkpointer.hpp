// When an input's checkpoint is written (journald's cursor, tail's offsets): a generation
// counts the changes to save; a change is written at once, or checkpoint_interval after the
// previous write when that is later, one write at a time, on the engine's thread pool
// (state_file.hpp); a failed write is counted, logged once until one succeeds, and retried
// no sooner than a second later; the final write is made by the plugin's destructor, after the
// engine delivered the last acknowledgements. Loop thread only.
#pragma once

#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "monotonic_ms.hpp"
#include "state_file.hpp"

namespace devmesh {

class Checkpointer {
 public:
  static constexpr uint64_t kErrorRetryMs = 1000;

  // clock_ms: a monotonic clock in milliseconds (a test's own).
  Checkpointer(const dm_host_api *host, dm_instance *inst, uint64_t (*clock_ms)() = monotonic_ms)
      : host_(host), inst_(inst), clock_ms_(clock_ms) {}
  Checkpointer(const Checkpointer &) = delete;
  Checkpointer &operator=(const Checkpointer &) = delete;
  ~Checkpointer() {
    *alive_ = nullptr;  // a write still on the pool finds us gone and only frees itself
    if (timer_) host_->timer_free(timer_);
  }

  // Without a call to open (no state file) every other call does nothing. text: the state
  // as it is to be saved now; write_errors: counts the failed writes.
  void open(std::string path, uint64_t interval_ms, std::function<std::string()> text,
            dm_metric *write_errors) {
    file_ = std::make_shared<StateFile>(std::move(path));
    interval_ms_ = interval_ms;
    text_ = std::move(text);
    m_errors_ = write_errors;
  }

  bool enabled() const { return file_ != nullptr; }
  const std::string &path() const { return file_->path(); }
  const std::string &dir() const { return file_->dir(); }
  bool is_temporary(std::string_view path) const { return file_->is_temporary(path); }

  // From the plugin's start(): nothing is written before. False when its timer cannot be made.
  bool start() {
    if (!file_) return true;
    timer_ = host_->timer_new(inst_, on_timer, this);
    return timer_ != nullptr;
  }

  // Something the state file says has changed.
  void changed() { ++generation_; }

  // Writes the changes not written yet, now or when the interval allows.
  void save() {
    if (!file_ || !timer_ || busy_ || generation_ <= requested_) return;
    const uint64_t now = clock_ms_();
    if (now < next_write_ms_) {
      host_->timer_start(timer_, next_write_ms_ - now, 0);
      return;
    }
    next_write_ms_ = now + interval_ms_;
    const uint64_t generation = requested_ = generation_;
    busy_ = true;
    write_off_loop(host_, inst_, file_, text_(), generation, [alive = alive_, generation](int err) {
      if (Checkpointer *self = *alive) {
        self->busy_ = false;
        guarded(self->host_, self->inst_, 0, [&] { return self->finished(generation, err), 0; });
      }
    });
  }

  // stop(): what is acknowledged by now is saved at once; later changes follow every interval
  // and at destruction.
  void save_now() {
    next_write_ms_ = 0;
    save();
  }

  // The plugin's destructor: the last changes, written here (waiting for the disk) when
  // `ready` (there is a state worth saving). A write still on the pool is let go first.
  void finish(bool ready) {
    if (!file_) return;
    *alive_ = nullptr;
    if (!ready || generation_ <= confirmed_) return;
    const int err = file_->write(text_(), generation_);
    if (err)
      host_->log(inst_, DM_LOG_ERROR, "state_file %s: final write failed: %s",
                 file_->path().c_str(), strerror(err));
  }

 private:
  static void on_timer(void *arg) {
    auto *self = static_cast<Checkpointer *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->save(), 0; });
  }

  void finished(uint64_t generation, int err) {
    if (err) {
      if (m_errors_) host_->metric_add(m_errors_, 1);
      if (!error_logged_)
        host_->log(inst_, DM_LOG_ERROR, "state_file %s: write failed: %s (retrying)",
                   file_->path().c_str(), strerror(err));
      error_logged_ = true;
      // Retried no sooner than a second later, even with checkpoint_interval 0.
      requested_ = confirmed_;
      next_write_ms_ = std::max(next_write_ms_, clock_ms_() + kErrorRetryMs);
    } else {
      error_logged_ = false;
      confirmed_ = std::max(confirmed_, generation);
    }
    save();
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  uint64_t (*clock_ms_)();
  std::shared_ptr<StateFile> file_;
  std::function<std::string()> text_;
  dm_metric *m_errors_ = nullptr;
  dm_timer *timer_ = nullptr;
  uint64_t interval_ms_ = 0, next_write_ms_ = 0;
  // generation_ counts changes; requested_: the newest handed to a write; confirmed_: the
  // newest written.
  uint64_t generation_ = 0, requested_ = 0, confirmed_ = 0;
  bool busy_ = false;  // a write is on the pool
  bool error_logged_ = false;
  std::shared_ptr<Checkpointer *> alive_ = std::make_shared<Checkpointer *>(this);
};

}  // namespace devmesh
