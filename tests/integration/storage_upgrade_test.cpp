// An upgrade keeps the records an older release left in its storage: a segment of format-1
// blocks (magic "DMB1", meta values without types), written here byte for byte as that release
// wrote it, is replayed by this build at start and its records reach the store with their meta
// as strings.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// CRC32C (Castagnoli), bit by bit: the engine's check of a block's payload.
uint32_t crc32c(const std::string &data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char c : data) {
    crc ^= c;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (crc & 1 ? 0x82F63B78u : 0);
  }
  return crc ^ 0xFFFFFFFFu;
}

template <class T>
void put(std::string &out, T v) {
  char b[sizeof v];
  std::memcpy(b, &v, sizeof v);  // little-endian, as on disk (x86-64, aarch64)
  out.append(b, sizeof v);
}

void put_str(std::string &out, const std::string &s) {
  put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out += s;
}

// A format-1 block of records numbered first..first+n-1 (README "File format", before typed
// meta): header {"DMB1", payload length, CRC32C}, payload {id, count, tag, records}.
std::string block_v1(uint64_t id, const std::string &tag, int first, int n) {
  std::string p;
  put<uint64_t>(p, id);
  put<uint32_t>(p, static_cast<uint32_t>(n));
  put_str(p, tag);
  for (int i = first; i < first + n; ++i) {
    put<int64_t>(p, 1764359740000000000LL + i * 1000000000LL);
    for (int b = 0; b < 16; ++b) p += static_cast<char>(i * 16 + b);  // the event id
    put<uint8_t>(p, 5);                                               // ERROR
    put<int8_t>(p, 3);                                                // priority
    put<uint16_t>(p, 0);                                              // flags
    put<uint32_t>(p, 2);                                              // meta entries
    for (const std::string &f :
         {std::string("old"), std::string("svc"), std::string("h"), std::string(), std::string(),
          std::string(), std::string(), "stored by the older release " + std::to_string(i)})
      put_str(p, f);
    put_str(p, "seq");
    put_str(p, std::to_string(i));
    put_str(p, "pid");
    put_str(p, "42");
  }
  std::string b = "DMB1";
  put<uint32_t>(b, static_cast<uint32_t>(p.size()));
  put<uint32_t>(b, crc32c(p));
  return b + p;
}

TEST(StorageUpgrade, RecordsInSegmentsOfTheOlderFormatAreReplayedIntoTheStore) {
  TempDir d;
  const std::string storage = d / "storage", db = d / "devmesh.db";
  std::filesystem::create_directories(storage);
  write_file(storage + "/seg-0000000000000001.log",
             block_v1(1, "app", 1, 3) + block_v1(2, "app", 4, 2));
  const int port = free_port();
  const std::string listen = "127.0.0.1:" + std::to_string(port);
  auto e = start_engine(
      d, plugins_head("  http_listen: " + listen + "\n  storage:\n    path: " + storage + "\n") +
             "  inputs:\n    - {name: http, tag: app, listen: '" + listen +
             "'}\n  outputs:\n    - {name: sqlite, path: " + db + "}\n");
  ASSERT_TRUE(wait_until(
      [&] {
        const HttpResponse m = http("http://" + listen + "/metrics");
        return m.status == 200 &&
               find_metric(m.body, "devmesh_records_out_total", "plugin=\"sqlite\"") == 5.0;
      },
      30s))
      << e->err();
  SqliteDb s(db);
  EXPECT_EQ(s.number("SELECT count(*) FROM log_events"), 5);
  EXPECT_EQ(s.value("SELECT meta_json FROM log_events WHERE message = "
                    "'stored by the older release 4'"),
            R"({"seq":"4","pid":"42"})");
  EXPECT_EQ(s.value("SELECT service || ' ' || level || ' ' || hex(event_id) FROM log_events "
                    "WHERE message = 'stored by the older release 1'"),
            "svc ERROR 101112131415161718191A1B1C1D1E1F");
  const HttpResponse m = http("http://" + listen + "/metrics");
  EXPECT_EQ(metric_value(m.body, "devmesh_storage_records_replayed_total", ""), 5) << m.body;
  EXPECT_EQ(metric_value(m.body, "devmesh_storage_corrupt_blocks_total", ""), 0);
}

}  // namespace
