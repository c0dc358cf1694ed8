// dedup through the real binary: dummy records (rotating messages, stepped timestamps), the
// filter, the stdout output into a file; drop and collapse windows on record time, replays,
// configurable keys, the max_keys bound with its eviction count, and each bad option.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <map>

#include "http_support.h"
#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

struct Rec {
  std::string service, message, timestamp, event_id;
  std::map<std::string, std::string> meta;
  bool summary() const { return meta.count("repeat_count") != 0; }
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
    r.timestamp = doc["timestamp"].GetString();
    r.event_id = doc["event_id"].GetString();
    for (auto &m : doc["meta_json"].GetObject()) r.meta[m.name.GetString()] = m.value.GetString();
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Rec> summaries(const std::vector<Rec> &all) {
  std::vector<Rec> s;
  for (const auto &r : all)
    if (r.summary()) s.push_back(r);
  std::sort(s.begin(), s.end(),
            [](const Rec &a, const Rec &b) { return a.timestamp < b.timestamp; });
  return s;
}

// message -> how many records (summaries aside) carried it.
std::map<std::string, int> count_by_message(const std::vector<Rec> &all) {
  std::map<std::string, int> n;
  for (const auto &r : all)
    if (!r.summary()) n[r.message]++;
  return n;
}

std::string pipeline(const TempDir &d, const std::string &inputs, const std::string &filter,
                     const std::string &extra = "  exit_when_done: true\n") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n" + extra + "pipeline:\n  inputs:\n" +
         inputs + "  filters:\n    - " + filter +
         "\n  outputs:\n    - {name: stdout, match: 'node.*', path: " + d / "out.ndjson" + "}\n";
}

std::vector<Rec> run(const TempDir &d, const std::string &inputs, const std::string &filter) {
  write_file(d / "p.yaml", pipeline(d, inputs, filter));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  EXPECT_EQ(e.wait_exit(60s), 0) << e.err();
  return records(d / "out.ndjson");
}

std::string dry_run_errors(const std::string &filter) {
  TempDir d;
  write_file(d / "p.yaml", pipeline(d, "    - {name: dummy}\n", filter));
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(30s), 1) << p.err();
  return p.err();
}

const std::string kT0 = "'2025-01-01T00:00:00Z'";

// 30 records 1 s apart in record time, all generated at once: "same" at seconds 0, 1, 3, 4, 6,
// 7, ... 28. Windows of 10 s start at its first occurrence: at 0, then 10, then 21.
const std::string kSameEveryTwoOfThree =
    "    - {name: dummy, tag: node.j, rate: 0, count: 30, host: h1,"
    " messages: [same, same, 'unique {seq}'], timestamp_start: " +
    kT0 + ", timestamp_step: 1s}\n";

TEST(Dedup, DropModeRemovesRepeatsWithinTheWindowMeasuredOnRecordTime) {
  TempDir d;
  auto got = run(d, kSameEveryTwoOfThree, "{name: dedup, window: 10s}");
  auto n = count_by_message(got);
  EXPECT_EQ(n["same"], 3) << "the window is record time: all 30 arrived together";
  EXPECT_EQ(n.size(), 11u) << "10 unique messages pass";
  std::vector<std::string> same_at;
  for (const auto &r : got)
    if (r.message == "same") same_at.push_back(r.timestamp.substr(11));
  EXPECT_EQ(same_at,
            (std::vector<std::string>{"00:00:00.000000Z", "00:00:10.000000Z", "00:00:21.000000Z"}));
  EXPECT_TRUE(summaries(got).empty());
}

TEST(Dedup, RecordsReplayedLaterWithTheirOriginalTimestampsAreDropped) {
  TempDir d;
  // The same 100 records (same host, service, message, timestamps) twice: once at once, once
  // trickling in over ~2 s, longer than the 1 s window on any clock but the records' own.
  const std::string records_spec =
      "count: 100, host: h1, message: 'entry {seq}',"
      " timestamp_start: " +
      kT0 + ", timestamp_step: 10ms";
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, " + records_spec +
                     "}\n"
                     "    - {name: dummy, tag: node.replay, rate: 50, " +
                     records_spec + "}\n",
                 "{name: dedup, window: 1s}");
  auto n = count_by_message(got);
  EXPECT_EQ(got.size(), 100u);
  EXPECT_EQ(n.size(), 100u);
  for (const auto &[m, c] : n) EXPECT_EQ(c, 1) << m;
}

// A sidecar whose request timed out sends the same records again (same event_ids) while the
// first copies are still on their way. The copy must pass (the store keeps one by event_id):
// dropped, its acknowledgement would complete at once and a crash could lose the first copy.
TEST(Dedup, TheSameRecordSentAgainPassesAndOnlyRealRepeatsAreDropped) {
  for (std::string mode : {"drop", "collapse"}) {
    TempDir d;
    const int port = free_port(), metrics = free_port();
    write_file(d / "p.yaml",
               pipeline(d,
                        "    - {name: http, tag: node.h, listen: '127.0.0.1:" +
                            std::to_string(port) + "'}\n",
                        "{name: dedup, window: 1h, mode: " + mode + "}",
                        "  http_listen: 127.0.0.1:" + std::to_string(metrics) + "\n"));
    Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/ingest/logs";
    ASSERT_TRUE(wait_until([&] { return libcurl_post(url, "{\"logs\":[]}").status == 200; }, 20s))
        << e.err();
    auto body = [](const char *id) {
      return std::string(R"({"logs":[{"timestamp":"2025-01-01T00:00:00Z","service":"s","host":"h",)"
                         R"("level":"INFO","message":"m","event_id":")") +
             id + "\"}]}";
    };
    const char *first = "0123456789abcdef0123456789abcdef";
    const char *repeat = "fedcba9876543210fedcba9876543210";
    for (const char *id : {first, first, repeat, first})
      ASSERT_EQ(libcurl_post(url, body(id)).status, 200) << mode;
    std::string text;
    ASSERT_TRUE(wait_until(
        [&] {
          http_get("http://127.0.0.1:" + std::to_string(metrics) + "/metrics", &text, d.path());
          return metric_value(text, "devmesh_dedup_records_dropped_total", "") == 1;
        },
        20s))
        << mode << ": " << text;
    EXPECT_EQ(metric_value(text, "devmesh_dedup_redeliveries_passed_total", ""), 2) << mode;
    e.kill(SIGTERM);
    ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
    auto got = records(d / "out.ndjson");
    size_t copies = 0;
    for (const auto &r : got) {
      if (r.event_id == first) ++copies;
      EXPECT_NE(r.event_id, repeat) << mode << ": a real repeat is dropped (or collapsed)";
    }
    EXPECT_EQ(copies, 3u) << mode << ": every delivery of the first occurrence passed";
    EXPECT_EQ(summaries(got).size(), mode == "collapse" ? 1u : 0u) << mode;
  }
}

TEST(Dedup, KeyFieldsAreConfigurableIncludingMeta) {
  TempDir d;
  // Every message differs; keyed on the service alone, one record per service passes.
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 20, services: [a, b],"
                 " timestamp_start: " +
                     kT0 + "}\n",
                 "{name: dedup, key: [service]}");
  std::map<std::string, int> by_service;
  for (const auto &r : got) by_service[r.service]++;
  EXPECT_EQ(by_service, (std::map<std::string, int>{{"a", 1}, {"b", 1}}));

  TempDir d2;
  // Same message everywhere; keyed on message and meta.zone, one record per zone passes, and a
  // record without the meta entry is a key of its own.
  got = run(d2,
            "    - {name: dummy, tag: node.j, rate: 0, count: 5, message: m, meta: {zone: x},"
            " timestamp_start: " +
                kT0 +
                "}\n"
                "    - {name: dummy, tag: node.j, rate: 0, count: 5, message: m, meta: {zone: y},"
                " timestamp_start: " +
                kT0 +
                "}\n"
                "    - {name: dummy, tag: node.j, rate: 0, count: 5, message: m,"
                " timestamp_start: " +
                kT0 + "}\n",
            "{name: dedup, key: [message, meta.zone]}");
  std::map<std::string, int> by_zone;
  for (const auto &r : got) by_zone[r.meta.count("zone") ? r.meta.at("zone") : "-"]++;
  EXPECT_EQ(by_zone, (std::map<std::string, int>{{"x", 1}, {"y", 1}, {"-", 1}}));
}

TEST(Dedup, CollapseModePassesFirstOccurrencesAndEmitsOneRecordPerWindowOfRepeats) {
  TempDir d;
  // As kSameEveryTwoOfThree at 200 ms steps with a 2 s window: windows of "same" start at 0 s,
  // 2 s and 4.2 s, holding 6, 6 and 5 repeats. The first two close on record time; the last
  // when it has been open 2 s on the clock.
  write_file(d / "p.yaml", pipeline(d,
                                    "    - {name: dummy, tag: node.j, rate: 0, count: 30, host: h1,"
                                    " messages: [same, same, 'unique {seq}'], timestamp_start: " +
                                        kT0 + ", timestamp_step: 200ms}\n",
                                    "{name: dedup, mode: collapse, window: 2s}", ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_TRUE(wait_until([&] { return summaries(records(d / "out.ndjson")).size() >= 3; }, 30s))
      << e.err();
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  auto got = records(d / "out.ndjson");
  auto n = count_by_message(got);
  EXPECT_EQ(n["same"], 3);
  EXPECT_EQ(n.size(), 11u);

  // The collapse records look like the repeated record (same host, service, message) and were
  // not deduplicated again by the filter that emitted them.
  auto s = summaries(got);
  ASSERT_EQ(s.size(), 3u);
  const std::string day = "2025-01-01T";
  EXPECT_EQ(s[0].meta["repeat_count"], "6");
  EXPECT_EQ(s[0].meta["first_seen"], day + "00:00:00.200000Z");
  EXPECT_EQ(s[0].meta["last_seen"], day + "00:00:01.800000Z");
  EXPECT_EQ(s[1].meta["repeat_count"], "6");
  EXPECT_EQ(s[1].meta["first_seen"], day + "00:00:02.400000Z");
  EXPECT_EQ(s[1].meta["last_seen"], day + "00:00:03.800000Z");
  EXPECT_EQ(s[2].meta["repeat_count"], "5");
  EXPECT_EQ(s[2].meta["first_seen"], day + "00:00:04.400000Z");
  EXPECT_EQ(s[2].meta["last_seen"], day + "00:00:05.600000Z");
  for (auto &r : s) {
    EXPECT_EQ(r.message, "same");
    EXPECT_EQ(r.service, "dummy");
    EXPECT_EQ(r.timestamp, r.meta["last_seen"]);
  }
  EXPECT_NE(s[0].event_id, s[1].event_id);
}

TEST(Dedup, CollapseEmitsNothingForKeysThatNeverRepeat) {
  TempDir d;
  write_file(d / "p.yaml", pipeline(d,
                                    "    - {name: dummy, tag: node.j, rate: 0, count: 20,"
                                    " timestamp_start: " +
                                        kT0 + "}\n",
                                    "{name: dedup, mode: collapse, window: 200ms}", ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_TRUE(wait_until([&] { return records(d / "out.ndjson").size() >= 20; }, 30s)) << e.err();
  std::this_thread::sleep_for(1s);  // five windows: any collapse record would be out by now
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  EXPECT_EQ(records(d / "out.ndjson").size(), 20u);
}

TEST(Dedup, PendingRepeatsAreCollapsedIntoTheOutputAtShutdown) {
  TempDir d;
  // 30 records, 10 of each message within 290 ms of record time; an hour's window never closes
  // while the engine runs: only the shutdown can summarise the repeats.
  write_file(d / "p.yaml", pipeline(d,
                                    "    - {name: dummy, tag: node.j, rate: 0, count: 30, host: h1,"
                                    " messages: [a, b, c], timestamp_start: " +
                                        kT0 + ", timestamp_step: 10ms}\n",
                                    "{name: dedup, mode: collapse, window: 1h}", ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_TRUE(wait_until([&] { return records(d / "out.ndjson").size() >= 3; }, 30s)) << e.err();
  EXPECT_TRUE(summaries(records(d / "out.ndjson")).empty());
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  auto got = records(d / "out.ndjson");
  EXPECT_EQ(count_by_message(got), (std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 1}}));
  auto s = summaries(got);
  ASSERT_EQ(s.size(), 3u) << e.err();
  const std::string day = "2025-01-01T00:00:00.";
  std::map<std::string, Rec> by_message;
  for (auto &r : s) by_message[r.message] = r;
  ASSERT_EQ(by_message.size(), 3u);
  EXPECT_EQ(by_message["a"].meta["repeat_count"], "9");
  EXPECT_EQ(by_message["a"].meta["first_seen"], day + "030000Z");
  EXPECT_EQ(by_message["a"].meta["last_seen"], day + "270000Z");
  EXPECT_EQ(by_message["c"].meta["repeat_count"], "9");
  EXPECT_EQ(by_message["c"].meta["last_seen"], day + "290000Z");
  EXPECT_EQ(by_message["c"].timestamp, by_message["c"].meta["last_seen"]);
  EXPECT_EQ(by_message["b"].meta["repeat_count"], "9");
  EXPECT_EQ(e.err().find("not yet summarised"), std::string::npos) << e.err();
}

TEST(Dedup, PendingRepeatsAreCollapsedWhenTheEngineExitsAfterItsInputsFinished) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 20, messages: [same],"
                 " timestamp_start: " +
                     kT0 + ", timestamp_step: 1s}\n",
                 "{name: dedup, mode: collapse, window: 1h}");
  auto s = summaries(got);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].meta["repeat_count"], "19");
  EXPECT_EQ(s[0].meta["last_seen"], "2025-01-01T00:00:19.000000Z");
  EXPECT_EQ(count_by_message(got), (std::map<std::string, int>{{"same", 1}}));
}

TEST(Dedup, MaxKeysBoundsMemoryByEvictingTheLeastRecentlySeenKey) {
  // a b c a b c: with room for 3 keys the second round is repeats; with room for 2, each key
  // was evicted before it came back, so all 6 pass and 4 evictions are counted.
  TempDir d;
  const std::string in =
      "    - {name: dummy, tag: node.j, rate: 0, count: 6,"
      " messages: [a, b, c], timestamp_start: " +
      kT0 + "}\n";
  EXPECT_EQ(run(d, in, "{name: dedup, max_keys: 3}").size(), 3u);

  TempDir d2;
  int port = free_port();
  write_file(d2 / "p.yaml", pipeline(d2, in, "{name: dedup, alias: dd, max_keys: 2}",
                                     "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  Process e({DEVMESH_BIN, "-c", d2 / "p.yaml"}, d2.path(), "engine");
  std::string body;
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &body,
                        d2.path()) == 200 &&
               metric_value(body, "devmesh_dedup_evictions_total", "instance=\"dd\"") == 4;
      },
      20s))
      << body << e.err();
  EXPECT_EQ(metric_value(body, "devmesh_dedup_keys", "instance=\"dd\""), 2);
  EXPECT_EQ(metric_value(body, "devmesh_dedup_records_dropped_total", "instance=\"dd\""), 0);
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  EXPECT_EQ(records(d2 / "out.ndjson").size(), 6u);
}

TEST(Dedup, ManyKeysThroughASmallTableEvictTheColdOnesAndKeepTheHotOne) {
  // "hot" every other record, between 3000 cold keys, four rounds. With 1000 slots each cold
  // key is evicted before it comes back (the index deletes 11000 times), while "hot", always
  // recently seen, stays: one hot record passes and every cold one. With 4000 slots nothing is
  // evicted and each key passes once.
  std::string messages;
  for (int k = 0; k < 3000; ++k) messages += (k ? ", hot, k" : "hot, k") + std::to_string(k);
  const std::string in =
      "    - {name: dummy, tag: node.j, rate: 0, count: 24000, batch: 1000,"
      " messages: [" +
      messages + "], timestamp_start: " + kT0 + "}\n";
  TempDir d;
  auto n = count_by_message(run(d, in, "{name: dedup, window: 1h, max_keys: 1000}"));
  EXPECT_EQ(n["hot"], 1);
  EXPECT_EQ(n.size(), 3001u);
  EXPECT_EQ(n["k0"], 4);
  EXPECT_EQ(n["k2999"], 4);
  TempDir d2;
  n = count_by_message(run(d2, in, "{name: dedup, window: 1h, max_keys: 4000}"));
  EXPECT_EQ(n.size(), 3001u);
  for (const auto &[m, c] : n) ASSERT_EQ(c, 1) << m;
}

TEST(Dedup, EvictedKeyWithRepeatsIsSummarisedAtOnceInCollapseMode) {
  TempDir d;
  // a a b c: with room for 2 keys, c evicts a, whose one repeat is summarised then.
  write_file(d / "p.yaml",
             pipeline(d,
                      "    - {name: dummy, tag: node.j, rate: 0, count: 4, messages: [a, a, b, c],"
                      " timestamp_start: " +
                          kT0 + "}\n",
                      "{name: dedup, mode: collapse, max_keys: 2, window: 1h}"));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_EQ(e.wait_exit(60s), 0) << e.err();
  auto got = records(d / "out.ndjson");
  EXPECT_EQ(count_by_message(got), (std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 1}}));
  auto s = summaries(got);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].message, "a");
  EXPECT_EQ(s[0].meta["repeat_count"], "1");
}

TEST(DedupConfig, UnknownKeyFieldIsNamed) {
  auto err = dry_run_errors("{name: dedup, key: [host, colour, 'meta.']}");
  EXPECT_NE(err.find("key[1]: unknown field 'colour'"), std::string::npos) << err;
  EXPECT_NE(err.find("key[2]: unknown field 'meta.'"), std::string::npos) << err;
  EXPECT_NE(err.find("the filter plugin 'dedup' refused its configuration"), std::string::npos)
      << err;
}

TEST(DedupConfig, EmptyKeyIsRefused) {
  auto err = dry_run_errors("{name: dedup, key: []}");
  EXPECT_NE(err.find("key: needs at least one field"), std::string::npos) << err;
}

TEST(DedupConfig, UnknownModeListsTheChoices) {
  auto err = dry_run_errors("{name: dedup, mode: squash}");
  EXPECT_NE(err.find("mode: must be one of: drop, collapse"), std::string::npos) << err;
}

TEST(DedupConfig, WindowAndMaxKeysOutsideTheirBoundsAreRefused) {
  auto err = dry_run_errors("{name: dedup, window: 0s, max_keys: 0}");
  EXPECT_NE(err.find("window: must be between"), std::string::npos) << err;
  EXPECT_NE(err.find("max_keys: must be between 1 and"), std::string::npos) << err;
}

}  // namespace

// A collapse record is a copy of the repeated record: its meta values keep their JSON types
// (the filter remembers each value's type with its bytes).
TEST(Dedup, CollapseRecordKeepsTheTypesOfTheRepeatedRecordsMeta) {
  TempDir d;
  const int port = free_port();
  write_file(
      d / "p.yaml",
      pipeline(d,
               "    - {name: http, tag: node.h, listen: 127.0.0.1:" + std::to_string(port) + "}\n",
               "{name: dedup, mode: collapse, window: 1s}", ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  // Three occurrences (their own event ids: one id twice would be one record replayed).
  auto rec = [](int i) {
    return R"({"event_id":"occurrence-)" + std::to_string(i) +
           R"(","service":"api","host":"h1","message":"again","meta_json":{"pid":123,)"
           R"("ok":true,"ratio":0.5,"none":null,"nested":{"a":[1,"x"]},"s":"text"}})";
  };
  HttpResult r;
  ASSERT_TRUE(wait_until(
      [&] {
        r = libcurl_post("http://127.0.0.1:" + std::to_string(port) + "/ingest/logs",
                         "[" + rec(1) + "," + rec(2) + "," + rec(3) + "]");
        return r.status != 0;
      },
      30s))
      << e.err();
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string out = d / "out.ndjson";
  auto summary = [&]() -> std::string {
    for (const auto &line : read_lines(out))
      if (line.find("\"repeat_count\"") != std::string::npos) return line;
    return "";
  };
  ASSERT_TRUE(wait_until([&] { return !summary().empty(); }, 30s)) << e.err();
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  rapidjson::Document doc = parse_json(summary());
  ASSERT_TRUE(doc.IsObject()) << summary();
  const auto &m = doc["meta_json"];
  EXPECT_TRUE(m["pid"].IsInt() && m["pid"].GetInt() == 123) << summary();
  EXPECT_TRUE(m["ok"].IsBool() && m["ok"].GetBool()) << summary();
  EXPECT_TRUE(m["ratio"].IsDouble()) << summary();
  EXPECT_TRUE(m["none"].IsNull()) << summary();
  EXPECT_TRUE(m["nested"].IsObject() && m["nested"]["a"].IsArray()) << summary();
  EXPECT_TRUE(m["s"].IsString()) << summary();
  EXPECT_EQ(std::string(m["repeat_count"].GetString()), "2") << summary();
}
