// The query output's browser console through the real binary and libcurl: GET / is the page and
// every asset it names is served with its type, an ETag (304 when it matches) and gzip when
// accepted; an unknown asset is a counted 404; console: false leaves only the API; console_path
// moves the page under a prefix; with auth_token the page loads without the token (it holds no
// data) while the API still asks for it. The page's behaviour in a browser is the Playwright
// test's business.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "store_test_support.h"

using namespace devmesh::test;
using namespace std::chrono_literals;

namespace {

// An engine whose query output serves on `port` with `options` (YAML flow-map entries, leading
// comma) over a store that does not exist yet (the console needs none); /metrics on metrics_port.
struct ConsoleEngine {
  ConsoleEngine(const TempDir &d, const std::string &options, int metrics_port = 0,
                bool wait_ready = true)
      : port(free_port()), base("http://127.0.0.1:" + std::to_string(port)) {
    const std::string service =
        metrics_port ? "  http_listen: 127.0.0.1:" + std::to_string(metrics_port) + "\n" : "";
    engine =
        start_engine(d, plugins_head(service) +
                            "  inputs:\n    - {name: dummy, tag: idle, rate: 0.001}\n"
                            "  outputs:\n    - {name: query, match: none, listen: 127.0.0.1:" +
                            std::to_string(port) + ", path: " + d / "none.db" + options + "}\n");
    if (wait_ready) ready = wait_until([&] { return http(base + "/health").status != 0; }, 20s);
  }
  int port;
  std::string base;
  std::unique_ptr<Process> engine;
  bool ready = false;
};

// The asset URLs the page names (href="assets/..." and src="assets/...").
std::set<std::string> assets_named_by(const std::string &html) {
  std::set<std::string> out;
  const std::regex ref(R"re((?:href|src)="(assets/[^"]+)")re");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), ref); it != std::sregex_iterator();
       ++it)
    out.insert((*it)[1]);
  return out;
}

std::string type_for(const std::string &name) {
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  return "?";
}

}  // namespace

TEST(Console, TheRootPathIsThePageAndEveryAssetItNamesIsServedWithItsType) {
  TempDir d;
  ConsoleEngine c(d, "");
  ASSERT_TRUE(c.ready) << c.engine->err();
  HttpResponse page = http(c.base + "/");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.headers["content-type"], "text/html; charset=utf-8");
  EXPECT_EQ(page.headers["cache-control"], "no-cache");
  EXPECT_FALSE(page.headers["etag"].empty());
  EXPECT_NE(page.headers["content-security-policy"].find("default-src 'self'"), std::string::npos);
  // The contract's anchors are in the page itself, not added by script.
  for (const char *id :
       {"id=\"range\"", "id=\"search\"", "id=\"facets\"", "id=\"histogram\"", "id=\"results\"",
        "id=\"results-end\"", "id=\"detail\"", "id=\"tail-toggle\"", "id=\"patterns\"",
        "id=\"context\"", "id=\"token-dialog\""})
    EXPECT_NE(page.body.find(id), std::string::npos) << id;
  const std::set<std::string> assets = assets_named_by(page.body);
  for (const char *expected : {"assets/app.js", "assets/style.css", "assets/uPlot.iife.min.js",
                               "assets/uPlot.min.css", "assets/favicon.svg"})
    EXPECT_TRUE(assets.count(expected)) << expected << " is not named by the page";
  for (const std::string &a : assets) {
    HttpResponse r = http(c.base + "/" + a);
    EXPECT_EQ(r.status, 200) << a;
    EXPECT_EQ(r.headers["content-type"], type_for(a)) << a;
    EXPECT_FALSE(r.headers["etag"].empty()) << a;
    EXPECT_GT(r.body.size(), 100u) << a;
  }
  // uPlot is shipped with its licence.
  HttpResponse licence = http(c.base + "/assets/uPlot-LICENSE.txt");
  EXPECT_EQ(licence.status, 200);
  EXPECT_NE(licence.body.find("MIT"), std::string::npos);
}

TEST(Console, AMatchingETagIsA304AndGzipIsSentOnlyToAClientThatAcceptsIt) {
  TempDir d;
  ConsoleEngine c(d, "");
  ASSERT_TRUE(c.ready) << c.engine->err();
  const std::string url = c.base + "/assets/uPlot.iife.min.js";
  HttpResponse plain = http(url);
  ASSERT_EQ(plain.status, 200);
  EXPECT_EQ(plain.headers.count("content-encoding"), 0u);
  EXPECT_EQ(plain.headers["vary"], "Accept-Encoding");
  HttpResponse again = http(url, {"If-None-Match: " + plain.headers["etag"]});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());

  HttpResponse gz = http(url, {"Accept-Encoding: gzip, deflate"});
  ASSERT_EQ(gz.status, 200);
  EXPECT_EQ(gz.headers["content-encoding"], "gzip");
  EXPECT_LT(gz.body.size(), plain.body.size());
  write_file(d / "asset.gz", gz.body);
  std::string unzipped;
  ASSERT_EQ(run({"/bin/sh", "-c", "gzip -dc < " + d / "asset.gz"}, d.path(), &unzipped), 0);
  EXPECT_EQ(unzipped, plain.body);
  // q=0 refuses gzip (RFC 9110 12.5.3), also when "*" would accept it: the named coding wins.
  for (const char *refusing : {"gzip;q=0", "gzip;q=0, *", "*, gzip; q=0.000", "GZIP;Q=0", "*;q=0",
                               "br, *;q=0", "identity"}) {
    HttpResponse refused = http(url, {std::string("Accept-Encoding: ") + refusing});
    EXPECT_EQ(refused.headers.count("content-encoding"), 0u) << refusing;
    EXPECT_EQ(refused.body, plain.body) << refusing;
    EXPECT_EQ(refused.headers["etag"], plain.headers["etag"]) << refusing;
  }
  for (const char *accepting : {"*", "gzip;q=0.001", "gzip;q=0, x-gzip;q=0.5", "br;q=1, *;q=0.1"}) {
    HttpResponse accepted = http(url, {std::string("Accept-Encoding: ") + accepting});
    EXPECT_EQ(accepted.headers["content-encoding"], "gzip") << accepting;
    EXPECT_EQ(accepted.body, gz.body) << accepting;
  }
}

// The gzip and the plain body are two representations: each has its own ETag, and one's tag
// revalidates only itself (a cache that stored the gzip body must not be told, by a 304, that
// it may hand it to a client that does not take gzip).
TEST(Console, TheGzipAndThePlainBodyHaveTheirOwnETags) {
  TempDir d;
  ConsoleEngine c(d, "");
  ASSERT_TRUE(c.ready) << c.engine->err();
  const std::string url = c.base + "/assets/uPlot.iife.min.js";
  HttpResponse plain = http(url);
  HttpResponse gz = http(url, {"Accept-Encoding: gzip"});
  ASSERT_EQ(plain.status, 200);
  ASSERT_EQ(gz.status, 200);
  const std::string plain_tag = plain.headers["etag"], gz_tag = gz.headers["etag"];
  ASSERT_FALSE(plain_tag.empty());
  EXPECT_NE(gz_tag, plain_tag);
  EXPECT_EQ(gz_tag, plain_tag.substr(0, plain_tag.size() - 1) + "-gz\"");
  EXPECT_EQ(gz.headers["vary"], "Accept-Encoding");
  // Each tag revalidates its own representation only.
  EXPECT_EQ(http(url, {"If-None-Match: " + gz_tag}).status, 200);
  EXPECT_EQ(http(url, {"If-None-Match: " + plain_tag, "Accept-Encoding: gzip"}).status, 200);
  HttpResponse gz_again = http(url, {"If-None-Match: " + gz_tag, "Accept-Encoding: gzip"});
  EXPECT_EQ(gz_again.status, 304);
  EXPECT_EQ(gz_again.headers["etag"], gz_tag);
  // A list of tags, weak or not, matches by whole tags.
  EXPECT_EQ(http(url, {"If-None-Match: \"other\", W/" + plain_tag}).status, 304);
  EXPECT_EQ(http(url, {"If-None-Match: " + gz_tag + ", \"other\""}).status, 200);
}

TEST(Console, AnUnknownAssetIsA404CountedInTheConsoleMetric) {
  TempDir d;
  const int metrics_port = free_port();
  ConsoleEngine c(d, "", metrics_port);
  ASSERT_TRUE(c.ready) << c.engine->err();
  EXPECT_EQ(http(c.base + "/assets/nope.js").status, 404);
  EXPECT_EQ(http(c.base + "/assets/").status, 404);
  EXPECT_EQ(http(c.base + "/index.html").status, 404);  // the page is at / only
  EXPECT_EQ(http(c.base + "/").status, 200);
  const std::string metrics =
      http("http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics").body;
  EXPECT_EQ(metric_value(metrics, "devmesh_query_console_requests_total", "outcome=\"not_found\""),
            2)
      << metrics;
  EXPECT_EQ(metric_value(metrics, "devmesh_query_console_requests_total", "outcome=\"ok\""), 1);
}

TEST(Console, ConsoleFalseLeavesOnlyTheApi) {
  TempDir d;
  ConsoleEngine c(d, ", console: false");
  ASSERT_TRUE(c.ready) << c.engine->err();
  EXPECT_EQ(http(c.base + "/").status, 404);
  EXPECT_EQ(http(c.base + "/assets/app.js").status, 404);
  EXPECT_EQ(http(c.base + "/health").status, 503);  // the API is there (its store is not yet)
}

TEST(Console, ConsolePathServesThePageUnderThePrefixAndRedirectsTheBarePath) {
  TempDir d;
  ConsoleEngine c(d, ", console_path: /ops/console");
  ASSERT_TRUE(c.ready) << c.engine->err();
  HttpResponse page = http(c.base + "/ops/console/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.headers["content-type"], "text/html; charset=utf-8");
  EXPECT_EQ(http(c.base + "/ops/console/assets/app.js").headers["content-type"],
            "text/javascript; charset=utf-8");
  // Without the final '/' the page's relative asset URLs would miss: the bare path redirects,
  // keeping the query string (a shared link's filters).
  HttpResponse bare = http(c.base + "/ops/console?q=oom");
  EXPECT_EQ(bare.status, 308);
  EXPECT_EQ(bare.headers["location"], "/ops/console/?q=oom");
  EXPECT_EQ(http(c.base + "/").status, 404);
  EXPECT_EQ(http(c.base + "/assets/app.js").status, 404);
}

TEST(Console, AConsolePathInsideTheApiOrWithOddCharactersIsRefusedNamingTheOption) {
  for (const char *bad : {"/query/ui/", "/con sole/", "relative/"}) {
    TempDir d;
    ConsoleEngine c(d, std::string(", console_path: '") + bad + "'", 0, false);
    ASSERT_NE(c.engine->wait_exit(20s), 0) << bad;
    EXPECT_NE(c.engine->err().find("console_path"), std::string::npos) << bad << c.engine->err();
  }
}

TEST(Console, WithAuthTokenThePageLoadsWithoutItAndTheApiStillAsksForIt) {
  TempDir d;
  ConsoleEngine c(d, ", auth_token: s3cret-token");
  ASSERT_TRUE(c.ready) << c.engine->err();
  EXPECT_EQ(http(c.base + "/").status, 200);
  EXPECT_EQ(http(c.base + "/assets/app.js").status, 200);
  HttpResponse api = http(c.base + "/query/logs");
  EXPECT_EQ(api.status, 401);
  EXPECT_EQ(api.headers["www-authenticate"], "Bearer");
  // With the token the API answers (503 here: the store does not exist yet), never 401.
  EXPECT_EQ(http(c.base + "/query/logs", {"Authorization: Bearer s3cret-token"}).status, 503);
  // The page asks for the token on a 401 and sends it back as the header.
  const std::string app = http(c.base + "/assets/app.js").body;
  EXPECT_NE(app.find("res.status === 401"), std::string::npos);
  EXPECT_NE(app.find("\"Bearer \" + token"), std::string::npos);
  EXPECT_NE(app.find("devmesh_token="), std::string::npos);
}

TEST(Console, DescribeDocumentsTheConsoleOptions) {
  std::string out, err;
  ASSERT_EQ(run({DEVMESH_BIN, "--describe", "query"}, ".", &out, &err), 0) << err;
  EXPECT_NE(out.find("console_path"), std::string::npos) << out;
  EXPECT_NE(out.find("serve the browser console"), std::string::npos) << out;
}
