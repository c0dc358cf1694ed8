// Test-only input that submits from threads of its own, as fast as it can: `records` records in
// batches of `batch`, split over `threads` threads, each record's meta "seq" its number. On
// DM_ERR_FULL a thread waits for resume() and retries the same batch. It keeps a ledger of every
// ticket submit gave it and every ack, written to `report` at destroy, so a test can check that
// each accepted ticket was acknowledged exactly once with all its records, and (with storage:
// it asks for DM_ACK_STORED too) that each got one STORED, never after its DONE. With `misuse` a
// thread calls that [loop] entry instead (the engine's thread checks must abort naming it).
#include <devmesh/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

const char *const kMisuse[] = {"none", "timer_new", "input_finished", "http_reply", nullptr};

const dm_option kOptions[] = {
    {"records", DM_OPT_INT, DM_OPT_BOUNDED, "1000", 0, 1e12, nullptr, "Records to submit in all",
     0},
    {"threads", DM_OPT_INT, DM_OPT_BOUNDED, "1", 1, 64, nullptr, "Threads submitting", 0},
    {"batch", DM_OPT_INT, DM_OPT_BOUNDED, "100", 1, 1e6, nullptr, "Records per submit", 0},
    {"report", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr,
     "File receiving the ticket ledger's summary at destroy", 0},
    {"submit_at_stop", DM_OPT_BOOL, 0, "false", 0, 0, nullptr,
     "At stop() each thread submits the batch in hand once more (the engine must refuse it)", 0},
    {"misuse", DM_OPT_STRING, 0, "none", 0, 0, kMisuse,
     "A [loop] host entry each thread calls instead of submitting", 0},
};

class Threaded {
 public:
  Threaded(const dm_host_api *h, dm_instance *inst, const dm_config *c) : host_(h), inst_(inst) {
    devmesh::Config cfg{h, c};
    records_ = static_cast<uint64_t>(cfg.integer("records"));
    threads_ = static_cast<uint32_t>(cfg.integer("threads"));
    batch_ = static_cast<uint32_t>(cfg.integer("batch"));
    if (cfg.has("report")) report_ = cfg.string("report");
    misuse_ = cfg.string("misuse");
    submit_at_stop_ = cfg.boolean("submit_at_stop");
    m_full_ =
        h->metric_counter(inst, "threaded_full_total", "submits refused with DM_ERR_FULL", nullptr);
    m_pauses_ = h->metric_counter(inst, "threaded_pauses_total", "pause() calls", nullptr);
    m_resumes_ = h->metric_counter(inst, "threaded_resumes_total", "resume() calls", nullptr);
  }

  int start() {
    done_ = host_->async_new(
        inst_, [](void *self) { static_cast<Threaded *>(self)->finished(); }, this);
    running_ = threads_;
    for (uint32_t t = 0; t < threads_; t++) workers_.emplace_back([this, t] { produce(t); });
    return 0;
  }

  // The engine's rule: a plugin's threads are joined in stop(); none submits after it.
  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto &w : workers_) w.join();
    workers_.clear();
    if (done_) host_->async_free(done_);
    done_ = nullptr;
  }

  void pause() {
    host_->metric_add(m_pauses_, 1);
    pauses_++;
  }
  void resume() {
    host_->metric_add(m_resumes_, 1);
    {
      std::lock_guard<std::mutex> lk(mu_);
      resume_gen_++;
    }
    cv_.notify_all();
  }

  void on_ack(const dm_ack &a) {
    std::lock_guard<std::mutex> lk(mu_);
    Ticket &t = ledger_[a.ticket];
    if (a.stage == DM_ACK_STORED) {
      t.stored++;
      if (t.acks) t.stored_after_done = true;
      return;
    }
    t.acks++;
    t.delivered += a.delivered;
    t.lost += a.dead_lettered + a.dropped + a.failed;
  }

  ~Threaded() {
    stop();
    if (report_.empty()) return;
    uint64_t accepted = 0, acked = 0, unacked = 0, unknown = 0, duplicate = 0, short_acks = 0;
    uint64_t submitted = 0, delivered = 0, lost = 0;
    uint64_t stored = 0, stored_twice = 0, stored_after_done = 0;
    bool increasing = true;  // each thread's tickets, in its submit order
    for (auto &[ticket, t] : ledger_) {
      if (t.records) accepted++;
      if (t.acks) acked++;
      if (t.records && !t.acks) unacked++;
      if (!t.records && t.acks) unknown++;
      if (t.acks > 1) duplicate++;
      if (t.records && t.acks && t.delivered + t.lost != t.records) short_acks++;
      submitted += t.records;
      delivered += t.delivered;
      lost += t.lost;
      if (t.stored) stored++;
      if (t.stored > 1) stored_twice++;
      if (t.stored_after_done) stored_after_done++;
      (void)ticket;
    }
    for (auto &tickets : per_thread_)
      for (size_t i = 1; i < tickets.size(); i++)
        if (tickets[i] <= tickets[i - 1]) increasing = false;
    FILE *f = fopen(report_.c_str(), "w");
    if (!f) return;
    fprintf(f,
            "accepted=%llu acked=%llu unacked=%llu unknown=%llu duplicate=%llu short=%llu "
            "records=%llu delivered=%llu lost=%llu refused=%llu full=%llu pauses=%llu "
            "in_order=%d stored=%llu stored_twice=%llu stored_after_done=%llu\n",
            ull(accepted), ull(acked), ull(unacked), ull(unknown), ull(duplicate), ull(short_acks),
            ull(submitted), ull(delivered), ull(lost), ull(refused_), ull(full_), ull(pauses_),
            increasing ? 1 : 0, ull(stored), ull(stored_twice), ull(stored_after_done));
    fclose(f);
  }

 private:
  struct Ticket {
    uint64_t records = 0;  // set by the submitting thread
    uint64_t acks = 0, delivered = 0, lost = 0;
    uint64_t stored = 0;  // DM_ACK_STORED acks (with storage)
    bool stored_after_done = false;
  };
  static unsigned long long ull(uint64_t v) { return static_cast<unsigned long long>(v); }

  void misuse() {
    if (misuse_ == "timer_new")
      host_->timer_new(
          inst_, [](void *) {}, nullptr);
    if (misuse_ == "input_finished") host_->input_finished(inst_);
    if (misuse_ == "http_reply") host_->http_reply(nullptr, 200, "text/plain", "", 0);
  }

  dm_batch *make_batch(uint64_t first, uint32_t n, uint32_t thread) {
    dm_batch *b = host_->batch_new(inst_, n);
    for (uint32_t k = 0; k < n; k++) {
      dm_record *r = host_->batch_add(b);
      r->timestamp_ns = static_cast<int64_t>(host_->now_ns());
      r->level = DM_LEVEL_INFO;
      const std::string msg =
          "thread " + std::to_string(thread) + " record " + std::to_string(first + k);
      r->message = host_->arena_copy(b, msg.data(), msg.size());
      const std::string seq = std::to_string(first + k);
      host_->meta_set(b, r, devmesh::str("seq"), devmesh::str(seq), DM_META_STRING);
    }
    return b;
  }

  void produce(uint32_t thread) {
    if (misuse_ != "none") return misuse();
    // Thread t submits records [from, to): the seqs of all threads cover 0..records-1 once.
    const uint64_t from = records_ * thread / threads_, to = records_ * (thread + 1) / threads_;
    for (uint64_t next = from; next < to;) {
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(batch_, to - next));
      dm_batch *b = make_batch(next, n, thread);
      for (;;) {
        uint64_t gen;
        bool last = false;
        {
          std::lock_guard<std::mutex> lk(mu_);
          if (stopping_ && !submit_at_stop_) return host_->batch_free(b);
          last = stopping_;
          gen = resume_gen_;  // read before submit: a resume() after it is not missed
        }
        uint64_t ticket = 0;
        const int rc = host_->submit(inst_, b, &ticket);
        if (rc == DM_OK) {
          std::lock_guard<std::mutex> lk(mu_);
          ledger_[ticket].records += n;
          per_thread_[thread].push_back(ticket);
          if (last) return;
          break;
        }
        if (rc != DM_ERR_FULL || last) {  // the engine stops: the batch is still ours
          std::lock_guard<std::mutex> lk(mu_);
          refused_ += n;
          host_->batch_free(b);
          return;
        }
        host_->metric_add(m_full_, 1);
        std::unique_lock<std::mutex> lk(mu_);
        full_++;
        cv_.wait(lk, [&] { return resume_gen_ != gen || stopping_; });
      }
      next += n;
    }
    if (--running_ == 0) host_->async_send(done_);
  }

  void finished() { host_->input_finished(inst_); }

  const dm_host_api *host_;
  dm_instance *inst_;
  uint64_t records_ = 0;
  uint32_t threads_ = 1, batch_ = 100;
  std::string report_, misuse_;
  bool submit_at_stop_ = false;
  dm_metric *m_full_, *m_pauses_, *m_resumes_;
  dm_async *done_ = nullptr;
  std::vector<std::thread> workers_;
  std::atomic<uint32_t> running_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  uint64_t resume_gen_ = 0;
  std::map<uint64_t, Ticket> ledger_;
  std::vector<std::vector<uint64_t>> per_thread_ = std::vector<std::vector<uint64_t>>(64);
  uint64_t refused_ = 0, full_ = 0, pauses_ = 0;  // pauses_: loop only
};

}  // namespace

DEVMESH_PLUGIN(devmesh::PluginAdapter<Threaded>::describe(DM_INPUT, "threaded", "1.0",
                                                          "Test input that submits from its own "
                                                          "threads",
                                                          kOptions,
                                                          sizeof kOptions / sizeof kOptions[0],
                                                          DM_ACK_STAGES))
