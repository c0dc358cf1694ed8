// The engine as a Type=notify systemd service: the test plays systemd's part, a unix datagram
// socket named by NOTIFY_SOCKET, and reads what the engine tells it (READY once its listeners
// answer, WATCHDOG keep-alives at half WATCHDOG_USEC, STOPPING on SIGTERM).
#include <string>

#include "http_support.h"
#include "notify_socket.h"

namespace devmesh::test {
namespace {

std::string http_pipeline(int listen, int admin) {
  return plugins_head("  http_listen: 127.0.0.1:" + std::to_string(admin) + "\n") +
         "  inputs:\n    - {name: http, tag: t, listen: 127.0.0.1:" + std::to_string(listen) +
         "}\n  outputs:\n    - {name: 'null', match: '*'}\n";
}

TEST(ServiceNotify, ReadyComesOnceTheListenersAnswerThenWatchdogPingsThenStoppingOnSigterm) {
  TempDir d;
  NotifySocket sd(d / "notify.sock");
  ASSERT_TRUE(sd.bound());
  const int listen = free_port(), admin = free_port();
  write_file(d / "p.yaml", http_pipeline(listen, admin));
  // 200 ms: the engine pings every 100 ms, so several arrive while the test waits.
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine",
            {"NOTIFY_SOCKET=" + d / "notify.sock", "WATCHDOG_USEC=200000"});

  ASSERT_TRUE(wait_until([&] { return sd.count("READY=1") == 1; }, 30s)) << sd.all() << e.err();
  // READY means "serving": systemd starts the units ordered after this one now.
  EXPECT_EQ(http_get("http://127.0.0.1:" + std::to_string(admin) + "/health", nullptr, d.path()),
            200);
  EXPECT_NE(http_get("http://127.0.0.1:" + std::to_string(listen) + "/", nullptr, d.path()), 0);
  bool status_sent = false;
  for (const std::string &m : sd.messages())
    if (m.find("READY=1") != std::string::npos &&
        m.find("STATUS=running: 1 inputs") != std::string::npos)
      status_sent = true;
  EXPECT_TRUE(status_sent) << sd.all();

  EXPECT_TRUE(wait_until([&] { return sd.count("WATCHDOG=1") >= 3; }, 30s)) << sd.all();
  EXPECT_EQ(sd.count("STOPPING=1"), 0u) << sd.all();

  e.kill(SIGTERM);
  EXPECT_TRUE(wait_until([&] { return sd.count("STOPPING=1") == 1; }, 30s)) << sd.all();
  EXPECT_EQ(e.wait_exit(30s), 0) << e.err();
  EXPECT_NE(e.err().find("systemd watchdog: WATCHDOG=1 every 100 ms"), std::string::npos)
      << e.err();
}

TEST(ServiceNotify, WithoutWatchdogUsecTheEngineSendsNoKeepAlive) {
  TempDir d;
  NotifySocket sd(d / "notify.sock");
  ASSERT_TRUE(sd.bound());
  const int listen = free_port(), admin = free_port();
  write_file(d / "p.yaml", http_pipeline(listen, admin));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine",
            {"NOTIFY_SOCKET=" + d / "notify.sock"});
  ASSERT_TRUE(wait_until([&] { return sd.count("READY=1") == 1; }, 30s)) << sd.all() << e.err();
  e.kill(SIGTERM);
  EXPECT_TRUE(wait_until([&] { return sd.count("STOPPING=1") == 1; }, 30s)) << sd.all();
  EXPECT_EQ(e.wait_exit(30s), 0) << e.err();
  sd.finish();
  EXPECT_EQ(sd.count("WATCHDOG=1"), 0u) << sd.all();
}

// A configuration that cannot start never says READY: systemd reports the unit failed instead
// of active.
TEST(ServiceNotify, AnEngineThatFailsToStartNeverSaysReady) {
  TempDir d;
  NotifySocket sd(d / "notify.sock");
  ASSERT_TRUE(sd.bound());
  const int port = free_port();
  // The port is taken: the bind fails at start.
  write_file(d / "p.yaml",
             plugins_head() + "  inputs:\n    - {name: http, tag: a, listen: 127.0.0.1:" +
                 std::to_string(port) + "}\n" + "  outputs:\n    - {name: 'null', match: '*'}\n");
  int blocker = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(bind(blocker, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(blocker, 1), 0);
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine",
            {"NOTIFY_SOCKET=" + d / "notify.sock", "WATCHDOG_USEC=200000"});
  EXPECT_NE(e.wait_exit(30s), 0) << e.err();
  close(blocker);
  sd.finish();
  EXPECT_EQ(sd.count("READY=1"), 0u) << sd.all();
  EXPECT_EQ(sd.count("WATCHDOG=1"), 0u) << sd.all();
}

}  // namespace
}  // namespace devmesh::test
