// Unit tests of the pipeline config: file shape, env expansion, value parsing, schema checks.
#include "config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace devmesh {
namespace {

// A plugin schema like a real output's, plus the engine's `match`.
const char *const kFormats[] = {"json", "logfmt", "text", nullptr};
const char *const kLevels[] = {"debug", "info", "warn", nullptr};
const dm_option kOutputOptions[] = {
    {"url", DM_OPT_STRING, DM_OPT_REQUIRED, nullptr, 0, 0, nullptr, "where to send", 0},
    {"batch_size", DM_OPT_INT, DM_OPT_BOUNDED, "500", 1, 100000, nullptr, "records per request", 0},
    {"ratio", DM_OPT_DOUBLE, DM_OPT_BOUNDED, "0.5", 0, 1, nullptr, "sampling", 0},
    {"compress", DM_OPT_BOOL, 0, "false", 0, 0, nullptr, "gzip bodies", 0},
    {"timeout", DM_OPT_DURATION, DM_OPT_BOUNDED, "5s", 1, 3600000, nullptr, "per request", 0},
    {"buffer", DM_OPT_SIZE, DM_OPT_BOUNDED, "64KiB", 1024, 64 << 20, nullptr, "body limit", 0},
    {"format", DM_OPT_STRING, 0, "json", 0, 0, kFormats, "body format", 0},
    {"services", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr, "units to keep", 0},
    {"levels", DM_OPT_LIST, 0, "[info, warn]", 0, 0, kLevels, "levels to keep", 0},
    {"headers", DM_OPT_MAP, 0, "{X-Source: devmesh}", 0, 0, nullptr, "extra headers", 0},
    {"auth_token", DM_OPT_STRING, DM_OPT_SECRET, nullptr, 0, 0, nullptr, "bearer token", 0},
};
const dm_option kEngineOptions[] = {
    {"match", DM_OPT_STRING, 0, "*", 0, 0, nullptr, "tags routed here", 0},
};

std::vector<const dm_option *> output_schema() {
  std::vector<const dm_option *> r;
  for (const auto &o : kOutputOptions) r.push_back(&o);
  for (const auto &o : kEngineOptions) r.push_back(&o);
  return r;
}

// Loads `yaml` named "test.yaml"; the problems are kept for inspection.
struct Loaded {
  PipelineConfig cfg;
  Problems problems;
  bool ok = false;
};

Loaded load(const std::string &yaml, const std::string &file = "/etc/devmesh/test.yaml") {
  Loaded l;
  l.ok = load_pipeline_text(yaml, file, l.cfg, l.problems);
  return l;
}

// Loads a file with one output entry whose body is `entry` and validates it.
struct Validated {
  Loaded loaded;
  std::unique_ptr<dm_config> config;
  const OptionValue &value(const std::string &key) const { return config->values.at(key); }
};

Validated validate_output(const std::string &entry) {
  Validated v;
  v.loaded = load("pipeline:\n  outputs:\n    - name: http\n" + entry);
  EXPECT_EQ(v.loaded.cfg.outputs.size(), 1u) << v.loaded.problems.str();
  if (v.loaded.cfg.outputs.empty()) return v;
  v.config =
      validate_entry(v.loaded.cfg, v.loaded.cfg.outputs[0], output_schema(), v.loaded.problems);
  return v;
}

// Sets an environment variable for one test and restores the previous state after it.
class EnvVar {
 public:
  EnvVar(const char *name, const char *value) : name_(name) {
    const char *old = std::getenv(name);
    if (old) old_ = old, had_ = true;
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~EnvVar() {
    if (had_) {
      setenv(name_.c_str(), old_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_, old_;
  bool had_ = false;
};

// ---- problems ------------------------------------------------------------------------------

TEST(Config, ProblemPrintsFileLineColumnPathAndMessage) {
  Problem p{"a.yaml", 3, 7, "pipeline.outputs[1].batch_size", "must be an integer"};
  EXPECT_EQ(p.str(), "a.yaml:3:7: pipeline.outputs[1].batch_size: must be an integer");
}

TEST(Config, ProblemWithoutLineOrPathOmitsThem) {
  Problem no_line{"a.yaml", 0, 0, "service", "bad"};
  EXPECT_EQ(no_line.str(), "a.yaml: service: bad");
  Problem no_path{"a.yaml", 2, 1, "", "invalid YAML: x"};
  EXPECT_EQ(no_path.str(), "a.yaml:2:1: invalid YAML: x");
}

TEST(Config, ProblemsPrintOnePerLineWithOneBasedMarks) {
  Problems ps;
  YAML::Mark m;
  m.line = 4;  // yaml-cpp counts from 0
  m.column = 2;
  ps.add("f.yaml", m, "service.grace", "must be a duration like 200ms, 5s, 1m, 7d");
  ps.add("f.yaml", YAML::Mark::null_mark(), "", "cannot read the file");
  EXPECT_EQ(ps.str(),
            "f.yaml:5:3: service.grace: must be a duration like 200ms, 5s, 1m, 7d\n"
            "f.yaml: cannot read the file\n");
}

// ---- the file's shape ----------------------------------------------------------------------

TEST(Config, SyntaxErrorIsReportedWithItsLineAndColumn) {
  auto l = load("service:\n  flush_interval: 200ms\npipeline:\n  inputs: [a, b\n", "bad.yaml");
  EXPECT_FALSE(l.ok);
  ASSERT_EQ(l.problems.size(), 1u);
  const Problem &p = l.problems.list()[0];
  EXPECT_EQ(p.file, "bad.yaml");
  EXPECT_GE(p.line, 4);
  EXPECT_GT(p.col, 0);
  EXPECT_NE(p.message.find("invalid YAML"), std::string::npos) << p.message;
}

TEST(Config, SyntaxErrorOnAnIllegalMapValueNamesLineOne) {
  auto l = load("a: b: c\n", "bad.yaml");
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].str().rfind("bad.yaml:1:", 0), 0u) << l.problems.str();
}

TEST(Config, MinimalPipelineLoadsWithServiceDefaults) {
  auto l = load("pipeline:\n  inputs:\n    - name: dummy\n  outputs:\n    - name: stdout\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  EXPECT_EQ(l.cfg.file, "/etc/devmesh/test.yaml");
  EXPECT_EQ(l.cfg.dir, "/etc/devmesh");
  EXPECT_EQ(l.cfg.service.flush_interval_ms, 200);
  EXPECT_EQ(l.cfg.service.grace_ms, 5000);
  EXPECT_EQ(l.cfg.service.log_level, "info");
  EXPECT_FALSE(l.cfg.service.exit_when_done);
  EXPECT_TRUE(l.cfg.service.plugins_dir.empty());
  ASSERT_EQ(l.cfg.inputs.size(), 1u);
  ASSERT_EQ(l.cfg.outputs.size(), 1u);
  EXPECT_TRUE(l.cfg.filters.empty());
  EXPECT_EQ(l.cfg.inputs[0].name, "dummy");
  EXPECT_EQ(l.cfg.inputs[0].section, "inputs");
  EXPECT_EQ(l.cfg.outputs[0].where(), "pipeline.outputs[0]");
}

TEST(Config, EntriesKeepSectionIndexNameAliasPathAndNode) {
  auto l = load(
      "pipeline:\n"
      "  filters:\n"
      "    - name: drop\n"
      "    - name: dedup\n"
      "      alias: dedup_main\n"
      "      plugin_path: ../lib/dedup.so\n"
      "      window: 10s\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  ASSERT_EQ(l.cfg.filters.size(), 2u);
  const PluginEntry &e = l.cfg.filters[1];
  EXPECT_EQ(e.section, "filters");
  EXPECT_EQ(e.index, 1);
  EXPECT_EQ(e.name, "dedup");
  EXPECT_EQ(e.alias, "dedup_main");
  EXPECT_EQ(e.path, "/etc/lib/dedup.so");  // resolved against the file's directory
  EXPECT_EQ(e.where(), "pipeline.filters[1]");
  ASSERT_TRUE(e.node.IsMap());
  EXPECT_EQ(e.node["window"].as<std::string>(), "10s");
  EXPECT_EQ(e.node.Mark().line, 3);
}

// DM_OPT_PATH: resolved once, in validation, so config_string, config_bind and the engine's
// checks all see the same absolute path; a relative default resolves the same way.
TEST(Config, PathValuesAndDefaultsResolveAgainstTheConfigFilesDirectory) {
  static const dm_option kPaths[] = {
      {"file", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "a file", 0},
      {"abs", DM_OPT_PATH, 0, nullptr, 0, 0, nullptr, "an absolute path", 0},
      {"db", DM_OPT_PATH, 0, "./data/devmesh.db", 0, 0, nullptr, "a default", 0},
      {"text", DM_OPT_STRING, 0, nullptr, 0, 0, nullptr, "not a path", 0},
  };
  std::vector<const dm_option *> schema;
  for (const auto &o : kPaths) schema.push_back(&o);
  auto l = load(
      "pipeline:\n  outputs:\n    - name: x\n      file: ../certs/./ca.pem\n"
      "      abs: /var/lib//devmesh/q\n      text: rel/path\n",
      "/etc/devmesh/conf.d/test.yaml");
  ASSERT_TRUE(l.ok) << l.problems.str();
  auto cfg = validate_entry(l.cfg, l.cfg.outputs[0], schema, l.problems);
  ASSERT_TRUE(cfg) << l.problems.str();
  EXPECT_EQ(cfg->values.at("file").text, "/etc/devmesh/certs/ca.pem");
  EXPECT_EQ(cfg->values.at("abs").text, "/var/lib/devmesh/q");
  EXPECT_EQ(cfg->values.at("db").text, "/etc/devmesh/conf.d/data/devmesh.db");
  EXPECT_EQ(cfg->values.at("text").text, "rel/path");  // a string stays as written
}

TEST(Config, NameNullWrittenOutIsTheNullOutputButAnEmptyNameHasNoValue) {
  auto l = load(
      "pipeline:\n  outputs:\n    - name: null\n    - {name: ~, alias: b}\n"
      "    - name: NULL\n      alias: c\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  ASSERT_EQ(l.cfg.outputs.size(), 3u);
  for (const PluginEntry &e : l.cfg.outputs) EXPECT_EQ(e.name, "null") << e.where();
  auto empty = load("pipeline:\n  outputs:\n    - name:\n      alias: x\n");
  EXPECT_FALSE(empty.ok);
  EXPECT_NE(empty.problems.str().find("test.yaml:3:7: pipeline.outputs[0].name: has no value"),
            std::string::npos)
      << empty.problems.str();
}

TEST(Config, ServiceKeysAreParsed) {
  auto l = load(
      "service:\n"
      "  flush_interval: 1s\n"
      "  grace: 2m\n"
      "  log_level: debug\n"
      "  http_listen: 127.0.0.1:2020\n"
      "  exit_when_done: yes\n"
      "  storage: { path: /var/lib/devmesh, max_size: 512MiB }\n"
      "pipeline: {}\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  EXPECT_EQ(l.cfg.service.flush_interval_ms, 1000);
  EXPECT_EQ(l.cfg.service.grace_ms, 120000);
  EXPECT_EQ(l.cfg.service.log_level, "debug");
  EXPECT_EQ(l.cfg.service.http_listen, "127.0.0.1:2020");
  EXPECT_TRUE(l.cfg.service.exit_when_done);
  EXPECT_EQ(l.cfg.service.storage_path, "/var/lib/devmesh");
  EXPECT_EQ(l.cfg.service.storage_max_size, 512ll << 20);
}

TEST(Config, BadServiceValuesAreAllReportedWithTheirLocation) {
  auto l = load(
      "service:\n"
      "  flush_interval: soon\n"
      "  grace: [1]\n"
      "  log_level: loud\n"
      "  exit_when_done: maybe\n"
      "  storage:\n"
      "    max_size: lots\n"
      "    pth: /x\n"
      "pipeline: {}\n",
      "s.yaml");
  EXPECT_FALSE(l.ok);
  ASSERT_EQ(l.problems.size(), 7u) << l.problems.str();
  EXPECT_EQ(l.problems.list()[0].str(),
            "s.yaml:2:19: service.flush_interval: must be a duration like 200ms, 5s, 1m, 7d");
  EXPECT_EQ(l.problems.list()[1].str(),
            "s.yaml:3:10: service.grace: must be a duration like 200ms, 5s, 1m, 7d, not a list");
  EXPECT_EQ(l.problems.list()[2].str(),
            "s.yaml:4:14: service.log_level: must be one of: error, warn, info, debug");
  EXPECT_EQ(l.problems.list()[3].str(),
            "s.yaml:5:19: service.exit_when_done: must be true or false");
  EXPECT_EQ(l.problems.list()[4].str(), "s.yaml:6:3: service.storage: missing required key 'path'");
  EXPECT_EQ(l.problems.list()[5].str(),
            "s.yaml:7:15: service.storage.max_size: must be a size like 64KiB, 10MB");
  EXPECT_EQ(l.problems.list()[6].str(),
            "s.yaml:8:5: service.storage.pth: unknown key 'pth' (did you mean 'path'?)");
}

TEST(Config, FlushIntervalOfZeroIsOutOfRange) {
  auto l = load("service:\n  flush_interval: 0s\npipeline: {}\n", "s.yaml");
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].str(),
            "s.yaml:2:19: service.flush_interval: must be between 1ms and 1h");
}

TEST(Config, UnknownServiceKeySuggestsTheClosest) {
  auto l = load("service:\n  flush_intreval: 1s\npipeline: {}\n", "s.yaml");
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].str(),
            "s.yaml:2:3: service.flush_intreval: unknown key 'flush_intreval' (did you mean "
            "'flush_interval'?)");
}

TEST(Config, UnknownTopLevelAndPipelineKeysAreProblems) {
  auto l = load("servce: {}\npipeline:\n  output: []\n  sinks: []\n", "t.yaml");
  ASSERT_EQ(l.problems.size(), 3u) << l.problems.str();
  EXPECT_EQ(l.problems.list()[0].str(),
            "t.yaml:1:1: servce: unknown key 'servce' (did you mean 'service'?)");
  EXPECT_EQ(l.problems.list()[1].str(),
            "t.yaml:3:3: pipeline.output: unknown key 'output' (did you mean 'outputs'?)");
  EXPECT_EQ(l.problems.list()[2].str(), "t.yaml:4:3: pipeline.sinks: unknown key 'sinks'");
}

TEST(Config, MissingPipelineAndEmptyFileAreProblems) {
  EXPECT_FALSE(load("service: {}\n").ok);
  auto empty = load("", "e.yaml");
  EXPECT_FALSE(empty.ok);
  ASSERT_EQ(empty.problems.size(), 1u);
  EXPECT_EQ(empty.problems.list()[0].line, 0);
  auto scalar = load("just text\n");
  EXPECT_FALSE(scalar.ok);
}

TEST(Config, NonMappingEntryMissingNameAndNonListSectionAreProblems) {
  auto l = load(
      "pipeline:\n"
      "  inputs:\n"
      "    - dummy\n"
      "    - tag: x\n"
      "    - name: [a]\n"
      "  filters: drop\n",
      "p.yaml");
  EXPECT_FALSE(l.ok);
  ASSERT_EQ(l.problems.size(), 4u) << l.problems.str();
  EXPECT_EQ(l.problems.list()[0].path, "pipeline.inputs[0]");
  EXPECT_EQ(l.problems.list()[0].line, 3);
  EXPECT_NE(l.problems.list()[0].message.find("must be a mapping"), std::string::npos);
  EXPECT_EQ(l.problems.list()[1].str(),
            "p.yaml:4:7: pipeline.inputs[1]: missing required key 'name'");
  EXPECT_EQ(l.problems.list()[2].str(),
            "p.yaml:5:13: pipeline.inputs[2].name: must be a string, not a list");
  EXPECT_EQ(l.problems.list()[3].path, "pipeline.filters");
  EXPECT_NE(l.problems.list()[3].message.find("must be a list of plugin entries"),
            std::string::npos);
  EXPECT_TRUE(l.cfg.inputs.empty());  // no entry without a usable name reaches the engine
  EXPECT_EQ(load("pipeline: {inputs: [{name: }]}", "n.yaml").problems.str(),
            "n.yaml:1:22: pipeline.inputs[0].name: has no value\n");
}

TEST(Config, EmptySectionsAndEmptyServiceAreAllowed) {
  auto l = load("service:\npipeline:\n  inputs:\n  outputs: []\n");
  EXPECT_TRUE(l.ok) << l.problems.str();
}

TEST(Config, DuplicateKeyIsReportedAndTheFirstIsUsed) {
  auto l = load("service:\n  grace: 1s\n  grace: 2s\npipeline: {}\n", "d.yaml");
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].str(),
            "d.yaml:3:3: service.grace: duplicate key 'grace' (first on line 2; the first one is "
            "used)");
  EXPECT_EQ(l.cfg.service.grace_ms, 1000);
}

TEST(Config, DuplicateAliasNamesTheEntryThatHasIt) {
  auto l = load(
      "pipeline:\n"
      "  inputs:\n"
      "    - name: dummy\n"
      "      alias: main\n"
      "  outputs:\n"
      "    - name: stdout\n"
      "      alias: main\n",
      "a.yaml");
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].str(),
            "a.yaml:7:14: pipeline.outputs[0].alias: alias 'main' is already used by "
            "pipeline.inputs[0]");
}

TEST(Config, PluginKeysAreNotCheckedByLoadPipeline) {
  auto l = load("pipeline:\n  outputs:\n    - name: http\n      anything: [goes, here]\n");
  EXPECT_TRUE(l.ok) << l.problems.str();
}

TEST(Config, PluginsDirResolvesRelativePathsAgainstTheFileDirectory) {
  auto l = load(
      "service:\n"
      "  plugins_dir: [./build/plugins, /usr/lib/devmesh/plugins, ../shared]\n"
      "pipeline: {}\n",
      "/srv/app/conf/devmesh.yaml");
  ASSERT_TRUE(l.ok) << l.problems.str();
  EXPECT_EQ(l.cfg.service.plugins_dir,
            (std::vector<std::string>{"/srv/app/conf/build/plugins", "/usr/lib/devmesh/plugins",
                                      "/srv/app/shared"}));
}

TEST(Config, PluginsDirAcceptsASingleString) {
  auto l = load("service:\n  plugins_dir: plugins\npipeline: {}\n", "/srv/x.yaml");
  ASSERT_TRUE(l.ok) << l.problems.str();
  EXPECT_EQ(l.cfg.service.plugins_dir, std::vector<std::string>{"/srv/plugins"});
}

TEST(Config, LoadPipelineReadsAFileAndResolvesAgainstItsDirectory) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("devmesh_config_test_" + std::to_string(getpid()));
  fs::create_directories(dir / "conf");
  std::string file = (dir / "conf" / "p.yaml").string();
  std::ofstream(file) << "service:\n  plugins_dir: ../plugins\npipeline:\n  inputs:\n"
                         "    - name: dummy\n";
  PipelineConfig cfg;
  Problems problems;
  bool ok = load_pipeline(file, cfg, problems);
  EXPECT_TRUE(ok) << problems.str();
  EXPECT_EQ(cfg.file, file);
  EXPECT_EQ(fs::path(cfg.dir), (dir / "conf").lexically_normal());
  EXPECT_EQ(cfg.service.plugins_dir,
            std::vector<std::string>{(dir / "plugins").lexically_normal().string()});
  fs::remove_all(dir);
}

TEST(Config, MissingFileIsAProblemNamingIt) {
  PipelineConfig cfg;
  Problems problems;
  EXPECT_FALSE(load_pipeline("/nonexistent/devmesh.yaml", cfg, problems));
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_EQ(problems.list()[0].str().rfind("/nonexistent/devmesh.yaml: cannot read the file", 0),
            0u)
      << problems.str();
}

// ---- validate_entry ------------------------------------------------------------------------

TEST(Config, ValidEntryGetsItsValuesAndDefaults) {
  auto v = validate_output(
      "      url: http://agg:8000/ingest\n"
      "      batch_size: 1000\n"
      "      compress: on\n"
      "      timeout: 1.5s\n"
      "      buffer: 1MiB\n"
      "      match: node.*\n");
  ASSERT_TRUE(v.config) << v.loaded.problems.str();
  EXPECT_TRUE(v.loaded.problems.empty());
  EXPECT_EQ(v.value("url").text, "http://agg:8000/ingest");
  EXPECT_EQ(v.value("batch_size").integer, 1000);
  EXPECT_EQ(v.value("batch_size").number, 1000.0);
  EXPECT_EQ(v.value("compress").integer, 1);
  EXPECT_EQ(v.value("timeout").integer, 1500);
  EXPECT_EQ(v.value("buffer").integer, 1 << 20);
  EXPECT_EQ(v.value("match").text, "node.*");
  // name/alias/path are not plugin values
  EXPECT_EQ(v.config->values.count("name"), 0u);
}

TEST(Config, DefaultsAreAppliedForKeysNotSet) {
  auto v = validate_output("      url: http://x\n");
  ASSERT_TRUE(v.config) << v.loaded.problems.str();
  EXPECT_EQ(v.value("batch_size").integer, 500);
  EXPECT_DOUBLE_EQ(v.value("ratio").number, 0.5);
  EXPECT_EQ(v.value("compress").integer, 0);
  EXPECT_EQ(v.value("timeout").integer, 5000);
  EXPECT_EQ(v.value("buffer").integer, 64 * 1024);
  EXPECT_EQ(v.value("format").text, "json");
  EXPECT_EQ(v.value("match").text, "*");
  EXPECT_EQ(v.value("levels").items, (std::vector<std::string>{"info", "warn"}));
  ASSERT_EQ(v.value("headers").entries.size(), 1u);
  EXPECT_EQ(v.value("headers").entries[0],
            std::make_pair(std::string("X-Source"), std::string("devmesh")));
  // no default, not set: absent
  EXPECT_EQ(v.config->values.count("services"), 0u);
  EXPECT_EQ(v.config->values.count("auth_token"), 0u);
}

TEST(Config, UnknownKeyNamesLineAndSuggestsClosest) {
  auto v = validate_output("      url: http://x\n      batchsize: 10\n");
  EXPECT_FALSE(v.config);
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].str(),
            "/etc/devmesh/test.yaml:5:7: pipeline.outputs[0].batchsize: unknown key 'batchsize' "
            "(did you mean 'batch_size'?)");
}

TEST(Config, UnknownKeyFarFromEveryKeyGetsNoSuggestion) {
  auto v = validate_output("      url: http://x\n      zzzzzz: 1\n");
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].message, "unknown key 'zzzzzz'");
}

TEST(Config, UnknownKeySuggestionsCoverSwapsCaseAndTheEngineKeys) {
  auto v = validate_output("      url: http://x\n      mathc: a\n      URL: b\n      nmae: c\n");
  ASSERT_EQ(v.loaded.problems.size(), 3u);
  EXPECT_EQ(v.loaded.problems.list()[0].message, "unknown key 'mathc' (did you mean 'match'?)");
  EXPECT_EQ(v.loaded.problems.list()[1].message, "unknown key 'URL' (did you mean 'url'?)");
  EXPECT_EQ(v.loaded.problems.list()[2].message, "unknown key 'nmae' (did you mean 'name'?)");
}

TEST(Config, WrongTypesAreReportedPerKey) {
  auto v = validate_output(
      "      url: {host: x}\n"
      "      batch_size: ten\n"
      "      ratio: half\n"
      "      compress: 2\n"
      "      timeout: 5 parsecs\n"
      "      buffer: -1KiB\n"
      "      services: {a: b}\n"
      "      headers: [a, b]\n");
  EXPECT_FALSE(v.config);
  std::vector<std::string> got;
  for (const auto &p : v.loaded.problems.list()) got.push_back(p.path + ": " + p.message);
  EXPECT_EQ(got, (std::vector<std::string>{
                     "pipeline.outputs[0].url: must be a string, not a mapping",
                     "pipeline.outputs[0].batch_size: must be an integer",
                     "pipeline.outputs[0].ratio: must be a number",
                     "pipeline.outputs[0].compress: must be true or false",
                     "pipeline.outputs[0].timeout: must be a duration like 200ms, 5s, 1m, 7d",
                     "pipeline.outputs[0].buffer: must be a size like 64KiB, 10MB",
                     "pipeline.outputs[0].services: must be a list of strings",
                     "pipeline.outputs[0].headers: must be a mapping of strings",
                 }));
}

TEST(Config, OutOfRangeValuesPrintTheBoundsInTheirUnits) {
  auto v = validate_output(
      "      url: http://x\n"
      "      batch_size: 0\n"
      "      ratio: 1.5\n"
      "      timeout: 2h\n"
      "      buffer: 100\n");
  EXPECT_FALSE(v.config);
  std::vector<std::string> got;
  for (const auto &p : v.loaded.problems.list()) got.push_back(p.message);
  EXPECT_EQ(got, (std::vector<std::string>{
                     "must be between 1 and 100000",
                     "must be between 0 and 1",
                     "must be between 1ms and 1h",
                     "must be between 1KiB and 64MiB",
                 }));
}

TEST(Config, ValueNotAllowedListsTheAllowedOnes) {
  auto v = validate_output("      url: http://x\n      format: xml\n");
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].str(),
            "/etc/devmesh/test.yaml:5:15: pipeline.outputs[0].format: must be one of: json, "
            "logfmt, text");
}

TEST(Config, MissingRequiredKeyIsReportedAtTheEntry) {
  auto v = validate_output("      batch_size: 10\n");
  EXPECT_FALSE(v.config);
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].str(),
            "/etc/devmesh/test.yaml:3:7: pipeline.outputs[0]: missing required key 'url'");
}

TEST(Config, EveryProblemOfAnEntryIsListedNotJustTheFirst) {
  auto v = validate_output(
      "      batchsize: 10\n"
      "      timeout: forever\n"
      "      format: xml\n"
      "      services: [a, [b]]\n");
  EXPECT_FALSE(v.config);
  EXPECT_EQ(v.loaded.problems.size(), 5u) << v.loaded.problems.str();
  std::string all = v.loaded.problems.str();
  EXPECT_NE(all.find("unknown key 'batchsize'"), std::string::npos);
  EXPECT_NE(all.find("timeout: must be a duration"), std::string::npos);
  EXPECT_NE(all.find("format: must be one of"), std::string::npos);
  EXPECT_NE(all.find("services[1]: must be a string, not a list"), std::string::npos);
  EXPECT_NE(all.find("missing required key 'url'"), std::string::npos);
}

TEST(Config, ListAcceptsAScalarAsAOneItemList) {
  auto v = validate_output("      url: http://x\n      services: user@1000.service\n");
  ASSERT_TRUE(v.config) << v.loaded.problems.str();
  EXPECT_EQ(v.value("services").items, std::vector<std::string>{"user@1000.service"});
}

TEST(Config, ListItemsAreCheckedWithTheirIndexInThePath) {
  auto v = validate_output(
      "      url: http://x\n"
      "      levels: [info, warn, loud]\n");
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].str(),
            "/etc/devmesh/test.yaml:5:28: pipeline.outputs[0].levels[2]: must be one of: debug, "
            "info, warn");
}

TEST(Config, ListItemPathNamesTheFilterIndexAndItemIndex) {
  auto l = load(
      "pipeline:\n"
      "  filters:\n"
      "    - name: drop\n"
      "      services:\n"
      "        - a.service\n"
      "        - b.service\n"
      "        - {c: d}\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  static const dm_option services{"services", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr, "", 0};
  auto cfg = validate_entry(l.cfg, l.cfg.filters[0], {&services}, l.problems);
  EXPECT_FALSE(cfg);
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].path, "pipeline.filters[0].services[2]");
  EXPECT_EQ(l.problems.list()[0].line, 7);
}

TEST(Config, MapKeepsEntriesInFileOrder) {
  auto v = validate_output(
      "      url: http://x\n"
      "      headers:\n"
      "        X-B: two\n"
      "        X-A: one\n");
  ASSERT_TRUE(v.config) << v.loaded.problems.str();
  const auto &e = v.value("headers").entries;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].first, "X-B");
  EXPECT_EQ(e[0].second, "two");
  EXPECT_EQ(e[1].first, "X-A");
}

TEST(Config, MapValueThatIsNotAStringNamesItsKey) {
  auto v = validate_output("      url: http://x\n      headers: {X-A: [1]}\n");
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].path, "pipeline.outputs[0].headers.X-A");
  EXPECT_EQ(v.loaded.problems.list()[0].message, "must be a string, not a list");
}

TEST(Config, KeyWithoutValueIsAProblemAtTheKey) {
  auto v = validate_output("      url:\n");
  ASSERT_EQ(v.loaded.problems.size(), 1u);
  EXPECT_EQ(v.loaded.problems.list()[0].line, 4);
  EXPECT_EQ(v.loaded.problems.list()[0].col, 7);
  EXPECT_NE(v.loaded.problems.list()[0].message.find("has no value"), std::string::npos);
}

TEST(Config, ProblemPathsUseTheIndexWithinTheSection) {
  auto l = load(
      "pipeline:\n"
      "  inputs:\n"
      "    - name: dummy\n"
      "  outputs:\n"
      "    - name: http\n"
      "      url: http://a\n"
      "    - name: http\n"
      "      url: http://b\n"
      "      batch_size: many\n");
  ASSERT_TRUE(l.ok);
  ASSERT_TRUE(validate_entry(l.cfg, l.cfg.outputs[0], output_schema(), l.problems));
  EXPECT_FALSE(validate_entry(l.cfg, l.cfg.outputs[1], output_schema(), l.problems));
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].str(),
            "/etc/devmesh/test.yaml:9:19: pipeline.outputs[1].batch_size: must be an integer");
}

TEST(Config, BadDefaultInASchemaIsReported) {
  auto l = load("pipeline:\n  outputs:\n    - name: x\n");
  static const dm_option bad{"retries", DM_OPT_INT, 0, "lots", 0, 0, nullptr, "", 0};
  EXPECT_FALSE(validate_entry(l.cfg, l.cfg.outputs[0], {&bad}, l.problems));
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].path, "pipeline.outputs[0].retries");
  EXPECT_EQ(l.problems.list()[0].message, "default 'lots' must be an integer");
}

TEST(Config, FirstDeclarationOfAKeyWinsAndNullOptionsAreSkipped) {
  auto l = load("pipeline:\n  outputs:\n    - name: x\n      n: 5\n");
  static const dm_option as_int{"n", DM_OPT_INT, 0, nullptr, 0, 0, nullptr, "", 0};
  static const dm_option as_bool{"n", DM_OPT_BOOL, 0, nullptr, 0, 0, nullptr, "", 0};
  auto cfg = validate_entry(l.cfg, l.cfg.outputs[0], {nullptr, &as_int, &as_bool}, l.problems);
  ASSERT_TRUE(cfg) << l.problems.str();
  EXPECT_EQ(cfg->values.at("n").integer, 5);
}

// ---- environment ---------------------------------------------------------------------------

TEST(Config, ExpandEnvReplacesSetVariables) {
  EnvVar host("DEVMESH_T_HOST", "agg");
  std::string out, error;
  ASSERT_TRUE(expand_env("http://${DEVMESH_T_HOST}:8000/", out, error)) << error;
  EXPECT_EQ(out, "http://agg:8000/");
}

TEST(Config, ExpandEnvUsesTheDefaultWhenUnsetOrEmpty) {
  EnvVar unset("DEVMESH_T_UNSET", nullptr);
  EnvVar empty("DEVMESH_T_EMPTY", "");
  EnvVar set("DEVMESH_T_SET", "v");
  std::string out, error;
  ASSERT_TRUE(
      expand_env("${DEVMESH_T_UNSET:-a}|${DEVMESH_T_EMPTY:-b}|${DEVMESH_T_SET:-c}", out, error));
  EXPECT_EQ(out, "a|b|v");
  // without the colon, as in the shell, an empty value is kept
  ASSERT_TRUE(expand_env("[${DEVMESH_T_EMPTY-x}][${DEVMESH_T_UNSET-y}]", out, error));
  EXPECT_EQ(out, "[][y]");
  ASSERT_TRUE(expand_env("${DEVMESH_T_UNSET:-}", out, error));
  EXPECT_EQ(out, "");
  // a default may itself hold a reference
  ASSERT_TRUE(expand_env("${DEVMESH_T_UNSET:-${DEVMESH_T_SET}}", out, error));
  EXPECT_EQ(out, "v");
}

TEST(Config, ExpandEnvNamesAnUnsetVariable) {
  EnvVar unset("DEVMESH_T_TOKEN", nullptr);
  std::string out, error;
  EXPECT_FALSE(expand_env("Bearer ${DEVMESH_T_TOKEN}", out, error));
  EXPECT_EQ(error, "environment variable DEVMESH_T_TOKEN is not set");
}

TEST(Config, ExpandEnvNamesEveryUnsetVariableOnce) {
  EnvVar a("DEVMESH_T_A", nullptr);
  EnvVar b("DEVMESH_T_B", nullptr);
  std::string out, error;
  EXPECT_FALSE(expand_env("${DEVMESH_T_A}${DEVMESH_T_B}${DEVMESH_T_A}", out, error));
  EXPECT_EQ(error, "environment variables DEVMESH_T_A, DEVMESH_T_B are not set");
}

TEST(Config, ExpandEnvKeepsLiteralDollars) {
  EnvVar x("DEVMESH_T_X", "no");
  std::string out, error;
  ASSERT_TRUE(expand_env("$$ $$${DEVMESH_T_X} $5 a$ $x", out, error)) << error;
  EXPECT_EQ(out, "$ $no $5 a$ $x");
  ASSERT_TRUE(expand_env("$${DEVMESH_T_X}", out, error));
  EXPECT_EQ(out, "${DEVMESH_T_X}");
}

TEST(Config, ExpandEnvRejectsUnterminatedAndMalformedReferences) {
  std::string out, error;
  EXPECT_FALSE(expand_env("${HOME", out, error));
  EXPECT_NE(error.find("unterminated"), std::string::npos) << error;
  EXPECT_FALSE(expand_env("${HOME:-x", out, error));
  EXPECT_NE(error.find("unterminated"), std::string::npos) << error;
  EXPECT_FALSE(expand_env("${}", out, error));
  EXPECT_NE(error.find("invalid reference '${}'"), std::string::npos) << error;
  EXPECT_FALSE(expand_env("${A B}", out, error));
  EXPECT_FALSE(expand_env("${A:=b}", out, error));
  EXPECT_FALSE(expand_env("${1A}", out, error));
}

TEST(Config, EnvIsExpandedInEveryScalarOfTheFile) {
  EnvVar host("DEVMESH_T_AGG", "agg.local");
  EnvVar dir("DEVMESH_T_DIR", "/opt/p");
  auto l = load(
      "service:\n"
      "  plugins_dir: [\"${DEVMESH_T_DIR}\", \"${DEVMESH_T_NOPE:-/usr/lib/p}\"]\n"
      "  flush_interval: ${DEVMESH_T_NOPE:-1s}\n"
      "pipeline:\n"
      "  outputs:\n"
      "    - name: http\n"
      "      url: http://${DEVMESH_T_AGG}:8000/\n"
      "      headers: {X-Host: \"${DEVMESH_T_AGG}\"}\n"
      "      services: [\"${DEVMESH_T_AGG}\"]\n"
      "      auth_token: $$secret\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  EXPECT_EQ(l.cfg.service.plugins_dir, (std::vector<std::string>{"/opt/p", "/usr/lib/p"}));
  EXPECT_EQ(l.cfg.service.flush_interval_ms, 1000);
  auto cfg = validate_entry(l.cfg, l.cfg.outputs[0], output_schema(), l.problems);
  ASSERT_TRUE(cfg) << l.problems.str();
  EXPECT_EQ(cfg->values.at("url").text, "http://agg.local:8000/");
  EXPECT_EQ(cfg->values.at("headers").entries[0].second, "agg.local");
  EXPECT_EQ(cfg->values.at("services").items[0], "agg.local");
  EXPECT_EQ(cfg->values.at("auth_token").text, "$secret");  // expanded once, not twice
}

TEST(Config, UnsetVariableIsReportedOnceAtItsScalar) {
  EnvVar unset("DEVMESH_T_SECRET", nullptr);
  auto l = load(
      "pipeline:\n"
      "  outputs:\n"
      "    - name: http\n"
      "      url: http://x\n"
      "      auth_token: &tok ${DEVMESH_T_SECRET}\n"
      "    - name: http\n"
      "      url: http://y\n"
      "      auth_token: *tok\n",
      "e.yaml");
  EXPECT_FALSE(l.ok);
  ASSERT_EQ(l.problems.size(), 1u) << l.problems.str();
  EXPECT_EQ(l.problems.list()[0].str(),
            "e.yaml:5:19: pipeline.outputs[0].auth_token: environment variable DEVMESH_T_SECRET "
            "is not set");
  // validate_entry refuses the entry but does not report the same variable again
  EXPECT_FALSE(validate_entry(l.cfg, l.cfg.outputs[0], output_schema(), l.problems));
  EXPECT_FALSE(validate_entry(l.cfg, l.cfg.outputs[1], output_schema(), l.problems));
  EXPECT_EQ(l.problems.size(), 1u) << l.problems.str();
}

TEST(Config, UnsetVariableInATypedServiceKeyIsOneProblem) {
  EnvVar unset("DEVMESH_T_FLUSH", nullptr);
  auto l = load("service:\n  flush_interval: ${DEVMESH_T_FLUSH}\npipeline: {}\n", "e.yaml");
  ASSERT_EQ(l.problems.size(), 1u) << l.problems.str();
  EXPECT_EQ(l.problems.list()[0].str(),
            "e.yaml:2:19: service.flush_interval: environment variable DEVMESH_T_FLUSH is not set");
}

TEST(Config, UnsetVariableInAListItemNamesTheItem) {
  EnvVar unset("DEVMESH_T_UNIT", nullptr);
  auto l = load(
      "pipeline:\n  filters:\n    - name: drop\n      services: [a, b, \"${DEVMESH_T_UNIT}\"]\n");
  ASSERT_EQ(l.problems.size(), 1u);
  EXPECT_EQ(l.problems.list()[0].path, "pipeline.filters[0].services[2]");
}

TEST(Config, UnsetVariableInOneListItemDoesNotHideProblemsOfOthers) {
  EnvVar unset("DEVMESH_T_UNIT", nullptr);
  auto l = load(
      "pipeline:\n  filters:\n    - name: drop\n      services: [a, {b: c}, "
      "\"${DEVMESH_T_UNIT}\"]\n");
  static const dm_option services{"services", DM_OPT_LIST, 0, nullptr, 0, 0, nullptr, "", 0};
  EXPECT_FALSE(validate_entry(l.cfg, l.cfg.filters[0], {&services}, l.problems));
  ASSERT_EQ(l.problems.size(), 2u) << l.problems.str();
  EXPECT_EQ(l.problems.list()[0].path, "pipeline.filters[0].services[2]");
  EXPECT_EQ(l.problems.list()[1].path, "pipeline.filters[0].services[1]");
  EXPECT_EQ(l.problems.list()[1].message, "must be a string, not a mapping");
}

TEST(Config, ProblemsOfALoadAreListedInFileOrder) {
  EnvVar unset("DEVMESH_T_LATE", nullptr);
  auto l = load(
      "service:\n"
      "  grace: never\n"
      "  log_level: \"${DEVMESH_T_LATE}\"\n"
      "  grace: 1s\n"
      "pipeline: {inputs: [x]}\n");
  std::vector<int> lines;
  for (const auto &p : l.problems.list()) lines.push_back(p.line);
  EXPECT_EQ(lines, (std::vector<int>{2, 3, 4, 5})) << l.problems.str();
}

// ---- values --------------------------------------------------------------------------------

TEST(Config, DurationsParseToMilliseconds) {
  const std::pair<const char *, int64_t> good[] = {
      {"200ms", 200},    {"5s", 5000},    {"1m", 60000}, {"2h", 7200000},
      {"7d", 604800000}, {"1.5s", 1500},  {"250", 250},  {"0", 0},
      {"0.5m", 30000},   {"10 s", 10000}, {"0.25ms", 0}, {"1.5", 2}};
  for (auto [text, ms] : good) {
    int64_t got = -1;
    EXPECT_TRUE(parse_duration_ms(text, got)) << text;
    EXPECT_EQ(got, ms) << text;
  }
}

TEST(Config, InvalidDurationsAreRejected) {
  const char *bad[] = {"",
                       "s",
                       "-5s",
                       "5x",
                       "5 sec",
                       "1.s5",
                       "abc",
                       "5S",
                       "1e3",
                       "5s ",
                       " 5s",
                       "5ms5",
                       ".",
                       "99999999999999999999",
                       "106751991167301d"};
  for (const char *text : bad) {
    int64_t got = 0;
    EXPECT_FALSE(parse_duration_ms(text, got)) << text;
  }
}

TEST(Config, SizesParseToBytes) {
  const std::pair<const char *, int64_t> good[] = {{"4096", 4096},
                                                   {"64KiB", 65536},
                                                   {"10MB", 10000000},
                                                   {"1GiB", 1ll << 30},
                                                   {"512k", 512 * 1024},
                                                   {"512K", 512 * 1024},
                                                   {"2KB", 2000},
                                                   {"1M", 1 << 20},
                                                   {"3mib", 3 << 20},
                                                   {"1.5K", 1536},
                                                   {"1TiB", 1ll << 40},
                                                   {"2TB", 2000000000000},
                                                   {"0", 0},
                                                   {"100B", 100},
                                                   {"8 MiB", 8 << 20},
                                                   {"9223372036854775807", INT64_MAX}};
  for (auto [text, bytes] : good) {
    int64_t got = -1;
    EXPECT_TRUE(parse_size(text, got)) << text;
    EXPECT_EQ(got, bytes) << text;
  }
}

TEST(Config, InvalidSizesAreRejected) {
  const char *bad[] = {"",
                       "-1",
                       "-1KiB",
                       "10XB",
                       "KiB",
                       "1 2",
                       "lots",
                       "1.5.5K",
                       "9223372036854775808",
                       "99999999999T",
                       "8EiB",
                       "10MBs"};
  for (const char *text : bad) {
    int64_t got = 0;
    EXPECT_FALSE(parse_size(text, got)) << text;
  }
}

TEST(Config, ParseValueFillsTextIntegerAndNumber) {
  OptionValue v;
  std::string error;
  ASSERT_TRUE(parse_value(DM_OPT_INT, "-42", v, error));
  EXPECT_EQ(v.type, DM_OPT_INT);
  EXPECT_EQ(v.integer, -42);
  EXPECT_EQ(v.number, -42.0);
  EXPECT_EQ(v.text, "-42");
  ASSERT_TRUE(parse_value(DM_OPT_INT, "+7", v, error));
  EXPECT_EQ(v.integer, 7);
  ASSERT_TRUE(parse_value(DM_OPT_DOUBLE, "2.5e1", v, error));
  EXPECT_EQ(v.number, 25.0);
  EXPECT_EQ(v.integer, 25);
  ASSERT_TRUE(parse_value(DM_OPT_DURATION, "2s", v, error));
  EXPECT_EQ(v.integer, 2000);
  EXPECT_EQ(v.number, 2000.0);
  EXPECT_EQ(v.text, "2s");
  ASSERT_TRUE(parse_value(DM_OPT_STRING, "anything", v, error));
  EXPECT_EQ(v.text, "anything");
  ASSERT_TRUE(parse_value(DM_OPT_LIST, "one", v, error));
  EXPECT_EQ(v.items, std::vector<std::string>{"one"});
  ASSERT_TRUE(parse_value(DM_OPT_LIST, "[a, b]", v, error));
  EXPECT_EQ(v.items, (std::vector<std::string>{"a", "b"}));
  ASSERT_TRUE(parse_value(DM_OPT_MAP, "{a: 1, b: 2}", v, error));
  ASSERT_EQ(v.entries.size(), 2u);
  EXPECT_EQ(v.entries[1], std::make_pair(std::string("b"), std::string("2")));
}

TEST(Config, ParseValueRejectsBadIntegersNumbersAndBools) {
  OptionValue v;
  std::string error;
  const char *bad_ints[] = {"", "1.5", "0x10", "12a", "+-1", "--1", "99999999999999999999", " 1"};
  for (const char *t : bad_ints) {
    EXPECT_FALSE(parse_value(DM_OPT_INT, t, v, error)) << t;
    EXPECT_EQ(error, "must be an integer");
  }
  const char *bad_doubles[] = {"", "nan", "inf", "1,5", "e5", "+"};
  for (const char *t : bad_doubles) {
    EXPECT_FALSE(parse_value(DM_OPT_DOUBLE, t, v, error)) << t;
    EXPECT_EQ(error, "must be a number");
  }
  EXPECT_FALSE(parse_value(DM_OPT_MAP, "[a]", v, error));
  EXPECT_EQ(error, "must be a mapping of strings");
  EXPECT_FALSE(parse_value(DM_OPT_LIST, "[a, {b: c}]", v, error));
  EXPECT_FALSE(parse_value(DM_OPT_LIST, "[unclosed", v, error));
  EXPECT_EQ(error, "must be a list of strings");
}

TEST(Config, BoolsAcceptTheUsualSpellingsInAnyCase) {
  const std::pair<const char *, int64_t> cases[] = {{"true", 1},  {"Yes", 1}, {"ON", 1},
                                                    {"false", 0}, {"no", 0},  {"Off", 0}};
  for (auto [text, want] : cases) {
    OptionValue v;
    std::string error;
    ASSERT_TRUE(parse_value(DM_OPT_BOOL, text, v, error)) << text;
    EXPECT_EQ(v.integer, want) << text;
  }
  OptionValue v;
  std::string error;
  EXPECT_FALSE(parse_value(DM_OPT_BOOL, "1", v, error));
  EXPECT_EQ(error, "must be true or false");
}

// ---- robustness ----------------------------------------------------------------------------

TEST(Config, OddInputsNeverThrow) {
  const char *texts[] = {
      "[1, 2]",
      "pipeline: [1]",
      "pipeline:\n  inputs: {a: b}\n",
      "pipeline:\n  inputs:\n    - name: {a: b}\n      alias: ''\n",
      "? [a]\n: b\npipeline: {}\n",
      "pipeline:\n  outputs:\n    - name: x\n      ? {k: v}\n      : 1\n",
      "service: 5\npipeline: {}\n",
      "service:\n  storage: 5\npipeline: {}\n",
      "pipeline: {inputs: [{name: a, plugin_path: ''}]}\n",
      "&a [*a]\n",
      "pipeline:\n  outputs:\n    - &e {name: x, services: &s [*s], headers: {a: *e}}\n",
      "!!binary x\n",
      "\t\n",
      "pipeline:\n  inputs:\n    - name: \"${\"\n",
  };
  for (const char *t : texts) {
    Loaded l;
    EXPECT_NO_THROW(l = load(t)) << t;
    for (const auto *section : {&l.cfg.inputs, &l.cfg.filters, &l.cfg.outputs}) {
      for (const auto &e : *section) {
        EXPECT_NO_THROW(validate_entry(l.cfg, e, output_schema(), l.problems)) << t;
      }
    }
  }
}

// ---- hostile files: every bound the loader keeps -------------------------------------------

namespace hostile {

// The classic "billion laughs": nine levels of nine aliases of the level below.
std::string billion_laughs() {
  std::string y =
      "service:\n  log_level: info\nlol:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, "
      "lol]\n";
  for (int i = 1; i <= 9; i++) {
    y += "  a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 9; k++) y += (k ? ", *a" : "*a") + std::to_string(i - 1);
    y += "]\n";
  }
  return y + "pipeline:\n  inputs: []\n";
}

}  // namespace hostile

TEST(Config, BillionLaughsIsRefusedAtTheAliasThatPassesTheBound) {
  auto l = load(hostile::billion_laughs());
  ASSERT_FALSE(l.ok);
  ASSERT_EQ(l.problems.size(), 1u) << l.problems.str();
  const Problem &p = l.problems.list()[0];
  EXPECT_GT(p.line, 0) << p.str();  // FILE:LINE:COL
  EXPECT_GT(p.col, 0) << p.str();
  EXPECT_NE(p.message.find("expands to more than"), std::string::npos) << p.str();
  EXPECT_EQ(p.str().rfind("/etc/devmesh/test.yaml:", 0), 0u) << p.str();
}

TEST(Config, AliasesWithinTheBoundStillWork) {
  auto l = load(
      "service:\n  plugins_dir: &dirs [/a, /b]\n"
      "pipeline:\n  outputs:\n    - name: x\n      services: *dirs\n");
  ASSERT_TRUE(l.ok) << l.problems.str();
  EXPECT_EQ(l.cfg.service.plugins_dir, (std::vector<std::string>{"/a", "/b"}));
}

TEST(Config, DeepNestingIsRefusedWithoutOverflowingTheStack) {
  for (size_t depth : {150u, 100000u}) {
    auto l =
        load("pipeline:\n  inputs: " + std::string(depth, '[') + std::string(depth, ']') + "\n");
    ASSERT_FALSE(l.ok) << depth;
    EXPECT_NE(l.problems.str().find("nested deeper than"), std::string::npos)
        << depth << ": " << l.problems.str();
  }
  auto maps = load("pipeline:\n  inputs: " + std::string(30000, '{') + "\n");
  ASSERT_FALSE(maps.ok);
}

TEST(Config, AFileOverFourMebibytesIsRefusedUnread) {
  std::string big = "pipeline:\n  inputs: []\n# " + std::string(5 << 20, 'x') + "\n";
  auto l = load(big);
  ASSERT_FALSE(l.ok);
  EXPECT_NE(l.problems.str().find("at most 4 MiB"), std::string::npos) << l.problems.str();
}

TEST(Config, NestedDefaultsAreBoundedAndNeverOverflowTheStack) {
  EnvVar unset("DEVMESH_T_NOPE", nullptr);
  std::string out, error;
  std::string ok;
  for (int i = 0; i < 10; i++) ok += "${DEVMESH_T_NOPE:-";
  ok += "x" + std::string(10, '}');
  ASSERT_TRUE(expand_env(ok, out, error)) << error;
  EXPECT_EQ(out, "x");
  for (int levels : {20, 200000}) {
    std::string deep;
    for (int i = 0; i < levels; i++) deep += "${DEVMESH_T_NOPE:-";
    deep += "x" + std::string(static_cast<size_t>(levels), '}');
    EXPECT_FALSE(expand_env(deep, out, error)) << levels;
    EXPECT_NE(error.find("nested deeper than"), std::string::npos) << error;
  }
}

TEST(Config, AValueThatExpandsPastOneMebibyteIsRefused) {
  EnvVar big("DEVMESH_T_BIG", std::string(4096, 'b').c_str());
  std::string text;
  for (int i = 0; i < 1000; i++) text += "${DEVMESH_T_BIG}";
  std::string out, error;
  EXPECT_FALSE(expand_env(text, out, error));
  EXPECT_NE(error.find("expands to more than 1 MiB"), std::string::npos) << error;
  auto l = load("service:\n  log_level: \"" + text + "\"\npipeline:\n  inputs: []\n");
  ASSERT_FALSE(l.ok);
  EXPECT_NE(l.problems.str().find("service.log_level: expands to more than"), std::string::npos)
      << l.problems.str();
}

TEST(Config, ManyUnsetVariablesAreListedUpToABound) {
  std::string text;
  for (int i = 0; i < 50000; i++) text += "${DEVMESH_T_UNSET_" + std::to_string(i) + "}";
  std::string out, error;
  EXPECT_FALSE(expand_env(text, out, error));
  EXPECT_NE(error.find("DEVMESH_T_UNSET_0,"), std::string::npos);
  EXPECT_EQ(error.find("DEVMESH_T_UNSET_49999"), std::string::npos);
}

}  // namespace
}  // namespace devmesh
