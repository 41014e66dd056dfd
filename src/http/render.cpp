#include "http/render.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cassert>
#include <type_traits>

#include "ledger/canonical_json.hpp"
#include "ledger/decision.hpp"
#include "ledger/policy.hpp"
#include "ledger/time_point.hpp"
#include "proxy/vendor_defaults.hpp"

namespace stub::http {

using ledger::format_timestamp;
using ledger::HoldStatus;
using ledger::Money;
using ledger::OnExpiry;
using ledger::Ring;
using ledger::VendorLimit;

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

boost::json::object delegation_to_json(const ledger::Delegation& delegation) {
  const auto time_or_null = [](Micros at) {
    return at ? boost::json::value(format_timestamp(at)) : boost::json::value(nullptr);
  };
  return boost::json::object{
      {"key_id", delegation.key_id},
      {"parent_key", delegation.parent_key.empty() ? boost::json::value(nullptr)
                                                   : boost::json::value(delegation.parent_key)},
      {"expires_at", time_or_null(delegation.expires_at)},
      {"active", delegation.active()},
      {"ended_at", time_or_null(delegation.ended_at)},
      {"carried", delegation.carried.to_string()},
      {"run", delegation.run}};
}

boost::json::object budget_to_json(const BudgetNode& node,
                                   std::span<const BudgetNode* const> lineage, Micros now) {
  assert(!lineage.empty() && lineage.back()->path == node.path);
  boost::json::object out;
  out["path"] = node.path;
  out["parent"] =
      node.parent.empty() ? boost::json::value(nullptr) : boost::json::value(node.parent);
  out["limit"] = money_or_null(node.limit);
  out["period"] = ledger::period_name(node.period);
  out["period_start"] = format_timestamp(node.current_period_start(now));
  out["spent"] = node.spent_at(now).to_string();
  out["reserved"] = node.reserved.to_string();
  out["available"] = money_or_null(ledger::available_on_path(lineage, now));
  out["frozen"] = node.frozen;
  out["frozen_reason"] =
      node.frozen ? boost::json::value(node.frozen_reason) : boost::json::value(nullptr);
  out["per_txn_max"] = money_or_null(node.per_txn_max);
  out["currency"] = lineage.front()->currency;
  // Policies, with how much of each rolling window and of the breaker is used as of `now`.
  boost::json::object policies = ledger::policies_to_json(node.policies);
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
  // A delegated node (or a run) says so: whose key made it, its key, its life, what the levels
  // above still hold reserved for it.
  if (node.delegation)
    out["delegation"] = delegation_to_json(*node.delegation);
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
  out["status"] = ledger::hold_status_name(status);
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

boost::json::object vendor_to_json(const ledger::Vendor& vendor) {
  boost::json::value parsed = boost::json::parse(vendor.settings_json);
  boost::json::object settings = parsed.is_object() ? parsed.get_object() : boost::json::object{};
  const std::string kind = settings.contains("kind") && settings["kind"].is_string()
                               ? std::string(settings["kind"].get_string())
                               : std::string("generic");
  boost::json::object timeouts{{"connect_ms", proxy::vendor_timeout_default_connect_ms},
                               {"first_byte_ms", proxy::vendor_timeout_default_first_byte_ms},
                               {"idle_ms", proxy::vendor_timeout_default_idle_ms}};
  if (auto* given = settings.if_contains("timeouts"); given != nullptr && given->is_object()) {
    for (const auto& member : given->get_object())
      timeouts[member.key()] = member.value();
  }
  boost::json::value header = settings.contains("credential_header")
                                  ? settings["credential_header"]
                                  : boost::json::value(proxy::default_credential_header(kind));
  return boost::json::object{
      {"name", vendor.name},
      {"root", vendor.root},
      {"kind", kind},
      {"base_url", settings.contains("base_url") ? settings["base_url"] : nullptr},
      {"credential_header", std::move(header)},
      {"credential_set", !vendor.credential.empty()},
      {"cost", settings.contains("cost") ? settings["cost"] : nullptr},
      {"timeouts", std::move(timeouts)},
      {"created_at", format_timestamp(vendor.created_at)},
      {"updated_at", format_timestamp(vendor.updated_at)}};
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

namespace {

// The answer to an accepted spend, written directly: it is on the hot path of every spend.
std::string spend_body(const ledger::SpendCommitted& spend, Micros at) {
  std::string out;
  out.reserve(256);
  out += "{\"id\":";
  ledger::append_json_string(out, spend.id);
  out += ",\"status\":\"captured\",\"budget\":";
  ledger::append_json_string(out, spend.budget);
  out += ",\"amount\":\"" + spend.amount.to_string() + "\",\"vendor\":";
  ledger::append_json_string(out, spend.vendor);
  out +=
      ",\"seq\":" + std::to_string(spend.seq) + ",\"created_at\":\"" + format_timestamp(at) + "\"}";
  return out;
}

// What a refusal tells the caller to do instead, where there is something to do.
std::string_view denial_hint(ledger::DenialCode code) {
  if (code == ledger::DenialCode::approval_required)
    return "Reserve it with a hold instead: a hold waits for an admin's approval.";
  return "";
}

boost::json::object denial_body(const ledger::Denied& denied) {
  boost::json::object error{{"type", "denied"},
                            {"code", ledger::denial_code_name(denied.code)},
                            {"message", denied.message},
                            {"budget", denied.level},
                            {"requested", denied.requested.to_string()},
                            {"available", money_or_null(denied.available)},
                            {"seq", denied.seq}};
  if (const std::string_view hint = denial_hint(denied.code); !hint.empty())
    error["hint"] = hint;
  if (denied.vendor_limit) {
    boost::json::object vendor_limit = ledger::vendor_limit_to_json(*denied.vendor_limit);
    vendor_limit["index"] = denied.vendor_limit_index;
    error["vendor_limit"] = std::move(vendor_limit);
  }
  return boost::json::object{{"error", std::move(error)}};
}

boost::json::object budget_state_to_json(const ledger::BudgetState& state, Micros at) {
  assert(!state.lineage.empty());
  std::vector<const BudgetNode*> view;
  view.reserve(state.lineage.size());
  for (const BudgetNode& node : state.lineage)
    view.push_back(&node);
  return budget_to_json(state.node(), view, at);
}

void add_share(boost::json::object& body, const ledger::VoidedShare& share) {
  body["holds_voided"] = share.voided;
  body["holds_expired"] = share.expired;
  body["holds_remaining"] = share.remaining;
}

ledger::RenderedAnswer json_answer(int status, const boost::json::object& body) {
  return ledger::RenderedAnswer{status, boost::json::serialize(body)};
}

}  // namespace

ledger::RenderedAnswer render_answer(const ledger::Answer& answer) {
  const Micros at = answer.at;
  return std::visit(
      [at](const auto& value) -> ledger::RenderedAnswer {
        using Value = std::decay_t<decltype(value)>;
        if constexpr (std::is_same_v<Value, ledger::SpendCommitted>) {
          return {201, spend_body(value, at)};
        } else if constexpr (std::is_same_v<Value, ledger::HoldPlaced>) {
          boost::json::object body = hold_to_json(value.hold, at);
          body["seq"] = value.seq;
          if (value.approval_level)
            body["approval_level"] = *value.approval_level;
          return json_answer(value.approval_level ? 202 : 201, body);
        } else if constexpr (std::is_same_v<Value, ledger::HoldSettled>) {
          boost::json::object body = hold_to_json(value.hold, at);
          body["seq"] = value.seq;
          return json_answer(200, body);
        } else if constexpr (std::is_same_v<Value, ledger::HoldChecked>) {
          return json_answer(200, hold_to_json(value.hold, at));
        } else if constexpr (std::is_same_v<Value, ledger::Denied>) {
          return json_answer(402, denial_body(value));
        } else if constexpr (std::is_same_v<Value, ledger::BudgetWritten>) {
          return json_answer(value.created ? 201 : 200, budget_state_to_json(value.state, at));
        } else if constexpr (std::is_same_v<Value, ledger::BudgetFrozen>) {
          boost::json::object body = budget_state_to_json(value.state, at);
          if (value.share)
            add_share(body, *value.share);
          return json_answer(200, body);
        } else if constexpr (std::is_same_v<Value, ledger::HoldsVoided>) {
          boost::json::object body = budget_state_to_json(value.state, at);
          add_share(body, value.share);
          return json_answer(200, body);
        } else if constexpr (std::is_same_v<Value, ledger::KeyCreated>) {
          // The secret is added by the key route to the first answer only; it is never stored,
          // so a replay of this request answers with "key": null.
          boost::json::object body = key_to_json(value.key);
          body["key"] = nullptr;
          return json_answer(201, body);
        } else if constexpr (std::is_same_v<Value, ledger::KeyRevoked>) {
          boost::json::object body = key_to_json(value.key);
          body["delegations_ended"] = value.delegations_ended;
          return json_answer(200, body);
        } else if constexpr (std::is_same_v<Value, ledger::DelegationCreated>) {
          // The secret is added by the route to the first answer only ("key": null on a replay).
          const ledger::BudgetNode& node = value.state.node();
          assert(node.delegation.has_value());
          boost::json::object body{
              {"path", node.path},
              {"key_id", value.key.id},
              {"key", nullptr},
              {"name", value.key.name},
              {"limit", node.limit->to_string()},
              {"expires_at", value.key.expires_at
                                 ? boost::json::value(format_timestamp(value.key.expires_at))
                                 : boost::json::value(nullptr)},
              {"parent_key", node.delegation->parent_key.empty()
                                 ? boost::json::value(nullptr)
                                 : boost::json::value(node.delegation->parent_key)},
              {"run", node.delegation->run},
              {"seq", value.seq},
              {"budget", budget_state_to_json(value.state, at)}};
          return json_answer(201, body);
        } else if constexpr (std::is_same_v<Value, ledger::DelegationsEnded>) {
          return json_answer(200, boost::json::object{{"budget", value.budget},
                                                      {"delegations_ended", value.ended}});
        } else if constexpr (std::is_same_v<Value, ledger::WebhookWritten>) {
          return json_answer(value.created ? 201 : 200, webhook_to_json(value.webhook));
        } else if constexpr (std::is_same_v<Value, ledger::VendorWritten>) {
          return json_answer(value.created ? 201 : 200, vendor_to_json(value.vendor));
        } else if constexpr (std::is_same_v<Value, ledger::VendorDeleted>) {
          boost::json::object body = vendor_to_json(value.vendor);
          body["deleted"] = true;
          return json_answer(200, body);
        } else if constexpr (std::is_same_v<Value, ledger::WebhookDeleted>) {
          boost::json::object body = webhook_to_json(value.webhook);
          body["deleted"] = true;
          return json_answer(200, body);
        } else {
          static_assert(std::is_same_v<Value, ledger::Replayed>);
          return value.recorded;
        }
      },
      answer.value);
}

}  // namespace stub::http
