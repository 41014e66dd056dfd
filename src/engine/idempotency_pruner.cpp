#include "engine/idempotency_pruner.hpp"

#include <spdlog/spdlog.h>

#include <cassert>

namespace stub::engine {

IdempotencyPruner::IdempotencyPruner(store::Store& store, Clock clock, PrunerOptions options)
    : store_(store), clock_(std::move(clock)), options_(options) {
  assert(options_.records_per_step > 0 && options_.retention.count() > 0);
  if (options_.interval.count() > 0)
    thread_ = std::thread([this] { run(); });
}

IdempotencyPruner::~IdempotencyPruner() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

size_t IdempotencyPruner::prune_once() {
  bool backlog = false;
  return prune_pass(backlog);
}

size_t IdempotencyPruner::prune_pass(bool& backlog) {
  backlog = false;
  const ledger::Micros cutoff =
      clock_() - std::chrono::duration_cast<std::chrono::microseconds>(options_.retention).count();
  const auto started = std::chrono::steady_clock::now();
  size_t pruned = 0;
  while (true) {
    auto step = store_.prune_idempotency(cutoff, options_.records_per_step);
    if (!step.ok()) {
      spdlog::warn("idempotency retention: cannot prune: {}", step.error().message);
      break;
    }
    pruned += *step;
    assert(*step <= options_.records_per_step);
    if (*step < options_.records_per_step)
      break;
    if (std::chrono::steady_clock::now() - started >= options_.pass_budget) {
      backlog = true;  // more to prune: the next pass comes soon
      break;
    }
    // Between steps the committer gets its turn (a waiting batch takes the write lock first).
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pruned;
}

void IdempotencyPruner::run() {
  // A pass that stopped at its budget with records still due is followed by the next one after
  // a short pause instead of a whole interval, so that pruning keeps pace with any write rate
  // (a soak at ~4,600 keyed writes/s outran one 200 ms pass a second).
  constexpr auto backlog_pause = std::chrono::milliseconds(20);
  bool backlog = false;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, backlog ? backlog_pause : options_.interval, [&] { return stopping_; });
    if (stopping_)
      break;
    lock.unlock();
    prune_pass(backlog);
    lock.lock();
  }
}

}  // namespace stub::engine
