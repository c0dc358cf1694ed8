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

namespace devmesh::query {

StoredRow StoredRow::from(const LogRow &r) {
  StoredRow s;
  s.id = r.id;
  s.timestamp_ns = r.timestamp_ns;
  s.source = r.source;
  s.service = r.service;
  s.host = r.host;
  s.level = r.level;
  s.message = r.message;
  s.trace_id = r.trace_id;
  s.span_id = r.span_id;
  s.event_type = r.event_type;
  s.error_code = r.error_code;
  s.meta_json = r.meta_json;
  s.has_trace_id = r.has_trace_id;
  s.has_span_id = r.has_span_id;
  s.has_event_type = r.has_event_type;
  s.has_error_code = r.has_error_code;
  s.has_meta_json = r.has_meta_json;
  s.pattern_id = r.pattern_id;
  s.has_pattern_id = r.has_pattern_id;
  return s;
}

LogRow StoredRow::view() const {
  LogRow r;
  r.id = id;
  r.timestamp_ns = timestamp_ns;
  r.source = source;
  r.service = service;
  r.host = host;
  r.level = level;
  r.message = message;
  r.trace_id = trace_id;
  r.span_id = span_id;
  r.event_type = event_type;
  r.error_code = error_code;
  r.meta_json = meta_json;
  r.has_trace_id = has_trace_id;
  r.has_span_id = has_span_id;
  r.has_event_type = has_event_type;
  r.has_error_code = has_error_code;
  r.has_meta_json = has_meta_json;
  r.pattern_id = pattern_id;
  r.has_pattern_id = has_pattern_id;
  return r;
}

}  // namespace devmesh::query
