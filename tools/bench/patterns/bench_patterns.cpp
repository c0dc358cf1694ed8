// bench_patterns: the template miner of the patterns filter on Loghub's labelled 2k samples.
//
// Accuracy: one default configuration for every system; grouping accuracy (the share of messages
// whose predicted group holds exactly the messages of their true group) next to Drain's
// published figure, which Drain reached with settings tuned per system.
// Speed: messages/s on one core, cold (a new miner learning the templates) and steady (a miner
// that has seen them: what a node does after its first minutes), each next to the same-run
// ceiling of only splitting the same messages into tokens and hashing them.
//
//   bench_patterns [--loghub DIR] [--rounds N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "pattern_miner.hpp"

namespace {

struct System {
  const char *name;
  double drain;
};
// logpai/logparser, Drain/README.md (as quoted in the data's README).
const System kSystems[] = {{"HDFS", 0.9975},      {"Hadoop", 0.9475}, {"Spark", 0.92},
                           {"Zookeeper", 0.9665}, {"BGL", 0.9625},    {"Linux", 0.69},
                           {"Apache", 1.0},       {"OpenSSH", 0.7875}};

// One CSV record (RFC 4180 quoting) from `in`; false at the end.
bool read_csv_row(std::istream &in, std::vector<std::string> &fields) {
  fields.clear();
  std::string field;
  bool quoted = false, any = false;
  char c;
  while (in.get(c)) {
    any = true;
    if (quoted) {
      if (c == '"') {
        if (in.peek() == '"') {
          in.get(c);
          field.push_back('"');
        } else {
          quoted = false;
        }
      } else {
        field.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.push_back(std::move(field));
      field.clear();
    } else if (c == '\n') {
      break;
    } else if (c != '\r') {
      field.push_back(c);
    }
  }
  if (!any) return false;
  fields.push_back(std::move(field));
  return true;
}

bool load(const std::string &dir, const char *name, std::vector<std::string> &messages,
          std::vector<std::string> &truth) {
  const std::string path = dir + "/" + name + "/" + name + "_2k.log_structured.csv";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "bench_patterns: cannot read %s\n", path.c_str());
    return false;
  }
  std::vector<std::string> row;
  read_csv_row(in, row);
  int content = -1, event = -1;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == "Content") content = static_cast<int>(i);
    if (row[i] == "EventId") event = static_cast<int>(i);
  }
  if (content < 0 || event < 0) {
    std::fprintf(stderr, "bench_patterns: %s has no Content or EventId column\n", path.c_str());
    return false;
  }
  while (read_csv_row(in, row)) {
    if (row.size() <= static_cast<size_t>(std::max(content, event))) continue;
    messages.push_back(row[content]);
    truth.push_back(row[event]);
  }
  return true;
}

double grouping_accuracy(const std::vector<uint32_t> &pred, const std::vector<std::string> &truth) {
  std::map<std::string, std::set<size_t>> true_groups;
  std::map<uint32_t, std::set<size_t>> pred_groups;
  for (size_t i = 0; i < pred.size(); ++i) {
    true_groups[truth[i]].insert(i);
    pred_groups[pred[i]].insert(i);
  }
  size_t correct = 0;
  for (const auto &[id, members] : pred_groups) {
    const std::string &t = truth[*members.begin()];
    if (true_groups[t] == members) correct += members.size();
  }
  return pred.empty() ? 0 : static_cast<double>(correct) / static_cast<double>(pred.size());
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The ceiling: split every message into whitespace tokens and hash them, nothing else.
uint64_t tokenize_only(const std::vector<std::string> &messages) {
  uint64_t h = 0;
  for (const std::string &m : messages) {
    size_t i = 0;
    while (i < m.size()) {
      while (i < m.size() && m[i] == ' ') ++i;
      uint64_t t = 1469598103934665603ull;
      while (i < m.size() && m[i] != ' ')
        t = (t ^ static_cast<unsigned char>(m[i++])) * 1099511628211ull;
      h += t;
    }
  }
  return h;
}

}  // namespace

int main(int argc, char **argv) {
  std::string dir = LOGHUB_DIR;
  int rounds = 50;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--loghub") && i + 1 < argc)
      dir = argv[++i];
    else if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc)
      rounds = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_patterns [--loghub DIR] [--rounds N]\n");
      return 2;
    }
  }
  std::printf("%-10s %9s %9s %6s %10s\n", "system", "accuracy", "drain", "", "templates");
  std::vector<std::vector<std::string>> all;
  bool below = false;
  for (const System &s : kSystems) {
    std::vector<std::string> messages, truth;
    if (!load(dir, s.name, messages, truth)) return 1;
    devmesh::patterns::Miner miner;
    std::vector<uint32_t> ids;
    for (const std::string &m : messages) ids.push_back(miner.add(m).id);
    for (uint32_t &id : ids) id = miner.resolve(id);
    const double acc = grouping_accuracy(ids, truth);
    std::set<uint32_t> distinct(ids.begin(), ids.end());
    std::printf("%-10s %9.4f %9.4f %6s %10zu\n", s.name, acc, s.drain,
                acc + 1e-9 >= s.drain ? "ok" : "BELOW", distinct.size());
    below = below || acc + 1e-9 < s.drain;
    all.push_back(std::move(messages));
  }

  // Speed: one miner per system (one per service in the filter), the systems interleaved.
  size_t total = 0;
  for (const auto &m : all) total += m.size();
  std::vector<double> cold, steady, ceiling;
  for (int r = 0; r < 3; ++r) {
    std::vector<std::unique_ptr<devmesh::patterns::Miner>> miners;
    for (size_t k = 0; k < all.size(); ++k)
      miners.push_back(std::make_unique<devmesh::patterns::Miner>());
    double t0 = now_s();
    for (size_t k = 0; k < all.size(); ++k)
      for (const std::string &m : all[k]) miners[k]->add(m);
    cold.push_back(static_cast<double>(total) / (now_s() - t0));
    t0 = now_s();
    for (int round = 0; round < rounds; ++round)
      for (size_t k = 0; k < all.size(); ++k)
        for (const std::string &m : all[k]) miners[k]->add(m);
    steady.push_back(static_cast<double>(total) * rounds / (now_s() - t0));
    t0 = now_s();
    uint64_t sink = 0;
    for (int round = 0; round < rounds; ++round)
      for (const auto &m : all) sink += tokenize_only(m);
    ceiling.push_back(static_cast<double>(total) * rounds / (now_s() - t0));
    if (sink == 42) std::printf(" ");
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const double c = median(ceiling);
  std::printf("\nmessages/s on one core, medians of 3 (%zu messages, %d rounds):\n", total, rounds);
  std::printf("  tokenize only (ceiling) %12.0f\n", c);
  std::printf("  miner, cold             %12.0f  ratio %.2f\n", median(cold), median(cold) / c);
  std::printf("  miner, steady           %12.0f  ratio %.2f\n", median(steady), median(steady) / c);
  return below ? 1 : 0;
}
