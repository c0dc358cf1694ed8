// Test support: a private clickhouse-server (Debian's 18.16) on a temp dir with free HTTP and
// native ports, a generated config.xml (its <timezone> UTC unless told otherwise) and users.xml
// (user `devmesh` with a password, and `default` without one for the tests' own SQL), stop,
// restart, kill, and SQL over the HTTP interface with libcurl. Header-only, used by integration
// tests and the store benchmark.
#pragma once

#include <curl/curl.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "process.h"

namespace devmesh::test {

class ClickHouse {
 public:
  static constexpr const char *kBinary = "/usr/sbin/clickhouse-server";
  static constexpr const char *kUser = "devmesh";
  static constexpr const char *kPassword = "devmesh-ch-secret";

  // dir: an existing directory owned by the test; the server lives in dir/clickhouse.
  // timezone: the server's (an IANA name), whose days toYYYYMMDD and toDate give.
  explicit ClickHouse(const std::string &dir, const std::string &timezone = "UTC")
      : dir_(dir + "/clickhouse"),
        timezone_(timezone),
        http_port_(free_port()),
        tcp_port_(free_port()) {
    std::filesystem::create_directories(dir_);
  }
  ~ClickHouse() { kill_now(); }
  ClickHouse(const ClickHouse &) = delete;
  ClickHouse &operator=(const ClickHouse &) = delete;

  static bool installed() { return std::filesystem::exists(kBinary); }
  // Settings of the `devmesh` user's profile (XML elements, e.g. "<max_block_size>100
  // </max_block_size>"), written at the next start().
  std::string devmesh_settings;
  int http_port() const { return http_port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }
  std::string error_log() const { return read_file(dir_ + "/error.log"); }
  bool running() const { return proc_ && proc_->running(); }
  pid_t pid() const { return proc_ ? proc_->pid() : -1; }

  // Writes the configuration (first call) and starts the server on the same data; true once
  // GET /ping answers. False with the reason in *err.
  bool start(std::string *err = nullptr) {
    for (int attempt = 0;; ++attempt) {
      write_config();
      proc_ = std::make_unique<Process>(
          std::vector<std::string>{kBinary, "--config-file=" + dir_ + "/config.xml"}, dir_,
          "clickhouse");
      const bool ready = wait_until([&] { return !proc_->running() || get("/ping") == "Ok.\n"; },
                                    std::chrono::seconds(60));
      if (ready && proc_->running()) return true;
      const std::string log = error_log();
      // A port free when chosen may have been taken since by a test running beside this one.
      if (attempt < 3 && log.find("Address already in use") != std::string::npos) {
        kill_now();
        http_port_ = free_port();
        tcp_port_ = free_port();
        continue;
      }
      if (err)
        *err = "clickhouse-server did not answer /ping; error log:\n" +
               log.substr(log.size() > 3000 ? log.size() - 3000 : 0) + proc_->err();
      return false;
    }
  }

  void stop() {
    if (!running()) return;
    proc_->kill(SIGTERM);
    if (proc_->wait_exit(std::chrono::seconds(60)) < 0) kill_now();
  }
  void kill_now() {
    if (!proc_) return;
    proc_->kill(SIGCONT);
    proc_->kill(SIGKILL);
    proc_->wait_exit(std::chrono::seconds(30));
  }

  // Runs one statement as `default`; the answer's body (TabSeparated), or "" with *err set
  // (ClickHouse's message) when the status is not 200.
  std::string sql(const std::string &statement, std::string *err = nullptr) {
    long code = 0;
    std::string body = request("/", statement, code);
    if (code == 200) return body;
    if (err) *err = "HTTP " + std::to_string(code) + ": " + body;
    return "";
  }
  // The first value of the first row, -1 when there is none.
  long long number(const std::string &query) {
    std::string e;
    const std::string v = sql(query, &e);
    if (v.empty()) {
      fprintf(stderr, "clickhouse: [%s]: %s\n", query.c_str(), e.c_str());
      return -1;
    }
    return std::atoll(v.c_str());
  }

 private:
  static size_t collect(char *p, size_t size, size_t n, void *arg) {
    static_cast<std::string *>(arg)->append(p, size * n);
    return size * n;
  }
  std::string request(const std::string &path, const std::string &body, long &code) const {
    std::string out;
    code = 0;
    CURL *e = curl_easy_init();
    if (!e) return out;
    const std::string u = url() + path;
    curl_easy_setopt(e, CURLOPT_URL, u.c_str());
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 120L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 5L);
    if (!body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
    if (curl_easy_perform(e) == CURLE_OK) curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    return out;
  }
  std::string get(const std::string &path) const {
    long code = 0;
    std::string body = request(path, "", code);
    return code == 200 ? body : "";
  }

  void write_config() {
    write_file(dir_ + "/config.xml",
               "<?xml version=\"1.0\"?>\n<yandex>\n"
               "  <logger><level>warning</level><log>" +
                   dir_ + "/server.log</log><errorlog>" + dir_ +
                   "/error.log</errorlog><console>0</console></logger>\n"
                   "  <http_port>" +
                   std::to_string(http_port_) + "</http_port>\n  <tcp_port>" +
                   std::to_string(tcp_port_) +
                   "</tcp_port>\n"
                   "  <listen_host>127.0.0.1</listen_host>\n"
                   "  <path>" +
                   dir_ + "/data/</path>\n  <tmp_path>" + dir_ + "/tmp/</tmp_path>\n" +
                   "  <user_files_path>" + dir_ + "/user_files/</user_files_path>\n" +
                   "  <format_schema_path>" + dir_ + "/format_schemas/</format_schema_path>\n" +
                   "  <users_config>" + dir_ + "/users.xml</users_config>\n" +
                   "  <default_profile>default</default_profile>\n"
                   "  <default_database>default</default_database>\n"
                   "  <timezone>" +
                   timezone_ +
                   "</timezone>\n"
                   "  <mark_cache_size>5368709</mark_cache_size>\n"
                   "  <uncompressed_cache_size>0</uncompressed_cache_size>\n"
                   "  <max_concurrent_queries>100</max_concurrent_queries>\n"
                   "</yandex>\n");
    write_file(dir_ + "/users.xml", std::string("<?xml version=\"1.0\"?>\n<yandex>\n"
                                                "  <profiles><default></default><devmesh>") +
                                        devmesh_settings +
                                        "</devmesh></profiles>\n"
                                        "  <users>\n"
                                        "    <default><password></password><networks>"
                                        "<ip>127.0.0.1</ip></networks>"
                                        "<profile>default</profile><quota>default</quota>"
                                        "</default>\n    <" +
                                        kUser + "><password>" + kPassword +
                                        "</password><networks><ip>127.0.0.1</ip></networks>"
                                        "<profile>devmesh</profile><quota>default</quota></" +
                                        kUser +
                                        ">\n  </users>\n"
                                        "  <quotas><default></default></quotas>\n</yandex>\n");
  }

  std::string dir_, timezone_;
  int http_port_, tcp_port_;
  std::unique_ptr<Process> proc_;
};

}  // namespace devmesh::test
