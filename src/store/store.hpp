#pragma once

// The Store: durable state in domain terms. The sequencer commits batches through
// commit_batch; everything else is a read that never queues behind writes. SQLite implements
// it today (sqlite/); PostgreSQL implements the same interface and passes the same
// conformance suite (tests/store/store_conformance.cpp).
//
// Thread safety: commit_batch is called by one thread per store (the sequencer's committer);
// every read method may be called from any number of threads at once.

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ledger/batch.hpp"
#include "ledger/chain.hpp"
#include "ledger/checkpoint.hpp"
#include "ledger/model.hpp"
#include "ledger/result.hpp"
#include "query/compiled_query.hpp"
#include "store/root_leases.hpp"

namespace stub::store {

// Runs the sequencer's decisions against the state read in the open transaction. It may be
// called more than once for one commit (a store that detects a write conflict re-reads and
// calls it again), so it must start from scratch each time.
using ApplyBatch = std::function<void(ledger::WorkingSet&)>;
using OnCommitted = std::function<void(ledger::WorkingSet&)>;

// A batch handed to Store::send_batch and not yet finished. Opaque to the caller.
class BatchInFlight {
 public:
  virtual ~BatchInFlight() = default;
};

struct EntryPage {
  std::vector<ledger::Entry> entries;
  int64_t next_after = 0;  // the last seq returned, or the `after` asked for when empty

  // A page of `entries` (in seq order) read after `after`, or the read's error.
  static Result<EntryPage> of(Result<std::vector<ledger::Entry>> entries, int64_t after) {
    if (!entries.ok())
      return entries.error();
    EntryPage page;
    page.entries = std::move(entries).value();
    page.next_after = page.entries.empty() ? after : page.entries.back().seq;
    return page;
  }
};

// One event owed to one webhook, and what became of it: the dispatcher's bookkeeping, kept
// outside the ledger's commits.
struct WebhookDelivery {
  std::string webhook;   // the webhook's name
  std::string event_id;  // "evt_<root>_<seq>_<event>": the same on every attempt and instance
  std::string root;
  int64_t seq = 0;  // the entry it reports
  std::string event;
  std::string payload;             // the exact JSON body; each attempt signs it anew
  std::string status = "pending";  // pending, succeeded, failed (gave up)
  int64_t attempts = 0;
  int64_t last_status = 0;  // the receiver's last HTTP status, 0 when it gave none
  std::string last_error;
  ledger::Micros next_attempt_at = 0;
  ledger::Micros created_at = 0;
  ledger::Micros delivered_at = 0;  // zero until it succeeded
};

// Called every `progress_every` entries during a verify with the count checked so far.
using VerifyProgress = std::function<void(int64_t checked, int64_t total)>;

class Store {
 public:
  virtual ~Store() = default;

  // Reads `read` into a WorkingSet inside one write transaction, calls `apply`, writes what it
  // changed and commits. Returns only after the commit is durable. An Error means nothing was
  // committed; ErrorCode::unavailable means the store cannot take writes any more.
  // `committed`, when given, runs after the commit is durable and visible to readers, with the
  // state as committed (the event stream takes its entries from there, so a subscriber that
  // joins while a batch commits either sees it in its backlog read or gets it published).
  virtual Status commit_batch(const ledger::ReadSet& read, const ApplyBatch& apply,
                              const OnCommitted& committed) = 0;
  Status commit_batch(const ledger::ReadSet& read, const ApplyBatch& apply) {
    return commit_batch(read, apply, nullptr);
  }

  // ---- Pipelined commits. A store whose pipeline_depth() is above one can have that many
  // batches in flight: send_batch decides a batch (calling `apply`) against the state the
  // batches already in flight will leave, sends it and returns without waiting for its COMMIT;
  // finish_batch waits for the OLDEST batch in flight and returns what commit_batch would have
  // (after recomputing it, should the state it was decided against turn out stale). `read`,
  // `apply` and `committed` must stay valid until finish_batch returns for that batch. With
  // batches in flight, send_batch may return nullptr: this batch cannot be decided yet; finish
  // every batch in flight and send it again (with none in flight it never returns nullptr).
  // The default is depth one: send_batch commits at once and finish_batch reports it.
  virtual size_t pipeline_depth() const { return 1; }
  // How many batches the store would keep in flight for the next one, at most
  // pipeline_depth(): the sequencer sizes batches by it (a store that commits one at a time for
  // now, on its locked path, gets whole batches rather than halves). Committing thread only.
  virtual size_t pipeline_depth_now() const { return pipeline_depth(); }
  virtual std::unique_ptr<BatchInFlight> send_batch(const ledger::ReadSet& read,
                                                    const ApplyBatch& apply,
                                                    const OnCommitted& committed);
  virtual Status finish_batch(BatchInFlight& batch);

  virtual Result<std::optional<ledger::BudgetNode>> get_budget(const std::string& path) = 0;
  // Every node from the root down to `path`, root first; empty if any is missing.
  Result<std::vector<ledger::BudgetNode>> get_lineage(const std::string& path);
  // The root and every node below it, in path order.
  virtual Result<std::vector<ledger::BudgetNode>> list_subtree(const std::string& root) = 0;
  virtual Result<std::vector<std::string>> list_roots() = 0;
  virtual Result<std::optional<ledger::Hold>> get_hold(const std::string& id) = 0;
  // Open holds (held, or pending approval) whose expiry is at or before `now`, oldest first.
  virtual Result<std::vector<ledger::Hold>> list_expired_holds(ledger::Micros now,
                                                               size_t limit) = 0;
  // Up to `limit` of the open holds expired at `now`, in id order starting after `pivot` and
  // wrapping around: instances that sweep from random pivots settle different holds instead of
  // all racing on the same oldest ones. Chosen among the oldest few times `limit` expired.
  Result<std::vector<ledger::Hold>> list_expired_holds_from(ledger::Micros now,
                                                            const std::string& pivot, size_t limit);
  // Active delegations (and runs) whose key's life ended at or before `now`, soonest first:
  // (root, path) of each, at most `limit`.
  struct LapsedDelegation {
    std::string root;
    std::string path;
  };
  virtual Result<std::vector<LapsedDelegation>> list_lapsed_delegations(ledger::Micros now,
                                                                        size_t limit) = 0;
  // Holds waiting for approval in a root, oldest first.
  virtual Result<std::vector<ledger::Hold>> list_pending_approvals(const std::string& root,
                                                                   size_t limit) = 0;
  virtual Result<std::optional<ledger::ApiKey>> get_key(const std::string& id) = 0;
  virtual Result<EntryPage> list_entries(const std::string& root, int64_t after, size_t limit) = 0;
  virtual Result<std::optional<ledger::IdempotencyRecord>> get_idempotency(
      const std::string& root, const std::string& key) = 0;

  // Re-verifies a root's whole chain from the stored entries (SPEC guarantee 5), reconciles
  // every budget of the root with its entries' postings, and compares the chain with the
  // given signed checkpoints (their signatures already checked by the caller).
  struct VerifyOptions {
    std::vector<ledger::Checkpoint> checkpoints;  // this root's
  };
  Result<ledger::VerifyReport> verify(const std::string& root, const VerifyProgress& progress,
                                      const VerifyOptions& options);
  Result<ledger::VerifyReport> verify(const std::string& root, const VerifyProgress& progress) {
    return verify(root, progress, VerifyOptions{});
  }

  // The highest stored seq of a root's entries and its recorded head seq, read in ONE snapshot
  // (verify uses it to find entries inserted behind the ledger's back).
  struct EntryBounds {
    int64_t max_seq = 0;
    int64_t head_seq = 0;
  };
  virtual Result<EntryBounds> entry_bounds(const std::string& root) = 0;

  // ---- Signed checkpoints (ledger/checkpoint.hpp), written by the checkpoint signer outside
  // the ledger's commits (SQLite: a short transaction of its own on the maintenance
  // connection, interleaved with the committer's by SQLite's lock). -------------------------
  //
  // Stores a checkpoint; false when the root already has one at that seq (another instance,
  // or a restart, signed it first), which is kept.
  virtual Result<bool> record_checkpoint(const ledger::Checkpoint& checkpoint) = 0;
  // A root's checkpoints after `after_seq`, ascending, at most `limit`.
  virtual Result<std::vector<ledger::Checkpoint>> list_checkpoints(const std::string& root,
                                                                   int64_t after_seq,
                                                                   size_t limit) = 0;
  // The root's checkpoint with the highest seq, if any.
  virtual Result<std::optional<ledger::Checkpoint>> latest_checkpoint(const std::string& root) = 0;

  // ---- Webhooks. The configuration is ledger state, written by commits. --------------------
  virtual Result<std::vector<ledger::Webhook>> list_webhooks() = 0;
  virtual Result<std::optional<ledger::Webhook>> get_webhook(const std::string& name) = 0;

  // ---- Vendors (the proxy's upstreams). The configuration is ledger state, written by
  // commits; the credential in a row is sealed. ------------------------------------------------
  virtual Result<std::vector<ledger::Vendor>> list_vendors() = 0;
  virtual Result<std::optional<ledger::Vendor>> get_vendor(const std::string& name) = 0;

  // ---- Webhook deliveries: the dispatcher's bookkeeping, never in a ledger commit (SQLite
  // keeps it in a file of its own, so it never takes the ledger's write lock). -------------
  //
  // Takes or renews `owner`'s delivery lease on `webhook` until `lease_until` and returns its
  // cursor (the last seq of its root already turned into deliveries), or nullopt while another
  // owner's lease runs. A webhook re-created under the same name starts at its new since_seq.
  virtual Result<std::optional<int64_t>> claim_webhook(const ledger::Webhook& webhook,
                                                       const std::string& owner, ledger::Micros now,
                                                       ledger::Micros lease_until) = 0;
  // Records `deliveries` and moves the cursor to `cursor` (if `owner` still holds the lease),
  // atomically. A delivery already recorded (same webhook and event id) is left as it is.
  virtual Status enqueue_deliveries(const std::string& webhook, const std::string& owner,
                                    int64_t cursor,
                                    const std::vector<WebhookDelivery>& deliveries) = 0;
  // Pending deliveries whose next attempt is due at `now`, soonest first.
  virtual Result<std::vector<WebhookDelivery>> due_deliveries(const std::string& webhook,
                                                              ledger::Micros now, size_t limit) = 0;
  // Stores the outcome of an attempt (status, attempts, last_*, next_attempt_at, delivered_at).
  virtual Status record_delivery(const WebhookDelivery& delivery) = 0;
  // The delivery log of a webhook, newest first.
  virtual Result<std::vector<WebhookDelivery>> list_deliveries(const std::string& webhook,
                                                               size_t limit) = 0;

  // ---- Constrained queries (src/query). ------------------------------------------------------
  // The SQL dialect the query compiler writes for this store.
  virtual query::Dialect query_dialect() const = 0;
  // Runs a compiled aggregate on a read connection: its leading `key_columns` columns are group
  // keys, then the sum of amounts and the count. More than `rows_max` rows is an error
  // (invalid_input "query_too_broad") rather than an unbounded read.
  virtual Result<std::vector<query::AggregateRow>> run_query(const query::CompiledQuery& query) = 0;

  // ---- Retention. ---------------------------------------------------------------------------
  // Deletes up to `limit` idempotency records created before `created_before`; returns how many.
  virtual Result<size_t> prune_idempotency(ledger::Micros created_before, size_t limit) {
    (void)created_before;
    (void)limit;
    return size_t{0};
  }

  // The most rows one commit may write (0: no bound). PostgreSQL-compatible distributed
  // engines cap a transaction's rows, so the sequencer sizes batches to stay under it.
  virtual size_t max_rows_per_commit() const { return 0; }

  // Running totals of what the store did on its own to commit (retries, reconnects, ...), by
  // name, for /metrics. Empty for stores with nothing to report.
  struct EventCount {
    std::string name;
    uint64_t total = 0;
  };
  virtual std::vector<EventCount> event_counts() const { return {}; }

  // Whether the store can take writes now, found out with a round trip where that means
  // anything (PostgreSQL reconnects a lost writer and settles a commit left unknown). The
  // sequencer asks while degraded, with no batch in flight, so writes resume without a caller.
  virtual Status probe() { return Status::success(); }

  // ---- Contended roots and their leaders (store/root_leases.hpp). Only a store that other
  // processes write at the same time (PostgreSQL) has either. ---------------------------------
  //
  // Called on the committing thread with a root each time a commit finds rows of it that
  // another writer changed since this store last wrote or read them. Set before the first
  // commit; it must not block.
  using ForeignWriteListener = std::function<void(const std::string& root)>;
  virtual void watch_foreign_writes(ForeignWriteListener listener) { (void)listener; }
  // Leases on a connection of their own, for instance `instance` taking forwarded requests at
  // `url`; nullptr when the store has no such thing (SQLite has one writer) or the database
  // cannot hold them (an engine without advisory locks): then every instance commits for itself.
  virtual Result<std::unique_ptr<RootLeases>> open_root_leases(const std::string& instance,
                                                               const std::string& url) {
    (void)instance;
    (void)url;
    return std::unique_ptr<RootLeases>();
  }
};

struct StoreOptions {
  size_t read_connections = 4;
  bool read_only = false;  // offline verification opens the database without writing
  // PostgreSQL: "read-committed" (default) or "serializable".
  std::string isolation = "read-committed";
};

// A database URL fit to print or log: the password of a postgres:// URL (user:PASSWORD@, or a
// password= parameter) and of a key=value connection string is replaced by ***.
std::string redact_database_url(std::string_view url);

// Opens a store from a URL: a path, "sqlite:PATH", "postgres://..." (postgresql:// too, with
// libpq's multi-host "host=a:1,b:2" authority) or a libpq keyword string ("host=a,b,c ...").
Result<std::unique_ptr<Store>> open_store(const std::string& url, const StoreOptions& options);

}  // namespace stub::store
