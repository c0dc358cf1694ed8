// Segment files: appends, the group-commit storage thread, ack files, replay and deletion.
#include "storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include <devmesh/crash_point.hpp>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <unordered_map>

#include "log.h"
#include "state_paths.h"

namespace devmesh {

uint64_t monotonic_ns();

namespace {

bool write_all(int fd, const void *data, size_t len) {
  const auto *p = static_cast<const uint8_t *>(data);
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    len -= static_cast<size_t>(w);
  }
  return true;
}

bool pread_all(int fd, void *data, size_t len, uint64_t off) {
  auto *p = static_cast<uint8_t *>(data);
  while (len) {
    ssize_t r = pread(fd, p, len, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    len -= static_cast<size_t>(r);
    off += static_cast<uint64_t>(r);
  }
  return true;
}

std::string seg_name(uint64_t id, const char *ext) {
  char buf[40];
  snprintf(buf, sizeof buf, "seg-%016" PRIx64 ".%s", id, ext);
  return buf;
}

// seg-<16 hex>.<ext>: the id, or 0 for any other name.
uint64_t parse_seg_name(const char *name, const char *ext) {
  std::string want = std::string(".") + ext;
  size_t n = strlen(name);
  if (n != 4 + 16 + want.size() || strncmp(name, "seg-", 4) != 0 ||
      strcmp(name + 20, want.c_str()) != 0)
    return 0;
  uint64_t id = 0;
  for (int i = 4; i < 20; i++) {
    char c = name[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return 0;
    id = id * 16 + static_cast<uint64_t>(v);
  }
  return id;
}

}  // namespace

Storage::Storage(StorageOptions opts, MetricsRegistry &m) : opts_(std::move(opts)) {
  segment_size_ = opts_.segment_size;
  // Only sealed segments can be deleted: with a small max_size, several must fit under it.
  if (opts_.max_size) segment_size_ = std::min<uint64_t>(segment_size_, opts_.max_size / 4);
  segment_size_ = std::max<uint64_t>(segment_size_, 64 << 10);
  m_bytes_ = m.gauge("devmesh_storage_bytes", "Bytes of segment files on disk", "");
  m_segments_ = m.gauge("devmesh_storage_segments", "Segment files on disk", "");
  m_blocks_ = m.counter("devmesh_storage_blocks_written_total", "Blocks appended to segments", "");
  m_fsyncs_ = m.counter("devmesh_storage_fsyncs_total", "Group-commit fsyncs of segments", "");
  m_fsync_seconds_ = m.histogram("devmesh_storage_fsync_seconds", "Latency of a group commit", "",
                                 {0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5});
  m_replayed_blocks_ = m.counter("devmesh_storage_blocks_replayed_total",
                                 "Unfinished blocks found in segments at start", "");
  m_replayed_records_ = m.counter("devmesh_storage_records_replayed_total",
                                  "Records of unfinished blocks found in segments at start", "");
  m_corrupt_ = m.counter("devmesh_storage_corrupt_blocks_total",
                         "Corrupt stretches skipped in the middle of a segment", "");
  m_torn_ = m.counter("devmesh_storage_torn_tails_total",
                      "Segments whose torn tail was truncated at start", "");
  m_write_errors_ = m.counter("devmesh_storage_write_errors_total",
                              "Blocks that could not be written (kept in memory only)", "");
  m_fsync_errors_ =
      m.counter("devmesh_storage_fsync_errors_total",
                "Group commits whose fsync failed (EIO, ENOSPC on some filesystems)", "");
  m_read_errors_ = m.counter("devmesh_storage_read_errors_total",
                             "Blocks that could not be read back for an output", "");
}

Storage::~Storage() {
  if (thread_.joinable()) stop();
  for (auto &s : segments_) {
    if (s->rfd >= 0) close(s->rfd);
    if (s->acks_fd >= 0) close(s->acks_fd);
  }
  if (wfd_ >= 0) close(wfd_);
  if (dir_fd_ >= 0) close(dir_fd_);
}

uint64_t Storage::output_hash(const std::string &name) {
  return XXH3_64bits(name.data(), name.size());
}

bool Storage::open(std::string &error) {
  std::string problem, note;
  if (!prepare_directory(opts_.path, true, problem, note)) {  // mkdir -p on a fresh node
    error = "storage.path " + opts_.path + ": " + problem;
    return false;
  }
  dir_fd_ = ::open(opts_.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd_ < 0) {
    error = "storage.path " + opts_.path + ": " + strerror(errno);
    return false;
  }
  // One engine per directory: two would delete each other's segments.
  if (flock(dir_fd_, LOCK_EX | LOCK_NB) != 0) {
    error = "storage.path " + opts_.path + " is in use by another devmesh process";
    return false;
  }
  std::string probe = opts_.path + "/.write-test";
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    error = "storage.path " + opts_.path + " is not writable: " + strerror(errno);
    return false;
  }
  close(fd);
  unlink(probe.c_str());
  return true;
}

void Storage::replay(const std::function<bool(const ReplayBlock &)> &fn) {
  std::vector<uint64_t> ids;
  std::set<uint64_t> acks_ids;
  if (DIR *d = opendir(opts_.path.c_str())) {
    while (dirent *e = readdir(d)) {
      if (uint64_t id = parse_seg_name(e->d_name, "log")) ids.push_back(id);
      if (uint64_t id = parse_seg_name(e->d_name, "acks")) acks_ids.insert(id);
    }
    closedir(d);
  }
  std::sort(ids.begin(), ids.end());
  // Ack files whose segment is gone (a crash between the two unlinks) mean nothing.
  for (uint64_t id : acks_ids)
    if (!std::binary_search(ids.begin(), ids.end(), id))
      unlink((opts_.path + "/" + seg_name(id, "acks")).c_str());

  uint64_t segs = 0, blocks = 0, records = 0;
  for (uint64_t id : ids) {
    next_segment_ = std::max(next_segment_, id + 1);
    auto seg = std::make_unique<Segment>();
    seg->id = id;
    seg->path = opts_.path + "/" + seg_name(id, "log");
    seg->acks_path = opts_.path + "/" + seg_name(id, "acks");
    seg->sealed = true;
    int fd = ::open(seg->path.c_str(), O_RDWR | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) != 0) {
      log_msg(DM_LOG_ERROR, "storage", "cannot open %s: %s (left alone)", seg->path.c_str(),
              strerror(errno));
      if (fd >= 0) close(fd);
      continue;
    }
    seg->rfd = fd;
    const size_t size = static_cast<size_t>(st.st_size);
    ScanResult scan;
    void *map = nullptr;
    if (size > 0) {
      map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (map == MAP_FAILED) {
        log_msg(DM_LOG_ERROR, "storage", "cannot map %s: %s (left alone)", seg->path.c_str(),
                strerror(errno));
        close(fd);
        continue;
      }
      scan = scan_segment(static_cast<const uint8_t *>(map), size);
    }
    if (scan.corrupt) {
      m_corrupt_->add(scan.corrupt);
      log_msg(DM_LOG_WARN, "storage", "%s: skipped %u corrupt stretch(es) between valid blocks",
              seg->path.c_str(), scan.corrupt);
    }
    if (scan.torn_tail) {
      m_torn_->add(1);
      log_msg(DM_LOG_WARN, "storage", "%s: torn tail after byte %" PRIu64 " of %zu: truncated",
              seg->path.c_str(), scan.valid_end, size);
      if (ftruncate(fd, static_cast<off_t>(scan.valid_end)) != 0)
        log_msg(DM_LOG_ERROR, "storage", "cannot truncate %s: %s", seg->path.c_str(),
                strerror(errno));
    }
    seg->bytes = scan.valid_end;
    seg->blocks = scan.blocks.size();

    // The ack file: whole 16-byte entries {block id, output hash}; a torn last one is ignored.
    std::unordered_map<uint64_t, std::set<uint64_t>> acked;
    int afd = ::open(seg->acks_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (afd >= 0) {
      uint8_t buf[kAckEntrySize * 256];
      ssize_t got;
      size_t carry = 0;
      while ((got = read(afd, buf + carry, sizeof buf - carry)) > 0) {
        size_t have = carry + static_cast<size_t>(got), i = 0;
        for (; i + kAckEntrySize <= have; i += kAckEntrySize) {
          uint64_t b, h;
          memcpy(&b, buf + i, 8);
          memcpy(&h, buf + i + 8, 8);
          acked[b].insert(h);
        }
        carry = have - i;
        memmove(buf, buf + i, carry);
      }
      close(afd);
    }
    static const std::set<uint64_t> none;
    Segment *s = seg.get();
    segments_.push_back(std::move(seg));
    total_bytes_ += s->bytes;
    for (const BlockInfo &b : scan.blocks) {
      next_block_ = std::max(next_block_, b.id + 1);
      auto it = acked.find(b.id);
      ReplayBlock rb{s, b, it == acked.end() ? &none : &it->second};
      if (fn(rb)) {
        s->live_blocks++;
        blocks++;
        records += b.count;
      }
    }
    if (map) munmap(map, size);
    segs++;
    maybe_delete(s);
  }
  m_replayed_blocks_->add(static_cast<double>(blocks));
  m_replayed_records_->add(static_cast<double>(records));
  if (segs)
    log_msg(DM_LOG_INFO, "storage",
            "replay: %" PRIu64 " segment(s) found, %" PRIu64 " unfinished block(s) with %" PRIu64
            " record(s) queued for their outputs",
            segs, blocks, records);
  update_gauges();
}

void Storage::start(uv_loop_t *loop, std::function<void(uint64_t)> on_durable) {
  on_durable_ = std::move(on_durable);
  if (opts_.sync == SyncPolicy::Never) return;
  async_ = new uv_async_t;
  async_->data = this;
  uv_async_init(loop, async_, [](uv_async_t *a) {
    auto *self = static_cast<Storage *>(a->data);
    self->on_durable_(self->durable_.load());
  });
  thread_ = std::thread([this] { sync_main(); });
}

void Storage::sync_main() {
  uint64_t synced = 0;
  bool fsync_failing = false;
  std::unique_lock<std::mutex> lk(mu_);
  for (;;) {
    if (opts_.sync == SyncPolicy::Always)
      cv_.wait(lk, [&] { return stop_ || written_ > synced || !retired_fds_.empty(); });
    else
      cv_.wait_for(lk, std::chrono::milliseconds(opts_.sync_interval_ms), [&] { return stop_; });
    const bool stopping = stop_;
    const uint64_t target = written_;
    const int fd = sync_fd_;
    std::vector<int> retired = std::move(retired_fds_);
    retired_fds_.clear();
    const bool dir = dir_dirty_;
    dir_dirty_ = false;
    lk.unlock();
    std::vector<int> again;  // sealed segments whose fsync failed: kept open, tried again
    bool dir_again = false;
    if (target > synced || !retired.empty() || dir) {
      const uint64_t t0 = monotonic_ns();
      int failed = 0;
      for (int r : retired) {
        if (fdatasync(r) != 0) {
          failed = errno;
          again.push_back(r);
        } else {
          close(r);
        }
      }
      if (fd >= 0 && target > synced && fdatasync(fd) != 0) failed = errno;
      if (dir && fsync(dir_fd_) != 0) {
        failed = errno;
        dir_again = true;
      }
      // Never silent, and nothing is declared durable by a failed fsync: the next round tries
      // again. (A later success may still hide lost pages: Linux clears the error once.)
      if (failed) {
        m_fsync_errors_->add(1);
        if (!fsync_failing)
          log_msg(DM_LOG_ERROR, "storage",
                  "fsync of the segment files in %s failed: %s (STORED acks wait; retrying every "
                  "second, logged once until it works)",
                  opts_.path.c_str(), strerror(failed));
      } else if (fsync_failing) {
        log_msg(DM_LOG_INFO, "storage", "fsync works again in %s", opts_.path.c_str());
      }
      fsync_failing = failed != 0;
      m_fsyncs_->add(1);
      m_fsync_seconds_->observe((monotonic_ns() - t0) / 1e9);
      DM_CRASH_POINT("after_fsync");
      if (target > synced && !failed) {
        synced = target;
        durable_.store(target);
        uv_async_send(async_);
      }
    }
    lk.lock();
    retired_fds_.insert(retired_fds_.end(), again.begin(), again.end());
    dir_dirty_ = dir_dirty_ || dir_again;
    if (stopping) {
      for (int r : retired_fds_) close(r);
      retired_fds_.clear();
      break;
    }
    if (fsync_failing) cv_.wait_for(lk, std::chrono::seconds(1), [&] { return stop_; });
  }
}

void Storage::stop() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    // Durable now: the last notification may not have run on the loop.
    if (on_durable_ && durable_.load()) on_durable_(durable_.load());
  }
  if (async_) {
    uv_close(reinterpret_cast<uv_handle_t *>(async_),
             [](uv_handle_t *h) { delete reinterpret_cast<uv_async_t *>(h); });
    async_ = nullptr;
  }
  if (wfd_ >= 0) {
    if (opts_.sync != SyncPolicy::Never) fdatasync(wfd_);
    close(wfd_);
    wfd_ = -1;
  }
  // Whatever every output finished goes, the active segment too.
  if (active_) active_->sealed = true;
  active_ = nullptr;
  std::vector<Segment *> done;
  for (auto &s : segments_)
    if (s->live_blocks == 0) done.push_back(s.get());
  for (Segment *s : done) remove(s);
  update_gauges();
}

Segment *Storage::new_segment() {
  auto seg = std::make_unique<Segment>();
  seg->id = next_segment_++;
  seg->path = opts_.path + "/" + seg_name(seg->id, "log");
  seg->acks_path = opts_.path + "/" + seg_name(seg->id, "acks");
  int w = ::open(seg->path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
  if (w < 0) {
    log_msg(DM_LOG_ERROR, "storage", "cannot create %s: %s", seg->path.c_str(), strerror(errno));
    return nullptr;
  }
  seg->rfd = ::open(seg->path.c_str(), O_RDONLY | O_CLOEXEC);
  wfd_ = w;
  {
    std::lock_guard<std::mutex> lk(mu_);
    sync_fd_ = w;
    dir_dirty_ = true;
  }
  active_ = seg.get();
  segments_.push_back(std::move(seg));
  update_gauges();
  return active_;
}

void Storage::rotate() {
  if (!active_) return;
  Segment *old = active_;
  old->sealed = true;
  active_ = nullptr;
  if (opts_.sync == SyncPolicy::Never) {
    close(wfd_);
  } else {
    std::lock_guard<std::mutex> lk(mu_);
    retired_fds_.push_back(wfd_);  // the storage thread syncs and closes it
    sync_fd_ = -1;
  }
  cv_.notify_all();
  wfd_ = -1;
  maybe_delete(old);
}

Segment *Storage::append(uint64_t id, const std::vector<uint8_t> &block, uint64_t &offset) {
  if (active_ && active_->bytes > 0 && active_->bytes + block.size() > segment_size_) rotate();
  if (!active_ && !new_segment()) {
    last_error_ = errno ? errno : EIO;
    m_write_errors_->add(1);
    return nullptr;
  }
  if (!write_all(wfd_, block.data(), block.size())) {
    const int err = errno ? errno : ENOSPC;  // a zero-byte write means no room
    last_error_ = err;
    m_write_errors_->add(1);
    log_msg(DM_LOG_ERROR, "storage", "cannot append to %s: %s (the block stays in memory only)",
            active_->path.c_str(), strerror(err));
    // Never leave half a block behind: the next one must start at a clean boundary.
    if (ftruncate(wfd_, static_cast<off_t>(active_->bytes)) != 0) rotate();
    return nullptr;
  }
  last_error_ = 0;
  offset = active_->bytes;
  active_->bytes += block.size();
  active_->blocks++;
  active_->live_blocks++;
  total_bytes_ += block.size();
  m_blocks_->add(1);
  m_bytes_->set(static_cast<double>(total_bytes_));
  DM_CRASH_POINT("after_append");
  if (opts_.sync != SyncPolicy::Never) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      written_ = id;
    }
    if (opts_.sync == SyncPolicy::Always) cv_.notify_one();
  }
  return active_;
}

bool Storage::probe_write(uint64_t bytes) {
  const std::string path = opts_.path + "/.space-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) {
    last_error_ = errno;
    return false;
  }
  static const uint8_t zeros[64 << 10] = {};
  bool ok = true;
  for (uint64_t left = bytes; ok && left > 0;) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, sizeof zeros));
    errno = 0;
    ok = write_all(fd, zeros, n);
    left -= n;
  }
  // Written is not yet allocated everywhere (delayed allocation): make the filesystem commit.
  if (ok && fdatasync(fd) != 0) ok = false;
  const int err = errno ? errno : ENOSPC;
  close(fd);
  unlink(path.c_str());
  last_error_ = ok ? 0 : err;
  return ok;
}

bool Storage::read_block(Segment *seg, uint64_t offset, uint32_t length,
                         std::vector<uint8_t> &buf) {
  buf.resize(length);
  if (seg->rfd < 0 || !pread_all(seg->rfd, buf.data(), length, offset)) {
    m_read_errors_->add(1);
    log_msg(DM_LOG_ERROR, "storage",
            "cannot read a block of %" PRIu32 " bytes at %" PRIu64 " of %s: %s", length, offset,
            seg->path.c_str(), errno ? strerror(errno) : "short file");
    return false;
  }
  return true;
}

void Storage::ack(Segment *seg, uint64_t block_id, uint64_t output_hash) {
  if (seg->removed) return;
  if (seg->acks_fd < 0) {
    seg->acks_fd = ::open(seg->acks_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (seg->acks_fd < 0) return;  // only costs a duplicate after a crash
  }
  uint8_t entry[kAckEntrySize];
  memcpy(entry, &block_id, 8);
  memcpy(entry + 8, &output_hash, 8);
  if (!write_all(seg->acks_fd, entry, sizeof entry)) {
    // Costs a duplicate after a crash only; on a full disk it fails for every block: say it once.
    if (!ack_failing_)
      log_msg(DM_LOG_WARN, "storage", "cannot write %s: %s (logged once until a write succeeds)",
              seg->acks_path.c_str(), strerror(errno));
    ack_failing_ = true;
  } else {
    ack_failing_ = false;
  }
}

void Storage::block_done(Segment *seg) {
  if (seg->live_blocks) seg->live_blocks--;
  if (seg->removed) {
    if (seg->live_blocks == 0)
      std::erase_if(graveyard_,
                    [seg](const std::unique_ptr<Segment> &p) { return p.get() == seg; });
    return;
  }
  maybe_delete(seg);
}

void Storage::maybe_delete(Segment *seg) {
  if (seg->sealed && seg->live_blocks == 0) remove(seg);
}

Segment *Storage::oldest_sealed() {
  for (auto &s : segments_)
    if (s->sealed) return s.get();
  return nullptr;
}

void Storage::drop_id(uint64_t segment_id) {
  for (auto &s : segments_)
    if (s->id == segment_id) return remove(s.get());
}

void Storage::remove(Segment *seg) {
  if (seg->rfd >= 0) close(seg->rfd);
  if (seg->acks_fd >= 0) close(seg->acks_fd);
  seg->rfd = seg->acks_fd = -1;
  if (unlink(seg->path.c_str()) != 0 && errno != ENOENT)
    log_msg(DM_LOG_WARN, "storage", "cannot delete %s: %s", seg->path.c_str(), strerror(errno));
  DM_CRASH_POINT("during_segment_delete");
  unlink(seg->acks_path.c_str());
  total_bytes_ -= std::min(total_bytes_, seg->bytes);
  auto it = std::find_if(segments_.begin(), segments_.end(),
                         [seg](const std::unique_ptr<Segment> &p) { return p.get() == seg; });
  seg->removed = true;
  if (it != segments_.end()) {
    if (seg->live_blocks) graveyard_.push_back(std::move(*it));
    segments_.erase(it);
  }
  update_gauges();
}

void Storage::update_gauges() {
  m_bytes_->set(static_cast<double>(total_bytes_));
  m_segments_->set(static_cast<double>(segments_.size()));
}

}  // namespace devmesh
