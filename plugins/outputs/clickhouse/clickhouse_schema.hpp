// The ClickHouse log table as the clickhouse output creates it and the query plugin reads it:
// its columns (the RowBinary order of an insert), its engine and its DDL, for one node or for a
// cluster (a local table per replica under a Distributed table of the same columns). Kept to
// what ClickHouse 18.16 has: DateTime with whole seconds (so the nanoseconds are a column of
// their own), no TTL (retention drops whole days: the table is partitioned by day), no query
// parameters.
#pragma once

#include <cstddef>
#include <iterator>
#include <string>
#include <string_view>

namespace devmesh::clickhouse {

struct ColumnDef {
  const char *name;
  const char *type;
};

// In insert order. timestamp (seconds) partitions and prunes; timestamp_ns orders and pages.
inline constexpr ColumnDef kColumns[] = {
    {"timestamp", "DateTime"},
    {"timestamp_ns", "Int64"},
    {"source", "String"},
    {"service", "String"},
    {"host", "String"},
    {"level", "String"},
    {"trace_id", "Nullable(String)"},
    {"span_id", "Nullable(String)"},
    {"event_type", "Nullable(String)"},
    {"error_code", "Nullable(String)"},
    {"message", "String"},
    {"meta_json", "Nullable(String)"},
    {"event_id", "FixedString(16)"},
    {"pattern_id", "Nullable(Int64)"},  // the patterns filter's 64-bit id, stored signed
};
inline constexpr size_t kColumnCount = std::size(kColumns);

// Plain names only ([A-Za-z_][A-Za-z0-9_]*, at most 64): they are written into SQL unquoted.
inline bool valid_identifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// A ClickHouse string literal holding exactly the bytes of s (quotes included). ClickHouse reads
// a backslash as an escape inside '...': backslash and quote are escaped, and every byte that
// is not printable ASCII is written as \xHH, so the literal is plain ASCII whatever s holds
// (NUL, newlines, invalid UTF-8). The only place a value enters SQL: 18.16 has no query
// parameters.
inline std::string quote_string(std::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('\'');
  for (unsigned char c : s) {
    if (c == '\\' || c == '\'') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('\'');
  return out;
}

struct Layout {
  std::string database, table, cluster;  // cluster: empty on one node
  bool replicated = false;

  // Where rows are stored: the table itself, or on a cluster its local table on each node.
  std::string storage_table() const { return cluster.empty() ? table : table + "_local"; }
  std::string on_cluster() const { return cluster.empty() ? "" : " ON CLUSTER " + cluster; }
  std::string qualified(const std::string &t) const { return database + "." + t; }

  std::string column_list() const {
    std::string s;
    for (size_t i = 0; i < kColumnCount; ++i) s += std::string(i ? ", " : "") + kColumns[i].name;
    return s;
  }

  // ReplacingMergeTree on the whole sorting key: a re-delivered record (same service, time and
  // event_id) is the same key and is merged away; distinct records never are. Reads that must
  // count it once use FINAL until the merge has happened.
  std::string create_storage_sql() const {
    std::string sql =
        "CREATE TABLE IF NOT EXISTS " + qualified(storage_table()) + on_cluster() + " (";
    for (size_t i = 0; i < kColumnCount; ++i)
      sql += std::string(i ? ", " : "") + kColumns[i].name + " " + kColumns[i].type;
    sql += ") ENGINE = ";
    if (replicated)
      // The macros come from each node's configuration; ClickHouse also drops an identical
      // block inserted twice (a retried insert) on replicated tables.
      sql += "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/" + database + "." +
             storage_table() + "', '{replica}')";
    else
      sql += "ReplacingMergeTree";
    sql += " PARTITION BY toYYYYMMDD(timestamp) ORDER BY (service, timestamp_ns, event_id)";
    return sql;
  }

  // On a cluster: the table inserts and queries go through, sharded by event_id so that a
  // re-delivered record lands on the shard that already holds it.
  std::string create_distributed_sql() const {
    return "CREATE TABLE IF NOT EXISTS " + qualified(table) + on_cluster() + " AS " +
           qualified(storage_table()) + " ENGINE = Distributed(" + cluster + ", " + database +
           ", " + storage_table() + ", sipHash64(event_id))";
  }
};

}  // namespace devmesh::clickhouse
