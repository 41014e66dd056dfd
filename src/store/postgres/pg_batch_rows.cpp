#include "store/postgres/pg_batch_rows.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "store/postgres/pg_statements.hpp"
#include "store/rollup.hpp"

namespace stub::store::postgres {

namespace {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::IdempotencyRecord;

// Column arrays for the budget rows in `paths`, in statement parameter order.
std::vector<Param> budget_params(const ledger::WorkingSet& state,
                                 const std::vector<const std::string*>& paths) {
  ArrayBuilder path, root, parent, limit, period, period_start, spent, reserved, per_txn, frozen,
      reason, currency, head_seq, head_hash, created, updated, policy, usage, delegation,
      delegation_ends_at;
  for (const std::string* key : paths) {
    const BudgetNode& node = state.budgets.at(*key);
    path.add_text(node.path);
    root.add_text(node.root);
    parent.add_text(node.parent);
    limit.add_optional_int(optional_micros(node.limit));
    period.add_text(ledger::period_name(node.period));
    period_start.add_int(node.period_start);
    spent.add_int(node.spent.micros());
    reserved.add_int(node.reserved.micros());
    per_txn.add_optional_int(optional_micros(node.per_txn_max));
    frozen.add_bool(node.frozen);
    reason.add_text(node.frozen_reason);
    currency.add_text(node.currency);
    head_seq.add_int(node.head_seq);
    head_hash.add_text(node.head_hash);
    created.add_int(node.created_at);
    updated.add_int(node.updated_at);
    policy.add_text(ledger::policies_to_storage(node.policies));
    usage.add_text(ledger::usage_to_storage(node.usage));
    delegation.add_text(ledger::delegation_to_storage(node.delegation));
    delegation_ends_at.add_optional_int(delegation_ends_at_of(node));
  }
  return {
      path.finish(),     root.finish(),         parent.finish(),     limit.finish(),
      period.finish(),   period_start.finish(), spent.finish(),      reserved.finish(),
      per_txn.finish(),  frozen.finish(),       reason.finish(),     currency.finish(),
      head_seq.finish(), head_hash.finish(),    created.finish(),    updated.finish(),
      policy.finish(),   usage.finish(),        delegation.finish(), delegation_ends_at.finish()};
}

std::vector<Param> hold_params(const ledger::WorkingSet& state,
                               const std::vector<const std::string*>& ids) {
  ArrayBuilder id, root, budget, amount, captured, status, vendor, intent, tags, on_expiry, created,
      expires, settled, actor, ttl;
  for (const std::string* key : ids) {
    const Hold& hold = state.holds.at(*key);
    id.add_text(hold.id);
    root.add_text(hold.root);
    budget.add_text(hold.budget);
    amount.add_int(hold.amount.micros());
    captured.add_int(hold.captured.micros());
    status.add_text(ledger::hold_status_name(hold.status));
    vendor.add_text(hold.vendor);
    intent.add_text(hold.intent);
    tags.add_text(hold.tags_json);
    on_expiry.add_text(on_expiry_name(hold.on_expiry));
    created.add_int(hold.created_at);
    expires.add_int(hold.expires_at);
    settled.add_int(hold.settled_at);
    actor.add_text(hold.actor);
    ttl.add_int(hold.ttl);
  }
  return {id.finish(),      root.finish(),    budget.finish(),  amount.finish(), captured.finish(),
          status.finish(),  vendor.finish(),  intent.finish(),  tags.finish(),   on_expiry.finish(),
          created.finish(), expires.finish(), settled.finish(), actor.finish(),  ttl.finish()};
}

std::vector<Param> key_params(const ledger::WorkingSet& state,
                              const std::vector<const std::string*>& ids) {
  ArrayBuilder id, budget, name, secret_hash, created, expires, revoked;
  for (const std::string* key_id : ids) {
    const ApiKey& key = state.keys.at(*key_id);
    id.add_text(key.id);
    budget.add_text(key.budget);
    name.add_text(key.name);
    secret_hash.add_text(key.secret_hash);
    created.add_int(key.created_at);
    expires.add_int(key.expires_at);
    revoked.add_int(key.revoked_at);
  }
  return {id.finish(),      budget.finish(),  name.finish(),   secret_hash.finish(),
          created.finish(), expires.finish(), revoked.finish()};
}

std::vector<Param> webhook_params(const ledger::WorkingSet& state,
                                  const std::vector<const std::string*>& names) {
  ArrayBuilder name, root, url, events, secret, since, created, updated;
  for (const std::string* key : names) {
    const ledger::Webhook& webhook = state.webhooks.at(*key);
    name.add_text(webhook.name);
    root.add_text(webhook.root);
    url.add_text(webhook.url);
    events.add_text(events_to_text(webhook.events));
    secret.add_text(webhook.secret);
    since.add_int(webhook.since_seq);
    created.add_int(webhook.created_at);
    updated.add_int(webhook.updated_at);
  }
  return {name.finish(),   root.finish(),  url.finish(),     events.finish(),
          secret.finish(), since.finish(), created.finish(), updated.finish()};
}

std::vector<Param> vendor_params(const ledger::WorkingSet& state,
                                 const std::vector<const std::string*>& names) {
  ArrayBuilder name, root, settings, credential, created, updated;
  for (const std::string* key : names) {
    const ledger::Vendor& vendor = state.vendors.at(*key);
    name.add_text(vendor.name);
    root.add_text(vendor.root);
    settings.add_text(vendor.settings_json);
    credential.add_text(vendor.credential);
    created.add_int(vendor.created_at);
    updated.add_int(vendor.updated_at);
  }
  return {name.finish(),       root.finish(),    settings.finish(),
          credential.finish(), created.finish(), updated.finish()};
}

std::vector<Param> idempotency_params(const std::vector<IdempotencyRecord>& records) {
  ArrayBuilder root, key, request_hash, status, body, created;
  for (const IdempotencyRecord& record : records) {
    root.add_text(record.root);
    key.add_text(record.key);
    request_hash.add_text(record.request_hash);
    status.add_int(record.status);
    body.add_text(record.body);
    created.add_int(record.created_at);
  }
  return {root.finish(),   key.finish(),  request_hash.finish(),
          status.finish(), body.finish(), created.finish()};
}

std::vector<Param> entry_params(const std::vector<Entry>& entries) {
  ArrayBuilder root, seq, ts, kind, budget, amount, vendor, intent, tags, receipt, hold_id, code,
      actor, detail, postings, prev_hash, hash;
  for (const Entry& entry : entries) {
    root.add_text(entry.root);
    seq.add_int(entry.seq);
    ts.add_int(entry.ts);
    kind.add_text(entry.kind);
    budget.add_text(entry.budget);
    amount.add_optional_int(optional_micros(entry.amount));
    vendor.add_text(entry.vendor);
    intent.add_text(entry.intent);
    tags.add_text(entry.tags_json);
    receipt.add_text(entry.receipt_json);
    hold_id.add_text(entry.hold_id);
    code.add_text(entry.code);
    actor.add_text(entry.actor);
    detail.add_text(entry.detail_json);
    postings.add_text(ledger::postings_to_json_text(entry.postings));
    prev_hash.add_text(entry.prev_hash);
    hash.add_text(entry.hash);
  }
  return {root.finish(),      seq.finish(),    ts.finish(),     kind.finish(),   budget.finish(),
          amount.finish(),    vendor.finish(), intent.finish(), tags.finish(),   receipt.finish(),
          hold_id.finish(),   code.finish(),   actor.finish(),  detail.finish(), postings.finish(),
          prev_hash.finish(), hash.finish()};
}

std::vector<Param> rollup_params(const std::vector<RollupRow>& rows) {
  ArrayBuilder root, day, budget, vendor, category, kind, code, amount, count;
  for (const RollupRow& row : rows) {
    root.add_text(row.key.root);
    day.add_int(row.key.day);
    budget.add_text(row.key.budget);
    vendor.add_text(row.key.vendor);
    category.add_text(row.key.category);
    kind.add_text(row.key.kind);
    code.add_text(row.key.code);
    amount.add_int(row.amount);
    count.add_int(row.count);
  }
  return {root.finish(), day.finish(),  budget.finish(), vendor.finish(), category.finish(),
          kind.finish(), code.finish(), amount.finish(), count.finish()};
}

// Splits the dirty keys of one table into rows that existed when read (UPDATE) and new rows
// (INSERT). Sorted, so that row locks are always taken in one order.
template <typename Map>
void split_dirty(const std::unordered_set<std::string>& dirty, const Map& loaded_before,
                 std::vector<const std::string*>& updates,
                 std::vector<const std::string*>& inserts) {
  for (const std::string& key : dirty)
    (loaded_before.contains(key) ? updates : inserts).push_back(&key);
  const auto by_value = [](const std::string* a, const std::string* b) { return *a < *b; };
  std::sort(updates.begin(), updates.end(), by_value);
  std::sort(inserts.begin(), inserts.end(), by_value);
}

}  // namespace

int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void backoff(int attempt) {
  thread_local std::mt19937_64 random(std::random_device{}());
  const int64_t ceiling = std::min<int64_t>(50'000, int64_t{500} << std::min(attempt, 10));
  std::uniform_int_distribution<int64_t> pick(0, ceiling);
  std::this_thread::sleep_for(std::chrono::microseconds(pick(random)));
}

std::string random_marker() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // The marker only needs to be unique; fall back to a seeded engine plus the clock.
    std::random_device device;
    for (unsigned char& byte : bytes)
      byte = static_cast<unsigned char>(device());
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char byte : bytes) {
    out += hex[byte >> 4];
    out += hex[byte & 15];
  }
  return out;
}

int64_t random_stamp() {
  int64_t stamp = 0;
  while (stamp == 0) {  // 0 means "never stamped"
    unsigned char bytes[sizeof stamp];
    if (RAND_bytes(bytes, sizeof bytes) != 1) {
      std::random_device device;
      for (unsigned char& byte : bytes)
        byte = static_cast<unsigned char>(device());
    }
    std::memcpy(&stamp, bytes, sizeof stamp);
  }
  return stamp;
}

int64_t stamp_column(const Rows& row) {
  return row.column_optional_int(20).value_or(0);
}

const std::string* overwritten_hold(const ledger::WorkingSet& state, const ReadRows& existing) {
  for (const std::string& id : state.dirty_holds) {
    auto read = existing.holds.find(id);
    if (read != existing.holds.end() && state.holds.at(id).created_at != read->second)
      return &id;
  }
  return nullptr;
}

Error hold_exists(const std::string& id) {
  return Error{ErrorCode::conflict, "hold_id_exists",
               "A hold with id " + id + " already exists; it is never overwritten."};
}

BatchWrites batch_writes(const ledger::WorkingSet& state, const ledger::ReadSet& read,
                         const ReadRows& existing, int64_t stamp, const std::string& marker) {
  BatchWrites out;
  out.changes = !state.dirty_budgets.empty() || !state.dirty_holds.empty() ||
                !state.dirty_keys.empty() || !state.new_idempotency.empty() ||
                !state.new_entries.empty() || !state.dirty_webhooks.empty() ||
                !state.deleted_webhooks.empty() || !state.dirty_vendors.empty() ||
                !state.deleted_vendors.empty();
  std::vector<const std::string*> budget_updates, budget_inserts, hold_updates, hold_inserts,
      key_updates, key_inserts, webhook_updates, webhook_inserts, vendor_updates, vendor_inserts;
  split_dirty(state.dirty_budgets, existing.budgets, budget_updates, budget_inserts);
  if (out.changes) {
    for (const std::string& path : read.budgets) {
      if (existing.budgets.contains(path) && !state.dirty_budgets.contains(path))
        budget_updates.push_back(&path);
    }
    std::sort(budget_updates.begin(), budget_updates.end(),
              [](const std::string* a, const std::string* b) { return *a < *b; });
  }
  split_dirty(state.dirty_holds, existing.holds, hold_updates, hold_inserts);
  split_dirty(state.dirty_keys, existing.keys, key_updates, key_inserts);
  split_dirty(state.dirty_webhooks, existing.webhooks, webhook_updates, webhook_inserts);
  std::vector<std::string> webhook_deletes;
  for (const std::string& name : state.deleted_webhooks) {
    if (existing.webhooks.contains(name))
      webhook_deletes.push_back(name);
  }
  std::sort(webhook_deletes.begin(), webhook_deletes.end());
  split_dirty(state.dirty_vendors, existing.vendors, vendor_updates, vendor_inserts);
  std::vector<std::string> vendor_deletes;
  for (const std::string& name : state.deleted_vendors) {
    if (existing.vendors.contains(name))
      vendor_deletes.push_back(name);
  }
  std::sort(vendor_deletes.begin(), vendor_deletes.end());
  out.rows = budget_updates.size() + budget_inserts.size() + state.dirty_holds.size() +
             state.dirty_keys.size() + state.new_idempotency.size() + state.new_entries.size() +
             state.dirty_webhooks.size() + webhook_deletes.size() + state.dirty_vendors.size() +
             vendor_deletes.size() + 1;

  const auto stamps_of = [&](const std::vector<const std::string*>& paths, bool expected) {
    ArrayBuilder array;
    for (const std::string* path : paths)
      array.add_int(expected ? existing.budgets.at(*path) : stamp);
    return array.finish();
  };
  if (!budget_updates.empty()) {
    std::vector<Param> params = budget_params(state, budget_updates);
    params.push_back(stamps_of(budget_updates, false));
    params.push_back(stamps_of(budget_updates, true));
    out.queries.push_back({&update_budgets, std::move(params)});
    for (const std::string* path : budget_updates)
      out.updated_budgets.push_back(*path);
  }
  if (!budget_inserts.empty()) {
    std::vector<Param> params = budget_params(state, budget_inserts);
    params.push_back(stamps_of(budget_inserts, false));
    out.queries.push_back({&insert_budgets, std::move(params)});
    for (const std::string* path : budget_inserts)
      out.created_budgets.push_back(*path);
  }
  if (!hold_updates.empty())
    out.queries.push_back({&update_holds, hold_params(state, hold_updates)});
  if (!hold_inserts.empty())
    out.queries.push_back({&insert_holds, hold_params(state, hold_inserts)});
  if (!key_updates.empty())
    out.queries.push_back({&update_keys, key_params(state, key_updates)});
  if (!key_inserts.empty())
    out.queries.push_back({&insert_keys, key_params(state, key_inserts)});
  if (!webhook_deletes.empty())
    out.queries.push_back({&delete_webhooks, {text_array(webhook_deletes)}});
  if (!webhook_updates.empty())
    out.queries.push_back({&update_webhooks, webhook_params(state, webhook_updates)});
  if (!webhook_inserts.empty())
    out.queries.push_back({&insert_webhooks, webhook_params(state, webhook_inserts)});
  if (!vendor_deletes.empty())
    out.queries.push_back({&delete_vendors, {text_array(vendor_deletes)}});
  if (!vendor_updates.empty())
    out.queries.push_back({&update_vendors, vendor_params(state, vendor_updates)});
  if (!vendor_inserts.empty())
    out.queries.push_back({&insert_vendors, vendor_params(state, vendor_inserts)});
  if (!state.new_idempotency.empty()) {
    out.idempotency_query = out.queries.size();
    out.queries.push_back({&insert_idempotency, idempotency_params(state.new_idempotency)});
  }
  if (!state.new_entries.empty()) {
    out.entries_query = out.queries.size();
    out.queries.push_back({&insert_entries, entry_params(state.new_entries)});
    // The rollup moves in the same transaction as the entries it sums. After every row write
    // (and after the entries, whose keys two stale batches of a root already conflict on), so
    // its row locks never come first.
    const std::vector<RollupRow> rollup = rollup_of(state.new_entries);
    // Not counted in `rows`: at most one row per entry, usually a few per batch, and a batch
    // the row limit admitted must not be refused for its sums.
    if (!rollup.empty()) {
      out.queries.push_back({&add_rollup, rollup_params(rollup)});
    }
  }
  std::vector<std::string_view> written;
  for (const std::string& path : out.updated_budgets)
    written.push_back(path);
  for (const std::string& path : out.created_budgets)
    written.push_back(path);
  out.queries.push_back({&checked_marker,
                         {marker, std::to_string(now_micros()), std::to_string(written.size()),
                          text_array(written), std::to_string(stamp)}});
  return out;
}

Error refused_data(const DbError& error, std::string_view what) {
  return Error{ErrorCode::invalid_input, "invalid_data",
               "The database refused the batch's data while " + std::string(what) + ": " +
                   error.message + " (SQLSTATE " + error.sqlstate + ")"};
}

Error store_unavailable(std::string_view detail) {
  return Error{ErrorCode::unavailable, "store_unavailable",
               "The database is unreachable and nothing was recorded: " + std::string(detail)};
}

Error outcome_unknown(std::string_view detail) {
  return Error{ErrorCode::unavailable, "outcome_unknown",
               "Lost the connection during COMMIT and could not find out whether it "
               "committed: " +
                   std::string(detail)};
}

Error batch_too_large(size_t rows, size_t bound) {
  return Error{ErrorCode::internal, "batch_too_large",
               "A batch would write " + std::to_string(rows) + " rows, above the bound of " +
                   std::to_string(bound) + "."};
}

}  // namespace stub::store::postgres
