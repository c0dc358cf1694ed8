// priority_map through the real binary: dummy records with priorities and messages, the
// filter, the stdout output into a file; each level rule and each bad option.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

const std::string kHead = "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
                          "]\n"
                          "  exit_when_done: true\npipeline:\n";

// message -> level of every line the stdout output wrote.
std::map<std::string, std::string> levels_by_message(const std::string &path) {
  std::map<std::string, std::string> out;
  for (const auto &line : read_lines(path)) {
    rapidjson::Document doc;
    doc.Parse(line.c_str());
    if (doc.HasParseError() || !doc.IsObject()) {
      ADD_FAILURE() << "not JSON: " << line;
      continue;
    }
    out[doc["message"].GetString()] = doc["level"].GetString();
  }
  return out;
}

// Runs dummy inputs (one YAML flow mapping each) through `filter` to the end.
std::map<std::string, std::string> run(const std::vector<std::string> &inputs,
                                       const std::string &filter) {
  TempDir d;
  std::string yaml = kHead + "  inputs:\n";
  for (const auto &in : inputs) yaml += "    - {name: dummy, rate: 0, count: 1, " + in + "}\n";
  yaml += "  filters:\n    - " + filter +
          "\n  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n";
  write_file(d / "p.yaml", yaml);
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  EXPECT_EQ(e.wait_exit(60s), 0) << e.err();
  return levels_by_message(d / "out.ndjson");
}

std::string dry_run_errors(const std::string &filter) {
  TempDir d;
  write_file(d / "p.yaml", kHead + "  inputs:\n    - {name: dummy}\n  filters:\n    - " + filter +
                               "\n  outputs:\n    - {name: 'null'}\n");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(30s), 1) << p.err();
  return p.err();
}

std::vector<std::string> one_input_per_priority() {
  std::vector<std::string> in;
  for (int p = 0; p <= 7; ++p)
    in.push_back("priority: " + std::to_string(p) + ", message: 'p" + std::to_string(p) + "'");
  return in;
}

TEST(PriorityMap, EachPriorityGetsTheSeedLevel) {
  auto got = run(one_input_per_priority(), "{name: priority_map}");
  std::map<std::string, std::string> want = {
      {"p0", "FATAL"}, {"p1", "CRITICAL"}, {"p2", "CRITICAL"}, {"p3", "ERROR"},
      {"p4", "WARN"},  {"p5", "INFO"},     {"p6", "INFO"},     {"p7", "DEBUG"}};
  EXPECT_EQ(got, want);
}

TEST(PriorityMap, LevelsOptionOverridesSomePrioritiesAndKeepsTheRest) {
  auto got =
      run(one_input_per_priority(), "{name: priority_map, levels: {'6': DEBUG, '0': critical}}");
  EXPECT_EQ(got["p6"], "DEBUG");
  EXPECT_EQ(got["p0"], "CRITICAL");
  EXPECT_EQ(got["p5"], "INFO");
  EXPECT_EQ(got["p3"], "ERROR");
}

TEST(PriorityMap, LevelWrittenInTheMessageWinsOverThePriorityWhenDetectionIsOn) {
  // Every record at priority 6, as many journald services log everything.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"level=error msg=\"disk full\"", "ERROR"},
      {"ts=2025-11-28T19:55:40Z lvl=warn caller=x.go:1", "WARN"},
      {"LEVEL=Debug starting", "DEBUG"},
      {"severity=critical fan stopped", "CRITICAL"},
      {"level=\"fatal\" bye", "FATAL"},
      {"{\"level\":\"warn\",\"msg\":\"slow\"}", "WARN"},
      {"{\"ts\": 1, \"level\" : \"error\"}", "ERROR"},
      {"[ERROR] connection refused", "ERROR"},
      {"2025/01/01 10:00:00 [ warn] fluent style", "WARN"},
      {"ERROR: out of memory", "ERROR"},
      {"main: Warning: deprecated flag", "WARNING"},
      {"msg=\"got error: x\" level=debug", "DEBUG"},  // the key form wins over ERROR:
      {"[info] then ERROR: later", "INFO"},           // the leftmost bare form wins
      {"no error here", "INFO"},
      {"errors: 3 retried", "INFO"},
      {"terror: not a level", "INFO"},
      {"[ERRORS] plural", "INFO"},
      {"level=verbose unknown word", "INFO"},
      {"loglevel=errorish", "INFO"},
      {"http://host:80/error:x", "INFO"},
  };
  std::vector<std::string> inputs;
  for (const auto &[msg, level] : cases) {
    std::string quoted;  // YAML single-quoted
    for (char c : msg) quoted += c == '\'' ? std::string("''") : std::string(1, c);
    inputs.push_back("priority: 6, message: '" + quoted + "'");
  }
  auto got = run(inputs, "{name: priority_map, detect_in_message: true}");
  ASSERT_EQ(got.size(), cases.size());
  for (const auto &[msg, level] : cases) EXPECT_EQ(got[msg], level) << msg;
}

TEST(PriorityMap, MessagesAreNotReadWhenDetectionIsOff) {
  auto got = run({"priority: 6, message: 'level=error boom'"}, "{name: priority_map}");
  EXPECT_EQ(got["level=error boom"], "INFO");
}

TEST(PriorityMap, RecordsWithNoPriorityAndNoLevelGetTheDetectedOrTheDefaultLevel) {
  auto got = run({"level: NONE, message: 'plain'", "level: NONE, message: 'lvl=error x'"},
                 "{name: priority_map, detect_in_message: true, default_level: WARN}");
  EXPECT_EQ(got["plain"], "WARN");
  EXPECT_EQ(got["lvl=error x"], "ERROR");
  got = run({"level: NONE, message: 'plain'"}, "{name: priority_map}");
  EXPECT_EQ(got["plain"], "INFO") << "default_level defaults to INFO";
}

TEST(PriorityMap, RecordsWithALevelAndNoPriorityKeepItUnlessTheOptionSaysOtherwise) {
  const std::vector<std::string> in = {"level: ERROR, message: 'level=debug x'",
                                       "level: WARN, message: 'nothing'"};
  auto got = run(in, "{name: priority_map, detect_in_message: true, default_level: FATAL}");
  EXPECT_EQ(got["level=debug x"], "ERROR");
  EXPECT_EQ(got["nothing"], "WARN");
  got = run(in, "{name: priority_map, detect_in_message: true, detect_overrides_level: true}");
  EXPECT_EQ(got["level=debug x"], "DEBUG");
  EXPECT_EQ(got["nothing"], "WARN") << "nothing found: the record's own level stays";
}

TEST(PriorityMapConfig, PriorityOutsideZeroToSevenIsNamed) {
  auto err = dry_run_errors("{name: priority_map, levels: {'9': DEBUG, 'x': INFO}}");
  EXPECT_NE(err.find("levels.9: '9' is not a syslog priority (0..7)"), std::string::npos) << err;
  EXPECT_NE(err.find("levels.x: 'x' is not a syslog priority (0..7)"), std::string::npos) << err;
  EXPECT_NE(err.find("the filter plugin 'priority_map' refused its configuration"),
            std::string::npos)
      << err;
}

TEST(PriorityMapConfig, UnknownLevelInTheMapIsNamed) {
  auto err = dry_run_errors("{name: priority_map, levels: {'6': LOUD}}");
  EXPECT_NE(err.find("levels.6: unknown level 'LOUD'"), std::string::npos) << err;
}

TEST(PriorityMapConfig, UnknownDefaultLevelListsTheChoices) {
  auto err = dry_run_errors("{name: priority_map, default_level: LOUD}");
  EXPECT_NE(err.find("default_level: must be one of: DEBUG, INFO, WARN, WARNING, ERROR, "
                     "CRITICAL, FATAL"),
            std::string::npos)
      << err;
}

TEST(PriorityMapConfig, DetectInMessageMustBeABool) {
  auto err = dry_run_errors("{name: priority_map, detect_in_message: maybe}");
  EXPECT_NE(err.find("detect_in_message: must be"), std::string::npos) << err;
}

}  // namespace
