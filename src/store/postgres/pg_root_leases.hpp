#pragma once

// Root leases on PostgreSQL (store/root_leases.hpp): a session-level advisory lock per root,
// keyed by a 64-bit hash of the schema and the root, held on a connection of this instance's
// own, and a row in `root_leaders` saying where the holder takes forwarded requests.
//
// Advisory locks are outside the SQL subset the ledger keeps to (docs/postgres.md, "The SQL
// subset"): they coordinate outside rows. Here they decide nothing the ledger relies on (the
// root's row lock still serializes every commit), so they are the one exception, kept in this
// file and off `every_statement`; an engine without them refuses the first lookup, and the
// instances then simply commit for themselves.
//
// Thread safety: one thread at a time (RootLeases).

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "store/postgres/pg_connection.hpp"
#include "store/root_leases.hpp"

namespace stub::store::postgres {

class PgRootLeases final : public RootLeases {
 public:
  static Result<std::unique_ptr<PgRootLeases>> open(const std::string& url,
                                                    const std::string& instance,
                                                    const std::string& self_url);
  ~PgRootLeases() override;

  Result<std::vector<LeaderLookup>> look_up(const std::vector<std::string>& roots) override;
  uint64_t acquired_total() const override { return acquired_; }
  void release_all() override;

  // The advisory lock key of `root` in `schema`: the first 8 bytes of a SHA-256, the same in
  // every instance and build.
  static int64_t lock_key(const std::string& schema, const std::string& root);
  // Every statement, for the SQL-subset scan (which allows their advisory locks alone).
  static std::vector<const Sql*> statements();

 private:
  PgRootLeases() = default;
  // Drops the session (and with it every lease) after a failure: a half-known state of the
  // locks must not linger.
  Error lost(const Error& error);

  std::unique_ptr<Connection> connection_;
  std::string instance_;
  std::string url_;
  std::string schema_;
  std::unordered_set<std::string> held_;
  uint64_t acquired_ = 0;
};

}  // namespace stub::store::postgres
