#include "ledger/model.hpp"

#include <algorithm>

#include <cassert>

namespace stub::ledger {

Micros BudgetNode::current_period_start(Micros now) const {
  // A clock behind the one that opened the recorded period never moves the node back into an
  // earlier period: that would read its spent as zero and let the new period be overspent.
  return std::max(period_start, ledger::period_start(period, now));
}

Money BudgetNode::spent_at(Micros now) const {
  return current_period_start(now) == period_start ? spent : Money::zero();
}

void BudgetNode::roll_period(Micros now) {
  const Micros current = current_period_start(now);
  assert(current >= period_start);
  if (current != period_start) {
    // Entries never change; only the running total restarts for the new period.
    spent = Money::zero();
    period_start = current;
  }
  assert(period_start == current_period_start(now));
}

std::optional<Money> BudgetNode::available_at(Micros now) const {
  if (!limit)
    return std::nullopt;
  return Money::from_micros(limit->micros() - spent_at(now).micros() - reserved.micros());
}

std::string_view hold_status_name(HoldStatus status) {
  switch (status) {
    case HoldStatus::held:
      return "held";
    case HoldStatus::captured:
      return "captured";
    case HoldStatus::voided:
      return "voided";
    case HoldStatus::expired:
      return "expired";
    case HoldStatus::pending_approval:
      return "pending_approval";
    case HoldStatus::rejected:
      return "rejected";
  }
  return "held";
}

std::optional<HoldStatus> parse_hold_status(std::string_view text) {
  for (HoldStatus status :
       {HoldStatus::held, HoldStatus::captured, HoldStatus::voided, HoldStatus::expired,
        HoldStatus::pending_approval, HoldStatus::rejected}) {
    if (hold_status_name(status) == text)
      return status;
  }
  return std::nullopt;
}

HoldStatus Hold::status_at(Micros now) const {
  if (status == HoldStatus::held && now >= expires_at)
    return HoldStatus::expired;
  if (status == HoldStatus::pending_approval && now >= expires_at)
    return HoldStatus::rejected;
  return status;
}

}  // namespace stub::ledger
