// Template embeddings (query_embed.h): the queue, the thread, the vectors file.
#include "query_embed.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include <devmesh/plugin.hpp>
#include <monotonic_ms.hpp>

namespace devmesh::query {

namespace {

constexpr ModelOutcome kOutcomes[] = {ModelOutcome::kOk,          ModelOutcome::kTimeout,
                                      ModelOutcome::kDown,        ModelOutcome::kError,
                                      ModelOutcome::kBadResponse, ModelOutcome::kStopped};

double norm_of(const std::vector<float> &v) {
  double n = 0;
  for (float x : v) n += static_cast<double>(x) * x;
  return std::sqrt(n);
}

}  // namespace

ModelMetrics::ModelMetrics(const dm_host_api *host, dm_instance *inst) : host_(host) {
  const char *apis[] = {"embeddings", "chat"};
  for (int a = 0; a < 2; ++a)
    for (int o = 0; o < 6; ++o) {
      const std::string labels =
          std::string("api=\"") + apis[a] + "\",outcome=\"" + outcome_name(kOutcomes[o]) + "\"";
      m_[a][o] =
          host->metric_counter(inst, "query_model_requests_total",
                               "calls to the model server by API and outcome", labels.c_str());
    }
}

void ModelMetrics::count(const char *api, ModelOutcome o) {
  const int a = std::strcmp(api, "chat") == 0 ? 1 : 0;
  host_->metric_add(m_[a][static_cast<int>(o)], 1);
}

Embedder::Embedder(const dm_host_api *host, dm_instance *inst, const ModelClient &client,
                   ModelMetrics &metrics, Settings s)
    : host_(host),
      client_(client),
      metrics_(metrics),
      s_(std::move(s)),
      file_(s_.vectors_path),
      inst_(inst) {
  m_dropped_ = host->metric_counter(inst, "query_embed_dropped_total",
                                    "templates not embedded: the queue was full", nullptr);
  m_embedded_ =
      host->metric_counter(inst, "query_embed_templates_total", "templates embedded", nullptr);
  m_vectors_ = host->metric_gauge(inst, "query_embed_vectors", "template vectors held", nullptr);
  m_queued_ =
      host->metric_gauge(inst, "query_embed_queued", "templates waiting to be embedded", nullptr);
  m_save_failed_ = host->metric_counter(inst, "query_embed_writes_failed_total",
                                        "failed writes of vectors_path", nullptr);
  m_torn_ = host->metric_counter(inst, "query_embed_torn_bytes_total",
                                 "bytes of a torn last record cut from vectors_path at start "
                                 "(a crash during an append; its templates are embedded again)",
                                 nullptr);
  m_vectors_dropped_ = host->metric_counter(
      inst, "query_embed_vectors_dropped_total",
      "template vectors dropped: the store no longer has their template (retention)", nullptr);
  m_compactions_ = host->metric_counter(
      inst, "query_embed_compactions_total",
      "rewrites of vectors_path leaving out dropped and replaced vectors", nullptr);
  m_refresh_failed_ = host->metric_counter(
      inst, "query_embed_refresh_failed_total",
      "failed reads of the store's template list (nothing is dropped then)", nullptr);
}

Embedder::~Embedder() {
  stop();
}

bool Embedder::load(std::string &error) {
  if (!file_.read(loaded_, error)) return false;
  if (!loaded_.found) return true;
  const std::string &model = client_.settings().model;
  if (model != loaded_.model) {
    host_->log(inst_, DM_LOG_INFO, "%s: vectors of model '%s' dropped (now '%s')",
               s_.vectors_path.c_str(), loaded_.model.c_str(), model.c_str());
    return true;
  }
  std::lock_guard<std::mutex> l(mu_);
  const uint64_t now = monotonic_ms();
  for (StoredVector &v : loaded_.vectors) {
    Entry e;
    static_cast<StoredVector &>(e) = std::move(v);
    e.norm = norm_of(e.vector);
    e.added_ms = now;
    if (e.norm > 0)
      vectors_[e.id] = std::make_shared<const Entry>(std::move(e));
    else
      vectors_.erase(e.id);
  }
  loaded_.vectors.clear();  // held in vectors_ now; the file's figures stay for adopt()
  host_->metric_set(m_vectors_, static_cast<double>(vectors_.size()));
  return true;
}

bool Embedder::save(const std::vector<uint64_t> &added, std::string &error) {
  // The entries are immutable: the pointers taken here stay valid while the file is written.
  const auto all_entries = snapshot();
  std::vector<std::shared_ptr<const Entry>> added_entries;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (uint64_t id : added) {
      auto it = vectors_.find(id);
      if (it != vectors_.end()) added_entries.push_back(it->second);
    }
  }
  std::vector<const StoredVector *> all, fresh;
  for (const auto &[id, e] : all_entries) all.push_back(e.get());
  for (const auto &e : added_entries) fresh.push_back(e.get());
  const int err = file_.write(client_.settings().model, fresh, all);
  if (err == 0) return true;
  error = s_.vectors_path + ": " + std::strerror(err);
  return false;
}

void Embedder::enqueue_locked(uint64_t id, std::string_view service, std::string_view tpl) {
  auto have = vectors_.find(id);
  if (have != vectors_.end() && have->second->template_text == tpl) return;
  auto q = queued_.find(id);
  if (q != queued_.end()) {
    q->second.template_text = tpl;  // changed again before it was sent: send the newest
    return;
  }
  if (order_.size() >= s_.queue_max) {
    host_->metric_add(m_dropped_, 1);
    return;
  }
  order_.push_back(id);
  queued_.emplace(id, Pending{std::string(service), std::string(tpl)});
}

void Embedder::offer(const dm_batch &batch) {
  bool added = false;
  std::unique_lock<std::mutex> l(mu_, std::defer_lock);
  for (uint32_t i = 0; i < batch.count; ++i) {
    const dm_record &r = batch.records[i];
    std::string_view id_hex, tpl;
    for (uint32_t k = 0; k < r.meta_count; ++k) {
      const std::string_view key = sv(r.meta[k].key);
      if (key == "pattern") tpl = sv(r.meta[k].value);
      if (key == "pattern_id") id_hex = sv(r.meta[k].value);
    }
    if (tpl.empty()) continue;  // most records: the template did not change
    const auto id = parse_pattern_id(id_hex);
    if (!id) continue;
    if (!l.owns_lock()) l.lock();
    enqueue_locked(*id, sv(r.service), tpl);
    added = true;
  }
  if (added) {
    host_->metric_set(m_queued_, static_cast<double>(order_.size()));
    l.unlock();
    wake_.notify_one();
  }
}

void Embedder::start(QueryStore *store) {
  store_ = store;
  thread_ = std::thread([this] { run(); });
}

void Embedder::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Embedder::run() {
  // The file's directory, made here rather than at load: a --dry-run must leave no trace.
  std::error_code ec;
  std::filesystem::create_directories(file_.dir(), ec);
  file_.adopt(loaded_, client_.settings().model);
  if (loaded_.torn_bytes > 0 && loaded_.model == client_.settings().model) {
    // What load() saw may have been another instance's append under way (a reload): what is
    // torn once the file is locked is what counts.
    uint64_t at = 0, torn = 0;
    const int err = file_.cut_torn_tail(at, torn);
    if (err != 0) {
      at = loaded_.good_bytes;
      torn = loaded_.torn_bytes;
    }
    if (torn > 0) {
      host_->metric_add(m_torn_, static_cast<double>(torn));
      host_->log(
          inst_, DM_LOG_WARN,
          "embeddings: %s: a torn record at byte %llu (%llu bytes, a crash during a "
          "write) %s; its templates are embedded again",
          s_.vectors_path.c_str(), static_cast<unsigned long long>(at),
          static_cast<unsigned long long>(torn),
          err ? (std::string("not cut (") + std::strerror(err) + "): the file is rewritten").c_str()
              : "cut");
    }
  }
  // The stored templates without a vector: embedded once, whatever restarted.
  if (store_) {
    std::vector<PatternSummary> all;
    StoreError err;
    if (store_->templates(TemplatesQuery{}, all, err)) {
      std::lock_guard<std::mutex> l(mu_);
      for (const PatternSummary &p : all)
        if (p.has_template) enqueue_locked(p.id, p.service, p.template_text);
      host_->metric_set(m_queued_, static_cast<double>(order_.size()));
    } else {
      host_->log(inst_, DM_LOG_WARN, "embeddings: cannot read the stored templates: %s",
                 err.message.c_str());
    }
  }
  int failures = 0;
  const auto refresh_every = std::chrono::milliseconds(s_.refresh_ms);
  auto next_refresh = std::chrono::steady_clock::now() + refresh_every;
  for (;;) {
    if (store_ && std::chrono::steady_clock::now() >= next_refresh) {
      refresh();
      next_refresh = std::chrono::steady_clock::now() + refresh_every;
    }
    std::vector<uint64_t> ids;
    std::vector<Pending> items;
    {
      std::unique_lock<std::mutex> l(mu_);
      const auto ready = [this] { return stopping_ || !order_.empty(); };
      // Without a store there is nothing to refresh: the wait has no deadline then.
      if (store_)
        wake_.wait_until(l, next_refresh, ready);
      else
        wake_.wait(l, ready);
      if (stopping_) return;
      if (order_.empty()) continue;  // time to refresh
      while (!order_.empty() && ids.size() < s_.batch) {
        const uint64_t id = order_.front();
        order_.pop_front();
        auto it = queued_.find(id);
        ids.push_back(id);
        items.push_back(std::move(it->second));
        queued_.erase(it);
      }
      host_->metric_set(m_queued_, static_cast<double>(order_.size()));
    }
    std::vector<std::string> inputs;
    for (const Pending &p : items) inputs.push_back(p.template_text);
    std::vector<std::vector<float>> vectors;
    std::string why;
    const ModelOutcome o = client_.embed(inputs, vectors, why);
    metrics_.count("embeddings", o);
    if (o == ModelOutcome::kStopped) return;
    if (o != ModelOutcome::kOk) {
      if (failures++ == 0) host_->log(inst_, DM_LOG_WARN, "embeddings: %s", why.c_str());
      std::unique_lock<std::mutex> l(mu_);
      // Back in the queue (newer changes of the same ids win), then a pause that grows with
      // each failure in a row, so a server that is down is not hammered.
      for (size_t i = ids.size(); i-- > 0;) {
        if (queued_.count(ids[i])) continue;
        if (order_.size() >= s_.queue_max) {
          host_->metric_add(m_dropped_, 1);
          continue;
        }
        order_.push_front(ids[i]);
        queued_.emplace(ids[i], std::move(items[i]));
      }
      host_->metric_set(m_queued_, static_cast<double>(order_.size()));
      const auto pause = std::chrono::milliseconds(std::min(30000, 250 << std::min(failures, 7)));
      wake_.wait_for(l, pause, [this] { return stopping_.load(); });
      if (stopping_) return;
      continue;
    }
    if (failures) host_->log(inst_, DM_LOG_INFO, "embeddings: the model server answers again");
    failures = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (size_t i = 0; i < ids.size(); ++i) {
        Entry e;
        e.id = ids[i];
        e.service = std::move(items[i].service);
        e.template_text = std::move(items[i].template_text);
        e.vector = std::move(vectors[i]);
        e.norm = norm_of(e.vector);
        e.added_ms = monotonic_ms();
        vectors_[ids[i]] = std::make_shared<const Entry>(std::move(e));
      }
      host_->metric_set(m_vectors_, static_cast<double>(vectors_.size()));
    }
    host_->metric_add(m_embedded_, static_cast<double>(ids.size()));
    std::string error;
    if (!save(ids, error)) {
      host_->metric_add(m_save_failed_, 1);
      host_->log(inst_, DM_LOG_WARN, "embeddings: cannot save the vectors: %s", error.c_str());
    }
  }
}

void Embedder::refresh() {
  const uint64_t listed_at = monotonic_ms();
  TemplatesQuery q;
  std::vector<PatternSummary> listed;
  StoreError err;
  if (!store_->templates(q, listed, err)) {
    host_->metric_add(m_refresh_failed_, 1);
    if (refresh_failures_++ == 0)
      host_->log(inst_, DM_LOG_WARN,
                 "embeddings: cannot read the stored templates (no vector is dropped until it "
                 "can): %s",
                 err.message.c_str());
    return;
  }
  refresh_failures_ = 0;
  std::vector<uint64_t> dropped;
  // An empty list cannot tell a store that keeps no templates (no patterns table) from one whose
  // retention removed them all, and a full one may have left live templates out: neither drops
  // anything. The set is built before the lock, which the loop takes for each record it offers.
  const bool may_drop = !listed.empty() && listed.size() < q.limit;
  std::unordered_set<uint64_t> live;
  if (may_drop) {
    live.reserve(listed.size());
    for (const PatternSummary &p : listed) live.insert(p.id);
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    for (const PatternSummary &p : listed)
      if (p.has_template && !vectors_.count(p.id) && !queued_.count(p.id))
        enqueue_locked(p.id, p.service, p.template_text);
    host_->metric_set(m_queued_, static_cast<double>(order_.size()));
    if (may_drop) {
      for (auto it = vectors_.begin(); it != vectors_.end();) {
        if (!live.count(it->first) &&
            it->second->added_ms + static_cast<uint64_t>(s_.refresh_ms) <= listed_at) {
          dropped.push_back(it->first);
          it = vectors_.erase(it);
        } else {
          ++it;
        }
      }
    }
    host_->metric_set(m_vectors_, static_cast<double>(vectors_.size()));
  }
  if (!dropped.empty()) {
    host_->metric_add(m_vectors_dropped_, static_cast<double>(dropped.size()));
    host_->log(inst_, DM_LOG_INFO,
               "embeddings: dropped the vectors of %zu templates the store no longer has",
               dropped.size());
    file_.forget(dropped);
  }
  if (file_.forgotten() == 0) return;
  // Compacted only once the dead records are half the file (checked at each refresh until
  // then): a rewrite costs the whole file.
  const auto entries = snapshot();
  std::vector<const StoredVector *> all;
  for (const auto &[id, e] : entries) all.push_back(e.get());
  VectorsFile::Compaction c;
  const int werr = file_.compact(client_.settings().model, all, c);
  if (werr != 0) {
    host_->metric_add(m_save_failed_, 1);
    host_->log(inst_, DM_LOG_WARN, "embeddings: cannot compact %s: %s", s_.vectors_path.c_str(),
               std::strerror(werr));
  } else if (c.rewritten) {
    host_->metric_add(m_compactions_, 1);
    host_->log(inst_, DM_LOG_INFO,
               "embeddings: %s compacted: %llu records (%llu bytes) to %llu (%llu)",
               s_.vectors_path.c_str(), static_cast<unsigned long long>(c.records_before),
               static_cast<unsigned long long>(c.bytes_before),
               static_cast<unsigned long long>(c.records_after),
               static_cast<unsigned long long>(c.bytes_after));
  }
}

std::vector<Embedder::Near> Embedder::nearest(const std::vector<float> &v,
                                              const std::optional<std::string> &service,
                                              uint32_t limit,
                                              const std::function<bool(uint64_t)> &keep) const {
  const double vn = norm_of(v);
  std::vector<Near> out;
  if (vn == 0) return out;
  for (const auto &[id, ep] : snapshot()) {
    const Entry &e = *ep;
    if (service && e.service != *service) continue;
    if (e.vector.size() != v.size() || e.norm == 0) continue;
    if (keep && !keep(id)) continue;
    double dot = 0;
    for (size_t i = 0; i < v.size(); ++i) dot += static_cast<double>(v[i]) * e.vector[i];
    out.push_back({id, e.service, e.template_text, dot / (vn * e.norm)});
  }
  std::sort(out.begin(), out.end(), [](const Near &a, const Near &b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

std::vector<std::pair<uint64_t, std::shared_ptr<const Embedder::Entry>>> Embedder::snapshot()
    const {
  std::lock_guard<std::mutex> l(mu_);
  return {vectors_.begin(), vectors_.end()};
}

size_t Embedder::vectors() const {
  std::lock_guard<std::mutex> l(mu_);
  return vectors_.size();
}

}  // namespace devmesh::query
