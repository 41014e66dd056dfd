#include <boost/json/serialize.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "cli/commands.hpp"
#include "http/credentials.hpp"
#include "http/service.hpp"
#include "loadgen/workload.hpp"

namespace stub::cli {

namespace {

struct BenchArgs {
  std::string db;
  std::vector<size_t> callers{1, 16, 256};
  double duration_seconds = 5;
  bool http = false;
  bool json = false;
  size_t io_threads = 1;
  std::string amount = "0.01";
};

struct BenchResult {
  std::string name, db, mode;
  size_t callers = 0;
  loadgen::RunStats stats;
  std::string overspend;
};

boost::json::object machine_info() {
  std::string model;
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.starts_with("model name")) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  int64_t memory_kb = 0;
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.starts_with("MemTotal:"))
      memory_kb = std::stoll(line.substr(9));
  }
  return {{"cpus", std::thread::hardware_concurrency()},
          {"cpu_model", model},
          {"memory_gib", static_cast<double>(memory_kb) / (1024.0 * 1024.0)},
          {"os", "linux"}};
}

std::string db_kind(const std::string& url) {
  return url.starts_with("postgres") ? "postgres" : "sqlite";
}

// One measured run plus the run-out phase on its own root.
Result<BenchResult> run_one(http::Service& service, const BenchArgs& args, const std::string& mode,
                            size_t callers) {
  loadgen::BenchTree tree;
  tree.root = "bench-" + mode + "-" + std::to_string(callers);
  const auto amount = *ledger::Money::parse(args.amount);
  const auto org_limit = ledger::Money::from_micros(ledger::Money::micros_max / 10'000);
  if (Status status = loadgen::create_tree(service.sequencer(), tree, org_limit); !status.ok()) {
    return status.error();
  }
  std::vector<std::string> tokens;
  if (mode == "http") {
    auto issued = loadgen::issue_agent_tokens(service.sequencer(), tree);
    if (!issued.ok())
      return issued.error();
    tokens = std::move(issued).value();
  }
  loadgen::DriveOptions options;
  options.callers = callers;
  options.amount = amount;
  options.duration = std::chrono::milliseconds(static_cast<int64_t>(args.duration_seconds * 1000));
  std::cerr << "bench: " << mode << " with " << callers << " callers for " << args.duration_seconds
            << " s..." << std::flush;
  BenchResult result;
  result.name = "stub-batched";
  result.db = db_kind(args.db);
  result.mode = mode;
  result.callers = callers;
  result.stats = mode == "http" ? loadgen::drive_http(service.port(), tokens, tree, options)
                                : loadgen::drive_in_process(service.sequencer(), tree, options);
  std::cerr << " " << static_cast<int64_t>(result.stats.spends_per_second()) << " spends/s; run-out"
            << std::flush;

  // Run-out: leave room for a few thousand spends and hammer until every caller is refused.
  const auto headroom = ledger::Money::from_micros(
      amount.micros() * static_cast<int64_t>(std::max<size_t>(2'000, callers * 8)));
  if (Status status =
          loadgen::set_org_headroom(service.sequencer(), service.store(), tree, headroom);
      !status.ok()) {
    return status.error();
  }
  options.duration = std::chrono::milliseconds(120'000);
  options.stop_after_refusals_per_caller = 3;
  const loadgen::RunStats run_out =
      mode == "http" ? loadgen::drive_http(service.port(), tokens, tree, options)
                     : loadgen::drive_in_process(service.sequencer(), tree, options);
  auto overspend =
      loadgen::measure_overspend(service.store(), tree.root, engine::system_clock_micros());
  if (!overspend.ok())
    return overspend.error();
  result.overspend = overspend->is_zero() ? "0" : overspend->to_string();
  std::cerr << " (" << run_out.committed << " committed, " << run_out.refused
            << " refused), overspend " << result.overspend << "\n";
  if (run_out.failed + result.stats.failed > 0) {
    std::cerr << "bench: " << (run_out.failed + result.stats.failed) << " requests failed\n";
  }
  return result;
}

}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand(
      "bench", "Measure durable spends/s on one hot org budget (org -> 4 teams -> 100 agents)");
  bench->add_option("--db", args->db, "Database URL (default: SQLite in a temp dir)");
  bench->add_option("--callers", args->callers, "Concurrent callers, e.g. 1,16,256")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_option("--duration", args->duration_seconds, "Seconds per measured run")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  bench->add_flag("--http", args->http, "Also measure over HTTP (load generator in-process)");
  bench->add_flag("--json", args->json, "Print one JSON document instead of a table");
  bench->add_option("--io-threads", args->io_threads, "HTTP server threads")->capture_default_str();
  bench->add_option("--amount", args->amount, "Amount per spend")->capture_default_str();
  bench->footer("Every run ends with a run-out phase that drains the budget; overspend must be 0.");
  bench->callback([args, &exit_code] {
    std::filesystem::path temp_dir;
    if (args->db.empty()) {
      temp_dir = std::filesystem::temp_directory_path() / ("stub-bench-" + http::random_hex(6));
      std::filesystem::create_directories(temp_dir);
      args->db = "sqlite:" + (temp_dir / "bench.db").string();
    }
    if (!ledger::Money::parse(args->amount) || !ledger::Money::parse(args->amount)->is_positive()) {
      std::cerr << "stub bench: --amount must be a positive decimal\n";
      return void(exit_code = 1);
    }
    http::ServiceOptions options;
    options.db = args->db;
    options.listen = args->http;
    options.server.port = 0;
    options.server.io_threads = args->io_threads;
    options.sequencer.queue_capacity = 1 << 20;
    auto service = http::Service::start(std::move(options));
    if (!service.ok()) {
      std::cerr << "stub bench: " << service.error().message << "\n";
      return void(exit_code = 1);
    }
    std::vector<BenchResult> results;
    std::vector<std::string> modes{"inprocess"};
    if (args->http)
      modes.push_back("http");
    for (const std::string& mode : modes) {
      for (size_t callers : args->callers) {
        auto result = run_one(**service, *args, mode, callers);
        if (!result.ok()) {
          std::cerr << "\nstub bench: " << result.error().message << "\n";
          return void(exit_code = 1);
        }
        results.push_back(std::move(result).value());
      }
    }
    (*service)->stop();
    if (!temp_dir.empty())
      std::filesystem::remove_all(temp_dir);

    bool overspent = false;
    for (const auto& result : results)
      overspent = overspent || result.overspend != "0";
    if (args->json) {
      boost::json::array rows;
      for (const auto& result : results) {
        rows.push_back({{"name", result.name},
                        {"db", result.db},
                        {"mode", result.mode},
                        {"callers", result.callers},
                        {"spends_per_sec", std::round(result.stats.spends_per_second())},
                        {"p50_ms", result.stats.p50_ms},
                        {"p99_ms", result.stats.p99_ms},
                        {"committed", result.stats.committed},
                        {"overspend", result.overspend}});
      }
      std::cout << boost::json::serialize(
                       boost::json::object{{"machine", machine_info()}, {"results", rows}})
                << "\n";
    } else {
      std::printf("%-14s %-9s %-10s %8s %14s %9s %9s %10s\n", "name", "db", "mode", "callers",
                  "spends/s", "p50 ms", "p99 ms", "overspend");
      for (const auto& result : results) {
        std::printf("%-14s %-9s %-10s %8zu %14.0f %9.3f %9.3f %10s\n", result.name.c_str(),
                    result.db.c_str(), result.mode.c_str(), result.callers,
                    result.stats.spends_per_second(), result.stats.p50_ms, result.stats.p99_ms,
                    result.overspend.c_str());
      }
    }
    exit_code = overspent ? 1 : 0;
  });
}

}  // namespace stub::cli
