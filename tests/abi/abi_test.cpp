// The loader's refusals, each over a real .so file, through the real devmesh binary.
#include <devmesh/plugin.h>
#include <gtest/gtest.h>

#include "process.h"

using namespace devmesh::test;

namespace {

struct DryRun {
  int code;
  std::string err;
};

DryRun dry_run(const TempDir &dir, const std::string &pipeline) {
  std::string cfg = "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\npipeline:\n" + pipeline;
  write_file(dir / "pipeline.yaml", cfg);
  DryRun r;
  r.code =
      run({DEVMESH_BIN, "--dry-run", "-c", dir / "pipeline.yaml"}, dir.path(), nullptr, &r.err);
  return r;
}

std::string test_plugin(const char *name) {
  return std::string(TEST_PLUGIN_DIR) + "/" + name + ".so";
}

TEST(Loader, MissingPluginListsWhereItLooked) {
  TempDir d;
  auto r = dry_run(d, "  inputs:\n    - name: no_such_input\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("pipeline.yaml:5:7: pipeline.inputs[0]: plugin 'no_such_input' not found; "
                       "looked for " DEVMESH_PLUGIN_DIR "/no_such_input.so"),
            std::string::npos)
      << r.err;
}

TEST(Loader, MissingExplicitPathIsNamed) {
  TempDir d;
  auto r = dry_run(d, "  outputs:\n    - name: x\n      plugin_path: /nonexistent/x.so\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("file not found: /nonexistent/x.so"), std::string::npos) << r.err;
}

TEST(Loader, SharedObjectWithoutEntryIsNotADevmeshPlugin) {
  TempDir d;
  auto r = dry_run(d, "  outputs:\n    - name: abi_no_entry\n      plugin_path: " +
                          test_plugin("abi_no_entry") + "\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("is not a devmesh plugin: it exports no dm_plugin_entry symbol"),
            std::string::npos)
      << r.err;
}

// This engine's ABI as the loader prints it.
const std::string kAbi = std::to_string(DM_ABI_MAJOR) + "." + std::to_string(DM_ABI_MINOR);

TEST(Loader, OtherMajorAbiIsRefusedNamingBothVersions) {
  TempDir d;
  auto r = dry_run(d, "  outputs:\n    - name: abi_bad_major\n      plugin_path: " +
                          test_plugin("abi_bad_major") + "\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("was built for plugin ABI " + std::to_string(DM_ABI_MAJOR + 1) +
                       ".0, but this engine speaks ABI " + kAbi),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("abi_bad_major.so"), std::string::npos) << r.err;
}

TEST(Loader, NewerMinorAbiIsRefused) {
  TempDir d;
  auto r = dry_run(d, "  outputs:\n    - name: abi_newer_minor\n      plugin_path: " +
                          test_plugin("abi_newer_minor") + "\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("needs plugin ABI " + std::to_string(DM_ABI_MAJOR) + "." +
                       std::to_string(DM_ABI_MINOR + 7) + ", newer than this engine's " + kAbi +
                       ": upgrade devmesh"),
            std::string::npos)
      << r.err;
}

TEST(Loader, AVersionOnePluginIsRefusedWithWhatToDo) {
  TempDir d;
  auto r = dry_run(
      d, "  outputs:\n    - name: abi_v1\n      plugin_path: " + test_plugin("abi_v1") + "\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(
      r.err.find("abi_v1.so was built for plugin ABI 1.2, but this engine speaks ABI " + kAbi),
      std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("rebuild the plugin against devmesh's 2.0 SDK (find_package(devmesh) or "
                       "pkg-config devmesh)"),
            std::string::npos)
      << r.err;
}

TEST(Loader, OlderMinorAbiStillLoads) {
  TempDir d;
  auto r = dry_run(d,
                   "  inputs:\n    - name: dummy\n  outputs:\n    - name: abi_older_minor\n"
                   "      plugin_path: " +
                       test_plugin("abi_older_minor") + "\n");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Loader, DuplicatePluginNameIsRefused) {
  TempDir d;
  auto r = dry_run(d, "  outputs:\n    - name: 'null'\n    - name: 'null'\n      plugin_path: " +
                          test_plugin("abi_dup_null") + "\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("duplicate plugin name 'null': provided by both"), std::string::npos)
      << r.err;
}

TEST(Loader, PluginUnderTheWrongSectionIsRefused) {
  TempDir d;
  auto r = dry_run(d, "  filters:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("pipeline.filters[0]: 'null' is an output plugin, but it is listed under "
                       "pipeline.filters"),
            std::string::npos)
      << r.err;
}

TEST(Loader, PluginFileProvidingAnotherNameIsRefused) {
  TempDir d;
  auto r = dry_run(d, "  outputs:\n    - name: mystore\n      plugin_path: " +
                          test_plugin("abi_dup_null") + "\n");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("provides plugin 'null', not 'mystore'"), std::string::npos) << r.err;
}

TEST(Loader, ValidPipelinePassesDryRun) {
  TempDir d;
  auto r = dry_run(d, "  inputs:\n    - name: dummy\n  outputs:\n    - name: 'null'\n");
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(Loader, BuiltPluginsExportOnlyTheEntrySymbol) {
  TempDir d;
  for (const char *p : {"dummy", "stdout", "null"}) {
    std::string out;
    ASSERT_EQ(run({"/usr/bin/nm", "-D", "--defined-only",
                   std::string(DEVMESH_PLUGIN_DIR) + "/" + p + ".so"},
                  d.path(), &out),
              0);
    std::istringstream in(out);
    std::string line;
    std::vector<std::string> syms;
    while (std::getline(in, line)) syms.push_back(line.substr(line.rfind(' ') + 1));
    EXPECT_EQ(syms, std::vector<std::string>{"dm_plugin_entry"}) << p << ": " << out;
  }
}

}  // namespace

namespace {
void any_log(dm_instance *, dm_log_level, const char *, ...) {}
}  // namespace

// A plugin built for a later minor checks an appended entry with DM_HOST_HAS before calling it:
// an older host's table ends earlier (struct_size), and an entry it lists may still be NULL.
TEST(HostTable, HostHasSeesOnlyTheEntriesWithinTheHostsStructSize) {
  dm_host_api h{};
  h.log = any_log;
  h.struct_size = sizeof(dm_host_api);
  EXPECT_TRUE(DM_HOST_HAS(&h, log));
  EXPECT_FALSE(DM_HOST_HAS(&h, config_bind)) << "a NULL entry is absent";
  h.struct_size = offsetof(dm_host_api, log);
  EXPECT_FALSE(DM_HOST_HAS(&h, log)) << "an entry past struct_size is absent";
  h.struct_size = offsetof(dm_host_api, log) + sizeof h.log;
  EXPECT_TRUE(DM_HOST_HAS(&h, log));
}
