// Chooses the query plugin's store backend from `store:`.
#include "query_store.h"

namespace devmesh::query {

std::unique_ptr<QueryStore> make_query_store(const StoreSettings &settings, std::string &error) {
  if (settings.kind == "sqlite") return make_sqlite_store(settings, error);
  if (settings.kind == "mariadb") {
#ifdef DEVMESH_QUERY_MARIADB
    return make_mariadb_store(settings, error);
#else
    error =
        "store: mariadb: the MariaDB backend of the query plugin is not built yet "
        "(plugins/outputs/query/query_mariadb.cpp); use store: sqlite for now";
    return nullptr;
#endif
  }
  if (settings.kind == "clickhouse") return make_clickhouse_store(settings, error);
  error = "store: unknown store '" + settings.kind + "' (sqlite, mariadb or clickhouse)";
  return nullptr;
}

}  // namespace devmesh::query
