// apply_command on an in-memory WorkingSet: the rules that depend on state, one case each,
// asserted on the core's typed answers (the HTTP rendering is the edge's, tested end to end).
// (tests/property drives the same function with random command sequences.)

#include "ledger/batch.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>

#include "ledger/chain.hpp"

namespace stub::ledger {
namespace {

constexpr Micros t0 = 1'709'164'800'000'000;  // 2024-02-29T00:00:00Z
constexpr Micros second = micros_per_second;

Money units(int64_t whole) {
  return Money::from_micros(whole * Money::micros_per_unit);
}

Command command_for(CommandKind kind, std::string budget) {
  Command command;
  command.kind = kind;
  command.root = budget.substr(0, budget.find('/'));
  command.actor = std::string(admin_actor);
  command.budget = std::move(budget);
  return command;
}

Command set_budget(std::string path, std::optional<Money> limit) {
  Command command = command_for(CommandKind::set_budget, std::move(path));
  command.settings.limit_given = true;
  command.settings.limit = limit;
  return command;
}

Command spend(std::string path, Money amount, std::string hold_id) {
  Command command = command_for(CommandKind::spend, std::move(path));
  command.amount = amount;
  command.vendor = "openai";
  command.hold_id = std::move(hold_id);
  return command;
}

Command hold(std::string path, Money amount, std::string hold_id, Micros ttl) {
  Command command = command_for(CommandKind::hold, std::move(path));
  command.amount = amount;
  command.hold_id = std::move(hold_id);
  command.ttl = ttl;
  return command;
}

Command settle(CommandKind kind, std::string path, std::string hold_id) {
  Command command = command_for(kind, std::move(path));
  command.hold_id = std::move(hold_id);
  return command;
}

// The typed answer of an outcome, or nullptr when it failed or answered something else.
template <typename Value>
const Value* answer_of(const Outcome& outcome) {
  if (!outcome.ok())
    return nullptr;
  return std::get_if<Value>(&outcome->answer.value);
}

// A renderer of the core's own: bytes that name the answer's kind and time, so that a replay is
// told apart from a fresh answer by its bytes alone.
RenderedAnswer label(const Answer& answer) {
  if (const auto* replayed = std::get_if<Replayed>(&answer.value))
    return replayed->recorded;
  const int kind = static_cast<int>(answer.value.index());
  return RenderedAnswer{kind + 1,
                        "answer " + std::to_string(kind) + " at " + std::to_string(answer.at)};
}

class BatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(apply(set_budget("acme", units(100))).ok());
    ASSERT_TRUE(apply(set_budget("acme/team", units(50))).ok());
  }
  Outcome apply(const Command& command) { return apply_command(state_, command, now_, label); }
  const BudgetNode& budget(const std::string& path) { return state_.budgets.at(path); }

  WorkingSet state_;
  Micros now_ = t0;
};

TEST_F(BatchTest, SetBudgetCreatesThenUpdates) {
  const Outcome created = apply(set_budget("acme/team/agent", units(5)));
  const auto* written = answer_of<BudgetWritten>(created);
  ASSERT_NE(written, nullptr);
  EXPECT_TRUE(written->created);
  ASSERT_EQ(written->state.lineage.size(), 3u);
  EXPECT_EQ(written->state.lineage.front().path, "acme");
  EXPECT_EQ(written->state.node().limit, units(5));
  EXPECT_EQ(created->answer.at, now_);
  const Outcome updated = apply(set_budget("acme/team/agent", units(6)));
  ASSERT_NE(answer_of<BudgetWritten>(updated), nullptr);
  EXPECT_FALSE(answer_of<BudgetWritten>(updated)->created);
  EXPECT_EQ(answer_of<BudgetWritten>(updated)->state.node().limit, units(6));
  EXPECT_EQ(budget("acme/team/agent").limit, units(6));
  EXPECT_EQ(state_.new_entries.back().kind, "budget_set");
}

TEST_F(BatchTest, SetBudgetNeedsTheParent) {
  const size_t entries = state_.new_entries.size();
  const Outcome orphan = apply(set_budget("acme/nobody/agent", units(5)));
  ASSERT_FALSE(orphan.ok());
  EXPECT_EQ(orphan.error().code, ErrorCode::not_found);
  EXPECT_EQ(orphan.error().subcode, "parent_not_found");
  EXPECT_FALSE(state_.budgets.contains("acme/nobody/agent"));
  EXPECT_EQ(state_.new_entries.size(), entries);
}

TEST_F(BatchTest, LoweringALimitBelowUsageIsRefused) {
  ASSERT_NE(answer_of<SpendCommitted>(apply(spend("acme/team", units(20), "hold_1"))), nullptr);
  ASSERT_NE(answer_of<HoldPlaced>(apply(hold("acme/team", units(10), "hold_2", 60 * second))),
            nullptr);
  const size_t entries = state_.new_entries.size();
  const Outcome below = apply(set_budget("acme/team", Money::from_micros(units(30).micros() - 1)));
  ASSERT_FALSE(below.ok());
  EXPECT_EQ(below.error().code, ErrorCode::conflict);
  EXPECT_EQ(below.error().subcode, "limit_below_usage");
  EXPECT_EQ(budget("acme/team").limit, units(50));
  EXPECT_EQ(state_.new_entries.size(), entries);
  // The root's usage includes its subtree.
  EXPECT_EQ(apply(set_budget("acme", units(29))).error().subcode, "limit_below_usage");
  // Exactly the usage is fine.
  EXPECT_NE(answer_of<BudgetWritten>(apply(set_budget("acme/team", units(30)))), nullptr);
  EXPECT_NE(answer_of<Denied>(apply(spend("acme/team", Money::from_micros(1), "hold_3"))), nullptr);
}

TEST_F(BatchTest, DenialIsAnEntryWithoutMoneyPostings) {
  const Outcome outcome = apply(spend("acme/team", units(51), "hold_1"));
  const auto* denied = answer_of<Denied>(outcome);
  ASSERT_NE(denied, nullptr);
  EXPECT_EQ(denied->code, DenialCode::budget_exceeded);
  EXPECT_EQ(denied->level, "acme/team");
  EXPECT_EQ(denied->requested, units(51));
  EXPECT_EQ(denied->available, units(50));
  EXPECT_FALSE(denied->vendor_limit.has_value());
  const Entry& entry = state_.new_entries.back();
  EXPECT_EQ(denied->seq, entry.seq);
  EXPECT_EQ(entry.kind, "deny");
  EXPECT_EQ(entry.code, "budget_exceeded");
  EXPECT_TRUE(entry.postings.empty());
  EXPECT_EQ(budget("acme/team").spent, Money::zero());
}

TEST_F(BatchTest, CaptureAboveTheHeldAmountIsRefused) {
  ASSERT_NE(answer_of<HoldPlaced>(apply(hold("acme/team", units(10), "hold_1", 60 * second))),
            nullptr);
  Command capture = settle(CommandKind::capture, "acme/team", "hold_1");
  capture.amount = Money::from_micros(units(10).micros() + 1);
  const Outcome above = apply(capture);
  ASSERT_FALSE(above.ok());
  EXPECT_EQ(above.error().subcode, "capture_exceeds_hold");
  capture.amount = units(4);
  const Outcome captured = apply(capture);
  const auto* settled = answer_of<HoldSettled>(captured);
  ASSERT_NE(settled, nullptr);
  EXPECT_EQ(settled->hold.status, HoldStatus::captured);
  EXPECT_EQ(settled->hold.captured, units(4));
  EXPECT_EQ(settled->seq, state_.new_entries.back().seq);
  EXPECT_EQ(budget("acme/team").spent, units(4));
  EXPECT_EQ(budget("acme/team").reserved, Money::zero());
  EXPECT_EQ(budget("acme").spent, units(4));
  const Entry& entry = state_.new_entries.back();
  ASSERT_EQ(entry.postings.size(), 3u);  // release the hold, return the rest, pay the vendor
  // A second settlement of the same hold conflicts.
  EXPECT_EQ(apply(settle(CommandKind::void_hold, "acme/team", "hold_1")).error().subcode,
            "hold_not_held");
}

TEST_F(BatchTest, CaptureOfAnExpiredHoldExpiresItFirst) {
  ASSERT_NE(answer_of<HoldPlaced>(apply(hold("acme/team", units(10), "hold_1", 60 * second))),
            nullptr);
  now_ += 60 * second;
  const size_t entries = state_.new_entries.size();
  const Outcome late = apply(settle(CommandKind::capture, "acme/team", "hold_1"));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().subcode, "hold_not_held");
  // The expiry is real: captured at its held amount (on_expiry defaults to capture).
  ASSERT_EQ(state_.new_entries.size(), entries + 1);
  EXPECT_EQ(state_.new_entries.back().kind, "expire");
  EXPECT_EQ(state_.new_entries.back().actor, "system");
  EXPECT_EQ(state_.holds.at("hold_1").status, HoldStatus::expired);
  EXPECT_EQ(budget("acme/team").spent, units(10));
  EXPECT_EQ(budget("acme/team").reserved, Money::zero());
}

TEST_F(BatchTest, ExpireRespectsOnExpiryAndTheTtl) {
  Command voiding = hold("acme/team", units(10), "hold_v", 60 * second);
  voiding.on_expiry = OnExpiry::void_hold;
  ASSERT_NE(answer_of<HoldPlaced>(apply(voiding)), nullptr);
  now_ += 60 * second - 1;
  const size_t entries = state_.new_entries.size();
  EXPECT_NE(answer_of<HoldChecked>(apply(settle(CommandKind::expire, "acme/team", "hold_v"))),
            nullptr);
  EXPECT_EQ(state_.new_entries.size(), entries);  // not yet due: nothing happens
  EXPECT_EQ(state_.holds.at("hold_v").status, HoldStatus::held);
  now_ += 1;
  EXPECT_NE(answer_of<HoldChecked>(apply(settle(CommandKind::expire, "acme/team", "hold_v"))),
            nullptr);
  EXPECT_EQ(state_.new_entries.size(), entries + 1);
  EXPECT_EQ(state_.holds.at("hold_v").status, HoldStatus::expired);
  EXPECT_EQ(budget("acme/team").spent, Money::zero());
  EXPECT_EQ(budget("acme/team").reserved, Money::zero());
  // Expiring again changes nothing.
  EXPECT_NE(answer_of<HoldChecked>(apply(settle(CommandKind::expire, "acme/team", "hold_v"))),
            nullptr);
  EXPECT_EQ(state_.new_entries.size(), entries + 1);
  EXPECT_EQ(apply(settle(CommandKind::expire, "acme/team", "hold_missing")).error().subcode,
            "hold_not_found");
}

TEST_F(BatchTest, IdempotentReplayAndReuse) {
  Command first = spend("acme/team", units(5), "hold_1");
  first.idempotency_key = "k1";
  first.request_hash = "h1";
  const Outcome original = apply(first);
  ASSERT_NE(answer_of<SpendCommitted>(original), nullptr);
  // The record keeps the answer as rendered.
  ASSERT_EQ(state_.new_idempotency.size(), 1u);
  EXPECT_EQ(state_.new_idempotency.back().status, original->rendered.status);
  EXPECT_EQ(state_.new_idempotency.back().body, original->rendered.body);
  const size_t entries = state_.new_entries.size();
  Command again = first;
  again.hold_id = "hold_2";  // the edge makes a new id; the replay must still answer the first
  const Outcome replay = apply(again);
  ASSERT_NE(answer_of<Replayed>(replay), nullptr);
  EXPECT_EQ(replay->rendered.status, original->rendered.status);
  EXPECT_EQ(replay->rendered.body, original->rendered.body);
  EXPECT_EQ(state_.new_idempotency.size(), 1u);
  EXPECT_EQ(state_.new_entries.size(), entries);
  EXPECT_EQ(budget("acme/team").spent, units(5));

  Command reused = first;
  reused.request_hash = "h2";
  const Outcome conflict = apply(reused);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(conflict.error().code, ErrorCode::conflict);
  EXPECT_EQ(conflict.error().subcode, "idempotency_key_reused");

  // Keys are scoped to the actor that sent them.
  Command key_command = command_for(CommandKind::create_key, "acme");
  key_command.key.id = "key_1";
  key_command.key.budget = "acme/team";
  ASSERT_TRUE(apply(key_command).ok());
  Command by_key = first;
  by_key.actor = "key_1";
  by_key.hold_id = "hold_3";
  const Outcome separate = apply(by_key);
  ASSERT_NE(answer_of<SpendCommitted>(separate), nullptr);
  EXPECT_EQ(budget("acme/team").spent, units(10));
}

TEST_F(BatchTest, KeysActOnlyInTheirSubtreeAndUntilRevoked) {
  ASSERT_TRUE(apply(set_budget("acme/other", std::nullopt)).ok());
  Command create = command_for(CommandKind::create_key, "acme");
  create.key.id = "key_1";
  create.key.budget = "acme/team";
  ASSERT_NE(answer_of<KeyCreated>(apply(create)), nullptr);

  Command inside = spend("acme/team", units(1), "hold_1");
  inside.actor = "key_1";
  EXPECT_NE(answer_of<SpendCommitted>(apply(inside)), nullptr);
  Command outside = spend("acme/other", units(1), "hold_2");
  outside.actor = "key_1";
  EXPECT_EQ(apply(outside).error().code, ErrorCode::forbidden);
  Command above = spend("acme", units(1), "hold_3");
  above.actor = "key_1";
  EXPECT_EQ(apply(above).error().code, ErrorCode::forbidden);

  Command revoke = command_for(CommandKind::revoke_key, "acme");
  revoke.key.id = "key_1";
  ASSERT_NE(answer_of<KeyRevoked>(apply(revoke)), nullptr);
  EXPECT_EQ(state_.keys.at("key_1").revoked_at, now_);
  inside.hold_id = "hold_4";
  EXPECT_EQ(apply(inside).error().code, ErrorCode::unauthorized);
  Command unknown = spend("acme/team", units(1), "hold_5");
  unknown.actor = "key_unknown";
  EXPECT_EQ(apply(unknown).error().code, ErrorCode::unauthorized);
}

TEST_F(BatchTest, FrozenNodesRefuseUntilUnfrozen) {
  Command freeze = command_for(CommandKind::freeze, "acme");
  freeze.reason = "kill switch";
  const Outcome frozen = apply(freeze);
  ASSERT_NE(answer_of<BudgetFrozen>(frozen), nullptr);
  EXPECT_TRUE(answer_of<BudgetFrozen>(frozen)->state.node().frozen);
  EXPECT_FALSE(answer_of<BudgetFrozen>(frozen)->share.has_value());
  const Outcome denied = apply(spend("acme/team", units(1), "hold_1"));
  ASSERT_NE(answer_of<Denied>(denied), nullptr);
  EXPECT_EQ(answer_of<Denied>(denied)->code, DenialCode::frozen);
  EXPECT_EQ(answer_of<Denied>(denied)->level, "acme");
  const Outcome unfrozen = apply(command_for(CommandKind::unfreeze, "acme"));
  ASSERT_NE(answer_of<BudgetFrozen>(unfrozen), nullptr);
  EXPECT_FALSE(answer_of<BudgetFrozen>(unfrozen)->state.node().frozen);
  EXPECT_NE(answer_of<SpendCommitted>(apply(spend("acme/team", units(1), "hold_2"))), nullptr);
}

TEST_F(BatchTest, EveryEntryBalancesAndChains) {
  ASSERT_NE(answer_of<SpendCommitted>(apply(spend("acme/team", units(5), "hold_1"))), nullptr);
  ASSERT_NE(answer_of<HoldPlaced>(apply(hold("acme/team", units(7), "hold_2", 60 * second))),
            nullptr);
  Command capture = settle(CommandKind::capture, "acme/team", "hold_2");
  capture.amount = units(3);
  ASSERT_TRUE(apply(capture).ok());
  ASSERT_NE(answer_of<Denied>(apply(spend("acme/team", units(500), "hold_3"))), nullptr);
  ChainVerifier verifier;
  int64_t expected_seq = 1;
  for (const Entry& entry : state_.new_entries) {
    EXPECT_EQ(entry.seq, expected_seq++);
    int64_t sum = 0;
    for (const Posting& posting : entry.postings)
      sum += posting.amount.micros();
    EXPECT_EQ(sum, 0) << entry.kind;
    EXPECT_TRUE(verifier.feed(entry)) << entry.seq;
  }
  const VerifyReport report = verifier.finish(budget("acme").head_seq, budget("acme").head_hash);
  EXPECT_TRUE(report.ok) << report.problem;
}

TEST_F(BatchTest, SpentNeverWrapsOnANodeWithoutLimits) {
  // Money::units_max (1e12 units = 1e18 micros) is accepted per spend; ten maximal spends on a
  // path with no limit would overflow int64. The decision caps every node's total at
  // Money::micros_max, so the second is refused and nothing wraps.
  ASSERT_TRUE(apply(set_budget("free", std::nullopt)).ok());
  const Money maximal = Money::from_micros(Money::micros_max);
  for (int i = 0; i < 10; ++i) {
    const Outcome outcome = apply(spend("free", maximal, "hold_big_" + std::to_string(i)));
    if (answer_of<SpendCommitted>(outcome) == nullptr)
      break;
    EXPECT_FALSE(budget("free").spent.is_negative()) << i;
  }
  EXPECT_FALSE(budget("free").spent.is_negative());
}

}  // namespace
}  // namespace stub::ledger
