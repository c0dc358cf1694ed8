// The patterns filter's template miner: what masking keeps and hides, how templates grow, merge
// at a key=value position, and come back from their saved text.
#include <gtest/gtest.h>

#include "pattern_miner.hpp"

using devmesh::patterns::mask_token;
using devmesh::patterns::Miner;

namespace {

std::string mask(std::string_view tok) {
  std::string scratch;
  return std::string(mask_token(tok, scratch));
}

TEST(PatternMask, NumbersIpsHexAndUnitsBecomeWildcardsAndWordsStay) {
  EXPECT_EQ(mask("connected"), "connected");
  EXPECT_EQ(mask("42"), "<*>");
  EXPECT_EQ(mask("10.0.0.1:8080"), "<*>");
  EXPECT_EQ(mask("rhost=218.188.2.4"), "rhost=<*>");
  EXPECT_EQ(mask("(uid=0)"), "(uid=<*>)");
  EXPECT_EQ(mask("blk_-1608999687919862906"), "blk_-<*>");
  EXPECT_EQ(mask("0x7fffa3c0"), "<*>");
  EXPECT_EQ(mask("12ms"), "<*>");
  EXPECT_EQ(mask("[2025-01-01"), "[<*>");
  EXPECT_EQ(mask("took=3.5s,"), "took=<*>,");
}

TEST(PatternMask, PathsLongIdsAndNamesWithDigitsAreWildcardsWhole) {
  EXPECT_EQ(mask("/var/lib/x1"), "<*>");
  EXPECT_EQ(mask("550e8400-e29b-41d4-a716-446655440000"), "<*>");
  EXPECT_EQ(mask("e820"), "<*>");
  EXPECT_EQ(mask("42abcd"), "<*>");
  // Long tokens are variables even without a digit (tokens, base64, hashes in letters).
  EXPECT_EQ(mask("ijklmnopqrstuvwxyzabcdefgh"), "<*>");
  EXPECT_EQ(mask("abcdefghijklmnopqrstuvwx"), "abcdefghijklmnopqrstuvwx");  // 24: a word
}

// Distinct words are remembered up to max_vocabulary; past it a new word is a variable, so an
// endless stream of new words cannot grow the miner without bound, and messages still group.
TEST(PatternMiner, PastMaxVocabularyANewWordIsAVariable) {
  devmesh::patterns::MinerOptions o;
  o.max_vocabulary = 64;
  Miner m(o);
  EXPECT_EQ(m.template_text(m.add("alpha beta gamma").id), "alpha beta gamma");
  std::string word = "aaaa";
  uint32_t first = Miner::kNone;
  for (int i = 0; i < 200; ++i) {
    for (size_t k = 0; k < word.size(); ++k) {  // the next word: aaab, aaac, ...
      if (++word[word.size() - 1 - k] <= 'z') break;
      word[word.size() - 1 - k] = 'a';
    }
    const auto r = m.add("session opened for " + word);
    if (first == Miner::kNone) first = m.resolve(r.id);
    EXPECT_EQ(m.resolve(r.id), first) << word;
  }
  EXPECT_EQ(m.template_text(first), "session opened for <*>");
  // Known words still count; new ones are variables now.
  EXPECT_EQ(m.template_text(m.add("alpha beta gamma").id), "alpha beta gamma");
  EXPECT_EQ(m.template_text(m.add("delta epsilon zeta").id), "<*> <*> <*>");
}

// Like Drain's, the tree routes by the first two tokens: a variable there makes another leaf.
TEST(PatternMiner, AMessageJoinsTheTemplateItResemblesAndGeneralisesIt) {
  Miner m;
  auto a = m.add("worker started alpha in 12ms");
  EXPECT_TRUE(a.created);
  auto b = m.add("worker started beta in 9ms");
  EXPECT_EQ(b.id, a.id);
  EXPECT_TRUE(b.changed);
  EXPECT_EQ(m.template_text(a.id), "worker started <*> in <*>");
  auto c = m.add("disk full");
  EXPECT_NE(c.id, a.id);
}

TEST(PatternMiner, KeyValueWordsMergeAtTheFourthValueIntoTheOldestTemplate) {
  Miner m;
  const uint32_t root = m.add("login failed for user=root from console").id;
  const uint32_t guest = m.add("login failed for user=guest from console").id;
  const uint32_t test = m.add("login failed for user=test from console").id;
  EXPECT_NE(root, guest);
  EXPECT_NE(guest, test);
  const auto admin = m.add("login failed for user=admin from console");
  EXPECT_EQ(admin.id, root);
  EXPECT_EQ(m.resolve(guest), root);
  EXPECT_EQ(m.resolve(test), root);
  EXPECT_EQ(m.template_text(root), "login failed for user=<*> from console");
}

TEST(PatternMiner, ARestoredTemplateMatchesAsTheOriginalDid) {
  Miner first;
  first.add("request 1 served in 5ms");
  const auto id = first.add("request 2 served in 7ms").id;
  Miner second;
  const uint32_t restored = second.restore(first.template_text(id));
  EXPECT_EQ(second.add("request 99 served in 1ms").id, restored);
  EXPECT_EQ(second.size(), 1u);
}

TEST(PatternMiner, AtTheTemplateLimitAnUncoveredMessageGetsNone) {
  Miner m;
  m.add("one kind of line 1");
  EXPECT_EQ(m.add("another kind entirely", false).id, Miner::kNone);
  EXPECT_EQ(m.add("one kind of line 2", false).id, 0u);
  EXPECT_EQ(m.size(), 1u);
}

}  // namespace
