#include "engine/hold_sweeper.hpp"

#include <spdlog/spdlog.h>

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

size_t HoldSweeper::sweep_once() {
  auto expired = store_.list_expired_holds(clock_(), holds_per_sweep_max);
  if (!expired.ok()) {
    spdlog::warn("hold sweeper: cannot list expired holds: {}", expired.error().message);
    return 0;
  }
  size_t settled = 0;
  for (const ledger::Hold& hold : expired.value()) {
    ledger::Command command;
    command.kind = ledger::CommandKind::expire;
    command.root = hold.root;
    command.actor = "system";
    command.budget = hold.budget;
    command.hold_id = hold.id;
    const ledger::Outcome outcome = sequencer_.execute(std::move(command));
    if (outcome.ok()) {
      ++settled;
    } else if (outcome.error().code == ErrorCode::unavailable) {
      break;  // The store stopped taking writes; the sequencer already says why.
    }
  }
  return settled;
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
