#pragma once

// Every statement the PostgreSQL store issues, as constants: the SQL subset of
// docs/postgres.md (explicit casts on every parameter, no triggers, sequences, FKs or
// savepoints), which tests/store/pg_store_test.cpp scans through `every_statement`.

#include "store/postgres/pg_connection.hpp"

namespace stub::store::postgres {

// ---- Migrations' bookkeeping ------------------------------------------------------------------

inline constexpr Sql select_applied{"q_applied", "SELECT version FROM stub_migrations"};
inline constexpr Sql record_applied{
    "q_record_applied",
    "INSERT INTO stub_migrations (version, applied_at) "
    "VALUES ($1::bigint, $2::bigint) ON CONFLICT (version) DO NOTHING"};

// ---- Transactions -----------------------------------------------------------------------------

inline constexpr Sql begin_read_committed{"begin_rc", "BEGIN ISOLATION LEVEL READ COMMITTED"};
inline constexpr Sql begin_serializable{"begin_ser", "BEGIN ISOLATION LEVEL SERIALIZABLE"};
inline constexpr Sql commit{"commit", "COMMIT"};
inline constexpr Sql rollback{"rollback", "ROLLBACK"};
inline constexpr Sql lock_timeout{"lock_timeout", "SET LOCAL lock_timeout = '10s'"};
// Far above a healthy wait for the batch ahead (a few milliseconds), far below a stall.
inline constexpr Sql spec_lock_timeout{"spec_lock_timeout", "SET LOCAL lock_timeout = '200ms'"};
// Fault injection: a speculative transaction that waits on a lock long enough for a test to cut
// its client and run the ambiguous-commit check meanwhile.
inline constexpr Sql spec_lock_timeout_long{"spec_lock_timeout_long",
                                            "SET LOCAL lock_timeout = '30s'"};

// ---- Columns ----------------------------------------------------------------------------------

#define STUB_BUDGET_COLUMNS                                                                       \
  "path, root, parent, limit_micros, period, period_start, spent, reserved, per_txn_max, "        \
  "frozen, frozen_reason, currency, head_seq, head_hash, created_at, updated_at, policy, usage, " \
  "delegation, delegation_ends_at"
#define STUB_HOLD_COLUMNS                                                                     \
  "id, root, budget, amount, captured, status, vendor, intent, tags, on_expiry, created_at, " \
  "expires_at, settled_at, actor, ttl"
#define STUB_HOLD_ARRAYS                                                                \
  "unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::text[], " \
  "$7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[], "     \
  "$13::bigint[], $14::text[], $15::bigint[])"
#define STUB_KEY_COLUMNS "id, budget, name, secret_hash, created_at, expires_at, revoked_at"
#define STUB_KEY_ARRAYS                                                                 \
  "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], " \
  "$7::bigint[])"
#define STUB_ENTRY_COLUMNS                                                                     \
  "root, seq, ts, kind, budget, amount, vendor, intent, tags, receipt, hold_id, code, actor, " \
  "detail, postings, prev_hash, hash"
#define STUB_IDEMPOTENCY_COLUMNS "root, key, request_hash, status, body, created_at"

#define STUB_WEBHOOK_COLUMNS "name, root, url, events, secret, since_seq, created_at, updated_at"
#define STUB_WEBHOOK_ARRAYS                                                           \
  "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], " \
  "$7::bigint[], $8::bigint[])"
#define STUB_VENDOR_COLUMNS "name, root, settings, credential, created_at, updated_at"
#define STUB_VENDOR_ARRAYS \
  "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[])"
#define STUB_DELIVERY_COLUMNS                                                                 \
  "webhook, event_id, root, seq, event, payload, status, attempts, last_status, last_error, " \
  "next_attempt_at, created_at, delivered_at"

// ---- The batch's reads (round trip 1) ---------------------------------------------------------

// Rows are locked in path order, so two batches never wait on each other in a cycle.
inline constexpr Sql lock_budgets{"lock_budgets",
                                  "SELECT " STUB_BUDGET_COLUMNS
                                  ", stamp FROM budgets WHERE path = ANY($1::text[]) "
                                  "ORDER BY path FOR UPDATE"};
// A freeze with void_holds also locks every row below its node, in path order, after the
// lineage rows above: every writer below a node holds the node's root row first, so this
// cannot deadlock; a hold there cannot appear or settle while the freeze decides.
inline constexpr Sql lock_budgets_below{
    "lock_budgets_below", "SELECT " STUB_BUDGET_COLUMNS
                          ", stamp FROM budgets WHERE root = $1::text AND path >= $2::text "
                          "AND path < $3::text ORDER BY path FOR UPDATE"};
inline constexpr Sql select_open_holds_within{
    "select_open_holds_within",
    "SELECT " STUB_HOLD_COLUMNS
    " FROM holds WHERE status IN ('held', 'pending_approval') AND (budget = $1::text OR "
    "(budget >= $2::text AND budget < $3::text)) ORDER BY id LIMIT $4::bigint"};
// Revoking a key reads every key bound in its subtree (the delegations' keys end with it).
inline constexpr Sql select_keys_within{
    "select_keys_within", "SELECT " STUB_KEY_COLUMNS
                          " FROM api_keys WHERE budget = $1::text OR (budget >= $2::text AND "
                          "budget < $3::text) ORDER BY id"};
inline constexpr Sql select_holds{"select_holds",
                                  "SELECT " STUB_HOLD_COLUMNS
                                  " FROM holds WHERE id = ANY($1::text[]) ORDER BY id"};
// Every writer of a webhook holds its root's row first, so these need no lock of their own.
inline constexpr Sql select_webhooks{"select_webhooks",
                                     "SELECT " STUB_WEBHOOK_COLUMNS
                                     " FROM webhooks WHERE name = ANY($1::text[])"};
// Every writer of a vendor holds its root's row first, the same way.
inline constexpr Sql select_vendors{
    "select_vendors", "SELECT " STUB_VENDOR_COLUMNS " FROM vendors WHERE name = ANY($1::text[])"};
inline constexpr Sql select_keys{
    "select_keys", "SELECT " STUB_KEY_COLUMNS " FROM api_keys WHERE id = ANY($1::text[])"};
// One primary-key probe per key, whatever the statistics say: the LIMIT keeps the planner from
// flattening the lateral subquery into a join, which, with statistics lagging a fast-growing
// table, it sometimes ran as a hash join over a sequential scan of every record (7 ms a batch
// and rising, against 0.9 ms).
inline constexpr Sql select_idempotency{
    "select_idempotency",
    "SELECT i.root, i.key, i.request_hash, i.status, i.body, i.created_at "
    "FROM unnest($1::text[], $2::text[]) AS t(r, k) CROSS JOIN LATERAL "
    "(SELECT " STUB_IDEMPOTENCY_COLUMNS
    " FROM idempotency WHERE root = t.r AND key = t.k LIMIT 1) AS i"};

// ---- The speculative path's reads: no locks (the write transaction re-checks stamps) ---------

// Budget rows first: a hold, key or webhook read after its root's row is at least as new as
// that row, and any later change to it comes with a new stamp on the root (docs/postgres.md).
inline constexpr Sql select_budgets{"select_budgets",
                                    "SELECT " STUB_BUDGET_COLUMNS
                                    ", stamp FROM budgets WHERE path = ANY($1::text[])"};
// The speculative transaction's first statement: the same locks as the locked path, in the
// same order, taken before anything is written.
inline constexpr Sql lock_paths{"lock_paths",
                                "SELECT path FROM budgets WHERE path = ANY($1::text[]) "
                                "ORDER BY path FOR UPDATE"};

// ---- The batch's writes (round trip 2): one statement per table, each row written once -------

// Every row written gets the commit's stamp, and only a row still carrying the stamp the batch
// was decided against is written (the guard: see checked_marker). On the locked path the rows
// are locked as read, so the guard always holds there.
inline constexpr Sql update_budgets{
    "update_budgets",
    "UPDATE budgets AS b SET root = v.root, parent = v.parent, limit_micros = v.limit_micros, "
    "period = v.period, period_start = v.period_start, spent = v.spent, reserved = v.reserved, "
    "per_txn_max = v.per_txn_max, frozen = v.frozen, frozen_reason = v.frozen_reason, "
    "currency = v.currency, head_seq = v.head_seq, head_hash = v.head_hash, "
    "created_at = v.created_at, updated_at = v.updated_at, policy = v.policy, usage = v.usage, "
    "delegation = v.delegation, delegation_ends_at = v.delegation_ends_at, "
    "stamp = v.stamp FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], "
    "$6::bigint[], "
    "$7::bigint[], $8::bigint[], $9::bigint[], $10::boolean[], $11::text[], $12::text[], "
    "$13::bigint[], $14::text[], $15::bigint[], $16::bigint[], $17::text[], $18::text[], "
    "$19::text[], $20::bigint[], $21::bigint[], $22::bigint[]) AS v(" STUB_BUDGET_COLUMNS
    ", stamp, expected) WHERE b.path = v.path AND coalesce(b.stamp, 0::bigint) = v.expected"};
// New rows are plain INSERTs: a racing creator of the same row gets 23505 and recomputes
// instead of overwriting (no upserts of decided state).
inline constexpr Sql insert_budgets{
    "insert_budgets",
    "INSERT INTO budgets (" STUB_BUDGET_COLUMNS
    ", stamp) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
    "$5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::boolean[], "
    "$11::text[], $12::text[], $13::bigint[], $14::text[], $15::bigint[], $16::bigint[], "
    "$17::text[], $18::text[], $19::text[], $20::bigint[], $21::bigint[])"};
inline constexpr Sql update_holds{
    "update_holds",
    "UPDATE holds AS h SET root = v.root, budget = v.budget, amount = v.amount, "
    "captured = v.captured, status = v.status, vendor = v.vendor, intent = v.intent, "
    "tags = v.tags, on_expiry = v.on_expiry, created_at = v.created_at, "
    "expires_at = v.expires_at, settled_at = v.settled_at, actor = v.actor, "
    "ttl = v.ttl FROM " STUB_HOLD_ARRAYS " AS v(" STUB_HOLD_COLUMNS ") WHERE h.id = v.id"};
inline constexpr Sql insert_holds{
    "insert_holds", "INSERT INTO holds (" STUB_HOLD_COLUMNS ") SELECT * FROM " STUB_HOLD_ARRAYS};
inline constexpr Sql update_keys{"update_keys",
                                 "UPDATE api_keys AS k SET budget = v.budget, name = v.name, "
                                 "secret_hash = v.secret_hash, created_at = v.created_at, "
                                 "expires_at = v.expires_at, revoked_at = v.revoked_at "
                                 "FROM " STUB_KEY_ARRAYS " AS v(" STUB_KEY_COLUMNS
                                 ") WHERE k.id = v.id"};
inline constexpr Sql insert_keys{
    "insert_keys", "INSERT INTO api_keys (" STUB_KEY_COLUMNS ") SELECT * FROM " STUB_KEY_ARRAYS};
inline constexpr Sql insert_idempotency{
    "insert_idempotency",
    "INSERT INTO idempotency (" STUB_IDEMPOTENCY_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], "
    "$6::bigint[])"};
inline constexpr Sql insert_entries{
    "insert_entries",
    "INSERT INTO entries (" STUB_ENTRY_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], "
    "$6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], "
    "$13::text[], $14::text[], $15::text[], $16::text[], $17::text[])"};
// Adds a batch's sums to the entry rollup (store/rollup.hpp): one row per key, in key order.
inline constexpr Sql add_rollup{
    "add_rollup",
    "INSERT INTO entry_rollup (root, day, budget, vendor, category, kind, code, amount, count) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::text[], $8::bigint[], $9::bigint[]) "
    "ON CONFLICT (root, day, budget, vendor, category, kind, code) DO UPDATE SET "
    "amount = entry_rollup.amount + excluded.amount, count = entry_rollup.count + excluded.count"};
inline constexpr Sql update_webhooks{
    "update_webhooks",
    "UPDATE webhooks AS w SET root = v.root, url = v.url, events = v.events, "
    "secret = v.secret, since_seq = v.since_seq, created_at = v.created_at, "
    "updated_at = v.updated_at FROM " STUB_WEBHOOK_ARRAYS " AS v(" STUB_WEBHOOK_COLUMNS
    ") WHERE w.name = v.name"};
inline constexpr Sql insert_webhooks{"insert_webhooks",
                                     "INSERT INTO webhooks (" STUB_WEBHOOK_COLUMNS
                                     ") SELECT * FROM " STUB_WEBHOOK_ARRAYS};
inline constexpr Sql delete_webhooks{"delete_webhooks",
                                     "DELETE FROM webhooks WHERE name = ANY($1::text[])"};
inline constexpr Sql update_vendors{
    "update_vendors",
    "UPDATE vendors AS d SET root = v.root, settings = v.settings, credential = v.credential, "
    "created_at = v.created_at, updated_at = v.updated_at FROM " STUB_VENDOR_ARRAYS
    " AS v(" STUB_VENDOR_COLUMNS ") WHERE d.name = v.name"};
inline constexpr Sql insert_vendors{"insert_vendors", "INSERT INTO vendors (" STUB_VENDOR_COLUMNS
                                                      ") SELECT * FROM " STUB_VENDOR_ARRAYS};
inline constexpr Sql delete_vendors{"delete_vendors",
                                    "DELETE FROM vendors WHERE name = ANY($1::text[])"};
// The batch's last write, and its guard: the marker goes in only if every budget row the batch
// meant to write ($4) now carries its stamp ($5, random, so no other commit's). A row that
// another commit wrote since the batch read it was left alone by update_budgets; then the count
// falls short, committed_at is NULL, and the NOT NULL constraint aborts the transaction
// (23502) before COMMIT: a stale speculative batch writes nothing.
inline constexpr Sql checked_marker{
    "checked_marker",
    "INSERT INTO commit_markers (id, committed_at) SELECT $1::text, CASE WHEN count(*) = "
    "$3::bigint THEN $2::bigint END FROM budgets WHERE path = ANY($4::text[]) AND "
    "stamp = $5::bigint"};
// The ambiguous-commit check's fence: the batch's own marker id, committed by the check.
inline constexpr Sql insert_fence{"insert_fence",
                                  "INSERT INTO commit_markers (id, committed_at, fence) "
                                  "VALUES ($1::text, $2::bigint, true)"};
inline constexpr Sql select_marker_fence{"select_marker_fence",
                                         "SELECT coalesce(fence, false) FROM commit_markers "
                                         "WHERE id = $1::text"};
// Bounded, like every transaction: at most $2 records per statement, oldest first (indexed).
inline constexpr Sql prune_idempotency_records{
    "prune_idempotency",
    "DELETE FROM idempotency WHERE (root, key) IN (SELECT root, key FROM idempotency WHERE "
    "created_at < $1::bigint ORDER BY created_at LIMIT $2::bigint)"};
// A round trip that proves a writer connection works (the sequencer's probe while degraded).
inline constexpr Sql probe_connection{"probe_connection", "SELECT 1"};
// Bounded, like every transaction: at most $2 markers per statement.
inline constexpr Sql prune_markers{"prune_markers",
                                   "DELETE FROM commit_markers WHERE id IN (SELECT id FROM "
                                   "commit_markers WHERE committed_at < $1::bigint ORDER BY "
                                   "committed_at LIMIT $2::bigint)"};

// ---- Reads outside the engine -----------------------------------------------------------------

inline constexpr Sql select_budget{
    "select_budget", "SELECT " STUB_BUDGET_COLUMNS " FROM budgets WHERE path = $1::text"};
inline constexpr Sql select_subtree{"select_subtree", "SELECT " STUB_BUDGET_COLUMNS
                                                      " FROM budgets WHERE root = $1::text "
                                                      "ORDER BY path"};
inline constexpr Sql select_roots{"select_roots",
                                  "SELECT path FROM budgets WHERE parent = '' ORDER BY path"};
inline constexpr Sql select_hold{"select_hold",
                                 "SELECT " STUB_HOLD_COLUMNS " FROM holds WHERE id = $1::text"};
inline constexpr Sql select_expired_holds{
    "select_expired_holds", "SELECT " STUB_HOLD_COLUMNS
                            " FROM holds WHERE status IN ('held', 'pending_approval') "
                            "AND expires_at <= $1::bigint ORDER BY expires_at "
                            "LIMIT $2::bigint"};
// Active delegations whose key's life is over, soonest first (the sweeper ends them).
inline constexpr Sql select_lapsed_delegations{
    "select_lapsed_delegations",
    "SELECT root, path FROM budgets WHERE delegation_ends_at IS NOT NULL AND "
    "delegation_ends_at <= $1::bigint ORDER BY delegation_ends_at LIMIT $2::bigint"};
inline constexpr Sql select_pending_approvals{"select_pending_approvals",
                                              "SELECT " STUB_HOLD_COLUMNS
                                              " FROM holds WHERE status = 'pending_approval' AND "
                                              "root = $1::text ORDER BY created_at, id "
                                              "LIMIT $2::bigint"};
inline constexpr Sql select_key{"select_key",
                                "SELECT " STUB_KEY_COLUMNS " FROM api_keys WHERE id = $1::text"};
inline constexpr Sql select_entries{"select_entries",
                                    "SELECT " STUB_ENTRY_COLUMNS
                                    " FROM entries WHERE root = $1::text AND seq > $2::bigint "
                                    "ORDER BY seq LIMIT $3::bigint"};
inline constexpr Sql select_one_idempotency{
    "select_one_idempotency", "SELECT " STUB_IDEMPOTENCY_COLUMNS
                              " FROM idempotency WHERE root = $1::text AND key = $2::text"};
inline constexpr Sql select_all_webhooks{
    "select_all_webhooks", "SELECT " STUB_WEBHOOK_COLUMNS " FROM webhooks ORDER BY name"};
inline constexpr Sql select_webhook{
    "select_webhook", "SELECT " STUB_WEBHOOK_COLUMNS " FROM webhooks WHERE name = $1::text"};
inline constexpr Sql select_all_vendors{
    "select_all_vendors", "SELECT " STUB_VENDOR_COLUMNS " FROM vendors ORDER BY name"};
inline constexpr Sql select_vendor{
    "select_vendor", "SELECT " STUB_VENDOR_COLUMNS " FROM vendors WHERE name = $1::text"};

// ---- The webhook delivery log (the dispatcher's, outside the ledger's commits) ---------------

inline constexpr Sql insert_cursor{
    "insert_cursor",
    "INSERT INTO webhook_cursors (name, since_seq, cursor_seq, "
    "lease_owner, lease_until) VALUES ($1::text, $2::bigint, $2::bigint, "
    "'', 0) ON CONFLICT (name) DO NOTHING"};
// A webhook deleted and created again under its name starts over at its new since_seq.
inline constexpr Sql claim_cursor{
    "claim_cursor",
    "UPDATE webhook_cursors SET cursor_seq = CASE WHEN since_seq <> $2::bigint THEN $2::bigint "
    "ELSE cursor_seq END, since_seq = $2::bigint, lease_owner = $3::text, "
    "lease_until = $5::bigint WHERE name = $1::text AND (lease_owner = $3::text OR "
    "lease_until <= $4::bigint) RETURNING cursor_seq"};
inline constexpr Sql move_cursor{"move_cursor",
                                 "UPDATE webhook_cursors SET cursor_seq = $2::bigint WHERE "
                                 "name = $1::text AND lease_owner = $3::text RETURNING name"};
inline constexpr Sql insert_deliveries{
    "insert_deliveries",
    "INSERT INTO webhook_deliveries (" STUB_DELIVERY_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], "
    "$6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::bigint[], "
    "$12::bigint[], $13::bigint[]) WHERE EXISTS (SELECT 1 FROM webhook_cursors WHERE "
    "name = $14::text AND lease_owner = $15::text) ON CONFLICT (webhook, event_id) DO NOTHING"};
inline constexpr Sql select_due_deliveries{
    "select_due_deliveries",
    "SELECT " STUB_DELIVERY_COLUMNS
    " FROM webhook_deliveries WHERE webhook = $1::text AND status = 'pending' AND "
    "next_attempt_at <= $2::bigint ORDER BY next_attempt_at, seq LIMIT $3::bigint"};
inline constexpr Sql update_delivery{
    "update_delivery",
    "UPDATE webhook_deliveries SET status = $3::text, attempts = $4::bigint, "
    "last_status = $5::bigint, last_error = $6::text, next_attempt_at = $7::bigint, "
    "delivered_at = $8::bigint WHERE webhook = $1::text AND event_id = $2::text"};
inline constexpr Sql select_deliveries{"select_deliveries",
                                       "SELECT " STUB_DELIVERY_COLUMNS
                                       " FROM webhook_deliveries WHERE webhook = $1::text ORDER BY "
                                       "created_at DESC, seq DESC, event_id LIMIT $2::bigint"};

// Both in one statement, so one snapshot.
inline constexpr Sql select_entry_bounds{
    "select_entry_bounds",
    "SELECT (SELECT coalesce(max(seq), 0::bigint) FROM entries WHERE root = $1::text), "
    "(SELECT coalesce(max(head_seq), 0::bigint) FROM budgets WHERE path = $1::text)"};

// ---- Signed checkpoints (the checkpoint signer's, outside the ledger's batches) --------------

#define STUB_CHECKPOINT_COLUMNS "root, seq, hash, ts, key_id, signature"
inline constexpr Sql insert_checkpoint{
    "insert_checkpoint",
    "INSERT INTO checkpoints (" STUB_CHECKPOINT_COLUMNS
    ") VALUES ($1::text, $2::bigint, $3::text, $4::bigint, $5::text, $6::text) "
    "ON CONFLICT (root, seq) DO NOTHING RETURNING seq"};
inline constexpr Sql select_checkpoints{
    "select_checkpoints", "SELECT " STUB_CHECKPOINT_COLUMNS
                          " FROM checkpoints WHERE root = $1::text AND seq > $2::bigint "
                          "ORDER BY seq LIMIT $3::bigint"};
inline constexpr Sql select_latest_checkpoint{"select_latest_checkpoint",
                                              "SELECT " STUB_CHECKPOINT_COLUMNS
                                              " FROM checkpoints WHERE root = $1::text "
                                              "ORDER BY seq DESC LIMIT 1"};

// Every statement the store can issue (the SQL-subset scan reads it through
// PgStore::statements()).
inline constexpr const Sql* every_statement[] = {
    &select_applied,
    &record_applied,
    &begin_read_committed,
    &begin_serializable,
    &commit,
    &rollback,
    &lock_timeout,
    &spec_lock_timeout,
    &spec_lock_timeout_long,
    &lock_budgets,
    &lock_budgets_below,
    &select_budgets,
    &lock_paths,
    &select_open_holds_within,
    &select_holds,
    &select_keys,
    &select_idempotency,
    &select_webhooks,
    &update_webhooks,
    &insert_webhooks,
    &delete_webhooks,
    &select_all_webhooks,
    &select_webhook,
    &select_vendors,
    &update_vendors,
    &insert_vendors,
    &delete_vendors,
    &select_all_vendors,
    &select_vendor,
    &insert_cursor,
    &claim_cursor,
    &move_cursor,
    &insert_deliveries,
    &select_due_deliveries,
    &update_delivery,
    &select_deliveries,
    &update_budgets,
    &insert_budgets,
    &update_holds,
    &insert_holds,
    &update_keys,
    &insert_keys,
    &insert_idempotency,
    &insert_entries,
    &add_rollup,
    &insert_fence,
    &select_marker_fence,
    &checked_marker,
    &prune_markers,
    &prune_idempotency_records,
    &probe_connection,
    &select_budget,
    &select_subtree,
    &select_roots,
    &select_hold,
    &select_expired_holds,
    &select_lapsed_delegations,
    &select_keys_within,
    &select_pending_approvals,
    &select_key,
    &select_entries,
    &select_one_idempotency,
    &select_entry_bounds,
    &insert_checkpoint,
    &select_checkpoints,
    &select_latest_checkpoint,
};

}  // namespace stub::store::postgres
