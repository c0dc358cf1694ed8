// Config errors through the real binary: each problem named with FILE:LINE:COL and its path,
// all problems listed at once, exit code 1; and the CLI's other entry points.
#include <devmesh/plugin.h>
#include <gtest/gtest.h>

#include "process.h"

using namespace devmesh::test;

namespace {

struct Result {
  int code;
  std::string out, err;
};

Result dry_run(const TempDir &d, const std::string &yaml, std::vector<std::string> env = {}) {
  write_file(d / "p.yaml", yaml);
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry", env);
  Result r;
  r.code = p.wait_exit(std::chrono::seconds(30));
  r.out = p.out();
  r.err = p.err();
  return r;
}

const std::string kHead =
    "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR "]\npipeline:\n";

TEST(ConfigErrors, UnknownKeyNamesLineAndSuggestsTheClosest) {
  TempDir d;
  auto r = dry_run(d, kHead + "  outputs:\n    - name: 'null'\n      batchsize: 10\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:6:7: pipeline.outputs[0].batchsize: unknown key 'batchsize' (did "
                       "you mean 'batch_size'?)"),
            std::string::npos)
      << r.err;
}

TEST(ConfigErrors, OutOfRangeNamesTheBounds) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  outputs:\n    - name: 'null'\n    - name: 'null'\n      alias: "
                          "second\n      batch_size: 0\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:8:19: pipeline.outputs[1].batch_size: must be between 1 and 100000"),
            std::string::npos)
      << r.err;
}

TEST(ConfigErrors, WrongTypeIsNamed) {
  TempDir d;
  auto r = dry_run(d, kHead + "  outputs:\n    - name: 'null'\n      flush_interval: soon\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("pipeline.outputs[0].flush_interval: must be a duration"), std::string::npos)
      << r.err;
}

TEST(ConfigErrors, ValueNotAllowedListsTheChoices) {
  TempDir d;
  auto r = dry_run(
      d, kHead + "  outputs:\n    - name: flaky\n      path: x\n      fail_status: maybe\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("pipeline.outputs[0].fail_status: must be one of: retry, error, split"),
            std::string::npos)
      << r.err;
}

TEST(ConfigErrors, MissingRequiredKeyIsNamed) {
  TempDir d;
  auto r = dry_run(d, kHead + "  outputs:\n    - name: flaky\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:5:7: pipeline.outputs[0]: missing required key 'path'"),
            std::string::npos)
      << r.err;
}

TEST(ConfigErrors, UnsetEnvironmentVariableIsNamed) {
  TempDir d;
  auto r = dry_run(
      d, kHead + "  outputs:\n    - name: flaky\n      path: ${DEVMESH_TEST_UNSET_VAR}/out\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("DEVMESH_TEST_UNSET_VAR"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("p.yaml:6:13"), std::string::npos) << r.err;
}

TEST(ConfigErrors, EnvironmentVariablesAndDefaultsExpand) {
  TempDir d;
  auto r = dry_run(d,
                   kHead +
                       "  outputs:\n    - name: flaky\n      path: ${DEVMESH_TEST_DIR}/out\n      "
                       "fail_status: ${DEVMESH_TEST_NOPE:-error}\n",
                   {"DEVMESH_TEST_DIR=" + d.path()});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(ConfigErrors, YamlSyntaxErrorHasItsLine) {
  TempDir d;
  auto r = dry_run(d, kHead + "  outputs:\n    - name: 'null'\n      match: [unclosed\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:"), std::string::npos) << r.err;
}

TEST(ConfigErrors, EveryProblemIsListedNotJustTheFirst) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  outputs:\n"
                          "    - name: 'null'\n"
                          "      batch_size: -5\n"
                          "      workers: many\n"
                          "      colour: blue\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("batch_size: must be between"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("workers: must be an integer"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unknown key 'colour'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("3 problems"), std::string::npos) << r.err;
}

// Problems a plugin finds itself (config_error from create()): each at its option's place.
TEST(ConfigErrors, ProblemsTwoPluginsRaiseAreAllListedWithTheirPlaces) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  filters:\n"                // line 4
                          "    - name: priority_map\n"  // 5
                          "      levels:\n"             // 6
                          "        '9': DEBUG\n"        // 7
                          "    - name: drop\n"          // 8
                          "      message_regex:\n"      // 9
                          "        - ok\n"              // 10
                          "        - 'a(b'\n"           // 11
                          "  outputs:\n"                // 12
                          "    - name: 'null'\n");      // 13
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:7:14: pipeline.filters[0].levels.9: '9' is not a syslog priority "
                       "(0..7)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("p.yaml:11:11: pipeline.filters[1].message_regex[1]: 'a(b' is not a valid "
                       "POSIX extended regex"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.out.find("configuration OK"), std::string::npos) << r.out;
}

TEST(ConfigErrors, EveryProblemOnePluginFindsIsListedNotJustTheFirst) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  inputs:\n"             // 4
                          "    - name: http\n"      // 5
                          "      path: ingest\n"    // 6
                          "      auth_token: ''\n"  // 7
                          "  outputs:\n"            // 8
                          "    - name: 'null'\n");  // 9
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:6:13: pipeline.inputs[0].path: must start with '/'"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("p.yaml:7:19: pipeline.inputs[0].auth_token: must not be empty"),
            std::string::npos)
      << r.err;
}

TEST(ConfigErrors, PluginProblemsAreListedWithSchemaProblemsOfOtherEntries) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  filters:\n"             // 4
                          "    - name: drop\n"       // 5
                          "      rate: fast\n"       // 6
                          "  outputs:\n"             // 7
                          "    - name: 'null'\n"     // 8
                          "      batch_size: 0\n");  // 9
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:9:19: pipeline.outputs[0].batch_size: must be between"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("p.yaml:6:13: pipeline.filters[0].rate: 'fast' is not a rate"),
            std::string::npos)
      << r.err;
}

TEST(ConfigErrors, PluginProblemsAboutOneOptionOrAnEmptyListArePlacedAtTheirKeys) {
  TempDir d;
  // burst without rate (rate is not in the file) is named at burst; an empty list at its key.
  auto r = dry_run(d, kHead +
                          "  filters:\n"            // 4
                          "    - name: drop\n"      // 5
                          "      burst: 10\n"       // 6
                          "    - name: dedup\n"     // 7
                          "      key: []\n"         // 8
                          "  outputs:\n"            // 9
                          "    - name: 'null'\n");  // 10
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("p.yaml:6:14: pipeline.filters[0].burst: needs rate"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("p.yaml:8:12: pipeline.filters[1].key: needs at least one field"),
            std::string::npos)
      << r.err;
}

TEST(Cli, VersionPrintsTheAbi) {
  TempDir d;
  std::string out;
  EXPECT_EQ(run({DEVMESH_BIN, "--version"}, d.path(), &out), 0);
  EXPECT_NE(out.find("devmesh 0.1.0 (plugin ABI " + std::to_string(DM_ABI_MAJOR) + "." +
                     std::to_string(DM_ABI_MINOR) + ")"),
            std::string::npos)
      << out;
}

TEST(Cli, DescribePrintsOptionsFromTheSchema) {
  TempDir d;
  std::string out, err;
  EXPECT_EQ(run({DEVMESH_BIN, "--describe", "dummy"}, d.path(), &out, &err), 0) << err;
  EXPECT_NE(out.find("dummy (input plugin"), std::string::npos) << out;
  EXPECT_NE(out.find("rate"), std::string::npos) << out;
  EXPECT_NE(out.find("tag"), std::string::npos) << out;
  EXPECT_NE(run({DEVMESH_BIN, "--describe", "no_such_plugin"}, d.path(), &out, &err), 0);
  EXPECT_NE(err.find("not found"), std::string::npos) << err;
}

TEST(Cli, ShippedConfigsPassDryRun) {
  TempDir d;
  for (const char *conf : {"standalone", "sidecar", "aggregator"}) {
    std::string path = std::string(DEVMESH_SOURCE_DIR "/conf/") + conf + ".yaml";
    Process p({DEVMESH_BIN, "--dry-run", "-c", path}, d.path(), conf,
              {"DEVMESH_STATE_DIR=" + d.path() + "/state"});
    EXPECT_EQ(p.wait_exit(std::chrono::seconds(30)), 0) << conf << ": " << p.err();
    EXPECT_NE(p.out().find("configuration OK"), std::string::npos) << conf;
  }
}

}  // namespace

// create() runs for --dry-run, which must leave the machine as it was: the stdout output's file
// is made by start() (and a missing directory by the engine, at start), and a file it could
// never make is a problem at its path.
TEST(ConfigErrors, DryRunMakesNoOutputFileAndNamesOneThatCannotBeMade) {
  TempDir d;
  const std::string out = d / "out.ndjson";
  auto ok = dry_run(d, kHead +
                           "  inputs:\n    - name: dummy\n  outputs:\n    - name: stdout\n"
                           "      path: " +
                           out + "\n");
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_FALSE(std::filesystem::exists(out)) << "--dry-run made " << out;

  auto later = dry_run(d, kHead +
                              "  inputs:\n    - name: dummy\n  outputs:\n    - name: stdout\n"
                              "      path: " +
                              d / "no/such/dir/out.ndjson" + "\n");
  EXPECT_EQ(later.code, 0) << "a missing directory is made at start\n" << later.err;
  EXPECT_FALSE(std::filesystem::exists(d / "no")) << "--dry-run made a directory";

  write_file(d / "plain", "a file, not a directory\n");
  auto bad = dry_run(d, kHead +
                            "  inputs:\n    - name: dummy\n  outputs:\n    - name: stdout\n"
                            "      path: " +
                            d / "plain/out.ndjson" + "\n");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("p.yaml:8:13: pipeline.outputs[0].path: cannot open " +
                         d / "plain/out.ndjson" + ": Not a directory"),
            std::string::npos)
      << bad.err;
}
