// TLS on the HTTP server's listeners: an OpenSSL server context per address, built from the
// certificate, key and CA files (mutual TLS when a CA is given), shared by the owners that serve
// on that address, and rebuilt from the files at a reload. h2o does the handshake itself on the
// accept context's SSL_CTX; every connection's SSL holds its own reference to the context it
// started with, so swapping the context only changes what new connections get.
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "http_server_impl.h"
#include "tls_server_context.hpp"

namespace devmesh {
namespace http_internal {

SSL_CTX *make_ssl_ctx(const HttpServer::Tls &t, std::string &error) {
  return make_server_ssl_ctx(t.cert, t.key, t.ca, t.min_version, error);
}

}  // namespace http_internal

using namespace http_internal;

namespace {

std::string claim_name(const TlsAddress::Claim &c) {
  return c.name.empty() ? std::string("another owner") : "'" + c.name + "'";
}

// What differs between two settings, for the error.
std::string difference(const HttpServer::Tls &a, const HttpServer::Tls &b) {
  std::string out;
  auto add = [&](const char *option, const std::string &x, const std::string &y) {
    if (x == y) return;
    out += (out.empty() ? "" : ", ") + std::string(option) + " '" + x + "' vs '" + y + "'";
  };
  add("tls.cert", a.cert, b.cert);
  add("tls.key", a.key, b.key);
  add("tls.ca", a.ca, b.ca);
  add("tls.min_version", a.min_version.empty() ? "1.2" : a.min_version,
      b.min_version.empty() ? "1.2" : b.min_version);
  return out;
}

}  // namespace

SSL_CTX *HttpServer::Impl::ssl_ctx_of(const std::string &key) const {
  auto it = tls.find(key);
  return it == tls.end() ? nullptr : it->second.ctx;
}

std::string HttpServer::Impl::tls_conflict(const std::string &key, const void *owner) const {
  auto it = tls.find(key);
  if (it == tls.end()) return "";
  for (const auto &c : it->second.claims)
    if (c.owner == owner) return "";
  return key + " serves TLS (tls.cert " + it->second.settings.cert + ", for " +
         claim_name(it->second.claims.front()) +
         "): give every user of the address the same tls.* options";
}

bool HttpServer::Impl::set_tls(const std::string &listen, const Tls &t, std::string &error,
                               const void *owner, const std::string &owner_name) {
  ListenAddress address;
  if (!parse_listen(listen, address, error)) return false;
  const std::string &key = address.key;
  if (t.cert.empty()) {
    if (t.key.empty() && t.ca.empty()) return true;  // plain HTTP
    error = "TLS on " + key + ": tls.key and tls.ca need tls.cert";
    return false;
  }
  if (t.key.empty()) {
    error = "TLS on " + key + ": tls.cert " + t.cert + " needs tls.key";
    return false;
  }
  if (!t.min_version.empty() && t.min_version != "1.2" && t.min_version != "1.3") {
    error = "TLS on " + key + ": tls.min_version '" + t.min_version + "': expected 1.2 or 1.3";
    return false;
  }
  auto found = tls.find(key);
  if (found != tls.end()) {
    for (const auto &c : found->second.claims) {
      if (c.owner != owner && !(found->second.settings == t)) {
        error = "TLS on " + key + ": settings differ from " + claim_name(c) + "'s (" +
                difference(t, found->second.settings) + ")";
        return false;
      }
    }
  } else {
    // Routes already there without TLS: their owners expect plain HTTP.
    auto l = listeners.find(key);
    if (l != listeners.end()) {
      for (const Route &r : l->second->routes) {
        for (const MethodHandler &m : r.methods) {
          if (m.owner == owner) continue;
          error = key + " already serves plain HTTP (" + m.method + " " + r.match +
                  (r.prefix ? "*" : "") +
                  "): give every user of the address the same tls.* options";
          return false;
        }
      }
    }
  }
  TlsAddress &entry = tls[key];
  if (entry.ctx == nullptr || !(entry.settings == t)) {
    SSL_CTX *ctx = make_ssl_ctx(t, error);
    if (ctx == nullptr) {
      error = "TLS on " + key + ": " + error;
      if (entry.claims.empty()) tls.erase(key);
      return false;
    }
    SSL_CTX_free(entry.ctx);
    entry.ctx = ctx;
    entry.settings = t;
  }
  bool claimed = false;
  for (auto &c : entry.claims) {
    if (c.owner == owner) {
      c.name = owner_name;
      claimed = true;
    }
  }
  if (!claimed) entry.claims.push_back({owner, owner_name});
  auto l = listeners.find(key);
  if (l != listeners.end()) l->second->accept_ctx.ssl_ctx = entry.ctx;
  return true;
}

void HttpServer::Impl::drop_tls_claims(const void *owner) {
  for (auto it = tls.begin(); it != tls.end();) {
    auto &claims = it->second.claims;
    claims.erase(std::remove_if(claims.begin(), claims.end(),
                                [&](const TlsAddress::Claim &c) { return c.owner == owner; }),
                 claims.end());
    if (!claims.empty()) {
      ++it;
      continue;
    }
    auto l = listeners.find(it->first);
    if (l != listeners.end()) l->second->accept_ctx.ssl_ctx = nullptr;
    SSL_CTX_free(it->second.ctx);
    it = tls.erase(it);
  }
}

bool HttpServer::Impl::reload_tls(std::string &error) {
  error.clear();
  for (auto &[key, entry] : tls) {
    std::string why;
    SSL_CTX *ctx = make_ssl_ctx(entry.settings, why);
    if (ctx == nullptr) {
      error += (error.empty() ? "" : "; ") + std::string("TLS on ") + key + ": " + why +
               " (keeping the certificate loaded before)";
      continue;
    }
    SSL_CTX_free(entry.ctx);
    entry.ctx = ctx;
    auto l = listeners.find(key);
    if (l != listeners.end()) l->second->accept_ctx.ssl_ctx = ctx;
  }
  return error.empty();
}

bool HttpServer::set_tls(const std::string &listen, const Tls &tls, std::string &error,
                         const void *owner, const std::string &owner_name) {
  return impl_->set_tls(listen, tls, error, owner, owner_name);
}

bool HttpServer::check_tls(const Tls &tls, std::string &error) {
  if (tls.cert.empty() && tls.key.empty() && tls.ca.empty()) return true;
  if (tls.cert.empty() || tls.key.empty()) {
    error = tls.cert.empty() ? "tls.key and tls.ca need tls.cert" : "tls.cert needs tls.key";
    return false;
  }
  if (!tls.min_version.empty() && tls.min_version != "1.2" && tls.min_version != "1.3") {
    error = "tls.min_version '" + tls.min_version + "': expected 1.2 or 1.3";
    return false;
  }
  SSL_CTX *ctx = make_ssl_ctx(tls, error);
  SSL_CTX_free(ctx);
  return ctx != nullptr;
}

bool HttpServer::reload_tls(std::string &error) {
  return impl_->reload_tls(error);
}

}  // namespace devmesh
