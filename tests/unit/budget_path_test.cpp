// BudgetPath: 1..8 segments of [a-z0-9][a-z0-9_-]{0,62}, the root first.

#include "ledger/budget_path.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace stub::ledger {
namespace {

BudgetPath path(std::string_view text) {
  const auto parsed = BudgetPath::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(*BudgetPath::parse("unparsed"));
}

std::string segments(size_t count) {
  std::string out = "s1";
  for (size_t i = 2; i <= count; ++i)
    out += "/s" + std::to_string(i);
  return out;
}

std::vector<std::string> texts(const std::vector<BudgetPath>& paths) {
  std::vector<std::string> out;
  for (const BudgetPath& p : paths)
    out.push_back(p.str());
  return out;
}

TEST(BudgetPathParse, AcceptsValidPaths) {
  const std::vector<std::string> accepted = {
      "acme",
      "a",
      "0",
      "9lives",
      "acme/marketing",
      "acme/marketing/research-agent",
      "acme/marketing/research-agent/run-42",
      "a-b_c/d--e/f__g",
      "a-",
      "a_",
      std::string(63, 'x'),
      "acme/" + std::string(63, 'z'),
      segments(8),
  };
  for (const std::string& text : accepted)
    EXPECT_TRUE(BudgetPath::parse(text).has_value()) << "rejected \"" << text << "\"";
}

TEST(BudgetPathParse, RejectsInvalidPaths) {
  const std::vector<std::string> rejected = {
      "",
      "/",
      "acme/",
      "/acme",
      "acme//team",
      "Acme",
      "acme/Team",
      "-acme",
      "_acme",
      "acme/-team",
      "acme/_team",
      "ac me",
      "acme.team",
      "acme\\team",
      "acme/t\xc3\xa9",  // "té": only ASCII is allowed
      std::string("ac\0me", 5),
      std::string(64, 'x'),
      "acme/" + std::string(64, 'z'),
      segments(9),
      segments(20),
  };
  for (const std::string& text : rejected)
    EXPECT_FALSE(BudgetPath::parse(text).has_value()) << "accepted \"" << text << "\"";
}

TEST(BudgetPathParse, DepthIsAtMostEight) {
  EXPECT_EQ(path(segments(8)).depth(), 8u);
  EXPECT_EQ(BudgetPath::depth_max, 8u);
  EXPECT_FALSE(BudgetPath::parse(segments(9)).has_value());
}

TEST(BudgetPath, RootParentAndDepth) {
  const BudgetPath root = path("acme");
  EXPECT_TRUE(root.is_root());
  EXPECT_EQ(root.depth(), 1u);
  EXPECT_EQ(root.root(), "acme");
  EXPECT_FALSE(root.parent().has_value());

  const BudgetPath agent = path("acme/marketing/research-agent");
  EXPECT_FALSE(agent.is_root());
  EXPECT_EQ(agent.depth(), 3u);
  EXPECT_EQ(agent.root(), "acme");
  ASSERT_TRUE(agent.parent().has_value());
  EXPECT_EQ(agent.parent()->str(), "acme/marketing");
  EXPECT_EQ(agent.parent()->depth(), 2u);
  EXPECT_EQ(agent.parent()->parent()->str(), "acme");
  EXPECT_TRUE(agent.parent()->parent()->is_root());
}

TEST(BudgetPath, LineageRunsFromTheRootDown) {
  EXPECT_EQ(texts(path("acme").lineage()), std::vector<std::string>{"acme"});
  EXPECT_EQ(texts(path("acme/marketing/research-agent/run-42").lineage()),
            (std::vector<std::string>{"acme", "acme/marketing", "acme/marketing/research-agent",
                                      "acme/marketing/research-agent/run-42"}));
  const std::vector<BudgetPath> deep = path(segments(8)).lineage();
  ASSERT_EQ(deep.size(), 8u);
  for (size_t i = 0; i < deep.size(); ++i) {
    EXPECT_EQ(deep[i].depth(), i + 1);
    EXPECT_EQ(deep[i].str(), segments(i + 1));
  }
}

TEST(BudgetPath, WithinMatchesWholeSegmentsOnly) {
  const BudgetPath acme = path("acme");
  const BudgetPath marketing = path("acme/marketing");
  const BudgetPath agent = path("acme/marketing/agent");
  EXPECT_TRUE(acme.within(acme));
  EXPECT_TRUE(marketing.within(acme));
  EXPECT_TRUE(agent.within(acme));
  EXPECT_TRUE(agent.within(marketing));
  EXPECT_FALSE(acme.within(marketing));
  EXPECT_FALSE(marketing.within(agent));
  // A shared text prefix is not ancestry.
  EXPECT_FALSE(path("acme/marketingx").within(marketing));
  EXPECT_FALSE(path("acmex").within(acme));
  EXPECT_FALSE(path("acme/m").within(marketing));
  EXPECT_FALSE(path("other/marketing").within(acme));
}

TEST(BudgetPath, ComparesByText) {
  EXPECT_EQ(path("acme/a"), path("acme/a"));
  EXPECT_NE(path("acme/a"), path("acme/b"));
  EXPECT_LT(path("acme"), path("acme/a"));
}

}  // namespace
}  // namespace stub::ledger
