// `stub ask "..."`: a plain-English question over the ledger. The answer shows the constrained
// query it became, so the user sees what was asked of the ledger.

#include <boost/json/serialize.hpp>
#include <iostream>

#include "cli/answer_output.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

void add_ask_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string question, subtree;
    std::string format = "table";
  };
  auto args = std::make_shared<Args>();
  auto source = std::make_shared<AnswerSource>();
  CLI::App* command =
      app.add_subcommand("ask", "Ask the ledger a question in plain English (POST /v1/ask)");
  command->add_option("question", args->question, "The question, e.g. \"top 5 vendors this month\"")
      ->required();
  command->add_option("--subtree", args->subtree, "The budget subtree asked about");
  command->add_option("--format", args->format, "table, csv or json")
      ->check(CLI::IsMember({"table", "csv", "json"}))
      ->capture_default_str();
  command->footer(
      "Exit status: 0 answered, 4 cannot answer (what was understood is printed), "
      "1 error.");
  add_answer_source_options(*command, *source);
  command->callback([args, source, &exit_code] {
    boost::json::object body{{"question", args->question}};
    if (!args->subtree.empty())
      body["subtree"] = args->subtree;
    auto answer = fetch_answer(*source, "/v1/ask", body);
    if (!answer.ok()) {
      std::cerr << "stub ask: " << answer.error().message << "\n";
      exit_code = 1;
      return;
    }
    print_answer(*answer, args->format);
    if (args->format == "table") {
      if (const auto* query = answer->if_contains("query"); query && !query->is_null())
        std::cout << "query: " << boost::json::serialize(*query) << "\n";
    }
    const auto* answered = answer->if_contains("answered");
    exit_code = answered && answered->is_bool() && answered->get_bool() ? 0 : 4;
  });
}

}  // namespace stub::cli
