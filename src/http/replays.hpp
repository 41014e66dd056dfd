#pragma once

// The dashboard's "replay a runaway agent": POST /v1/replays runs the runaway scenario
// server-side against a fresh demo org, through this server's own HTTP API, and
// GET /v1/replays/{id} reports its progress. The scenario itself lives in src/loadgen (it is
// what `stub demo` runs); the HTTP layer only knows this interface, which the binary wires in
// (see ServiceOptions::replays), so stub_http does not depend on the load generator.
//
// Thread safety: implementations may be called from any thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ledger/model.hpp"
#include "ledger/result.hpp"

namespace stub::http {

// Where a replay sends its requests: this server, as the admin.
struct ReplayTarget {
  std::string host;
  uint16_t port = 0;
  std::string admin_token;
};

struct ReplaySecond {
  int64_t second = 0;  // since the replay's workers started
  int attempted = 0;
  int committed = 0;
  int refused = 0;
};

struct ReplayStatus {
  std::string id;
  std::string root;
  std::string state;  // "preparing", "running", "finished", "failed"
  std::string error;  // when failed
  ledger::Micros started_at = 0;
  ledger::Micros finished_at = 0;
  int workers = 0;
  int attempted = 0;
  int committed = 0;
  int refused = 0;
  int errors = 0;
  std::string committed_amount = "0.00";
  std::string root_spent;
  std::string root_limit;
  std::string overspend;
  bool chain_verified = false;
  int64_t chain_checked = 0;
  std::string head_hash;
  std::vector<ReplaySecond> seconds;
};

class ReplayRunner {
 public:
  static constexpr size_t replays_kept_max = 16;

  virtual ~ReplayRunner() = default;
  // Where replays send their requests; called once the server listens.
  virtual void bind(ReplayTarget target) = 0;
  // Starts a replay; 409 replay_running while one runs, 503 before bind().
  virtual Result<ReplayStatus> start(ledger::Micros now) = 0;
  virtual std::optional<ReplayStatus> status(const std::string& id) = 0;
  // Stops running replays and waits for them (server shutdown).
  virtual void stop() = 0;
};

// The JSON body of a replay's status.
std::string replay_status_json(const ReplayStatus& status);

}  // namespace stub::http
