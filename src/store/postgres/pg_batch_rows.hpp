#pragma once

// A batch's rows as the PostgreSQL store reads and writes them: the rows a batch read (with
// their stamps), what it writes (one multi-row statement per table, the guarded marker last),
// the ids that make a commit recognisable (marker, stamp), and the errors a batch can end
// with. Shared by the locked path and the speculative pipeline (docs/postgres.md).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ledger/batch.hpp"
#include "ledger/model.hpp"
#include "ledger/result.hpp"
#include "store/postgres/pg_connection.hpp"
#include "store/row_mapping.hpp"

namespace stub::store::postgres {

// The wall clock in microseconds (commit markers' committed_at).
int64_t now_micros();

// Jittered exponential backoff ("full jitter"): uniform in [0, min(cap, base * 2^attempt)].
void backoff(int attempt);

// A random 128-bit id in hex: a batch's commit marker.
std::string random_marker();

// A random non-zero 64-bit id: the stamp a commit gives every budget row it writes.
int64_t random_stamp();

// A `$n::text[]` parameter of `values`.
Param text_array(const auto& values) {
  ArrayBuilder array;
  for (const auto& value : values)
    array.add_text(value);
  return array.finish();
}

// Budget rows as the batch read them: path -> the stamp it was read with.
using Stamps = std::unordered_map<std::string, int64_t>;

// The stamp column of a budget row read with its stamp (NULL, from before, reads as 0).
int64_t stamp_column(const Rows& row);

// The rows that existed when the batch read them, per table (holds with their created_at: a
// hold the batch "creates" over one that exists shows a different one; see overwritten_hold).
struct ReadRows {
  Stamps budgets;
  std::unordered_map<std::string, ledger::Micros> holds;
  std::unordered_set<std::string> keys, webhooks, vendors;
};

// A hold id the batch wrote as a new hold over one that already existed (the id is fixed at
// the edge, so a request applied twice would otherwise replace the first hold and reserve
// twice for one hold forever). Such a hold is refused, never overwritten.
const std::string* overwritten_hold(const ledger::WorkingSet& state, const ReadRows& existing);

// The answer for a batch that would write a new hold over an existing one.
Error hold_exists(const std::string& id);

// Reads six consecutive results (budget rows with their stamps, holds, keys, idempotency
// records, webhooks, vendors) into `state`; `on_budget(node, stamp)` sees each budget row first.
template <typename OnBudget>
void load_rows(std::span<const ResultPtr> results, ledger::WorkingSet& state, ReadRows& existing,
               const OnBudget& on_budget) {
  const Rows budgets(results[0].get());
  for (int i = 0; i < budgets.size(); ++i) {
    ledger::BudgetNode node = read_budget(budgets.at(i));
    const int64_t stamp = stamp_column(budgets.at(i));
    on_budget(node, stamp);
    existing.budgets.emplace(node.path, stamp);
    const std::string path = node.path;
    state.budgets.emplace(path, std::move(node));
  }
  const Rows holds(results[1].get());
  for (int i = 0; i < holds.size(); ++i) {
    ledger::Hold hold = read_hold(holds.at(i));
    const std::string id = hold.id;
    state.holds.emplace(id, std::move(hold));
  }
  const Rows keys(results[2].get());
  for (int i = 0; i < keys.size(); ++i) {
    ledger::ApiKey key = read_key(keys.at(i));
    const std::string id = key.id;
    state.keys.emplace(id, std::move(key));
  }
  const Rows records(results[3].get());
  for (int i = 0; i < records.size(); ++i) {
    ledger::IdempotencyRecord record = read_idempotency(records.at(i));
    std::string slot = ledger::idempotency_slot(record.root, record.key);
    state.idempotency.emplace(std::move(slot), std::move(record));
  }
  const Rows webhooks(results[4].get());
  for (int i = 0; i < webhooks.size(); ++i) {
    ledger::Webhook webhook = read_webhook(webhooks.at(i));
    const std::string name = webhook.name;
    state.webhooks.emplace(name, std::move(webhook));
  }
  const Rows vendors(results[5].get());
  for (int i = 0; i < vendors.size(); ++i) {
    ledger::Vendor vendor = read_vendor(vendors.at(i));
    const std::string name = vendor.name;
    state.vendors.emplace(name, std::move(vendor));
  }
}

// What a batch writes: its statements in order (budget rows first, so the guard stops a stale
// batch before it writes anything else), the marker last; the rows they write; the budget rows
// it creates; and whether it changes anything at all.
struct BatchWrites {
  std::vector<Query> queries;
  std::vector<std::string> updated_budgets;  // sorted: the rows to lock, in lock order
  std::vector<std::string> created_budgets;
  size_t rows = 0;
  bool changes = false;
  // Where in `queries` the idempotency records and the entries are inserted.
  std::optional<size_t> idempotency_query, entries_query;
};

// A batch that changes anything writes every budget row it read on its paths, changed or not,
// with its stamp: so any change under a root, to a hold, key or webhook too, comes with a new
// stamp on the root's row, and a batch decided against the old one cannot commit.
BatchWrites batch_writes(const ledger::WorkingSet& state, const ledger::ReadSet& read,
                         const ReadRows& existing, int64_t stamp, const std::string& marker);

// The database refused this batch's data (SQLSTATE classes 22 and 23): the batch fails, the
// store carries on. The message keeps the driver's text for the log; the sequencer answers
// callers without it.
Error refused_data(const DbError& error, std::string_view what);

// The database could not be reached, and nothing of the batch was committed.
Error store_unavailable(std::string_view detail);

// The connection went while COMMIT was in flight, and the database could not be asked since.
Error outcome_unknown(std::string_view detail);

// A batch above the store's row bound (the sequencer sizes batches to stay under it).
Error batch_too_large(size_t rows, size_t bound);

}  // namespace stub::store::postgres
