// The parser filter through the real binary: dummy records (and real journal entries) carrying
// JSON, logfmt, key=value and free-text messages, the filter, the stdout output into a file;
// each format, the column mapping, time formats, types, the limits by service and unit, the
// counted failures, and every bad option.
#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <filesystem>
#include <map>

#include "http_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// One output line, its meta as JSON text per key (strings quoted), so types are checked.
struct Out {
  std::string timestamp, service, level, trace_id, span_id, event_type, error_code, message;
  std::map<std::string, std::string> meta;  // key -> JSON text of the value
};

std::string json_text(const rapidjson::Value &v) {
  rapidjson::StringBuffer b;
  rapidjson::Writer<rapidjson::StringBuffer> w(b);
  v.Accept(w);
  return b.GetString();
}

std::vector<Out> outputs(const std::string &path) {
  std::vector<Out> out;
  for (const auto &doc : read_ndjson(path)) {
    Out o;
    o.timestamp = str_field(doc, "timestamp");
    o.service = str_field(doc, "service");
    o.level = str_field(doc, "level");
    o.trace_id = str_field(doc, "trace_id");
    o.span_id = str_field(doc, "span_id");
    o.event_type = str_field(doc, "event_type");
    o.error_code = str_field(doc, "error_code");
    o.message = str_field(doc, "message");
    if (doc.HasMember("meta_json") && doc["meta_json"].IsObject())
      for (const auto &m : doc["meta_json"].GetObject())
        if (std::string(m.name.GetString()) != "seq")
          o.meta[m.name.GetString()] = json_text(m.value);
    out.push_back(std::move(o));
  }
  return out;
}

// YAML single-quoted.
std::string quoted(const std::string &s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

std::string messages_yaml(const std::vector<std::string> &messages) {
  std::string y = "[";
  for (size_t i = 0; i < messages.size(); ++i) y += (i ? ", " : "") + quoted(messages[i]);
  return y + "]";
}

// Runs one dummy input giving each message once (in order) through `filter` to the end.
std::vector<Out> parse_all(const std::vector<std::string> &messages, const std::string &filter,
                           const std::string &input_extra = "") {
  TempDir d;
  const std::string yaml =
      plugins_head("  exit_when_done: true\n") +
      "  inputs:\n    - {name: dummy, rate: 0, count: " + std::to_string(messages.size()) +
      ", messages: " + messages_yaml(messages) + input_extra + "}\n  filters:\n    - " + filter +
      "\n  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n";
  write_file(d / "p.yaml", yaml);
  Process e({DEVMESH_BIN, "-c", d / "p.yaml"}, d.path(), "engine");
  EXPECT_EQ(e.wait_exit(60s), 0) << e.err();
  return outputs(d / "out.ndjson");
}

std::string dry_run_errors(const std::string &filter) {
  TempDir d;
  write_file(d / "p.yaml", plugins_head() + "  inputs:\n    - {name: dummy}\n  filters:\n    - " +
                               filter + "\n  outputs:\n    - {name: 'null'}\n");
  Process p({DEVMESH_BIN, "--dry-run", "-c", d / "p.yaml"}, d.path(), "dry");
  EXPECT_EQ(p.wait_exit(30s), 1) << p.err();
  return p.err();
}

// An engine that keeps running with /metrics on a port: waits until `name` (with label) reads
// `want`, then stops it; the records it wrote.
std::vector<Out> run_until_metric(const std::vector<std::string> &messages,
                                  const std::string &filter, const std::string &name,
                                  const std::string &label, double want, std::string *metrics) {
  TempDir d;
  const int port = free_port();
  Devmesh e(
      d, "engine",
      plugins_head("  http_listen: 127.0.0.1:" + std::to_string(port) + "\n") +
          "  inputs:\n    - {name: dummy, rate: 0, count: " + std::to_string(messages.size()) +
          ", messages: " + messages_yaml(messages) + "}\n  filters:\n    - " + filter +
          "\n  outputs:\n    - {name: stdout, path: " + d / "out.ndjson" + "}\n");
  EXPECT_TRUE(wait_until(
      [&] {
        http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", metrics, d.path());
        return find_metric(*metrics, name, label) == want;
      },
      30s))
      << name << " " << label << " never read " << want << ":\n"
      << *metrics << e->err();
  EXPECT_TRUE(wait_settled(port, d.path())) << e->err();
  http_get("http://127.0.0.1:" + std::to_string(port) + "/metrics", metrics, d.path());
  e->kill(SIGTERM);
  EXPECT_EQ(e->wait_exit(30s), 0) << e->err();
  return outputs(d / "out.ndjson");
}

const Out *find(const std::vector<Out> &v, const std::string &message) {
  for (const auto &o : v)
    if (o.message == message) return &o;
  ADD_FAILURE() << "no record with message '" << message << "'";
  static const Out none;
  return &none;
}

// ---- formats ----------------------------------------------------------------------------------

TEST(Parser, AJsonMessageFillsTheColumnsAndTheRestGoesIntoTypedMeta) {
  auto got =
      parse_all({R"({"time":"2025-11-28T19:55:40.521872Z","level":"warn","msg":"slow query",)"
                 R"("trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",)"
                 R"("event_type":"db.query","error_code":"E_SLOW","ms":1200,"ratio":0.25,)"
                 R"("ok":true,"user":null,"tags":["a","b"],"ctx":{"db":"main","n":2},)"
                 R"("host":"api-3","service":"billing","note":"caf\u00e9 \"x\""})"},
                "{name: parser, format: json}");
  ASSERT_EQ(got.size(), 1u);
  const Out &o = got[0];
  EXPECT_EQ(o.timestamp, "2025-11-28T19:55:40.521872Z");
  EXPECT_EQ(o.level, "WARN");
  EXPECT_EQ(o.message, "slow query");
  EXPECT_EQ(o.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(o.span_id, "00f067aa0ba902b7");
  EXPECT_EQ(o.event_type, "db.query");
  EXPECT_EQ(o.error_code, "E_SLOW");
  EXPECT_EQ(o.service, "dummy") << "service stays the input's; the field goes to meta";
  EXPECT_EQ(o.meta.at("ms"), "1200");
  EXPECT_EQ(o.meta.at("ratio"), "0.25");
  EXPECT_EQ(o.meta.at("ok"), "true");
  EXPECT_EQ(o.meta.at("user"), "null");
  EXPECT_EQ(o.meta.at("tags"), R"(["a","b"])");
  EXPECT_EQ(o.meta.at("ctx"), R"({"db":"main","n":2})");
  EXPECT_EQ(o.meta.at("host"), R"("api-3")");
  EXPECT_EQ(o.meta.at("service"), R"("billing")");
  EXPECT_EQ(o.meta.at("note"), "\"café \\\"x\\\"\"");
  EXPECT_EQ(o.meta.count("time"), 0u);
  EXPECT_EQ(o.meta.count("msg"), 0u);
}

TEST(Parser, ALogfmtMessageFillsTheColumnsWithQuotedValuesUnescaped) {
  auto got =
      parse_all({R"(ts=2025-11-28T19:55:40.431Z level=error caller=table_manager.go:136 )"
                 R"(msg="uploading \"tables\" failed" traceid=abc123 error_code=E42 n=3 empty=)"},
                "{name: parser, format: logfmt}");
  ASSERT_EQ(got.size(), 1u);
  const Out &o = got[0];
  EXPECT_EQ(o.timestamp, "2025-11-28T19:55:40.431000Z");
  EXPECT_EQ(o.level, "ERROR");
  EXPECT_EQ(o.message, "uploading \"tables\" failed");
  EXPECT_EQ(o.trace_id, "abc123");
  EXPECT_EQ(o.error_code, "E42");
  EXPECT_EQ(o.meta.at("caller"), R"("table_manager.go:136")");
  EXPECT_EQ(o.meta.at("n"), R"("3")") << "logfmt values are text unless `types` says otherwise";
  EXPECT_EQ(o.meta.at("empty"), R"("")");
}

TEST(Parser, ProseAndBrokenLogfmtAreNotTakenForLogfmt) {
  auto got = parse_all({"user logged in", "level=info msg=\"unterminated", "a=1 b \"c\"=2"},
                       "{name: parser, format: logfmt}");
  ASSERT_EQ(got.size(), 3u);
  for (const auto &o : got) EXPECT_TRUE(o.meta.empty()) << o.message;
  find(got, "user logged in");
  find(got, "level=info msg=\"unterminated");
}

TEST(Parser, RegexNamedGroupsFillTheColumnsAndTheTimeReadsWithItsFormat) {
  auto got =
      parse_all({"2025-11-28 10:00:01,123 ERROR [main] E1001 connection refused",
                 "2025-11-28 10:00:02,5 INFO [worker-2] - started"},
                "{name: parser, format: regex, regex: ['^(?<time>\\S+ \\S+) (?<level>[A-Z]+) "
                "\\[(?<thread>[\\w-]+)\\] (?:(?<error_code>E\\d+) )?(?:- )?(?<message>.*)$'], "
                "time_format: '%Y-%m-%d %H:%M:%S,%L'}");
  ASSERT_EQ(got.size(), 2u);
  const Out *a = find(got, "connection refused");
  EXPECT_EQ(a->timestamp, "2025-11-28T10:00:01.123000Z");
  EXPECT_EQ(a->level, "ERROR");
  EXPECT_EQ(a->error_code, "E1001");
  EXPECT_EQ(a->meta.at("thread"), R"("main")");
  const Out *b = find(got, "started");
  EXPECT_EQ(b->timestamp, "2025-11-28T10:00:02.500000Z");
  EXPECT_EQ(b->error_code, "") << "a group that did not take part fills nothing";
}

TEST(Parser, RegexPatternsAreTriedInOrder) {
  auto got = parse_all({"GET /api 200 12ms", "sshd[42]: Accepted key for root"},
                       "{name: parser, format: regex, regex: ['^(?<method>[A-Z]+) (?<path>\\S+) "
                       "(?<status>\\d+) (?<dur>\\S+)$', '^(?<prog>\\w+)\\[(?<pid>\\d+)\\]: "
                       "(?<message>.*)$']}");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(find(got, "GET /api 200 12ms")->meta.at("status"), R"("200")");
  const Out *s = find(got, "Accepted key for root");
  EXPECT_EQ(s->meta.at("pid"), R"("42")");
  EXPECT_EQ(s->meta.at("prog"), R"("sshd")");
}

TEST(Parser, KeyValuePairsReadWithTheConfiguredSeparators) {
  auto got =
      parse_all({"status: 503; upstream: \"10.0.0.7:80\"; level: warn; standalone; msg: backend "
                 "down",
                 "a=1 b=2 c"},
                "{name: parser, format: kv, kv_separator: ': ', kv_pair_separator: '; '}");
  ASSERT_EQ(got.size(), 2u);
  const Out *o = find(got, "backend down");
  EXPECT_EQ(o->level, "WARN");
  EXPECT_EQ(o->meta.at("status"), R"("503")");
  EXPECT_EQ(o->meta.at("upstream"), R"("10.0.0.7:80")");
  EXPECT_EQ(o->meta.count("standalone"), 0u) << "a word without the separator is skipped";
  EXPECT_TRUE(find(got, "a=1 b=2 c")->meta.empty()) << "no ': ' in it: not this rule's format";
  got = parse_all({"user=alice action=login c"}, "{name: parser, format: kv}");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].meta.at("user"), R"("alice")") << "defaults: '=' and a space";
  EXPECT_EQ(got[0].meta.at("action"), R"("login")");
}

TEST(Parser, FormatsAreTriedInOrderAndTheFirstThatParsesWins) {
  // "a=1" parses as logfmt and as kv; listed first, logfmt takes it (its counter says so).
  std::string metrics;
  auto got = run_until_metric(
      {R"({"msg":"from json","lvl":"debug"})", "msg=\"from logfmt\" a=1", "msg: from kv",
       "plain words"},
      "{name: parser, format: [json, logfmt, kv], kv_separator: ': ', kv_pair_separator: ';'}",
      "devmesh_parser_parse_failures_total", "", 1, &metrics);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(find(got, "from json")->level, "DEBUG");
  EXPECT_EQ(find(got, "from logfmt")->meta.at("a"), R"("1")");
  find(got, "from kv");
  EXPECT_EQ(metric_value(metrics, "devmesh_parser_records_parsed_total", "format=\"json\""), 1);
  EXPECT_EQ(metric_value(metrics, "devmesh_parser_records_parsed_total", "format=\"logfmt\""), 1);
  EXPECT_EQ(metric_value(metrics, "devmesh_parser_records_parsed_total", "format=\"kv\""), 1);
  EXPECT_EQ(metric_value(metrics, "devmesh_parser_records_parsed_total", "format=\"regex\""), 0);
}

// ---- failures ---------------------------------------------------------------------------------

TEST(Parser, AFailedParseLeavesTheRecordUnchangedAndIsCounted) {
  const std::vector<std::string> bad = {"not json at all", R"({"level":"info","msg":)",
                                        R"({"a":1} trailing)", R"(["an","array"])",
                                        R"({"a":1,"a":})"};
  std::string metrics;
  auto got =
      run_until_metric(bad, "{name: parser, format: json}", "devmesh_parser_parse_failures_total",
                       "", double(bad.size()), &metrics);
  ASSERT_EQ(got.size(), bad.size());
  for (const auto &m : bad) {
    const Out *o = find(got, m);
    EXPECT_EQ(o->level, "INFO") << m << ": dummy's level, untouched";
    EXPECT_TRUE(o->meta.empty()) << m;
  }
  EXPECT_EQ(metric_value(metrics, "devmesh_parser_records_parsed_total", "format=\"json\""), 0);
}

TEST(Parser, ATimeThatDoesNotReadIsCountedAndKeptInMeta) {
  std::string metrics;
  auto got = run_until_metric({"time=yesterday msg=a", "time=2025-02-30T00:00:00Z msg=b"},
                              "{name: parser, format: logfmt}",
                              "devmesh_parser_time_failures_total", "", 2, &metrics);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(find(got, "a")->meta.at("time"), R"("yesterday")");
  EXPECT_EQ(find(got, "b")->meta.at("time"), R"("2025-02-30T00:00:00Z")");
  EXPECT_EQ(find(got, "b")->timestamp.find("2025-03-0"), std::string::npos)
      << "not normalised into March: the record keeps its own time";
}

// ---- timestamps -------------------------------------------------------------------------------

TEST(Parser, TimeFormatsReadFractionsAndZones) {
  const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> cases = {
      // format, text, want
      {"%Y-%m-%dT%H:%M:%S.%f%z",
       {"2025-11-28T21:55:40.123456789+02:00", "2025-11-28T19:55:40.123456Z"}},
      {"%Y-%m-%d %H:%M:%S %z", {"2025-11-28 14:55:40 -0500", "2025-11-28T19:55:40.000000Z"}},
      {"%d/%b/%Y:%H:%M:%S %z", {"28/Nov/2025:19:55:40 +0000", "2025-11-28T19:55:40.000000Z"}},
      {"%a, %d %B %Y %I:%M:%S %p %Z",
       {"Fri, 28 November 2025 07:55:40 PM UTC", "2025-11-28T19:55:40.000000Z"}},
      {"%s.%L", {"1764359740.5", "2025-11-28T19:55:40.500000Z"}},
      {"%F %T", {"2024-02-29 23:59:59", "2024-02-29T23:59:59.000000Z"}},
      {"%y%m%d %H%M%S", {"251128 195540", "2025-11-28T19:55:40.000000Z"}},
  };
  for (const auto &[format, c] : cases) {
    auto got = parse_all({"T " + c.first},
                         "{name: parser, format: regex, regex: ['^T (?<time>.*)$'], "
                         "time_format: " +
                             quoted(format) + "}");
    ASSERT_EQ(got.size(), 1u) << format;
    EXPECT_EQ(got[0].timestamp, c.second) << format << " on " << c.first;
    EXPECT_EQ(got[0].meta.count("time"), 0u) << format;
  }
}

// January 1st, 08:00 is never more than a day ahead of now: always this year.
TEST(Parser, ASyslogTimeWithoutAYearTakesThisYear) {
  auto got =
      parse_all({"Jan  1 08:00:01 host app: hello"},
                "{name: parser, format: regex, regex: ['^(?<time>\\w{3} [ \\d]\\d \\S+) (?<h>\\S+) "
                "(?<app>\\w+): (?<message>.*)$'], time_format: '%b %e %H:%M:%S'}");
  ASSERT_EQ(got.size(), 1u);
  const time_t now = time(nullptr);
  tm g;
  gmtime_r(&now, &g);
  EXPECT_EQ(got[0].timestamp, std::to_string(g.tm_year + 1900) + "-01-01T08:00:01.000000Z");
  EXPECT_EQ(got[0].message, "hello");
}

TEST(Parser, WithoutATimeFormatRfc3339AndEpochNumbersAreRead) {
  auto got = parse_all({R"({"ts":1764359740123,"msg":"ms"})", R"({"ts":1764359740.5,"msg":"s"})",
                        R"({"@timestamp":"2025-11-28T21:55:40+02:00","msg":"offset"})",
                        "time=2025-11-28T19:55:40 msg=nozone"},
                       "{name: parser, format: [json, logfmt]}");
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(find(got, "ms")->timestamp, "2025-11-28T19:55:40.123000Z");
  EXPECT_EQ(find(got, "s")->timestamp, "2025-11-28T19:55:40.500000Z");
  EXPECT_EQ(find(got, "offset")->timestamp, "2025-11-28T19:55:40.000000Z");
  EXPECT_EQ(find(got, "nozone")->timestamp, "2025-11-28T19:55:40.000000Z");
}

// ---- options ----------------------------------------------------------------------------------

TEST(Parser, KeepOriginalKeepsTheRawMessageAndPutsTheParsedOneInMeta) {
  const std::string line = R"({"level":"error","msg":"disk full","dev":"sda"})";
  auto got = parse_all({line}, "{name: parser, format: json, keep_original: true}");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message, line);
  EXPECT_EQ(got[0].level, "ERROR");
  EXPECT_EQ(got[0].meta.at("msg"), R"("disk full")");
  EXPECT_EQ(got[0].meta.at("dev"), R"("sda")");
}

TEST(Parser, AMessageWithoutAMessageFieldKeepsItsText) {
  auto got = parse_all({"level=warn dev=sda"}, "{name: parser, format: logfmt}");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message, "level=warn dev=sda");
  EXPECT_EQ(got[0].level, "WARN");
}

TEST(Parser, FieldsMapsFieldsOntoColumnsOrKeepsThemInMeta) {
  auto got =
      parse_all({"reqid=r-77 kind=login code=403 level=warn msg=denied"},
                "{name: parser, format: logfmt, fields: {reqid: trace_id, kind: event_type, code: "
                "error_code, level: meta}}");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].trace_id, "r-77");
  EXPECT_EQ(got[0].event_type, "login");
  EXPECT_EQ(got[0].error_code, "403");
  EXPECT_EQ(got[0].level, "INFO") << "level mapped to meta: the column is untouched";
  EXPECT_EQ(got[0].meta.at("level"), R"("warn")");
}

TEST(Parser, TypesGiveTextFieldsTheirMetaTypeAndCountWhatDoesNotConvert) {
  std::string metrics;
  auto got = run_until_metric(
      {"n=42 ratio=0.5 ok=yes off=false id=007 bad=4x2 msg=typed"},
      "{name: parser, format: logfmt, types: {n: int, ratio: float, ok: bool, off: bool, id: "
      "string, bad: int}}",
      "devmesh_parser_type_failures_total", "", 1, &metrics);
  ASSERT_EQ(got.size(), 1u);
  const Out &o = got[0];
  EXPECT_EQ(o.meta.at("n"), "42");
  EXPECT_EQ(o.meta.at("ratio"), "0.5");
  EXPECT_EQ(o.meta.at("ok"), "true");
  EXPECT_EQ(o.meta.at("off"), "false");
  EXPECT_EQ(o.meta.at("id"), R"("007")");
  EXPECT_EQ(o.meta.at("bad"), R"("4x2")");
}

TEST(Parser, ARuleLimitedToServicesLeavesOtherServicesAlone) {
  // max_services 1: past the remembered first service, the others are matched per record.
  auto got = parse_all({"level=error msg=a", "level=error msg=b", "level=error msg=c"},
                       "{name: parser, format: logfmt, services: ['api*', worker.service], "
                       "max_services: 1}",
                       ", services: [api-1.service, cron.service, worker.service]");
  ASSERT_EQ(got.size(), 3u);
  std::map<std::string, std::string> level_by_service;
  for (const auto &o : got) level_by_service[o.service] = o.level;
  EXPECT_EQ(level_by_service["api-1.service"], "ERROR");
  EXPECT_EQ(level_by_service["worker.service"], "ERROR");
  EXPECT_EQ(level_by_service["cron.service"], "INFO");
}

// journald: a record's service is its _SYSTEMD_UNIT, so `services` limits a rule to units.
TEST(Parser, ARuleLimitedToAUnitParsesOnlyThatUnitsJournalEntries) {
  TempDir d;
  std::filesystem::create_directories(d / "journal");
  const std::string fixture = DEVMESH_BUILD_DIR "/tools/journal-fixture/journal-fixture";
  const std::string file = d / "journal/system.journal";
  ASSERT_EQ(
      devmesh::test::run({fixture, "-o", file, "--count", "4", "--units", "web.service,db.service",
                          "--message", "level=error msg=\"from the journal\" code=7"},
                         d.path()),
      0);
  const std::string yaml =
      plugins_head() + "  inputs:\n    - {name: journald, path: " + d / "journal" +
      ", state_file: " + d / "cursor" +
      "}\n  filters:\n    - {name: parser, format: logfmt, services: [web.service]}\n"
      "  outputs:\n    - {name: stdout, path: " +
      d / "out.ndjson" + "}\n";
  Devmesh e(d, "engine", yaml);
  ASSERT_TRUE(wait_until([&] { return read_lines(d / "out.ndjson").size() == 4; }, 30s))
      << e->err();
  e->kill(SIGTERM);
  ASSERT_EQ(e->wait_exit(30s), 0) << e->err();
  auto got = outputs(d / "out.ndjson");
  ASSERT_EQ(got.size(), 4u);
  for (const auto &o : got) {
    if (o.service == "web.service") {
      EXPECT_EQ(o.message, "from the journal");
      EXPECT_EQ(o.level, "ERROR");
      EXPECT_EQ(o.meta.at("code"), R"("7")");
    } else {
      EXPECT_EQ(o.service, "db.service");
      EXPECT_EQ(o.message, "level=error msg=\"from the journal\" code=7");
      EXPECT_EQ(o.meta.count("code"), 0u);
    }
  }
}

// ---- bad options ------------------------------------------------------------------------------

TEST(ParserConfig, AnInvalidRegexIsNamedWithItsIndexAndOffset) {
  auto err = dry_run_errors("{name: parser, format: regex, regex: ['^(?<a>\\d+)$', '(?<b>[a-']}");
  EXPECT_NE(err.find("regex[1]: invalid regex at offset"), std::string::npos) << err;
  EXPECT_EQ(err.find("regex[0]"), std::string::npos) << err;
  EXPECT_NE(err.find("the filter plugin 'parser' refused its configuration"), std::string::npos)
      << err;
}

TEST(ParserConfig, ARegexWithoutNamedGroupsIsRefused) {
  auto err = dry_run_errors("{name: parser, format: regex, regex: ['^\\d+ (\\w+)$']}");
  EXPECT_NE(err.find("regex[0]: the regex has no named group"), std::string::npos) << err;
}

TEST(ParserConfig, AnUnknownFormatIsRefusedByTheSchema) {
  auto err = dry_run_errors("{name: parser, format: [json, yaml]}");
  EXPECT_NE(err.find("format"), std::string::npos) << err;
  EXPECT_NE(err.find("yaml"), std::string::npos) << err;
}

TEST(ParserConfig, RegexFormatAndPatternsMustComeTogether) {
  auto err = dry_run_errors("{name: parser, format: regex}");
  EXPECT_NE(err.find("regex: format lists regex but no pattern is given"), std::string::npos)
      << err;
  err = dry_run_errors("{name: parser, format: json, regex: ['(?<a>x)']}");
  EXPECT_NE(err.find("regex: patterns are given but format does not list regex"), std::string::npos)
      << err;
}

TEST(ParserConfig, ABadTimeFormatIsNamed) {
  auto err = dry_run_errors("{name: parser, format: json, time_format: '%Y-%Q'}");
  EXPECT_NE(err.find("time_format: unknown conversion '%Q'"), std::string::npos) << err;
  err = dry_run_errors("{name: parser, format: json, time_format: '%H:%M%'}");
  EXPECT_NE(err.find("time_format: ends with a lone '%'"), std::string::npos) << err;
}

TEST(ParserConfig, UnknownColumnsTypesAndBadSeparatorsAreNamed) {
  auto err = dry_run_errors(
      "{name: parser, format: kv, fields: {a: colour}, types: {b: decimal}, kv_separator: ' ', "
      "services: ['']}");
  EXPECT_NE(err.find("fields.a: unknown column 'colour'"), std::string::npos) << err;
  EXPECT_NE(err.find("types.b: unknown type 'decimal'"), std::string::npos) << err;
  EXPECT_NE(err.find("kv_pair_separator: is the same as kv_separator"), std::string::npos) << err;
  EXPECT_NE(err.find("services[0]: empty service name"), std::string::npos) << err;
  err = dry_run_errors("{name: parser, format: kv, kv_separator: '', kv_pair_separator: ''}");
  EXPECT_NE(err.find("kv_separator: is empty"), std::string::npos) << err;
  EXPECT_NE(err.find("kv_pair_separator: is empty"), std::string::npos) << err;
}

}  // namespace
