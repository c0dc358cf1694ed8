// tail input: follows files matched by globs with inotify (no polling while idle), through
// rotation by rename and by truncation, picks up new files as they appear, and checkpoints per
// file the offset up to which every line was acknowledged (tail_state.hpp).
#include <devmesh/plugin.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <list>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ack_ledger.hpp"
#include "checkpointer.hpp"
#include "monotonic_ms.hpp"
#include "tail_config.hpp"
#include "tail_lines.hpp"
#include "tail_state.hpp"
#include "utf8.hpp"

namespace devmesh {
namespace {

constexpr uint64_t kRefusedRetryMs = 50;  // fallback when a refused submit brings no pause()
constexpr uint64_t kErrorRetryMs = 1000;
constexpr size_t kReadChunk = 256 * 1024;
// Bytes of a file's first line that identify it (with its inode): a truncated file (copytruncate)
// or a reused inode starts with another first line, so its lines get other event_ids and a saved
// offset is not applied to it.
constexpr size_t kFingerprintBytes = 256;
constexpr uint32_t kDirEvents = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR;
constexpr uint32_t kFileEvents = IN_MODIFY | IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF;

// True when every byte of s is below 0x80, eight at a time: most log lines are, and this check
// runs on every line.
bool all_ascii(std::string_view s) {
  const char *p = s.data();
  size_t n = s.size();
  uint64_t high = 0;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    high |= w;
  }
  for (; n; ++p, --n) high |= static_cast<unsigned char>(*p);
  return (high & 0x8080808080808080ull) == 0;
}

std::string hex8(const uint8_t *p) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 8; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// A file being followed (or closed and waiting for its last acknowledgements).
struct TailFile {
  std::string path;
  uint64_t dev = 0, ino = 0;
  int fd = -1;
  int wd = -1;
  bool fp_known = false;
  uint8_t fp[8] = {};
  tail::LineCursor at;     // where reading stands (pos, boundary, skipping)
  tail::Carry carry;       // read, not yet made into records (an incomplete line, or more)
  uint64_t acked = 0;      // every line before it acknowledged: what the state file says
  uint64_t epoch = 0;      // bumped at a truncation: acks of the old content move nothing
  uint32_t in_flight = 0;  // submitted batches not yet acknowledged
  bool dirty = true;       // may have unread bytes
  bool detached = false;   // renamed away or deleted: closed once idle for rotate_wait
  bool closed = false;     // fd released; the entry waits for its in-flight acks
  uint64_t last_change_ms = 0;
};

// A batch handed to the engine: what it moves once settled (AckLedger).
struct Submitted {
  TailFile *file;
  uint64_t epoch;
  uint64_t end;  // the file's boundary after the batch's last line
  uint32_t count;
};

class Tail {
 public:
  Tail(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    ConfigProblems problems(host, inst);
    tail::Settings cfg_s = tail::read_settings(host, cfg, problems);
    problems.refuse_if_any();
    patterns_ = std::move(cfg_s.patterns);
    excludes_ = std::move(cfg_s.excludes);
    from_tail_ = cfg_s.from_tail;
    follow_ = cfg_s.follow;
    has_service_ = cfg_s.has_service;
    service_ = std::move(cfg_s.service);
    host_name_ = std::move(cfg_s.host);
    rotate_wait_ms_ = cfg_s.rotate_wait_ms;
    max_line_ = cfg_s.max_line;
    batch_ = cfg_s.batch;

    auto counter = [&](const char *name, const char *help, const char *labels = nullptr) {
      return host->metric_counter(inst, name, help, labels);
    };
    m_lines_ = counter("tail_lines_read_total", "lines read and handed to the pipeline");
    m_bytes_ = counter("tail_bytes_read_total", "bytes read from the files followed");
    m_acked_ = counter("tail_lines_acknowledged_total",
                       "lines acknowledged (delivered or dead-lettered) in order");
    m_cut_ = counter("tail_lines_cut_total",
                     "lines longer than max_line_size, delivered cut to it (meta truncated)");
    m_skipped_ = counter("tail_bytes_skipped_total",
                         "bytes of cut lines past max_line_size, skipped up to their newline");
    m_empty_ = counter("tail_empty_lines_total", "empty lines, skipped (no record)");
    m_invalid_utf8_ = counter("tail_lines_invalid_utf8_total",
                              "lines with bytes that are not UTF-8, delivered with U+FFFD");
    m_wakeups_ = counter("tail_read_wakeups_total",
                         "times the input woke up to read (an inotify event about a followed or "
                         "matching file, or a pending batch): still while every file is idle");
    m_opened_ = counter("tail_files_opened_total", "files opened to follow");
    m_closed_ = counter("tail_files_closed_total",
                        "files closed after being renamed away or deleted (rotate_wait)");
    const char *rot =
        "rotations seen: a followed file renamed away (rename) or cut short "
        "(truncate, copytruncate: read again from its start)";
    m_rot_rename_ = counter("tail_rotations_total", rot, "kind=\"rename\"");
    m_rot_truncate_ = counter("tail_rotations_total", rot, "kind=\"truncate\"");
    m_refused_ =
        counter("tail_submits_refused_total", "batches refused by backpressure, kept and retried");
    m_errors_ = counter("tail_read_errors_total",
                        "errors opening, reading or watching a file (logged; retried at its "
                        "next change)");
    m_overflows_ = counter("tail_inotify_overflows_total",
                           "inotify queue overflows: every file and directory was looked at again");
    m_state_errors_ =
        counter("tail_state_write_errors_total", "state file writes that failed (retried)");
    if (!cfg_s.state_file.empty())
      checkpoints_.open(
          cfg_s.state_file, cfg_s.checkpoint_ms, [this] { return state_text(); }, m_state_errors_);
    m_failed_ = counter("tail_deliveries_failed_total",
                        "record deliveries an output refused for good and could not keep (lost, "
                        "logged)");
    m_resumed_ = counter("tail_files_resumed_total",
                         "files resumed at the offset the state file saved for them");
    m_open_ = host->metric_gauge(inst, "tail_files_open", "files open (followed)", nullptr);
  }

  ~Tail() {
    release();
    // The final checkpoint is written here, after the engine delivered the last acks.
    checkpoints_.finish(started_);
    host_->log(inst_, DM_LOG_INFO, "read %llu lines, %llu acknowledged",
               static_cast<unsigned long long>(lines_read_),
               static_cast<unsigned long long>(lines_acked_));
  }

  int start() {
    if (checkpoints_.enabled()) {
      std::error_code ec;
      std::filesystem::create_directories(checkpoints_.dir(), ec);
      if (ec) {
        host_->log(inst_, DM_LOG_ERROR, "state_file: cannot create directory %s: %s",
                   checkpoints_.dir().c_str(), ec.message().c_str());
        return 1;
      }
    }
    pump_timer_ = host_->timer_new(inst_, on_pump_timer, this);
    sweep_timer_ = host_->timer_new(inst_, on_sweep_timer, this);
    if (!pump_timer_ || !checkpoints_.start() || !sweep_timer_) {
      host_->log(inst_, DM_LOG_ERROR, "timer_new failed");
      return 1;
    }
    inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (inotify_fd_ < 0) {
      host_->log(inst_, DM_LOG_ERROR, "inotify_init1: %s", strerror(errno));
      return 1;
    }
    watch_ = host_->watch_new(inst_, inotify_fd_, on_inotify, this);
    if (!watch_ || host_->watch_set(watch_, DM_READABLE) != DM_OK) {
      host_->log(inst_, DM_LOG_ERROR, "cannot watch the inotify fd");
      return 1;
    }
    // Directories are watched before they are listed: a file created in between is seen twice
    // (opened once, by inode), never missed.
    for (tail::Pattern &p : patterns_) {
      p.wd = inotify_add_watch(inotify_fd_, p.dir.c_str(), kDirEvents);
      if (p.wd < 0) {
        host_->log(inst_, DM_LOG_ERROR, "watching directory %s: %s", p.dir.c_str(),
                   strerror(errno));
        return 1;
      }
    }
    tail::SavedState saved;
    if (checkpoints_.enabled()) {
      saved = tail::parse_state(checkpoints_.path());
      if (saved.newer) {
        host_->log(inst_, DM_LOG_ERROR,
                   "state_file %s is %s: refusing to start (a newer devmesh wrote it; move it "
                   "away to start over from read_from)",
                   checkpoints_.path().c_str(), saved.problem.c_str());
        return 1;
      }
      if (!saved.ok)
        host_->log(inst_, saved.problem == "missing" ? DM_LOG_INFO : DM_LOG_WARN,
                   "state_file %s is %s: files are read from their %s", checkpoints_.path().c_str(),
                   saved.problem.c_str(), from_tail_ ? "end (read_from tail)" : "head");
    }
    // read_from applies at a first start only: once a state file exists, a file it does not
    // know appeared while we were stopped, and its every line is new.
    const bool first_start = !saved.ok;
    for (tail::Pattern &p : patterns_) scan_directory(p, first_start && from_tail_, &saved);
    // Files the state file knows that no longer match: rotated away while we were stopped.
    // Each is looked for by inode beside where it was, and finished.
    if (saved.ok)
      for (const tail::SavedFile &s : saved.files) find_rotated(s);
    started_ = true;
    checkpoints_.changed();  // the files found (and their starting offsets) are saved at once
    checkpoints_.save();
    schedule_pump(0);
    return 0;
  }

  void stop() {
    stopped_ = true;
    // What is acknowledged by now is saved at once; later acks (the engine's grace period)
    // follow every checkpoint_interval and at destruction.
    checkpoints_.save_now();
    release();
  }

  void pause() {
    paused_ = true;
    if (pump_timer_) host_->timer_stop(pump_timer_);
    pump_scheduled_ = false;
    // inotify is still drained (files are only marked): its queue cannot overflow meanwhile.
  }

  void resume() {
    paused_ = false;
    schedule_pump(0);
    arm_sweep();
  }

  void on_ack(const dm_ack &ack) {
    // With storage the lines are replayable from disk once STORED: the checkpoint moves then.
    if (ack.stage == DM_ACK_STORED)
      stored_acks_ = true;
    else if (stored_acks_)
      return;
    // As journald: a record refused for good would be refused again after a re-read, so the
    // checkpoint moves past it; it is counted and logged loudly.
    if (ack.failed) {
      add(m_failed_, ack.failed);
      host_->log(inst_, DM_LOG_ERROR,
                 "%u record deliveries of ticket %llu failed permanently and were not kept: %s",
                 ack.failed, static_cast<unsigned long long>(ack.ticket),
                 ack.failed_reason ? ack.failed_reason : "no reason given");
    }
    const size_t settled = submitted_.acknowledged(ack.ticket, [&](Submitted &s) {
      lines_acked_ += s.count;
      add(m_acked_, s.count);
      if (s.epoch == s.file->epoch) s.file->acked = std::max(s.file->acked, s.end);
      --s.file->in_flight;
    });
    if (!settled) return;
    forget_closed();
    checkpoints_.changed();
    checkpoints_.save();
  }

 private:
  // ---- finding files -----------------------------------------------------------------------

  bool excluded(const std::string &path) const {
    for (const std::string &e : excludes_)
      if (fnmatch(e.c_str(), path.c_str(), 0) == 0) return true;
    return false;
  }

  // Our own state file in a watched directory would feed itself: every write a new line.
  bool own_state(const std::string &path) const {
    return checkpoints_.enabled() &&
           (path == checkpoints_.path() || checkpoints_.is_temporary(path));
  }

  static std::string join(const std::string &dir, std::string_view name) {
    return dir == "/" ? "/" + std::string(name) : dir + "/" + std::string(name);
  }

  void scan_directory(const tail::Pattern &p, bool at_end, const tail::SavedState *saved) {
    DIR *d = opendir(p.dir.c_str());
    if (!d) {
      read_error("listing directory " + p.dir, errno);
      return;
    }
    std::vector<std::string> names;
    while (dirent *e = readdir(d))
      if (e->d_name[0] != '.' || p.name[0] == '.')
        if (fnmatch(p.name.c_str(), e->d_name, FNM_PERIOD) == 0) names.emplace_back(e->d_name);
    closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string &n : names) consider(join(p.dir, n), at_end, saved);
  }

  // A path that matches a pattern: followed from now on (once per inode).
  void consider(const std::string &path, bool at_end, const tail::SavedState *saved) {
    if (excluded(path) || own_state(path)) return;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      if (errno != ENOENT) read_error("opening " + path, errno);
      return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      return;
    }
    if (TailFile *f = find(st.st_ino, st.st_dev)) {  // renamed within the matched names
      ::close(fd);
      f->path = path;
      f->detached = false;
      return;
    }
    open_file(fd, st, path, at_end ? static_cast<uint64_t>(st.st_size) : 0, saved);
  }

  TailFile *find(uint64_t ino, uint64_t dev) {
    for (TailFile &f : files_)
      if (!f.closed && f.ino == ino && f.dev == dev) return &f;
    return nullptr;
  }

  // Follows an open file from `offset`, or from the offset a saved entry with its inode and
  // fingerprint holds.
  TailFile *open_file(int fd, const struct stat &st, const std::string &path, uint64_t offset,
                      const tail::SavedState *saved) {
    TailFile &f = files_.emplace_back();
    f.path = path;
    f.dev = st.st_dev;
    f.ino = st.st_ino;
    f.fd = fd;
    f.last_change_ms = monotonic_ms();
    // The watch is on the open inode itself (inotify follows the /proc symlink): a rename of
    // the path between open() and here cannot make it watch another file.
    const std::string self = "/proc/self/fd/" + std::to_string(fd);
    f.wd = inotify_add_watch(inotify_fd_, self.c_str(), kFileEvents);
    if (f.wd < 0)
      read_error("watching " + path, errno);
    else
      wd_files_[f.wd] = &f;
    fingerprint(f, false);
    bool resumed = false;
    if (saved && saved->ok)
      for (const tail::SavedFile &s : saved->files) {
        if (s.inode != f.ino) continue;
        const bool same = s.fingerprint.empty() || (f.fp_known && s.fingerprint == hex8(f.fp));
        if (same && s.offset <= static_cast<uint64_t>(st.st_size)) {
          offset = s.offset;
          resumed = true;
          add(m_resumed_, 1);
        } else {
          add(m_rot_truncate_, 1);
          host_->log(inst_, DM_LOG_INFO,
                     "%s was cut short or replaced since its saved position: read from its start",
                     path.c_str());
          offset = 0;
        }
        break;
      }
    f.at.pos = f.at.boundary = f.acked = offset;
    if (offset && !resumed) {
      // read_from tail: lines start after the newest newline, not in the middle of one.
      f.at.pos = f.at.boundary = f.acked = start_after_last_newline(f, offset);
    }
    if (::lseek(fd, static_cast<off_t>(f.at.pos), SEEK_SET) < 0)
      read_error("seeking " + path, errno);
    add(m_opened_, 1);
    ++open_count_;
    host_->metric_set(m_open_, open_count_);
    host_->log(inst_, DM_LOG_INFO, "following %s from offset %llu%s", path.c_str(),
               static_cast<unsigned long long>(f.at.pos), resumed ? " (saved position)" : "");
    return &f;
  }

  // With read_from tail, an incomplete last line is part of what was there before: the
  // first line read is the one after it.
  uint64_t start_after_last_newline(TailFile &f, uint64_t end) {
    char buf[4096];
    uint64_t at = end;
    while (at > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(at, sizeof buf));
      const ssize_t r = ::pread(f.fd, buf, n, static_cast<off_t>(at - n));
      if (r != static_cast<ssize_t>(n)) return end;
      if (const void *nl = memrchr(buf, '\n', n))
        return at - n + static_cast<uint64_t>(static_cast<const char *>(nl) - buf) + 1;
      at -= n;
      if (end - at > max_line_) return end;
    }
    return 0;
  }

  // A file the state file knew that the patterns did not find: renamed away while we were
  // stopped (rotation). It is beside its old path, with the same inode and first line.
  void find_rotated(const tail::SavedFile &s) {
    for (const TailFile &f : files_)
      if (f.ino == s.inode) return;
    const size_t slash = s.path.rfind('/');
    const std::string dir = slash == std::string::npos ? "."
                            : slash == 0               ? "/"
                                                       : s.path.substr(0, slash);
    DIR *d = opendir(dir.c_str());
    std::string found;
    if (d) {
      while (dirent *e = readdir(d))
        if (e->d_ino == s.inode) found = join(dir, e->d_name);
      closedir(d);
    }
    if (found.empty()) {
      host_->log(inst_, DM_LOG_WARN,
                 "%s (inode %llu), followed before the restart, is gone: lines written to it "
                 "after offset %llu and not read then are lost",
                 s.path.c_str(), static_cast<unsigned long long>(s.inode),
                 static_cast<unsigned long long>(s.offset));
      return;
    }
    const int fd = ::open(found.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_ino != s.inode) {
      if (fd >= 0) ::close(fd);
      return;
    }
    tail::SavedState one;
    one.ok = true;
    one.files.push_back(s);
    TailFile *f = open_file(fd, st, found, 0, &one);
    if (f->at.pos == 0 && s.offset != 0) {  // not the same content: not ours to finish
      forget(*f);
      return;
    }
    f->detached = true;
    add(m_rot_rename_, 1);
    host_->log(inst_, DM_LOG_INFO, "%s is now %s (rotated away before this start): finishing it",
               s.path.c_str(), found.c_str());
    arm_sweep();
  }

  // The file's identity beside its inode: a hash of its first line (up to kFingerprintBytes),
  // known once the file has that much or a newline.
  // final: the file is closing with no newline at all: its few bytes are its first line.
  void fingerprint(TailFile &f, bool final) {
    char buf[kFingerprintBytes];
    const ssize_t n = ::pread(f.fd, buf, sizeof buf, 0);
    if (n <= 0) return;
    const void *nl = memchr(buf, '\n', static_cast<size_t>(n));
    size_t len = nl ? static_cast<size_t>(static_cast<const char *>(nl) - buf) : 0;
    if (!nl && static_cast<size_t>(n) < sizeof buf && !final) return;  // incomplete first line
    if (!nl) len = static_cast<size_t>(n);
    uint8_t h[16];
    host_->hash128(buf, len, h);
    std::memcpy(f.fp, h, sizeof f.fp);
    f.fp_known = true;
  }

  // ---- inotify -----------------------------------------------------------------------------

  static void on_inotify(void *arg, int) {
    auto *self = static_cast<Tail *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->drain_inotify(), 0; });
  }

  // Events of other files in a watched directory (the state file's writes, files the patterns
  // do not match) wake the loop but read nothing: only a relevant one counts and reads.
  void drain_inotify() {
    alignas(inotify_event) char buf[64 * 1024];
    bool overflow = false, relevant = false;
    for (;;) {
      const ssize_t n = ::read(inotify_fd_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      for (char *p = buf; p < buf + n;) {
        const auto *e = reinterpret_cast<const inotify_event *>(p);
        p += sizeof(inotify_event) + e->len;
        if (e->mask & IN_Q_OVERFLOW)
          overflow = true;
        else
          relevant |= handle(*e);
      }
    }
    if (overflow) {
      add(m_overflows_, 1);
      host_->log(inst_, DM_LOG_WARN, "inotify queue overflow: looking at every file again");
      for (tail::Pattern &p : patterns_) scan_directory(p, false, nullptr);
      for (TailFile &f : files_) {
        f.dirty = !f.closed;
        check_detached(f);
      }
    }
    if (!overflow && !relevant) return;
    add(m_wakeups_, 1);
    schedule_pump(0);
  }

  // True when the event concerns a followed file or a name a pattern matches.
  bool handle(const inotify_event &e) {
    if (auto it = wd_files_.find(e.wd); it != wd_files_.end()) {
      TailFile &f = *it->second;
      if (e.mask & IN_IGNORED) {
        wd_files_.erase(it);
        f.wd = -1;
        return false;
      }
      if (e.mask & IN_MODIFY) {
        f.dirty = true;
        f.last_change_ms = monotonic_ms();
      }
      if (e.mask & (IN_ATTRIB | IN_MOVE_SELF | IN_DELETE_SELF)) check_detached(f);
      return true;
    }
    bool relevant = false;
    for (tail::Pattern &p : patterns_) {
      if (p.wd != e.wd || !e.len) continue;
      const std::string_view name(e.name);
      if (fnmatch(p.name.c_str(), e.name, FNM_PERIOD) != 0) {
        // Renamed to a name the patterns do not match (app.log -> app.log.1): the file
        // followed at the old path, if any, is checked below through its own events.
        continue;
      }
      const std::string path = join(p.dir, name);
      if (excluded(path) || own_state(path)) continue;
      relevant = true;
      if (e.mask & (IN_CREATE | IN_MOVED_TO) && follow_) consider(path, false, nullptr);
      if (e.mask & (IN_MOVED_FROM | IN_DELETE))
        for (TailFile &f : files_)
          if (!f.closed && f.path == path) check_detached(f);
    }
    return relevant;
  }

  // A file is detached once no pattern's path leads to it any more (renamed away, deleted):
  // it is read to its end and closed after rotate_wait without growth.
  void check_detached(TailFile &f) {
    if (f.closed) return;
    struct stat st, own;
    bool here = ::stat(f.path.c_str(), &st) == 0 && st.st_ino == f.ino && st.st_dev == f.dev;
    if (here && fstat(f.fd, &own) == 0 && own.st_nlink == 0) here = false;
    if (here || f.detached) return;
    f.detached = true;
    f.dirty = true;
    f.last_change_ms = monotonic_ms();
    add(m_rot_rename_, 1);
    host_->log(inst_, DM_LOG_INFO, "%s was renamed away or deleted: reading it to its end",
               f.path.c_str());
    arm_sweep();
  }

  // Closes detached files idle for rotate_wait; re-arms for the next one. Runs only while some
  // file is detached: an input with none has no timer.
  void arm_sweep() {
    if (!sweep_timer_ || stopped_) return;
    uint64_t next = UINT64_MAX;
    for (const TailFile &f : files_)
      if (f.detached && !f.closed && !f.dirty)
        next = std::min(next, f.last_change_ms + rotate_wait_ms_);
    if (next == UINT64_MAX) return host_->timer_stop(sweep_timer_);
    const uint64_t now = monotonic_ms();
    host_->timer_start(sweep_timer_, next > now ? next - now : 0, 0);
  }

  static void on_sweep_timer(void *arg) {
    auto *self = static_cast<Tail *>(arg);
    guarded(self->host_, self->inst_, 0, [&] { return self->sweep(), 0; });
  }

  // Unread bytes come first: a dirty file is left to the pump, which re-arms the sweep once it
  // has read to the end. While paused nothing closes (resume re-arms).
  void sweep() {
    if (paused_ || stopped_) return;
    const uint64_t now = monotonic_ms();
    for (TailFile &f : files_)
      if (f.detached && !f.closed && !f.dirty && f.last_change_ms + rotate_wait_ms_ <= now)
        finish(f);
    forget_closed();
    arm_sweep();
  }

  // A detached file's end: its last line without a newline is delivered, then it is closed.
  void finish(TailFile &f, bool rotated = true) {
    if (!f.carry.empty() && !f.at.skipping) {
      BatchOwner owner(host_, host_->batch_new(inst_, 1));
      dm_batch *b = owner.get();
      if (!b) throw std::runtime_error("batch_new failed");
      start_batch(b, f);
      add_line(b, f, f.carry.view(), f.at.pos, false, host_->now_ns());
      const uint64_t end = f.at.pos + f.carry.size();
      const uint64_t boundary_before = f.at.boundary;
      f.at.boundary = end;
      if (b->count && !submit(owner, f)) {
        f.at.boundary = boundary_before;
        return;  // refused: tried again at the next sweep
      }
      f.at.pos = end;
      f.carry.clear();
    }
    close_file(f);
    if (!rotated) return;
    add(m_closed_, 1);
    host_->log(inst_, DM_LOG_INFO, "closed %s (rotated away or deleted, idle for rotate_wait)",
               f.path.c_str());
  }

  // follow: false, every file read to its end: their last lines go, then the input is done.
  void finish_all() {
    if (finished_) return;
    for (TailFile &f : files_)
      if (!f.closed) {
        finish(f, false);
        if (!f.closed) return schedule_pump(kRefusedRetryMs);  // refused: again shortly
      }
    finished_ = true;
    host_->log(inst_, DM_LOG_INFO, "read every file to its end (follow: false): %llu lines",
               static_cast<unsigned long long>(lines_read_));
    host_->input_finished(inst_);
  }

  void close_file(TailFile &f) {
    if (f.closed) return;
    if (f.wd >= 0 && inotify_fd_ >= 0) {
      inotify_rm_watch(inotify_fd_, f.wd);
      wd_files_.erase(f.wd);
    }
    f.wd = -1;
    if (f.fd >= 0) ::close(f.fd);
    f.fd = -1;
    f.closed = true;
    f.carry.release();
    --open_count_;
    host_->metric_set(m_open_, open_count_);
  }

  void forget(TailFile &f) {
    close_file(f);
    f.in_flight = 0;
    forget_closed();
  }

  // Closed files leave the state once their lines are all acknowledged.
  void forget_closed() {
    for (auto it = files_.begin(); it != files_.end();)
      if (it->closed && it->in_flight == 0 && !stopped_) {
        it = files_.erase(it);
        checkpoints_.changed();
      } else {
        ++it;
      }
  }

  // stop() and destruction: every descriptor and watch goes; the entries stay for the acks
  // and the final checkpoint.
  void release() {
    if (pump_timer_) host_->timer_free(pump_timer_);
    if (sweep_timer_) host_->timer_free(sweep_timer_);
    pump_timer_ = sweep_timer_ = nullptr;
    if (watch_) host_->watch_free(watch_);
    watch_ = nullptr;
    for (TailFile &f : files_)
      if (!f.closed) {
        if (f.fd >= 0) ::close(f.fd);
        f.fd = -1;
        f.wd = -1;
        f.closed = true;
        --open_count_;
      }
    wd_files_.clear();
    if (inotify_fd_ >= 0) ::close(inotify_fd_);
    inotify_fd_ = -1;
    if (m_open_) host_->metric_set(m_open_, open_count_);
  }

  // ---- reading -----------------------------------------------------------------------------

  bool can_run() const { return started_ && !stopped_ && !paused_; }

  void schedule_pump(uint64_t ms) {
    if (!can_run() || pump_scheduled_) return;
    pump_scheduled_ = true;
    host_->timer_start(pump_timer_, ms, 0);
  }

  static void on_pump_timer(void *arg) {
    auto *self = static_cast<Tail *>(arg);
    self->pump_scheduled_ = false;
    if (guarded(self->host_, self->inst_, 1, [&] { return self->pump(), 0; }))
      self->schedule_pump(kErrorRetryMs);
  }

  // One loop turn: one batch from one file (rotated-away files first: the old lines before the
  // new file's), then yield to the loop.
  void pump() {
    if (!can_run()) return;
    add(m_wakeups_, 1);
    TailFile *pick = nullptr;
    for (TailFile &f : files_)
      if (f.dirty && !f.closed && f.detached) {
        pick = &f;
        break;
      }
    if (!pick) {
      // Round robin over the files attached: a busy file does not starve the others.
      const size_t n = files_.size();
      auto it = files_.begin();
      std::advance(it, n ? rr_ % n : 0);
      for (size_t i = 0; i < n && !pick; ++i) {
        if (it->dirty && !it->closed) pick = &*it;
        if (++it == files_.end()) it = files_.begin();
      }
      ++rr_;
    }
    if (!pick) {
      if (!follow_) return finish_all();
      arm_sweep();  // a detached file just read to its end may close now
      return;
    }
    if (read_batch(*pick))
      schedule_pump(0);
    else
      schedule_pump(kRefusedRetryMs);
  }

  // Reads one batch from f and submits it. False when the engine refused it (retry later).
  bool read_batch(TailFile &f) {
    if (!f.fp_known) fingerprint(f, false);
    check_truncated(f);
    BatchOwner owner(host_, host_->batch_new(inst_, batch_));
    dm_batch *b = owner.get();
    if (!b) throw std::runtime_error("batch_new failed");
    start_batch(b, f);
    const uint64_t now = host_->now_ns();
    const uint64_t boundary_before = f.at.boundary, pos_before = f.at.pos;
    const bool skipping_before = f.at.skipping;
    bool at_end = false;
    // Parse what is carried first; read more only while the batch has room.
    while (parse(b, f, now)) {
      char *into = f.carry.space(kReadChunk);
      const ssize_t n = ::read(f.fd, into, kReadChunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) read_error("reading " + f.path, errno);
      if (n <= 0) {
        at_end = true;
        break;
      }
      f.carry.tail += static_cast<size_t>(n);
      add(m_bytes_, static_cast<double>(n));
    }
    if (at_end) f.dirty = false;
    if (b->count == 0) return true;
    if (submit(owner, f)) return true;
    // Refused: back to where the batch began; its bytes are read again from the file.
    f.at.pos = pos_before;
    f.at.boundary = boundary_before;
    f.at.skipping = skipping_before;
    f.carry.clear();
    if (::lseek(f.fd, static_cast<off_t>(f.at.pos), SEEK_SET) < 0)
      read_error("seeking " + f.path, errno);
    f.dirty = true;
    return false;
  }

  // copytruncate: the file is shorter than what we read of it, or starts with another first
  // line (cut and written again before we looked). Read again from its start, with a new
  // fingerprint: the new lines get their own event_ids.
  void check_truncated(TailFile &f) {
    struct stat st;
    if (fstat(f.fd, &st) != 0) return;
    const uint64_t had = f.at.pos + f.carry.size();
    const bool shorter = static_cast<uint64_t>(st.st_size) < had;
    if (!shorter && (!f.fp_known || same_first_line(f))) return;
    add(m_rot_truncate_, 1);
    host_->log(inst_, DM_LOG_INFO,
               "%s was truncated (%llu bytes now, %llu read%s): reading it again from its start",
               f.path.c_str(), static_cast<unsigned long long>(st.st_size),
               static_cast<unsigned long long>(had), shorter ? "" : ", another first line");
    ++f.epoch;
    f.at.pos = f.at.boundary = f.acked = 0;
    f.carry.clear();
    f.at.skipping = false;
    f.fp_known = false;
    if (::lseek(f.fd, 0, SEEK_SET) < 0) read_error("seeking " + f.path, errno);
    fingerprint(f, false);
    checkpoints_.changed();
  }

  // An appended file keeps its first line: one small pread per batch tells a rewrite.
  bool same_first_line(TailFile &f) {
    TailFile probe;
    probe.fd = f.fd;
    fingerprint(probe, false);
    probe.fd = -1;
    return probe.fp_known && std::memcmp(probe.fp, f.fp, sizeof f.fp) == 0;
  }

  // Makes records of f's carried bytes until the batch is full (false) or no complete line is
  // left (true; the rest stays carried).
  bool parse(dm_batch *b, TailFile &f, uint64_t now) {
    return tail::split_lines(
        f.carry, f.at, max_line_, [&] { return b->count < batch_; },
        [&](std::string_view line, uint64_t offset, bool cut) {
          add_line(b, f, line, offset, cut, now);
          if (cut) add(m_cut_, 1);
        },
        [&](size_t bytes) { add(m_skipped_, static_cast<double>(bytes)); });
  }

  void start_batch(dm_batch *b, TailFile &f) {
    source_ = copy(b, "tail");
    path_ = copy(b, f.path);
    if (has_service_) {
      service_str_ = copy(b, service_);
    } else {
      std::string_view name(f.path);
      if (const size_t slash = name.rfind('/'); slash != std::string_view::npos)
        name.remove_prefix(slash + 1);
      if (const size_t dot = name.find('.'); dot != std::string_view::npos && dot > 0)
        name = name.substr(0, dot);
      service_str_ = copy(b, utf8_prefix_bytes(name, 255) < name.size()
                                 ? name.substr(0, utf8_prefix_bytes(name, 255))
                                 : name);
    }
    host_str_ = copy(b, host_name_);
  }

  // One line of f starting at `offset`. Its event_id: the file's inode and fingerprint, the
  // offset and the line's bytes, so a line read again (after a crash, a reload) is the same
  // event, and a line of a truncated or replaced file is another.
  void add_line(dm_batch *b, TailFile &f, std::string_view line, uint64_t offset, bool cut,
                uint64_t now) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {
      add(m_empty_, 1);
      return;
    }
    // A complete line means a complete first line: the fingerprint is known from here on.
    if (!f.fp_known) fingerprint(f, true);
    dm_record *rec = host_->batch_add(b);
    if (!rec) throw std::runtime_error("batch_add failed");
    constexpr size_t kHead = 24;
    auto *p = static_cast<char *>(host_->arena_alloc(b, kHead + line.size()));
    if (!p) throw std::runtime_error("arena_alloc failed");
    std::memcpy(p, &f.ino, 8);
    std::memcpy(p + 8, f.fp, 8);
    std::memcpy(p + 16, &offset, 8);
    std::memcpy(p + kHead, line.data(), line.size());
    host_->hash128(p, kHead + line.size(), rec->event_id);
    std::string_view message(p + kHead, line.size());
    if (!all_ascii(message) && !utf8_valid_from(message, 0)) {
      const std::string_view clean = valid_utf8(message, utf8_scratch_);
      const dm_str c = copy(b, clean);
      message = std::string_view(c.ptr, c.len);
      add(m_invalid_utf8_, 1);
    }
    rec->timestamp_ns = static_cast<int64_t>(now);
    rec->source = source_;
    rec->service = service_str_;
    rec->host = host_str_;
    rec->message = str(message);
    static constexpr std::string_view kPath = "path", kTruncated = "truncated",
                                      kMessage = "message";
    if (host_->meta_set(b, rec, str(kPath), path_, DM_META_STRING) != DM_OK ||
        (cut && host_->meta_set(b, rec, str(kTruncated), str(kMessage), DM_META_STRING) != DM_OK))
      throw std::runtime_error("meta_set failed");
  }

  // Hands the batch to the engine; false when it is refused (backpressure) and still ours.
  bool submit(BatchOwner &owner, TailFile &f) {
    uint64_t ticket = 0;
    const uint32_t n = owner.get()->count;
    const int rc = host_->submit(inst_, owner.get(), &ticket);
    if (rc == DM_OK) {
      owner.release();
      lines_read_ += n;
      add(m_lines_, n);
      ++f.in_flight;
      submitted_.submitted(ticket, Submitted{&f, f.epoch, f.at.boundary, n});
      return true;
    }
    if (rc == DM_ERR_FULL) {
      add(m_refused_, 1);
      return false;
    }
    stopped_ = true;  // the engine is stopping: the lines are read again after a restart
    return false;
  }

  // ---- checkpoints -------------------------------------------------------------------------

  std::string state_text() const {
    std::vector<tail::SavedFile> out;
    for (const TailFile &f : files_) {
      tail::SavedFile s;
      s.path = f.path;
      s.dev = f.dev;
      s.inode = f.ino;
      s.fingerprint = f.fp_known ? hex8(f.fp) : "";
      s.offset = f.acked;
      out.push_back(std::move(s));
    }
    return tail::state_text(out);
  }

  // ---- small things ------------------------------------------------------------------------

  void read_error(const std::string &what, int err) {
    add(m_errors_, 1);
    host_->log(inst_, DM_LOG_WARN, "%s: %s (counted in tail_read_errors_total)", what.c_str(),
               strerror(err));
  }

  dm_str copy(dm_batch *b, std::string_view s) {
    if (s.empty()) return dm_str{"", 0};
    dm_str r = host_->arena_copy(b, s.data(), s.size());
    if (!r.ptr) throw std::runtime_error("arena_copy failed");
    return r;
  }

  void add(dm_metric *m, double v) {
    if (m && v != 0) host_->metric_add(m, v);
  }

  const dm_host_api *host_;
  dm_instance *inst_;

  // Configuration.
  std::vector<tail::Pattern> patterns_;
  std::vector<std::string> excludes_;
  bool from_tail_ = false, has_service_ = false, follow_ = true, finished_ = false;
  uint64_t rotate_wait_ms_ = 5000;
  size_t max_line_ = 65536;
  uint32_t batch_ = 1024;
  std::string service_, host_name_;

  // Files and loop handles (loop thread only). A std::list: Submitted and wd_files_ point into
  // it, and entries come and go.
  std::list<TailFile> files_;
  std::unordered_map<int, TailFile *> wd_files_;
  int inotify_fd_ = -1;
  dm_watch *watch_ = nullptr;
  dm_timer *pump_timer_ = nullptr, *sweep_timer_ = nullptr;
  bool started_ = false, stopped_ = false, paused_ = false, pump_scheduled_ = false;
  size_t rr_ = 0;
  double open_count_ = 0;

  // Per batch scratch.
  std::string scratch_, utf8_scratch_;
  dm_str source_{}, path_{}, service_str_{}, host_str_{};

  // Delivery tracking.
  AckLedger<Submitted> submitted_;
  uint64_t lines_read_ = 0, lines_acked_ = 0;

  bool stored_acks_ = false;

  // Checkpointing, as journald: a change for each acknowledged advance, file found or gone.
  Checkpointer checkpoints_{host_, inst_};

  dm_metric *m_lines_, *m_bytes_, *m_acked_, *m_cut_, *m_skipped_, *m_empty_, *m_invalid_utf8_,
      *m_wakeups_, *m_opened_, *m_closed_, *m_rot_rename_, *m_rot_truncate_, *m_refused_,
      *m_errors_, *m_overflows_, *m_state_errors_, *m_failed_, *m_resumed_, *m_open_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Tail>::describe(
    DM_INPUT, "tail", "0.1.0",
    "follows files matched by globs (inotify: no polling), through rotation by rename and by "
    "truncation, and resumes after the newest delivered line across restarts",
    devmesh::tail::options(), devmesh::tail::option_count(), DM_ACK_STAGES))
