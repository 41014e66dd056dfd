#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <iostream>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

namespace {

struct MoneyArgs {
  std::string amount, budget, vendor, intent, ttl, on_expiry, receipt, idempotency_key;
  std::vector<std::string> tags;
};

// Adds the fields that spends and holds share; returns false on a malformed --tag.
bool fill_common(boost::json::object& body, const MoneyArgs& args) {
  body["amount"] = args.amount;
  if (!args.budget.empty())
    body["budget"] = args.budget;
  if (!args.vendor.empty())
    body["vendor"] = args.vendor;
  if (!args.intent.empty())
    body["intent"] = args.intent;
  if (!args.tags.empty()) {
    boost::json::object tags;
    for (const std::string& tag : args.tags) {
      const size_t equals = tag.find('=');
      if (equals == std::string::npos || equals == 0) {
        std::cerr << "stub: --tag must be KEY=VALUE, got " << tag << "\n";
        return false;
      }
      tags[tag.substr(0, equals)] = tag.substr(equals + 1);
    }
    body["tags"] = std::move(tags);
  }
  return true;
}

void add_common_options(CLI::App& command, MoneyArgs& args) {
  command.add_option("amount", args.amount, "Amount as a decimal, e.g. 0.04")->required();
  command.add_option("--budget", args.budget, "Node to spend from (default: the key's node)");
  command.add_option("--vendor", args.vendor, "Who is paid, e.g. api.openai.com");
  command.add_option("--intent", args.intent, "What for, in a few words");
  command.add_option("--tag", args.tags, "KEY=VALUE attribution tag (repeatable)");
  command.add_option("--idempotency-key", args.idempotency_key,
                     "Reuse to retry safely (default: a fresh random key)");
}

}  // namespace

void add_money_commands(CLI::App& app, int& exit_code) {
  auto client = std::make_shared<ClientSettings>();

  auto spend_args = std::make_shared<MoneyArgs>();
  CLI::App* spend = app.add_subcommand("spend", "One-shot spend: hold and capture in one commit");
  add_common_options(*spend, *spend_args);
  spend->add_option("--receipt", spend_args->receipt, "Receipt as JSON, e.g. '{\"tokens\":812}'");
  add_client_options(*spend, *client);
  spend->callback([client, spend_args, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    boost::json::object body;
    if (!fill_common(body, *spend_args))
      return void(exit_code = 1);
    if (!spend_args->receipt.empty()) {
      boost::system::error_code error;
      body["receipt"] = boost::json::parse(spend_args->receipt, error);
      if (error) {
        std::cerr << "stub: --receipt is not valid JSON\n";
        return void(exit_code = 1);
      }
    }
    const std::string key =
        spend_args->idempotency_key.empty() ? new_idempotency_key() : spend_args->idempotency_key;
    exit_code = report(http->request("POST", "/v1/spends", boost::json::serialize(body), key));
  });

  auto hold_args = std::make_shared<MoneyArgs>();
  CLI::App* hold = app.add_subcommand("hold", "Reserve the worst case before paying");
  add_common_options(*hold, *hold_args);
  hold->add_option("--ttl", hold_args->ttl, "Lifetime, e.g. 5m (default 5m, max 24h)");
  hold->add_option("--on-expiry", hold_args->on_expiry, "capture (default) or void")
      ->check(CLI::IsMember({"capture", "void"}));
  add_client_options(*hold, *client);
  hold->callback([client, hold_args, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    boost::json::object body;
    if (!fill_common(body, *hold_args))
      return void(exit_code = 1);
    if (!hold_args->ttl.empty())
      body["ttl"] = hold_args->ttl;
    if (!hold_args->on_expiry.empty())
      body["on_expiry"] = hold_args->on_expiry;
    const std::string key =
        hold_args->idempotency_key.empty() ? new_idempotency_key() : hold_args->idempotency_key;
    exit_code = report(http->request("POST", "/v1/holds", boost::json::serialize(body), key));
  });

  struct SettleArgs {
    std::string hold_id, amount, receipt, idempotency_key;
  };
  for (const bool capture : {true, false}) {
    auto args = std::make_shared<SettleArgs>();
    CLI::App* command = app.add_subcommand(
        capture ? "capture" : "void",
        capture ? "Capture a hold at its real cost (<= held)" : "Release a hold");
    command->add_option("hold_id", args->hold_id, "Hold id")->required();
    if (capture) {
      command->add_option("amount", args->amount, "Real cost (default: the held amount)");
      command->add_option("--receipt", args->receipt, "Receipt as JSON");
    }
    command->add_option("--idempotency-key", args->idempotency_key, "Reuse to retry safely");
    add_client_options(*command, *client);
    command->callback([client, args, capture, &exit_code] {
      auto http = make_client(*client);
      if (!http)
        return void(exit_code = 1);
      boost::json::object body;
      if (!args->amount.empty())
        body["amount"] = args->amount;
      if (!args->receipt.empty()) {
        boost::system::error_code error;
        body["receipt"] = boost::json::parse(args->receipt, error);
        if (error) {
          std::cerr << "stub: --receipt is not valid JSON\n";
          return void(exit_code = 1);
        }
      }
      const std::string key =
          args->idempotency_key.empty() ? new_idempotency_key() : args->idempotency_key;
      exit_code = report(
          http->request("POST", "/v1/holds/" + args->hold_id + (capture ? "/capture" : "/void"),
                        boost::json::serialize(body), key));
    });
  }
}

}  // namespace stub::cli
