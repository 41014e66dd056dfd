#pragma once

// The fixture of the PostgreSQL store's own tests (pg_store_test.cpp, pg_speculative_test.cpp):
// a schema per test, a store opened on it, the acme tree, and batches driven by hand.

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "edge_commands.hpp"
#include "engine/sequencer.hpp"
#include "postgres_fixture.hpp"
#include "store/postgres/pg_store.hpp"

namespace stub::store::conformance {

class PgStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (postgres_base_url().empty()) {
      if (postgres_required())
        FAIL() << "STUB_REQUIRE_POSTGRES=1 but STUB_TEST_POSTGRES_URL is not set";
      GTEST_SKIP() << "STUB_TEST_POSTGRES_URL is not set";
    }
    url_ = postgres_url_for(directory_.str());
  }

  std::unique_ptr<postgres::PgStore> open_pg(const std::string& isolation = "read-committed") {
    StoreOptions options;
    options.isolation = isolation;
    auto opened = postgres::PgStore::open(url_, options);
    EXPECT_TRUE(opened.ok()) << (opened.ok() ? "" : opened.error().message);
    return opened.ok() ? std::move(opened).value() : nullptr;
  }

  static engine::Clock fixed_clock() {
    return [] { return t0; };
  }

  // acme (1000.00) -> team -> agent.
  static void create_tree(engine::Sequencer& sequencer) {
    for (const auto& [path, limit] : std::vector<std::pair<std::string, std::optional<Money>>>{
             {"acme", units(1000)},
             {"acme/team", std::nullopt},
             {"acme/team/agent", std::nullopt}}) {
      const auto outcome = sequencer.execute(set_budget(path, limit, ledger::Period::none));
      ASSERT_TRUE(outcome.ok()) << outcome.error().message;
      ASSERT_EQ(outcome->rendered.status, 201) << outcome->rendered.body;
    }
  }

  static int64_t count_spends(Store& store) {
    int64_t spends = 0;
    auto page = store.list_entries("acme", 0, 100'000);
    EXPECT_TRUE(page.ok());
    for (const ledger::Entry& entry : page->entries)
      spends += entry.kind == "spend" ? 1 : 0;
    return spends;
  }

  TempDirectory directory_;
  std::string url_;
};

// One batch driven through the store's pipelining API by hand, as the sequencer would.
struct HandBatch {
  explicit HandBatch(std::vector<ledger::Command> batch_commands)
      : commands(std::move(batch_commands)), read(ledger::read_set_for(commands)) {
    apply = [this](ledger::WorkingSet& state) {
      outcomes.clear();
      for (const ledger::Command& command : commands)
        outcomes.push_back(ledger::apply_command(state, command, t0, http::render_answer));
    };
  }
  std::vector<ledger::Command> commands;
  ledger::ReadSet read;
  std::vector<ledger::Outcome> outcomes;
  ApplyBatch apply;
  OnCommitted committed;
};

// Another instance spends on the same root behind this one's back: the rows this instance
// remembers go stale.
inline void spend_elsewhere(const std::string& url, const std::string& hold_id) {
  auto other = postgres::PgStore::open(url, StoreOptions{});
  ASSERT_TRUE(other.ok()) << other.error().message;
  engine::Sequencer sequencer(
      **other, [] { return t0; }, edge_options(), nullptr);
  const auto outcome = sequencer.execute(spend("acme/team/agent", units(5), hold_id));
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  ASSERT_EQ(outcome->rendered.status, 201) << outcome->rendered.body;
}

// A clock that moves forward a millisecond per reading, as a real one does between batches.
inline engine::Clock advancing_clock() {
  auto ticks = std::make_shared<std::atomic<int64_t>>(0);
  return [ticks] { return t0 + 1'000 * ticks->fetch_add(1); };
}

// Holds the committer (callbacks run on it) until released, so that what is submitted
// meanwhile goes out in the next batches together.
class CommitterGate {
 public:
  explicit CommitterGate(engine::Sequencer& sequencer) {
    sequencer.submit(spend("acme/team/agent", units(1), "hold_gate"),
                     [this](ledger::Outcome outcome) {
                       EXPECT_TRUE(outcome.ok());
                       entered_.count_down();
                       release_.wait();
                     });
    entered_.wait();
  }
  void release() { release_.count_down(); }

 private:
  std::latch entered_{1};
  std::latch release_{1};
};

}  // namespace stub::store::conformance
