// The Store conformance suite: one set of behaviours that every store (SQLite, and PostgreSQL in
// both isolation levels) must show, driven through the real engine::Sequencer with an injected
// clock.
//
// To run it against another store, add one StoreKind to INSTANTIATE_TEST_SUITE_P at the bottom.
// A factory gets a fresh temporary directory per test; called twice with the same directory it
// must open the same database again (the reopen case relies on that). Everything in the cases
// themselves stays store-agnostic: only the Store interface is used.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "checkpoints/checkpoint_signer.hpp"
#include "edge_commands.hpp"
#include "engine/event_bus.hpp"
#include "engine/hold_sweeper.hpp"
#include "engine/sequencer.hpp"
#include "export/journal_export.hpp"
#include "http/render.hpp"
#include "ledger/batch.hpp"
#include "postgres_fixture.hpp"
#include "query/compiler.hpp"
#include "query/query.hpp"
#include "store/store.hpp"

namespace stub::store::conformance {
namespace {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::HoldStatus;
using ledger::Outcome;
using store::WebhookDelivery;

using StoreFactory = std::function<std::unique_ptr<Store>(const std::string& temp_dir)>;

struct StoreKind {
  std::string name;
  StoreFactory factory;
  // Whether several instances (processes) may serve one database. SQLite has one owner; a
  // second open is refused (see sqlite_store_test.cpp).
  bool multi_instance = false;
};

void PrintTo(const StoreKind& kind, std::ostream* os) {
  *os << kind.name;
}

std::unique_ptr<Store> open_sqlite(const std::string& temp_dir) {
  StoreOptions options;
  options.read_connections = 4;
  auto opened = open_store("sqlite:" + temp_dir + "/stub.db", options);
  if (!opened.ok()) {
    ADD_FAILURE() << "open_store: " << opened.error().message;
    return nullptr;
  }
  return std::move(opened).value();
}

void expect_same_entry(const Entry& actual, const Entry& expected) {
  EXPECT_EQ(actual.root, expected.root);
  EXPECT_EQ(actual.seq, expected.seq);
  EXPECT_EQ(actual.ts, expected.ts);
  EXPECT_EQ(actual.kind, expected.kind);
  EXPECT_EQ(actual.budget, expected.budget);
  EXPECT_EQ(actual.amount, expected.amount);
  EXPECT_EQ(actual.vendor, expected.vendor);
  EXPECT_EQ(actual.intent, expected.intent);
  EXPECT_EQ(actual.tags_json, expected.tags_json);
  EXPECT_EQ(actual.receipt_json, expected.receipt_json);
  EXPECT_EQ(actual.hold_id, expected.hold_id);
  EXPECT_EQ(actual.code, expected.code);
  EXPECT_EQ(actual.actor, expected.actor);
  EXPECT_EQ(actual.detail_json, expected.detail_json);
  ASSERT_EQ(actual.postings.size(), expected.postings.size());
  for (size_t i = 0; i < actual.postings.size(); ++i) {
    EXPECT_EQ(actual.postings[i].account, expected.postings[i].account);
    EXPECT_EQ(actual.postings[i].amount, expected.postings[i].amount);
  }
  EXPECT_EQ(actual.prev_hash, expected.prev_hash);
  EXPECT_EQ(actual.hash, expected.hash);
}

class StoreConformance : public ::testing::TestWithParam<StoreKind> {
 protected:
  void SetUp() override { open(); }
  void TearDown() override { close(); }

  void open() {
    store_ = GetParam().factory(directory_.str());
    ASSERT_NE(store_, nullptr);
    engine::SequencerOptions options;
    options.batch_size_max = 256;
    options.queue_capacity = 4'096;
    sequencer_ = std::make_unique<engine::Sequencer>(
        *store_, [this] { return clock_.load(); }, edge_options(std::move(options)), &events_);
  }

  void close() {
    sequencer_.reset();  // commits what is queued, then stops
    store_.reset();
  }

  Outcome run(const ledger::Command& command) { return sequencer_->execute(command); }

  // Runs a command that must succeed with `status`, and returns its body.
  boost::json::object expect_status(const ledger::Command& command, int status) {
    const Outcome outcome = run(command);
    EXPECT_TRUE(outcome.ok()) << (outcome.ok() ? "" : outcome.error().message);
    if (!outcome.ok())
      return {};
    EXPECT_EQ(outcome->rendered.status, status) << outcome->rendered.body;
    return boost::json::parse(outcome->rendered.body).as_object();
  }

  // Runs a command that must fail with `subcode`.
  Error expect_error(const ledger::Command& command, const std::string& subcode) {
    const Outcome outcome = run(command);
    EXPECT_FALSE(outcome.ok()) << (outcome.ok() ? outcome->rendered.body : "");
    if (outcome.ok())
      return Error{};
    EXPECT_EQ(outcome.error().subcode, subcode) << outcome.error().message;
    return outcome.error();
  }

  BudgetNode budget(const std::string& path) {
    auto found = store_->get_budget(path);
    EXPECT_TRUE(found.ok());
    if (!found.ok() || !found.value()) {
      ADD_FAILURE() << "no budget " << path;
      return {};
    }
    return *found.value();
  }

  Hold hold_row(const std::string& id) {
    auto found = store_->get_hold(id);
    EXPECT_TRUE(found.ok());
    if (!found.ok() || !found.value()) {
      ADD_FAILURE() << "no hold " << id;
      return {};
    }
    return *found.value();
  }

  std::vector<Entry> all_entries(const std::string& root) {
    std::vector<Entry> out;
    int64_t after = 0;
    while (true) {
      auto page = store_->list_entries(root, after, 100);
      EXPECT_TRUE(page.ok());
      if (!page.ok() || page->entries.empty())
        break;
      out.insert(out.end(), page->entries.begin(), page->entries.end());
      after = page->next_after;
    }
    return out;
  }

  ledger::VerifyReport verify(const std::string& root) {
    auto report = store_->verify(root, nullptr);
    EXPECT_TRUE(report.ok());
    if (!report.ok())
      return {};
    return report.value();
  }

  void advance(Micros by) { clock_ += by; }
  Micros now() const { return clock_.load(); }

  TempDirectory directory_;
  std::atomic<Micros> clock_{t0};
  engine::EventBus events_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<engine::Sequencer> sequencer_;
};

// A small company: acme (100.00) -> research (40.00 a day, at most 5.00 a spend) -> agent.
class StoreConformanceWithTree : public StoreConformance {
 protected:
  void SetUp() override {
    StoreConformance::SetUp();
    expect_status(set_budget("acme", units(100)), 201);
    expect_status(set_budget("acme/research", units(40), ledger::Period::day, units(5)), 201);
    expect_status(set_budget("acme/research/agent", std::nullopt), 201);
  }
};

TEST_P(StoreConformance, EmptyStoreReadsNothing) {
  EXPECT_FALSE(store_->get_budget("acme").value().has_value());
  EXPECT_TRUE(store_->get_lineage("acme/research").value().empty());
  EXPECT_TRUE(store_->list_subtree("acme").value().empty());
  EXPECT_TRUE(store_->list_roots().value().empty());
  EXPECT_FALSE(store_->get_hold("hold_1").value().has_value());
  EXPECT_TRUE(store_->list_expired_holds(now() + 365 * 86'400 * second, 100).value().empty());
  EXPECT_FALSE(store_->get_key("key_1").value().has_value());
  const auto page = store_->list_entries("acme", 0, 100);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->entries.empty());
  EXPECT_EQ(page->next_after, 0);
  EXPECT_EQ(store_->list_entries("acme", 5, 100)->next_after, 5);
  EXPECT_FALSE(store_->get_idempotency("acme", "admin:k1").value().has_value());
  const auto report = store_->verify("acme", nullptr);
  ASSERT_FALSE(report.ok());
  EXPECT_EQ(report.error().code, ErrorCode::not_found);
}

TEST_P(StoreConformance, SetBudgetCreatesNodesAndReadsThemBack) {
  const boost::json::object root = expect_status(set_budget("acme", units(100)), 201);
  EXPECT_EQ(root.at("limit").as_string(), "100.00");
  expect_status(set_budget("acme/research", units(40), ledger::Period::day, units(5)), 201);
  expect_status(set_budget("acme/research/agent", std::nullopt), 201);
  ledger::Command beta = set_budget("beta", std::nullopt, ledger::Period::none);
  beta.settings.currency = "EUR";
  expect_status(beta, 201);

  const BudgetNode research = budget("acme/research");
  EXPECT_EQ(research.path, "acme/research");
  EXPECT_EQ(research.root, "acme");
  EXPECT_EQ(research.parent, "acme");
  EXPECT_EQ(research.limit, units(40));
  EXPECT_EQ(research.period, ledger::Period::day);
  EXPECT_EQ(research.period_start, ledger::period_start(ledger::Period::day, now()));
  EXPECT_EQ(research.per_txn_max, units(5));
  EXPECT_FALSE(research.frozen);
  EXPECT_EQ(research.spent, Money::zero());
  EXPECT_EQ(research.reserved, Money::zero());
  EXPECT_EQ(research.created_at, now());
  EXPECT_FALSE(budget("acme/research/agent").limit.has_value());
  EXPECT_EQ(budget("acme").period, ledger::Period::month);
  EXPECT_EQ(budget("beta").currency, "EUR");
  EXPECT_EQ(budget("beta").period, ledger::Period::none);

  const auto lineage = store_->get_lineage("acme/research/agent");
  ASSERT_TRUE(lineage.ok());
  ASSERT_EQ(lineage->size(), 3u);
  EXPECT_EQ((*lineage)[0].path, "acme");
  EXPECT_EQ((*lineage)[1].path, "acme/research");
  EXPECT_EQ((*lineage)[2].path, "acme/research/agent");
  EXPECT_TRUE(store_->get_lineage("acme/nobody/agent").value().empty());

  const auto subtree = store_->list_subtree("acme");
  ASSERT_TRUE(subtree.ok());
  std::vector<std::string> paths;
  for (const BudgetNode& node : subtree.value())
    paths.push_back(node.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"acme", "acme/research", "acme/research/agent"}));
  EXPECT_EQ(store_->list_subtree("beta")->size(), 1u);
  EXPECT_EQ(store_->list_roots().value(), (std::vector<std::string>{"acme", "beta"}));

  // Each root has its own chain: three entries on acme, one on beta.
  EXPECT_EQ(budget("acme").head_seq, 3);
  EXPECT_EQ(budget("beta").head_seq, 1);
  EXPECT_EQ(budget("acme").head_hash, all_entries("acme").back().hash);
  EXPECT_EQ(budget("acme/research").head_seq, 0);  // only roots carry a chain head
}

TEST_P(StoreConformance, SetBudgetRefusalsWriteNothing) {
  expect_status(set_budget("acme", units(10)), 201);
  expect_error(set_budget("acme/nobody/agent", units(1)), "parent_not_found");
  expect_error(set_budget("other/team", units(1)), "parent_not_found");
  EXPECT_FALSE(store_->get_budget("acme/nobody/agent").value().has_value());
  EXPECT_FALSE(store_->get_budget("other/team").value().has_value());
  expect_status(spend("acme", units(6), "hold_1"), 201);  // and a 50 % threshold alert
  expect_error(set_budget("acme", units(5)), "limit_below_usage");
  EXPECT_EQ(budget("acme").limit, units(10));
  EXPECT_EQ(budget("acme").head_seq, 3);
  EXPECT_EQ(all_entries("acme").size(), 3u);
}

TEST_P(StoreConformanceWithTree, SpendsCountOnEveryLevel) {
  const boost::json::object body =
      expect_status(spend("acme/research/agent", units(3), "hold_s1"), 201);
  EXPECT_EQ(body.at("status").as_string(), "captured");
  expect_status(spend("acme/research", cents(150), "hold_s2"), 201);
  EXPECT_EQ(budget("acme").spent, cents(450));
  EXPECT_EQ(budget("acme/research").spent, cents(450));
  EXPECT_EQ(budget("acme/research/agent").spent, units(3));
  EXPECT_EQ(budget("acme").reserved, Money::zero());

  // Above the per-transaction maximum of research: a denial, recorded, nothing spent.
  const boost::json::object denied =
      expect_status(spend("acme/research/agent", cents(501), "hold_s3"), 402);
  EXPECT_EQ(denied.at("error").at("code").as_string(), "per_txn_exceeded");
  EXPECT_EQ(denied.at("error").at("budget").as_string(), "acme/research");
  EXPECT_EQ(budget("acme").spent, cents(450));
  const std::vector<Entry> entries = all_entries("acme");
  ASSERT_EQ(entries.size(), 6u);
  EXPECT_EQ(entries[3].kind, "spend");
  EXPECT_EQ(entries[3].amount, units(3));
  EXPECT_EQ(entries[3].budget, "acme/research/agent");
  EXPECT_EQ(entries[3].receipt_json, R"({"usage":{"cost":0.5,"tokens":1200}})");
  EXPECT_EQ(entries[5].kind, "deny");
  EXPECT_EQ(entries[5].code, "per_txn_exceeded");
  EXPECT_TRUE(entries[5].postings.empty());
}

TEST_P(StoreConformanceWithTree, SpentResetsLazilyInANewPeriod) {
  for (int i = 0; i < 8; ++i)
    expect_status(spend("acme/research", units(5), "hold_" + std::to_string(i)), 201);
  EXPECT_EQ(expect_status(spend("acme/research", units(1), "hold_x"), 402)
                .at("error")
                .at("budget")
                .as_string(),
            "acme/research");
  EXPECT_EQ(budget("acme").spent, units(40));
  // Research has a daily limit; the root a monthly one. Within the same month only research
  // starts afresh the next day.
  advance(86'400 * second);  // 2024-02-29 -> 2024-03-01: a new day AND a new month
  EXPECT_EQ(budget("acme/research").spent_at(now()), Money::zero());
  EXPECT_EQ(budget("acme").spent_at(now()), Money::zero());
  expect_status(spend("acme/research", units(5), "hold_y"), 201);
  EXPECT_EQ(budget("acme/research").spent, units(5));
  EXPECT_EQ(budget("acme/research").period_start, ledger::period_start(ledger::Period::day, now()));
  EXPECT_EQ(budget("acme").spent, units(5));
  EXPECT_EQ(budget("acme").period_start, ledger::period_start(ledger::Period::month, now()));
  advance(86'400 * second);  // 2024-03-02: research resets, the root does not
  for (int i = 0; i < 8; ++i)
    expect_status(spend("acme/research", units(5), "hold_z" + std::to_string(i)), 201);
  EXPECT_EQ(budget("acme").spent, units(45));
  EXPECT_EQ(budget("acme/research").spent, units(40));
}

TEST_P(StoreConformanceWithTree, HoldCaptureAndVoid) {
  const boost::json::object held =
      expect_status(hold("acme/research/agent", units(4), "hold_h1", 300 * second), 201);
  EXPECT_EQ(held.at("status").as_string(), "held");
  Hold row = hold_row("hold_h1");
  EXPECT_EQ(row.status, HoldStatus::held);
  EXPECT_EQ(row.root, "acme");
  EXPECT_EQ(row.budget, "acme/research/agent");
  EXPECT_EQ(row.amount, units(4));
  EXPECT_EQ(row.created_at, now());
  EXPECT_EQ(row.expires_at, now() + 300 * second);
  EXPECT_EQ(row.vendor, "anthropic");
  EXPECT_EQ(row.actor, "admin");
  for (const char* path : {"acme", "acme/research", "acme/research/agent"})
    EXPECT_EQ(budget(path).reserved, units(4)) << path;

  advance(10 * second);
  const boost::json::object captured =
      expect_status(capture("acme/research/agent", "hold_h1", cents(275)), 200);
  EXPECT_EQ(captured.at("status").as_string(), "captured");
  row = hold_row("hold_h1");
  EXPECT_EQ(row.status, HoldStatus::captured);
  EXPECT_EQ(row.captured, cents(275));
  EXPECT_EQ(row.settled_at, now());
  for (const char* path : {"acme", "acme/research", "acme/research/agent"}) {
    EXPECT_EQ(budget(path).reserved, Money::zero()) << path;
    EXPECT_EQ(budget(path).spent, cents(275)) << path;
  }

  expect_status(hold("acme/research", units(5), "hold_h2", 300 * second), 201);
  EXPECT_EQ(budget("acme").reserved, units(5));
  expect_status(void_hold("acme/research", "hold_h2"), 200);
  EXPECT_EQ(hold_row("hold_h2").status, HoldStatus::voided);
  EXPECT_EQ(hold_row("hold_h2").captured, Money::zero());
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  EXPECT_EQ(budget("acme").spent, cents(275));

  expect_error(capture("acme/research", "hold_h2"), "hold_not_held");
  expect_error(void_hold("acme/research/agent", "hold_h1"), "hold_not_held");
  expect_error(capture("acme/research", "hold_none"), "hold_not_found");
  const std::vector<Entry> entries = all_entries("acme");
  std::vector<std::string> kinds;
  for (const Entry& entry : entries)
    kinds.push_back(entry.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"budget_set", "budget_set", "budget_set", "hold",
                                             "capture", "hold", "void"}));
}

TEST_P(StoreConformanceWithTree, ExpiredHoldsAreListedAndSwept) {
  expect_status(hold("acme/research", units(2), "hold_e1", 10 * second), 201);
  expect_status(
      hold("acme/research/agent", units(3), "hold_e2", 20 * second, ledger::OnExpiry::void_hold),
      201);
  expect_status(hold("acme/research", units(4), "hold_e3", 3'600 * second), 201);
  expect_status(hold("acme/research", units(1), "hold_e4", 5 * second), 201);
  expect_status(void_hold("acme/research", "hold_e4"), 200);  // settled: never listed

  EXPECT_TRUE(store_->list_expired_holds(now() + 10 * second - 1, 10).value().empty());
  advance(20 * second);  // exactly hold_e2's expiry: due
  const auto due = store_->list_expired_holds(now(), 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 2u);
  EXPECT_EQ((*due)[0].id, "hold_e1");  // oldest expiry first
  EXPECT_EQ((*due)[1].id, "hold_e2");
  const auto first = store_->list_expired_holds(now(), 1);
  ASSERT_EQ(first->size(), 1u);
  EXPECT_EQ((*first)[0].id, "hold_e1");

  for (const Hold& expired : due.value())
    expect_status(expire(expired), 200);
  EXPECT_TRUE(store_->list_expired_holds(now(), 10).value().empty());
  EXPECT_EQ(hold_row("hold_e1").status, HoldStatus::expired);
  EXPECT_EQ(hold_row("hold_e1").captured, units(2));  // conservative: captured at its amount
  EXPECT_EQ(hold_row("hold_e2").status, HoldStatus::expired);
  EXPECT_EQ(hold_row("hold_e2").captured, Money::zero());  // created with on_expiry "void"
  EXPECT_EQ(budget("acme").spent, units(2));
  EXPECT_EQ(budget("acme").reserved, units(4));
  EXPECT_EQ(budget("acme/research/agent").reserved, Money::zero());
  const Entry last = all_entries("acme").back();
  EXPECT_EQ(last.kind, "expire");
  EXPECT_EQ(last.actor, "system");

  // A capture that arrives after the expiry but before the sweeper: the expiry is recorded, and
  // the capture conflicts.
  advance(3'600 * second);
  expect_error(capture("acme/research", "hold_e3", units(1)), "hold_not_held");
  EXPECT_EQ(hold_row("hold_e3").status, HoldStatus::expired);
  EXPECT_EQ(hold_row("hold_e3").captured, units(4));
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  EXPECT_EQ(budget("acme").spent, units(6));
  EXPECT_EQ(all_entries("acme").back().kind, "expire");
  EXPECT_TRUE(store_->list_expired_holds(now(), 10).value().empty());
  EXPECT_TRUE(verify("acme").ok);
}

// The sweeper submits a pass's expiries together, so they commit in a few batches rather than
// one commit per hold; and passes from random pivots settle different holds first.
TEST_P(StoreConformanceWithTree, SweeperSettlesExpiriesInBatchedCommits) {
  constexpr int holds = 200;
  for (int i = 0; i < holds; ++i) {
    char id[32];
    std::snprintf(id, sizeof id, "hold_%04d", i);
    expect_status(hold("acme/research/agent", cents(10), id, 10 * second), 201);
    advance(1);  // distinct expiries, in id order
  }
  advance(11 * second);
  // Chosen among the oldest 4 x limit expired (here hold_0000 .. hold_0039), from the pivot on.
  const auto from_middle = store_->list_expired_holds_from(now(), "hold_0019", 10);
  ASSERT_TRUE(from_middle.ok());
  ASSERT_EQ(from_middle->size(), 10u);
  EXPECT_EQ(from_middle->front().id, "hold_0020");
  EXPECT_EQ(from_middle->back().id, "hold_0029");
  const auto wrapping = store_->list_expired_holds_from(now(), "hold_0010", 3);
  ASSERT_EQ(wrapping->size(), 3u);
  EXPECT_EQ((*wrapping)[0].id, "hold_0011");
  EXPECT_EQ((*wrapping)[1].id, "hold_0000");  // wrapped around

  // A sequencer of our own that counts its commits.
  sequencer_.reset();
  std::atomic<size_t> commits{0};
  engine::SequencerOptions options;
  options.on_batch = [&commits](const engine::BatchStats& stats) {
    if (stats.ok && stats.entries > 0)
      ++commits;
  };
  engine::Sequencer counted(
      *store_, [this] { return clock_.load(); }, edge_options(std::move(options)), nullptr);
  engine::HoldSweeper sweeper(
      *store_, counted, [this] { return clock_.load(); }, std::chrono::milliseconds(0));
  EXPECT_EQ(sweeper.sweep_once(), static_cast<size_t>(holds));
  EXPECT_LE(commits.load(), 8u) << "one commit per hold is what batching avoids";
  EXPECT_TRUE(store_->list_expired_holds(now(), 10).value().empty());
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  EXPECT_EQ(budget("acme").spent, Money::from_micros(holds * cents(10).micros()));
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, FreezeRefusesSpendsUntilUnfrozen) {
  const boost::json::object frozen = expect_status(freeze("acme/research", "runaway loop"), 200);
  EXPECT_TRUE(frozen.at("frozen").as_bool());
  EXPECT_TRUE(budget("acme/research").frozen);
  EXPECT_EQ(budget("acme/research").frozen_reason, "runaway loop");
  const boost::json::object denied =
      expect_status(spend("acme/research/agent", units(1), "hold_f1"), 402);
  EXPECT_EQ(denied.at("error").at("code").as_string(), "frozen");
  EXPECT_EQ(denied.at("error").at("budget").as_string(), "acme/research");
  expect_status(unfreeze("acme/research"), 200);
  EXPECT_FALSE(budget("acme/research").frozen);
  EXPECT_EQ(budget("acme/research").frozen_reason, "");
  expect_status(spend("acme/research/agent", units(1), "hold_f2"), 201);
  EXPECT_EQ(budget("acme").spent, units(1));
  std::vector<std::string> kinds;
  for (const Entry& entry : all_entries("acme"))
    kinds.push_back(entry.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"budget_set", "budget_set", "budget_set", "freeze",
                                             "deny", "unfreeze", "spend"}));
}

TEST_P(StoreConformanceWithTree, KeysAreCreatedUsedAndRevoked) {
  expect_status(set_budget("acme/sales", std::nullopt), 201);
  const boost::json::object created = expect_status(
      create_key("acme/research", "key_r1", "research bot", now() + 3'600 * second), 201);
  EXPECT_EQ(created.at("id").as_string(), "key_r1");
  EXPECT_TRUE(created.at("key").is_null());  // the secret is never stored
  const auto key = store_->get_key("key_r1");
  ASSERT_TRUE(key.ok() && key->has_value());
  EXPECT_EQ(key->value().budget, "acme/research");
  EXPECT_EQ(key->value().name, "research bot");
  EXPECT_EQ(key->value().secret_hash, ledger::sha256_hex("secret-for-key_r1"));
  EXPECT_EQ(key->value().created_at, now());
  EXPECT_EQ(key->value().expires_at, now() + 3'600 * second);
  EXPECT_EQ(key->value().revoked_at, 0);

  expect_status(as_actor(spend("acme/research/agent", units(1), "hold_k1"), "key_r1"), 201);
  EXPECT_EQ(all_entries("acme").back().actor, "key_r1");
  expect_error(as_actor(spend("acme/sales", units(1), "hold_k2"), "key_r1"), "outside_key_subtree");

  expect_status(revoke_key("acme", "key_r1"), 200);
  EXPECT_EQ(store_->get_key("key_r1").value()->revoked_at, now());
  expect_error(as_actor(spend("acme/research", units(1), "hold_k3"), "key_r1"), "key_not_usable");
  expect_error(revoke_key("acme", "key_none"), "key_not_found");
  expect_error(create_key("acme/nobody", "key_r2", "orphan"), "budget_not_found");
  EXPECT_FALSE(store_->get_key("key_r2").value().has_value());

  // An expired key is refused too.
  expect_status(create_key("acme/sales", "key_s1", "sales bot", now() + 60 * second), 201);
  advance(60 * second);
  expect_error(as_actor(spend("acme/sales", units(1), "hold_k4"), "key_s1"), "key_not_usable");

  std::vector<std::string> kinds;
  for (const Entry& entry : all_entries("acme"))
    kinds.push_back(entry.kind);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "key_created"), 2);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "key_revoked"), 1);
  EXPECT_EQ(budget("acme").spent, units(1));
}

// Delegation: the child node and its key in one commit; its limit reserved above it; a spend
// below it moves that reservation to spent above (net zero); a revocation ends it and the
// delegations below it transitively, settling holds and returning the rest; expiry via the
// sweeper does the same; every balance reconciles with the postings in verify.
TEST_P(StoreConformanceWithTree, DelegationsReserveSpendThroughAndEnd) {
  expect_status(create_key("acme/research", "key_planner", "planner", now() + 3'600 * second), 201);
  const boost::json::object child = expect_status(
      delegate("acme/research", "sub", units(4), 600 * second, "key_sub", "key_planner"), 201);
  EXPECT_EQ(child.at("path").as_string(), "acme/research/sub");
  EXPECT_EQ(child.at("parent_key").as_string(), "key_planner");
  EXPECT_EQ(budget("acme/research").reserved, units(4));
  EXPECT_EQ(budget("acme").reserved, units(4));
  const ledger::BudgetNode sub = budget("acme/research/sub");
  ASSERT_TRUE(sub.delegation.has_value());
  EXPECT_EQ(sub.delegation->key_id, "key_sub");
  EXPECT_EQ(sub.delegation->carried, units(4));
  EXPECT_EQ(sub.delegation->expires_at, now() + 600 * second);
  EXPECT_EQ(store_->get_key("key_sub").value()->budget, "acme/research/sub");
  // Too much for what research has left (40 - 4), or a life past the planner's key.
  expect_error(delegate("acme/research", "big", units(37), 60 * second, "key_big", "key_planner"),
               "delegation_exceeds_available");
  expect_error(
      delegate("acme/research", "long", units(1), 7'200 * second, "key_long", "key_planner"),
      "ttl_exceeds_parent");
  expect_error(delegate("acme/research", "sub", units(1), 60 * second, "key_dup", "key_planner"),
               "budget_exists");

  expect_status(as_actor(spend("acme/research/sub", units(1), "hold_d1"), "key_sub"), 201);
  expect_status(as_actor(hold("acme/research/sub", units(2), "hold_d2", 3'600 * second), "key_sub"),
                201);
  EXPECT_EQ(budget("acme/research").spent, units(1));
  EXPECT_EQ(budget("acme/research").reserved, units(3));  // 4 - 1 spent; the hold nets zero
  EXPECT_EQ(budget("acme/research/sub").delegation->carried, units(1));
  // A grandchild from the child's key: carried moves down, nothing changes above the child.
  expect_status(delegate("acme/research/sub", "g", cents(50), 300 * second, "key_g", "key_sub"),
                201);
  EXPECT_EQ(budget("acme/research").reserved, units(3));
  EXPECT_EQ(budget("acme/research/sub").reserved, Money::from_micros(2'500'000));
  EXPECT_EQ(budget("acme/research/sub").delegation->carried, cents(50));
  EXPECT_TRUE(verify("acme").ok) << verify("acme").balance_problem;

  const boost::json::object revoked = expect_status(revoke_key("acme", "key_planner"), 200);
  EXPECT_EQ(revoked.at("delegations_ended").as_int64(), 2);
  // The hold was captured at its held amount (on_expiry capture), the rest returned.
  EXPECT_EQ(hold_row("hold_d2").status, ledger::HoldStatus::expired);
  EXPECT_EQ(budget("acme/research").spent, units(3));
  EXPECT_EQ(budget("acme/research").reserved, Money::zero());
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  EXPECT_TRUE(budget("acme/research/sub").frozen);
  EXPECT_FALSE(budget("acme/research/sub").delegation->active());
  EXPECT_FALSE(budget("acme/research/sub/g").delegation->active());
  EXPECT_NE(store_->get_key("key_sub").value()->revoked_at, 0);
  EXPECT_NE(store_->get_key("key_g").value()->revoked_at, 0);
  expect_error(as_actor(spend("acme/research/sub/g", cents(1), "hold_d3"), "key_g"),
               "key_not_usable");
  const ledger::VerifyReport report = verify("acme");
  EXPECT_TRUE(report.ok) << report.problem << report.balance_problem;

  // Expiry: the sweeper ends a delegation whose key's life is over.
  expect_status(create_key("acme/research", "key_p2", "planner 2", now() + 3'600 * second), 201);
  expect_status(delegate("acme/research", "brief", units(2), 30 * second, "key_brief", "key_p2"),
                201);
  expect_status(as_actor(hold("acme/research/brief", cents(30), "hold_b1", 3'600 * second,
                              ledger::OnExpiry::void_hold),
                         "key_brief"),
                201);
  EXPECT_TRUE(store_->list_lapsed_delegations(now(), 10).value().empty());
  advance(31 * second);
  const auto lapsed = store_->list_lapsed_delegations(now(), 10);
  ASSERT_TRUE(lapsed.ok());
  ASSERT_EQ(lapsed->size(), 1u);
  EXPECT_EQ(lapsed->front().path, "acme/research/brief");
  engine::HoldSweeper sweeper(
      *store_, *sequencer_, [this] { return clock_.load(); }, std::chrono::milliseconds(0));
  EXPECT_EQ(sweeper.sweep_delegations(), 1u);
  EXPECT_TRUE(store_->list_lapsed_delegations(now(), 10).value().empty());
  EXPECT_EQ(hold_row("hold_b1").captured, Money::zero());
  EXPECT_EQ(budget("acme/research").reserved, Money::zero());
  EXPECT_EQ(budget("acme/research").spent, units(3));
  EXPECT_TRUE(budget("acme/research/brief").frozen);
  std::vector<std::string> kinds;
  for (const Entry& entry : all_entries("acme"))
    kinds.push_back(entry.kind);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "delegate"), 3);
  EXPECT_EQ(std::count(kinds.begin(), kinds.end(), "delegation_ended"), 3);
  const ledger::VerifyReport after = verify("acme");
  EXPECT_TRUE(after.ok) << after.problem << after.balance_problem;
}

// One commit that delegates, holds below the new child and revokes the planner: the hold placed
// in the same batch is settled by the revocation, and the books still reconcile.
TEST_P(StoreConformanceWithTree, DelegationHoldAndRevokeInOneBatch) {
  expect_status(create_key("acme/research", "key_pb", "planner", now() + 3'600 * second), 201);
  const std::vector<ledger::Command> commands = {
      delegate("acme/research", "sub", units(3), 600 * second, "key_sb", "key_pb"),
      as_actor(hold("acme/research/sub", units(1), "hold_sb1", 3'600 * second), "key_sb"),
      revoke_key("acme", "key_pb"),
      as_actor(spend("acme/research/sub", cents(1), "hold_sb2"), "key_sb"),
  };
  const ledger::ReadSet read = ledger::read_set_for(commands);
  std::vector<Outcome> outcomes;
  const Status status = store_->commit_batch(read, [&](ledger::WorkingSet& state) {
    outcomes.clear();
    for (const ledger::Command& command : commands)
      outcomes.push_back(ledger::apply_command(state, command, now(), http::render_answer));
  });
  ASSERT_TRUE(status.ok()) << status.error().message;
  ASSERT_EQ(outcomes.size(), 4u);
  EXPECT_TRUE(outcomes[0].ok() && outcomes[1].ok() && outcomes[2].ok());
  EXPECT_FALSE(outcomes[3].ok());  // the child's key was revoked earlier in the batch
  EXPECT_EQ(hold_row("hold_sb1").status, ledger::HoldStatus::expired);
  EXPECT_EQ(budget("acme/research").spent, units(1));
  EXPECT_EQ(budget("acme/research").reserved, Money::zero());
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  const ledger::VerifyReport report = verify("acme");
  EXPECT_TRUE(report.ok) << report.problem << report.balance_problem;
}

TEST_P(StoreConformanceWithTree, EntriesPageWithAfterAndLimit) {
  // Shared with the subscriber: a publish may still be running when unsubscribe returns.
  struct Published {
    std::mutex mutex;
    std::vector<Entry> entries;
  };
  auto published = std::make_shared<Published>();
  const uint64_t subscription = events_.subscribe([published](const engine::EntryBatch& batch) {
    std::lock_guard lock(published->mutex);
    published->entries.insert(published->entries.end(), batch->begin(), batch->end());
  });
  for (int i = 0; i < 7; ++i) {
    expect_status(spend("acme/research/agent", cents(10 + i), "hold_p" + std::to_string(i)), 201);
  }
  // Another root, another chain. Its answer also means the committer has published the batches
  // before it (answers come before the publish of the same batch).
  expect_status(set_budget("zeta", std::nullopt), 201);
  events_.unsubscribe(subscription);

  // 3 budget_set + 7 spends on acme.
  std::vector<Entry> paged;
  int64_t after = 0;
  std::vector<int64_t> next_afters;
  while (true) {
    const auto page = store_->list_entries("acme", after, 3);
    ASSERT_TRUE(page.ok());
    ASSERT_LE(page->entries.size(), 3u);
    if (page->entries.empty()) {
      EXPECT_EQ(page->next_after, after);
      break;
    }
    EXPECT_EQ(page->entries.front().seq, after + 1);
    EXPECT_EQ(page->next_after, page->entries.back().seq);
    next_afters.push_back(page->next_after);
    paged.insert(paged.end(), page->entries.begin(), page->entries.end());
    after = page->next_after;
  }
  EXPECT_EQ(next_afters, (std::vector<int64_t>{3, 6, 9, 10}));
  ASSERT_EQ(paged.size(), 10u);
  for (size_t i = 0; i < paged.size(); ++i) {
    EXPECT_EQ(paged[i].seq, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(paged[i].root, "acme");
  }
  const auto middle = store_->list_entries("acme", 4, 2);
  ASSERT_EQ(middle->entries.size(), 2u);
  EXPECT_EQ(middle->entries[0].seq, 5);
  EXPECT_EQ(middle->next_after, 6);
  EXPECT_TRUE(store_->list_entries("acme", 10, 5)->entries.empty());
  EXPECT_EQ(store_->list_entries("zeta", 0, 10)->entries.size(), 1u);

  // What the store gives back is exactly what the sequencer committed and published. (The
  // publish of SetUp's last batch may also arrive, since answers precede the publish.)
  std::lock_guard lock(published->mutex);
  std::map<int64_t, Entry> published_acme;
  for (const Entry& entry : published->entries) {
    if (entry.root == "acme") {
      EXPECT_TRUE(published_acme.emplace(entry.seq, entry).second) << "published twice";
    }
  }
  for (int64_t seq = 4; seq <= 10; ++seq)
    EXPECT_TRUE(published_acme.contains(seq)) << seq;
  for (const auto& [seq, entry] : published_acme) {
    ASSERT_GE(seq, 1);
    ASSERT_LE(seq, 10);
    expect_same_entry(paged[static_cast<size_t>(seq) - 1], entry);
  }
}

// A record keeps the answer as it was rendered, not the typed answer: a later version whose
// renderer answers differently still replays the first bytes, on every store (records written
// before the core returned typed answers replay the same way).
TEST_P(StoreConformanceWithTree, ReplayAnswersTheRecordedBytesWhateverTheRendererSays) {
  const ledger::Command first =
      with_key(spend("acme/research/agent", units(2), "hold_b1"), "key-b", "hash-b");
  const Outcome original = run(first);
  ASSERT_TRUE(original.ok());
  ASSERT_TRUE(std::holds_alternative<ledger::SpendCommitted>(original->answer.value));
  ASSERT_EQ(original->rendered.status, 201);

  // The same store, served by a sequencer whose renderer says something else.
  sequencer_.reset();
  engine::SequencerOptions options;
  options.render = [](const ledger::Answer& answer) {
    if (const auto* replayed = std::get_if<ledger::Replayed>(&answer.value))
      return replayed->recorded;
    return ledger::RenderedAnswer{299, "{\"rendered\":\"later\"}"};
  };
  sequencer_ = std::make_unique<engine::Sequencer>(
      *store_, [this] { return clock_.load(); }, std::move(options), &events_);

  ledger::Command retry = first;
  retry.hold_id = "hold_b2";
  const Outcome replay = run(retry);
  ASSERT_TRUE(replay.ok());
  EXPECT_TRUE(std::holds_alternative<ledger::Replayed>(replay->answer.value));
  EXPECT_EQ(replay->rendered.status, original->rendered.status);
  EXPECT_EQ(replay->rendered.body, original->rendered.body);
  EXPECT_EQ(budget("acme").spent, units(2));

  // A new request is answered, and recorded, as the renderer of the day renders it.
  const Outcome fresh =
      run(with_key(spend("acme/research/agent", units(1), "hold_b3"), "key-c", "hash-c"));
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(std::holds_alternative<ledger::SpendCommitted>(fresh->answer.value));
  EXPECT_EQ(fresh->rendered.status, 299);
  const auto record = store_->get_idempotency("acme", "admin:key-c");
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ(record->value().status, 299);
  EXPECT_EQ(record->value().body, fresh->rendered.body);
  EXPECT_EQ(budget("acme").spent, units(3));
}

TEST_P(StoreConformanceWithTree, IdempotentReplayReturnsTheOriginalAnswer) {
  const ledger::Command first =
      with_key(spend("acme/research/agent", units(2), "hold_i1"), "key-1", "hash-1");
  const Outcome original = run(first);
  ASSERT_TRUE(original.ok());
  ASSERT_EQ(original->rendered.status, 201);
  const int64_t head = budget("acme").head_seq;

  // The edge would give the retry a new hold id; the answer must still be the first one.
  ledger::Command retry = first;
  retry.hold_id = "hold_i2";
  for (int i = 0; i < 3; ++i) {
    const Outcome replay = run(retry);
    ASSERT_TRUE(replay.ok());
    EXPECT_EQ(replay->rendered.status, original->rendered.status);
    EXPECT_EQ(replay->rendered.body, original->rendered.body);
  }
  EXPECT_EQ(budget("acme").head_seq, head);
  EXPECT_EQ(budget("acme").spent, units(2));
  EXPECT_FALSE(store_->get_hold("hold_i2").value().has_value());

  const auto record = store_->get_idempotency("acme", "admin:key-1");
  ASSERT_TRUE(record.ok() && record->has_value());
  EXPECT_EQ(record->value().request_hash, "hash-1");
  EXPECT_EQ(record->value().status, 201);
  EXPECT_EQ(record->value().body, original->rendered.body);
  EXPECT_EQ(record->value().created_at, now());

  // The same key with a different request is a conflict, and writes nothing.
  ledger::Command reused = first;
  reused.request_hash = "hash-2";
  const Error conflict = expect_error(reused, "idempotency_key_reused");
  EXPECT_EQ(conflict.code, ErrorCode::conflict);
  EXPECT_EQ(budget("acme").head_seq, head);
  EXPECT_EQ(store_->get_idempotency("acme", "admin:key-1").value()->request_hash, "hash-1");

  // A denial stays a denial, even once there would be room.
  const ledger::Command big =
      with_key(spend("acme/research", units(5), "hold_i3"), "key-2", "hash-3");
  expect_status(set_budget("acme/research", units(3)), 200);
  const Outcome denied = run(big);
  ASSERT_TRUE(denied.ok());
  ASSERT_EQ(denied->rendered.status, 402);
  expect_status(set_budget("acme/research", units(40)), 200);
  const Outcome denied_again = run(big);
  ASSERT_TRUE(denied_again.ok());
  EXPECT_EQ(denied_again->rendered.status, 402);
  EXPECT_EQ(denied_again->rendered.body, denied->rendered.body);
  EXPECT_EQ(budget("acme").spent, units(2));
}

// Idempotency records are kept for the retention, then pruned in bounded steps: a replay
// inside it gets the original answer, one after it is a new request.
TEST_P(StoreConformanceWithTree, IdempotencyRecordsArePrunedAfterTheRetention) {
  const Micros day = 86'400 * second;
  std::vector<Outcome> old_answers;
  for (int i = 0; i < 5; ++i) {
    old_answers.push_back(
        run(with_key(spend("acme/research/agent", cents(10), "hold_old" + std::to_string(i)),
                     "old-" + std::to_string(i), "hash-old")));
    ASSERT_TRUE(old_answers.back().ok());
  }
  advance(8 * day);
  const Outcome recent =
      run(with_key(spend("acme/research/agent", cents(10), "hold_new"), "new-1", "hash-new"));
  ASSERT_TRUE(recent.ok());
  const Micros cutoff = now() - 7 * day;

  // Bounded steps: at most `limit` per call, oldest first, never a record inside the retention.
  const auto first_step = store_->prune_idempotency(cutoff, 2);
  ASSERT_TRUE(first_step.ok()) << first_step.error().message;
  EXPECT_EQ(*first_step, 2u);
  EXPECT_FALSE(store_->get_idempotency("acme", "admin:old-0").value().has_value());
  EXPECT_FALSE(store_->get_idempotency("acme", "admin:old-1").value().has_value());
  EXPECT_TRUE(store_->get_idempotency("acme", "admin:old-2").value().has_value());
  const auto rest = store_->prune_idempotency(cutoff, 1'000);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(*rest, 3u);
  EXPECT_EQ(*store_->prune_idempotency(cutoff, 1'000), 0u);
  EXPECT_TRUE(store_->get_idempotency("acme", "admin:new-1").value().has_value());

  // Inside the retention a replay is answered from the record; after it, it is a new spend.
  const Outcome replay_recent =
      run(with_key(spend("acme/research/agent", cents(10), "hold_x"), "new-1", "hash-new"));
  ASSERT_TRUE(replay_recent.ok());
  EXPECT_EQ(replay_recent->rendered.body, recent->rendered.body);
  const Micros spent_before = budget("acme").spent.micros();
  const Outcome replay_old =
      run(with_key(spend("acme/research/agent", cents(10), "hold_y"), "old-0", "hash-old"));
  ASSERT_TRUE(replay_old.ok());
  EXPECT_EQ(replay_old->rendered.status, 201);
  EXPECT_NE(replay_old->rendered.body, old_answers[0]->rendered.body);
  EXPECT_EQ(budget("acme").spent.micros(), spent_before + cents(10).micros());

  // Records survive a reopen exactly as pruned (SQLite rebuilds its index from the log).
  close();
  open();
  EXPECT_FALSE(store_->get_idempotency("acme", "admin:old-3").value().has_value());
  EXPECT_TRUE(store_->get_idempotency("acme", "admin:new-1").value().has_value());
}

TEST_P(StoreConformanceWithTree, IdempotencyKeyIsUsedOnceWithinOneBatch) {
  // Two identical requests decided in the same commit: the second replays the first.
  const ledger::Command request =
      with_key(spend("acme/research", units(1), "hold_b1"), "key-b", "hash-b");
  ledger::Command duplicate = request;
  duplicate.hold_id = "hold_b2";
  const std::vector<ledger::Command> commands = {request, duplicate};
  const ledger::ReadSet read = ledger::read_set_for(commands);
  std::vector<Outcome> outcomes;
  const Status status = store_->commit_batch(read, [&](ledger::WorkingSet& state) {
    outcomes.clear();
    for (const ledger::Command& command : commands)
      outcomes.push_back(ledger::apply_command(state, command, now(), http::render_answer));
  });
  ASSERT_TRUE(status.ok()) << status.error().message;
  ASSERT_EQ(outcomes.size(), 2u);
  ASSERT_TRUE(outcomes[0].ok() && outcomes[1].ok());
  EXPECT_EQ(outcomes[1]->rendered.body, outcomes[0]->rendered.body);
  EXPECT_EQ(budget("acme").spent, units(1));
  EXPECT_EQ(budget("acme").head_seq, 4);
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, EveryApplyStartsFromTheCommittedState) {
  const ledger::Command command = spend("acme/research", units(1), "hold_a1");
  const std::vector<ledger::Command> commands = {command};
  const ledger::ReadSet read = ledger::read_set_for(commands);

  struct Seen {
    size_t new_entries;
    size_t dirty;
    size_t new_idempotency;
    bool has_budgets;
    int64_t spent;
    int64_t head_seq;
  };
  std::vector<Seen> seen;
  std::vector<Outcome> outcomes;
  // One apply callback reused for two commits: every call, including any retry a store makes,
  // must get a fresh WorkingSet that holds exactly the committed state.
  const ApplyBatch apply = [&](ledger::WorkingSet& state) {
    const bool has_budgets =
        state.budgets.contains("acme") && state.budgets.contains("acme/research");
    seen.push_back({state.new_entries.size(),
                    state.dirty_budgets.size() + state.dirty_holds.size() + state.dirty_keys.size(),
                    state.new_idempotency.size(), has_budgets,
                    has_budgets ? state.budgets.at("acme/research").spent.micros() : -1,
                    has_budgets ? state.budgets.at("acme").head_seq : -1});
    outcomes.clear();
    outcomes.push_back(ledger::apply_command(state, command, now(), http::render_answer));
  };

  ASSERT_TRUE(store_->commit_batch(read, apply).ok());
  const size_t first_calls = seen.size();
  ASSERT_GE(first_calls, 1u);
  for (const Seen& call : seen) {
    EXPECT_EQ(call.new_entries, 0u);
    EXPECT_EQ(call.dirty, 0u);
    EXPECT_EQ(call.new_idempotency, 0u);
    EXPECT_TRUE(call.has_budgets);
    EXPECT_EQ(call.spent, 0);
    EXPECT_EQ(call.head_seq, 3);
  }
  EXPECT_EQ(budget("acme/research").spent, units(1));  // applied once, not once per call
  EXPECT_EQ(budget("acme").head_seq, 4);

  // The same callback again: it sees the first commit, and nothing left over from it.
  ASSERT_TRUE(store_->commit_batch(read, apply).ok());
  ASSERT_GT(seen.size(), first_calls);
  for (size_t i = first_calls; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].new_entries, 0u);
    EXPECT_EQ(seen[i].dirty, 0u);
    EXPECT_EQ(seen[i].spent, units(1).micros());
    EXPECT_EQ(seen[i].head_seq, 4);
  }
  EXPECT_EQ(budget("acme/research").spent, units(2));
  EXPECT_EQ(budget("acme").head_seq, 5);
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_EQ(outcomes[0]->rendered.status, 201);

  // An apply that changes nothing commits nothing.
  ASSERT_TRUE(store_->commit_batch(read, [](ledger::WorkingSet&) {}).ok());
  EXPECT_EQ(budget("acme").head_seq, 5);
  EXPECT_EQ(all_entries("acme").size(), 5u);
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, VerifyChecksARealChainAndReportsProgress) {
  expect_status(hold("acme/research", units(3), "hold_v1", 60 * second), 201);
  expect_status(capture("acme/research", "hold_v1", units(2)), 200);
  expect_status(hold("acme/research", units(1), "hold_v2", 60 * second), 201);
  expect_status(void_hold("acme/research", "hold_v2"), 200);
  expect_status(spend("acme/research/agent", units(1), "hold_v3"), 201);
  expect_status(spend("acme/research/agent", units(50), "hold_v4"), 402);
  expect_status(freeze("acme", "audit"), 200);
  expect_status(create_key("acme/research", "key_v", "v"), 201);
  expect_status(revoke_key("acme", "key_v"), 200);
  expect_status(set_budget("other", units(1)), 201);

  std::vector<std::pair<int64_t, int64_t>> progress;
  const auto report = store_->verify("acme", [&](int64_t checked, int64_t total) {
    progress.push_back({checked, total});
  });
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->ok) << report->problem;
  const BudgetNode root = budget("acme");
  EXPECT_EQ(report->checked, 12);
  EXPECT_EQ(report->head_seq, root.head_seq);
  EXPECT_EQ(report->head_hash, root.head_hash);
  EXPECT_FALSE(report->first_bad_seq.has_value());
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), (std::pair<int64_t, int64_t>{12, 12}));
  for (size_t i = 1; i < progress.size(); ++i)
    EXPECT_GE(progress[i].first, progress[i - 1].first);

  EXPECT_TRUE(verify("other").ok);
  EXPECT_EQ(verify("other").checked, 1);
  EXPECT_EQ(store_->verify("acme/research", nullptr).error().code, ErrorCode::not_found);
  EXPECT_EQ(store_->verify("nobody", nullptr).error().code, ErrorCode::not_found);
}

TEST_P(StoreConformanceWithTree, ReopeningKeepsEverything) {
  expect_status(with_key(spend("acme/research/agent", units(2), "hold_r1"), "key-r", "hash-r"),
                201);
  expect_status(hold("acme/research", units(3), "hold_r2", 600 * second), 201);
  expect_status(create_key("acme/research", "key_r", "bot"), 201);
  expect_status(freeze("acme/research/agent", "paused"), 200);
  const std::vector<BudgetNode> budgets_before = store_->list_subtree("acme").value();
  const std::vector<Entry> entries_before = all_entries("acme");
  const Hold hold_before = hold_row("hold_r2");
  const ApiKey key_before = store_->get_key("key_r").value().value();

  close();
  open();

  const std::vector<BudgetNode> budgets_after = store_->list_subtree("acme").value();
  ASSERT_EQ(budgets_after.size(), budgets_before.size());
  for (size_t i = 0; i < budgets_after.size(); ++i) {
    const BudgetNode& a = budgets_after[i];
    const BudgetNode& b = budgets_before[i];
    EXPECT_EQ(a.path, b.path);
    EXPECT_EQ(a.parent, b.parent);
    EXPECT_EQ(a.limit, b.limit);
    EXPECT_EQ(a.period, b.period);
    EXPECT_EQ(a.period_start, b.period_start);
    EXPECT_EQ(a.spent, b.spent);
    EXPECT_EQ(a.reserved, b.reserved);
    EXPECT_EQ(a.per_txn_max, b.per_txn_max);
    EXPECT_EQ(a.frozen, b.frozen);
    EXPECT_EQ(a.frozen_reason, b.frozen_reason);
    EXPECT_EQ(a.head_seq, b.head_seq);
    EXPECT_EQ(a.head_hash, b.head_hash);
  }
  const std::vector<Entry> entries_after = all_entries("acme");
  ASSERT_EQ(entries_after.size(), entries_before.size());
  for (size_t i = 0; i < entries_after.size(); ++i)
    expect_same_entry(entries_after[i], entries_before[i]);
  const Hold hold_after = hold_row("hold_r2");
  EXPECT_EQ(hold_after.status, hold_before.status);
  EXPECT_EQ(hold_after.amount, hold_before.amount);
  EXPECT_EQ(hold_after.expires_at, hold_before.expires_at);
  const ApiKey key_after = store_->get_key("key_r").value().value();
  EXPECT_EQ(key_after.secret_hash, key_before.secret_hash);
  EXPECT_EQ(key_after.budget, key_before.budget);
  EXPECT_TRUE(verify("acme").ok);

  // The replay still answers from the record, and the chain continues where it stopped.
  const Outcome replay =
      run(with_key(spend("acme/research/agent", units(2), "hold_r9"), "key-r", "hash-r"));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->rendered.status, 201);
  EXPECT_EQ(budget("acme").spent, units(2));
  expect_status(capture("acme/research", "hold_r2", units(1)), 200);
  EXPECT_EQ(all_entries("acme").back().seq, entries_before.back().seq + 1);
  EXPECT_EQ(all_entries("acme").back().prev_hash, entries_before.back().hash);
  EXPECT_TRUE(verify("acme").ok);
}

// ---- Policies (issue 4): windows, vendor rules, the velocity breaker ----------------------------

constexpr Micros minute = 60 * second;
constexpr Micros hour = 60 * minute;

std::vector<std::string> kinds_after(const std::vector<Entry>& entries, int64_t after_seq) {
  std::vector<std::string> out;
  for (const Entry& entry : entries) {
    if (entry.seq > after_seq)
      out.push_back(entry.kind);
  }
  return out;
}

// ---- Time only moves forward (SPEC guarantee 7) -------------------------------------------

// Two instances whose clocks differ by a minute, taking turns across a period boundary: the
// one behind must never move the budget back into the old period (reading its spent as zero),
// which would let the next one start the new period afresh and overspend it. On a store with
// one owner per database the same instance's clock steps back and forth instead.
class StoreConformanceClocks : public StoreConformance {
 protected:
  void skewed_instances_across(ledger::Period period, Micros boundary) {
    const Money limit = units(10);
    const Micros skew = 60 * second;
    clock_ = boundary - 10 * 60 * second;  // the old period
    expect_status(set_budget("acme", limit, period), 201);
    expect_status(set_budget("acme/agent", std::nullopt, period), 201);
    expect_status(spend("acme/agent", units(9), "hold_old"), 201);

    std::atomic<Micros> behind{boundary + 30 * second - skew};  // still in the old period
    std::unique_ptr<Store> second_store;
    std::unique_ptr<engine::Sequencer> other;
    if (GetParam().multi_instance) {
      second_store = GetParam().factory(directory_.str());
      ASSERT_NE(second_store, nullptr);
      other = std::make_unique<engine::Sequencer>(
          *second_store, [&behind] { return behind.load(); }, edge_options(), nullptr);
    }
    const auto on_ahead = [&](const ledger::Command& command) {
      clock_ = boundary + 30 * second;
      return run(command);
    };
    const auto on_behind = [&](const ledger::Command& command) {
      if (other)
        return other->execute(command);
      clock_ = behind.load();  // the one instance's clock steps back a minute
      return run(command);
    };

    std::vector<Outcome> outcomes;
    outcomes.push_back(on_ahead(spend("acme/agent", units(6), "hold_a1")));   // new period: 6
    outcomes.push_back(on_behind(spend("acme/agent", units(6), "hold_b1")));  // 12 > 10
    outcomes.push_back(on_ahead(spend("acme/agent", units(6), "hold_a2")));   // 12 > 10
    outcomes.push_back(on_behind(hold("acme/agent", units(4), "hold_b2", 60 * second)));  // 10
    outcomes.push_back(on_ahead(spend("acme/agent", cents(1), "hold_a3")));  // 10.01 > 10
    other.reset();
    second_store.reset();
    std::vector<int> statuses;
    for (const Outcome& outcome : outcomes) {
      ASSERT_TRUE(outcome.ok()) << outcome.error().message;
      statuses.push_back(outcome->rendered.status);
    }
    EXPECT_EQ(statuses, (std::vector<int>{201, 402, 402, 201, 402}));

    clock_ = boundary + 31 * second;
    for (const std::string path : {"acme", "acme/agent"}) {
      const BudgetNode node = budget(path);
      EXPECT_EQ(node.period_start, boundary) << path;
      EXPECT_EQ(node.spent, units(6)) << path;
      EXPECT_EQ(node.reserved, units(4)) << path;
      EXPECT_LE(node.spent.micros() + node.reserved.micros(), limit.micros()) << path;
    }
    // Entries are in seq order with timestamps that never go back; every one decided after the
    // boundary carries a time inside the new period, whichever clock decided it.
    const std::vector<Entry> entries = all_entries("acme");
    ASSERT_GE(entries.size(), 8u);
    int64_t new_period_money = 0;
    for (size_t i = 0; i < entries.size(); ++i) {
      EXPECT_EQ(entries[i].seq, static_cast<int64_t>(i + 1));
      if (i > 0) {
        EXPECT_GE(entries[i].ts, entries[i - 1].ts) << "seq " << entries[i].seq;
      }
      if (entries[i].kind == "spend" || entries[i].kind == "hold") {
        if (entries[i].hold_id != "hold_old") {
          EXPECT_GE(entries[i].ts, boundary) << entries[i].hold_id;
          new_period_money += entries[i].amount->micros();
        }
      }
    }
    EXPECT_EQ(new_period_money, units(10).micros());
    EXPECT_TRUE(verify("acme").ok);
  }
};

TEST_P(StoreConformanceClocks, SkewedInstancesNeverReopenADay) {
  skewed_instances_across(ledger::Period::day,
                          ledger::period_start(ledger::Period::day, t0) + 86'400 * second);
}

TEST_P(StoreConformanceClocks, SkewedInstancesNeverReopenAMonth) {
  const Micros month = ledger::period_start(ledger::Period::month, t0);
  skewed_instances_across(
      ledger::Period::month,
      ledger::period_start(ledger::Period::month, month + 40 * 86'400 * second));
}

// A clock that steps back on one instance: a window bucket, a breaker count and a hold's
// expiry never move backwards with it.
TEST_P(StoreConformanceClocks, ClockSteppingBackKeepsWindowsBreakersAndExpiries) {
  expect_status(set_budget("acme", units(100)), 201);
  ledger::Command windowed = set_budget("acme/agent", std::nullopt);
  windowed.settings.windows = std::vector<ledger::WindowCap>{{3'600 * second, units(5)}};
  windowed.settings.breaker_given = true;
  windowed.settings.breaker = ledger::BreakerSettings{60 * second, std::nullopt, 3};
  expect_status(windowed, 201);
  expect_status(spend("acme/agent", units(3), "hold_1"), 201);
  const boost::json::object held =
      expect_status(hold("acme/agent", units(1), "hold_2", 60 * second), 201);
  const Micros decided = now();

  // Two hours back: a naive clock would find the window and the breaker empty.
  clock_ = decided - 2 * 3'600 * second;
  const Outcome over_window = run(spend("acme/agent", units(2), "hold_3"));
  ASSERT_TRUE(over_window.ok());
  EXPECT_EQ(over_window->rendered.status, 402) << over_window->rendered.body;
  EXPECT_EQ(boost::json::parse(over_window->rendered.body).at("error").at("code").as_string(),
            "window_exceeded");
  const Outcome third = run(spend("acme/agent", cents(50), "hold_4"));
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->rendered.status, 201) << third->rendered.body;
  const Outcome fourth = run(spend("acme/agent", cents(10), "hold_5"));  // the 4th in a minute
  ASSERT_TRUE(fourth.ok());
  EXPECT_EQ(boost::json::parse(fourth->rendered.body).at("error").at("code").as_string(),
            "breaker_tripped");

  // The hold was made at `decided` for a minute: its expiry did not move back with the clock,
  // and the entries' timestamps never went back either.
  EXPECT_EQ(hold_row("hold_2").expires_at, decided + 60 * second);
  EXPECT_EQ(held.at("expires_at").as_string(), ledger::format_timestamp(decided + 60 * second));
  const std::vector<Entry> entries = all_entries("acme");
  for (size_t i = 1; i < entries.size(); ++i) {
    EXPECT_GE(entries[i].ts, entries[i - 1].ts) << "seq " << entries[i].seq;
  }
  EXPECT_GE(entries.back().ts, decided);
}

// The core itself refuses the control plane from an agent key, whatever the edge let through.
TEST_P(StoreConformanceWithTree, CoreRefusesAdminCommandsFromAKey) {
  expect_status(create_key("acme/research", "key_agent", "agent"), 201);
  const std::vector<ledger::Command> admin_only = {
      set_budget("acme/research/agent", units(1)), freeze("acme/research/agent", "x"),
      unfreeze("acme/research/agent"), create_key("acme/research/agent", "key_2", "two"),
      revoke_key("acme", "key_agent")};
  const size_t before = all_entries("acme").size();
  for (const ledger::Command& command : admin_only)
    expect_error(as_actor(command, "key_agent"), "admin_only");
  ledger::Command expiry = command_for(ledger::CommandKind::expire, "acme/research/agent");
  expiry.hold_id = "hold_nobody";
  expect_error(as_actor(expiry, "key_agent"), "admin_only");
  EXPECT_EQ(all_entries("acme").size(), before);
  // The key still spends in its own subtree.
  expect_status(as_actor(spend("acme/research/agent", cents(1), "hold_ok"), "key_agent"), 201);
}

// A root keeps its books in one currency.
TEST_P(StoreConformanceWithTree, RootCurrencyIsFixedOnceItHasEntries) {
  ledger::Command euro = set_budget("acme", units(100));
  euro.settings.currency = "EUR";
  expect_error(euro, "currency_locked");
  EXPECT_EQ(budget("acme").currency, "USD");
  ledger::Command same = set_budget("acme", units(100));
  same.settings.currency = "USD";
  expect_status(same, 200);
}

TEST_P(StoreConformance, PoliciesAreStoredReadBackAndKeptOnReopen) {
  ledger::Policies expected;
  expected.windows = {{hour, units(5)}, {24 * hour, units(50)}};
  expected.vendors.allow = {"*.openai.com", "anthropic"};
  expected.vendors.block = {"bad.openai.com"};
  expected.approval_above = units(20);
  expected.breaker = ledger::BreakerSettings{minute, units(3), 10};
  expected.thresholds = std::vector<int>{25, 75};
  const boost::json::object created =
      expect_status(set_policies("acme",
                                 [&](ledger::BudgetSettings& settings) {
                                   settings.limit_given = true;
                                   settings.limit = units(100);
                                   settings.windows = expected.windows;
                                   settings.vendors = expected.vendors;
                                   settings.approval_above_given = true;
                                   settings.approval_above = expected.approval_above;
                                   settings.breaker_given = true;
                                   settings.breaker = expected.breaker;
                                   settings.thresholds_given = true;
                                   settings.thresholds = expected.thresholds;
                                 }),
                    201);
  EXPECT_EQ(created.at("windows").as_array().size(), 2u);
  EXPECT_EQ(created.at("windows").at(0).at("duration").as_string(), "1h");
  EXPECT_EQ(created.at("windows").at(0).at("used").as_string(), "0.00");
  EXPECT_EQ(created.at("breaker").at("max_count").as_int64(), 10);
  EXPECT_EQ(created.at("approval_above").as_string(), "20.00");
  EXPECT_EQ(budget("acme").policies, expected);
  ASSERT_EQ(budget("acme").usage.windows.size(), 2u);
  EXPECT_EQ(budget("acme").usage.windows[0].since, now());
  ASSERT_TRUE(budget("acme").usage.breaker.has_value());
  // The change is a chained entry naming the actor, with the policies in its detail.
  const Entry set = all_entries("acme").back();
  EXPECT_EQ(set.kind, "budget_set");
  EXPECT_EQ(set.actor, "admin");
  const auto detail = boost::json::parse(set.detail_json).as_object();
  EXPECT_EQ(detail.at("policies").at("vendors").at("block").at(0).as_string(), "bad.openai.com");

  // A later PUT that names only some fields keeps the others; null clears a policy.
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.breaker_given = true;
                               settings.approval_above_given = true;
                             }),
                200);
  expected.breaker.reset();
  expected.approval_above.reset();
  EXPECT_EQ(budget("acme").policies, expected);
  EXPECT_FALSE(budget("acme").usage.breaker.has_value());

  close();
  open();
  EXPECT_EQ(budget("acme").policies, expected);
  EXPECT_EQ(budget("acme").usage.windows.size(), 2u);
  EXPECT_TRUE(verify("acme").ok);
}

// require_tags on a node: every spend and hold below it must carry those tags (non-empty), or
// it is a 400 that writes nothing; the policy is stored, shown, kept on reopen, and cleared.
TEST_P(StoreConformanceWithTree, RequiredTagsRefuseUntaggedSpendsAndHoldsBelowTheNode) {
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.require_tags = std::vector<std::string>{"customer"};
                             }),
                200);
  expect_status(set_policies("acme/research",
                             [](ledger::BudgetSettings& settings) {
                               settings.require_tags = std::vector<std::string>{"feature"};
                             }),
                200);
  EXPECT_EQ(budget("acme").policies.require_tags, std::vector<std::string>{"customer"});
  const auto detail = boost::json::parse(all_entries("acme").back().detail_json).as_object();
  EXPECT_EQ(detail.at("policies").at("require_tags").at(0).as_string(), "feature");
  const int64_t head = budget("acme").head_seq;
  const size_t entries = all_entries("acme").size();

  // The spend helper tags {"run":"42"} only: both levels' keys are missing.
  const Error untagged =
      expect_error(spend("acme/research/agent", cents(10), "hold_a"), "missing_required_tags");
  EXPECT_EQ(untagged.code, ErrorCode::invalid_input);
  EXPECT_NE(untagged.message.find("\"customer\""), std::string::npos);
  EXPECT_NE(untagged.message.find("\"feature\""), std::string::npos);
  ledger::Command half = spend("acme/research/agent", cents(10), "hold_b");
  half.tags_json = R"({"customer":"c1","feature":""})";  // empty counts as missing
  expect_error(half, "missing_required_tags");
  ledger::Command untagged_hold = hold("acme/research/agent", cents(10), "hold_c", minute);
  expect_error(untagged_hold, "missing_required_tags");
  EXPECT_EQ(budget("acme").head_seq, head);
  EXPECT_EQ(all_entries("acme").size(), entries);
  EXPECT_EQ(budget("acme/research").spent, cents(0));

  ledger::Command tagged = spend("acme/research/agent", cents(10), "hold_d");
  tagged.tags_json = R"({"customer":"c1","feature":"search"})";
  expect_status(tagged, 201);
  ledger::Command tagged_hold = hold("acme/research/agent", cents(10), "hold_e", minute);
  tagged_hold.tags_json = R"({"customer":"c1","feature":"search"})";
  expect_status(tagged_hold, 201);
  // A capture takes the hold's tags: it needs none of its own.
  expect_status(capture("acme/research/agent", "hold_e"), 200);
  // Outside acme/research only acme's key is required.
  expect_status(set_budget("acme/ops", std::nullopt), 201);
  ledger::Command ops = spend("acme/ops", cents(10), "hold_f");
  ops.tags_json = R"({"customer":"c2"})";
  expect_status(ops, 201);

  close();
  open();
  EXPECT_EQ(budget("acme/research").policies.require_tags, std::vector<std::string>{"feature"});
  expect_status(set_policies("acme/research",
                             [](ledger::BudgetSettings& settings) {
                               settings.require_tags = std::vector<std::string>{};
                             }),
                200);
  EXPECT_TRUE(budget("acme/research").policies.require_tags.empty());
  ledger::Command customer_only = spend("acme/research/agent", cents(10), "hold_g");
  customer_only.tags_json = R"({"customer":"c1"})";
  expect_status(customer_only, 201);
  EXPECT_TRUE(verify("acme").ok);
}

// vendor_categories on a node: a spend or hold below it with no category of its own gets its
// vendor's category (deepest node first; exact name over wildcard, longer wildcard over
// shorter), in the entry's hashed tags, the hold, its capture and a denial alike.
TEST_P(StoreConformanceWithTree, VendorCategoriesFillTheCategoryOfSpendsThatNameNone) {
  using ledger::VendorCategory;
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.vendor_categories =
                                   std::vector<VendorCategory>{{"*.example.com", "payments"},
                                                               {"*.serp.example.com", "data-api"},
                                                               {"openai", "llm"}};
                             }),
                200);
  expect_status(
      set_policies(
          "acme/research",
          [](ledger::BudgetSettings& settings) {
            settings.vendor_categories = std::vector<VendorCategory>{{"openai", "research-llm"}};
            settings.require_tags = std::vector<std::string>{"category"};
          }),
      200);
  const auto category_of = [](const Entry& entry) -> std::string {
    const auto tags = boost::json::parse(entry.tags_json).as_object();
    const auto* value = tags.if_contains("category");
    return value ? std::string(value->as_string()) : "(none)";
  };
  expect_status(spend("acme", cents(1), "hold_v1", "openai"), 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "llm");
  EXPECT_EQ(boost::json::parse(all_entries("acme").back().tags_json).at("run").as_string(), "42");
  expect_status(spend("acme", cents(1), "hold_v2", "api.serp.example.com"), 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "data-api");
  expect_status(spend("acme", cents(1), "hold_v3", "shop.example.com"), 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "payments");
  expect_status(spend("acme", cents(1), "hold_v4", "anthropic"), 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "(none)");
  ledger::Command own = spend("acme", cents(1), "hold_v5", "openai");
  own.tags_json = R"({"category":"payments"})";
  expect_status(own, 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "payments");
  // The deepest node decides, and its default satisfies its own require_tags.
  expect_status(spend("acme/research/agent", cents(1), "hold_v6", "openai"), 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "research-llm");
  expect_error(spend("acme/research/agent", cents(1), "hold_v7", "anthropic"),
               "missing_required_tags");
  ledger::Command held = hold("acme/research/agent", cents(2), "hold_v8", minute);
  held.vendor = "OpenAI";  // vendors match ignoring case
  expect_status(held, 201);
  expect_status(capture("acme/research/agent", "hold_v8"), 200);
  EXPECT_EQ(all_entries("acme").back().kind, "capture");
  EXPECT_EQ(category_of(all_entries("acme").back()), "research-llm");
  // A denial records the category too.
  expect_status(spend("acme/research/agent", units(6), "hold_v9", "openai"), 402);
  EXPECT_EQ(all_entries("acme").back().kind, "deny");
  EXPECT_EQ(category_of(all_entries("acme").back()), "research-llm");

  close();
  open();
  EXPECT_EQ(budget("acme").policies.vendor_categories.size(), 3u);
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.vendor_categories = std::vector<VendorCategory>{};
                             }),
                200);
  expect_status(spend("acme", cents(1), "hold_v10", "openai"), 201);
  EXPECT_EQ(category_of(all_entries("acme").back()), "(none)");
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformance, ApprovalThresholdAboveTheLimitIsRefusedAndChangesNothing) {
  expect_status(set_budget("acme", units(100)), 201);
  const int64_t head = budget("acme").head_seq;
  const Error error =
      expect_error(set_approval_above("acme", units(101)), "invalid_approval_above");
  EXPECT_EQ(error.code, ErrorCode::invalid_input);
  EXPECT_FALSE(budget("acme").policies.approval_above.has_value());
  EXPECT_EQ(budget("acme").head_seq, head);
  expect_status(set_approval_above("acme", units(100)), 200);
}

TEST_P(StoreConformanceWithTree, WindowCapSlidesWithTheClock) {
  // 5.00 per hour on research, on top of its 40.00 a day.
  expect_status(set_policies("acme/research",
                             [](ledger::BudgetSettings& settings) {
                               settings.windows = std::vector<ledger::WindowCap>{{hour, units(5)}};
                             }),
                200);
  clock_ = t0 + 10 * second;  // inside the bucket [t0, t0 + 1m)
  expect_status(spend("acme/research/agent", units(3), "hold_w1"), 201);
  advance(20 * minute);
  expect_status(spend("acme/research/agent", units(2), "hold_w2"), 201);
  // The window is full: one micro-unit more is refused, with the level and what is left.
  const boost::json::object denied =
      expect_status(spend("acme/research/agent", Money::from_micros(1), "hold_w3"), 402);
  EXPECT_EQ(denied.at("error").at("code").as_string(), "window_exceeded");
  EXPECT_EQ(denied.at("error").at("budget").as_string(), "acme/research");
  EXPECT_EQ(denied.at("error").at("available").as_string(), "0.00");
  // The 3.00 from t0 + 10s counts until its bucket leaves the window: t0 + 1m + 1h.
  clock_ = t0 + minute + hour - 1;
  expect_status(spend("acme/research/agent", Money::from_micros(1), "hold_w4"), 402);
  clock_ = t0 + minute + hour;
  expect_status(spend("acme/research/agent", units(3), "hold_w5"), 201);
  expect_status(spend("acme/research/agent", Money::from_micros(1), "hold_w6"), 402);
  EXPECT_EQ(budget("acme/research").usage.windows.at(0).amount_at(now()), units(5));
  EXPECT_EQ(budget("acme/research").spent, units(8));
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, HeldAmountsCountInWindowsAndReleasesGiveBack) {
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.windows = std::vector<ledger::WindowCap>{{hour, units(6)}};
                             }),
                200);
  expect_status(hold("acme/research", units(4), "hold_h1", 600 * second), 201);
  expect_status(hold("acme/research", units(2), "hold_h2", 600 * second), 201);
  expect_status(spend("acme/research/agent", cents(1), "hold_h3"), 402);  // held counts
  advance(5 * minute);
  // Capturing 1.00 of 4.00 gives 3.00 back to the window it was held in; voiding gives all.
  expect_status(capture("acme/research", "hold_h1", units(1)), 200);
  EXPECT_EQ(budget("acme").usage.windows.at(0).amount_at(now()), units(3));
  expect_status(void_hold("acme/research", "hold_h2"), 200);
  EXPECT_EQ(budget("acme").usage.windows.at(0).amount_at(now()), units(1));
  expect_status(spend("acme/research/agent", units(5), "hold_h4"), 201);
  expect_status(spend("acme/research/agent", cents(1), "hold_h5"), 402);
  // An expired hold settles like a capture of its held amount (it keeps counting) unless it
  // was made with on_expiry "void" (then it gives its amount back).
  advance(hour + 2 * minute);
  expect_status(
      hold("acme/research", units(4), "hold_h6", 60 * second, ledger::OnExpiry::void_hold), 201);
  advance(61 * second);
  const std::vector<Hold> expired = store_->list_expired_holds(now(), 10).value();
  ASSERT_EQ(expired.size(), 1u);
  expect_status(expire(expired[0]), 200);
  EXPECT_EQ(hold_row("hold_h6").status, HoldStatus::expired);
  EXPECT_EQ(budget("acme").usage.windows.at(0).amount_at(now()), Money::zero());
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, VendorRulesRefuseWithVendorBlocked) {
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.vendors = ledger::VendorRules{{}, {"*.evil.com", "scam"}};
                             }),
                200);
  expect_status(
      set_policies(
          "acme/research",
          [](ledger::BudgetSettings& settings) {
            settings.vendors = ledger::VendorRules{{"*.openai.com", "anthropic", "x.evil.com"}, {}};
          }),
      200);
  expect_status(spend("acme/research/agent", units(1), "hold_v1", "api.openai.com"), 201);
  expect_status(spend("acme/research/agent", units(1), "hold_v2", "Anthropic"), 201);
  const boost::json::object blocked =
      expect_status(spend("acme/research/agent", units(1), "hold_v3", "x.evil.com"), 402);
  EXPECT_EQ(blocked.at("error").at("code").as_string(), "vendor_blocked");
  EXPECT_EQ(blocked.at("error").at("budget").as_string(), "acme");  // a block up the path wins
  const boost::json::object not_allowed =
      expect_status(spend("acme/research/agent", units(1), "hold_v4", "mistral"), 402);
  EXPECT_EQ(not_allowed.at("error").at("code").as_string(), "vendor_blocked");
  EXPECT_EQ(not_allowed.at("error").at("budget").as_string(), "acme/research");
  // Holds are checked the same way, and a sibling without an allow list only sees the block.
  expect_status(hold("acme/research/agent", units(1), "hold_v5", 60 * second), 201);  // anthropic
  expect_status(set_budget("acme/sales", std::nullopt), 201);
  expect_status(spend("acme/sales", units(1), "hold_v6", "mistral"), 201);
  expect_status(spend("acme/sales", units(1), "hold_v7", "scam"), 402);
  EXPECT_EQ(budget("acme").spent, units(3));
  EXPECT_EQ(all_entries("acme").back().code, "vendor_blocked");
}

TEST_P(StoreConformanceWithTree, BreakerRefusesFreezesAndAlertsInOneCommit) {
  expect_status(set_policies("acme/research",
                             [](ledger::BudgetSettings& settings) {
                               settings.breaker_given = true;
                               settings.breaker = ledger::BreakerSettings{minute, std::nullopt, 3};
                             }),
                200);
  struct Published {
    std::mutex mutex;
    std::vector<std::vector<std::string>> batches;  // kinds per committed batch
  };
  auto published = std::make_shared<Published>();
  const uint64_t subscription = events_.subscribe([published](const engine::EntryBatch& batch) {
    std::vector<std::string> kinds;
    for (const Entry& entry : *batch)
      kinds.push_back(entry.kind);
    std::lock_guard lock(published->mutex);
    published->batches.push_back(std::move(kinds));
  });
  for (int i = 0; i < 3; ++i) {
    expect_status(spend("acme/research/agent", cents(10), "hold_b" + std::to_string(i)), 201);
    advance(second);
  }
  const int64_t before = budget("acme").head_seq;
  const boost::json::object tripped =
      expect_status(spend("acme/research/agent", cents(10), "hold_b3"), 402);
  EXPECT_EQ(tripped.at("error").at("code").as_string(), "breaker_tripped");
  EXPECT_EQ(tripped.at("error").at("budget").as_string(), "acme/research");
  EXPECT_EQ(tripped.at("error").at("seq").as_int64(), before + 1);
  const BudgetNode research = budget("acme/research");
  EXPECT_TRUE(research.frozen);
  EXPECT_EQ(research.frozen_reason, "breaker: 4 spends in 1m (max 3)");
  const std::vector<Entry> entries = all_entries("acme");
  ASSERT_EQ(entries.size(), static_cast<size_t>(before + 2));
  const Entry& deny = entries[static_cast<size_t>(before)];
  const Entry& frozen = entries[static_cast<size_t>(before + 1)];
  EXPECT_EQ(deny.kind, "deny");
  EXPECT_EQ(deny.code, "breaker_tripped");
  EXPECT_EQ(frozen.kind, "freeze");
  EXPECT_EQ(frozen.budget, "acme/research");
  EXPECT_EQ(frozen.actor, "system");
  EXPECT_EQ(frozen.ts, deny.ts);
  EXPECT_EQ(boost::json::parse(frozen.detail_json).at("trigger").as_string(), "breaker");
  // Frozen from then on, even once the minute has passed.
  advance(2 * minute);
  const boost::json::object after =
      expect_status(spend("acme/research/agent", cents(10), "hold_b4"), 402);
  EXPECT_EQ(after.at("error").at("code").as_string(), "frozen");
  EXPECT_EQ(budget("acme").spent, cents(30));
  // Unfreezing re-arms the breaker from zero: three more spends pass, the fourth trips again.
  expect_status(unfreeze("acme/research"), 200);
  for (int i = 5; i < 8; ++i)
    expect_status(spend("acme/research/agent", cents(10), "hold_b" + std::to_string(i)), 201);
  expect_status(spend("acme/research/agent", cents(10), "hold_b8"), 402);
  EXPECT_TRUE(budget("acme/research").frozen);
  EXPECT_TRUE(verify("acme").ok);
  events_.unsubscribe(subscription);
  // The denial and the freeze were published together: one commit.
  std::lock_guard lock(published->mutex);
  bool together = false;
  for (const auto& batch : published->batches)
    together = together || batch == std::vector<std::string>{"deny", "freeze"};
  EXPECT_TRUE(together);
}

TEST_P(StoreConformanceWithTree, OneBatchTripsTheBreakerOnceAndAdmitsNothingAfter) {
  expect_status(set_policies("acme",
                             [](ledger::BudgetSettings& settings) {
                               settings.breaker_given = true;
                               settings.breaker = ledger::BreakerSettings{hour, units(2), 100};
                             }),
                200);
  const int64_t before = budget("acme").head_seq;
  // Thirty 0.10 spends queued at once, decided in order in one or a few batches.
  std::vector<std::shared_ptr<std::promise<Outcome>>> answers;
  for (int i = 0; i < 30; ++i) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    answers.push_back(promise);
    sequencer_->submit(spend("acme/research/agent", cents(10), "hold_q" + std::to_string(i)),
                       [promise](Outcome outcome) { promise->set_value(std::move(outcome)); });
  }
  std::vector<int> statuses;
  for (auto& answer : answers)
    statuses.push_back(answer->get_future().get()->rendered.status);
  EXPECT_EQ(std::count(statuses.begin(), statuses.begin() + 20, 201), 20);
  EXPECT_EQ(std::count(statuses.begin() + 20, statuses.end(), 402), 10);
  EXPECT_EQ(kinds_after(all_entries("acme"), before).at(20), "deny");
  EXPECT_EQ(kinds_after(all_entries("acme"), before).at(21), "freeze");
  EXPECT_EQ(budget("acme").spent, units(2));
  EXPECT_TRUE(budget("acme").frozen);
}

// ---- The kill switch (freeze with void_holds) and governance entries ---------------------------

Command freeze_voiding(const std::string& path, const std::string& reason) {
  Command command = freeze(path, reason);
  command.void_holds = true;
  return command;
}

// Submits every command at once (so that they share batches) and waits for every answer.
std::vector<Outcome> submit_all(engine::Sequencer& sequencer, std::vector<Command> commands) {
  std::vector<std::shared_ptr<std::promise<Outcome>>> promises;
  for (Command& command : commands) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    promises.push_back(promise);
    sequencer.submit(std::move(command),
                     [promise](Outcome outcome) { promise->set_value(std::move(outcome)); });
  }
  std::vector<Outcome> out;
  for (auto& promise : promises)
    out.push_back(promise->get_future().get());
  return out;
}

TEST_P(StoreConformanceWithTree, FreezeWithVoidHoldsVoidsTheSubtreeInOneCommit) {
  expect_status(set_budget("acme/research/other", std::nullopt), 201);
  expect_status(set_budget("acme/sales", std::nullopt), 201);
  expect_status(hold("acme/research", units(1), "hold_k1", 600 * second), 201);
  expect_status(hold("acme/research/agent", units(2), "hold_k2", 600 * second), 201);
  expect_status(hold("acme/research/other", units(3), "hold_k3", 30 * second), 201);
  expect_status(hold("acme/sales", units(4), "hold_k4", 600 * second), 201);  // outside
  expect_status(hold("acme/research/agent", units(1), "hold_k5", 600 * second), 201);
  expect_status(capture("acme/research/agent", "hold_k5", cents(50)), 200);  // already settled
  advance(31 * second);  // hold_k3 is past its expiry, not yet swept
  EXPECT_EQ(budget("acme").reserved, units(10));

  auto published = std::make_shared<std::pair<std::mutex, std::vector<size_t>>>();
  const uint64_t subscription = events_.subscribe([published](const engine::EntryBatch& batch) {
    std::lock_guard lock(published->first);
    published->second.push_back(batch->size());
  });
  const int64_t before = budget("acme").head_seq;
  const boost::json::object answer =
      expect_status(freeze_voiding("acme/research", "incident 7"), 200);
  EXPECT_TRUE(answer.at("frozen").as_bool());
  EXPECT_EQ(answer.at("holds_voided").as_int64(), 2);
  EXPECT_EQ(answer.at("holds_expired").as_int64(), 1);
  EXPECT_EQ(answer.at("holds_remaining").as_int64(), 0);
  EXPECT_EQ(hold_row("hold_k1").status, HoldStatus::voided);
  EXPECT_EQ(hold_row("hold_k2").status, HoldStatus::voided);
  EXPECT_EQ(hold_row("hold_k3").status, HoldStatus::expired);  // conservative: captured
  EXPECT_EQ(hold_row("hold_k3").captured, units(3));
  EXPECT_EQ(hold_row("hold_k4").status, HoldStatus::held);
  EXPECT_EQ(hold_row("hold_k5").status, HoldStatus::captured);
  EXPECT_EQ(budget("acme/research").reserved, Money::zero());
  EXPECT_EQ(budget("acme/research/agent").reserved, Money::zero());
  EXPECT_EQ(budget("acme/research/other").reserved, Money::zero());
  EXPECT_EQ(budget("acme").reserved, units(4));
  EXPECT_EQ(budget("acme").spent, cents(350));

  const std::vector<Entry> entries = all_entries("acme");
  ASSERT_EQ(entries.size(), static_cast<size_t>(before + 4));
  EXPECT_EQ(entries[static_cast<size_t>(before)].kind, "freeze");
  EXPECT_EQ(boost::json::parse(entries[static_cast<size_t>(before)].detail_json)
                .at("void_holds")
                .as_bool(),
            true);
  std::multiset<std::string> settled;
  for (size_t i = static_cast<size_t>(before) + 1; i < entries.size(); ++i) {
    settled.insert(entries[i].kind + ":" + entries[i].hold_id);
    if (entries[i].kind == "void") {
      EXPECT_EQ(entries[i].actor, "admin");
      EXPECT_EQ(boost::json::parse(entries[i].detail_json).at("frozen").as_string(),
                "acme/research");
    }
  }
  EXPECT_EQ(settled,
            (std::multiset<std::string>{"void:hold_k1", "void:hold_k2", "expire:hold_k3"}));
  // Frozen: no new hold below it; a capture of the voided hold is a conflict.
  expect_status(hold("acme/research/agent", units(1), "hold_k6", 600 * second), 402);
  expect_error(capture("acme/research/agent", "hold_k2"), "hold_not_held");
  // The committer publishes a batch before it takes the next, so by now the freeze's is out.
  events_.unsubscribe(subscription);
  {
    std::lock_guard lock(published->first);
    ASSERT_FALSE(published->second.empty());
    EXPECT_EQ(published->second.front(), 4u);  // the freeze and its voids: one commit
  }
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, VoidingABusyFleetSplitsUnderTheRowBound) {
  // More open holds than one commit may void: a share per commit, the rest by void_holds.
  constexpr int holds_count = 1'100;
  std::vector<Command> holds;
  for (int i = 0; i < holds_count; ++i) {
    holds.push_back(hold(i % 2 == 0 ? "acme/research/agent" : "acme/research", cents(1),
                         "hold_m" + std::to_string(10'000 + i), 3'600 * second));
  }
  for (const Outcome& outcome : submit_all(*sequencer_, std::move(holds)))
    ASSERT_TRUE(outcome.ok() && outcome->rendered.status == 201);
  EXPECT_EQ(budget("acme").reserved, cents(holds_count));

  int64_t head = budget("acme").head_seq;
  const boost::json::object first = expect_status(freeze_voiding("acme", "fleet stop"), 200);
  int64_t voided = first.at("holds_voided").as_int64();
  int64_t remaining = first.at("holds_remaining").as_int64();
  EXPECT_GT(voided, 0);
  EXPECT_GT(remaining, 0);
  EXPECT_LE(budget("acme").head_seq - head,
            static_cast<int64_t>(ledger::void_rows_per_command_max));
  int commits = 1;
  while (remaining > 0 && commits < 10) {
    head = budget("acme").head_seq;
    const boost::json::object next =
        expect_status(command_for(CommandKind::void_holds, "acme"), 200);
    voided += next.at("holds_voided").as_int64();
    remaining = next.at("holds_remaining").as_int64();
    EXPECT_LE(budget("acme").head_seq - head,
              static_cast<int64_t>(ledger::void_rows_per_command_max));
    ++commits;
  }
  EXPECT_EQ(remaining, 0);
  EXPECT_EQ(voided, holds_count);
  EXPECT_GE(commits, 2);
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  EXPECT_EQ(budget("acme/research").reserved, Money::zero());
  EXPECT_EQ(budget("acme/research/agent").reserved, Money::zero());
  // Nothing left: one more share voids nothing.
  const boost::json::object idle = expect_status(command_for(CommandKind::void_holds, "acme"), 200);
  EXPECT_EQ(idle.at("holds_voided").as_int64(), 0);
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, VoidHoldsNeedsAFrozenNode) {
  expect_status(hold("acme/research", units(1), "hold_n1", 600 * second), 201);
  expect_error(command_for(CommandKind::void_holds, "acme/research"), "not_frozen");
  EXPECT_EQ(hold_row("hold_n1").status, HoldStatus::held);
  // A plain freeze leaves holds alone (they may still be captured or voided).
  expect_status(freeze("acme/research", "pause"), 200);
  EXPECT_EQ(hold_row("hold_n1").status, HoldStatus::held);
  expect_status(capture("acme/research", "hold_n1", cents(20)), 200);
}

TEST_P(StoreConformanceWithTree, GovernanceActionsAreChainedWithTheirActor) {
  const int64_t before = budget("acme").head_seq;
  expect_status(set_approval_above("acme/research", units(2)), 200);
  expect_status(freeze_voiding("acme/research", "audit"), 200);
  expect_status(unfreeze("acme/research"), 200);
  expect_status(create_key("acme/research", "key_g1", "bot"), 201);
  expect_status(revoke_key("acme", "key_g1"), 200);
  std::vector<std::pair<std::string, std::string>> seen;
  for (const Entry& entry : all_entries("acme")) {
    if (entry.seq > before)
      seen.emplace_back(entry.kind, entry.actor);
  }
  EXPECT_EQ(seen, (std::vector<std::pair<std::string, std::string>>{{"budget_set", "admin"},
                                                                    {"freeze", "admin"},
                                                                    {"unfreeze", "admin"},
                                                                    {"key_created", "admin"},
                                                                    {"key_revoked", "admin"}}));
  const Entry set = all_entries("acme").at(static_cast<size_t>(before));
  EXPECT_EQ(boost::json::parse(set.detail_json).at("policies").at("approval_above").as_string(),
            "2.00");
  EXPECT_TRUE(verify("acme").ok);
}

// ---- Soft thresholds and approvals ------------------------------------------------------------

std::vector<int> alerts_of(const std::vector<Entry>& entries, const std::string& budget,
                           int64_t after_seq = 0) {
  std::vector<int> out;
  for (const Entry& entry : entries) {
    if (entry.kind == "alert" && entry.budget == budget && entry.seq > after_seq) {
      const auto detail = boost::json::parse(entry.detail_json);
      EXPECT_EQ(detail.at("event").as_string(), "threshold_crossed");
      EXPECT_EQ(entry.actor, "system");
      EXPECT_TRUE(entry.postings.empty());
      out.push_back(static_cast<int>(detail.at("percent").as_int64()));
    }
  }
  return out;
}

TEST_P(StoreConformanceWithTree, ThresholdAlertsOncePerDayAndAgainAfterUtcMidnight) {
  // research: 40.00 a day, at most 5.00 a spend; default thresholds 50 / 80 / 100 %.
  const auto spend_units = [&](int count, const std::string& tag) {
    for (int i = 0; i < count; ++i) {
      expect_status(spend("acme/research/agent", units(4), "hold_" + tag + std::to_string(i)), 201);
    }
  };
  spend_units(4, "a");  // 16.00: 40 %
  EXPECT_TRUE(alerts_of(all_entries("acme"), "acme/research").empty());
  expect_status(spend("acme/research/agent", units(4), "hold_a4"), 201);  // exactly 50 %
  EXPECT_EQ(alerts_of(all_entries("acme"), "acme/research"), (std::vector<int>{50}));
  spend_units(2, "b");  // 28.00: 70 %, nothing new
  EXPECT_EQ(alerts_of(all_entries("acme"), "acme/research"), (std::vector<int>{50}));
  // A hold counts too: 28 + 5 = 33.00 is past 80 %.
  expect_status(hold("acme/research/agent", units(5), "hold_b9", 3'600 * second), 201);
  EXPECT_EQ(alerts_of(all_entries("acme"), "acme/research"), (std::vector<int>{50, 80}));
  expect_status(void_hold("acme/research/agent", "hold_b9"), 200);
  expect_status(spend("acme/research/agent", units(4), "hold_b10"), 201);  // 32.00: 80 % again
  EXPECT_EQ(alerts_of(all_entries("acme"), "acme/research"), (std::vector<int>{50, 80}));
  spend_units(2, "c");  // 40.00: 100 %
  EXPECT_EQ(alerts_of(all_entries("acme"), "acme/research"), (std::vector<int>{50, 80, 100}));
  EXPECT_EQ(budget("acme/research").usage.alerted_percent, 100);

  // The day rolls over at UTC midnight: not a microsecond earlier.
  const Micros midnight = ledger::period_start(ledger::Period::day, t0) + 86'400 * second;
  clock_ = midnight - 1;
  expect_status(spend("acme/research/agent", units(1), "hold_d0"), 402);
  const int64_t before = budget("acme").head_seq;
  clock_ = midnight;
  spend_units(5, "d");  // 20.00 of the new day's 40.00
  EXPECT_EQ(alerts_of(all_entries("acme"), "acme/research", before), (std::vector<int>{50}));
  // acme (100.00 a month) never reached 50 %: 40.00 on February 29, and this midnight also
  // started March.
  EXPECT_TRUE(alerts_of(all_entries("acme"), "acme").empty());
  EXPECT_EQ(budget("acme").spent, units(20));
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformance, ThresholdsRollOverWithWeeksAndMonthsAndCanBeChosen) {
  // t0 is Thursday 2024-02-29 12:00 UTC: the month ends in 12 hours, the week on Monday.
  expect_status(set_budget("org", std::nullopt), 201);
  expect_status(set_budget("org/weekly", units(10), ledger::Period::week), 201);
  expect_status(set_budget("org/monthly", units(10), ledger::Period::month), 201);
  expect_status(set_policies("org/custom",
                             [](ledger::BudgetSettings& settings) {
                               settings.limit_given = true;
                               settings.limit = units(10);
                               settings.thresholds_given = true;
                               settings.thresholds = std::vector<int>{25};
                             }),
                201);
  expect_status(set_policies("org/silent",
                             [](ledger::BudgetSettings& settings) {
                               settings.limit_given = true;
                               settings.limit = units(10);
                               settings.thresholds_given = true;
                               settings.thresholds = std::vector<int>{};
                             }),
                201);
  for (const char* node : {"org/weekly", "org/monthly", "org/custom", "org/silent"})
    expect_status(spend(node, units(6), std::string("hold_1") + node), 201);
  const std::vector<Entry> first = all_entries("org");
  EXPECT_EQ(alerts_of(first, "org/weekly"), (std::vector<int>{50}));
  EXPECT_EQ(alerts_of(first, "org/monthly"), (std::vector<int>{50}));
  EXPECT_EQ(alerts_of(first, "org/custom"), (std::vector<int>{25}));
  EXPECT_TRUE(alerts_of(first, "org/silent").empty());

  // 2024-03-01 00:00: a new month, the same week.
  const Micros march = ledger::period_start(ledger::Period::month, t0 + 86'400 * second);
  ASSERT_EQ(march, t0 + 12 * 3'600 * second);
  clock_ = march;
  int64_t before = budget("org").head_seq;
  expect_status(spend("org/weekly", units(1), "hold_w2"), 201);
  expect_status(spend("org/monthly", units(5), "hold_m2"), 201);
  EXPECT_TRUE(alerts_of(all_entries("org"), "org/weekly", before).empty());
  EXPECT_EQ(alerts_of(all_entries("org"), "org/monthly", before), (std::vector<int>{50}));

  // Monday 2024-03-04 00:00: a new week.
  const Micros monday = ledger::period_start(ledger::Period::week, t0) + 7 * 86'400 * second;
  clock_ = monday - 1;
  before = budget("org").head_seq;
  expect_status(spend("org/weekly", units(1), "hold_w3"), 201);  // 8.00: 80 %
  EXPECT_EQ(alerts_of(all_entries("org"), "org/weekly", before), (std::vector<int>{80}));
  clock_ = monday;
  before = budget("org").head_seq;
  expect_status(spend("org/weekly", units(5), "hold_w4"), 201);
  EXPECT_EQ(alerts_of(all_entries("org"), "org/weekly", before), (std::vector<int>{50}));

  // A lower limit can put what is already used past a threshold: the change alerts too.
  before = budget("org").head_seq;
  expect_status(set_budget("org/weekly", units(6), ledger::Period::week), 200);
  EXPECT_EQ(alerts_of(all_entries("org"), "org/weekly", before), (std::vector<int>{80}));
  EXPECT_TRUE(verify("org").ok);
}

Command approval(CommandKind kind, const std::string& path, const std::string& hold_id) {
  Command command = command_for(kind, path);
  command.hold_id = hold_id;
  command.reason = "looked fine";
  return command;
}

TEST_P(StoreConformanceWithTree, HoldAboveTheApprovalThresholdWaitsReservedUntilApproved) {
  expect_status(set_approval_above("acme/research", units(2)), 200);
  // Exactly the threshold needs no approval; above it waits, with its amount reserved.
  expect_status(hold("acme/research/agent", units(2), "hold_p0", 600 * second), 201);
  const boost::json::object pending =
      expect_status(hold("acme/research/agent", units(3), "hold_p1", 600 * second), 202);
  EXPECT_EQ(pending.at("status").as_string(), "pending_approval");
  EXPECT_EQ(pending.at("approval_level").as_string(), "acme/research");
  EXPECT_EQ(hold_row("hold_p1").status, HoldStatus::pending_approval);
  EXPECT_EQ(budget("acme/research").reserved, units(5));
  EXPECT_EQ(budget("acme").reserved, units(5));
  const Entry requested = all_entries("acme").back();
  EXPECT_EQ(requested.kind, "hold");
  EXPECT_EQ(boost::json::parse(requested.detail_json).at("status").as_string(), "pending_approval");
  // A one-shot spend above the threshold is refused with a hint.
  const boost::json::object spend_refused =
      expect_status(spend("acme/research/agent", units(3), "hold_p2"), 402);
  EXPECT_EQ(spend_refused.at("error").at("code").as_string(), "approval_required");
  EXPECT_FALSE(spend_refused.at("error").at("hint").as_string().empty());
  // Waiting requests are listed; the agent cannot capture one yet.
  const std::vector<Hold> listed = store_->list_pending_approvals("acme", 10).value();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].id, "hold_p1");
  expect_error(capture("acme/research/agent", "hold_p1"), "hold_not_held");

  advance(120 * second);
  const boost::json::object approved =
      expect_status(approval(CommandKind::approve, "acme/research/agent", "hold_p1"), 200);
  EXPECT_EQ(approved.at("status").as_string(), "held");
  const Hold row = hold_row("hold_p1");
  EXPECT_EQ(row.status, HoldStatus::held);
  EXPECT_EQ(row.expires_at, now() + 600 * second);        // its ttl runs from the approval
  EXPECT_EQ(budget("acme/research").reserved, units(5));  // approving moves no money
  const Entry decided = all_entries("acme").back();
  EXPECT_EQ(decided.kind, "approve");
  EXPECT_EQ(decided.actor, "admin");
  EXPECT_TRUE(decided.postings.empty());
  EXPECT_TRUE(store_->list_pending_approvals("acme", 10).value().empty());
  expect_error(approval(CommandKind::approve, "acme/research/agent", "hold_p1"),
               "hold_not_pending");
  expect_status(capture("acme/research/agent", "hold_p1", units(2)), 200);
  EXPECT_EQ(budget("acme/research").spent, units(2));
  EXPECT_EQ(budget("acme/research").reserved, units(2));
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, RejectedWithdrawnAndUnansweredApprovalsReleaseTheirAmount) {
  expect_status(set_approval_above("acme", units(1)), 200);
  expect_status(hold("acme/research", units(4), "hold_r1", 600 * second), 202);
  expect_status(hold("acme/research", units(4), "hold_r2", 600 * second), 202);
  expect_status(hold("acme/research", units(4), "hold_r3", 60 * second), 202);
  EXPECT_EQ(budget("acme").reserved, units(12));

  const boost::json::object rejected =
      expect_status(approval(CommandKind::reject_hold, "acme/research", "hold_r1"), 200);
  EXPECT_EQ(rejected.at("status").as_string(), "rejected");
  EXPECT_EQ(all_entries("acme").back().kind, "reject");
  EXPECT_EQ(all_entries("acme").back().actor, "admin");
  // The agent withdraws its own request.
  expect_status(void_hold("acme/research", "hold_r2"), 200);
  EXPECT_EQ(hold_row("hold_r2").status, HoldStatus::voided);
  EXPECT_EQ(budget("acme").reserved, units(4));

  // Nobody answers hold_r3: it lapses as rejected exactly at its deadline.
  clock_ = t0 + 60 * second - 1;
  EXPECT_EQ(hold_row("hold_r3").status_at(now()), HoldStatus::pending_approval);
  EXPECT_TRUE(store_->list_expired_holds(now(), 10).value().empty());
  clock_ = t0 + 60 * second;
  EXPECT_EQ(hold_row("hold_r3").status_at(now()), HoldStatus::rejected);
  const std::vector<Hold> due = store_->list_expired_holds(now(), 10).value();
  ASSERT_EQ(due.size(), 1u);
  expect_status(expire(due[0]), 200);
  const Hold lapsed = hold_row("hold_r3");
  EXPECT_EQ(lapsed.status, HoldStatus::rejected);
  EXPECT_EQ(lapsed.captured, Money::zero());
  const Entry entry = all_entries("acme").back();
  EXPECT_EQ(entry.kind, "reject");
  EXPECT_EQ(entry.actor, "system");
  EXPECT_EQ(boost::json::parse(entry.detail_json).at("reason").as_string(), "approval expired");
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  EXPECT_EQ(budget("acme").spent, Money::zero());
  expect_error(approval(CommandKind::approve, "acme/research", "hold_r3"), "hold_not_pending");
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, LateApprovalLapsesAndFrozenPathsCannotBeApproved) {
  expect_status(set_approval_above("acme", units(1)), 200);
  expect_status(hold("acme/research", units(2), "hold_l1", 60 * second), 202);
  expect_status(hold("acme/research", units(2), "hold_l2", 600 * second), 202);
  // An approval that arrives after the deadline meets the lapse first (recorded) and fails.
  advance(60 * second);
  expect_error(approval(CommandKind::approve, "acme/research", "hold_l1"), "hold_not_pending");
  EXPECT_EQ(hold_row("hold_l1").status, HoldStatus::rejected);
  EXPECT_EQ(budget("acme").reserved, units(2));
  expect_status(freeze("acme/research", "investigating"), 200);
  expect_error(approval(CommandKind::approve, "acme/research", "hold_l2"), "budget_frozen");
  EXPECT_EQ(hold_row("hold_l2").status, HoldStatus::pending_approval);
  // The kill switch voids requests still waiting, too.
  const boost::json::object frozen = expect_status(freeze_voiding("acme", "stop"), 200);
  EXPECT_EQ(frozen.at("holds_voided").as_int64(), 1);
  EXPECT_EQ(hold_row("hold_l2").status, HoldStatus::voided);
  EXPECT_EQ(budget("acme").reserved, Money::zero());
}

// ---- Webhooks: configuration (chained) and the delivery log -----------------------------------

Command put_webhook(const std::string& root, const std::string& name,
                    std::optional<std::string> url, std::optional<std::string> secret,
                    std::optional<std::vector<std::string>> events) {
  Command command = command_for(CommandKind::set_webhook, root);
  command.webhook.name = name;
  command.webhook.url = std::move(url);
  command.webhook.secret = std::move(secret);
  command.webhook.events = std::move(events);
  return command;
}

TEST_P(StoreConformanceWithTree, WebhookChangesAreChainedAndStored) {
  const int64_t head = budget("acme").head_seq;
  const boost::json::object created =
      expect_status(put_webhook("acme", "ops", "http://127.0.0.1:9/hook", "0123456789abcdef",
                                std::vector<std::string>{"frozen", "unfrozen"}),
                    201);
  EXPECT_EQ(created.at("since_seq").as_int64(), head + 1);
  EXPECT_FALSE(created.contains("secret"));
  auto stored = store_->get_webhook("ops").value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->root, "acme");
  EXPECT_EQ(stored->secret, "0123456789abcdef");
  EXPECT_EQ(stored->events, (std::vector<std::string>{"frozen", "unfrozen"}));
  EXPECT_EQ(stored->since_seq, head + 1);
  // Creating needs url, secret and events; another root cannot take the name.
  expect_error(put_webhook("acme", "half", "http://127.0.0.1:9/", std::nullopt, std::nullopt),
               "missing_field");
  expect_status(set_budget("zeta", std::nullopt), 201);
  expect_error(put_webhook("zeta", "ops", "http://x.example/", "0123456789abcdef",
                           std::vector<std::string>{"frozen"}),
               "webhook_root_mismatch");
  // An update keeps what it does not name.
  expect_status(put_webhook("acme", "ops", "http://127.0.0.1:10/hook", std::nullopt, std::nullopt),
                200);
  stored = store_->get_webhook("ops").value();
  EXPECT_EQ(stored->url, "http://127.0.0.1:10/hook");
  EXPECT_EQ(stored->secret, "0123456789abcdef");
  EXPECT_EQ(stored->since_seq, head + 1);
  EXPECT_EQ(store_->list_webhooks().value().size(), 1u);

  Command removal = command_for(CommandKind::delete_webhook, "acme");
  removal.webhook.name = "ops";
  expect_status(removal, 200);
  EXPECT_FALSE(store_->get_webhook("ops").value().has_value());
  expect_error(removal, "webhook_not_found");
  // Every change is an entry by its actor; the secret is never in the books.
  std::vector<std::string> kinds;
  for (const Entry& entry : all_entries("acme")) {
    EXPECT_EQ(entry.detail_json.find("0123456789abcdef"), std::string::npos);
    if (entry.seq > head) {
      kinds.push_back(entry.kind);
      EXPECT_EQ(entry.actor, "admin");
    }
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"webhook_set", "webhook_set", "webhook_deleted"}));
  EXPECT_TRUE(verify("acme").ok);
}

// ---- Vendors: the proxy's upstreams (chained, credential sealed by the edge) ------------------

Command put_vendor(const std::string& root, const std::string& name, std::string patch,
                   std::optional<std::string> credential) {
  Command command = command_for(CommandKind::set_vendor, root);
  command.vendor_settings.name = name;
  command.vendor_settings.settings_patch_json = std::move(patch);
  command.vendor_settings.credential = std::move(credential);
  return command;
}

TEST_P(StoreConformanceWithTree, VendorChangesAreChainedAndStored) {
  const int64_t head = budget("acme").head_seq;
  const std::string sealed = "v1:c2VhbGVkLWNyZWRlbnRpYWw=";
  const boost::json::object created =
      expect_status(put_vendor("acme", "openai",
                               R"({"base_url":"https://api.example/v1","kind":"openai"})", sealed),
                    201);
  EXPECT_FALSE(created.contains("credential"));
  EXPECT_TRUE(created.at("credential_set").as_bool());
  auto stored = store_->get_vendor("openai").value();
  ASSERT_TRUE(stored.has_value());
  EXPECT_EQ(stored->root, "acme");
  EXPECT_EQ(stored->credential, sealed);
  EXPECT_EQ(stored->settings_json, R"({"base_url":"https://api.example/v1","kind":"openai"})");
  // Creating needs kind, base_url and a credential; another root cannot take the name.
  expect_error(put_vendor("acme", "half", R"({"kind":"generic"})", sealed), "missing_field");
  expect_error(
      put_vendor("acme", "half", R"({"base_url":"https://x","kind":"generic"})", std::nullopt),
      "missing_field");
  expect_status(set_budget("zeta", std::nullopt), 201);
  expect_error(put_vendor("zeta", "openai", R"({"base_url":"https://x","kind":"openai"})", sealed),
               "vendor_root_mismatch");
  // An update merges what it names over the rest; null removes a setting.
  expect_status(put_vendor("acme", "openai",
                           R"({"credential_header":"X-Key","kind":null,)"
                           R"("timeouts":{"idle_ms":5}})",
                           std::nullopt),
                200);
  stored = store_->get_vendor("openai").value();
  EXPECT_EQ(stored->credential, sealed);
  EXPECT_EQ(stored->settings_json,
            R"({"base_url":"https://api.example/v1","credential_header":"X-Key",)"
            R"("timeouts":{"idle_ms":5}})");
  EXPECT_EQ(store_->list_vendors().value().size(), 1u);

  Command removal = command_for(CommandKind::delete_vendor, "acme");
  removal.vendor_settings.name = "openai";
  expect_status(removal, 200);
  EXPECT_FALSE(store_->get_vendor("openai").value().has_value());
  expect_error(removal, "vendor_not_found");
  // Every change is an entry by its actor; the credential, even sealed, is never in the books.
  std::vector<std::string> kinds;
  for (const Entry& entry : all_entries("acme")) {
    EXPECT_EQ(entry.detail_json.find(sealed), std::string::npos);
    if (entry.seq > head) {
      kinds.push_back(entry.kind);
      EXPECT_EQ(entry.actor, "admin");
    }
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"vendor_set", "vendor_set", "vendor_deleted"}));
  EXPECT_TRUE(verify("acme").ok);
}

WebhookDelivery delivery_for(const std::string& webhook, int64_t seq, Micros at) {
  WebhookDelivery delivery;
  delivery.webhook = webhook;
  delivery.event_id = "evt_acme_" + std::to_string(seq) + "_frozen";
  delivery.root = "acme";
  delivery.seq = seq;
  delivery.event = "frozen";
  delivery.payload = R"({"id":")" + delivery.event_id + R"("})";
  delivery.next_attempt_at = at;
  delivery.created_at = at;
  return delivery;
}

TEST_P(StoreConformanceWithTree, DeliveryLogLeasesCursorsAndOutcomes) {
  expect_status(put_webhook("acme", "ops", "http://127.0.0.1:9/hook", "0123456789abcdef",
                            std::vector<std::string>{"frozen"}),
                201);
  const ledger::Webhook webhook = *store_->get_webhook("ops").value();
  // The first claim starts the cursor just before the webhook's own entry.
  auto first = store_->claim_webhook(webhook, "a", now(), now() + 30 * second);
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ(**first, webhook.since_seq - 1);
  // Another instance cannot take it while the lease runs, but can once it ran out.
  EXPECT_FALSE(store_->claim_webhook(webhook, "b", now(), now() + 30 * second)->has_value());
  ASSERT_TRUE(store_
                  ->enqueue_deliveries("ops", "a", webhook.since_seq + 1,
                                       {delivery_for("ops", webhook.since_seq + 1, now())})
                  .ok());
  // A second enqueue of the same event keeps the first record; a stale owner moves nothing.
  ASSERT_TRUE(store_
                  ->enqueue_deliveries("ops", "b", webhook.since_seq + 5,
                                       {delivery_for("ops", webhook.since_seq + 5, now())})
                  .ok());
  auto renewed = store_->claim_webhook(webhook, "a", now(), now() + 30 * second);
  EXPECT_EQ(renewed->value(), webhook.since_seq + 1);
  EXPECT_EQ(store_->list_deliveries("ops", 10).value().size(), 1u);

  std::vector<WebhookDelivery> due = store_->due_deliveries("ops", now(), 10).value();
  ASSERT_EQ(due.size(), 1u);
  WebhookDelivery attempt = due[0];
  attempt.attempts = 1;
  attempt.last_status = 500;
  attempt.last_error = "HTTP 500";
  attempt.next_attempt_at = now() + second;
  ASSERT_TRUE(store_->record_delivery(attempt).ok());
  EXPECT_TRUE(store_->due_deliveries("ops", now(), 10).value().empty());
  due = store_->due_deliveries("ops", now() + second, 10).value();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].attempts, 1);
  EXPECT_EQ(due[0].last_status, 500);
  due[0].attempts = 2;
  due[0].status = "succeeded";
  due[0].last_status = 200;
  due[0].last_error.clear();
  due[0].delivered_at = now() + second;
  ASSERT_TRUE(store_->record_delivery(due[0]).ok());
  EXPECT_TRUE(store_->due_deliveries("ops", now() + hour, 10).value().empty());
  const std::vector<WebhookDelivery> log = store_->list_deliveries("ops", 10).value();
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].status, "succeeded");
  EXPECT_EQ(log[0].payload, delivery_for("ops", webhook.since_seq + 1, now()).payload);

  advance(31 * second);
  auto taken = store_->claim_webhook(webhook, "b", now(), now() + 30 * second);
  EXPECT_EQ(taken->value(), webhook.since_seq + 1);
  // Deleted and created again under its name: it starts over at its new since_seq.
  Command removal = command_for(CommandKind::delete_webhook, "acme");
  removal.webhook.name = "ops";
  expect_status(removal, 200);
  expect_status(put_webhook("acme", "ops", "http://127.0.0.1:9/hook", "0123456789abcdef",
                            std::vector<std::string>{"frozen"}),
                201);
  const ledger::Webhook again = *store_->get_webhook("ops").value();
  EXPECT_GT(again.since_seq, webhook.since_seq);
  EXPECT_EQ(store_->claim_webhook(again, "b", now(), now() + 30 * second)->value(),
            again.since_seq - 1);
}

// ---- Vendor limits (issue 16) ------------------------------------------------------------------

ledger::Command set_vendor_limits(const std::string& path, std::vector<ledger::VendorLimit> rules) {
  return set_policies(
      path, [&rules](ledger::BudgetSettings& settings) { settings.vendor_limits = rules; });
}

ledger::VendorLimit vendor_limit(std::vector<std::string> vendors, Money limit,
                                 std::optional<ledger::Period> period, Micros window = 0) {
  return ledger::VendorLimit{std::move(vendors), limit, period, window};
}

ledger::Command vendor_hold(const std::string& path, Money amount, const std::string& id,
                            const std::string& vendor, Micros ttl = 600 * second) {
  ledger::Command command = hold(path, amount, id, ttl);
  command.vendor = vendor;
  return command;
}

// Each vendor rule of `node` as the budget state shows it ({vendors, limit, period|window,
// used, available}).
boost::json::array shown_vendor_limits(const BudgetNode& node, Micros now) {
  BudgetNode alone = node;
  alone.parent.clear();
  const std::vector<const BudgetNode*> view{&alone};
  return http::budget_to_json(alone, view, now).at("vendor_limits").as_array();
}

TEST_P(StoreConformanceWithTree, VendorLimitCapsTheWholeSubtreeAndNamesTheRule) {
  // acme: at most 10.00 a month on Twilio across every agent, whoever pays.
  const boost::json::object set = expect_status(
      set_vendor_limits("acme",
                        {vendor_limit({"api.twilio.com"}, units(10), ledger::Period::month)}),
      200);
  EXPECT_EQ(set.at("vendor_limits").at(0).at("used").as_string(), "0.00");
  expect_status(set_budget("acme/sales", std::nullopt), 201);
  expect_status(spend("acme/research/agent", units(4), "hold_t1", "api.twilio.com"), 201);
  expect_status(vendor_hold("acme/sales", units(5), "hold_t2", "API.Twilio.com"), 201);
  // 9.00 of 10.00 used (a hold counts at its held amount); another vendor is not counted.
  expect_status(spend("acme/research/agent", units(5), "hold_o1", "api.openai.com"), 201);
  const boost::json::object denied =
      expect_status(spend("acme/sales", cents(101), "hold_t3", "api.twilio.com"), 402);
  const auto& error = denied.at("error").as_object();
  EXPECT_EQ(error.at("code").as_string(), "vendor_limit_exceeded");
  EXPECT_EQ(error.at("budget").as_string(), "acme");
  EXPECT_EQ(error.at("available").as_string(), "1.00");
  EXPECT_EQ(error.at("vendor_limit").at("vendors").at(0).as_string(), "api.twilio.com");
  EXPECT_EQ(error.at("vendor_limit").at("period").as_string(), "month");
  EXPECT_EQ(error.at("vendor_limit").at("index").as_int64(), 0);
  EXPECT_NE(std::string(error.at("message").as_string()).find("10.00 per month on api.twilio.com"),
            std::string::npos);
  const Entry deny_entry = all_entries("acme").back();
  EXPECT_EQ(deny_entry.code, "vendor_limit_exceeded");
  EXPECT_EQ(boost::json::parse(deny_entry.detail_json).at("vendor_limit").at("limit").as_string(),
            "10.00");
  // Capturing 2.00 of the 5.00 hold releases 3.00 to the rule; a void releases all of a hold.
  expect_status(capture("acme/sales", "hold_t2", units(2)), 200);
  EXPECT_EQ(shown_vendor_limits(budget("acme"), now()).at(0).at("used").as_string(), "6.00");
  expect_status(vendor_hold("acme/research/agent", units(4), "hold_t4", "api.twilio.com"), 201);
  expect_status(spend("acme/sales", cents(1), "hold_t5", "api.twilio.com"), 402);
  expect_status(void_hold("acme/research/agent", "hold_t4"), 200);
  const boost::json::array shown = shown_vendor_limits(budget("acme"), now());
  EXPECT_EQ(shown.at(0).at("used").as_string(), "6.00");
  EXPECT_EQ(shown.at(0).at("available").as_string(), "4.00");
  expect_status(spend("acme/sales", units(4), "hold_t6", "api.twilio.com"), 201);
  expect_status(spend("acme/sales", Money::from_micros(1), "hold_t7", "api.twilio.com"), 402);
  // The node's own money moved as usual: 4 + 2 + 5 + 4 spent on acme.
  EXPECT_EQ(budget("acme").spent, units(15));
  EXPECT_EQ(budget("acme").reserved, Money::zero());
  // Alerts at the node's default thresholds fire per rule, each once in the period, naming it.
  std::vector<int> percents;
  for (const Entry& entry : all_entries("acme")) {
    if (entry.kind != "alert")
      continue;
    const auto detail = boost::json::parse(entry.detail_json);
    if (!detail.as_object().contains("vendor_limit"))
      continue;
    EXPECT_EQ(entry.budget, "acme");
    EXPECT_EQ(entry.actor, "system");
    EXPECT_EQ(detail.at("event").as_string(), "threshold_crossed");
    EXPECT_EQ(detail.at("vendor_limit").at("vendors").at(0).as_string(), "api.twilio.com");
    percents.push_back(static_cast<int>(detail.at("percent").as_int64()));
  }
  // 4.00 (40 %), then the 5.00 hold jumped to 90 %: one alert for the highest crossed, 80.
  EXPECT_EQ(percents, (std::vector<int>{80, 100}));
  // The counters survive a restart; the chained budget_set entry recorded the rule.
  close();
  open();
  EXPECT_EQ(shown_vendor_limits(budget("acme"), now()).at(0).at("used").as_string(), "10.00");
  bool recorded = false;
  for (const Entry& entry : all_entries("acme")) {
    if (entry.kind == "budget_set" && entry.budget == "acme" &&
        entry.detail_json.find("\"vendor_limits\":[{\"limit\":\"10.00\"") != std::string::npos)
      recorded = true;
  }
  EXPECT_TRUE(recorded);
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, VendorLimitByPeriodResetsForwardOnly) {
  // t0 is 2024-02-29 12:00 UTC: the month ends in 12 hours.
  expect_status(
      set_vendor_limits("acme", {vendor_limit({"*.twilio.com"}, units(10), ledger::Period::month)}),
      200);
  expect_status(spend("acme/research/agent", units(5), "hold_p1", "api.twilio.com"), 201);
  expect_status(spend("acme/research/agent", cents(450), "hold_p2", "sms.twilio.com"), 201);
  expect_status(vendor_hold("acme", cents(50), "hold_p3", "sms.twilio.com", 24 * hour), 201);
  const Micros march = ledger::period_start(ledger::Period::month, t0 + 86'400 * second);
  clock_ = march - 1;
  expect_status(spend("acme", Money::from_micros(1), "hold_p4", "api.twilio.com"), 402);
  clock_ = march;
  // What was captured starts again at the boundary; the outstanding hold still counts.
  EXPECT_EQ(shown_vendor_limits(budget("acme"), now()).at(0).at("used").as_string(), "0.50");
  expect_status(spend("acme", units(9), "hold_p5", "api.twilio.com"), 201);
  // A clock stepping back into February neither reopens it nor restarts March's count.
  clock_ = march - 3'600 * second;
  expect_status(spend("acme", cents(50), "hold_p6", "api.twilio.com"), 201);
  expect_status(spend("acme", Money::from_micros(1), "hold_p7", "api.twilio.com"), 402);
  clock_ = march + second;
  // Voiding the February hold gives its 0.50 back to the rule.
  expect_status(void_hold("acme", "hold_p3"), 200);
  expect_status(spend("acme", cents(50), "hold_p8", "api.twilio.com"), 201);
  expect_status(spend("acme", Money::from_micros(1), "hold_p9", "api.twilio.com"), 402);
  const BudgetNode acme = budget("acme");
  EXPECT_EQ(acme.usage.vendor_counters.at(0).period_start, march);
  EXPECT_EQ(acme.usage.vendor_used(acme.policies.vendor_limits.at(0), now()), units(10));
  EXPECT_TRUE(verify("acme").ok);
}

TEST_P(StoreConformanceWithTree, VendorLimitRollingWindowAtItsBoundary) {
  // 5.00 per hour on *.openai.com across research's subtree: 1-minute buckets.
  expect_status(set_vendor_limits("acme/research",
                                  {vendor_limit({"*.openai.com"}, units(5), std::nullopt, hour)}),
                200);
  clock_ = t0 + 10 * second;  // inside the bucket [t0, t0 + 1m)
  expect_status(spend("acme/research/agent", units(3), "hold_r1", "api.openai.com"), 201);
  advance(20 * minute);
  expect_status(spend("acme/research/agent", units(2), "hold_r2", "api.openai.com"), 201);
  const boost::json::object denied = expect_status(
      spend("acme/research/agent", Money::from_micros(1), "hold_r3", "api.openai.com"), 402);
  EXPECT_EQ(denied.at("error").at("code").as_string(), "vendor_limit_exceeded");
  EXPECT_EQ(denied.at("error").at("budget").as_string(), "acme/research");
  EXPECT_EQ(denied.at("error").at("vendor_limit").at("window").as_string(), "1h");
  // Another vendor is not counted by the rule.
  expect_status(spend("acme/research/agent", units(1), "hold_r4", "anthropic"), 201);
  // The 3.00 counts until its bucket leaves the window, at t0 + 1m + 1h, not a micro earlier.
  clock_ = t0 + minute + hour - 1;
  expect_status(spend("acme/research/agent", Money::from_micros(1), "hold_r5", "api.openai.com"),
                402);
  clock_ = t0 + minute + hour;
  expect_status(spend("acme/research/agent", units(3), "hold_r6", "api.openai.com"), 201);
  expect_status(spend("acme/research/agent", Money::from_micros(1), "hold_r7", "api.openai.com"),
                402);
  const boost::json::array shown = shown_vendor_limits(budget("acme/research"), now());
  EXPECT_EQ(shown.at(0).at("used").as_string(), "5.00");
  EXPECT_EQ(shown.at(0).at("available").as_string(), "0.00");
  EXPECT_TRUE(verify("acme").ok);
}

// In the commit, as in the decision function: window_exceeded comes before the vendor cap, the
// vendor cap before budget_exceeded and breaker_tripped (and a breaker it refuses before does not
// trip or freeze anything).
TEST_P(StoreConformanceWithTree, VendorLimitPrecedenceInTheCommit) {
  expect_status(
      set_vendor_limits("acme", {vendor_limit({"api.twilio.com"}, units(3), ledger::Period::day)}),
      200);
  ledger::Command breaker = set_policies("acme/research", [](ledger::BudgetSettings& settings) {
    settings.breaker_given = true;
    settings.breaker = ledger::BreakerSettings{hour, units(3), std::nullopt};
  });
  expect_status(breaker, 200);
  expect_status(spend("acme/research/agent", units(3), "hold_q1", "api.twilio.com"), 201);
  // Over the vendor cap and over the breaker's 3.00 an hour: the vendor cap is the code.
  const auto code_of = [&](const ledger::Command& command) {
    const boost::json::object body = expect_status(command, 402);
    return std::string(body.at("error").at("code").as_string());
  };
  EXPECT_EQ(code_of(spend("acme/research/agent", units(1), "hold_q2", "api.twilio.com")),
            "vendor_limit_exceeded");
  EXPECT_FALSE(budget("acme/research").frozen);
  // Over the vendor cap and over research's per-transaction 5.00: per_txn_exceeded first.
  EXPECT_EQ(code_of(spend("acme/research/agent", units(6), "hold_q3", "api.twilio.com")),
            "per_txn_exceeded");
  // Over the vendor cap and over a window: window_exceeded first.
  expect_status(set_policies("acme/research/agent",
                             [](ledger::BudgetSettings& settings) {
                               settings.windows = std::vector<ledger::WindowCap>{{hour, units(2)}};
                             }),
                200);
  EXPECT_EQ(code_of(spend("acme/research/agent", units(3), "hold_q4", "api.twilio.com")),
            "window_exceeded");
  // Over the vendor cap and over the budget (acme/sales: 0.50 left of its own): the vendor cap.
  expect_status(set_budget("acme/sales", cents(50)), 201);
  EXPECT_EQ(code_of(spend("acme/sales", units(1), "hold_q5", "api.twilio.com")),
            "vendor_limit_exceeded");
  // Without the vendor: the budget.
  EXPECT_EQ(code_of(spend("acme/sales", units(1), "hold_q6", "api.stripe.com")), "budget_exceeded");
  // Frozen and blocked beat it too.
  expect_status(freeze("acme/sales", "stop"), 200);
  EXPECT_EQ(code_of(spend("acme/sales", units(1), "hold_q7", "api.twilio.com")), "frozen");
  EXPECT_TRUE(verify("acme").ok);
}

// Race tests: many threads spend on ONE hot root with a limit, then every invariant is checked
// from the database, never from the callers' memory.
class StoreConformanceRace : public StoreConformance {
 protected:
  static constexpr int agents = 4;
  static constexpr int threads = 8;
  static constexpr int spends_per_thread = 200;
  static constexpr int total = threads * spends_per_thread;

  struct Counts {
    std::atomic<int> accepted{0};
    std::atomic<int> denied{0};
    std::atomic<int> failed{0};
  };

  void create_hot_root(Money limit) {
    expect_status(set_budget("hot", limit, ledger::Period::none), 201);
    for (int agent = 0; agent < agents; ++agent)
      expect_status(set_budget("hot/agent-" + std::to_string(agent), std::nullopt), 201);
  }

  // Submits `spends_per_thread` spends of `amount` from each of `threads` threads, thread t
  // through sequencers[t % size] (each sequencer is one server instance), and waits for every
  // answer. Half of the requests carry an Idempotency-Key.
  void hammer(const std::vector<engine::Sequencer*>& sequencers, Money amount, Counts& counts) {
    // Owned by the callbacks too, so that a count_down still returning cannot outlive it.
    auto answered = std::make_shared<std::latch>(total);
    std::vector<std::thread> workers;
    for (int thread = 0; thread < threads; ++thread) {
      engine::Sequencer* sequencer = sequencers[static_cast<size_t>(thread) % sequencers.size()];
      workers.emplace_back([&counts, answered, sequencer, amount, thread] {
        for (int i = 0; i < spends_per_thread; ++i) {
          const std::string id = "hold_t" + std::to_string(thread) + "_" + std::to_string(i);
          ledger::Command command =
              spend("hot/agent-" + std::to_string((thread + i) % agents), amount, id);
          if (i % 2 == 0)
            command = with_key(std::move(command), "idem-" + id, "hash-" + id);
          sequencer->submit(std::move(command), [&counts, answered](Outcome outcome) {
            if (!outcome.ok()) {
              ++counts.failed;
            } else if (outcome->rendered.status == 201) {
              ++counts.accepted;
            } else if (outcome->rendered.status == 402) {
              ++counts.denied;
            } else {
              ++counts.failed;
            }
            answered->count_down();
          });
        }
      });
    }
    for (std::thread& worker : workers)
      worker.join();
    answered->wait();
  }

  // Reads everything back from the store and checks it against the expected split.
  void expect_hot_root_consistent(Money amount, Money limit, int64_t expected_accepted) {
    const BudgetNode root = budget("hot");
    EXPECT_LE(root.spent.micros() + root.reserved.micros(), limit.micros());
    EXPECT_EQ(root.spent.micros(), expected_accepted * amount.micros());
    EXPECT_EQ(root.reserved, Money::zero());
    int64_t children = 0;
    for (int agent = 0; agent < agents; ++agent)
      children += budget("hot/agent-" + std::to_string(agent)).spent.micros();
    EXPECT_EQ(children, root.spent.micros());

    const std::vector<Entry> entries = all_entries("hot");
    // The default soft thresholds (50, 80, 100 % of the limit) each alert once, by the system.
    int64_t expected_alerts = 0;
    for (int percent : {50, 80, 100}) {
      if (root.spent.micros() * 100 >= limit.micros() * percent)
        ++expected_alerts;
    }
    ASSERT_EQ(static_cast<int64_t>(entries.size()), 1 + agents + total + expected_alerts);
    int64_t spends = 0;
    int64_t denials = 0;
    int64_t alerts = 0;
    int64_t spent_by_entries = 0;
    for (const Entry& entry : entries) {
      if (entry.kind == "spend") {
        ++spends;
        spent_by_entries += entry.amount->micros();
      } else if (entry.kind == "deny") {
        ++denials;
        EXPECT_EQ(entry.code, "budget_exceeded");
      } else if (entry.kind == "alert") {
        ++alerts;
        EXPECT_EQ(entry.budget, "hot");
        EXPECT_EQ(entry.actor, "system");
      }
    }
    EXPECT_EQ(alerts, expected_alerts);
    EXPECT_EQ(spends, expected_accepted);
    EXPECT_EQ(denials, total - expected_accepted);
    EXPECT_EQ(spent_by_entries, root.spent.micros());
    const ledger::VerifyReport report = verify("hot");
    EXPECT_TRUE(report.ok) << report.problem;
    EXPECT_EQ(report.checked, root.head_seq);
    EXPECT_EQ(root.head_seq, static_cast<int64_t>(entries.size()));
  }
};

TEST_P(StoreConformanceRace, ConcurrentSpendsOnOneHotRootNeverOverspend) {
  const Money amount = cents(25);
  const Money limit = Money::from_micros(units(300).micros() + cents(10).micros());  // 300.10
  const int64_t expected_accepted = limit.micros() / amount.micros();                // 1200
  ASSERT_LT(expected_accepted, total);
  create_hot_root(limit);

  Counts counts;
  hammer({sequencer_.get()}, amount, counts);
  EXPECT_EQ(counts.failed.load(), 0);
  EXPECT_EQ(counts.accepted.load(), expected_accepted);
  EXPECT_EQ(counts.denied.load(), total - expected_accepted);
  expect_hot_root_consistent(amount, limit, expected_accepted);
}

TEST_P(StoreConformanceRace, TwoInstancesOnOneDatabaseNeverOverspend) {
  // A second store and sequencer on the same database: a second `stub serve` instance.
  if (!GetParam().multi_instance)
    GTEST_SKIP() << GetParam().name << " has a single owner per database";
  const Money amount = cents(30);
  const Money limit = units(201);
  const int64_t expected_accepted = limit.micros() / amount.micros();  // 670
  create_hot_root(limit);
  std::unique_ptr<Store> second_store = GetParam().factory(directory_.str());
  ASSERT_NE(second_store, nullptr);
  auto second = std::make_unique<engine::Sequencer>(
      *second_store, [this] { return clock_.load(); }, edge_options(), nullptr);

  Counts counts;
  hammer({sequencer_.get(), second.get()}, amount, counts);
  second.reset();
  second_store.reset();
  EXPECT_EQ(counts.failed.load(), 0);
  EXPECT_EQ(counts.accepted.load(), expected_accepted);
  EXPECT_EQ(counts.denied.load(), total - expected_accepted);
  expect_hot_root_consistent(amount, limit, expected_accepted);
}

// 200 callers, each on its own thread and released together, spend on ONE hot node with a
// policy; every second caller goes through a second instance when the store allows several.
// Counts are by HTTP-level status and denial code; invariants are then read from the store.
struct CrowdResult {
  std::map<std::string, int> by_code;  // "201", or the denial code, or "error:<subcode>"
};

CrowdResult crowd(const std::vector<engine::Sequencer*>& sequencers, int callers, int per_caller,
                  Money amount) {
  std::mutex mutex;
  CrowdResult result;
  std::latch start(callers);
  std::vector<std::thread> threads;
  for (int caller = 0; caller < callers; ++caller) {
    engine::Sequencer* sequencer = sequencers[static_cast<size_t>(caller) % sequencers.size()];
    threads.emplace_back([&, sequencer, caller] {
      start.arrive_and_wait();
      for (int i = 0; i < per_caller; ++i) {
        const std::string id = "hold_c" + std::to_string(caller) + "_" + std::to_string(i);
        const Outcome outcome =
            sequencer->execute(spend("hot/agent-" + std::to_string(caller % 4), amount, id));
        std::string key;
        if (!outcome.ok()) {
          key = "error:" + outcome.error().subcode;
        } else if (outcome->rendered.status == 402) {
          key = std::string(boost::json::parse(outcome->rendered.body)
                                .at("error")
                                .at("code")
                                .as_string()
                                .c_str());
        } else {
          key = std::to_string(outcome->rendered.status);
        }
        std::lock_guard lock(mutex);
        ++result.by_code[key];
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  return result;
}

TEST_P(StoreConformanceRace, WindowCapAdmitsNoMoreThanItsLimitUnder200Callers) {
  create_hot_root(units(1'000));
  expect_status(
      set_policies("hot",
                   [](ledger::BudgetSettings& settings) {
                     settings.windows = std::vector<ledger::WindowCap>{{3'600 * second, units(50)}};
                   }),
      200);
  std::unique_ptr<Store> second_store;
  std::unique_ptr<engine::Sequencer> second;
  std::vector<engine::Sequencer*> instances{sequencer_.get()};
  if (GetParam().multi_instance) {
    second_store = GetParam().factory(directory_.str());
    ASSERT_NE(second_store, nullptr);
    second = std::make_unique<engine::Sequencer>(
        *second_store, [this] { return clock_.load(); }, edge_options(), nullptr);
    instances.push_back(second.get());
  }
  const Money amount = cents(30);
  const CrowdResult result = crowd(instances, 200, 2, amount);
  second.reset();
  second_store.reset();
  const int expected = static_cast<int>(units(50).micros() / amount.micros());  // 166
  EXPECT_EQ(result.by_code.at("201"), expected);
  EXPECT_EQ(result.by_code.at("window_exceeded"), 400 - expected);
  EXPECT_EQ(result.by_code.size(), 2u);
  const BudgetNode root = budget("hot");
  EXPECT_EQ(root.spent.micros(), expected * amount.micros());
  EXPECT_LE(root.usage.windows.at(0).amount_at(now()), units(50));
  EXPECT_EQ(root.usage.windows.at(0).amount_at(now()), root.spent);
  int64_t spends = 0;
  for (const Entry& entry : all_entries("hot")) {
    spends += entry.kind == "spend" ? 1 : 0;
    if (entry.kind == "deny") {
      EXPECT_EQ(entry.code, "window_exceeded");
    }
  }
  EXPECT_EQ(spends, expected);
  EXPECT_TRUE(verify("hot").ok);
}

TEST_P(StoreConformanceRace, BreakerTripsExactlyOnceUnder200Callers) {
  create_hot_root(units(1'000));
  expect_status(
      set_policies("hot",
                   [](ledger::BudgetSettings& settings) {
                     settings.breaker_given = true;
                     settings.breaker = ledger::BreakerSettings{3'600 * second, std::nullopt, 50};
                   }),
      200);
  std::unique_ptr<Store> second_store;
  std::unique_ptr<engine::Sequencer> second;
  std::vector<engine::Sequencer*> instances{sequencer_.get()};
  if (GetParam().multi_instance) {
    second_store = GetParam().factory(directory_.str());
    ASSERT_NE(second_store, nullptr);
    second = std::make_unique<engine::Sequencer>(
        *second_store, [this] { return clock_.load(); }, edge_options(), nullptr);
    instances.push_back(second.get());
  }
  const CrowdResult result = crowd(instances, 200, 1, cents(10));
  second.reset();
  second_store.reset();
  EXPECT_EQ(result.by_code.at("201"), 50);
  EXPECT_EQ(result.by_code.at("breaker_tripped"), 1);
  EXPECT_EQ(result.by_code.at("frozen"), 149);
  EXPECT_EQ(result.by_code.size(), 3u);
  EXPECT_TRUE(budget("hot").frozen);
  EXPECT_EQ(budget("hot").spent, units(5));
  // Exactly one freeze, by the system, right after the one breaker denial; no spend after it.
  int64_t freeze_seq = 0;
  int freezes = 0;
  int64_t last_spend_seq = 0;
  int64_t trip_seq = 0;
  for (const Entry& entry : all_entries("hot")) {
    if (entry.kind == "freeze") {
      ++freezes;
      freeze_seq = entry.seq;
      EXPECT_EQ(entry.actor, "system");
    } else if (entry.kind == "spend") {
      last_spend_seq = entry.seq;
    } else if (entry.code == "breaker_tripped") {
      trip_seq = entry.seq;
    }
  }
  EXPECT_EQ(freezes, 1);
  EXPECT_EQ(freeze_seq, trip_seq + 1);
  EXPECT_LT(last_spend_seq, trip_seq);
  EXPECT_TRUE(verify("hot").ok);
}

// Issue 16: 200 callers (SQLite: one instance; PostgreSQL: three) race spends and holds from 20
// agents in two teams under ONE org rule on one vendor, and spends on another vendor that no rule
// names. Exactly floor(limit / amount) of the capped vendor's are admitted; the other vendor's
// all are; and the counter, read back from the store, holds exactly what was admitted.
TEST_P(StoreConformanceRace, VendorLimitAdmitsExactlyFloorUnder200CallersAcrossTwoTeams) {
  expect_status(set_budget("fleet", std::nullopt), 201);
  const Money limit = units(50);
  expect_status(
      set_vendor_limits("fleet", {vendor_limit({"api.twilio.com"}, limit, ledger::Period::month)}),
      200);
  std::vector<std::string> agents;
  for (const std::string team : {"fleet/team-a", "fleet/team-b"}) {
    expect_status(set_budget(team, std::nullopt), 201);
    for (int agent = 0; agent < 10; ++agent) {
      agents.push_back(team + "/agent-" + std::to_string(agent));
      expect_status(set_budget(agents.back(), std::nullopt), 201);
    }
  }
  std::vector<std::unique_ptr<Store>> extra_stores;
  std::vector<std::unique_ptr<engine::Sequencer>> extra;
  std::vector<engine::Sequencer*> instances{sequencer_.get()};
  if (GetParam().multi_instance) {
    for (int i = 0; i < 2; ++i) {
      extra_stores.push_back(GetParam().factory(directory_.str()));
      ASSERT_NE(extra_stores.back(), nullptr);
      extra.push_back(std::make_unique<engine::Sequencer>(
          *extra_stores.back(), [this] { return clock_.load(); }, edge_options(), nullptr));
      instances.push_back(extra.back().get());
    }
  }
  const Money amount = cents(30);
  constexpr int callers = 200;
  std::mutex mutex;
  std::map<std::string, int> capped;  // by status or denial code
  int other_accepted = 0;
  std::latch start(callers);
  std::vector<std::thread> threads;
  for (int caller = 0; caller < callers; ++caller) {
    engine::Sequencer* sequencer = instances[static_cast<size_t>(caller) % instances.size()];
    const std::string path = agents[static_cast<size_t>(caller) % agents.size()];
    threads.emplace_back([&, sequencer, caller, path] {
      start.arrive_and_wait();
      const std::string id = "hold_c" + std::to_string(caller);
      // One spend and one hold on the capped vendor, one spend on another.
      const std::vector<ledger::Command> commands = {
          spend(path, amount, id + "_s", "api.twilio.com"),
          vendor_hold(path, amount, id + "_h", "api.twilio.com"),
          spend(path, amount, id + "_o", "api.openai.com")};
      for (size_t i = 0; i < commands.size(); ++i) {
        const Outcome outcome = sequencer->execute(commands[i]);
        std::string key;
        if (!outcome.ok()) {
          key = "error:" + outcome.error().subcode;
        } else if (outcome->rendered.status == 402) {
          key = std::string(boost::json::parse(outcome->rendered.body)
                                .at("error")
                                .at("code")
                                .as_string()
                                .c_str());
        } else {
          key = std::to_string(outcome->rendered.status);
        }
        std::lock_guard lock(mutex);
        if (i == 2) {
          other_accepted += key == "201" ? 1 : 0;
        } else {
          ++capped[key];
        }
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  extra.clear();
  extra_stores.clear();

  const int expected = static_cast<int>(limit.micros() / amount.micros());  // 166 of 400
  EXPECT_EQ(capped["201"], expected);
  EXPECT_EQ(capped["vendor_limit_exceeded"], 2 * callers - expected);
  EXPECT_EQ(capped.size(), 2u);
  EXPECT_EQ(other_accepted, callers);
  // From the store: the counter holds exactly what was admitted (held + captured), the org's
  // own totals agree with it, and the books agree with both.
  const BudgetNode fleet = budget("fleet");
  const boost::json::array shown = shown_vendor_limits(fleet, now());
  EXPECT_EQ(shown.at(0).at("used").as_string(),
            Money::from_micros(expected * amount.micros()).to_string());
  EXPECT_LE(fleet.usage.vendor_used(fleet.policies.vendor_limits.at(0), now()), limit);
  EXPECT_EQ(fleet.spent.micros() + fleet.reserved.micros(), (expected + callers) * amount.micros());
  int64_t twilio_money = 0;
  int64_t twilio_denials = 0;
  int vendor_alerts = 0;
  for (const Entry& entry : all_entries("fleet")) {
    if ((entry.kind == "spend" || entry.kind == "hold") && entry.vendor == "api.twilio.com")
      twilio_money += entry.amount->micros();
    if (entry.kind == "deny") {
      EXPECT_EQ(entry.code, "vendor_limit_exceeded");
      EXPECT_EQ(entry.vendor, "api.twilio.com");
      ++twilio_denials;
    }
    if (entry.kind == "alert") {
      EXPECT_NE(entry.detail_json.find("\"vendor_limit\""), std::string::npos);
      ++vendor_alerts;
    }
  }
  EXPECT_EQ(twilio_money, expected * amount.micros());
  EXPECT_EQ(twilio_denials, 2 * callers - expected);
  EXPECT_EQ(vendor_alerts, 2);  // 49.80 of 50.00: the 50 % and 80 % thresholds, once each
  EXPECT_TRUE(verify("fleet").ok);
}

// Every store the suite runs against: SQLite, and PostgreSQL in both isolation levels when a
// server is configured (postgres_fixture.hpp).
// ---- Signed checkpoints (ledger/checkpoint.hpp, checkpoints/checkpoint_signer.hpp) ----------

TEST_P(StoreConformanceWithTree, CheckpointsAreStoredOncePerSeqAndReadInOrder) {
  EXPECT_FALSE(store_->latest_checkpoint("acme").value().has_value());
  EXPECT_TRUE(store_->list_checkpoints("acme", 0, 10).value().empty());
  auto checkpoint_at = [](int64_t seq, std::string signature) {
    ledger::Checkpoint checkpoint;
    checkpoint.root = "acme";
    checkpoint.seq = seq;
    checkpoint.hash = std::string(64, 'a');
    checkpoint.ts = t0 + seq;
    checkpoint.key_id = "0123456789abcdef";
    checkpoint.signature = std::move(signature);
    return checkpoint;
  };
  EXPECT_TRUE(store_->record_checkpoint(checkpoint_at(3, "first")).value());
  EXPECT_TRUE(store_->record_checkpoint(checkpoint_at(1, "one")).value());
  // A second checkpoint at a seq (another instance's) is refused; the first is kept.
  EXPECT_FALSE(store_->record_checkpoint(checkpoint_at(3, "second")).value());
  const auto listed = store_->list_checkpoints("acme", 0, 10);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].seq, 1);
  EXPECT_EQ((*listed)[1].seq, 3);
  EXPECT_EQ((*listed)[1].signature, "first");
  EXPECT_EQ((*listed)[1].ts, t0 + 3);
  EXPECT_EQ(store_->list_checkpoints("acme", 1, 10)->size(), 1u);
  EXPECT_EQ(store_->list_checkpoints("acme", 0, 1)->size(), 1u);
  EXPECT_TRUE(store_->list_checkpoints("beta", 0, 10)->empty());
  close();
  open();
  const auto latest = store_->latest_checkpoint("acme");
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->seq, 3);
  EXPECT_EQ(ledger::checkpoint_to_json(**latest),
            ledger::checkpoint_to_json(checkpoint_at(3, "first")));
}

TEST_P(StoreConformanceWithTree, SignerCheckpointsEveryNEntriesOrIntervalAndVerifyProvesThem) {
  auto key = checkpoints::SigningKey::generate();
  ASSERT_TRUE(key.ok());
  checkpoints::SignerOptions options;
  options.every_entries = 3;
  options.interval = std::chrono::seconds(60);
  options.poll = std::chrono::milliseconds(0);  // passes run here, not on a thread
  checkpoints::CheckpointSigner signer(
      *store_, std::move(key).value(), [this] { return now(); }, options);
  EXPECT_EQ(signer.sign_once(), 1u);  // the first head is signed at once
  EXPECT_EQ(signer.sign_once(), 0u);  // nothing new
  expect_status(spend("acme/research/agent", units(1), "hold_c1"), 201);
  EXPECT_EQ(signer.sign_once(), 0u);  // one entry on, well inside the interval
  expect_status(spend("acme/research/agent", units(1), "hold_c2"), 201);
  expect_status(spend("acme/research/agent", units(1), "hold_c3"), 201);
  EXPECT_EQ(signer.sign_once(), 1u);  // three entries on
  expect_status(spend("acme/research/agent", units(1), "hold_c4"), 201);
  advance(61 * second);
  EXPECT_EQ(signer.sign_once(), 1u);  // the interval passed
  const auto listed = store_->list_checkpoints("acme", 0, 100);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  const BudgetNode root = budget("acme");
  EXPECT_EQ(listed->back().seq, root.head_seq);
  EXPECT_EQ(listed->back().hash, root.head_hash);
  for (const ledger::Checkpoint& checkpoint : *listed) {
    EXPECT_TRUE(
        signer.public_key().verify(ledger::checkpoint_message(checkpoint), checkpoint.signature));
  }
  EXPECT_GT(listed->back().ts, (*listed)[0].ts);

  store::Store::VerifyOptions verify_options;
  verify_options.checkpoints = *listed;
  const auto proven = store_->verify("acme", nullptr, verify_options);
  ASSERT_TRUE(proven.ok());
  EXPECT_TRUE(proven->ok) << proven->checkpoint_problem << proven->balance_problem;
  EXPECT_EQ(proven->checkpoints_checked, 3);
  EXPECT_EQ(proven->latest_checkpoint_seq, root.head_seq);
  EXPECT_EQ(proven->budgets_checked, 3);

  // A checkpoint the chain does not reach (as if the tail had been cut) is named.
  ledger::Checkpoint beyond = listed->back();
  beyond.seq = root.head_seq + 5;
  verify_options.checkpoints.push_back(beyond);
  const auto contradicted = store_->verify("acme", nullptr, verify_options);
  ASSERT_TRUE(contradicted.ok());
  EXPECT_FALSE(contradicted->ok);
  EXPECT_EQ(contradicted->first_bad_checkpoint_seq, beyond.seq);
  EXPECT_FALSE(contradicted->first_bad_seq.has_value());
}

TEST_P(StoreConformanceWithTree, VerifyReconcilesBudgetsWithPostingsAcrossPeriodsAndHolds) {
  // Spends, a hold captured in part, one voided, one left open, a day boundary and a period
  // change: every node's spent and reserved must still follow from the postings.
  expect_status(spend("acme/research/agent", units(2), "hold_r1"), 201);
  expect_status(hold("acme/research/agent", units(4), "hold_r2", 300 * second), 201);
  expect_status(capture("acme/research/agent", "hold_r2", units(1)), 200);
  expect_status(hold("acme/research", units(3), "hold_r3", 300 * second), 201);
  expect_status(hold("acme/research/agent", units(2), "hold_r4", 3'600 * second), 201);
  expect_status(void_hold("acme/research", "hold_r3"), 200);
  advance(86'400 * second);  // research's day rolls over
  expect_status(spend("acme/research/agent", units(1), "hold_r5"), 201);
  expect_status(set_budget("acme", units(100), ledger::Period::week), 200);
  expect_status(spend("acme/research", units(1), "hold_r6"), 201);
  const ledger::VerifyReport report = verify("acme");
  EXPECT_TRUE(report.ok) << report.balance_problem;
  EXPECT_EQ(report.budgets_checked, 3);
  EXPECT_EQ(budget("acme/research").spent, units(2));
  EXPECT_EQ(budget("acme/research").reserved, units(2));
  EXPECT_EQ(budget("acme").spent, units(2));  // March began: 1.00 + 1.00 since
}

std::vector<StoreKind> all_store_kinds() {
  std::vector<StoreKind> kinds{StoreKind{"sqlite", open_sqlite, false}};
  if (!postgres_base_url().empty()) {
    kinds.push_back(StoreKind{
        "postgres_read_committed",
        [](const std::string& dir) { return open_postgres(dir, "read-committed"); }, true});
    kinds.push_back(
        StoreKind{"postgres_serializable",
                  [](const std::string& dir) { return open_postgres(dir, "serializable"); }, true});
  }
  return kinds;
}

const auto all_stores = ::testing::ValuesIn(all_store_kinds());

TEST(StoreConformanceSetup, PostgresIsConfiguredWhenRequired) {
  if (postgres_required()) {
    EXPECT_FALSE(postgres_base_url().empty())
        << "STUB_REQUIRE_POSTGRES=1 but STUB_TEST_POSTGRES_URL is not set";
  }
}

std::string store_name(const ::testing::TestParamInfo<StoreKind>& info) {
  return info.param.name;
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreConformance, all_stores, store_name);
INSTANTIATE_TEST_SUITE_P(Stores, StoreConformanceWithTree, all_stores, store_name);
INSTANTIATE_TEST_SUITE_P(Stores, StoreConformanceRace, all_stores, store_name);
INSTANTIATE_TEST_SUITE_P(Stores, StoreConformanceClocks, all_stores, store_name);

// ---- Constrained queries and exports (src/query, src/export) --------------------------------

// Spends, captures, voids and expiries across teams, vendors, categories and tags over several
// days: every query's rows must equal sums computed here from the stored entries.
class StoreConformanceQuery : public StoreConformance {
 protected:
  // Runs a command that must be decided (accepted or denied), not fail.
  void must(const ledger::Command& command) {
    const Outcome outcome = run(command);
    EXPECT_TRUE(outcome.ok()) << (outcome.ok() ? "" : outcome.error().message);
  }

  void SetUp() override {
    StoreConformance::SetUp();
    expect_status(set_budget("acme", units(100'000), ledger::Period::none), 201);
    for (const char* team : {"acme/research", "acme/sales"}) {
      expect_status(set_budget(team, std::nullopt), 201);
      for (const char* agent : {"/a", "/b_2"})
        expect_status(set_budget(std::string(team) + agent, std::nullopt), 201);
    }
    const std::vector<std::string> agents{"acme/research/a", "acme/research/b_2", "acme/sales/a",
                                          "acme/sales/b_2", "acme"};
    const char* vendors[] = {"openai", "serp.api", "stripe"};
    const char* customers[] = {"globex", "initech", "o'reilly"};
    int64_t state = 7;
    auto next = [&state](int64_t bound) {
      state = (state * 1'103'515'245 + 12'345) % 2'147'483'648;
      return state % bound;
    };
    for (int i = 0; i < 90; ++i) {
      const std::string& budget = agents[static_cast<size_t>(next(5))];
      Command command = spend(budget, Money::from_micros(1 + next(9'999'999)),
                              "hold_q" + std::to_string(i), vendors[next(3)]);
      command.tags_json = std::string(R"({"category":")") + (next(2) == 0 ? "llm" : "data-api") +
                          R"(","customer":")" + customers[next(3)] + "\"}";
      if (i % 3 == 1) {
        command.kind = CommandKind::hold;
        command.ttl = 60 * second;
        command.receipt_json = "null";
        must(command);
        if (i % 6 == 1)
          must(capture(budget, command.hold_id,
                       Money::from_micros(command.amount->micros() * next(101) / 100)));
        else if (i % 12 == 4)
          must(void_hold(budget, command.hold_id));
      } else {
        must(command);
      }
      if (i % 15 == 14)
        advance(86'400 * second);  // a new day
    }
    // Let some holds expire (captured at their held amount) through the engine.
    advance(120 * second);
    auto expired = store_->list_expired_holds(now(), 100);
    ASSERT_TRUE(expired.ok());
    for (const Hold& hold : *expired)
      must(expire(hold));
    entries_ = all_entries("acme");
  }

  static std::string key_of(const Entry& entry, const query::GroupBy& group) {
    auto prefix = [&entry](size_t depth) {
      size_t at = 0;
      for (size_t k = 0; k < depth; ++k) {
        at = entry.budget.find('/', at + (k == 0 ? 0 : 1));
        if (at == std::string::npos)
          return entry.budget;
      }
      return entry.budget.substr(0, at);
    };
    auto tag = [&entry](const std::string& key) {
      auto tags = boost::json::parse(entry.tags_json).as_object();
      const auto* value = tags.if_contains(key);
      return value ? std::string(value->as_string()) : std::string("(null)");
    };
    switch (group.kind) {
      case query::GroupKind::team:
        return prefix(2);
      case query::GroupKind::agent:
        return prefix(3);
      case query::GroupKind::budget:
        return entry.budget;
      case query::GroupKind::vendor:
        return entry.vendor;
      case query::GroupKind::category:
        return tag("category");
      case query::GroupKind::tag:
        return tag(group.tag_key);
      case query::GroupKind::day:
        return ledger::format_timestamp(entry.ts).substr(0, 10);
      case query::GroupKind::month:
        return ledger::format_timestamp(entry.ts).substr(0, 7);
      default:
        ADD_FAILURE() << "no reference for this group";
        return "";
    }
  }

  using Sums = std::map<std::vector<std::string>, std::pair<int64_t, int64_t>>;

  Sums expected(const query::Query& query) {
    Sums sums;
    for (const Entry& entry : entries_) {
      const bool money =
          (entry.kind == "spend" || entry.kind == "capture" || entry.kind == "expire") &&
          entry.amount && entry.amount->is_positive();
      if (!money || entry.ts < query.range.from || entry.ts >= query.range.to)
        continue;
      if (!(entry.budget == query.filters.subtree ||
            entry.budget.starts_with(query.filters.subtree + "/")))
        continue;
      if (!query.filters.vendors.empty() &&
          std::find(query.filters.vendors.begin(), query.filters.vendors.end(), entry.vendor) ==
              query.filters.vendors.end())
        continue;
      if (!query.filters.kinds.empty() &&
          std::find(query.filters.kinds.begin(), query.filters.kinds.end(), entry.kind) ==
              query.filters.kinds.end())
        continue;
      bool tags_match = true;
      for (const auto& [key, value] : query.filters.tags)
        tags_match = tags_match && key_of(entry, {query::GroupKind::tag, 0, key}) == value;
      if (!query.filters.categories.empty() &&
          key_of(entry, {query::GroupKind::category, 0, ""}) != query.filters.categories.front())
        tags_match = false;
      if (!tags_match)
        continue;
      std::vector<std::string> key;
      for (const query::GroupBy& group : query.group_by)
        key.push_back(key_of(entry, group));
      sums[key].first += entry.amount->micros();
      sums[key].second += 1;
    }
    return sums;
  }

  Sums answered(const query::Query& query, query::ReadPath path = query::ReadPath::automatic) {
    auto answer = query::run_query(*store_, query, path);
    EXPECT_TRUE(answer.ok()) << (answer.ok() ? "" : answer.error().message);
    Sums sums;
    if (!answer.ok())
      return sums;
    if (path == query::ReadPath::entries_only || !query::rollup_covers(query)) {
      EXPECT_FALSE(answer->from_rollup);
    }
    rollup_answers_ += answer->from_rollup ? 1 : 0;
    for (const query::AnswerRow& row : answer->rows) {
      std::vector<std::string> key;
      for (const auto& part : row.keys)
        key.push_back(part.value_or("(null)"));
      sums[key] = {row.amount_micros, row.count};
    }
    return sums;
  }

  query::Query parse(const std::string& json) {
    auto query = query::parse_query(boost::json::parse(json), now());
    EXPECT_TRUE(query.ok()) << json;
    return query.ok() ? *query : query::Query{};
  }

  std::vector<Entry> entries_;
  size_t rollup_answers_ = 0;  // answers read (mostly) from the rollup
};

TEST_P(StoreConformanceQuery, EveryGroupAndFilterEqualsIndependentSums) {
  const std::vector<std::string> groups{"[]",
                                        R"(["team"])",
                                        R"(["agent"])",
                                        R"(["budget"])",
                                        R"(["vendor"])",
                                        R"(["category"])",
                                        R"(["tag:customer"])",
                                        R"(["day"])",
                                        R"(["month"])",
                                        R"(["team","vendor","day"])",
                                        R"(["tag:customer","category"])"};
  const std::vector<std::string> filters{
      R"({"subtree":"acme"})",
      R"({"subtree":"acme/research"})",
      R"({"subtree":"acme/sales/b_2"})",
      R"({"subtree":"acme","vendor":["serp.api","stripe"]})",
      R"({"subtree":"acme","category":"llm"})",
      R"({"subtree":"acme","kind":["capture","expire"]})",
      R"({"subtree":"acme","tags":{"customer":"o'reilly"}})",
      R"({"subtree":"acme/research","vendor":"openai","tags":{"customer":"globex"}})"};
  size_t nonempty = 0;
  for (const std::string& group : groups) {
    for (const std::string& filter : filters) {
      // Whole days (the rollup alone), partial days at both ends (rollup plus the entries of
      // the edges), a rolling window ending now, and less than a day (the entries alone).
      for (const char* range :
           {R"("range":"all")", R"("from":"2024-03-01T00:00:00Z","to":"2024-03-03T00:00:00Z")",
            R"("from":"2024-02-29T18:30:00Z","to":"2024-03-03T06:00:00.000001Z")",
            R"("range":"last 3d")",
            R"("from":"2024-03-01T01:00:00Z","to":"2024-03-01T23:00:00Z")"}) {
        const std::string json = R"({"metric":"spend","limit":1000,"group_by":)" + group +
                                 R"(,"filters":)" + filter + "," + range + "}";
        SCOPED_TRACE(json);
        const query::Query query = parse(json);
        Sums want = expected(query);
        if (query.group_by.empty() && want.empty())
          want[{}] = {0, 0};
        EXPECT_EQ(answered(query), want);
        EXPECT_EQ(answered(query, query::ReadPath::entries_only), want);
        nonempty += want.size() > 1 ? 1 : 0;
      }
    }
  }
  EXPECT_GT(nonempty, 40u);
  EXPECT_GT(rollup_answers_, 100u);  // the rollup path was taken, not only the scan
}

// The rollup is written in the same commit as the entries: the rollup path and the scan of the
// entries agree for every metric it covers, after more writes, and after a reopen.
TEST_P(StoreConformanceQuery, RollupAndEntriesAgreeForEveryCoveredQuery) {
  for (int i = 0; i < 4; ++i)
    must(spend("acme/research/a", units(200'000), "hold_deny_r" + std::to_string(i), "stripe"));
  must(spend("acme/sales/a", units(1), "hold_late"));
  const std::vector<std::string> queries{
      R"({"metric":"denials","group_by":["agent","vendor"],"filters":{"subtree":"acme"}})",
      R"({"metric":"denials","group_by":["day"],"filters":{"subtree":"acme",
          "code":["budget_exceeded"]}})",
      R"({"metric":"count","group_by":["week","category"],"filters":{"subtree":"acme"}})",
      R"({"metric":"avg","group_by":["vendor"],"filters":{"subtree":"acme/sales"},
          "range":"last 2d"})",
      R"({"metric":"spend","group_by":["budget:2","month"],"filters":{"subtree":"acme",
          "kind":"spend","vendor":"openai"}})",
      R"({"metric":"spend","group_by":["hour"],"filters":{"subtree":"acme"}})",
      R"({"metric":"spend","group_by":["intent"],"filters":{"subtree":"acme"}})",
      R"({"metric":"spend","filters":{"subtree":"acme","tags":{"customer":"globex"}}})"};
  for (int round = 0; round < 2; ++round) {
    for (const std::string& json : queries) {
      SCOPED_TRACE(json);
      const query::Query query = parse(json);
      const Sums scanned = answered(query, query::ReadPath::entries_only);
      EXPECT_EQ(answered(query), scanned);
      EXPECT_FALSE(scanned.empty());
    }
    close();
    open();
  }
  EXPECT_TRUE(query::rollup_covers(parse(queries[0])));
  EXPECT_FALSE(query::rollup_covers(parse(queries[5])));  // hours are finer than the rollup
  EXPECT_FALSE(query::rollup_covers(parse(queries[6])));
  EXPECT_FALSE(query::rollup_covers(parse(queries[7])));
  auto denials = query::run_query(*store_, parse(queries[0]));
  ASSERT_TRUE(denials.ok());
  EXPECT_TRUE(denials->from_rollup);
  EXPECT_EQ(denials->total_count, 4);
}

TEST_P(StoreConformanceQuery, DenialsAndOpenHoldsAreCounted) {
  for (int i = 0; i < 3; ++i)
    must(spend("acme/research/a", units(200'000), "hold_deny" + std::to_string(i)));
  must(hold("acme/sales/a", units(2), "hold_open_1", 3'600 * second));
  auto denials = query::run_query(
      *store_, parse(R"({"metric":"denials","group_by":["agent"],"filters":{"subtree":"acme",
                        "code":"budget_exceeded"}})"));
  ASSERT_TRUE(denials.ok());
  ASSERT_EQ(denials->rows.size(), 1u);
  EXPECT_EQ(denials->rows[0].keys[0], "acme/research/a");
  EXPECT_EQ(denials->rows[0].count, 3);
  auto open = query::run_query(
      *store_,
      parse(R"({"metric":"holds_open","group_by":["team"],"filters":{"subtree":"acme"}})"));
  ASSERT_TRUE(open.ok());
  ASSERT_EQ(open->rows.size(), 1u);
  EXPECT_EQ(open->rows[0].keys[0], "acme/sales");
  EXPECT_EQ(open->rows[0].amount_micros, units(2).micros());
}

TEST_P(StoreConformanceQuery, ExportStreamsEverySettledEntryInPagesWithTheTotals) {
  journal::ExportOptions options;
  options.format = journal::Format::hledger;
  options.subtree = "acme/research";
  options.page_size = 7;  // many pages
  std::string text;
  size_t chunks = 0;
  int64_t last_progress = 0;
  auto summary = journal::export_journal(
      *store_, options,
      [&](std::string_view chunk) {
        text.append(chunk);
        ++chunks;
        return true;
      },
      [&](int64_t seq, int64_t last) {
        EXPECT_GT(seq, last_progress);
        EXPECT_LE(seq, last);
        last_progress = seq;
      });
  ASSERT_TRUE(summary.ok()) << summary.error().message;
  int64_t want = 0;
  int64_t transactions = 0;
  for (const Entry& entry : entries_) {
    if ((entry.kind == "spend" || entry.kind == "capture" || entry.kind == "expire") &&
        entry.amount && entry.amount->is_positive() && entry.budget.starts_with("acme/research/")) {
      want += entry.amount->micros();
      ++transactions;
      EXPECT_NE(text.find("; hash:" + entry.hash + "\n"), std::string::npos) << entry.seq;
    }
  }
  EXPECT_EQ(summary->amount_micros, want);
  EXPECT_EQ(summary->transactions, transactions);
  EXPECT_GT(transactions, 10);
  EXPECT_EQ(summary->currency, "USD");
  int64_t balance = 0;
  for (const auto& [account, total] : summary->account_totals)
    balance += total;
  EXPECT_EQ(balance, 0);  // double entry
  EXPECT_NE(text.find("account Expenses:Agents:Acme:Research:B-2-"), std::string::npos);
  // A sink that stops ends the export at once.
  auto stopped = journal::export_journal(
      *store_, options, [](std::string_view) { return false; }, nullptr);
  ASSERT_TRUE(stopped.ok());
  EXPECT_TRUE(stopped->stopped);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreConformanceQuery, ::testing::ValuesIn(all_store_kinds()),
                         [](const ::testing::TestParamInfo<StoreKind>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace stub::store::conformance
