#include "store/postgres/pg_store.hpp"

// The speculative pipeline (READ COMMITTED): batches decided against what the batch in flight
// writes and a cache of budget rows with their stamps, sent in one round trip that re-checks
// every stamp under the row locks (docs/postgres.md, "The speculative pipeline"); and the
// pipelining API (send_batch, finish_batch) over it and the locked path.

#include <algorithm>
#include <cassert>
#include <set>
#include <string>

#include "store/postgres/pg_batch_rows.hpp"
#include "store/postgres/pg_statements.hpp"

namespace stub::store::postgres {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::IdempotencyRecord;

// ---- Batches in flight ------------------------------------------------------------------------

struct PgStore::Flight final : BatchInFlight {
  const ledger::ReadSet* read = nullptr;
  const ApplyBatch* apply = nullptr;
  const OnCommitted* committed = nullptr;
  // On the speculative path: sent on writers_[connection], `results` statements to collect.
  // Otherwise already committed (or not) on the locked path, with `status` the outcome.
  bool on_wire = false;
  Status status = Status::success();
  size_t connection = 0;
  size_t results = 0;
  // The results read so far (all of them once `collected`), and how many statements up to and
  // including the one that takes the row locks.
  Connection::PipelineOutcome outcome;
  size_t locked_after = 0;
  bool lost = false;                  // the connection went while reading
  std::optional<DbError> send_error;  // the send itself failed: the outcome is unknown
  bool lose_answer = false;           // fault injection: COMMIT's answer is "lost"
  // An earlier batch in flight turned out stale, and this one may rest on its writes.
  bool doomed = false;
  // The state as decided; for the next batch, the rows this one writes (budget rows with the
  // stamp they get) are the overlay on what the database shows until it commits.
  ledger::WorkingSet state;
  Stamps written_budgets;
  std::unordered_set<std::string> created_budgets;
  std::string marker;
};

Status PgStore::commit_batch(const ledger::ReadSet& read, const ApplyBatch& apply,
                             const OnCommitted& committed) {
  // One at a time: with nothing in flight, send_batch always takes the batch.
  assert(in_flight_.empty());
  std::unique_ptr<BatchInFlight> flight = send_batch(read, apply, committed);
  return finish_batch(*flight);
}

std::unique_ptr<BatchInFlight> PgStore::send_batch(const ledger::ReadSet& read,
                                                   const ApplyBatch& apply,
                                                   const OnCommitted& committed) {
  // A kill switch reads whole subtrees, which only the locked path does.
  if (isolation_ == Isolation::read_committed && read.open_hold_subtrees.empty() &&
      speculation_paused_ == 0) {
    // The connection after the newest batch's: none of the batches in flight uses it.
    const size_t connection =
        in_flight_.empty() ? 0 : (in_flight_.back()->connection + 1) % writers_.size();
    if (auto flight = speculate(connection, read, apply, committed))
      return flight;
  }
  if (!in_flight_.empty())
    return nullptr;
  if (speculation_paused_ > 0)
    --speculation_paused_;
  auto flight = std::make_unique<Flight>();
  flight->status = commit_locked(0, read, apply, committed);
  return flight;
}

Status PgStore::finish_batch(BatchInFlight& batch) {
  auto& flight = static_cast<Flight&>(batch);
  if (!flight.on_wire)
    return flight.status;
  assert(!in_flight_.empty() && in_flight_.front() == &flight);
  in_flight_.pop_front();
  Connection& connection = *writers_[flight.connection];
  Connection::PipelineOutcome& outcome = flight.outcome;
  if (flight.send_error) {
    outcome.error = flight.send_error;
  } else if (!flight.lost &&
             connection.collect_results(flight.results - outcome.results.size(), outcome)) {
    connection.collect_sync(outcome);
  }
  if (!outcome.error && flight.lose_answer) {
    connection.sever();  // COMMIT ran; its answer is "lost".
    outcome.error = DbError{Failure::connection_lost, "", "connection lost (injected)"};
  }
  const auto landed = [&] {
    speculation_pause_next_ = 1;
    for (const auto& [path, stamp] : flight.written_budgets)
      remember(path, flight.state.budgets.at(path), stamp);
    if (*flight.committed)
      (*flight.committed)(flight.state);
    after_commit(flight.connection);
    return Status::success();
  };
  if (!outcome.error)
    return landed();
  if (outcome.error->failure == Failure::connection_lost) {
    // The COMMIT may or may not have run: find out before anything is recomputed.
    counters_.ambiguous.fetch_add(1, std::memory_order_relaxed);
    auto resolved = resolve_ambiguous(flight.connection, flight.marker, resolve_wait);
    if (!resolved.ok()) {
      // Settled before the next write (settle_unresolved); the batches sent after it rest on
      // it and are recomputed, and nothing is decided against the cache meanwhile.
      unresolved_.push_back(flight.marker);
      cache_.clear();
      for (Flight* later : in_flight_)
        later->doomed = true;
      return outcome_unknown(resolved.error().message);
    }
    if (resolved.value()) {
      counters_.found_committed.fetch_add(1, std::memory_order_relaxed);
      return landed();
    }
  } else {
    (void)connection.exec(rollback);
  }
  // Stale (another commit wrote a row it was decided against), conflicting, or lost before
  // COMMIT: nothing of it committed. Batches sent after it may rest on its writes; none is
  // decided against them, and the next few batches take the locked path, which waits for
  // other writers instead of racing them.
  counters_.speculation_missed.fetch_add(1, std::memory_order_relaxed);
  cache_.clear();
  for (Flight* later : in_flight_)
    later->doomed = true;
  speculation_paused_ = speculation_pause_next_;
  speculation_pause_next_ = std::min<size_t>(speculation_pause_next_ * 2, 256);
  return commit_locked(flight.connection, *flight.read, *flight.apply, *flight.committed);
}

void PgStore::remember(const std::string& path, const BudgetNode& node, int64_t stamp) {
  constexpr size_t cache_max = 100'000;  // budget rows; a bigger fleet re-reads the cold ones
  if (cache_.size() >= cache_max && !cache_.contains(path))
    cache_.clear();
  cache_.insert_or_assign(path, CachedBudget{node, stamp});
}

std::unique_ptr<PgStore::Flight> PgStore::speculate(size_t index, const ledger::ReadSet& read,
                                                    const ApplyBatch& apply,
                                                    const OnCommitted& committed) {
  if (!unresolved_.empty())
    return nullptr;  // The locked path settles an unresolved commit first.
  for (const Flight* earlier : in_flight_) {
    if (earlier->doomed)
      return nullptr;
    // A row created by a batch in flight is not there to lock until that batch commits.
    for (const std::string& path : read.budgets) {
      if (earlier->created_budgets.contains(path))
        return nullptr;
    }
  }
  if (!ensure_writer(index).ok())
    return nullptr;  // The locked path retries the connection until its deadline.
  Connection& connection = *writers_[index];

  // The state: what the batches in flight write (newest first), else what the database has.
  ledger::WorkingSet state;
  ReadRows existing;
  std::vector<std::string> budget_reads, hold_reads, key_reads, webhook_reads, vendor_reads;
  ArrayBuilder idempotency_roots, idempotency_keys;
  const auto overlay = [&](auto&& find) {
    for (auto it = in_flight_.rbegin(); it != in_flight_.rend(); ++it) {
      if (find(**it))
        return true;
    }
    return false;
  };
  for (const std::string& path : read.budgets) {
    const bool found = overlay([&](const Flight& earlier) {
      auto written = earlier.written_budgets.find(path);
      if (written == earlier.written_budgets.end())
        return false;
      state.budgets.emplace(path, earlier.state.budgets.at(path));
      existing.budgets.emplace(path, written->second);
      return true;
    });
    if (found)
      continue;
    if (auto cached = cache_.find(path); cached != cache_.end()) {
      state.budgets.emplace(path, cached->second.node);
      existing.budgets.emplace(path, cached->second.stamp);
    } else {
      budget_reads.push_back(path);
    }
  }
  // Holds and keys the batch in flight writes, by id.
  const auto overlay_rows = [&](const std::set<std::string>& ids, auto dirty, auto rows, auto& into,
                                std::vector<std::string>& missing) {
    for (const std::string& id : ids) {
      const bool found = overlay([&](const Flight& earlier) {
        if (!(earlier.state.*dirty).contains(id))
          return false;
        into.emplace(id, (earlier.state.*rows).at(id));
        return true;
      });
      if (!found)
        missing.push_back(id);
    }
  };
  overlay_rows(read.holds, &ledger::WorkingSet::dirty_holds, &ledger::WorkingSet::holds,
               state.holds, hold_reads);
  overlay_rows(read.keys, &ledger::WorkingSet::dirty_keys, &ledger::WorkingSet::keys, state.keys,
               key_reads);
  for (const std::string& name : read.webhooks) {
    const bool found = overlay([&](const Flight& earlier) {
      if (earlier.state.deleted_webhooks.contains(name))
        return true;  // known to be absent
      if (!earlier.state.dirty_webhooks.contains(name))
        return false;
      state.webhooks.emplace(name, earlier.state.webhooks.at(name));
      return true;
    });
    if (!found)
      webhook_reads.push_back(name);
  }
  for (const std::string& name : read.vendors) {
    const bool found = overlay([&](const Flight& earlier) {
      if (earlier.state.deleted_vendors.contains(name))
        return true;  // known to be absent
      if (!earlier.state.dirty_vendors.contains(name))
        return false;
      state.vendors.emplace(name, earlier.state.vendors.at(name));
      return true;
    });
    if (!found)
      vendor_reads.push_back(name);
  }
  std::vector<std::string> unread_records;  // slots of records neither overlay nor read has
  for (const auto& [root, key] : read.idempotency) {
    std::string slot = ledger::idempotency_slot(root, key);
    const bool found = overlay([&](const Flight& earlier) {
      auto record = earlier.state.idempotency.find(slot);
      if (record == earlier.state.idempotency.end())
        return false;
      state.idempotency.emplace(slot, record->second);
      return true;
    });
    if (!found) {
      idempotency_roots.add_text(root);
      idempotency_keys.add_text(key);
      unread_records.push_back(std::move(slot));
    }
  }
  // What neither a batch in flight nor the cache has: one round trip, no locks, while the batch
  // in flight commits (budget rows first). Idempotency records are read only along with
  // something else: a replay decided afresh records its key again, and that INSERT fails
  // (23505), so the batch is recomputed on the locked path and answered from the record. A
  // command whose fresh answer records nothing is caught after deciding (below).
  const bool reads_rows = !budget_reads.empty() || !hold_reads.empty() || !key_reads.empty() ||
                          !webhook_reads.empty() || !vendor_reads.empty();
  if (reads_rows) {
    const Query reads[] = {
        {&select_budgets, {text_array(budget_reads)}},
        {&select_holds, {text_array(hold_reads)}},
        {&select_keys, {text_array(key_reads)}},
        {&select_idempotency, {idempotency_roots.finish(), idempotency_keys.finish()}},
        {&select_webhooks, {text_array(webhook_reads)}},
        {&select_vendors, {text_array(vendor_reads)}},
    };
    auto loaded = connection.pipeline(reads);
    if (loaded.error)
      return nullptr;  // The locked path retries, reconnects or reports it.
    load_rows(loaded.results, state, existing,
              [&](const BudgetNode& node, int64_t stamp) { remember(node.path, node, stamp); });
  }
  for (const auto& [id, hold] : state.holds)
    existing.holds.emplace(id, hold.created_at);
  for (const auto& [id, key] : state.keys)
    existing.keys.insert(id);
  for (const auto& [name, webhook] : state.webhooks)
    existing.webhooks.insert(name);
  for (const auto& [name, vendor] : state.vendors)
    existing.vendors.insert(name);

  apply(state);
  if (overwritten_hold(state, existing) != nullptr)
    return nullptr;  // The locked path refuses it.
  if (!reads_rows && !unread_records.empty()) {
    // A command with an Idempotency-Key whose answer, decided without reading its record,
    // records nothing (an error, or an admin command meeting its own earlier change) could be
    // a replay that no INSERT would catch: the locked path reads the record and answers it.
    std::unordered_set<std::string> recorded;
    for (const IdempotencyRecord& record : state.new_idempotency)
      recorded.insert(ledger::idempotency_slot(record.root, record.key));
    for (const std::string& slot : unread_records) {
      if (!recorded.contains(slot))
        return nullptr;
    }
  }

  auto flight = std::make_unique<Flight>();
  flight->read = &read;
  flight->apply = &apply;
  flight->committed = &committed;
  const int64_t stamp = random_stamp();
  flight->marker = random_marker();
  BatchWrites writes = batch_writes(state, read, existing, stamp, flight->marker);
  if (!writes.changes) {
    // Nothing to write. Its answers may rest on what a batch in flight writes: let that land.
    if (!in_flight_.empty())
      return nullptr;
    if (committed)
      committed(state);
    return flight;  // Done: on_wire is false and the status success.
  }
  if (writes.rows > max_rows_per_commit())
    return nullptr;  // The locked path reports it.

  // The idempotency records and the entries, the batch's biggest writes, go in before the row
  // locks, while the batch ahead still holds them: the hot rows stay locked only for the budget
  // rows' update, the marker and COMMIT. Inserting first can make two transactions wait on each
  // other: a stale batch holds entries (keyed by the chain head it predicted) that a batch of
  // another instance, holding the root's lock, must wait for; or two instances insert one
  // retried idempotency key. So the speculative transaction waits at most spec_lock_timeout
  // for any lock (55P03, or 40P01 from the deadlock detector), and is then recomputed on the
  // locked path, which takes its locks first.
  std::vector<Query> queries;
  queries.reserve(writes.queries.size() + 4);
  queries.push_back({&begin_read_committed, {}});
  queries.push_back(
      {faults_.long_speculative_lock_wait.load() ? &spec_lock_timeout_long : &spec_lock_timeout,
       {}});
  for (const std::optional<size_t>& early : {writes.idempotency_query, writes.entries_query}) {
    if (early)
      queries.push_back(std::move(writes.queries[*early]));
  }
  if (!writes.updated_budgets.empty())
    queries.push_back({&lock_paths, {text_array(writes.updated_budgets)}});
  const size_t locked_after = queries.size();
  for (size_t i = 0; i < writes.queries.size(); ++i) {
    if (i != writes.idempotency_query && i != writes.entries_query)
      queries.push_back(std::move(writes.queries[i]));
  }
  // The batch in flight must hold its row locks before this one can ask for them: sent later,
  // this one could otherwise reach the locks first (its backend is as fast as the other's) and
  // find the rows as they were before that batch, which it was not decided against.
  if (!in_flight_.empty()) {
    Flight& previous = *in_flight_.back();
    Connection& other = *writers_[previous.connection];
    if (!previous.send_error && !previous.lost &&
        previous.outcome.results.size() < previous.locked_after) {
      previous.lost = !other.collect_results(
          previous.locked_after - previous.outcome.results.size(), previous.outcome);
    }
    if (previous.send_error || previous.lost || previous.outcome.error)
      return nullptr;  // It failed; this batch rests on it. Let it land first.
  }
  const bool lose_before_commit =
      faults_.lose_before_commit.load() > 0 && faults_.lose_before_commit.fetch_sub(1) > 0;
  if (!lose_before_commit)
    queries.push_back({&commit, {}});
  flight->on_wire = true;
  flight->connection = index;
  flight->results = queries.size();
  flight->locked_after = locked_after;
  flight->send_error = connection.send_pipeline(queries, locked_after);
  if (lose_before_commit) {
    // The writes arrive, then the connection dies before COMMIT is sent.
    connection.sever();
  }
  flight->lose_answer =
      faults_.lose_after_commit.load() > 0 && faults_.lose_after_commit.fetch_sub(1) > 0;
  for (const std::string& path : writes.updated_budgets)
    flight->written_budgets.emplace(path, stamp);
  for (const std::string& path : writes.created_budgets) {
    flight->written_budgets.emplace(path, stamp);
    flight->created_budgets.insert(path);
  }
  flight->state = std::move(state);
  counters_.speculated.fetch_add(1, std::memory_order_relaxed);
  in_flight_.push_back(flight.get());
  return flight;
}

}  // namespace stub::store::postgres
