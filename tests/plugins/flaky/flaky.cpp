// Test-only output: appends "seq<TAB>message" lines to a file and fails on demand (the first N
// flushes, always, or on a poison record), optionally slowly, recording every attempt (in a file
// and in the counter devmesh_flaky_flushes_total) and the tag each flush was given.
#include <fcntl.h>
#include <time.h>
#include <unistd.h>
#include <devmesh/plugin.hpp>

#include <atomic>
#include <string>
#include <thread>

namespace {

const char *const kStatuses[] = {"retry", "error", "split", nullptr};

const dm_option kOptions[] = {
    {"path", DM_OPT_STRING, DM_OPT_REQUIRED, nullptr, 0, 0, nullptr, "File receiving the records",
     0},
    {"attempts_path", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "File receiving one line per flush attempt: monotonic ms, record count, status", 0},
    {"tags_path", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "File receiving, for every record delivered, the tag of its flush, a TAB and its message", 0},
    {"fail_first", DM_OPT_INT, DM_OPT_BOUNDED, "0", 0, 1e9, nullptr, "Fail this many flushes first",
     0},
    {"fail_always", DM_OPT_BOOL, 0, "false", 0, 0, nullptr, "Fail every flush", 0},
    {"fail_status", DM_OPT_STRING, 0, "retry", 0, 0, kStatuses, "How a failure is reported", 0},
    {"retry_after", DM_OPT_DURATION, 0, "0", 0, 0, nullptr, "retry_after reported with RETRY", 0},
    {"poison", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "A batch holding a record whose message contains this fails with fail_status", 0},
    {"delay", DM_OPT_DURATION, 0, "0", 0, 0, nullptr, "Sleep this long in every flush", 0},
    {"per_record", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "Poison records fail one by one (host flush_record_status with fail_status and the reason "
     "'poison record <seq>'); the flush writes the others and returns OK",
     0},
};

std::string seq_of(const dm_record &r) {
  for (uint32_t i = 0; i < r.meta_count; i++)
    if (devmesh::sv(r.meta[i].key) == "seq") return std::string(devmesh::sv(r.meta[i].value));
  return "-";
}

class Flaky {
 public:
  Flaky(const dm_host_api *h, dm_instance *inst, const dm_config *c) : host_(h) {
    devmesh::Config cfg{h, c};
    m_flushes_ = h->metric_counter(inst, "flaky_flushes_total",
                                   "flush calls, whatever their result", nullptr);
    per_record_ = cfg.boolean("per_record");
    path_ = cfg.string("path");
    if (cfg.has("attempts_path")) attempts_path_ = cfg.string("attempts_path");
    if (cfg.has("tags_path")) tags_path_ = cfg.string("tags_path");
    fail_first_ = cfg.integer("fail_first");
    fail_always_ = cfg.boolean("fail_always");
    std::string st = cfg.string("fail_status");
    status_ = st == "error" ? DM_FLUSH_ERROR : st == "split" ? DM_FLUSH_SPLIT : DM_FLUSH_RETRY;
    retry_after_ = static_cast<uint32_t>(cfg.integer("retry_after"));
    if (cfg.has("poison")) poison_ = cfg.string("poison");
    delay_ms_ = cfg.integer("delay");
  }

  dm_flush_status flush(void *, const dm_batch *b, dm_flush_token *token, dm_flush_result *res) {
    host_->metric_add(m_flushes_, 1);
    if (delay_ms_) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_));
    if (per_record_) return flush_per_record(b, token);
    bool fail = fail_always_ || calls_++ < fail_first_;
    if (!poison_.empty())
      for (uint32_t i = 0; i < b->count && !fail; i++)
        fail = devmesh::sv(b->records[i].message).find(poison_) != std::string_view::npos;
    record_attempt(b->count, fail);
    if (fail) {
      res->retry_after_ms = retry_after_;
      snprintf(res->reason, sizeof res->reason, "injected failure");
      return status_;
    }
    std::string out;
    for (uint32_t i = 0; i < b->count; i++) {
      out += seq_of(b->records[i]);
      out += '\t';
      out += devmesh::sv(b->records[i].message);
      out += '\n';
    }
    if (!append(path_, out)) return DM_FLUSH_RETRY;
    record_tags(b);
    return DM_FLUSH_OK;
  }

 private:
  dm_flush_status flush_per_record(const dm_batch *b, dm_flush_token *token) {
    std::string out;
    uint32_t bad = 0;
    for (uint32_t i = 0; i < b->count; i++) {
      const dm_record &r = b->records[i];
      if (!poison_.empty() && devmesh::sv(r.message).find(poison_) != std::string_view::npos) {
        host_->flush_record_status(token, i, status_, ("poison record " + seq_of(r)).c_str());
        bad++;
        continue;
      }
      out += seq_of(r) + '\t' + std::string(devmesh::sv(r.message)) + '\n';
    }
    record_attempt(b->count, bad != 0);
    return append(path_, out) ? DM_FLUSH_OK : DM_FLUSH_RETRY;
  }

  static bool append(const std::string &path, const std::string &text) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    close(fd);
    return ok;
  }
  void record_tags(const dm_batch *b) {
    if (tags_path_.empty()) return;
    std::string out;
    for (uint32_t i = 0; i < b->count; i++) {
      out += devmesh::sv(b->tag);
      out += '\t';
      out += devmesh::sv(b->records[i].message);
      out += '\n';
    }
    append(tags_path_, out);
  }
  void record_attempt(uint32_t n, bool failed) {
    if (attempts_path_.empty()) return;
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ms = ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
    append(attempts_path_,
           std::to_string(ms) + " " + std::to_string(n) + " " + (failed ? "fail" : "ok") + "\n");
  }

  const dm_host_api *host_;
  dm_metric *m_flushes_;
  bool per_record_ = false;
  std::string path_, attempts_path_, tags_path_, poison_;
  int64_t fail_first_ = 0, delay_ms_ = 0;
  bool fail_always_ = false;
  dm_flush_status status_ = DM_FLUSH_RETRY;
  uint32_t retry_after_ = 0;
  std::atomic<int64_t> calls_{0};
};

}  // namespace

DEVMESH_PLUGIN(devmesh::PluginAdapter<Flaky>::describe(DM_OUTPUT, "flaky", "1.0",
                                                       "Test output that fails on demand", kOptions,
                                                       sizeof kOptions / sizeof kOptions[0],
                                                       DM_FLUSH_ON_WORKER))
