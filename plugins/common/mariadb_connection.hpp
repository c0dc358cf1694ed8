// MariaDB connection settings, connecting with libmariadb, error classes and the log_events
// schema (DDL and the compatibility check), shared by the mariadb output and the query plugin's
// MariaDB store. Header-only; the including plugin links libmariadb.
#pragma once

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include <devmesh/plugin.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace devmesh::mariadb {

// The connection keys, as both plugins declare them (append these to an option table).
// clang-format off
#define DEVMESH_MARIADB_CONNECTION_OPTIONS \
  {"host", DM_OPT_STRING, 0, "127.0.0.1", 0, 0, nullptr, "server host name or address (ignored when socket is set)", 0}, \
  {"port", DM_OPT_INT, DM_OPT_BOUNDED, "3306", 1, 65535, nullptr, "server TCP port", 0}, \
  {"socket", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "unix socket path of a local server, used instead of host and port", 0}, \
  {"user", DM_OPT_STRING, 0, "devmesh", 0, 0, nullptr, "user name", 0}, \
  {"password", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr, "password; write ${ENV_VAR} so that it never lives in the file", 0}, \
  {"database", DM_OPT_STRING, 0, "devmesh", 0, 0, nullptr, "database (schema) name", 0}, \
  {"table", DM_OPT_STRING, 0, "log_events", 0, 0, nullptr, "table name: letters, digits and _ only, at most 64", 0}, \
  {"tls", DM_OPT_BOOL, 0, "false", 0, 0, nullptr, "require TLS (implied by ssl_ca, ssl_cert or ssl_key)", 0}, \
  {"ssl_ca", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "PEM file of the CA that signed the server's certificate", 0}, \
  {"ssl_cert", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "PEM client certificate", 0}, \
  {"ssl_key", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "PEM client private key", 0}, \
  {"ssl_verify", DM_OPT_BOOL, 0, "true", 0, 0, nullptr, "with TLS, verify the server's certificate and host name", 0}, \
  {"connect_timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 1000, 3600000, nullptr, "time limit for connecting", 0}, \
  {"timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "30s", 1000, 3600000, nullptr, "time limit for each network read or write: a hung server counts as gone after it", 0}
// clang-format on

// Table and database names go into SQL text (identifiers cannot be bound): only these are taken.
inline bool valid_identifier(const std::string &s) {
  if (s.empty() || s.size() > 64) return false;
  for (unsigned char c : s)
    if (!std::isalnum(c) && c != '_') return false;
  return true;
}

struct Settings {
  std::string host, socket, user, password, database, table;
  unsigned port = 3306;
  bool tls = false, ssl_verify = true;
  std::string ssl_ca, ssl_cert, ssl_key;
  unsigned connect_timeout_s = 5, timeout_s = 30;

  // Reads the DEVMESH_MARIADB_CONNECTION_OPTIONS keys; a bad value goes to `problems`.
  static Settings from(const Config &c, ConfigProblems &problems) {
    Settings s;
    s.host = c.string("host");
    s.port = static_cast<unsigned>(c.integer("port"));
    if (c.has("socket")) s.socket = c.string("socket");
    s.user = c.string("user");
    if (c.has("password")) s.password = c.string("password");
    s.database = c.string("database");
    s.table = c.string("table");
    if (!valid_identifier(s.database))
      problems.add("database",
                   "'" + s.database + "' is not a plain name (letters, digits, _; at most 64)");
    if (!valid_identifier(s.table))
      problems.add("table",
                   "'" + s.table + "' is not a plain name (letters, digits, _; at most 64)");
    if (c.has("ssl_ca")) s.ssl_ca = c.string("ssl_ca");
    if (c.has("ssl_cert")) s.ssl_cert = c.string("ssl_cert");
    if (c.has("ssl_key")) s.ssl_key = c.string("ssl_key");
    if (s.ssl_cert.empty() != s.ssl_key.empty())
      problems.add(s.ssl_cert.empty() ? "ssl_key" : "ssl_cert",
                   "ssl_cert and ssl_key: set both or neither");
    s.tls = c.boolean("tls") || !s.ssl_ca.empty() || !s.ssl_cert.empty();
    s.ssl_verify = c.boolean("ssl_verify");
    s.connect_timeout_s = static_cast<unsigned>((c.integer("connect_timeout") + 999) / 1000);
    s.timeout_s = static_cast<unsigned>((c.integer("timeout") + 999) / 1000);
    return s;
  }

  // "unix socket /x" or "127.0.0.1:3306", for messages.
  std::string where() const {
    return socket.empty() ? host + ":" + std::to_string(port) : "unix socket " + socket;
  }
};

// Errors after which the connection is unusable: reconnect, then retry the whole batch.
inline bool is_connection_error(unsigned e) {
  switch (e) {
    case CR_CONNECTION_ERROR:      // 2002
    case CR_CONN_HOST_ERROR:       // 2003
    case CR_UNKNOWN_HOST:          // 2005
    case CR_SERVER_GONE_ERROR:     // 2006
    case CR_SERVER_LOST:           // 2013
    case CR_SERVER_LOST_EXTENDED:  // 2055
    case 2014:                     // CR_COMMANDS_OUT_OF_SYNC: the protocol state is lost
    case 2048:                     // CR_INVALID_CONN_HANDLE
    case 2057:                     // CR_STMT_CLOSED (the server closed it with the connection)
    case ER_SERVER_SHUTDOWN:       // 1053
    case ER_CONNECTION_KILLED:     // 1927
    case ER_QUERY_INTERRUPTED:     // 1317
    case ER_NET_READ_INTERRUPTED:  // 1159
    case ER_NET_ERROR_ON_WRITE:    // 1160
    case ER_NET_PACKET_TOO_LARGE:  // 1153: the server drops the connection after it
    case ER_CON_COUNT_ERROR:       // 1040
    case ER_TOO_MANY_USER_CONNECTIONS:
    case 4031:  // ER_CLIENT_INTERACTION_TIMEOUT: the server dropped an idle session
      return true;
    default:
      return false;
  }
}

// Transient conflicts: roll back, retry the whole batch on the same connection.
inline bool is_conflict_error(unsigned e) {
  return e == ER_LOCK_DEADLOCK || e == ER_LOCK_WAIT_TIMEOUT || e == 1180 /* commit failed */;
}

// Errors caused by a value of some row: the batch is bisected until the row is alone.
inline bool is_data_error(unsigned e) {
  switch (e) {
    case ER_DATA_TOO_LONG:                    // 1406
    case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:  // 1366
    case ER_TRUNCATED_WRONG_VALUE:            // 1292
    case WARN_DATA_TRUNCATED:                 // 1265
    case ER_WARN_DATA_OUT_OF_RANGE:           // 1264
    case ER_BAD_NULL_ERROR:                   // 1048
    case ER_INVALID_CHARACTER_STRING:         // 1300
    case ER_CONSTRAINT_FAILED:                // 4025 (JSON's json_valid check)
    case 1367:                                // ER_ILLEGAL_VALUE_FOR_TYPE
    case 1411:                                // ER_WRONG_VALUE_FOR_TYPE
    case 3140:                                // ER_INVALID_JSON_TEXT
      return true;
    default:
      return e >= ER_JSON_BAD_CHR && e <= ER_JSON_PATH_EMPTY;
  }
}

// A failed connect that waiting may cure: the server is down, starting, or out of
// connections. Anything else at start (access denied 1045, unknown database 1049, a TLS
// failure) is a configuration problem that no retry cures.
inline bool is_transient_connect_error(unsigned e) {
  return e == 0 || is_connection_error(e);
}

// UTC civil time of a nanosecond timestamp, as DATETIME(6) takes it (microseconds; the rest is
// dropped, so round first where it matters).
inline void to_mysql_time(int64_t ns, MYSQL_TIME &t) {
  int64_t sec = ns / 1000000000, sub = ns % 1000000000;
  if (sub < 0) sub += 1000000000, --sec;
  int64_t days = sec / 86400, sod = sec % 86400;
  if (sod < 0) sod += 86400, --days;
  const std::chrono::year_month_day ymd{std::chrono::sys_days{std::chrono::days{days}}};
  std::memset(&t, 0, sizeof t);
  t.year = static_cast<unsigned>(static_cast<int>(ymd.year()));
  t.month = static_cast<unsigned>(ymd.month());
  t.day = static_cast<unsigned>(ymd.day());
  t.hour = static_cast<unsigned>(sod / 3600);
  t.minute = static_cast<unsigned>(sod / 60 % 60);
  t.second = static_cast<unsigned>(sod % 60);
  t.second_part = static_cast<unsigned long>(sub / 1000);
  t.time_type = MYSQL_TIMESTAMP_DATETIME;
}

// Nanoseconds since the epoch of a DATETIME read back (stored as UTC).
inline int64_t from_mysql_time(const MYSQL_TIME &t) {
  const std::chrono::sys_days d{std::chrono::year{static_cast<int>(t.year)} /
                                std::chrono::month{t.month} / std::chrono::day{t.day}};
  const int64_t sec = static_cast<int64_t>(d.time_since_epoch().count()) * 86400 + t.hour * 3600 +
                      t.minute * 60 + t.second;
  return sec * 1000000000 + static_cast<int64_t>(t.second_part) * 1000;
}

struct MysqlCloser {
  void operator()(MYSQL *m) const {
    if (m) mysql_close(m);
  }
};
using Conn = std::unique_ptr<MYSQL, MysqlCloser>;

// "error 1045 (28000): Access denied for user ..." from a handle.
inline std::string error_text(MYSQL *m) {
  char buf[MYSQL_ERRMSG_SIZE + 64];
  std::snprintf(buf, sizeof buf, "error %u (%s): %s", mysql_errno(m), mysql_sqlstate(m),
                mysql_error(m));
  return buf;
}
inline std::string error_text(MYSQL_STMT *s) {
  char buf[MYSQL_ERRMSG_SIZE + 64];
  std::snprintf(buf, sizeof buf, "error %u (%s): %s", mysql_stmt_errno(s), mysql_stmt_sqlstate(s),
                mysql_stmt_error(s));
  return buf;
}

// The session every devmesh connection runs in: strict (a bad value is an error, never a
// silently mangled row), UTC, utf8mb4, and READ COMMITTED so the retention deletes take no gap
// locks that inserts would wait on.
inline constexpr const char *kSessionInit[] = {
    "SET SESSION sql_mode='STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,NO_ZERO_DATE,"
    "NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO', time_zone='+00:00'",
    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"};

// Connects; on failure returns null with errno_out/error set (errno_out 0: not a server error).
inline Conn connect(const Settings &s, unsigned &errno_out, std::string &error) {
  errno_out = 0;
  Conn m(mysql_init(nullptr));
  if (!m) {
    error = "mysql_init failed (out of memory)";
    return nullptr;
  }
  unsigned ct = s.connect_timeout_s, rt = s.timeout_s;
  my_bool off = 0;
  mysql_options(m.get(), MYSQL_OPT_CONNECT_TIMEOUT, &ct);
  mysql_options(m.get(), MYSQL_OPT_READ_TIMEOUT, &rt);
  mysql_options(m.get(), MYSQL_OPT_WRITE_TIMEOUT, &rt);
  mysql_options(m.get(), MYSQL_OPT_RECONNECT, &off);  // reconnects are ours: statements re-prepared
  mysql_options(m.get(), MYSQL_SET_CHARSET_NAME, "utf8mb4");
  for (const char *init : kSessionInit) mysql_options(m.get(), MYSQL_INIT_COMMAND, init);
  if (s.tls) {
    my_bool on = 1, verify = s.ssl_verify ? 1 : 0;
    mysql_options(m.get(), MYSQL_OPT_SSL_ENFORCE, &on);
    mysql_options(m.get(), MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &verify);
    if (!s.ssl_ca.empty()) mysql_options(m.get(), MYSQL_OPT_SSL_CA, s.ssl_ca.c_str());
    if (!s.ssl_cert.empty()) mysql_options(m.get(), MYSQL_OPT_SSL_CERT, s.ssl_cert.c_str());
    if (!s.ssl_key.empty()) mysql_options(m.get(), MYSQL_OPT_SSL_KEY, s.ssl_key.c_str());
  }
  const bool sock = !s.socket.empty();
  if (!mysql_real_connect(m.get(), sock ? "localhost" : s.host.c_str(), s.user.c_str(),
                          s.password.empty() ? nullptr : s.password.c_str(), s.database.c_str(),
                          sock ? 0 : s.port, sock ? s.socket.c_str() : nullptr, 0)) {
    errno_out = mysql_errno(m.get());
    error = "cannot connect to " + s.where() + " as " + s.user + ": " + error_text(m.get());
    return nullptr;
  }
  return m;
}

// The value sizes the stores keep whole: the ingest limits every input enforces (the http
// input's max_message and max_meta_bytes, the journald input's max_field_size, all 1 MiB by
// default). A value over them is refused per record at ingest, never later by a column.
inline constexpr uint64_t kIngestMaxMessageBytes = 1u << 20;
inline constexpr uint64_t kIngestMaxMetaBytes = 1u << 20;
// What message and meta_json must hold: MEDIUMTEXT. The ingest limits grow on the way in, at
// worst 3 times for a message (each invalid UTF-8 byte becomes U+FFFD) and 6 times for meta
// (JSON writes a control byte as \u00XX): 3 and 6 MiB, well within it.
inline constexpr uint64_t kLongColumnBytes = 16777215;
// The largest row a record within the ingest limits can make, for the max_allowed_packet check.
inline constexpr uint64_t kLargestRowBytes =
    3 * kIngestMaxMessageBytes + 6 * kIngestMaxMetaBytes + 64 * 1024;

// A pattern's rows by time, with level: /query/patterns with level= or min_level= counts from
// the index alone (with (pattern_id, timestamp), every row of the window was read for its level:
// 5 s, the statement limit, for a day of 1M rows). id, InnoDB's implicit last column of every
// index, is named before level so that the rows stay in the (timestamp, id) keyset order.
inline constexpr const char *kPatternIndex = "idx_pattern_timestamp_level";
inline constexpr const char *kPatternIndexColumns = "(pattern_id, timestamp, id, level)";
// The index it supersedes (the previous release's), dropped by the upgrade.
inline constexpr const char *kOldPatternIndex = "idx_pattern_timestamp";

// The prototype's log_events schema and indexes, plus the event_id that makes re-delivery
// harmless (NULL allowed, so a prototype table migrated with ADD COLUMN keeps its old rows) and
// the patterns filter's pattern_id (its 64-bit id stored signed, as the SQLite store does; NULL
// for a record without one and for the rows of a table made before the column).
// message is MEDIUMTEXT, not the prototype's TEXT (64 KiB), so that the stores keep every value
// up to the ingest limits whole; meta_json is JSON, i.e. LONGTEXT.
inline std::string create_table_sql(const std::string &table, bool full_text) {
  return "CREATE TABLE IF NOT EXISTS `" + table +
         "` (\n"
         "  id BIGINT AUTO_INCREMENT PRIMARY KEY,\n"
         "  timestamp DATETIME(6) NOT NULL,\n"
         "  source VARCHAR(255) NOT NULL,\n"
         "  service VARCHAR(255) NOT NULL,\n"
         "  host VARCHAR(255) NOT NULL,\n"
         "  level ENUM('DEBUG','INFO','WARN','WARNING','ERROR','CRITICAL','FATAL') NOT NULL,\n"
         "  trace_id VARCHAR(64) DEFAULT NULL,\n"
         "  span_id VARCHAR(32) DEFAULT NULL,\n"
         "  event_type VARCHAR(100) DEFAULT NULL,\n"
         "  error_code VARCHAR(50) DEFAULT NULL,\n"
         "  message MEDIUMTEXT NOT NULL,\n"
         "  meta_json JSON DEFAULT NULL,\n"
         "  event_id BINARY(16) DEFAULT NULL,\n"
         "  pattern_id BIGINT DEFAULT NULL,\n"
         "  INDEX idx_timestamp (timestamp),\n"
         "  INDEX idx_service (service),\n"
         "  INDEX idx_host (host),\n"
         "  INDEX idx_level (level),\n"
         "  INDEX idx_service_timestamp (service, timestamp),\n"
         "  INDEX idx_host_timestamp (host, timestamp),\n"
         "  INDEX idx_trace_id (trace_id),\n"
         "  INDEX " +
         std::string(kPatternIndex) + " " + kPatternIndexColumns +
         ",\n"
         "  UNIQUE KEY uk_event_id (event_id)" +
         std::string(full_text ? ",\n  FULLTEXT KEY ft_message (message)" : "") +
         "\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
}

// The templates of the patterns filter, one row per pattern id, named as the SQLite store names
// it: written in the transaction of the rows that carry them, trimmed by retention.
inline std::string patterns_table(const std::string &table) {
  return table == "log_events" ? std::string("log_patterns") : table + "_patterns";
}

inline std::string create_patterns_sql(const std::string &table) {
  return "CREATE TABLE IF NOT EXISTS `" + patterns_table(table) +
         "` (\n"
         "  id BIGINT NOT NULL PRIMARY KEY,\n"  // the pattern id, stored signed
         "  service VARCHAR(255) NOT NULL,\n"
         "  template TEXT NULL,\n"  // NULL until a record brings it (or when it is too long)
         "  first_seen DATETIME(6) NOT NULL,\n"
         "  last_seen DATETIME(6) NOT NULL,\n"
         "  count BIGINT NOT NULL,\n"
         "  INDEX idx_service_last_seen (service, last_seen)\n"
         ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
}

// What a template column of type TEXT holds; a longer template is stored NULL.
inline constexpr size_t kTemplateMaxBytes = 65535;

// The upgrade of a table made before pattern_id, in two statements: ADD COLUMN of a nullable
// column is instant (unless the table has a FULLTEXT index: then InnoDB rebuilds it in place),
// while one ALTER with ADD INDEX as well would always rebuild it; the index is built in place
// (reads go on). The server picks the algorithm: naming one refuses the rebuild.
inline std::string add_pattern_column_sql(const std::string &table) {
  return "ALTER TABLE `" + table + "` ADD COLUMN pattern_id BIGINT DEFAULT NULL";
}
// The pattern index, replacing the previous release's in the same statement (drop_old): the old
// one serves the queries until the new one is built.
inline std::string add_pattern_index_sql(const std::string &table, bool drop_old) {
  return "ALTER TABLE `" + table + "` ADD INDEX " + kPatternIndex + " " + kPatternIndexColumns +
         (drop_old ? std::string(", DROP INDEX ") + kOldPatternIndex : std::string());
}

// Runs a query and returns all rows as strings (NULL as "\\N"); false with error set.
inline bool query_rows(MYSQL *m, const std::string &sql,
                       std::vector<std::vector<std::string>> &rows, std::string &error) {
  rows.clear();
  if (mysql_real_query(m, sql.data(), sql.size()) != 0) {
    error = error_text(m);
    return false;
  }
  MYSQL_RES *res = mysql_store_result(m);
  if (!res) {
    if (mysql_field_count(m) == 0) return true;
    error = error_text(m);
    return false;
  }
  const unsigned n = mysql_num_fields(res);
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    unsigned long *len = mysql_fetch_lengths(res);
    std::vector<std::string> r;
    for (unsigned i = 0; i < n; ++i) r.emplace_back(row[i] ? std::string(row[i], len[i]) : "\\N");
    rows.push_back(std::move(r));
  }
  mysql_free_result(res);
  return true;
}

// A text column smaller than kLongColumnBytes (the previous release's message TEXT).
struct ShortColumn {
  std::string name, column_type, charset, collation;
  uint64_t max_bytes = 0;
  bool nullable = false;
};

struct TableCheck {
  bool exists = false;
  std::vector<std::string> problems;  // empty: compatible
  std::vector<std::string> warnings;
  bool has_full_text = false;
  // pattern_id is optional: a table of the previous release lacks it (and its index); the
  // release before this one has it with the index on (pattern_id, timestamp) only.
  bool has_pattern_id = false, has_pattern_index = false, has_old_pattern_index = false;
  std::vector<ShortColumn> short_columns;  // message or meta_json that cannot hold the limits
};

// "65,535 bytes" for messages.
inline std::string bytes_text(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return s + " bytes";
}

// The ALTER that widens short columns to MEDIUMTEXT, keeping their character set, collation
// and nullability (an index on them, FULLTEXT included, is kept by MODIFY).
inline std::string widen_columns_sql(const std::string &table,
                                     const std::vector<ShortColumn> &cols) {
  std::string sql = "ALTER TABLE `" + table + "`";
  for (size_t i = 0; i < cols.size(); ++i) {
    const ShortColumn &c = cols[i];
    sql += std::string(i ? "," : "") + " MODIFY `" + c.name + "` MEDIUMTEXT";
    if (!c.charset.empty()) sql += " CHARACTER SET " + c.charset;
    if (!c.collation.empty()) sql += " COLLATE " + c.collation;
    sql += c.nullable ? " NULL" : " NOT NULL";
  }
  return sql;
}

// Compares an existing table with what devmesh writes: every column present with a type that
// holds our values, no other column that a row without it would fail, and a UNIQUE key on
// event_id alone (without it re-delivery would duplicate rows).
inline bool check_table(MYSQL *m, const std::string &database, const std::string &table,
                        TableCheck &out, std::string &error) {
  out = TableCheck{};
  std::vector<std::vector<std::string>> cols, idx;
  // The names are validated identifiers, so quoting them as literals is safe.
  if (!query_rows(m,
                  "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, "
                  "IFNULL(CHARACTER_SET_NAME,''), IFNULL(CHARACTER_MAXIMUM_LENGTH,0), "
                  "IFNULL(CHARACTER_OCTET_LENGTH,0), IFNULL(COLLATION_NAME,'') "
                  "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='" +
                      database + "' AND TABLE_NAME='" + table + "'",
                  cols, error))
    return false;
  if (cols.empty()) return true;
  out.exists = true;
  if (!query_rows(m,
                  "SELECT INDEX_NAME, NON_UNIQUE, INDEX_TYPE, GROUP_CONCAT(COLUMN_NAME ORDER BY "
                  "SEQ_IN_INDEX) FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='" +
                      database + "' AND TABLE_NAME='" + table +
                      "' GROUP BY INDEX_NAME, NON_UNIQUE, INDEX_TYPE",
                  idx, error))
    return false;

  struct Want {
    const char *name;
    std::vector<std::string> types;  // acceptable DATA_TYPE values
    size_t min_chars;                // for text types: at least this many characters
    size_t ingest_chars = 0;         // the inputs' limit: a narrower column refuses what they take
  };
  const std::vector<std::string> text = {"varchar", "char",       "tinytext",
                                         "text",    "mediumtext", "longtext"};
  const std::vector<Want> want = {
      {"id", {"bigint", "int"}, 0},
      {"timestamp", {"datetime", "timestamp"}, 0},
      {"source", text, 1, 255},
      {"service", text, 1, 255},
      {"host", text, 1, 255},
      {"level", {"enum", "varchar", "char"}, 8},
      {"trace_id", text, 1, 64},
      {"span_id", text, 1, 32},
      {"event_type", text, 1, 100},
      {"error_code", text, 1, 50},
      {"message", {"text", "mediumtext", "longtext"}, 1},
      {"meta_json", {"longtext", "json", "text", "mediumtext"}, 1},
      {"event_id", {"binary", "varbinary"}, 16},
      {"pattern_id", {"bigint"}, 0},
  };
  std::map<std::string, const std::vector<std::string> *> by_name;
  for (auto &c : cols) by_name[c[0]] = &c;
  for (const auto &w : want) {
    auto it = by_name.find(w.name);
    if (it == by_name.end()) {
      if (std::string(w.name) == "pattern_id") continue;  // optional, see has_pattern_id
      if (std::string(w.name) == "event_id")
        out.problems.push_back(
            "no column event_id (a prototype table?): add it with ALTER TABLE `" + table +
            "` ADD COLUMN event_id BINARY(16) DEFAULT NULL, ADD UNIQUE KEY uk_event_id (event_id)");
      else
        out.problems.push_back(std::string("no column ") + w.name);
      continue;
    }
    const auto &c = *it->second;
    bool type_ok = false;
    for (auto &t : w.types) type_ok |= c[1] == t;
    if (!type_ok) {
      out.problems.push_back(std::string("column ") + w.name + " is " + c[2] + ", expected " +
                             w.types.front());
      continue;
    }
    if (w.name == std::string("pattern_id") && c[2].find("unsigned") != std::string::npos)
      out.problems.push_back("column pattern_id is " + c[2] +
                             ": devmesh stores pattern ids signed (BIGINT)");
    if (w.name == std::string("level") && c[1] == "enum") {
      for (int l = DM_LEVEL_DEBUG; l <= DM_LEVEL_FATAL; ++l)
        if (c[2].find(std::string("'") + dm_level_name(l) + "'") == std::string::npos)
          out.problems.push_back(std::string("column level ") + c[2] + " lacks '" +
                                 dm_level_name(l) + "'");
    }
    const size_t max_chars = std::strtoull(c[7].c_str(), nullptr, 10);
    if (w.min_chars && max_chars && max_chars < w.min_chars)
      out.problems.push_back(std::string("column ") + w.name + " is " + c[2] + ", too short");
    else if (w.ingest_chars && max_chars && max_chars < w.ingest_chars)
      out.warnings.push_back(
          std::string("column ") + w.name + " is " + c[2] + ": values longer than " +
          std::to_string(max_chars) + " characters, which the inputs accept up to " +
          std::to_string(w.ingest_chars) + ", are refused by the table and dead-lettered");
    if (c[1] == "timestamp")
      out.warnings.push_back(std::string("column ") + w.name + " is " + c[2] +
                             ": it holds 1970 to 2038 only, records stamped outside are refused "
                             "by the table and dead-lettered (DATETIME(6) holds all)");
    if (!c[6].empty() && c[6] != "utf8mb4" && c[6] != "binary")
      out.warnings.push_back(std::string("column ") + w.name + " has character set " + c[6] +
                             ": rows with characters it cannot hold are dead-lettered (utf8mb4 "
                             "holds all)");
    const uint64_t max_bytes = std::strtoull(c[8].c_str(), nullptr, 10);
    if ((w.name == std::string("message") || w.name == std::string("meta_json")) && max_bytes &&
        max_bytes < kLongColumnBytes)
      out.short_columns.push_back({c[0], c[2], c[6], c[9], max_bytes, c[3] == "YES"});
  }
  for (auto &c : cols) {
    bool ours = false;
    for (const auto &w : want) ours |= c[0] == w.name;
    if (!ours && c[3] == "NO" && c[4] == "\\N" && c[5].find("auto_increment") == std::string::npos)
      out.problems.push_back("column " + c[0] +
                             " is NOT NULL without a default, and devmesh does not write it");
  }
  bool unique_event_id = false;
  for (auto &i : idx) {
    if (i[1] == "0" && i[3] == "event_id") unique_event_id = true;
    if (i[2] == "FULLTEXT" && i[3] == "message") out.has_full_text = true;
    if (i[3] == "pattern_id,timestamp,id,level") out.has_pattern_index = true;
    if (i[0] == kOldPatternIndex && i[3] == "pattern_id,timestamp")
      out.has_old_pattern_index = true;
  }
  out.has_pattern_id = by_name.count("pattern_id") > 0;
  if (by_name.count("event_id") && !unique_event_id)
    out.problems.push_back(
        "no UNIQUE key on event_id alone (re-delivered batches would "
        "duplicate rows): add it with ALTER TABLE `" +
        table + "` ADD UNIQUE KEY uk_event_id (event_id)");
  return true;
}

// Compares an existing patterns table with what devmesh writes (its columns, with types that
// hold our values); `exists` false when there is none.
inline bool check_patterns_table(MYSQL *m, const std::string &database, const std::string &table,
                                 bool &exists, std::vector<std::string> &problems,
                                 std::string &error) {
  problems.clear();
  std::vector<std::vector<std::string>> cols;
  if (!query_rows(m,
                  "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE FROM information_schema.COLUMNS "
                  "WHERE TABLE_SCHEMA='" +
                      database + "' AND TABLE_NAME='" + patterns_table(table) + "'",
                  cols, error))
    return false;
  exists = !cols.empty();
  if (!exists) return true;
  const std::pair<const char *, std::vector<std::string>> want[] = {
      {"id", {"bigint"}},
      {"service", {"varchar", "char", "text", "mediumtext", "longtext"}},
      {"template", {"text", "mediumtext", "longtext"}},
      {"first_seen", {"datetime"}},
      {"last_seen", {"datetime"}},
      {"count", {"bigint"}}};
  for (const auto &[name, types] : want) {
    const std::vector<std::string> *found = nullptr;
    for (const auto &c : cols)
      if (c[0] == name) found = &c;
    if (!found) {
      problems.push_back("table " + patterns_table(table) + " has no column " + name);
      continue;
    }
    if (std::find(types.begin(), types.end(), (*found)[1]) == types.end() ||
        (*found)[2].find("unsigned") != std::string::npos)
      problems.push_back("column " + patterns_table(table) + "." + name + " is " + (*found)[2] +
                         ", expected " + types.front());
  }
  return true;
}

}  // namespace devmesh::mariadb
