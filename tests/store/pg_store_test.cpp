// PostgreSQL-specific behaviour the conformance suite cannot express store-agnostically: the
// portable SQL subset, concurrent migrations, ambiguous commits, the per-commit row bound, and
// the hardening of issue 9 (refused data, the fence, timeouts, retention). The speculative
// pipeline has tests of its own (pg_speculative_test.cpp).
// Needs STUB_TEST_POSTGRES_URL (see postgres_fixture.hpp); the first two cases need no server.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "edge_commands.hpp"
#include "engine/sequencer.hpp"
#include "pg_store_fixture.hpp"
#include "postgres_fixture.hpp"
#include "store/postgres/pg_root_leases.hpp"
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

// Root leases (pg_root_leases.hpp) are the one use of advisory locks, and nothing else of the
// subset's rules bends for them: they decide no ledger state.
TEST(PgSqlSubset, RootLeaseStatementsLeaveTheSubsetOnlyForAdvisoryLocks) {
  const std::vector<const postgres::Sql*> statements = postgres::PgRootLeases::statements();
  EXPECT_GE(statements.size(), 4u);
  for (const postgres::Sql* sql : statements) {
    for (const std::string& problem : subset_violations(sql->text)) {
      if (!problem.starts_with("coordination outside rows"))
        ADD_FAILURE() << sql->name << ": " << problem;
    }
  }
  // ... and they stay off the ledger's own list.
  for (const postgres::Sql* sql : PgStore::statements()) {
    for (const postgres::Sql* lease : statements)
      EXPECT_NE(std::string_view(sql->name), std::string_view(lease->name));
  }
}

// ---- Cases against a live server --------------------------------------------------------------

std::mutex observed_mutex;
std::set<std::string> observed;  // GUARDED_BY(observed_mutex)

void observe_statement(std::string_view sql) {
  std::lock_guard lock(observed_mutex);
  observed.emplace(sql);
}

TEST_F(PgStoreTest, StatementsIssuedAtRunTimeStayInTheSubset) {
  {
    std::lock_guard lock(observed_mutex);
    observed.clear();
  }
  postgres::Connection::set_observer(observe_statement);
  {
    auto store = open_pg();
    ASSERT_NE(store, nullptr);
    engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
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
  engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
  create_tree(sequencer);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgStoreTest, ACommitWhoseAnswerWasLostIsNotAppliedAgain) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
  create_tree(sequencer);
  store->faults().lose_after_commit = 1;
  const auto outcome =
      sequencer.execute(with_key(spend("acme/team/agent", units(3), "hold_a1"), "ka", "ha"));
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->rendered.status, 201);
  EXPECT_EQ(store->counters().ambiguous.load(), 1u);
  EXPECT_EQ(store->counters().found_committed.load(), 1u);
  EXPECT_EQ(count_spends(*store), 1);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(3));

  // The store reconnected and carries on; the chain is whole.
  const auto next = sequencer.execute(spend("acme/team/agent", units(1), "hold_a2"));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->rendered.status, 201);
  EXPECT_EQ(count_spends(*store), 2);
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

TEST_F(PgStoreTest, AConnectionLostBeforeCommitIsRecomputedOnce) {
  auto store = open_pg("serializable");
  ASSERT_NE(store, nullptr);
  engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
  create_tree(sequencer);
  store->faults().lose_before_commit = 1;
  const auto outcome =
      sequencer.execute(with_key(spend("acme/team/agent", units(3), "hold_b1"), "kb", "hb"));
  ASSERT_TRUE(outcome.ok()) << outcome.error().message;
  EXPECT_EQ(outcome->rendered.status, 201);
  EXPECT_EQ(store->counters().ambiguous.load(), 1u);
  EXPECT_EQ(store->counters().found_committed.load(), 0u);
  EXPECT_EQ(count_spends(*store), 1);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(3));
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);

  // A replay of the same request answers from the record.
  const auto replay =
      sequencer.execute(with_key(spend("acme/team/agent", units(3), "hold_b9"), "kb", "hb"));
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->rendered.body, outcome->rendered.body);
  EXPECT_EQ(count_spends(*store), 1);
}

TEST_F(PgStoreTest, OldCommitMarkersArePrunedInBoundedSteps) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  {
    engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
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
  engine::Sequencer sequencer(*store, fixed_clock(), edge_options(options), nullptr);
  create_tree(sequencer);
  // Submitted faster than one commit takes, so most of them queue into large batches.
  constexpr int spends = 3'000;
  std::atomic<int> created{0};
  std::latch answered(spends);
  for (int i = 0; i < spends; ++i) {
    const std::string id = std::to_string(i);
    sequencer.submit(with_key(spend("acme/team/agent", cents(1), "hold_r" + id), "r" + id, id),
                     [&](ledger::Outcome outcome) {
                       created += outcome.ok() && outcome->rendered.status == 201 ? 1 : 0;
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

// ---- Hardening (issue 9) ----------------------------------------------------------------------

TEST_F(PgStoreTest, DataTheDatabaseRefusesFailsOnlyItsCommandNeverTheStore) {
  for (const std::string isolation : {"serializable", "read-committed"}) {
    SCOPED_TRACE(isolation);
    ASSERT_EQ(postgres_exec(url_,
                            "DROP TABLE IF EXISTS budgets, holds, api_keys, entries, "
                            "idempotency, commit_markers, webhooks, webhook_cursors, "
                            "webhook_deliveries, entry_rollup, stub_migrations"),
              "");
    auto store = open_pg(isolation);
    ASSERT_NE(store, nullptr);
    engine::Sequencer sequencer(*store, advancing_clock(), edge_options(), nullptr);
    create_tree(sequencer);

    // Straight at the store: a NUL byte (text parameters are C strings) and a byte that is not
    // UTF-8. The batch fails as refused data, and the store commits the next one.
    int good_spends = 0;
    for (const std::string& vendor : {std::string("ab\0cd", 5), std::string("ab\xff")}) {
      HandBatch bad({spend("acme/team/agent", units(2), "hold_bad", vendor)});
      const Status status = store->commit_batch(bad.read, bad.apply);
      ASSERT_FALSE(status.ok());
      EXPECT_EQ(status.error().code, ErrorCode::invalid_input);
      EXPECT_EQ(status.error().subcode, "invalid_data");
      HandBatch good(
          {spend("acme/team/agent", units(1), "hold_good_" + std::to_string(++good_spends))});
      ASSERT_TRUE(store->commit_batch(good.read, good.apply).ok());
    }
    EXPECT_EQ(count_spends(*store), 2);
    // Through the sequencer, in one batch with good commands and a hold whose id exists: only
    // the offending commands fail, the others commit, and the sequencer stays healthy.
    ASSERT_TRUE(
        sequencer.execute(hold("acme/team/agent", units(10), "hold_kept", 60 * second)).ok());
    std::vector<ledger::Outcome> outcomes(5, Error{});
    std::latch answered(5);
    // The gate outlives every answer: its callback returns before the next batch is answered.
    CommitterGate gate(sequencer);
    {
      const std::vector<ledger::Command> commands = {
          spend("acme/team/agent", units(3), "hold_ok1"),
          spend("acme/team/agent", units(4), "hold_nul", std::string("x\0y", 3)),
          hold("acme/team/agent", units(50), "hold_kept", 60 * second),
          spend("acme/team/agent", units(5), "hold_ok2", "caf\xc3"),
          with_key(spend("acme/team/agent", units(6), "hold_ok3"), "k-ok3", "h-ok3"),
      };
      for (size_t i = 0; i < commands.size(); ++i) {
        sequencer.submit(commands[i], [&, i](ledger::Outcome outcome) {
          outcomes[i] = std::move(outcome);
          answered.count_down();
        });
      }
      gate.release();
    }
    answered.wait();
    ASSERT_TRUE(outcomes[0].ok()) << outcomes[0].error().message;
    EXPECT_EQ(outcomes[0]->rendered.status, 201);
    ASSERT_FALSE(outcomes[1].ok());
    EXPECT_EQ(outcomes[1].error().subcode, "invalid_data");
    // No driver or SQL text reaches the caller; the log has it under the incident id.
    EXPECT_EQ(outcomes[1].error().message.find("SQLSTATE"), std::string::npos);
    EXPECT_NE(outcomes[1].error().message.find("incident inc_"), std::string::npos);
    ASSERT_FALSE(outcomes[2].ok());
    EXPECT_EQ(outcomes[2].error().subcode, "hold_id_exists");
    ASSERT_FALSE(outcomes[3].ok());
    EXPECT_EQ(outcomes[3].error().subcode, "invalid_data");
    ASSERT_TRUE(outcomes[4].ok()) << outcomes[4].error().message;
    EXPECT_EQ(outcomes[4]->rendered.status, 201);
    EXPECT_EQ(sequencer.health().state, engine::HealthState::ok);
    EXPECT_FALSE(sequencer.failed());

    // The hold that exists was not replaced: it still reserves its own 10.00, once.
    const auto kept = store->get_hold("hold_kept").value();
    ASSERT_TRUE(kept.has_value());
    EXPECT_EQ(kept->amount, units(10));
    EXPECT_EQ(store->get_budget("acme").value()->reserved, units(10));
    EXPECT_EQ(store->get_budget("acme").value()->spent, units(1 + 1 + 1 + 3 + 6));
    const auto next = sequencer.execute(spend("acme/team/agent", units(1), "hold_after"));
    ASSERT_TRUE(next.ok()) << next.error().message;
    EXPECT_EQ(next->rendered.status, 201);
    EXPECT_TRUE(store->verify("acme", nullptr)->ok);
  }
}

// The backend of a cut connection lives on: it waits on a row lock with its whole transaction,
// COMMIT included, already received. The ambiguous-commit check must fence it, or it commits
// after the check said "not committed" and the recomputed batch commits again.
TEST_F(PgStoreTest, ABackendThatOutlivesItsClientNeverCommitsAfterTheCheck) {
  for (const bool with_idempotency_key : {false, true}) {
    SCOPED_TRACE(with_idempotency_key ? "with an Idempotency-Key" : "without one");
    ASSERT_EQ(postgres_exec(url_,
                            "DROP TABLE IF EXISTS budgets, holds, api_keys, entries, "
                            "idempotency, commit_markers, webhooks, webhook_cursors, "
                            "webhook_deliveries, entry_rollup, stub_migrations"),
              "");
    auto store = open_pg();
    ASSERT_NE(store, nullptr);
    engine::Sequencer sequencer(*store, advancing_clock(), edge_options(), nullptr);
    create_tree(sequencer);  // the rows are cached: the next batch goes speculative

    // Another session holds the hot row.
    PGconn* holder = PQconnectdb(url_.c_str());
    ASSERT_EQ(PQstatus(holder), CONNECTION_OK);
    PQclear(PQexec(holder, "BEGIN"));
    PQclear(PQexec(holder, "SELECT path FROM budgets WHERE path = 'acme' FOR UPDATE"));

    store->faults().long_speculative_lock_wait = true;
    Command command = spend("acme/team/agent", units(7), "hold_fenced");
    if (with_idempotency_key)
      command = with_key(command, "k-fenced", "h-fenced");
    std::promise<ledger::Outcome> answer;
    sequencer.submit(command, [&](ledger::Outcome outcome) { answer.set_value(outcome); });

    const auto wait_for = [&](const std::string& sql) {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
      while (std::chrono::steady_clock::now() < deadline) {
        if (postgres_exec(url_, "DO $$ BEGIN IF NOT (" + sql +
                                    ") THEN RAISE EXCEPTION 'not yet'; END IF; END $$") == "")
          return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      return false;
    };
    // The batch's backend waits for the row lock, its COMMIT already on the wire.
    ASSERT_TRUE(
        wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = "
                 "'Lock' AND query LIKE 'SELECT path FROM budgets WHERE path = ANY%'"));
    store->sever_writers();
    // The check has run before the lock goes: the batch, recomputed on the locked path on a
    // new connection, waits for the row too.
    ASSERT_TRUE(
        wait_for("SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = "
                 "'Lock' AND query LIKE 'SELECT path, root,%FOR UPDATE'"));
    PQclear(PQexec(holder, "COMMIT"));
    PQfinish(holder);

    auto future = answer.get_future();
    ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    const ledger::Outcome outcome = future.get();
    store->faults().long_speculative_lock_wait = false;
    ASSERT_TRUE(outcome.ok()) << outcome.error().message;
    EXPECT_EQ(outcome->rendered.status, 201);
    EXPECT_EQ(store->counters().ambiguous.load(), 1u);
    EXPECT_EQ(store->counters().found_committed.load(), 0u);
    // Exactly one application, whatever the old backend did after the check.
    ASSERT_TRUE(
        wait_for("SELECT count(*) = 0 FROM pg_stat_activity WHERE wait_event_type = "
                 "'Lock'"));
    EXPECT_EQ(count_spends(*store), 1);
    EXPECT_EQ(store->get_budget("acme").value()->spent, units(7));
    EXPECT_TRUE(store->verify("acme", nullptr)->ok);
  }
}

TEST_F(PgStoreTest, IdempotencyRecordsArePrunedOldestFirstInBoundedSteps) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  {
    engine::Sequencer sequencer(*store, fixed_clock(), edge_options(), nullptr);
    create_tree(sequencer);
    for (int i = 0; i < 5; ++i) {
      const std::string n = std::to_string(i);
      ASSERT_TRUE(sequencer
                      .execute(with_key(spend("acme/team/agent", units(1), "hold_o" + n), "old" + n,
                                        "h" + n))
                      .ok());
    }
  }
  {
    engine::Sequencer sequencer(
        *store, [] { return t0 + 3'600 * second; }, edge_options(), nullptr);
    ASSERT_TRUE(
        sequencer.execute(with_key(spend("acme/team/agent", units(1), "hold_new"), "new", "hn"))
            .ok());
  }
  EXPECT_EQ(store->prune_idempotency(t0 + second, 2).value(), 2u);
  EXPECT_EQ(store->prune_idempotency(t0 + second, 2).value(), 2u);
  EXPECT_EQ(store->prune_idempotency(t0 + second, 2).value(), 1u);
  EXPECT_EQ(store->prune_idempotency(t0 + second, 2).value(), 0u);
  // Records are keyed by actor and key.
  const std::string scope = std::string(ledger::admin_actor) + ":";
  EXPECT_FALSE(store->get_idempotency("acme", scope + "old0").value().has_value());
  EXPECT_FALSE(store->get_idempotency("acme", scope + "old4").value().has_value());
  EXPECT_TRUE(store->get_idempotency("acme", scope + "new").value().has_value());
}

// Two instances committing one Idempotency-Key at the same moment (a follower that gave up on
// the leader's answer and commits the forwarded write itself, while the leader commits it too):
// the root's row lock orders them, the second reads the first's record and replays it, so the
// spend is applied once and both callers get the same answer. Both isolation levels; under READ
// COMMITTED through the speculative path as well (the record's primary key catches it).
TEST_F(PgStoreTest, TwoInstancesCommittingOneIdempotencyKeyAtOnceApplyItOnce) {
  constexpr int rounds = 40;
  int64_t applied = 0;
  for (const std::string isolation : {"read-committed", "serializable"}) {
    auto first = open_pg(isolation);
    auto second = open_pg(isolation);
    ASSERT_NE(first, nullptr);
    ASSERT_NE(second, nullptr);
    engine::Sequencer one(*first, fixed_clock(), edge_options(), nullptr);
    engine::Sequencer other(*second, fixed_clock(), edge_options(), nullptr);
    if (isolation == "read-committed")
      create_tree(one);
    for (int round = 0; round < rounds; ++round) {
      const std::string key = isolation + "-dup-" + std::to_string(round);
      std::latch start(2);
      const auto submit = [&](engine::Sequencer& sequencer, const std::string& hold_id) {
        return std::async(std::launch::async, [&sequencer, &start, key, hold_id] {
          start.arrive_and_wait();
          return sequencer.execute(
              with_key(spend("acme/team/agent", units(1), hold_id), key, "same-request"));
        });
      };
      auto a = submit(one, "hold_" + key + "_a");
      auto b = submit(other, "hold_" + key + "_b");
      const ledger::Outcome from_one = a.get();
      const ledger::Outcome from_other = b.get();
      ASSERT_TRUE(from_one.ok()) << from_one.error().message;
      ASSERT_TRUE(from_other.ok()) << from_other.error().message;
      EXPECT_EQ(from_one->rendered.status, 201);
      EXPECT_EQ(from_one->rendered.status, from_other->rendered.status);
      EXPECT_EQ(from_one->rendered.body, from_other->rendered.body) << key;
    }
    applied += rounds;
    EXPECT_EQ(count_spends(*first), applied) << isolation;
  }
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->get_budget("acme").value()->spent, units(2 * rounds));
  EXPECT_TRUE(store->verify("acme", nullptr)->ok);
}

// The first instance to ask takes a root's lease; the others find it in root_leaders; when its
// session ends (a crash), the next lookup takes the root over.
TEST_F(PgStoreTest, ARootLeaseIsTakenOnceAndFreedWithItsSession) {
  auto store = open_pg();
  ASSERT_NE(store, nullptr);
  auto first = store->open_root_leases("inst_first", "http://127.0.0.1:1001");
  auto second = store->open_root_leases("inst_second", "http://127.0.0.1:1002");
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_NE(first.value(), nullptr);
  auto led = first.value()->look_up({"acme", "globex"});
  ASSERT_TRUE(led.ok()) << led.error().message;
  ASSERT_EQ(led->size(), 2u);
  EXPECT_TRUE((*led)[0].self && (*led)[1].self);
  EXPECT_EQ(first.value()->acquired_total(), 2u);

  auto followed = second.value()->look_up({"acme"});
  ASSERT_TRUE(followed.ok());
  EXPECT_FALSE(followed->front().self);
  ASSERT_TRUE(followed->front().other.has_value());
  EXPECT_EQ(followed->front().other->url, "http://127.0.0.1:1001");
  EXPECT_EQ(followed->front().other->instance, "inst_first");
  EXPECT_EQ(second.value()->acquired_total(), 0u);
  // Asking again changes nothing, on either side.
  EXPECT_TRUE(first.value()->look_up({"acme"})->front().self);
  EXPECT_EQ(first.value()->acquired_total(), 2u);
  EXPECT_FALSE(second.value()->look_up({"acme"})->front().self);

  first.value().reset();  // The session ends, and its advisory locks with it.
  auto taken = second.value()->look_up({"acme"});
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(taken->front().self);
  EXPECT_EQ(second.value()->acquired_total(), 1u);
  auto third = store->open_root_leases("inst_third", "http://127.0.0.1:1003");
  ASSERT_TRUE(third.ok());
  auto now_led = third.value()->look_up({"acme", "globex"});
  ASSERT_TRUE(now_led.ok());
  EXPECT_EQ(now_led->front().other->instance, "inst_second");
  EXPECT_TRUE((*now_led)[1].self);  // globex's leader is gone: the row was stale

  // A graceful stop deletes the instance's rows and frees its leases.
  second.value()->release_all();
  auto after = third.value()->look_up({"acme"});
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->front().self);
  // The same root in another schema (another ledger on the same database) is another lock.
  EXPECT_NE(postgres::PgRootLeases::lock_key("a", "acme"),
            postgres::PgRootLeases::lock_key("b", "acme"));
}

TEST_F(PgStoreTest, WritersPinSynchronousCommitAndEveryConnectionHasAStatementTimeout) {
  {
    std::lock_guard lock(observed_mutex);
    observed.clear();
  }
  postgres::Connection::set_observer(observe_statement);
  auto store = open_pg();
  postgres::Connection::set_observer(nullptr);
  ASSERT_NE(store, nullptr);
  std::lock_guard lock(observed_mutex);
  EXPECT_TRUE(observed.contains("SET synchronous_commit = on"));
  EXPECT_TRUE(observed.contains("SET statement_timeout = 10000"));
}

}  // namespace
}  // namespace stub::store::conformance