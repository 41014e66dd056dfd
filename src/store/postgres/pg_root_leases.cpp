#include "store/postgres/pg_root_leases.hpp"

#include <cassert>
#include <string>
#include <unordered_map>

#include "ledger/chain.hpp"
#include "store/postgres/pg_batch_rows.hpp"
#include "store/postgres/pg_store.hpp"

namespace stub::store::postgres {

namespace {

inline constexpr Sql select_schema{"lease_schema", "SELECT coalesce(current_schema(), '')"};
// Never waits: a lease another session holds is simply not taken. Session-level, so neither a
// COMMIT nor a ROLLBACK of the surrounding (implicit) transaction lets it go; only the end of
// the session does, which is what makes a dead leader's roots free again.
inline constexpr Sql try_leases{
    "lease_try",
    "SELECT candidate.root, pg_try_advisory_lock(candidate.lock_key) FROM "
    "unnest($1::text[], $2::bigint[]) AS candidate(root, lock_key)"};
inline constexpr Sql select_leaders{
    "lease_select", "SELECT root, url, instance FROM root_leaders WHERE root = ANY($1::text[])"};
inline constexpr Sql claim_leaders{
    "lease_claim",
    "INSERT INTO root_leaders (root, url, instance, since) "
    "SELECT claimed.root, $2::text, $3::text, now() FROM unnest($1::text[]) AS claimed(root) "
    "ON CONFLICT (root) DO UPDATE SET url = excluded.url, instance = excluded.instance, "
    "since = excluded.since"};
inline constexpr Sql delete_own_leaders{"lease_delete",
                                        "DELETE FROM root_leaders WHERE instance = $1::text"};
inline constexpr Sql unlock_all{"lease_unlock_all", "SELECT pg_advisory_unlock_all()"};

}  // namespace

std::vector<const Sql*> PgRootLeases::statements() {
  return {&select_schema, &try_leases,         &select_leaders,
          &claim_leaders, &delete_own_leaders, &unlock_all};
}

int64_t PgRootLeases::lock_key(const std::string& schema, const std::string& root) {
  std::string text = "stub-root-leader";
  text += '\0';
  text += schema;
  text += '\0';
  text += root;
  const std::string digest = ledger::sha256_hex(text);
  assert(digest.size() == 64);
  const uint64_t key = std::stoull(digest.substr(0, 16), nullptr, 16);
  return static_cast<int64_t>(key);
}

Result<std::unique_ptr<PgRootLeases>> PgRootLeases::open(const std::string& url,
                                                         const std::string& instance,
                                                         const std::string& self_url) {
  assert(!instance.empty() && !self_url.empty());
  auto connection = Connection::open(url, Role::reader);
  if (!connection.ok())
    return connection.error();
  std::unique_ptr<PgRootLeases> leases(new PgRootLeases());
  leases->connection_ = std::move(connection).value();
  leases->instance_ = instance;
  leases->url_ = self_url;
  auto schema = leases->connection_->run(Query{&select_schema, {}});
  if (!schema.ok())
    return schema.error();
  const Rows rows(schema->get());
  leases->schema_ = rows.size() == 1 ? rows.column_text(0) : "";
  return leases;
}

PgRootLeases::~PgRootLeases() = default;

Error PgRootLeases::lost(const Error& error) {
  held_.clear();
  connection_->sever();  // Reconnected by the next lookup, with no lease left behind.
  return Error{ErrorCode::unavailable, "leases_lost",
               "The root lease connection failed: " + error.message};
}

Result<std::vector<LeaderLookup>> PgRootLeases::look_up(const std::vector<std::string>& roots) {
  assert(roots.size() <= roots_per_look_up_max);
  if (connection_->broken()) {
    held_.clear();
    if (!connection_->reset()) {
      return Error{ErrorCode::unavailable, "leases_unreachable",
                   "Cannot reconnect the root lease connection."};
    }
  }
  // Round trip 1: try the leases this instance does not hold (while it may take more), and
  // read every root's row.
  ArrayBuilder wanted, keys, all;
  size_t tried = 0;
  for (const std::string& root : roots) {
    all.add_text(root);
    if (held_.contains(root) || held_.size() + tried >= roots_held_max)
      continue;
    wanted.add_text(root);
    keys.add_int(lock_key(schema_, root));
    ++tried;
  }
  std::vector<Query> reads;
  if (tried > 0)
    reads.push_back({&try_leases, {wanted.finish(), keys.finish()}});
  reads.push_back({&select_leaders, {all.finish()}});
  auto loaded = connection_->pipeline(reads);
  if (loaded.error)
    return lost(to_error(*loaded.error, "looking up root leaders"));
  std::vector<std::string> taken;
  if (tried > 0) {
    const Rows got(loaded.results.front().get());
    for (int i = 0; i < got.size(); ++i) {
      if (got.at(i).column_int(1) == 1)
        taken.push_back(got.at(i).column_text(0));
    }
  }
  std::unordered_map<std::string, RootLeader> rows;
  {
    const Rows found(loaded.results.back().get());
    for (int i = 0; i < found.size(); ++i) {
      rows.insert_or_assign(found.at(i).column_text(0),
                            RootLeader{found.at(i).column_text(1), found.at(i).column_text(2)});
    }
  }
  // Round trip 2, only when leases were taken: their rows now name this instance.
  if (!taken.empty()) {
    const Query claim{&claim_leaders, {text_array(taken), url_, instance_}};
    auto claimed = connection_->run(claim);
    if (!claimed.ok())
      return lost(claimed.error());
    for (const std::string& root : taken) {
      held_.insert(root);
      rows.insert_or_assign(root, RootLeader{url_, instance_});
    }
    acquired_ += taken.size();
  }
  assert(held_.size() <= roots_held_max);
  std::vector<LeaderLookup> out;
  out.reserve(roots.size());
  for (const std::string& root : roots) {
    LeaderLookup lookup;
    lookup.root = root;
    lookup.self = held_.contains(root);
    if (!lookup.self) {
      auto row = rows.find(root);
      // A row naming this instance (or its URL) without its lease is stale: never forward to
      // oneself.
      if (row != rows.end() && row->second.instance != instance_ && row->second.url != url_)
        lookup.other = row->second;
    }
    out.push_back(std::move(lookup));
  }
  return out;
}

void PgRootLeases::release_all() {
  if (connection_->broken())
    return;
  const Query statements[] = {{&delete_own_leaders, {instance_}}, {&unlock_all, {}}};
  (void)connection_->pipeline(statements);
  held_.clear();
}

// ---- PgStore ----------------------------------------------------------------------------------

Result<std::unique_ptr<RootLeases>> PgStore::open_root_leases(const std::string& instance,
                                                              const std::string& url) {
  auto leases = PgRootLeases::open(url_, instance, url);
  if (!leases.ok())
    return leases.error();
  return std::unique_ptr<RootLeases>(std::move(leases).value());
}

}  // namespace stub::store::postgres
