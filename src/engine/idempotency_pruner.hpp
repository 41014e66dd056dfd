#pragma once

// Retention for idempotency records: a replay of a key is answered from its stored record for
// `retention` (7 days by default) after the call; after that the record is pruned, in bounded
// steps, so the table (and SQLite's in-memory index of it) stays bounded by the retention
// times the request rate. A key replayed after its retention is a new request.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/sequencer.hpp"
#include "store/store.hpp"

namespace stub::engine {

struct PrunerOptions {
  std::chrono::seconds retention{7 * 24 * 3600};
  std::chrono::milliseconds interval{1'000};   // 0: no thread (tests call prune_once)
  size_t records_per_step = 1'000;             // one short transaction each
  std::chrono::milliseconds pass_budget{200};  // steps per pass stop after this long
};

class IdempotencyPruner {
 public:
  IdempotencyPruner(store::Store& store, Clock clock, PrunerOptions options);
  IdempotencyPruner(const IdempotencyPruner&) = delete;
  IdempotencyPruner& operator=(const IdempotencyPruner&) = delete;
  ~IdempotencyPruner();

  // One pass: prunes records older than the retention, step by step, until a step finds fewer
  // than records_per_step or the pass budget is spent. Returns how many it pruned.
  size_t prune_once();

 private:
  void run();
  // One pass; `backlog`: it stopped at its budget with more records due.
  size_t prune_pass(bool& backlog);

  store::Store& store_;
  Clock clock_;
  PrunerOptions options_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace stub::engine
