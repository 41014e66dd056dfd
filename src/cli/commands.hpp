#pragma once

// Each `stub` subcommand registers itself on the CLI11 app. A command's callback stores the
// process exit code in `exit_code`: 0 success, 1 error, 2 denied (HTTP 402).

#include <CLI/CLI.hpp>

namespace stub::cli {

void add_serve_command(CLI::App& app, int& exit_code);
void add_budget_commands(CLI::App& app, int& exit_code);
void add_key_commands(CLI::App& app, int& exit_code);
void add_approvals_commands(CLI::App& app, int& exit_code);
void add_money_commands(CLI::App& app, int& exit_code);
void add_ledger_commands(CLI::App& app, int& exit_code);
void add_verify_command(CLI::App& app, int& exit_code);
void add_demo_command(CLI::App& app, int& exit_code);
void add_bench_command(CLI::App& app, int& exit_code);
void add_query_command(CLI::App& app, int& exit_code);
void add_ask_command(CLI::App& app, int& exit_code);
void add_report_command(CLI::App& app, int& exit_code);
void add_export_command(CLI::App& app, int& exit_code);

}  // namespace stub::cli
