// priority_map filter: turns a record's syslog PRIORITY (0..7) into its level, optionally
// reads the level written inside the message, and gives records with neither a default level.
#include <devmesh/plugin.hpp>

#include <charconv>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "level_scan.hpp"

namespace devmesh {
namespace {

const char *const kLevelNames[] = {"DEBUG", "INFO",     "WARN",  "WARNING",
                                   "ERROR", "CRITICAL", "FATAL", nullptr};

// The options, bound: config_bind fills a PriorityMapConfig with the values and defaults.
struct PriorityMapConfig {
  dm_strings levels{};
  int detect_in_message = 0;
  int detect_overrides_level = 0;
  const char *default_level = nullptr;
};

using C = PriorityMapConfig;
const dm_option kOptions[] = {
    Option<DM_OPT_MAP>(
        "levels", &C::levels,
        "per-priority overrides of the defaults (0 FATAL, 1-2 CRITICAL, 3 ERROR, 4 WARN, 5-6 INFO, "
        "7 DEBUG), e.g. {\"6\": DEBUG}"),
    Option<DM_OPT_BOOL>(
        "detect_in_message", &C::detect_in_message,
        "recognise a level written in the message (level=error, lvl=warn, \"level\":\"warn\", "
        "[ERROR], ERROR:; case-insensitive, whole words); it wins over the priority")
        .value("false"),
    Option<DM_OPT_BOOL>(
        "detect_overrides_level", &C::detect_overrides_level,
        "a level found in the message also replaces the level of a record that has one but no "
        "priority (e.g. from http); by default such records keep their level")
        .value("false"),
    Option<DM_OPT_STRING>("default_level", &C::default_level,
                          "level of records with no priority, no level and none found in the "
                          "message")
        .value("INFO")
        .allowed(kLevelNames),
};

class PriorityMap {
 public:
  PriorityMap(const dm_host_api *host, dm_instance *inst, const dm_config *cfg)
      : host_(host), inst_(inst) {
    const PriorityMapConfig c = bound_config<PriorityMapConfig>(host, cfg);
    ConfigProblems problems(host, inst);
    for (uint32_t i = 0; i < c.levels.count; ++i) {
      const std::string key(sv_key(c.levels, i)), value(sv_item(c.levels, i));
      int prio = -1;
      auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), prio);
      const uint8_t level = LevelScanner::parse_name(value);
      if (ec != std::errc() || end != key.data() + key.size() || prio < 0 || prio > 7)
        problems.add("levels." + key, "'" + key + "' is not a syslog priority (0..7)");
      else if (level == DM_LEVEL_UNSET)
        problems.add("levels." + key, "unknown level '" + value +
                                          "' (one of DEBUG, INFO, WARN, WARNING, ERROR, CRITICAL, "
                                          "FATAL)");
      else
        map_[prio] = level;
    }
    detect_ = c.detect_in_message;
    detect_overrides_ = c.detect_overrides_level;
    default_level_ = LevelScanner::parse_name(c.default_level);
    if (default_level_ == DM_LEVEL_UNSET)
      problems.add("default_level", "unknown level '" + std::string(c.default_level) + "'");
    problems.refuse_if_any();
    m_from_priority_ =
        counter("priority_map_from_priority_total", "records whose level came from their priority");
    m_from_message_ = counter("priority_map_from_message_total",
                              "records whose level was found in their message");
    m_defaulted_ = counter("priority_map_defaulted_total",
                           "records given default_level (no priority, level or detected level)");
    m_bad_priority_ = counter("priority_map_bad_priority_total",
                              "records with a priority outside 0..7, treated as having none");
  }

  int filter(dm_batch *batch, uint8_t *verdicts) {
    // Counted per batch, not per record: metric_add may be atomic.
    uint64_t from_priority = 0, from_message = 0, defaulted = 0, bad = 0;
    for (uint32_t i = 0; i < batch->count; ++i) {
      dm_record &r = batch->records[i];
      uint8_t level = r.level;
      const bool has_priority = r.priority >= 0 && r.priority <= 7;
      if (!has_priority && r.priority != -1) ++bad;
      if (has_priority) {
        level = map_[r.priority];
        ++from_priority;
      }
      // A record with a level and no priority (http) keeps it unless the option says otherwise.
      const bool may_detect =
          detect_ && (has_priority || r.level == DM_LEVEL_UNSET || detect_overrides_);
      if (may_detect) {
        const uint8_t found = LevelScanner::find(sv(r.message));
        if (found != DM_LEVEL_UNSET) {
          level = found;
          ++from_message;
        }
      }
      if (level == DM_LEVEL_UNSET) {
        level = default_level_;
        ++defaulted;
      }
      if (level != r.level) {
        r.level = level;
        verdicts[i] = DM_MODIFIED;
      }
    }
    add(m_from_priority_, from_priority);
    add(m_from_message_, from_message);
    add(m_defaulted_, defaulted);
    add(m_bad_priority_, bad);
    return 0;
  }

 private:
  dm_metric *counter(const char *name, const char *help) {
    return host_->metric_counter(inst_, name, help, nullptr);
  }
  void add(dm_metric *m, uint64_t v) {
    if (m && v) host_->metric_add(m, static_cast<double>(v));
  }

  const dm_host_api *host_;
  dm_instance *inst_;
  // The prototype's table (seed: priority_map).
  uint8_t map_[8] = {DM_LEVEL_FATAL, DM_LEVEL_CRITICAL, DM_LEVEL_CRITICAL, DM_LEVEL_ERROR,
                     DM_LEVEL_WARN,  DM_LEVEL_INFO,     DM_LEVEL_INFO,     DM_LEVEL_DEBUG};
  bool detect_ = false, detect_overrides_ = false;
  uint8_t default_level_ = DM_LEVEL_INFO;
  dm_metric *m_from_priority_, *m_from_message_, *m_defaulted_, *m_bad_priority_;
};

}  // namespace
}  // namespace devmesh

DEVMESH_PLUGIN(devmesh::PluginAdapter<devmesh::PriorityMap>::describe(
    DM_FILTER, "priority_map", "0.1.0",
    "sets a record's level from its syslog priority, the level written in its message, or a "
    "default",
    devmesh::kOptions, static_cast<uint32_t>(std::size(devmesh::kOptions))))
