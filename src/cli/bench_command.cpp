#include <algorithm>
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
#include "loadgen/baselines.hpp"
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
  std::vector<std::string> designs;  // empty: every design the database supports
};

// The design that runs through the real Store and sequencer; the others are loadgen baselines.
constexpr std::string_view stub_batched = "stub-batched";

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

// The designs to run, in the order given: by default the baselines then stub-batched on
// PostgreSQL, and stub-batched alone on SQLite (the baselines are written for PostgreSQL).
Result<std::vector<std::string>> chosen_designs(const BenchArgs& args) {
  const bool postgres = db_kind(args.db) == "postgres";
  if (args.designs.empty()) {
    if (!postgres)
      return std::vector<std::string>{std::string(stub_batched)};
    return std::vector<std::string>{"conditional-update", "occ-per-spend",
                                    std::string(stub_batched)};
  }
  for (const std::string& design : args.designs) {
    if (design == stub_batched)
      continue;
    if (!loadgen::parse_baseline_design(design)) {
      return Error::invalid("invalid_design", "Unknown design '" + design +
                                                  "'; choose from conditional-update, "
                                                  "occ-per-spend, stub-batched.");
    }
    if (!postgres) {
      return Error::invalid("invalid_design",
                            "The " + design + " baseline needs a postgres:// --db.");
    }
  }
  return args.designs;
}

bool runs_stub_batched(const std::vector<std::string>& designs) {
  return std::find(designs.begin(), designs.end(), stub_batched) != designs.end();
}

loadgen::DriveOptions measured_options(const BenchArgs& args, size_t callers) {
  loadgen::DriveOptions options;
  options.callers = callers;
  options.amount = *ledger::Money::parse(args.amount);
  options.duration = std::chrono::milliseconds(static_cast<int64_t>(args.duration_seconds * 1000));
  return options;
}

// The run-out phase leaves room for a few thousand spends and hammers until every caller has
// been refused three times in a row.
ledger::Money run_out_headroom(ledger::Money amount, size_t callers) {
  return ledger::Money::from_micros(amount.micros() *
                                    static_cast<int64_t>(std::max<size_t>(2'000, callers * 8)));
}

loadgen::DriveOptions run_out_options(loadgen::DriveOptions options) {
  options.duration = std::chrono::milliseconds(120'000);
  options.stop_after_refusals_per_caller = 3;
  return options;
}

std::string overspend_text(ledger::Money overspend) {
  return overspend.is_zero() ? "0" : overspend.to_string();
}

// One measured run of stub-batched plus the run-out phase on its own root.
Result<BenchResult> run_stub_batched(http::Service& service, const BenchArgs& args,
                                     const std::string& mode, size_t callers) {
  loadgen::BenchTree tree;
  tree.root = "bench-" + mode + "-" + std::to_string(callers);
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
  loadgen::DriveOptions options = measured_options(args, callers);
  std::cerr << "bench: " << mode << " with " << callers << " callers for " << args.duration_seconds
            << " s..." << std::flush;
  BenchResult result;
  result.name = std::string(stub_batched);
  result.db = db_kind(args.db);
  result.mode = mode;
  result.callers = callers;
  result.stats = mode == "http" ? loadgen::drive_http(service.port(), tokens, tree, options)
                                : loadgen::drive_in_process(service.sequencer(), tree, options);
  std::cerr << " " << static_cast<int64_t>(result.stats.spends_per_second()) << " spends/s; run-out"
            << std::flush;

  const auto headroom = run_out_headroom(options.amount, callers);
  if (Status status =
          loadgen::set_org_headroom(service.sequencer(), service.store(), tree, headroom);
      !status.ok()) {
    return status.error();
  }
  options = run_out_options(options);
  const loadgen::RunStats run_out =
      mode == "http" ? loadgen::drive_http(service.port(), tokens, tree, options)
                     : loadgen::drive_in_process(service.sequencer(), tree, options);
  auto overspend =
      loadgen::measure_overspend(service.store(), tree.root, engine::system_clock_micros());
  if (!overspend.ok())
    return overspend.error();
  result.overspend = overspend_text(*overspend);
  std::cerr << " (" << run_out.committed << " committed, " << run_out.refused
            << " refused), overspend " << result.overspend << "\n";
  if (run_out.failed + result.stats.failed > 0) {
    std::cerr << "bench: " << (run_out.failed + result.stats.failed) << " requests failed\n";
  }
  return result;
}

// Retries and fairness of the measured phase, which the result table does not show.
void report_baseline_details(const loadgen::BaselineStats& measured,
                             const loadgen::BaselineStats& run_out) {
  std::cerr << "bench: retried " << measured.retries << " of " << measured.attempts
            << " attempts while measured (retry ratio " << measured.retry_ratio() << "), "
            << run_out.retries << " of " << run_out.attempts << " in the run-out; callers "
            << "committed " << measured.caller_committed_min << " to "
            << measured.caller_committed_max << " spends each, slowest spend " << measured.max_ms
            << " ms\n";
  for (const std::string& failure : {measured.first_failure, run_out.first_failure}) {
    if (!failure.empty())
      std::cerr << "bench: a caller stopped: " << failure << "\n";
  }
}

// The run-out phase of a baseline: room for a few thousand more spends, then every caller
// spends until it has been refused three times in a row.
Result<loadgen::BaselineStats> run_out_baseline(const BenchArgs& args,
                                                loadgen::BaselineDesign design,
                                                const loadgen::BenchTree& tree,
                                                const loadgen::DriveOptions& measured) {
  const auto headroom = run_out_headroom(measured.amount, measured.callers);
  if (Status status = loadgen::set_baseline_org_headroom(args.db, tree, headroom); !status.ok())
    return status.error();
  return loadgen::drive_baseline(args.db, design, tree, run_out_options(measured));
}

// One measured run of a PostgreSQL baseline plus its run-out phase, on freshly reset tables.
Result<BenchResult> run_baseline(const BenchArgs& args, loadgen::BaselineDesign design,
                                 size_t callers) {
  const std::string name(loadgen::baseline_design_name(design));
  loadgen::BenchTree tree;
  tree.root = "bench-" + name + "-" + std::to_string(callers);
  const auto org_limit = ledger::Money::from_micros(ledger::Money::micros_max / 10'000);
  if (Status status = loadgen::reset_baseline_tree(args.db, tree, org_limit); !status.ok())
    return status.error();
  loadgen::DriveOptions options = measured_options(args, callers);
  std::cerr << "bench: " << name << " with " << callers << " callers for " << args.duration_seconds
            << " s..." << std::flush;
  auto measured = loadgen::drive_baseline(args.db, design, tree, options);
  if (!measured.ok())
    return measured.error();
  std::cerr << " " << static_cast<int64_t>(measured->run.spends_per_second())
            << " spends/s; run-out" << std::flush;

  auto run_out = run_out_baseline(args, design, tree, options);
  if (!run_out.ok())
    return run_out.error();
  auto overspend = loadgen::measure_baseline_overspend(args.db, tree);
  if (!overspend.ok())
    return overspend.error();
  BenchResult result;
  result.name = name;
  result.db = "postgres";
  result.mode = "inprocess";
  result.callers = callers;
  result.stats = measured->run;
  result.overspend = overspend_text(*overspend);
  std::cerr << " (" << run_out->run.committed << " committed, " << run_out->run.refused
            << " refused), overspend " << result.overspend << "\n";
  if (run_out->run.failed + measured->run.failed > 0) {
    std::cerr << "bench: " << (run_out->run.failed + measured->run.failed) << " spends failed\n";
  }
  report_baseline_details(*measured, *run_out);
  return result;
}

void print_json(const std::vector<BenchResult>& results) {
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
}

void print_table(const std::vector<BenchResult>& results) {
  std::printf("%-18s %-9s %-10s %8s %14s %9s %9s %10s\n", "name", "db", "mode", "callers",
              "spends/s", "p50 ms", "p99 ms", "overspend");
  for (const auto& result : results) {
    std::printf("%-18s %-9s %-10s %8zu %14.0f %9.3f %9.3f %10s\n", result.name.c_str(),
                result.db.c_str(), result.mode.c_str(), result.callers,
                result.stats.spends_per_second(), result.stats.p50_ms, result.stats.p99_ms,
                result.overspend.c_str());
  }
}

Result<std::unique_ptr<http::Service>> start_service(const BenchArgs& args);

// On PostgreSQL each run of stub-batched gets tables of its own, as each baseline run does
// (TRUNCATE): a fresh schema, its own service on it, the schema dropped after. Otherwise the
// last runs would pay for every earlier run's rows and the baselines would not.
Result<BenchResult> run_stub_batched_on_fresh_tables(const BenchArgs& args, const std::string& mode,
                                                     size_t callers) {
  const std::string schema = "stub_bench_" + http::random_hex(6);
  if (Status status = loadgen::create_schema(args.db, schema); !status.ok())
    return status.error();
  BenchArgs run_args = args;
  run_args.db = loadgen::url_with_schema(args.db, schema);
  Result<BenchResult> result = Error{ErrorCode::internal, "bench_not_run", "Not run."};
  {
    auto service = start_service(run_args);
    if (!service.ok()) {
      result = service.error();
    } else {
      result = run_stub_batched(**service, run_args, mode, callers);
      (*service)->stop();
    }
  }
  if (Status dropped = loadgen::drop_schema(args.db, schema); !dropped.ok() && result.ok())
    return dropped.error();
  return result;
}

// Every measured run on PostgreSQL, whatever the design, starts right after a CHECKPOINT: the
// dirty pages of the run before are flushed then rather than during it (a heavy run's pages
// would otherwise be written while the next design is measured). Without the right to, the
// bench says so once and measures anyway.
void start_from_a_checkpoint(const std::string& db) {
  static bool warned = false;
  if (Status status = loadgen::checkpoint(db); !status.ok() && !warned) {
    warned = true;
    std::cerr << "bench: no CHECKPOINT before each run (" << status.error().message
              << "); runs may pay for earlier runs' writes\n";
  }
}

// Every design for every caller count, in the order asked; the baselines run in-process only.
Result<std::vector<BenchResult>> run_designs(http::Service* service, const BenchArgs& args,
                                             const std::vector<std::string>& designs) {
  std::vector<std::string> modes{"inprocess"};
  if (args.http)
    modes.push_back("http");
  std::vector<BenchResult> results;
  for (const std::string& mode : modes) {
    for (size_t callers : args.callers) {
      for (const std::string& design : designs) {
        const auto baseline = loadgen::parse_baseline_design(design);
        if (baseline && mode != "inprocess")
          continue;
        if (db_kind(args.db) == "postgres")
          start_from_a_checkpoint(args.db);
        auto result = baseline ? run_baseline(args, *baseline, callers)
                      : db_kind(args.db) == "postgres"
                          ? run_stub_batched_on_fresh_tables(args, mode, callers)
                          : run_stub_batched(*service, args, mode, callers);
        if (!result.ok())
          return result.error();
        results.push_back(std::move(result).value());
      }
    }
  }
  return results;
}

Result<std::unique_ptr<http::Service>> start_service(const BenchArgs& args) {
  http::ServiceOptions options;
  options.db = args.db;
  options.listen = args.http;
  options.server.port = 0;
  options.server.io_threads = args.io_threads;
  options.sequencer.queue_capacity = 1 << 20;
  return http::Service::start(std::move(options));
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
  bench
      ->add_option("--designs", args->designs,
                   "Designs to run, e.g. conditional-update,occ-per-spend,stub-batched (default: "
                   "all three on PostgreSQL, stub-batched on SQLite)")
      ->delimiter(',');
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
    auto designs = chosen_designs(*args);
    if (!designs.ok()) {
      std::cerr << "stub bench: " << designs.error().message << "\n";
      return void(exit_code = 1);
    }
    std::unique_ptr<http::Service> service;
    if (runs_stub_batched(*designs)) {
      auto started = start_service(*args);
      if (!started.ok()) {
        std::cerr << "stub bench: " << started.error().message << "\n";
        if (db_kind(args->db) == "postgres") {
          std::cerr << "stub bench: to run only the PostgreSQL baselines, pass --designs "
                       "conditional-update,occ-per-spend\n";
        }
        return void(exit_code = 1);
      }
      service = std::move(started).value();
    }
    auto results = run_designs(service.get(), *args, *designs);
    if (service)
      service->stop();
    if (!temp_dir.empty())
      std::filesystem::remove_all(temp_dir);
    if (!results.ok()) {
      std::cerr << "\nstub bench: " << results.error().message << "\n";
      return void(exit_code = 1);
    }
    bool overspent = false;
    for (const auto& result : *results)
      overspent = overspent || result.overspend != "0";
    if (args->json)
      print_json(*results);
    else
      print_table(*results);
    exit_code = overspent ? 1 : 0;
  });
}

}  // namespace stub::cli
