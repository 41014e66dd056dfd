#pragma once

// The benchmark workload shared by `stub bench`, `stub demo` and bench/: one hot org budget
// (org -> teams -> agents, every spend touching all three levels) driven by closed-loop callers,
// in-process through the sequencer or over HTTP, ending with a run-out phase that drains the
// budget and measures overspend from the store.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/sequencer.hpp"
#include "ledger/money.hpp"
#include "store/store.hpp"

namespace stub::loadgen {

struct BenchTree {
  std::string root = "bench";
  int teams = 4;
  int agents_per_team = 25;

  int agent_count() const { return teams * agents_per_team; }
  std::string team_path(int team) const;
  std::string agent_path(int agent) const;
};

// Creates the tree through the sequencer as the admin. The org gets `org_limit`; teams and
// agents get limits far above it, so the org is the binding level.
Status create_tree(engine::Sequencer& sequencer, const BenchTree& tree, ledger::Money org_limit);

// Issues one agent key per agent (through the sequencer) and returns their bearer tokens.
Result<std::vector<std::string>> issue_agent_tokens(engine::Sequencer& sequencer,
                                                    const BenchTree& tree);

// Sets the org limit to what it has used plus `headroom`.
Status set_org_headroom(engine::Sequencer& sequencer, store::Store& store, const BenchTree& tree,
                        ledger::Money headroom);

struct RunStats {
  uint64_t committed = 0;
  uint64_t refused = 0;
  uint64_t failed = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double spends_per_second() const { return seconds > 0 ? committed / seconds : 0; }
};

// The `fraction` quantile of `micros` (latencies in microseconds), in milliseconds; 0 when empty.
// Reorders `micros`.
double percentile_ms(std::vector<int64_t>& micros, double fraction);

struct DriveOptions {
  size_t callers = 16;
  std::chrono::milliseconds duration{5'000};
  ledger::Money amount = ledger::Money::from_micros(10'000);  // 0.01
  // Stop early once every caller has been refused this many times in a row (run-out phase).
  uint64_t stop_after_refusals_per_caller = 0;
};

// Closed loop in-process: `callers` spends outstanding at all times, each with its own
// Idempotency-Key, as the HTTP edge would submit them.
RunStats drive_in_process(engine::Sequencer& sequencer, const BenchTree& tree,
                          const DriveOptions& options);

// Closed loop over HTTP/1.1 keep-alive connections to 127.0.0.1:`port`, caller i using token
// i % tokens.size() (and so agent i % agents).
RunStats drive_http(uint16_t port, const std::vector<std::string>& tokens, const BenchTree& tree,
                    const DriveOptions& options);

// Worst excess of spent + reserved over limit across the subtree, "0" when there is none.
Result<ledger::Money> measure_overspend(store::Store& store, const std::string& root,
                                        ledger::Micros now);

}  // namespace stub::loadgen
