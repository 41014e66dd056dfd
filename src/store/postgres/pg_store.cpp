#include "store/postgres/pg_store.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <span>
#include <thread>

#include "store/row_mapping.hpp"

namespace stub::store::postgres {

namespace {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::IdempotencyRecord;

// ---- Schema ---------------------------------------------------------------------------------
// Every migration statement is idempotent (IF NOT EXISTS) and runs in its own transaction:
// distributed engines refuse DDL mixed with DML in one transaction, and several instances may
// run the same migration at once (the loser of a race re-runs a no-op). Append only.

constexpr Sql create_migrations{
    "m_migrations",
    "CREATE TABLE IF NOT EXISTS stub_migrations (version BIGINT PRIMARY KEY, "
    "applied_at BIGINT NOT NULL)"};

struct Migration {
  int64_t version;
  std::vector<Sql> statements;
};

const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
      {1,
       {
           {"m1_budgets",
            "CREATE TABLE IF NOT EXISTS budgets (path TEXT PRIMARY KEY, root TEXT NOT NULL, "
            "parent TEXT NOT NULL, limit_micros BIGINT, period TEXT NOT NULL, "
            "period_start BIGINT NOT NULL, spent BIGINT NOT NULL, reserved BIGINT NOT NULL, "
            "per_txn_max BIGINT, frozen BOOLEAN NOT NULL, frozen_reason TEXT NOT NULL, "
            "currency TEXT NOT NULL, head_seq BIGINT NOT NULL, head_hash TEXT NOT NULL, "
            "created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"},
           {"m1_budgets_by_root",
            "CREATE INDEX IF NOT EXISTS budgets_by_root ON budgets (root, path)"},
           {"m1_holds",
            "CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, root TEXT NOT NULL, "
            "budget TEXT NOT NULL, amount BIGINT NOT NULL, captured BIGINT NOT NULL, "
            "status TEXT NOT NULL, vendor TEXT NOT NULL, intent TEXT NOT NULL, "
            "tags TEXT NOT NULL, on_expiry TEXT NOT NULL, created_at BIGINT NOT NULL, "
            "expires_at BIGINT NOT NULL, settled_at BIGINT NOT NULL, actor TEXT NOT NULL)"},
           {"m1_holds_open",
            "CREATE INDEX IF NOT EXISTS holds_open_by_expiry ON holds (status, expires_at)"},
           {"m1_keys",
            "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, budget TEXT NOT NULL, "
            "name TEXT NOT NULL, secret_hash TEXT NOT NULL, created_at BIGINT NOT NULL, "
            "expires_at BIGINT NOT NULL, revoked_at BIGINT NOT NULL)"},
           {"m1_entries",
            "CREATE TABLE IF NOT EXISTS entries (root TEXT NOT NULL, seq BIGINT NOT NULL, "
            "ts BIGINT NOT NULL, kind TEXT NOT NULL, budget TEXT NOT NULL, amount BIGINT, "
            "vendor TEXT NOT NULL, intent TEXT NOT NULL, tags TEXT NOT NULL, "
            "receipt TEXT NOT NULL, hold_id TEXT NOT NULL, code TEXT NOT NULL, "
            "actor TEXT NOT NULL, detail TEXT NOT NULL, postings TEXT NOT NULL, "
            "prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (root, seq))"},
           // The primary key makes two instances racing on one key conflict (23505) instead of
           // both applying it.
           {"m1_idempotency",
            "CREATE TABLE IF NOT EXISTS idempotency (root TEXT NOT NULL, key TEXT NOT NULL, "
            "request_hash TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL, "
            "created_at BIGINT NOT NULL, PRIMARY KEY (root, key))"},
           // One row per committed batch: the witness that resolves an ambiguous COMMIT.
           {"m1_commit_markers",
            "CREATE TABLE IF NOT EXISTS commit_markers (id TEXT PRIMARY KEY, "
            "committed_at BIGINT NOT NULL)"},
       }},
      // Policies and their rolling usage (time buckets) live in the budget row, so a batch
      // reads and writes them with the rows it already locks. Nullable without a default: the
      // plainest ADD COLUMN every engine of the subset runs; NULL reads as nothing set.
      {2,
       {
           {"m2_budgets_policy", "ALTER TABLE budgets ADD COLUMN IF NOT EXISTS policy TEXT"},
           {"m2_budgets_usage", "ALTER TABLE budgets ADD COLUMN IF NOT EXISTS usage TEXT"},
       }},
      // The kill switch reads a subtree's outstanding holds by budget path.
      {3,
       {
           {"m3_holds_open_by_budget",
            "CREATE INDEX IF NOT EXISTS holds_open_by_budget ON holds (status, budget)"},
       }},
      // Approvals: a pending hold's ttl applies again from its approval.
      {4,
       {
           {"m4_holds_ttl", "ALTER TABLE holds ADD COLUMN IF NOT EXISTS ttl BIGINT"},
       }},
      // Webhooks: the configuration (written by commits, changes chained) and the dispatcher's
      // cursors and delivery log (written outside the ledger's commits).
      {5,
       {
           {"m5_webhooks",
            "CREATE TABLE IF NOT EXISTS webhooks (name TEXT PRIMARY KEY, root TEXT NOT NULL, "
            "url TEXT NOT NULL, events TEXT NOT NULL, secret TEXT NOT NULL, "
            "since_seq BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)"},
           {"m5_webhook_cursors",
            "CREATE TABLE IF NOT EXISTS webhook_cursors (name TEXT PRIMARY KEY, "
            "since_seq BIGINT NOT NULL, cursor_seq BIGINT NOT NULL, lease_owner TEXT NOT NULL, "
            "lease_until BIGINT NOT NULL)"},
           {"m5_webhook_deliveries",
            "CREATE TABLE IF NOT EXISTS webhook_deliveries (webhook TEXT NOT NULL, "
            "event_id TEXT NOT NULL, root TEXT NOT NULL, seq BIGINT NOT NULL, "
            "event TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL, "
            "attempts BIGINT NOT NULL, last_status BIGINT NOT NULL, last_error TEXT NOT NULL, "
            "next_attempt_at BIGINT NOT NULL, created_at BIGINT NOT NULL, "
            "delivered_at BIGINT NOT NULL, PRIMARY KEY (webhook, event_id))"},
           {"m5_webhook_deliveries_due",
            "CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries "
            "(webhook, status, next_attempt_at)"},
           {"m5_webhook_deliveries_recent",
            "CREATE INDEX IF NOT EXISTS webhook_deliveries_recent ON webhook_deliveries "
            "(webhook, created_at)"},
       }},
      // Commit markers are needed for seconds (to resolve an ambiguous COMMIT); old ones are
      // pruned by age.
      {6,
       {
           {"m6_commit_markers_by_time",
            "CREATE INDEX IF NOT EXISTS commit_markers_by_time ON commit_markers (committed_at)"},
       }},
      // Each budget row's stamp: a random id of the commit that last wrote it, which the
      // speculative path re-checks under the row's lock (NULL, from before, reads as 0).
      {7,
       {
           {"m7_budgets_stamp", "ALTER TABLE budgets ADD COLUMN IF NOT EXISTS stamp BIGINT"},
       }},
  };
  return all;
}

constexpr Sql select_applied{"q_applied", "SELECT version FROM stub_migrations"};
constexpr Sql record_applied{"q_record_applied",
                             "INSERT INTO stub_migrations (version, applied_at) "
                             "VALUES ($1::bigint, $2::bigint) ON CONFLICT (version) DO NOTHING"};

// ---- Transactions -----------------------------------------------------------------------------

constexpr Sql begin_read_committed{"begin_rc", "BEGIN ISOLATION LEVEL READ COMMITTED"};
constexpr Sql begin_serializable{"begin_ser", "BEGIN ISOLATION LEVEL SERIALIZABLE"};
constexpr Sql commit{"commit", "COMMIT"};
constexpr Sql rollback{"rollback", "ROLLBACK"};
constexpr Sql lock_timeout{"lock_timeout", "SET LOCAL lock_timeout = '10s'"};
// Far above a healthy wait for the batch ahead (a few milliseconds), far below a stall.
constexpr Sql spec_lock_timeout{"spec_lock_timeout", "SET LOCAL lock_timeout = '200ms'"};

// ---- Columns ----------------------------------------------------------------------------------

#define STUB_BUDGET_COLUMNS                                                                \
  "path, root, parent, limit_micros, period, period_start, spent, reserved, per_txn_max, " \
  "frozen, frozen_reason, currency, head_seq, head_hash, created_at, updated_at, policy, usage"
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
#define STUB_DELIVERY_COLUMNS                                                                 \
  "webhook, event_id, root, seq, event, payload, status, attempts, last_status, last_error, " \
  "next_attempt_at, created_at, delivered_at"

// ---- The batch's reads (round trip 1) ---------------------------------------------------------

// Rows are locked in path order, so two batches never wait on each other in a cycle.
constexpr Sql lock_budgets{"lock_budgets", "SELECT " STUB_BUDGET_COLUMNS
                                           ", stamp FROM budgets WHERE path = ANY($1::text[]) "
                                           "ORDER BY path FOR UPDATE"};
// A freeze with void_holds also locks every row below its node, in path order, after the
// lineage rows above: every writer below a node holds the node's root row first, so this
// cannot deadlock; a hold there cannot appear or settle while the freeze decides.
constexpr Sql lock_budgets_below{"lock_budgets_below",
                                 "SELECT " STUB_BUDGET_COLUMNS
                                 ", stamp FROM budgets WHERE root = $1::text AND path >= $2::text "
                                 "AND path < $3::text ORDER BY path FOR UPDATE"};
constexpr Sql select_open_holds_within{
    "select_open_holds_within",
    "SELECT " STUB_HOLD_COLUMNS
    " FROM holds WHERE status IN ('held', 'pending_approval') AND (budget = $1::text OR "
    "(budget >= $2::text AND budget < $3::text)) ORDER BY id LIMIT $4::bigint"};
constexpr Sql select_holds{"select_holds", "SELECT " STUB_HOLD_COLUMNS
                                           " FROM holds WHERE id = ANY($1::text[]) ORDER BY id"};
// Every writer of a webhook holds its root's row first, so these need no lock of their own.
constexpr Sql select_webhooks{"select_webhooks", "SELECT " STUB_WEBHOOK_COLUMNS
                                                 " FROM webhooks WHERE name = ANY($1::text[])"};
constexpr Sql select_keys{"select_keys",
                          "SELECT " STUB_KEY_COLUMNS " FROM api_keys WHERE id = ANY($1::text[])"};
// One primary-key probe per key, whatever the statistics say: the LIMIT keeps the planner from
// flattening the lateral subquery into a join, which, with statistics lagging a fast-growing
// table, it sometimes ran as a hash join over a sequential scan of every record (7 ms a batch
// and rising, against 0.9 ms).
constexpr Sql select_idempotency{
    "select_idempotency",
    "SELECT i.root, i.key, i.request_hash, i.status, i.body, i.created_at "
    "FROM unnest($1::text[], $2::text[]) AS t(r, k) CROSS JOIN LATERAL "
    "(SELECT " STUB_IDEMPOTENCY_COLUMNS
    " FROM idempotency WHERE root = t.r AND key = t.k LIMIT 1) AS i"};

// ---- The speculative path's reads: no locks (the write transaction re-checks stamps) ---------

// Budget rows first: a hold, key or webhook read after its root's row is at least as new as
// that row, and any later change to it comes with a new stamp on the root (docs/postgres.md).
constexpr Sql select_budgets{"select_budgets", "SELECT " STUB_BUDGET_COLUMNS
                                               ", stamp FROM budgets WHERE path = ANY($1::text[])"};
// The speculative transaction's first statement: the same locks as the locked path, in the
// same order, taken before anything is written.
constexpr Sql lock_paths{"lock_paths",
                         "SELECT path FROM budgets WHERE path = ANY($1::text[]) "
                         "ORDER BY path FOR UPDATE"};

// ---- The batch's writes (round trip 2): one statement per table, each row written once -------

// Every row written gets the commit's stamp, and only a row still carrying the stamp the batch
// was decided against is written (the guard: see checked_marker). On the locked path the rows
// are locked as read, so the guard always holds there.
constexpr Sql update_budgets{
    "update_budgets",
    "UPDATE budgets AS b SET root = v.root, parent = v.parent, limit_micros = v.limit_micros, "
    "period = v.period, period_start = v.period_start, spent = v.spent, reserved = v.reserved, "
    "per_txn_max = v.per_txn_max, frozen = v.frozen, frozen_reason = v.frozen_reason, "
    "currency = v.currency, head_seq = v.head_seq, head_hash = v.head_hash, "
    "created_at = v.created_at, updated_at = v.updated_at, policy = v.policy, usage = v.usage, "
    "stamp = v.stamp FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], "
    "$6::bigint[], "
    "$7::bigint[], $8::bigint[], $9::bigint[], $10::boolean[], $11::text[], $12::text[], "
    "$13::bigint[], $14::text[], $15::bigint[], $16::bigint[], $17::text[], $18::text[], "
    "$19::bigint[], $20::bigint[]) AS v(" STUB_BUDGET_COLUMNS
    ", stamp, expected) WHERE b.path = v.path AND coalesce(b.stamp, 0::bigint) = v.expected"};
// New rows are plain INSERTs: a racing creator of the same row gets 23505 and recomputes
// instead of overwriting (no upserts of decided state).
constexpr Sql insert_budgets{
    "insert_budgets",
    "INSERT INTO budgets (" STUB_BUDGET_COLUMNS
    ", stamp) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
    "$5::text[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bigint[], $10::boolean[], "
    "$11::text[], $12::text[], $13::bigint[], $14::text[], $15::bigint[], $16::bigint[], "
    "$17::text[], $18::text[], $19::bigint[])"};
constexpr Sql update_holds{
    "update_holds",
    "UPDATE holds AS h SET root = v.root, budget = v.budget, amount = v.amount, "
    "captured = v.captured, status = v.status, vendor = v.vendor, intent = v.intent, "
    "tags = v.tags, on_expiry = v.on_expiry, created_at = v.created_at, "
    "expires_at = v.expires_at, settled_at = v.settled_at, actor = v.actor, "
    "ttl = v.ttl FROM " STUB_HOLD_ARRAYS " AS v(" STUB_HOLD_COLUMNS ") WHERE h.id = v.id"};
constexpr Sql insert_holds{
    "insert_holds", "INSERT INTO holds (" STUB_HOLD_COLUMNS ") SELECT * FROM " STUB_HOLD_ARRAYS};
constexpr Sql update_keys{"update_keys",
                          "UPDATE api_keys AS k SET budget = v.budget, name = v.name, "
                          "secret_hash = v.secret_hash, created_at = v.created_at, "
                          "expires_at = v.expires_at, revoked_at = v.revoked_at "
                          "FROM " STUB_KEY_ARRAYS " AS v(" STUB_KEY_COLUMNS ") WHERE k.id = v.id"};
constexpr Sql insert_keys{
    "insert_keys", "INSERT INTO api_keys (" STUB_KEY_COLUMNS ") SELECT * FROM " STUB_KEY_ARRAYS};
constexpr Sql insert_idempotency{
    "insert_idempotency",
    "INSERT INTO idempotency (" STUB_IDEMPOTENCY_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::text[], "
    "$6::bigint[])"};
constexpr Sql insert_entries{
    "insert_entries",
    "INSERT INTO entries (" STUB_ENTRY_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], "
    "$6::bigint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], "
    "$13::text[], $14::text[], $15::text[], $16::text[], $17::text[])"};
constexpr Sql update_webhooks{
    "update_webhooks",
    "UPDATE webhooks AS w SET root = v.root, url = v.url, events = v.events, "
    "secret = v.secret, since_seq = v.since_seq, created_at = v.created_at, "
    "updated_at = v.updated_at FROM " STUB_WEBHOOK_ARRAYS " AS v(" STUB_WEBHOOK_COLUMNS
    ") WHERE w.name = v.name"};
constexpr Sql insert_webhooks{"insert_webhooks", "INSERT INTO webhooks (" STUB_WEBHOOK_COLUMNS
                                                 ") SELECT * FROM " STUB_WEBHOOK_ARRAYS};
constexpr Sql delete_webhooks{"delete_webhooks",
                              "DELETE FROM webhooks WHERE name = ANY($1::text[])"};
// The batch's last write, and its guard: the marker goes in only if every budget row the batch
// meant to write ($4) now carries its stamp ($5, random, so no other commit's). A row that
// another commit wrote since the batch read it was left alone by update_budgets; then the count
// falls short, committed_at is NULL, and the NOT NULL constraint aborts the transaction
// (23502) before COMMIT: a stale speculative batch writes nothing.
constexpr Sql checked_marker{
    "checked_marker",
    "INSERT INTO commit_markers (id, committed_at) SELECT $1::text, CASE WHEN count(*) = "
    "$3::bigint THEN $2::bigint END FROM budgets WHERE path = ANY($4::text[]) AND "
    "stamp = $5::bigint"};
constexpr Sql insert_marker{"insert_marker",
                            "INSERT INTO commit_markers (id, committed_at) "
                            "VALUES ($1::text, $2::bigint)"};
// Bounded, like every transaction: at most $2 markers per statement.
constexpr Sql prune_markers{"prune_markers",
                            "DELETE FROM commit_markers WHERE id IN (SELECT id FROM "
                            "commit_markers WHERE committed_at < $1::bigint ORDER BY "
                            "committed_at LIMIT $2::bigint)"};

// ---- Reads outside the engine -----------------------------------------------------------------

constexpr Sql select_budget{"select_budget",
                            "SELECT " STUB_BUDGET_COLUMNS " FROM budgets WHERE path = $1::text"};
constexpr Sql select_subtree{"select_subtree", "SELECT " STUB_BUDGET_COLUMNS
                                               " FROM budgets WHERE root = $1::text "
                                               "ORDER BY path"};
constexpr Sql select_roots{"select_roots",
                           "SELECT path FROM budgets WHERE parent = '' ORDER BY path"};
constexpr Sql select_hold{"select_hold",
                          "SELECT " STUB_HOLD_COLUMNS " FROM holds WHERE id = $1::text"};
constexpr Sql select_expired_holds{"select_expired_holds",
                                   "SELECT " STUB_HOLD_COLUMNS
                                   " FROM holds WHERE status IN ('held', 'pending_approval') "
                                   "AND expires_at <= $1::bigint ORDER BY expires_at "
                                   "LIMIT $2::bigint"};
constexpr Sql select_pending_approvals{"select_pending_approvals",
                                       "SELECT " STUB_HOLD_COLUMNS
                                       " FROM holds WHERE status = 'pending_approval' AND "
                                       "root = $1::text ORDER BY created_at, id "
                                       "LIMIT $2::bigint"};
constexpr Sql select_key{"select_key",
                         "SELECT " STUB_KEY_COLUMNS " FROM api_keys WHERE id = $1::text"};
constexpr Sql select_entries{"select_entries",
                             "SELECT " STUB_ENTRY_COLUMNS
                             " FROM entries WHERE root = $1::text AND seq > $2::bigint "
                             "ORDER BY seq LIMIT $3::bigint"};
constexpr Sql select_one_idempotency{"select_one_idempotency",
                                     "SELECT " STUB_IDEMPOTENCY_COLUMNS
                                     " FROM idempotency WHERE root = $1::text AND key = $2::text"};
constexpr Sql select_all_webhooks{"select_all_webhooks",
                                  "SELECT " STUB_WEBHOOK_COLUMNS " FROM webhooks ORDER BY name"};
constexpr Sql select_webhook{"select_webhook",
                             "SELECT " STUB_WEBHOOK_COLUMNS " FROM webhooks WHERE name = $1::text"};

// ---- The webhook delivery log (the dispatcher's, outside the ledger's commits) ---------------

constexpr Sql insert_cursor{"insert_cursor",
                            "INSERT INTO webhook_cursors (name, since_seq, cursor_seq, "
                            "lease_owner, lease_until) VALUES ($1::text, $2::bigint, $2::bigint, "
                            "'', 0) ON CONFLICT (name) DO NOTHING"};
// A webhook deleted and created again under its name starts over at its new since_seq.
constexpr Sql claim_cursor{
    "claim_cursor",
    "UPDATE webhook_cursors SET cursor_seq = CASE WHEN since_seq <> $2::bigint THEN $2::bigint "
    "ELSE cursor_seq END, since_seq = $2::bigint, lease_owner = $3::text, "
    "lease_until = $5::bigint WHERE name = $1::text AND (lease_owner = $3::text OR "
    "lease_until <= $4::bigint) RETURNING cursor_seq"};
constexpr Sql move_cursor{"move_cursor",
                          "UPDATE webhook_cursors SET cursor_seq = $2::bigint WHERE "
                          "name = $1::text AND lease_owner = $3::text RETURNING name"};
constexpr Sql insert_deliveries{
    "insert_deliveries",
    "INSERT INTO webhook_deliveries (" STUB_DELIVERY_COLUMNS
    ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], "
    "$6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::bigint[], "
    "$12::bigint[], $13::bigint[]) WHERE EXISTS (SELECT 1 FROM webhook_cursors WHERE "
    "name = $14::text AND lease_owner = $15::text) ON CONFLICT (webhook, event_id) DO NOTHING"};
constexpr Sql select_due_deliveries{
    "select_due_deliveries",
    "SELECT " STUB_DELIVERY_COLUMNS
    " FROM webhook_deliveries WHERE webhook = $1::text AND status = 'pending' AND "
    "next_attempt_at <= $2::bigint ORDER BY next_attempt_at, seq LIMIT $3::bigint"};
constexpr Sql update_delivery{
    "update_delivery",
    "UPDATE webhook_deliveries SET status = $3::text, attempts = $4::bigint, "
    "last_status = $5::bigint, last_error = $6::text, next_attempt_at = $7::bigint, "
    "delivered_at = $8::bigint WHERE webhook = $1::text AND event_id = $2::text"};
constexpr Sql select_deliveries{"select_deliveries",
                                "SELECT " STUB_DELIVERY_COLUMNS
                                " FROM webhook_deliveries WHERE webhook = $1::text ORDER BY "
                                "created_at DESC, seq DESC, event_id LIMIT $2::bigint"};

// Both in one statement, so one snapshot.
constexpr Sql select_entry_bounds{
    "select_entry_bounds",
    "SELECT (SELECT coalesce(max(seq), 0::bigint) FROM entries WHERE root = $1::text), "
    "(SELECT coalesce(max(head_seq), 0::bigint) FROM budgets WHERE path = $1::text)"};

constexpr const Sql* every_statement[] = {
    &select_applied,
    &record_applied,
    &begin_read_committed,
    &begin_serializable,
    &commit,
    &rollback,
    &lock_timeout,
    &spec_lock_timeout,
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
    &insert_marker,
    &checked_marker,
    &prune_markers,
    &select_budget,
    &select_subtree,
    &select_roots,
    &select_hold,
    &select_expired_holds,
    &select_pending_approvals,
    &select_key,
    &select_entries,
    &select_one_idempotency,
    &select_entry_bounds,
};

// ---- Helpers ----------------------------------------------------------------------------------

int64_t now_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
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

Param text_array(const auto& values) {
  ArrayBuilder array;
  for (const auto& value : values)
    array.add_text(value);
  return array.finish();
}

// Jittered exponential backoff ("full jitter"): uniform in [0, min(cap, base * 2^attempt)].
void backoff(int attempt) {
  thread_local std::mt19937_64 random(std::random_device{}());
  const int64_t ceiling = std::min<int64_t>(50'000, int64_t{500} << std::min(attempt, 10));
  std::uniform_int_distribution<int64_t> pick(0, ceiling);
  std::this_thread::sleep_for(std::chrono::microseconds(pick(random)));
}

// Column arrays for the budget rows in `paths`, in statement parameter order.
std::vector<Param> budget_params(const ledger::WorkingSet& state,
                                 const std::vector<const std::string*>& paths) {
  ArrayBuilder path, root, parent, limit, period, period_start, spent, reserved, per_txn, frozen,
      reason, currency, head_seq, head_hash, created, updated, policy, usage;
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
  }
  return {path.finish(),     root.finish(),         parent.finish(),  limit.finish(),
          period.finish(),   period_start.finish(), spent.finish(),   reserved.finish(),
          per_txn.finish(),  frozen.finish(),       reason.finish(),  currency.finish(),
          head_seq.finish(), head_hash.finish(),    created.finish(), updated.finish(),
          policy.finish(),   usage.finish()};
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

// Budget rows as the batch read them: path -> the stamp it was read with.
using Stamps = std::unordered_map<std::string, int64_t>;

int64_t stamp_column(const Rows& row) {
  return row.column_optional_int(18).value_or(0);
}

// The rows that existed when the batch read them, per table.
struct ReadRows {
  Stamps budgets;
  std::unordered_set<std::string> holds, keys, webhooks;
};

// Reads five consecutive results (budget rows with their stamps, holds, keys, idempotency
// records, webhooks) into `state`; `on_budget(node, stamp)` sees each budget row first.
template <typename OnBudget>
void load_rows(std::span<const ResultPtr> results, ledger::WorkingSet& state, ReadRows& existing,
               const OnBudget& on_budget) {
  const Rows budgets(results[0].get());
  for (int i = 0; i < budgets.size(); ++i) {
    BudgetNode node = read_budget(budgets.at(i));
    const int64_t stamp = stamp_column(budgets.at(i));
    on_budget(node, stamp);
    existing.budgets.emplace(node.path, stamp);
    const std::string path = node.path;
    state.budgets.emplace(path, std::move(node));
  }
  const Rows holds(results[1].get());
  for (int i = 0; i < holds.size(); ++i) {
    Hold hold = read_hold(holds.at(i));
    const std::string id = hold.id;
    state.holds.emplace(id, std::move(hold));
  }
  const Rows keys(results[2].get());
  for (int i = 0; i < keys.size(); ++i) {
    ApiKey key = read_key(keys.at(i));
    const std::string id = key.id;
    state.keys.emplace(id, std::move(key));
  }
  const Rows records(results[3].get());
  for (int i = 0; i < records.size(); ++i) {
    IdempotencyRecord record = read_idempotency(records.at(i));
    std::string slot = ledger::idempotency_slot(record.root, record.key);
    state.idempotency.emplace(std::move(slot), std::move(record));
  }
  const Rows webhooks(results[4].get());
  for (int i = 0; i < webhooks.size(); ++i) {
    ledger::Webhook webhook = read_webhook(webhooks.at(i));
    const std::string name = webhook.name;
    state.webhooks.emplace(name, std::move(webhook));
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
                         const ReadRows& existing, int64_t stamp, const std::string& marker) {
  BatchWrites out;
  out.changes = !state.dirty_budgets.empty() || !state.dirty_holds.empty() ||
                !state.dirty_keys.empty() || !state.new_idempotency.empty() ||
                !state.new_entries.empty() || !state.dirty_webhooks.empty() ||
                !state.deleted_webhooks.empty();
  std::vector<const std::string*> budget_updates, budget_inserts, hold_updates, hold_inserts,
      key_updates, key_inserts, webhook_updates, webhook_inserts;
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
  out.rows = budget_updates.size() + budget_inserts.size() + state.dirty_holds.size() +
             state.dirty_keys.size() + state.new_idempotency.size() + state.new_entries.size() +
             state.dirty_webhooks.size() + webhook_deletes.size() + 1;

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
  if (!state.new_idempotency.empty()) {
    out.idempotency_query = out.queries.size();
    out.queries.push_back({&insert_idempotency, idempotency_params(state.new_idempotency)});
  }
  if (!state.new_entries.empty()) {
    out.entries_query = out.queries.size();
    out.queries.push_back({&insert_entries, entry_params(state.new_entries)});
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

Error batch_too_large(size_t rows, size_t bound) {
  return Error{ErrorCode::internal, "batch_too_large",
               "A batch would write " + std::to_string(rows) + " rows, above the bound of " +
                   std::to_string(bound) + "."};
}

Status migrate(Connection& connection) {
  // Several instances may start at once: every statement is idempotent, and a statement that
  // loses a race (duplicate catalog row, serialization failure) is simply run again.
  const auto run_with_retry = [](const Sql& sql, auto&& execute) -> Status {
    for (int attempt = 0;; ++attempt) {
      auto result = execute();
      if (result.ok())
        return Status::success();
      // Catalog races: duplicate key in a catalog, relation or type already exists, or a
      // serialization failure / deadlock between two instances' DDL.
      const std::string& state = result.error().subcode;
      const bool raced = state == "23505" || state == "42P07" || state == "42710" ||
                         state == "40001" || state == "40P01";
      if (!raced || attempt >= 20)
        return Error{ErrorCode::unavailable, "migration_failed",
                     std::string("Migration ") + sql.name + " failed: " + result.error().message};
      backoff(attempt);
    }
  };
  if (Status status =
          run_with_retry(create_migrations, [&] { return connection.exec(create_migrations); });
      !status.ok()) {
    return status;
  }
  auto applied = connection.run(Query{&select_applied, {}});
  if (!applied.ok())
    return applied.error();
  std::unordered_set<int64_t> done;
  const Rows rows(applied->get());
  for (int i = 0; i < rows.size(); ++i)
    done.insert(rows.at(i).column_int(0));
  for (const Migration& migration : migrations()) {
    if (done.contains(migration.version))
      continue;
    for (const Sql& statement : migration.statements) {
      if (Status status = run_with_retry(statement, [&] { return connection.exec(statement); });
          !status.ok()) {
        return status;
      }
    }
    const Query record{&record_applied,
                       {std::to_string(migration.version), std::to_string(now_micros())}};
    if (Status status = run_with_retry(record_applied, [&] { return connection.run(record); });
        !status.ok()) {
      return status;
    }
  }
  return Status::success();
}

}  // namespace

std::vector<const Sql*> PgStore::statements() {
  return {std::begin(every_statement), std::end(every_statement)};
}

std::vector<const Sql*> PgStore::migration_statements() {
  std::vector<const Sql*> out{&create_migrations};
  for (const Migration& migration : migrations()) {
    for (const Sql& statement : migration.statements)
      out.push_back(&statement);
  }
  return out;
}

std::vector<Store::EventCount> PgStore::event_counts() const {
  return {{"conflict_retry", counters_.conflicts.load(std::memory_order_relaxed)},
          {"reconnect", counters_.reconnects.load(std::memory_order_relaxed)},
          {"ambiguous_commit", counters_.ambiguous.load(std::memory_order_relaxed)},
          {"ambiguous_commit_found_committed",
           counters_.found_committed.load(std::memory_order_relaxed)},
          {"speculated", counters_.speculated.load(std::memory_order_relaxed)},
          {"speculation_missed", counters_.speculation_missed.load(std::memory_order_relaxed)}};
}

Result<std::unique_ptr<PgStore>> PgStore::open(const std::string& url,
                                               const StoreOptions& options) {
  std::unique_ptr<PgStore> store(new PgStore());
  store->url_ = url;
  if (options.isolation == "serializable") {
    store->isolation_ = Isolation::serializable;
  } else if (options.isolation != "read-committed" && !options.isolation.empty()) {
    return Error::invalid("invalid_isolation", "Isolation must be read-committed or serializable.");
  }
  for (std::unique_ptr<Connection>& writer : store->writers_) {
    auto opened = Connection::open(url);
    if (!opened.ok())
      return opened.error();
    writer = std::move(opened).value();
  }
  if (!options.read_only) {
    if (Status status = migrate(*store->writers_[0]); !status.ok())
      return status.error();
  }
  const size_t readers = std::max<size_t>(1, options.read_connections);
  for (size_t i = 0; i < readers; ++i) {
    auto reader = Connection::open(url);
    if (!reader.ok())
      return reader.error();
    store->readers_.add(std::move(reader).value());
  }
  return store;
}

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

Status PgStore::ensure_writer(size_t index) {
  Connection& writer = *writers_[index];
  if (!writer.broken())
    return Status::success();
  if (!writer.reset()) {
    return Error{ErrorCode::unavailable, "db_unreachable",
                 "Cannot reconnect to " + redact_url(url_) + "."};
  }
  counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  return Status::success();
}

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
    auto resolved = resolve_ambiguous(flight.connection, flight.marker);
    if (!resolved.ok()) {
      return Error{ErrorCode::unavailable, "commit_outcome_unknown",
                   "Lost the connection during COMMIT and could not find out whether it "
                   "committed: " +
                       resolved.error().message};
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

void PgStore::after_commit(size_t connection) {
  // Every 1,000 commits, up to 1,000 markers older than an hour go: pruning keeps pace with one
  // marker per commit, and a failed prune is simply tried again later.
  if (++commits_since_prune_ < 1'000)
    return;
  commits_since_prune_ = 0;
  if (ensure_writer(connection).ok()) {
    (void)writers_[connection]->run(
        Query{&prune_markers,
              {std::to_string(now_micros() - marker_retention_micros), std::to_string(1'000)}});
  }
}

std::unique_ptr<PgStore::Flight> PgStore::speculate(size_t index, const ledger::ReadSet& read,
                                                    const ApplyBatch& apply,
                                                    const OnCommitted& committed) {
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
  std::vector<std::string> budget_reads, hold_reads, key_reads, webhook_reads;
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
    }
  }
  // What neither a batch in flight nor the cache has: one round trip, no locks, while the batch
  // in flight commits (budget rows first). Idempotency records are read only along with
  // something else: a key that exists after all fails the INSERT (23505), and the batch is
  // recomputed on the locked path.
  if (!budget_reads.empty() || !hold_reads.empty() || !key_reads.empty() ||
      !webhook_reads.empty()) {
    const Query reads[] = {
        {&select_budgets, {text_array(budget_reads)}},
        {&select_holds, {text_array(hold_reads)}},
        {&select_keys, {text_array(key_reads)}},
        {&select_idempotency, {idempotency_roots.finish(), idempotency_keys.finish()}},
        {&select_webhooks, {text_array(webhook_reads)}},
    };
    auto loaded = connection.pipeline(reads);
    if (loaded.error)
      return nullptr;  // The locked path retries, reconnects or reports it.
    load_rows(loaded.results, state, existing,
              [&](const BudgetNode& node, int64_t stamp) { remember(node.path, node, stamp); });
  }
  for (const auto& [id, hold] : state.holds)
    existing.holds.insert(id);
  for (const auto& [id, key] : state.keys)
    existing.keys.insert(id);
  for (const auto& [name, webhook] : state.webhooks)
    existing.webhooks.insert(name);

  apply(state);

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
  queries.push_back({&spec_lock_timeout, {}});
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

// ---- The locked path --------------------------------------------------------------------------

Status PgStore::commit_locked(size_t index, const ledger::ReadSet& read, const ApplyBatch& apply,
                              const OnCommitted& committed) {
  // Conflicts are retried until this deadline; then the callers get a retryable 503 and the
  // store carries on. A database that stays unreachable for as long fails the store.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int attempt = 0;; ++attempt) {
    Status failure = Status::success();
    switch (this->attempt(index, read, apply, committed, failure)) {
      case AttemptResult::committed:
        after_commit(index);
        return Status::success();
      case AttemptResult::failed:
        return failure;
      case AttemptResult::retry:
        break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      if (!failure.ok())
        return failure;
      return Error{ErrorCode::overloaded, "conflict_retries_exhausted",
                   "The batch kept conflicting with other writers; retry with the same "
                   "Idempotency-Key."};
    }
    backoff(attempt);
  }
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
    failure = to_error(error, what);
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
  };
  for (const std::string& subtree : read.open_hold_subtrees) {
    const std::string low = subtree + "/";
    const std::string high = subtree + "0";  // '0' follows '/'
    reads.push_back({&lock_budgets_below, {subtree.substr(0, subtree.find('/')), low, high}});
    reads.push_back({&select_open_holds_within,
                     {subtree, low, high, std::to_string(ledger::open_holds_read_max + 1)}});
  }
  auto loaded = connection.pipeline(reads);
  if (loaded.error)
    return abandon(*loaded.error, "reading the batch's rows");

  ledger::WorkingSet state;
  ReadRows existing;
  {
    load_rows(std::span(loaded.results).subspan(1, 5), state, existing,
              [](const BudgetNode&, int64_t) {});
    size_t result = 6;
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
    }
    assert(result == loaded.results.size());
  }
  for (const auto& [name, webhook] : state.webhooks)
    existing.webhooks.insert(name);
  for (const auto& [id, hold] : state.holds)
    existing.holds.insert(id);
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
  auto outcome = resolve_ambiguous(index, marker);
  if (!outcome.ok()) {
    failure = Error{ErrorCode::unavailable, "commit_outcome_unknown",
                    "Lost the connection during COMMIT and could not find out whether it "
                    "committed: " +
                        outcome.error().message};
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

Result<bool> PgStore::resolve_ambiguous(size_t index, const std::string& marker) {
  // Inserting the same marker waits for the old transaction if its backend is still finishing
  // it (a unique-index wait), then fails with 23505 if it committed or succeeds if it did not.
  // Reading alone could miss a COMMIT still in flight on the old backend.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int attempt = 0;; ++attempt) {
    if (ensure_writer(index).ok()) {
      Connection& writer = *writers_[index];
      const Query probe[] = {
          {&begin_read_committed, {}},
          {&lock_timeout, {}},
          {&insert_marker, {marker, std::to_string(now_micros())}},
      };
      auto result = writer.pipeline(probe);
      const std::optional<DbError>& error = result.error;
      if (!error || error->failure != Failure::connection_lost)
        (void)writer.exec(rollback);
      if (!error)
        return false;  // The marker was free: the batch did not commit.
      if (error->sqlstate == "23505")
        return true;
      if (error->failure == Failure::fatal && error->sqlstate != "55P03")
        return to_error(*error, "resolving an ambiguous commit");
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Error{ErrorCode::unavailable, "db_unreachable",
                   "The database stayed unreachable while resolving a commit."};
    }
    backoff(attempt + 4);
  }
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

Result<std::vector<query::AggregateRow>> PgStore::run_query(const query::CompiledQuery& query) {
  assert(!query.sql.empty() && query.rows_max > 0);
  std::vector<Param> params;
  params.reserve(query.parameters.size());
  for (const query::SqlParameter& parameter : query.parameters) {
    if (const auto* number = std::get_if<int64_t>(&parameter))
      params.emplace_back(std::to_string(*number));
    else
      params.emplace_back(std::get<std::string>(parameter));
  }
  Reader reader = checkout_reader();
  if (reader->broken() && reader->reset())
    counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
  auto result = reader->run_unprepared(query.sql, params);
  if (!result.ok())
    return result.error();
  const Rows rows(result->get());
  if (static_cast<size_t>(rows.size()) > query.rows_max) {
    return Error::invalid("query_too_broad",
                          "The query has too many groups; narrow its range or its groups.");
  }
  const int keys = static_cast<int>(query.key_columns);
  std::vector<query::AggregateRow> out;
  out.reserve(static_cast<size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    const Rows row = rows.at(i);
    query::AggregateRow aggregate;
    for (int column = 0; column < keys; ++column) {
      if (row.column_is_null(column))
        aggregate.keys.emplace_back(std::nullopt);
      else
        aggregate.keys.emplace_back(row.column_text(column));
    }
    aggregate.amount_micros = row.column_int(keys);
    aggregate.count = row.column_int(keys + 1);
    out.push_back(std::move(aggregate));
  }
  assert(out.size() <= query.rows_max);
  return out;
}

}  // namespace stub::store::postgres
