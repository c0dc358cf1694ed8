// ASCII case-insensitive comparison for protocol tokens and parameter words (content codings,
// Accept-Encoding parameters, field names, search terms). Only A-Z fold, whatever the locale:
// a byte of UTF-8 compares as it is.
#pragma once

#include <string_view>

namespace devmesh {

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

}  // namespace devmesh
