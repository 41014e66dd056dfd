#pragma once

// Applying commands to the state read in one commit. The sequencer reads a WorkingSet for a
// batch (every row its commands can touch), applies the commands IN ORDER with apply_command
// (each sees the effects of those before it), then writes what the WorkingSet marks dirty and
// the entries it appended, all in one transaction. Pure: no I/O, time passed in.

#include <algorithm>
#include <map>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ledger/answer.hpp"
#include "ledger/command.hpp"
#include "ledger/model.hpp"
#include "ledger/result.hpp"

namespace stub::ledger {

// What a batch must read: every node on every path it touches, its holds, the acting keys and
// the idempotency records of its requests.
struct ReadSet {
  std::set<std::string> budgets;
  std::set<std::string> holds;
  std::set<std::string> keys;
  std::vector<std::pair<std::string, std::string>> idempotency;  // (root, scoped key)
  // Subtrees whose outstanding holds a command voids (a freeze with void_holds): the store reads
  // (and locks) every budget row below each, and up to open_holds_read_max of its open holds.
  // Those subtrees' keys are read too (revoking a key ends the delegations below it).
  std::set<std::string> open_hold_subtrees;
  std::set<std::string> webhooks;  // by name
  std::set<std::string> vendors;   // by name
};

// The most open holds a store reads for one subtree, in id order; more are flagged.
inline constexpr size_t open_holds_read_max = 1'000;
// The most rows one void_holds share may write (holds, void entries, budget rows below the
// frozen node), so that a freeze of a busy fleet stays under a bounded store's row limit.
inline constexpr size_t void_rows_per_command_max = 2'000;

ReadSet read_set_for(std::span<const Command> commands);
// The number of levels of a path ("a/b/c": 3).
inline size_t lineage_depth(std::string_view path) {
  return static_cast<size_t>(std::count(path.begin(), path.end(), '/')) + 1;
}
std::string scoped_idempotency_key(const Command& command);
std::string idempotency_slot(std::string_view root, std::string_view scoped_key);

// The most rows one command writes besides budget rows: two entries (an expiry met on the way
// then its own, or a denial and the freeze of a tripped breaker), an idempotency record, a hold
// and a key; a spend or hold may also raise, on each level of its path, one threshold alert for
// the level's limit and one for its vendor rules (the first rule in order that crossed one; any
// other rule that crossed alerts with its next spend or hold).
inline size_t rows_written_max(const Command& command) {
  constexpr size_t base = 5;
  if ((command.kind == CommandKind::freeze && command.void_holds) ||
      command.kind == CommandKind::void_holds || command.kind == CommandKind::revoke_key ||
      command.kind == CommandKind::end_delegation) {
    return base + void_rows_per_command_max;
  }
  if (command.kind == CommandKind::spend || command.kind == CommandKind::hold)
    return base + 2 * lineage_depth(command.budget);
  return base;
}
// "a/b/c" -> "a", "a/b", "a/b/c" (views into `path`); empty for an invalid path.
std::vector<std::string_view> lineage_paths(std::string_view path);

struct WorkingSet {
  // State as read (absent: the row does not exist), then as changed by applied commands.
  std::unordered_map<std::string, BudgetNode> budgets;
  std::unordered_map<std::string, Hold> holds;
  std::unordered_map<std::string, ApiKey> keys;
  // Keyed by idempotency_slot(root, scoped key): hashed, since hot keys share long prefixes.
  std::unordered_map<std::string, IdempotencyRecord> idempotency;

  // Writes for the store: rows to upsert, records and entries to insert.
  std::unordered_set<std::string> dirty_budgets;
  std::unordered_set<std::string> dirty_holds;
  std::unordered_set<std::string> dirty_keys;
  std::vector<IdempotencyRecord> new_idempotency;
  std::vector<Entry> new_entries;

  // For each subtree in ReadSet::open_hold_subtrees: the ids of its open holds (held or pending
  // approval) as read, in id order (the holds themselves are in `holds`), and whether there
  // were more than open_holds_read_max.
  std::map<std::string, std::vector<std::string>> open_holds;
  std::set<std::string> open_holds_truncated;

  // Webhooks as read (absent: none by that name), then as changed; deleted ones are removed
  // from `webhooks` and named in deleted_webhooks.
  std::unordered_map<std::string, Webhook> webhooks;
  std::unordered_set<std::string> dirty_webhooks;
  std::unordered_set<std::string> deleted_webhooks;

  // Vendors, the same way.
  std::unordered_map<std::string, Vendor> vendors;
  std::unordered_set<std::string> dirty_vendors;
  std::unordered_set<std::string> deleted_vendors;
};

using Outcome = Result<Answered>;

// Applies one command to the working set and renders its answer with `render`; a command with
// an Idempotency-Key keeps the rendered answer as its record (in `idempotency`, so that a retry
// later in the same batch is answered from it, and in `new_idempotency`, for the store). On an
// Error the working set is unchanged, except that an expired hold met by a capture or void is
// expired first (that settlement is real).
Outcome apply_command(WorkingSet& state, const Command& command, Micros now,
                      const AnswerRenderer& render);

}  // namespace stub::ledger
