// The browser console: GET <console_path> answers the page, GET <console_path>assets/<file> its
// scripts, styles and the vendored uPlot, all from the table embed_assets.cmake generates. The
// files hold no data (the page reads the query API like any client), so they are served without
// the auth_token: the page must load to ask for the token.
#include "console.h"

#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "ascii.hpp"
#include "console_assets.h"

namespace devmesh::query {
namespace {

const ConsoleAsset *find_asset(std::string_view name) {
  for (size_t i = 0; i < kConsoleAssetCount; ++i)
    if (name == kConsoleAssets[i].name) return &kConsoleAssets[i];
  return nullptr;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// An Accept-Encoding item's weight (RFC 9110 12.4.2): its q parameter, 1 without one; a
// malformed q counts as 1 (the coding was listed).
double weight(std::string_view params) {
  while (!params.empty()) {
    const size_t semi = params.find(';');
    const std::string_view p = trim(params.substr(0, semi));
    params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
    const size_t eq = p.find('=');
    if (eq == std::string_view::npos || !iequals(trim(p.substr(0, eq)), "q")) continue;
    const std::string_view v = trim(p.substr(eq + 1));
    // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
    if (v.empty() || (v[0] != '0' && v[0] != '1')) return 1;
    double q = v[0] - '0', scale = 0.1;
    for (size_t i = 2; v.size() > 1 && v[1] == '.' && i < v.size() && i < 5; ++i, scale /= 10) {
      if (v[i] < '0' || v[i] > '9') return 1;
      q += (v[i] - '0') * scale;
    }
    return q > 1 ? 1 : q;
  }
  return 1;
}

// Whether Accept-Encoding lets us send gzip: gzip's own weight when listed, else that of "*",
// and acceptable only above 0 ("gzip;q=0, *" refuses gzip: the named coding wins over "*").
bool accepts_gzip(std::string_view header) {
  double gzip = -1, any = -1;
  while (!header.empty()) {
    const size_t comma = header.find(',');
    const std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    const size_t semi = item.find(';');
    const std::string_view coding = trim(item.substr(0, semi));
    const std::string_view params =
        semi == std::string_view::npos ? std::string_view() : item.substr(semi + 1);
    if (iequals(coding, "gzip") || iequals(coding, "x-gzip"))
      gzip = std::max(gzip, weight(params));
    else if (coding == "*")
      any = std::max(any, weight(params));
  }
  return (gzip >= 0 ? gzip : any) > 0;
}

// Whether If-None-Match names etag: "*", or one of its comma-separated tags equal to it. Weak
// ("W/...") tags match too: If-None-Match compares weakly (RFC 9110 13.1.2). Whole tags only: the
// plain body's tag must not match the gzip body's, which extends it.
bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  if (trim(if_none_match) == "*") return true;
  while (!if_none_match.empty()) {
    const size_t comma = if_none_match.find(',');
    std::string_view tag = trim(if_none_match.substr(0, comma));
    if_none_match =
        comma == std::string_view::npos ? std::string_view() : if_none_match.substr(comma + 1);
    if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (tag == etag) return true;
  }
  return false;
}

// The gzip body's tag: the plain one's with "-gz" inside the quotes.
std::string gzip_etag(std::string_view etag) {
  std::string out(etag);
  out.insert(out.empty() || out.back() != '"' ? out.size() : out.size() - 1, "-gz");
  return out;
}

}  // namespace

Console::Console(const dm_host_api *host, dm_instance *inst) : host_(host), inst_(inst) {
  const char *name = "query_console_requests_total";
  const char *help = "console page and asset requests by outcome";
  m_ok_ = host->metric_counter(inst, name, help, "outcome=\"ok\"");
  m_not_modified_ = host->metric_counter(inst, name, help, "outcome=\"not_modified\"");
  m_not_found_ = host->metric_counter(inst, name, help, "outcome=\"not_found\"");
}

std::string Console::normalize_path(std::string path) {
  if (path.empty() || path.back() != '/') path += '/';
  return path;
}

std::string Console::check_path(const std::string &path) {
  if (path.empty() || path.front() != '/')
    return "'" + path + "' must start with '/' (e.g. / or /console/)";
  for (char c : path) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '/' || c == '-' || c == '_' || c == '.';
    if (!plain)
      return "'" + path + "' may hold only letters, digits, '/', '-', '_' and '.' (found '" +
             std::string(1, c) + "')";
  }
  if (path.find("//") != std::string::npos) return "'" + path + "' has an empty segment ('//')";
  for (const char *api : {"/query/", "/tail/", "/health/", "/info/"})
    if (path.rfind(api, 0) == 0) return "'" + path + "' is inside the API's " + api;
  return "";
}

bool Console::route(const std::string &listen, const std::string &prefix) {
  prefix_ = prefix;
  const std::string assets = prefix + "assets/*";
  if (host_->http_route(inst_, listen.c_str(), "GET", prefix.c_str(), on_request, this) != DM_OK ||
      host_->http_route(inst_, listen.c_str(), "GET", assets.c_str(), on_request, this) != DM_OK)
    return false;
  if (prefix != "/") {
    const std::string bare = prefix.substr(0, prefix.size() - 1);
    if (host_->http_route(inst_, listen.c_str(), "GET", bare.c_str(), on_request, this) != DM_OK)
      return false;
  }
  return true;
}

void Console::on_request(void *arg, dm_http_request *req) {
  auto *self = static_cast<Console *>(arg);
  guarded(self->host_, self->inst_, 0, [&] { return self->serve(req), 0; });
}

void Console::serve(dm_http_request *req) {
  const std::string_view path = sv(host_->http_path(req));
  if (path.size() + 1 == prefix_.size()) {
    // "/console": relative asset URLs resolve against the directory, so send the browser there.
    std::string location = prefix_;
    const std::string_view query = sv(host_->http_query(req));
    if (!query.empty()) location += "?" + std::string(query);
    host_->http_add_header(req, "Location", location.c_str());
    host_->metric_add(m_ok_, 1);
    host_->http_reply(req, 308, "text/plain; charset=utf-8", "", 0);
    return;
  }
  const std::string_view name =
      path.size() == prefix_.size() ? std::string_view("index.html") : path.substr(prefix_.size());
  // index.html is only ever the page itself; under assets/ only the assets.
  const ConsoleAsset *asset =
      name == "index.html" || name.substr(0, 7) == "assets/" ? find_asset(name) : nullptr;
  if (asset == nullptr || (name == "index.html" && path.size() != prefix_.size())) {
    host_->metric_add(m_not_found_, 1);
    const std::string body = "no console asset '" + std::string(name) + "'\n";
    host_->http_add_header(req, "Cache-Control", "no-store");
    host_->http_reply(req, 404, "text/plain; charset=utf-8", body.data(), body.size());
    return;
  }
  // Revalidated on every load (the names carry no hash), cheaply: a 304 by the ETag. The gzip
  // body is another representation with its own tag (RFC 9110 8.8.3): a cache holding one must
  // not be told it has the other.
  const bool gzip =
      asset->gzip != nullptr && accepts_gzip(sv(host_->http_header(req, "Accept-Encoding")));
  const std::string etag = gzip ? gzip_etag(asset->etag) : std::string(asset->etag);
  host_->http_add_header(req, "Cache-Control", "no-cache");
  host_->http_add_header(req, "ETag", etag.c_str());
  host_->http_add_header(req, "Vary", "Accept-Encoding");
  host_->http_add_header(req, "X-Content-Type-Options", "nosniff");
  if (name == "index.html") {
    // Everything the page loads is its own; uPlot sizes its elements with inline styles.
    host_->http_add_header(req, "Content-Security-Policy",
                           "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; frame-ancestors 'none'");
    host_->http_add_header(req, "Referrer-Policy", "no-referrer");
  }
  if (etag_matches(sv(host_->http_header(req, "If-None-Match")), etag)) {
    host_->metric_add(m_not_modified_, 1);
    host_->http_reply(req, 304, asset->content_type, "", 0);
    return;
  }
  host_->metric_add(m_ok_, 1);
  if (gzip) {
    host_->http_add_header(req, "Content-Encoding", "gzip");
    host_->http_reply(req, 200, asset->content_type, reinterpret_cast<const char *>(asset->gzip),
                      asset->gzip_size);
    return;
  }
  host_->http_reply(req, 200, asset->content_type, reinterpret_cast<const char *>(asset->data),
                    asset->size);
}

}  // namespace devmesh::query
