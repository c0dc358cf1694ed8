// Batches, arenas, meta, record JSON and the ticket watermark helper.
#include <gtest/gtest.h>
#include <devmesh/plugin.hpp>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "batch.h"
#include "engine.h"
#include "record_json.h"

using namespace devmesh;

TEST(Arena, CopiesAreStableAcrossManyAllocations) {
  Arena a;
  std::vector<dm_str> strs;
  for (int i = 0; i < 10000; i++) {
    std::string s = "value-" + std::to_string(i);
    strs.push_back(a.copy(s.data(), s.size()));
  }
  for (int i = 0; i < 10000; i++) EXPECT_EQ(sv(strs[i]), "value-" + std::to_string(i));
  dm_str big = a.copy(std::string(3 << 20, 'x').data(), 3 << 20);
  EXPECT_EQ(big.len, size_t(3 << 20));
  EXPECT_EQ(sv(strs[0]), "value-0");
}

TEST(Arena, CopiesAreNulTerminatedAndAligned) {
  Arena a;
  dm_str s = a.copy("abc", 3);
  EXPECT_EQ(s.ptr[3], '\0');
  void *p = a.alloc(5);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 8, 0u);
}

TEST(Arena, BlocksOfADeadArenaAreReusedByTheNextArena) {
  void *first = nullptr;
  {
    Arena a;
    first = a.alloc(100);
    std::memset(first, 'x', 100);
  }
  EXPECT_GE(Arena::cached_bytes(), size_t(16 << 10));
  Arena b;
  EXPECT_EQ(b.alloc(100), first);
  dm_str s = b.copy("fresh", 5);
  EXPECT_EQ(sv(s), "fresh");
}

TEST(Arena, KeptBlocksAreBoundedPerThread) {
  {
    std::vector<std::unique_ptr<Arena>> arenas;
    for (int i = 0; i < 64; i++) {
      arenas.push_back(std::make_unique<Arena>());
      for (int k = 0; k < 8; k++) arenas.back()->alloc(200 << 10);  // grows to 1 MiB blocks
    }
    // A block larger than the largest kept is freed, never kept.
    arenas.back()->alloc(3 << 20);
  }
  EXPECT_LE(Arena::cached_bytes(), Arena::kCacheBytes);
  EXPECT_GT(Arena::cached_bytes(), size_t(0));
}

TEST(Batch, AddedRecordsStartZeroedWithUnknownPriority) {
  Batch *b = batch_new(2);
  for (int i = 0; i < 100; i++) b->add();
  EXPECT_EQ(b->pub.count, 100u);
  EXPECT_EQ(b->pub.records[99].priority, -1);
  EXPECT_EQ(b->pub.records[99].message.len, 0u);
  batch_unref(b);
}

// queue_limit bounds real memory: what the records of a batch are charged covers its whole
// arena (blocks with their unused tails: an http body parsed in place leaves its JSON syntax
// there, uncounted by record_bytes) and its record array's capacity.
TEST(Batch, ItsRecordsAreChargedItsWholeArenaAndRecordArray) {
  Batch *b = batch_new(1000);
  size_t strings = 0;
  for (int i = 0; i < 300; i++) {
    dm_record *r = b->add();
    r->message = b->arena.copy("a message of some length", 24);
    b->arena.alloc(200);  // bytes no field points at (a body's JSON syntax)
    strings += 24;
  }
  const size_t real = b->arena.reserved() + b->records.capacity() * sizeof(dm_record);
  EXPECT_GE(b->arena.reserved(), b->arena.bytes());
  EXPECT_GT(real, 300 * (strings / 300 + sizeof(dm_record)) * 3) << "the test's premise";
  const size_t share = batch_share(b);
  EXPECT_GE(share * b->records.size(), real);
  EXPECT_LE(share * b->records.size(), real + sizeof(Batch));
  EXPECT_EQ(batch_share(b), share) << "computed once";
  batch_unref(b);
}

// An input's own thread makes batches and the loop frees them after delivery (or the thread
// frees one the engine refused): each thread's block cache only ever sees its own frees.
TEST(Batch, MadeOnOneThreadAndFreedOnAnotherKeepsItsRecordsAndFreesCleanly) {
  std::vector<Batch *> made;
  std::thread producer([&] {
    for (int i = 0; i < 8; i++) {
      Batch *b = batch_new(4);
      for (int k = 0; k < 500; k++) {
        dm_record *r = b->add();
        const std::string msg = "record " + std::to_string(i * 500 + k);
        r->message = b->arena.copy(msg.data(), msg.size());
        meta_set(b, r, str("seq"), str(std::to_string(i * 500 + k)));
      }
      made.push_back(b);
    }
    Batch *refused = batch_new(1);
    refused->arena.alloc(100 << 10);
    batch_unref(refused);  // into this thread's cache, freed when the thread ends
  });
  producer.join();
  const size_t cached_before = Arena::cached_bytes();
  for (size_t i = 0; i < made.size(); i++) {
    ASSERT_EQ(made[i]->records.size(), 500u);
    EXPECT_EQ(sv(made[i]->records[499].message), "record " + std::to_string(i * 500 + 499));
    EXPECT_EQ(sv(made[i]->records[0].meta[0].value), std::to_string(i * 500));
    batch_unref(made[i]);
  }
  // The freeing thread keeps the blocks (unless earlier tests filled its cache already).
  if (cached_before + (256 << 10) <= Arena::kCacheBytes) {
    EXPECT_GT(Arena::cached_bytes(), cached_before);
  }
  EXPECT_LE(Arena::cached_bytes(), Arena::kCacheBytes);
}

TEST(Batch, MetaSetAddsAndReplacesBeyondInitialCapacity) {
  Batch *b = batch_new(1);
  dm_record *r = b->add();
  for (int i = 0; i < 20; i++) {
    std::string k = "k" + std::to_string(i), v = "v" + std::to_string(i);
    meta_set(b, r, str(k), str(v));
  }
  meta_set(b, r, str("k3"), str("replaced"));
  ASSERT_EQ(r->meta_count, 20u);
  EXPECT_EQ(sv(r->meta[3].value), "replaced");
  EXPECT_EQ(sv(r->meta[19].key), "k19");
  batch_unref(b);
}

TEST(RecordJson, UsesThePrototypeFieldNamesAndMicroseconds) {
  Batch *b = batch_new(1);
  dm_record *r = b->add();
  r->timestamp_ns = 1764359740521872123LL;
  r->source = b->arena.copy("journald", 8);
  r->service = b->arena.copy("loki.service", 12);
  r->host = b->arena.copy("dev-services", 12);
  r->level = DM_LEVEL_INFO;
  r->message = b->arena.copy("say \"hi\"\n", 9);
  meta_set(b, r, str("pid"), str("493414"));
  std::string out;
  append_record_json(out, *r);
  EXPECT_NE(out.find("\"timestamp\":\"2025-11-28T19:55:40.521872Z\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"service\":\"loki.service\""), std::string::npos);
  EXPECT_NE(out.find("\"level\":\"INFO\""), std::string::npos);
  EXPECT_NE(out.find("\"message\":\"say \\\"hi\\\"\\n\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"meta_json\":{\"pid\":\"493414\"}"), std::string::npos);
  EXPECT_EQ(out.find("trace_id"), std::string::npos);  // empty optional fields are left out
  batch_unref(b);
}

TEST(RecordJson, InvalidUtf8BecomesReplacementCharacter) {
  Batch *b = batch_new(1);
  dm_record *r = b->add();
  const char bin[] = {'o', 'k', '\xff', '\xc3', '\0', 'z'};
  r->message = b->arena.copy(bin, sizeof bin);
  std::string out;
  append_dead_letter_json(out, *r, "out.0", "bad");
  EXPECT_NE(out.find("\"message\":\"ok\xEF\xBF\xBD\xEF\xBF\xBD\\u0000z\""), std::string::npos)
      << out;
  EXPECT_EQ(out.back(), '\n');
  EXPECT_NE(out.find("\"reason\":\"bad\""), std::string::npos);
  batch_unref(b);
}

TEST(TicketWatermark, AdvancesOnlyOverContiguousTickets) {
  TicketWatermark w;
  EXPECT_EQ(w.done(2), 0u);
  EXPECT_EQ(w.done(3), 0u);
  EXPECT_EQ(w.done(1), 3u);
  EXPECT_EQ(w.done(5), 3u);
  EXPECT_EQ(w.out_of_order(), 1u);
  EXPECT_EQ(w.done(4), 5u);
  EXPECT_EQ(w.out_of_order(), 0u);
}

TEST(Levels, WarnAndWarningRankTheSame) {
  EXPECT_EQ(dm_level_rank(DM_LEVEL_WARN), dm_level_rank(DM_LEVEL_WARNING));
  EXPECT_LT(dm_level_rank(DM_LEVEL_WARNING), dm_level_rank(DM_LEVEL_ERROR));
  EXPECT_STREQ(dm_level_name(DM_LEVEL_CRITICAL), "CRITICAL");
}

// Typed meta values through the host table: what the stores would write verbatim into JSON
// must be JSON of that type, else nothing is set.
TEST(MetaSet, TypedValuesAreTakenOnlyWhenTheyAreJsonOfTheirType) {
  const dm_host_api *host = Engine::host_api();
  Batch *b = batch_new(1);
  dm_record *r = b->add();
  auto set = [&](std::string_view v, uint32_t type) {
    return host->meta_set(&b->pub, r, str("k"), dm_str{v.data(), v.size()}, type);
  };
  static const std::string deepest = std::string(64, '[') + std::string(64, ']');
  static const std::string nines300(300, '9'), nines400(400, '9'), nines300_e0 = nines300 + "e0";
  const std::pair<std::string_view, uint32_t> good[] = {
      {"any bytes \xff", DM_META_STRING},
      {"", DM_META_STRING},
      {"123", DM_META_INT},
      {"-0", DM_META_INT},
      {"123456789012345678901234567890", DM_META_INT},
      {nines300, DM_META_INT},
      {nines300_e0, DM_META_FLOAT},  // what readers take: the bound that skips asking them
      {"1.5", DM_META_FLOAT},
      {"-1.5e3", DM_META_FLOAT},
      {"1E+300", DM_META_FLOAT},
      {"7", DM_META_FLOAT},
      {"true", DM_META_BOOL},
      {"false", DM_META_BOOL},
      {"null", DM_META_NULL},
      {"{}", DM_META_JSON},
      {"[]", DM_META_JSON},
      {R"({"a":1,"b":[1,"x",null,true,{"c":1e-5}]})", DM_META_JSON},
      {deepest, DM_META_JSON},
  };
  for (const auto &[v, type] : good) {
    EXPECT_EQ(set(v, type), DM_OK) << v << " as type " << type;
    ASSERT_EQ(r->meta_count, 1u);
    EXPECT_EQ(sv(r->meta[0].value), v);
    EXPECT_EQ(r->meta[0].type, type);
  }
  static const std::string deep = std::string(65, '[') + std::string(65, ']');
  const std::pair<std::string_view, uint32_t> bad[] = {
      {"", DM_META_INT},
      {"1.5", DM_META_INT},
      {"1e3", DM_META_INT},
      {"+1", DM_META_INT},
      {"01", DM_META_INT},
      {"-", DM_META_INT},
      {" 1", DM_META_INT},
      {"0x10", DM_META_INT},
      {"1.", DM_META_FLOAT},
      {".5", DM_META_FLOAT},
      {"NaN", DM_META_FLOAT},
      {"inf", DM_META_FLOAT},
      {"1e", DM_META_FLOAT},
      {"1e999", DM_META_FLOAT},  // refused by the readers of the outputs' JSON
      {nines400, DM_META_INT},   // past DBL_MAX
      {"[1e999]", DM_META_JSON},
      {"True", DM_META_BOOL},
      {"1", DM_META_BOOL},
      {"", DM_META_NULL},
      {"nil", DM_META_NULL},
      {"1", DM_META_JSON},
      {"\"s\"", DM_META_JSON},
      {"{", DM_META_JSON},
      {"{\"a\":1}x", DM_META_JSON},
      {"{\"a\":1} ", DM_META_JSON},
      {"[1]]", DM_META_JSON},
      {std::string_view("[1]\0[2]", 7), DM_META_JSON},
      {std::string_view("[\"a\0\"]", 6), DM_META_JSON},
      {"[\"\xff\"]", DM_META_JSON},
      {"{a:1}", DM_META_JSON},
      {deep, DM_META_JSON},
      {"x", 6},
      {"x", 0xFFFFFFFFu},
  };
  for (const auto &[v, type] : bad) {
    EXPECT_EQ(set(v, type), DM_ERR_INVALID) << v << " as type " << type;
    EXPECT_EQ(sv(r->meta[0].value), deepest) << "an invalid value leaves the entry as it was";
  }
  batch_unref(b);
}

TEST(RecordJson, TypedMetaValuesAreWrittenAsTheirJson) {
  Batch *b = batch_new(1);
  dm_record *r = b->add();
  r->message = b->arena.copy("m", 1);
  meta_set(b, r, str("s"), str("123"));
  meta_set(b, r, str("pid"), str("123"), DM_META_INT);
  meta_set(b, r, str("f"), str("1.50"), DM_META_FLOAT);
  meta_set(b, r, str("ok"), str("true"), DM_META_BOOL);
  meta_set(b, r, str("n"), str("null"), DM_META_NULL);
  meta_set(b, r, str("nested"), str(R"({"a":[1,"x"]})"), DM_META_JSON);
  std::string out;
  append_record_json(out, *r);
  EXPECT_NE(
      out.find(
          R"("meta_json":{"s":"123","pid":123,"f":1.50,"ok":true,"n":null,"nested":{"a":[1,"x"]}})"),
      std::string::npos)
      << out;
  batch_unref(b);
}
