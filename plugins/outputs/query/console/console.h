// The browser console: serves the page and its assets (embedded in query.so at build time) under
// the console_path prefix of the query output's listener.
#pragma once

#include <devmesh/plugin.h>

#include <string>

namespace devmesh::query {

class Console {
 public:
  Console(const dm_host_api *host, dm_instance *inst);
  // An empty string when `path` is a usable prefix ("/" or "/x/y/"), else why not. A path not
  // ending in '/' gets one appended by normalize_console_path first.
  static std::string check_path(const std::string &path);
  static std::string normalize_path(std::string path);
  // Registers GET <prefix> (the page), GET <prefix>assets/* and, for a prefix other than "/",
  // GET <prefix without its last '/'> (a redirect to the prefix, so relative asset URLs work).
  bool route(const std::string &listen, const std::string &prefix);

 private:
  static void on_request(void *arg, dm_http_request *req);
  void serve(dm_http_request *req);

  const dm_host_api *host_;
  dm_instance *inst_;
  std::string prefix_;
  dm_metric *m_ok_, *m_not_modified_, *m_not_found_;
};

}  // namespace devmesh::query
