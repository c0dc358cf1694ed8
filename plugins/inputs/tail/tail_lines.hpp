// tail's line splitting: bytes read from a file (Carry) cut into lines at newlines, with the
// file offsets a checkpoint may stand at, and max_line_size applied (a longer line's head, the
// rest skipped up to its newline). No records and no I/O here: tail.cpp does both.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

namespace devmesh::tail {

// Bytes read from a file and not yet made into records: read() appends at the end, records
// are taken from the front; compacted only when the end has no room for another read.
struct Carry {
  std::unique_ptr<char[]> data;
  size_t cap = 0, head = 0, tail = 0;

  size_t size() const { return tail - head; }
  bool empty() const { return tail == head; }
  const char *begin() const { return data.get() + head; }
  std::string_view view() const { return std::string_view(begin(), size()); }
  void consume(size_t n) {
    head += n;
    if (head == tail) head = tail = 0;
  }
  void clear() { head = tail = 0; }
  void release() {
    data.reset();
    cap = head = tail = 0;
  }
  // Room for n more bytes at the end.
  char *space(size_t n) {
    if (cap - tail >= n) return data.get() + tail;
    if (head) {
      std::memmove(data.get(), data.get() + head, size());
      tail -= head;
      head = 0;
    }
    if (cap - tail < n) {
      const size_t want = std::max(cap * 2, tail + n);
      std::unique_ptr<char[]> bigger(new char[want]);
      if (tail) std::memcpy(bigger.get(), data.get(), tail);
      data = std::move(bigger);
      cap = want;
    }
    return data.get() + tail;
  }
};

// Where a file's reading stands, in file offsets.
struct LineCursor {
  uint64_t pos = 0;       // offset of the Carry's first byte: everything before it was split
  uint64_t boundary = 0;  // offset after the newest line split (a checkpoint may stand here)
  bool skipping = false;  // discarding the rest of a cut line, up to its newline
};

// Calls line(text, offset, cut) for each complete line of `carry` (without its newline), and
// for the head of one longer than max_line (cut true; the rest then skipped up to its newline,
// skipped(bytes) told of it), while room() holds. Returns false when it stopped for room; true
// when no complete line is left (an incomplete one stays carried).
template <class Room, class Line, class Skipped>
bool split_lines(Carry &carry, LineCursor &at, size_t max_line, Room &&room, Line &&line,
                 Skipped &&skipped) {
  const char *data = carry.begin();
  const size_t len = carry.size();
  size_t p = 0;
  bool more = true;
  while (p < len) {
    if (!room()) {
      more = false;
      break;
    }
    if (at.skipping) {
      const void *nl = std::memchr(data + p, '\n', len - p);
      const size_t skip =
          nl ? static_cast<size_t>(static_cast<const char *>(nl) - data) + 1 - p : len - p;
      skipped(skip - (nl ? 1 : 0));
      p += skip;
      at.pos += skip;
      if (nl) {
        at.skipping = false;
        at.boundary = at.pos;
      }
      continue;
    }
    const void *nl = std::memchr(data + p, '\n', std::min(len - p, max_line + 1));
    if (nl) {
      const size_t n = static_cast<size_t>(static_cast<const char *>(nl) - (data + p));
      line(std::string_view(data + p, n), at.pos, false);
      p += n + 1;
      at.pos += n + 1;
      at.boundary = at.pos;
    } else if (len - p > max_line) {
      // Too long: its first max_line bytes, back to a character boundary, are the line; a
      // checkpoint stays before it until its newline is found (a re-read cuts it alike).
      size_t keep = max_line;
      for (int i = 0;
           i < 3 && keep > 0 && (static_cast<unsigned char>(data[p + keep]) & 0xC0) == 0x80; ++i)
        --keep;
      line(std::string_view(data + p, keep), at.pos, true);
      skipped(max_line - keep);
      at.boundary = at.pos;
      p += max_line;
      at.pos += max_line;
      at.skipping = true;
    } else {
      break;  // an incomplete line: wait for the rest
    }
  }
  carry.consume(p);
  return more;
}

}  // namespace devmesh::tail
