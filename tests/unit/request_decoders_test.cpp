// The route body decoders (http/request_decoders.hpp), which the handlers call and
// fuzz/request.cpp fuzzes: what each accepts and the first error each answers.

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "http/request_decoders.hpp"

namespace stub::http {
namespace {

RequestBody body_of(std::string_view text) {
  auto body = parse_request_body(text);
  EXPECT_TRUE(body.ok()) << text;
  return body.ok() ? std::move(body).value() : RequestBody{};
}

std::string subcode(const Status& status) {
  return status.ok() ? "" : status.error().subcode;
}

template <typename T>
std::string subcode(const Result<T>& result) {
  return result.ok() ? "" : result.error().subcode;
}

TEST(RequestDecoders, SpendAndHoldFields) {
  const RequestBody spend = body_of(
      R"({"amount":"0.04","vendor":"openai","tags":{"team":"r"},"category":"llm",
          "receipt":{"tokens":12,"cost":0.1},"budget":"acme/r"})");
  auto budget = decode_money_budget(spend, false);
  ASSERT_TRUE(budget.ok());
  EXPECT_EQ(*budget, "acme/r");
  ledger::Command command;
  ASSERT_EQ(subcode(decode_money_fields(spend, false, command)), "");
  EXPECT_EQ(command.amount, ledger::Money::parse("0.04"));
  EXPECT_EQ(command.vendor, "openai");
  EXPECT_EQ(command.tags_json, R"({"category":"llm","team":"r"})");
  EXPECT_EQ(command.receipt_json, R"({"cost":0.1,"tokens":12})");
  // A spend takes no ttl, a hold no receipt.
  EXPECT_EQ(subcode(decode_money_budget(body_of(R"({"amount":"1","ttl":"5m"})"), false)),
            "unknown_field");
  EXPECT_EQ(subcode(decode_money_budget(body_of(R"({"amount":"1","receipt":1})"), true)),
            "unknown_field");

  ledger::Command hold;
  ASSERT_EQ(subcode(decode_money_fields(body_of(R"({"amount":2,"ttl":30,"on_expiry":"void"})"),
                                        true, hold)),
            "");
  EXPECT_EQ(hold.ttl, 30 * ledger::micros_per_second);
  EXPECT_EQ(hold.on_expiry, ledger::OnExpiry::void_hold);
  ledger::Command unused;
  EXPECT_EQ(subcode(decode_money_fields(body_of(R"({"amount":"1","ttl":"25h"})"), true, unused)),
            "invalid_duration");
  EXPECT_EQ(subcode(decode_money_fields(body_of(R"({"amount":"0"})"), true, unused)),
            "invalid_amount");
  EXPECT_EQ(subcode(decode_money_fields(body_of(R"({"vendor":7})"), true, unused)),
            "missing_field");  // the amount is read first
}

TEST(RequestDecoders, SettleBudgetFreezeKeyApprovalAsk) {
  auto capture = decode_settle(body_of(R"({"amount":"1.5","receipt":[1]})"), true);
  ASSERT_TRUE(capture.ok());
  EXPECT_EQ(capture->amount, ledger::Money::parse("1.5"));
  EXPECT_EQ(capture->receipt_json, "[1]");
  EXPECT_EQ(subcode(decode_settle(body_of(R"({"amount":"1"})"), false)), "unknown_field");
  EXPECT_EQ(subcode(decode_settle(body_of(R"({"amount":"-1"})"), true)), "invalid_amount");

  const auto root = ledger::BudgetPath::parse("acme");
  const auto child = ledger::BudgetPath::parse("acme/r");
  ledger::BudgetSettings settings;
  ASSERT_EQ(subcode(decode_budget_settings(
                body_of(R"({"limit":"10","period":"month","currency":"USD"})"), *root, settings)),
            "");
  EXPECT_TRUE(settings.limit_given);
  EXPECT_EQ(settings.currency, "USD");
  ledger::BudgetSettings other;
  EXPECT_EQ(subcode(decode_budget_settings(body_of(R"({"currency":"USD"})"), *child, other)),
            "invalid_currency");
  EXPECT_EQ(subcode(decode_budget_settings(body_of(R"({"limit":"-1"})"), *root, other)),
            "invalid_amount");

  auto freeze = decode_freeze(body_of(R"({"reason":"x","void_holds":true})"), true);
  ASSERT_TRUE(freeze.ok());
  EXPECT_TRUE(freeze->void_holds);
  EXPECT_EQ(subcode(decode_freeze(body_of(R"({"void_holds":true})"), false)), "unknown_field");

  auto key = decode_key(body_of(R"({"budget":"acme/r","name":"n","expires_in":"1d"})"));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(key->budget.str(), "acme/r");
  EXPECT_EQ(key->expires_in, 86'400 * ledger::micros_per_second);
  EXPECT_EQ(subcode(decode_key(body_of(R"({"budget":"acme","expires_in":0})"))),
            "invalid_duration");
  EXPECT_EQ(subcode(decode_key(body_of(R"({"budget":"Acme"})"))), "invalid_budget_path");

  EXPECT_EQ(subcode(decode_approval(body_of(R"({"reason":"\u0007"})"))), "invalid_text");
  EXPECT_EQ(subcode(decode_ask(body_of(R"({"question":""})"))), "invalid_question");
  EXPECT_EQ(decode_ask(body_of(R"({"question":"how much?","subtree":"acme"})"))->subtree, "acme");
}

TEST(RequestDecoders, WebhookAndSignIn) {
  auto webhook = decode_webhook(
      body_of(R"({"root":"acme","url":"https://h.example/x","events":["unfrozen","frozen",
              "frozen"],"secret":"0123456789abcdef"})"),
      "ops");
  ASSERT_TRUE(webhook.ok()) << webhook.error().message;
  EXPECT_EQ(webhook->root, "acme");
  EXPECT_EQ(*webhook->settings.events, (std::vector<std::string>{"frozen", "unfrozen"}));
  EXPECT_EQ(subcode(decode_webhook(body_of("{}"), "Ops")), "invalid_webhook_name");
  EXPECT_EQ(subcode(decode_webhook(body_of(R"({"url":"http://a%0d%0aX:1/"})"), "ops")),
            "invalid_url");
  EXPECT_EQ(subcode(decode_webhook(body_of(R"({"events":[]})"), "ops")), "invalid_events");
  EXPECT_EQ(subcode(decode_webhook(body_of(R"({"secret":"short"})"), "ops")), "invalid_secret");

  EXPECT_EQ(*decode_sign_in(R"({"token":"abc"})"), "abc");
  EXPECT_EQ(subcode(decode_sign_in("{}")), "missing_field");
  EXPECT_EQ(subcode(decode_sign_in("[")), "malformed_json");
  EXPECT_EQ(subcode(decode_sign_in(R"({"token":"a","x":1})")), "unknown_field");
}

}  // namespace
}  // namespace stub::http
