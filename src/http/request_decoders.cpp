#include "http/request_decoders.hpp"

#include <algorithm>
#include <set>
#include <vector>

#include "http/handler.hpp"
#include "http/policy_fields.hpp"
#include "http/text_checks.hpp"
#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"

namespace stub::http {

namespace {

Error invalid(std::string subcode, std::string message) {
  return Error::invalid(std::move(subcode), std::move(message));
}

}  // namespace

Result<std::string> decode_money_budget(const RequestBody& body, bool hold) {
  if (Status known = hold ? reject_unknown_fields(body, {"amount", "vendor", "intent", "tags",
                                                         "category", "ttl", "on_expiry", "budget"})
                          : reject_unknown_fields(body, {"amount", "vendor", "intent", "tags",
                                                         "category", "receipt", "budget"});
      !known.ok()) {
    return known.error();
  }
  return text_field(body, "budget");
}

Status decode_money_fields(const RequestBody& body, bool hold, ledger::Command& command) {
  auto amount = required_amount(body, "amount");
  if (!amount.ok())
    return amount.error();
  auto vendor = text_field(body, "vendor");
  if (!vendor.ok())
    return vendor.error();
  auto intent = text_field(body, "intent");
  if (!intent.ok())
    return intent.error();
  auto tags = tags_field(body);
  if (!tags.ok())
    return tags.error();
  command.amount = *amount;
  command.vendor = std::move(vendor).value();
  command.intent = std::move(intent).value();
  command.tags_json = std::move(tags).value();
  if (hold) {
    auto ttl = duration_field(body, "ttl");
    if (!ttl.ok())
      return ttl.error();
    command.ttl = ttl.value().value_or(hold_ttl_default);
    if (command.ttl < ledger::micros_per_second || command.ttl > hold_ttl_max)
      return invalid("invalid_duration", "Field \"ttl\" must be between 1s and 24h.");
    auto on_expiry = text_field(body, "on_expiry");
    if (!on_expiry.ok())
      return on_expiry.error();
    if (*on_expiry == "void") {
      command.on_expiry = ledger::OnExpiry::void_hold;
    } else if (!on_expiry->empty() && *on_expiry != "capture") {
      return invalid("invalid_on_expiry", "Field \"on_expiry\" must be capture or void.");
    }
  } else {
    auto receipt = receipt_field(body);
    if (!receipt.ok())
      return receipt.error();
    command.receipt_json = std::move(receipt).value();
  }
  return Status::success();
}

Result<SettleFields> decode_settle(const RequestBody& body, bool capture) {
  if (Status known = capture ? reject_unknown_fields(body, {"amount", "receipt"})
                             : reject_unknown_fields(body, {});
      !known.ok()) {
    return known.error();
  }
  SettleFields fields;
  if (!capture)
    return fields;
  auto given = money_field(body, "amount");
  if (!given.ok())
    return given.error();
  if (given.value() && !given.value()->is_positive()) {
    return invalid("invalid_amount",
                   "Field \"amount\" must be above zero; void the hold to release it.");
  }
  fields.amount = *given;
  auto receipt = receipt_field(body);
  if (!receipt.ok())
    return receipt.error();
  fields.receipt_json = std::move(receipt).value();
  return fields;
}

Status decode_budget_settings(const RequestBody& body, const ledger::BudgetPath& path,
                              ledger::BudgetSettings& settings) {
  if (Status known = reject_unknown_fields(
          body,
          {"limit", "period", "per_txn_max", "currency", "windows", "vendors", "vendor_limits",
           "require_tags", "vendor_categories", "approval_above", "breaker", "thresholds"});
      !known.ok()) {
    return known;
  }
  if (body.object.contains("limit")) {
    auto limit = money_field(body, "limit");
    if (!limit.ok())
      return limit.error();
    if (limit.value() && limit.value()->is_negative())
      return invalid("invalid_amount", "Field \"limit\" must not be negative.");
    settings.limit_given = true;
    settings.limit = *limit;
  }
  if (body.object.contains("per_txn_max")) {
    auto maximum = money_field(body, "per_txn_max");
    if (!maximum.ok())
      return maximum.error();
    if (maximum.value() && !maximum.value()->is_positive())
      return invalid("invalid_amount", "Field \"per_txn_max\" must be above zero.");
    settings.per_txn_max_given = true;
    settings.per_txn_max = *maximum;
  }
  if (const auto* period = body.object.if_contains("period")) {
    std::optional<ledger::Period> parsed;
    if (period->is_string())
      parsed = ledger::parse_period(period->get_string());
    if (!parsed) {
      return invalid("invalid_period", "Field \"period\" must be one of none, day, week, month.");
    }
    settings.period = parsed;
  }
  if (const auto* currency = body.object.if_contains("currency")) {
    if (!path.is_root())
      return invalid("invalid_currency", "Only a root budget sets the currency.");
    const bool valid = currency->is_string() && currency->get_string().size() >= 3 &&
                       currency->get_string().size() <= 8 &&
                       std::all_of(currency->get_string().begin(), currency->get_string().end(),
                                   [](char c) { return c >= 'A' && c <= 'Z'; });
    if (!valid) {
      return invalid("invalid_currency",
                     "Field \"currency\" must be an upper-case code such as USD.");
    }
    settings.currency = std::string(currency->get_string());
  }
  return read_policy_fields(body, settings);
}

Result<FreezeFields> decode_freeze(const RequestBody& body, bool freeze) {
  if (Status known = freeze ? reject_unknown_fields(body, {"reason", "void_holds"})
                            : reject_unknown_fields(body, {"reason"});
      !known.ok()) {
    return known.error();
  }
  auto reason = text_field(body, "reason");
  if (!reason.ok())
    return reason.error();
  FreezeFields fields;
  fields.reason = std::move(reason).value();
  if (const auto* flag = body.object.if_contains("void_holds"); flag && !flag->is_null()) {
    if (!flag->is_bool())
      return invalid("invalid_field", "Field \"void_holds\" must be true or false.");
    fields.void_holds = flag->get_bool();
  }
  return fields;
}

Result<KeyFields> decode_key(const RequestBody& body) {
  if (Status known = reject_unknown_fields(body, {"budget", "name", "expires_in", "run"});
      !known.ok()) {
    return known.error();
  }
  auto budget = text_field(body, "budget");
  if (!budget.ok())
    return budget.error();
  auto path = detail::parse_path(*budget);
  if (!path.ok())
    return path.error();
  if (const auto* run = body.object.if_contains("run"); run != nullptr && !run->is_null()) {
    KeyFields fields{std::move(path).value(), {}, std::nullopt};
    fields.run = run;
    return fields;
  }
  auto name = text_field(body, "name", 128);
  if (!name.ok())
    return name.error();
  auto expires_in = duration_field(body, "expires_in");
  if (!expires_in.ok())
    return expires_in.error();
  if (expires_in.value() && *expires_in.value() <= 0)
    return invalid("invalid_duration", "Field \"expires_in\" must be above zero.");
  return KeyFields{std::move(path).value(), std::move(name).value(), *expires_in};
}

Result<std::string> decode_approval(const RequestBody& body) {
  if (Status known = reject_unknown_fields(body, {"reason"}); !known.ok())
    return known.error();
  return text_field(body, "reason");
}

Status check_webhook_name(std::string_view name) {
  const auto parsed = ledger::BudgetPath::parse(name);
  if (!parsed || !parsed->is_root()) {
    return invalid("invalid_webhook_name",
                   "Webhook name \"" + std::string(name) + "\" is not [a-z0-9][a-z0-9_-]{0,62}.");
  }
  return Status::success();
}

Result<WebhookFields> decode_webhook(const RequestBody& body, std::string_view name) {
  if (Status valid = check_webhook_name(name); !valid.ok())
    return valid.error();
  if (Status known = reject_unknown_fields(body, {"root", "url", "events", "secret"}); !known.ok())
    return known.error();
  WebhookFields fields;
  ledger::WebhookSettings& settings = fields.settings;
  settings.name = std::string(name);
  if (body.object.contains("url")) {
    auto url = text_field(body, "url", 2'048);
    if (!url.ok())
      return url.error();
    if (!webhooks::valid_url(*url)) {
      return invalid("invalid_url",
                     "Field \"url\" must be an http:// or https:// URL with a host.");
    }
    settings.url = std::move(url).value();
  }
  if (const auto* events = body.object.if_contains("events")) {
    std::set<std::string> names;
    bool valid = events->is_array() && !events->get_array().empty();
    for (const auto& event : valid ? events->get_array() : boost::json::array{}) {
      if (!event.is_string() || !webhooks::known_event(event.get_string())) {
        valid = false;
        break;
      }
      names.emplace(event.get_string());
    }
    if (!valid) {
      std::string known;
      for (const std::string& event : webhooks::event_names())
        known += (known.empty() ? "" : ", ") + event;
      return invalid("invalid_events",
                     "Field \"events\" must be a non-empty list of: " + known + ".");
    }
    settings.events = std::vector<std::string>(names.begin(), names.end());
  }
  if (const auto* secret = body.object.if_contains("secret")) {
    if (!secret->is_string() || secret->get_string().size() < webhook_secret_length_min ||
        secret->get_string().size() > webhook_secret_length_max) {
      return invalid("invalid_secret", "Field \"secret\" must be a string of 16 to 256 bytes.");
    }
    if (Status clean = check_text(secret->get_string(), "secret"); !clean.ok())
      return clean.error();
    settings.secret = std::string(secret->get_string());
  }
  auto root = text_field(body, "root");
  if (!root.ok())
    return root.error();
  fields.root = std::move(root).value();
  return fields;
}

Result<AskFields> decode_ask(const RequestBody& body) {
  if (Status known = reject_unknown_fields(body, {"question", "subtree"}); !known.ok())
    return known.error();
  const boost::json::value* question = body.object.if_contains("question");
  if (question == nullptr || !question->is_string() || question->get_string().empty())
    return invalid("invalid_question", "Field \"question\" must be a non-empty string.");
  if (Status clean = check_text(question->get_string(), "question"); !clean.ok())
    return clean.error();
  auto subtree = text_field(body, "subtree");
  if (!subtree.ok())
    return subtree.error();
  return AskFields{std::string(question->get_string()), std::move(subtree).value()};
}

Result<std::string> decode_sign_in(std::string_view raw_body) {
  auto body = parse_request_body(raw_body);
  if (!body.ok())
    return body.error();
  if (Status known = reject_unknown_fields(*body, {"token"}); !known.ok())
    return known.error();
  auto token = text_field(*body, "token", session_token_length_max);
  if (!token.ok())
    return token.error();
  if (token->empty()) {
    return invalid("missing_field",
                   "Field \"token\" is required: the admin token or an agent key.");
  }
  return token;
}

}  // namespace stub::http
