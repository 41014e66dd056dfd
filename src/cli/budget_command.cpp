#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <iostream>
#include <vector>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

namespace {

// `limit` and friends go on the wire as strings so they never pass through a float.
void set_money(boost::json::object& body, const char* name, const std::string& value) {
  if (value.empty())
    return;
  if (value == "none") {
    body[name] = nullptr;
  } else {
    body[name] = value;
  }
}

void print_tree(const boost::json::array& budgets) {
  for (const auto& item : budgets) {
    const auto& node = item.as_object();
    const std::string path(node.at("path").as_string());
    const size_t depth = static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
    const std::string name =
        path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    std::string limit =
        node.at("limit").is_null() ? "no limit" : std::string(node.at("limit").as_string());
    std::cout << std::string(depth * 2, ' ') << name << "  spent "
              << std::string_view(node.at("spent").as_string()) << " + reserved "
              << std::string_view(node.at("reserved").as_string()) << " of " << limit << " / "
              << std::string_view(node.at("period").as_string());
    if (node.at("frozen").as_bool())
      std::cout << "  [FROZEN]";
    std::cout << "\n";
  }
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    out.push_back(text.substr(start, end - start));
    if (end == std::string::npos)
      return out;
    start = end + 1;
  }
}

// The policy flags of `budget set`, turned into the body fields the server checks.
template <typename Args>
Status add_policy_fields(boost::json::object& body, const Args& args) {
  if (!args.windows.empty()) {
    boost::json::array windows;
    if (args.windows != std::vector<std::string>{"none"}) {
      for (const std::string& window : args.windows) {
        const size_t equals = window.find('=');
        if (equals == std::string::npos) {
          return Error::invalid("invalid_window",
                                "--window takes DURATION=LIMIT, e.g. 1h=5.00, got " + window + ".");
        }
        windows.push_back(boost::json::object{{"duration", window.substr(0, equals)},
                                              {"limit", window.substr(equals + 1)}});
      }
    }
    body["windows"] = std::move(windows);
  }
  if (!args.allow.empty() || !args.block.empty()) {
    boost::json::array allow(args.allow.begin(), args.allow.end());
    boost::json::array block(args.block.begin(), args.block.end());
    body["vendors"] = boost::json::object{{"allow", std::move(allow)}, {"block", std::move(block)}};
  }
  if (!args.vendor_limits.empty()) {
    // PATTERN[,PATTERN...]=LIMIT/PERIOD-OR-WINDOW, e.g. api.twilio.com=2000/month or
    // *.openai.com=50/1h: a calendar period word, anything else a rolling window duration.
    boost::json::array rules;
    if (args.vendor_limits != std::vector<std::string>{"none"}) {
      for (const std::string& text : args.vendor_limits) {
        const size_t equals = text.rfind('=');
        const size_t slash =
            equals == std::string::npos ? std::string::npos : text.find('/', equals);
        if (equals == std::string::npos || equals == 0 || slash == std::string::npos ||
            slash == equals + 1 || slash + 1 == text.size()) {
          return Error::invalid("invalid_vendor_limits",
                                "--vendor-limit takes VENDORS=LIMIT/PERIOD, e.g. "
                                "api.twilio.com=2000/month or *.openai.com=50/1h, got " +
                                    text + ".");
        }
        const std::vector<std::string> patterns = split(text.substr(0, equals), ',');
        boost::json::object rule{{"vendors", boost::json::array(patterns.begin(), patterns.end())},
                                 {"limit", text.substr(equals + 1, slash - equals - 1)}};
        const std::string per = text.substr(slash + 1);
        const bool calendar = per == "none" || per == "day" || per == "week" || per == "month";
        rule[calendar ? "period" : "window"] = per;
        rules.push_back(std::move(rule));
      }
    }
    body["vendor_limits"] = std::move(rules);
  }
  if (!args.require_tags.empty()) {
    boost::json::array keys;
    if (args.require_tags != std::vector<std::string>{"none"})
      keys = boost::json::array(args.require_tags.begin(), args.require_tags.end());
    body["require_tags"] = std::move(keys);
  }
  if (!args.vendor_categories.empty()) {
    boost::json::object categories;
    if (args.vendor_categories != std::vector<std::string>{"none"}) {
      for (const std::string& text : args.vendor_categories) {
        const size_t equals = text.rfind('=');
        if (equals == std::string::npos || equals == 0 || equals + 1 == text.size()) {
          return Error::invalid("invalid_vendor_categories",
                                "--vendor-category takes VENDOR=CATEGORY, e.g. api.openai.com=llm, "
                                "got " +
                                    text + ".");
        }
        categories[text.substr(0, equals)] = text.substr(equals + 1);
      }
    }
    body["vendor_categories"] = std::move(categories);
  }
  set_money(body, "approval_above", args.approval_above);
  if (args.breaker == "none") {
    body["breaker"] = nullptr;
  } else if (!args.breaker.empty()) {
    const std::vector<std::string> parts = split(args.breaker, ',');
    boost::json::object breaker{{"duration", parts.front()}};
    for (size_t i = 1; i < parts.size(); ++i) {
      if (parts[i].starts_with("amount=")) {
        breaker["max_amount"] = parts[i].substr(7);
      } else if (parts[i].starts_with("count=")) {
        int64_t count = 0;
        const std::string digits = parts[i].substr(6);
        const auto [end, error] =
            std::from_chars(digits.data(), digits.data() + digits.size(), count);
        if (error != std::errc{} || end != digits.data() + digits.size())
          return Error::invalid("invalid_breaker", "--breaker count= takes a whole number.");
        breaker["max_count"] = count;
      } else {
        return Error::invalid(
            "invalid_breaker",
            "--breaker takes DURATION[,amount=X][,count=N], got " + args.breaker + ".");
      }
    }
    body["breaker"] = std::move(breaker);
  }
  if (args.thresholds == "default") {
    body["thresholds"] = nullptr;
  } else if (args.thresholds == "none") {
    body["thresholds"] = boost::json::array{};
  } else if (!args.thresholds.empty()) {
    boost::json::array percents;
    for (const std::string& part : split(args.thresholds, ',')) {
      int64_t percent = 0;
      const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), percent);
      if (error != std::errc{} || end != part.data() + part.size())
        return Error::invalid("invalid_thresholds", "--thresholds takes e.g. 50,80,100.");
      percents.emplace_back(percent);
    }
    body["thresholds"] = std::move(percents);
  }
  return Status::success();
}

}  // namespace

void add_budget_commands(CLI::App& app, int& exit_code) {
  auto client = std::make_shared<ClientSettings>();
  CLI::App* budget = app.add_subcommand("budget", "Create, inspect and list budgets");
  budget->require_subcommand(1);

  struct SetArgs {
    std::string path, limit, period, per_txn_max, currency, idempotency_key;
    std::vector<std::string> windows, allow, block, vendor_limits, require_tags, vendor_categories;
    std::string approval_above, breaker, thresholds;
  };
  auto set_args = std::make_shared<SetArgs>();
  CLI::App* set = budget->add_subcommand("set", "Create or update a budget node");
  set->add_option("path", set_args->path, "Budget path, e.g. acme/marketing")->required();
  set->add_option("--limit", set_args->limit, "Limit per period, e.g. 100.00 ('none': no cap)");
  set->add_option("--period", set_args->period, "none | day | week | month")
      ->check(CLI::IsMember({"none", "day", "week", "month"}));
  set->add_option("--per-txn-max", set_args->per_txn_max, "Largest single spend ('none' clears)");
  set->add_option("--currency", set_args->currency, "Currency of a root, e.g. USD");
  set->add_option("--idempotency-key", set_args->idempotency_key, "Default: a fresh random key");
  set->add_option("--window", set_args->windows,
                  "Rolling cap DURATION=LIMIT, e.g. 1h=5.00 (repeat; replaces the node's windows; "
                  "'none' clears them)");
  set->add_option("--allow", set_args->allow,
                  "Vendor allowed, exact or *.example.com (repeat; with --block, replaces the "
                  "node's vendor rules)");
  set->add_option("--block", set_args->block, "Vendor blocked (repeat)");
  set->add_option("--vendor-limit", set_args->vendor_limits,
                  "Cap across the subtree per vendor, VENDORS=LIMIT/PERIOD or /WINDOW, e.g. "
                  "api.twilio.com=2000/month or '*.openai.com=50/1h' (repeat; replaces the node's "
                  "vendor limits; 'none' clears them)");
  set->add_option("--require-tag", set_args->require_tags,
                  "Tag key every spend and hold under the node must carry, e.g. customer (repeat; "
                  "replaces the node's required tags; 'none' clears them)");
  set->add_option("--vendor-category", set_args->vendor_categories,
                  "Default category of a vendor's spends below the node, VENDOR=CATEGORY, e.g. "
                  "api.openai.com=llm or '*.serpapi.com=data-api' (repeat; replaces the node's "
                  "map; 'none' clears it)");
  set->add_option("--approval-above", set_args->approval_above,
                  "Holds above this wait for an admin's approval ('none' clears)");
  set->add_option("--breaker", set_args->breaker,
                  "Velocity breaker DURATION[,amount=X][,count=N], e.g. 1m,count=20 ('none' "
                  "clears)");
  set->add_option("--thresholds", set_args->thresholds,
                  "Alert percentages, e.g. 50,80,100 ('none': no alerts, 'default': 50,80,100)");
  add_client_options(*set, *client);
  set->callback([client, set_args, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    boost::json::object body;
    set_money(body, "limit", set_args->limit);
    set_money(body, "per_txn_max", set_args->per_txn_max);
    if (!set_args->period.empty())
      body["period"] = set_args->period;
    if (!set_args->currency.empty())
      body["currency"] = set_args->currency;
    if (Status policies = add_policy_fields(body, *set_args); !policies.ok()) {
      std::cerr << "stub: " << policies.error().message << "\n";
      return void(exit_code = 1);
    }
    const std::string key =
        set_args->idempotency_key.empty() ? new_idempotency_key() : set_args->idempotency_key;
    exit_code = report(
        http->request("PUT", "/v1/budgets/" + set_args->path, boost::json::serialize(body), key));
  });

  auto show_path = std::make_shared<std::string>();
  CLI::App* show = budget->add_subcommand("show", "Show one budget's state");
  show->add_option("path", *show_path, "Budget path")->required();
  add_client_options(*show, *client);
  show->callback([client, show_path, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    exit_code = report(http->request("GET", "/v1/budgets/" + *show_path));
  });

  struct TreeArgs {
    std::string root;
    bool json = false;
  };
  auto tree_args = std::make_shared<TreeArgs>();
  CLI::App* tree = budget->add_subcommand("tree", "Show a root's whole budget tree");
  tree->add_option("root", tree_args->root, "Root budget, e.g. acme")->required();
  tree->add_flag("--json", tree_args->json, "Print JSON instead of a tree");
  add_client_options(*tree, *client);
  tree->callback([client, tree_args, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    auto response = http->request("GET", "/v1/budgets?root=" + tree_args->root);
    if (tree_args->json || !response.ok() || response->status != 200) {
      exit_code = report(response);
      return;
    }
    print_tree(boost::json::parse(response->body).at("budgets").as_array());
    exit_code = 0;
  });

  for (const bool freeze : {true, false}) {
    struct FreezeArgs {
      std::string path, reason;
      bool void_holds = false;
    };
    auto args = std::make_shared<FreezeArgs>();
    CLI::App* command =
        app.add_subcommand(freeze ? "freeze" : "unfreeze",
                           freeze ? "Freeze a budget node (a root freezes the whole fleet)"
                                  : "Unfreeze a budget node");
    command->add_option("path", args->path, "Budget path")->required();
    command->add_option("--reason", args->reason, "Why, for the audit trail");
    if (freeze) {
      command->add_flag("--void-holds", args->void_holds,
                        "Also void every outstanding hold below the node, in the same commit");
    }
    add_client_options(*command, *client);
    command->callback([client, args, freeze, &exit_code] {
      auto http = make_client(*client);
      if (!http)
        return void(exit_code = 1);
      boost::json::object fields{{"reason", args->reason}};
      if (args->void_holds)
        fields["void_holds"] = true;
      const std::string body = boost::json::serialize(fields);
      exit_code = report(
          http->request("POST", "/v1/budgets/" + args->path + (freeze ? "/freeze" : "/unfreeze"),
                        body, new_idempotency_key()));
    });
  }
}

}  // namespace stub::cli
