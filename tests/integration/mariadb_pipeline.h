// A GoogleTest fixture for the mariadb output's tests (mariadb_test, store_limits_test): a
// private mariadbd per test (temp datadir, unix socket), pipelines of inputs into one mariadb
// output, the engine started with the server's password in its environment, and row counts.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "mariadb.h"
#include "process.h"

namespace devmesh::test {

// The previous release's CREATE TABLE, verbatim (git show 9cb8ea1:plugins/common/
// mariadb_connection.hpp, full_text: true): no pattern_id, no patterns table.
inline std::string previous_release_table(const std::string &table = "log_events") {
  return "CREATE TABLE IF NOT EXISTS `" + table +
         "` (\n"
         "  id BIGINT AUTO_INCREMENT PRIMARY KEY,\n"
         "  timestamp DATETIME(6) NOT NULL,\n"
         "  source VARCHAR(255) NOT NULL,\n"
         "  service VARCHAR(255) NOT NULL,\n"
         "  host VARCHAR(255) NOT NULL,\n"
         "  level ENUM('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL') NOT NULL,\n"
         "  trace_id VARCHAR(64) DEFAULT NULL,\n"
         "  span_id VARCHAR(32) DEFAULT NULL,\n"
         "  event_type VARCHAR(100) DEFAULT NULL,\n"
         "  error_code VARCHAR(50) DEFAULT NULL,\n"
         "  message MEDIUMTEXT NOT NULL,\n"
         "  meta_json JSON DEFAULT NULL,\n"
         "  event_id BINARY(16) DEFAULT NULL,\n"
         "  INDEX idx_timestamp (timestamp),\n"
         "  INDEX idx_service (service),\n"
         "  INDEX idx_host (host),\n"
         "  INDEX idx_level (level),\n"
         "  INDEX idx_service_timestamp (service, timestamp),\n"
         "  INDEX idx_host_timestamp (host, timestamp),\n"
         "  INDEX idx_trace_id (trace_id),\n"
         "  UNIQUE KEY uk_event_id (event_id),\n"
         "  FULLTEXT KEY ft_message (message)\n"
         ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
}

class MariaDbPipelineTest : public ::testing::Test {
 protected:
  // The output reads its password from here, as a user's ${VAR} would.
  static constexpr const char *kPasswordEnv = "DEVMESH_TEST_DB_PASSWORD";

  void SetUp() override { start_server({}); }

  // (Re)starts the server with extra mariadbd arguments (TLS, max_allowed_packet, ...).
  void start_server(std::vector<std::string> extra_args) {
    MariaDb::Options o;
    o.extra_args = std::move(extra_args);
    db_ = std::make_unique<MariaDb>(d_.path(), o);
    std::string err;
    ASSERT_TRUE(db_->start(&err)) << err;
  }

  // A pipeline of `inputs` into one mariadb output (extra keys appended to it).
  std::string yaml(const std::string &inputs, const std::string &output_extra = "",
                   const std::string &service_extra = "  exit_when_done: true\n") {
    return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n  grace: 20s\n" + service_extra +
           "pipeline:\n  inputs:\n" + inputs +
           "  outputs:\n    - name: mariadb\n      socket: " + db_->socket() +
           "\n      password: ${" + kPasswordEnv +
           ":-}\n      dead_letter_path: " + d_ / "dead.ndjson" + "\n" + output_extra;
  }

  // The engine on `config`, with `password` in kPasswordEnv and `env` besides.
  std::unique_ptr<Process> engine(const std::string &config, const std::string &name = "engine",
                                  const std::string &password = MariaDb::kPassword,
                                  std::vector<std::string> env = {}) {
    write_file(d_ / (name + ".yaml"), config);
    env.push_back(std::string(kPasswordEnv) + "=" + password);
    return std::make_unique<Process>(
        std::vector<std::string>{DEVMESH_BIN, "-c", d_ / (name + ".yaml")}, d_.path(), name, env);
  }

  long long rows(const std::string &where = "1") {
    return db_->number("SELECT COUNT(*) FROM log_events WHERE " + where);
  }

  TempDir d_;
  std::unique_ptr<MariaDb> db_;
};

}  // namespace devmesh::test
