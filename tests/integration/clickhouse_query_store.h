// The ClickHouse side of the query tests that run each case on both stores (query_ai_test,
// query_context_test): a private clickhouse-server 18.16 (tests/support/clickhouse.h) whose
// table is made by the clickhouse output, so its schema is the plugin's own, holding the test's
// rows, and a devmesh whose query plugin reads it (store: clickhouse).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "clickhouse.h"
#include "store_test_support.h"

namespace devmesh::test {

class ClickHouseQueryStore {
 public:
  ClickHouseQueryStore() = default;
  ~ClickHouseQueryStore() {
    // The engine first: it must not see its store vanish under it.
    if (engine) {
      engine->kill(SIGTERM);
      engine->wait_exit(std::chrono::seconds(20));
    }
  }
  ClickHouseQueryStore(const ClickHouseQueryStore &) = delete;
  ClickHouseQueryStore &operator=(const ClickHouseQueryStore &) = delete;

  // Starts the server in dir, makes the table, puts in rows (a VALUES list for
  // devmesh.log_events) and starts the query engine on a free port, with its /metrics on
  // metrics_port (0: none). Call through ASSERT_NO_FATAL_FAILURE or as the last step: a step
  // that fails fails the test and leaves the rest undone.
  void start(const TempDir &dir, const std::string &rows, int metrics_port = 0) {
    server = std::make_unique<ClickHouse>(dir.path());
    std::string err;
    ASSERT_TRUE(server->start(&err)) << err;
    const std::string connection = "url: '" + server->url() + "', user: " + ClickHouse::kUser +
                                   ", password: " + ClickHouse::kPassword;
    auto setup = start_engine(dir,
                              plugins_head("  exit_when_done: true\n") +
                                  "  inputs:\n    - {name: dummy, rate: 0, count: 1, service: "
                                  "setup, tag: setup}\n"
                                  "  outputs:\n    - {name: clickhouse, " +
                                  connection + "}\n",
                              "ch-setup");
    ASSERT_EQ(setup->wait_exit(std::chrono::seconds(30)), 0) << setup->err();
    server->sql("TRUNCATE TABLE devmesh.log_events", &err);
    ASSERT_EQ(err, "");
    server->sql("INSERT INTO devmesh.log_events VALUES " + rows, &err);
    ASSERT_EQ(err, "");
    port = free_port();
    const std::string listen =
        metrics_port ? "  http_listen: 127.0.0.1:" + std::to_string(metrics_port) + "\n" : "";
    engine = start_engine(dir,
                          plugins_head(listen) +
                              "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                              "  outputs:\n    - {name: query, match: none, store: "
                              "clickhouse, listen: 127.0.0.1:" +
                              std::to_string(port) + ", " + connection + "}\n",
                          "ch-query");
    const std::string health = "http://127.0.0.1:" + std::to_string(port) + "/health";
    ASSERT_TRUE(wait_until([&] { return http(health).status == 200; }, std::chrono::seconds(20)))
        << engine->err();
  }

  std::unique_ptr<ClickHouse> server;
  std::unique_ptr<Process> engine;
  int port = 0;  // the query plugin's
};

}  // namespace devmesh::test
