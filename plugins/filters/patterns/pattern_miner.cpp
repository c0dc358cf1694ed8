// The miner of pattern_miner.hpp. Tokens are interned to integers once, so the tree walk and the
// template comparisons compare integers; an exact repeat of a masked message is answered from a
// cache without scanning its leaf.
#include "pattern_miner.hpp"

#include <absl/container/flat_hash_map.h>

#include <algorithm>
#include <deque>

namespace devmesh::patterns {

namespace {

using log_tokens::kWild;
constexpr uint32_t kWildId = 0;

}  // namespace

std::string_view mask_token(std::string_view tok, std::string &out) {
  return log_tokens::mask_token(tok, out);
}

struct Miner::Impl {
  MinerOptions opt;

  // Interned tokens: id 0 is the wildcard.
  std::deque<std::string> token_text;
  // Interning is the miner's hottest lookup (every word of every message): an open-addressing
  // table (abseil's) costs about a fifth less CPU here than std::unordered_map's nodes.
  absl::flat_hash_map<std::string_view, uint32_t> token_ids;
  std::vector<uint8_t> token_kv;  // 1: key=word, 2: key=<*>, 0: neither

  struct Node {
    std::unordered_map<uint32_t, uint32_t> children;
    std::vector<uint32_t> clusters;
  };
  std::vector<Node> nodes;
  std::unordered_map<uint32_t, uint32_t> roots;  // token count -> node

  struct Cluster {
    std::vector<uint32_t> tokens;
    uint32_t parent;
    uint32_t leaf;
  };
  std::vector<Cluster> clusters;
  absl::flat_hash_map<uint64_t, uint32_t> exact;  // hash of masked tokens -> cluster

  std::vector<uint32_t> toks;  // the message being added
  std::string scratch;

  uint32_t intern(std::string_view s) {
    auto it = token_ids.find(s);
    if (it != token_ids.end()) return it->second;
    if (token_text.size() >= opt.max_vocabulary) return kWildId;
    token_text.emplace_back(s);
    const uint32_t id = static_cast<uint32_t>(token_text.size() - 1);
    token_ids.emplace(token_text.back(), id);
    uint8_t kv = 0;
    const size_t eq = s.find('=');
    if (eq != std::string_view::npos && eq > 0)
      kv = s.size() >= 4 && s.substr(s.size() - 4) == "=<*>" ? 2 : 1;
    token_kv.push_back(kv);
    return id;
  }

  Impl(MinerOptions o) : opt(o) {
    intern(kWild);
    nodes.emplace_back();  // unused slot 0 keeps node ids nonzero
  }

  uint32_t find(uint32_t id) const {
    while (clusters[id].parent != id) id = clusters[id].parent;
    return id;
  }

  // Template token a and message token b differ where a key=word constant stands.
  bool hard(uint32_t a, uint32_t b) const {
    return a != b && a != kWildId && token_kv[a] == 1 && token_kv[b] != 0;
  }

  void tokenize(std::string_view msg, bool masked = true) {
    toks.clear();
    // Numbers are most tokens of a log line: their wildcard needs no lookup.
    log_tokens::for_each_token(msg, opt.max_tokens, masked, scratch, [this](std::string_view tok) {
      toks.push_back(tok == kWild ? kWildId : intern(tok));
    });
  }

  uint64_t hash_tokens() const {
    uint64_t h = 1469598103934665603ull ^ toks.size();
    for (uint32_t t : toks) h = (h ^ t) * 1099511628211ull;
    return h;
  }

  uint32_t leaf_of() {
    uint32_t node;
    auto r = roots.find(static_cast<uint32_t>(toks.size()));
    if (r == roots.end()) {
      nodes.emplace_back();
      node = static_cast<uint32_t>(nodes.size() - 1);
      roots.emplace(static_cast<uint32_t>(toks.size()), node);
    } else {
      node = r->second;
    }
    const size_t depth = std::min<size_t>(opt.depth, toks.size());
    for (size_t i = 0; i < depth; ++i) {
      uint32_t key = toks[i];
      auto &children = nodes[node].children;
      auto it = children.find(key);
      if (it == children.end() && children.size() >= opt.max_children) {
        key = kWildId;
        it = children.find(key);
      }
      if (it == children.end()) {
        nodes.emplace_back();
        const uint32_t child = static_cast<uint32_t>(nodes.size() - 1);
        nodes[node].children.emplace(key, child);
        node = child;
      } else {
        node = it->second;
      }
    }
    return node;
  }

  bool covers(const Cluster &c) const {
    if (c.tokens.size() != toks.size()) return false;
    for (size_t i = 0; i < toks.size(); ++i)
      if (c.tokens[i] != toks[i] && c.tokens[i] != kWildId) return false;
    return true;
  }

  // The token that covers a and b: a itself when equal; "key=<*>" for two values of one key
  // (the template still says which key varies); else the wildcard.
  uint32_t cover(uint32_t a, uint32_t b) {
    if (a == b || a == kWildId) return a;
    if (token_kv[a] != 0 && token_kv[b] != 0) {
      const std::string_view ta = token_text[a], tb = token_text[b];
      const size_t eq = ta.find('=');
      if (tb.size() > eq && tb.compare(0, eq + 1, ta.substr(0, eq + 1)) == 0) {
        scratch.assign(ta.substr(0, eq + 1));
        scratch.append(kWild);
        return intern(scratch);
      }
    }
    return kWildId;
  }

  bool generalise(std::vector<uint32_t> &tpl, const std::vector<uint32_t> &with) {
    bool changed = false;
    for (size_t i = 0; i < tpl.size(); ++i) {
      const uint32_t c = cover(tpl[i], with[i]);
      changed = changed || c != tpl[i];
      tpl[i] = c;
    }
    return changed;
  }

  // The exact-match cache is only a cache: past kMaxExact distinct masked messages it starts
  // again rather than grow with every distinct combination of words.
  static constexpr size_t kMaxExact = size_t{1} << 20;
  void remember(uint64_t h, uint32_t cluster) {
    if (exact.size() >= kMaxExact) exact.clear();
    exact[h] = cluster;
  }

  Match add(std::string_view message, bool may_create) {
    tokenize(message);
    const uint64_t h = hash_tokens();
    auto cached = exact.find(h);
    if (cached != exact.end()) {
      const uint32_t id = find(cached->second);
      if (covers(clusters[id])) return {id, false, false};
    }
    const uint32_t leaf = leaf_of();
    const size_t n = toks.size();
    int best = -1;
    double best_sim = -1;
    size_t best_wild = 0;
    blocked.clear();
    for (uint32_t ci : nodes[leaf].clusters) {
      const Cluster &c = clusters[ci];
      size_t same = 0, wild = 0;
      bool is_hard = false;
      for (size_t i = 0; i < n; ++i) {
        const uint32_t a = c.tokens[i], b = toks[i];
        same += a == b;
        wild += a == kWildId;
        is_hard = is_hard || hard(a, b);
      }
      const double sim = n ? static_cast<double>(same) / static_cast<double>(n) : 1.0;
      if (is_hard) {
        if (sim >= opt.similarity) blocked.push_back(ci);
        continue;
      }
      if (sim > best_sim || (sim == best_sim && wild > best_wild)) {
        best = static_cast<int>(ci);
        best_sim = sim;
        best_wild = wild;
      }
    }
    if (best >= 0 && best_sim >= opt.similarity) {
      const bool changed = generalise(clusters[best].tokens, toks);
      remember(h, static_cast<uint32_t>(best));
      return {static_cast<uint32_t>(best), false, changed};
    }
    if (!may_create) return {Miner::kNone, false, false};
    if (blocked.size() + 1 >= opt.kv_variants && !blocked.empty()) {
      // Enough different words at a key=value position: it is a variable after all.
      const uint32_t keep = blocked[0];
      generalise(clusters[keep].tokens, toks);
      auto &leaf_clusters = nodes[leaf].clusters;
      for (size_t k = 1; k < blocked.size(); ++k) {
        generalise(clusters[keep].tokens, clusters[blocked[k]].tokens);
        clusters[blocked[k]].parent = keep;
        leaf_clusters.erase(std::find(leaf_clusters.begin(), leaf_clusters.end(), blocked[k]));
      }
      remember(h, keep);
      return {keep, false, true};
    }
    const uint32_t id = static_cast<uint32_t>(clusters.size());
    clusters.push_back({toks, id, leaf});
    nodes[leaf].clusters.push_back(id);
    remember(h, id);
    return {id, true, false};
  }

  uint32_t restore(std::string_view text) {
    tokenize(text, false);
    const uint32_t leaf = leaf_of();
    const uint32_t id = static_cast<uint32_t>(clusters.size());
    clusters.push_back({toks, id, leaf});
    nodes[leaf].clusters.push_back(id);
    exact[hash_tokens()] = id;
    return id;
  }

  std::vector<uint32_t> blocked;
};

Miner::Miner(MinerOptions options) : impl_(std::make_unique<Impl>(options)) {}
Miner::~Miner() = default;

Miner::Match Miner::add(std::string_view message, bool may_create) {
  return impl_->add(message, may_create);
}

uint32_t Miner::restore(std::string_view template_text) {
  return impl_->restore(template_text);
}

uint32_t Miner::resolve(uint32_t id) const {
  return impl_->find(id);
}

std::string Miner::template_text(uint32_t id) const {
  std::string out;
  for (uint32_t t : impl_->clusters[impl_->find(id)].tokens) {
    if (!out.empty()) out.push_back(' ');
    out.append(impl_->token_text[t]);
  }
  return out;
}

size_t Miner::size() const {
  return impl_->clusters.size();
}

}  // namespace devmesh::patterns
