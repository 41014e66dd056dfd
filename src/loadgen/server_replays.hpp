#pragma once

// The ReplayRunner that `stub serve` and `stub demo` plug into the server: each replay seeds a
// fresh demo org "runaway-<id>" and runs the runaway fleet (runaway.hpp) against it over HTTP
// on a thread of its own, recording per-second counts for the dashboard's chart.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "http/replays.hpp"
#include "loadgen/runaway.hpp"

namespace stub::loadgen {

class ServerReplays final : public http::ReplayRunner {
 public:
  // The dashboard's pace: 50 workers, each pausing 800 ms between calls (about 60 calls a
  // second for five seconds or so).
  static RunawayOptions watchable_options();

  explicit ServerReplays(RunawayOptions options = watchable_options());
  ~ServerReplays() override;

  void bind(http::ReplayTarget target) override;
  Result<http::ReplayStatus> start(ledger::Micros now) override;
  std::optional<http::ReplayStatus> status(const std::string& id) override;
  void stop() override;

 private:
  void run(std::string id);

  RunawayOptions options_;
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::optional<http::ReplayTarget> target_;           // GUARDED_BY(mutex_)
  std::map<std::string, http::ReplayStatus> replays_;  // GUARDED_BY(mutex_)
  std::vector<std::string> order_;                     // GUARDED_BY(mutex_), oldest first
  std::string running_;                                // GUARDED_BY(mutex_), empty: none
  std::vector<std::thread> threads_;                   // GUARDED_BY(mutex_)
};

}  // namespace stub::loadgen
