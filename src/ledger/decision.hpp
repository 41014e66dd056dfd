#pragma once

// THE decision function: given the state of every node on a path (root first) and a request to
// move money, accept it or name the first rule it breaks, in the SPEC's precedence order:
// frozen -> vendor_blocked -> per_txn_exceeded -> approval_required -> window_exceeded ->
// vendor_limit_exceeded -> budget_exceeded -> breaker_tripped. Each rule scans the whole path (root
// first) before the next one runs, so the code is the first rule any level breaks and the level is
// the highest one that breaks it. approval_required refuses a one-shot spend; a hold above the
// threshold goes on through the later rules and, if they pass, waits for an admin (needs_approval).

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ledger/model.hpp"

namespace stub::ledger {

enum class DenialCode {
  frozen,
  vendor_blocked,
  per_txn_exceeded,
  approval_required,
  window_exceeded,
  vendor_limit_exceeded,
  budget_exceeded,
  breaker_tripped,
};

std::string_view denial_code_name(DenialCode code);

struct SpendRequest {
  Money amount;
  std::string_view vendor;
  bool hold = false;  // a hold may wait for approval; a one-shot spend cannot
};

struct Decision {
  bool accepted = true;
  DenialCode code = DenialCode::budget_exceeded;
  std::string level;  // the path of the node that refused
  Money requested;
  std::optional<Money> available;  // min over the path, nullopt when nothing on it has a limit
  std::string message;
  std::string freeze_reason;  // breaker_tripped: the reason the level is frozen with
  // vendor_limit_exceeded: the index of the rule in the level's Policies::vendor_limits.
  std::optional<size_t> vendor_rule;
  // An accepted hold above some level's approval_above waits for an admin; the highest level.
  bool needs_approval = false;
  std::string approval_level;
};

// `path` is every node from the root to the target, root first. Pure: reads `now`, no clock.
Decision decide(std::span<const BudgetNode* const> path, const SpendRequest& request, Micros now);

// The index in `path` of the deepest node with an active delegation (0 when none): the levels
// above it are funded by its reservation, so their own room never binds a spend below it.
size_t funded_from(std::span<const BudgetNode* const> path);

// Min over the path (from funded_from down) of each node's remaining room, nullopt when no node has
// a limit.
std::optional<Money> available_on_path(std::span<const BudgetNode* const> path, Micros now);

}  // namespace stub::ledger
