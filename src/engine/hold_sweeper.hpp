#pragma once

// Settles expired holds through the sequencer, like any other command, so that expiry is
// decided and chained under the same rules. Reads of an expired-but-unswept hold already show
// it as expired (Hold::status_at); the sweeper makes the books say so too.

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/sequencer.hpp"
#include "store/store.hpp"

namespace stub::engine {

class HoldSweeper {
 public:
  static constexpr size_t holds_per_sweep_max = 512;

  HoldSweeper(store::Store& store, Sequencer& sequencer, Clock clock,
              std::chrono::milliseconds interval);
  HoldSweeper(const HoldSweeper&) = delete;
  HoldSweeper& operator=(const HoldSweeper&) = delete;
  ~HoldSweeper();

  // One pass: submits an expire command for each expired hold and waits for them to commit.
  // Returns how many holds it expired.
  size_t sweep_once();
  // Ends the delegations whose key expired (their holds settled, their reservation returned).
  // Returns how many expiry checks committed.
  size_t sweep_delegations();

 private:
  void run();

  store::Store& store_;
  Sequencer& sequencer_;
  Clock clock_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace stub::engine
