#pragma once

// The runaway-agent scenario that `stub demo` prints and the dashboard's replay button shows:
// a fleet of batch-runner agents, each with its own key and a cap it never reaches, hammering
// /v1/spends through the real HTTP API in parallel while the org above them is nearly spent,
// so that it is the fleet-wide budget that must hold. Ends with a summary read back from the
// server: what the org spent, the worst overspend over the tree, and the chain's verification.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ledger/money.hpp"
#include "ledger/result.hpp"
#include "loadgen/http_client.hpp"

namespace stub::loadgen {

struct RunawayOptions {
  size_t workers = 50;
  size_t runners = 10;                                         // agent keys the workers share
  ledger::Money amount = ledger::Money::from_micros(350'000);  // 0.35 per call
  int attempts_per_worker_max = 60;
  int refusals_to_stop = 3;  // a worker stops after this many refusals in a row
  // Each worker waits this long between its calls (starts staggered over it), so a replay a
  // person watches lasts seconds instead of a blink; 0 for full speed (`stub demo`).
  std::chrono::milliseconds pause{0};
};

// The batch-runner agents: their budget nodes and bearer tokens.
struct RunawayFleet {
  std::string root;
  std::vector<std::string> budgets;
  std::vector<std::string> tokens;
};

// Creates `options.runners` agents "<parent>/batch-runner-NN" (25.00 each, at most 1.00 per
// call) and one key for each, as the admin. `run_id` makes the key requests' Idempotency-Keys
// unique to this run.
Result<RunawayFleet> create_runaway_fleet(HttpClient& admin, const std::string& parent,
                                          const RunawayOptions& options, const std::string& run_id);

// A fresh demo org for one replay: root `root` with 1000.00 a month, of which a month of
// history has spent 955.00, and an engineering team with room to spare. Returns the team's path
// (where create_runaway_fleet puts the agents).
Result<std::string> seed_replay_org(HttpClient& admin, const std::string& root,
                                    const std::string& run_id);

// One attempt's outcome, reported as it happens (from the worker's thread).
struct RunawayEvent {
  enum class Kind { committed, refused, error };
  Kind kind = Kind::committed;
  size_t worker = 0;
  std::string budget;     // committed: the agent's node
  int64_t seq = 0;        // the entry: the spend, or the deny that records the refusal
  std::string code;       // refused: the denial code
  std::string level;      // refused: the budget that refused
  std::string available;  // refused: what that level had left
  std::string message;    // error: what went wrong
};

struct RunawaySummary {
  int attempted = 0;
  int committed = 0;
  int refused = 0;
  int errors = 0;
  ledger::Money committed_amount;
  std::string root_spent = "-";
  std::string root_limit = "-";
  std::string overspend = "unknown";  // worst spent + reserved - limit over the tree, "0.00"
  bool chain_verified = false;
  int64_t chain_checked = 0;
  std::string head_hash;

  bool good() const { return errors == 0 && overspend == "0.00" && chain_verified; }
};

// Runs the fleet: `options.workers` threads, worker i on token i % tokens, each spending
// `options.amount` until refused `refusals_to_stop` times in a row or `attempts_per_worker_max`
// attempts. Every Idempotency-Key is "runaway-<run_id>-<worker>-<attempt>", so a second run
// never replays the first run's answers. `cancel` (may be null) stops the workers early.
// Then reads the summary as `admin`.
RunawaySummary run_runaway(const Endpoint& endpoint, const RunawayFleet& fleet,
                           const RunawayOptions& options, const std::string& run_id,
                           HttpClient& admin,
                           const std::function<void(const RunawayEvent&)>& on_event,
                           const std::atomic<bool>* cancel = nullptr);

}  // namespace stub::loadgen
