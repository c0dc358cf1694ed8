// The forward input through the real binary: Fluent Bit 4.2.8's out_forward in each mode it
// produces (Forward, Forward with integer times, Message with a per-record tag, gzip
// CompressedPackedForward), with require_ack_response, a shared key (with and without a user)
// and TLS, into sqlite and back out of the query API with the right columns; a kill -9 of
// devmesh while Fluent Bit streams 100k lines with acks, after which every line is stored once;
// and a msgpack-c client of the test's own for Message and PackedForward mode, acks, and hostile
// input (deep nesting, huge declared sizes, wrong types, truncated frames, a gzip bomb, bad auth),
// each refused with a counted, named error and the engine still serving.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <rapidjson/document.h>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

const std::string kFluentBit = FLUENT_BIT_BIN;

#define REQUIRE_FLUENT_BIT() \
  if (!std::filesystem::exists(kFluentBit)) GTEST_SKIP() << "no Fluent Bit at " << kFluentBit

std::string local(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// Waits for /health on the engine's admin port.
bool answers(int admin) {
  return wait_until([&] { return http("http://" + local(admin) + "/health").status != 0; }, 20s);
}

std::string str_field(const rapidjson::Value &o, const char *k) {
  auto it = o.FindMember(k);
  return it != o.MemberEnd() && it->value.IsString() ? it->value.GetString() : "";
}

// An engine with a forward input (extra options appended to its entry), sqlite and the query
// output on one file, /metrics on admin.
struct Engine {
  Engine(const TempDir &d, int port, const std::string &forward_options = "",
         const std::string &name = "devmesh")
      : admin(free_port()), query(free_port()), db(d / "logs.db") {
    yaml = plugins_head("  http_listen: " + local(admin) + "\n") +
           "  inputs:\n    - {name: forward, tag: fwd, listen: '" + local(port) + "'" +
           forward_options + "}\n  outputs:\n    - {name: sqlite, match: fwd, path: " + db +
           "}\n    - {name: query, match: none, listen: '" + local(query) + "', path: " + db +
           "}\n";
    start(d, name);
  }
  void start(const TempDir &d, const std::string &name) {
    proc = start_engine(d, yaml, name);
    ready = answers(admin);
  }
  std::string metrics(const TempDir &) { return http("http://" + local(admin) + "/metrics").body; }
  double metric(const TempDir &d, const std::string &name, const std::string &labels = "") {
    return find_metric(metrics(d), "devmesh_" + name, labels).value_or(0);
  }
  long rows(const std::string &where = "1") {
    if (!std::filesystem::exists(db)) return 0;
    try {
      SqliteDb s(db);
      return s.number("SELECT COUNT(*) FROM log_events WHERE " + where);
    } catch (const std::exception &) {
      return 0;  // the table is not made yet
    }
  }
  int admin, query;
  std::string db, yaml;
  std::unique_ptr<Process> proc;
  bool ready = false;
};

// Fluent Bit with one input and an out_forward to port (extra output settings as YAML lines).
std::unique_ptr<Process> fluent_bit(const TempDir &d, const std::string &name,
                                    const std::string &input, int port,
                                    const std::string &output_extra) {
  const std::string config = d / (name + ".yaml");
  write_file(config,
             "service:\n  flush: 0.2\n  grace: 1\n  log_level: debug\n  scheduler.base: 1\n"
             "  scheduler.cap: 2\npipeline:\n  inputs:\n" +
                 input +
                 "  outputs:\n    - name: forward\n      match: '*'\n      host: 127.0.0.1\n"
                 "      port: " +
                 std::to_string(port) + "\n      retry_limit: false\n" + output_extra);
  return std::make_unique<Process>(std::vector<std::string>{kFluentBit, "-c", config}, d.path(),
                                   name);
}

// A dummy input emitting `samples` copies of one JSON record.
std::string dummy(const std::string &tag, const std::string &record, int samples) {
  return "    - name: dummy\n      tag: " + tag + "\n      samples: " + std::to_string(samples) +
         "\n      rate: 20\n      dummy: '" + record + "'\n";
}

const std::string kRecord =
    R"({"message":"payment failed","level":"error","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736",)"
    R"("span_id":"00f067aa0ba902b7","error_code":"E42","user":"bob","attempt":3,"ok":false,)"
    R"("ctx":{"region":"eu","ids":[1,2]}})";

// ---- Fluent Bit's out_forward ------------------------------------------------------------------

TEST(ForwardFluentBit, DefaultForwardModeRecordsAreStoredWithTheirColumnsAndQueryable) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto fb = fluent_bit(d, "fb", dummy("app.payments", kRecord, 3), port, "");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 3; }, 30s)) << fb->err() << (*e.proc).err();
  EXPECT_GE(e.metric(d, "forward_messages_total", "mode=\"forward\""), 1);

  // The query API returns what the forward input mapped.
  const HttpResponse q = http("http://" + local(e.query) + "/query/logs?service=app.payments");
  ASSERT_EQ(q.status, 200) << q.body;
  rapidjson::Document doc;
  doc.Parse(q.body.c_str());
  ASSERT_TRUE(doc.IsArray() && doc.Size() == 3) << q.body;
  const rapidjson::Value &r = doc[0];
  EXPECT_EQ(str_field(r, "message"), "payment failed");
  EXPECT_EQ(str_field(r, "level"), "ERROR");
  EXPECT_EQ(str_field(r, "source"), "forward");
  EXPECT_EQ(str_field(r, "service"), "app.payments") << "the tag, as the record names no service";
  EXPECT_EQ(str_field(r, "host"), "127.0.0.1") << "the client's address";
  EXPECT_EQ(str_field(r, "trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(str_field(r, "span_id"), "00f067aa0ba902b7");
  EXPECT_EQ(str_field(r, "error_code"), "E42");
  ASSERT_TRUE(r["meta_json"].IsObject()) << q.body;
  const rapidjson::Value &m = r["meta_json"];
  EXPECT_EQ(str_field(m, "user"), "bob");
  ASSERT_TRUE(m.HasMember("attempt") && m["attempt"].IsInt()) << "typed meta: " << q.body;
  EXPECT_EQ(m["attempt"].GetInt(), 3);
  ASSERT_TRUE(m.HasMember("ok") && m["ok"].IsBool());
  ASSERT_TRUE(m.HasMember("ctx") && m["ctx"].IsObject());
  EXPECT_EQ(str_field(m["ctx"], "region"), "eu");

  // Fluent Bit's EventTime carries nanoseconds: three records 50 ms apart, none on a whole second
  // (with overwhelming likelihood), and the stored times are Fluent Bit's, not arrival times.
  SqliteDb s(e.db);
  EXPECT_GE(s.number("SELECT COUNT(*) FROM log_events WHERE timestamp % 1000000000 != 0"), 2);
}

// (One record: two identical records in the same whole second are one event to the store.)
TEST(ForwardFluentBit, TimeAsIntegerSendsForwardModeWithWholeSecondTimes) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto fb =
      fluent_bit(d, "fb", dummy("app.compat", kRecord, 1), port, "      time_as_integer: true\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 1; }, 30s)) << fb->err();
  SqliteDb s(e.db);
  EXPECT_EQ(s.number("SELECT COUNT(*) FROM log_events WHERE timestamp % 1000000000 = 0"), 1);
  EXPECT_GE(e.metric(d, "forward_messages_total", "mode=\"forward\""), 1);
}

TEST(ForwardFluentBit, ARecordTagSendsMessageModeWithAnAckPerRecord) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", service_key: svc");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  // A tag built from each record (record accessor) makes out_forward use Message mode.
  auto fb = fluent_bit(
      d, "fb", dummy("app.msg", R"({"message":"per record","svc":"checkout","kind":"web"})", 3),
      port, "      tag: from.$kind\n      require_ack_response: true\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 3; }, 30s)) << fb->err();
  EXPECT_GE(e.metric(d, "forward_messages_total", "mode=\"message\""), 3);
  ASSERT_TRUE(wait_until([&] { return e.metric(d, "forward_acks_total") >= 3; }, 30s));
  SqliteDb s(e.db);
  // service_key names the service; the forward tag stays in meta.
  EXPECT_EQ(s.number("SELECT COUNT(*) FROM log_events WHERE service = 'checkout' AND "
                     "json_extract(meta_json, '$.tag') = 'from.web'"),
            3);
}

TEST(ForwardFluentBit, GzipChunksArriveAsCompressedPackedForward) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto fb = fluent_bit(d, "fb", dummy("app.gz", kRecord, 5), port, "      compress: gzip\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 5; }, 30s)) << fb->err();
  EXPECT_GE(e.metric(d, "forward_messages_total", "mode=\"compressed_packed_forward\""), 1);
  SqliteDb s(e.db);
  EXPECT_EQ(s.number("SELECT COUNT(*) FROM log_events WHERE message = 'payment failed' AND "
                     "level = 'ERROR'"),
            5);
}

TEST(ForwardFluentBit, RequireAckResponseIsAnsweredOnceTheRecordsAreStored) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", ack: delivered, ack_timeout: 20s");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto fb =
      fluent_bit(d, "fb", dummy("app.ack", kRecord, 4), port, "      require_ack_response: true\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 4; }, 30s)) << fb->err();
  ASSERT_TRUE(wait_until([&] { return e.metric(d, "forward_acks_total") >= 1; }, 30s));
  // Fluent Bit saw each ack (it logs the chunk it matched) and retried nothing.
  ASSERT_TRUE(wait_until([&] { return fb->err().find("received ACK") != std::string::npos; }, 30s))
      << fb->err();
  EXPECT_EQ(fb->err().find("cannot get ack"), std::string::npos) << fb->err();
  EXPECT_EQ(e.metric(d, "forward_ack_timeouts_total"), 0);
}

TEST(ForwardFluentBit, SharedKeyHandshakeNamesTheClientAsHostAndAWrongKeyIsRefused) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", shared_key: s3cret, self_hostname: devmesh-agg");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto good = fluent_bit(d, "fb-good", dummy("app.auth", R"({"message":"authed"})", 2), port,
                         "      shared_key: s3cret\n      self_hostname: fb-node-1\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 2; }, 30s)) << good->err();
  SqliteDb s(e.db);
  EXPECT_EQ(s.number("SELECT COUNT(*) FROM log_events WHERE host = 'fb-node-1'"), 2)
      << "a record without a host gets the client's self_hostname";

  auto bad = fluent_bit(d, "fb-bad", dummy("app.bad", R"({"message":"intruder"})", 1), port,
                        "      shared_key: wrong\n      self_hostname: fb-node-2\n");
  ASSERT_TRUE(wait_until([&] { return e.metric(d, "forward_auth_failures_total") >= 1; }, 30s))
      << bad->err();
  ASSERT_TRUE(
      wait_until([&] { return bad->err().find("shared_key mismatch") != std::string::npos; }, 30s))
      << "Fluent Bit logs the PONG's reason: " << bad->err();
  EXPECT_EQ(e.rows("message = 'intruder'"), 0);
  EXPECT_GE(e.metric(d, "forward_protocol_errors_total", "reason=\"auth\""), 1);
}

TEST(ForwardFluentBit, UsernameAndPasswordAreCheckedInTheHandshake) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", shared_key: k, username: agent, password: pw");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto good = fluent_bit(d, "fb-good", dummy("app.user", R"({"message":"user ok"})", 1), port,
                         "      shared_key: k\n      username: agent\n      password: pw\n");
  ASSERT_TRUE(wait_until([&] { return e.rows("message = 'user ok'") == 1; }, 30s)) << good->err();
  auto bad = fluent_bit(d, "fb-bad", dummy("app.user", R"({"message":"user bad"})", 1), port,
                        "      shared_key: k\n      username: agent\n      password: nope\n");
  ASSERT_TRUE(wait_until(
      [&] { return bad->err().find("username/password mismatch") != std::string::npos; }, 30s))
      << bad->err();
  EXPECT_EQ(e.rows("message = 'user bad'"), 0);
}

// Over TLS the handshake's HELO goes once the TLS handshake is done, and Fluent Bit reads it whole.
TEST(ForwardFluentBit, TlsConnectionsWithASharedKeyAreTaken) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  ASSERT_EQ(run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                 "/CN=localhost", "-days", "2", "-keyout", d / "key.pem", "-out", d / "cert.pem"},
                d.path()),
            0);
  const int port = free_port();
  Engine e(d, port,
           ", tls.cert: " + d / "cert.pem" + ", tls.key: " + d / "key.pem" +
               ", tls.min_version: '1.2', shared_key: over-tls");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto fb = fluent_bit(d, "fb", dummy("app.tls", kRecord, 2), port,
                       "      tls: on\n      tls.verify: off\n      require_ack_response: true\n"
                       "      shared_key: over-tls\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() == 2; }, 30s)) << fb->err() << (*e.proc).err();
  ASSERT_TRUE(wait_until([&] { return e.metric(d, "forward_acks_total") >= 1; }, 30s));
}

// Mutual TLS: with tls.ca, a client must present a certificate that CA signed.
TEST(ForwardFluentBit, WithTlsCaOnlyClientsWithACertificateItSignedAreTaken) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  const std::string sh =
      "set -e; cd " + d.path() +
      "; openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test-ca -days 2 -keyout ca.key "
      "-out ca.pem 2>/dev/null; for n in server client; do openssl req -newkey rsa:2048 -nodes "
      "-subj /CN=$n -keyout $n.key -out $n.csr 2>/dev/null; openssl x509 -req -in $n.csr -CA "
      "ca.pem -CAkey ca.key -CAcreateserial -days 2 -out $n.pem 2>/dev/null; done";
  ASSERT_EQ(run({"/bin/sh", "-c", sh}, d.path()), 0);
  const int port = free_port();
  Engine e(d, port,
           ", tls.cert: " + d / "server.pem" + ", tls.key: " + d / "server.key" +
               ", tls.ca: " + d / "ca.pem");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto with_cert =
      fluent_bit(d, "fb-cert", dummy("app.mtls", R"({"message":"with cert"})", 1), port,
                 "      tls: on\n      tls.verify: off\n      tls.crt_file: " + d / "client.pem" +
                     "\n      tls.key_file: " + d / "client.key" + "\n");
  ASSERT_TRUE(wait_until([&] { return e.rows("message = 'with cert'") == 1; }, 30s))
      << with_cert->err();
  auto without = fluent_bit(d, "fb-plain", dummy("app.mtls", R"({"message":"no cert"})", 1), port,
                            "      tls: on\n      tls.verify: off\n");
  // Under TLS 1.3 the client may count its handshake done before the server refuses its missing
  // certificate, so Fluent Bit does not always log an error: the server's count is what tells.
  ASSERT_TRUE(
      wait_until([&] { return e.metric(d, "forward_tls_handshakes_failed_total") >= 1; }, 30s))
      << without->err();
  EXPECT_EQ(e.rows("message = 'no cert'"), 0);
}

// Conservation: Fluent Bit tails 100k numbered lines with require_ack_response and unlimited
// retries; devmesh is killed with SIGKILL mid-stream and started again. Whatever devmesh had
// acknowledged was stored, whatever it had not is sent again, and the re-sends are absorbed by
// their event ids: every line is stored exactly once.
TEST(ForwardFluentBit, KillNineWhileStreamingWithAcksLosesNothingAndStoresEachLineOnce) {
  REQUIRE_FLUENT_BIT();
  TempDir d;
  constexpr int kLines = 100000;
  {
    std::ofstream f(d / "app.log");
    for (int i = 1; i <= kLines; ++i) f << "line " << i << "\n";
  }
  const int port = free_port();
  Engine e(d, port, ", ack: delivered");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  auto fb = fluent_bit(d, "fb",
                       "    - name: tail\n      tag: app.tail\n      path: " + d / "app.log" +
                           "\n      read_from_head: true\n",
                       port, "      require_ack_response: true\n");
  ASSERT_TRUE(wait_until([&] { return e.rows() >= 5000; }, 60s)) << fb->err();
  const long before = e.rows();
  (*e.proc).kill(SIGKILL);
  ASSERT_EQ((*e.proc).wait_exit(10s), 128 + SIGKILL);
  e.start(d, "devmesh2");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  ASSERT_TRUE(wait_until([&] { return e.rows() == kLines; }, 120s))
      << "stored " << e.rows() << " of " << kLines << " (" << before << " before the kill)\n"
      << fb->err().substr(0, 4000);
  std::string why;
  ASSERT_TRUE(wait_settled(e.admin, d.path(), 60s, &why)) << why;
  SqliteDb s(e.db);
  EXPECT_EQ(s.number("SELECT COUNT(*) FROM log_events"), kLines);
  EXPECT_EQ(s.number("SELECT COUNT(DISTINCT message) FROM log_events"), kLines);
  EXPECT_EQ(s.number("SELECT MIN(CAST(substr(message, 6) AS INTEGER)) FROM log_events"), 1);
  EXPECT_EQ(s.number("SELECT MAX(CAST(substr(message, 6) AS INTEGER)) FROM log_events"), kLines);
}

// ---- a msgpack-c client of the test's own -------------------------------------------------------

// Builds msgpack with msgpack-c's packer.
class Pack {
 public:
  Pack() {
    msgpack_sbuffer_init(&b_);
    msgpack_packer_init(&p_, &b_, msgpack_sbuffer_write);
  }
  ~Pack() { msgpack_sbuffer_destroy(&b_); }
  Pack &array(size_t n) { return msgpack_pack_array(&p_, n), *this; }
  Pack &map(size_t n) { return msgpack_pack_map(&p_, n), *this; }
  Pack &str(const std::string &s) {
    msgpack_pack_str(&p_, s.size());
    msgpack_pack_str_body(&p_, s.data(), s.size());
    return *this;
  }
  Pack &bin(const std::string &s) {
    msgpack_pack_bin(&p_, s.size());
    msgpack_pack_bin_body(&p_, s.data(), s.size());
    return *this;
  }
  Pack &u64(uint64_t v) { return msgpack_pack_uint64(&p_, v), *this; }
  Pack &i64(int64_t v) { return msgpack_pack_int64(&p_, v), *this; }
  Pack &nil() { return msgpack_pack_nil(&p_), *this; }
  // EventTime: ext type 0, seconds and nanoseconds as big-endian 32-bit numbers.
  Pack &event_time(uint32_t sec, uint32_t nsec) {
    char b[8];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(sec >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) b[4 + i] = static_cast<char>(nsec >> (24 - 8 * i));
    msgpack_pack_ext(&p_, 8, 0);
    msgpack_pack_ext_body(&p_, b, 8);
    return *this;
  }
  Pack &raw(const std::string &bytes) {
    msgpack_sbuffer_write(&b_, bytes.data(), bytes.size());
    return *this;
  }
  std::string bytes() const { return std::string(b_.data, b_.size); }

 private:
  msgpack_sbuffer b_;
  msgpack_packer p_;
};

// A TCP client speaking raw bytes; reads whole msgpack answers.
class Client {
 public:
  explicit Client(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    if (connect(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) {
      close(fd_);
      fd_ = -1;
    }
    msgpack_unpacked_init(&msg_);
  }
  ~Client() {
    msgpack_unpacked_destroy(&msg_);
    if (fd_ >= 0) close(fd_);
  }
  bool connected() const { return fd_ >= 0; }
  bool send(const std::string &bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(bytes.size());
  }
  // The next msgpack answer, or nullptr at the deadline or when the server closed.
  const msgpack_object *read(std::chrono::milliseconds deadline = 20s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      size_t off = 0;
      if (!buf_.empty() &&
          msgpack_unpack_next(&msg_, buf_.data(), buf_.size(), &off) == MSGPACK_UNPACK_SUCCESS) {
        kept_ = buf_.substr(0, off);  // msg_ points into kept_
        buf_.erase(0, off);
        msgpack_unpack_next(&msg_, kept_.data(), kept_.size(), &(off = 0));
        return &msg_.data;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return nullptr;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return nullptr;
      char tmp[4096];
      const ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0) {
        closed_ = true;
        return nullptr;
      }
      buf_.append(tmp, static_cast<size_t>(n));
    }
  }
  // True once the server closed the connection (within the deadline).
  bool closed_by_server(std::chrono::milliseconds deadline = 20s) {
    const auto end = std::chrono::steady_clock::now() + deadline;
    while (!closed_ && std::chrono::steady_clock::now() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      char tmp[4096];
      const ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n <= 0)
        closed_ = true;
      else
        buf_.append(tmp, static_cast<size_t>(n));
    }
    return closed_;
  }

 private:
  int fd_ = -1;
  std::string buf_, kept_;
  msgpack_unpacked msg_;
  bool closed_ = false;
};

std::string text(const msgpack_object &o) {
  if (o.type == MSGPACK_OBJECT_STR) return std::string(o.via.str.ptr, o.via.str.size);
  if (o.type == MSGPACK_OBJECT_BIN) return std::string(o.via.bin.ptr, o.via.bin.size);
  return "";
}

// The chunk an ack names, or "" when the answer is not {"ack": chunk}.
std::string acked_chunk(const msgpack_object *o) {
  if (o == nullptr || o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 1) return "";
  if (text(o->via.map.ptr[0].key) != "ack") return "";
  return text(o->via.map.ptr[0].val);
}

// A reload keeps the running forward input (its own listener is not "an address in use") and it
// keeps taking events.
TEST(ForwardClient, AReloadKeepsTheInputListening) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  const HttpResponse r = http("http://" + local(e.admin) + "/reload", {}, "POST");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"applied\""), std::string::npos) << r.body;
  Client c(port);
  Pack m;
  m.array(4).str("t").u64(1764344843).map(1).str("message").str("after reload");
  m.map(1).str("chunk").str("r");
  ASSERT_TRUE(c.send(m.bytes()));
  EXPECT_EQ(acked_chunk(c.read()), "r");
}

TEST(ForwardClient, MessageModeWithEventTimeAndIntegerTimeIsStoredAndAcked) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  Client c(port);
  ASSERT_TRUE(c.connected());
  Pack a;
  a.array(4).str("client.msg").event_time(1764344843, 123456789);
  a.map(2).str("log").str("event time").str("lvl").str("warn");
  a.map(1).str("chunk").str("c-1");
  ASSERT_TRUE(c.send(a.bytes()));
  EXPECT_EQ(acked_chunk(c.read()), "c-1");
  Pack b;
  b.array(3).str("client.msg").u64(1764344844).map(1).str("msg").str("integer time");
  ASSERT_TRUE(c.send(b.bytes()));
  ASSERT_TRUE(wait_until([&] { return e.rows() == 2; }, 20s));
  SqliteDb s(e.db);
  EXPECT_EQ(
      s.value("SELECT timestamp || ' ' || level FROM log_events WHERE message = 'event time'"),
      "1764344843123456789 WARN");
  EXPECT_EQ(s.value("SELECT timestamp FROM log_events WHERE message = 'integer time'"),
            "1764344844000000000");
  EXPECT_EQ(e.metric(d, "forward_messages_total", "mode=\"message\""), 2);
}

TEST(ForwardClient, PackedForwardEntriesAreStoredAndABadEventIsSkippedAndCounted) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  Pack entries;
  for (int i = 0; i < 3; ++i) {
    entries.array(2).event_time(1764344843, static_cast<uint32_t>(i));
    entries.map(1).str("message").str("packed " + std::to_string(i));
  }
  // Fluent Bit's event format 2 ([[time, metadata], record]) and a bad time in between.
  entries.array(2).array(2).u64(1764344850).map(1).str("origin").str("meta");
  entries.map(1).str("message").str("format two");
  entries.array(2).str("not a time").map(1).str("message").str("bad time");
  Pack m;
  m.array(3)
      .str("client.packed")
      .bin(entries.bytes())
      .map(2)
      .str("size")
      .u64(5)
      .str("chunk")
      .str("p-1");
  Client c(port);
  ASSERT_TRUE(c.send(m.bytes()));
  EXPECT_EQ(acked_chunk(c.read()), "p-1") << "the good events are kept, so the chunk is acked";
  ASSERT_TRUE(wait_until([&] { return e.rows() == 4; }, 20s));
  EXPECT_EQ(e.rows("message = 'format two' AND json_extract(meta_json, '$.origin') = 'meta'"), 1);
  EXPECT_EQ(e.metric(d, "forward_records_rejected_total", "reason=\"bad_time\""), 1);
  EXPECT_EQ(e.metric(d, "forward_messages_total", "mode=\"packed_forward\""), 1);
}

TEST(ForwardClient, AFrameSplitAcrossManyWritesIsReassembled) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  Pack m;
  m.array(3).str("client.split").array(200);
  for (int i = 0; i < 200; ++i)
    m.array(2).u64(1764344843).map(1).str("message").str("split " + std::to_string(i));
  m.map(1).str("chunk").str("s-1");
  const std::string bytes = m.bytes();
  Client c(port);
  for (size_t i = 0; i < bytes.size(); i += 7) {
    ASSERT_TRUE(c.send(bytes.substr(i, 7)));
    if (i % 700 == 0) std::this_thread::sleep_for(1ms);  // separate reads on the server
  }
  EXPECT_EQ(acked_chunk(c.read()), "s-1");
  EXPECT_EQ(e.rows(), 200);
}

// A listener that never accepts nor answers: an http_forward output aimed at it cannot finish.
class Sink {
 public:
  Sink() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr *>(&a), sizeof a);
    listen(fd_, 16);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr *>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~Sink() { close(fd_); }
  std::string output() const {
    return "    - {name: http_forward, url: 'http://127.0.0.1:" + std::to_string(port_) +
           "/ingest/logs'}\n";
  }

 private:
  int fd_ = -1, port_ = 0;
};

// An engine whose only output never finishes, with forward options and service extras.
std::unique_ptr<Process> stuck_engine(const TempDir &d, const Sink &sink, int port, int admin,
                                      const std::string &options, const std::string &service = "") {
  return start_engine(d, plugins_head("  http_listen: " + local(admin) + "\n" + service) +
                             "  inputs:\n    - {name: forward, listen: '" + local(port) + "'" +
                             options + "}\n  outputs:\n" + sink.output());
}

std::string chunk_message(const std::string &message, const std::string &chunk) {
  Pack m;
  m.array(4).str("t").u64(1764344843).map(1).str("message").str(message);
  m.map(1).str("chunk").str(chunk);
  return m.bytes();
}

TEST(ForwardClient, AChunkIsNotAckedWhenTheAckTimesOutAndItsConnectionIsClosed) {
  TempDir d;
  const int port = free_port(), admin = free_port();
  Sink sink;
  auto dm = stuck_engine(d, sink, port, admin, ", ack_timeout: 500ms");
  ASSERT_TRUE(answers(admin)) << dm->err();
  Client c(port);
  ASSERT_TRUE(c.send(chunk_message("slow", "t-1")));
  EXPECT_TRUE(c.closed_by_server(20s)) << "no ack: the connection closes so the client re-sends";
  const std::string body = http("http://" + local(admin) + "/metrics").body;
  EXPECT_EQ(find_metric(body, "devmesh_forward_ack_timeouts_total", "").value_or(0), 1);
  EXPECT_EQ(find_metric(body, "devmesh_forward_acks_total", "").value_or(-1), 0);
}

TEST(ForwardClient, AckAcceptedAnswersOnceTheRecordsAreQueued) {
  TempDir d;
  const int port = free_port(), admin = free_port();
  Sink sink;
  auto dm = stuck_engine(d, sink, port, admin, ", ack: accepted");
  ASSERT_TRUE(answers(admin)) << dm->err();
  Client c(port);
  ASSERT_TRUE(c.send(chunk_message("queued", "q-1")));
  EXPECT_EQ(acked_chunk(c.read()), "q-1") << "accepted does not wait for the stuck output";
}

TEST(ForwardClient, AckDurableAnswersOnceTheRecordsAreOnDisk) {
  TempDir d;
  const int port = free_port(), admin = free_port();
  Sink sink;
  auto dm = stuck_engine(d, sink, port, admin, ", ack: durable",
                         "  storage: {path: " + d / "store" + ", sync: always}\n");
  ASSERT_TRUE(answers(admin)) << dm->err();
  Client c(port);
  ASSERT_TRUE(c.send(chunk_message("on disk", "d-1")));
  EXPECT_EQ(acked_chunk(c.read()), "d-1") << "durable: fsynced, though the output is stuck";
}

// An engine whose output is the test plugin flaky (options as given).
std::unique_ptr<Process> flaky_engine(const TempDir &d, int port, int admin,
                                      const std::string &flaky_options) {
  return start_engine(d, plugins_head("  http_listen: " + local(admin) + "\n") +
                             "  inputs:\n    - {name: forward, listen: '" + local(port) +
                             "'}\n  outputs:\n    - {name: flaky, path: " + d / "out.txt" +
                             flaky_options + "}\n");
}

// A chunk of 20,000 events is turned into records a slice per loop turn and, behind an output
// whose small queue pauses the input, submitted as the queue drains; its one ack comes once
// every record is written.
TEST(ForwardClient, ALargeChunkBehindAFullQueueIsAckedOnceEveryRecordIsWritten) {
  TempDir d;
  const int port = free_port(), admin = free_port();
  auto dm = flaky_engine(d, port, admin, ", delay: 5ms, batch_size: 500, queue_limit: 64KiB");
  ASSERT_TRUE(answers(admin)) << dm->err();
  constexpr int kEvents = 20000;
  Pack entries;
  for (int i = 0; i < kEvents; ++i) {
    entries.array(2).event_time(1764344843, static_cast<uint32_t>(i));
    entries.map(1).str("message").str("event " + std::to_string(i));
  }
  Pack m;
  m.array(3).str("big").bin(entries.bytes()).map(1).str("chunk").str("big-1");
  Client c(port);
  ASSERT_TRUE(c.send(m.bytes()));
  EXPECT_EQ(acked_chunk(c.read(60s)), "big-1");
  EXPECT_EQ(read_lines(d / "out.txt").size(), static_cast<size_t>(kEvents));
  const std::string body = http("http://" + local(admin) + "/metrics").body;
  EXPECT_EQ(find_metric(body, "devmesh_forward_records_total", "").value_or(0), kEvents);
  EXPECT_EQ(find_metric(body, "devmesh_forward_acks_total", "").value_or(0), 1);
  EXPECT_GE(find_metric(body, "devmesh_forward_batches_held_total", "").value_or(0), 1)
      << "the queue never filled";
}

TEST(ForwardClient, AChunkWhoseRecordsFailForGoodGetsNoAckAndItsConnectionIsClosed) {
  TempDir d;
  const int port = free_port(), admin = free_port();
  auto dm = flaky_engine(d, port, admin, ", fail_always: true, fail_status: error");
  ASSERT_TRUE(answers(admin)) << dm->err();
  Client c(port);
  ASSERT_TRUE(c.send(chunk_message("doomed", "f-1")));
  EXPECT_TRUE(c.closed_by_server(30s)) << "no ack: the client keeps the chunk and re-sends it";
  const std::string body = http("http://" + local(admin) + "/metrics").body;
  EXPECT_EQ(find_metric(body, "devmesh_forward_chunks_unacked_total", "").value_or(0), 1);
  EXPECT_EQ(find_metric(body, "devmesh_forward_records_failed_total", "").value_or(0), 1);
  EXPECT_EQ(find_metric(body, "devmesh_forward_acks_total", "").value_or(-1), 0);
}

// SIGTERM while a chunk waits for a slow output: the input stops reading but keeps the
// connection, and the chunk's ack still goes out within the grace period.
TEST(ForwardClient, AChunkInFlightAtSigtermIsStillAckedWithinTheGracePeriod) {
  TempDir d;
  const int port = free_port(), admin = free_port();
  auto dm = start_engine(d, plugins_head("  http_listen: " + local(admin) + "\n  grace: 10s\n") +
                                "  inputs:\n    - {name: forward, listen: '" + local(port) +
                                "'}\n  outputs:\n    - {name: flaky, path: " + d / "out.txt" +
                                ", delay: 1s}\n");
  ASSERT_TRUE(answers(admin)) << dm->err();
  Client c(port);
  ASSERT_TRUE(c.send(chunk_message("in flight", "s-1")));
  ASSERT_TRUE(wait_until(
      [&] {
        return find_metric(http("http://" + local(admin) + "/metrics").body,
                           "devmesh_forward_records_total", "")
                   .value_or(0) == 1;
      },
      10s));
  dm->kill(SIGTERM);
  EXPECT_EQ(acked_chunk(c.read(20s)), "s-1");
  EXPECT_EQ(dm->wait_exit(30s), 0) << dm->err();
  EXPECT_EQ(read_lines(d / "out.txt").size(), 1u);
}

TEST(ForwardConfig, OptionProblemsAreNamed) {
  TempDir d;
  write_file(d / "bad.yaml",
             plugins_head() +
                 "  inputs:\n    - {name: forward, ack: durable, username: u, self_hostname: h, "
                 "service_key: ''}\n  outputs:\n    - {name: 'null'}\n");
  std::string out, err;
  EXPECT_NE(run({DEVMESH_BIN, "--dry-run", "-c", d / "bad.yaml"}, d.path(), &out, &err), 0);
  EXPECT_NE(err.find("durable needs service.storage"), std::string::npos) << err;
  EXPECT_NE(err.find("username and password go together"), std::string::npos) << err;
  EXPECT_NE(err.find("needs shared_key"), std::string::npos) << err;
  EXPECT_NE(err.find("self_hostname"), std::string::npos) << err;
  EXPECT_NE(err.find("service_key"), std::string::npos) << err;
  write_file(d / "idle.yaml", plugins_head() +
                                  "  inputs:\n    - {name: forward, ack_timeout: 1m, "
                                  "idle_timeout: 30s}\n  outputs:\n    - {name: 'null'}\n");
  EXPECT_NE(run({DEVMESH_BIN, "--dry-run", "-c", d / "idle.yaml"}, d.path(), &out, &err), 0);
  EXPECT_NE(err.find("idle_timeout"), std::string::npos) << err;
  EXPECT_NE(err.find("longer than ack_timeout"), std::string::npos) << err;
}

TEST(ForwardClient, NestingUpToTheLimitIsStoredAsJsonMeta) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port);
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  // [tag, time, {"message": .., "deep": [[[...]]]}, option]: 31 containers in all, the limit.
  Pack m;
  m.array(4).str("t").u64(1764344843).map(2).str("message").str("deep").str("deep");
  for (int i = 0; i < 29; ++i) m.array(1);
  m.u64(1);
  m.map(1).str("chunk").str("n");
  Client c(port);
  ASSERT_TRUE(c.send(m.bytes()));
  EXPECT_EQ(acked_chunk(c.read()), "n");
  EXPECT_EQ(e.rows("message = 'deep' AND json_extract(meta_json, '$.deep[0][0][0]') IS NOT NULL"),
            1);
}

// ---- hostile input
// -------------------------------------------------------------------------------

// Sends bytes on a fresh connection and expects the server to close it with reason counted, then
// a good message on a new connection to be taken (the engine neither crashed nor stalled).
void expect_refused(Engine &e, const TempDir &d, int port, const std::string &bytes,
                    const std::string &reason, int good_index) {
  const double before = e.metric(d, "forward_protocol_errors_total", "reason=\"" + reason + "\"");
  {
    Client c(port);
    ASSERT_TRUE(c.connected());
    c.send(bytes);
    EXPECT_TRUE(c.closed_by_server()) << reason;
  }
  EXPECT_TRUE(wait_until(
      [&] {
        return e.metric(d, "forward_protocol_errors_total", "reason=\"" + reason + "\"") ==
               before + 1;
      },
      10s))
      << reason;
  Client good(port);
  Pack m;
  m.array(4)
      .str("good")
      .u64(1764344843)
      .map(1)
      .str("message")
      .str("after " + std::to_string(good_index));
  m.map(1).str("chunk").str("g");
  ASSERT_TRUE(good.send(m.bytes()));
  EXPECT_EQ(acked_chunk(good.read()), "g") << "the engine still serves after " << reason;
}

TEST(ForwardHostile, EveryBadFrameIsRefusedWithItsReasonCountedAndTheEngineKeepsServing) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", max_chunk: 1MiB");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  int good = 0;

  // Deep nesting: 40 arrays inside one another.
  Pack deep;
  deep.array(3).str("t").u64(1);
  for (int i = 0; i < 40; ++i) deep.array(1);
  deep.nil();
  expect_refused(e, d, port, deep.bytes(), "too_deep", ++good);

  // Huge declared sizes, refused from the header alone: an array32 of 2^32-1 items, a str32 of
  // 4 GiB, a bin32 of 1 GiB inside a frame.
  expect_refused(e, d, port, std::string("\xdd\xff\xff\xff\xff", 5), "too_large", ++good);
  expect_refused(e, d, port, std::string("\x93\xa1t\xdb\xff\xff\xff\xff", 8), "too_large", ++good);
  expect_refused(e, d, port, std::string("\x92\xa1t\xc6\x40\x00\x00\x00", 8), "too_large", ++good);

  // Wrong types: a tag that is a number, a map at the top, entries that are a boolean, an
  // option that is a string, a chunk id that is a number, an unknown compression.
  Pack t1;
  t1.array(3).u64(5).u64(1).map(0);
  expect_refused(e, d, port, t1.bytes(), "protocol", ++good);
  Pack t2;
  t2.map(1).str("tag").str("x");
  expect_refused(e, d, port, t2.bytes(), "protocol", ++good);
  Pack t3;
  t3.array(2).str("t").raw("\xc3");
  expect_refused(e, d, port, t3.bytes(), "protocol", ++good);
  Pack t4;
  t4.array(3).str("t").array(0).str("options");
  expect_refused(e, d, port, t4.bytes(), "protocol", ++good);
  Pack t5;
  t5.array(3).str("t").array(0).map(1).str("chunk").u64(9);
  expect_refused(e, d, port, t5.bytes(), "protocol", ++good);
  Pack t6;
  t6.array(3).str("t").bin("xx").map(1).str("compressed").str("lz4");
  expect_refused(e, d, port, t6.bytes(), "compression", ++good);

  // A byte that starts no msgpack value, and packed entries cut inside an entry.
  expect_refused(e, d, port, std::string("\x92\xa1t\xc1", 4), "malformed", ++good);
  Pack cut_entries;
  cut_entries.array(2).u64(1764344843).map(1).str("message").str("cut");
  const std::string cut = cut_entries.bytes().substr(0, cut_entries.bytes().size() - 3);
  Pack t7;
  t7.array(2).str("t").bin(cut);
  expect_refused(e, d, port, t7.bytes(), "malformed", ++good);

  // Not gzip, and a gzip bomb: 64 MiB of zeros in about 64 KiB, past max_chunk once inflated.
  Pack t8;
  t8.array(3).str("t").bin("not gzip at all, not at all").map(1).str("compressed").str("gzip");
  expect_refused(e, d, port, t8.bytes(), "compression", ++good);
  ASSERT_EQ(
      run({"/bin/sh", "-c", "head -c 67108864 /dev/zero | gzip -9 > " + d / "bomb.gz"}, d.path()),
      0);
  Pack t9;
  t9.array(3).str("t").bin(read_file(d / "bomb.gz")).map(1).str("compressed").str("gzip");
  expect_refused(e, d, port, t9.bytes(), "too_large", ++good);

  // A truncated frame then the client's close: nothing is taken, nothing is counted as a frame.
  {
    Client c(port);
    Pack m;
    m.array(3).str("t").u64(1764344843).map(1).str("message").str("never complete");
    c.send(m.bytes().substr(0, 10));
  }
  Client after(port);
  Pack m;
  m.array(4).str("good").u64(1764344843).map(1).str("message").str("last");
  m.map(1).str("chunk").str("z");
  ASSERT_TRUE(after.send(m.bytes()));
  EXPECT_EQ(acked_chunk(after.read()), "z");
  EXPECT_EQ(e.rows("message = 'never complete'"), 0);
  EXPECT_EQ(e.rows("service = 'good'"), good + 1);
  EXPECT_EQ(e.rows("service = 't'"), 0) << "nothing of a refused frame is stored";
}

std::string sha512_hex(const std::string &data) {
  unsigned char digest[64];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha512(), nullptr);
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i)
    out += digits[digest[i] >> 4], out += digits[digest[i] & 15];
  return out;
}

TEST(ForwardHostile, BadAuthenticationIsAnsweredPongFalseAndNothingIsTaken) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", shared_key: topsecret, self_hostname: agg");
  ASSERT_TRUE(e.ready) << (*e.proc).err();

  // Data before the handshake.
  {
    Client c(port);
    const msgpack_object *helo = c.read();
    ASSERT_NE(helo, nullptr);
    ASSERT_EQ(helo->type, MSGPACK_OBJECT_ARRAY);
    EXPECT_EQ(text(helo->via.array.ptr[0]), "HELO");
    Pack m;
    m.array(3).str("t").u64(1).map(1).str("message").str("sneaky");
    c.send(m.bytes());
    EXPECT_TRUE(c.closed_by_server());
  }
  // Before the handshake a frame larger than a PING is refused unread.
  {
    Client c(port);
    ASSERT_NE(c.read(), nullptr);
    Pack big;
    big.array(6).str("PING").str(std::string(8000, 'h'));
    c.send(big.bytes());
    EXPECT_TRUE(c.closed_by_server());
    EXPECT_TRUE(wait_until(
        [&] { return e.metric(d, "forward_protocol_errors_total", "reason=\"too_large\"") == 1; },
        10s));
  }
  // A PING with a wrong digest, then the right one.
  auto ping = [&](const std::string &key, std::string *pong_reason) {
    Client c(port);
    const msgpack_object *helo = c.read();
    if (helo == nullptr) return false;
    std::string nonce;
    const msgpack_object &opts = helo->via.array.ptr[1];
    for (uint32_t i = 0; i < opts.via.map.size; ++i)
      if (text(opts.via.map.ptr[i].key) == "nonce") nonce = text(opts.via.map.ptr[i].val);
    const std::string salt = "0123456789abcdef", host = "client-1";
    Pack p;
    p.array(6)
        .str("PING")
        .str(host)
        .str(salt)
        .str(sha512_hex(salt + host + nonce + key))
        .str("")
        .str("");
    c.send(p.bytes());
    const msgpack_object *pong = c.read();
    if (pong == nullptr || pong->type != MSGPACK_OBJECT_ARRAY || pong->via.array.size != 5)
      return false;
    *pong_reason = text(pong->via.array.ptr[2]);
    if (!pong->via.array.ptr[1].via.boolean) return false;
    // The server proves it knows the key too.
    EXPECT_EQ(text(pong->via.array.ptr[3]), "agg");
    EXPECT_EQ(text(pong->via.array.ptr[4]), sha512_hex(salt + "agg" + nonce + key));
    Pack m;
    m.array(4).str("t").u64(1764344843).map(1).str("message").str("authed " + key);
    m.map(1).str("chunk").str("a");
    c.send(m.bytes());
    return acked_chunk(c.read()) == "a";
  };
  std::string reason;
  EXPECT_FALSE(ping("wrong", &reason));
  EXPECT_EQ(reason, "shared_key mismatch");
  EXPECT_TRUE(ping("topsecret", &reason));
  EXPECT_EQ(e.rows("message = 'sneaky'"), 0);
  EXPECT_EQ(e.rows("message = 'authed wrong'"), 0);
  EXPECT_EQ(e.rows("message = 'authed topsecret' AND host = 'client-1'"), 1);
  EXPECT_EQ(e.metric(d, "forward_auth_failures_total"), 2);
}

// A peer that stops part-way through a frame holds its buffer and its slot only until
// idle_timeout; one that sends whole messages now and then is kept.
TEST(ForwardHostile, AConnectionStoppedPartWayThroughAFrameIsClosedAtIdleTimeout) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", ack_timeout: 1s, idle_timeout: 2s");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  Pack m;
  m.array(3).str("t").u64(1764344843).map(1).str("message").str("half a frame");
  const std::string whole = m.bytes();
  Client stalled(port), lively(port);
  ASSERT_TRUE(stalled.send(whole.substr(0, whole.size() / 2)));
  for (int i = 0; i < 5; ++i) {
    Pack k;
    k.array(4).str("t").u64(1764344843).map(1).str("message").str("alive " + std::to_string(i));
    k.map(1).str("chunk").str("k" + std::to_string(i));
    ASSERT_TRUE(lively.send(k.bytes()));
    EXPECT_EQ(acked_chunk(lively.read()), "k" + std::to_string(i));
    std::this_thread::sleep_for(700ms);
  }
  EXPECT_TRUE(stalled.closed_by_server(5s));
  EXPECT_TRUE(wait_until(
      [&] { return e.metric(d, "forward_connections_closed_total", "reason=\"idle\"") >= 1; },
      10s));
  EXPECT_EQ(e.rows("message = 'half a frame'"), 0);
  EXPECT_EQ(e.rows("message LIKE 'alive %'"), 5);
}

TEST(ForwardHostile, ConnectionsPastMaxConnectionsAreRefusedAndCounted) {
  TempDir d;
  const int port = free_port();
  Engine e(d, port, ", max_connections: 1, max_meta_keys: 2");
  ASSERT_TRUE(e.ready) << (*e.proc).err();
  Client first(port);
  Pack m;
  m.array(4).str("t").u64(1764344843);
  m.map(4).str("message").str("wide").str("a").u64(1).str("b").u64(2).str("c").u64(3);
  m.map(1).str("chunk").str("w");
  ASSERT_TRUE(first.send(m.bytes()));
  EXPECT_EQ(acked_chunk(first.read()), "w");
  Client second(port);
  EXPECT_TRUE(second.closed_by_server());
  // Counted once the server notices (it looks at the next event on an open connection).
  Pack again;
  again.array(3).str("t").u64(1764344843).map(1).str("message").str("again");
  first.send(again.bytes());
  EXPECT_TRUE(
      wait_until([&] { return e.metric(d, "forward_connections_refused_total") >= 1; }, 10s));
  // max_meta_keys: the third key is left out and the record flagged.
  SqliteDb s(e.db);
  EXPECT_EQ(s.value("SELECT json_extract(meta_json, '$.truncated') FROM log_events WHERE "
                    "message = 'wide'"),
            "meta");
  EXPECT_EQ(e.metric(d, "forward_records_truncated_total"), 1);
}

}  // namespace
