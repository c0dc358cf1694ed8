// An OpenSSL server context from a listener's TLS files: the certificate chain, its key, and a
// CA bundle that makes client certificates required (mutual TLS). Shared by the engine's HTTP
// listeners and the plugins that serve TLS on their own sockets (plugins/common/stream_server.hpp),
// so that both load the same files the same way and name a bad file the same way.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace devmesh {
namespace tls_detail {

// The reason of the newest OpenSSL error, and an empty queue: h2o's SSL_get_error calls on this
// thread would take a stale error for their own.
inline std::string take_ssl_error() {
  unsigned long e = ERR_peek_last_error();
  const char *reason = e != 0 ? ERR_reason_error_string(e) : nullptr;
  std::string text = reason != nullptr ? reason : "unknown OpenSSL error";
  ERR_clear_error();
  return text;
}

// Says plainly that a file is missing or unreadable (OpenSSL would say "system lib").
inline bool readable(const std::string &option, const std::string &file, std::string &error) {
  FILE *f = std::fopen(file.c_str(), "r");
  if (f == nullptr) {
    error = option + " " + file + ": " + std::strerror(errno);
    return false;
  }
  std::fclose(f);
  return true;
}

}  // namespace tls_detail

// A server context, or nullptr and an error naming the option (tls.cert, tls.key, tls.ca) and
// file. min_version "1.3" or anything else for 1.2.
inline SSL_CTX *make_server_ssl_ctx(const std::string &cert, const std::string &key,
                                    const std::string &ca, const std::string &min_version,
                                    std::string &error) {
  using namespace tls_detail;
  if (!readable("tls.cert", cert, error) || !readable("tls.key", key, error)) return nullptr;
  if (!ca.empty() && !readable("tls.ca", ca, error)) return nullptr;
  ERR_clear_error();
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    error = "cannot create a TLS context: " + take_ssl_error();
    return nullptr;
  }
  auto fail = [&](std::string message) -> SSL_CTX * {
    error = std::move(message);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return nullptr;
  };
  SSL_CTX_set_min_proto_version(ctx, min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
    return fail("tls.cert " + cert + ": no usable PEM certificate (" + take_ssl_error() + ")");
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH)
      return fail("tls.key " + key + " does not match the certificate in tls.cert " + cert);
    return fail("tls.key " + key + ": no usable PEM private key (" + take_ssl_error() + ")");
  }
  if (SSL_CTX_check_private_key(ctx) != 1)
    return fail("tls.key " + key + " does not match the certificate in tls.cert " + cert);
  if (!ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1)
      return fail("tls.ca " + ca + ": no usable PEM CA certificate (" + take_ssl_error() + ")");
    // Tells clients which CAs to pick their certificate from.
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca.c_str());
    if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // Session resumption with client certificates needs a context id, or OpenSSL fails it.
    static const unsigned char kSessionContext[] = "devmesh";
    SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof(kSessionContext) - 1);
  }
  ERR_clear_error();
  return ctx;
}

}  // namespace devmesh
