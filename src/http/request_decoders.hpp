#pragma once

// The body decoders of every route that takes a JSON body: pure functions from a parsed
// RequestBody to the fields a route acts on, or the 400 to answer. The route handlers
// (routes_*.cpp) call these and keep only what needs the caller or the store (scope checks,
// loading a hold or a webhook); fuzz/request.cpp runs every one of them over arbitrary bodies.
// Each decoder checks fields in the order the route always has, so the first error answered
// for a body with several problems is unchanged.

#include <optional>
#include <string>
#include <string_view>

#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/command.hpp"
#include "ledger/money.hpp"
#include "ledger/result.hpp"
#include "ledger/time_point.hpp"

namespace stub::http {

// POST /v1/spends (hold false) and POST /v1/holds (hold true), in two steps because the
// route checks the caller's scope over the budget before it reads the rest. First: unknown
// fields and the "budget" text (empty when absent: the key's own node).
Result<std::string> decode_money_budget(const RequestBody& body, bool hold);
// Then amount, vendor, intent, tags (with category), and the hold's ttl and on_expiry or the
// spend's receipt, into `command`.
Status decode_money_fields(const RequestBody& body, bool hold, ledger::Command& command);

// POST /v1/holds/{id}/capture (capture true) and /void (capture false).
struct SettleFields {
  std::optional<ledger::Money> amount;  // capture: absent means the held amount
  std::string receipt_json = "null";
};
Result<SettleFields> decode_settle(const RequestBody& body, bool capture);

// PUT /v1/budgets/{path}: every setting given, into `settings`.
Status decode_budget_settings(const RequestBody& body, const ledger::BudgetPath& path,
                              ledger::BudgetSettings& settings);

// POST /v1/budgets/{path}/freeze (freeze true) and /unfreeze.
struct FreezeFields {
  std::string reason;
  bool void_holds = false;
};
Result<FreezeFields> decode_freeze(const RequestBody& body, bool freeze);

// POST /v1/keys.
struct KeyFields {
  ledger::BudgetPath budget;
  std::string name;
  std::optional<ledger::Micros> expires_in;  // above zero when given
  // A per-run key's `run` object, in the body (set, non-null, only then; name and expires_in
  // are then the run's own): the delegation route's decoder reads it.
  const boost::json::value* run = nullptr;
};
Result<KeyFields> decode_key(const RequestBody& body);

// POST /v1/approvals/{id}/approve and /reject: the optional reason.
Result<std::string> decode_approval(const RequestBody& body);

// PUT /v1/webhooks/{name}: the name (a root-like token), then url, events, secret and the
// "root" text (empty when absent: an update keeps the webhook's root).
struct WebhookFields {
  ledger::WebhookSettings settings;
  std::string root;
};
Status check_webhook_name(std::string_view name);
Result<WebhookFields> decode_webhook(const RequestBody& body, std::string_view name);

// POST /v1/ask.
struct AskFields {
  std::string question;
  std::string subtree;  // empty when absent
};
Result<AskFields> decode_ask(const RequestBody& body);

// POST /v1/sessions: the raw body (this route parses its own), to the token.
inline constexpr size_t session_token_length_max = 512;
Result<std::string> decode_sign_in(std::string_view raw_body);

}  // namespace stub::http
