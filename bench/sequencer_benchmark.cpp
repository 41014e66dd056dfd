// Google Benchmark of durable spends on one hot org budget (org -> 4 teams -> 100 agents) through
// the real sequencer and SQLite store, with 1, 16 and 256 closed-loop callers. The same
// workload as `stub bench` (src/loadgen); BENCHMARKS.md has the numbers and the command.

#include <benchmark/benchmark.h>

#include <filesystem>

#include "http/credentials.hpp"
#include "http/service.hpp"
#include "loadgen/workload.hpp"

namespace {

void BM_HotBudgetSpends(benchmark::State& state) {
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

BENCHMARK(BM_HotBudgetSpends)
    ->Arg(1)
    ->Arg(16)
    ->Arg(256)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
