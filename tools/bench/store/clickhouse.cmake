# bench_store_clickhouse: dummy -> clickhouse rows/s on a private clickhouse-server
# (tests/support/clickhouse.h) for a few `workers`, then /query/logs, /query/stats and
# /query/patterns latency over store: clickhouse (--query-rows N: over N rows loaded directly,
# the ingest runs skipped).
pkg_check_modules(DM_BENCH_CLICKHOUSE_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(bench_store_clickhouse ${CMAKE_CURRENT_LIST_DIR}/bench_store_clickhouse.cpp)
target_include_directories(bench_store_clickhouse PRIVATE ${CMAKE_SOURCE_DIR}/tests/support)
target_link_libraries(bench_store_clickhouse PRIVATE PkgConfig::DM_BENCH_CLICKHOUSE_CURL)
target_compile_definitions(bench_store_clickhouse PRIVATE
  DEVMESH_BENCH_BINARY="${CMAKE_BINARY_DIR}/devmesh"
  DEVMESH_BENCH_PLUGIN_DIR="${DEVMESH_PLUGIN_OUTPUT_DIR}")
add_dependencies(bench_store_clickhouse devmesh dm_dummy dm_clickhouse dm_query)
