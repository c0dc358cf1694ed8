// Unit tests of what a plugin gets from its dm_config besides the values: host->config_bind
// writing a bound struct (every option type, defaults, absent options), plugin.hpp's Option<T>
// and bind() offsets, and the place of a problem reported through config_error.
#include <gtest/gtest.h>
#include <devmesh/plugin.hpp>

#include <string>
#include <vector>

#include "config.h"
#include "engine.h"

namespace devmesh {
namespace {

struct Bound {
  const char *label = "unset";
  int64_t count = -1;
  double ratio = -1;
  int enabled = -1;
  int64_t timeout_ms = -1;
  int64_t buffer = -1;
  dm_strings services{};
  dm_strings headers{};
  const char *absent = "kept";  // no value, no default: left alone
  int64_t not_bound = 42;       // declared without DM_OPT_BIND
  int64_t c_style = -1;         // bound the C way: offsetof and DM_OPT_BIND by hand
};

const char *const kNames[] = {"a", "b", "c", nullptr};

const dm_option kOptions[] = {
    Option<DM_OPT_STRING>("label", &Bound::label, "a string").allowed(kNames),
    Option<DM_OPT_INT>("count", &Bound::count, "an integer").value("7").bounded(0, 100),
    Option<DM_OPT_DOUBLE>("ratio", &Bound::ratio, "a number").value("0.25"),
    Option<DM_OPT_BOOL>("enabled", &Bound::enabled, "a bool").value("false"),
    Option<DM_OPT_DURATION>("timeout", &Bound::timeout_ms, "a duration").value("5s"),
    Option<DM_OPT_SIZE>("buffer", &Bound::buffer, "a size").value("64KiB"),
    Option<DM_OPT_LIST>("services", &Bound::services, "a list").value("[x, y]"),
    Option<DM_OPT_MAP>("headers", &Bound::headers, "a map"),
    Option<DM_OPT_STRING>("absent", &Bound::absent, "never set"),
    {"not_bound", DM_OPT_INT, 0, "1", 0, 0, nullptr, "read by hand", offsetof(Bound, not_bound)},
    {"c_style", DM_OPT_SIZE, DM_OPT_BIND, "2KiB", 0, 0, nullptr, "as a C plugin declares it",
     offsetof(Bound, c_style)},
};

// The engine's own options come after the plugin's, as Engine::load passes them.
const dm_option kMatch = {"match", DM_OPT_STRING, 0, "*", 0, 0, nullptr, "tags", 0};

struct Built {
  PipelineConfig cfg;
  Problems problems;
  std::unique_ptr<dm_config> config;
};

std::unique_ptr<Built> build(const std::string &entry) {
  auto b = std::make_unique<Built>();
  EXPECT_TRUE(load_pipeline_text("pipeline:\n  filters:\n    - name: f\n" + entry, "/p.yaml",
                                 b->cfg, b->problems))
      << b->problems.str();
  std::vector<const dm_option *> schema;
  for (const dm_option &o : kOptions) schema.push_back(&o);
  schema.push_back(&kMatch);
  b->config = validate_entry(b->cfg, b->cfg.filters.at(0), schema, b->problems);
  EXPECT_TRUE(b->config) << b->problems.str();
  return b;
}

std::string item(const dm_strings &s, uint32_t i) {
  return std::string(sv(s.items[i]));
}

TEST(ConfigBind, OptionsBuiltFromMembersCarryTheirOffsetsAndBindFlag) {
  EXPECT_EQ(kOptions[0].offset, offsetof(Bound, label));
  EXPECT_EQ(kOptions[6].offset, offsetof(Bound, services));
  EXPECT_EQ(kOptions[7].offset, offsetof(Bound, headers));
  EXPECT_EQ(bind(&Bound::buffer), offsetof(Bound, buffer));
  EXPECT_TRUE(kOptions[1].flags & DM_OPT_BIND);
  EXPECT_TRUE(kOptions[1].flags & DM_OPT_BOUNDED);
  EXPECT_EQ(kOptions[1].min, 0);
  EXPECT_EQ(kOptions[1].max, 100);
  EXPECT_STREQ(kOptions[1].default_value, "7");
  EXPECT_EQ(kOptions[0].allowed, kNames);
  EXPECT_EQ(kOptions[0].type, DM_OPT_STRING);
  EXPECT_EQ(kOptions[7].type, DM_OPT_MAP);
}

TEST(ConfigBind, EveryTypeIsWrittenFromTheFile) {
  auto b = build(
      "      label: b\n      count: 12\n      ratio: 1.5\n      enabled: yes\n"
      "      timeout: 2m\n      buffer: 1MiB\n      services: [api, db, '']\n"
      "      headers: {X-A: one, X-B: two}\n");
  Bound v;
  ASSERT_EQ(Engine::host_api()->config_bind(b->config.get(), &v), DM_OK);
  EXPECT_STREQ(v.label, "b");
  EXPECT_EQ(v.count, 12);
  EXPECT_EQ(v.ratio, 1.5);
  EXPECT_EQ(v.enabled, 1);
  EXPECT_EQ(v.timeout_ms, 120000);
  EXPECT_EQ(v.buffer, 1 << 20);
  ASSERT_EQ(v.services.count, 3u);
  EXPECT_EQ(item(v.services, 0), "api");
  EXPECT_EQ(item(v.services, 1), "db");
  EXPECT_EQ(item(v.services, 2), "");
  EXPECT_EQ(v.services.keys, nullptr);
  ASSERT_EQ(v.headers.count, 2u);
  ASSERT_NE(v.headers.keys, nullptr);
  EXPECT_EQ(std::string(sv(v.headers.keys[0])), "X-A");
  EXPECT_EQ(item(v.headers, 0), "one");
  EXPECT_EQ(std::string(sv(v.headers.keys[1])), "X-B");
  EXPECT_EQ(item(v.headers, 1), "two");
  // Strings are NUL-terminated for C plugins.
  EXPECT_EQ(v.services.items[1].ptr[v.services.items[1].len], '\0');
  EXPECT_STREQ(v.absent, "kept");
  EXPECT_EQ(v.not_bound, 42);
  EXPECT_EQ(v.c_style, 2048);
}

TEST(ConfigBind, DefaultsAreWrittenAndAbsentOptionsLeaveTheirField) {
  auto b = build("      enabled: true\n");
  Bound v;
  ASSERT_EQ(Engine::host_api()->config_bind(b->config.get(), &v), DM_OK);
  EXPECT_STREQ(v.label, "unset") << "no value and no default: the field keeps its own";
  EXPECT_EQ(v.count, 7);
  EXPECT_EQ(v.ratio, 0.25);
  EXPECT_EQ(v.enabled, 1);
  EXPECT_EQ(v.timeout_ms, 5000);
  EXPECT_EQ(v.buffer, 64 << 10);
  ASSERT_EQ(v.services.count, 2u);
  EXPECT_EQ(item(v.services, 0), "x");
  EXPECT_EQ(item(v.services, 1), "y");
  EXPECT_EQ(v.headers.count, 0u) << "a MAP without value or default is left alone";
  EXPECT_EQ(v.headers.items, nullptr);
  EXPECT_STREQ(v.absent, "kept");
  EXPECT_EQ(v.not_bound, 42);
}

TEST(ConfigBind, AnEmptyListIsWrittenAsNoItems) {
  auto b = build("      services: []\n      headers: {}\n");
  Bound v;
  v.services.count = 99;
  ASSERT_EQ(Engine::host_api()->config_bind(b->config.get(), &v), DM_OK);
  EXPECT_EQ(v.services.count, 0u);
  EXPECT_EQ(v.headers.count, 0u);
}

TEST(ConfigBind, TheCppHelperStartsFromTheStructsOwnValues) {
  auto b = build("      count: 3\n");
  const Bound v = bound_config<Bound>(Engine::host_api(), b->config.get());
  EXPECT_EQ(v.count, 3);
  EXPECT_STREQ(v.absent, "kept");
  EXPECT_STREQ(v.label, "unset");
}

TEST(ConfigBind, WithoutConfigOrDestinationItIsInvalid) {
  auto b = build("");
  Bound v;
  EXPECT_EQ(Engine::host_api()->config_bind(nullptr, &v), DM_ERR_INVALID);
  EXPECT_EQ(Engine::host_api()->config_bind(b->config.get(), nullptr), DM_ERR_INVALID);
}

// ---- where a plugin's problem is placed ----------------------------------------------------

TEST(PluginProblem, AnOptionIsPlacedAtItsValue) {
  auto b = build("      count: 12\n");
  Problem p = plugin_problem(*b->config, "count", "too many");
  EXPECT_EQ(p.str(), "/p.yaml:4:14: pipeline.filters[0].count: too many");
}

TEST(PluginProblem, ADottedPathFollowsListsByIndexAndMapsByKey) {
  auto b = build("      services:\n        - api\n        - db\n      headers: {'9': x}\n");
  EXPECT_EQ(plugin_problem(*b->config, "services.1", "bad").str(),
            "/p.yaml:6:11: pipeline.filters[0].services[1]: bad");
  EXPECT_EQ(plugin_problem(*b->config, "headers.9", "bad").str(),
            "/p.yaml:7:22: pipeline.filters[0].headers.9: bad");
}

TEST(PluginProblem, APathBeyondTheFileIsPlacedAtItsDeepestPartPresent) {
  auto b = build("      services: [api]\n");
  EXPECT_EQ(plugin_problem(*b->config, "services.4.name", "bad").str(),
            "/p.yaml:4:17: pipeline.filters[0].services[4].name: bad");
  // A default (not in the file): the entry.
  EXPECT_EQ(plugin_problem(*b->config, "timeout", "bad").str(),
            "/p.yaml:3:7: pipeline.filters[0].timeout: bad");
  EXPECT_EQ(plugin_problem(*b->config, nullptr, "bad").str(),
            "/p.yaml:3:7: pipeline.filters[0]: bad");
}

TEST(PluginProblem, AScalarStandsForAOneItemList) {
  auto b = build("      services: api\n");
  EXPECT_EQ(plugin_problem(*b->config, "services.0", "bad").str(),
            "/p.yaml:4:17: pipeline.filters[0].services[0]: bad");
}

TEST(PluginProblem, PlacingAProblemLeavesTheConfigUnchanged) {
  auto b = build("      services: [api, db]\n      count: 5\n");
  plugin_problem(*b->config, "services.1", "bad");
  plugin_problem(*b->config, "count", "bad");
  Bound v;
  ASSERT_EQ(Engine::host_api()->config_bind(b->config.get(), &v), DM_OK);
  EXPECT_EQ(v.count, 5);
  ASSERT_EQ(v.services.count, 2u);
  EXPECT_EQ(item(v.services, 0), "api");
  // And the entry's node itself: a second placing gives the same answer.
  EXPECT_EQ(plugin_problem(*b->config, "count", "bad").str(),
            "/p.yaml:5:14: pipeline.filters[0].count: bad");
}

}  // namespace
}  // namespace devmesh
