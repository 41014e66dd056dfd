#include "store/postgres/pg_store.hpp"

// Reads outside the engine's commits, on the pooled read connections, and the webhook
// dispatcher's delivery log (written in transactions of its own, never in a ledger batch); and
// the bounded pruning of idempotency records.

#include <cassert>
#include <cstdlib>
#include <string>

#include "store/postgres/pg_batch_rows.hpp"
#include "store/postgres/pg_statements.hpp"

namespace stub::store::postgres {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::IdempotencyRecord;

Result<ResultPtr> PgStore::read_query(const Query& query) {
  Reader reader = checkout_reader();
  for (int attempt = 0;; ++attempt) {
    if (reader->broken() && reader->reset())
      counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
    auto result = reader->run(query);
    if (result.ok() || attempt >= 1 || !reader->broken())
      return result;
  }
}

Result<size_t> PgStore::prune_idempotency(ledger::Micros created_before, size_t limit) {
  assert(limit > 0);
  // On a pooled connection, in a statement of its own: any thread may prune, and a bounded
  // DELETE never holds the rows long.
  auto result = read_query(
      Query{&prune_idempotency_records, {std::to_string(created_before), std::to_string(limit)}});
  if (!result.ok())
    return result.error();
  const size_t deleted = std::strtoull(PQcmdTuples(result->get()), nullptr, 10);
  assert(deleted <= limit);
  return deleted;
}

namespace {

template <typename Record, typename Read>
Result<std::optional<Record>> first_row(Result<ResultPtr> result, const Read& read) {
  if (!result.ok())
    return result.error();
  const Rows rows(result->get());
  if (rows.size() == 0)
    return std::optional<Record>{};
  return std::optional<Record>{read(rows.at(0))};
}

template <typename Record, typename Read>
Result<std::vector<Record>> all_rows(Result<ResultPtr> result, const Read& read) {
  if (!result.ok())
    return result.error();
  const Rows rows(result->get());
  std::vector<Record> out;
  out.reserve(static_cast<size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i)
    out.push_back(read(rows.at(i)));
  return out;
}

}  // namespace

Result<std::optional<BudgetNode>> PgStore::get_budget(const std::string& path) {
  return first_row<BudgetNode>(read_query({&select_budget, {path}}), read_budget<Rows>);
}

Result<std::vector<BudgetNode>> PgStore::list_subtree(const std::string& root) {
  return all_rows<BudgetNode>(read_query({&select_subtree, {root}}), read_budget<Rows>);
}

Result<std::vector<std::string>> PgStore::list_roots() {
  return all_rows<std::string>(read_query({&select_roots, {}}),
                               [](const Rows& row) { return row.column_text(0); });
}

Result<std::optional<Hold>> PgStore::get_hold(const std::string& id) {
  return first_row<Hold>(read_query({&select_hold, {id}}), read_hold<Rows>);
}

Result<std::vector<Hold>> PgStore::list_expired_holds(ledger::Micros now, size_t limit) {
  return all_rows<Hold>(
      read_query({&select_expired_holds, {std::to_string(now), std::to_string(limit)}}),
      read_hold<Rows>);
}

Result<std::vector<Store::LapsedDelegation>> PgStore::list_lapsed_delegations(ledger::Micros now,
                                                                              size_t limit) {
  return all_rows<LapsedDelegation>(
      read_query({&select_lapsed_delegations, {std::to_string(now), std::to_string(limit)}}),
      [](const Rows& row) {
        return LapsedDelegation{row.column_text(0), row.column_text(1)};
      });
}

Result<std::vector<Hold>> PgStore::list_pending_approvals(const std::string& root, size_t limit) {
  return all_rows<Hold>(read_query({&select_pending_approvals, {root, std::to_string(limit)}}),
                        read_hold<Rows>);
}

Result<std::optional<ApiKey>> PgStore::get_key(const std::string& id) {
  return first_row<ApiKey>(read_query({&select_key, {id}}), read_key<Rows>);
}

Result<EntryPage> PgStore::list_entries(const std::string& root, int64_t after, size_t limit) {
  auto entries = all_rows<Entry>(
      read_query({&select_entries, {root, std::to_string(after), std::to_string(limit)}}),
      read_entry<Rows>);
  return EntryPage::of(std::move(entries), after);
}

Result<std::optional<IdempotencyRecord>> PgStore::get_idempotency(const std::string& root,
                                                                  const std::string& key) {
  return first_row<IdempotencyRecord>(read_query({&select_one_idempotency, {root, key}}),
                                      read_idempotency<Rows>);
}

Result<std::vector<ledger::Webhook>> PgStore::list_webhooks() {
  return all_rows<ledger::Webhook>(read_query({&select_all_webhooks, {}}), read_webhook<Rows>);
}

Result<std::optional<ledger::Webhook>> PgStore::get_webhook(const std::string& name) {
  return first_row<ledger::Webhook>(read_query({&select_webhook, {name}}), read_webhook<Rows>);
}

Result<std::vector<ledger::Vendor>> PgStore::list_vendors() {
  return all_rows<ledger::Vendor>(read_query({&select_all_vendors, {}}), read_vendor<Rows>);
}

Result<std::optional<ledger::Vendor>> PgStore::get_vendor(const std::string& name) {
  return first_row<ledger::Vendor>(read_query({&select_vendor, {name}}), read_vendor<Rows>);
}

Result<std::vector<ResultPtr>> PgStore::pooled_transaction(std::span<const Query> queries) {
  Reader reader = checkout_reader();
  if (reader->broken() && reader->reset())
    counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  std::vector<Query> all;
  all.push_back({&begin_read_committed, {}});
  all.insert(all.end(), queries.begin(), queries.end());
  all.push_back({&commit, {}});
  auto outcome = reader->pipeline(all);
  if (outcome.error) {
    if (outcome.error->failure != Failure::connection_lost)
      (void)reader->exec(rollback);
    return to_error(*outcome.error, "writing the webhook delivery log");
  }
  std::vector<ResultPtr> results;
  for (size_t i = 1; i + 1 < outcome.results.size(); ++i)
    results.push_back(std::move(outcome.results[i]));
  return results;
}

Result<std::optional<int64_t>> PgStore::claim_webhook(const ledger::Webhook& webhook,
                                                      const std::string& owner, ledger::Micros now,
                                                      ledger::Micros lease_until) {
  const std::string since = std::to_string(webhook.since_seq - 1);
  const Query queries[] = {
      {&insert_cursor, {webhook.name, since}},
      {&claim_cursor,
       {webhook.name, since, owner, std::to_string(now), std::to_string(lease_until)}},
  };
  auto results = pooled_transaction(queries);
  if (!results.ok())
    return results.error();
  const Rows claimed(results.value()[1].get());
  if (claimed.size() == 0)
    return std::optional<int64_t>{};
  return std::optional<int64_t>{claimed.column_int(0)};
}

Status PgStore::enqueue_deliveries(const std::string& webhook, const std::string& owner,
                                   int64_t cursor, const std::vector<WebhookDelivery>& deliveries) {
  ArrayBuilder name, event_id, root, seq, event, payload, status, attempts, last_status, last_error,
      next_attempt, created, delivered;
  for (const WebhookDelivery& delivery : deliveries) {
    name.add_text(delivery.webhook);
    event_id.add_text(delivery.event_id);
    root.add_text(delivery.root);
    seq.add_int(delivery.seq);
    event.add_text(delivery.event);
    payload.add_text(delivery.payload);
    status.add_text(delivery.status);
    attempts.add_int(delivery.attempts);
    last_status.add_int(delivery.last_status);
    last_error.add_text(delivery.last_error);
    next_attempt.add_int(delivery.next_attempt_at);
    created.add_int(delivery.created_at);
    delivered.add_int(delivery.delivered_at);
  }
  // The deliveries are inserted only while `owner` holds the lease, before the cursor moves.
  const Query queries[] = {
      {&insert_deliveries,
       {name.finish(), event_id.finish(), root.finish(), seq.finish(), event.finish(),
        payload.finish(), status.finish(), attempts.finish(), last_status.finish(),
        last_error.finish(), next_attempt.finish(), created.finish(), delivered.finish(), webhook,
        owner}},
      {&move_cursor, {webhook, std::to_string(cursor), owner}},
  };
  auto results = pooled_transaction(queries);
  if (!results.ok())
    return results.error();
  return Status::success();
}

Result<std::vector<WebhookDelivery>> PgStore::due_deliveries(const std::string& webhook,
                                                             ledger::Micros now, size_t limit) {
  return all_rows<WebhookDelivery>(
      read_query({&select_due_deliveries, {webhook, std::to_string(now), std::to_string(limit)}}),
      read_delivery<Rows>);
}

Status PgStore::record_delivery(const WebhookDelivery& delivery) {
  auto result = read_query(
      {&update_delivery,
       {delivery.webhook, delivery.event_id, delivery.status, std::to_string(delivery.attempts),
        std::to_string(delivery.last_status), delivery.last_error,
        std::to_string(delivery.next_attempt_at), std::to_string(delivery.delivered_at)}});
  if (!result.ok())
    return result.error();
  return Status::success();
}

Result<std::vector<WebhookDelivery>> PgStore::list_deliveries(const std::string& webhook,
                                                              size_t limit) {
  return all_rows<WebhookDelivery>(
      read_query({&select_deliveries, {webhook, std::to_string(limit)}}), read_delivery<Rows>);
}

Result<Store::EntryBounds> PgStore::entry_bounds(const std::string& root) {
  auto bounds =
      first_row<EntryBounds>(read_query({&select_entry_bounds, {root}}), [](const Rows& row) {
        return EntryBounds{row.column_int(0), row.column_int(1)};
      });
  if (!bounds.ok())
    return bounds.error();
  return bounds->value_or(EntryBounds{});
}

namespace {

ledger::Checkpoint read_checkpoint(const Rows& row) {
  ledger::Checkpoint checkpoint;
  checkpoint.root = row.column_text(0);
  checkpoint.seq = row.column_int(1);
  checkpoint.hash = row.column_text(2);
  checkpoint.ts = row.column_int(3);
  checkpoint.key_id = row.column_text(4);
  checkpoint.signature = row.column_text(5);
  return checkpoint;
}

}  // namespace

Result<bool> PgStore::record_checkpoint(const ledger::Checkpoint& checkpoint) {
  assert(checkpoint.seq >= 1 && !checkpoint.signature.empty());
  // One statement on a pooled connection (its own transaction): any instance may sign, and
  // the first checkpoint at a seq is kept.
  auto result =
      read_query({&insert_checkpoint,
                  {checkpoint.root, std::to_string(checkpoint.seq), checkpoint.hash,
                   std::to_string(checkpoint.ts), checkpoint.key_id, checkpoint.signature}});
  if (!result.ok())
    return result.error();
  const Rows rows(result->get());
  assert(rows.size() <= 1);
  return rows.size() == 1;
}

Result<std::vector<ledger::Checkpoint>> PgStore::list_checkpoints(const std::string& root,
                                                                  int64_t after_seq, size_t limit) {
  return all_rows<ledger::Checkpoint>(
      read_query({&select_checkpoints, {root, std::to_string(after_seq), std::to_string(limit)}}),
      read_checkpoint);
}

Result<std::optional<ledger::Checkpoint>> PgStore::latest_checkpoint(const std::string& root) {
  return first_row<ledger::Checkpoint>(read_query({&select_latest_checkpoint, {root}}),
                                       read_checkpoint);
}

}  // namespace stub::store::postgres
