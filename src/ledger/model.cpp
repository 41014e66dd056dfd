#include "ledger/model.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
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

std::string delegation_to_storage(const std::optional<Delegation>& delegation) {
  if (!delegation)
    return "";
  boost::json::object out{{"key_id", delegation->key_id},
                          {"parent_key", delegation->parent_key},
                          {"expires_at", delegation->expires_at},
                          {"ended_at", delegation->ended_at},
                          {"carried", delegation->carried.micros()},
                          {"run", delegation->run}};
  return boost::json::serialize(out);
}

std::optional<Delegation> delegation_from_storage(std::string_view text) {
  if (text.empty())
    return std::nullopt;
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_object())
    return std::nullopt;
  const boost::json::object& object = parsed.get_object();
  Delegation delegation;
  const auto text_of = [&](const char* name) -> std::string {
    const auto* value = object.if_contains(name);
    return value != nullptr && value->is_string() ? std::string(value->get_string()) : "";
  };
  const auto int_of = [&](const char* name) -> int64_t {
    const auto* value = object.if_contains(name);
    return value != nullptr && value->is_int64() ? value->get_int64() : 0;
  };
  delegation.key_id = text_of("key_id");
  delegation.parent_key = text_of("parent_key");
  delegation.expires_at = int_of("expires_at");
  delegation.ended_at = int_of("ended_at");
  delegation.carried = Money::from_micros(int_of("carried"));
  const auto* run = object.if_contains("run");
  delegation.run = run != nullptr && run->is_bool() && run->get_bool();
  return delegation;
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
