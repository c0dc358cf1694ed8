// The SQLite store's schema, shared by the sqlite output, the query plugin's SQLite backend and
// the store benchmark: the prototype's log_events columns and indexes, event_id UNIQUE, the FTS5
// index on message, and the check that refuses an incompatible existing table.
#pragma once

#include <sqlite3.h>

#include <cctype>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>

namespace devmesh::sqlite_schema {

// timestamp is INTEGER nanoseconds since the epoch (UTC): integer comparisons make the time
// range and the (timestamp, id) keyset cursor index-only, and the API formats it back to the
// prototype's text. level keeps the prototype's ENUM values as text.
struct Column {
  const char *name;
  const char *type;  // declared type, as PRAGMA table_info reports it
  bool not_null;
};
inline constexpr Column kColumns[] = {
    {"id", "INTEGER", false},      {"timestamp", "INTEGER", true},   {"source", "TEXT", true},
    {"service", "TEXT", true},     {"host", "TEXT", true},           {"level", "TEXT", true},
    {"trace_id", "TEXT", false},   {"span_id", "TEXT", false},       {"event_type", "TEXT", false},
    {"error_code", "TEXT", false}, {"message", "TEXT", true},        {"meta_json", "TEXT", false},
    {"event_id", "BLOB", true},    {"pattern_id", "INTEGER", false},
};

// Columns added by a release after the table's; start() adds them to a table made before
// (nullable, so the ALTER is instant and the old rows read NULL).
struct AddedColumn {
  const char *name;
  const char *definition;
};
inline constexpr AddedColumn kAddedColumns[] = {
    {"pattern_id", "INTEGER"},  // the patterns filter's id (a 64-bit hash, stored signed)
};

// SQL identifiers cannot be bound as parameters: table names are restricted to this form
// (checked at config time) and always double-quoted.
inline bool valid_identifier(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

inline std::string quote_ident(std::string_view ident) {
  return "\"" + std::string(ident) + "\"";
}
inline std::string fts_name(std::string_view table) {
  return std::string(table) + "_fts";
}

inline std::string create_table_sql(std::string_view table) {
  const std::string t = quote_ident(table);
  const std::string n(table);
  // AUTOINCREMENT: an id is never reused, even after retention empties the table, so ids seen
  // by clients (and cursors) never come back meaning another row.
  return "CREATE TABLE IF NOT EXISTS " + t +
         " (\n"
         "  id INTEGER PRIMARY KEY AUTOINCREMENT,\n"
         "  timestamp INTEGER NOT NULL,\n"
         "  source TEXT NOT NULL,\n"
         "  service TEXT NOT NULL,\n"
         "  host TEXT NOT NULL,\n"
         "  level TEXT NOT NULL CHECK (level IN "
         "('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL')),\n"
         "  trace_id TEXT,\n"
         "  span_id TEXT,\n"
         "  event_type TEXT,\n"
         "  error_code TEXT,\n"
         "  message TEXT NOT NULL,\n"
         "  meta_json TEXT,\n"
         "  event_id BLOB NOT NULL,\n"
         "  pattern_id INTEGER\n"
         ");\n"
         // The prototype's indexes, same names (prefixed by the table so two tables can share
         // a file). SQLite index entries end with the rowid, so (service, timestamp) is really
         // (service, timestamp, id): the keyset order needs no extra index.
         "CREATE UNIQUE INDEX IF NOT EXISTS " +
         quote_ident(n + "_event_id") + " ON " + t +
         " (event_id);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_timestamp") + " ON " + t +
         " (timestamp);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_service") + " ON " + t +
         " (service);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_host") + " ON " + t +
         " (host);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_level") + " ON " + t +
         " (level);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_service_timestamp") + " ON " + t +
         " (service, timestamp);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_host_timestamp") + " ON " + t +
         " (host, timestamp);\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_trace_id") + " ON " + t +
         " (trace_id);\n"
         // A pattern's records by time, with level: /query/patterns/{id}, same-pattern links,
         // and /query/patterns with level= or min_level= counted from the index alone. id is
         // named before level so that the entries stay in the (timestamp, id) keyset order.
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(n + "_idx_pattern_timestamp_level") + " ON " + t +
         " (pattern_id, timestamp, id, level);\n"
         // The previous release's (pattern_id, timestamp), which the one above supersedes: a
         // table made by it gets the new index (built at start, in the schema transaction)
         // before the old one goes.
         "DROP INDEX IF EXISTS " +
         quote_ident(n + "_idx_pattern_timestamp") + ";\n";
}

// The templates of the patterns filter, one row per pattern id: written with the rows that carry
// them, kept by retention as long as a row of theirs may be.
inline std::string patterns_table(std::string_view table) {
  return table == "log_events" ? std::string("log_patterns") : std::string(table) + "_patterns";
}

inline std::string create_patterns_sql(std::string_view table) {
  const std::string t = quote_ident(patterns_table(table));
  return "CREATE TABLE IF NOT EXISTS " + t +
         " (\n"
         "  id INTEGER PRIMARY KEY,\n"  // the pattern id, stored signed
         "  service TEXT NOT NULL,\n"
         "  template TEXT,\n"  // NULL until a record brings it
         "  first_seen INTEGER NOT NULL,\n"
         "  last_seen INTEGER NOT NULL,\n"
         "  count INTEGER NOT NULL\n"
         ");\n"
         "CREATE INDEX IF NOT EXISTS " +
         quote_ident(patterns_table(table) + "_idx_service_last_seen") + " ON " + t +
         " (service, last_seen);\n";
}

// Adds one pattern's rows of a batch: counts add up, the seen range widens, a template replaces
// the stored one (the newest is the most general).
inline std::string upsert_pattern_sql(std::string_view table) {
  return "INSERT INTO " + quote_ident(patterns_table(table)) +
         " (id, service, template, first_seen, last_seen, count) VALUES (?1,?2,?3,?4,?5,?6)"
         " ON CONFLICT(id) DO UPDATE SET count = count + excluded.count,"
         " first_seen = min(first_seen, excluded.first_seen),"
         " last_seen = max(last_seen, excluded.last_seen),"
         " template = coalesce(excluded.template, template)";
}

inline bool column_exists(sqlite3 *db, const std::string &table, const char *column);

// ALTER TABLE for every column a table made by an earlier release lacks. "" or the error.
inline std::string add_missing_columns(sqlite3 *db, const std::string &table) {
  for (const AddedColumn &c : kAddedColumns) {
    if (column_exists(db, table, c.name)) continue;
    const std::string sql =
        "ALTER TABLE " + quote_ident(table) + " ADD COLUMN " + c.name + " " + c.definition;
    char *err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = std::string("cannot add column ") + c.name + ": " + (err ? err : "?");
      sqlite3_free(err);
      return msg;
    }
  }
  return "";
}

// External-content FTS5 over message: the text is stored once (in the table); the index is fed
// per batch by rowid range and told about deletions by retention.
inline std::string create_fts_sql(std::string_view table) {
  return "CREATE VIRTUAL TABLE IF NOT EXISTS " + quote_ident(fts_name(table)) +
         " USING fts5(message, content=" + quote_ident(table) + ", content_rowid='id');";
}

// Duplicates (the same event_id again: a re-delivered batch) are skipped, nothing else is: a
// NOT NULL or CHECK violation is still an error, unlike INSERT OR IGNORE.
inline std::string insert_sql(std::string_view table) {
  return "INSERT INTO " + quote_ident(table) +
         " (timestamp, source, service, host, level, trace_id, span_id, event_type, error_code,"
         " message, meta_json, event_id, pattern_id) VALUES"
         " (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"
         " ON CONFLICT(event_id) DO NOTHING";
}

inline std::string fts_feed_sql(std::string_view table) {
  return "INSERT INTO " + quote_ident(fts_name(table)) +
         " (rowid, message) SELECT id, message FROM " + quote_ident(table) + " WHERE id > ?1";
}

// Whether the schema holds an object of this type ('table', 'index') and name.
inline bool schema_object_exists(sqlite3 *db, const char *type, const std::string &name) {
  sqlite3_stmt *st = nullptr;
  bool found = false;
  if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE name = ?1 AND type = ?2", -1, &st,
                         nullptr) == SQLITE_OK) {
    sqlite3_bind_text(st, 1, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
    sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
    found = sqlite3_step(st) == SQLITE_ROW;
  }
  sqlite3_finalize(st);
  return found;
}

inline bool table_exists(sqlite3 *db, const std::string &name) {
  return schema_object_exists(db, "table", name);
}

inline bool index_exists(sqlite3 *db, const std::string &name) {
  return schema_object_exists(db, "index", name);
}

inline bool column_exists(sqlite3 *db, const std::string &table, const char *column) {
  sqlite3_stmt *st = nullptr;
  bool found = false;
  const std::string pragma = "PRAGMA table_info(" + quote_ident(table) + ")";
  if (sqlite3_prepare_v2(db, pragma.c_str(), -1, &st, nullptr) == SQLITE_OK)
    while (!found && sqlite3_step(st) == SQLITE_ROW) {
      const auto *name = reinterpret_cast<const char *>(sqlite3_column_text(st, 1));
      found = name != nullptr && std::strcmp(name, column) == 0;
    }
  sqlite3_finalize(st);
  return found;
}

inline std::string upper(std::string s) {
  for (char &c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Checks an existing table: every column present with our declared type and nullability, and a
// UNIQUE index on event_id alone. Returns "" when compatible (or absent), else what is wrong.
inline std::string check_table(sqlite3 *db, const std::string &table) {
  if (!table_exists(db, table)) return "";
  sqlite3_stmt *st = nullptr;
  const std::string pragma = "PRAGMA table_info(" + quote_ident(table) + ")";
  if (sqlite3_prepare_v2(db, pragma.c_str(), -1, &st, nullptr) != SQLITE_OK)
    return std::string("cannot read its columns: ") + sqlite3_errmsg(db);
  bool seen[std::size(kColumns)] = {};
  std::string problems;
  auto add = [&](const std::string &p) { problems += (problems.empty() ? "" : "; ") + p; };
  while (sqlite3_step(st) == SQLITE_ROW) {
    const std::string name = reinterpret_cast<const char *>(sqlite3_column_text(st, 1));
    const char *type_text = reinterpret_cast<const char *>(sqlite3_column_text(st, 2));
    const std::string type = upper(type_text ? type_text : "");
    const bool not_null = sqlite3_column_int(st, 3) != 0;
    const bool pk = sqlite3_column_int(st, 5) != 0;
    size_t i = 0;
    while (i < std::size(kColumns) && name != kColumns[i].name) ++i;
    if (i == std::size(kColumns)) {
      if (not_null && sqlite3_column_type(st, 4) == SQLITE_NULL)
        add("extra column " + name + " is NOT NULL without a default");
      continue;
    }
    seen[i] = true;
    const Column &c = kColumns[i];
    if (type != c.type)
      add("column " + name + " is " + (type.empty() ? "untyped" : type) + ", devmesh needs " +
          c.type + (name == "timestamp" ? " (nanoseconds since the epoch)" : ""));
    else if (c.not_null && !not_null)
      add("column " + name + " allows NULL");
    if (name == "id" && !pk) add("column id is not the INTEGER PRIMARY KEY");
  }
  sqlite3_finalize(st);
  for (size_t i = 0; i < std::size(kColumns); ++i) {
    bool added_later = false;  // start() adds it (add_missing_columns)
    for (const AddedColumn &a : kAddedColumns)
      added_later = added_later || std::strcmp(a.name, kColumns[i].name) == 0;
    if (!seen[i] && !added_later) add(std::string("column ") + kColumns[i].name + " is missing");
  }

  // ON CONFLICT(event_id) needs a UNIQUE index on exactly that column.
  bool unique_event_id = false;
  const std::string list = "PRAGMA index_list(" + quote_ident(table) + ")";
  if (sqlite3_prepare_v2(db, list.c_str(), -1, &st, nullptr) == SQLITE_OK) {
    while (!unique_event_id && sqlite3_step(st) == SQLITE_ROW) {
      if (sqlite3_column_int(st, 2) == 0) continue;
      const std::string index = reinterpret_cast<const char *>(sqlite3_column_text(st, 1));
      sqlite3_stmt *info = nullptr;
      const std::string q = "PRAGMA index_info(" + quote_ident(index) + ")";
      int cols = 0;
      bool on_event_id = false;
      if (sqlite3_prepare_v2(db, q.c_str(), -1, &info, nullptr) == SQLITE_OK)
        while (sqlite3_step(info) == SQLITE_ROW) {
          ++cols;
          const auto *c = reinterpret_cast<const char *>(sqlite3_column_text(info, 2));
          on_event_id = c && std::strcmp(c, "event_id") == 0;
        }
      sqlite3_finalize(info);
      unique_event_id = cols == 1 && on_event_id;
    }
  }
  sqlite3_finalize(st);
  size_t event_id = 0;
  while (std::string_view(kColumns[event_id].name) != "event_id") ++event_id;
  if (!unique_event_id && seen[event_id]) add("event_id has no UNIQUE index");
  return problems;
}

}  // namespace devmesh::sqlite_schema
