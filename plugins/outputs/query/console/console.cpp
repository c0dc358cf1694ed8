// The browser console: GET <console_path> answers the page, GET <console_path>assets/<file> its
// scripts, styles and the vendored uPlot, all from the table embed_assets.cmake generates. The
// files hold no data (the page reads the query API like any client), so they are served without
// the auth_token: the page must load to ask for the token.
#include "console.h"

#include <devmesh/plugin.hpp>

#include <string_view>

#include "console_assets.h"

namespace devmesh::query {
namespace {

const ConsoleAsset *find_asset(std::string_view name) {
  for (size_t i = 0; i < kConsoleAssetCount; ++i)
    if (name == kConsoleAssets[i].name) return &kConsoleAssets[i];
  return nullptr;
}

// True when Accept-Encoding lists gzip (or *) without refusing it with q=0.
bool accepts_gzip(std::string_view header) {
  std::string lower(header);
  for (char &c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  std::string_view rest = lower;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    const size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (coding != "gzip" && coding != "*") continue;
    std::string_view params = semi == std::string_view::npos ? "" : item.substr(semi + 1);
    const size_t q = params.find("q=");
    if (q == std::string_view::npos) return true;
    std::string_view v = params.substr(q + 2);
    // q=0, q=0.0, q=0.000: refused; anything else: accepted.
    if (v.empty() || v.front() != '0') return true;
    v.remove_prefix(1);
    if (!v.empty() && v.front() == '.') v.remove_prefix(1);
    while (!v.empty() && v.front() == '0') v.remove_prefix(1);
    if (!v.empty() && v.front() != ' ' && v.front() != ';') return true;
  }
  return false;
}

bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match == "*") return true;
  // A weak validator ("W/...") matches too: If-None-Match compares weakly (RFC 9110 13.1.2).
  return if_none_match.find(etag) != std::string_view::npos;
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
  // Revalidated on every load (the names carry no hash), cheaply: a 304 by the ETag.
  host_->http_add_header(req, "Cache-Control", "no-cache");
  host_->http_add_header(req, "ETag", asset->etag);
  host_->http_add_header(req, "Vary", "Accept-Encoding");
  host_->http_add_header(req, "X-Content-Type-Options", "nosniff");
  if (name == "index.html") {
    // Everything the page loads is its own; uPlot sizes its elements with inline styles.
    host_->http_add_header(req, "Content-Security-Policy",
                           "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; frame-ancestors 'none'");
    host_->http_add_header(req, "Referrer-Policy", "no-referrer");
  }
  if (etag_matches(sv(host_->http_header(req, "If-None-Match")), asset->etag)) {
    host_->metric_add(m_not_modified_, 1);
    host_->http_reply(req, 304, asset->content_type, "", 0);
    return;
  }
  host_->metric_add(m_ok_, 1);
  if (asset->gzip != nullptr && accepts_gzip(sv(host_->http_header(req, "Accept-Encoding")))) {
    host_->http_add_header(req, "Content-Encoding", "gzip");
    host_->http_reply(req, 200, asset->content_type, reinterpret_cast<const char *>(asset->gzip),
                      asset->gzip_size);
    return;
  }
  host_->http_reply(req, 200, asset->content_type, reinterpret_cast<const char *>(asset->data),
                    asset->size);
}

}  // namespace devmesh::query
