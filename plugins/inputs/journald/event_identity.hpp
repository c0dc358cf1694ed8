// A journal entry's event_id: what it is made of, and how entries alike in all of it are told
// apart. Pure (no sd-journal, no engine: the hash function is passed in), so that it can be
// unit-tested without a journal.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace devmesh::journald {

// XXH3-128, as the host's hash128.
using Hash128 = void (*)(const void *data, size_t len, uint8_t out[16]);

// What an entry's event_id is made of. sd-journal (252) tells an entry's sequence number only
// inside a cursor, and formatting a cursor per entry costs a third of a bare read; instead the
// id is built from what names an entry just as well and costs nothing to get: its boot, its
// monotonic and realtime stamps (taken by journald per entry), its pid and its message. The
// same entry read again (after a restart, from another open) gives the same bytes. The
// message's copy in the batch follows this head, so that one hash covers both.
// Entries alike in all of it (a process repeating one line within a microsecond: stdout stream
// lines journald takes in one go; imported journals) would share the id and the stores would
// keep one of them. Alike entries share their stamps, so they sit in one run of entries stamped
// alike, close together in read order: an entry's hash is compared with those of the few entries
// before it in its run (none for an entry stamped unlike the one before: a 32-byte compare, no
// syscall); only when one is equal is its cursor formatted and its sequence number (the
// cursor's s= and i=) hashed in (see AlikeRun and add_seqnum).
struct Identity {
  uint8_t boot_id[16];
  uint64_t monotonic_usec, realtime_usec;
  uint8_t pid_len;
  char pid[23];  // a longer _PID (not a number anyway) is cut: it only tells entries apart
};
static_assert(sizeof(Identity) == 56, "no padding: every byte hashed is set");
// The stamps: the first 32 bytes of an Identity (boot id, monotonic, realtime).
constexpr size_t kStampBytes = 32;
static_assert(offsetof(Identity, realtime_usec) + sizeof(uint64_t) == kStampBytes);
// How many entries before it, in its run of alike stamps, an entry is compared with.
constexpr uint32_t kRecent = 16;

inline void set_pid(Identity &id, std::string_view pid) {
  id.pid_len = static_cast<uint8_t>(std::min(pid.size(), sizeof id.pid));
  std::memset(id.pid, 0, sizeof id.pid);
  std::memcpy(id.pid, pid.data(), id.pid_len);
}

// An entry's base hash, over its Identity followed by its message. `block` is room for an
// Identity with the message's copy right behind it (as read_entry lays it out in the batch):
// one hash of both, with no copy.
inline void hash_block(Hash128 hash, char *block, const Identity &id, size_t message_len,
                       uint8_t out[16]) {
  std::memcpy(block, &id, sizeof id);
  hash(block, sizeof id + message_len, out);
}

// The same bytes for a message kept elsewhere (or none: the Identity alone).
inline void base_hash(Hash128 hash, const Identity &id, std::string_view message,
                      std::string &scratch, uint8_t out[16]) {
  scratch.assign(reinterpret_cast<const char *>(&id), sizeof id);
  scratch.append(message);
  hash(scratch.data(), scratch.size(), out);
}

// The run of entries stamped alike that the last one read ends: its stamps, and the base hashes
// of its last kRecent entries (a ring; n_ counts the run, 0: no entry before).
class AlikeRun {
 public:
  // The next entry has nothing to be compared with (a start, a seek, an entry skipped).
  void clear() { n_ = 0; }

  // Adds an entry's base hash to the run. True when it is one of the hashes of the kRecent
  // entries before it in its run: then its sequence number must be hashed in (add_seqnum) for
  // an id of its own, the same one on every read (the same entries precede it).
  bool add(const Identity &id, const uint8_t event_id[16]) {
    if (n_ == 0 || std::memcmp(stamp_, &id, kStampBytes) != 0) [[likely]] {
      std::memcpy(stamp_, &id, kStampBytes);
      std::memcpy(recent_[0], event_id, sizeof recent_[0]);
      n_ = 1;
      return false;
    }
    bool seen = false;
    for (uint32_t i = 0, n = std::min(n_, kRecent); i < n && !seen; ++i)
      seen = std::memcmp(recent_[i], event_id, sizeof recent_[i]) == 0;
    std::memcpy(recent_[n_ % kRecent], event_id, sizeof recent_[0]);
    ++n_;
    return seen;
  }

  // Starts the run on an entry delivered before, as if it had just been read: `at` is its
  // identity, `hashes` the base hashes of the n entries ending with it (oldest first), all
  // stamped as it is.
  void restart(const Identity &at, const uint8_t (*hashes)[16], uint32_t n) {
    n_ = 0;
    std::memcpy(stamp_, &at, kStampBytes);
    for (uint32_t i = 0; i < n && i < kRecent; ++i) std::memcpy(recent_[n_++], hashes[i], 16);
  }

 private:
  uint8_t stamp_[kStampBytes] = {};
  uint8_t recent_[kRecent][16] = {};
  uint32_t n_ = 0;
};

// Hashes the sequence number in an entry's cursor into its event_id (its base hash).
// "s=<seqnum id>;i=<seqnum>;b=..;m=..;t=..;x=..": b, m and t are in the identity already, x (the
// entry's hash) is the same for alike entries. False, event_id unchanged, without s= or i=.
inline bool add_seqnum(Hash128 hash, std::string_view cursor, uint8_t event_id[16],
                       std::string &scratch) {
  std::string_view rest = cursor, seqnum_id, seqnum;
  while (!rest.empty()) {
    const size_t semi = rest.find(';');
    const std::string_view part = rest.substr(0, semi);
    if (part.size() > 2 && part[1] == '=' && part[0] == 's') seqnum_id = part;
    if (part.size() > 2 && part[1] == '=' && part[0] == 'i') seqnum = part;
    rest = semi == std::string_view::npos ? std::string_view() : rest.substr(semi + 1);
  }
  if (seqnum_id.empty() || seqnum.empty()) return false;
  scratch.assign(reinterpret_cast<const char *>(event_id), 16);
  scratch.append(seqnum_id).append(1, ';').append(seqnum);
  hash(scratch.data(), scratch.size(), event_id);
  return true;
}

}  // namespace devmesh::journald
