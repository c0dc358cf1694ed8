// stdout output: writes each record as one NDJSON line (the prototype's field names) to stdout,
// or appends to a file; one write per batch, on the engine's worker threads.
#include <devmesh/plugin.hpp>
#include <record_json.hpp>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devmesh {
namespace {

const dm_option kOptions[] = {
    {"path", DM_OPT_PATH, DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE, nullptr, 0, 0, nullptr,
     "append to this file (created if missing) instead of writing to stdout", 0},
};

// A buffer grown by one huge batch is given back rather than kept for the process lifetime.
constexpr size_t kKeepBufferBytes = 8u << 20;

// Per worker thread: the batch's text and the encoder's scratch space, reused across flushes.
using Scratch = RecordEncoder;

class Stdout {
 public:
  Stdout(const dm_host_api *host, dm_instance *inst, const dm_config *cfg) {
    Config c{host, cfg};
    if (c.has("path")) {
      path_ = c.string("path");
      // create() runs for --dry-run too, which must leave the machine as it was: an existing
      // file is opened (appending nothing), a missing one is only checked here and made by
      // start().
      fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      // A missing file (or directory) is the engine's: it checks that the directory can be
      // made (DM_OPT_MAKES_PARENT) and makes it before start().
      if (fd_ < 0 && errno != ENOENT) {
        ConfigProblems problems(host, inst);
        problems.add("path", "cannot open " + path_ + ": " + strerror(errno));
        problems.refuse_if_any();
      }
    } else {
      path_ = "stdout";
    }
    host_ = host;
    inst_ = inst;
  }

  ~Stdout() {
    if (fd_ >= 0 && fd_ != STDOUT_FILENO) ::close(fd_);
  }

  int start() {
    if (fd_ >= 0) return 0;
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ >= 0) return 0;
    host_->log(inst_, DM_LOG_ERROR, "cannot open %s: %s", path_.c_str(), strerror(errno));
    return 1;
  }

  int worker_init(uint32_t, void **ws) {
    *ws = new Scratch;
    return 0;
  }

  void worker_fini(void *ws) { delete static_cast<Scratch *>(ws); }

  dm_flush_status flush(void *ws, const dm_batch *batch, dm_flush_token *, dm_flush_result *res) {
    // Without worker_init (a host that flushes on one thread) the instance's scratch serves.
    std::unique_lock<std::mutex> fallback_lock;
    auto *s = static_cast<Scratch *>(ws);
    if (!s) {
      fallback_lock = std::unique_lock<std::mutex>(fallback_mu_);
      if (!fallback_) fallback_ = std::make_unique<Scratch>();
      s = fallback_.get();
    }
    s->out.Clear();
    for (uint32_t i = 0; i < batch->count; ++i) {
      s->record(batch->records[i]);
      s->out.Put('\n');
    }
    const int err = write_batch(s->out.GetString(), s->out.GetSize());
    if (s->out.GetSize() > kKeepBufferBytes) {
      s->out.Clear();
      s->out.ShrinkToFit();
    }
    if (err == 0) return DM_FLUSH_OK;
    std::snprintf(res->reason, sizeof res->reason, "write %s: %s", path_.c_str(), strerror(err));
    return DM_FLUSH_RETRY;
  }

 private:
  // One batch is written whole under the lock, so lines of concurrent workers never interleave.
  // A write that failed mid-line leaves a partial line: it is ended first, so the retried
  // batch (the engine re-sends it whole) starts on a line of its own.
  int write_batch(const char *p, size_t n) {
    std::lock_guard<std::mutex> lock(write_mu_);
    if (mid_line_) {
      size_t done = 0;
      if (int err = write_all("\n", 1, done)) return err;
      mid_line_ = false;
    }
    size_t done = 0;
    const int err = write_all(p, n, done);
    if (err) mid_line_ = done > 0 && p[done - 1] != '\n';
    return err;
  }

  // Writes all n bytes despite EINTR, partial writes and a non-blocking fd; 0 or an errno.
  int write_all(const char *p, size_t n, size_t &done) {
    while (done < n) {
      const ssize_t w = ::write(fd_, p + done, n - done);
      if (w > 0) {
        done += static_cast<size_t>(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        struct pollfd pfd = {fd_, POLLOUT, 0};
        if (::poll(&pfd, 1, -1) < 0 && errno != EINTR) return errno;
      } else {
        return w < 0 ? errno : EIO;
      }
    }
    return 0;
  }

  std::string path_;
  int fd_ = STDOUT_FILENO;
  const dm_host_api *host_ = nullptr;
  dm_instance *inst_ = nullptr;
  std::mutex write_mu_;
  bool mid_line_ = false;  // guarded by write_mu_
  std::mutex fallback_mu_;
  std::unique_ptr<Scratch> fallback_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Stdout>::describe(
    DM_OUTPUT, "stdout", "0.1.0",
    "writes records as NDJSON lines with the prototype's field names to stdout or a file",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions)), DM_FLUSH_ON_WORKER))
