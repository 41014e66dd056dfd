// PostgreSQL-specific behaviour the conformance suite cannot express store-agnostically: the
// portable SQL subset, concurrent migrations, ambiguous commits and the per-commit row bound.
// Needs STUB_TEST_POSTGRES_URL (see postgres_fixture.hpp); the first two cases need no server.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "edge_commands.hpp"
#include "engine/sequencer.hpp"
#include "postgres_fixture.hpp"
#include "store/postgres/pg_store.hpp"

namespace stub::store::conformance {
namespace {

using postgres::PgStore;

TEST(PgOpen, UnreachableServerIsAClearErrorWithoutThePassword) {
  const auto opened = open_store("postgres://stub:hunter2@127.0.0.1:1/stub", StoreOptions{});
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().code, ErrorCode::unavailable);
  EXPECT_EQ(opened.error().subcode, "db_connect_failed");
  EXPECT_NE(opened.error().message.find("stub:***@127.0.0.1:1"), std::string::npos)
      << opened.error().message;
  EXPECT_EQ(opened.error().message.find("hunter2"), std::string::npos);
}

TEST(PgOpen, RejectsAnUnknownIsolationLevel) {
  StoreOptions options;
  options.isolation = "snapshot";
  const auto opened = open_store("postgres://127.0.0.1:1/stub", options);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.error().subcode, "invalid_isolation");
}

// ---- The portable subset (SPEC §4, docs/postgres.md) -----------------------------------------

struct Forbidden {
  const char* pattern;
  const char* why;
};

const Forbidden forbidden[] = {
    {R"(\bTRIGGER\b)", "triggers"},
    {R"(\bFUNCTION\b|\bPROCEDURE\b|\bLANGUAGE\b|plpgsql|\bDO\s*\$)", "stored code"},
    {R"(\bREFERENCES\b|\bFOREIGN\s+KEY\b)", "foreign keys"},
    {R"(\bSEQUENCE\b|\b(SMALL|BIG)?SERIAL\b|\bnextval\b|\bIDENTITY\b)", "sequences"},
    {R"(\bSAVEPOINT\b|\bROLLBACK\s+TO\b|\bRELEASE\b)", "savepoints"},
    {R"(\bpg_advisory|\bLOCK\s+TABLE\b|\bLISTEN\b|\bNOTIFY\b)", "coordination outside rows"},
    {R"(\bTEMP(ORARY)?\b|\bUNLOGGED\b)", "temporary or unlogged tables"},
};

// Problems with one statement: forbidden constructs, and parameters without an explicit cast.
std::vector<std::string> subset_violations(const std::string& sql) {
  std::vector<std::string> out;
  for (const Forbidden& rule : forbidden) {
    if (std::regex_search(sql, std::regex(rule.pattern, std::regex::icase)))
      out.push_back(std::string(rule.why) + " in: " + sql);
  }
  const std::regex parameter(R"(\$\d+)");
  for (auto it = std::sregex_iterator(sql.begin(), sql.end(), parameter);
       it != std::sregex_iterator(); ++it) {
    const size_t end = static_cast<size_t>(it->position() + it->length());
    if (sql.compare(end, 2, "::") != 0)
      out.push_back("parameter " + it->str() + " without an explicit cast in: " + sql);
  }
  return out;
}

TEST(PgSqlSubset, TheScannerCatchesEachForbiddenConstruct) {
  for (const char* bad : {
           "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()",
           "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN END $$",
           "DO $$ BEGIN END $$",
           "CREATE TABLE x (id BIGSERIAL PRIMARY KEY)",
           "CREATE TABLE x (a TEXT REFERENCES y (a))",
           "SELECT nextval('s')",
           "SAVEPOINT a",
           "ROLLBACK TO a",
           "SELECT pg_advisory_lock(1)",
           "CREATE TEMP TABLE x (a TEXT)",
           "SELECT * FROM budgets WHERE path = $1",
       }) {
    EXPECT_FALSE(subset_violations(bad).empty()) << bad;
  }
  EXPECT_TRUE(subset_violations("SELECT * FROM budgets WHERE path = $1::text").empty());
}

TEST(PgSqlSubset, MigrationsAndEveryStatementStayInTheSubset) {
  for (const postgres::Sql* sql : PgStore::migration_statements()) {
    for (const std::string& problem : subset_violations(sql->text))
      ADD_FAILURE() << sql->name << ": " << problem;
  }
  for (const postgres::Sql* sql : PgStore::statements()) {
    for (const std::string& problem : subset_violations(sql->text))
      ADD_FAILURE() << sql->name << ": " << problem;
  }
}

// ---- Cases against a live server --------------------------------------------------------------

std::mutex observed_mutex;
std::set<std::string> observed;  // GUARDED_BY(observed_mutex)

void observe_statement(std::string_view sql) {
  std::lock_guard lock(observed_mutex);
  observed.emplace(sql);
}

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

  std::unique_ptr<PgStore> open_pg(const std::string& isolation = "read-committed") {
    StoreOptions options;
    options.isolation = isolation;
    auto opened = PgStore::open(url_, options);
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
      ASSERT_EQ(outcome->status, 201) << outcome->body;
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

TEST_F(PgStoreTest, StatementsIssuedAtRunTimeStayInTheSubset) {
  {
    std::lock_guard lock(observed_mutex);
    observed.clear();
  }
  postgres::Connection::set_observer(observe_statement);
  {
    auto store = open_pg();
    ASSERT_NE(store, nullptr);
    engine::Sequencer sequencer(*store, fixed_clock(), {}, nullptr);
    create_tree(sequencer);
    const auto spent =
        sequencer.execute(with_key(spend("acme/team/agent", units(1), "hold_s1"), "k1", "h1"));
    ASSERT_TRUE(spent.ok());
    ASSERT_TRUE(
        sequencer.execute(with_key(spend("acme/team/agent", units(1), "hold_s2"), "k1", "h1"))
            .ok());
    ASSERT_TRUE(sequencer.execute(hold("acme/team", units(2), "hold_h1", 60 * second)).ok());
    ASSERT_TRUE(sequencer.execute(capture("acme/team", "hold_h1", units(1))).ok());
    ASSERT_TRUE(sequencer.execute(create_key("acme/team", "key_1", "bot")).ok());
    ASSERT_TRUE(sequencer.execute(revoke_key("acme", "key_1")).ok());
    ASSERT_TRUE(sequencer.execute(freeze("acme/team", "stop")).ok());
    ASSERT_TRUE(store->verify("acme", nullptr).ok());
    ASSERT_TRUE(store->list_subtree("acme").ok());
    ASSERT_TRUE(store->list_roots().ok());
    ASSERT_TRUE(store->list_expired_holds(t0, 10).ok());
    ASSERT_TRUE(store->get_idempotency("acme", "k1").ok());
    ASSERT_TRUE(store->get_key("key_1").ok());
  }
  postgres::Connection::set_observer(nullptr);
  std::lock_guard lock(observed_mutex);
  EXPECT_GE(observed.size(), 20u);
  for (const std::string& sql : observed) {
    for (const std::string& problem : subset_violations(sql))
      ADD_FAILURE() << problem;
  }
}

TEST_F(PgStoreTest, ManyInstancesStartingAtOnceMigrateOnce) {
  constexpr int instances = 6;
  std::latch start(instances);
  std::atomic<int> opened{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < instances; ++i) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      auto store = PgStore::open(url_, StoreOptions{});
      EXPECT_TRUE(store.ok()) << (store.ok() ? "" : store.error().message);
      opened += store.ok() ? 1 : 0;
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  EXPECT_EQ(opened.load(), instances);
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, fixed_clock(), {}, nullptr);
  create_tree(sequencer);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgStoreTest, ACommitWhoseAnswerWasLostIsNotAppliedAgain) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, fixed_clock(), {}, nullptr);
  create_tree(sequencer);
  store->faults().lose_after_commit = 1;
  const auto outcome =
      sequencer.execute(with_key(spend("acme/team/agent", units(3), "hold_a1"), "ka", "ha"));
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->status, 201);
  EXPECT_EQ(store->counters().ambiguous.load(), 1u);
  EXPECT_EQ(store->counters().found_committed.load(), 1u);
  EXPECT_EQ(count_spends(*store), 1);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(3));

  // The store reconnected and carries on; the chain is whole.
  const auto next = sequencer.execute(spend("acme/team/agent", units(1), "hold_a2"));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->status, 201);
  EXPECT_EQ(count_spends(*store), 2);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgStoreTest, AConnectionLostBeforeCommitIsRecomputedOnce) {
  auto store = open_pg("serializable");
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, fixed_clock(), {}, nullptr);
  create_tree(sequencer);
  store->faults().lose_before_commit = 1;
  const auto outcome =
      sequencer.execute(with_key(spend("acme/team/agent", units(3), "hold_b1"), "kb", "hb"));
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->status, 201);
  EXPECT_EQ(store->counters().ambiguous.load(), 1u);
  EXPECT_EQ(store->counters().found_committed.load(), 0u);
  EXPECT_EQ(count_spends(*store), 1);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(3));
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);

  // A replay of the same request answers from the record.
  const auto replay =
      sequencer.execute(with_key(spend("acme/team/agent", units(3), "hold_b9"), "kb", "hb"));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->body, outcome->body);
  EXPECT_EQ(count_spends(*store), 1);
}

TEST_F(PgStoreTest, OldCommitMarkersArePrunedInBoundedSteps) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  {
    engine::Sequencer sequencer(*store, fixed_clock(), {}, nullptr);
    create_tree(sequencer);  // three commits, three fresh markers
  }
  // 25 markers from two hours ago.
  ASSERT_EQ(postgres_exec(url_,
                          "INSERT INTO commit_markers (id, committed_at) SELECT 'old-' || n, "
                          "(extract(epoch from now())::bigint - 7200) * 1000000 "
                          "FROM generate_series(1, 25) AS n"),
            "");
  const ledger::Micros hour_ago = std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count() -
                                  PgStore::marker_retention_micros;
  EXPECT_EQ(store->prune_commit_markers(hour_ago, 10).value(), 10u);
  EXPECT_EQ(store->prune_commit_markers(hour_ago, 10).value(), 10u);
  EXPECT_EQ(store->prune_commit_markers(hour_ago, 10).value(), 5u);
  EXPECT_EQ(store->prune_commit_markers(hour_ago, 10).value(), 0u);
  // The fresh ones stay, so an ambiguous commit of a moment ago can still be resolved.
  EXPECT_EQ(postgres_exec(url_,
                          "DO $$ BEGIN IF (SELECT count(*) FROM commit_markers) <> 3 "
                          "THEN RAISE EXCEPTION 'markers'; END IF; END $$"),
            "");
}

TEST_F(PgStoreTest, BatchesStayUnderTheRowBound) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  std::atomic<size_t> largest{0};
  std::atomic<size_t> batches{0};
  engine::SequencerOptions options;
  options.batch_size_max = 8'192;
  options.queue_capacity = 16'384;
  options.on_batch = [&](const engine::BatchStats& stats) {
    ++batches;
    size_t seen = largest.load();
    while (stats.commands > seen && !largest.compare_exchange_weak(seen, stats.commands)) {
    }
  };
  engine::Sequencer sequencer(*store, fixed_clock(), options, nullptr);
  create_tree(sequencer);
  // Submitted faster than one commit takes, so most of them queue into large batches.
  constexpr int spends = 3'000;
  std::atomic<int> created{0};
  std::latch answered(spends);
  for (int i = 0; i < spends; ++i) {
    const std::string id = std::to_string(i);
    sequencer.submit(with_key(spend("acme/team/agent", cents(1), "hold_r" + id), "r" + id, id),
                     [&](ledger::Outcome outcome) {
                       created += outcome.ok() && outcome->status == 201 ? 1 : 0;
                       answered.count_down();
                     });
  }
  answered.wait();
  EXPECT_EQ(created.load(), spends);
  EXPECT_EQ(count_spends(*store), spends);
  // Each spend writes up to 5 rows besides the 3 budget rows: at most (2500 - 3) / 5 per batch.
  EXPECT_LE(largest.load(), (store->max_rows_per_commit() - 3) / 5);
  EXPECT_GT(largest.load(), 1u);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

}  // namespace
}  // namespace stub::store::conformance
