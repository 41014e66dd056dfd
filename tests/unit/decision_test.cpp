// THE decision function: precedence of the rules, the level that refused, `available`, and the
// lazy period reset.

#include "ledger/decision.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace stub::ledger {
namespace {

constexpr Micros day = 86'400 * micros_per_second;
constexpr Micros t0 = 1'709'164'800'000'000 + 12 * 3'600 * micros_per_second;  // 2024-02-29 noon

Money units(int64_t whole) {
  return Money::from_micros(whole * Money::micros_per_unit);
}

BudgetNode node(std::string path, std::optional<int64_t> limit_units = std::nullopt) {
  BudgetNode out;
  out.path = path;
  out.root = path.substr(0, path.find('/'));
  const size_t slash = path.rfind('/');
  out.parent = slash == std::string::npos ? "" : path.substr(0, slash);
  if (limit_units)
    out.limit = units(*limit_units);
  out.period = Period::month;
  out.period_start = period_start(Period::month, t0);
  return out;
}

// root -> team -> agent, with the given nodes.
struct Tree {
  BudgetNode root = node("acme");
  BudgetNode team = node("acme/team");
  BudgetNode agent = node("acme/team/agent");

  Decision decide_spend(int64_t amount_micros, Micros now = t0) const {
    const std::vector<const BudgetNode*> path = {&root, &team, &agent};
    return decide(path, SpendRequest{Money::from_micros(amount_micros), "openai"}, now);
  }
  std::optional<Money> available(Micros now = t0) const {
    const std::vector<const BudgetNode*> path = {&root, &team, &agent};
    return available_on_path(path, now);
  }
};

TEST(Decide, AcceptsWhenNothingLimitsThePath) {
  const Tree tree;
  const Decision decision = tree.decide_spend(units(1'000'000).micros());
  EXPECT_TRUE(decision.accepted);
  EXPECT_EQ(decision.requested, units(1'000'000));
  EXPECT_FALSE(decision.available.has_value());
  EXPECT_TRUE(decision.level.empty());
}

TEST(Decide, AcceptsExactlyWhatRemains) {
  Tree tree;
  tree.team.limit = units(10);
  tree.team.spent = units(3);
  tree.team.reserved = units(2);
  EXPECT_TRUE(tree.decide_spend(units(5).micros()).accepted);
  const Decision over = tree.decide_spend(units(5).micros() + 1);
  EXPECT_FALSE(over.accepted);
  EXPECT_EQ(over.code, DenialCode::budget_exceeded);
  EXPECT_EQ(over.level, "acme/team");
  EXPECT_EQ(over.available, units(5));
  EXPECT_EQ(over.requested, Money::from_micros(units(5).micros() + 1));
  EXPECT_FALSE(over.message.empty());
}

TEST(Decide, FrozenComesBeforePerTransactionAndBudget) {
  Tree tree;
  tree.agent.frozen = true;
  tree.agent.frozen_reason = "runaway";
  tree.team.per_txn_max = units(1);
  tree.root.limit = units(1);
  const Decision decision = tree.decide_spend(units(5).micros());
  EXPECT_FALSE(decision.accepted);
  EXPECT_EQ(decision.code, DenialCode::frozen);
  EXPECT_EQ(decision.level, "acme/team/agent");
  EXPECT_NE(decision.message.find("runaway"), std::string::npos) << decision.message;
  EXPECT_EQ(denial_code_name(decision.code), "frozen");
}

TEST(Decide, PerTransactionComesBeforeBudget) {
  Tree tree;
  tree.agent.per_txn_max = units(2);
  tree.root.limit = units(1);
  const Decision decision = tree.decide_spend(units(3).micros());
  EXPECT_FALSE(decision.accepted);
  EXPECT_EQ(decision.code, DenialCode::per_txn_exceeded);
  EXPECT_EQ(decision.level, "acme/team/agent");
  EXPECT_EQ(denial_code_name(decision.code), "per_txn_exceeded");
}

TEST(Decide, PerTransactionMaximumIsInclusive) {
  Tree tree;
  tree.agent.per_txn_max = units(2);
  EXPECT_TRUE(tree.decide_spend(units(2).micros()).accepted);
  EXPECT_FALSE(tree.decide_spend(units(2).micros() + 1).accepted);
}

TEST(Decide, ReportsTheHighestLevelBreakingTheFirstRule) {
  Tree frozen;
  frozen.root.frozen = true;
  frozen.agent.frozen = true;
  EXPECT_EQ(frozen.decide_spend(1).level, "acme");

  Tree per_txn;
  per_txn.team.per_txn_max = units(1);
  per_txn.agent.per_txn_max = units(1);
  EXPECT_EQ(per_txn.decide_spend(units(2).micros()).level, "acme/team");

  Tree budget;
  budget.root.limit = units(5);
  budget.team.limit = units(4);
  budget.agent.limit = units(1);
  const Decision decision = budget.decide_spend(units(6).micros());
  EXPECT_EQ(decision.code, DenialCode::budget_exceeded);
  // Every level is short; the one with the least room binds, and the denial's level and
  // available agree.
  EXPECT_EQ(decision.level, "acme/team/agent");
  EXPECT_EQ(decision.available, units(1));
  Tree tie;
  tie.root.limit = units(1);
  tie.agent.limit = units(1);
  EXPECT_EQ(tie.decide_spend(units(2).micros()).level, "acme");
  // Only the agent is short: it is the level reported.
  const Decision agent_only = budget.decide_spend(units(2).micros());
  EXPECT_EQ(agent_only.level, "acme/team/agent");
}

TEST(Decide, LaterRulesAreCheckedOnEveryLevelEvenWhenAnEarlierLevelIsFine) {
  // A per-transaction maximum deep in the tree beats a budget shortfall at the root.
  Tree tree;
  tree.root.limit = units(1);
  tree.agent.per_txn_max = units(1);
  const Decision decision = tree.decide_spend(units(2).micros());
  EXPECT_EQ(decision.code, DenialCode::per_txn_exceeded);
  EXPECT_EQ(decision.level, "acme/team/agent");
}

TEST(Decide, AvailableIsTheMinimumOverThePath) {
  Tree tree;
  tree.root.limit = units(100);
  tree.root.spent = units(10);  // room 90
  tree.team.limit = units(50);
  tree.team.reserved = units(45);  // room 5
  tree.agent.limit = units(20);    // room 20
  EXPECT_EQ(tree.available(), units(5));
  const Decision decision = tree.decide_spend(units(1).micros());
  EXPECT_TRUE(decision.accepted);
  EXPECT_EQ(decision.available, units(5));

  // A node without a limit does not take part.
  tree.team.limit.reset();
  EXPECT_EQ(tree.available(), units(20));
  // Never negative, even if a node's usage is above its limit.
  tree.agent.spent = units(25);
  EXPECT_EQ(tree.available(), Money::zero());
}

TEST(Decide, LazyPeriodResetMakesSpentZeroInANewPeriod) {
  Tree tree;
  tree.team.limit = units(10);
  tree.team.period = Period::day;
  tree.team.period_start = period_start(Period::day, t0);
  tree.team.spent = units(10);
  tree.team.reserved = units(1);
  // Today the team is spent out.
  const Decision today = tree.decide_spend(1, t0);
  EXPECT_FALSE(today.accepted);
  EXPECT_EQ(today.level, "acme/team");
  EXPECT_EQ(tree.available(t0), Money::zero());
  // One microsecond before midnight it still is; at midnight spent restarts, reserved stays.
  const Micros midnight = period_start(Period::day, t0) + day;
  EXPECT_FALSE(tree.decide_spend(1, midnight - 1).accepted);
  const Decision tomorrow = tree.decide_spend(units(9).micros(), midnight);
  EXPECT_TRUE(tomorrow.accepted);
  EXPECT_EQ(tomorrow.available, units(9));
  EXPECT_FALSE(tree.decide_spend(units(9).micros() + 1, midnight).accepted);
}

TEST(Decide, LifetimePeriodNeverResets) {
  Tree tree;
  tree.root.limit = units(10);
  tree.root.period = Period::none;
  tree.root.period_start = 0;
  tree.root.spent = units(10);
  EXPECT_FALSE(tree.decide_spend(1, t0 + 400 * day).accepted);
}

// ---- vendor_limit_exceeded -------------------------------------------------------------------

constexpr Micros hour = 3'600 * micros_per_second;

// A vendor rule on `node`, with `used_units` already captured against it this month.
void add_vendor_limit(BudgetNode& node, std::vector<std::string> vendors, int64_t limit_units,
                      int64_t used_units = 0) {
  const VendorLimit rule{std::move(vendors), units(limit_units), Period::month, 0};
  node.policies.vendor_limits.push_back(rule);
  sync_usage(node.usage, node.policies, t0 - hour);
  node.usage.vendor_counter(rule.counter_key())
      ->count(rule, units(used_units).micros(), /*captured=*/true, t0 - hour);
}

Decision decide_for(const Tree& tree, int64_t amount_micros, std::string_view vendor,
                    bool hold = false) {
  const std::vector<const BudgetNode*> path = {&tree.root, &tree.team, &tree.agent};
  return decide(path, SpendRequest{Money::from_micros(amount_micros), vendor, hold}, t0);
}

TEST(DecideVendorLimit, RefusesAboveTheRuleAndNamesTheLevelAndTheRule) {
  Tree tree;
  add_vendor_limit(tree.root, {"api.twilio.com"}, 20, 5);
  add_vendor_limit(tree.team, {"*.openai.com"}, 50);
  add_vendor_limit(tree.team, {"api.twilio.com"}, 10, 4);
  // The team rule has 6.00 left, the root rule 15.00: exactly 6.00 passes, a micro more fails.
  EXPECT_TRUE(decide_for(tree, units(6).micros(), "api.twilio.com").accepted);
  const Decision over = decide_for(tree, units(6).micros() + 1, "api.twilio.com");
  ASSERT_FALSE(over.accepted);
  EXPECT_EQ(over.code, DenialCode::vendor_limit_exceeded);
  EXPECT_EQ(denial_code_name(over.code), "vendor_limit_exceeded");
  EXPECT_EQ(over.level, "acme/team");
  EXPECT_EQ(over.vendor_rule, 1u);
  EXPECT_EQ(over.available, units(6));
  EXPECT_NE(over.message.find("acme/team"), std::string::npos) << over.message;
  EXPECT_NE(over.message.find("10.00 per month on api.twilio.com"), std::string::npos)
      << over.message;
  // The highest level breaking a rule is the one reported.
  const Decision both = decide_for(tree, units(16).micros(), "API.Twilio.com");
  EXPECT_EQ(both.code, DenialCode::vendor_limit_exceeded);
  EXPECT_EQ(both.level, "acme");
  EXPECT_EQ(both.vendor_rule, 0u);
  // Other vendors, and a spend without a vendor, are not counted by the rules.
  EXPECT_TRUE(decide_for(tree, units(1'000).micros(), "api.stripe.com").accepted);
  EXPECT_TRUE(decide_for(tree, units(1'000).micros(), "").accepted);
  EXPECT_FALSE(decide_for(tree, units(51).micros(), "api.openai.com").accepted);
}

TEST(DecideVendorLimit, CountsByRollingWindow) {
  Tree tree;
  const VendorLimit rule{{"*.openai.com"}, units(5), std::nullopt, hour};
  tree.team.policies.vendor_limits = {rule};
  sync_usage(tree.team.usage, tree.team.policies, t0);
  tree.team.usage.vendor_counters[0].count(rule, units(5).micros(), true, t0);
  const std::vector<const BudgetNode*> path = {&tree.root, &tree.team, &tree.agent};
  const auto decide_at = [&](Micros now) {
    return decide(path, SpendRequest{Money::from_micros(1), "api.openai.com", false}, now);
  };
  EXPECT_EQ(decide_at(t0 + hour).code, DenialCode::vendor_limit_exceeded);
  // The bucket [t0, t0 + 1m) leaves the window at t0 + 1m + 1h, not a microsecond earlier.
  EXPECT_FALSE(decide_at(t0 + hour + 60 * micros_per_second - 1).accepted);
  EXPECT_TRUE(decide_at(t0 + hour + 60 * micros_per_second).accepted);
}

// vendor_limit_exceeded against every other code: each earlier rule wins over it, it wins
// over each later one, whichever level of the path each rule is on.
TEST(DecideVendorLimit, PrecedenceAgainstEveryOtherCode) {
  const std::string vendor = "api.twilio.com";
  const int64_t amount = units(2).micros();
  const auto with_vendor_rule = [](BudgetNode& node) {
    add_vendor_limit(node, {"api.twilio.com"}, 1);
  };
  struct Case {
    const char* name;
    std::function<void(Tree&)> other;  // breaks one other rule
    DenialCode expected;
    bool hold = false;
  };
  const std::vector<Case> cases = {
      {"frozen", [](Tree& tree) { tree.agent.frozen = true; }, DenialCode::frozen},
      {"vendor_blocked", [](Tree& tree) { tree.agent.policies.vendors.block = {"api.twilio.com"}; },
       DenialCode::vendor_blocked},
      {"vendor_not_allowed",
       [](Tree& tree) { tree.team.policies.vendors.allow = {"api.openai.com"}; },
       DenialCode::vendor_blocked},
      {"per_txn_exceeded", [](Tree& tree) { tree.agent.per_txn_max = units(1); },
       DenialCode::per_txn_exceeded},
      {"approval_required", [](Tree& tree) { tree.agent.policies.approval_above = units(1); },
       DenialCode::approval_required},
      // A hold above the threshold is not refused by it: it goes on to the vendor cap.
      {"approval_hold", [](Tree& tree) { tree.agent.policies.approval_above = units(1); },
       DenialCode::vendor_limit_exceeded, true},
      {"window_exceeded",
       [](Tree& tree) {
         tree.agent.policies.windows = {{hour, units(1)}};
         sync_usage(tree.agent.usage, tree.agent.policies, t0);
       },
       DenialCode::window_exceeded},
      {"budget_exceeded", [](Tree& tree) { tree.root.limit = units(1); },
       DenialCode::vendor_limit_exceeded},
      {"breaker_tripped",
       [](Tree& tree) {
         tree.root.policies.breaker = BreakerSettings{hour, units(1), std::nullopt};
       },
       DenialCode::vendor_limit_exceeded},
  };
  for (const Case& test : cases) {
    // The vendor rule on the root (above the other rule) and on the agent (below it).
    for (const bool rule_on_root : {true, false}) {
      Tree tree;
      test.other(tree);
      with_vendor_rule(rule_on_root ? tree.root : tree.agent);
      const Decision decision = decide_for(tree, amount, vendor, test.hold);
      ASSERT_FALSE(decision.accepted) << test.name;
      EXPECT_EQ(decision.code, test.expected) << test.name << " rule_on_root=" << rule_on_root;
      EXPECT_EQ(decision.vendor_rule.has_value(),
                test.expected == DenialCode::vendor_limit_exceeded)
          << test.name;
      // Without the vendor rule the other rule refuses (or, for the hold, it waits): the case
      // really breaks both.
      Tree other_only;
      test.other(other_only);
      const Decision alone = decide_for(other_only, amount, vendor, test.hold);
      if (test.hold) {
        EXPECT_TRUE(alone.accepted && alone.needs_approval) << test.name;
      } else {
        EXPECT_FALSE(alone.accepted) << test.name;
        EXPECT_NE(alone.code, DenialCode::vendor_limit_exceeded) << test.name;
      }
    }
  }
}

TEST(BudgetNode, SpentAtAndRollPeriod) {
  BudgetNode team = node("acme/team", 10);
  team.period = Period::week;
  team.period_start = period_start(Period::week, t0);
  team.spent = units(7);
  team.reserved = units(2);
  EXPECT_EQ(team.spent_at(t0), units(7));
  EXPECT_EQ(team.available_at(t0), units(1));
  const Micros next_week = team.period_start + 7 * day;
  EXPECT_EQ(team.spent_at(next_week), Money::zero());
  EXPECT_EQ(team.available_at(next_week), units(8));
  team.roll_period(t0);
  EXPECT_EQ(team.spent, units(7));  // same period: nothing changes
  team.roll_period(next_week);
  EXPECT_EQ(team.spent, Money::zero());
  EXPECT_EQ(team.reserved, units(2));
  EXPECT_EQ(team.period_start, next_week);
  EXPECT_FALSE(node("acme").available_at(t0).has_value());
}

TEST(Hold, StatusAtReadsExpiredPastItsExpiry) {
  Hold hold;
  hold.status = HoldStatus::held;
  hold.expires_at = t0;
  EXPECT_EQ(hold.status_at(t0 - 1), HoldStatus::held);
  EXPECT_EQ(hold.status_at(t0), HoldStatus::expired);
  hold.status = HoldStatus::captured;
  EXPECT_EQ(hold.status_at(t0 + 1), HoldStatus::captured);
  for (HoldStatus status :
       {HoldStatus::held, HoldStatus::captured, HoldStatus::voided, HoldStatus::expired,
        HoldStatus::pending_approval, HoldStatus::rejected}) {
    EXPECT_EQ(parse_hold_status(hold_status_name(status)), status);
  }
  EXPECT_FALSE(parse_hold_status("open").has_value());
}

}  // namespace
}  // namespace stub::ledger
