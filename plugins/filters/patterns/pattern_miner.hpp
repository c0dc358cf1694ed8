// Online log template mining for one service: each message is masked (numbers, hex, ids, IPs,
// paths, durations become <*>), split into tokens, and grouped with the templates seen before in
// the style of Drain (He et al., ICWS 2017): a fixed-depth tree by token count and first tokens,
// then the most similar template of the leaf, generalised where the message differs.
//
// Two changes over Drain, both measured on Loghub (tools/bench/patterns) with one configuration
// for every system:
// - masking replaces the numeric parts of a token and keeps the rest ("rhost=<*>",
//   "(uid=<*>)", "blk_<*>"), rather than only whole tokens matched by per-system regexes;
// - a key=value token whose value is a word ("user=root") is a constant until the same position
//   has shown `kv_variants` different values: then those templates merge into one with
//   "user=<*>". Drain either merges them at once (Linux's user=root and user=guest are different
//   events) or never (OpenSSH's user= takes dozens of values).
// Templates merged that way keep the id of the oldest: an id, once given, always resolves to the
// template that now covers it (resolve()).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// Relative, so the bench and the unit tests that compile the miner need no include path.
#include "../../common/log_tokens.hpp"

namespace devmesh::patterns {

struct MinerOptions {
  double similarity = 0.7;  // share of equal tokens to join a template
  uint32_t depth = 2;       // first tokens that route to a leaf
  uint32_t max_children = 100;
  uint32_t kv_variants = 4;  // distinct word values before a key=value position is a variable
  uint32_t max_tokens = log_tokens::kDefaultMaxTokens;  // tokens past this: one trailing <*>
  // Distinct tokens remembered; past it a token never seen is a variable (<*>). Bounds memory
  // against an endless stream of new words (about 64 bytes each).
  uint32_t max_vocabulary = 1u << 20;
};

// The masked token of `tok`: the token itself when it has no digit, "<*>" for the numeric
// parts it keeps apart (written into `out`), or "<*>" as a whole.
std::string_view mask_token(std::string_view tok, std::string &out);

class Miner {
 public:
  explicit Miner(MinerOptions options = {});
  ~Miner();
  Miner(const Miner &) = delete;
  Miner &operator=(const Miner &) = delete;

  struct Match {
    uint32_t id;   // the template's index (stable; see resolve)
    bool created;  // a new template
    bool changed;  // an existing template was generalised (its text changed)
  };
  static constexpr uint32_t kNone = 0xffffffffu;
  // The message's template, learning from it. With may_create false (a service at its limit of
  // templates) a message no template covers gets id kNone and changes nothing.
  Match add(std::string_view message, bool may_create = true);

  // Puts back a template saved earlier (its text as template_text gave it, wildcards and all),
  // as a new template: for a restart. Its index is returned.
  uint32_t restore(std::string_view template_text);

  // The template an id given earlier now belongs to (after kv merges).
  uint32_t resolve(uint32_t id) const;
  // A template's text, tokens joined by one space.
  std::string template_text(uint32_t id) const;
  size_t size() const;  // templates, merged ones included

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace devmesh::patterns
