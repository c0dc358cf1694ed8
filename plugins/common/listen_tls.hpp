// A listening plugin's TLS: the four standard options (DM_TLS_OPTIONS, bound into ListenTls by
// config_bind) handed to the host at start, and the warning for a bearer token that would cross
// the network in clear text.
#pragma once

#include <devmesh/plugin.h>

#include <string>
#include <string_view>

namespace devmesh {

// Bound by config_bind: list DM_TLS_OPTIONS(ListenTls, tls) last in the option table.
struct ListenTls {
  dm_tls_config tls{};
};

// Whether a listen address ("127.0.0.1:8000", ":8000", "8000", "[::1]:8000") stays on this
// machine, as the engine reads it (an empty host or localhost is 127.0.0.1).
inline bool listen_is_loopback(std::string_view listen) {
  std::string_view host;
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    host = listen.substr(1, close == std::string_view::npos ? 0 : close - 1);
    return host == "::1";
  }
  const size_t colon = listen.rfind(':');
  host = colon == std::string_view::npos ? std::string_view() : listen.substr(0, colon);
  return host.empty() || host == "localhost" || host.substr(0, 4) == "127.";
}

// From start(), before http_route: serves `listen` over TLS when any tls.* option is set (the
// host logs why it cannot), and warns when a bearer token is configured on a non-loopback
// address without TLS. False: the instance cannot start.
inline bool serve_tls(const dm_host_api *host, dm_instance *inst, const std::string &listen,
                      const dm_tls_config &tls, bool has_token) {
  auto set = [](const char *s) { return s != nullptr && *s != '\0'; };
  const bool on = set(tls.cert) || set(tls.key) || set(tls.ca);
  if (on && host->http_tls(inst, listen.c_str(), &tls) != DM_OK) return false;
  if (has_token && !on && !listen_is_loopback(listen))
    host->log(inst, DM_LOG_WARN,
              "auth_token is set on %s, which is not a loopback address, without tls.cert: the "
              "token crosses the network in clear text",
              listen.c_str());
  return true;
}

}  // namespace devmesh
