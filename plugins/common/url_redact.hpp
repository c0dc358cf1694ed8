// Credentials in URLs never printed: http://user:pass@host/ becomes http://user:***@host/ in
// every log line, flush reason (and so /health and dead-letter lines) and error message.
#pragma once

#include <string>
#include <string_view>

namespace devmesh {

// The URL with the password of its userinfo replaced by ***; a userinfo without a password
// (often a token itself: https://TOKEN@host/) becomes ***. Anything else is returned as is.
inline std::string redact_url(std::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  const size_t start = scheme + 3;
  size_t end = url.find_first_of("/?#", start);
  if (end == std::string_view::npos) end = url.size();
  const size_t at = url.rfind('@', end - 1);
  if (at == std::string_view::npos || at < start || end == start) return std::string(url);
  const std::string_view userinfo = url.substr(start, at - start);
  const size_t colon = userinfo.find(':');
  std::string out(url.substr(0, start));
  if (colon == std::string_view::npos)
    out += "***";
  else
    out.append(userinfo.substr(0, colon)).append(":***");
  out.append(url.substr(at));
  return out;
}

}  // namespace devmesh
