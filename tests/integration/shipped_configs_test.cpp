// The shipped configurations (conf/*.yaml) driven only through their variables, as the
// package's units do with /etc/default/devmesh-<role>: the aggregator reaches MariaDB by its
// unix socket (DB_SOCKET) and over TLS variables, the sidecar takes an unused TLS variable
// (empty) as unset, and a half-set pair is a problem named by its option.
#include <string>
#include <vector>

#include "http_support.h"
#include "mariadb_pipeline.h"

namespace devmesh::test {
namespace {

std::string shipped(const std::string &role) {
  std::string config = read_file(DEVMESH_SOURCE_DIR "/conf/" + role + ".yaml");
  // The one thing a test cannot set from the environment: where this build's plugins are.
  config.replace(config.find("service:\n"), 9,
                 "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n");
  return config;
}

struct DryRun {
  int code;
  std::string err;
};

DryRun dry_run(const TempDir &d, const std::string &role, std::vector<std::string> env) {
  write_file(d / (role + ".yaml"), shipped(role));
  env.push_back("DEVMESH_STATE_DIR=" + d / "state");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / (role + ".yaml")}, d.path(), "dry-" + role, env);
  const int code = p.wait_exit(30s);
  return {code, p.out() + p.err()};
}

class ShippedAggregator : public MariaDbPipelineTest {};

// DB_HOST and DB_PORT point nowhere: only the socket can be what the aggregator used.
TEST_F(ShippedAggregator, ReachesMariaDbThroughItsUnixSocketWhenDbSocketIsSet) {
  const int listen = free_port(), admin = free_port();
  auto e = engine(
      shipped("aggregator"), "aggregator", MariaDb::kPassword,
      {"DEVMESH_LISTEN=127.0.0.1:" + std::to_string(listen),
       "DEVMESH_HTTP_LISTEN=127.0.0.1:" + std::to_string(admin), "DB_SOCKET=" + db_->socket(),
       "DB_HOST=unreachable.invalid", "DB_PORT=1", std::string("DB_PASSWORD=") + MariaDb::kPassword,
       "DEVMESH_STATE_DIR=" + d_ / "state"});
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(admin) + "/health", nullptr,
                        d_.path()) == 200;
      },
      60s))
      << e->err();
  HttpResult r = libcurl_post(
      "http://127.0.0.1:" + std::to_string(listen) + "/ingest/logs",
      R"({"logs":[{"service":"by-socket","host":"h1","message":"through DB_SOCKET"}]})",
      {"Content-Type: application/json"});
  // ack: delivered: the 200 comes once MariaDB committed the row.
  EXPECT_EQ(r.status, 200) << r.body << e->err();
  EXPECT_EQ(rows("service = 'by-socket'"), 1);
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

TEST(ShippedConfigs, EmptyTlsAndSocketVariablesMeanUnsetAndEveryFilePassesDryRun) {
  TempDir d;
  const std::vector<std::string> empty = {
      "DEVMESH_TLS_CA=", "DEVMESH_TLS_CERT=", "DEVMESH_TLS_KEY=", "DB_SOCKET=",    "DB_SSL_CA=",
      "DB_SSL_CERT=",    "DB_SSL_KEY=",       "DB_TLS=",          "DB_SSL_VERIFY="};
  for (const char *role : {"standalone", "sidecar", "aggregator"}) {
    DryRun r = dry_run(d, role, empty);
    EXPECT_EQ(r.code, 0) << role << ": " << r.err;
    EXPECT_NE(r.err.find("configuration OK"), std::string::npos) << role << ": " << r.err;
  }
}

TEST(ShippedConfigs, ATlsFileVariableThatNamesNoFileIsAProblemAtItsOption) {
  TempDir d;
  DryRun r = dry_run(d, "sidecar", {"DEVMESH_TLS_CA=" + d / "no-such-ca.pem"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("ca_file: cannot read " + d / "no-such-ca.pem"), std::string::npos) << r.err;
}

TEST(ShippedConfigs, AMariaDbClientCertificateWithoutItsKeyIsAProblemAtTheOption) {
  TempDir d;
  write_file(d / "client.pem", "not checked before the key\n");
  DryRun r = dry_run(d, "aggregator", {"DB_SSL_CERT=" + d / "client.pem"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("ssl_cert and ssl_key: set both or neither"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace devmesh::test
