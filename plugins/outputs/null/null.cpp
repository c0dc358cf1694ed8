// null output: counts and discards records; for tests it can fail its first N flushes with a
// chosen status, to exercise the engine's retry, dead-letter and split paths.
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>

namespace devmesh {
namespace {

const char *const kStatuses[] = {"retry", "error", "split", nullptr};

const dm_option kOptions[] = {
    {"fail_first", DM_OPT_INT, DM_OPT_BOUNDED, "0", 0, 1e9, nullptr,
     "fail this many first flush calls with fail_status and reason \"injected failure\"", 0},
    {"fail_status", DM_OPT_STRING, 0, "retry", 0, 0, kStatuses,
     "status of an injected failure: retry, error (dead-letter) or split", 0},
    {"retry_after", DM_OPT_DURATION, DM_OPT_BOUNDED, "0", 0, 86400000, nullptr,
     "retry_after of an injected failure; 0 lets the engine's backoff decide", 0},
};

// False for a status the schema would not allow (kStatuses).
bool parse_status(const std::string &s, dm_flush_status &status) {
  if (s == "retry") return status = DM_FLUSH_RETRY, true;
  if (s == "error") return status = DM_FLUSH_ERROR, true;
  if (s == "split") return status = DM_FLUSH_SPLIT, true;
  return false;
}

class Null {
 public:
  Null(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    Config c{host, cfg};
    fail_first_ = static_cast<uint64_t>(std::max<int64_t>(0, c.integer("fail_first")));
    ConfigProblems problems(host, inst);
    if (!parse_status(c.string("fail_status"), fail_status_))
      problems.add("fail_status",
                   "must be retry, error or split, not '" + c.string("fail_status") + "'");
    problems.refuse_if_any();
    retry_after_ms_ = static_cast<uint32_t>(
        std::clamp<int64_t>(c.integer("retry_after"), 0, std::numeric_limits<uint32_t>::max()));
    m_records_ = host->metric_counter(inst, "null_records_total", "records discarded", nullptr);
    m_batches_ = host->metric_counter(inst, "null_batches_total", "batches discarded", nullptr);
    m_injected_ = host->metric_counter(inst, "null_injected_failures_total",
                                       "flushes failed on purpose (fail_first)", nullptr);
  }

  // Tests read this line to check what reached the output.
  ~Null() {
    host_->log(inst_, DM_LOG_INFO, "discarded %llu records in %llu batches, %llu injected failures",
               static_cast<unsigned long long>(records_.load()),
               static_cast<unsigned long long>(batches_.load()),
               static_cast<unsigned long long>(injected_.load()));
  }

  dm_flush_status flush(void *, const dm_batch *batch, dm_flush_token *, dm_flush_result *res) {
    // Atomics: a host may flush one output from several threads.
    if (fail_first_ && calls_.fetch_add(1, std::memory_order_relaxed) < fail_first_) {
      injected_.fetch_add(1, std::memory_order_relaxed);
      add(m_injected_, 1);
      res->retry_after_ms = retry_after_ms_;
      std::snprintf(res->reason, sizeof res->reason, "injected failure");
      return fail_status_;
    }
    records_.fetch_add(batch->count, std::memory_order_relaxed);
    batches_.fetch_add(1, std::memory_order_relaxed);
    add(m_records_, batch->count);
    add(m_batches_, 1);
    return DM_FLUSH_OK;
  }

 private:
  void add(dm_metric *m, double v) {
    if (m) host_->metric_add(m, v);
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  uint64_t fail_first_ = 0;
  dm_flush_status fail_status_ = DM_FLUSH_RETRY;
  uint32_t retry_after_ms_ = 0;
  std::atomic<uint64_t> calls_{0}, records_{0}, batches_{0}, injected_{0};
  dm_metric *m_records_, *m_batches_, *m_injected_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Null>::describe(
    DM_OUTPUT, "null", "0.1.0", "counts and discards records; can inject failures for tests",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
