#include <algorithm>
#include <boost/json/serialize.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "http/credentials.hpp"
#include "http/service.hpp"
#include "ledger/time_point.hpp"
#include "loadgen/baselines.hpp"
#include "loadgen/fleet.hpp"
#include "loadgen/serve_process.hpp"
#include "loadgen/soak.hpp"
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
  bool callers_given = false;

  // --soak: a mixed workload through a `stub serve` started here or at --server.
  std::string soak;  // a duration; empty: no soak
  std::string soak_warmup;
  std::string sample_interval = "5s";
  std::string retention = "30s";
  std::string server;
  int server_pid = -1;
  size_t subscribers = 4;
  double rss_growth_max_mib = 32;
  int64_t fd_growth_max = 16;
  std::string json_file;

  // --instances / --roots: HTTP spends through N `stub serve` processes on one database.
  std::vector<size_t> instances;
  std::vector<size_t> roots{1};
  bool store_events = false;
  // "on": instances forward a contended root's writes to its leader; "off": `--no-forward`.
  std::vector<std::string> forwarding{"on"};
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

// ---- the soak ---------------------------------------------------------------------------

std::optional<std::chrono::seconds> seconds_of(const std::string& text) {
  const auto micros = ledger::parse_duration(text);
  if (!micros || *micros < ledger::micros_per_second)
    return std::nullopt;
  return std::chrono::seconds(*micros / ledger::micros_per_second);
}

boost::json::object soak_json(const loadgen::SoakOptions& options,
                              const loadgen::SoakReport& report, const std::string& db,
                              const std::string& retention) {
  boost::json::array samples;
  for (const auto& sample : report.samples) {
    samples.push_back({{"seconds", std::round(sample.seconds * 10) / 10},
                       {"rss_kib", sample.rss_kib},
                       {"fds", sample.fds},
                       {"queue_depth", sample.queue_depth},
                       {"requests", sample.requests},
                       {"requests_per_sec", std::round(sample.requests_per_second)},
                       {"p50_ms", sample.p50_ms},
                       {"p99_ms", sample.p99_ms},
                       {"failures", sample.failures},
                       {"events", sample.events}});
  }
  boost::json::array violations;
  for (const auto& violation : report.violations)
    violations.push_back(boost::json::string(violation));
  const auto& warm =
      report.samples.empty() ? loadgen::SoakSample{} : report.samples[report.warm_index];
  const auto& last = report.samples.empty() ? loadgen::SoakSample{} : report.samples.back();
  return {{"machine", machine_info()},
          {"db", db},
          {"duration_seconds", options.duration.count()},
          {"warmup_seconds", options.warmup.count()},
          {"idempotency_retention", retention},
          {"callers", options.callers},
          {"subscribers", options.subscribers},
          {"passed", report.passed()},
          {"violations", violations},
          {"rss_start_kib", report.samples.empty() ? -1 : report.samples.front().rss_kib},
          {"rss_warm_kib", warm.rss_kib},
          {"rss_end_kib", last.rss_kib},
          {"rss_max_after_warmup_kib", report.rss_max_kib},
          {"rss_growth_max_kib", options.rss_growth_max_kib},
          {"fds_warm", warm.fds},
          {"fds_end", last.fds},
          {"totals",
           {{"requests", report.requests},
            {"failures", report.failures},
            {"spends", report.spends},
            {"retries", report.retries},
            {"holds", report.holds},
            {"captures", report.captures},
            {"voids", report.voids},
            {"expiring_holds", report.expiring_holds},
            {"reads", report.reads},
            {"events", report.events},
            {"subscriptions", report.subscriptions}}},
          {"samples", samples}};
}

int run_soak_command(BenchArgs& args) {
  if (args.callers_given && args.callers.size() != 1) {
    std::cerr << "stub bench: --soak takes one --callers count\n";
    return 1;
  }
  if (args.rss_growth_max_mib <= 0 || args.fd_growth_max < 0) {
    std::cerr << "stub bench: --rss-growth-max-mib must be above 0, --fd-growth-max at least 0\n";
    return 1;
  }
  const auto duration = seconds_of(args.soak);
  if (!duration) {
    std::cerr << "stub bench: --soak must be a duration of at least 1s, such as 30m or 120s\n";
    return 1;
  }
  const auto interval = seconds_of(args.sample_interval);
  if (!interval || *interval > *duration) {
    std::cerr << "stub bench: --sample-interval must be a duration from 1s to the soak's\n";
    return 1;
  }
  const auto retention = seconds_of(args.retention);
  if (!retention || retention->count() < 5) {
    std::cerr << "stub bench: --idempotency-retention must be a duration of at least 5s\n";
    return 1;
  }
  // By default the warm-up lasts twice the retention (the first records are pruned once it has
  // passed; by twice it the table is at its steady size) and at least a third of the soak.
  std::chrono::seconds warmup = std::max(*retention * 2, *duration / 3);
  if (!args.soak_warmup.empty()) {
    const auto given = seconds_of(args.soak_warmup);
    if (!given) {
      std::cerr << "stub bench: --soak-warmup must be a duration of at least 1s\n";
      return 1;
    }
    warmup = *given;
  }
  if (warmup + *interval > *duration) {
    std::cerr << "stub bench: the soak (" << duration->count() << " s) must outlast its warm-up ("
              << warmup.count() << " s) by a sample interval at least\n";
    return 1;
  }

  loadgen::SoakOptions options;
  options.duration = *duration;
  options.warmup = warmup;
  options.sample_interval = *interval;
  options.callers = args.callers_given ? args.callers.front() : 8;
  options.subscribers = args.subscribers;
  options.rss_growth_max_kib = static_cast<int64_t>(args.rss_growth_max_mib * 1024);
  options.fd_growth_max = args.fd_growth_max;

  std::filesystem::path temp_dir =
      std::filesystem::temp_directory_path() / ("stub-soak-" + http::random_hex(6));
  std::filesystem::create_directories(temp_dir);
  std::unique_ptr<loadgen::ServeProcess> server;
  std::string db = args.db;
  if (!args.server.empty()) {
    auto endpoint = loadgen::parse_server_url(args.server);
    const char* token = std::getenv("STUB_ADMIN_TOKEN");
    if (!endpoint.ok() || token == nullptr || *token == '\0') {
      std::cerr << "stub bench: --server needs a URL such as http://127.0.0.1:8402 and the "
                   "server's admin token in STUB_ADMIN_TOKEN\n";
      std::filesystem::remove_all(temp_dir);
      return 1;
    }
    options.endpoint = *endpoint;
    options.admin_token = token;
    options.server_pid = args.server_pid;
    db = "(a running server)";
  } else {
    if (db.empty())
      db = "sqlite:" + (temp_dir / "soak.db").string();
    options.admin_token = "soak-admin-" + http::random_hex(16);
    auto started = loadgen::ServeProcess::start(
        db, options.admin_token,
        {"--idempotency-retention", args.retention, "--unsafe-short-retention", "--io-threads",
         std::to_string(args.io_threads)},
        temp_dir / "serve.log");
    if (!started.ok()) {
      std::cerr << "stub bench: " << started.error().message << "\n";
      return 1;
    }
    server = std::move(started).value();
    options.endpoint = loadgen::Endpoint{"127.0.0.1", std::to_string(server->port())};
    options.server_pid = server->pid();
    std::cerr << "soak: started stub serve (pid " << server->pid() << ", port " << server->port()
              << ", idempotency retention " << args.retention << "), log "
              << server->log_file().string() << "\n";
  }

  // With --json the table and summary go to stderr and stdout is the document alone.
  std::ostream& out = args.json ? std::cerr : std::cout;
  auto report = loadgen::run_soak(options, out);
  int status = 0;
  if (!report.ok()) {
    std::cerr << "stub bench: " << report.error().message << "\n";
    status = 1;
  } else {
    if (server && !server->running())
      report->violations.push_back("the server exited during the soak; see its log");
    const auto document =
        soak_json(options, *report, store::redact_database_url(db), args.retention);
    if (!args.json_file.empty()) {
      std::ofstream out(args.json_file);
      out << boost::json::serialize(document) << "\n";
      if (!out) {
        std::cerr << "stub bench: cannot write " << args.json_file << "\n";
        status = 1;
      }
    }
    if (args.json)
      std::cout << boost::json::serialize(document) << "\n";
    out << "soak: " << report->requests << " requests (" << report->spends << " spends, "
        << report->retries << " retried, " << report->holds << " holds: " << report->captures
        << " captured, " << report->voids << " voided, " << report->expiring_holds
        << " left to expire; " << report->reads << " reads), " << report->events
        << " SSE events over " << report->subscriptions << " subscriptions, " << report->failures
        << " failures\n";
    if (!report->samples.empty() && report->samples.front().rss_kib >= 0) {
      const auto& warm = report->samples[report->warm_index];
      out << "soak: RSS " << report->samples.front().rss_kib / 1024 << " MiB at the first "
          << "sample, " << warm.rss_kib / 1024 << " MiB after the warm-up ("
          << static_cast<int64_t>(warm.seconds) << " s), " << report->samples.back().rss_kib / 1024
          << " MiB at the end (growth " << report->rss_growth_kib / 1024 << " MiB, bound "
          << options.rss_growth_max_kib / 1024 << "); fds " << warm.fds << " -> "
          << report->samples.back().fds << "\n";
    }
    for (const auto& violation : report->violations)
      out << "soak: FAILED: " << violation << "\n";
    if (report->passed())
      out << "soak: passed\n";
    else
      status = 1;
  }
  if (server) {
    const int exit_status = server->stop();
    if (exit_status != 0 && status == 0) {
      std::cerr << "stub bench: stub serve exited with status " << exit_status << "; see "
                << server->log_file().string() << "\n";
      status = 1;
    }
  }
  if (status == 0)
    std::filesystem::remove_all(temp_dir);
  else
    std::cerr << "stub bench: kept " << temp_dir.string() << " (server log, database)\n";
  return status;
}

// ---- instances and roots ----------------------------------------------------------------

struct FleetResult {
  size_t instances = 0, roots = 0, callers = 0;
  bool forward = true;
  loadgen::RunStats stats;
  std::string overspend;
};

// What each instance's store did to commit (conflict retries, speculation missed, ...) and its
// batches, from /metrics: where a multi-instance figure goes.
void report_store_events(const std::vector<uint16_t>& ports) {
  for (size_t i = 0; i < ports.size(); ++i) {
    loadgen::HttpClient client(loadgen::Endpoint{"127.0.0.1", std::to_string(ports[i])}, "");
    auto metrics = client.request("GET", "/metrics");
    if (!metrics.ok() || metrics->status != 200)
      continue;
    std::cerr << "\n  instance " << i << ":";
    std::istringstream lines(metrics->body);
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("stub_store_events_total{") || line.starts_with("stub_batches_total{") ||
          line.starts_with("stub_batch_commands_sum") ||
          line.starts_with("stub_commit_seconds_sum") ||
          line.starts_with("stub_forwarded_requests_total") ||
          line.starts_with("stub_forward_fallbacks_total{") ||
          line.starts_with("stub_root_leaderships_acquired_total"))
        std::cerr << " " << line.substr(5) << ";";
    }
  }
  std::cerr << "\n";
}

// One run: a fresh schema, N `stub serve` processes on it, the tree created through the
// first, the measured phase and the run-out through all of them.
Result<FleetResult> run_fleet(const BenchArgs& args, size_t instances, size_t roots, size_t callers,
                              bool forward, const std::filesystem::path& temp_dir) {
  const bool postgres = db_kind(args.db) == "postgres";
  std::string schema;
  std::string db = args.db;
  if (postgres) {
    schema = "stub_bench_" + http::random_hex(6);
    if (Status status = loadgen::create_schema(args.db, schema); !status.ok())
      return status.error();
    db = loadgen::url_with_schema(args.db, schema);
    start_from_a_checkpoint(args.db);
  } else {
    db = "sqlite:" + (temp_dir / ("fleet-" + http::random_hex(4) + ".db")).string();
  }
  Result<FleetResult> result = Error{ErrorCode::internal, "bench_not_run", "Not run."};
  {
    const std::string admin_token = "bench-admin-" + http::random_hex(16);
    std::vector<std::unique_ptr<loadgen::ServeProcess>> servers;
    std::vector<uint16_t> ports;
    // The first creates the schema; the others start once it is there.
    std::vector<std::string> serve_args{"--io-threads", std::to_string(args.io_threads)};
    if (!forward)
      serve_args.emplace_back("--no-forward");
    for (size_t i = 0; i < instances; ++i) {
      auto server = loadgen::ServeProcess::start(
          db, admin_token, serve_args,
          temp_dir / ("serve-" + std::to_string(instances) + "-" + std::to_string(i) + ".log"));
      if (!server.ok()) {
        result = server.error();
        break;
      }
      ports.push_back((*server)->port());
      servers.push_back(std::move(server).value());
    }
    if (servers.size() == instances) {
      const loadgen::Endpoint first{"127.0.0.1", std::to_string(ports.front())};
      const auto tree = loadgen::fleet_tree("fleet", roots);
      const auto root_limit = ledger::Money::from_micros(ledger::Money::micros_max / 100'000);
      std::cerr << "bench: " << instances << " instance(s), " << roots << " root(s), forwarding "
                << (forward ? "on" : "off") << ": creating " << tree.agent_count() << " agents..."
                << std::flush;
      auto tokens = loadgen::create_fleet(first, admin_token, tree, root_limit);
      if (!tokens.ok()) {
        result = tokens.error();
      } else {
        loadgen::DriveOptions options = measured_options(args, callers);
        std::cerr << " " << callers << " callers for " << args.duration_seconds << " s..."
                  << std::flush;
        FleetResult fleet;
        fleet.instances = instances;
        fleet.forward = forward;
        fleet.roots = roots;
        fleet.callers = callers;
        fleet.stats = loadgen::drive_fleet(ports, *tokens, tree, options);
        std::cerr << " " << static_cast<int64_t>(fleet.stats.spends_per_second())
                  << " spends/s; run-out" << std::flush;
        if (args.store_events)
          report_store_events(ports);
        // The run-out: a little room on every root, then spend until refused.
        const auto headroom = ledger::Money::from_micros(
            options.amount.micros() *
            static_cast<int64_t>(std::max<size_t>(roots == 1 ? 2'000 : 20, callers / roots * 8)));
        Status status = loadgen::set_fleet_headroom(first, admin_token, tree, headroom);
        loadgen::RunStats run_out;
        if (status.ok())
          run_out = loadgen::drive_fleet(ports, *tokens, tree, run_out_options(options));
        auto overspend = status.ok() ? loadgen::fleet_overspend(first, admin_token, tree)
                                     : Result<ledger::Money>(status.error());
        if (!overspend.ok()) {
          result = overspend.error();
        } else {
          fleet.overspend = overspend_text(*overspend);
          std::cerr << " (" << run_out.committed << " committed, " << run_out.refused
                    << " refused), overspend " << fleet.overspend << "\n";
          if (fleet.stats.failed + run_out.failed > 0)
            std::cerr << "bench: " << (fleet.stats.failed + run_out.failed) << " requests failed\n";
          result = fleet;
        }
      }
    }
    for (auto& server : servers)
      server->stop();
  }
  if (postgres) {
    if (Status dropped = loadgen::drop_schema(args.db, schema); !dropped.ok() && result.ok())
      return dropped.error();
  }
  return result;
}

int run_fleet_command(BenchArgs& args) {
  const bool postgres = db_kind(args.db) == "postgres";
  for (size_t instances : args.instances) {
    if (instances < 1 || instances > 16) {
      std::cerr << "stub bench: --instances must be from 1 to 16\n";
      return 1;
    }
    if (instances > 1 && !postgres) {
      std::cerr << "stub bench: --instances above 1 needs a postgres:// --db (instances share "
                   "one PostgreSQL; SQLite has one writer)\n";
      return 1;
    }
  }
  for (size_t roots : args.roots) {
    if (roots < 1 || roots > 100'000) {
      std::cerr << "stub bench: --roots must be from 1 to 100000\n";
      return 1;
    }
  }
  if (!args.designs.empty()) {
    std::cerr << "stub bench: --instances measures stub serve over HTTP; --designs does not "
                 "apply\n";
    return 1;
  }
  for (const std::string& mode : args.forwarding) {
    if (mode != "on" && mode != "off") {
      std::cerr << "stub bench: --forwarding takes on, off or both (on,off)\n";
      return 1;
    }
  }
  const std::filesystem::path temp_dir =
      std::filesystem::temp_directory_path() / ("stub-bench-" + http::random_hex(6));
  std::filesystem::create_directories(temp_dir);
  std::vector<FleetResult> results;
  for (size_t callers : args.callers) {
    for (size_t roots : args.roots) {
      for (size_t instances : args.instances) {
        // Side by side: each mode on the same roots, callers and instances in turn.
        for (const std::string& mode : args.forwarding) {
          auto result = run_fleet(args, instances, roots, callers, mode == "on", temp_dir);
          if (!result.ok()) {
            std::cerr << "\nstub bench: " << result.error().message << " (logs in "
                      << temp_dir.string() << ")\n";
            return 1;
          }
          results.push_back(std::move(result).value());
        }
      }
    }
  }
  std::filesystem::remove_all(temp_dir);
  bool overspent = false;
  bool failed = false;
  for (const auto& result : results) {
    overspent = overspent || result.overspend != "0";
    failed = failed || result.stats.failed > 0;
  }
  if (args.json) {
    boost::json::array rows;
    for (const auto& result : results) {
      // Each row against the one-instance run of the same roots and callers.
      double single = 0;
      for (const auto& other : results) {
        if (other.instances == 1 && other.roots == result.roots &&
            other.callers == result.callers && other.forward == result.forward)
          single = other.stats.spends_per_second();
      }
      rows.push_back(
          {{"name", "stub-serve"},
           {"db", db_kind(args.db)},
           {"mode", "http"},
           {"instances", result.instances},
           {"forwarding", result.forward ? "on" : "off"},
           {"roots", result.roots},
           {"callers", result.callers},
           {"spends_per_sec", std::round(result.stats.spends_per_second())},
           {"vs_one_instance",
            single > 0 ? std::round(result.stats.spends_per_second() / single * 100) / 100 : 0.0},
           {"p50_ms", result.stats.p50_ms},
           {"p99_ms", result.stats.p99_ms},
           {"committed", result.stats.committed},
           {"failed", result.stats.failed},
           {"overspend", result.overspend}});
    }
    std::cout << boost::json::serialize(
                     boost::json::object{{"machine", machine_info()}, {"results", rows}})
              << "\n";
  } else {
    std::printf("%-9s %9s %7s %6s %8s %12s %8s %9s %9s %8s %10s\n", "db", "instances", "forward",
                "roots", "callers", "spends/s", "vs 1", "p50 ms", "p99 ms", "failed", "overspend");
    for (const auto& result : results) {
      double single = 0;
      for (const auto& other : results) {
        if (other.instances == 1 && other.roots == result.roots &&
            other.callers == result.callers && other.forward == result.forward)
          single = other.stats.spends_per_second();
      }
      std::printf("%-9s %9zu %7s %6zu %8zu %12.0f %8.2f %9.3f %9.3f %8llu %10s\n",
                  db_kind(args.db).c_str(), result.instances, result.forward ? "on" : "off",
                  result.roots, result.callers, result.stats.spends_per_second(),
                  single > 0 ? result.stats.spends_per_second() / single : 0.0, result.stats.p50_ms,
                  result.stats.p99_ms, static_cast<unsigned long long>(result.stats.failed),
                  result.overspend.c_str());
    }
  }
  return overspent || failed ? 1 : 0;
}
}  // namespace

void add_bench_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand(
      "bench", "Measure durable spends/s on one hot org budget (org -> 4 teams -> 100 agents)");
  bench->add_option("--db", args->db, "Database URL (default: SQLite in a temp dir)");
  CLI::Option* callers =
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
  bench->add_option("--soak", args->soak,
                    "Run a soak for this long (e.g. 30m): mixed spends, retries, holds, reads "
                    "and SSE subscribers through the HTTP API of a `stub serve` started here "
                    "(on --db) or at --server, sampling RSS, fds, queue depth and p99; fails "
                    "when memory or fds grow past the bounds after the warm-up");
  bench->add_option("--soak-warmup", args->soak_warmup,
                    "Soak time before the memory baseline (default: twice the idempotency "
                    "retention, at least a third of the soak)");
  bench->add_option("--sample-interval", args->sample_interval, "Soak sampling interval")
      ->capture_default_str();
  bench
      ->add_option("--idempotency-retention", args->retention,
                   "Idempotency retention of the server the soak starts (short, so that the "
                   "soak reaches its steady state)")
      ->capture_default_str();
  bench->add_option("--server", args->server,
                    "Soak a running server (http://HOST:PORT; admin token in STUB_ADMIN_TOKEN) "
                    "instead of starting one");
  bench->add_option("--server-pid", args->server_pid,
                    "With --server: its local pid, to sample RSS and fds from /proc");
  bench->add_option("--subscribers", args->subscribers, "Soak SSE subscribers")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  bench
      ->add_option("--rss-growth-max-mib", args->rss_growth_max_mib,
                   "Soak bound: RSS at the end may exceed RSS after the warm-up by this much")
      ->capture_default_str();
  bench
      ->add_option("--fd-growth-max", args->fd_growth_max,
                   "Soak bound: open fds at the end may exceed those after the warm-up by this")
      ->capture_default_str();
  bench->add_option("--json-file", args->json_file, "Soak: also write the JSON document here");
  bench
      ->add_option("--instances", args->instances,
                   "Measure spends over HTTP through N `stub serve` processes on one PostgreSQL "
                   "--db, callers spread across them, e.g. 1,2,3")
      ->delimiter(',');
  bench
      ->add_option("--roots", args->roots,
                   "With --instances: spread the load over this many roots (1: one hot root, "
                   "4 teams x 25 agents; more: one team and agent per root), e.g. 1,1000")
      ->delimiter(',')
      ->capture_default_str();
  bench
      ->add_option("--forwarding", args->forwarding,
                   "With --instances: on (instances forward a contended root's writes to its "
                   "leader), off (`stub serve --no-forward`), or on,off to measure both side by "
                   "side")
      ->delimiter(',')
      ->capture_default_str();
  bench->add_flag("--store-events", args->store_events,
                  "With --instances: print each instance's store events (conflict retries, "
                  "speculation missed) and batch totals from /metrics after the measured phase");
  bench->footer(
      "Every run ends with a run-out phase that drains the budget; overspend must be 0.\n"
      "Soak: stub bench --soak 30m [--db URL] [--json-file soak.json]. Instances: stub bench "
      "--db postgres://... --instances 1,2,3 --roots 1,1000 --callers 64.");
  bench->callback([args, callers, &exit_code] {
    args->callers_given = callers->count() > 0;
    if (!args->soak.empty() && !args->instances.empty()) {
      std::cerr << "stub bench: --soak and --instances are separate runs\n";
      return void(exit_code = 1);
    }
    if (!args->soak.empty())
      return void(exit_code = run_soak_command(*args));
    if (!args->instances.empty()) {
      if (args->db.empty()) {
        std::cerr << "stub bench: --instances needs --db (postgres://... for more than one)\n";
        return void(exit_code = 1);
      }
      if (!ledger::Money::parse(args->amount) ||
          !ledger::Money::parse(args->amount)->is_positive()) {
        std::cerr << "stub bench: --amount must be a positive decimal\n";
        return void(exit_code = 1);
      }
      return void(exit_code = run_fleet_command(*args));
    }
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
