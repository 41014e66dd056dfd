#include "engine/hold_sweeper.hpp"

#include <spdlog/spdlog.h>

#include <cassert>
#include <cstdio>
#include <memory>
#include <random>

namespace stub::engine {

HoldSweeper::HoldSweeper(store::Store& store, Sequencer& sequencer, Clock clock,
                         std::chrono::milliseconds interval)
    : store_(store), sequencer_(sequencer), clock_(std::move(clock)), interval_(interval) {
  if (interval_.count() > 0)
    thread_ = std::thread([this] { run(); });
}

HoldSweeper::~HoldSweeper() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
}

size_t HoldSweeper::sweep_delegations() {
  auto lapsed = store_.list_lapsed_delegations(clock_(), holds_per_sweep_max);
  if (!lapsed.ok()) {
    spdlog::warn("hold sweeper: cannot list lapsed delegations: {}", lapsed.error().message);
    return 0;
  }
  struct Tally {
    std::mutex mutex;
    std::condition_variable done;
    size_t answered = 0;  // GUARDED_BY(mutex)
    size_t ended = 0;     // GUARDED_BY(mutex)
  };
  auto tally = std::make_shared<Tally>();
  for (const store::Store::LapsedDelegation& delegation : lapsed.value()) {
    ledger::Command command;
    command.kind = ledger::CommandKind::end_delegation;
    command.root = delegation.root;
    command.actor = std::string(ledger::system_actor);
    command.budget = delegation.path;
    sequencer_.submit(std::move(command), [tally](ledger::Outcome outcome) {
      std::lock_guard lock(tally->mutex);
      ++tally->answered;
      if (outcome.ok())
        ++tally->ended;
      else
        spdlog::warn("hold sweeper: cannot end a delegation: {}", outcome.error().message);
      tally->done.notify_all();
    });
  }
  std::unique_lock lock(tally->mutex);
  tally->done.wait(lock, [&] { return tally->answered == lapsed->size(); });
  return tally->ended;
}

size_t HoldSweeper::sweep_once() {
  // Delegations first: ending one settles its holds in the same commit.
  sweep_delegations();
  // A random starting point per pass: several instances on one database sweep different holds.
  thread_local std::mt19937_64 random{std::random_device{}()};
  char pivot[24];
  std::snprintf(pivot, sizeof pivot, "hold_%016llx", static_cast<unsigned long long>(random()));
  auto expired = store_.list_expired_holds_from(clock_(), pivot, holds_per_sweep_max);
  if (!expired.ok()) {
    spdlog::warn("hold sweeper: cannot list expired holds: {}", expired.error().message);
    return 0;
  }
  // Every expiry is submitted before any is waited for, so they commit together in a few
  // batches (the committer takes what is queued), not one commit per hold.
  struct Tally {
    std::mutex mutex;
    std::condition_variable done;
    size_t answered = 0;  // GUARDED_BY(mutex)
    size_t settled = 0;   // GUARDED_BY(mutex)
  };
  auto tally = std::make_shared<Tally>();
  for (const ledger::Hold& hold : expired.value()) {
    ledger::Command command;
    command.kind = ledger::CommandKind::expire;
    command.root = hold.root;
    command.actor = std::string(ledger::system_actor);
    command.budget = hold.budget;
    command.hold_id = hold.id;
    sequencer_.submit(std::move(command), [tally](ledger::Outcome outcome) {
      std::lock_guard lock(tally->mutex);
      ++tally->answered;
      if (outcome.ok())
        ++tally->settled;
      tally->done.notify_all();
    });
  }
  std::unique_lock lock(tally->mutex);
  tally->done.wait(lock, [&] { return tally->answered == expired->size(); });
  assert(tally->settled <= tally->answered);
  return tally->settled;
}

void HoldSweeper::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, interval_, [&] { return stopping_; });
    if (stopping_)
      break;
    lock.unlock();
    sweep_once();
    lock.lock();
  }
}

}  // namespace stub::engine
