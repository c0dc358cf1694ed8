// How a log message becomes template tokens: split on white space, each token masked (numbers,
// hex, ids, IPs, paths, durations become <*>). Shared by the patterns filter, which mines
// templates from these tokens, and the query plugin's similar-log search, which must see a
// message exactly as the filter did to find the template it fits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace devmesh::log_tokens {

inline constexpr std::string_view kWild = "<*>";
// Tokens past this are one trailing <*> (the miner's default; the filter has no option for it).
inline constexpr size_t kDefaultMaxTokens = 128;

inline bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
inline bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
inline bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// The masked token of `tok`: the token itself when it has no digit, "<*>" for the numeric
// parts it keeps apart (written into `out`), or "<*>" as a whole.
inline std::string_view mask_token(std::string_view tok, std::string &out) {
  // Long tokens are variables whole, digits or not (ids, hashes, base64, host names, paths):
  // a constant word is rarely this long, and each distinct one would otherwise stay in the
  // token table for good.
  if (tok.size() > 24) return kWild;
  size_t first_digit = 0;
  while (first_digit < tok.size() && !is_digit(tok[first_digit])) ++first_digit;
  if (first_digit == tok.size()) return tok;
  // Paths and mixed tokens are variables whole.
  if (tok.find('/') != std::string_view::npos) return kWild;
  out.clear();
  out.append(tok.substr(0, first_digit));
  size_t i = first_digit;
  while (i < tok.size()) {
    const char c = tok[i];
    if (!is_digit(c)) {
      out.push_back(c);
      ++i;
      continue;
    }
    // A number glued to a word ("e820", "x86") is part of a name: the token is a variable.
    if (i > 0 && is_alpha(tok[i - 1])) return kWild;
    size_t j = i;
    if (c == '0' && j + 2 < tok.size() && (tok[j + 1] == 'x' || tok[j + 1] == 'X') &&
        is_hex(tok[j + 2])) {
      j += 2;
      while (j < tok.size() && is_hex(tok[j])) ++j;
    } else {
      while (j < tok.size() && is_digit(tok[j])) ++j;
      // Dotted, dashed and colon groups: versions, IPs, dates, times, ports.
      while (j + 1 < tok.size() &&
             (tok[j] == '.' || tok[j] == ':' || tok[j] == '-' || tok[j] == '_' || tok[j] == '/') &&
             is_digit(tok[j + 1])) {
        ++j;
        while (j < tok.size() && is_digit(tok[j])) ++j;
      }
    }
    // A unit of up to three letters ("12ms", "4KB", "3rd"); a longer word is glued on.
    size_t k = j;
    while (k < tok.size() && is_alpha(tok[k])) ++k;
    if (k - j > 3) return kWild;
    out.append(kWild);
    i = k;
  }
  return out;
}

// Calls fn(token) for each white-space separated token of msg, masked when `masked` (a stored
// template is already masked: its tokens are taken as they are). Past max_tokens - 1 tokens the
// rest of the message is one trailing "<*>". `scratch` holds a masked token during its call.
template <typename Fn>
inline void for_each_token(std::string_view msg, size_t max_tokens, bool masked,
                           std::string &scratch, Fn &&fn) {
  size_t i = 0, count = 0;
  while (i < msg.size()) {
    while (i < msg.size() && is_space(msg[i])) ++i;
    if (i == msg.size()) break;
    size_t j = i;
    while (j < msg.size() && !is_space(msg[j])) ++j;
    if (count + 1 == max_tokens) {
      fn(kWild);
      return;
    }
    const std::string_view tok = msg.substr(i, j - i);
    fn(masked ? mask_token(tok, scratch) : tok);
    ++count;
    i = j;
  }
}

}  // namespace devmesh::log_tokens
