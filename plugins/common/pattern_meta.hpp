// The patterns filter's meta keys as the stores read them: pattern_id (16 hex digits) becomes a
// pattern_id column and pattern (its template) a row of the patterns table; neither is kept in
// meta_json. Shared by the sqlite and mariadb outputs so that both read the keys alike.
// Header-only.
#pragma once

#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <unordered_map>

namespace devmesh {

inline constexpr uint32_t kNoPatternMeta = 0xffffffffu;

struct PatternMeta {
  bool valid = false;  // the record carries a well-formed pattern_id
  uint64_t id = 0;
  uint32_t id_index = kNoPatternMeta, text_index = kNoPatternMeta;
  uint32_t keys = 0;  // meta entries the store takes out of meta_json (when valid)

  // Whether meta entry m goes to the column or the patterns table, not to meta_json.
  bool taken(uint32_t m) const { return valid && (m == id_index || m == text_index); }
};

// An id that is not 16 lowercase hex digits stays in meta_json, and so does its template: the
// store keeps what it cannot read as a pattern rather than drop it.
inline PatternMeta pattern_meta(const dm_record &r) {
  PatternMeta pm;
  for (uint32_t m = 0; m < r.meta_count; ++m) {
    const std::string_view k = sv(r.meta[m].key);
    if (k == "pattern_id") pm.id_index = m;
    if (k == "pattern") pm.text_index = m;
  }
  if (pm.id_index == kNoPatternMeta) return pm;
  const std::string_view v = sv(r.meta[pm.id_index].value);
  if (v.size() != 16) return pm;
  for (char c : v) {
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return pm;
    pm.id = pm.id << 4 | static_cast<uint64_t>(d);
  }
  pm.valid = true;
  pm.keys = 1 + (pm.text_index != kNoPatternMeta);
  return pm;
}

// One pattern's rows among a batch's stored rows: what the patterns table's upsert adds.
// The views point into the batch (or a store's cleaned copy of it).
struct PatternRows {
  std::string_view service, text;  // text empty: no template came with these rows
  int64_t first = 0, last = 0, count = 0;
};

// The batch's patterns, by id, counting only the rows the store actually inserted.
class BatchPatterns {
 public:
  void clear() { by_id_.clear(); }
  bool empty() const { return by_id_.empty(); }
  size_t size() const { return by_id_.size(); }
  // A stored row of pattern `id`; `text` is its template when the record brought one.
  void add(uint64_t id, std::string_view service, std::string_view text, int64_t ts) {
    PatternRows &p = by_id_[id];
    if (p.count == 0) {
      p.service = service;
      p.first = p.last = ts;
    }
    if (!text.empty()) p.text = text;
    p.first = std::min(p.first, ts);
    p.last = std::max(p.last, ts);
    ++p.count;
  }
  const std::unordered_map<uint64_t, PatternRows> &rows() const { return by_id_; }

 private:
  std::unordered_map<uint64_t, PatternRows> by_id_;
};

}  // namespace devmesh
