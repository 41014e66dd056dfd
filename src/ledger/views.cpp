#include "ledger/views.hpp"

#include <algorithm>
#include <cassert>

#include "ledger/decision.hpp"

namespace stub::ledger {

namespace {

boost::json::value money_or_null(const std::optional<Money>& money) {
  if (!money)
    return nullptr;
  return boost::json::value(money->to_string());
}

boost::json::value time_or_null(Micros at) {
  if (at == 0)
    return nullptr;
  return boost::json::value(format_timestamp(at));
}

}  // namespace

boost::json::object budget_to_json(const BudgetNode& node,
                                   std::span<const BudgetNode* const> lineage, Micros now) {
  assert(!lineage.empty() && lineage.back()->path == node.path);
  boost::json::object out;
  out["path"] = node.path;
  out["parent"] =
      node.parent.empty() ? boost::json::value(nullptr) : boost::json::value(node.parent);
  out["limit"] = money_or_null(node.limit);
  out["period"] = period_name(node.period);
  out["period_start"] = format_timestamp(node.current_period_start(now));
  out["spent"] = node.spent_at(now).to_string();
  out["reserved"] = node.reserved.to_string();
  out["available"] = money_or_null(available_on_path(lineage, now));
  out["frozen"] = node.frozen;
  out["frozen_reason"] =
      node.frozen ? boost::json::value(node.frozen_reason) : boost::json::value(nullptr);
  out["per_txn_max"] = money_or_null(node.per_txn_max);
  out["currency"] = lineage.front()->currency;
  // Policies, with how much of each rolling window and of the breaker is used as of `now`.
  boost::json::object policies = policies_to_json(node.policies);
  auto& windows = policies["windows"].as_array();
  for (size_t i = 0; i < windows.size(); ++i) {
    const Ring* ring = node.usage.window_ring(node.policies.windows[i].duration);
    windows[i].as_object()["used"] = (ring ? ring->amount_at(now) : Money::zero()).to_string();
  }
  // Each vendor rule with what the subtree has held and captured against it, and what is left.
  auto& vendor_limits = policies["vendor_limits"].as_array();
  assert(vendor_limits.size() == node.policies.vendor_limits.size());
  for (size_t i = 0; i < vendor_limits.size(); ++i) {
    const VendorLimit& rule = node.policies.vendor_limits[i];
    const Money used = node.usage.vendor_used(rule, now);
    auto& shown = vendor_limits[i].as_object();
    shown["used"] = used.to_string();
    shown["available"] = std::max(Money::zero(), *rule.limit.checked_sub(used)).to_string();
  }
  if (node.policies.breaker) {
    auto& breaker = policies["breaker"].as_object();
    const Ring* ring = node.usage.breaker ? &*node.usage.breaker : nullptr;
    breaker["recent_amount"] = (ring ? ring->amount_at(now) : Money::zero()).to_string();
    breaker["recent_count"] = ring ? ring->count_at(now) : 0;
  }
  for (auto& member : policies)
    out[member.key()] = std::move(member.value());
  return out;
}

boost::json::object hold_to_json(const Hold& hold, Micros now) {
  const HoldStatus status = hold.status_at(now);
  // A hold read past its expiry but not yet swept shows the settlement the sweeper will make.
  const bool lazily_expired = status == HoldStatus::expired && hold.status == HoldStatus::held;
  const Money captured =
      lazily_expired && hold.on_expiry == OnExpiry::capture ? hold.amount : hold.captured;
  boost::json::object out;
  out["id"] = hold.id;
  out["status"] = hold_status_name(status);
  out["budget"] = hold.budget;
  out["amount"] = hold.amount.to_string();
  out["captured_amount"] = captured.to_string();
  out["vendor"] =
      hold.vendor.empty() ? boost::json::value(nullptr) : boost::json::value(hold.vendor);
  out["intent"] =
      hold.intent.empty() ? boost::json::value(nullptr) : boost::json::value(hold.intent);
  out["on_expiry"] = hold.on_expiry == OnExpiry::capture ? "capture" : "void";
  out["created_at"] = format_timestamp(hold.created_at);
  out["expires_at"] = format_timestamp(hold.expires_at);
  out["settled_at"] = time_or_null(hold.settled_at);
  return out;
}

boost::json::object key_to_json(const ApiKey& key) {
  boost::json::object out;
  out["id"] = key.id;
  out["budget"] = key.budget;
  out["name"] = key.name;
  out["created_at"] = format_timestamp(key.created_at);
  out["expires_at"] = time_or_null(key.expires_at);
  out["revoked_at"] = time_or_null(key.revoked_at);
  return out;
}

boost::json::object webhook_to_json(const Webhook& webhook) {
  boost::json::array events;
  for (const std::string& event : webhook.events)
    events.emplace_back(event);
  return boost::json::object{{"name", webhook.name},
                             {"root", webhook.root},
                             {"url", webhook.url},
                             {"events", std::move(events)},
                             {"since_seq", webhook.since_seq},
                             {"created_at", format_timestamp(webhook.created_at)},
                             {"updated_at", format_timestamp(webhook.updated_at)}};
}

}  // namespace stub::ledger
