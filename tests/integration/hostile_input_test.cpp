// Hostile input end to end (issue 6): record values that look like paths stay data and never
// name a file; every listener (engine /health and /metrics, http input, query) is on loopback
// unless an address is configured.
//
// Which code builds file names, checked for this test: sqlite (path option), stdout (path),
// journald (state_file), query (path of the store), the engine's dead_letter_path; all from
// the operator's config, none from a record. No plugin joins a record value into a path.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "http_support.h"

namespace devmesh::test {
namespace {

namespace fs = std::filesystem;

std::set<std::string> files_under(const std::string &dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec))
    out.insert(fs::relative(it->path(), dir).string());
  return out;
}

// Entries (not recursive) of dir whose name contains token.
std::vector<std::string> entries_naming(const std::string &dir, const std::string &token) {
  std::vector<std::string> hits;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::end(it); it.increment(ec))
    if (it->path().filename().string().find(token) != std::string::npos)
      hits.push_back(it->path().string());
  return hits;
}

std::string json_escape(const std::string &s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string value_of(const rapidjson::Value &o, const char *k) {
  auto it = o.FindMember(k);
  if (it == o.MemberEnd() || !it->value.IsString()) return "<absent>";
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

TEST(HostileInput, IngestValuesThatLookLikePathsNeverBecomeFiles) {
  TempDir d;
  const std::string data = d / "data";
  fs::create_directories(data);
  // A token no file on this machine names: any file whose name holds it was made from a value.
  std::mt19937_64 rng(std::random_device{}());
  const std::string token =
      "dm-hostile-" + std::to_string(getpid()) + "-" + std::to_string(rng() % 1000000000);
  const std::string svc = "../../" + token + "-svc";
  const std::string host = "/tmp/" + token + "-abs/host";
  const std::string source = "..\\..\\" + token + "-src";
  const std::string msg = token + "-msg" + std::string(1, '\0') + "/../../etc/passwd";
  const std::string evt = "../" + token + "-evt/../../x";
  const std::string nul_svc = std::string("svc") + '\0' + "../../" + token + "-nul";
  const std::string trace = "%2e%2e%2f" + token;
  const std::string meta_path = "/" + token + "-meta";

  const int port = free_port(), health = free_port();
  const std::string yaml =
      plugins_head("  http_listen: 127.0.0.1:" + std::to_string(health) + "\n") +
      "  inputs:\n"
      "    - name: http\n"
      "      listen: 127.0.0.1:" +
      std::to_string(port) +
      "\n"
      "      ack: delivered\n"
      "  outputs:\n"
      "    - name: sqlite\n"
      "      path: " +
      data +
      "/logs.db\n"
      "    - name: stdout\n"
      "      path: " +
      data +
      "/out.ndjson\n"
      "    - name: flaky\n"  // every batch dead-lettered: the dead-letter writer sees the values
      "      path: " +
      data +
      "/flaky.ndjson\n"
      "      fail_always: true\n"
      "      fail_status: error\n"
      "      dead_letter_path: " +
      data + "/dead.ndjson\n";
  Devmesh dm(d, "hostile", yaml);
  ASSERT_TRUE(dm.ready(health, d)) << dm->err();
  const std::set<std::string> before = files_under(d.path());

  const std::string body =
      "{\"logs\":[{\"message\":\"" + json_escape(msg) + "\",\"service\":\"" + json_escape(svc) +
      "\",\"host\":\"" + json_escape(host) + "\",\"source\":\"" + json_escape(source) +
      "\",\"event_type\":\"" + json_escape(evt) + "\",\"trace_id\":\"" + json_escape(trace) +
      "\",\"meta_json\":{\"file\":\"" + json_escape(svc) + "\",\"" + json_escape(meta_path) +
      "\":\"" + json_escape(host) + "\"}},{\"message\":\"second\",\"service\":\"" +
      json_escape(nul_svc) + "\",\"host\":\"" + json_escape(host + "/../../..") + "\"}]}";
  const HttpResult r = libcurl_post("http://127.0.0.1:" + std::to_string(port) + "/ingest/logs",
                                    body, {"Content-Type: application/json"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":2"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("\"dead_lettered\":2"), std::string::npos) << r.body;
  dm->kill(SIGTERM);
  ASSERT_EQ(dm->wait_exit(30s), 0) << dm->err();

  // The values arrived as data, byte for byte (NUL included).
  auto out = read_ndjson(data + "/out.ndjson");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(value_of(out[0], "service"), svc);
  EXPECT_EQ(value_of(out[0], "host"), host);
  EXPECT_EQ(value_of(out[0], "source"), source);
  EXPECT_EQ(value_of(out[0], "message"), msg);
  EXPECT_EQ(value_of(out[1], "service"), nul_svc);
  EXPECT_EQ(read_ndjson(data + "/dead.ndjson").size(), 2u);

  // Only the configured files appeared, all inside the data directory.
  std::set<std::string> made;
  for (const std::string &f : files_under(d.path()))
    if (!before.count(f)) made.insert(f);
  for (const std::string &f : made) {
    EXPECT_EQ(f.rfind("data/", 0), 0u) << "created outside the data dir: " << f;
    EXPECT_EQ(f.find(token), std::string::npos) << "a file named after a value: " << f;
  }
  for (const std::string &f : files_under(data)) {
    static const std::set<std::string> expected = {"logs.db",        "logs.db-wal",  "logs.db-shm",
                                                   "out.ndjson",     "flaky.ndjson", "dead.ndjson",
                                                   "logs.db-journal"};
    EXPECT_TRUE(expected.count(f)) << "unexpected file in the data dir: " << f;
  }
  // Nowhere a value could resolve to: the engine's working directory and its parents, the
  // config's directory, /tmp, / and /etc hold nothing named after the token.
  const std::string cwd = fs::current_path().string();
  for (const std::string &dir : {cwd, cwd + "/..", cwd + "/../..", d.path(), d.path() + "/..", data,
                                 std::string("/tmp"), std::string("/"), std::string("/etc")})
    EXPECT_TRUE(entries_naming(dir, token).empty()) << "in " << dir;
  EXPECT_FALSE(fs::exists("/tmp/" + token + "-abs"));
}

// Bytes that need escaping in JSON and bytes that are not UTF-8, through http -> stdout: each
// written line is strict JSON, and a field's limit counts what will be written (U+FFFD per
// invalid byte), so what is accepted here is accepted again wherever it is forwarded.
TEST(HostileInput, ControlAndInvalidUtf8BytesLeaveAsValidJsonWithinTheFieldLimits) {
  TempDir d;
  const int port = free_port(), health = free_port();
  const std::string yaml =
      plugins_head("  http_listen: 127.0.0.1:" + std::to_string(health) + "\n") +
      "  inputs:\n    - name: http\n      listen: 127.0.0.1:" + std::to_string(port) +
      "\n      ack: delivered\n  outputs:\n    - name: stdout\n      path: " + d.path() +
      "/out.ndjson\n";
  Devmesh dm(d, "bytes", yaml);
  ASSERT_TRUE(dm.ready(health, d)) << dm->err();
  std::string controls;  // every control byte, several 16-byte blocks of them
  for (int round = 0; round < 4; ++round)
    for (int c = 1; c < 0x20; ++c) controls += static_cast<char>(c);
  // 300 bytes, 100 characters by UTF-8's count, 300 once each stray byte is a U+FFFD.
  const std::string stray = std::string(100, 'h') + std::string(200, '\x81');
  const std::string body = "{\"logs\":[{\"message\":\"0123456789abcdef" + json_escape(controls) +
                           "\",\"meta_json\":{\"k\":{\"n\":\"" + json_escape(controls) +
                           "\"}}},{\"message\":\"m\",\"host\":\"" + stray +
                           "\"},{\"message\":\"m\",\"host\":\"" + stray.substr(0, 255) + "\"}]}";
  const HttpResult r = libcurl_post("http://127.0.0.1:" + std::to_string(port) + "/ingest/logs",
                                    body, {"Content-Type: application/json"});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("\"accepted\":2"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("{\"index\":1,\"reason\":\"host longer than 255 characters\"}"),
            std::string::npos)
      << r.body;
  dm->kill(SIGTERM);
  ASSERT_EQ(dm->wait_exit(30s), 0) << dm->err();
  size_t bad = 0;
  auto out = read_ndjson(d / "out.ndjson", &bad);
  EXPECT_EQ(bad, 0u) << read_file(d / "out.ndjson");
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(value_of(out[0], "message"), "0123456789abcdef" + controls);
  for (const std::string &line : read_lines(d / "out.ndjson"))
    for (unsigned char c : line) ASSERT_GE(c, 0x20) << "a raw control byte in " << line;
}

// ---- listeners ---------------------------------------------------------------------------------

// The TCP listening sockets of process pid: "ip:port" from /proc/net/tcp and tcp6, matched by
// socket inode with the process's descriptors.
std::set<std::string> listening_addresses(pid_t pid) {
  std::set<std::string> inodes;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  std::error_code ec;
  for (auto it = fs::directory_iterator(fd_dir, ec); !ec && it != fs::end(it); it.increment(ec)) {
    std::error_code lec;
    const std::string target = fs::read_symlink(it->path(), lec).string();
    if (target.rfind("socket:[", 0) == 0) inodes.insert(target.substr(8, target.size() - 9));
  }
  std::set<std::string> out;
  // The process's own tables: it may live in a network namespace of its own.
  for (const char *table : {"/net/tcp", "/net/tcp6"}) {
    std::ifstream f("/proc/" + std::to_string(pid) + table);
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
      std::istringstream in(line);
      std::string sl, local, remote, state, queues, timer, retr, uid, timeout, inode;
      in >> sl >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >> inode;
      if (state != "0A" || !inodes.count(inode)) continue;  // 0A: LISTEN
      const std::string hex_addr = local.substr(0, local.find(':'));
      const int port = std::stoi(local.substr(local.find(':') + 1), nullptr, 16);
      char text[INET6_ADDRSTRLEN] = {};
      if (hex_addr.size() == 8) {
        in_addr a{};
        a.s_addr = static_cast<uint32_t>(std::stoul(hex_addr, nullptr, 16));  // host order as read
        inet_ntop(AF_INET, &a, text, sizeof text);
        out.insert(std::string(text) + ":" + std::to_string(port));
      } else {
        out.insert("[v6 " + hex_addr + "]:" + std::to_string(port));
      }
    }
  }
  return out;
}

std::string store_outputs(const std::string &dir, const std::string &query_listen) {
  return "  outputs:\n"
         "    - name: sqlite\n"
         "      path: " +
         dir + "/q.db\n" + "    - name: query\n" + "      path: " + dir + "/q.db\n" + query_listen;
}

TEST(HostileInput, ListenersGivenOnlyAPortServeOnLoopbackOnly) {
  TempDir d;
  const int engine = free_port(), input = free_port(), query = free_port();
  const std::string yaml =
      plugins_head("  http_listen: \"" + std::to_string(engine) + "\"\n") +
      "  inputs:\n"
      "    - name: http\n"
      "      listen: \":" +
      std::to_string(input) + "\"\n" +
      store_outputs(d.path(), "      listen: \"" + std::to_string(query) + "\"\n");
  Devmesh dm(d, "ports", yaml);
  ASSERT_TRUE(dm.ready(engine, d)) << dm->err();
  const std::set<std::string> want = {"127.0.0.1:" + std::to_string(engine),
                                      "127.0.0.1:" + std::to_string(input),
                                      "127.0.0.1:" + std::to_string(query)};
  EXPECT_EQ(listening_addresses(dm->pid()), want);
  // (No connect through another address to prove it: tests talk to 127.0.0.1 only, and the
  // kernel's socket table above is the proof.)
  std::string health;
  EXPECT_EQ(http_get("http://127.0.0.1:" + std::to_string(engine) + "/health", &health, d.path()),
            200);
}

TEST(HostileInput, ListenDefaultsInTheOptionTablesAreLoopback) {
  TempDir d;
  for (const char *plugin : {"http", "query", "otlp"}) {
    std::string out;
    ASSERT_EQ(run({DEVMESH_BIN, "--describe", plugin}, d.path(), &out), 0) << out;
    const size_t at = out.find("\n  listen ");
    ASSERT_NE(at, std::string::npos) << out;
    const std::string line = out.substr(at + 1, out.find('\n', at + 1) - at - 1);
    EXPECT_NE(line.find("default 127.0.0.1:"), std::string::npos) << plugin << ": " << line;
  }
}

TEST(HostileInput, InputAndQueryWithNoListenConfiguredServeOnLoopbackOnly) {
  TempDir d;
  // Nothing names an address: the http input and query share their default 127.0.0.1:8000, and
  // without service.http_listen the engine serves nothing. The engine runs in a network
  // namespace of its own (the tests run as root), where port 8000 is surely free whatever the
  // machine runs; a namespace that cannot be made fails the test rather than skipping it.
  const std::string yaml = plugins_head() +
                           "  inputs:\n"
                           "    - name: http\n" +
                           store_outputs(d.path(), "");
  write_file(d / "defaults.yaml", yaml);
  Process dm({"/usr/bin/unshare", "-n", "/bin/sh", "-c",
              "/sbin/ip link set lo up && exec \"$0\" -c \"$1\"", DEVMESH_BIN, d / "defaults.yaml"},
             d.path(), "defaults");
  std::set<std::string> got;
  const bool up = wait_until(
      [&] {
        got = listening_addresses(dm.pid());
        return !got.empty() || dm.wait_exit(0ms) >= 0;
      },
      30s);
  ASSERT_TRUE(up && !got.empty()) << dm.err();
  EXPECT_EQ(got, std::set<std::string>{"127.0.0.1:8000"});
  // The engine answers there, from inside its namespace.
  std::string out;
  const int rc = run({"/usr/bin/nsenter", "-t", std::to_string(dm.pid()), "-n", "/usr/bin/curl",
                      "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "-X",
                      "POST", "-H", "Content-Type: application/json", "--data-binary",
                      "{\"logs\":[{\"message\":\"m\"}]}", "http://127.0.0.1:8000/ingest/logs"},
                     d.path(), &out);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out.substr(0, 1), "2") << out << dm.err();
}

}  // namespace
}  // namespace devmesh::test
