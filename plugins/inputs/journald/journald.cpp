// journald input: reads the systemd journal (the local one, a directory or a list of files) with
// sd-journal on a thread of its own, makes the entries into records, submits and follows it on
// the engine loop, and checkpoints the cursor of acknowledged entries. Its options are checked
// in journald_config.cpp; an entry's event_id is made in event_identity.hpp, its fields mapped
// in entry_mapping.cpp; the thread hands what it read over through handoff.hpp.
#include <fcntl.h>
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>
#include <ack_ledger.hpp>
#include <checkpointer.hpp>
#include <devmesh/plugin.hpp>
#include <monotonic_ms.hpp>
#include <record_json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "checkpoint.hpp"
#include "entry_mapping.hpp"
#include "event_identity.hpp"
#include "handoff.hpp"
#include "journal_access.hpp"
#include "journald_config.hpp"

namespace devmesh {
namespace {

using journald::errno_text;
using journald::Identity;
using journald::kRawBatchBytes;
using journald::kRecent;
using journald::kStampBytes;
using journald::Position;
using journald::RawBatch;
using journald::RawEntry;
using journald::ReadBatch;
using journald::set_pid;

constexpr uint64_t kRefusedRetryMs = 50;  // fallback when a refused submit brings no pause()
constexpr uint64_t kErrorRetryMs = 1000;
// The newest entry of a followed journal, read without MESSAGE, is read again this often, up to
// kRereads times: sd-journal skips a field whose data object it cannot read yet without saying
// so (a writer's append seen half-done; systemd issue 40263), and MESSAGE is the field such a
// record would silently lose. An entry with entries after it is read once more at once (its
// writer has moved on). Then it is taken as it is, and counted.
constexpr uint64_t kRereadMs = 20;
constexpr uint32_t kRereads = 9;
// While the journal has no files we may read, they are looked for this often (a new file in a
// watched directory is also noticed at once, through sd-journal's notification).
constexpr uint64_t kAccessCheckMs = 5000;
// Bytes of journal file touched per field beyond its payload (object header, entry item).
constexpr uint64_t kFieldOverhead = 64;

// A batch handed to the engine: what it moves once settled (AckLedger).
struct Submitted {
  uint32_t count;
  Position last;  // its newest entry
};

class Journald {
 public:
  Journald(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host),
        inst_(inst),
        problems_(host, inst),
        cfg_(journald::read_settings(host, cfg, problems_)) {
    problems_.refuse_if_any();
    // Opening here makes an unreadable source a configuration error, reported at start-up.
    if (int r = open_journal(); r < 0) {
      problems_.add(!cfg_.path.empty()    ? "path"
                    : !cfg_.files.empty() ? "files"
                                          : nullptr,
                    "cannot open " + cfg_.source + ": " + errno_text(r));
      problems_.refuse_if_any();
    }

    m_read_ = host->metric_counter(inst, "journald_entries_read_total",
                                   "journal entries read and handed to the pipeline", nullptr);
    m_acked_ =
        host->metric_counter(inst, "journald_entries_acknowledged_total",
                             "entries acknowledged (delivered or dead-lettered) in order", nullptr);
    m_lag_ =
        host->metric_gauge(inst, "journald_lag_seconds",
                           "newest entry read minus newest acknowledged, journal time", nullptr);
    m_gaps_ = host->metric_counter(
        inst, "journald_gaps_total",
        "saved positions no longer in the journal (vacuumed): reading resumed at the oldest entry",
        nullptr);
    m_invalidations_ = host->metric_counter(
        inst, "journald_invalidations_total",
        "journal file set changes seen while following (rotation, new files, vacuum)", nullptr);
    m_refused_ = host->metric_counter(inst, "journald_submits_refused_total",
                                      "batches refused by backpressure, kept and retried", nullptr);
    m_rereads_ = host->metric_counter(
        inst, "journald_entries_reread_total",
        "reads of a followed journal's newest entry put off because it had no MESSAGE yet (its "
        "writer seen half-way): read again after 20 ms, up to 9 times",
        nullptr);
    m_no_message_ = host->metric_counter(inst, "journald_entries_without_message_total",
                                         "entries taken without a MESSAGE field", nullptr);
    m_errors_ = host->metric_counter(inst, "journald_read_errors_total",
                                     "sd-journal read errors (retried after 1 s)", nullptr);
    m_build_retries_ = host->metric_counter(
        inst, "journald_build_retries_total",
        "batches of entries read whose records could not be made (out of memory, in effect): "
        "kept and made again after 1 s",
        nullptr);
    m_state_errors_ = host->metric_counter(inst, "journald_state_write_errors_total",
                                           "state file writes that failed (retried)", nullptr);
    if (!cfg_.state_file.empty())
      checkpoints_.open(
          cfg_.state_file, cfg_.checkpoint_ms, [this] { return state_text(); }, m_state_errors_);
    m_state_fallbacks_ = host->metric_counter(
        inst, "journald_state_fallbacks_total",
        "starts where the state file was missing or unusable and read_from applied", nullptr);
    m_truncated_ = host->metric_counter(
        inst, "journald_fields_truncated_total",
        "fields copied from the journal (with fields:, every field; else the ones a record takes) "
        "as long as max_field_size (possibly cut)",
        nullptr);
    m_cut_columns_ = host->metric_counter(
        inst, "journald_records_cut_to_columns_total",
        "records whose service or host was cut to the stores' 255 characters (meta truncated)",
        nullptr);
    m_reopens_ = host->metric_counter(
        inst, "journald_reopens_total",
        "journal re-opened to release mapped files (remap_after), or to open files that "
        "became readable",
        nullptr);
    m_failed_ = host->metric_counter(
        inst, "journald_deliveries_failed_total",
        "record deliveries an output refused for good and could not keep (lost, logged)", nullptr);
    m_same_stamp_ = host->metric_counter(
        inst, "journald_same_stamp_entries_total",
        "entries alike (boot, stamps, pid, message) to one of the 16 read just before them: their "
        "event_id also holds their sequence number (from the cursor), so both are kept",
        nullptr);
    m_readable_ = host->metric_gauge(inst, "journald_journal_readable",
                                     "1 when the journal has files this process may read; 0 "
                                     "while it has none, or may not read them (/health degraded)",
                                     nullptr);
    const char *no_journal =
        "times the journal was found without journal files (no_files) or "
        "with files this process may not read (permission)";
    m_no_files_ =
        host->metric_counter(inst, "journald_no_journal_total", no_journal, "reason=\"no_files\"");
    m_no_permission_ = host->metric_counter(inst, "journald_no_journal_total", no_journal,
                                            "reason=\"permission\"");
  }

  ~Journald() {
    join_reader();  // stop() did, unless start() failed half-way
    free_handles();
    // The final checkpoint is written here, after the engine delivered the last acks.
    checkpoints_.finish(!acked_.cursor.empty());
    if (j_) sd_journal_close(j_);
    // The reader thread's CPU: with a core of its own, the bound of the input's rate (what
    // bench_journald compares with a bare sd-journal loop).
    host_->log(inst_, DM_LOG_INFO, "read %llu entries, %llu acknowledged; reader thread CPU %.3f s",
               static_cast<unsigned long long>(entries_read_),
               static_cast<unsigned long long>(entries_acked_),
               static_cast<double>(reader_cpu_ns_.load()) / 1e9);
  }

  int start() {
    if (!cfg_.state_dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(cfg_.state_dir, ec);
      if (ec) {
        host_->log(inst_, DM_LOG_ERROR, "state_file: cannot create directory %s: %s",
                   cfg_.state_dir.c_str(), ec.message().c_str());
        return 1;
      }
    }
    pump_timer_ = host_->timer_new(inst_, on_pump_timer, this);
    timeout_timer_ = host_->timer_new(inst_, on_timeout_timer, this);
    access_timer_ = host_->timer_new(inst_, on_access_timer, this);
    async_ = host_->async_new(inst_, on_async, this);
    if (!pump_timer_ || !checkpoints_.start() || !timeout_timer_ || !access_timer_ || !async_) {
      host_->log(inst_, DM_LOG_ERROR, "timer_new or async_new failed");
      return 1;
    }
    if (!position_at_start() || (cfg_.follow && !watch_journal())) return 1;
    try {
      reader_ = std::thread([this] { read_runs(); });
    } catch (const std::exception &e) {
      host_->log(inst_, DM_LOG_ERROR, "cannot start the reader thread: %s", e.what());
      return 1;
    }
    started_ = true;
    check_access();
    schedule_pump(0);
    return 0;
  }

  // /health: degraded while the journal has no files we may read.
  int health(char *buf, size_t cap) {
    if (access_.problem == journald::JournalAccess::kNone) return 0;
    snprintf(buf, cap, "%s", access_.reason.c_str());
    return 1;
  }

  void stop() {
    stopped_ = true;
    if (pump_timer_) host_->timer_stop(pump_timer_);
    if (timeout_timer_) host_->timer_stop(timeout_timer_);
    if (access_timer_) host_->timer_stop(access_timer_);
    if (watch_) host_->watch_set(watch_, 0);
    // The thread ends after the batch it is reading. What it read and nobody submitted never
    // reached the pipeline: it is read again after a restart.
    join_reader();
    busy_ = false;
    // What is acknowledged by now is saved at once; later acks (the engine's grace period)
    // follow every checkpoint_interval and at destruction.
    checkpoints_.save_now();
  }

  void pause() {
    paused_ = true;
    handoff_.halt(true);  // the thread ends its run after the batch it is reading
    if (pump_timer_) host_->timer_stop(pump_timer_);
    pump_scheduled_ = false;
    // inotify keeps queueing while we do not watch; nothing is lost, only noticed on resume.
    if (watch_) host_->watch_set(watch_, 0);
  }

  void resume() {
    paused_ = false;
    handoff_.halt(false);  // a run not ended yet goes on
    if (watch_ && cfg_.follow && !stopped_ && !busy_) host_->watch_set(watch_, DM_READABLE);
    schedule_pump(0);
  }

  void on_ack(const dm_ack &ack) {
    // With storage the entry is replayable from disk once STORED: the checkpoint moves then.
    if (ack.stage == DM_ACK_STORED)
      stored_acks_ = true;
    else if (stored_acks_)
      return;  // the DONE after a STORED
    // Entries an output refused for good and could not keep. The cursor still moves past them:
    // holding it would not bring them back while running, and after a restart a record refused
    // for its content (too long for the store) would be re-read and refused again, forever,
    // with everything after it. So they are counted and logged loudly; the journal still holds
    // them for an operator who fixes the output (a dead_letter_path) and re-reads.
    if (ack.failed) {
      add(m_failed_, ack.failed);
      host_->log(inst_, DM_LOG_ERROR,
                 "%u record deliveries of ticket %llu failed permanently and were not kept "
                 "(they stay in the journal): %s",
                 ack.failed, static_cast<unsigned long long>(ack.ticket),
                 ack.failed_reason ? ack.failed_reason : "no reason given");
    }
    const size_t settled = submitted_.acknowledged(ack.ticket, [&](Submitted &s) {
      entries_acked_ += s.count;
      add(m_acked_, s.count);
      acked_ = std::move(s.last);
    });
    if (!settled) return;
    update_lag();
    checkpoints_.changed();
    checkpoints_.save();
  }

 private:
  // ---- opening and positioning -------------------------------------------------------------

  int open_journal() {
    int r;
    if (!cfg_.path.empty()) {
      r = sd_journal_open_directory(&j_, cfg_.path.c_str(), 0);
    } else if (!cfg_.files.empty()) {
      std::vector<const char *> paths;
      for (const auto &f : cfg_.files) paths.push_back(f.c_str());
      paths.push_back(nullptr);
      r = sd_journal_open_files(&j_, paths.data(), 0);
    } else {
      r = sd_journal_open(&j_, SD_JOURNAL_LOCAL_ONLY);
    }
    if (r < 0) {
      j_ = nullptr;
      return r;
    }
    bytes_since_open_ = 0;
    ++opens_;
    // A field longer than this comes back cut; it is counted (m_truncated_).
    sd_journal_set_data_threshold(j_, cfg_.data_threshold);
    // The change notification exists before the first read, so no file added from now on is
    // missed while we position ourselves.
    if (cfg_.follow && (r = sd_journal_get_fd(j_)) < 0) {
      sd_journal_close(j_);
      j_ = nullptr;
      return r;
    }
    return 0;
  }

  // Matches are added after positioning: a saved cursor is checked against the whole journal,
  // so a changed units/matches list is never mistaken for a vacuumed entry.
  int add_matches() {
    for (const auto &m : cfg_.matches) {
      const int r =
          m == "+" ? sd_journal_add_disjunction(j_) : sd_journal_add_match(j_, m.data(), m.size());
      if (r < 0) {
        host_->log(inst_, DM_LOG_ERROR, "match '%s': %s", m.c_str(), errno_text(r).c_str());
        return r;
      }
    }
    return 0;
  }

  enum class Seek { kAt, kGone, kInvalid };

  // Positions on the entry of `cursor` (already delivered: reading goes on after it). When it
  // is no longer in the journal, positions before the oldest entry and counts the gap.
  Seek seek_cursor(const std::string &cursor, const char *what) {
    if (sd_journal_seek_cursor(j_, cursor.c_str()) < 0) return Seek::kInvalid;
    if (sd_journal_next(j_) > 0 && sd_journal_test_cursor(j_, cursor.c_str()) > 0) {
      remember_current();  // the entries read next are compared with this delivered one
      return Seek::kAt;
    }
    clear_run_start();
    add(m_gaps_, 1);
    host_->log(inst_, DM_LOG_WARN,
               "%s position %s is no longer in the journal (vacuumed or removed, or the state "
               "file is another journal's): resuming at the oldest remaining entry; entries "
               "between it and that one are lost",
               what, cursor.c_str());
    sd_journal_seek_head(j_);
    last_read_ = Position{};
    return Seek::kGone;
  }

  // The cursor and time of the entry we are on.
  Position current_position() {
    Position p;
    char *c = nullptr;
    if (sd_journal_get_cursor(j_, &c) >= 0) {
      p.cursor = c;
      free(c);
      sd_journal_get_realtime_usec(j_, &p.realtime_usec);
    }
    return p;
  }

  void seek_read_from() {
    last_read_ = Position{};
    clear_run_start();
    if (cfg_.from_tail) {
      sd_journal_seek_tail(j_);
      // On the newest entry now: reading goes on with whatever comes after it. An empty
      // journal has no newest entry, and then its head is where new entries appear.
      if (sd_journal_previous(j_) > 0) {
        last_read_ = current_position();
        remember_current();
        return;
      }
    }
    sd_journal_seek_head(j_);
  }

  // Back to just after the newest entry handed to the pipeline (or the one we started after),
  // so that the next read returns the entry after it. Without one, reading started at the
  // head (read_from head, an empty journal, or a gap): back there.
  void reposition() {
    if (last_read_.cursor.empty()) {
      clear_run_start();
      sd_journal_seek_head(j_);
    } else if (seek_cursor(last_read_.cursor, "current") == Seek::kInvalid) {
      host_->log(inst_, DM_LOG_ERROR,
                 "sd-journal refuses its own cursor '%s': reading again "
                 "from the oldest entry",
                 last_read_.cursor.c_str());
      last_read_ = Position{};
      clear_run_start();
      sd_journal_seek_head(j_);
    }
  }

  bool position_at_start() {
    const char *fallback = cfg_.from_tail ? "tail (only new entries)" : "head (the oldest entry)";
    bool placed = false;
    if (checkpoints_.enabled()) {
      const journald::SavedPosition saved = journald::parse_state(checkpoints_.path());
      Seek seek = Seek::kInvalid;
      if (!saved.ok) {
        add(m_state_fallbacks_, 1);
        // No file yet is a first start, the normal case: only a file that is there and
        // unusable is worth a warning.
        host_->log(inst_, saved.problem == "missing" ? DM_LOG_INFO : DM_LOG_WARN,
                   "state_file %s is %s: reading %s from %s", checkpoints_.path().c_str(),
                   saved.problem.c_str(), cfg_.source.c_str(), fallback);
      } else if ((seek = seek_cursor(saved.cursor, "saved")) == Seek::kInvalid) {
        add(m_state_fallbacks_, 1);
        host_->log(inst_, DM_LOG_WARN,
                   "state_file %s holds a cursor sd-journal does not understand ('%s'): reading "
                   "%s from %s",
                   checkpoints_.path().c_str(), saved.cursor.c_str(), cfg_.source.c_str(),
                   fallback);
      } else {
        placed = true;
        if (seek == Seek::kAt) {
          // Delivered in an earlier run: the lag counts from it, the state file holds it.
          last_read_ = acked_ = current_position();
          host_->log(inst_, DM_LOG_INFO, "reading %s after the saved position",
                     cfg_.source.c_str());
        }
      }
    }
    if (!placed) {
      seek_read_from();
      if (!checkpoints_.enabled())
        host_->log(inst_, DM_LOG_INFO, "reading %s from %s (no state_file)", cfg_.source.c_str(),
                   fallback);
    }
    return add_matches() >= 0;
  }

  // The watch is on a copy of sd-journal's notification fd, the loop's own: the reader thread
  // re-opens the journal (closing that fd) while the watch is off, and a number closed under a
  // watch could be taken by another fd before the watch is freed.
  bool watch_journal() {
    const int fd = sd_journal_get_fd(j_);
    if (fd < 0) {
      host_->log(inst_, DM_LOG_ERROR, "sd_journal_get_fd: %s", errno_text(fd).c_str());
      return false;
    }
    watch_fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (watch_fd_ < 0) {
      host_->log(inst_, DM_LOG_ERROR, "dup of the journal's notification fd: %s", strerror(errno));
      return false;
    }
    watched_open_ = opens_;
    watch_ = host_->watch_new(inst_, watch_fd_, on_watch, this);
    if (!watch_ || host_->watch_set(watch_, paused_ || stopped_ ? 0 : DM_READABLE) != DM_OK) {
      host_->log(inst_, DM_LOG_ERROR, "cannot watch the journal's notification fd");
      unwatch();
      return false;
    }
    arm_journal_timeout();
    return true;
  }

  void unwatch() {
    if (watch_) host_->watch_free(watch_);  // stops polling first: the fd may close after it
    watch_ = nullptr;
    if (watch_fd_ >= 0) close(watch_fd_);
    watch_fd_ = -1;
  }

  // Closing the journal unmaps every file sd-journal mapped; the cursor of the last entry read
  // puts us back where we were. Done by the reader thread during a run; the loop watches the new
  // notification fd after it.
  bool reopen() {
    if (j_) sd_journal_close(j_);
    j_ = nullptr;
    add(m_reopens_, 1);
    if (const int r = open_journal(); r < 0) {
      add(m_errors_, 1);
      if (!reopen_error_logged_)
        host_->log(inst_, DM_LOG_ERROR, "re-opening %s: %s (retrying every second)",
                   cfg_.source.c_str(), errno_text(r).c_str());
      reopen_error_logged_ = true;
      return false;
    }
    reopen_error_logged_ = false;
    reposition();
    if (add_matches() >= 0) return true;
    sd_journal_close(j_);
    j_ = nullptr;
    return false;
  }

  // ---- whether there is a journal to read ----------------------------------------------------

  // Said three ways while there is none: a warning (naming the user and the systemd-journal
  // group for a permission), /health degraded with the reason, and the metrics. Looked at
  // again every kAccessCheckMs and whenever the journal's files change, until it is readable;
  // then the journal is re-opened, since sd-journal does not retry a file it could not open.
  void check_access() {
    journald::JournalAccess now = journald::check_journal_access(cfg_);
    const auto before = access_.problem;
    if (now.problem != before || now.reason != access_.reason) {
      if (now.problem != journald::JournalAccess::kNone) {
        host_->log(inst_, DM_LOG_WARN, "%s", now.reason.c_str());
        if (now.problem != before)
          add(now.problem == journald::JournalAccess::kNoFiles ? m_no_files_ : m_no_permission_, 1);
      } else {
        host_->log(inst_, DM_LOG_INFO, "%s has %u journal file(s) to read now", cfg_.source.c_str(),
                   now.files);
        reopen_wanted_ = true;
        if (!pump_scheduled_) schedule_pump(0);
      }
    }
    access_ = std::move(now);
    const bool readable = access_.problem == journald::JournalAccess::kNone;
    host_->metric_set(m_readable_, readable ? 1 : 0);
    if (readable || stopped_)
      host_->timer_stop(access_timer_);
    else
      host_->timer_start(access_timer_, kAccessCheckMs, 0);
  }

  static void on_access_timer(void *arg) {
    auto *self = static_cast<Journald *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->check_access(), 0; });
  }

  // ---- following ---------------------------------------------------------------------------

  static void on_watch(void *arg, int) {
    auto *self = static_cast<Journald *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->journal_changed(), 0; });
  }

  static void on_timeout_timer(void *arg) { on_watch(arg, 0); }

  void journal_changed() {
    // While the thread reads, the journal is its own: the watch is off, and the change is
    // looked at when the run ends (the notification fd stays readable until then).
    if (!j_ || busy_) return;
    const int r = sd_journal_process(j_);
    if (r == SD_JOURNAL_INVALIDATE) {
      add(m_invalidations_, 1);
      host_->log(inst_, DM_LOG_DEBUG, "journal files changed (rotation, new file or vacuum)");
      if (access_.problem != journald::JournalAccess::kNone) check_access();
    } else if (r < 0) {
      host_->log(inst_, DM_LOG_WARN, "sd_journal_process: %s", errno_text(r).c_str());
    }
    arm_journal_timeout();
    // Appended or not, reading is what finds out: sd-journal keeps our place across file
    // changes, so reading on neither skips nor repeats an entry.
    if (!pump_scheduled_) schedule_pump(0);
  }

  // Journals on file systems without reliable inotify (network) need a wake-up by time too.
  void arm_journal_timeout() {
    uint64_t t = 0;
    if (!j_ || sd_journal_get_timeout(j_, &t) < 0 || t == UINT64_MAX) {
      host_->timer_stop(timeout_timer_);
      return;
    }
    // sd-journal's timeout is on CLOCK_MONOTONIC in microseconds; a millisecond clock wakes
    // at most 1 ms late.
    const uint64_t now = monotonic_ms() * 1000u;
    host_->timer_start(timeout_timer_, t > now ? (t - now + 999) / 1000 : 0, 0);
  }

  // ---- reading -----------------------------------------------------------------------------

  bool can_run() const { return started_ && !stopped_ && !paused_ && !finished_; }

  void schedule_pump(uint64_t ms) {
    if (!can_run()) return;
    pump_scheduled_ = true;
    host_->timer_start(pump_timer_, ms, 0);
  }

  static void on_pump_timer(void *arg) {
    auto *self = static_cast<Journald *>(arg);
    self->pump_scheduled_ = false;
    if (guarded(self->host_, self->inst_, 1, [&] { return self->pump(), 0; }))
      self->schedule_pump(kErrorRetryMs);
  }

  // Submits what the thread read, then, the thread being idle, starts its next read run.
  void pump() {
    if (!can_run() || !submit_ready() || busy_) return;
    if (end_reached_) {  // not following, and everything read is submitted
      finished_ = true;
      host_->log(inst_, DM_LOG_INFO, "reached the end of %s after %llu entries",
                 cfg_.source.c_str(), static_cast<unsigned long long>(entries_read_));
      host_->input_finished(inst_);
      return;
    }
    // The journal is the thread's until the run ends: no notifications meanwhile. A journal
    // that failed to re-open is tried again (every second).
    const bool reopen = !j_ || reopen_wanted_;
    reopen_wanted_ = false;
    busy_ = true;
    if (watch_) host_->watch_set(watch_, 0);
    host_->timer_stop(timeout_timer_);
    handoff_.request_run(reopen);
  }

  // Makes the batches read into records and hands them to the engine, oldest first; false
  // while one is refused (it stays first, and goes first on resume), cannot be built (retried
  // after a while) or the engine is stopping.
  bool submit_ready() {
    for (;;) {
      if (!built_.batch) {
        RawBatch *raw = handoff_.front();
        if (!raw) return true;
        try {
          built_ = build(*raw);
        } catch (const std::exception &e) {
          // Out of memory, in effect: the entries stay read and are built again after a while.
          add(m_build_retries_, 1);
          host_->log(inst_, DM_LOG_ERROR, "making records of %s's entries: %s (retrying after 1 s)",
                     cfg_.source.c_str(), e.what());
          schedule_pump(kErrorRetryMs);
          return false;
        }
        handoff_.pop();
      }
      uint64_t ticket = 0;
      const uint32_t n = built_.batch->count;
      const int rc = host_->submit(inst_, built_.batch, &ticket);
      if (rc == DM_ERR_FULL) {
        add(m_refused_, 1);
        schedule_pump(kRefusedRetryMs);  // a no-op when pause() came with the refusal
        return false;
      }
      ReadBatch r = std::exchange(built_, ReadBatch{});
      if (rc != DM_OK) {
        // The engine is stopping: the batch is read again after a restart.
        host_->batch_free(r.batch);
        stopped_ = true;
        handoff_.halt(true);
        return false;
      }
      entries_read_ += n;
      add(m_read_, n);
      newest_read_usec_ = r.last.realtime_usec;
      submitted_.submitted(ticket, Submitted{n, std::move(r.last)});
      update_lag();
    }
  }

  // The thread read a batch, or ended its run.
  static void on_async(void *arg) {
    auto *self = static_cast<Journald *>(arg);
    if (guarded(self->host_, self->inst_, 1, [&] { return self->read_arrived(), 0; }))
      self->schedule_pump(kErrorRetryMs);
  }

  void read_arrived() {
    if (stopped_ || !started_) return;
    // Refused or not, the run's end is looked at: a batch left waits for resume.
    if (!paused_ && !submit_ready() && stopped_) return;
    journald::RunEnd end;
    if (!handoff_.run_ended(end)) return;
    busy_ = false;
    // Re-opened: the new notification fd is watched; not open (a re-open failed): none is.
    if (cfg_.follow && (!j_ || !watch_ || watched_open_ != opens_)) {
      unwatch();
      if (j_ && !watch_journal()) {
        reopen_wanted_ = true;
        return schedule_pump(kErrorRetryMs);
      }
    }
    if (watch_ && cfg_.follow && !paused_) host_->watch_set(watch_, DM_READABLE);
    arm_journal_timeout();
    if (end.failed) return schedule_pump(kErrorRetryMs);
    if (end.reread) return schedule_pump(kRereadMs);
    // At the end while following, the journal's fd wakes us when something changes. A re-open
    // asked for while the thread read (files became readable) is done now.
    if (end.at_end && !cfg_.follow) end_reached_ = true;
    if (!end.at_end || end_reached_ || reopen_wanted_) schedule_pump(0);
  }

  // ---- the reader thread -------------------------------------------------------------------

  // Read runs, each asked for by pump(): batches until the journal's end, an error, or the
  // halt of pause() or stop(). The re-opens of remap_after are done on the way.
  void read_runs() {
    bool reopen_first = false;
    while (handoff_.wait_for_run(reopen_first)) {
      journald::RunEnd end;
      if (reopen_first && !reopen()) end.failed = true;
      while (!end.failed && handoff_.wait_for_room()) {
        if (cfg_.remap_after && bytes_since_open_ >= cfg_.remap_after && !reopen()) {
          end.failed = true;
          break;
        }
        RawBatch r = handoff_.spare();
        bool read = false;
        try {
          read = read_batch(r, end);
        } catch (const std::exception &e) {
          host_->log(inst_, DM_LOG_ERROR, "reading %s: %s (retrying after 1 s)",
                     cfg_.source.c_str(), e.what());
          end.failed = true;
        }
        if (read) {
          handoff_.push(std::move(r));
          host_->async_send(async_);
        } else {
          handoff_.give_back(std::move(r));
        }
        if (end.at_end || end.failed) break;
      }
      handoff_.end_run(end);
      host_->async_send(async_);
    }
    timespec cpu;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu) == 0)
      reader_cpu_ns_ =
          static_cast<uint64_t>(cpu.tv_sec) * 1000000000u + static_cast<uint64_t>(cpu.tv_nsec);
  }

  void join_reader() {
    if (!reader_.joinable()) return;
    handoff_.quit();
    reader_.join();
    handoff_.drop_all();
    if (built_.batch) host_->batch_free(built_.batch);
    built_ = ReadBatch{};
  }

  // Reads up to cfg_.batch entries into raw (empty); false when no entry was read.
  bool read_batch(RawBatch &raw, journald::RunEnd &end) {
    bool &at_end = end.at_end, &failed = end.failed;
    uint64_t realtime = 0;
    try {
      for (uint32_t i = 0; i < cfg_.batch; ++i) {
        int r = sd_journal_next(j_);
        if (r == 0) {
          at_end = true;
          break;
        }
        if (r < 0) {
          read_error("moving to the next entry", r);
          failed = true;
          break;
        }
        if ((r = read_entry(raw, realtime)) == kIncomplete) {
          // Step back before it, so that the batch ends (and its cursor stays) on the entry
          // before, and the next run reads it first.
          add(m_rereads_, 1);
          at_end = end.reread = true;
          if (raw.entries.empty()) {
            // Before it: a seek to its own cursor leaves next() to land on it again.
            char *c = nullptr;
            const bool ok =
                sd_journal_get_cursor(j_, &c) >= 0 && sd_journal_seek_cursor(j_, c) >= 0;
            free(c);
            if (!ok) throw std::runtime_error("cannot step back before an unfinished entry");
            return false;  // nothing read: no cursor to take
          }
          // next() and previous() undo each other only where sd-journal's order is consistent
          // (not always across files): the entry stepped back to must be the last one taken.
          if (sd_journal_previous(j_) <= 0 || !on_last_stamp())
            throw std::runtime_error("cannot step back to the entry before an unfinished one");
          break;
        }
        if (r < 0) read_error("reading an entry", r);
        // Huge entries: fewer of them per batch, so that kAhead batches stay a bounded memory.
        if (raw.bytes.size() >= kRawBatchBytes) break;
      }
    } catch (...) {
      // Nothing of this batch reaches the pipeline: go back to read it again.
      reposition();
      throw;
    }
    if (!failed) error_logged_ = false;
    if (raw.entries.empty()) return false;
    // A seek before these entries: the loop starts its comparisons over before the first.
    if (run_start_pending_) {
      raw.has_run_start = true;
      raw.run_start = run_start_;
      run_start_pending_ = false;
    }
    // The checkpoint needs the cursor of a batch's newest entry only: sd-journal is still on
    // it (a next() that finds nothing more, or fails, does not move).
    char *cursor = nullptr;
    if (const int r = sd_journal_get_cursor(j_, &cursor); r < 0) {
      // Without it this batch cannot advance the checkpoint: its acknowledgement keeps the
      // previous position, and a restart reads the batch again (same event_ids).
      read_error("getting the cursor", r);
      raw.last = last_read_;
    } else {
      raw.last.cursor.assign(cursor);
      raw.last.realtime_usec = realtime;
      free(cursor);
      last_read_ = raw.last;
    }
    return true;
  }

  // An entry that cannot be read is skipped (without a cursor or a time there is nothing to
  // deliver) or delivered with the fields that could be read; either way it is counted.
  void read_error(const char *what, int r) {
    add(m_errors_, 1);
    if (!error_logged_)
      host_->log(inst_, DM_LOG_WARN, "%s of %s: %s (counted in journald_read_errors_total)", what,
                 cfg_.source.c_str(), errno_text(r).c_str());
    error_logged_ = true;
  }

  // Copies the current entry into raw; realtime: its time, when it has one. Only what
  // sd-journal alone can tell is done here; the rest is the loop's (build), on the other core.
  // Whether the entry we are on is the journal's newest (which a writer may still be appending).
  // On it still when it is (a next() that finds nothing does not move); else back on it, by its
  // cursor.
  bool newest_entry() {
    char *c = nullptr;
    if (sd_journal_get_cursor(j_, &c) < 0) return false;
    const std::string cursor(c);
    free(c);
    if (sd_journal_next(j_) == 0) return true;
    if (sd_journal_seek_cursor(j_, cursor.c_str()) < 0 || sd_journal_next(j_) <= 0 ||
        sd_journal_test_cursor(j_, cursor.c_str()) <= 0)
      throw std::runtime_error("cannot go back to the entry read");
    return false;
  }

  // Whether the entry we are on has the stamp of the last one taken (last_stamp_).
  bool on_last_stamp() {
    uint64_t realtime = 0, monotonic = 0;
    sd_id128_t boot;
    if (!stamp_known_ || sd_journal_get_realtime_usec(j_, &realtime) < 0 ||
        sd_journal_get_monotonic_usec(j_, &monotonic, &boot) < 0)
      return false;
    uint8_t stamp[kStampBytes];
    std::memcpy(stamp, boot.bytes, 16);
    std::memcpy(stamp + 16, &monotonic, 8);
    std::memcpy(stamp + 24, &realtime, 8);
    return std::memcmp(stamp, last_stamp_, kStampBytes) == 0;
  }

  int read_entry(RawBatch &raw, uint64_t &realtime) {
    RawEntry e;
    sd_id128_t boot;
    int r = sd_journal_get_realtime_usec(j_, &e.realtime_usec);
    if (r >= 0) r = sd_journal_get_monotonic_usec(j_, &e.monotonic_usec, &boot);
    if (r < 0) {
      // Skipped: the entry after it has nothing to be compared with.
      skipped_ = true;
      stamp_known_ = false;
      return r;
    }
    std::memcpy(e.boot_id, boot.bytes, sizeof e.boot_id);
    e.first_field = static_cast<uint32_t>(raw.fields.size());
    // The loop below is the thread's work per field beside sd-journal's own: what it counts is
    // kept in locals (sd-journal's calls could change members, as far as the compiler knows),
    // and added once per entry.
    const size_t threshold = cfg_.data_threshold;
    const bool extras_empty = cfg_.extras.empty();
    uint64_t touched = 0;
    uint32_t truncated = 0, enumerated = 0;
    bool has_message = false;
    const size_t bytes_before = raw.bytes.size();
    auto enumerate = [&] {
      raw.fields.resize(e.first_field);
      raw.bytes.truncate(bytes_before);
      touched = truncated = enumerated = 0;
      has_message = false;
      const void *data;
      size_t len;
      int rc;
      sd_journal_restart_data(j_);
      // enumerate_available_data is enumerate_data in a loop that skips a field it cannot give
      // (compressed with an algorithm it lacks, corrupt): called only when one fails, it skips
      // that field and the entry goes on, at one call per field rather than two.
      while ((rc = sd_journal_enumerate_data(j_, &data, &len)) > 0 ||
             (rc < 0 && (rc = sd_journal_enumerate_available_data(j_, &data, &len)) > 0)) {
        touched += len;
        ++enumerated;
        if (len >= 8 && std::memcmp(data, "MESSAGE=", 8) == 0) has_message = true;
        const bool cut = threshold && len >= threshold;
        if (cut) [[unlikely]]
          len = threshold;  // as limited() cuts it
        // Only what the mapping takes crosses to the loop: the bytes of the other fields
        // (_CMDLINE, _SYSTEMD_CGROUP, ...) are neither copied nor handed over. With `fields:`
        // every field is copied: finding a field among them by name costs the reader more than
        // the copy it would save (bench_journald --all-fields), and the loop looks it up anyway.
        if (extras_empty &&
            !journald::mapped(std::string_view(static_cast<const char *>(data), len), extras_))
          continue;
        truncated += cut;
        raw.fields.push_back(RawBatch::Field{raw.bytes.append(data, len), len});
      }
      return rc;
    };
    r = enumerate();
    // A max_field_size under 9 cuts a compressed MESSAGE below its name: no telling then.
    if (!has_message && r >= 0 && cfg_.follow && (!threshold || threshold > 8)) {
      if (newest_entry()) {
        if (reread_tries_ < kRereads) {
          ++reread_tries_;
          raw.fields.resize(e.first_field);
          raw.bytes.truncate(bytes_before);
          return kIncomplete;
        }
      } else {
        r = enumerate();  // its writer has gone on to later entries: it is whole by now
      }
    }
    if (!has_message) add(m_no_message_, 1);
    reread_tries_ = 0;
    e.fields = static_cast<uint32_t>(raw.fields.size()) - e.first_field;
    realtime = e.realtime_usec;
    e.after_skipped = std::exchange(skipped_, false);
    // Laid out as an Identity's first kStampBytes.
    uint8_t stamp[kStampBytes];
    std::memcpy(stamp, boot.bytes, 16);
    std::memcpy(stamp + 16, &e.monotonic_usec, 8);
    std::memcpy(stamp + 24, &e.realtime_usec, 8);
    if (!stamp_known_ || std::memcmp(stamp, last_stamp_, kStampBytes) == 0) [[unlikely]] {
      // It may be alike to an entry before it: build needs its sequence number then, which
      // only its cursor tells.
      char *c = nullptr;
      if (sd_journal_get_cursor(j_, &c) >= 0) {
        e.cursor = static_cast<int32_t>(raw.cursors.size());
        raw.cursors.emplace_back(c);
        free(c);
      }
    }
    std::memcpy(last_stamp_, stamp, kStampBytes);
    stamp_known_ = true;

    bytes_since_open_ += touched + kFieldOverhead * enumerated;
    if (truncated) add(m_truncated_, truncated);
    raw.entries.push_back(e);
    return r < 0 ? r : 0;
  }

  // ---- records (the loop) ------------------------------------------------------------------

  // The records of the entries in raw, in a new batch. On an exception nothing changed: raw
  // can be built again.
  ReadBatch build(const RawBatch &raw) {
    BatchOwner owner(host_, host_->batch_new(inst_, static_cast<uint32_t>(raw.entries.size())));
    dm_batch *b = owner.get();
    if (!b) throw std::runtime_error("batch_new failed");
    const journald::AlikeRun before = run_;
    // Counted once the batch is made: a build that fails is made again from the same entries.
    build_same_stamp_ = build_errors_ = 0;
    try {
      batch_source_ = copy(b, "journald");
      std::fill(std::begin(interned_), std::end(interned_), dm_str{nullptr, 0});
      if (raw.has_run_start) {
        const journald::RunStart &start = raw.run_start;
        if (start.n)
          run_.restart(start.at, start.hashes, start.n);
        else
          run_.clear();
      }
      for (const RawEntry &e : raw.entries) build_entry(b, raw, e);
    } catch (...) {
      run_ = before;
      throw;
    }
    add(m_same_stamp_, build_same_stamp_);
    add(m_errors_, build_errors_);
    ReadBatch out;
    out.last = raw.last;
    out.batch = owner.release();
    return out;
  }

  // Turns one entry of raw into a record of b.
  void build_entry(dm_batch *b, const RawBatch &raw, const RawEntry &e) {
    if (e.after_skipped) run_.clear();
    // The lag's base until something is acknowledged.
    if (!first_read_usec_.load(std::memory_order_relaxed))
      first_read_usec_.store(e.realtime_usec, std::memory_order_relaxed);

    dm_record *rec = host_->batch_add(b);
    if (!rec) throw std::runtime_error("batch_add failed");
    rec->timestamp_ns = static_cast<int64_t>(e.realtime_usec) * 1000;
    rec->source = batch_source_;
    if (cfg_.has_host_override) rec->host = intern(b, cfg_.host_override);

    mapped_.clear();
    Identity id;
    std::memset(&id, 0, sizeof id);
    id_ = &id;
    id_block_ = nullptr;
    // The fields' bytes live as long as raw: the mapping's views stay valid for the whole
    // entry, and only what the record keeps is copied into the batch.
    for (uint32_t i = 0; i < e.fields; ++i) field(b, rec, raw.field(raw.fields[e.first_field + i]));
    id_ = nullptr;
    rec->priority = mapped_.priority;
    rec->level = mapped_.level;
    rec->service = intern(b, journald::service_of(mapped_));
    rec->message = mapped_.has_message ? str(mapped_.message) : dm_str{"", 0};
    if (!cfg_.has_host_override && mapped_.has_host) rec->host = str(mapped_.host);
    cap_columns(b, rec);

    std::memcpy(id.boot_id, e.boot_id, sizeof id.boot_id);
    id.monotonic_usec = e.monotonic_usec;
    id.realtime_usec = e.realtime_usec;
    if (id_block_) {  // the head goes in front of the message's copy: one hash of both
      journald::hash_block(host_->hash128, id_block_, id, rec->message.len, rec->event_id);
    } else {
      host_->hash128(&id, sizeof id, rec->event_id);
    }
    disambiguate(id, rec->event_id, e.cursor < 0 ? nullptr : &raw.cursors[e.cursor]);
  }

  // A unit name (up to 256 characters in systemd), an identifier or a host name longer than
  // the stores' 255-character columns would be refused downstream (by the store, or with a
  // 422 by the aggregator a sidecar forwards to): a journal entry cannot be refused, so the
  // field is cut at a character boundary, flagged in meta `truncated` and counted.
  void cap_columns(dm_batch *b, dm_record *rec) {
    constexpr size_t kColumnChars = 255;
    std::string_view cut_fields;
    for (auto [field, name] : {std::pair{&rec->service, std::string_view("service")},
                               std::pair{&rec->host, std::string_view("host")}}) {
      const size_t keep = utf8_prefix_bytes(sv(*field), kColumnChars);
      if (keep == field->len) continue;
      field->len = keep;
      cut_fields = cut_fields.empty() ? name : std::string_view("service,host");
    }
    if (cut_fields.empty()) return;
    add(m_cut_columns_, 1);
    static constexpr std::string_view kKey = "truncated";
    if (host_->meta_set(b, rec, str(kKey), str(cut_fields), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }

  // event_id holds the entry's base hash (identity and message). An entry whose base hash is
  // one of those of the kRecent entries read before it, all stamped as it is, gets its sequence
  // number hashed in: distinct ids for entries alike in everything else, the same ones on every
  // read (the same entries precede it; see remember_current for reads that start on a
  // delivered entry).
  void disambiguate(const Identity &id, uint8_t *event_id, const std::string *cursor) {
    if (!run_.add(id, event_id)) [[likely]]
      return;
    ++build_same_stamp_;
    if (!cursor) {
      build_error("getting the cursor of an entry alike to one before it");
      return;  // it keeps the base hash: it may be taken for its twin
    }
    if (!journald::add_seqnum(host_->hash128, *cursor, event_id, build_scratch_))
      build_error("finding s= and i= in the cursor of an entry alike to one before it");
  }

  // A problem of build (the loop's), counted with the read errors.
  void build_error(const char *what) {
    ++build_errors_;
    if (!build_error_logged_)
      host_->log(inst_, DM_LOG_WARN, "%s of %s (counted in journald_read_errors_total)", what,
                 cfg_.source.c_str());
    build_error_logged_ = true;
  }

  // A field as max_field_size lets it through. sd_journal_set_data_threshold cuts compressed
  // fields only; an uncompressed one comes back whole and is cut here, so the limit holds for
  // every field (and read_entry and base_of_current see the same bytes).
  std::string_view limited(const void *data, size_t len) const {
    if (cfg_.data_threshold && len > cfg_.data_threshold) len = cfg_.data_threshold;
    return std::string_view(static_cast<const char *>(data), len);
  }

  // The current entry's identity and base hash as read_entry computes them, without a record.
  bool base_of_current(Identity &id, uint8_t *hash) {
    uint64_t t = 0, mono = 0;
    sd_id128_t boot;
    if (sd_journal_get_realtime_usec(j_, &t) < 0 ||
        sd_journal_get_monotonic_usec(j_, &mono, &boot) < 0)
      return false;
    std::memset(&id, 0, sizeof id);
    probe_.clear();
    message_scratch_.clear();
    const void *data;
    size_t len;
    sd_journal_restart_data(j_);
    while (sd_journal_enumerate_available_data(j_, &data, &len) > 0) {
      const uint32_t set = journald::map_field(limited(data, len), journald::ExtraIndex{}, probe_);
      if (set & journald::kSetMessage) message_scratch_.assign(probe_.message);
      if (set & journald::kSetPid) set_pid(id, probe_.pid);
    }
    std::memcpy(id.boot_id, boot.bytes, sizeof id.boot_id);
    id.monotonic_usec = mono;
    id.realtime_usec = t;
    // The bytes read_entry hashes: the identity, then the message's copy when there is one.
    journald::base_hash(host_->hash128, id, message_scratch_, seq_scratch_, hash);
    return true;
  }

  // Positioned on an entry delivered before (a saved or the current position, the newest entry
  // at read_from tail): the comparisons of the entries read next need the base hashes of it and
  // of the kRecent - 1 entries before it stamped as it is, as if they had just been read. Off
  // the fast path: once per start, re-open or read error.
  void remember_current() {
    clear_run_start();
    Identity at, other;
    uint8_t hashes[kRecent][16];
    uint32_t n = 0;
    if (!base_of_current(at, hashes[kRecent - 1])) return;
    ++n;
    uint32_t moved = 0;
    while (n < kRecent && sd_journal_previous(j_) > 0) {
      ++moved;
      if (!base_of_current(other, hashes[kRecent - 1 - n]) ||
          std::memcmp(&other, &at, kStampBytes) != 0)
        break;
      ++n;
    }
    // Back onto the entry we were on (matches are not in place yet, or unchanged: the same
    // entries are stepped over both ways).
    for (uint32_t i = 0; i < moved; ++i)
      if (sd_journal_next(j_) <= 0) {
        host_->log(inst_, DM_LOG_ERROR, "could not step back onto the current entry");
        return;
      }
    run_start_.at = at;
    std::memcpy(run_start_.hashes, hashes + (kRecent - n), sizeof hashes[0] * n);
    run_start_.n = n;
  }

  // After a seek: the next entry read is compared with none (unless remember_current says
  // otherwise), and its cursor is taken.
  void clear_run_start() {
    run_start_.n = 0;
    run_start_pending_ = true;
    stamp_known_ = false;
  }

  // The message, copied into b behind room for the entry's Identity (see read_entry).
  std::string_view copy_message(dm_batch *b, std::string_view m) {
    auto *p = static_cast<char *>(host_->arena_alloc(b, sizeof(Identity) + m.size() + 1));
    if (!p) throw std::runtime_error("arena_alloc failed");
    id_block_ = p;
    p += sizeof(Identity);
    if (!m.empty()) std::memcpy(p, m.data(), m.size());
    p[m.size()] = '\0';
    return std::string_view(p, m.size());
  }

  // One "NAME=value" of the entry. What the record keeps of it is copied into the batch (the
  // raw batch it points into is reused once built).
  void field(dm_batch *b, dm_record *rec, std::string_view f) {
    const size_t meta_before = mapped_.meta.size();
    const uint32_t set = journald::map_field(f, extras_, mapped_);
    if (set & journald::kSetMessage) mapped_.message = copy_message(b, mapped_.message);
    if (set & journald::kSetHost && !cfg_.has_host_override)
      mapped_.host = view(intern(b, mapped_.host));
    if (set & journald::kSetPid) set_pid(*id_, mapped_.pid);
    // Meta values are copied by meta_set; the views left behind are not read again.
    for (size_t i = meta_before; i < mapped_.meta.size(); ++i)
      meta(b, rec, mapped_.meta[i].key, mapped_.meta[i].value);
  }

  static std::string_view view(dm_str s) { return std::string_view(s.ptr, s.len); }

  // Services and hosts repeat within a batch: each distinct one is copied into it once (a
  // small table per batch; a value that finds no free slot nearby is simply copied again).
  dm_str intern(dm_batch *b, std::string_view s) {
    if (s.empty()) return dm_str{"", 0};
    const size_t h = s.size() * 31 + static_cast<unsigned char>(s[0]) * 7 +
                     static_cast<unsigned char>(s[s.size() / 2]) * 13 +
                     static_cast<unsigned char>(s.back());
    for (size_t i = 0; i < 4; ++i) {
      dm_str &slot = interned_[(h + i) % std::size(interned_)];
      if (!slot.ptr) return slot = copy(b, s);
      if (slot.len == s.size() && std::memcmp(slot.ptr, s.data(), s.size()) == 0) return slot;
    }
    return copy(b, s);
  }

  dm_str copy(dm_batch *b, std::string_view s, bool keep_empty = false) {
    dm_str r = host_->arena_copy(b, s.data(), s.size());
    if (!s.empty() && !r.ptr) throw std::runtime_error("arena_copy failed");
    if (keep_empty && !r.ptr) r = dm_str{"", 0};
    return r;
  }

  void meta(dm_batch *b, dm_record *rec, std::string_view k, std::string_view v) {
    if (host_->meta_set(b, rec, str(k), str(v), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }

  // ---- checkpoints -------------------------------------------------------------------------

  std::string state_text() const {
    return journald::state_text(acked_.cursor, acked_.realtime_usec);
  }

  void update_lag() {
    const uint64_t base = acked_.realtime_usec ? acked_.realtime_usec
                                               : first_read_usec_.load(std::memory_order_relaxed);
    if (m_lag_ && base && newest_read_usec_ >= base)
      host_->metric_set(m_lag_, static_cast<double>(newest_read_usec_ - base) / 1e6);
  }

  void free_handles() {
    if (pump_timer_) host_->timer_free(pump_timer_);
    if (timeout_timer_) host_->timer_free(timeout_timer_);
    if (access_timer_) host_->timer_free(access_timer_);
    if (async_) host_->async_free(async_);
    unwatch();
    pump_timer_ = timeout_timer_ = access_timer_ = nullptr;
    async_ = nullptr;
  }

  void add(dm_metric *m, double v) {
    if (m && v != 0) host_->metric_add(m, v);
  }

  const dm_host_api *host_;
  dm_instance *inst_;

  ConfigProblems problems_;  // before cfg_: read_settings reports into it
  const journald::Settings cfg_;
  const journald::ExtraIndex extras_{cfg_.extras};

  // The journal: the reader thread's during a read run (busy_), else the loop's.
  sd_journal *j_ = nullptr;
  std::thread reader_;
  journald::Handoff handoff_{cfg_.batch};
  dm_async *async_ = nullptr;  // the thread's wake-up of the loop
  bool busy_ = false;          // a read run is asked for and has not ended (loop's view)
  bool end_reached_ = false;   // not following: the end was read; finished once submitted
  // The loop handles (loop thread only).
  dm_watch *watch_ = nullptr;
  int watch_fd_ = -1;          // watch_'s copy of the notification fd
  uint64_t watched_open_ = 0;  // the journal's opens_ when it was watched
  dm_timer *pump_timer_ = nullptr, *timeout_timer_ = nullptr;
  dm_timer *access_timer_ = nullptr;
  journald::JournalAccess access_;  // files to read, or why there are none (check_access)
  bool reopen_wanted_ = false;      // they appeared: sd-journal opens them on a re-open
  bool started_ = false, stopped_ = false, paused_ = false, finished_ = false;
  bool pump_scheduled_ = false;
  bool reopen_error_logged_ = false;

  // The reader's (the loop's between runs, when it re-opens): scratch space, reused, and
  // where reading is.
  bool error_logged_ = false;
  uint64_t bytes_since_open_ = 0;
  uint64_t opens_ = 0;  // of the journal, counted
  // The stamps of the last entry read (boot id, monotonic, realtime; unknown after a seek or
  // a skipped entry): an entry stamped as it is gets its cursor taken (see read_entry).
  uint8_t last_stamp_[kStampBytes] = {};
  bool stamp_known_ = false;
  bool skipped_ = false;       // the entry before the next one could not be read
  uint32_t reread_tries_ = 0;  // re-reads so far of the newest entry, read without MESSAGE
  static constexpr int kIncomplete = 1;  // read_entry: an entry to read again (kRereadMs)
  // A seek since the last batch read: it goes with the next one (see RunStart).
  journald::RunStart run_start_;
  bool run_start_pending_ = false;
  journald::MappedEntry probe_;  // base_of_current's mapping
  std::string message_scratch_;  // base_of_current's copy of the message
  std::string seq_scratch_;      // bytes hashed off the fast path

  // The loop's, making records (build): per entry and per batch scratch space, reused.
  ReadBatch built_;  // built and refused by submit (backpressure): submitted first
  dm_str batch_source_{};
  journald::MappedEntry mapped_;
  Identity *id_ = nullptr;    // the entry's identity while its fields are read
  char *id_block_ = nullptr;  // room for it in front of the message's copy
  dm_str interned_[64];
  // The run of entries stamped alike that the last one built ends (see disambiguate).
  journald::AlikeRun run_;
  std::string build_scratch_;  // bytes hashed for an alike entry
  bool build_error_logged_ = false;
  // What the batch being made counts (same-stamp entries, errors), added once it is made.
  uint64_t build_same_stamp_ = 0, build_errors_ = 0;

  Position last_read_;  // the newest entry read

  // Delivery tracking (loop thread only).
  Position acked_;
  AckLedger<Submitted> submitted_;
  uint64_t entries_read_ = 0, entries_acked_ = 0;
  uint64_t newest_read_usec_ = 0;
  std::atomic<uint64_t> first_read_usec_ = 0;  // set by the reader, the lag's base
  std::atomic<uint64_t> reader_cpu_ns_ = 0;    // set as the reader thread ends

  bool stored_acks_ = false;  // storage on: acks come as STORED then DONE

  // Checkpointing: a change for each acknowledged advance.
  Checkpointer checkpoints_{host_, inst_};

  dm_metric *m_rereads_ = nullptr, *m_no_message_ = nullptr;
  dm_metric *m_read_, *m_acked_, *m_lag_, *m_gaps_, *m_invalidations_, *m_refused_, *m_errors_,
      *m_build_retries_, *m_state_errors_, *m_state_fallbacks_, *m_truncated_, *m_cut_columns_,
      *m_reopens_, *m_same_stamp_, *m_failed_, *m_readable_, *m_no_files_, *m_no_permission_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Journald>::describe(
    DM_INPUT, "journald", "0.1.0",
    "reads the systemd journal (local, a directory or files) with sd-journal, follows it, and "
    "resumes after the newest delivered entry across restarts",
    devmesh::journald::options(), devmesh::journald::option_count(), DM_ACK_STAGES))
