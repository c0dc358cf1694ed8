// Runs a fuzz target's entry function over every file of the directories given (the seed corpus
// and the crashes found so far), with any compiler: each crash stays fixed on every build.
// Usage: fuzz_regress_<target> [--min N] DIR... : each DIR after a --min N must exist and hold at
// least N inputs (N is 1 unless given), so a moved or emptied corpus fails instead of passing
// with nothing run.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  size_t min_inputs = 1;
  bool short_of_inputs = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--min") == 0 && i + 1 < argc) {
      min_inputs = std::strtoul(argv[++i], nullptr, 10);
      continue;
    }
    std::error_code ec;
    if (fs::is_regular_file(argv[i], ec)) {
      files.emplace_back(argv[i]);
      continue;
    }
    size_t found = 0;
    if (fs::is_directory(argv[i], ec))
      for (const auto &e : fs::directory_iterator(argv[i]))
        if (e.is_regular_file() && e.path().filename().string()[0] != '.') {
          files.push_back(e.path());
          ++found;
        }
    if (found < min_inputs) {
      std::fprintf(stderr, "%s: %zu inputs, at least %zu expected (missing or emptied?)\n", argv[i],
                   found, min_inputs);
      short_of_inputs = true;
    }
  }
  if (short_of_inputs) return 2;
  std::sort(files.begin(), files.end());
  for (const fs::path &f : files) {
    // Named before it runs: a crash leaves the input's name as the last line.
    std::printf("%s\n", f.c_str());
    std::fflush(stdout);
    std::ifstream in(f, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size());
  }
  // An empty input too: it runs every target's once-only checks even with no corpus at all.
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t *>(""), 0);
  std::printf("%zu inputs ran clean\n", files.size());
  return 0;
}
