#pragma once

// The soak (`stub bench --soak DURATION`): a mixed workload through the real HTTP API of a
// `stub serve` (spends, idempotent retries, holds captured, voided and left to expire, reads of
// budgets and entries, SSE subscribers connected throughout and reconnecting), sampled every
// few seconds: the server's RSS and open fds (from /proc/<pid> when it is a local process), the
// sequencer's queue depth (GET /healthz), throughput and latency quantiles of the interval.
// Passes when no request failed and, from the end of the warm-up (the idempotency retention
// reached, so pruning keeps pace) to the end, RSS grew at most `rss_growth_max_kib` and open
// fds at most `fd_growth_max`.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "ledger/result.hpp"
#include "loadgen/http_client.hpp"

namespace stub::loadgen {

struct SoakOptions {
  Endpoint endpoint;
  std::string admin_token;
  pid_t server_pid = -1;  // a local server's pid, for RSS and fds; -1: not sampled
  std::chrono::seconds duration{120};
  std::chrono::seconds warmup{60};
  std::chrono::seconds sample_interval{5};
  size_t callers = 8;
  size_t subscribers = 4;
  // Each subscriber reconnects after this long (connection churn is part of the soak).
  std::chrono::seconds subscriber_reconnect{20};
  int64_t rss_growth_max_kib = 32 * 1024;
  int64_t fd_growth_max = 16;
  std::string root;  // default: "soak-" and a random suffix
};

struct SoakSample {
  double seconds = 0;  // since the load started
  int64_t rss_kib = -1;
  int64_t fds = -1;
  int64_t queue_depth = -1;
  uint64_t requests = 0;  // answered in the interval
  uint64_t failures = 0;  // in the interval
  double requests_per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  uint64_t events = 0;  // SSE events received in the interval
};

struct SoakReport {
  std::vector<SoakSample> samples;
  size_t warm_index = 0;  // the first sample at or after the warm-up
  uint64_t requests = 0, failures = 0, retries = 0, spends = 0, holds = 0, captures = 0, voids = 0,
           expiring_holds = 0, reads = 0, events = 0, subscriptions = 0;
  std::string first_failure;
  int64_t rss_growth_kib = 0, fd_growth = 0, rss_max_kib = -1;
  bool server_alive = true;
  std::vector<std::string> violations;  // empty: passed
  bool passed() const { return violations.empty(); }
};

// Creates the soak's tree and agent keys as the admin, runs the load for `duration` while
// sampling, then checks the bounds. `progress` gets one table row per sample as it is taken.
Result<SoakReport> run_soak(const SoakOptions& options, std::ostream& progress);

}  // namespace stub::loadgen
