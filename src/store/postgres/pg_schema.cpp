#include "store/postgres/pg_schema.hpp"

#include <string>
#include <unordered_set>

#include "store/postgres/pg_batch_rows.hpp"
#include "store/postgres/pg_statements.hpp"

namespace stub::store::postgres {

namespace {

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
      // Idempotency records are kept for a retention (7 days by default) and pruned oldest
      // first in bounded steps.
      {8,
       {
           {"m8_idempotency_by_time",
            "CREATE INDEX IF NOT EXISTS idempotency_by_time ON idempotency (created_at)"},
           // A marker the ambiguous-commit check committed itself (a fence) rather than the
           // batch's own: NULL or false is the batch's.
           {"m8_commit_markers_fence",
            "ALTER TABLE commit_markers ADD COLUMN IF NOT EXISTS fence BOOLEAN"},
       }},
      // The entry rollup (store/rollup.hpp), filled from the entries already written. The fill
      // skips keys that exist, so a rerun after a failed record of the migration adds nothing.
      {9,
       {
           {"m9_entry_rollup",
            "CREATE TABLE IF NOT EXISTS entry_rollup (root TEXT NOT NULL, day BIGINT NOT NULL, "
            "budget TEXT NOT NULL, vendor TEXT NOT NULL, category TEXT NOT NULL, "
            "kind TEXT NOT NULL, code TEXT NOT NULL, amount BIGINT NOT NULL, "
            "count BIGINT NOT NULL, PRIMARY KEY (root, day, budget, vendor, category, kind, "
            "code))"},
           {"m9_entry_rollup_fill",
            "INSERT INTO entry_rollup SELECT root, ts / 86400000000, budget, vendor, "
            "coalesce(CASE jsonb_typeof(tags::jsonb -> 'category') WHEN 'string' "
            "THEN tags::jsonb ->> 'category' END, ''), kind, code, "
            "coalesce(sum(amount), 0)::bigint, count(*)::bigint FROM entries "
            "WHERE (kind IN ('spend', 'capture', 'expire') AND amount > 0) OR kind = 'deny' "
            "GROUP BY 1, 2, 3, 4, 5, 6, 7 ON CONFLICT DO NOTHING"},
       }},
      // Signed checkpoints of each root's chain head (ledger/checkpoint.hpp), written by the
      // checkpoint signer outside the ledger's batches; one per (root, seq), first one kept.
      {10,
       {
           {"m10_checkpoints",
            "CREATE TABLE IF NOT EXISTS checkpoints (root TEXT NOT NULL, seq BIGINT NOT NULL, "
            "hash TEXT NOT NULL, ts BIGINT NOT NULL, key_id TEXT NOT NULL, "
            "signature TEXT NOT NULL, PRIMARY KEY (root, seq))"},
       }},
      // Delegations (POST /v1/delegations, per-run keys): the record in the budget row, when
      // the sweeper ends it, and keys by budget (revoking a key reads its subtree's keys).
      {11,
       {
           {"m11_budgets_delegation",
            "ALTER TABLE budgets ADD COLUMN IF NOT EXISTS delegation TEXT"},
           {"m11_budgets_delegation_ends_at",
            "ALTER TABLE budgets ADD COLUMN IF NOT EXISTS delegation_ends_at BIGINT"},
           {"m11_budgets_by_delegation_end",
            "CREATE INDEX IF NOT EXISTS budgets_by_delegation_end ON budgets "
            "(delegation_ends_at)"},
           {"m11_api_keys_by_budget",
            "CREATE INDEX IF NOT EXISTS api_keys_by_budget ON api_keys (budget)"},
       }},
      // The proxy's vendors: configuration written by commits (changes chained), the
      // credential sealed.
      {12,
       {
           {"m12_vendors",
            "CREATE TABLE IF NOT EXISTS vendors (name TEXT PRIMARY KEY, root TEXT NOT NULL, "
            "settings TEXT NOT NULL, credential TEXT NOT NULL, created_at BIGINT NOT NULL, "
            "updated_at BIGINT NOT NULL)"},
       }},
      // Root leaders (store/root_leases.hpp): where the instance holding a contended root's
      // lease takes forwarded requests. Not ledger state: a row may name a dead instance
      // (whose lease went with its session) until another takes the root over.
      {13,
       {
           {"m13_root_leaders",
            "CREATE TABLE IF NOT EXISTS root_leaders (root TEXT PRIMARY KEY, url TEXT NOT NULL, "
            "instance TEXT NOT NULL, since TIMESTAMPTZ NOT NULL)"},
       }},
  };
  return all;
}

Status migrate_unbounded(Connection& connection) {
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

// Migrations may build indexes on big tables: no statement timeout while they run.
Status migrate(Connection& connection) {
  if (Status lifted = connection.lift_statement_timeout(true); !lifted.ok())
    return lifted;
  Status status = migrate_unbounded(connection);
  if (Status restored = connection.lift_statement_timeout(false); status.ok() && !restored.ok())
    return restored;
  return status;
}

std::vector<const Sql*> migration_statements() {
  std::vector<const Sql*> out{&create_migrations};
  for (const Migration& migration : migrations()) {
    for (const Sql& statement : migration.statements)
      out.push_back(&statement);
  }
  return out;
}

}  // namespace stub::store::postgres
