// A journal entry whose unit name or host name is longer than the stores' 255-character columns
// (systemd allows 256-character unit names) is cut at a character boundary by the journald
// input, flagged in meta `truncated` and counted, so that the aggregator a sidecar forwards it
// to accepts it instead of refusing it (422) after the sidecar read it: through two real
// engines, a real journal file and http_forward.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

const std::string kFixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";

size_t utf8_chars(const std::string &s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

TEST(JournaldColumns, LongUnitAndHostNamesAreCutToTheColumnsFlaggedAndAcceptedByTheAggregator) {
  TempDir d;
  std::filesystem::create_directories(d / "journal");
  // 'é' is two bytes: 300 of them are 600 bytes, and a cut at 255 bytes would split one.
  std::string unit;
  for (int i = 0; i < 300; ++i) unit += "\xC3\xA9";
  unit += ".service";
  const std::string hostname(300, 'h');
  std::string out, err;
  ASSERT_EQ(run({kFixture, "-o", d / "journal/system.journal", "--count", "3", "--units", unit,
                 "--hostname", hostname},
                d.path(), &out, &err),
            0)
      << err;

  const int agg_port = free_port(), agg_admin = free_port(), side_admin = free_port();
  Devmesh aggregator(
      d, "aggregator",
      plugins_head("  http_listen: 127.0.0.1:" + std::to_string(agg_admin) + "\n") +
          "  inputs:\n    - {name: http, listen: '127.0.0.1:" + std::to_string(agg_port) +
          "', ack: delivered}\n  outputs:\n    - {name: stdout, path: " + (d / "agg.ndjson") +
          "}\n");
  ASSERT_TRUE(aggregator.ready(agg_admin, d)) << aggregator->err();
  Devmesh sidecar(
      d, "sidecar",
      plugins_head(
          "  exit_when_done: true\n  http_listen: 127.0.0.1:" + std::to_string(side_admin) + "\n") +
          "  inputs:\n    - {name: journald, path: " + (d / "journal") +
          ", follow: false}\n  outputs:\n    - {name: http_forward, url: 'http://127.0.0.1:" +
          std::to_string(agg_port) +
          "/ingest/logs', retry_limit: 2, dead_letter_path: " + (d / "dead.ndjson") + "}\n");
  ASSERT_EQ(sidecar->wait_exit(60s), 0) << sidecar->err();

  EXPECT_FALSE(std::filesystem::exists(d / "dead.ndjson"))
      << "the aggregator refused what the sidecar read: " << read_file(d / "dead.ndjson");
  auto docs = read_ndjson(d / "agg.ndjson");
  ASSERT_EQ(docs.size(), 3u) << sidecar->err() << aggregator->err();
  for (const auto &doc : docs) {
    const std::string service = str_field(doc, "service"), host = str_field(doc, "host");
    EXPECT_EQ(utf8_chars(service), 255u) << service;
    EXPECT_EQ(service.size(), 510u) << "cut at a character boundary, never inside 'é'";
    EXPECT_EQ(host, std::string(255, 'h'));
    ASSERT_TRUE(doc["meta_json"].HasMember("truncated"));
    EXPECT_EQ(str_field(doc["meta_json"], "truncated"), "service,host");
  }
}

}  // namespace
