// Policies: rolling time buckets (the exact window boundary and the documented granularity),
// vendor patterns, storage codecs, and the decision function's policy rules at their exact
// accept/deny boundaries and in SPEC precedence.

#include "ledger/policy.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ledger/decision.hpp"
#include "ledger/model.hpp"

namespace stub::ledger {
namespace {

constexpr Micros second = micros_per_second;
constexpr Micros minute = 60 * second;
constexpr Micros hour = 60 * minute;
// 2024-02-29T12:00:00Z, a whole number of hours and of 1-minute buckets.
constexpr Micros t0 = 1'709'164'800'000'000 + 12 * hour;

Money units(int64_t whole) {
  return Money::from_micros(whole * Money::micros_per_unit);
}

// ---- Rings -----------------------------------------------------------------------------------

TEST(Ring, BucketsAreADurationOverSixtyWide) {
  EXPECT_EQ((Ring{hour, 0, {}}.width()), minute);
  EXPECT_EQ((Ring{60 * second, 0, {}}.width()), second);
  EXPECT_EQ((Ring{second, 0, {}}.width()), second / 60);
}

TEST(Ring, AnAmountCountsForExactlyTheWindowPlusAtMostOneBucket) {
  // A 1h window with 1-minute buckets; 1.00 is spent at t0 + 30 s (inside bucket [t0, t0+1m)).
  Ring ring{hour, t0, {}};
  const Micros made = t0 + 30 * second;
  ring.add(made, units(1).micros(), 1, made);
  EXPECT_EQ(ring.amount_at(made), units(1));
  EXPECT_EQ(ring.count_at(made), 1);
  // It must count for the whole hour after it was made: never refuse late.
  EXPECT_EQ(ring.amount_at(made + hour - 1), units(1));
  EXPECT_EQ(ring.amount_at(made + hour), units(1));
  // Its bucket ends at t0 + 1m, so it stops counting exactly when the window no longer
  // overlaps the bucket: at t0 + 1m + 1h. Early refusal is bounded by one bucket (1 minute).
  EXPECT_EQ(ring.amount_at(t0 + minute + hour - 1), units(1));
  EXPECT_EQ(ring.amount_at(t0 + minute + hour), Money::zero());
  EXPECT_EQ(ring.count_at(t0 + minute + hour), 0);
}

TEST(Ring, OldBucketsAreDroppedWhenWritingAndSumsSlide) {
  Ring ring{hour, t0, {}};
  for (int i = 0; i < 180; ++i) {
    const Micros at = t0 + i * minute;
    ring.add(at, units(1).micros(), 1, at);
    EXPECT_LE(ring.buckets.size(), 61u);
  }
  const Micros last = t0 + 179 * minute;
  // The window ending at `last` overlaps the buckets of minutes 119..179: 61 buckets.
  EXPECT_EQ(ring.amount_at(last), units(61));
  EXPECT_EQ(ring.count_at(last), 61);
}

TEST(Ring, ReleaseTakesBackFromTheBucketTheHoldWasMadeIn) {
  Ring ring{hour, t0, {}};
  ring.add(t0, units(5).micros(), 1, t0);
  ring.add(t0 + 10 * minute, units(2).micros(), 1, t0 + 10 * minute);
  ring.release(t0, units(3).micros());
  EXPECT_EQ(ring.amount_at(t0 + 10 * minute), units(4));
  EXPECT_EQ(ring.count_at(t0 + 10 * minute), 2);  // counts are attempts: never taken back
  // Never below zero, and nothing for a hold made before the ring existed.
  ring.release(t0, units(100).micros());
  EXPECT_EQ(ring.amount_at(t0 + 10 * minute), units(2));
  Ring late{hour, t0 + 30 * second, {}};
  late.add(t0 + 40 * second, units(1).micros(), 1, t0 + 40 * second);
  late.release(t0 + 10 * second, units(1).micros());  // same bucket, but made before `since`
  EXPECT_EQ(late.amount_at(t0 + minute), units(1));
}

TEST(Ring, SumsSaturateInsteadOfWrapping) {
  Ring ring{hour, t0, {}};
  ring.add(t0, Money::micros_max, 1, t0);
  ring.add(t0 + minute, Money::micros_max, 1, t0 + minute);
  ring.add(t0 + minute, Money::micros_max, 1, t0 + minute);
  EXPECT_EQ(ring.amount_at(t0 + minute).micros(), Money::micros_max);
}

TEST(Hold, APendingApprovalReadsRejectedAtItsDeadline) {
  Hold hold;
  hold.status = HoldStatus::pending_approval;
  hold.expires_at = t0;
  EXPECT_TRUE(hold.open());
  EXPECT_EQ(hold.status_at(t0 - 1), HoldStatus::pending_approval);
  EXPECT_EQ(hold.status_at(t0), HoldStatus::rejected);
  hold.status = HoldStatus::rejected;
  EXPECT_FALSE(hold.open());
}

// ---- Vendor patterns -------------------------------------------------------------------------

TEST(VendorPattern, WellFormedAndMalformed) {
  for (const char* good : {"api.openai.com", "openai", "*.example.com", "*.com", "x402:base",
                           "a-b_c/d", "localhost:8080"}) {
    EXPECT_TRUE(valid_vendor_pattern(good)) << good;
  }
  for (const char* bad :
       {"", "*", "*.", "**.example.com", "api.*.com", "*example.com", "example.*", ".example.com",
        "example.com.", "a..b", "has space", "Upper.com", "*..com", "quote\"", "x*"}) {
    EXPECT_FALSE(valid_vendor_pattern(bad)) << bad;
  }
  EXPECT_FALSE(valid_vendor_pattern(std::string(254, 'a')));
  EXPECT_TRUE(valid_vendor_pattern(std::string(253, 'a')));
}

TEST(VendorPattern, ExactNamesAndWildcards) {
  EXPECT_TRUE(vendor_matches("api.openai.com", "api.openai.com"));
  EXPECT_TRUE(vendor_matches("api.openai.com", "API.OpenAI.com"));  // names ignore case
  EXPECT_FALSE(vendor_matches("api.openai.com", "api.openai.com.evil"));
  EXPECT_FALSE(vendor_matches("openai", "openai2"));
  EXPECT_TRUE(vendor_matches("*.example.com", "a.example.com"));
  EXPECT_TRUE(vendor_matches("*.example.com", "a.b.example.com"));
  EXPECT_FALSE(vendor_matches("*.example.com", "example.com"));
  EXPECT_FALSE(vendor_matches("*.example.com", "badexample.com"));
  EXPECT_FALSE(vendor_matches("*.example.com", ".example.com"));
  EXPECT_FALSE(vendor_matches("*.example.com", ""));
}

// ---- Codecs ----------------------------------------------------------------------------------

TEST(PolicyStorage, RoundTripsEveryField) {
  Policies policies;
  policies.windows = {{hour, units(5)}, {24 * hour, units(50)}};
  policies.vendors.allow = {"*.openai.com", "anthropic"};
  policies.vendors.block = {"bad.openai.com"};
  policies.approval_above = units(10);
  policies.breaker = BreakerSettings{minute, units(3), 20};
  policies.thresholds = std::vector<int>{25, 90};
  EXPECT_EQ(policies_from_storage(policies_to_storage(policies)).value(), policies);

  Policies partial;
  partial.breaker = BreakerSettings{minute, std::nullopt, 5};
  partial.thresholds = std::vector<int>{};  // no alerts, which differs from the default
  EXPECT_EQ(policies_from_storage(policies_to_storage(partial)).value(), partial);
  EXPECT_EQ(policies_to_storage(Policies{}), "");
  EXPECT_EQ(policies_from_storage("").value(), Policies{});
  EXPECT_EQ(Policies{}.effective_thresholds(), (std::vector<int>{50, 80, 100}));
}

// A stored form that cannot be read is an error, never "no policy" (which would lift every
// limit the row's policies set).
TEST(PolicyStorage, MalformedIsAnErrorNeverNoPolicy) {
  for (const char* text :
       {"not json", "[]", "{\"w\":5}", "{\"w\":[[3600000000]]}", "{\"va\":[1]}", "{\"aa\":\"10\"}",
        "{\"b\":[60000000,\"x\",null]}", "{\"t\":[0]}", "{\"t\":[101]}"}) {
    const auto parsed = policies_from_storage(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.error().subcode, "ledger_state_invalid") << text;
  }
  for (const char* text : {"nope", "{\"w\":[[1]]}", "{\"b\":[0,0,[]]}", "{\"t\":[1]}",
                           "{\"w\":[[3600000000,0,[1,2]]]}"}) {
    EXPECT_FALSE(usage_from_storage(text).ok()) << text;
  }
}

// A field a newer version wrote survives a read and rewrite by this one.
TEST(PolicyStorage, UnknownFieldsSurviveARewrite) {
  const auto parsed = policies_from_storage("{\"aa\":5000000,\"zz\":{\"future\":[1,2]}}");
  ASSERT_TRUE(parsed.ok());
  Policies policies = parsed.value();
  EXPECT_EQ(policies.approval_above, units(5));
  policies.approval_above = units(7);
  policies.vendors.allow = {"api.openai.com"};
  const std::string stored = policies_to_storage(policies);
  EXPECT_NE(stored.find("\"zz\":{\"future\":[1,2]}"), std::string::npos) << stored;
  const auto again = policies_from_storage(stored);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), policies);
  // Clearing every known policy still keeps what this version cannot interpret.
  Policies cleared;
  cleared.unknown_json = policies.unknown_json;
  EXPECT_EQ(policies_to_storage(cleared), "{\"zz\":{\"future\":[1,2]}}");
}

TEST(UsageStorage, RoundTripsRingsAndAlertState) {
  Usage usage;
  usage.windows.push_back(Ring{hour, t0, {{100, 5, 1}, {101, 7, 2}}});
  usage.breaker = Ring{minute, t0 - 1, {{7, 1, 1}}};
  usage.alerted_period_start = t0 - 12 * hour;
  usage.alerted_percent = 80;
  EXPECT_EQ(usage_from_storage(usage_to_storage(usage)).value(), usage);
  EXPECT_EQ(usage_to_storage(Usage{}), "");
  EXPECT_EQ(usage_from_storage("").value(), Usage{});
}

TEST(FormatDuration, LargestEvenUnit) {
  EXPECT_EQ(format_duration(hour), "1h");
  EXPECT_EQ(format_duration(90 * minute), "90m");
  EXPECT_EQ(format_duration(24 * hour), "1d");
  EXPECT_EQ(format_duration(1'500 * 1'000), "1500ms");
  EXPECT_EQ(format_duration(30 * second), "30s");
}

TEST(SyncUsage, KeepsRingsOfTheSameDurationAndStartsNewOnesNow) {
  Usage usage;
  Policies policies;
  policies.windows = {{hour, units(5)}};
  policies.breaker = BreakerSettings{minute, std::nullopt, 3};
  sync_usage(usage, policies, t0);
  ASSERT_EQ(usage.windows.size(), 1u);
  EXPECT_EQ(usage.windows[0].since, t0);
  usage.windows[0].add(t0, 100, 1, t0);
  // A new limit on the same duration keeps the counts; a new duration starts empty.
  policies.windows = {{minute, units(1)}, {hour, units(9)}};
  sync_usage(usage, policies, t0 + second);
  ASSERT_EQ(usage.windows.size(), 2u);
  EXPECT_EQ(usage.windows[0].duration, minute);
  EXPECT_EQ(usage.windows[0].since, t0 + second);
  EXPECT_EQ(usage.windows[1].amount_at(t0 + second).micros(), 100);
  policies.breaker.reset();
  policies.windows.clear();
  sync_usage(usage, policies, t0 + 2 * second);
  EXPECT_TRUE(usage.windows.empty());
  EXPECT_FALSE(usage.breaker.has_value());
}

// ---- Vendor limits -----------------------------------------------------------------------------

VendorLimit monthly(std::vector<std::string> vendors, int64_t limit_units) {
  return VendorLimit{std::move(vendors), units(limit_units), Period::month, 0};
}

VendorLimit rolling(std::vector<std::string> vendors, int64_t limit_units, Micros window) {
  return VendorLimit{std::move(vendors), units(limit_units), std::nullopt, window};
}

TEST(VendorLimit, MatchesAnyOfItsPatternsAndNeverAnEmptyVendor) {
  const VendorLimit rule = monthly({"api.twilio.com", "*.openai.com"}, 10);
  EXPECT_TRUE(rule.matches("api.twilio.com"));
  EXPECT_TRUE(rule.matches("API.Twilio.com"));
  EXPECT_TRUE(rule.matches("api.openai.com"));
  EXPECT_FALSE(rule.matches("openai.com"));
  EXPECT_FALSE(rule.matches("api.twilio.co"));
  EXPECT_FALSE(rule.matches(""));
}

TEST(VendorLimit, CounterKeyNamesPatternsAndPeriodButNotTheLimit) {
  const VendorLimit rule = monthly({"b.com", "a.com"}, 10);
  EXPECT_EQ(rule.counter_key(), monthly({"a.com", "b.com"}, 99).counter_key());
  EXPECT_EQ(rule.counter_key().size(), 16u);
  EXPECT_NE(rule.counter_key(), monthly({"a.com"}, 10).counter_key());
  EXPECT_NE(rule.counter_key(),
            (VendorLimit{{"a.com", "b.com"}, units(10), Period::day, 0}).counter_key());
  EXPECT_NE(rule.counter_key(), rolling({"a.com", "b.com"}, 10, hour).counter_key());
  EXPECT_NE(rolling({"a.com"}, 10, hour).counter_key(),
            rolling({"a.com"}, 10, minute).counter_key());
}

TEST(VendorCounter, PeriodCountsHeldAndCapturedAndResetsOnlyForward) {
  const VendorLimit rule = VendorLimit{{"x.com"}, units(10), Period::day, 0};
  Policies policies;
  policies.vendor_limits = {rule};
  Usage usage;
  sync_usage(usage, policies, t0);
  ASSERT_EQ(usage.vendor_counters.size(), 1u);
  VendorCounter& counter = usage.vendor_counters[0];
  counter.count(rule, units(3).micros(), /*captured=*/true, t0);
  counter.count(rule, units(4).micros(), /*captured=*/false, t0);
  EXPECT_EQ(counter.used_at(rule, t0), units(7));
  // Capturing 1.00 of the 4.00 hold keeps 1.00 and releases 3.00.
  counter.settle(rule, t0, units(4).micros(), units(1).micros(), t0 + second);
  EXPECT_EQ(counter.used_at(rule, t0 + second), units(4));
  EXPECT_EQ(usage.vendor_used(rule, t0 + second), units(4));
  // At UTC midnight what was captured stops counting; an outstanding hold keeps counting.
  counter.count(rule, units(2).micros(), false, t0 + second);
  const Micros midnight = period_start(Period::day, t0) + 24 * hour;
  EXPECT_EQ(counter.used_at(rule, midnight - 1), units(6));
  EXPECT_EQ(counter.used_at(rule, midnight), units(2));
  counter.count(rule, units(1).micros(), true, midnight);
  EXPECT_EQ(counter.period_start, midnight);
  // A clock behind the recorded period never reopens the day before.
  EXPECT_EQ(counter.used_at(rule, t0), units(3));
  // A hold made before the rule started was never counted: its release takes nothing back,
  // and what it captures counts now.
  counter.settle(rule, t0 - hour, units(5).micros(), units(1).micros(), midnight);
  EXPECT_EQ(counter.used_at(rule, midnight), units(4));
}

TEST(VendorCounter, WindowCountsInBucketsAndReleasesIntoTheBucketItWasHeldIn) {
  const VendorLimit rule = rolling({"x.com"}, 10, hour);
  Policies policies;
  policies.vendor_limits = {rule};
  Usage usage;
  sync_usage(usage, policies, t0);
  VendorCounter& counter = usage.vendor_counters[0];
  ASSERT_TRUE(counter.ring.has_value());
  counter.count(rule, units(4).micros(), false, t0 + 10 * second);
  counter.settle(rule, t0 + 10 * second, units(4).micros(), units(1).micros(), t0 + 30 * minute);
  EXPECT_EQ(counter.used_at(rule, t0 + 30 * minute), units(1));
  EXPECT_EQ(counter.used_at(rule, t0 + minute + hour - 1), units(1));
  EXPECT_EQ(counter.used_at(rule, t0 + minute + hour), Money::zero());
}

TEST(SyncUsage, VendorCountersFollowTheirRuleByKey) {
  Policies policies;
  policies.vendor_limits = {monthly({"a.com"}, 10), rolling({"b.com"}, 5, hour)};
  Usage usage;
  sync_usage(usage, policies, t0);
  ASSERT_EQ(usage.vendor_counters.size(), 2u);
  usage.vendor_counters[0].count(policies.vendor_limits[0], 100, true, t0);
  // Reordered, a new limit on the same rule, and a new rule: counts stay with their rule.
  policies.vendor_limits = {rolling({"b.com"}, 5, hour), monthly({"c.com"}, 1),
                            monthly({"a.com"}, 20)};
  sync_usage(usage, policies, t0 + second);
  ASSERT_EQ(usage.vendor_counters.size(), 3u);
  EXPECT_EQ(usage.vendor_used(policies.vendor_limits[2], t0 + second).micros(), 100);
  EXPECT_EQ(usage.vendor_counters[1].since, t0 + second);
  EXPECT_EQ(usage.vendor_counters[2].since, t0);
  policies.vendor_limits.clear();
  sync_usage(usage, policies, t0 + 2 * second);
  EXPECT_TRUE(usage.vendor_counters.empty());
}

TEST(PolicyStorage, VendorLimitsAndCountersRoundTrip) {
  Policies policies;
  policies.vendor_limits = {monthly({"api.twilio.com"}, 2'000), rolling({"*.openai.com"}, 50, hour),
                            VendorLimit{{"x.com"}, Money::zero(), Period::none, 0}};
  const std::string stored = policies_to_storage(policies);
  EXPECT_EQ(policies_from_storage(stored).value(), policies) << stored;
  Usage usage;
  sync_usage(usage, policies, t0);
  usage.vendor_counters[0].count(policies.vendor_limits[0], 7, false, t0);
  usage.vendor_counters[0].alerted_start = t0;
  usage.vendor_counters[0].alerted_percent = 50;
  usage.vendor_counters[1].count(policies.vendor_limits[1], 9, true, t0);
  EXPECT_EQ(usage_from_storage(usage_to_storage(usage)).value(), usage);
  for (const char* text :
       {"{\"vl\":5}", "{\"vl\":[[[],1,\"month\",0]]}", "{\"vl\":[[[\"a.com\"],1,\"year\",0]]}",
        "{\"vl\":[[[\"a.com\"],1,\"month\",3600000000]]}", "{\"vl\":[[[\"a.com\"],1,null,0]]}",
        "{\"vl\":[[[\"a.com\"],-1,\"day\",0]]}"}) {
    EXPECT_FALSE(policies_from_storage(text).ok()) << text;
  }
  for (const char* text :
       {"{\"vl\":5}", "{\"vl\":[[\"k\",0,0,-1,0,null,0,0]]}", "{\"vl\":[[\"k\",0,0,0,0,5,0,0]]}"}) {
    EXPECT_FALSE(usage_from_storage(text).ok()) << text;
  }
}

// ---- The decision function with policies ------------------------------------------------------

BudgetNode node(std::string path) {
  BudgetNode out;
  out.path = path;
  out.root = path.substr(0, path.find('/'));
  const size_t slash = path.rfind('/');
  out.parent = slash == std::string::npos ? "" : path.substr(0, slash);
  out.period = Period::month;
  out.period_start = period_start(Period::month, t0);
  return out;
}

struct Tree {
  BudgetNode root = node("acme");
  BudgetNode team = node("acme/team");
  BudgetNode agent = node("acme/team/agent");

  Decision decide_spend(Money amount, std::string_view vendor = "api.openai.com", Micros now = t0,
                        bool hold = false) {
    sync_usage(root.usage, root.policies, t0 - 2 * hour);
    sync_usage(team.usage, team.policies, t0 - 2 * hour);
    sync_usage(agent.usage, agent.policies, t0 - 2 * hour);
    const std::vector<const BudgetNode*> path = {&root, &team, &agent};
    return decide(path, SpendRequest{amount, vendor, hold}, now);
  }
  Decision decide_hold(Money amount, std::string_view vendor = "api.openai.com") {
    return decide_spend(amount, vendor, t0, true);
  }
};

TEST(DecidePolicies, VendorBlockAnywhereUpThePathWins) {
  Tree tree;
  tree.root.policies.vendors.block = {"*.evil.com"};
  tree.agent.policies.vendors.allow = {"*.evil.com", "api.openai.com"};
  const Decision blocked = tree.decide_spend(units(1), "x.evil.com");
  EXPECT_FALSE(blocked.accepted);
  EXPECT_EQ(blocked.code, DenialCode::vendor_blocked);
  EXPECT_EQ(blocked.level, "acme");
  EXPECT_TRUE(tree.decide_spend(units(1), "api.openai.com").accepted);
  // The blocked suffix does not cover the bare domain, which the allow list does not name.
  const Decision bare = tree.decide_spend(units(1), "evil.com");
  EXPECT_EQ(bare.code, DenialCode::vendor_blocked);
  EXPECT_EQ(bare.level, "acme/team/agent");
}

TEST(DecidePolicies, AllowListsIntersect) {
  Tree tree;
  tree.root.policies.vendors.allow = {"*.openai.com", "anthropic"};
  tree.team.policies.vendors.allow = {"api.openai.com", "openrouter"};
  EXPECT_TRUE(tree.decide_spend(units(1), "api.openai.com").accepted);
  const Decision root_refuses = tree.decide_spend(units(1), "openrouter");
  EXPECT_EQ(root_refuses.code, DenialCode::vendor_blocked);
  EXPECT_EQ(root_refuses.level, "acme");
  const Decision team_refuses = tree.decide_spend(units(1), "anthropic");
  EXPECT_EQ(team_refuses.level, "acme/team");
  // Without a vendor, an allow list admits nothing; a block list alone admits it.
  EXPECT_EQ(tree.decide_spend(units(1), "").code, DenialCode::vendor_blocked);
  Tree block_only;
  block_only.team.policies.vendors.block = {"x"};
  EXPECT_TRUE(block_only.decide_spend(units(1), "").accepted);
}

TEST(DecidePolicies, WindowBoundaryIsInclusiveAndSlides) {
  Tree tree;
  tree.team.policies.windows = {{hour, units(5)}};
  sync_usage(tree.team.usage, tree.team.policies, t0 - 2 * hour);
  tree.team.usage.windows[0].add(t0 - 30 * minute, units(3).micros(), 1, t0);
  // Exactly the rest of the window is fine, one micro-unit more is not.
  EXPECT_TRUE(tree.decide_spend(units(2)).accepted);
  const Decision over = tree.decide_spend(Money::from_micros(units(2).micros() + 1));
  EXPECT_FALSE(over.accepted);
  EXPECT_EQ(over.code, DenialCode::window_exceeded);
  EXPECT_EQ(over.level, "acme/team");
  EXPECT_EQ(over.available, units(2));
  // The 3.00 was made at t0 - 30m in the bucket [t0 - 30m, t0 - 29m): it counts until
  // t0 + 31m and no longer from then on.
  const Money five = units(5);
  EXPECT_FALSE(tree.decide_spend(five, "api.openai.com", t0 + 31 * minute - 1).accepted);
  EXPECT_TRUE(tree.decide_spend(five, "api.openai.com", t0 + 31 * minute).accepted);
}

TEST(DecidePolicies, EveryWindowOfEveryLevelApplies) {
  Tree tree;
  tree.root.policies.windows = {{hour, units(100)}, {24 * hour, units(6)}};
  tree.agent.policies.windows = {{minute, units(50)}};
  const Decision decision = tree.decide_spend(units(7));
  EXPECT_EQ(decision.code, DenialCode::window_exceeded);
  EXPECT_EQ(decision.level, "acme");
  EXPECT_NE(decision.message.find("per 1d"), std::string::npos) << decision.message;
  EXPECT_TRUE(tree.decide_spend(units(6)).accepted);
}

TEST(DecidePolicies, BreakerTripsOnTheSpendPastItsCountOrAmount) {
  Tree tree;
  tree.team.policies.breaker = BreakerSettings{minute, units(10), 3};
  sync_usage(tree.team.usage, tree.team.policies, t0 - 2 * hour);
  Ring& ring = *tree.team.usage.breaker;
  ring.add(t0 - 10 * second, units(1).micros(), 1, t0);
  ring.add(t0 - 5 * second, units(1).micros(), 1, t0);
  // The third spend in the minute is fine; the fourth would make 4 > 3.
  EXPECT_TRUE(tree.decide_spend(units(1)).accepted);
  ring.add(t0, units(1).micros(), 1, t0);
  const Decision tripped = tree.decide_spend(units(1));
  EXPECT_FALSE(tripped.accepted);
  EXPECT_EQ(tripped.code, DenialCode::breaker_tripped);
  EXPECT_EQ(tripped.level, "acme/team");
  EXPECT_EQ(tripped.freeze_reason, "breaker: 4 spends in 1m (max 3)");

  Tree amounts;
  amounts.team.policies.breaker = BreakerSettings{minute, units(10), std::nullopt};
  sync_usage(amounts.team.usage, amounts.team.policies, t0 - 2 * hour);
  amounts.team.usage.breaker->add(t0, units(4).micros(), 1, t0);
  EXPECT_TRUE(amounts.decide_spend(units(6)).accepted);  // exactly 10.00: not more than the max
  const Decision over = amounts.decide_spend(Money::from_micros(units(6).micros() + 1));
  EXPECT_EQ(over.code, DenialCode::breaker_tripped);
  EXPECT_EQ(over.freeze_reason, "breaker: 10.000001 in 1m (max 10.00)");
}

TEST(DecidePolicies, BreakerCountsSlideOutOfItsDuration) {
  // 3 spends a minute; the spends at t0 count until their 1-second bucket leaves the minute.
  Tree tree;
  tree.team.policies.breaker = BreakerSettings{minute, std::nullopt, 3};
  sync_usage(tree.team.usage, tree.team.policies, t0 - 2 * hour);
  for (int i = 0; i < 3; ++i)
    tree.team.usage.breaker->add(t0, units(1).micros(), 1, t0);
  const Micros bucket_end = t0 + second;  // buckets of a 1-minute breaker are 1 s wide
  EXPECT_EQ(tree.decide_spend(units(1), "api.openai.com", bucket_end + minute - 1).code,
            DenialCode::breaker_tripped);
  EXPECT_TRUE(tree.decide_spend(units(1), "api.openai.com", bucket_end + minute).accepted);
}

TEST(DecidePolicies, ApprovalThresholdRefusesSpendsAndMarksHolds) {
  Tree tree;
  tree.team.policies.approval_above = units(10);
  EXPECT_TRUE(tree.decide_spend(units(10)).accepted);
  EXPECT_FALSE(tree.decide_spend(units(10)).needs_approval);
  const Decision spend = tree.decide_spend(Money::from_micros(units(10).micros() + 1));
  EXPECT_FALSE(spend.accepted);
  EXPECT_EQ(spend.code, DenialCode::approval_required);
  EXPECT_EQ(spend.level, "acme/team");
  EXPECT_NE(spend.message.find("approval threshold"), std::string::npos);
  const Decision hold = tree.decide_hold(units(11));
  EXPECT_TRUE(hold.accepted);
  EXPECT_TRUE(hold.needs_approval);
  EXPECT_EQ(hold.approval_level, "acme/team");
  // A hold that needs approval still meets every later rule.
  tree.root.limit = units(5);
  const Decision short_hold = tree.decide_hold(units(11));
  EXPECT_FALSE(short_hold.accepted);
  EXPECT_EQ(short_hold.code, DenialCode::budget_exceeded);
  EXPECT_FALSE(short_hold.needs_approval);
}

// A spend that breaks every rule gets the first code in SPEC order; removing that rule reveals
// the next one, all the way down the list.
TEST(DecidePolicies, PrecedenceFollowsTheSpecOrder) {
  Tree tree;
  tree.agent.frozen = true;
  tree.team.policies.vendors.block = {"api.openai.com"};
  tree.root.per_txn_max = units(1);
  tree.team.policies.approval_above = units(1);
  tree.agent.policies.windows = {{hour, units(1)}};
  tree.team.policies.vendor_limits = {VendorLimit{{"*.openai.com"}, units(1), Period::month, 0}};
  tree.root.limit = units(1);
  tree.team.policies.breaker = BreakerSettings{minute, units(1), std::nullopt};
  const Money amount = units(2);

  const std::vector<DenialCode> expected = {
      DenialCode::frozen,           DenialCode::vendor_blocked,
      DenialCode::per_txn_exceeded, DenialCode::approval_required,
      DenialCode::window_exceeded,  DenialCode::vendor_limit_exceeded,
      DenialCode::budget_exceeded,  DenialCode::breaker_tripped};
  std::vector<DenialCode> seen;
  for (size_t step = 0; step < expected.size(); ++step) {
    const Decision decision = tree.decide_spend(amount);
    ASSERT_FALSE(decision.accepted) << step;
    seen.push_back(decision.code);
    switch (decision.code) {
      case DenialCode::frozen:
        tree.agent.frozen = false;
        break;
      case DenialCode::vendor_blocked:
        tree.team.policies.vendors.block.clear();
        break;
      case DenialCode::per_txn_exceeded:
        tree.root.per_txn_max.reset();
        break;
      case DenialCode::approval_required:
        tree.team.policies.approval_above.reset();
        break;
      case DenialCode::window_exceeded:
        tree.agent.policies.windows.clear();
        break;
      case DenialCode::vendor_limit_exceeded:
        tree.team.policies.vendor_limits.clear();
        break;
      case DenialCode::budget_exceeded:
        tree.root.limit.reset();
        break;
      case DenialCode::breaker_tripped:
        tree.team.policies.breaker.reset();
        break;
    }
  }
  EXPECT_EQ(seen, expected);
  EXPECT_TRUE(tree.decide_spend(amount).accepted);
}

}  // namespace
}  // namespace stub::ledger
