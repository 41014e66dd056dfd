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
    if (*step < options_.records_per_step ||
        std::chrono::steady_clock::now() - started >= options_.pass_budget)
      break;
  }
  return pruned;
}

void IdempotencyPruner::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.interval, [&] { return stopping_; });
    if (stopping_)
      break;
    lock.unlock();
    prune_once();
    lock.lock();
  }
}

}  // namespace stub::engine
