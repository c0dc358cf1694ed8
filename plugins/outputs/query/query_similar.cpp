// Similar-log search (query_similar.h): exact template match, then TF-IDF cosine.
#include "query_similar.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include <log_tokens.hpp>

#include "query_params.h"

namespace devmesh::query {

namespace {

bool is_wild(std::string_view t) {
  return t == log_tokens::kWild;
}

}  // namespace

std::vector<std::string> message_tokens(std::string_view message) {
  std::vector<std::string> out;
  std::string scratch;
  log_tokens::for_each_token(message, log_tokens::kDefaultMaxTokens, true, scratch,
                             [&](std::string_view t) { out.emplace_back(t); });
  return out;
}

std::vector<std::string> template_tokens(std::string_view template_text) {
  std::vector<std::string> out;
  std::string scratch;
  log_tokens::for_each_token(template_text, log_tokens::kDefaultMaxTokens, false, scratch,
                             [&](std::string_view t) { out.emplace_back(t); });
  return out;
}

bool fits_template(const std::vector<std::string> &message, const std::vector<std::string> &tpl) {
  if (message.size() != tpl.size()) return false;
  for (size_t i = 0; i < tpl.size(); ++i) {
    const std::string &t = tpl[i], &m = message[i];
    if (t == m || is_wild(t)) continue;
    // The miner's "key=<*>": a key=value position that took several values.
    constexpr std::string_view kKeyWild = "=<*>";
    if (t.size() > kKeyWild.size() && t.ends_with(kKeyWild)) {
      const size_t key = t.size() - kKeyWild.size() + 1;  // "key=" included
      if (m.size() >= key && m.compare(0, key, t, 0, key) == 0) continue;
    }
    return false;
  }
  return true;
}

TemplateIndex::TemplateIndex(std::vector<PatternSummary> templates)
    : patterns_(std::move(templates)) {
  std::unordered_map<std::string, uint32_t> ids;
  std::vector<uint32_t> df;
  std::vector<std::unordered_map<uint32_t, uint32_t>> tf(patterns_.size());
  docs_.resize(patterns_.size());
  for (const PatternSummary &p : patterns_) ids_.insert(p.id);
  for (size_t d = 0; d < patterns_.size(); ++d) {
    docs_[d].tokens = template_tokens(patterns_[d].template_text);
    for (const std::string &t : docs_[d].tokens) {
      if (is_wild(t)) continue;  // says nothing about which event it is
      auto [it, added] = ids.emplace(t, static_cast<uint32_t>(terms_.size()));
      if (added) {
        terms_.push_back(t);
        df.push_back(0);
      }
      if (tf[d][it->second]++ == 0) ++df[it->second];
    }
  }
  const double n = static_cast<double>(patterns_.size());
  idf_.resize(terms_.size());
  for (size_t t = 0; t < terms_.size(); ++t) idf_[t] = std::log((n + 1) / (df[t] + 1)) + 1;
  postings_.resize(terms_.size());
  for (size_t d = 0; d < docs_.size(); ++d) {
    double norm = 0;
    for (const auto &[t, count] : tf[d]) {
      const double w = count * idf_[t];
      docs_[d].weights.emplace_back(t, w);
      norm += w * w;
    }
    norm = std::sqrt(norm);
    for (auto &[t, w] : docs_[d].weights) {
      w /= norm;
      postings_[t].emplace_back(static_cast<uint32_t>(d), w);
    }
  }
  // A lookup by text for queries: terms_ is searched through a sorted copy of the ids.
  order_.resize(terms_.size());
  for (uint32_t t = 0; t < terms_.size(); ++t) order_[t] = t;
  std::sort(order_.begin(), order_.end(),
            [this](uint32_t a, uint32_t b) { return terms_[a] < terms_[b]; });
}

bool TemplateIndex::complete() const {
  return !patterns_.empty() && patterns_.size() < TemplatesQuery{}.limit;
}

uint32_t TemplateIndex::term(std::string_view t) const {
  auto it = std::lower_bound(
      order_.begin(), order_.end(), t,
      [this](uint32_t a, std::string_view s) { return std::string_view(terms_[a]) < s; });
  if (it == order_.end() || terms_[*it] != t) return UINT32_MAX;
  return *it;
}

std::vector<TemplateIndex::Hit> TemplateIndex::search(std::string_view message,
                                                      const std::optional<std::string> &service,
                                                      uint32_t limit) const {
  const std::vector<std::string> toks = message_tokens(message);
  auto wanted = [&](size_t d) { return !service || patterns_[d].service == *service; };
  std::vector<Hit> exact;
  for (size_t d = 0; d < docs_.size(); ++d)
    if (wanted(d) && patterns_[d].has_template && fits_template(toks, docs_[d].tokens))
      exact.push_back({d, 1.0, true});
  std::sort(exact.begin(), exact.end(), [this](const Hit &a, const Hit &b) {
    return patterns_[a.index].total_count > patterns_[b.index].total_count;
  });
  // The message's vector: terms the index does not know still count in its norm (with the
  // highest idf), so a message mostly made of unknown words scores low everywhere.
  std::unordered_map<uint32_t, uint32_t> tf;
  uint32_t unknown = 0;
  for (const std::string &t : toks) {
    if (is_wild(t)) continue;
    const uint32_t id = term(t);
    if (id == UINT32_MAX)
      ++unknown;
    else
      ++tf[id];
  }
  const double max_idf = std::log(static_cast<double>(patterns_.size()) + 1) + 1;
  double norm = unknown * max_idf * unknown * max_idf;
  for (const auto &[t, c] : tf) norm += (c * idf_[t]) * (c * idf_[t]);
  norm = std::sqrt(norm);
  std::unordered_map<uint32_t, double> score;
  if (norm > 0)
    for (const auto &[t, c] : tf)
      for (const auto &[d, w] : postings_[t]) score[d] += c * idf_[t] / norm * w;
  std::vector<Hit> similar;
  for (const auto &[d, s] : score) {
    if (!wanted(d) || s <= 0) continue;
    bool is_exact = false;
    for (const Hit &h : exact) is_exact = is_exact || h.index == d;
    if (!is_exact) similar.push_back({d, std::min(s, 1.0), false});
  }
  std::sort(similar.begin(), similar.end(), [this](const Hit &a, const Hit &b) {
    if (a.score != b.score) return a.score > b.score;
    return patterns_[a.index].total_count > patterns_[b.index].total_count;
  });
  std::vector<Hit> out;
  for (const Hit &h : exact)
    if (out.size() < limit) out.push_back(h);
  for (const Hit &h : similar)
    if (out.size() < limit) out.push_back(h);
  return out;
}

std::shared_ptr<const TemplateIndex> SimilarIndex::get(QueryStore &store, int64_t now_ns,
                                                       StoreError &err) {
  std::shared_ptr<const TemplateIndex> cur;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (current_ && now_ns - built_ns_ < max_age_ns_) return current_;
    cur = current_;
  }
  // Stale or missing: one request rebuilds; the others answer from the previous index, or wait
  // for the first one.
  std::unique_lock<std::mutex> build(build_mu_, std::defer_lock);
  if (cur) {
    if (!build.try_lock()) return cur;
  } else {
    build.lock();
    std::lock_guard<std::mutex> l(mu_);
    if (current_ && now_ns - built_ns_ < max_age_ns_) return current_;
  }
  std::vector<PatternSummary> templates;
  TemplatesQuery q;
  if (!store.templates(q, templates, err)) return nullptr;
  auto fresh = std::make_shared<const TemplateIndex>(std::move(templates));
  std::lock_guard<std::mutex> l(mu_);
  current_ = fresh;
  built_ns_ = now_ns;
  return fresh;
}

std::shared_ptr<const TemplateIndex> SimilarIndex::peek(int64_t now_ns) {
  std::lock_guard<std::mutex> l(mu_);
  return current_ && now_ns - built_ns_ < max_age_ns_ ? current_ : nullptr;
}

bool search_similar(QueryStore &store, SimilarIndex &index, const SimilarRequest &req,
                    int64_t now_ns, TimeFormat tf, std::string &out, StoreError &err) {
  std::shared_ptr<const TemplateIndex> idx = index.get(store, now_ns, err);
  if (!idx) return false;
  const std::vector<TemplateIndex::Hit> hits = idx->search(req.message, req.service, req.limit);
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  std::string scratch, masked;
  for (const std::string &t : message_tokens(req.message))
    masked += (masked.empty() ? "" : " ") + t;
  w.StartObject();
  w.Key("masked");
  write_string(w, masked, scratch);
  w.Key("templates");
  w.Uint64(idx->patterns().size());
  // Records for the first patterns only, so that one request costs at most
  // kSimilarRecordQueries store queries and kSimilarRecordsBudget rows however large limit.
  const size_t with_records =
      req.records == 0 ? 0
                       : std::min({hits.size(), kSimilarRecordQueries,
                                   std::max<size_t>(1, kSimilarRecordsBudget / req.records)});
  w.Key("with_records");
  w.Uint64(with_records);
  w.Key("patterns");
  w.StartArray();
  for (size_t i = 0; i < hits.size(); ++i) {
    const TemplateIndex::Hit &h = hits[i];
    const PatternSummary &p = idx->patterns()[h.index];
    w.StartObject();
    w.Key("pattern_id");
    write_string(w, pattern_id_hex(p.id), scratch);
    w.Key("service");
    write_string(w, p.service, scratch);
    w.Key("template");
    write_string(w, p.template_text, scratch);
    w.Key("match");
    w.String(h.exact ? "exact" : "similar");
    w.Key("score");
    w.Double(std::round(h.score * 10000) / 10000);
    w.Key("count");
    w.Int64(p.total_count);
    w.Key("first_seen");
    write_string(w, format_time(p.first_seen_ns, tf), scratch);
    w.Key("last_seen");
    write_string(w, format_time(p.last_seen_ns, tf), scratch);
    if (req.records == 0) {
      w.Key("records");
      w.StartArray();
      w.EndArray();
    } else if (i < with_records) {
      w.Key("records");
      LogQuery q;
      q.pattern_id = p.id;
      q.limit = req.records;
      JsonRows rows(req.records, tf, false);
      if (!store.query_logs(q, rows, err)) return false;
      const std::string text = rows.finish(std::nullopt);
      w.RawValue(text.data(), text.size(), rapidjson::kArrayType);
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  out.assign(buf.GetString(), buf.GetSize());
  return true;
}

}  // namespace devmesh::query
