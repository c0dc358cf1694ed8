// The bearer-token check of the inputs that take HTTP requests (http, otlp): whether a request's
// Authorization header carries the configured token. Header-only; a plugin using it links
// libcrypto (CRYPTO_memcmp).
#pragma once

#include <openssl/crypto.h>

#include <string_view>

namespace devmesh {

// True when authorization is "Bearer <token>": the scheme in any case (RFC 7235 2.1), spaces
// after it skipped, the token compared in constant time in its content (only its length can be
// learnt by timing). token must not be empty (the plugins refuse an empty auth_token).
inline bool bearer_token_matches(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = authorization[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  authorization.remove_prefix(kScheme.size());
  while (!authorization.empty() && authorization.front() == ' ') authorization.remove_prefix(1);
  return authorization.size() == token.size() &&
         CRYPTO_memcmp(authorization.data(), token.data(), token.size()) == 0;
}

}  // namespace devmesh
