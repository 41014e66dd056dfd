// The sequencer's own limits, on SQLite (no server needed): the queue is bounded in bytes as
// well as in commands, and health starts ok.

#include <gtest/gtest.h>

#include <latch>
#include <string>

#include "edge_commands.hpp"
#include "engine/sequencer.hpp"
#include "store/store.hpp"

namespace stub::store::conformance {
namespace {

class SequencerLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = open_store("sqlite:" + directory_.str() + "/stub.db", StoreOptions{});
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    store_ = std::move(opened).value();
  }

  TempDirectory directory_;
  std::unique_ptr<Store> store_;
};

Command spend_with_tags(const std::string& hold_id, size_t tag_bytes) {
  Command command = spend("acme", units(1), hold_id);
  command.tags_json = "{\"note\":\"" + std::string(tag_bytes, 'x') + "\"}";
  return command;
}

TEST_F(SequencerLimitsTest, TheQueueIsBoundedInBytesAsWellAsInCommands) {
  engine::SequencerOptions options;
  options.queue_bytes_max = 64 * 1024;
  engine::Sequencer sequencer(
      *store_, [] { return t0; }, edge_options(options), nullptr);
  ASSERT_EQ(sequencer.execute(set_budget("acme", units(1000))).value().rendered.status, 201);
  EXPECT_EQ(sequencer.health().state, engine::HealthState::ok);

  // One command above the bound on its own is refused at once.
  const auto huge = sequencer.execute(spend_with_tags("hold_huge", 100 * 1024));
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().code, ErrorCode::overloaded);
  EXPECT_EQ(huge.error().subcode, "overloaded");

  // Held on the committer (callbacks run there), the queue fills by bytes: two commands of
  // 40 KiB do not fit in 64 KiB, though the count is far from its bound.
  std::latch entered(1), release(1), answered(2);
  sequencer.submit(spend("acme", units(1), "hold_gate"), [&](ledger::Outcome outcome) {
    EXPECT_TRUE(outcome.ok());
    entered.count_down();
    release.wait();
  });
  entered.wait();
  ledger::Outcome first = Error{}, second = Error{};
  sequencer.submit(spend_with_tags("hold_a", 40 * 1024), [&](ledger::Outcome outcome) {
    first = std::move(outcome);
    answered.count_down();
  });
  EXPECT_GT(sequencer.queue_bytes(), 40u * 1024);
  sequencer.submit(spend_with_tags("hold_b", 40 * 1024), [&](ledger::Outcome outcome) {
    second = std::move(outcome);
    answered.count_down();
  });
  ASSERT_FALSE(second.ok());  // answered at once, on this thread
  EXPECT_EQ(second.error().code, ErrorCode::overloaded);
  release.count_down();
  answered.wait();
  ASSERT_TRUE(first.ok()) << first.error().message;
  EXPECT_EQ(first->rendered.status, 201);
  EXPECT_EQ(sequencer.queue_bytes(), 0u);

  // Room again once the queue drained.
  const auto later = sequencer.execute(spend_with_tags("hold_c", 40 * 1024));
  ASSERT_TRUE(later.ok()) << later.error().message;
  EXPECT_EQ(later->rendered.status, 201);
}

TEST(SequencerCommandBytes, CountsTheTextACommandCarries) {
  const Command small = spend("acme", units(1), "hold_1");
  const Command large = spend_with_tags("hold_1", 10'000);
  EXPECT_GE(engine::command_bytes(large), engine::command_bytes(small) + 9'000);
  EXPECT_GE(engine::command_bytes(small), sizeof(Command));
}

}  // namespace
}  // namespace stub::store::conformance
