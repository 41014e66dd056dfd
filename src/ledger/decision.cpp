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
    case DenialCode::vendor_limit_exceeded:
      return "vendor_limit_exceeded";
    case DenialCode::budget_exceeded:
      return "budget_exceeded";
    case DenialCode::breaker_tripped:
      return "breaker_tripped";
  }
  return "budget_exceeded";
}

size_t funded_from(std::span<const BudgetNode* const> path) {
  for (size_t index = path.size(); index > 0; --index) {
    if (path[index - 1]->active_delegation())
      return index - 1;
  }
  return 0;
}

std::optional<Money> available_on_path(std::span<const BudgetNode* const> path, Micros now) {
  std::optional<Money> lowest;
  // Above an active delegation, its reservation pays: those levels' room does not bind.
  for (const BudgetNode* node : path.subspan(funded_from(path))) {
    const std::optional<Money> room = node->available_at(now);
    if (room && (!lowest || *room < *lowest))
      lowest = room;
  }
  if (lowest && lowest->is_negative())
    lowest = Money::zero();
  return lowest;
}

namespace {

std::string quoted(std::string_view text) {
  return "\"" + std::string(text) + "\"";
}

}  // namespace

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
    decision.needs_approval = false;
    decision.approval_level.clear();
    decision.vendor_rule.reset();
    return decision;
  };
  const std::string amount_text = request.amount.to_string();

  for (const BudgetNode* node : path) {
    if (node->frozen) {
      return deny(DenialCode::frozen, *node,
                  "Budget " + node->path + " is frozen" +
                      (node->frozen_reason.empty() ? "." : ": " + node->frozen_reason + "."));
    }
  }
  // A block anywhere up the path wins over any allow list; then every allow list on the path
  // must admit the vendor (they intersect).
  for (const BudgetNode* node : path) {
    for (const std::string& pattern : node->policies.vendors.block) {
      if (!request.vendor.empty() && vendor_matches(pattern, request.vendor)) {
        return deny(DenialCode::vendor_blocked, *node,
                    "Vendor " + quoted(request.vendor) + " is blocked by " + node->path + " (" +
                        quoted(pattern) + ").");
      }
    }
  }
  for (const BudgetNode* node : path) {
    const auto& allow = node->policies.vendors.allow;
    if (allow.empty())
      continue;
    const bool allowed = std::any_of(allow.begin(), allow.end(), [&](const std::string& pattern) {
      return !request.vendor.empty() && vendor_matches(pattern, request.vendor);
    });
    if (!allowed) {
      return deny(DenialCode::vendor_blocked, *node,
                  (request.vendor.empty() ? std::string("A spend without a vendor")
                                          : "Vendor " + quoted(request.vendor)) +
                      " is not on the allow list of " + node->path + ".");
    }
  }
  for (const BudgetNode* node : path) {
    if (node->per_txn_max && request.amount > *node->per_txn_max) {
      return deny(DenialCode::per_txn_exceeded, *node,
                  "Amount " + amount_text + " is above the per-transaction maximum " +
                      node->per_txn_max->to_string() + " of " + node->path + ".");
    }
  }
  for (const BudgetNode* node : path) {
    const std::optional<Money>& threshold = node->policies.approval_above;
    if (!threshold || request.amount <= *threshold)
      continue;
    if (!request.hold) {
      deny(DenialCode::approval_required, *node,
           "Amount " + amount_text + " is above the approval threshold " + threshold->to_string() +
               " of " + node->path + ".");
      return decision;
    }
    decision.needs_approval = true;
    decision.approval_level = node->path;
    break;
  }
  for (const BudgetNode* node : path) {
    for (const WindowCap& window : node->policies.windows) {
      const Ring* ring = node->usage.window_ring(window.duration);
      const Money used = ring != nullptr ? ring->amount_at(now) : Money::zero();
      if (used.micros() + request.amount.micros() <= window.limit.micros())
        continue;
      const Money room = std::max(Money::zero(), *window.limit.checked_sub(used));
      deny(DenialCode::window_exceeded, *node,
           "Amount " + amount_text + " would take " + node->path + " over its limit of " +
               window.limit.to_string() + " per " + format_duration(window.duration) + " (" +
               used.to_string() + " used).");
      if (!decision.available || room < *decision.available)
        decision.available = room;
      return decision;
    }
  }
  // Per-vendor caps across a subtree: each rule on any level whose patterns name the vendor
  // counts what the level's whole subtree held and captured with it.
  for (const BudgetNode* node : path) {
    const std::vector<VendorLimit>& rules = node->policies.vendor_limits;
    for (size_t index = 0; index < rules.size(); ++index) {
      const VendorLimit& rule = rules[index];
      if (!rule.matches(request.vendor))
        continue;
      const Money used = node->usage.vendor_used(rule, now);
      assert(used.micros() <= Money::micros_max);
      if (used.micros() + request.amount.micros() <= rule.limit.micros())
        continue;
      const Money room = std::max(Money::zero(), *rule.limit.checked_sub(used));
      deny(DenialCode::vendor_limit_exceeded, *node,
           "Amount " + amount_text + " for vendor " + quoted(request.vendor) + " would take " +
               node->path + " over its vendor limit of " + describe_vendor_limit(rule) + " (" +
               used.to_string() + " used).");
      decision.vendor_rule = index;
      if (!decision.available || room < *decision.available)
        decision.available = room;
      return decision;
    }
  }
  // Money below an active delegation comes out of what the delegation reserved on the levels
  // above it (net zero there): only the delegation and the levels below it can run short.
  const std::span<const BudgetNode* const> funding = path.subspan(funded_from(path));
  for (const BudgetNode* node : funding) {
    // Every node, limited or not, tracks at most Money::micros_max: sums stay far from INT64_MAX,
    // so the running totals can never wrap.
    const int64_t used = node->spent_at(now).micros() + node->reserved.micros();
    if (used > Money::micros_max - request.amount.micros()) {
      return deny(DenialCode::budget_exceeded, *node,
                  "Amount " + amount_text + " would take " + node->path +
                      " beyond the largest total a budget can track.");
    }
  }
  // The level reported for a shortfall is the one with the least room (the highest such one on
  // a tie): it is the binding level, so `budget` and `available` in the denial agree.
  const BudgetNode* binding = nullptr;
  std::optional<Money> least_room;
  for (const BudgetNode* node : funding) {
    const std::optional<Money> room = node->available_at(now);
    if (room && (!least_room || *room < *least_room)) {
      least_room = room;
      binding = node;
    }
  }
  if (least_room && request.amount > *least_room) {
    assert(binding != nullptr);
    return deny(DenialCode::budget_exceeded, *binding,
                "Amount " + amount_text + " exceeds what remains of " + binding->path + " (" +
                    std::max(*least_room, Money::zero()).to_string() + ").");
  }
  // The velocity breaker: the spend that would take a level past its rate trips it.
  for (const BudgetNode* node : path) {
    if (!node->policies.breaker)
      continue;
    const BreakerSettings& breaker = *node->policies.breaker;
    const Ring empty_ring{breaker.duration, now, {}};
    const Ring& ring = node->usage.breaker ? *node->usage.breaker : empty_ring;
    const std::string per = " in " + format_duration(breaker.duration);
    std::string reason;
    const int64_t count = ring.count_at(now) + 1;
    const Money amount = Money::from_micros(ring.amount_at(now).micros() + request.amount.micros());
    if (breaker.max_count && count > *breaker.max_count) {
      reason = "breaker: " + std::to_string(count) + " spends" + per + " (max " +
               std::to_string(*breaker.max_count) + ")";
    } else if (breaker.max_amount && amount > *breaker.max_amount) {
      reason =
          "breaker: " + amount.to_string() + per + " (max " + breaker.max_amount->to_string() + ")";
    }
    if (!reason.empty()) {
      deny(DenialCode::breaker_tripped, *node,
           "Amount " + amount_text + " trips the velocity breaker of " + node->path + ": " +
               reason.substr(std::string_view("breaker: ").size()) + "; the budget is now frozen.");
      decision.freeze_reason = std::move(reason);
      return decision;
    }
  }
  assert(decision.accepted);
  return decision;
}

}  // namespace stub::ledger
