// `stub report`: a chargeback report, spend of a period by team, customer, feature or vendor
// (any tag key works too: --by tag:KEY), as a table, CSV, or a self-contained HTML page.

#include <fstream>
#include <iostream>

#include "cli/answer_output.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

void add_report_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string by = "team";
    std::string period = "this month";
    std::string subtree, output;
    std::string format = "table";
  };
  auto args = std::make_shared<Args>();
  auto source = std::make_shared<AnswerSource>();
  CLI::App* command = app.add_subcommand("report", "Chargeback report: spend of a period by group");
  command->add_option("--by", args->by, "team, agent, customer, feature, vendor, category, tag:KEY")
      ->capture_default_str();
  command->add_option("--period", args->period, "2026-11, this month, last month, last 30d, ...")
      ->capture_default_str();
  command->add_option("--subtree", args->subtree, "The budget subtree (required for the admin)");
  command->add_option("--format", args->format, "table, csv or html")
      ->check(CLI::IsMember({"table", "csv", "html", "json"}))
      ->capture_default_str();
  command->add_option("--output,-o", args->output, "Write to this file instead of stdout");
  add_answer_source_options(*command, *source);
  command->callback([args, source, &exit_code] {
    std::string group = args->by;
    // Tags chargeback usually keys on: customer, feature, user, session, run.
    if (group == "customer" || group == "feature" || group == "user" || group == "session" ||
        group == "run" || group == "project")
      group = "tag:" + group;
    boost::json::object filters;
    if (!args->subtree.empty())
      filters["subtree"] = args->subtree;
    const boost::json::object body{{"metric", "spend"},
                                   {"group_by", boost::json::array{group.c_str()}},
                                   {"filters", std::move(filters)},
                                   {"range", args->period},
                                   {"order", "value_desc"},
                                   {"limit", 1000}};
    auto answer = fetch_answer(*source, "/v1/query", body);
    if (!answer.ok()) {
      std::cerr << "stub report: " << answer.error().message << "\n";
      exit_code = 1;
      return;
    }
    std::ofstream file;
    if (!args->output.empty()) {
      file.open(args->output, std::ios::binary | std::ios::trunc);
      if (!file) {
        std::cerr << "stub report: cannot write " << args->output << "\n";
        exit_code = 1;
        return;
      }
    }
    std::ostream& out = args->output.empty() ? std::cout : file;
    if (args->format == "csv") {
      print_csv(*answer, out);
    } else if (args->format == "html") {
      out << answer_html(*answer, "Chargeback by " + args->by + ", " + args->period);
    } else if (args->format == "json") {
      out << pretty_json(*answer) << "\n";
    } else {
      out << "Chargeback by " << args->by << ", " << args->period << "\n";
      print_table(*answer, out);
    }
    exit_code = out.good() ? 0 : 1;
  });
}

}  // namespace stub::cli
