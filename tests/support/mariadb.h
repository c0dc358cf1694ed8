// Test support: a private mariadbd on a temp datadir (unix socket plus 127.0.0.1 on a free port)
// with a `devmesh` user, password and database; stop, restart, freeze and SQL through the real
// `mariadb` client. Header-only, used by integration tests and the store benchmark.
#pragma once

#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "process.h"

namespace devmesh::test {

class MariaDb {
 public:
  struct Options {
    // Where an initialised datadir is kept and copied from (mariadb-install-db takes seconds;
    // a copy takes milliseconds). Empty: initialise every time.
    std::string template_dir =
#ifdef DEVMESH_BUILD_DIR
        DEVMESH_BUILD_DIR "/tests/mariadb-template";
#else
        "";
#endif
    // Tests trade durability for speed (flush the redo log once a second, not per commit);
    // a benchmark that compares against MariaDB's defaults sets this.
    bool durable = false;
    std::string buffer_pool = "64M";
    // The template is made with this redo log size; another one makes mariadbd resize the log
    // at every start.
    std::string log_file_size = "16M";
    std::vector<std::string> extra_args;  // more mariadbd options
  };

  static constexpr const char *kUser = "devmesh";
  static constexpr const char *kPassword = "devmesh-test-secret";
  static constexpr const char *kDatabase = "devmesh";

  // dir: an existing directory owned by the test (a TempDir); the server lives in dir/mariadb.
  explicit MariaDb(const std::string &dir) : MariaDb(dir, Options{}) {}
  MariaDb(const std::string &dir, Options opts)
      : dir_(dir + "/mariadb"), opts_(std::move(opts)), port_(free_port()) {
    std::filesystem::create_directories(dir_);
  }
  ~MariaDb() {
    kill_now();
  }
  MariaDb(const MariaDb &) = delete;
  MariaDb &operator=(const MariaDb &) = delete;

  const std::string &dir() const {
    return dir_;
  }
  std::string datadir() const {
    return dir_ + "/data";
  }
  std::string socket() const {
    return dir_ + "/sock";
  }
  int port() const {
    return port_;
  }
  std::string error_log() const {
    return read_file(dir_ + "/error.log");
  }
  bool running() const {
    return proc_ && proc_->running();
  }
  pid_t pid() const {
    return proc_ ? proc_->pid() : -1;
  }

  // First call: a fresh datadir, the server, the devmesh user and database. Later calls:
  // the same datadir again (after stop()). Returns false with the reason in *err.
  bool start(std::string *err = nullptr) {
    std::string why;
    if (!std::filesystem::exists(datadir() + "/mysql") && !init_datadir(why)) return fail(err, why);
    // The TCP port was free when chosen; a test running beside this one may have taken it since
    // (a restart after an outage leaves it free for a while): then take another.
    for (int attempt = 0;; ++attempt) {
      const size_t log_before = error_log().size();
      if (spawn_and_wait()) break;
      const std::string log = error_log().substr(std::min(log_before, error_log().size()));
      if (attempt < 3 && log.find("Address already in use") != std::string::npos) {
        port_ = free_port();
        continue;
      }
      return fail(err, "mariadbd did not become ready; error log:\n" + tail(log));
    }
    if (!provisioned_) {
      const std::string pw = kPassword;
      std::string out;
      if (root_sql(std::string("CREATE DATABASE IF NOT EXISTS ") + kDatabase +
                       " CHARACTER SET utf8mb4;"
                       "CREATE USER IF NOT EXISTS 'devmesh'@'localhost' IDENTIFIED BY '" +
                       pw +
                       "';"
                       "CREATE USER IF NOT EXISTS 'devmesh'@'%' IDENTIFIED BY '" +
                       pw +
                       "';"
                       "GRANT ALL ON devmesh.* TO 'devmesh'@'localhost';"
                       "GRANT ALL ON devmesh.* TO 'devmesh'@'%';",
                   nullptr, &out, "", 60) != 0)
        return fail(err, "cannot create the devmesh user and database: " + out);
      provisioned_ = true;
    }
    return true;
  }

  // SIGTERM and wait for a clean shutdown (SIGKILL after 60 s).
  void stop() {
    if (!running()) return;
    proc_->kill(SIGTERM);
    if (proc_->wait_exit(std::chrono::seconds(60)) < 0) kill_now();
  }
  // SIGKILL at once: a crash, not a shutdown.
  void kill_now() {
    if (!proc_) return;
    proc_->kill(SIGCONT);  // a frozen server must be able to die
    proc_->kill(SIGKILL);
    proc_->wait_exit(std::chrono::seconds(30));
  }
  // Freezes and thaws the server: connections stay open but nothing answers.
  void freeze() {
    if (running()) proc_->kill(SIGSTOP);
  }
  void thaw() {
    if (running()) proc_->kill(SIGCONT);
  }

  // Runs statements as root over the socket with the real client; tab-separated rows without
  // headers in *out, the client's messages in *err. Returns the client's exit code.
  int sql(const std::string &statements, std::string *out = nullptr, std::string *err = nullptr,
          const std::string &database = kDatabase) {
    return root_sql(statements, out, err, database, 60);
  }
  // The first value of the first row ("" when none or on error).
  std::string value(const std::string &query, const std::string &database = kDatabase) {
    std::string out, err;
    // The client is a separate process; under a loaded parallel run one invocation has been
    // seen to fail: say why on stderr (the test log) and ask once more before giving up.
    for (int attempt = 0; attempt < 2; attempt++) {
      const int code = sql(query, &out, &err, database);
      if (code == 0 && !out.empty() && out[0] != '\n') break;
      fprintf(stderr, "mariadb client: exit %d for [%s]: %s%s\n", code, query.c_str(), err.c_str(),
              out.c_str());
      out.clear();
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    const auto end = out.find_first_of("\t\n");
    return out.substr(0, end);
  }
  long long number(const std::string &query, const std::string &database = kDatabase) {
    const std::string v = value(query, database);
    return v.empty() ? -1 : std::atoll(v.c_str());
  }

 private:
  // Starts mariadbd on datadir, socket and port_; true once it answers.
  bool spawn_and_wait() {
    std::vector<std::string> argv = {"/usr/sbin/mariadbd", "--no-defaults"};
    if (geteuid() == 0) argv.push_back("--user=root");  // mariadbd refuses root without it
    // Its own tmpdir. With the default, /tmp, a mariadbd starting in a parallel test removes
    // every '#sql*' file there (mysql_rm_tmp_tables at startup), including the on-disk temporary
    // table of a query running on this one: a CI run failed with "Error on delete of
    // '/tmp/#sql-temptable-...MAI'" (JSON_VALUE in COUNT(DISTINCT ...) is a blob, so always on
    // disk).
    std::filesystem::create_directories(dir_ + "/tmp");
    argv.push_back("--tmpdir=" + dir_ + "/tmp");
    for (const std::string &a : std::vector<std::string>{
             "--datadir=" + datadir(), "--socket=" + socket(), "--port=" + std::to_string(port_),
             "--bind-address=127.0.0.1", "--pid-file=" + dir_ + "/mariadbd.pid",
             "--log-error=" + dir_ + "/error.log", "--skip-name-resolve",
             "--innodb-buffer-pool-size=" + opts_.buffer_pool,
             "--innodb-log-file-size=" + opts_.log_file_size, "--performance-schema=OFF",
             "--skip-log-bin", "--max-connections=500"})
      argv.push_back(a);
    if (!opts_.durable) {
      argv.push_back("--innodb-flush-log-at-trx-commit=2");
      argv.push_back("--innodb-doublewrite=0");
      argv.push_back("--sync-binlog=0");
    }
    for (auto &a : opts_.extra_args) argv.push_back(a);
    proc_ = std::make_unique<Process>(argv, dir_, "mariadbd");
    if (proc_->pid() <= 0) return false;
    const bool ready = wait_until(
        [&] {
          if (!proc_->running() || proc_->wait_exit(std::chrono::milliseconds(0)) >= 0) return true;
          return root_sql("SELECT 1", nullptr, nullptr, "", 5) == 0;
        },
        std::chrono::seconds(60));
    return ready && proc_->running();
  }

  static bool fail(std::string *err, const std::string &why) {
    if (err) *err = why;
    return false;
  }
  static std::string tail(const std::string &s, size_t n = 3000) {
    return s.size() > n ? s.substr(s.size() - n) : s;
  }

  int root_sql(const std::string &statements, std::string *out, std::string *err,
               const std::string &database, int timeout_s) {
    std::vector<std::string> argv = {"/usr/bin/mariadb",
                                     "--no-defaults",
                                     "--protocol=socket",
                                     "-S",
                                     socket(),
                                     "-uroot",
                                     "-N",
                                     "-B",
                                     "--connect-timeout=" + std::to_string(timeout_s)};
    if (!database.empty()) argv.push_back("-D" + database);
    argv.push_back("-e");
    argv.push_back(statements);
    Process p(argv, dir_, "client");
    const int code = p.wait_exit(std::chrono::seconds(timeout_s + 30));
    if (out) *out = p.out();
    if (err) *err = p.err();
    return code;
  }

  // A fresh datadir: a copy of the template, which is made once (under a lock, since tests
  // run in parallel processes) and remade when the server's version changes.
  bool init_datadir(std::string &why) {
    if (opts_.template_dir.empty()) return install_db(datadir(), why);
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(opts_.template_dir).parent_path(),
                                        ec);
    const std::string lock_path = opts_.template_dir + ".lock";
    const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock < 0) return install_db(datadir(), why);
    ::flock(lock, LOCK_EX);
    std::string version;
    run({"/usr/sbin/mariadbd", "--version"}, dir_, &version);
    const std::string marker = opts_.template_dir + "/devmesh-template-version";
    bool ok = true;
    if (!std::filesystem::exists(marker) || read_file(marker) != version) {
      std::filesystem::remove_all(opts_.template_dir, ec);
      ok = install_db(opts_.template_dir, why);
      if (ok) write_file(marker, version);
    }
    if (ok) {
      std::filesystem::copy(opts_.template_dir, datadir(), std::filesystem::copy_options::recursive,
                            ec);
      std::filesystem::remove(datadir() + "/devmesh-template-version", ec);
      if (ec) ok = false, why = "cannot copy the template datadir: " + ec.message();
    }
    ::flock(lock, LOCK_UN);
    ::close(lock);
    return ok;
  }

  bool install_db(const std::string &target, std::string &why) {
    std::vector<std::string> argv = {"/usr/bin/mariadb-install-db",
                                     "--no-defaults",
                                     "--datadir=" + target,
                                     "--auth-root-authentication-method=normal",
                                     "--skip-test-db",
                                     "--skip-name-resolve",
                                     "--innodb-log-file-size=" + opts_.log_file_size};
    if (geteuid() == 0) argv.push_back("--user=root");
    Process p(argv, dir_, "install-db");
    const int code = p.wait_exit(std::chrono::seconds(120));
    if (code == 0) return true;
    why = "mariadb-install-db failed (" + std::to_string(code) + "): " + tail(p.out() + p.err());
    return false;
  }

  std::string dir_;
  Options opts_;
  int port_;
  bool provisioned_ = false;
  std::unique_ptr<Process> proc_;
};

}  // namespace devmesh::test
