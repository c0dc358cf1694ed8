// patterns through the real binary: dummy records with chosen messages, the filter, the stdout
// output into a file. Ids per template, the template travelling with the record that made it,
// ids kept across a restart through state_file, an id mined upstream kept, key=value constants
// until they turn variable, the limits, and bad options and state files.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>
#include <set>
#include <thread>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

struct Rec {
  std::string service, message, pattern_id, pattern;
};

std::vector<Rec> records(const std::string &path) {
  std::vector<Rec> out;
  for (const auto &line : read_lines(path)) {
    rapidjson::Document doc;
    doc.Parse(line.c_str());
    if (doc.HasParseError() || !doc.IsObject()) {
      ADD_FAILURE() << "not JSON: " << line;
      continue;
    }
    Rec r;
    r.service = doc["service"].GetString();
    r.message = doc["message"].GetString();
    const auto &meta = doc["meta_json"];
    if (meta.HasMember("pattern_id")) r.pattern_id = meta["pattern_id"].GetString();
    if (meta.HasMember("pattern")) r.pattern = meta["pattern"].GetString();
    out.push_back(std::move(r));
  }
  return out;
}

std::string config(const TempDir &d, const std::string &inputs, const std::string &filter,
                   const std::string &out = "out.ndjson") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
         "]\n  exit_when_done: true\npipeline:\n  inputs:\n" +
         inputs + "  filters:\n    - " + filter +
         "\n  outputs:\n    - {name: stdout, match: '*', path: " + d / out + "}\n";
}

std::vector<Rec> run(const TempDir &d, const std::string &inputs, const std::string &filter,
                     std::string *log = nullptr, const std::string &out = "out.ndjson") {
  write_file(d / "p.yaml", config(d, inputs, filter, out));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  EXPECT_EQ(e.wait_exit(60s), 0) << e.err();
  if (log) *log = e.err();
  return records(d / out);
}

// template text -> pattern ids seen with it (first record of each id carries the text)
std::map<std::string, std::set<std::string>> ids_by_template(const std::vector<Rec> &recs) {
  std::map<std::string, std::string> text_of;
  for (const auto &r : recs)
    if (!r.pattern.empty()) text_of[r.pattern_id] = r.pattern;
  std::map<std::string, std::set<std::string>> out;
  for (const auto &r : recs) out[text_of[r.pattern_id]].insert(r.pattern_id);
  return out;
}

const std::string kSsh =
    "    - {name: dummy, tag: node.a, rate: 0, count: 60, service: sshd, messages: ["
    "'Accepted password for root from 10.1.2.{seq} port 5{seq} ssh2',"
    " 'Connection closed by 10.0.0.{seq} port 22 [preauth]',"
    " 'pam_unix(sshd:session): session opened for user app by (uid={seq})']}\n";

TEST(Patterns, EachTemplateGetsOneIdAndTheFirstRecordCarriesItsText) {
  TempDir d;
  auto got = run(d, kSsh, "{name: patterns}");
  ASSERT_EQ(got.size(), 60u);
  std::map<std::string, int> per_id;
  for (const auto &r : got) {
    ASSERT_EQ(r.pattern_id.size(), 16u) << r.message;
    per_id[r.pattern_id]++;
  }
  EXPECT_EQ(per_id.size(), 3u);
  for (const auto &[id, n] : per_id) EXPECT_EQ(n, 20) << id;
  const auto by_text = ids_by_template(got);
  EXPECT_EQ(by_text.count("Accepted password for root from <*> port <*> <*>"), 1u);
  EXPECT_EQ(by_text.count("Connection closed by <*> port <*> [preauth]"), 1u);
  EXPECT_EQ(by_text.count("pam_unix(sshd:session): session opened for user app by (uid=<*>)"), 1u);
  // The text travels with the first record of a pattern, not with every record.
  int with_text = 0;
  for (const auto &r : got) with_text += !r.pattern.empty();
  EXPECT_LT(with_text, 10);
}

TEST(Patterns, ServicesAreMinedApartSoOneMessageInTwoServicesHasTwoIds) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.a, rate: 0, count: 20, services: [web, db],"
                 " message: 'request {seq} done in {seq}ms'}\n",
                 "{name: patterns}");
  std::map<std::string, std::set<std::string>> ids;
  for (const auto &r : got) ids[r.service].insert(r.pattern_id);
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids["web"].size(), 1u);
  EXPECT_EQ(ids["db"].size(), 1u);
  EXPECT_NE(*ids["web"].begin(), *ids["db"].begin());
}

TEST(Patterns, IdsStayTheSameAcrossARestartThroughTheStateFile) {
  TempDir d;
  const std::string filter = "{name: patterns, state_file: " + d / "state/patterns.state" + "}";
  auto first = run(d, kSsh, filter, nullptr, "first.ndjson");
  ASSERT_EQ(first.size(), 60u);
  const std::string state = read_file(d / "state/patterns.state");
  EXPECT_EQ(state.rfind("devmesh-patterns 1\n", 0), 0u) << state;
  EXPECT_NE(state.find("Accepted password for root from <*> port <*> <*>"), std::string::npos);

  // Other values, another order: the same templates, the same ids.
  std::string log;
  auto second = run(d,
                    "    - {name: dummy, tag: node.a, rate: 0, count: 30, start: 500,"
                    " service: sshd, messages: ["
                    "'pam_unix(sshd:session): session opened for user app by (uid={seq})',"
                    " 'Connection closed by 192.168.7.{seq} port 22 [preauth]',"
                    " 'Accepted password for root from 172.16.{seq}.1 port 6{seq} ssh2']}\n",
                    filter, &log, "second.ndjson");
  ASSERT_EQ(second.size(), 30u);
  EXPECT_NE(log.find("3 templates of 1 services read"), std::string::npos) << log;
  std::set<std::string> a, b;
  for (const auto &r : first) a.insert(r.pattern_id);
  for (const auto &r : second) b.insert(r.pattern_id);
  EXPECT_EQ(a, b);
}

TEST(Patterns, ARecordThatArrivesWithAPatternIdKeepsIt) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.a, rate: 0, count: 5, message: 'x {seq}',"
                 " meta: {pattern_id: 00000000000000aa}}\n"
                 "    - {name: dummy, tag: node.b, rate: 0, count: 5, message: 'y {seq}'}\n",
                 "{name: patterns}");
  ASSERT_EQ(got.size(), 10u);
  for (const auto &r : got) {
    if (r.message[0] == 'x') {
      EXPECT_EQ(r.pattern_id, "00000000000000aa");
      EXPECT_EQ(r.pattern, "");
    } else {
      EXPECT_EQ(r.pattern_id.size(), 16u);
      EXPECT_NE(r.pattern_id, "00000000000000aa");
    }
  }
}

TEST(Patterns, AKeyValueWordStaysConstantUntilItShowsFourValues) {
  TempDir d;
  // Three users: three templates (user=root is another event than user=guest) ...
  auto three = run(d,
                   "    - {name: dummy, tag: node.a, rate: 0, count: 30, messages: ["
                   "'auth failure; uid=0 rhost=10.0.0.{seq} user=root',"
                   " 'auth failure; uid=0 rhost=10.0.0.{seq} user=guest',"
                   " 'auth failure; uid=0 rhost=10.0.0.{seq} user=test']}\n",
                   "{name: patterns}", nullptr, "three.ndjson");
  std::set<std::string> ids;
  for (const auto &r : three) ids.insert(r.pattern_id);
  EXPECT_EQ(ids.size(), 3u);
  // ... a fourth makes the value a variable: the later records share one template.
  auto five = run(d,
                  "    - {name: dummy, tag: node.a, rate: 0, count: 50, messages: ["
                  "'auth failure; uid=0 rhost=10.0.0.{seq} user=root',"
                  " 'auth failure; uid=0 rhost=10.0.0.{seq} user=guest',"
                  " 'auth failure; uid=0 rhost=10.0.0.{seq} user=test',"
                  " 'auth failure; uid=0 rhost=10.0.0.{seq} user=admin',"
                  " 'auth failure; uid=0 rhost=10.0.0.{seq} user=oracle']}\n",
                  "{name: patterns}", nullptr, "five.ndjson");
  ASSERT_EQ(five.size(), 50u);
  std::set<std::string> late;
  for (size_t i = 10; i < five.size(); ++i) late.insert(five[i].pattern_id);
  EXPECT_EQ(late.size(), 1u);
  bool generalised = false;
  for (const auto &r : five)
    generalised = generalised || r.pattern == "auth failure; uid=<*> rhost=<*> user=<*>";
  EXPECT_TRUE(generalised);
}

TEST(Patterns, ServicesPastMaxServicesGetNoId) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.a, rate: 0, count: 30, services: [a, b, c],"
                 " message: 'tick {seq}'}\n",
                 "{name: patterns, max_services: 2}");
  std::map<std::string, int> without;
  for (const auto &r : got)
    if (r.pattern_id.empty()) without[r.service]++;
  EXPECT_EQ(without, (std::map<std::string, int>{{"c", 10}}));
}

TEST(Patterns, TemplatesPastMaxTemplatesGetNoId) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.a, rate: 0, count: 20, service: t, messages: ["
                 "'first kind {seq}', 'second kind of message here {seq}']}\n",
                 "{name: patterns, max_templates: 1}");
  std::map<std::string, int> without;
  for (const auto &r : got)
    if (r.pattern_id.empty()) without[r.message.substr(0, 6)]++;
  EXPECT_EQ(without, (std::map<std::string, int>{{"second", 10}}));
}

TEST(Patterns, ACorruptStateFileIsReportedAndTheTemplatesLearntAgain) {
  TempDir d;
  write_file(d / "patterns.state", "not a patterns file\n");
  std::string log;
  auto got = run(d, kSsh, "{name: patterns, state_file: " + d / "patterns.state" + "}", &log);
  EXPECT_EQ(got.size(), 60u);
  EXPECT_NE(log.find("patterns.state:1: not a devmesh patterns file"), std::string::npos) << log;
  EXPECT_EQ(read_file(d / "patterns.state").rfind("devmesh-patterns 1\n", 0), 0u);
}

TEST(Patterns, BadOptionsAreRefusedNamingTheOption) {
  TempDir d;
  write_file(d / "p.yaml", config(d, "    - {name: dummy}\n",
                                  "{name: patterns, similarity: 2, kv_variants: 1, depth: 0}"));
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(30s), 1) << p.err();
  EXPECT_NE(p.err().find("similarity"), std::string::npos) << p.err();
  EXPECT_NE(p.err().find("kv_variants"), std::string::npos) << p.err();
  EXPECT_NE(p.err().find("depth"), std::string::npos) << p.err();
}

TEST(Patterns, TheTemplateTravelsAgainAfterTemplateEvery) {
  TempDir d;
  // 2.5 s of records at 20/s: with template_every 1s the text goes out at least twice more.
  auto got =
      run(d, "    - {name: dummy, tag: node.a, rate: 20, count: 50, message: 'beat {seq}'}\n",
          "{name: patterns, template_every: 1s}");
  ASSERT_EQ(got.size(), 50u);
  int with_text = 0;
  for (const auto &r : got) with_text += r.pattern == "beat <*>";
  EXPECT_GE(with_text, 2);
  EXPECT_LE(with_text, 4);
}

TEST(Patterns, TheStateFileIsWrittenWhileRunningEverySaveInterval) {
  TempDir d;
  write_file(d / "p.yaml", "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
                           "]\npipeline:\n  inputs:\n"
                           "    - {name: dummy, rate: 50, message: 'beat {seq}'}\n  filters:\n"
                           "    - {name: patterns, save_interval: 200ms, state_file: " +
                               d / "patterns.state" + "}\n  outputs:\n    - {name: 'null'}\n");
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  bool written = false;
  for (int i = 0; i < 300 && !written; ++i) {
    written = read_file(d / "patterns.state").find("beat <*>") != std::string::npos;
    if (!written) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(written) << e.err();
  e.kill(SIGTERM);
  EXPECT_EQ(e.wait_exit(30s), 0) << e.err();
}

}  // namespace

// Two processes each way. A sidecar mines and forwards to an aggregator that runs the filter
// too: every record keeps the sidecar's id there. A second aggregator gets the same messages
// without ids (its sidecar runs no patterns filter) and mines them itself: each message gets the
// same id the first sidecar gave it, since an id is a hash of the service and the template the
// pattern was created with.
TEST(Patterns, AMessageHasTheSameIdOnASidecarAndItsAggregatorWhetherTheIdTravelsOrNot) {
  TempDir d;
  auto aggregator = [&](const std::string &name, int port) {
    write_file(d / (name + ".yaml"),
               "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
               "]\n  flush_interval: 50ms\npipeline:\n  inputs:\n    - {name: http, listen: "
               "127.0.0.1:" +
                   std::to_string(port) +
                   ", ack: delivered}\n  filters:\n    - {name: patterns}\n  outputs:\n    - "
                   "{name: stdout, path: " +
                   d / (name + ".ndjson") + "}\n");
    return std::make_unique<Process>(
        std::vector<std::string>{DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name);
  };
  auto sidecar = [&](const std::string &name, int port, bool mine) {
    write_file(d / (name + ".yaml"),
               "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR
               "]\n  exit_when_done: true\npipeline:\n  inputs:\n" +
                   kSsh + (mine ? "  filters:\n    - {name: patterns}\n" : "") +
                   "  outputs:\n    - {name: stdout, path: " + d / (name + ".ndjson") +
                   "}\n    - {name: http_forward, flush_interval: 50ms, url: "
                   "'http://127.0.0.1:" +
                   std::to_string(port) + "/ingest/logs'}\n");
    Process p({DEVMESH_BIN, "-c", d / (name + ".yaml")}, d.path(), name);
    EXPECT_EQ(p.wait_exit(60s), 0) << p.err();
  };
  const int p1 = free_port(), p2 = free_port();
  auto agg1 = aggregator("agg1", p1), agg2 = aggregator("agg2", p2);
  // Both aggregators answer before a sidecar sends (http_forward would retry, but this is quicker).
  ASSERT_TRUE(wait_until([&] { return agg1->err().find("running") != std::string::npos; }, 20s));
  ASSERT_TRUE(wait_until([&] { return agg2->err().find("running") != std::string::npos; }, 20s));
  sidecar("side1", p1, true);
  sidecar("side2", p2, false);
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "agg1.ndjson").size() == 60; }, 30s));
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "agg2.ndjson").size() == 60; }, 30s));
  std::map<std::string, std::string> side_id;
  for (const auto &r : records(d / "side1.ndjson")) side_id[r.message] = r.pattern_id;
  ASSERT_EQ(side_id.size(), 60u);
  std::set<std::string> distinct;
  for (const char *agg : {"agg1.ndjson", "agg2.ndjson"}) {
    const auto recs = records(d / agg);
    ASSERT_EQ(recs.size(), 60u) << agg;
    for (const auto &r : recs) {
      ASSERT_EQ(r.pattern_id.size(), 16u) << agg << ": " << r.message;
      EXPECT_EQ(r.pattern_id, side_id[r.message]) << agg << ": " << r.message;
      distinct.insert(r.pattern_id);
    }
  }
  EXPECT_EQ(distinct.size(), 3u);  // kSsh's three templates
  for (auto *a : {agg1.get(), agg2.get()}) {
    a->kill(SIGTERM);
    EXPECT_EQ(a->wait_exit(20s), 0) << a->err();
  }
}
