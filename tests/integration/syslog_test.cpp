// The syslog input through the real binary and real senders: bsdutils' logger, rsyslog's omfwd
// (rsyslogd run here with its own config, socket and work directory) and Fluent Bit's
// out_syslog, over UDP, TCP with octet counting and with newline framing, and TLS; the records
// stored by sqlite and read back through the query API. Then bad input from raw sockets:
// malformed PRI, binary junk, invalid octet counts, frames over max_message_size, a slow-loris
// peer, more peers than max_connections, a TLS peer that never handshakes, and UDP datagrams
// the kernel drops while the engine is stopped: each kept or counted, and the engine goes on
// serving the other peers.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

std::string address(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

std::string short_hostname() {
  char name[256] = "";
  gethostname(name, sizeof name - 1);
  std::string s = name;
  return s.substr(0, s.find('.'));
}

// An engine with the given syslog inputs (YAML flow-map bodies, one per input), every record
// stored by sqlite and served by the query output.
class Engine {
 public:
  explicit Engine(const std::vector<std::string> &inputs, const std::string &extra_outputs = "",
                  const std::string &extra_service = "") {
    db_ = d_ / "syslog.db";
    std::string yaml =
        plugins_head("  http_listen: " + address(http_port_) + "\n" + extra_service) +
        "  inputs:\n";
    for (const std::string &in : inputs) yaml += "    - {name: syslog, " + in + "}\n";
    yaml += "  outputs:\n    - {name: sqlite, path: " + db_ +
            "}\n    - {name: query, match: none, listen: '" + address(query_port_) +
            "', path: " + db_ + "}\n" + extra_outputs;
    for (size_t at; (at = yaml.find("{DIR}")) != std::string::npos;) yaml.replace(at, 5, d_.path());
    proc_ = start_engine(d_, yaml);
    inputs_ = inputs.size();
  }

  const TempDir &dir() const { return d_; }
  Process &proc() { return *proc_; }
  int query_port() const { return query_port_; }
  std::string health_address() const { return address(http_port_); }

  // Every input listening (each logs "receiving syslog on ..." once it is).
  bool ready() {
    return wait_until(
        [&] {
          const std::string err = proc_->err();
          size_t n = 0;
          for (size_t at = 0; (at = err.find("receiving syslog on", at)) != std::string::npos; ++at)
            ++n;
          return n == inputs_ && http("http://" + address(http_port_) + "/health").status != 0;
        },
        20s);
  }

  std::string metrics() { return http("http://" + address(http_port_) + "/metrics").body; }
  // The sum over the instances of the samples of `name` whose labels hold `labels`.
  double metric(const std::string &name, const std::string &labels = "") {
    const std::string text = metrics(), full = "devmesh_" + name;
    double sum = 0;
    bool found = false;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(full + "{", 0) != 0 || line.find(labels) == std::string::npos) continue;
      sum += std::atof(line.substr(line.rfind(' ') + 1).c_str());
      found = true;
    }
    if (!found) ADD_FAILURE() << "no sample " << full << " with " << labels;
    return sum;
  }
  bool wait_metric(const std::string &name, const std::string &labels, double at_least) {
    return wait_until(
        [&] {
          auto v = find_metric(metrics(), "devmesh_" + name, labels);
          return v && *v >= at_least;
        },
        30s);
  }

  // Rows of a query on the store (empty while the table does not exist yet).
  std::vector<std::vector<std::string>> rows(const std::string &sql) {
    try {
      SqliteDb db(db_);
      return db.rows(sql);
    } catch (const std::exception &) {
      return {};
    }
  }
  long count(const std::string &where) {
    auto r = rows("SELECT count(*) FROM log_events WHERE " + where);
    return r.empty() ? 0 : std::atol(r[0][0].c_str());
  }
  bool wait_count(const std::string &where, long n) {
    return wait_until([&] { return count(where) >= n; }, 30s);
  }
  // service, host, level, message, meta_json of the one record whose message is `message`.
  std::vector<std::string> record(const std::string &message) {
    auto r = rows(
        "SELECT service, host, level, message, meta_json FROM log_events WHERE message "
        "= '" +
        message + "'");
    return r.size() == 1 ? r[0] : std::vector<std::string>{};
  }
  std::string meta(const std::string &message, const std::string &path) {
    auto r = rows("SELECT json_extract(meta_json, '$.\"" + path + "\"') || '/' || " +
                  "json_type(meta_json, '$.\"" + path + "\"') FROM log_events WHERE message = '" +
                  message + "'");
    return r.size() == 1 ? r[0][0] : "(" + std::to_string(r.size()) + " rows)";
  }

 private:
  TempDir d_;
  int http_port_ = free_port(), query_port_ = free_port();
  std::string db_;
  std::unique_ptr<Process> proc_;
  size_t inputs_ = 0;
};

// ---- raw peers ------------------------------------------------------------------------------

int tcp_connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string &bytes) {
  for (size_t at = 0; at < bytes.size();) {
    const ssize_t n = send(fd, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

void tcp_send(int port, const std::string &bytes) {
  const int fd = tcp_connect(port);
  ASSERT_GE(fd, 0);
  EXPECT_TRUE(send_all(fd, bytes));
  close(fd);
}

void udp_send(int port, const std::string &datagram) {
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(
      sendto(fd, datagram.data(), datagram.size(), 0, reinterpret_cast<sockaddr *>(&a), sizeof a),
      static_cast<ssize_t>(datagram.size()));
  close(fd);
}

// RFC 6587 octet counting.
std::string octets(const std::string &msg) {
  return std::to_string(msg.size()) + " " + msg;
}

// True once the peer closed fd (recv gives 0 or an error), within 30 s.
bool closed_by_peer(int fd) {
  timeval tv{30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  char c;
  return recv(fd, &c, 1, 0) <= 0;
}

std::string tcp_input(int port, const std::string &extra = "") {
  return "mode: tcp, listen: '" + address(port) + "', tag: s.tcp" + extra;
}
std::string udp_input(int port, const std::string &extra = "") {
  return "mode: udp, listen: '" + address(port) + "', tag: s.udp" + extra;
}

int run_logger(const TempDir &d, std::vector<std::string> args) {
  args.insert(args.begin(), "/usr/bin/logger");
  std::string out, err;
  const int rc = run(args, d.path(), &out, &err);
  EXPECT_EQ(rc, 0) << err;
  return rc;
}

// ---- logger ---------------------------------------------------------------------------------

TEST(SyslogLogger, MessagesOverTcpAndUdpInBothFormatsAndFramingsAreStoredWithTheirColumns) {
  if (access("/usr/bin/logger", X_OK) != 0) GTEST_SKIP() << "/usr/bin/logger is missing";
  const int port = free_port();
  // One port number, both transports.
  Engine e({tcp_input(port), udp_input(port, ", receive_buffer: 4MiB")});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string p = std::to_string(port);
  const std::vector<std::string> to = {"--server", "127.0.0.1", "--port", p};
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.begin(), to.begin(), to.end());
    return a;
  };
  run_logger(e.dir(), with({"--tcp",
                            "--octet-count",
                            "--rfc5424",
                            "-p",
                            "local3.err",
                            "-t",
                            "app5424",
                            "--id=4242",
                            "--msgid",
                            "M42",
                            "--sd-id",
                            "ex@32473",
                            "--sd-param",
                            "count=\"42\"",
                            "--sd-param",
                            "ratio=\"1.5\"",
                            "--sd-param",
                            "who=\"a \\\"quoted\\\" name\"",
                            "--sd-param",
                            "code=\"007\"",
                            "octet counted 5424"}));
  run_logger(e.dir(), with({"--tcp", "--rfc5424", "-p", "user.debug", "-t", "lf5424",
                            "newline framed 5424"}));
  run_logger(e.dir(), with({"--tcp", "--octet-count", "--rfc3164", "-p", "mail.crit", "-t",
                            "bsdtcp", "--id=17", "octet counted 3164"}));
  run_logger(e.dir(), with({"--udp", "--rfc3164", "-p", "daemon.warning", "-t", "bsdudp", "--id=99",
                            "udp 3164"}));
  run_logger(e.dir(),
             with({"--udp", "--rfc5424", "-p", "local7.emerg", "-t", "udp5424", "udp 5424"}));
  ASSERT_TRUE(e.wait_count("source = 'syslog'", 5)) << e.proc().err();

  const std::string host = short_hostname();
  auto r = e.record("octet counted 5424");
  ASSERT_EQ(r.size(), 5u) << e.rows("SELECT message FROM log_events").size();
  EXPECT_EQ(r[0], "app5424");
  EXPECT_EQ(r[1].rfind(host, 0), 0u) << r[1];
  EXPECT_EQ(r[2], "ERROR");
  EXPECT_EQ(e.meta("octet counted 5424", "facility"), "local3/text");
  EXPECT_EQ(e.meta("octet counted 5424", "procid"), "4242/integer");
  EXPECT_EQ(e.meta("octet counted 5424", "msgid"), "M42/text");
  // Structured data: typed where the value is exactly a number, unescaped, "007" kept a string.
  EXPECT_EQ(e.meta("octet counted 5424", "sd.ex@32473.count"), "42/integer");
  EXPECT_EQ(e.meta("octet counted 5424", "sd.ex@32473.ratio"), "1.5/real");
  EXPECT_EQ(e.meta("octet counted 5424", "sd.ex@32473.who"), "a \"quoted\" name/text");
  EXPECT_EQ(e.meta("octet counted 5424", "sd.ex@32473.code"), "007/text");
  // logger's own element (RFC 5424's registered timeQuality).
  EXPECT_EQ(e.meta("octet counted 5424", "sd.timeQuality.tzKnown"), "1/integer");

  r = e.record("newline framed 5424");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "lf5424");
  EXPECT_EQ(r[2], "DEBUG");
  r = e.record("octet counted 3164");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "bsdtcp");
  EXPECT_EQ(r[1], host);
  EXPECT_EQ(r[2], "CRITICAL");
  EXPECT_EQ(e.meta("octet counted 3164", "facility"), "mail/text");
  EXPECT_EQ(e.meta("octet counted 3164", "procid"), "17/integer");
  r = e.record("udp 3164");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "bsdudp");
  EXPECT_EQ(r[2], "WARN");
  EXPECT_EQ(e.meta("udp 3164", "facility"), "daemon/text");
  r = e.record("udp 5424");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[2], "FATAL");
  EXPECT_EQ(e.meta("udp 5424", "facility"), "local7/text");
  EXPECT_EQ(e.metric("syslog_messages_total", "transport=\"tcp\""), 3);
  EXPECT_EQ(e.metric("syslog_messages_total", "transport=\"udp\""), 2);
  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"pri\""), 0);

  // The query API returns them with their columns and typed meta.
  const HttpResponse q = http("http://" + address(e.query_port()) + "/query/logs?service=app5424");
  ASSERT_EQ(q.status, 200) << q.body;
  rapidjson::Document doc;
  doc.Parse(q.body.c_str());
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 1) << q.body;
  EXPECT_STREQ(doc[0]["message"].GetString(), "octet counted 5424");
  EXPECT_STREQ(doc[0]["level"].GetString(), "ERROR");
  EXPECT_STREQ(doc[0]["source"].GetString(), "syslog");
  EXPECT_TRUE(doc[0]["meta_json"]["sd.ex@32473.count"].IsInt()) << q.body;
  EXPECT_TRUE(doc[0]["meta_json"]["procid"].IsInt()) << q.body;
}

// ---- rsyslog --------------------------------------------------------------------------------

// rsyslogd in the foreground with its own config, pid file and work directory: its imuxsock
// reads its own socket (not the system's), which logger writes to; four omfwd actions, each
// taking the messages that name it, send to devmesh in four ways.
TEST(SyslogRsyslog, OmfwdOverUdpAndTcpWithOctetCountingAndNewlineFramingIsStored) {
  if (access("/usr/sbin/rsyslogd", X_OK) != 0) GTEST_SKIP() << "/usr/sbin/rsyslogd is missing";
  const int port = free_port();
  Engine e({tcp_input(port), udp_input(port)});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const TempDir &d = e.dir();
  const std::string sock = d / "rsyslog.sock", p = std::to_string(port);
  auto fwd = [&](const std::string &word, const std::string &how) {
    return "if $msg contains '" + word + "' then {\n  action(type=\"omfwd\" target=\"127.0.0.1\" " +
           "port=\"" + p + "\" " + how + ")\n}\n";
  };
  write_file(
      d / "rsyslog.conf",
      "global(workDirectory=\"" + d.path() +
          "\")\n"
          "module(load=\"imuxsock\" SysSock.Use=\"off\")\n"
          "input(type=\"imuxsock\" Socket=\"" +
          sock + "\" RateLimit.Interval=\"0\")\n" +
          fwd("rs-udp-5424", "protocol=\"udp\" template=\"RSYSLOG_SyslogProtocol23Format\"") +
          fwd("rs-udp-bsd", "protocol=\"udp\" template=\"RSYSLOG_TraditionalForwardFormat\"") +
          fwd("rs-tcp-octet",
              "protocol=\"tcp\" TCP_Framing=\"octet-counted\" "
              "template=\"RSYSLOG_SyslogProtocol23Format\"") +
          fwd("rs-tcp-lf", "protocol=\"tcp\" template=\"RSYSLOG_ForwardFormat\""));
  std::string out, err;
  ASSERT_EQ(run({"/usr/sbin/rsyslogd", "-N1", "-f", d / "rsyslog.conf"}, d.path(), &out, &err), 0)
      << out << err;
  Process rsyslogd({"/usr/sbin/rsyslogd", "-n", "-f", d / "rsyslog.conf", "-i", d / "rsyslog.pid"},
                   d.path(), "rsyslogd");
  ASSERT_TRUE(wait_until([&] { return access(sock.c_str(), W_OK) == 0; }, 20s)) << rsyslogd.err();
  for (const char *word : {"rs-udp-5424", "rs-udp-bsd", "rs-tcp-octet", "rs-tcp-lf"})
    run_logger(d, {"-u", sock, "-t", "rsapp", "--id=321", "-p", "daemon.warning",
                   std::string("via ") + word});
  ASSERT_TRUE(e.wait_count("service = 'rsapp'", 4))
      << e.proc().err() << rsyslogd.err() << rsyslogd.out();
  const std::string host = short_hostname();
  for (const char *word : {"rs-udp-5424", "rs-udp-bsd", "rs-tcp-octet", "rs-tcp-lf"}) {
    const std::string message = std::string("via ") + word;
    auto r = e.record(message);
    ASSERT_EQ(r.size(), 5u) << message << ": " << e.rows("SELECT message FROM log_events").size();
    EXPECT_EQ(r[0], "rsapp") << message;
    EXPECT_EQ(r[1], host) << message;
    EXPECT_EQ(r[2], "WARN") << message;
    EXPECT_EQ(e.meta(message, "facility"), "daemon/text") << message;
    EXPECT_EQ(e.meta(message, "procid"), "321/integer") << message;
  }
  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"pri\""), 0);
  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"header\""), 0);
  // RSYSLOG_ForwardFormat's RFC 3339 timestamp keeps its fraction (a BSD one has none).
  auto ts = e.rows("SELECT timestamp FROM log_events WHERE message = 'via rs-tcp-lf'");
  ASSERT_EQ(ts.size(), 1u);
  const long long ns = std::atoll(ts[0][0].c_str());
  EXPECT_GT(ns, 0);
}

// ---- Fluent Bit -----------------------------------------------------------------------------

bool have_fluent_bit() {
  return access(FLUENT_BIT_BIN, X_OK) == 0;
}

// Fluent Bit's dummy input sending `samples` records through out_syslog with `params`; it runs
// until the returned process is gone (Fluent Bit has no exit-when-done for dummy).
std::unique_ptr<Process> fluent_bit_send(const TempDir &d, const std::string &record, int samples,
                                         std::vector<std::string> params) {
  static int runs = 0;
  std::vector<std::string> argv = {FLUENT_BIT_BIN,
                                   "-i",
                                   "dummy",
                                   "-p",
                                   "dummy=" + record,
                                   "-p",
                                   "samples=" + std::to_string(samples),
                                   "-p",
                                   "rate=50",
                                   "-o",
                                   "syslog",
                                   "-p",
                                   "host=127.0.0.1",
                                   "-p",
                                   "syslog_message_key=log",
                                   "-p",
                                   "syslog_hostname_key=host",
                                   "-p",
                                   "syslog_appname_key=app",
                                   "-p",
                                   "syslog_procid_key=pid",
                                   "-p",
                                   "syslog_msgid_key=msgid",
                                   "-p",
                                   "syslog_severity_key=sev",
                                   "-p",
                                   "syslog_facility_key=fac",
                                   "-p",
                                   "syslog_sd_key=origin",
                                   "-f",
                                   "0.2"};
  for (auto &p : params) {
    argv.push_back("-p");
    argv.push_back(p);
  }
  return std::make_unique<Process>(argv, d.path(), "fluent-bit-" + std::to_string(++runs));
}

TEST(SyslogFluentBit, OutSyslogInRfc5424OverTcpAndRfc3164OverUdpIsStored) {
  if (!have_fluent_bit()) GTEST_SKIP() << FLUENT_BIT_BIN << " is missing";
  const int port = free_port();
  Engine e({tcp_input(port), udp_input(port)});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string p = std::to_string(port);
  auto fb1 =
      fluent_bit_send(e.dir(),
                      R"({"log":"fb 5424 tcp","host":"fbhost","app":"fbapp","pid":"77",)"
                      R"("msgid":"FBM","sev":"3","fac":"4","origin":{"ip":"10.1.2.3","n":"5"}})",
                      3, {"port=" + p, "mode=tcp", "syslog_format=rfc5424"});
  auto fb2 =
      fluent_bit_send(e.dir(), R"({"log":"fb 3164 udp","host":"bsdhost","app":"bsdapp","sev":"6"})",
                      2, {"port=" + p, "mode=udp", "syslog_format=rfc3164"});
  ASSERT_TRUE(e.wait_count("message = 'fb 5424 tcp'", 3)) << e.proc().err() << fb1->err();
  ASSERT_TRUE(e.wait_count("message = 'fb 3164 udp'", 2)) << e.proc().err() << fb2->err();
  auto r = e.rows(
      "SELECT service, host, level, meta_json FROM log_events WHERE message = 'fb "
      "5424 tcp' LIMIT 1");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0][0], "fbapp");
  EXPECT_EQ(r[0][1], "fbhost");
  EXPECT_EQ(r[0][2], "ERROR");
  auto meta = e.rows(
      "SELECT json_extract(meta_json, '$.facility'), json_extract(meta_json, "
      "'$.procid'), json_extract(meta_json, '$.msgid'), json_extract(meta_json, "
      "'$.\"sd.origin.ip\"'), json_type(meta_json, '$.\"sd.origin.n\"') FROM "
      "log_events WHERE message = 'fb 5424 tcp' LIMIT 1");
  ASSERT_EQ(meta.size(), 1u);
  EXPECT_EQ(meta[0], (std::vector<std::string>{"auth", "77", "FBM", "10.1.2.3", "integer"}));
  r = e.rows("SELECT service, host, level FROM log_events WHERE message = 'fb 3164 udp' LIMIT 1");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0], (std::vector<std::string>{"bsdapp", "bsdhost", "INFO"}));
  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"pri\""), 0);
}

// ---- TLS ------------------------------------------------------------------------------------

// A CA with a server certificate (127.0.0.1) and a client certificate it signed.
void make_certificates(const TempDir &d) {
  ASSERT_EQ(access("/usr/bin/openssl", X_OK), 0) << "openssl is missing: run tools/setup";
  const std::string script =
      "set -e; cd " + d.path() +
      "\nkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 "
      "2>/dev/null; }"
      "\nsign() { openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out "
      "$1.pem -days 2 $2 2>/dev/null; }"
      "\nfor k in ca server client; do key $k.key; done"
      "\nopenssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=syslog-test-ca"
      "\nprintf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.cnf"
      "\nopenssl req -new -key server.key -out server.csr -subj /CN=localhost"
      "\nsign server '-extfile san.cnf'"
      "\nopenssl req -new -key client.key -out client.csr -subj /CN=appliance"
      "\nsign client\n";
  std::string out, err;
  ASSERT_EQ(run({"/bin/sh", "-c", script}, d.path(), &out, &err), 0) << out << err;
}

// Sends `bytes` with openssl s_client (TLS version flag `version`, client cert when `cert`);
// its exit code.
int s_client_send(const TempDir &d, int port, const std::string &bytes, const std::string &version,
                  bool cert) {
  write_file(d / "s_client.in", bytes);
  const std::string cmd =
      "openssl s_client -quiet -no_ign_eof -connect " + address(port) + " " + version +
      " -CAfile " + d / "ca.pem" +
      (cert ? " -cert " + d / "client.pem" + " -key " + d / "client.key" : std::string()) + " < " +
      d / "s_client.in";
  std::string out, err;
  return run({"/bin/sh", "-c", cmd}, d.path(), &out, &err);
}

TEST(SyslogTls, FluentBitAndOpensslOverMutualTls13AreStoredAndOthersRefused) {
  if (!have_fluent_bit()) GTEST_SKIP() << FLUENT_BIT_BIN << " is missing";
  TempDir certs;
  make_certificates(certs);
  const int port = free_port();
  const std::string tls = ", tls.cert: " + certs / "server.pem" +
                          ", tls.key: " + certs / "server.key" + ", tls.ca: " + certs / "ca.pem" +
                          ", tls.min_version: '1.3', idle_timeout: 3s";
  Engine e({tcp_input(port, tls)});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  EXPECT_NE(e.proc().err().find("receiving syslog on tls"), std::string::npos) << e.proc().err();

  // A peer that connects and never says hello holds its slot only until idle_timeout.
  const int silent = tcp_connect(port);
  ASSERT_GE(silent, 0);

  auto fb = fluent_bit_send(
      e.dir(), R"({"log":"fb over tls","host":"fbtls","app":"fbapp"})", 2,
      {"port=" + std::to_string(port), "mode=tls", "syslog_format=rfc5424", "tls=on",
       "tls.verify=on", "tls.ca_file=" + certs / "ca.pem", "tls.vhost=localhost",
       "tls.crt_file=" + certs / "client.pem", "tls.key_file=" + certs / "client.key"});
  ASSERT_TRUE(e.wait_count("message = 'fb over tls'", 2)) << e.proc().err() << fb->err();
  EXPECT_EQ(e.rows("SELECT service, host FROM log_events WHERE message = 'fb over tls' LIMIT 1"),
            (std::vector<std::vector<std::string>>{{"fbapp", "fbtls"}}));

  const std::string msg = "<165>1 2025-11-28T19:55:40.521Z appliance s_client - - - over tls";
  EXPECT_EQ(s_client_send(certs, port, octets(msg), "-tls1_3", true), 0);
  ASSERT_TRUE(e.wait_count("message = 'over tls'", 1)) << e.proc().err();
  EXPECT_EQ(e.rows("SELECT timestamp, level FROM log_events WHERE message = 'over tls'"),
            (std::vector<std::vector<std::string>>{{"1764359740521000000", "INFO"}}));
  // TLS 1.2 is below tls.min_version, and a client without a certificate is refused.
  s_client_send(certs, port, octets("<13>1 - h a - - - tls12"), "-tls1_2", true);
  s_client_send(certs, port, octets("<13>1 - h a - - - no cert"), "-tls1_3", false);
  EXPECT_TRUE(closed_by_peer(silent));
  close(silent);
  ASSERT_TRUE(e.wait_metric("syslog_connections_closed_total", "reason=\"idle\"", 1));
  ASSERT_TRUE(e.wait_metric("syslog_tls_handshakes_failed_total", "", 2));
  EXPECT_EQ(e.count("message IN ('tls12', 'no cert')"), 0);
  EXPECT_EQ(e.metric("syslog_messages_total", "transport=\"tls\""), 3);
}

// ---- formats ---------------------------------------------------------------------------------

// What real senders put on the wire beyond logger's defaults: RFC 5424 with a BOM, escapes, a
// repeated parameter and an element without parameters; RFC 3164 without a hostname (a local
// sender), with an RFC 3339 timestamp (rsyslog's forward format), without a timestamp; an
// all-nil RFC 5424 header; CRLF line ends.
TEST(SyslogFormats, StructuredDataAndTheBsdVariantsMapOntoColumnsAndMeta) {
  const int port = free_port();
  Engine e({tcp_input(port)});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string sd5424 =
      "<134>1 2025-11-28T19:55:40.123456+02:00 web01 nginx 1234 REQ [req@1 path=\"/a\\]b\" "
      "tag=\"x\" tag=\"y\\\"z\" ms=\"12\" neg=\"-3\" big=\"12345678901234567890\" "
      "f=\"0.25\" lead=\"01\"][flag@1] \xEF\xBB\xBFsd message";
  tcp_send(port, octets(sd5424) + "<13>Nov 28 19:55:40 su[99]: no hostname here\r\n" +
                     "<13>2025-11-28T19:55:40.5Z isohost isoapp: iso stamp\n" +
                     "<13>notime: no timestamp at all\n" + "<15>1 - - - - - -\n");
  ASSERT_TRUE(e.wait_count("source = 'syslog'", 5)) << e.proc().err();

  auto r = e.record("sd message");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "nginx");
  EXPECT_EQ(r[1], "web01");
  EXPECT_EQ(r[2], "INFO");
  EXPECT_EQ(e.meta("sd message", "facility"), "local0/text");
  EXPECT_EQ(e.meta("sd message", "procid"), "1234/integer");
  EXPECT_EQ(e.meta("sd message", "msgid"), "REQ/text");
  EXPECT_EQ(e.meta("sd message", "sd.req@1.path"), "/a]b/text");
  EXPECT_EQ(e.meta("sd message", "sd.req@1.tag"), "[\"x\",\"y\\\"z\"]/array");
  EXPECT_EQ(e.meta("sd message", "sd.req@1.ms"), "12/integer");
  EXPECT_EQ(e.meta("sd message", "sd.req@1.neg"), "-3/integer");
  EXPECT_EQ(e.meta("sd message", "sd.req@1.f"), "0.25/real");
  // Beyond an int64, or with a leading zero: no number reads back as the same text.
  EXPECT_EQ(e.meta("sd message", "sd.req@1.big"), "12345678901234567890/text");
  EXPECT_EQ(e.meta("sd message", "sd.req@1.lead"), "01/text");
  EXPECT_EQ(e.meta("sd message", "sd.flag@1"), "/text");
  EXPECT_EQ(e.rows("SELECT timestamp FROM log_events WHERE message = 'sd message'"),
            (std::vector<std::vector<std::string>>{{"1764352540123456000"}}));

  r = e.record("no hostname here");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "su");
  EXPECT_EQ(r[1], "127.0.0.1");
  EXPECT_EQ(e.meta("no hostname here", "procid"), "99/integer");
  r = e.record("iso stamp");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "isoapp");
  EXPECT_EQ(r[1], "isohost");
  EXPECT_EQ(e.rows("SELECT timestamp FROM log_events WHERE message = 'iso stamp'"),
            (std::vector<std::vector<std::string>>{{"1764359740500000000"}}));
  r = e.record("no timestamp at all");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "notime");
  r = e.record("");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "unknown");
  EXPECT_EQ(r[1], "127.0.0.1");
  EXPECT_EQ(r[2], "DEBUG");
  EXPECT_EQ(e.metric("syslog_parse_failures_total"), 0);
}

// ---- bad input ------------------------------------------------------------------------------

TEST(SyslogBadInput, MalformedPriJunkAndInvalidOctetCountsAreKeptWholeAndCounted) {
  const int port = free_port();
  Engine e({tcp_input(port), udp_input(port)});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string valid = "<14>Nov 28 19:55:40 box app[12]: valid after junk";
  tcp_send(port, std::string("no pri at all\n") + "<192>pri above 191\n" + "<1a>pri not digits\n" +
                     "\x01\x02\xff\xfe" + " binary junk\n" + "12abc not a count\n" +
                     "99999999999 eleven digits\n" + "<13>1 yesterday h a - - - bad time\n" +
                     octets(valid) + "\n\n");
  udp_send(port, "<13>1 2025-11-28T19:55:40Z h a - - [unclosed sd");
  udp_send(port, std::string("\xff\xff\xff", 3));
  ASSERT_TRUE(e.wait_count("source = 'syslog'", 10)) << e.proc().err();

  for (const char *m : {"no pri at all", "<192>pri above 191", "<1a>pri not digits",
                        "12abc not a count", "99999999999 eleven digits"}) {
    auto r = e.record(m);
    ASSERT_EQ(r.size(), 5u) << m;
    EXPECT_EQ(r[0], "unknown") << m;
    EXPECT_EQ(r[1], "127.0.0.1") << m;  // the peer
    EXPECT_EQ(r[2], "INFO") << m;       // RFC 3164's user.notice
    EXPECT_EQ(e.meta(m, "parse_error"), "no valid PRI/text") << m;
  }
  EXPECT_EQ(e.meta("<13>1 yesterday h a - - - bad time", "parse_error"),
            "malformed RFC 5424 header/text");
  EXPECT_EQ(e.meta("<13>1 2025-11-28T19:55:40Z h a - - [unclosed sd", "parse_error"),
            "malformed RFC 5424 structured data/text");
  // Junk: invalid UTF-8 replaced, so every output writes valid text.
  EXPECT_EQ(e.count("message = char(1, 2, 65533, 65533) || ' binary junk'"), 1);
  EXPECT_EQ(e.count("message = char(65533, 65533, 65533)"), 1);
  auto r = e.record("valid after junk");
  ASSERT_EQ(r.size(), 5u);
  EXPECT_EQ(r[0], "app");
  EXPECT_EQ(r[1], "box");
  EXPECT_EQ(e.meta("valid after junk", "procid"), "12/integer");

  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"pri\""), 7);
  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"header\""), 1);
  EXPECT_EQ(e.metric("syslog_parse_failures_total", "reason=\"structured_data\""), 1);
  EXPECT_EQ(e.metric("syslog_invalid_octet_counts_total"), 2);
  EXPECT_EQ(e.metric("syslog_utf8_cleaned_total"), 2);
  EXPECT_EQ(e.count("source = 'syslog'"), 10);  // the empty lines are no records
}

TEST(SyslogBadInput, FramesOverMaxMessageSizeAreCutCountedAndTheStreamStaysInStep) {
  const int port = free_port();
  Engine e(
      {tcp_input(port, ", max_message_size: 1KiB"), udp_input(port, ", max_message_size: 1KiB")});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string big_octet = "<13>" + std::string(5000, 'o');
  const std::string big_line = "<13>" + std::string(3000, 'l');
  tcp_send(port, octets(big_octet) + octets("<13>after the big frame") + big_line +
                     "\n<13>after the long line\n");
  udp_send(port, "<13>" + std::string(3000, 'u'));
  udp_send(port, "<13>after the big datagram");
  ASSERT_TRUE(e.wait_count("source = 'syslog'", 5)) << e.proc().err();
  // Each cut to its first 1024 bytes: "<13>" and 1020 of the rest.
  EXPECT_EQ(e.count("message = '" + std::string(1020, 'o') + "'"), 1);
  EXPECT_EQ(e.count("message = '" + std::string(1020, 'l') + "'"), 1);
  EXPECT_EQ(e.count("message = '" + std::string(1020, 'u') + "'"), 1);
  EXPECT_EQ(e.count("message IN ('after the big frame', 'after the long line', 'after the big "
                    "datagram')"),
            3);
  EXPECT_EQ(e.metric("syslog_frames_cut_total", "instance=\"syslog.0\""), 2);
  EXPECT_EQ(e.metric("syslog_frames_cut_total", "instance=\"syslog.1\""), 1);
  EXPECT_EQ(e.count("source = 'syslog'"), 6);
}

TEST(SyslogBadInput, ASlowLorisPeerHoldsNoOtherPeerBackAndIsClosedWhenIdle) {
  const int port = free_port();
  Engine e({tcp_input(port, ", idle_timeout: 2s")});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  // A frame begun and never finished: half of an octet count, then half of a line.
  const int loris = tcp_connect(port);
  const int loris2 = tcp_connect(port);
  ASSERT_GE(loris, 0);
  ASSERT_GE(loris2, 0);
  ASSERT_TRUE(send_all(loris, "<13>never fini"));
  ASSERT_TRUE(send_all(loris2, "200 <13>short of its count"));
  // And one that dribbles a line a byte at a time (each byte its own segment), starting with
  // digits that are no octet count: one record, the bad count counted once.
  const std::string dribbled = "12: dribbled a byte at a time, not an octet count";
  std::thread dribbler([&] {
    const int fd = tcp_connect(port);
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (char ch : dribbled + "\n") {
      send_all(fd, std::string(1, ch));
      std::this_thread::sleep_for(2ms);
    }
    close(fd);
  });
  std::string many;
  for (int i = 0; i < 200; ++i) many += "<13>served " + std::to_string(i) + "\n";
  tcp_send(port, many);
  ASSERT_TRUE(e.wait_count("message LIKE 'served %'", 200)) << e.proc().err();
  dribbler.join();
  ASSERT_TRUE(e.wait_count("message = '" + dribbled + "'", 1)) << e.proc().err();
  EXPECT_EQ(e.metric("syslog_invalid_octet_counts_total"), 1);
  // Closed once idle: the unfinished line is kept, the frame short of its count kept cut.
  EXPECT_TRUE(closed_by_peer(loris));
  EXPECT_TRUE(closed_by_peer(loris2));
  close(loris);
  close(loris2);
  ASSERT_TRUE(e.wait_metric("syslog_connections_closed_total", "reason=\"idle\"", 2));
  ASSERT_TRUE(e.wait_count("message IN ('never fini', 'short of its count')", 2));
  EXPECT_EQ(e.metric("syslog_frames_cut_total"), 1);
}

TEST(SyslogBadInput, PeersBeyondMaxConnectionsAreRefusedAndCountedWhileOpenOnesAreServed) {
  const int port = free_port();
  Engine e({tcp_input(port, ", max_connections: 3")});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  std::vector<int> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(tcp_connect(port));
    ASSERT_GE(open.back(), 0);
    ASSERT_TRUE(send_all(open.back(), "<13>open " + std::to_string(i) + "\n"));
  }
  ASSERT_TRUE(e.wait_count("message LIKE 'open %'", 3)) << e.proc().err();
  EXPECT_EQ(e.metric("syslog_connections"), 3);
  for (int i = 0; i < 5; ++i) {
    const int fd = tcp_connect(port);
    ASSERT_GE(fd, 0);  // the kernel accepts; the input closes it at once
    EXPECT_TRUE(closed_by_peer(fd));
    close(fd);
  }
  EXPECT_EQ(e.metric("syslog_connections_refused_total"), 5);
  // /health says the input is degraded while it refuses peers.
  const HttpResponse health = http("http://" + e.health_address() + "/health");
  EXPECT_NE(health.body.find("max_connections (3) reached"), std::string::npos) << health.body;
  ASSERT_TRUE(send_all(open[1], "<13>still served\n"));
  ASSERT_TRUE(e.wait_count("message = 'still served'", 1));
  close(open[0]);
  ASSERT_TRUE(wait_until([&] { return e.metric("syslog_connections") == 2; }, 30s));
  tcp_send(port, "<13>a new peer once one left\n");
  ASSERT_TRUE(e.wait_count("message = 'a new peer once one left'", 1)) << e.proc().err();
  for (size_t i = 1; i < open.size(); ++i) close(open[i]);
}

// The kernel drops datagrams that overflow the socket's buffer while the engine does not read
// (stopped here with SIGSTOP): every datagram sent is then either stored or counted.
TEST(SyslogBadInput, UdpDatagramsTheKernelDropsAreCountedAndEveryOtherOneStored) {
  const int port = free_port();
  Engine e({udp_input(port, ", receive_buffer: 16KiB")});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  e.proc().kill(SIGSTOP);
  const int total = 2000;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < total; ++i) {
    const std::string m = "<13>datagram " + std::to_string(i) + " " + std::string(200, 'x');
    sendto(fd, m.data(), m.size(), 0, reinterpret_cast<sockaddr *>(&a), sizeof a);
  }
  close(fd);
  e.proc().kill(SIGCONT);
  ASSERT_TRUE(wait_until(
      [&] {
        auto drops = find_metric(e.metrics(), "devmesh_syslog_udp_kernel_drops_total", "");
        return drops && *drops > 0 && e.count("message LIKE 'datagram %'") + *drops == total;
      },
      30s))
      << e.count("message LIKE 'datagram %'") << " stored, "
      << e.metric("syslog_udp_kernel_drops_total") << " dropped";
}

// The input takes datagrams 16 at a time (recvmmsg): two peers interleaved in one burst, each
// record's host is still its own sender's address, and an oversized datagram among them is cut
// and counted on its own.
TEST(SyslogBadInput, InterleavedPeersInOneBurstEachKeepTheirOwnAddressAsHost) {
  const int port = free_port();
  Engine e({udp_input(port, ", max_message_size: 1KiB")});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  e.proc().kill(SIGSTOP);  // the datagrams wait in the socket: the next wake-up reads a burst
  int fds[2];
  for (int p = 0; p < 2; ++p) {
    fds[p] = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in self{};
    self.sin_family = AF_INET;
    self.sin_addr.s_addr = htonl(0x7f000002 + p);  // 127.0.0.2 and 127.0.0.3
    ASSERT_EQ(bind(fds[p], reinterpret_cast<sockaddr *>(&self), sizeof self), 0);
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<uint16_t>(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int total = 120;
  for (int i = 0; i < total; ++i) {
    const int p = (i / (1 + i % 3)) % 2;  // runs of one peer of different lengths
    std::string m = "<13>1 2025-11-28T19:55:40Z - app - - - burst " + std::to_string(p) + " " +
                    std::to_string(i);
    if (i == 50) m += " " + std::string(3000, 'b');
    sendto(fds[p], m.data(), m.size(), 0, reinterpret_cast<sockaddr *>(&to), sizeof to);
  }
  close(fds[0]);
  close(fds[1]);
  e.proc().kill(SIGCONT);
  ASSERT_TRUE(wait_until(
      [&] {
        auto drops = find_metric(e.metrics(), "devmesh_syslog_udp_kernel_drops_total", "");
        return e.count("message LIKE 'burst %'") + drops.value_or(0) == total;
      },
      30s))
      << e.count("message LIKE 'burst %'") << " stored";
  EXPECT_EQ(e.count("message LIKE 'burst 0 %' AND host != '127.0.0.2'"), 0);
  EXPECT_EQ(e.count("message LIKE 'burst 1 %' AND host != '127.0.0.3'"), 0);
  // 120 short datagrams on loopback into the default receive buffer: none is dropped.
  EXPECT_EQ(e.count("message LIKE 'burst %'"), total);
  EXPECT_EQ(e.metric("syslog_frames_cut_total"), 1);
  EXPECT_EQ(e.count("message LIKE 'burst % 50 b%' AND length(message) < 1024"), 1);
}

// Backpressure: an output slower than the sender pauses the input, which stops reading its
// connection (the sender's writes then wait), and resumes; nothing read is lost or doubled.
TEST(SyslogBackpressure, APausedInputStopsReadingTcpAndLosesNothing) {
  const int port = free_port();
  // Each pause outlasts idle_timeout: a paused connection reads nothing, and is not idle.
  Engine e({tcp_input(port, ", idle_timeout: 100ms")},
           "    - {name: flaky, match: 's.*', path: {DIR}/flaky.txt, delay: 300ms, batch_size: "
           "5000, queue_limit: 16KiB}\n");
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const int n = 5000;
  std::string lines;
  for (int i = 0; i < n; ++i)
    lines += "<13>bp " + std::to_string(i) + " " + std::string(60, 'p') + "\n";
  std::atomic<bool> sent{false};
  std::thread sender([&] {
    tcp_send(port, lines);
    sent = true;
  });
  const std::string input = "instance=\"syslog.0\"";
  EXPECT_TRUE(wait_until([&] { return e.metric("input_paused", input) == 1; }, 30s))
      << "the input was never paused";
  sender.join();
  ASSERT_TRUE(sent);
  const std::string out = e.dir() / "flaky.txt";
  ASSERT_TRUE(wait_until([&] { return read_lines(out).size() >= static_cast<size_t>(n); }, 60s))
      << read_lines(out).size() << " of " << n << "\n"
      << e.proc().err();
  std::set<std::string> seen;
  for (const std::string &l : read_lines(out)) seen.insert(l.substr(l.find('\t') + 1));
  EXPECT_EQ(seen.size(), static_cast<size_t>(n));
  EXPECT_EQ(read_lines(out).size(), static_cast<size_t>(n));
  EXPECT_EQ(e.metric("syslog_messages_dropped_total"), 0);
  EXPECT_EQ(e.metric("syslog_connections_closed_total", "reason=\"idle\""), 0);
}

// A reload keeps an unchanged input's sockets (the engine must not test-bind the addresses its
// own instances hold), and a changed one gives its address to its successor.
// A stop while the pipeline is paused: what was read and not taken is counted and said, not
// dropped silently; the engine still exits cleanly.
TEST(SyslogBackpressure, ReadsStillWaitingForResumeAtTheStopAreCountedAndLogged) {
  const int port = free_port();
  Engine e({tcp_input(port)},
           "    - {name: flaky, match: 's.*', path: {DIR}/flaky.txt, fail_always: true, "
           "queue_limit: 16KiB}\n",
           "  grace: 1s\n");
  ASSERT_TRUE(e.ready()) << e.proc().err();
  std::string lines;
  for (int i = 0; i < 5000; ++i) lines += "<13>held " + std::to_string(i) + "\n";
  const int fd = tcp_connect(port);
  ASSERT_GE(fd, 0);
  std::thread sender([&] { send_all(fd, lines); });
  ASSERT_TRUE(wait_until([&] { return e.metric("input_paused", "syslog.0") == 1; }, 30s));
  // One more read once paused: the input holds it until a resume that never comes.
  ASSERT_TRUE(wait_until([&] { return e.metric("syslog_messages_total") > 0; }, 30s));
  e.proc().kill(SIGTERM);
  EXPECT_EQ(e.proc().wait_exit(30s), 0) << e.proc().err();
  shutdown(fd, SHUT_RDWR);
  sender.join();
  close(fd);
  const std::string err = e.proc().err();
  if (err.find("were not taken before the stop") == std::string::npos)
    GTEST_SKIP() << "every read was taken before the pause (nothing held at the stop): " << err;
  EXPECT_NE(err.find("counted in syslog_messages_dropped_total"), std::string::npos) << err;
}

TEST(SyslogConfig, AReloadKeepsTheSocketsOfAnUnchangedInputAndRebindsAChangedOne) {
  const int port = free_port();
  Engine e({tcp_input(port, ", max_connections: 5"), udp_input(port)});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string reload = "http://" + e.health_address() + "/reload";
  HttpResponse r = http(reload, {}, "POST");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"unchanged\":4"), std::string::npos) << r.body;
  tcp_send(port, "<13>after a reload over tcp\n");
  udp_send(port, "<13>after a reload over udp");
  ASSERT_TRUE(e.wait_count("message LIKE 'after a reload over %'", 2)) << e.proc().err();

  const std::string file = e.dir() / "engine.yaml";
  std::string yaml = read_file(file);
  yaml.replace(yaml.find("max_connections: 5"), 18, "max_connections: 6");
  write_file(file, yaml);
  r = http(reload, {}, "POST");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"changed\":[\"syslog.0\"]"), std::string::npos) << r.body;
  // The successor listens once its predecessor is gone: wait for its own start line.
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string err = e.proc().err();
        const size_t first = err.find("receiving syslog on tcp");
        return first != std::string::npos &&
               err.find("receiving syslog on tcp", first + 1) != std::string::npos;
      },
      30s))
      << e.proc().err();
  tcp_send(port, "<13>after a change over tcp\n");
  ASSERT_TRUE(e.wait_count("message = 'after a change over tcp'", 1)) << e.proc().err();
}

TEST(SyslogConfig, TlsOverUdpAndACertificateWithoutItsKeyAreRefusedNamingTheOption) {
  TempDir d;
  const std::string yaml = plugins_head() +
                           "  inputs:\n    - {name: syslog, mode: udp, tls.cert: /x.pem, tls.key: "
                           "/x.key}\n    - {name: syslog, mode: tcp, listen: '127.0.0.1:1', "
                           "tls.cert: /x.pem}\n  outputs:\n    - {name: null}\n";
  write_file(d / "p.yaml", yaml);
  std::string out, err;
  EXPECT_NE(run({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), &out, &err), 0);
  EXPECT_NE(err.find("inputs[0].tls.cert: TLS needs mode: tcp"), std::string::npos) << err;
  EXPECT_NE(err.find("inputs[1].tls.key: tls.cert and tls.key go together"), std::string::npos)
      << err;
}

// IPv6 addresses for both transports; a record without a hostname gets the peer's address.
TEST(SyslogConfig, IPv6ListenAddressesServeBothTransports) {
  const int probe = socket(AF_INET6, SOCK_DGRAM, 0);
  sockaddr_in6 lo{};
  lo.sin6_family = AF_INET6;
  lo.sin6_addr = in6addr_loopback;
  const bool v6 = probe >= 0 && bind(probe, reinterpret_cast<sockaddr *>(&lo), sizeof lo) == 0;
  if (probe >= 0) close(probe);
  if (!v6) GTEST_SKIP() << "no IPv6 loopback here";
  const int port = free_port();
  Engine e({"mode: tcp, listen: '[::1]:" + std::to_string(port) + "'",
            "mode: udp, listen: '[::1]:" + std::to_string(port) + "'"});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  sockaddr_in6 to = lo;
  to.sin6_port = htons(static_cast<uint16_t>(port));
  const int t = socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_EQ(connect(t, reinterpret_cast<sockaddr *>(&to), sizeof to), 0);
  ASSERT_TRUE(send_all(t, "<13>1 - - v6app - - - over tcp6\n"));
  close(t);
  const int u = socket(AF_INET6, SOCK_DGRAM, 0);
  const std::string dgram = "<13>1 - - v6app - - - over udp6";
  ASSERT_EQ(sendto(u, dgram.data(), dgram.size(), 0, reinterpret_cast<sockaddr *>(&to), sizeof to),
            static_cast<ssize_t>(dgram.size()));
  close(u);
  ASSERT_TRUE(e.wait_count("service = 'v6app'", 2)) << e.proc().err();
  EXPECT_EQ(e.count("service = 'v6app' AND host = '::1'"), 2);
}

// Nothing is exposed beyond the machine unless an address says so, UDP included.
TEST(SyslogConfig, AnAddressWithoutAHostIsLoopbackForUdpAndTcp) {
  std::string out;
  TempDir d;
  ASSERT_EQ(run({DEVMESH_BIN, "--describe", "syslog"}, d.path(), &out), 0) << out;
  EXPECT_NE(out.find("default 127.0.0.1:5140"), std::string::npos) << out;
  const int port = free_port();
  Engine e({"mode: udp, listen: ':" + std::to_string(port) + "'",
            "mode: tcp, listen: ':" + std::to_string(port) + "'"});
  ASSERT_TRUE(e.ready()) << e.proc().err();
  const std::string udp = read_file("/proc/net/udp"), tcp = read_file("/proc/net/tcp");
  char loopback[32];
  std::snprintf(loopback, sizeof loopback, "0100007F:%04X", port);
  EXPECT_NE(udp.find(loopback), std::string::npos) << udp;
  EXPECT_NE(tcp.find(loopback), std::string::npos) << tcp;
}

}  // namespace
