// Finds where one msgpack object ends in bytes that arrive piece by piece, and refuses it early
// when it breaks the forward input's bounds, before msgpack-c builds its object tree. msgpack-c
// allocates an array's or map's element table as soon as it reads the header, so a 5-byte frame
// declaring 2^32 entries would cost gigabytes there; here a declared count or length that cannot
// fit in max_bytes is an error at once, nesting is bounded, and the object is handed to msgpack-c
// only once it is complete. Resumable: each call continues where the last one stopped.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace devmesh::forward {

class FrameScanner {
 public:
  enum Result { kNeedMore, kComplete, kError };
  enum Problem { kNone, kTooLarge, kTooDeep, kMalformed };

  FrameScanner(size_t max_bytes, uint32_t max_depth)
      : max_bytes_(max_bytes), max_depth_(max_depth) {
    reset();
  }

  // Starts a new object at the start of the bytes given to the next scan().
  void reset() {
    pos_ = 0;
    open_.assign(1, 1);  // one top-level object to read
  }
  // The same, with another bound (the buffer keeps its capacity).
  void reset(size_t max_bytes) {
    max_bytes_ = max_bytes;
    reset();
  }

  // data: the object's bytes from its first byte on (len of them so far).
  Result scan(const char *data, size_t len) {
    const auto *p = reinterpret_cast<const unsigned char *>(data);
    while (!open_.empty()) {
      if (open_.back() == 0) {
        open_.pop_back();
        continue;
      }
      if (pos_ >= len) return kNeedMore;
      const unsigned char b = p[pos_];
      uint64_t header = 1, body = 0, elements = 0;
      bool container = false;
      if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        // fixint, nil, bool
      } else if (b >= 0x80 && b <= 0x8f) {
        container = true, elements = 2u * (b & 0x0f);
      } else if (b >= 0x90 && b <= 0x9f) {
        container = true, elements = b & 0x0f;
      } else if (b >= 0xa0 && b <= 0xbf) {
        body = b & 0x1f;
      } else {
        switch (b) {
          case 0xc4:
          case 0xd9:
            header = 2;
            break;  // bin8, str8
          case 0xc5:
          case 0xda:
            header = 3;
            break;  // bin16, str16
          case 0xc6:
          case 0xdb:
            header = 5;
            break;  // bin32, str32
          case 0xc7:
            header = 3;
            break;  // ext8
          case 0xc8:
            header = 4;
            break;  // ext16
          case 0xc9:
            header = 6;
            break;  // ext32
          case 0xca:
            body = 4;
            break;  // float32
          case 0xcb:
            body = 8;
            break;  // float64
          case 0xcc:
          case 0xd0:
            body = 1;
            break;  // (u)int8
          case 0xcd:
          case 0xd1:
            body = 2;
            break;  // (u)int16
          case 0xce:
          case 0xd2:
            body = 4;
            break;  // (u)int32
          case 0xcf:
          case 0xd3:
            body = 8;
            break;  // (u)int64
          case 0xd4:
            body = 2;
            break;  // fixext1 (type + data)
          case 0xd5:
            body = 3;
            break;
          case 0xd6:
            body = 5;
            break;
          case 0xd7:
            body = 9;
            break;
          case 0xd8:
            body = 17;
            break;
          case 0xdc:
            header = 3, container = true;
            break;  // array16
          case 0xdd:
            header = 5, container = true;
            break;  // array32
          case 0xde:
            header = 3, container = true;
            break;  // map16
          case 0xdf:
            header = 5, container = true;
            break;  // map32
          default:
            return fail(kMalformed, "byte 0x" + hex(b) + " at offset " + std::to_string(pos_) +
                                        " starts no msgpack value");
        }
        if (header > 1) {
          if (pos_ + header > len) return kNeedMore;
          const uint64_t n = be(p + pos_ + 1, header == 2   ? 1
                                              : header == 3 ? 2
                                              : header == 4 ? 2
                                              : header == 5 ? 4
                                                            : 4);
          if (container) {
            elements = (b == 0xde || b == 0xdf) ? 2 * n : n;
          } else if (b == 0xc7 || b == 0xc8 || b == 0xc9) {
            // ext: the length field, then a type byte, then the data
            const uint64_t size_len = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
            body = be(p + pos_ + 1, static_cast<size_t>(size_len));
            header = 1 + size_len + 1;
            if (pos_ + header > len) return kNeedMore;
          } else {
            body = n;
          }
        }
      }
      if (container) {
        if (open_.size() > max_depth_)
          return fail(kTooDeep, "nested deeper than " + std::to_string(max_depth_) +
                                    " levels at offset " + std::to_string(pos_));
        // Every element takes at least one byte: a count that cannot fit is refused before
        // anything is allocated for it.
        if (pos_ + header + elements > max_bytes_)
          return fail(kTooLarge, "an array or map at offset " + std::to_string(pos_) +
                                     " declares " + std::to_string(elements) +
                                     " items, more than max_chunk bytes can hold");
        --open_.back();
        pos_ += header;
        open_.push_back(elements);
        continue;
      }
      if (pos_ + header + body > max_bytes_)
        return fail(kTooLarge, "a value at offset " + std::to_string(pos_) + " declares " +
                                   std::to_string(body) + " bytes, more than max_chunk");
      if (pos_ + header + body > len) return kNeedMore;
      pos_ += header + body;
      --open_.back();
    }
    return kComplete;
  }

  // With kComplete: the object's size in bytes.
  size_t size() const { return pos_; }
  Problem problem() const { return problem_; }
  const std::string &error() const { return error_; }

 private:
  static uint64_t be(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
  }
  static std::string hex(unsigned char b) {
    static const char d[] = "0123456789abcdef";
    return std::string{d[b >> 4], d[b & 15]};
  }
  Result fail(Problem p, std::string why) {
    problem_ = p;
    error_ = std::move(why);
    return kError;
  }

  size_t max_bytes_;
  uint32_t max_depth_;
  size_t pos_ = 0;
  std::vector<uint64_t> open_;  // elements still to read in each open container
  Problem problem_ = kNone;
  std::string error_;
};

}  // namespace devmesh::forward
