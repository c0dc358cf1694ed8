// TLS on the listeners, end to end with the real devmesh and real clients: curl over TLS posts
// and queries, http_forward presents a client certificate to an mTLS http input (two engines),
// and what must be refused is: a client certificate from another CA, no client certificate, plain
// HTTP on a TLS port, a TLS 1.2 client under min_version 1.3, a key that does not match its
// certificate, and two instances giving one address different settings; a reload (SIGHUP) picks
// up a renewed certificate. Certificates are made
// with the openssl CLI into the test's temporary directory.
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "http_support.h"

namespace devmesh::test {
namespace {

// A CA with a server certificate (127.0.0.1, localhost) and a client certificate, and a second,
// unrelated CA with its own client certificate.
void make_certificates(const TempDir &d) {
  ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0) << "openssl is missing: run tools/setup";
  const std::string script =
      "set -e; cd " + d.path() +
      "\nkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 "
      "2>/dev/null; }"
      "\nsign() { openssl x509 -req -in $1.csr -CA $2.pem -CAkey $2.key -CAcreateserial -out "
      "$1.pem -days 2 $3 2>/dev/null; }"
      "\nfor k in ca server client wrong_ca wrong_client; do key $k.key; done"
      "\nopenssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=devmesh-test-ca"
      "\nopenssl req -x509 -new -key wrong_ca.key -out wrong_ca.pem -days 2 -subj /CN=other-ca"
      "\nprintf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.cnf"
      "\nopenssl req -new -key server.key -out server.csr -subj /CN=localhost"
      "\nsign server ca '-extfile san.cnf'"
      "\nopenssl req -new -key client.key -out client.csr -subj /CN=sidecar"
      "\nsign client ca"
      "\nopenssl req -new -key wrong_client.key -out wrong_client.csr -subj /CN=intruder"
      "\nsign wrong_client wrong_ca\n";
  std::string out, err;
  ASSERT_EQ(run({"/bin/sh", "-c", script}, d.path(), &out, &err), 0) << out << err;
}

std::string tls_options(const TempDir &d, const std::string &extra = "") {
  return ", tls.cert: " + d / "server.pem" + ", tls.key: " + d / "server.key" + extra;
}

std::string address(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// The service section's lines for an engine endpoint over TLS.
std::string service_tls(const TempDir &d, int port) {
  return "  http_listen: " + address(port) + "\n  tls.cert: " + d / "server.pem" +
         "\n  tls.key: " + d / "server.key" + "\n";
}

// Runs the curl binary; returns its exit code (0: an HTTP answer came), the status in *status.
int curl(const TempDir &d, std::vector<std::string> args, int *status = nullptr,
         std::string *body = nullptr) {
  std::vector<std::string> argv = {"/usr/bin/curl", "-s",         "-o", d / "curl.out", "-w",
                                   "%{http_code}",  "--max-time", "20"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  int rc = run(argv, d.path(), &out);
  if (status != nullptr) *status = std::atoi(out.c_str());
  if (body != nullptr) *body = read_file(d / "curl.out");
  return rc;
}

const char *kRecords = R"({"logs":[{"message":"over tls 1","service":"api"},)"
                       R"({"message":"over tls 2","service":"api"}]})";

TEST(Tls, CurlPostsAndQueriesOverTlsAndEveryListenerIsLoggedAsHttps) {
  TempDir d;
  make_certificates(d);
  const int port = free_port(), service_port = free_port();
  const std::string db = d / "logs.db";
  Devmesh e(d, "engine",
            plugins_head(service_tls(d, service_port)) + "  inputs:\n    - {name: http, listen: '" +
                address(port) + "'" + tls_options(d) +
                "}\n  outputs:\n    - {name: sqlite, path: " + db +
                ", flush_interval: 20ms}\n    - {name: query, path: " + db + ", listen: '" +
                address(port) + "'" + tls_options(d) + "}\n");
  const std::string ca = d / "ca.pem";
  const std::string health = "https://localhost:" + std::to_string(service_port) + "/health";
  ASSERT_TRUE(wait_until([&] { return curl(d, {"--cacert", ca, health}) == 0; }, 20s)) << e->err();
  write_file(d / "body.json", kRecords);
  int status = 0;
  std::string body;
  ASSERT_EQ(
      curl(d,
           {"--cacert", ca, "-H", "Content-Type: application/json", "--data-binary",
            "@" + d / "body.json", "https://127.0.0.1:" + std::to_string(port) + "/ingest/logs"},
           &status, &body),
      0);
  EXPECT_EQ(status, 200) << body;
  const std::string query = "https://localhost:" + std::to_string(port) + "/query/logs?service=api";
  EXPECT_TRUE(wait_until(
      [&] {
        return curl(d, {"--cacert", ca, query}, &status, &body) == 0 && status == 200 &&
               body.find("over tls 2") != std::string::npos;
      },
      20s))
      << status << " " << body << e->err();
  // Without the CA, curl does not trust the server: it really is TLS with our certificate.
  EXPECT_NE(curl(d, {query}), 0);

  const std::string log = e->err();
  EXPECT_NE(log.find("serving https://" + address(service_port) + ": GET /health, GET /metrics"),
            std::string::npos)
      << log;
  const size_t line = log.find("serving https://" + address(port) + ": ");
  ASSERT_NE(line, std::string::npos) << log;
  const std::string routes = log.substr(line, log.find('\n', line) - line);
  EXPECT_NE(routes.find("POST /ingest/logs"), std::string::npos) << routes;
  EXPECT_NE(routes.find("GET /query/logs"), std::string::npos) << routes;
}

// An aggregator whose http input requires client certificates signed by ca.pem; /health is on
// a plain service port.
std::string mtls_aggregator(const TempDir &d, int port, int service_port,
                            const std::string &extra = "") {
  return plugins_head("  http_listen: " + address(service_port) + "\n") +
         "  inputs:\n    - {name: http, listen: '" + address(port) + "', ack: delivered" +
         tls_options(d, ", tls.ca: " + d / "ca.pem" + extra) +
         "}\n  outputs:\n    - {name: stdout, path: " + d / "agg.ndjson" +
         ", flush_interval: 20ms}\n";
}

std::string sidecar(const TempDir &d, int agg_port, long count, const std::string &forward) {
  return plugins_head("  exit_when_done: true\n") +
         "  inputs:\n    - {name: dummy, rate: 0, count: " + std::to_string(count) +
         "}\n  outputs:\n    - {name: http_forward, retry_wait: 50ms, retry_max_wait: 500ms, url: "
         "'https://127.0.0.1:" +
         std::to_string(agg_port) + "/ingest/logs', ca_file: " + d / "ca.pem" + forward + "}\n";
}

TEST(Tls, HttpForwardPresentingAClientCertificateDeliversToAnMtlsHttpInput) {
  TempDir d;
  make_certificates(d);
  const int port = free_port(), service_port = free_port();
  Devmesh agg(d, "agg", mtls_aggregator(d, port, service_port));
  ASSERT_TRUE(agg.ready(service_port, d)) << agg->err();
  EXPECT_NE(agg->err().find("serving https://" + address(port) +
                            " (client certificates required): POST /ingest/logs"),
            std::string::npos)
      << agg->err();
  Devmesh side(d, "side",
               sidecar(d, port, 500,
                       ", client_cert: " + d / "client.pem" + ", client_key: " + d / "client.key"));
  ASSERT_EQ(side->wait_exit(60s), 0) << side->err() << agg->err();
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 500u);
}

TEST(Tls, AClientCertificateFromAnotherCaOrNoneIsRefusedAndTheListenerKeepsServing) {
  TempDir d;
  make_certificates(d);
  const int port = free_port(), service_port = free_port();
  Devmesh agg(d, "agg", mtls_aggregator(d, port, service_port));
  ASSERT_TRUE(agg.ready(service_port, d)) << agg->err();
  write_file(d / "body.json", kRecords);
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  auto post = [&](std::vector<std::string> cert) {
    std::vector<std::string> args = {
        "--cacert",      d / "ca.pem",         "-H", "Content-Type: application/json",
        "--data-binary", "@" + d / "body.json"};
    args.insert(args.end(), cert.begin(), cert.end());
    args.push_back(url);
    int status = 0;
    int rc = curl(d, args, &status);
    return rc == 0 ? status : -rc;  // a refused handshake is a curl error, never a status
  };
  EXPECT_LT(post({"--cert", d / "wrong_client.pem", "--key", d / "wrong_client.key"}), 0);
  EXPECT_LT(post({}), 0);
  // A forwarder with the wrong certificate retries and never delivers; the right one does.
  Devmesh intruder(d, "intruder",
                   sidecar(d, port, 10,
                           ", client_cert: " + d / "wrong_client.pem" +
                               ", client_key: " + d / "wrong_client.key"));
  EXPECT_TRUE(wait_until([&] { return intruder->err().find("(try") != std::string::npos; }, 30s))
      << intruder->err();
  intruder->kill(SIGKILL);
  EXPECT_EQ(read_lines(d / "agg.ndjson").size(), 0u);
  EXPECT_EQ(post({"--cert", d / "client.pem", "--key", d / "client.key"}), 200);
  EXPECT_TRUE(wait_until([&] { return read_lines(d / "agg.ndjson").size() == 2; }, 20s));
}

TEST(Tls, PlainHttpToATlsListenerIsRefusedAndItKeepsServingTls) {
  TempDir d;
  make_certificates(d);
  const int port = free_port();
  Devmesh e(d, "engine",
            plugins_head(service_tls(d, port)) +
                "  inputs:\n    - {name: dummy, rate: 0.001}\n  outputs:\n    - {name: 'null'}\n");
  const std::string https = "https://127.0.0.1:" + std::to_string(port) + "/health";
  ASSERT_TRUE(wait_until(
      [&] {
        return curl(d, {"--cacert", d / "ca.pem", https}) == 0;
      },
      20s))
      << e->err();
  int status = 0;
  EXPECT_NE(curl(d, {"http://127.0.0.1:" + std::to_string(port) + "/health"}, &status), 0);
  EXPECT_EQ(status, 0);
  EXPECT_EQ(curl(d, {"--cacert", d / "ca.pem", https}, &status), 0);
  EXPECT_EQ(status, 200);
}

TEST(Tls, MinVersion13RefusesATls12OnlyClient) {
  TempDir d;
  make_certificates(d);
  const int port = free_port(), service_port = free_port();
  Devmesh e(d, "engine",
            plugins_head("  http_listen: " + address(service_port) + "\n") +
                "  inputs:\n    - {name: http, listen: '" + address(port) + "'" +
                tls_options(d, ", tls.min_version: '1.3'") +
                "}\n  outputs:\n    - {name: 'null'}\n");
  ASSERT_TRUE(e.ready(service_port, d)) << e->err();
  write_file(d / "body.json", kRecords);
  const std::string url = "https://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
  auto post = [&](std::vector<std::string> version) {
    std::vector<std::string> args = {
        "--cacert",      d / "ca.pem",          "-H", "Content-Type: application/json",
        "--data-binary", "@" + d / "body.json", url};
    args.insert(args.begin(), version.begin(), version.end());
    int status = 0;
    int rc = curl(d, args, &status);
    return rc == 0 ? status : -rc;
  };
  EXPECT_LT(post({"--tls-max", "1.2"}), 0);  // TLS 1.2 at most: no common version
  EXPECT_EQ(post({"--tlsv1.3"}), 200);
}

// A renewed certificate is picked up by a reload (SIGHUP), with no restart: new connections get
// it, and the listener never closed (the same engine serves before and after).
TEST(Tls, AReloadPicksUpARenewedCertificate) {
  TempDir d;
  make_certificates(d);
  const int port = free_port(), service_port = free_port();
  Devmesh e(d, "engine",
            plugins_head("  http_listen: " + address(service_port) + "\n") +
                "  inputs:\n    - {name: http, listen: '" + address(port) + "'" + tls_options(d) +
                "}\n  outputs:\n    - {name: 'null'}\n");
  const std::string url = "https://localhost:" + std::to_string(port) + "/ingest/logs";
  write_file(d / "body.json", kRecords);
  auto post = [&](const std::string &ca) {
    int status = 0;
    int rc = curl(d,
                  {"--cacert", ca, "-H", "Content-Type: application/json", "--data-binary",
                   "@" + d / "body.json", url},
                  &status);
    return rc == 0 ? status : -rc;
  };
  ASSERT_TRUE(wait_until([&] { return post(d / "ca.pem") == 200; }, 20s)) << e->err();
  // Renewal: a new key and certificate from another CA, written over the configured files.
  const std::string script =
      "set -e; cd " + d.path() +
      "\nopenssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out new_ca.key"
      "\nopenssl req -x509 -new -key new_ca.key -out new_ca.pem -days 2 -subj /CN=renewed-ca"
      "\nopenssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out renewed.key"
      "\nopenssl req -new -key renewed.key -out renewed.csr -subj /CN=localhost"
      "\nopenssl x509 -req -in renewed.csr -CA new_ca.pem -CAkey new_ca.key -CAcreateserial "
      "-out renewed.pem -days 2 -extfile san.cnf 2>/dev/null"
      "\ncp renewed.key server.key && cp renewed.pem server.pem\n";
  std::string out, err;
  ASSERT_EQ(run({"/bin/sh", "-c", script}, d.path(), &out, &err), 0) << out << err;
  EXPECT_EQ(post(d / "ca.pem"), 200);  // not reloaded yet: the old certificate is served
  e->kill(SIGHUP);
  EXPECT_TRUE(wait_until([&] { return post(d / "new_ca.pem") == 200; }, 20s)) << e->err();
  EXPECT_LT(post(d / "ca.pem"), 0);  // the old CA no longer verifies what is served
  EXPECT_TRUE(e->running());
}

TEST(Tls, AKeyNotMatchingItsCertificateIsAConfigErrorAtItsPlaceNamingBothFiles) {
  TempDir d;
  make_certificates(d);
  const int port = free_port();
  Devmesh e(d, "engine",
            plugins_head() + "  inputs:\n    - {name: http, listen: '" + address(port) +
                "', tls.cert: " + d / "server.pem" + ", tls.key: " + d / "client.key" +
                "}\n  outputs:\n    - {name: 'null'}\n");
  EXPECT_EQ(e->wait_exit(30s), 1) << e->err();
  const std::string log = e->err();
  EXPECT_NE(log.find("tls.key " + d / "client.key" +
                     " does not match the certificate in tls.cert " + d / "server.pem"),
            std::string::npos)
      << log;
  // Found by the pipeline checks, so --dry-run (and a reload) report it at the option.
  // (its column depends on the port's digits in the flow mapping before it)
  EXPECT_NE(log.find("engine.yaml:5:"), std::string::npos) << log;
  EXPECT_NE(log.find(": pipeline.inputs[0].tls.cert: tls.key "), std::string::npos) << log;
}

TEST(Tls, TwoInstancesGivingOneAddressDifferentSettingsIsAStartErrorNamingBoth) {
  TempDir d;
  make_certificates(d);
  const int port = free_port();
  Devmesh e(d, "engine",
            plugins_head() + "  inputs:\n    - {name: http, listen: '" + address(port) + "'" +
                tls_options(d) + "}\n  outputs:\n    - {name: query, path: " + d / "q.db" +
                ", listen: '" + address(port) + "'" + tls_options(d, ", tls.ca: " + d / "ca.pem") +
                "}\n");
  EXPECT_EQ(e->wait_exit(30s), 1) << e->err();
  const std::string log = e->err();
  // Whichever starts second is refused, naming the first (outputs start before inputs).
  const size_t at = log.find("settings differ from '");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line =
      log.substr(log.rfind('\n', at) + 1, log.find('\n', at) - log.rfind('\n', at));
  EXPECT_NE(line.find("http.0"), std::string::npos) << line;
  EXPECT_NE(line.find("query.0"), std::string::npos) << line;
  EXPECT_NE(line.find("tls.ca"), std::string::npos) << line;
}

TEST(Tls, ABearerTokenOnANonLoopbackAddressWithoutTlsIsWarnedAbout) {
  TempDir d;
  make_certificates(d);
  const int plain = free_port(), tls = free_port(), service_port = free_port();
  Devmesh e(d, "engine",
            plugins_head("  http_listen: " + address(service_port) + "\n") +
                "  inputs:\n    - {name: http, alias: open, auth_token: t, listen: '0.0.0.0:" +
                std::to_string(plain) +
                "'}\n    - {name: http, alias: safe, auth_token: t, listen: '0.0.0.0:" +
                std::to_string(tls) + "'" + tls_options(d) +
                "}\n    - {name: http, alias: local, auth_token: t, listen: '127.0.0.1:" +
                std::to_string(free_port()) + "'}\n  outputs:\n    - {name: 'null'}\n");
  ASSERT_TRUE(e.ready(service_port, d)) << e->err();
  const std::string log = e->err();
  const std::string warning = "the token crosses the network in clear text";
  EXPECT_NE(log.find("[open] auth_token is set on 0.0.0.0:" + std::to_string(plain)),
            std::string::npos)
      << log;
  EXPECT_NE(log.find(warning), std::string::npos) << log;
  EXPECT_EQ(log.find(warning), log.rfind(warning)) << "only the plain non-loopback one: " << log;
}

}  // namespace
}  // namespace devmesh::test
