// patterns filter: gives every record the id of its message's template, mined online per
// service (pattern_miner.hpp), so that millions of lines read as the few thousand events they
// are. The id goes into meta as pattern_id (16 hex digits); the template's text goes with the
// record that created or changed it, and again with the first record of a pattern after every
// template_every, so that a store (here, or behind an aggregator) learns every template it
// holds records of. A record that arrives with a pattern_id (mined by a sidecar) keeps it: one
// message has one id from the sidecar to the store.
//
// Ids are stable: a pattern's id is a hash of its service and the template it was created
// with, and the templates are saved to state_file and read back at start.
#include <devmesh/plugin.hpp>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pattern_miner.hpp"
#include "state_file.hpp"

namespace devmesh {
namespace {

constexpr std::string_view kIdKey = "pattern_id";
constexpr std::string_view kTemplateKey = "pattern";
constexpr std::string_view kStateHeader = "devmesh-patterns 1";

struct PatternsConfig {
  const char *state_file = nullptr;
  double similarity = 0.7;
  int64_t depth = 2;
  int64_t kv_variants = 4;
  int64_t max_templates = 0;
  int64_t max_services = 0;
  int64_t template_every_ms = 0;
  int64_t save_interval_ms = 0;
};

using C = PatternsConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_PATH>("state_file", &C::state_file,
                        "where the templates are saved, so that ids stay the same across "
                        "restarts; unset: templates are learnt again after a restart")
        .with_flags(DM_OPT_MAKES_PARENT | DM_OPT_EXCLUSIVE),
    Option<DM_OPT_DOUBLE>("similarity", &C::similarity,
                          "share of equal tokens for a message to join a template")
        .value("0.7")
        .bounded(0.1, 1.0),
    Option<DM_OPT_INT>("depth", &C::depth, "leading tokens that route a message in the tree")
        .value("2")
        .bounded(1, 8),
    Option<DM_OPT_INT>("kv_variants", &C::kv_variants,
                       "different words a key=value token must show before its value counts as "
                       "a variable (user=root and user=guest are two templates until then)")
        .value("4")
        .bounded(2, 1000),
    Option<DM_OPT_INT>("max_templates", &C::max_templates,
                       "templates per service; past it, messages no template covers get no "
                       "pattern_id (counted in patterns_records_unmatched_total)")
        .value("5000")
        .bounded(1, 1e7),
    Option<DM_OPT_INT>("max_services", &C::max_services,
                       "services mined; records of services beyond it get no pattern_id "
                       "(counted in patterns_records_unmatched_total)")
        .value("1000")
        .bounded(1, 1e6),
    Option<DM_OPT_DURATION>("template_every", &C::template_every_ms,
                            "a pattern's template text travels again with its first record "
                            "after this long (a store added later learns it)")
        .value("10m")
        .bounded(1000, 86400000),
    Option<DM_OPT_DURATION>("save_interval", &C::save_interval_ms,
                            "how often changed templates are written to state_file")
        .value("5s")
        .bounded(100, 3600000),
};

// 16 lowercase hex digits into out (no terminator): on every record, so no snprintf.
void hex16_into(uint64_t v, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, v >>= 4) out[i] = digits[v & 15];
}

std::string hex16(uint64_t v) {
  std::string s(16, '0');
  hex16_into(v, s.data());
  return s;
}

// Services are written escaped in the state file: it is one line per template, tab-separated.
std::string escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == '\t' || c == '\n' || c == '\r') {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

int64_t clock_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Patterns {
 public:
  Patterns(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst), cfg_(bound_config<PatternsConfig>(host, cfg)) {
    opt_.similarity = cfg_.similarity;
    opt_.depth = static_cast<uint32_t>(cfg_.depth);
    opt_.kv_variants = static_cast<uint32_t>(cfg_.kv_variants);
    if (cfg_.state_file != nullptr && *cfg_.state_file != '\0') state_file_ = cfg_.state_file;
    m_records_ = host->metric_counter(inst, "patterns_records_total",
                                      "records given a pattern_id by this filter", nullptr);
    m_passed_ = host->metric_counter(
        inst, "patterns_records_kept_id_total",
        "records that arrived with a pattern_id (mined upstream) and kept it", nullptr);
    m_unmatched_ = host->metric_counter(
        inst, "patterns_records_unmatched_total",
        "records left without a pattern_id: their service is past max_services, or a new "
        "template is past max_templates",
        nullptr);
    m_created_ = host->metric_counter(inst, "patterns_templates_created_total", "templates created",
                                      nullptr);
    m_templates_ = host->metric_gauge(inst, "patterns_templates", "templates held", nullptr);
    m_save_failed_ = host->metric_counter(inst, "patterns_state_writes_failed_total",
                                          "state_file writes that failed (retried)", nullptr);
  }

  ~Patterns() { *alive_ = nullptr; }

  int start() {
    if (!state_file_.empty()) load();
    if (!state_file_.empty()) {
      writer_ = std::make_shared<StateFile>(state_file_);
      timer_ = host_->timer_new(inst_, &Patterns::on_save_timer, this);
      const auto every = static_cast<uint64_t>(cfg_.save_interval_ms);
      host_->timer_start(timer_, every, every);
    }
    return 0;
  }

  void stop() {
    if (timer_ != nullptr) host_->timer_free(timer_);
    timer_ = nullptr;
    if (dirty_ && writer_) {
      const int err = writer_->write(serialise(), ++generation_);
      if (err != 0)
        host_->log(inst_, DM_LOG_ERROR, "state_file %s: final write failed: %s",
                   state_file_.c_str(), std::strerror(err));
      else
        dirty_ = false;
    }
  }

  int filter(dm_batch *batch, uint8_t *verdicts) {
    const int64_t now = clock_ns();
    uint64_t given = 0, kept = 0, unmatched = 0;
    for (uint32_t i = 0; i < batch->count; ++i) {
      dm_record &r = batch->records[i];
      if (has_id(r)) {
        ++kept;
        continue;
      }
      Service *svc = service(sv(r.service));
      if (svc == nullptr) {
        ++unmatched;
        continue;
      }
      const bool may_create = svc->patterns.size() < static_cast<size_t>(cfg_.max_templates);
      const patterns::Miner::Match m = svc->miner.add(sv(r.message), may_create);
      if (m.id == patterns::Miner::kNone) {
        ++unmatched;
        continue;
      }
      Pattern &p = pattern_of(*svc, m);
      char id[16];
      hex16_into(p.id, id);
      set_meta(batch, r, kIdKey, std::string_view(id, sizeof id));
      if (m.created || m.changed || p.announced_ns == 0 ||
          now - p.announced_ns >= cfg_.template_every_ms * 1000000) {
        set_meta(batch, r, kTemplateKey, svc->miner.template_text(m.id));
        p.announced_ns = now;
      }
      if (m.created || m.changed) dirty_ = true;
      verdicts[i] = DM_MODIFIED;
      ++given;
    }
    add(m_records_, given);
    add(m_passed_, kept);
    add(m_unmatched_, unmatched);
    return 0;
  }

 private:
  struct Pattern {
    uint64_t id = 0;
    int64_t announced_ns = 0;  // when the template last travelled with a record (steady clock)
  };
  struct Service {
    std::string name;
    patterns::Miner miner;
    std::vector<Pattern> patterns;  // by the miner's index
    explicit Service(std::string n, const patterns::MinerOptions &o)
        : name(std::move(n)), miner(o) {}
  };

  static bool has_id(const dm_record &r) {
    for (uint32_t k = 0; k < r.meta_count; ++k)
      if (sv(r.meta[k].key) == kIdKey) return true;
    return false;
  }

  Service *service(std::string_view name) {
    if (last_ != nullptr && last_->name == name) return last_;
    auto it = services_.find(std::string(name));
    if (it == services_.end()) {
      if (services_.size() >= static_cast<size_t>(cfg_.max_services)) {
        if (!warned_services_)
          host_->log(inst_, DM_LOG_WARN,
                     "max_services (%" PRId64
                     ") reached: records of further services get no pattern_id",
                     cfg_.max_services);
        warned_services_ = true;
        return nullptr;
      }
      it = services_.emplace(std::string(name), std::make_unique<Service>(std::string(name), opt_))
               .first;
    }
    last_ = it->second.get();
    return last_;
  }

  // The pattern of a match, made on first sight: its id hashes the service and the template it
  // is created with, so a restart that lost the state file gives the same first message the
  // same id again.
  Pattern &pattern_of(Service &svc, const patterns::Miner::Match &m) {
    if (m.id >= svc.patterns.size()) svc.patterns.resize(m.id + 1);
    Pattern &p = svc.patterns[m.id];
    if (p.id == 0) {
      p.id = new_id(svc, svc.miner.template_text(m.id));
      host_->metric_add(m_created_, 1);
      host_->metric_add(m_templates_, 1);
    }
    return p;
  }

  uint64_t new_id(const Service &svc, const std::string &text) {
    std::string key = svc.name;
    key.push_back('\0');
    key += text;
    uint64_t id = XXH3_64bits(key.data(), key.size());
    // Two templates of one node never share an id (0 is "none").
    while (id == 0 || !ids_.insert(id).second)
      id = XXH3_64bits_withSeed(key.data(), key.size(), id);
    return id;
  }

  void set_meta(dm_batch *b, dm_record &r, std::string_view k, std::string_view v) {
    if (host_->meta_set(b, &r, str(k), str(v), DM_META_STRING) != DM_OK)
      throw std::runtime_error("meta_set failed");
  }

  void add(dm_metric *m, uint64_t v) {
    if (v) host_->metric_add(m, static_cast<double>(v));
  }

  // One line per template: id, service, template (live ones); a template merged into another
  // (a key=value position that turned variable) is written as id, service, "=" and the id it
  // joined.
  std::string serialise() const {
    std::string out(kStateHeader);
    out.push_back('\n');
    for (const auto &[name, svc] : services_) {
      const std::string service = escape(name);
      for (uint32_t i = 0; i < svc->patterns.size(); ++i) {
        const Pattern &p = svc->patterns[i];
        if (p.id == 0) continue;
        const uint32_t into = svc->miner.resolve(i);
        out += hex16(p.id) + '\t' + service + '\t';
        if (into != i && into < svc->patterns.size() && svc->patterns[into].id != 0)
          out += "=" + hex16(svc->patterns[into].id);
        else
          out += svc->miner.template_text(i);
        out.push_back('\n');
      }
    }
    return out;
  }

  void load() {
    std::ifstream in(state_file_);
    if (!in) return;  // first start
    std::string line;
    size_t lineno = 1, loaded = 0;
    if (!std::getline(in, line) || line != kStateHeader) {
      host_->log(inst_, DM_LOG_WARN,
                 "state_file %s:1: not a devmesh patterns file (expected '%s'): templates are "
                 "learnt again",
                 state_file_.c_str(), std::string(kStateHeader).c_str());
      return;
    }
    while (std::getline(in, line)) {
      ++lineno;
      const size_t t1 = line.find('\t');
      const size_t t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
      uint64_t id = 0;
      if (t2 == std::string::npos || t1 != 16 ||
          std::sscanf(line.c_str(), "%16" SCNx64, &id) != 1 || id == 0) {
        host_->log(inst_, DM_LOG_WARN, "state_file %s:%zu: not a template line: skipped",
                   state_file_.c_str(), lineno);
        continue;
      }
      const std::string name = unescape(std::string_view(line).substr(t1 + 1, t2 - t1 - 1));
      const std::string_view text = std::string_view(line).substr(t2 + 1);
      if (!text.empty() && text.front() == '=') {
        ids_.insert(id);  // a merged template's id stays taken
        continue;
      }
      Service *svc = service(name);
      if (svc == nullptr) continue;
      const uint32_t index = svc->miner.restore(text);
      if (index >= svc->patterns.size()) svc->patterns.resize(index + 1);
      svc->patterns[index].id = id;
      ids_.insert(id);
      ++loaded;
    }
    host_->metric_add(m_templates_, static_cast<double>(loaded));
    host_->log(inst_, DM_LOG_INFO, "state_file %s: %zu templates of %zu services read",
               state_file_.c_str(), loaded, services_.size());
  }

  // The file is written on the engine's pool: an fsync must not pause the loop. The write can
  // finish after this instance is gone (a reload): it then only drops its result. Writes are
  // ordered by generation: a slow one never replaces a newer one (the final one at stop).
  static void on_save_timer(void *arg) {
    auto *self = static_cast<Patterns *>(arg);
    if (!self->dirty_ || self->saving_) return;
    std::string text = self->serialise();
    const uint64_t generation = ++self->generation_;
    self->dirty_ = false;
    self->saving_ = true;
    write_off_loop(self->host_, self->inst_, self->writer_, std::move(text), generation,
                   [alive = self->alive_](int err) {
                     Patterns *self = *alive;
                     if (self == nullptr) return;
                     self->saving_ = false;
                     if (err != 0) {
                       self->dirty_ = true;  // the next tick writes again
                       self->host_->metric_add(self->m_save_failed_, 1);
                       self->host_->log(self->inst_, DM_LOG_WARN, "state_file %s: write failed: %s",
                                        self->state_file_.c_str(), std::strerror(err));
                     }
                   });
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  PatternsConfig cfg_;
  patterns::MinerOptions opt_;
  std::string state_file_;
  std::unordered_map<std::string, std::unique_ptr<Service>> services_;
  std::unordered_set<uint64_t> ids_;
  Service *last_ = nullptr;
  dm_timer *timer_ = nullptr;
  std::shared_ptr<StateFile> writer_;
  std::shared_ptr<Patterns *> alive_ = std::make_shared<Patterns *>(this);
  uint64_t generation_ = 0;
  bool dirty_ = false, saving_ = false, warned_services_ = false;
  dm_metric *m_records_, *m_passed_, *m_unmatched_, *m_created_, *m_templates_, *m_save_failed_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::Patterns>::describe(
    DM_FILTER, "patterns", "0.1.0",
    "gives each record the id of its message's template (pattern_id), mined online per service",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
