// Google Benchmark of durable spends on one hot org budget (org -> 4 teams -> 100 agents) through
// the real sequencer and SQLite store, with 1, 16 and 256 closed-loop callers. The same
// workload as `stub bench` (src/loadgen); BENCHMARKS.md has the numbers and the command.

#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <vector>

#include "http/credentials.hpp"
#include "http/service.hpp"
#include "ledger/command.hpp"
#include "loadgen/workload.hpp"

namespace {

// With `vendor_rules` > 0, the org also carries that many vendor limits (issue 16), the first one
// naming the workload's vendor (so every spend is counted and checked against it) with room for
// everything, the others other vendors (checked for a match, not counted).
void run_hot_budget_spends(benchmark::State& state, int vendor_rules) {
  const auto directory =
      std::filesystem::temp_directory_path() / ("stub-gbench-" + stub::http::random_hex(6));
  std::filesystem::create_directories(directory);
  stub::http::ServiceOptions options;
  options.db = "sqlite:" + (directory / "bench.db").string();
  options.listen = false;
  options.sequencer.queue_capacity = 1 << 20;
  auto service = stub::http::Service::start(std::move(options));
  if (!service.ok()) {
    state.SkipWithError(service.error().message.c_str());
    return;
  }
  stub::loadgen::BenchTree tree;
  const auto limit = stub::ledger::Money::from_micros(stub::ledger::Money::micros_max / 10'000);
  if (!stub::loadgen::create_tree((*service)->sequencer(), tree, limit).ok()) {
    state.SkipWithError("cannot create the bench tree");
    return;
  }
  if (vendor_rules > 0) {
    stub::ledger::Command rules;
    rules.kind = stub::ledger::CommandKind::set_budget;
    rules.root = tree.root;
    rules.budget = tree.root;
    rules.actor = std::string(stub::ledger::admin_actor);
    std::vector<stub::ledger::VendorLimit> limits;
    for (int i = 0; i < vendor_rules; ++i) {
      limits.push_back(stub::ledger::VendorLimit{
          {i == 0 ? std::string("api.example.com") : "vendor-" + std::to_string(i) + ".com"},
          limit,
          stub::ledger::Period::month,
          0});
    }
    rules.settings.vendor_limits = std::move(limits);
    const auto set = (*service)->sequencer().execute(rules);
    if (!set.ok() || !std::holds_alternative<stub::ledger::BudgetWritten>(set->answer.value)) {
      state.SkipWithError("cannot set the vendor limits");
      return;
    }
  }
  stub::loadgen::DriveOptions drive;
  drive.callers = static_cast<size_t>(state.range(0));
  drive.duration = std::chrono::milliseconds(2'000);
  uint64_t committed = 0;
  double p99_ms = 0;
  for (auto _ : state) {
    const stub::loadgen::RunStats stats =
        stub::loadgen::drive_in_process((*service)->sequencer(), tree, drive);
    state.SetIterationTime(stats.seconds);
    committed += stats.committed;
    p99_ms = stats.p99_ms;
  }
  state.SetItemsProcessed(static_cast<int64_t>(committed));
  state.counters["p99_ms"] = p99_ms;
  (*service)->stop();
  service.value().reset();
  std::filesystem::remove_all(directory);
}

void BM_HotBudgetSpends(benchmark::State& state) {
  run_hot_budget_spends(state, 0);
}

void BM_HotBudgetSpendsUnder16VendorLimits(benchmark::State& state) {
  run_hot_budget_spends(state, 16);
}

BENCHMARK(BM_HotBudgetSpendsUnder16VendorLimits)
    ->Arg(1)
    ->Arg(16)
    ->Arg(256)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_HotBudgetSpends)
    ->Arg(1)
    ->Arg(16)
    ->Arg(256)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
