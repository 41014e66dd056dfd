#pragma once

// THE decision function: given the state of every node on a path (root first) and a request to
// move money, accept it or name the first rule it breaks, in the SPEC's precedence order:
// frozen -> vendor_blocked -> per_txn_exceeded -> approval_required -> window_exceeded ->
// budget_exceeded -> breaker_tripped. This issue enforces frozen, per_txn_exceeded and
// budget_exceeded; each later policy is one more step in `decide` at its place in the order.

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
  budget_exceeded,
  breaker_tripped,
};

std::string_view denial_code_name(DenialCode code);

struct SpendRequest {
  Money amount;
  std::string_view vendor;
};

struct Decision {
  bool accepted = true;
  DenialCode code = DenialCode::budget_exceeded;
  std::string level;  // the path of the node that refused
  Money requested;
  std::optional<Money> available;  // min over the path, nullopt when nothing on it has a limit
  std::string message;
};

// `path` is every node from the root to the target, root first. Pure: reads `now`, no clock.
Decision decide(std::span<const BudgetNode* const> path, const SpendRequest& request, Micros now);

// Min over the path of each node's remaining room, nullopt when no node has a limit.
std::optional<Money> available_on_path(std::span<const BudgetNode* const> path, Micros now);

}  // namespace stub::ledger
