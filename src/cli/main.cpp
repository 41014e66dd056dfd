// The `stub` command: wiring only. Each subcommand lives in its own file.

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("stub"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ %v", spdlog::pattern_time_type::utc);

  CLI::App app{
      "Stub: the general ledger for AI-agent spend.\n"
      "One strongly consistent, double-entry budget between your agents and the money."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "stub 0.1.0");
  int exit_code = 0;
  stub::cli::add_serve_command(app, exit_code);
  stub::cli::add_demo_command(app, exit_code);
  stub::cli::add_budget_commands(app, exit_code);
  stub::cli::add_key_commands(app, exit_code);
  stub::cli::add_approvals_commands(app, exit_code);
  stub::cli::add_money_commands(app, exit_code);
  stub::cli::add_ledger_commands(app, exit_code);
  stub::cli::add_verify_command(app, exit_code);
  stub::cli::add_bench_command(app, exit_code);
  stub::cli::add_query_command(app, exit_code);
  stub::cli::add_ask_command(app, exit_code);
  stub::cli::add_report_command(app, exit_code);
  stub::cli::add_export_command(app, exit_code);
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
