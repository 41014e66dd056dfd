// The JSON request decoders of every route that takes a body, over arbitrary bytes: the first
// byte picks the route, the rest is the body as the server reads it (parse_request_body, then
// the route's decoder from http/request_decoders.hpp, the very functions the handlers call).
// Two more selectors fuzz the request target parser (path segments and query string) and the
// text rule with the literal pass. Properties: whatever a decoder accepts is within the
// documented bounds (positive amounts within Money::micros_max, clean bounded text, tags and
// receipts that are canonical JSON, ttl within 1s..24h, known webhook events, and so on); the
// body's canonical form is a fixed point; is_clean_text agrees with an independent decoder.

#include <boost/json/parse.hpp>
#include <cmath>
#include <string>

#include "fuzz/exact_json.hpp"
#include "fuzz/fuzz_check.hpp"
#include "http/handler.hpp"
#include "http/number_literals.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "http/text_checks.hpp"
#include "ledger/canonical_json.hpp"
#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"

namespace http = stub::http;
namespace ledger = stub::ledger;

namespace {

enum Route : uint8_t {
  spend,
  hold,
  capture,
  void_hold,
  put_root_budget,
  put_child_budget,
  freeze,
  unfreeze,
  create_key,
  approval,
  put_webhook,
  ask,
  sign_in,
  target,
  text_rule,
  routes_count
};

// The reference for the text rule: decode UTF-8 by the book (RFC 3629) and refuse C0, DEL
// and C1 code points.
bool reference_clean(std::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    uint32_t code_point = 0;
    size_t length = 0;
    if (lead < 0x80) {
      code_point = lead;
      length = 1;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      code_point = lead & 0x1F;
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      code_point = lead & 0x0F;
      length = 3;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      code_point = lead & 0x07;
      length = 4;
    } else {
      return false;
    }
    if (i + length > text.size())
      return false;
    for (size_t k = 1; k < length; ++k) {
      const auto next = static_cast<unsigned char>(text[i + k]);
      if ((next & 0xC0) != 0x80)
        return false;
      code_point = (code_point << 6) | (next & 0x3F);
    }
    const uint32_t minimum[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code_point < minimum[length] || code_point > 0x10FFFF ||
        (code_point >= 0xD800 && code_point <= 0xDFFF))
      return false;
    if (code_point < 0x20 || (code_point >= 0x7F && code_point <= 0x9F))
      return false;
    i += length;
  }
  return true;
}

void check_clean(std::string_view text, size_t length_max) {
  FUZZ_CHECK(text.size() <= length_max);
  FUZZ_CHECK(http::is_clean_text(text));
}

// A canonical JSON object (tags) or value (receipt): parses, and is its own canonical form.
void check_canonical(const std::string& json, bool object) {
  const auto exact = stub::fuzz::parse_exact(json);
  FUZZ_CHECK(exact.has_value());
  const boost::json::value& value = *exact;
  FUZZ_CHECK(!object || value.is_object());
  FUZZ_CHECK(ledger::canonical_json(value) == json);
}

void check_amount(const std::optional<ledger::Money>& amount) {
  FUZZ_CHECK(amount.has_value());
  FUZZ_CHECK(amount->is_positive() && amount->micros() <= ledger::Money::micros_max);
}

void check_body(const http::RequestBody& body, std::string_view text) {
  FUZZ_CHECK(body.canonical == ledger::canonical_json(body.object));
  check_canonical(body.canonical, true);
  for (const auto& [name, literal] : body.number_literals) {
    const auto* value = body.object.if_contains(name);
    FUZZ_CHECK(value != nullptr);
    // A repeated name keeps the last member in both passes; a number literal is non-empty.
    FUZZ_CHECK(!literal.empty());
    double exact = 0;
    if (http::round_trips_through_double(literal, exact))
      FUZZ_CHECK(std::isfinite(exact));
  }
  (void)text;
}

void run_route(Route route, std::string_view text) {
  if (route == sign_in) {
    auto token = http::decode_sign_in(text);
    if (token.ok()) {
      FUZZ_CHECK(!token->empty());
      check_clean(*token, http::session_token_length_max);
    }
    return;
  }
  if (route == target) {
    auto parsed = http::detail::parse_target(std::string(text));
    if (parsed.ok()) {
      for (const std::string& segment : parsed->segments)
        (void)http::detail::check_path_id(segment);
    }
    return;
  }
  if (route == text_rule) {
    FUZZ_CHECK(http::is_clean_text(text) == reference_clean(text));
    const http::NumberLiterals literals = http::number_literals(text);
    for (const std::string& literal : literals.receipt) {
      double exact = 0;
      (void)http::round_trips_through_double(literal, exact);
    }
    double exact = 0;
    if (http::round_trips_through_double(text, exact))
      FUZZ_CHECK(std::isfinite(exact));
    return;
  }

  auto parsed = http::parse_request_body(text);
  if (!parsed.ok())
    return;
  const http::RequestBody& body = *parsed;
  check_body(body, text);

  switch (route) {
    case spend:
    case hold: {
      auto budget = http::decode_money_budget(body, route == hold);
      if (!budget.ok())
        return;
      check_clean(*budget, http::text_field_length_max);
      ledger::Command command;
      if (!http::decode_money_fields(body, route == hold, command).ok())
        return;
      check_amount(command.amount);
      check_clean(command.vendor, http::text_field_length_max);
      check_clean(command.intent, http::text_field_length_max);
      check_canonical(command.tags_json, true);
      FUZZ_CHECK(boost::json::parse(command.tags_json).as_object().size() <= http::tags_count_max);
      if (route == hold) {
        FUZZ_CHECK(command.ttl >= ledger::micros_per_second && command.ttl <= http::hold_ttl_max);
        FUZZ_CHECK(command.receipt_json == "null");
      } else {
        check_canonical(command.receipt_json, false);
        FUZZ_CHECK(command.receipt_json.size() <= http::receipt_bytes_max);
      }
      // An amount given as a string decodes to exactly what Money::parse reads from it.
      if (const auto* given = body.object.if_contains("amount"); given && given->is_string())
        FUZZ_CHECK(ledger::Money::parse(given->get_string()) == command.amount);
      return;
    }
    case capture:
    case void_hold: {
      auto fields = http::decode_settle(body, route == capture);
      if (!fields.ok())
        return;
      if (fields->amount)
        check_amount(fields->amount);
      if (route == void_hold)
        FUZZ_CHECK(!fields->amount && fields->receipt_json == "null" && body.object.empty());
      else
        check_canonical(fields->receipt_json, false);
      return;
    }
    case put_root_budget:
    case put_child_budget: {
      const auto path =
          ledger::BudgetPath::parse(route == put_root_budget ? "acme" : "acme/research");
      ledger::BudgetSettings settings;
      if (!http::decode_budget_settings(body, *path, settings).ok())
        return;
      if (settings.limit)
        FUZZ_CHECK(!settings.limit->is_negative());
      if (settings.per_txn_max)
        FUZZ_CHECK(settings.per_txn_max->is_positive());
      if (settings.currency)
        FUZZ_CHECK(route == put_root_budget && settings.currency->size() >= 3);
      return;
    }
    case freeze:
    case unfreeze: {
      auto fields = http::decode_freeze(body, route == freeze);
      if (!fields.ok())
        return;
      check_clean(fields->reason, http::text_field_length_max);
      FUZZ_CHECK(route == freeze || !fields->void_holds);
      return;
    }
    case create_key: {
      auto fields = http::decode_key(body);
      if (!fields.ok())
        return;
      check_clean(fields->name, 128);
      FUZZ_CHECK(ledger::BudgetPath::parse(fields->budget.str()) == fields->budget);
      if (fields->expires_in)
        FUZZ_CHECK(*fields->expires_in > 0);
      return;
    }
    case approval: {
      auto reason = http::decode_approval(body);
      if (reason.ok())
        check_clean(*reason, http::text_field_length_max);
      return;
    }
    case put_webhook: {
      auto fields = http::decode_webhook(body, "acme");
      if (!fields.ok())
        return;
      const ledger::WebhookSettings& settings = fields->settings;
      if (settings.url)
        FUZZ_CHECK(stub::webhooks::valid_url(*settings.url) && http::is_clean_text(*settings.url));
      if (settings.events) {
        FUZZ_CHECK(!settings.events->empty());
        for (size_t i = 0; i < settings.events->size(); ++i) {
          FUZZ_CHECK(stub::webhooks::known_event((*settings.events)[i]));
          FUZZ_CHECK(i == 0 || (*settings.events)[i - 1] < (*settings.events)[i]);
        }
      }
      if (settings.secret) {
        FUZZ_CHECK(settings.secret->size() >= http::webhook_secret_length_min &&
                   settings.secret->size() <= http::webhook_secret_length_max);
        check_clean(*settings.secret, http::webhook_secret_length_max);
      }
      check_clean(fields->root, http::text_field_length_max);
      return;
    }
    case ask: {
      auto fields = http::decode_ask(body);
      if (!fields.ok())
        return;
      FUZZ_CHECK(!fields->question.empty() && http::is_clean_text(fields->question));
      check_clean(fields->subtree, http::text_field_length_max);
      return;
    }
    default:
      return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const auto route = static_cast<Route>(data[0] % routes_count);
  run_route(route, stub::fuzz::as_text(data + 1, size - 1));
  return 0;
}
