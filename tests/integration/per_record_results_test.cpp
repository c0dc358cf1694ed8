// Per-record results (host flush_record_status) at bulk size, through the real binary: one bad
// record in a 10,000-record flush costs one dead-letter line and one flush call, where SPLIT
// would bisect (about 2 log2(10,000) = 28 flushes) to find it.
#include <gtest/gtest.h>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

TEST(PerRecordResults, OneBadRecordInTenThousandIsOneDeadLetterLineAndOneFlushCall) {
  TempDir d;
  const int port = free_port();
  // One submitted batch of 10,000 and an output that flushes on 10,000 records (its bytes and
  // time bounds out of reach): exactly one flush can hold them all.
  Devmesh dm(d, "engine",
             plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
                 "  inputs:\n"
                 "    - {name: dummy, rate: 0, count: 10000, batch: 10000, message: 'record "
                 "{seq}.'}\n"
                 "  outputs:\n"
                 "    - {name: flaky, path: " +
                 d / "out.txt" + ", attempts_path: " + d / "attempts.txt" +
                 ", poison: 'record 5000.', per_record: true, fail_status: error,"
                 " batch_size: 10000, batch_bytes: 256MiB, flush_interval: 1h,"
                 " dead_letter_path: " +
                 d / "dead.ndjson" + "}\n");
  ASSERT_TRUE(dm.ready(port, d)) << dm->err();
  std::string why;
  ASSERT_TRUE(wait_settled(port, d.path(), 60s, &why)) << why << dm->err();
  std::string metrics;
  ASSERT_EQ(http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d.path()),
            200);

  EXPECT_EQ(metric_value(metrics, "devmesh_flaky_flushes_total", ""), 1) << "no bisection";
  auto attempts = read_lines(d / "attempts.txt");
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_NE(attempts[0].find(" 10000 fail"), std::string::npos) << attempts[0];

  auto dead = read_ndjson(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(str_field(dead[0], "reason"), "poison record 5000");
  EXPECT_EQ(str_field(dead[0]["record"], "message"), "record 5000.");
  EXPECT_EQ(metric_value(metrics, "devmesh_records_dead_lettered_total", "plugin=\"flaky\""), 1);

  auto out = read_lines(d / "out.txt");
  EXPECT_EQ(out.size(), 9999u);
  for (const auto &l : out) EXPECT_EQ(l.find("record 5000."), std::string::npos) << l;
  EXPECT_EQ(metric_value(metrics, "devmesh_records_out_total", "plugin=\"flaky\""), 9999);
  EXPECT_EQ(metric_value(metrics, "devmesh_records_retried_total", "plugin=\"flaky\""), 0);
  EXPECT_EQ(metric_value(metrics, "devmesh_dummy_ack_deliveries_total", ""), 9999);
  EXPECT_EQ(metric_value(metrics, "devmesh_dummy_ack_dead_lettered_total", ""), 1);

  dm->kill(SIGTERM);
  EXPECT_EQ(dm->wait_exit(30s), 0) << dm->err();
}

}  // namespace
