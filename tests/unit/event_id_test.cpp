// The derived event_id (plugins/common/event_id.hpp) that the http, forward and otlp inputs give
// a record sent without one. The ids are pinned: they were computed by the inputs' own copies
// before they shared this one, and stores dedupe re-sent records by them, so an id that changed
// would store a re-sent record twice across an upgrade.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "event_id.hpp"

namespace {

// The host's hash128: XXH3-128, canonical (big-endian) bytes.
void hash128(const void *data, size_t len, uint8_t out[16]) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
  std::memcpy(out, c.digest, 16);
}

dm_str str(const std::string &s) {
  return dm_str{s.data(), s.size()};
}

std::string hex(const uint8_t id[16]) {
  char buf[33];
  for (int i = 0; i < 16; ++i) std::snprintf(buf + 2 * i, 3, "%02x", id[i]);
  return std::string(buf, 32);
}

struct Sample {
  std::string source = "http", service = "api", host = "node-1", message = "user 42 logged in",
              k1 = "region", v1 = "eu", k2 = "n", v2 = "123";
  dm_kv meta[2];
  dm_record r{};
  Sample() {
    meta[0] = dm_kv{str(k1), str(v1), DM_META_STRING, 0};
    meta[1] = dm_kv{str(k2), str(v2), DM_META_INT, 0};
    r.source = str(source);
    r.service = str(service);
    r.host = str(host);
    r.message = str(message);
    r.timestamp_ns = 1764359740521872000LL;
    r.level = DM_LEVEL_INFO;
    r.priority = 6;
    r.meta = meta;
    r.meta_count = 2;
  }
  std::string id() {
    std::string scratch;
    devmesh::derive_event_id(hash128, r, scratch);
    return hex(r.event_id);
  }
};

}  // namespace

TEST(DerivedEventId, IsTheIdTheInputsGaveBeforeSharingIt) {
  Sample s;
  EXPECT_EQ(s.id(), "5eb35e986b6ad731272c9bb0ac0c6fc6");
  s.r.meta_count = 0;
  EXPECT_EQ(s.id(), "c15ebd60ce1bff66b41e05b88e79d368");
}

TEST(DerivedEventId, ARecordTooLongForTheStackGoesThroughScratchToTheSameId) {
  Sample s;
  const std::string big(5000, 'x');
  s.r.message = str(big);
  EXPECT_EQ(s.id(), "4ac5d7a78344430ab3e4c94155b49ab2");
}

TEST(DerivedEventId, MetaInAnotherOrderGivesTheSameIdAndAnotherTypeAnotherId) {
  Sample s;
  const std::string first = s.id();
  std::swap(s.meta[0], s.meta[1]);
  EXPECT_EQ(s.id(), first);
  s.meta[0].type = DM_META_STRING;  // "123" is not 123
  EXPECT_NE(s.id(), first);
}

TEST(DerivedEventId, EveryStoredFieldChangesTheId) {
  Sample s;
  const std::string first = s.id();
  const std::string other = "other";
  for (const devmesh::RecordField &f : devmesh::kRecordFields) {
    Sample t;
    t.r.*f.member = str(other);
    EXPECT_NE(t.id(), first) << f.name;
  }
  s.r.level = DM_LEVEL_WARN;
  EXPECT_NE(s.id(), first);
}
