// The bearer-token check the http and otlp inputs share (plugins/common/bearer_token.hpp).
#include <gtest/gtest.h>

#include "bearer_token.hpp"

using devmesh::bearer_token_matches;

TEST(BearerToken, TheSchemeIsReadInAnyCaseAndSpacesAfterItAreSkipped) {
  EXPECT_TRUE(bearer_token_matches("Bearer s3cret", "s3cret"));
  EXPECT_TRUE(bearer_token_matches("bearer s3cret", "s3cret"));
  EXPECT_TRUE(bearer_token_matches("BEARER    s3cret", "s3cret"));
}

TEST(BearerToken, AnotherTokenSchemeOrNoneIsRefused) {
  for (const char *h : {"", "Bearer", "Bearer ", "Bearer s3cre", "Bearer s3cretX", "Bearer S3CRET",
                        "Basic s3cret", "Bearers3cret", "s3cret", "Bearer s3cret "})
    EXPECT_FALSE(bearer_token_matches(h, "s3cret")) << h;
}
