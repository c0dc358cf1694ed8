// Engine logging: formats one line and writes it with a single write() so threads never
// interleave within a line.
#include "log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

namespace devmesh {

static std::atomic<int> g_level{DM_LOG_INFO};

void set_log_level(dm_log_level level) {
  g_level.store(level);
}

bool parse_log_level(const std::string &text, dm_log_level &out) {
  if (text == "error")
    out = DM_LOG_ERROR;
  else if (text == "warn" || text == "warning")
    out = DM_LOG_WARN;
  else if (text == "info")
    out = DM_LOG_INFO;
  else if (text == "debug")
    out = DM_LOG_DEBUG;
  else
    return false;
  return true;
}

bool log_enabled(dm_log_level level) {
  return level <= g_level.load(std::memory_order_relaxed);
}

void log_vmsg(dm_log_level level, const char *who, const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  static const char *const names[] = {"error", "warn", "info", "debug"};
  char line[2048];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s [%s] ",
                   t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                   ts.tv_nsec / 1000000, names[level], who ? who : "engine");
  if (n < 0) return;
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  size_t len = n + (m < 0 ? 0 : (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2);
  line[len++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, len);
  (void)w;
}

void log_msg(dm_log_level level, const char *who, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vmsg(level, who, fmt, ap);
  va_end(ap);
}

}  // namespace devmesh
