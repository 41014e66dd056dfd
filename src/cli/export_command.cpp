// `stub export`: the money a subtree settled in a period as CSV, an hledger journal or a
// beancount file (docs/export.md). Streamed from a server (GET /v1/export) or offline from a
// database file (--db), with progress on stderr.

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <chrono>
#include <fstream>
#include <iostream>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"
#include "export/journal_export.hpp"
#include "query/query.hpp"
#include "store/store.hpp"

namespace stub::cli {

namespace {

ledger::Micros wall_clock() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string encoded(const std::string& text) {
  return boost::urls::encode(text, boost::urls::unreserved_chars);
}

}  // namespace

void add_export_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string format = "csv";
    std::string subtree, period, from, to, output, db;
    bool quiet = false;
  };
  auto args = std::make_shared<Args>();
  auto client = std::make_shared<ClientSettings>();
  CLI::App* command = app.add_subcommand(
      "export", "Export settled money as csv, an hledger journal or a beancount file");
  command->add_option("--format", args->format, "csv, hledger or beancount")
      ->check(CLI::IsMember({"csv", "hledger", "beancount"}))
      ->capture_default_str();
  command->add_option("--subtree,--root", args->subtree, "The budget subtree to export")
      ->required();
  command->add_option("--period", args->period,
                      "2026-11, last month, this year, ... (or --from/--to)");
  command->add_option("--from", args->from, "RFC 3339 start (inclusive)");
  command->add_option("--to", args->to, "RFC 3339 end (exclusive)");
  command->add_option("--output,-o", args->output, "Write to this file instead of stdout");
  command->add_option("--db", args->db, "Export offline from this database file (read-only)");
  command->add_flag("--quiet,-q", args->quiet, "No progress on stderr");
  add_client_options(*command, *client);
  command->callback([args, client, &exit_code] {
    std::ofstream file;
    if (!args->output.empty()) {
      file.open(args->output, std::ios::binary | std::ios::trunc);
      if (!file) {
        std::cerr << "stub export: cannot write " << args->output << "\n";
        exit_code = 1;
        return;
      }
    }
    std::ostream& out = args->output.empty() ? std::cout : file;
    int64_t bytes = 0;
    auto write = [&out, &bytes](std::string_view chunk) {
      out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      bytes += static_cast<int64_t>(chunk.size());
      return out.good();
    };
    if (!args->db.empty()) {
      journal::ExportOptions options;
      options.format = *journal::parse_format(args->format);
      options.subtree = args->subtree;
      if (!args->period.empty()) {
        auto range = query::resolve_time_range(args->period, wall_clock());
        if (!range.ok()) {
          std::cerr << "stub export: " << range.error().message << "\n";
          exit_code = 1;
          return;
        }
        options.from = range->from;
        options.to = range->to;
      }
      if (!args->from.empty()) {
        auto at = query::parse_timestamp(args->from);
        if (!at) {
          std::cerr << "stub export: --from must be an RFC 3339 instant\n";
          exit_code = 1;
          return;
        }
        options.from = *at;
      }
      if (!args->to.empty()) {
        auto at = query::parse_timestamp(args->to);
        if (!at) {
          std::cerr << "stub export: --to must be an RFC 3339 instant\n";
          exit_code = 1;
          return;
        }
        options.to = *at;
      }
      store::StoreOptions store_options;
      store_options.read_only = true;
      store_options.read_connections = 1;
      auto opened = store::open_store(args->db, store_options);
      if (!opened.ok()) {
        std::cerr << "stub export: " << opened.error().message << "\n";
        exit_code = 1;
        return;
      }
      const bool quiet = args->quiet;
      auto summary =
          journal::export_journal(**opened, options, write, [quiet](int64_t seq, int64_t last) {
            if (!quiet)
              std::cerr << "\rexporting: seq " << seq << " of " << last << std::flush;
          });
      if (!quiet)
        std::cerr << "\n";
      if (!summary.ok()) {
        std::cerr << "stub export: " << summary.error().message << "\n";
        exit_code = 1;
        return;
      }
      if (!quiet) {
        std::cerr << "exported " << summary->transactions << " transactions ("
                  << ledger::Money::from_micros(summary->amount_micros).to_string() << " "
                  << summary->currency << ") from " << summary->entries_read << " entries\n";
      }
      out.flush();
      exit_code = out.good() ? 0 : 1;
      return;
    }
    auto http = make_client(*client);
    if (!http) {
      exit_code = 1;
      return;
    }
    std::string target =
        "/v1/export?format=" + encoded(args->format) + "&subtree=" + encoded(args->subtree);
    if (!args->period.empty())
      target += "&period=" + encoded(args->period);
    if (!args->from.empty())
      target += "&from=" + encoded(args->from);
    if (!args->to.empty())
      target += "&to=" + encoded(args->to);
    int status = 0;
    std::string error_body;
    int64_t reported = 0;
    const bool quiet = args->quiet;
    Status done = http->download(
        target,
        [&](std::string_view chunk) {
          const bool ok = write(chunk);
          if (!quiet && bytes - reported >= 1 << 20) {
            reported = bytes;
            std::cerr << "\rexporting: " << bytes / (1 << 20) << " MiB" << std::flush;
          }
          return ok;
        },
        status, error_body);
    if (!quiet && reported > 0)
      std::cerr << "\n";
    if (!done.ok()) {
      std::cerr << "stub export: " << done.error().message << "\n";
      exit_code = 1;
      return;
    }
    if (status != 200) {
      std::cerr << "stub export: HTTP " << status << " " << error_body << "\n";
      exit_code = 1;
      return;
    }
    out.flush();
    exit_code = out.good() ? 0 : 1;
  });
}

}  // namespace stub::cli
