# bench_store_sqlite: dummy -> sqlite rows/s against a raw SQLite loop, and query latency.
pkg_check_modules(DM_BENCH_SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
pkg_check_modules(DM_BENCH_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(bench_store_sqlite ${CMAKE_CURRENT_LIST_DIR}/bench_store_sqlite.cpp)
target_include_directories(bench_store_sqlite PRIVATE ${CMAKE_SOURCE_DIR}/plugins/outputs/sqlite
  ${CMAKE_SOURCE_DIR}/plugins/common)
target_link_libraries(bench_store_sqlite PRIVATE PkgConfig::DM_BENCH_SQLITE3
  PkgConfig::DM_BENCH_CURL PkgConfig::XXHASH)
target_compile_definitions(bench_store_sqlite PRIVATE
  DEVMESH_BENCH_BINARY="${CMAKE_BINARY_DIR}/devmesh"
  DEVMESH_BENCH_PLUGIN_DIR="${DEVMESH_PLUGIN_OUTPUT_DIR}")
add_dependencies(bench_store_sqlite devmesh dm_dummy dm_sqlite dm_query)
