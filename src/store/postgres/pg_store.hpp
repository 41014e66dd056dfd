#pragma once

// The store at scale: PostgreSQL, with any number of `stub serve` instances on one database and
// no coordination between them. Two writer connections (the committing thread's) and a pool of
// read connections. The locked path commits a batch in two round trips (libpq pipeline mode):
//
//   1. BEGIN; lock the batch's budget rows in path order (SELECT ... FOR UPDATE); read its
//      holds, keys and idempotency records
//   2. the writes (one multi-row statement per table, each touched row written once), a
//      commit marker, COMMIT
//
// Every command locks its root's row, which carries the chain head, so batches of different
// instances on one root serialize on it (READ COMMITTED: a lock wait, then fresh reads;
// SERIALIZABLE: a 40001). Conflicts (40001, 40P01, 23505) recompute the whole batch against
// fresh state after a jittered, bounded backoff. A connection lost while the COMMIT may have
// run is resolved through the batch's commit marker before anything is recomputed. The SQL is
// the subset described in docs/postgres.md; tests/store/pg_store_test.cpp enforces it.
//
// Under READ COMMITTED the store also pipelines (pipeline_depth 2, the speculative path): a
// batch is decided against rows read WITHOUT locks, overlaid with what the batch still in
// flight on the other connection will write, and sent as ONE round trip that locks its budget
// rows in path order and re-checks each row's stamp (a random id of the commit that last wrote
// it) before writing anything. So batch N+1 is read, decided and on the wire while batch N
// commits, and starts writing the moment N's locks go. A stale stamp aborts the transaction
// and the batch is recomputed on the locked path. docs/postgres.md has the argument.

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/connection_pool.hpp"
#include "store/postgres/pg_connection.hpp"
#include "store/store.hpp"

namespace stub::store::postgres {

enum class Isolation { read_committed, serializable };

struct CommitCounters {
  std::atomic<uint64_t> conflicts{0};           // attempts recomputed after 40001/40P01/23505
  std::atomic<uint64_t> reconnects{0};          // connections re-established
  std::atomic<uint64_t> ambiguous{0};           // commits whose outcome had to be looked up
  std::atomic<uint64_t> found_committed{0};     // ...and had in fact committed
  std::atomic<uint64_t> speculated{0};          // batches sent on the speculative path
  std::atomic<uint64_t> speculation_missed{0};  // ...found stale and recomputed, locked
  std::atomic<uint64_t> foreign_writes{0};      // locked batches that found another writer's rows
  std::atomic<uint64_t> settled_later{0};       // unknown outcomes settled before a later write
};

// Fault injection for tests: each counter is how many upcoming commits to break that way.
struct Faults {
  // The connection dies after the writes were sent but before COMMIT: nothing committed.
  std::atomic<int> lose_before_commit{0};
  // COMMIT succeeds but its answer is lost: the batch committed and must not run again.
  std::atomic<int> lose_after_commit{0};
  // Speculative transactions wait up to 30 s for a lock instead of 200 ms.
  std::atomic<bool> long_speculative_lock_wait{false};
};

class PgStore final : public Store {
 public:
  static Result<std::unique_ptr<PgStore>> open(const std::string& url, const StoreOptions& options);
  ~PgStore() override = default;

  using Store::commit_batch;
  Status commit_batch(const ledger::ReadSet& read, const ApplyBatch& apply,
                      const OnCommitted& committed) override;
  size_t pipeline_depth() const override {
    return isolation_ == Isolation::read_committed ? writers_.size() : 1;
  }
  // One while speculation is paused (the next batch takes the locked path).
  size_t pipeline_depth_now() const override {
    return speculation_paused_ > 0 ? 1 : pipeline_depth();
  }
  std::unique_ptr<BatchInFlight> send_batch(const ledger::ReadSet& read, const ApplyBatch& apply,
                                            const OnCommitted& committed) override;
  Status finish_batch(BatchInFlight& batch) override;
  Result<std::optional<ledger::BudgetNode>> get_budget(const std::string& path) override;
  Result<std::vector<ledger::BudgetNode>> list_subtree(const std::string& root) override;
  Result<std::vector<std::string>> list_roots() override;
  Result<std::optional<ledger::Hold>> get_hold(const std::string& id) override;
  Result<std::vector<ledger::Hold>> list_expired_holds(ledger::Micros now, size_t limit) override;
  Result<std::vector<LapsedDelegation>> list_lapsed_delegations(ledger::Micros now,
                                                                size_t limit) override;
  Result<std::vector<ledger::Hold>> list_pending_approvals(const std::string& root,
                                                           size_t limit) override;
  Result<std::optional<ledger::ApiKey>> get_key(const std::string& id) override;
  Result<EntryPage> list_entries(const std::string& root, int64_t after, size_t limit) override;
  Result<std::optional<ledger::IdempotencyRecord>> get_idempotency(const std::string& root,
                                                                   const std::string& key) override;
  Result<EntryBounds> entry_bounds(const std::string& root) override;
  query::Dialect query_dialect() const override { return query::Dialect::postgres; }
  Result<std::vector<query::AggregateRow>> run_query(const query::CompiledQuery& query) override;
  Result<bool> record_checkpoint(const ledger::Checkpoint& checkpoint) override;
  Result<std::vector<ledger::Checkpoint>> list_checkpoints(const std::string& root,
                                                           int64_t after_seq,
                                                           size_t limit) override;
  Result<std::optional<ledger::Checkpoint>> latest_checkpoint(const std::string& root) override;
  Result<std::vector<ledger::Webhook>> list_webhooks() override;
  Result<std::optional<ledger::Webhook>> get_webhook(const std::string& name) override;
  Result<std::vector<ledger::Vendor>> list_vendors() override;
  Result<std::optional<ledger::Vendor>> get_vendor(const std::string& name) override;
  Result<std::optional<int64_t>> claim_webhook(const ledger::Webhook& webhook,
                                               const std::string& owner, ledger::Micros now,
                                               ledger::Micros lease_until) override;
  Status enqueue_deliveries(const std::string& webhook, const std::string& owner, int64_t cursor,
                            const std::vector<WebhookDelivery>& deliveries) override;
  Result<std::vector<WebhookDelivery>> due_deliveries(const std::string& webhook,
                                                      ledger::Micros now, size_t limit) override;
  Status record_delivery(const WebhookDelivery& delivery) override;
  Result<std::vector<WebhookDelivery>> list_deliveries(const std::string& webhook,
                                                       size_t limit) override;
  // Reconnects a lost writer, proves it with a round trip and settles any commit whose outcome
  // was left unknown. The committing thread, with no batch in flight.
  Status probe() override;
  Result<size_t> prune_idempotency(ledger::Micros created_before, size_t limit) override;
  // Aurora DSQL's limit is 3,000 rows per transaction; stay clear of it.
  size_t max_rows_per_commit() const override { return 2'500; }

  std::vector<EventCount> event_counts() const override;
  void watch_foreign_writes(ForeignWriteListener listener) override {
    foreign_write_listener_ = std::move(listener);
  }
  // PgRootLeases (pg_root_leases.hpp) on a connection of its own.
  Result<std::unique_ptr<RootLeases>> open_root_leases(const std::string& instance,
                                                       const std::string& url) override;
  const CommitCounters& counters() const { return counters_; }
  // Deletes up to `limit` commit markers older than `older_than` (they only matter while an
  // ambiguous COMMIT is resolved, seconds after it). The committing thread, or no sequencer.
  Result<uint64_t> prune_commit_markers(ledger::Micros older_than, size_t limit);
  static constexpr ledger::Micros marker_retention_micros = 3'600'000'000;  // an hour
  Faults& faults() { return faults_; }
  // Tests, from any thread: cuts the writers' sockets as a lost network would, while their
  // backends (perhaps waiting on a lock) live on.
  void sever_writers() {
    for (std::unique_ptr<Connection>& writer : writers_)
      writer->sever();
  }
  // How long a batch waits for an unreachable database before answering store_unavailable,
  // and an ambiguous COMMIT for the database to tell whether it committed.
  static constexpr std::chrono::seconds unreachable_wait{5};
  static constexpr std::chrono::seconds resolve_wait{10};

  // Every statement the store can issue and the migrations' DDL, for the SQL-subset scan.
  static std::vector<const Sql*> statements();
  static std::vector<const Sql*> migration_statements();

 private:
  PgStore() = default;

  using Reader = ConnectionPool<Connection>::Lease;
  Reader checkout_reader() { return readers_.checkout(); }
  // Runs one read query on a pooled connection, reconnecting once if the connection broke.
  Result<ResultPtr> read_query(const Query& query);
  // Runs `queries` between BEGIN and COMMIT on a pooled connection (the delivery log's writes);
  // the results of `queries`, in order.
  Result<std::vector<ResultPtr>> pooled_transaction(std::span<const Query> queries);

  // A batch sent on the speculative path, or already committed on the locked one.
  struct Flight;

  // The locked path on writer `connection`, retried until committed or out of time.
  Status commit_locked(size_t connection, const ledger::ReadSet& read, const ApplyBatch& apply,
                       const OnCommitted& committed);
  enum class AttemptResult { committed, retry, failed };
  AttemptResult attempt(size_t connection, const ledger::ReadSet& read, const ApplyBatch& apply,
                        const OnCommitted& committed, Status& failure);
  // The speculative path: decides the batch and sends it; nullptr when it cannot be decided
  // that way now (the caller falls back to draining and the locked path).
  std::unique_ptr<Flight> speculate(size_t connection, const ledger::ReadSet& read,
                                    const ApplyBatch& apply, const OnCommitted& committed);
  // After a connection was lost with COMMIT in flight: did the batch commit? Fences it (see
  // the definition), retrying for up to `wait`.
  Result<bool> resolve_ambiguous(size_t connection, const std::string& marker,
                                 std::chrono::steady_clock::duration wait);
  // Resolves the commits left unknown (their callers were told so) before anything else is
  // written: the database must not still be able to commit one after later batches.
  Status settle_unresolved(size_t connection);
  Status ensure_writer(size_t connection);
  void after_commit(size_t connection);

  std::string url_;
  Isolation isolation_ = Isolation::read_committed;
  // Used only by the committing thread: one batch in flight on each.
  std::array<std::unique_ptr<Connection>, 2> writers_;
  ConnectionPool<Connection> readers_;
  // Committing thread only: the speculative batches in flight, oldest first (their writes are
  // the overlay the next batch is decided against), and how many batches to keep off the
  // speculative path after one was found stale (doubling while they keep going stale).
  std::deque<Flight*> in_flight_;
  // Budget rows as this instance last committed or read them, with their stamps: what the
  // speculative path decides against when no batch in flight writes the row. Only a hint (the
  // guard catches a stale row); cleared when one was stale, and when it grows past a bound.
  struct CachedBudget {
    ledger::BudgetNode node;
    int64_t stamp = 0;
  };
  std::unordered_map<std::string, CachedBudget> cache_;
  void remember(const std::string& path, const ledger::BudgetNode& node, int64_t stamp);
  // Committing thread only: markers of batches whose outcome is still unknown.
  std::vector<std::string> unresolved_;
  size_t speculation_paused_ = 0;
  size_t speculation_pause_next_ = 1;
  // Batches kept on the locked path after one found a row another instance wrote.
  static constexpr size_t contended_pause = 64;
  size_t commits_since_prune_ = 0;
  ForeignWriteListener foreign_write_listener_;  // set before the first commit
  CommitCounters counters_;
  Faults faults_;
};

}  // namespace stub::store::postgres
