// The checks of a whole pipeline, through the real binary: what --dry-run and a start report
// (no input, an output or filter no tag reaches, two writers on one file, two inputs on one
// address and path, an address in use, a directory that cannot be made), paths relative to the
// config file, directories made at start (0700), --list, the nearest plugin name, name: null.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

struct Result {
  int code;
  std::string out, err;
};

// Writes the config at d/conf/p.yaml and runs devmesh on it from `cwd` (default: d).
Result devmesh(const TempDir &d, const std::string &yaml, std::vector<std::string> args,
               const std::string &cwd = "") {
  std::filesystem::create_directories(d / "conf");
  write_file(d / "conf/p.yaml", yaml);
  std::vector<std::string> argv = {DEVMESH_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("-c");
  argv.push_back(d / "conf/p.yaml");
  Process p(argv, cwd.empty() ? d.path() : cwd, "devmesh");
  Result r;
  r.code = p.wait_exit(60s);
  r.out = p.out();
  r.err = p.err();
  return r;
}

Result dry_run(const TempDir &d, const std::string &yaml) {
  return devmesh(d, yaml, {"--dry-run"});
}

// Three lines: the pipeline's entries start on line 4.
const std::string kHead =
    "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR ", " TEST_PLUGIN_DIR "]\npipeline:\n";

// A pipeline that runs to its end: dummy's records, then exit once all is delivered.
const std::string kRunHead = "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
                             "]\n  exit_when_done: true\npipeline:\n"
                             "  inputs:\n    - {name: dummy, count: 3, rate: 1000}\n";

mode_t mode_of(const std::string &path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// ---- where the records go (warnings: the pipeline can run) ------------------------------------

TEST(DryRunChecks, APipelineWithNoInputIsReportedAtItsPipelineKey) {
  TempDir d;
  auto r = dry_run(d, kHead + "  outputs:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find(d / "conf/p.yaml:3:1: warning: pipeline: there is no input: no record "
                           "will flow through this pipeline"),
            std::string::npos)
      << r.err;
}

TEST(DryRunChecks, AnOutputAndAFilterThatNoInputsTagReachesAreReportedAtTheirMatch) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  inputs:\n"                                  // 4
                          "    - {name: dummy, tag: app, count: 1}\n"    // 5
                          "    - {name: dummy, tag: web.a, count: 1}\n"  // 6
                          "  filters:\n"                                 // 7
                          "    - name: priority_map\n"                   // 8
                          "      match: 'db.*'\n"                        // 9
                          "  outputs:\n"                                 // 10
                          "    - name: 'null'\n"                         // 11
                          "      match: db\n"                            // 12
                          "    - {name: 'null', alias: seen, match: 'web.*'}\n");
  EXPECT_EQ(r.code, 0) << r.err;
  const std::string f = d / "conf/p.yaml";
  EXPECT_NE(r.err.find(f + ":9:14: warning: pipeline.filters[0].match: 'db.*' matches no input's "
                           "tag ('app', 'web.a'): this filter sees no record"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(f + ":12:14: warning: pipeline.outputs[0].match: 'db' matches no input's "
                           "tag ('app', 'web.a'): this output receives no record"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("outputs[1]"), std::string::npos) << "web.* reaches web.a\n" << r.err;
}

// ---- files with one writer -------------------------------------------------------------------

TEST(DryRunChecks, TwoOutputsWritingOneSqliteFileAreRefusedAfterTheirPathsAreResolved) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  inputs:\n    - {name: dummy, count: 1}\n"  // 4, 5
                          "  outputs:\n"                                // 6
                          "    - name: sqlite\n"                        // 7
                          "      path: db/logs.db\n"                    // 8
                          "    - name: sqlite\n"                        // 9
                          "      table: other\n"                        // 10
                          "      path: ./db/../db/logs.db\n");          // 11
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(
      r.err.find(d / "conf/p.yaml:11:13: pipeline.outputs[1].path: " +
                 d / "conf/db/logs.db is also written by pipeline.outputs[0].path (line 8): two "
                     "writers on one file corrupt it; give each its own file"),
      std::string::npos)
      << r.err;
}

TEST(DryRunChecks, TwoOutputsWritingOneDeadLetterFileAreRefused) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  inputs:\n    - {name: dummy, count: 1}\n"             // 4, 5
                          "  outputs:\n"                                           // 6
                          "    - {name: 'null', dead_letter_path: dead.ndjson}\n"  // 7
                          "    - {name: 'null', alias: b, dead_letter_path: " +
                          d / "conf/dead.ndjson}\n");  // 8
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(
      r.err.find(d / "conf/p.yaml:8:50: pipeline.outputs[1].dead_letter_path: " +
                 d / "conf/dead.ndjson is also written by pipeline.outputs[0].dead_letter_path "
                     "(line 7)"),
      std::string::npos)
      << r.err;
}

// ---- addresses -------------------------------------------------------------------------------

TEST(DryRunChecks, TwoInputsOnOneAddressAndPathAreRefused) {
  TempDir d;
  const std::string port = std::to_string(free_port());
  auto r = dry_run(d, kHead +
                          "  inputs:\n"  // 4
                          "    - {name: http, listen: '127.0.0.1:" +
                          port +
                          "', path: /in}\n"  // 5
                          "    - {name: http, alias: b, listen: 'localhost:" +
                          port +
                          "', path: /in}\n"  // 6
                          "    - {name: http, alias: c, listen: '127.0.0.1:" +
                          port +
                          "', path: /other}\n"  // 7: same address, another path: fine
                          "  outputs:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(d / "conf/p.yaml:6:63: pipeline.inputs[1].path: 127.0.0.1:" + port +
                       " /in is also served by pipeline.inputs[0].path (line 5): give each its "
                       "own listen address or path"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("inputs[2]"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("1 problem in"), std::string::npos) << r.err;
}

// --dry-run warns (it checks an edit while the pipeline's own devmesh serves the address); a
// start is refused before anything starts, at the option's place.
TEST(DryRunChecks, AListenAddressAlreadyInUseIsReportedAtItsOption) {
  TempDir d;
  // Another process's listener, held for the whole test.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
  const std::string port = std::to_string(ntohs(a.sin_port));
  const std::string yaml = kHead +
                           "  inputs:\n"         // 4
                           "    - name: http\n"  // 5
                           "      listen: 127.0.0.1:" +
                           port +
                           "\n"  // 6
                           "  outputs:\n    - name: 'null'\n";
  const std::string where = d / "conf/p.yaml:6:15";
  const std::string what =
      "pipeline.inputs[0].listen: cannot listen on 127.0.0.1:" + port + ": address in use";
  auto dry = dry_run(d, yaml);
  EXPECT_EQ(dry.code, 0) << dry.err;
  EXPECT_NE(dry.err.find(where + ": warning: " + what), std::string::npos) << dry.err;
  EXPECT_NE(dry.err.find("a start would fail while it is in use"), std::string::npos) << dry.err;
  auto start = devmesh(d, yaml, {});
  close(fd);
  EXPECT_EQ(start.code, 1);
  EXPECT_NE(start.err.find(where + ": " + what), std::string::npos) << start.err;
}

// ---- paths and directories -------------------------------------------------------------------

TEST(DryRunChecks, ARelativeSqlitePathLandsNextToTheConfigWhateverTheWorkingDirectory) {
  TempDir d;
  std::filesystem::create_directories(d / "elsewhere");
  auto r = devmesh(d, kRunHead + "  outputs:\n    - {name: sqlite, path: data/logs.db}\n", {},
                   d / "elsewhere");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(d / "conf/data/logs.db")) << r.err;
  EXPECT_FALSE(std::filesystem::exists(d / "elsewhere/data")) << "resolved against the cwd";
  // Made by the engine before the output started, for the engine's user only.
  EXPECT_EQ(mode_of(d / "conf/data"), 0700u) << std::oct << mode_of(d / "conf/data");
  EXPECT_NE(r.err.find(d / "conf/p.yaml:8:28: pipeline.outputs[0].path: created directory " +
                       d / "conf/data"),
            std::string::npos)
      << r.err;
}

TEST(DryRunChecks, MissingDirectoriesAreMadeWithMode0700AtStartAndTheRecordsLandInThem) {
  TempDir d;
  auto r = devmesh(d, kRunHead + "  outputs:\n    - {name: stdout, path: out/deep/r.ndjson}\n", {});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_lines(d / "conf/out/deep/r.ndjson").size(), 3u);
  EXPECT_EQ(mode_of(d / "conf/out"), 0700u) << std::oct << mode_of(d / "conf/out");
  EXPECT_EQ(mode_of(d / "conf/out/deep"), 0700u) << std::oct << mode_of(d / "conf/out/deep");
}

TEST(DryRunChecks, DryRunMakesNoDirectoryAndSaysWhichOneAStartWouldMake) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  inputs:\n    - {name: dummy, count: 1}\n"  // 4, 5
                          "  outputs:\n"                                // 6
                          "    - name: stdout\n"                        // 7
                          "      path: new/r.ndjson\n");                // 8
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(d / "conf/p.yaml:8:13: pipeline.outputs[0].path: directory " +
                       d / "conf/new does not exist; it will be created at start (mode 0700)"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(std::filesystem::exists(d / "conf/new")) << "a dry run changes nothing";
}

// Under a regular file no directory can be made, by root either (the tests may run as root).
TEST(DryRunChecks, ADirectoryThatCannotBeMadeIsReportedByDryRunAndAtStartNamingOptionAndPath) {
  TempDir d;
  std::filesystem::create_directories(d / "conf");
  write_file(d / "conf/plain", "a file, not a directory\n");
  const std::string yaml = kRunHead +
                           "  outputs:\n"                      // 7
                           "    - name: sqlite\n"              // 8
                           "      path: plain/sub/logs.db\n";  // 9
  const std::string want = d / "conf/p.yaml:9:13: pipeline.outputs[0].path: cannot create "
                               "directory " +
                           d / "conf/plain/sub: " + d / "conf/plain is not a directory";
  auto dry = dry_run(d, yaml);
  EXPECT_EQ(dry.code, 1);
  EXPECT_NE(dry.err.find(want), std::string::npos) << dry.err;
  auto start = devmesh(d, yaml, {});
  EXPECT_EQ(start.code, 1);
  EXPECT_NE(start.err.find(want), std::string::npos) << start.err;
}

TEST(DryRunChecks, AStorageDirectoryThatCannotBeMadeIsReportedAtItsPath) {
  TempDir d;
  std::filesystem::create_directories(d / "conf");
  write_file(d / "conf/plain", "a file, not a directory\n");
  auto r = dry_run(d, "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
                      "]\n  storage:\n    path: plain/queue\npipeline:\n"
                      "  inputs:\n    - {name: dummy, count: 1}\n  outputs:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(d / "conf/p.yaml:4:11: service.storage.path: cannot create directory " +
                       d / "conf/plain/queue: " + d / "conf/plain is not a directory"),
            std::string::npos)
      << r.err;
}

// ---- plugin names ----------------------------------------------------------------------------

TEST(PluginNames, ListPrintsEveryPluginWithItsKindVersionAndFile) {
  TempDir d;
  auto r = devmesh(d, kHead + "  outputs:\n    - name: 'null'\n", {"--list"});
  ASSERT_EQ(r.code, 0) << r.err;
  bool dummy = false, null_output = false;
  for (const std::string &line : read_lines(d / "devmesh.stdout")) {
    std::istringstream in(line);
    std::string name, kind, version, file;
    in >> name >> kind >> version >> file;
    if (name == "dummy")
      dummy = kind == "input" && version == "0.1.0" && file == DEVMESH_PLUGIN_DIR "/dummy.so";
    if (name == "null") null_output = kind == "output" && file == DEVMESH_PLUGIN_DIR "/null.so";
  }
  EXPECT_TRUE(dummy) << r.out;
  EXPECT_TRUE(null_output) << r.out;
  EXPECT_NE(r.out.find("flaky"), std::string::npos) << "plugins_dir is searched\n" << r.out;
}

TEST(PluginNames, DescribeSaysWhichOptionsArePathsRelativeToTheConfigFile) {
  TempDir d;
  std::string out, err;
  ASSERT_EQ(run({DEVMESH_BIN, "--describe", "sqlite"}, d.path(), &out, &err), 0) << err;
  EXPECT_NE(out.find("path               path     default ./data/devmesh.db (relative to the "
                     "config file) (directory made at start) (one writer per file)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("dead_letter_path   path     (relative to the config file)"),
            std::string::npos)
      << out;
}

TEST(PluginNames, AnUnknownPluginNameSuggestsTheNearestOne) {
  TempDir d;
  auto r = dry_run(d, kHead +
                          "  inputs:\n    - {name: dummy, count: 1}\n"  // 4, 5
                          "  filters:\n"                                // 6
                          "    - name: priority_mapp\n"                 // 7
                          "  outputs:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(d / "conf/p.yaml:7:7: pipeline.filters[0]: plugin 'priority_mapp' not "
                           "found (did you mean 'priority_map'?)"),
            std::string::npos)
      << r.err;
  std::string out, err;
  EXPECT_NE(run({DEVMESH_BIN, "--describe", "stdot"}, d.path(), &out, &err), 0);
  EXPECT_NE(err.find("plugin 'stdot' not found (did you mean 'stdout'?)"), std::string::npos)
      << err;
}

TEST(PluginNames, NameNullWrittenPlainIsTheNullOutput) {
  TempDir d;
  auto r = devmesh(d, kRunHead + "  outputs:\n    - name: null\n    - {name: ~, alias: b}\n", {});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("[null.0] discarded 3 records"), std::string::npos) << r.err;
  // A key left empty still has no value.
  auto empty = dry_run(d, kHead + "  outputs:\n    - name:\n      alias: x\n");
  EXPECT_EQ(empty.code, 1);
  EXPECT_NE(empty.err.find(d / "conf/p.yaml:5:7: pipeline.outputs[0].name: has no value"),
            std::string::npos)
      << empty.err;
}

}  // namespace

namespace {

// ---- TLS files ------------------------------------------------------------------------------

TEST(DryRunChecks, TlsFilesThatDoNotLoadAreReportedForTheEngineAndForAPlugin) {
  TempDir d;
  auto r = dry_run(d, "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
                      "]\n  http_listen: 127.0.0.1:0\n"  // 3
                      "  tls.cert: missing.pem\n"        // 4
                      "  tls.key: missing.key\n"         // 5
                      "pipeline:\n"                      // 6
                      "  inputs:\n"                      // 7
                      "    - name: http\n"               // 8
                      "      listen: 127.0.0.1:0\n"      // 9
                      "      tls.cert: other.pem\n"      // 10
                      "      tls.key: other.key\n"       // 11
                      "  outputs:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 1) << r.err;
  // Relative to the config file, as every path.
  EXPECT_NE(r.err.find(d / "conf/p.yaml:3:16: service.tls: tls.cert " + d / "conf/missing.pem"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find(d / "conf/p.yaml:10:17: pipeline.inputs[0].tls.cert: tls.cert " +
                       d / "conf/other.pem"),
            std::string::npos)
      << r.err;
}

}  // namespace
