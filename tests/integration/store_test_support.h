// Support for the store tests (sqlite_test, query_test): direct access to an SQLite file
// (libsqlite3 loaded at run time: the test executables link only GTest and libcurl), an HTTP
// GET with libcurl that keeps the response headers, and engine config helpers.
#pragma once

#include <curl/curl.h>
#include <dlfcn.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "process.h"

namespace devmesh::test {

// A connection to an SQLite file through the real libsqlite3 (the library the plugin uses).
class SqliteDb {
 public:
  explicit SqliteDb(const std::string &path) {
    lib_ = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib_) throw std::runtime_error("cannot load libsqlite3.so.0");
    open_ = reinterpret_cast<int (*)(const char *, void **)>(dlsym(lib_, "sqlite3_open"));
    exec_ = reinterpret_cast<ExecFn>(dlsym(lib_, "sqlite3_exec"));
    close_ = reinterpret_cast<int (*)(void *)>(dlsym(lib_, "sqlite3_close"));
    free_ = reinterpret_cast<void (*)(void *)>(dlsym(lib_, "sqlite3_free"));
    busy_ = reinterpret_cast<int (*)(void *, int)>(dlsym(lib_, "sqlite3_busy_timeout"));
    if (!open_ || !exec_ || !close_ || !free_ || !busy_ || open_(path.c_str(), &db_) != 0)
      throw std::runtime_error("cannot open " + path);
    busy_(db_, 10000);
  }
  ~SqliteDb() {
    if (close_) close_(db_);
    // The library stays loaded: dlclose of a library others use buys nothing.
  }
  SqliteDb(const SqliteDb &) = delete;
  SqliteDb &operator=(const SqliteDb &) = delete;

  // Runs SQL; rows as text (NULL as "NULL"). Throws with SQLite's message on failure.
  std::vector<std::vector<std::string>> rows(const std::string &sql) {
    std::vector<std::vector<std::string>> out;
    char *err = nullptr;
    int rc = exec_(
        db_, sql.c_str(),
        [](void *p, int n, char **vals, char **) {
          auto *o = static_cast<std::vector<std::vector<std::string>> *>(p);
          o->emplace_back();
          for (int i = 0; i < n; ++i) o->back().emplace_back(vals[i] ? vals[i] : "NULL");
          return 0;
        },
        &out, &err);
    if (rc != 0) {
      std::string msg = err ? err : "sqlite error";
      free_(err);
      throw std::runtime_error(msg + " in: " + sql);
    }
    return out;
  }
  void exec(const std::string &sql) { rows(sql); }
  std::string value(const std::string &sql) {
    auto r = rows(sql);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }
  long number(const std::string &sql) { return std::atol(value(sql).c_str()); }

 private:
  using ExecFn = int (*)(void *, const char *, int (*)(void *, int, char **, char **), void *,
                         char **);
  void *lib_ = nullptr;
  void *db_ = nullptr;
  int (*open_)(const char *, void **) = nullptr;
  ExecFn exec_ = nullptr;
  int (*close_)(void *) = nullptr;
  void (*free_)(void *) = nullptr;
  int (*busy_)(void *, int) = nullptr;
};

struct HttpResponse {
  long status = 0;  // 0: no response
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

// GET (or another method) with libcurl; keeps the headers. Extra request headers as "Name: v".
inline HttpResponse http(const std::string &url, std::vector<std::string> req_headers = {},
                         const std::string &method = "GET", const std::string &body = "") {
  HttpResponse r;
  CURL *c = curl_easy_init();
  curl_slist *hl = nullptr;
  for (auto &h : req_headers) hl = curl_slist_append(hl, h.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
  if (method != "GET") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  if (!body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(
      c, CURLOPT_WRITEFUNCTION, +[](char *p, size_t s, size_t n, void *u) {
        static_cast<std::string *>(u)->append(p, s * n);
        return s * n;
      });
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(
      c, CURLOPT_HEADERFUNCTION, +[](char *p, size_t s, size_t n, void *u) {
        std::string line(p, s * n);
        auto colon = line.find(':');
        if (colon != std::string::npos) {
          std::string name = line.substr(0, colon);
          for (char &ch : name)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          std::string v = line.substr(colon + 1);
          while (!v.empty() && (v.front() == ' ')) v.erase(0, 1);
          while (!v.empty() && (v.back() == '\r' || v.back() == '\n')) v.pop_back();
          (*static_cast<std::map<std::string, std::string> *>(u))[name] = v;
        }
        return s * n;
      });
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.headers);
  if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  curl_slist_free_all(hl);
  curl_easy_cleanup(c);
  return r;
}

// Percent-encodes a query parameter value.
inline std::string url_encode(const std::string &v) {
  char *e = curl_easy_escape(nullptr, v.data(), static_cast<int>(v.size()));
  std::string s = e ? e : "";
  curl_free(e);
  return s;
}

inline std::string plugins_head(const std::string &extra_service = "") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR "]\n" +
         extra_service + "pipeline:\n";
}

inline std::unique_ptr<Process> start_engine(const TempDir &d, const std::string &yaml,
                                             const std::string &name = "engine") {
  write_file(d / (name + ".yaml"), yaml);
  return std::make_unique<Process>(
      std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name);
}

}  // namespace devmesh::test
