// The constrained query and the export over a large ledger (BENCHMARKS.md, "Query and export").
//
//   stub_query_benchmark fill   DB ENTRIES   writes ENTRIES spends through the sequencer, in
//                                            large batches, spread over one month (2026-11)
//   stub_query_benchmark query  DB [RUNS]    times POST /v1/query's work (run_query) for the
//                                            month grouped by team and by vendor
//   stub_query_benchmark export DB FORMAT    exports the month to /dev/null; prints the time
//                                            and the process's peak memory
//
// Each mode runs in its own process, so the export's peak memory is the export's alone.

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <vector>

#include "engine/event_bus.hpp"
#include "engine/sequencer.hpp"
#include "export/journal_export.hpp"
#include "http/render.hpp"
#include "query/compiler.hpp"
#include "query/query.hpp"
#include "store/store.hpp"

namespace {

using stub::ledger::Micros;
using stub::ledger::Money;

constexpr Micros month_start = 1'793'491'200'000'000;  // 2026-11-01T00:00:00Z
constexpr Micros month_micros = 30LL * 86'400 * 1'000'000;
constexpr int teams = 10;
constexpr int agents_per_team = 10;
const char* const vendors[] = {"api.openai.com", "api.anthropic.com", "serpapi.com", "stripe",
                               "api.mistral.ai", "api.cohere.com",    "exa.ai",      "tavily"};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

long peak_rss_kib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

std::unique_ptr<stub::store::Store> open(const std::string& url, bool read_only) {
  stub::store::StoreOptions options;
  options.read_only = read_only;
  options.read_connections = 2;
  auto opened = stub::store::open_store(url, options);
  if (!opened.ok()) {
    std::cerr << "open: " << opened.error().message << "\n";
    std::exit(1);
  }
  return std::move(opened).value();
}

stub::ledger::Command command_for(stub::ledger::CommandKind kind, const std::string& budget) {
  stub::ledger::Command command;
  command.kind = kind;
  command.root = budget.substr(0, budget.find('/'));
  command.actor = std::string(stub::ledger::admin_actor);
  command.budget = budget;
  return command;
}

int fill(const std::string& url, int64_t count) {
  auto store = open(url, false);
  std::atomic<Micros> clock{month_start};
  stub::engine::EventBus events;
  stub::engine::SequencerOptions options;
  options.batch_size_max = 2'000;
  options.render = stub::http::render_answer;
  options.queue_capacity = 65'536;
  stub::engine::Sequencer sequencer(
      *store, [&clock] { return clock.load(); }, options, &events);
  auto set = [&](const std::string& path) {
    auto command = command_for(stub::ledger::CommandKind::set_budget, path);
    command.settings.period = stub::ledger::Period::none;
    auto outcome = sequencer.execute(command);
    if (!outcome.ok() || outcome->rendered.status >= 300) {
      std::cerr << "budget " << path << " failed\n";
      std::exit(1);
    }
  };
  set("acme");
  for (int team = 0; team < teams; ++team) {
    set("acme/team-" + std::to_string(team));
    for (int agent = 0; agent < agents_per_team; ++agent)
      set("acme/team-" + std::to_string(team) + "/agent-" + std::to_string(agent));
  }
  std::mutex mutex;
  std::condition_variable done;
  int64_t outstanding = 0;
  int64_t failed = 0;
  const auto start = std::chrono::steady_clock::now();
  uint64_t state = 42;
  for (int64_t i = 0; i < count; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const int team = static_cast<int>((state >> 33) % teams);
    const int agent = static_cast<int>((state >> 40) % agents_per_team);
    const char* vendor = vendors[(state >> 45) % 8];
    auto command =
        command_for(stub::ledger::CommandKind::spend,
                    "acme/team-" + std::to_string(team) + "/agent-" + std::to_string(agent));
    command.amount = Money::from_micros(1 + static_cast<int64_t>((state >> 20) % 50'000));
    command.vendor = vendor;
    command.intent = "bench";
    command.tags_json = std::string(R"({"category":")") +
                        ((state >> 50) % 2 == 0 ? "llm" : "data-api") + R"(","customer":"c)" +
                        std::to_string((state >> 52) % 50) + "\"}";
    command.hold_id = "hold_bench_" + std::to_string(i);
    clock.store(month_start + i * (month_micros / count));
    {
      std::unique_lock lock(mutex);
      done.wait(lock, [&] { return outstanding < 60'000; });
      ++outstanding;
    }
    sequencer.submit(std::move(command), [&](stub::ledger::Outcome outcome) {
      std::lock_guard lock(mutex);
      if (!outcome.ok() || outcome->rendered.status != 201)
        ++failed;
      --outstanding;
      done.notify_all();
    });
  }
  std::unique_lock lock(mutex);
  done.wait(lock, [&] { return outstanding == 0; });
  const double elapsed = seconds_since(start);
  std::printf("filled %lld spends in %.1f s (%.0f/s), %lld failed\n", static_cast<long long>(count),
              elapsed, static_cast<double>(count) / elapsed, static_cast<long long>(failed));
  return failed == 0 ? 0 : 1;
}

int time_queries(const std::string& url, int runs) {
  auto store = open(url, true);
  for (const auto path : {stub::query::ReadPath::automatic, stub::query::ReadPath::entries_only})
    for (const char* group : {"team", "vendor"}) {
      const std::string json = std::string(R"({"metric":"spend","group_by":[")") + group +
                               R"("],"filters":{"subtree":"acme"},"range":"2026-11"})";
      auto query = stub::query::parse_query(boost::json::parse(json), month_start);
      if (!query.ok()) {
        std::cerr << query.error().message << "\n";
        return 1;
      }
      std::vector<double> times;
      int64_t total = 0;
      for (int run = 0; run < runs; ++run) {
        const auto start = std::chrono::steady_clock::now();
        auto answer = stub::query::run_query(*store, *query, path);
        times.push_back(seconds_since(start) * 1'000);
        if (!answer.ok()) {
          std::cerr << answer.error().message << "\n";
          return 1;
        }
        total = answer->total_count;
      }
      const double first = times.front();
      std::sort(times.begin(), times.end());
      std::printf("%s, month by %-6s: %lld entries, first %.1f ms, median %.1f ms, best %.1f ms\n",
                  path == stub::query::ReadPath::automatic ? "rollup " : "entries", group,
                  static_cast<long long>(total), first, times[times.size() / 2], times.front());
    }
  return 0;
}

int time_export(const std::string& url, const std::string& format) {
  auto store = open(url, true);
  stub::journal::ExportOptions options;
  options.format = *stub::journal::parse_format(format);
  options.subtree = "acme";
  options.from = month_start;
  options.to = month_start + month_micros + 86'400'000'000LL;
  const long rss_before = peak_rss_kib();
  int64_t bytes = 0;
  const auto start = std::chrono::steady_clock::now();
  std::FILE* sink = std::fopen("/dev/null", "wb");
  auto summary = stub::journal::export_journal(
      *store, options,
      [&](std::string_view chunk) {
        bytes += static_cast<int64_t>(chunk.size());
        return std::fwrite(chunk.data(), 1, chunk.size(), sink) == chunk.size();
      },
      nullptr);
  std::fclose(sink);
  if (!summary.ok()) {
    std::cerr << summary.error().message << "\n";
    return 1;
  }
  std::printf(
      "export %s: %lld transactions, %.1f MiB in %.2f s; peak RSS %ld MiB (%ld MiB "
      "after opening the store)\n",
      format.c_str(), static_cast<long long>(summary->transactions),
      static_cast<double>(bytes) / (1 << 20), seconds_since(start), peak_rss_kib() / 1024,
      rss_before / 1024);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: stub_query_benchmark fill|query|export DB [ENTRIES|RUNS|FORMAT]\n";
    return 2;
  }
  const std::string mode = argv[1];
  const std::string url = argv[2];
  if (mode == "fill")
    return fill(url, argc > 3 ? std::stoll(argv[3]) : 1'000'000);
  if (mode == "query")
    return time_queries(url, argc > 3 ? std::stoi(argv[3]) : 7);
  if (mode == "export")
    return time_export(url, argc > 3 ? argv[3] : "hledger");
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
