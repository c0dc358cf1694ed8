// The console's files as compiled into query.so (the table is generated at build time by
// embed_assets.cmake from the files in this folder and third_party/uplot).
#pragma once

#include <cstddef>

namespace devmesh::query {

struct ConsoleAsset {
  const char *name;          // as served under the console's path: "index.html", "assets/app.js"
  const char *content_type;  // from the file's extension
  const char *etag;          // quoted, from the file's SHA-256
  const unsigned char *data;
  size_t size;
  const unsigned char *gzip;  // gzip -9 of data; nullptr when gzip was not found at build time
  size_t gzip_size;
};

extern const ConsoleAsset kConsoleAssets[];
extern const size_t kConsoleAssetCount;

}  // namespace devmesh::query
