#include <boost/json/parse.hpp>
#include <cstdio>
#include <iostream>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

namespace {

std::string text_of(const boost::json::value& value) {
  return value.is_string() ? std::string(value.get_string()) : std::string("-");
}

// One line per entry: seq, time, kind, budget, amount, vendor or denial code.
std::string describe(const boost::json::object& entry) {
  char line[512];
  const std::string kind = text_of(entry.at("kind"));
  std::string what = text_of(entry.at("vendor"));
  if (kind == "deny")
    what = "DENIED " + text_of(entry.at("code"));
  std::snprintf(line, sizeof line, "%-8lld %s  %-11s %-40s %12s  %s",
                static_cast<long long>(entry.at("seq").to_number<int64_t>()),
                text_of(entry.at("ts")).c_str(), kind.c_str(), text_of(entry.at("budget")).c_str(),
                text_of(entry.at("amount")).c_str(), what.c_str());
  return line;
}

}  // namespace

void add_ledger_commands(CLI::App& app, int& exit_code) {
  auto client = std::make_shared<ClientSettings>();
  CLI::App* ledger = app.add_subcommand("ledger", "Read the books");
  ledger->require_subcommand(1);

  struct TailArgs {
    std::string root;
    int64_t after = 0;
    bool json = false;
  };
  auto args = std::make_shared<TailArgs>();
  CLI::App* tail = ledger->add_subcommand("tail", "Follow committed entries as they commit (SSE)");
  tail->add_option("--root", args->root, "Only this root (needed with --after)");
  CLI::Option* after = tail->add_option("--after", args->after,
                                        "First replay stored entries after this seq (0: all)")
                           ->check(CLI::NonNegativeNumber);
  tail->add_flag("--json", args->json, "Print each entry as one JSON line");
  add_client_options(*tail, *client);
  tail->callback([client, args, after, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    std::string target = "/v1/events";
    if (!args->root.empty()) {
      target += "?root=" + args->root;
      if (after->count() > 0)
        target += "&after=" + std::to_string(args->after);
    }
    const Status status = http->stream_events(target, [&](std::string_view data) {
      if (args->json) {
        std::cout << data << std::endl;
      } else {
        boost::system::error_code error;
        const auto entry = boost::json::parse(data, error);
        if (!error && entry.is_object())
          std::cout << describe(entry.get_object()) << std::endl;
      }
      return true;
    });
    if (!status.ok()) {
      std::cerr << "stub: " << status.error().message << "\n";
      exit_code = 1;
      return;
    }
    exit_code = 0;
  });
}

}  // namespace stub::cli
