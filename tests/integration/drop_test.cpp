// drop through the real binary: dummy records (rotating services and messages, stepped
// timestamps), the filter, the stdout output into a file; every rule, the rate limit on record
// time, the summary records in the output, the metrics, and each bad option.
#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <map>

#include "process.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

struct Rec {
  std::string service, level, message, event_type, source, timestamp;
  std::map<std::string, std::string> meta;
  bool summary() const { return event_type == "suppressed"; }
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
    r.level = doc["level"].GetString();
    r.message = doc["message"].GetString();
    r.source = doc["source"].GetString();
    r.timestamp = doc["timestamp"].GetString();
    if (doc.HasMember("event_type")) r.event_type = doc["event_type"].GetString();
    for (auto &m : doc["meta_json"].GetObject()) r.meta[m.name.GetString()] = m.value.GetString();
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<Rec> summaries(const std::vector<Rec> &all) {
  std::vector<Rec> s;
  for (const auto &r : all)
    if (r.summary()) s.push_back(r);
  return s;
}

std::map<std::string, int> count_by_service(const std::vector<Rec> &all) {
  std::map<std::string, int> n;
  for (const auto &r : all)
    if (!r.summary()) n[r.service]++;
  return n;
}

std::string head(const std::string &extra = "  exit_when_done: true\n") {
  return "service:\n  plugins_dir: [" DEVMESH_PLUGIN_DIR "]\n" + extra + "pipeline:\n";
}

std::string pipeline(const TempDir &d, const std::string &inputs, const std::string &filter,
                     const std::string &extra = "  exit_when_done: true\n") {
  return head(extra) + "  inputs:\n" + inputs + "  filters:\n    - " + filter +
         "\n  outputs:\n    - {name: stdout, match: 'node.*', path: " + d / "out.ndjson" + "}\n";
}

// Runs to the end (exit_when_done) and returns what the output got.
std::vector<Rec> run(const TempDir &d, const std::string &inputs, const std::string &filter) {
  write_file(d / "p.yaml", pipeline(d, inputs, filter));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  EXPECT_EQ(e.wait_exit(60s), 0) << e.err();
  return records(d / "out.ndjson");
}

std::string dry_run_errors(const std::string &filter) {
  TempDir d;
  write_file(d / "p.yaml", head() + "  inputs:\n    - {name: dummy}\n  filters:\n    - " + filter +
                               "\n  outputs:\n    - {name: 'null'}\n");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(30s), 1) << p.err();
  return p.err();
}

const std::string kT0 = "'2025-01-01T00:00:00Z'";

TEST(Drop, ListedServicesAreDroppedByExactNameAndByGlob) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 40,"
                 " services: [noisy, kube-proxy, kube-dns, app]}\n",
                 "{name: drop, services: [noisy, 'kube-*'], summaries: none}");
  EXPECT_EQ(count_by_service(got), (std::map<std::string, int>{{"app", 10}}));
}

TEST(Drop, MessagesMatchingAnyRegexAreDropped) {
  TempDir d;
  // "timeout later" and "xzy" hold the patterns' literal parts without matching them.
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 80, messages: ['GET /health"
                 " 200', 'request timeout 30s', 'Timeout 5s', 'kept {seq}', 'timeout later',"
                 " 'x.y', xzy, 'a (b) c']}\n",
                 "{name: drop, message_regex: ['^GET /health', 'timeout [0-9]+s', 'x\\.y',"
                 " '\\(b\\)'], summaries: none}");
  std::map<std::string, int> kept;
  for (const auto &r : got) kept[r.message.rfind("kept ", 0) == 0 ? "kept" : r.message]++;
  EXPECT_EQ(kept, (std::map<std::string, int>{
                      {"Timeout 5s", 10}, {"kept", 10}, {"timeout later", 10}, {"xzy", 10}}));
}

TEST(Drop, RegexIgnoresCaseWhenAsked) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 20,"
                 " messages: ['request TIMEOUT 30s', 'kept {seq}']}\n",
                 "{name: drop, message_regex: 'timeout [0-9]+s', regex_ignore_case: true,"
                 " summaries: none}");
  EXPECT_EQ(got.size(), 10u);
}

TEST(Drop, RecordsBelowMinLevelAreDroppedAndRecordsWithoutALevelKept) {
  TempDir d;
  std::string in;
  for (std::string l : {"DEBUG", "INFO", "WARN", "WARNING", "ERROR", "NONE"})
    in += "    - {name: dummy, tag: node.j, rate: 0, count: 3, level: " + l + ", service: " + l +
          "}\n";
  auto got = run(d, in, "{name: drop, min_level: WARN, summaries: none}");
  EXPECT_EQ(count_by_service(got),
            (std::map<std::string, int>{{"WARN", 3}, {"WARNING", 3}, {"ERROR", 3}, {"NONE", 3}}));
}

TEST(Drop, RecordsAtOrAboveKeepLevelAreNeverDropped) {
  TempDir d;
  std::string in;
  for (std::string l : {"INFO", "WARN", "ERROR", "CRITICAL", "FATAL"})
    in += "    - {name: dummy, tag: node.j, rate: 0, count: 5, level: " + l +
          ", service: noisy, message: '" + l + " {seq}'}\n";
  // Every rule would drop everything; ERROR and above (the default keep_level) pass anyway.
  auto got = run(d, in,
                 "{name: drop, services: [noisy], message_regex: '.', min_level: FATAL,"
                 " rate: 1/h, burst: 1, summaries: none}");
  std::map<std::string, int> by_level;
  for (const auto &r : got) by_level[r.level]++;
  EXPECT_EQ(by_level, (std::map<std::string, int>{{"ERROR", 5}, {"CRITICAL", 5}, {"FATAL", 5}}));

  TempDir d2;
  got = run(d2, in, "{name: drop, services: [noisy], keep_level: WARN, summaries: none}");
  by_level.clear();
  for (const auto &r : got) by_level[r.level]++;
  EXPECT_EQ(by_level,
            (std::map<std::string, int>{{"WARN", 5}, {"ERROR", 5}, {"CRITICAL", 5}, {"FATAL", 5}}));
}

// 2000 records, two services in turn, 2 ms apart in record time: each service logs 250/s for
// 4 s. At 50/s with a burst of 10 each keeps 10 + 50/s * 3.996 s = 209 (the refill is exact for
// these round numbers); the rest, 791 each, is summarised per 2 s window of record time.
TEST(Drop, RateLimitsEachServiceOnRecordTimeAndSummarisesEachWindow) {
  TempDir d;
  write_file(d / "p.yaml",
             pipeline(d,
                      "    - {name: dummy, tag: node.journal, rate: 0, count: 2000,"
                      " services: [noisy, chatty], timestamp_start: " +
                          kT0 + ", timestamp_step: 2ms}\n",
                      "{name: drop, rate: 50/s, burst: 10, summary_interval: 2s}", ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  // The first window's summaries come when the second window starts; the second window's when
  // it has been open for 2 s on the clock.
  ASSERT_TRUE(wait_until([&] { return summaries(records(d / "out.ndjson")).size() >= 4; }, 30s))
      << e.err();
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  auto got = records(d / "out.ndjson");
  EXPECT_EQ(count_by_service(got), (std::map<std::string, int>{{"noisy", 209}, {"chatty", 209}}));

  auto s = summaries(got);
  ASSERT_EQ(s.size(), 4u);
  std::map<std::string, long> total;
  for (const auto &r : s) {
    EXPECT_EQ(r.level, "WARN");
    EXPECT_EQ(r.source, "drop.0");
    EXPECT_EQ(r.meta.at("suppressed"), r.meta.at("suppressed_by_rate"));
    EXPECT_EQ(r.message, "suppressed " + r.meta.at("suppressed") + " records from " + r.service +
                             " between " + r.meta.at("first_seen") + " and " +
                             r.meta.at("last_seen"));
    EXPECT_EQ(r.timestamp, r.meta.at("last_seen"));
    total[r.service] += std::atol(r.meta.at("suppressed").c_str());
  }
  EXPECT_EQ(total, (std::map<std::string, long>{{"noisy", 791}, {"chatty", 791}}));
  // Windows follow record time: each service's first ends before 00:00:02, its second starts
  // at or after it.
  for (std::string service : {"noisy", "chatty"}) {
    std::vector<Rec> w;
    for (const auto &r : s)
      if (r.service == service) w.push_back(r);
    ASSERT_EQ(w.size(), 2u) << service;
    if (w[0].meta["first_seen"] > w[1].meta["first_seen"]) std::swap(w[0], w[1]);
    EXPECT_LT(w[0].meta["last_seen"], "2025-01-01T00:00:02") << service;
    EXPECT_GE(w[1].meta["first_seen"], "2025-01-01T00:00:02") << service;
  }
}

TEST(Drop, AnOpenWindowIsSummarisedIntoTheOutputAtShutdown) {
  TempDir d;
  // 100 of 200 records are dropped by service within 199 ms of record time; an hour's window
  // never closes while the engine runs: only the shutdown can summarise it.
  write_file(d / "p.yaml", pipeline(d,
                                    "    - {name: dummy, tag: node.j, rate: 0, count: 200,"
                                    " services: [noisy, kept], host: h1, timestamp_start: " +
                                        kT0 + ", timestamp_step: 1ms}\n",
                                    "{name: drop, services: [noisy], summary_interval: 1h}", ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_TRUE(wait_until([&] { return records(d / "out.ndjson").size() >= 100; }, 30s)) << e.err();
  EXPECT_TRUE(summaries(records(d / "out.ndjson")).empty());
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  auto got = records(d / "out.ndjson");
  EXPECT_EQ(count_by_service(got), (std::map<std::string, int>{{"kept", 100}}));
  auto s = summaries(got);
  ASSERT_EQ(s.size(), 1u) << e.err();
  EXPECT_EQ(s[0].service, "noisy");
  EXPECT_EQ(s[0].meta.at("suppressed"), "100");
  EXPECT_EQ(s[0].meta.at("suppressed_by_service"), "100");
  EXPECT_EQ(s[0].meta.at("first_seen"), "2025-01-01T00:00:00.000000Z");
  EXPECT_EQ(s[0].meta.at("last_seen"), "2025-01-01T00:00:00.198000Z");
  EXPECT_EQ(s[0].message,
            "suppressed 100 records from noisy between 2025-01-01T00:00:00.000000Z and "
            "2025-01-01T00:00:00.198000Z");
  EXPECT_EQ(e.err().find("not yet summarised"), std::string::npos) << e.err();
}

TEST(Drop, AnOpenWindowIsSummarisedWhenTheEngineExitsAfterItsInputsFinished) {
  TempDir d;
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 50, service: noisy,"
                 " timestamp_start: " +
                     kT0 + ", timestamp_step: 1s}\n",
                 "{name: drop, services: [noisy], summary_interval: 1h}");
  auto s = summaries(got);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].meta.at("suppressed"), "50");
  EXPECT_EQ(s[0].meta.at("last_seen"), "2025-01-01T00:00:49.000000Z");
  EXPECT_TRUE(count_by_service(got).empty());
}

TEST(Drop, RatePerMinuteAndPerHourRefillOnRecordTime) {
  TempDir d;
  // 20 records 500 ms apart at 60/m: half a token each, so every other record passes.
  auto got = run(d,
                 "    - {name: dummy, tag: node.j, rate: 0, count: 20, service: m,"
                 " timestamp_start: " +
                     kT0 +
                     ", timestamp_step: 500ms}\n"
                     "    - {name: dummy, tag: node.j, rate: 0, count: 20, service: h,"
                     " timestamp_start: " +
                     kT0 + ", timestamp_step: 30m}\n",
                 "{name: drop, rate: 60/m, burst: 1, summaries: none}");
  auto n = count_by_service(got);
  EXPECT_EQ(n["m"], 10);
  EXPECT_EQ(n["h"], 20) << "30 min apart, a 60/m bucket is always full again";

  TempDir d2;
  got = run(d2,
            "    - {name: dummy, tag: node.j, rate: 0, count: 20, service: h,"
            " timestamp_start: " +
                kT0 + ", timestamp_step: 30m}\n",
            "{name: drop, rate: 1/h, burst: 1, summaries: none}");
  EXPECT_EQ(count_by_service(got)["h"], 10);
}

TEST(Drop, DropsOfEveryRuleAreSummarisedPerServiceWithTheirReasons) {
  TempDir d;
  write_file(d / "p.yaml",
             pipeline(d,
                      "    - {name: dummy, tag: node.journal, rate: 0, count: 30,"
                      " services: [noisy, app, app], messages: ['x {seq}', 'ping', 'y {seq}'],"
                      " timestamp_start: " +
                          kT0 + "}\n",
                      "{name: drop, services: [noisy], message_regex: '^ping$',"
                      " summary_interval: 500ms}",
                      ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_TRUE(wait_until([&] { return summaries(records(d / "out.ndjson")).size() >= 2; }, 30s))
      << e.err();
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  auto got = records(d / "out.ndjson");
  EXPECT_EQ(count_by_service(got), (std::map<std::string, int>{{"app", 10}}));
  std::map<std::string, Rec> s;
  for (const auto &r : summaries(got)) s[r.service] = r;
  ASSERT_EQ(s.size(), 2u);
  // The summary of noisy is visible although the filter drops noisy: emitted records start
  // after the emitting filter.
  EXPECT_EQ(s["noisy"].meta["suppressed"], "10");
  EXPECT_EQ(s["noisy"].meta["suppressed_by_service"], "10");
  EXPECT_EQ(s["app"].meta["suppressed"], "10");
  EXPECT_EQ(s["app"].meta["suppressed_by_regex"], "10");
  EXPECT_EQ(s["app"].message,
            "suppressed 10 records from app between 2025-01-01T00:00:00.000000Z"
            " and 2025-01-01T00:00:00.000000Z");
}

TEST(Drop, SummariesCanBeLimitedToTheRateLimit) {
  TempDir d;
  write_file(d / "p.yaml",
             pipeline(d,
                      "    - {name: dummy, tag: node.j, rate: 0, count: 40, services: [noisy, app],"
                      " timestamp_start: " +
                          kT0 + "}\n",
                      "{name: drop, services: [noisy], rate: 5/s, burst: 5, summaries: rate,"
                      " summary_interval: 300ms}",
                      ""));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  ASSERT_TRUE(wait_until([&] { return !summaries(records(d / "out.ndjson")).empty(); }, 30s))
      << e.err();
  std::this_thread::sleep_for(1s);  // a wrong summary of noisy would come with it
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  auto s = summaries(records(d / "out.ndjson"));
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].service, "app");
  EXPECT_EQ(s[0].meta["suppressed_by_rate"], "15");
}

TEST(Drop, DropsAreCountedInMetricsByReason) {
  TempDir d;
  int port = free_port();
  write_file(d / "p.yaml",
             pipeline(d,
                      "    - {name: dummy, tag: node.j, rate: 0, count: 40,"
                      " services: [noisy, app, app, app], messages: ['a', 'b', 'ping', 'c'],"
                      " timestamp_start: " +
                          kT0 + "}\n",
                      "{name: drop, alias: cut, services: [noisy], message_regex: ping,"
                      " rate: 5/s, burst: 5, summaries: none}",
                      "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  std::string body;
  auto metric = [&](const std::string &labels) {
    return metric_value(body, "devmesh_drop_records_dropped_total", labels);
  };
  // 10 noisy by service, 10 ping by regex, 20 left of app: 5 pass, 15 over the rate.
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &body, d.path()) ==
                   200 &&
               metric("reason=\"rate\"") == 15;
      },
      20s))
      << body << e.err();
  EXPECT_EQ(metric("reason=\"service\""), 10);
  EXPECT_EQ(metric("reason=\"regex\""), 10);
  EXPECT_EQ(metric("reason=\"level\""), 0);
  EXPECT_EQ(metric_value(body, "devmesh_records_dropped_total", "instance=\"cut\""), 35);
  EXPECT_EQ(metric_value(body, "devmesh_drop_services_tracked", "instance=\"cut\""), 2);
  e.kill(SIGTERM);
  EXPECT_EQ(e.wait_exit(30s), 0) << e.err();
}

TEST(Drop, ServicesBeyondMaxServicesAreNotRateLimitedAndAreCounted) {
  TempDir d;
  int port = free_port();
  write_file(d / "p.yaml",
             pipeline(d,
                      "    - {name: dummy, tag: node.j, rate: 0, count: 30, services: [a, b, c],"
                      " timestamp_start: " +
                          kT0 + "}\n",
                      "{name: drop, rate: 1/h, burst: 1, max_services: 2, summaries: none}",
                      "  http_listen: 127.0.0.1:" + std::to_string(port) + "\n"));
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  std::string body;
  ASSERT_TRUE(wait_until(
      [&] {
        return http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", &body, d.path()) ==
                   200 &&
               metric_value(body, "devmesh_drop_untracked_records_total", "") == 10;
      },
      20s))
      << body << e.err();
  e.kill(SIGTERM);
  ASSERT_EQ(e.wait_exit(30s), 0) << e.err();
  EXPECT_EQ(count_by_service(records(d / "out.ndjson")),
            (std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 10}}));
  EXPECT_NE(e.err().find("max_services (2)"), std::string::npos) << e.err();
}

TEST(DropConfig, BadRegexIsNamedWithItsKey) {
  auto err = dry_run_errors("{name: drop, message_regex: ['ok', 'a(b', '[z-a]']}");
  EXPECT_NE(err.find("message_regex[1]: 'a(b' is not a valid POSIX extended regex"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("message_regex[2]: '[z-a]' is not a valid POSIX extended regex"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("the filter plugin 'drop' refused its configuration"), std::string::npos)
      << err;
}

TEST(DropConfig, BadRateIsNamedWithItsKey) {
  for (std::string rate : {"fast/s", "100", "100/fortnight", "0/s", "-5/s", "/s"}) {
    auto err = dry_run_errors("{name: drop, rate: '" + rate + "'}");
    EXPECT_NE(err.find("rate: '" + rate + "' is not a rate: expected N/s, N/m or N/h"),
              std::string::npos)
        << err;
  }
}

TEST(DropConfig, BurstWithoutRateIsRefused) {
  auto err = dry_run_errors("{name: drop, burst: 10}");
  EXPECT_NE(err.find("burst: needs rate"), std::string::npos) << err;
}

TEST(DropConfig, UnknownLevelsAndSummaryModeListTheChoices) {
  auto err = dry_run_errors("{name: drop, min_level: LOUD, keep_level: never, summaries: some}");
  EXPECT_NE(err.find("min_level: must be one of: DEBUG, INFO"), std::string::npos) << err;
  EXPECT_NE(err.find("keep_level: must be one of: DEBUG, INFO"), std::string::npos) << err;
  EXPECT_NE(err.find("summaries: must be one of: all, rate, none"), std::string::npos) << err;
}

TEST(DropConfig, SummaryIntervalBelowItsBoundIsRefused) {
  auto err = dry_run_errors("{name: drop, summary_interval: 10ms}");
  EXPECT_NE(err.find("summary_interval: must be between"), std::string::npos) << err;
}

}  // namespace
