#include "store/sqlite/sqlite_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <type_traits>

#include "ledger/budget_path.hpp"
#include "store/rollup.hpp"
#include "store/row_mapping.hpp"

namespace stub::store::sqlite {

namespace {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Entry;
using ledger::Hold;
using ledger::IdempotencyRecord;

// Migrations are embedded in the binary and applied in order, each in its own transaction.
// Append only: a released migration is never edited.
struct Migration {
  int version;
  const char* sql;
};

constexpr Migration migrations[] = {
    {1, R"sql(
CREATE TABLE budgets (
  path TEXT PRIMARY KEY,
  root TEXT NOT NULL,
  parent TEXT NOT NULL,
  limit_micros INTEGER,
  period TEXT NOT NULL,
  period_start INTEGER NOT NULL,
  spent INTEGER NOT NULL,
  reserved INTEGER NOT NULL,
  per_txn_max INTEGER,
  frozen INTEGER NOT NULL,
  frozen_reason TEXT NOT NULL,
  currency TEXT NOT NULL,
  head_seq INTEGER NOT NULL,
  head_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX budgets_by_root ON budgets (root, path);
CREATE TABLE holds (
  id TEXT PRIMARY KEY,
  root TEXT NOT NULL,
  budget TEXT NOT NULL,
  amount INTEGER NOT NULL,
  captured INTEGER NOT NULL,
  status TEXT NOT NULL,
  vendor TEXT NOT NULL,
  intent TEXT NOT NULL,
  tags TEXT NOT NULL,
  on_expiry TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  settled_at INTEGER NOT NULL,
  actor TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX holds_open_by_expiry ON holds (status, expires_at);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  budget TEXT NOT NULL,
  name TEXT NOT NULL,
  secret_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE entries (
  root TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  kind TEXT NOT NULL,
  budget TEXT NOT NULL,
  amount INTEGER,
  vendor TEXT NOT NULL,
  intent TEXT NOT NULL,
  tags TEXT NOT NULL,
  receipt TEXT NOT NULL,
  hold_id TEXT NOT NULL,
  code TEXT NOT NULL,
  actor TEXT NOT NULL,
  detail TEXT NOT NULL,
  postings TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL,
  PRIMARY KEY (root, seq)
) WITHOUT ROWID;
-- Idempotency records are appended in commit order, with no index on the key: a random-key
-- B-tree dirtied a page per spend and cost two thirds of a batch's writes. The store keeps an
-- in-memory index (key -> id), rebuilt from this table on open; one process owns the file.
CREATE TABLE idempotency_log (
  id INTEGER PRIMARY KEY,
  root TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
)sql"},
    // Policies (windows, vendor rules, approvals, breaker, thresholds) and their rolling usage
    // (time buckets), kept in the budget row itself so that a batch reads and writes them with
    // the rows it already touches. Empty text: nothing set.
    {2, R"sql(
ALTER TABLE budgets ADD COLUMN policy TEXT;
ALTER TABLE budgets ADD COLUMN usage TEXT;
)sql"},
    // The kill switch reads a subtree's outstanding holds by budget path.
    {3, R"sql(
CREATE INDEX holds_open_by_budget ON holds (status, budget);
)sql"},
    // Approvals: a pending hold's ttl applies again from its approval.
    {4, R"sql(
ALTER TABLE holds ADD COLUMN ttl INTEGER;
)sql"},
    // Webhook configuration (changes are chained entries). Deliveries live in "<db>-webhooks".
    {5, R"sql(
CREATE TABLE webhooks (
  name TEXT PRIMARY KEY,
  root TEXT NOT NULL,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  since_seq INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
    // The entry rollup (store/rollup.hpp): sums per root, UTC day, node, vendor, category, kind
    // and code, written with the entries; filled here from the entries already written.
    {6, R"sql(
CREATE TABLE entry_rollup (
  root TEXT NOT NULL,
  day INTEGER NOT NULL,
  budget TEXT NOT NULL,
  vendor TEXT NOT NULL,
  category TEXT NOT NULL,
  kind TEXT NOT NULL,
  code TEXT NOT NULL,
  amount INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (root, day, budget, vendor, category, kind, code)
) WITHOUT ROWID;
INSERT INTO entry_rollup
  SELECT root, ts / 86400000000, budget, vendor,
         coalesce(CASE json_type(tags, '$.category') WHEN 'text'
                  THEN json_extract(tags, '$.category') END, ''),
         kind, code, coalesce(sum(amount), 0), count(*)
  FROM entries
  WHERE (kind IN ('spend', 'capture', 'expire') AND amount > 0) OR kind = 'deny'
  GROUP BY 1, 2, 3, 4, 5, 6, 7;
)sql"},
    // Signed checkpoints of each root's chain head (ledger/checkpoint.hpp).
    {7, R"sql(
CREATE TABLE checkpoints (
  root TEXT NOT NULL,
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  ts INTEGER NOT NULL,
  key_id TEXT NOT NULL,
  signature TEXT NOT NULL,
  PRIMARY KEY (root, seq)
) WITHOUT ROWID;
)sql"},
    // Delegations (POST /v1/delegations, per-run keys): the record in the budget row, when the
    // sweeper ends it, and keys by budget (revoking a key reads its subtree's keys).
    {8, R"sql(
ALTER TABLE budgets ADD COLUMN delegation TEXT;
ALTER TABLE budgets ADD COLUMN delegation_ends_at INTEGER;
CREATE INDEX budgets_by_delegation_end ON budgets (delegation_ends_at)
  WHERE delegation_ends_at IS NOT NULL;
CREATE INDEX api_keys_by_budget ON api_keys (budget);
)sql"},
    // The proxy's vendors (changes are chained entries; the credential is sealed).
    {9, R"sql(
CREATE TABLE vendors (
  name TEXT PRIMARY KEY,
  root TEXT NOT NULL,
  settings TEXT NOT NULL,
  credential TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
};

// The delivery log's own file and schema. Losing its last writes in a crash only repeats
// deliveries (at least once): the cursor and the deliveries it produced commit together.
constexpr const char* outbox_schema = R"sql(
CREATE TABLE IF NOT EXISTS webhook_cursors (
  name TEXT PRIMARY KEY,
  since_seq INTEGER NOT NULL,
  cursor_seq INTEGER NOT NULL,
  lease_owner TEXT NOT NULL,
  lease_until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  webhook TEXT NOT NULL,
  event_id TEXT NOT NULL,
  root TEXT NOT NULL,
  seq INTEGER NOT NULL,
  event TEXT NOT NULL,
  payload TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL,
  last_status INTEGER NOT NULL,
  last_error TEXT NOT NULL,
  next_attempt_at INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  delivered_at INTEGER NOT NULL,
  PRIMARY KEY (webhook, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_deliveries_due
  ON webhook_deliveries (webhook, status, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_recent ON webhook_deliveries (webhook, created_at);
)sql";

constexpr const char* webhook_columns =
    "name, root, url, events, secret, since_seq, created_at, updated_at";
constexpr const char* vendor_columns = "name, root, settings, credential, created_at, updated_at";
constexpr const char* delivery_columns =
    "webhook, event_id, root, seq, event, payload, status, attempts, last_status, last_error, "
    "next_attempt_at, created_at, delivered_at";

constexpr const char* budget_columns =
    "path, root, parent, limit_micros, period, period_start, spent, reserved, per_txn_max, "
    "frozen, frozen_reason, currency, head_seq, head_hash, created_at, updated_at, policy, usage, "
    "delegation, delegation_ends_at";

constexpr const char* hold_columns =
    "id, root, budget, amount, captured, status, vendor, intent, tags, on_expiry, created_at, "
    "expires_at, settled_at, actor, ttl";

constexpr const char* key_columns =
    "id, budget, name, secret_hash, created_at, expires_at, revoked_at";

constexpr const char* checkpoint_columns = "root, seq, hash, ts, key_id, signature";

constexpr const char* entry_columns =
    "root, seq, ts, kind, budget, amount, vendor, intent, tags, receipt, hold_id, code, actor, "
    "detail, postings, prev_hash, hash";

// Runs a cached statement: `bind` sets its parameters, `read` maps each row. The statement is
// reset afterwards, so no read transaction stays open on the connection.
template <typename Read, typename Bind>
auto query_rows(Connection& connection, const std::string& sql, const Bind& bind, const Read& read)
    -> Result<std::vector<std::invoke_result_t<Read, const Statement&>>> {
  using Row = std::invoke_result_t<Read, const Statement&>;
  auto statement = connection.prepared(sql);
  if (!statement.ok())
    return statement.error();
  bind(**statement);
  std::vector<Row> out;
  while (true) {
    auto row = (*statement)->step();
    if (!row.ok()) {
      (*statement)->reset();
      return row.error();
    }
    if (!row.value())
      break;
    out.push_back(read(**statement));
  }
  (*statement)->reset();
  return out;
}

// The same for a query that returns at most one row.
template <typename Read, typename Bind>
auto query_one(Connection& connection, const std::string& sql, const Bind& bind, const Read& read)
    -> Result<std::optional<std::invoke_result_t<Read, const Statement&>>> {
  using Row = std::invoke_result_t<Read, const Statement&>;
  auto statement = connection.prepared(sql);
  if (!statement.ok())
    return statement.error();
  bind(**statement);
  auto row = (*statement)->step();
  std::optional<Row> out;
  if (row.ok() && row.value())
    out = read(**statement);
  (*statement)->reset();
  if (!row.ok())
    return row.error();
  return out;
}

auto bind_text(const std::string& value) {
  return [&value](Statement& statement) { statement.bind(1, value); };
}

const std::string upsert_budget =
    std::string("INSERT OR REPLACE INTO budgets (") + budget_columns +
    ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const std::string upsert_hold = std::string("INSERT OR REPLACE INTO holds (") + hold_columns +
                                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const std::string upsert_key = std::string("INSERT OR REPLACE INTO api_keys (") + key_columns +
                               ") VALUES (?, ?, ?, ?, ?, ?, ?)";
// Adds one batch's sums to the rollup: a key seen before grows, a new one is inserted.
const std::string add_rollup =
    "INSERT INTO entry_rollup (root, day, budget, vendor, category, kind, code, amount, count) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (root, day, budget, vendor, category, kind, "
    "code) DO UPDATE SET amount = amount + excluded.amount, count = count + excluded.count";
const std::string insert_idempotency =
    "INSERT INTO idempotency_log (root, key, request_hash, status, body, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?)";
const std::string insert_entry = std::string("INSERT INTO entries (") + entry_columns +
                                 ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
const std::string select_budget_by_path =
    std::string("SELECT ") + budget_columns + " FROM budgets WHERE path = ?";
const std::string select_hold_by_id =
    std::string("SELECT ") + hold_columns + " FROM holds WHERE id = ?";
const std::string upsert_webhook = std::string("INSERT OR REPLACE INTO webhooks (") +
                                   webhook_columns + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
const std::string select_webhook_by_name =
    std::string("SELECT ") + webhook_columns + " FROM webhooks WHERE name = ?";
const std::string upsert_vendor = std::string("INSERT OR REPLACE INTO vendors (") + vendor_columns +
                                  ") VALUES (?, ?, ?, ?, ?, ?)";
const std::string select_vendor_by_name =
    std::string("SELECT ") + vendor_columns + " FROM vendors WHERE name = ?";
const std::string select_key_by_id =
    std::string("SELECT ") + key_columns + " FROM api_keys WHERE id = ?";
// Below a node: paths from "<node>/" up to (not including) "<node>0" ('0' follows '/').
const std::string select_budgets_below = std::string("SELECT ") + budget_columns +
                                         " FROM budgets WHERE root = ? AND path >= ? AND "
                                         "path < ? ORDER BY path";
const std::string select_keys_within =
    std::string("SELECT ") + key_columns +
    " FROM api_keys WHERE budget = ? OR (budget >= ? AND budget < ?) ORDER BY id";
const std::string select_open_holds_within =
    std::string("SELECT ") + hold_columns +
    " FROM holds WHERE status IN ('held', 'pending_approval') AND (budget = ? OR "
    "(budget >= ? AND budget < ?)) ORDER BY id LIMIT ?";

uint64_t idempotency_fingerprint(std::string_view root, std::string_view scoped_key) {
  const uint64_t a = std::hash<std::string_view>{}(root);
  const uint64_t b = std::hash<std::string_view>{}(scoped_key);
  return a ^ (b * 0x9E3779B97F4A7C15ULL + (a << 6) + (a >> 2));
}

// One process owns a SQLite ledger: the idempotency index lives in its memory, and SQLite is
// the single-instance default (many instances share PostgreSQL). A second `stub serve` on the
// same file fails at once with a clear error instead of corrupting that index.
Status acquire_process_lock(const std::string& path, int& fd) {
  const std::string lock_path = path + ".lock";
  fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return Error{ErrorCode::unavailable, "lock_failed",
                 "Cannot open " + lock_path + ": " + std::strerror(errno) + "."};
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    fd = -1;
    return Error{ErrorCode::unavailable, "database_in_use",
                 "Another stub process is serving " + path +
                     "; a SQLite ledger has one owner (use PostgreSQL for many instances)."};
  }
  return Status::success();
}

Status migrate(Connection& connection) {
  if (Status status = connection.execute(
          "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
          "applied_at INTEGER NOT NULL)");
      !status.ok()) {
    return status;
  }
  for (const Migration& migration : migrations) {
    auto check = connection.prepared("SELECT 1 FROM schema_migrations WHERE version = ?");
    if (!check.ok())
      return check.error();
    (*check)->bind(1, int64_t{migration.version});
    auto found = (*check)->step();
    (*check)->reset();
    if (!found.ok())
      return found.error();
    if (found.value())
      continue;
    if (Status status = connection.execute("BEGIN IMMEDIATE"); !status.ok())
      return status;
    Status applied = connection.execute(migration.sql);
    if (applied.ok()) {
      applied = connection.execute("INSERT INTO schema_migrations VALUES (" +
                                   std::to_string(migration.version) + ", strftime('%s','now'))");
    }
    if (!applied.ok()) {
      (void)connection.execute("ROLLBACK");
      return applied;
    }
    if (Status status = connection.execute("COMMIT"); !status.ok())
      return status;
  }
  return Status::success();
}

}  // namespace

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       const StoreOptions& options) {
  std::unique_ptr<SqliteStore> store(new SqliteStore());
  store->read_only_ = options.read_only;
  if (!options.read_only) {
    auto writer = Connection::open(path, false);
    if (!writer.ok())
      return writer.error();
    store->writer_ = std::make_unique<Connection>(std::move(writer).value());
    for (const char* pragma :
         {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=OFF",
          "PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=0",
          "PRAGMA journal_size_limit=67108864"}) {
      if (Status status = store->writer_->execute(pragma); !status.ok())
        return status.error();
    }
    if (Status status = acquire_process_lock(path, store->lock_fd_); !status.ok())
      return status.error();
    if (Status status = migrate(*store->writer_); !status.ok())
      return status.error();
    auto outbox = Connection::open(path + "-webhooks", false);
    if (!outbox.ok())
      return outbox.error();
    store->outbox_ = std::make_unique<Connection>(std::move(outbox).value());
    for (const char* setup :
         {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", outbox_schema}) {
      if (Status status = store->outbox_->execute(setup); !status.ok())
        return status.error();
    }
    auto maintenance = Connection::open(path, false);
    if (!maintenance.ok())
      return maintenance.error();
    store->maintenance_ = std::make_unique<Connection>(std::move(maintenance).value());
    auto checkpointer = Connection::open(path, false);
    if (!checkpointer.ok())
      return checkpointer.error();
    auto connection = std::make_unique<Connection>(std::move(checkpointer).value());
    SqliteStore* raw = store.get();
    store->checkpointer_ =
        std::thread([raw, owned = std::move(connection), wal = path + "-wal"]() mutable {
          raw->run_checkpointer(std::move(owned), std::move(wal));
        });
  }
  const size_t readers = std::max<size_t>(1, options.read_connections);
  for (size_t i = 0; i < readers; ++i) {
    auto reader = Connection::open(path, true);
    if (!reader.ok())
      return reader.error();
    store->readers_.add(std::make_unique<Connection>(std::move(reader).value()));
  }
  Status indexed = Status::success();
  if (options.read_only) {
    Reader reader = store->checkout_reader();
    indexed = store->build_idempotency_index(*reader);
  } else {
    indexed = store->build_idempotency_index(*store->writer_);
  }
  if (!indexed.ok())
    return indexed.error();
  return store;
}

SqliteStore::~SqliteStore() {
  if (lock_fd_ >= 0)
    ::close(lock_fd_);  // Closing releases the flock.
  {
    std::lock_guard lock(checkpointer_mutex_);
    stopping_ = true;
  }
  checkpointer_wake_.notify_all();
  if (checkpointer_.joinable())
    checkpointer_.join();
}

void SqliteStore::run_checkpointer(std::unique_ptr<Connection> connection, std::string wal_path) {
  constexpr auto interval = std::chrono::milliseconds(50);
  // journal_size_limit is 64 MiB: a WAL past twice that has not been restarted for a while.
  constexpr std::uintmax_t wal_restart_bytes = 128ull * 1024 * 1024;
  // A RESTART that cannot have the readers within 100 ms gives up (and lets writes go on),
  // to try again 50 ms later: a long read (a streamed export) never stalls writes for long.
  (void)connection->execute("PRAGMA busy_timeout = 100");
  std::unique_lock lock(checkpointer_mutex_);
  while (!stopping_) {
    checkpointer_wake_.wait_for(lock, interval, [&] { return stopping_; });
    lock.unlock();
    // PASSIVE never blocks the writer or readers; the writer restarts the WAL from its start
    // once every frame has been copied and no reader still reads frames of it. Under reads
    // that always overlap (the soak's callers and event streams) that moment never came and
    // the WAL grew without bound (6 GB in 10 minutes): once it is past the bound, RESTART
    // waits for the readers of the old frames to finish (holding new writes back meanwhile,
    // a few milliseconds) so that the next write starts the WAL over.
    (void)connection->execute("PRAGMA wal_checkpoint(PASSIVE)");
    std::error_code size_error;
    const std::uintmax_t wal_bytes = std::filesystem::file_size(wal_path, size_error);
    if (!size_error && wal_bytes > wal_restart_bytes)
      (void)connection->execute("PRAGMA wal_checkpoint(RESTART)");
    lock.lock();
  }
  lock.unlock();
  (void)connection->execute("PRAGMA busy_timeout = 5000");
  (void)connection->execute("PRAGMA wal_checkpoint(TRUNCATE)");
}

Status SqliteStore::load(Connection& connection, const ledger::ReadSet& read,
                         ledger::WorkingSet& state) {
  for (const std::string& path : read.budgets) {
    auto node =
        query_one(connection, select_budget_by_path, bind_text(path), read_budget<Statement>);
    if (!node.ok())
      return node.error();
    if (node.value())
      state.budgets.emplace(path, std::move(*node.value()));
  }
  for (const std::string& id : read.holds) {
    auto hold = query_one(connection, select_hold_by_id, bind_text(id), read_hold<Statement>);
    if (!hold.ok())
      return hold.error();
    if (hold.value())
      state.holds.emplace(id, std::move(*hold.value()));
  }
  for (const std::string& id : read.keys) {
    auto key = query_one(connection, select_key_by_id, bind_text(id), read_key<Statement>);
    if (!key.ok())
      return key.error();
    if (key.value())
      state.keys.emplace(id, std::move(*key.value()));
  }
  for (const std::string& subtree : read.open_hold_subtrees) {
    const std::string low = subtree + "/";
    const std::string high = subtree + "0";
    auto below = query_rows(
        connection, select_budgets_below,
        [&](Statement& statement) {
          statement.bind(1, subtree.substr(0, subtree.find('/')));
          statement.bind(2, low);
          statement.bind(3, high);
        },
        read_budget<Statement>);
    if (!below.ok())
      return below.error();
    for (BudgetNode& node : below.value()) {
      const std::string path = node.path;
      state.budgets.try_emplace(path, std::move(node));
    }
    auto holds = query_rows(
        connection, select_open_holds_within,
        [&](Statement& statement) {
          statement.bind(1, subtree);
          statement.bind(2, low);
          statement.bind(3, high);
          statement.bind(4, static_cast<int64_t>(ledger::open_holds_read_max + 1));
        },
        read_hold<Statement>);
    if (!holds.ok())
      return holds.error();
    auto keys = query_rows(
        connection, select_keys_within,
        [&](Statement& statement) {
          statement.bind(1, subtree);
          statement.bind(2, low);
          statement.bind(3, high);
        },
        read_key<Statement>);
    if (!keys.ok())
      return keys.error();
    for (ApiKey& key : keys.value()) {
      const std::string id = key.id;
      state.keys.try_emplace(id, std::move(key));
    }
    std::vector<std::string>& ids = state.open_holds[subtree];
    for (Hold& hold : holds.value()) {
      if (ids.size() == ledger::open_holds_read_max) {
        state.open_holds_truncated.insert(subtree);
        break;
      }
      ids.push_back(hold.id);
      state.holds.try_emplace(ids.back(), std::move(hold));
    }
  }
  for (const std::string& name : read.webhooks) {
    auto webhook =
        query_one(connection, select_webhook_by_name, bind_text(name), read_webhook<Statement>);
    if (!webhook.ok())
      return webhook.error();
    if (webhook.value())
      state.webhooks.emplace(name, std::move(*webhook.value()));
  }
  for (const std::string& name : read.vendors) {
    auto vendor =
        query_one(connection, select_vendor_by_name, bind_text(name), read_vendor<Statement>);
    if (!vendor.ok())
      return vendor.error();
    if (vendor.value())
      state.vendors.emplace(name, std::move(*vendor.value()));
  }
  for (const auto& [root, key] : read.idempotency) {
    auto record = find_idempotency(connection, root, key);
    if (!record.ok())
      return record.error();
    if (record.value())
      state.idempotency.emplace(ledger::idempotency_slot(root, key), std::move(*record.value()));
  }
  return Status::success();
}

Status SqliteStore::write(Connection& connection, const ledger::WorkingSet& state) {
  // Each statement is fetched once per batch. Text that lives in `state` until the insert has
  // run is bound without a copy (bind_static); everything else is copied.
  if (!state.dirty_budgets.empty()) {
    auto statement = connection.prepared(upsert_budget);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const std::string& path : state.dirty_budgets) {
      const BudgetNode& node = state.budgets.at(path);
      insert.bind_static(1, node.path);
      insert.bind_static(2, node.root);
      insert.bind_static(3, node.parent);
      insert.bind_optional(4, optional_micros(node.limit));
      insert.bind_static(5, ledger::period_name(node.period));
      insert.bind(6, node.period_start);
      insert.bind(7, node.spent.micros());
      insert.bind(8, node.reserved.micros());
      insert.bind_optional(9, optional_micros(node.per_txn_max));
      insert.bind(10, int64_t{node.frozen ? 1 : 0});
      insert.bind_static(11, node.frozen_reason);
      insert.bind_static(12, node.currency);
      insert.bind(13, node.head_seq);
      insert.bind_static(14, node.head_hash);
      insert.bind(15, node.created_at);
      insert.bind(16, node.updated_at);
      const std::string policy = ledger::policies_to_storage(node.policies);
      const std::string usage = ledger::usage_to_storage(node.usage);
      insert.bind_static(17, policy);
      insert.bind_static(18, usage);
      const std::string delegation = ledger::delegation_to_storage(node.delegation);
      insert.bind_static(19, delegation);
      insert.bind_optional(20, delegation_ends_at_of(node));
      if (Status status = insert.run(); !status.ok())
        return status;
    }
  }
  if (!state.dirty_holds.empty()) {
    auto statement = connection.prepared(upsert_hold);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const std::string& id : state.dirty_holds) {
      const Hold& hold = state.holds.at(id);
      insert.bind_static(1, hold.id);
      insert.bind_static(2, hold.root);
      insert.bind_static(3, hold.budget);
      insert.bind(4, hold.amount.micros());
      insert.bind(5, hold.captured.micros());
      insert.bind_static(6, ledger::hold_status_name(hold.status));
      insert.bind_static(7, hold.vendor);
      insert.bind_static(8, hold.intent);
      insert.bind_static(9, hold.tags_json);
      insert.bind_static(10, on_expiry_name(hold.on_expiry));
      insert.bind(11, hold.created_at);
      insert.bind(12, hold.expires_at);
      insert.bind(13, hold.settled_at);
      insert.bind_static(14, hold.actor);
      insert.bind(15, hold.ttl);
      if (Status status = insert.run(); !status.ok())
        return status;
    }
  }
  if (!state.dirty_keys.empty()) {
    auto statement = connection.prepared(upsert_key);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const std::string& id : state.dirty_keys) {
      const ApiKey& key = state.keys.at(id);
      insert.bind_static(1, key.id);
      insert.bind_static(2, key.budget);
      insert.bind_static(3, key.name);
      insert.bind_static(4, key.secret_hash);
      insert.bind(5, key.created_at);
      insert.bind(6, key.expires_at);
      insert.bind(7, key.revoked_at);
      if (Status status = insert.run(); !status.ok())
        return status;
    }
  }
  if (!state.dirty_webhooks.empty()) {
    auto statement = connection.prepared(upsert_webhook);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const std::string& name : state.dirty_webhooks) {
      const ledger::Webhook& webhook = state.webhooks.at(name);
      const std::string events = events_to_text(webhook.events);
      insert.bind_static(1, webhook.name);
      insert.bind_static(2, webhook.root);
      insert.bind_static(3, webhook.url);
      insert.bind_static(4, events);
      insert.bind_static(5, webhook.secret);
      insert.bind(6, webhook.since_seq);
      insert.bind(7, webhook.created_at);
      insert.bind(8, webhook.updated_at);
      if (Status status = insert.run(); !status.ok())
        return status;
    }
  }
  if (!state.deleted_webhooks.empty()) {
    auto statement = connection.prepared("DELETE FROM webhooks WHERE name = ?");
    if (!statement.ok())
      return statement.error();
    for (const std::string& name : state.deleted_webhooks) {
      (*statement)->bind_static(1, name);
      if (Status status = (*statement)->run(); !status.ok())
        return status;
    }
  }
  if (!state.dirty_vendors.empty()) {
    auto statement = connection.prepared(upsert_vendor);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const std::string& name : state.dirty_vendors) {
      const ledger::Vendor& vendor = state.vendors.at(name);
      insert.bind_static(1, vendor.name);
      insert.bind_static(2, vendor.root);
      insert.bind_static(3, vendor.settings_json);
      insert.bind_static(4, vendor.credential);
      insert.bind(5, vendor.created_at);
      insert.bind(6, vendor.updated_at);
      if (Status status = insert.run(); !status.ok())
        return status;
    }
  }
  if (!state.deleted_vendors.empty()) {
    auto statement = connection.prepared("DELETE FROM vendors WHERE name = ?");
    if (!statement.ok())
      return statement.error();
    for (const std::string& name : state.deleted_vendors) {
      (*statement)->bind_static(1, name);
      if (Status status = (*statement)->run(); !status.ok())
        return status;
    }
  }
  if (!state.new_idempotency.empty()) {
    auto statement = connection.prepared(insert_idempotency);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const IdempotencyRecord& record : state.new_idempotency) {
      insert.bind_static(1, record.root);
      insert.bind_static(2, record.key);
      insert.bind_static(3, record.request_hash);
      insert.bind(4, int64_t{record.status});
      insert.bind_static(5, record.body);
      insert.bind(6, record.created_at);
      if (Status status = insert.run(); !status.ok())
        return status;
      staged_idempotency_.emplace_back(idempotency_fingerprint(record.root, record.key),
                                       sqlite3_last_insert_rowid(connection.handle()));
    }
  }
  if (!state.new_entries.empty()) {
    auto statement = connection.prepared(insert_entry);
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const Entry& entry : state.new_entries) {
      const std::string postings = ledger::postings_to_json_text(entry.postings);
      insert.bind_static(1, entry.root);
      insert.bind(2, entry.seq);
      insert.bind(3, entry.ts);
      insert.bind_static(4, entry.kind);
      insert.bind_static(5, entry.budget);
      insert.bind_optional(6, optional_micros(entry.amount));
      insert.bind_static(7, entry.vendor);
      insert.bind_static(8, entry.intent);
      insert.bind_static(9, entry.tags_json);
      insert.bind_static(10, entry.receipt_json);
      insert.bind_static(11, entry.hold_id);
      insert.bind_static(12, entry.code);
      insert.bind_static(13, entry.actor);
      insert.bind_static(14, entry.detail_json);
      insert.bind_static(15, postings);
      insert.bind_static(16, entry.prev_hash);
      insert.bind_static(17, entry.hash);
      if (Status status = insert.run(); !status.ok())
        return status;
    }
    // The rollup moves in the same transaction as the entries it sums.
    const std::vector<RollupRow> rollup = rollup_of(state.new_entries);
    if (!rollup.empty()) {
      auto adding = connection.prepared(add_rollup);
      if (!adding.ok())
        return adding.error();
      Statement& add = **adding;
      for (const RollupRow& row : rollup) {
        add.bind_static(1, row.key.root);
        add.bind(2, row.key.day);
        add.bind_static(3, row.key.budget);
        add.bind_static(4, row.key.vendor);
        add.bind_static(5, row.key.category);
        add.bind_static(6, row.key.kind);
        add.bind_static(7, row.key.code);
        add.bind(8, row.amount);
        add.bind(9, row.count);
        if (Status status = add.run(); !status.ok())
          return status;
      }
    }
  }
  return Status::success();
}

Status SqliteStore::commit_batch(const ledger::ReadSet& read, const ApplyBatch& apply,
                                 const OnCommitted& committed) {
  if (read_only_) {
    return Error{ErrorCode::unavailable, "read_only", "The store was opened read-only."};
  }
  std::lock_guard turn(write_turn_);
  Connection& connection = *writer_;
  if (Status status = connection.execute("BEGIN IMMEDIATE"); !status.ok())
    return status;
  ledger::WorkingSet state;
  staged_idempotency_.clear();
  Status status = load(connection, read, state);
  if (status.ok()) {
    apply(state);
    status = write(connection, state);
  }
  if (status.ok())
    status = connection.execute("COMMIT");
  if (!status.ok()) {
    (void)connection.execute("ROLLBACK");
    staged_idempotency_.clear();
    return status;
  }
  {
    // Only committed records enter the index.
    std::lock_guard lock(idempotency_mutex_);
    for (const auto& [fingerprint, id] : staged_idempotency_)
      idempotency_index_.emplace(fingerprint, id);
    staged_idempotency_.clear();
  }
  if (committed)
    committed(state);
  return Status::success();
}

Result<std::optional<BudgetNode>> SqliteStore::get_budget(const std::string& path) {
  Reader reader = checkout_reader();
  return query_one(*reader, select_budget_by_path, bind_text(path), read_budget<Statement>);
}

Result<std::vector<BudgetNode>> SqliteStore::list_subtree(const std::string& root) {
  Reader reader = checkout_reader();
  return query_rows(
      *reader,
      std::string("SELECT ") + budget_columns + " FROM budgets WHERE root = ? ORDER BY path",
      bind_text(root), read_budget<Statement>);
}

Result<std::vector<std::string>> SqliteStore::list_roots() {
  Reader reader = checkout_reader();
  return query_rows(
      *reader, "SELECT path FROM budgets WHERE parent = '' ORDER BY path", [](Statement&) {},
      [](const Statement& row) { return row.column_text(0); });
}

Result<std::optional<Hold>> SqliteStore::get_hold(const std::string& id) {
  Reader reader = checkout_reader();
  return query_one(*reader, select_hold_by_id, bind_text(id), read_hold<Statement>);
}

Result<std::vector<Hold>> SqliteStore::list_expired_holds(ledger::Micros now, size_t limit) {
  Reader reader = checkout_reader();
  return query_rows(
      *reader,
      std::string("SELECT ") + hold_columns +
          " FROM holds WHERE status IN ('held', 'pending_approval') AND expires_at <= ? "
          "ORDER BY expires_at LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, now);
        statement.bind(2, static_cast<int64_t>(limit));
      },
      read_hold<Statement>);
}

Result<std::vector<Store::LapsedDelegation>> SqliteStore::list_lapsed_delegations(
    ledger::Micros now, size_t limit) {
  Reader reader = checkout_reader();
  return query_rows(
      *reader,
      "SELECT root, path FROM budgets WHERE delegation_ends_at IS NOT NULL AND "
      "delegation_ends_at <= ? ORDER BY delegation_ends_at LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, now);
        statement.bind(2, static_cast<int64_t>(limit));
      },
      [](const Statement& row) {
        return LapsedDelegation{row.column_text(0), row.column_text(1)};
      });
}

Result<std::vector<Hold>> SqliteStore::list_pending_approvals(const std::string& root,
                                                              size_t limit) {
  Reader reader = checkout_reader();
  return query_rows(
      *reader,
      std::string("SELECT ") + hold_columns +
          " FROM holds WHERE status = 'pending_approval' AND root = ? "
          "ORDER BY created_at, id LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, root);
        statement.bind(2, static_cast<int64_t>(limit));
      },
      read_hold<Statement>);
}

Result<std::optional<ApiKey>> SqliteStore::get_key(const std::string& id) {
  Reader reader = checkout_reader();
  return query_one(*reader, select_key_by_id, bind_text(id), read_key<Statement>);
}

Result<EntryPage> SqliteStore::list_entries(const std::string& root, int64_t after, size_t limit) {
  Reader reader = checkout_reader();
  auto entries = query_rows(
      *reader,
      std::string("SELECT ") + entry_columns +
          " FROM entries WHERE root = ? AND seq > ? ORDER BY seq LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, root);
        statement.bind(2, after);
        statement.bind(3, static_cast<int64_t>(limit));
      },
      read_entry<Statement>);
  return EntryPage::of(std::move(entries), after);
}

Result<std::optional<IdempotencyRecord>> SqliteStore::get_idempotency(const std::string& root,
                                                                      const std::string& key) {
  Reader reader = checkout_reader();
  return find_idempotency(*reader, root, key);
}

Result<std::optional<IdempotencyRecord>> SqliteStore::find_idempotency(Connection& connection,
                                                                       const std::string& root,
                                                                       const std::string& key) {
  // Usually one candidate; more only on a fingerprint collision.
  std::vector<int64_t> candidates;
  {
    std::lock_guard lock(idempotency_mutex_);
    const auto [first, last] = idempotency_index_.equal_range(idempotency_fingerprint(root, key));
    for (auto it = first; it != last; ++it)
      candidates.push_back(it->second);
  }
  for (const int64_t id : candidates) {
    auto record = query_one(
        connection,
        "SELECT root, key, request_hash, status, body, created_at FROM idempotency_log "
        "WHERE id = ?",
        [id](Statement& statement) { statement.bind(1, id); }, read_idempotency<Statement>);
    if (!record.ok())
      return record.error();
    if (record.value() && record.value()->root == root && record.value()->key == key)
      return record;
  }
  return std::optional<IdempotencyRecord>{};
}

Status SqliteStore::build_idempotency_index(Connection& connection) {
  // Growing a large index rehashes it in one go, under the lock the committer needs (tens of
  // ms at a few hundred thousand records, measured as a 20% dip in `stub bench`). Start with
  // room for a million records (8 MiB of buckets) or twice what is there.
  auto records = query_one(
      connection, "SELECT count(*) FROM idempotency_log", [](Statement&) {},
      [](const Statement& row) { return row.column_int(0); });
  if (!records.ok())
    return records.error();
  auto statement = connection.prepared("SELECT id, root, key FROM idempotency_log");
  if (!statement.ok())
    return statement.error();
  std::lock_guard lock(idempotency_mutex_);
  idempotency_index_.reserve(
      std::max<size_t>(size_t{1} << 20, 2 * static_cast<size_t>(records->value_or(0))));
  while (true) {
    auto row = (*statement)->step();
    if (!row.ok())
      return row.error();
    if (!row.value())
      break;
    idempotency_index_.emplace(
        idempotency_fingerprint((*statement)->column_text(1), (*statement)->column_text(2)),
        (*statement)->column_int(0));
  }
  (*statement)->reset();
  return Status::success();
}

Result<size_t> SqliteStore::prune_idempotency(ledger::Micros created_before, size_t limit) {
  if (read_only_ || limit == 0)
    return size_t{0};
  std::lock_guard maintenance(maintenance_mutex_);
  std::lock_guard turn(write_turn_);
  Connection& connection = *maintenance_;
  if (Status status = connection.execute("BEGIN IMMEDIATE"); !status.ok())
    return status.error();
  // The log is appended in commit order, so the oldest records come first by id: read a
  // bounded prefix and stop at the first one still inside the retention (no index on
  // created_at is needed, and no step scans more than `limit` rows).
  struct Old {
    int64_t id;
    uint64_t fingerprint;
  };
  std::vector<Old> old;
  auto statement = connection.prepared(
      "SELECT id, root, key, created_at FROM idempotency_log ORDER BY id LIMIT ?");
  if (!statement.ok()) {
    (void)connection.execute("ROLLBACK");
    return statement.error();
  }
  (*statement)->bind(1, static_cast<int64_t>(limit));
  while (true) {
    auto row = (*statement)->step();
    if (!row.ok()) {
      (*statement)->reset();
      (void)connection.execute("ROLLBACK");
      return row.error();
    }
    if (!row.value() || (*statement)->column_int(3) >= created_before)
      break;
    old.push_back(
        Old{(*statement)->column_int(0),
            idempotency_fingerprint((*statement)->column_text(1), (*statement)->column_text(2))});
  }
  (*statement)->reset();
  if (old.empty()) {
    (void)connection.execute("ROLLBACK");
    return size_t{0};
  }
  auto removed = connection.prepared("DELETE FROM idempotency_log WHERE id <= ?");
  Status status = removed.ok() ? Status::success() : Status(removed.error());
  if (status.ok()) {
    (*removed)->bind(1, old.back().id);
    status = (*removed)->run();
  }
  if (status.ok())
    status = connection.execute("COMMIT");
  if (!status.ok()) {
    (void)connection.execute("ROLLBACK");
    return status.error();
  }
  // Only once the delete is durable does the index forget the records (a lookup meanwhile
  // finds no row, which reads as "no record", as it will from now on).
  std::lock_guard lock(idempotency_mutex_);
  for (const Old& record : old) {
    auto [first, last] = idempotency_index_.equal_range(record.fingerprint);
    for (auto it = first; it != last; ++it) {
      if (it->second == record.id) {
        idempotency_index_.erase(it);
        break;
      }
    }
  }
  return old.size();
}

Result<std::vector<ledger::Webhook>> SqliteStore::list_webhooks() {
  Reader reader = checkout_reader();
  return query_rows(
      *reader, std::string("SELECT ") + webhook_columns + " FROM webhooks ORDER BY name",
      [](Statement&) {}, read_webhook<Statement>);
}

Result<std::optional<ledger::Webhook>> SqliteStore::get_webhook(const std::string& name) {
  Reader reader = checkout_reader();
  return query_one(*reader, select_webhook_by_name, bind_text(name), read_webhook<Statement>);
}

Result<std::vector<ledger::Vendor>> SqliteStore::list_vendors() {
  Reader reader = checkout_reader();
  return query_rows(
      *reader, std::string("SELECT ") + vendor_columns + " FROM vendors ORDER BY name",
      [](Statement&) {}, read_vendor<Statement>);
}

Result<std::optional<ledger::Vendor>> SqliteStore::get_vendor(const std::string& name) {
  Reader reader = checkout_reader();
  return query_one(*reader, select_vendor_by_name, bind_text(name), read_vendor<Statement>);
}

namespace {

Error no_outbox() {
  return Error{ErrorCode::unavailable, "read_only", "The store was opened read-only."};
}

// Runs `body` in one write transaction on `connection`, rolling back on failure.
template <typename Body>
Status in_transaction(Connection& connection, const Body& body) {
  if (Status status = connection.execute("BEGIN IMMEDIATE"); !status.ok())
    return status;
  Status status = body();
  if (status.ok())
    status = connection.execute("COMMIT");
  if (!status.ok())
    (void)connection.execute("ROLLBACK");
  return status;
}

}  // namespace

Result<std::optional<int64_t>> SqliteStore::claim_webhook(const ledger::Webhook& webhook,
                                                          const std::string& owner,
                                                          ledger::Micros now,
                                                          ledger::Micros lease_until) {
  std::lock_guard lock(outbox_mutex_);
  if (!outbox_)
    return no_outbox();
  std::optional<int64_t> cursor;
  const Status status = in_transaction(*outbox_, [&]() -> Status {
    auto created = query_rows(
        *outbox_,
        "INSERT INTO webhook_cursors (name, since_seq, cursor_seq, lease_owner, lease_until) "
        "VALUES (?1, ?2, ?2, '', 0) ON CONFLICT (name) DO NOTHING",
        [&](Statement& statement) {
          statement.bind(1, webhook.name);
          statement.bind(2, webhook.since_seq - 1);
        },
        [](const Statement&) { return 0; });
    if (!created.ok())
      return created.error();
    // A webhook deleted and created again under its name starts over at its new since_seq.
    auto claimed = query_one(
        *outbox_,
        "UPDATE webhook_cursors SET cursor_seq = CASE WHEN since_seq <> ?2 THEN ?2 ELSE "
        "cursor_seq END, since_seq = ?2, lease_owner = ?3, lease_until = ?5 WHERE name = ?1 AND "
        "(lease_owner = ?3 OR lease_until <= ?4) RETURNING cursor_seq",
        [&](Statement& statement) {
          statement.bind(1, webhook.name);
          statement.bind(2, webhook.since_seq - 1);
          statement.bind(3, owner);
          statement.bind(4, now);
          statement.bind(5, lease_until);
        },
        [](const Statement& row) { return row.column_int(0); });
    if (!claimed.ok())
      return claimed.error();
    cursor = claimed.value();
    return Status::success();
  });
  if (!status.ok())
    return status.error();
  return cursor;
}

Status SqliteStore::enqueue_deliveries(const std::string& webhook, const std::string& owner,
                                       int64_t cursor,
                                       const std::vector<WebhookDelivery>& deliveries) {
  std::lock_guard lock(outbox_mutex_);
  if (!outbox_)
    return no_outbox();
  return in_transaction(*outbox_, [&]() -> Status {
    auto moved = query_rows(
        *outbox_,
        "UPDATE webhook_cursors SET cursor_seq = ? WHERE name = ? AND lease_owner = ? "
        "RETURNING name",
        [&](Statement& statement) {
          statement.bind(1, cursor);
          statement.bind(2, webhook);
          statement.bind(3, owner);
        },
        [](const Statement& row) { return row.column_text(0); });
    if (!moved.ok())
      return moved.error();
    if (moved->empty())
      return Status::success();  // The lease moved on: its new owner records these.
    auto statement =
        outbox_->prepared(std::string("INSERT INTO webhook_deliveries (") + delivery_columns +
                          ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                          "ON CONFLICT (webhook, event_id) DO NOTHING");
    if (!statement.ok())
      return statement.error();
    Statement& insert = **statement;
    for (const WebhookDelivery& delivery : deliveries) {
      insert.bind_static(1, delivery.webhook);
      insert.bind_static(2, delivery.event_id);
      insert.bind_static(3, delivery.root);
      insert.bind(4, delivery.seq);
      insert.bind_static(5, delivery.event);
      insert.bind_static(6, delivery.payload);
      insert.bind_static(7, delivery.status);
      insert.bind(8, delivery.attempts);
      insert.bind(9, delivery.last_status);
      insert.bind_static(10, delivery.last_error);
      insert.bind(11, delivery.next_attempt_at);
      insert.bind(12, delivery.created_at);
      insert.bind(13, delivery.delivered_at);
      if (Status status = insert.run(); !status.ok())
        return status;
    }
    return Status::success();
  });
}

Result<std::vector<WebhookDelivery>> SqliteStore::due_deliveries(const std::string& webhook,
                                                                 ledger::Micros now, size_t limit) {
  std::lock_guard lock(outbox_mutex_);
  if (!outbox_)
    return no_outbox();
  return query_rows(
      *outbox_,
      std::string("SELECT ") + delivery_columns +
          " FROM webhook_deliveries WHERE webhook = ? AND status = 'pending' AND "
          "next_attempt_at <= ? ORDER BY next_attempt_at, seq LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, webhook);
        statement.bind(2, now);
        statement.bind(3, static_cast<int64_t>(limit));
      },
      read_delivery<Statement>);
}

Status SqliteStore::record_delivery(const WebhookDelivery& delivery) {
  std::lock_guard lock(outbox_mutex_);
  if (!outbox_)
    return no_outbox();
  auto statement = outbox_->prepared(
      "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status = ?, last_error = ?, "
      "next_attempt_at = ?, delivered_at = ? WHERE webhook = ? AND event_id = ?");
  if (!statement.ok())
    return statement.error();
  Statement& update = **statement;
  update.bind_static(1, delivery.status);
  update.bind(2, delivery.attempts);
  update.bind(3, delivery.last_status);
  update.bind_static(4, delivery.last_error);
  update.bind(5, delivery.next_attempt_at);
  update.bind(6, delivery.delivered_at);
  update.bind_static(7, delivery.webhook);
  update.bind_static(8, delivery.event_id);
  return update.run();
}

Result<std::vector<WebhookDelivery>> SqliteStore::list_deliveries(const std::string& webhook,
                                                                  size_t limit) {
  std::lock_guard lock(outbox_mutex_);
  if (!outbox_)
    return no_outbox();
  return query_rows(
      *outbox_,
      std::string("SELECT ") + delivery_columns +
          " FROM webhook_deliveries WHERE webhook = ? ORDER BY created_at DESC, seq DESC, "
          "event_id LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, webhook);
        statement.bind(2, static_cast<int64_t>(limit));
      },
      read_delivery<Statement>);
}

Result<Store::EntryBounds> SqliteStore::entry_bounds(const std::string& root) {
  Reader reader = checkout_reader();
  auto bounds = query_one(*reader,
                          "SELECT (SELECT max(seq) FROM entries WHERE root = ?1), "
                          "(SELECT head_seq FROM budgets WHERE path = ?1)",
                          bind_text(root), [](const Statement& row) {
                            return EntryBounds{row.column_int(0), row.column_int(1)};
                          });
  if (!bounds.ok())
    return bounds.error();
  return bounds->value_or(EntryBounds{});
}

// A constrained query's SQL is assembled per query (src/query/compiler.cpp), so it is prepared
// for this one run instead of joining the connection's statement cache, which would grow with
// every shape of query ever asked.
Result<std::vector<query::AggregateRow>> SqliteStore::run_query(const query::CompiledQuery& query) {
  assert(!query.sql.empty() && query.rows_max > 0);
  Reader reader = checkout_reader();
  sqlite3_stmt* raw = nullptr;
  const int prepared = sqlite3_prepare_v2(reader->handle(), query.sql.c_str(),
                                          static_cast<int>(query.sql.size()), &raw, nullptr);
  if (prepared != SQLITE_OK)
    return sqlite_error(reader->handle(), prepared, "prepare query");
  Statement statement(reader->handle(), raw);
  for (size_t i = 0; i < query.parameters.size(); ++i) {
    const int index = static_cast<int>(i + 1);
    if (const auto* number = std::get_if<int64_t>(&query.parameters[i]))
      statement.bind(index, *number);
    else
      statement.bind(index, std::get<std::string>(query.parameters[i]));
  }
  std::vector<query::AggregateRow> rows;
  const int keys = static_cast<int>(query.key_columns);
  while (true) {
    auto row = statement.step();
    if (!row.ok())
      return row.error();
    if (!row.value())
      break;
    if (rows.size() >= query.rows_max) {
      return Error::invalid("query_too_broad",
                            "The query has too many groups; narrow its range or its groups.");
    }
    query::AggregateRow out;
    out.keys.reserve(query.key_columns);
    for (int column = 0; column < keys; ++column) {
      if (statement.column_is_null(column))
        out.keys.emplace_back(std::nullopt);
      else
        out.keys.emplace_back(statement.column_text(column));
    }
    out.amount_micros = statement.column_int(keys);
    out.count = statement.column_int(keys + 1);
    rows.push_back(std::move(out));
  }
  assert(rows.size() <= query.rows_max);
  return rows;
}

namespace {

ledger::Checkpoint read_checkpoint(const Statement& row) {
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

Result<bool> SqliteStore::record_checkpoint(const ledger::Checkpoint& checkpoint) {
  assert(checkpoint.seq >= 1 && !checkpoint.signature.empty());
  if (read_only_) {
    return Error{ErrorCode::unavailable, "read_only",
                 "The store was opened read-only; it records no checkpoints."};
  }
  std::lock_guard maintenance(maintenance_mutex_);
  std::lock_guard turn(write_turn_);
  Connection& connection = *maintenance_;
  // One short write transaction of its own, like a pruning step: SQLite's lock interleaves it
  // with the committer's.
  auto statement = connection.prepared(std::string("INSERT OR IGNORE INTO checkpoints (") +
                                       checkpoint_columns + ") VALUES (?, ?, ?, ?, ?, ?)");
  if (!statement.ok())
    return statement.error();
  (*statement)->bind(1, checkpoint.root);
  (*statement)->bind(2, checkpoint.seq);
  (*statement)->bind(3, checkpoint.hash);
  (*statement)->bind(4, checkpoint.ts);
  (*statement)->bind(5, checkpoint.key_id);
  (*statement)->bind(6, checkpoint.signature);
  if (Status status = (*statement)->run(); !status.ok())
    return status.error();
  const bool inserted = sqlite3_changes(connection.handle()) == 1;
  assert(sqlite3_get_autocommit(connection.handle()) != 0);
  return inserted;
}

Result<std::vector<ledger::Checkpoint>> SqliteStore::list_checkpoints(const std::string& root,
                                                                      int64_t after_seq,
                                                                      size_t limit) {
  Reader reader = checkout_reader();
  return query_rows(
      *reader,
      std::string("SELECT ") + checkpoint_columns +
          " FROM checkpoints WHERE root = ? AND seq > ? ORDER BY seq LIMIT ?",
      [&](Statement& statement) {
        statement.bind(1, root);
        statement.bind(2, after_seq);
        statement.bind(3, static_cast<int64_t>(limit));
      },
      read_checkpoint);
}

Result<std::optional<ledger::Checkpoint>> SqliteStore::latest_checkpoint(const std::string& root) {
  Reader reader = checkout_reader();
  return query_one(*reader,
                   std::string("SELECT ") + checkpoint_columns +
                       " FROM checkpoints WHERE root = ? ORDER BY seq DESC LIMIT 1",
                   bind_text(root), read_checkpoint);
}

}  // namespace stub::store::sqlite
