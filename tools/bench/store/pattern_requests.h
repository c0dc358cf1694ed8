// The /query/patterns part of the store benches (bench_store_mariadb, bench_store_sqlite): the
// whole day of the bench's query table, without and with a level filter (the top 20 patterns,
// each with a sample and its hosts, as the defaults give), timed over one libcurl handle.
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

namespace devmesh::bench {

inline constexpr const char *kPatternFilters[] = {"", "&min_level=warning", "&level=error"};

// Milliseconds per request, one vector per kPatternFilters entry; a request that fails or
// answers other than 200 adds to bad.
inline std::vector<std::vector<double>> time_pattern_requests(CURL *c, const std::string &base,
                                                              int requests, long &bad) {
  const std::string day = "start_time=2025-11-28T00:00:00Z&end_time=2025-11-29T00:00:00Z";
  std::vector<std::vector<double>> ms(std::size(kPatternFilters));
  for (int r = 0; r < requests; ++r)
    for (size_t f = 0; f < std::size(kPatternFilters); ++f) {
      curl_easy_setopt(c, CURLOPT_URL,
                       (base + "/query/patterns?" + day + kPatternFilters[f]).c_str());
      const auto t0 = std::chrono::steady_clock::now();
      long code = 0;
      if (curl_easy_perform(c) != CURLE_OK) ++bad;
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
      if (code != 200) ++bad;
      ms[f].push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
  return ms;
}

inline void print_pattern_requests(int patterns, int requests,
                                   const std::vector<std::vector<double>> &ms) {
  std::printf("GET /query/patterns over the 24 h (%d patterns, limit 20), %d requests each:\n",
              patterns, requests);
  for (size_t f = 0; f < ms.size() && f < std::size(kPatternFilters); ++f) {
    std::vector<double> v = ms[f];
    std::sort(v.begin(), v.end());
    const double p50 = v.empty() ? 0 : v[v.size() / 2], max = v.empty() ? 0 : v.back();
    std::printf("  %-18s p50 %8.1f ms  max %8.1f ms\n",
                *kPatternFilters[f] ? kPatternFilters[f] + 1 : "(no level)", p50, max);
  }
}

}  // namespace devmesh::bench
