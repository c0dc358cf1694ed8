// The installed plugin SDK, as a third party uses it: cmake --install into a temporary prefix,
// the three C examples (examples/) built out of tree with find_package(devmesh) and, once, with
// pkg-config alone, then loaded by path into the real engine: input -> filter -> output; and a
// C++ plugin using plugin.hpp.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// Installs this build into d/prefix: everything (engine, plugins, SDK), or the SDK component
// alone, as a -dev package would.
void install_sdk(const TempDir &d, bool sdk_only = true) {
  std::vector<std::string> argv = {CMAKE_BIN, "--install", DEVMESH_BUILD_DIR, "--prefix",
                                   d / "prefix"};
  if (sdk_only) argv.insert(argv.end(), {"--component", "sdk"});
  std::string out, err;
  ASSERT_EQ(run(argv, d.path(), &out, &err), 0) << out << err;
}

// Builds examples/<name> out of tree against d/prefix, as its README says, warnings as errors.
void build_example(const TempDir &d, const std::string &name) {
  std::string out, err;
  ASSERT_EQ(run({CMAKE_BIN, "-S", DEVMESH_SOURCE_DIR "/examples/" + name, "-B", d / ("b_" + name),
                 "-DCMAKE_PREFIX_PATH=" + d / "prefix", "-DCMAKE_C_COMPILER=" C_COMPILER,
                 "-DCMAKE_C_FLAGS=-Wall -Wextra -Werror"},
                d.path(), &out, &err),
            0)
      << out << err;
  ASSERT_EQ(run({CMAKE_BIN, "--build", d / ("b_" + name)}, d.path(), &out, &err), 0) << out << err;
}

// The dynamic symbols a .so defines.
std::string exported(const TempDir &d, const std::string &so) {
  std::string out, err;
  EXPECT_EQ(run({"/usr/bin/nm", "-D", "--defined-only", "--format=just-symbols", so}, d.path(),
                &out, &err),
            0)
      << err;
  return out;
}

std::unique_ptr<Process> start(const TempDir &d, const std::string &yaml) {
  write_file(d / "engine.yaml", yaml);
  return std::make_unique<Process>(std::vector<std::string>{DEVMESH_BIN, "-c", d / "engine.yaml"},
                                   d.path(), "engine");
}

size_t count_of(const std::vector<std::string> &lines, const std::string &needle) {
  size_t n = 0;
  for (auto &l : lines) n += l.find(needle) != std::string::npos;
  return n;
}

// input (two example_lines, one for a service the filter drops) -> example_redact ->
// example_file, which refuses a line longer than max_line.
std::string examples_pipeline(const TempDir &d) {
  auto so = [&](const std::string &dir, const std::string &name) {
    return d / ("b_" + dir + "/" + name + ".so");
  };
  return "service:\n  exit_when_done: true\npipeline:\n"
         "  inputs:\n"
         "    - {name: example_lines, plugin_path: " +
         so("lines_input", "example_lines") + ", path: " + d / "app.log" +
         ", state_file: " + d / "app.offset" +
         ", batch: 100, service: app}\n"
         "    - {name: example_lines, plugin_path: " +
         so("lines_input", "example_lines") + ", path: " + d / "noisy.log" +
         ", service: noisy}\n"
         "  filters:\n"
         "    - {name: example_redact, plugin_path: " +
         so("redact_filter", "example_redact") +
         ", drop_service: noisy}\n"
         "  outputs:\n"
         "    - {name: example_file, plugin_path: " +
         so("file_output", "example_file") + ", path: " + d / "out.log" +
         ", max_line: 256, dead_letter_path: " + d / "dead.ndjson" + "}\n";
}

TEST(Sdk, TheThreeExamplesBuiltOutOfTreeAgainstTheInstalledSdkRunAsOnePipeline) {
  TempDir d;
  install_sdk(d, false);
  for (const char *dir : {"include/devmesh/plugin.h", "include/devmesh/plugin.hpp",
                          "lib/cmake/devmesh/devmeshConfig.cmake", "lib/pkgconfig/devmesh.pc",
                          "share/devmesh/plugin.map", "lib/devmesh/plugins/dummy.so"}) {
    struct stat st;
    EXPECT_EQ(stat((d / "prefix/" + dir).c_str(), &st), 0) << dir << " is not installed";
  }
  for (const char *ex : {"lines_input", "redact_filter", "file_output"}) build_example(d, ex);
  if (HasFatalFailure()) return;
  for (const char *so : {"b_lines_input/example_lines.so", "b_redact_filter/example_redact.so",
                         "b_file_output/example_file.so"})
    EXPECT_EQ(exported(d, d / so), "dm_plugin_entry\n") << so;

  std::string app;
  for (int i = 1; i <= 1000; i++)
    app += "login user" + std::to_string(i) + " password=secret" + std::to_string(i) + " ok\n";
  app += std::string(300, 'x') + "\n";  // longer than the output's max_line
  write_file(d / "app.log", app);
  write_file(d / "noisy.log", "noise 1\nnoise 2\nnoise 3\n");

  auto e = start(d, examples_pipeline(d));
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto out = read_lines(d / "out.log");
  EXPECT_EQ(out.size(), 1000u) << e->err();
  EXPECT_EQ(count_of(out, "INFO\tapp\tlogin user"), 1000u);
  EXPECT_EQ(count_of(out, " password=*** ok"), 1000u) << "the filter masks every password";
  EXPECT_EQ(count_of(out, "secret"), 0u);
  EXPECT_EQ(count_of(out, "noise"), 0u) << "the filter drops the noisy service";
  EXPECT_EQ(out.front(), "INFO\tapp\tlogin user1 password=*** ok");

  // The long line alone is refused by the output (flush_record_status) and dead-lettered.
  auto dead = read_lines(d / "dead.ndjson");
  ASSERT_EQ(dead.size(), 1u) << e->err();
  EXPECT_NE(dead[0].find("message of 300 bytes is longer than max_line (256)"), std::string::npos)
      << dead[0];
  EXPECT_NE(dead[0].find(std::string(300, 'x')), std::string::npos) << dead[0];

  // on_ack moved the input's state past every line: a restart sends only what was appended.
  EXPECT_EQ(read_file(d / "app.offset"), std::to_string(app.size()) + " 1002\n");
  write_file(d / "app.log", app + "late password=late1\nlater\n");
  e = start(d, examples_pipeline(d));
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  out = read_lines(d / "out.log");
  ASSERT_EQ(out.size(), 1002u) << e->err();
  EXPECT_EQ(out[1000], "INFO\tapp\tlate password=***");
  EXPECT_EQ(out[1001], "INFO\tapp\tlater");
  EXPECT_EQ(read_lines(d / "dead.ndjson").size(), 1u);
}

// Backpressure: a slow output with a small queue pauses the example input again and again; every
// line still arrives exactly once, in order.
TEST(Sdk, TheExampleInputPausedByBackpressureLosesAndRepeatsNoLine) {
  TempDir d;
  install_sdk(d);
  build_example(d, "lines_input");
  if (HasFatalFailure()) return;
  std::string text;
  for (int i = 1; i <= 3000; i++) text += "line " + std::to_string(i) + "\n";
  write_file(d / "in.log", text);
  const int port = free_port();
  auto e = start(d, "service:\n  http_listen: 127.0.0.1:" + std::to_string(port) +
                        "\n  plugins_dir: [" TEST_PLUGIN_DIR
                        "]\npipeline:\n  inputs:\n"
                        "    - {name: example_lines, plugin_path: " +
                        d / "b_lines_input/example_lines.so" + ", path: " + d / "in.log" +
                        ", state_file: " + d / "in.offset" +
                        ", batch: 50}\n"
                        "  outputs:\n    - {name: flaky, path: " +
                        d / "out.txt" +
                        ", delay: 2ms, batch_size: 50, flush_interval: 10ms, queue_limit: 4KiB}\n");
  ASSERT_TRUE(wait_until(
      [&] { return read_file(d / "in.offset") == std::to_string(text.size()) + " 3001\n"; }, 60s))
      << read_file(d / "in.offset") << e->err();
  std::string why, metrics;
  ASSERT_TRUE(wait_settled(port, d.path(), 60s, &why)) << why << e->err();
  ASSERT_EQ(http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &metrics, d.path()),
            200);
  EXPECT_GT(metric_value(metrics, "devmesh_example_lines_pauses_total", ""), 0) << metrics;
  EXPECT_EQ(metric_value(metrics, "devmesh_example_lines_read_total", ""), 3000);
  auto out = read_lines(d / "out.txt");
  ASSERT_EQ(out.size(), 3000u);
  for (int i = 1; i <= 3000; i++)
    ASSERT_EQ(out[i - 1], "-\tline " + std::to_string(i)) << "line " << i;
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
}

// The same filter with nothing but a C compiler and pkg-config, fed by the engine's own dummy
// input and written by its stdout output.
TEST(Sdk, TheFilterBuiltWithPkgConfigAloneMasksAndDropsRecordsWhenLoadedByPath) {
  TempDir d;
  install_sdk(d);
  if (HasFatalFailure()) return;
  std::string out, err;
  ASSERT_EQ(run({"/bin/sh", "-c",
                 "export PKG_CONFIG_PATH=" + d / "prefix/lib/pkgconfig" +
                     " && " C_COMPILER " -Wall -Wextra -Werror $(pkg-config --cflags devmesh)"
                     " $(pkg-config --variable=plugin_cflags devmesh) " DEVMESH_SOURCE_DIR
                     "/examples/redact_filter/example_redact.c"
                     " $(pkg-config --variable=plugin_ldflags devmesh) -o " +
                     d / "example_redact.so"},
                d.path(), &out, &err),
            0)
      << out << err;
  EXPECT_EQ(exported(d, d / "example_redact.so"), "dm_plugin_entry\n");

  auto e =
      start(d, "service:\n  exit_when_done: true\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
               "]\npipeline:\n"
               "  inputs:\n"
               "    - {name: dummy, rate: 0, count: 10, message: 'login password=hunter{seq} ok'}\n"
               "    - {name: dummy, rate: 0, count: 5, service: noisy, message: 'noise {seq}'}\n"
               "  filters:\n"
               "    - {name: example_redact, plugin_path: " +
                   d / "example_redact.so" +
                   ", drop_service: noisy}\n"
                   "  outputs:\n"
                   "    - {name: stdout, path: " +
                   d / "out.ndjson" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto lines = read_lines(d / "out.ndjson");
  ASSERT_EQ(lines.size(), 10u) << e->err();
  for (auto &l : lines) {
    EXPECT_NE(l.find("login password=*** ok"), std::string::npos) << l;
    EXPECT_EQ(l.find("hunter"), std::string::npos) << l;
    EXPECT_NE(l.find("\"redacted\":\"true\""), std::string::npos) << l;
  }
}

// A C++ plugin with plugin.hpp's PluginAdapter, from a project of its own: C++20 comes with
// devmesh_add_plugin. It writes the messages it gets to a file.
TEST(Sdk, ACxxPluginUsingPluginHppBuildsAgainstTheInstalledSdkAndRuns) {
  TempDir d;
  install_sdk(d);
  if (HasFatalFailure()) return;
  std::filesystem::create_directories(d / "cxx");
  write_file(
      d / "cxx/CMakeLists.txt",
      "cmake_minimum_required(VERSION 3.16)\nproject(lines_out CXX)\n"
      "find_package(devmesh REQUIRED)\ndevmesh_add_plugin(lines_out SOURCES lines_out.cpp)\n");
  write_file(d / "cxx/lines_out.cpp", R"(#include <devmesh/plugin.hpp>
#include <fstream>
namespace {
const dm_option kOptions[] = {{"path", DM_OPT_STRING, DM_OPT_REQUIRED, nullptr, 0, 0, nullptr, "file", 0}};
struct LinesOut {
  std::ofstream out;
  LinesOut(const dm_host_api *h, dm_instance *, const dm_config *c)
      : out(devmesh::Config{h, c}.string("path")) {}
  dm_flush_status flush(void *, const dm_batch *b, dm_flush_token *, dm_flush_result *) {
    for (uint32_t i = 0; i < b->count; i++) out << devmesh::sv(b->records[i].message) << '\n';
    out.flush();
    return DM_FLUSH_OK;
  }
};
}  // namespace
DEVMESH_PLUGIN(devmesh::PluginAdapter<LinesOut>::describe(DM_OUTPUT, "lines_out", "1.0",
                                                          "messages to a file", kOptions, 1))
)");
  std::string out, err;
  ASSERT_EQ(
      run({CMAKE_BIN, "-S", d / "cxx", "-B", d / "cxx/b", "-DCMAKE_PREFIX_PATH=" + d / "prefix",
           "-DCMAKE_CXX_COMPILER=" CXX_COMPILER, "-DCMAKE_CXX_FLAGS=-Wall -Wextra -Werror"},
          d.path(), &out, &err),
      0)
      << out << err;
  ASSERT_EQ(run({CMAKE_BIN, "--build", d / "cxx/b"}, d.path(), &out, &err), 0) << out << err;
  EXPECT_EQ(exported(d, d / "cxx/b/lines_out.so"), "dm_plugin_entry\n");

  auto e = start(d, "service:\n  exit_when_done: true\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
                    "]\npipeline:\n  inputs:\n    - {name: dummy, rate: 0, count: 100}\n"
                    "  outputs:\n    - {name: lines_out, plugin_path: " +
                        d / "cxx/b/lines_out.so" + ", path: " + d / "out.txt" + "}\n");
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto lines = read_lines(d / "out.txt");
  ASSERT_EQ(lines.size(), 100u);
  EXPECT_EQ(lines.front(), "dummy record 1");
}

}  // namespace
