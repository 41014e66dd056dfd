#pragma once

// Two PostgreSQL baselines for `stub bench`: the designs a careful engineer would write directly
// on libpq, without a sequencer, for the same hot budget tree (org -> 4 teams -> 100 agents, every
// spend touching all three levels). Each spend is its own durable transaction on tables of its
// own, baseline_budgets and baseline_entries, which the harness creates and resets per run:
//
//   conditional-update  READ COMMITTED. Lock the path's rows in path order, update all three with
//                       one conditional UPDATE, insert the entry, COMMIT; ROLLBACK (refused) when
//                       a level lacks room.
//   occ-per-spend       SERIALIZABLE. Read the three balances, decide in C++, update the rows,
//                       insert the entry, COMMIT; on 40001/40P01 roll back and run it again.
//
// Every caller owns one connection and one thread, in the same closed loop as drive_in_process,
// so the numbers compare with the sequencer's. The SQL stays within what CockroachDB,
// YugabyteDB and Aurora DSQL also accept: casts on every parameter, no sequences, triggers,
// PL/pgSQL or foreign keys.
//
// Every function here opens its own connections from `url` and is safe to call from one thread
// at a time; none of them may run concurrently with another on the same database.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/money.hpp"
#include "ledger/result.hpp"
#include "loadgen/workload.hpp"

namespace stub::loadgen {

enum class BaselineDesign { conditional_update, occ_per_spend };

// "conditional-update" and "occ-per-spend", as `--designs` spells them.
std::string_view baseline_design_name(BaselineDesign design);
std::optional<BaselineDesign> parse_baseline_design(std::string_view name);

struct BaselineStats {
  RunStats run;
  uint64_t attempts = 0;      // transactions started, retried ones included
  uint64_t retries = 0;       // attempts that ended in 40001 or 40P01 and were run again
  std::string first_failure;  // why a caller stopped on an error, empty when none did
  // Fairness, which p99 hides when a few callers win most races: the fewest and most spends one
  // caller committed, and the slowest single spend.
  uint64_t caller_committed_min = 0;
  uint64_t caller_committed_max = 0;
  double max_ms = 0;

  double retry_ratio() const {
    return attempts > 0 ? static_cast<double>(retries) / static_cast<double>(attempts) : 0;
  }
};

// Creates the baseline tables when missing, empties them and inserts `tree`: the org limited to
// `org_limit`, teams and agents far above it so the org is the binding level.
Status reset_baseline_tree(const std::string& url, const BenchTree& tree, ledger::Money org_limit);

// Sets the org limit to what it has used plus `headroom`.
Status set_baseline_org_headroom(const std::string& url, const BenchTree& tree,
                                 ledger::Money headroom);

// Closed loop of `options.callers` callers, each on its own connection and thread, spending
// `options.amount` from agent (caller % agents) with `design` until `options.duration` ends or,
// in a run-out phase, until every caller was refused `stop_after_refusals_per_caller` times in a
// row. An Error only when the callers cannot connect; failed spends are counted in the stats.
Result<BaselineStats> drive_baseline(const std::string& url, BaselineDesign design,
                                     const BenchTree& tree, const DriveOptions& options);

// A schema of stub's own tables for one measured run (created empty, dropped with everything
// in it), and the URL whose connections use it.
Status create_schema(const std::string& url, const std::string& schema);
Status drop_schema(const std::string& url, const std::string& schema);
std::string url_with_schema(const std::string& url, const std::string& schema);

// Flushes the server's dirty pages now (CHECKPOINT), so that a measured run does not pay for
// the writes of the run before it. Needs superuser or the pg_checkpoint role.
Status checkpoint(const std::string& url);

// Worst excess of spent + reserved over limit across baseline_budgets, zero when there is none.
// Fails when the org's spent differs from the sum of the entries (a lost or phantom write).
Result<ledger::Money> measure_baseline_overspend(const std::string& url, const BenchTree& tree);

}  // namespace stub::loadgen
