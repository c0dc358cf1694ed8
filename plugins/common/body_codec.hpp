// Whole-body compression for HTTP bodies: gzip through ISA-L's igzip (one-shot; about three times
// libdeflate's speed at the same size, see kGzipLevel) and zstd; gzip is decompressed through
// libdeflate. http_forward compresses
// each request body with a BodyCompressor (one per request slot, buffers reused); the http input
// decompresses with a BodyDecompressor, bounded by its max_body: a bomb costs at most that much
// memory, whatever the body's own size fields claim.
#pragma once

#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>

namespace devmesh {

enum class BodyCodec : uint8_t { kNone, kGzip, kZstd };

// Levels by measurement, on a 1000-record batch of dummy records as http_forward encodes it
// (210 KB of JSON), one core of the shared 2-core machine: libdeflate 1 compresses 355-535 MB/s
// to 0.128 of the size; its levels 2-6 240-365 MB/s to 0.127-0.118 (up to twice the CPU for at
// most 8% fewer bytes, which loopback or a LAN does not need); zlib 1 (before) 270 MB/s to 0.149.
// ISA-L's igzip level 1 (what gzip uses now): 2.2-3.3 times libdeflate 1's speed, to 0.129 (its
// level 0, faster again, to 0.197). With libdeflate, compression was half of a gzip sidecar's
// CPU.
// zstd 1: 1.37 GB/s to 0.100; zstd 2 and 3: 1.0 and 0.6-0.7 GB/s, and no smaller on this data.
// Decompression: libdeflate 2.0 GB/s (zlib 1.2), zstd 5.1 GB/s.
constexpr int kGzipLevel = 1;
constexpr int kZstdLevel = 1;

// A growable byte buffer that is not zero-filled (std::string::resize would write every byte).
class ByteBuffer {
 public:
  char *data() { return p_.get(); }
  const char *data() const { return p_.get(); }
  size_t capacity() const { return cap_; }
  // Room for n bytes; the first keep bytes survive.
  void reserve(size_t n, size_t keep = 0) {
    if (n <= cap_) return;
    std::unique_ptr<char[]> q(new char[n]);
    if (keep) std::memcpy(q.get(), p_.get(), std::min(keep, cap_));
    p_ = std::move(q);
    cap_ = n;
  }
  void release() {
    p_.reset();
    cap_ = 0;
  }

 private:
  std::unique_ptr<char[]> p_;
  size_t cap_ = 0;
};

class BodyCompressor {
 public:
  explicit BodyCompressor(BodyCodec codec) : codec_(codec) {
    if (codec_ == BodyCodec::kGzip) {
      gz_level_.reserve(ISAL_DEF_LVL1_DEFAULT);  // igzip's hash tables for level 1
    } else if (codec_ == BodyCodec::kZstd) {
      zs_ = ZSTD_createCCtx();
      if (!zs_) throw std::bad_alloc();
      ZSTD_CCtx_setParameter(zs_, ZSTD_c_compressionLevel, kZstdLevel);
      ZSTD_CCtx_setParameter(zs_, ZSTD_c_checksumFlag, 1);  // as gzip's CRC: corruption is seen
    }
  }
  ~BodyCompressor() { ZSTD_freeCCtx(zs_); }
  BodyCompressor(const BodyCompressor &) = delete;
  BodyCompressor &operator=(const BodyCompressor &) = delete;

  // The compressed body, valid until the next call. The output buffer grows to the bound of the
  // largest body seen and is reused; release() gives it back.
  std::string_view compress(const char *in, size_t n) {
    if (codec_ == BodyCodec::kGzip) {
      if (n > std::numeric_limits<uint32_t>::max() / 2)
        throw std::runtime_error("gzip: a body of 2 GiB or more");
      // Room for the whole input as stored blocks (5 bytes each 64 KiB), which igzip falls back
      // to, and the gzip header and trailer: never too small.
      const size_t bound = n + (n >> 12) + 1024;
      out_.reserve(bound);
      isal_zstream z;
      isal_deflate_stateless_init(&z);
      z.level = kGzipLevel;
      z.level_buf = reinterpret_cast<uint8_t *>(gz_level_.data());
      z.level_buf_size = static_cast<uint32_t>(gz_level_.capacity());
      z.gzip_flag = IGZIP_GZIP;
      z.end_of_stream = 1;
      z.flush = NO_FLUSH;
      z.next_in = reinterpret_cast<uint8_t *>(const_cast<char *>(in));
      z.avail_in = static_cast<uint32_t>(n);
      z.next_out = reinterpret_cast<uint8_t *>(out_.data());
      z.avail_out = static_cast<uint32_t>(std::min<size_t>(bound, out_.capacity()));
      const int rc = isal_deflate_stateless(&z);
      if (rc != COMP_OK)
        throw std::runtime_error("gzip compression failed (igzip " + std::to_string(rc) + ")");
      return {out_.data(), z.total_out};
    }
    if (codec_ == BodyCodec::kZstd) {
      out_.reserve(ZSTD_compressBound(n));
      const size_t got = ZSTD_compress2(zs_, out_.data(), out_.capacity(), in, n);
      if (ZSTD_isError(got))
        throw std::runtime_error(std::string("zstd compression failed: ") + ZSTD_getErrorName(got));
      return {out_.data(), got};
    }
    return {in, n};
  }
  size_t buffer_bytes() const { return out_.capacity(); }
  void release() { out_.release(); }

 private:
  BodyCodec codec_;
  ByteBuffer gz_level_;
  ZSTD_CCtx *zs_ = nullptr;
  ByteBuffer out_;
};

// One per receiver (not thread-safe); keeps its output buffer between bodies.
class BodyDecompressor {
 public:
  enum Status { kOk = 0, kTooLarge = 413, kCorrupt = 400 };

  BodyDecompressor() = default;
  ~BodyDecompressor() {
    libdeflate_free_decompressor(gz_);
    ZSTD_freeDCtx(zs_);
  }
  BodyDecompressor(const BodyDecompressor &) = delete;
  BodyDecompressor &operator=(const BodyDecompressor &) = delete;

  // gzip, one member or several after one another. Each member's ISIZE trailer is only a hint
  // for the first attempt (it is the size mod 2^32, and anyone can write it): the buffer never
  // grows past max, and a member that does not fit in max is a 413 without decompressing on.
  Status gunzip(std::string_view in, size_t max, std::string_view &out, std::string &why) {
    if (!gz_ && !(gz_ = libdeflate_alloc_decompressor())) throw std::bad_alloc();
    size_t have = 0, pos = 0;
    if (in.size() < 18) return corrupt(why, "shorter than a gzip header and trailer");
    while (pos < in.size()) {
      const std::string_view rest = in.substr(pos);
      uint32_t isize;
      std::memcpy(&isize, in.data() + in.size() - 4, 4);  // the last member's: a guess for this
      size_t room = std::min(max - have, std::max<size_t>(isize, 64 << 10));
      for (;;) {
        out_.reserve(have + room, have);
        size_t used_in = 0, got = 0;
        const libdeflate_result r = libdeflate_gzip_decompress_ex(
            gz_, rest.data(), rest.size(), out_.data() + have, room, &used_in, &got);
        if (r == LIBDEFLATE_SUCCESS) {
          have += got;
          pos += used_in;
          break;
        }
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE) return corrupt(why, "not valid gzip data");
        if (room == max - have) return kTooLarge;
        room = max - have;  // the hint lied: once more with all the room max leaves
      }
      // Trailing zero padding (some tools add it) ends the body.
      if (pos < in.size() && in.find_first_not_of('\0', pos) == std::string_view::npos) break;
    }
    out = {out_.data(), have};
    return kOk;
  }

  // zstd, one frame or several. The window is limited to what max can need, so a frame cannot
  // make the decoder allocate more than about max either.
  Status unzstd(std::string_view in, size_t max, std::string_view &out, std::string &why) {
    if (!zs_ && !(zs_ = ZSTD_createDCtx())) throw std::bad_alloc();
    ZSTD_DCtx_reset(zs_, ZSTD_reset_session_only);
    int window_log = 10;
    while (window_log < 27 && (size_t(1) << window_log) < max) ++window_log;
    ZSTD_DCtx_setParameter(zs_, ZSTD_d_windowLogMax, window_log);
    const unsigned long long declared = ZSTD_getFrameContentSize(in.data(), in.size());
    size_t room = declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR
                      ? in.size() * 4
                      : static_cast<size_t>(std::min<unsigned long long>(declared, max));
    // One byte past max proves "too large" without inflating further.
    room = std::clamp<size_t>(room, std::min<size_t>(64 << 10, max + 1), max + 1);
    ZSTD_inBuffer src{in.data(), in.size(), 0};
    size_t have = 0, left = 1;
    while (true) {
      out_.reserve(room, have);
      ZSTD_outBuffer dst{out_.data(), room, have};
      left = ZSTD_decompressStream(zs_, &dst, &src);
      have = dst.pos;
      if (ZSTD_isError(left)) return corrupt(why, ZSTD_getErrorName(left));
      if (have > max) return kTooLarge;
      if (src.pos == src.size && left == 0) break;
      if (dst.pos < dst.size && src.pos == src.size) return corrupt(why, "cut short");
      if (dst.pos == dst.size) room = std::min(max + 1, room * 2);
    }
    out = {out_.data(), have};
    return kOk;
  }

 private:
  static Status corrupt(std::string &why, const char *what) {
    why = what;
    return kCorrupt;
  }

  libdeflate_decompressor *gz_ = nullptr;
  ZSTD_DCtx *zs_ = nullptr;
  ByteBuffer out_;
};

}  // namespace devmesh
