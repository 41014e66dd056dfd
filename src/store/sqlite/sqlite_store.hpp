#pragma once

// The embedded default: one SQLite file in WAL mode with synchronous=FULL. Exactly one writer
// connection (owned by the committing thread) and a small pool of read connections, so reads
// never wait behind a commit.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/connection_pool.hpp"
#include "store/sqlite/sqlite_connection.hpp"
#include "store/store.hpp"

namespace stub::store::sqlite {

class SqliteStore final : public Store {
 public:
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path,
                                                   const StoreOptions& options);
  ~SqliteStore() override;

  using Store::commit_batch;
  Status commit_batch(const ledger::ReadSet& read, const ApplyBatch& apply,
                      const OnCommitted& committed) override;
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
  query::Dialect query_dialect() const override { return query::Dialect::sqlite; }
  Result<std::vector<query::AggregateRow>> run_query(const query::CompiledQuery& query) override;
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
  Result<size_t> prune_idempotency(ledger::Micros created_before, size_t limit) override;
  Result<bool> record_checkpoint(const ledger::Checkpoint& checkpoint) override;
  Result<std::vector<ledger::Checkpoint>> list_checkpoints(const std::string& root,
                                                           int64_t after_seq,
                                                           size_t limit) override;
  Result<std::optional<ledger::Checkpoint>> latest_checkpoint(const std::string& root) override;

 private:
  SqliteStore() = default;

  // A read connection checked out of the pool for the life of this object.
  using Reader = ConnectionPool<Connection>::Lease;
  Reader checkout_reader() { return readers_.checkout(); }

  Status load(Connection& connection, const ledger::ReadSet& read, ledger::WorkingSet& state);
  Status write(Connection& connection, const ledger::WorkingSet& state);

  // Copies committed WAL frames into the database file on its own thread and connection, so
  // that the committing thread never pays for checkpoints (wal_autocheckpoint is off).
  void run_checkpointer(std::unique_ptr<Connection> connection, std::string wal_path);

  Result<std::optional<ledger::IdempotencyRecord>> find_idempotency(Connection& connection,
                                                                    const std::string& root,
                                                                    const std::string& key);
  Status build_idempotency_index(Connection& connection);

  std::unique_ptr<Connection> writer_;  // used only by the committing thread
  int lock_fd_ = -1;
  std::mutex idempotency_mutex_;
  // (root, scoped key) -> idempotency_log.id of committed records.
  // fingerprint(root, scoped key) -> idempotency_log.id of committed records. A 64-bit
  // fingerprint instead of the key itself keeps the index small (no string per record); a
  // lookup checks the row it finds, so a collision costs one extra read, never a wrong answer.
  std::unordered_multimap<uint64_t, int64_t> idempotency_index_;  // GUARDED_BY(idempotency_mutex_)
  std::vector<std::pair<uint64_t, int64_t>> staged_idempotency_;  // committing thread only
  std::mutex checkpointer_mutex_;
  std::condition_variable checkpointer_wake_;
  bool stopping_ = false;  // GUARDED_BY(checkpointer_mutex_)
  std::thread checkpointer_;
  ConnectionPool<Connection> readers_;
  bool read_only_ = false;
  // The webhook delivery log, in "<db>-webhooks": its writes never take the ledger's lock.
  std::mutex outbox_mutex_;
  std::unique_ptr<Connection> outbox_;  // GUARDED_BY(outbox_mutex_)
  // Retention work (pruning idempotency records) on its own connection: each step is one short
  // write transaction between two of the committer's. They take turns on write_turn_ (held by
  // a batch's transaction and by each maintenance step's), not by SQLite's lock alone: its busy
  // handler polls, and a committer writing batch after batch won that race nearly every time
  // (the soak's pruner fell minutes behind its retention, "database is locked").
  std::mutex write_turn_;
  std::mutex maintenance_mutex_;             // taken before write_turn_
  std::unique_ptr<Connection> maintenance_;  // GUARDED_BY(maintenance_mutex_)
};

}  // namespace stub::store::sqlite
