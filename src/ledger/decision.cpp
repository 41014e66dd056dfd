#include "ledger/decision.hpp"

#include <algorithm>
#include <cassert>

namespace stub::ledger {

std::string_view denial_code_name(DenialCode code) {
  switch (code) {
    case DenialCode::frozen:
      return "frozen";
    case DenialCode::vendor_blocked:
      return "vendor_blocked";
    case DenialCode::per_txn_exceeded:
      return "per_txn_exceeded";
    case DenialCode::approval_required:
      return "approval_required";
    case DenialCode::window_exceeded:
      return "window_exceeded";
    case DenialCode::budget_exceeded:
      return "budget_exceeded";
    case DenialCode::breaker_tripped:
      return "breaker_tripped";
  }
  return "budget_exceeded";
}

std::optional<Money> available_on_path(std::span<const BudgetNode* const> path, Micros now) {
  std::optional<Money> lowest;
  for (const BudgetNode* node : path) {
    const std::optional<Money> room = node->available_at(now);
    if (room && (!lowest || *room < *lowest))
      lowest = room;
  }
  if (lowest && lowest->is_negative())
    lowest = Money::zero();
  return lowest;
}

Decision decide(std::span<const BudgetNode* const> path, const SpendRequest& request, Micros now) {
  assert(!path.empty());
  assert(request.amount.is_positive());
  Decision decision;
  decision.requested = request.amount;
  decision.available = available_on_path(path, now);

  const auto deny = [&](DenialCode code, const BudgetNode& node, std::string message) {
    decision.accepted = false;
    decision.code = code;
    decision.level = node.path;
    decision.message = std::move(message);
    return decision;
  };

  // Each rule scans the whole path before the next rule runs, so the code reported is the
  // first rule in precedence order that any level breaks; the level is the highest one that
  // breaks it (for a budget shortfall, the one with the least room).
  for (const BudgetNode* node : path) {
    if (node->frozen) {
      return deny(DenialCode::frozen, *node,
                  "Budget " + node->path + " is frozen" +
                      (node->frozen_reason.empty() ? "." : ": " + node->frozen_reason + "."));
    }
  }
  for (const BudgetNode* node : path) {
    if (node->per_txn_max && request.amount > *node->per_txn_max) {
      return deny(DenialCode::per_txn_exceeded, *node,
                  "Amount " + request.amount.to_string() +
                      " is above the per-transaction maximum " + node->per_txn_max->to_string() +
                      " of " + node->path + ".");
    }
  }
  for (const BudgetNode* node : path) {
    // Every node, limited or not, tracks at most Money::micros_max: sums stay far from INT64_MAX,
    // so the running totals can never wrap.
    const int64_t used = node->spent_at(now).micros() + node->reserved.micros();
    if (used > Money::micros_max - request.amount.micros()) {
      return deny(DenialCode::budget_exceeded, *node,
                  "Amount " + request.amount.to_string() + " would take " + node->path +
                      " beyond the largest total a budget can track.");
    }
  }
  // The level reported for a shortfall is the one with the least room (the highest such one on
  // a tie): it is the binding level, so `budget` and `available` in the denial agree.
  const BudgetNode* binding = nullptr;
  std::optional<Money> least_room;
  for (const BudgetNode* node : path) {
    const std::optional<Money> room = node->available_at(now);
    if (room && (!least_room || *room < *least_room)) {
      least_room = room;
      binding = node;
    }
  }
  if (least_room && request.amount > *least_room) {
    assert(binding != nullptr);
    return deny(DenialCode::budget_exceeded, *binding,
                "Amount " + request.amount.to_string() + " exceeds what remains of " +
                    binding->path + " (" + std::max(*least_room, Money::zero()).to_string() + ").");
  }
  assert(decision.accepted);
  return decision;
}

}  // namespace stub::ledger
