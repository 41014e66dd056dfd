// The speculative pipeline (READ COMMITTED, src/store/postgres/pg_speculative.cpp): batches
// decided against the batch in flight and the cache, found stale and recomputed on the locked
// path, committed in order, replays answered from the record.
// Needs STUB_TEST_POSTGRES_URL (see postgres_fixture.hpp).

#include <gtest/gtest.h>

#include <libpq-fe.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "pg_store_fixture.hpp"

namespace stub::store::conformance {
namespace {

// A suite name of its own: gtest wants one fixture class per suite name across the binary.
class PgSpeculativeTest : public PgStoreTest {};

TEST_F(PgSpeculativeTest, AStaleSpeculativeBatchIsRecomputedOnTheLockedPath) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
  create_tree(sequencer);
  ASSERT_GT(store->counters().speculated.load(), 0u);  // read committed pipelines
  spend_elsewhere(url_, "hold_elsewhere");

  const auto outcome =
      sequencer.execute(with_key(spend("acme/team/agent", units(2), "hold_s"), "ks", "hs"));
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->rendered.status, 201) << outcome->rendered.body;
  EXPECT_EQ(store->counters().speculation_missed.load(), 1u);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(7));
  EXPECT_EQ(count_spends(*store), 2);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);

  // The same key again, a batch later: the INSERT of its record finds it (23505) and the batch
  // answers from the record on the locked path, without spending twice.
  const auto replay =
      sequencer.execute(with_key(spend("acme/team/agent", units(2), "hold_s2"), "ks", "hs"));
  ASSERT_TRUE(replay.ok()) << replay.error().message;
  EXPECT_EQ(replay->rendered.body, outcome->rendered.body);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(7));
  EXPECT_EQ(count_spends(*store), 2);
}

TEST_F(PgSpeculativeTest, ABatchDecidedOnAStaleBatchInFlightIsRecomputedToo) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(store->pipeline_depth(), 2u);
  {
    engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
    create_tree(sequencer);
  }
  const uint64_t missed = store->counters().speculation_missed.load();

  // Another writer holds the root's row and gives it a new stamp, committing only once batch 1
  // waits for that row: batch 1 is decided against the stamp it remembers, batch 2 against
  // batch 1's writes. Neither may commit as decided. The commit follows the observed lock wait,
  // never a fixed sleep, and batch 1 may wait long: a loaded machine (sanitizers, CI) must not
  // turn the wait into a lock timeout, which is a different path.
  store->faults().long_speculative_lock_wait = true;
  PGconn* other = PQconnectdb(url_.c_str());
  ASSERT_EQ(PQstatus(other), CONNECTION_OK);
  for (const char* sql : {"BEGIN", "UPDATE budgets SET stamp = 42 WHERE path = 'acme'"})
    PQclear(PQexec(other, sql));
  PGconn* watcher = PQconnectdb(url_.c_str());
  ASSERT_EQ(PQstatus(watcher), CONNECTION_OK);
  std::jthread committer([other, watcher] {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      PGresult* waiting = PQexec(watcher,
                                 "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                                 "'Lock' AND datname = current_database()");
      const bool found = PQresultStatus(waiting) == PGRES_TUPLES_OK &&
                         std::string(PQgetvalue(waiting, 0, 0)) != "0";
      PQclear(waiting);
      if (found)
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    PQfinish(watcher);
  });
  HandBatch first({with_key(spend("acme/team/agent", units(3), "hold_p1"), "kp1", "hp1")});
  HandBatch second({with_key(spend("acme/team/agent", units(4), "hold_p2"), "kp2", "hp2")});
  auto sent_first = store->send_batch(first.read, first.apply, first.committed);
  ASSERT_NE(sent_first, nullptr);
  auto sent_second = store->send_batch(second.read, second.apply, second.committed);
  ASSERT_NE(sent_second, nullptr);
  ASSERT_TRUE(store->finish_batch(*sent_first).ok());
  ASSERT_TRUE(store->finish_batch(*sent_second).ok());
  EXPECT_EQ(store->counters().speculation_missed.load(), missed + 2);

  ASSERT_EQ(first.outcomes.size(), 1u);
  ASSERT_TRUE(first.outcomes[0].ok());
  EXPECT_EQ(first.outcomes[0]->rendered.status, 201);
  ASSERT_TRUE(second.outcomes[0].ok());
  EXPECT_EQ(second.outcomes[0]->rendered.status, 201);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(7));
  EXPECT_EQ(store->get_budget("acme/team/agent").value()->spent, units(7));
  EXPECT_EQ(count_spends(*store), 2);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgSpeculativeTest, AStaleChainHeadStopsTheNextBatchBeforeItIsSent) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  {
    engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
    create_tree(sequencer);
  }
  spend_elsewhere(url_, "hold_elsewhere");
  // Batch 1's entries collide with the other instance's at once (23505): batch 2, decided on
  // batch 1's writes, is not sent; the caller finishes batch 1 and sends batch 2 again.
  HandBatch first({with_key(spend("acme/team/agent", units(3), "hold_q1"), "kq1", "hq1")});
  HandBatch second({with_key(spend("acme/team/agent", units(4), "hold_q2"), "kq2", "hq2")});
  auto sent_first = store->send_batch(first.read, first.apply, first.committed);
  ASSERT_NE(sent_first, nullptr);
  EXPECT_EQ(store->send_batch(second.read, second.apply, second.committed), nullptr);
  ASSERT_TRUE(store->finish_batch(*sent_first).ok());
  auto sent_second = store->send_batch(second.read, second.apply, second.committed);
  ASSERT_NE(sent_second, nullptr);
  ASSERT_TRUE(store->finish_batch(*sent_second).ok());
  EXPECT_EQ(first.outcomes[0]->rendered.status, 201);
  EXPECT_EQ(second.outcomes[0]->rendered.status, 201);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(12));
  EXPECT_EQ(count_spends(*store), 3);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgSpeculativeTest, PipelinedBatchesCommitInOrderAgainstEachOthersWrites) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  {
    engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
    create_tree(sequencer);
  }
  const uint64_t missed = store->counters().speculation_missed.load();
  // Three batches with two in flight at a time; the third replays the second's key, which it
  // knows from the writes of the second, still in flight.
  HandBatch first({with_key(spend("acme/team/agent", units(1), "hold_o1"), "ko1", "ho1")});
  HandBatch second({with_key(spend("acme/team", units(2), "hold_o2"), "ko2", "ho2")});
  HandBatch third({with_key(spend("acme/team", units(2), "hold_o9"), "ko2", "ho2"),
                   with_key(spend("acme/team/agent", units(3), "hold_o3"), "ko3", "ho3")});
  auto sent_first = store->send_batch(first.read, first.apply, first.committed);
  auto sent_second = store->send_batch(second.read, second.apply, second.committed);
  ASSERT_NE(sent_first, nullptr);
  ASSERT_NE(sent_second, nullptr);
  ASSERT_TRUE(store->finish_batch(*sent_first).ok());
  auto sent_third = store->send_batch(third.read, third.apply, third.committed);
  ASSERT_NE(sent_third, nullptr);
  ASSERT_TRUE(store->finish_batch(*sent_second).ok());
  ASSERT_TRUE(store->finish_batch(*sent_third).ok());
  EXPECT_EQ(store->counters().speculation_missed.load(), missed);

  ASSERT_TRUE(third.outcomes[0].ok());
  EXPECT_EQ(third.outcomes[0]->rendered.body, second.outcomes[0]->rendered.body);  // the replay
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(6));
  EXPECT_EQ(store->get_budget("acme/team").value()->spent, units(6));
  EXPECT_EQ(store->get_budget("acme/team/agent").value()->spent, units(4));
  EXPECT_EQ(count_spends(*store), 3);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgSpeculativeTest, PipelinedSequencerKeepsEachBudgetsCommandsInArrivalOrder) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  std::atomic<size_t> batches{0};
  engine::SequencerOptions options;
  options.on_batch = [&](const engine::BatchStats&) { ++batches; };
  engine::Sequencer sequencer(*store, fixed_clock(), edge_options(options), nullptr);
  create_tree(sequencer);
  constexpr int agents = 8;
  for (int agent = 0; agent < agents; ++agent) {
    const auto created = sequencer.execute(
        set_budget("acme/team/a" + std::to_string(agent), std::nullopt, ledger::Period::none));
    ASSERT_TRUE(created.ok() && created->rendered.status == 201);
  }
  // Queued faster than one commit takes, so batches split (and prefer one half of the agents)
  // while others are in flight; each agent's spends carry their submission index as the hold id.
  constexpr int per_agent = 150;
  std::latch answered(agents * per_agent);
  std::atomic<int> created{0};
  for (int i = 0; i < per_agent; ++i) {
    for (int agent = 0; agent < agents; ++agent) {
      const std::string id = "hold_a" + std::to_string(agent) + "_" + std::to_string(i);
      sequencer.submit(spend("acme/team/a" + std::to_string(agent), cents(1), id),
                       [&](ledger::Outcome outcome) {
                         created += outcome.ok() && outcome->rendered.status == 201 ? 1 : 0;
                         answered.count_down();
                       });
    }
  }
  answered.wait();
  EXPECT_EQ(created.load(), agents * per_agent);
  EXPECT_GT(batches.load(), 12u);  // the tree, the agents, and the spends in several batches
  std::map<std::string, int> last_index;
  auto page = store->list_entries("acme", 0, 100'000);
  ASSERT_TRUE(page.ok());
  for (const ledger::Entry& entry : page->entries) {
    if (entry.kind != "spend")
      continue;
    const size_t underscore = entry.hold_id.rfind('_');
    const int index = std::stoi(entry.hold_id.substr(underscore + 1));
    auto [it, first] = last_index.try_emplace(entry.budget, index);
    if (!first) {
      EXPECT_EQ(index, it->second + 1) << entry.budget << " out of order at seq " << entry.seq;
      it->second = index;
    }
  }
  EXPECT_EQ(last_index.size(), static_cast<size_t>(agents));
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgSpeculativeTest, AReplayOnTheSpeculativePathIsAnsweredFromTheRecord) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, advancing_clock(), edge_options(), nullptr);
  create_tree(sequencer);
  const Command first_put =
      with_key(set_budget("acme/team/agent", units(10), ledger::Period::none), "k-put", "h-put");
  const auto original = sequencer.execute(first_put);
  ASSERT_TRUE(original.ok()) << original.error().message;
  ASSERT_EQ(original->rendered.status, 200) << original->rendered.body;
  ASSERT_EQ(sequencer.execute(spend("acme/team/agent", units(8), "hold_r1"))->rendered.status, 201);
  ASSERT_EQ(sequencer
                .execute(with_key(set_budget("acme/team/agent", units(20), ledger::Period::none),
                                  "k-put2", "h-put2"))
                ->rendered.status,
            200);
  ASSERT_EQ(sequencer.execute(spend("acme/team/agent", units(7), "hold_r2"))->rendered.status, 201);

  // Every row the replay needs is cached, so the speculative path reads nothing; decided
  // afresh, the old limit (10.00) is below what is used (15.00): a 409 that records nothing and
  // that no INSERT would catch. It must be answered from the record.
  const uint64_t speculated = store->counters().speculated.load();
  const auto replay = sequencer.execute(first_put);
  ASSERT_TRUE(replay.ok()) << replay.error().message;
  EXPECT_EQ(replay->rendered.status, original->rendered.status);
  EXPECT_EQ(replay->rendered.body, original->rendered.body);
  EXPECT_GT(store->counters().speculated.load(), speculated - 1);
  EXPECT_EQ(store->get_budget("acme/team/agent").value()->limit, units(20));
}

}  // namespace
}  // namespace stub::store::conformance
