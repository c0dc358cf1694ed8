// The journald input's event identity, without a journal: which fields make an entry's event_id,
// and how entries alike in all of them still get ids of their own, the same on every read.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <array>
#include <cstring>
#include <string>

#include "event_identity.hpp"

using namespace devmesh::journald;

namespace {

// The host's hash128 (XXH3-128, canonical bytes).
void xxh3(const void *data, size_t len, uint8_t out[16]) {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
  std::memcpy(out, c.digest, 16);
}

using Id = std::array<uint8_t, 16>;

struct Entry {
  uint8_t boot = 7;
  uint64_t monotonic = 1000, realtime = 1764359740521872;
  std::string pid = "4242", message = "disk is full";
};

Identity identity_of(const Entry &e) {
  Identity id;
  std::memset(&id, 0, sizeof id);
  std::memset(id.boot_id, e.boot, sizeof id.boot_id);
  id.monotonic_usec = e.monotonic;
  id.realtime_usec = e.realtime;
  set_pid(id, e.pid);
  return id;
}

Id base_id(const Entry &e) {
  Id out;
  std::string scratch;
  base_hash(xxh3, identity_of(e), e.message, scratch, out.data());
  return out;
}

// What read_entry does: the identity in front of the message's copy, then the run's check and,
// for an entry alike to one before it, its sequence number from the cursor.
Id read_id(AlikeRun &run, const Entry &e, const std::string &cursor) {
  Identity id = identity_of(e);
  std::string block(sizeof id + e.message.size(), '\0');
  std::memcpy(block.data() + sizeof id, e.message.data(), e.message.size());
  Id out;
  hash_block(xxh3, block.data(), id, e.message.size(), out.data());
  std::string scratch;
  if (run.add(id, out.data())) {
    EXPECT_TRUE(add_seqnum(xxh3, cursor, out.data(), scratch));
  }
  return out;
}

std::string cursor(int seqnum) {
  return "s=0123456789abcdef0123456789abcdef;i=" + std::to_string(seqnum) +
         ";b=07070707070707070707070707070707;m=3e8;t=6446c1f2a3b10;x=ab";
}

}  // namespace

TEST(JournaldIdentity, TheSameEntryGivesTheSameEventId) {
  EXPECT_EQ(base_id(Entry{}), base_id(Entry{}));
  AlikeRun first, again;
  EXPECT_EQ(read_id(first, Entry{}, cursor(1)), read_id(again, Entry{}, cursor(1)));
  AlikeRun fresh;
  EXPECT_EQ(read_id(fresh, Entry{}, cursor(9)), base_id(Entry{}))
      << "read_entry's in-place hash covers the same bytes as base_hash";
}

TEST(JournaldIdentity, AChangedFieldGivesAnotherEventId) {
  const Id base = base_id(Entry{});
  Entry e;
  e.boot = 8;
  EXPECT_NE(base_id(e), base);
  e = Entry{};
  e.monotonic += 1;
  EXPECT_NE(base_id(e), base);
  e = Entry{};
  e.realtime += 1;
  EXPECT_NE(base_id(e), base);
  e = Entry{};
  e.pid = "4243";
  EXPECT_NE(base_id(e), base);
  e = Entry{};
  e.message = "disk is full!";
  EXPECT_NE(base_id(e), base);
  e = Entry{};
  e.message.clear();
  EXPECT_NE(base_id(e), base);
}

TEST(JournaldIdentity, EntriesAlikeInEverythingGetIdsOfTheirOwnTheSameOnEveryRead) {
  AlikeRun run;
  const Id a = read_id(run, Entry{}, cursor(10));
  const Id b = read_id(run, Entry{}, cursor(11));
  const Id c = read_id(run, Entry{}, cursor(12));
  EXPECT_EQ(a, base_id(Entry{})) << "the first of a run keeps its base hash";
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);

  // Read again from the start (a restart without a checkpoint): the same ids.
  AlikeRun reread;
  EXPECT_EQ(read_id(reread, Entry{}, cursor(10)), a);
  EXPECT_EQ(read_id(reread, Entry{}, cursor(11)), b);
  EXPECT_EQ(read_id(reread, Entry{}, cursor(12)), c);

  // Resumed after the first one was delivered (remember_current restarts the run on it).
  AlikeRun resumed;
  const Id first_base = base_id(Entry{});
  resumed.restart(identity_of(Entry{}), reinterpret_cast<const uint8_t(*)[16]>(first_base.data()),
                  1);
  EXPECT_EQ(read_id(resumed, Entry{}, cursor(11)), b);
}

TEST(JournaldIdentity, AnEntryStampedUnlikeTheOneBeforeStartsANewRun) {
  AlikeRun run;
  Entry later;
  later.monotonic += 1;
  later.realtime += 1;
  read_id(run, Entry{}, cursor(1));
  EXPECT_EQ(read_id(run, later, cursor(2)), base_id(later));
  EXPECT_EQ(read_id(run, Entry{}, cursor(3)), base_id(Entry{}))
      << "only the entries of the current run are compared";
}

TEST(JournaldIdentity, ACursorWithoutItsSequenceNumberLeavesTheIdUnchanged) {
  Id id = base_id(Entry{});
  const Id before = id;
  std::string scratch;
  EXPECT_FALSE(add_seqnum(xxh3, "b=07;m=3e8;t=6446c1f2a3b10", id.data(), scratch));
  EXPECT_EQ(id, before);
}
