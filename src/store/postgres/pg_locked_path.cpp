#include "store/postgres/pg_store.hpp"

// The locked path: lock the batch's rows in path order, read, decide, write, COMMIT (two round
// trips), retried on conflicts and lost connections within bounded waits; and the resolution of
// a COMMIT whose answer was lost, by a committed fence (docs/postgres.md, "Ambiguous commits").

#include <cassert>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>

#include "store/postgres/pg_batch_rows.hpp"
#include "store/postgres/pg_statements.hpp"

namespace stub::store::postgres {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::IdempotencyRecord;

// ---- The locked path --------------------------------------------------------------------------

Status PgStore::commit_locked(size_t index, const ledger::ReadSet& read, const ApplyBatch& apply,
                              const OnCommitted& committed) {
  // Conflicts are retried until this deadline; then the callers get a retryable 503 and the
  // store carries on. A database that cannot be reached (with nothing of this batch committed)
  // is retried for unreachable_wait from the first failure: a restart rides through, a longer
  // outage answers 503 store_unavailable and the store keeps reconnecting on later batches.
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::seconds(20);
  // The first failure of the current run of failures (time_point::max(): none). A plain value,
  // not an optional: GCC 12 reports a false -Wmaybe-uninitialized on the optional's payload.
  auto unreachable_since = std::chrono::steady_clock::time_point::max();
  for (int attempt = 0;; ++attempt) {
    Status failure = Status::success();
    AttemptResult result = AttemptResult::retry;
    if (Status settled = settle_unresolved(index); !settled.ok())
      failure = settled;
    else
      result = this->attempt(index, read, apply, committed, failure);
    switch (result) {
      case AttemptResult::committed:
        after_commit(index);
        return Status::success();
      case AttemptResult::failed:
        return failure;
      case AttemptResult::retry:
        break;
    }
    const auto now = std::chrono::steady_clock::now();
    if (!failure.ok()) {
      // Only a failure after which nothing of the batch is committed comes back as a retry.
      if (unreachable_since == std::chrono::steady_clock::time_point::max())
        unreachable_since = now;
      if (now - unreachable_since >= unreachable_wait)
        return store_unavailable(failure.error().message);
    } else {
      unreachable_since = std::chrono::steady_clock::time_point::max();
    }
    if (now >= deadline) {
      if (!failure.ok())
        return store_unavailable(failure.error().message);
      return Error{ErrorCode::overloaded, "conflict_retries_exhausted",
                   "The batch kept conflicting with other writers; retry with the same "
                   "Idempotency-Key."};
    }
    // Reconnecting waits a little longer between attempts than a conflict does.
    backoff(failure.ok() ? attempt : attempt + 6);
  }
}

Status PgStore::settle_unresolved(size_t index) {
  while (!unresolved_.empty()) {
    auto resolved = resolve_ambiguous(index, unresolved_.back(), std::chrono::seconds(0));
    if (!resolved.ok())
      return resolved.error();
    counters_.settled_later.fetch_add(1, std::memory_order_relaxed);
    if (resolved.value())
      counters_.found_committed.fetch_add(1, std::memory_order_relaxed);
    unresolved_.pop_back();
  }
  return Status::success();
}

Status PgStore::probe() {
  assert(in_flight_.empty());
  // One reconnect: a connection that looked fine may have been cut meanwhile.
  bool alive = false;
  std::string detail = "no connection";
  for (int attempt = 0; attempt < 2 && !alive; ++attempt) {
    if (Status status = ensure_writer(0); !status.ok()) {
      detail = status.error().message;
      continue;
    }
    auto answered = writers_[0]->run(Query{&probe_connection, {}});
    alive = answered.ok();
    if (!alive)
      detail = answered.error().message;
  }
  if (!alive)
    return store_unavailable(detail);
  if (Status settled = settle_unresolved(0); !settled.ok())
    return store_unavailable(settled.error().message);
  return Status::success();
}

PgStore::AttemptResult PgStore::attempt(size_t index, const ledger::ReadSet& read,
                                        const ApplyBatch& apply, const OnCommitted& committed,
                                        Status& failure) {
  if (Status status = ensure_writer(index); !status.ok()) {
    failure = status;  // Retried until the deadline, then this is the answer.
    return AttemptResult::retry;
  }
  Connection& connection = *writers_[index];
  const auto abandon = [&](const DbError& error, std::string_view what) {
    if (error.failure == Failure::connection_lost) {
      failure = to_error(error, what);
      return AttemptResult::retry;
    }
    (void)connection.exec(rollback);
    if (error.failure == Failure::conflict) {
      counters_.conflicts.fetch_add(1, std::memory_order_relaxed);
      return AttemptResult::retry;
    }
    failure = error.failure == Failure::data ? refused_data(error, what) : to_error(error, what);
    return AttemptResult::failed;
  };

  // Round trip 1: lock and read everything the batch can touch.
  std::vector<Param> idempotency_roots_keys;
  {
    ArrayBuilder roots, keys;
    for (const auto& [root, key] : read.idempotency) {
      roots.add_text(root);
      keys.add_text(key);
    }
    idempotency_roots_keys = {roots.finish(), keys.finish()};
  }
  std::vector<Query> reads = {
      {isolation_ == Isolation::serializable ? &begin_serializable : &begin_read_committed, {}},
      {&lock_budgets, {text_array(read.budgets)}},
      {&select_holds, {text_array(read.holds)}},
      {&select_keys, {text_array(read.keys)}},
      {&select_idempotency, idempotency_roots_keys},
      {&select_webhooks, {text_array(read.webhooks)}},
      {&select_vendors, {text_array(read.vendors)}},
  };
  for (const std::string& subtree : read.open_hold_subtrees) {
    const std::string low = subtree + "/";
    const std::string high = subtree + "0";  // '0' follows '/'
    reads.push_back({&lock_budgets_below, {subtree.substr(0, subtree.find('/')), low, high}});
    reads.push_back({&select_open_holds_within,
                     {subtree, low, high, std::to_string(ledger::open_holds_read_max + 1)}});
    reads.push_back({&select_keys_within, {subtree, low, high}});
  }
  auto loaded = connection.pipeline(reads);
  if (loaded.error)
    return abandon(*loaded.error, "reading the batch's rows");

  ledger::WorkingSet state;
  ReadRows existing;
  {
    load_rows(std::span(loaded.results).subspan(1, 6), state, existing,
              [](const BudgetNode&, int64_t) {});
    size_t result = 7;
    for (const std::string& subtree : read.open_hold_subtrees) {
      const Rows below(loaded.results[result++].get());
      for (int i = 0; i < below.size(); ++i) {
        BudgetNode node = read_budget(below.at(i));
        existing.budgets.try_emplace(node.path, stamp_column(below.at(i)));
        const std::string path = node.path;
        state.budgets.try_emplace(path, std::move(node));
      }
      const Rows open(loaded.results[result++].get());
      std::vector<std::string>& ids = state.open_holds[subtree];
      for (int i = 0; i < open.size(); ++i) {
        if (ids.size() == ledger::open_holds_read_max) {
          state.open_holds_truncated.insert(subtree);
          break;
        }
        Hold hold = read_hold(open.at(i));
        ids.push_back(hold.id);
        state.holds.try_emplace(ids.back(), std::move(hold));
      }
      const Rows keys(loaded.results[result++].get());
      for (int i = 0; i < keys.size(); ++i) {
        ApiKey key = read_key(keys.at(i));
        const std::string id = key.id;
        state.keys.try_emplace(id, std::move(key));
      }
    }
    assert(result == loaded.results.size());
  }
  // Another instance wrote a row since this one last committed or read it: the instances are
  // contending, and a speculative batch would race a writer that holds the row's lock (costing
  // both the lock timeout when their inserts cross). Stay on the locked path, which waits its
  // turn, until the locked path has not seen such a write for a while.
  // Each root found written that way is reported (store/root_leases.hpp: the instances may
  // then choose one of them to commit for it), under both isolation levels.
  {
    std::string reported;  // a batch is mostly one root: skip repeats of the last one
    bool foreign = false;
    for (const auto& [path, row_stamp] : existing.budgets) {
      const auto cached = cache_.find(path);
      if (cached == cache_.end() || cached->second.stamp == row_stamp)
        continue;
      foreign = true;
      if (!foreign_write_listener_)
        break;
      const std::string_view root = std::string_view(path).substr(0, path.find('/'));
      if (root != reported) {
        reported = root;
        foreign_write_listener_(reported);
      }
    }
    if (foreign) {
      counters_.foreign_writes.fetch_add(1, std::memory_order_relaxed);
      if (isolation_ == Isolation::read_committed)
        speculation_paused_ = std::max(speculation_paused_, contended_pause);
    }
  }
  for (const auto& [name, webhook] : state.webhooks)
    existing.webhooks.insert(name);
  for (const auto& [name, vendor] : state.vendors)
    existing.vendors.insert(name);
  for (const auto& [id, hold] : state.holds)
    existing.holds.emplace(id, hold.created_at);
  for (const auto& [id, key] : state.keys)
    existing.keys.insert(id);

  apply(state);

  // Round trip 2: the writes, the marker and COMMIT.
  const std::string marker = random_marker();
  const int64_t stamp = random_stamp();
  BatchWrites writes = batch_writes(state, read, existing, stamp, marker);
  // Once committed, the rows as written (or as read, if left alone) are the cache's.
  const auto remember_rows = [&] {
    for (const std::string& path : writes.updated_budgets)
      existing.budgets.insert_or_assign(path, stamp);
    for (const std::string& path : writes.created_budgets)
      existing.budgets.insert_or_assign(path, stamp);
    for (const auto& [path, row_stamp] : existing.budgets)
      remember(path, state.budgets.at(path), row_stamp);
  };
  if (writes.rows > max_rows_per_commit()) {
    (void)connection.exec(rollback);
    failure = batch_too_large(writes.rows, max_rows_per_commit());
    return AttemptResult::failed;
  }
  if (const std::string* id = overwritten_hold(state, existing)) {
    (void)connection.exec(rollback);
    failure = hold_exists(*id);
    return AttemptResult::failed;
  }
  std::vector<Query>& queries = writes.queries;
  if (faults_.lose_before_commit.load() > 0 && faults_.lose_before_commit.fetch_sub(1) > 0) {
    // The writes arrive, then the connection dies before COMMIT is sent.
    auto sent = connection.pipeline(queries);
    connection.sever();
    (void)sent;
    DbError lost{Failure::connection_lost, "", "connection lost (injected) before COMMIT"};
    failure = to_error(lost, "committing");
  } else {
    queries.push_back({&commit, {}});
    auto result = connection.pipeline(queries);
    if (!result.error && faults_.lose_after_commit.load() > 0 &&
        faults_.lose_after_commit.fetch_sub(1) > 0) {
      connection.sever();  // COMMIT ran; its answer is "lost".
      result.error = DbError{Failure::connection_lost, "", "connection lost (injected)"};
    }
    if (!result.error) {
      remember_rows();
      if (committed)
        committed(state);
      return AttemptResult::committed;
    }
    if (result.error->failure != Failure::connection_lost)
      return abandon(*result.error, "committing the batch");
    failure = to_error(*result.error, "committing the batch");
  }

  // The COMMIT may or may not have run. Find out before anything is recomputed: never apply
  // twice, never drop an acknowledged write.
  counters_.ambiguous.fetch_add(1, std::memory_order_relaxed);
  auto outcome = resolve_ambiguous(index, marker, resolve_wait);
  if (!outcome.ok()) {
    unresolved_.push_back(marker);  // Settled before the next write.
    failure = outcome_unknown(outcome.error().message);
    return AttemptResult::failed;
  }
  if (outcome.value()) {
    counters_.found_committed.fetch_add(1, std::memory_order_relaxed);
    remember_rows();
    if (committed)
      committed(state);
    return AttemptResult::committed;
  }
  return AttemptResult::retry;
}

Result<uint64_t> PgStore::prune_commit_markers(ledger::Micros older_than, size_t limit) {
  assert(in_flight_.empty());
  if (Status status = ensure_writer(0); !status.ok())
    return status.error();
  auto result =
      writers_[0]->run(Query{&prune_markers, {std::to_string(older_than), std::to_string(limit)}});
  if (!result.ok())
    return result.error();
  const char* deleted = PQcmdTuples(result->get());
  return static_cast<uint64_t>(std::strtoull(deleted, nullptr, 10));
}

Result<bool> PgStore::resolve_ambiguous(size_t index, const std::string& marker,
                                        std::chrono::steady_clock::duration wait) {
  // A fence, not a look: the check COMMITS the batch's own marker id (flagged as a fence). If
  // the batch's transaction is still alive on its old backend (its client is gone, but it
  // waits on a lock and will run the COMMIT it already received), its own marker insert now
  // conflicts and it aborts: it can never commit after this check said it did not. If it
  // inserted its marker already, the fence's insert waits on the unique index until it ends,
  // then fails with 23505 (it committed) or goes in (it did not). A plain SELECT could miss a
  // COMMIT still in flight, and a fence rolled back afterwards would fence nothing.
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (int attempt = 0;; ++attempt) {
    std::string detail = "cannot reconnect";
    if (Status reconnected = ensure_writer(index); reconnected.ok()) {
      Connection& writer = *writers_[index];
      const Query probe[] = {
          {&begin_read_committed, {}},
          {&lock_timeout, {}},
          {&insert_fence, {marker, std::to_string(now_micros())}},
          {&commit, {}},
      };
      auto result = writer.pipeline(probe);
      const std::optional<DbError>& error = result.error;
      if (!error)
        return false;  // Fenced: the batch did not commit, and now it never can.
      detail = error->message;
      if (error->failure != Failure::connection_lost)
        (void)writer.exec(rollback);
      if (error->sqlstate == "23505") {
        // The id is taken: by the batch (it committed), or by an earlier fence of this check
        // whose COMMIT's answer was lost.
        auto found = writer.run(Query{&select_marker_fence, {marker}});
        if (found.ok() && Rows(found->get()).size() == 1)
          return Rows(found->get()).column_int(0) == 0;
        if (found.ok())
          return to_error(DbError{Failure::fatal, "", "the marker vanished"}, "resolving");
        detail = found.error().message;
      } else if (error->failure == Failure::fatal && error->sqlstate != "55P03") {
        return to_error(*error, "resolving an ambiguous commit");
      }
    } else {
      detail = reconnected.error().message;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{ErrorCode::unavailable, "db_unreachable",
                   "The database stayed unreachable while resolving a commit: " + detail};
    }
    backoff(attempt + 6);
  }
}

}  // namespace stub::store::postgres
