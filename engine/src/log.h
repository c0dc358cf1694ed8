// Engine logging: one line per event on stderr with time, level and the instance it concerns.
#pragma once

#include <devmesh/plugin.h>

#include <cstdarg>
#include <string>

namespace devmesh {

void set_log_level(dm_log_level level);
bool parse_log_level(const std::string &text, dm_log_level &out);
bool log_enabled(dm_log_level level);
void log_msg(dm_log_level level, const char *who, const char *fmt, ...) DM_PRINTF(3, 4);
void log_vmsg(dm_log_level level, const char *who, const char *fmt, va_list ap);

}  // namespace devmesh
