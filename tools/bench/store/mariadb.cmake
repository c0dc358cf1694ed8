# bench_store_mariadb: dummy -> mariadb rows/s against raw multi-row INSERTs and raw bulk binding
# on a private mariadbd (tests/support/mariadb.h), the FULLTEXT cost, retention's effect, and
# GET /query/logs latency over store: mariadb.
pkg_check_modules(DM_BENCH_MARIADB REQUIRED IMPORTED_TARGET libmariadb)
pkg_check_modules(DM_BENCH_MARIADB_XXHASH REQUIRED IMPORTED_TARGET libxxhash)
pkg_check_modules(DM_BENCH_MARIADB_CURL REQUIRED IMPORTED_TARGET libcurl)
add_executable(bench_store_mariadb ${CMAKE_CURRENT_LIST_DIR}/bench_store_mariadb.cpp)
target_include_directories(bench_store_mariadb PRIVATE ${CMAKE_SOURCE_DIR}/tests/support
  ${CMAKE_SOURCE_DIR}/plugins/outputs/mariadb ${CMAKE_SOURCE_DIR}/engine/include
  ${CMAKE_SOURCE_DIR}/plugins/common)
target_link_libraries(bench_store_mariadb PRIVATE PkgConfig::DM_BENCH_MARIADB
  PkgConfig::DM_BENCH_MARIADB_XXHASH PkgConfig::DM_BENCH_MARIADB_CURL)
target_compile_definitions(bench_store_mariadb PRIVATE
  DEVMESH_BENCH_BINARY="${CMAKE_BINARY_DIR}/devmesh"
  DEVMESH_BENCH_PLUGIN_DIR="${DEVMESH_PLUGIN_OUTPUT_DIR}"
  DEVMESH_BENCH_BUILD_DIR="${CMAKE_BINARY_DIR}")
add_dependencies(bench_store_mariadb devmesh dm_dummy dm_mariadb dm_query)
