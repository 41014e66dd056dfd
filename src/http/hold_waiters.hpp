#pragma once

// Long polls waiting for a hold's decision (GET /v1/holds/{id}?wait=), indexed by hold id.
// One event-bus subscription serves every waiter, and only while there is one; its callback on
// the committer thread only posts the batch to the read pool, where the batch's entries are
// matched against the index. So the committer never scans entries for waiters, and a batch
// costs one lookup per entry however many agents wait.
//
// Thread safety: every method may be called from any thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <boost/asio/thread_pool.hpp>

#include "engine/event_bus.hpp"

namespace stub::http {

class HoldWaiters {
 public:
  HoldWaiters(engine::EventBus& events, boost::asio::thread_pool& pool);
  ~HoldWaiters();
  HoldWaiters(const HoldWaiters&) = delete;
  HoldWaiters& operator=(const HoldWaiters&) = delete;

  // Calls `wake` (from a pool thread) each time a batch with an entry naming `hold_id` is
  // matched. A wake-up says "read the hold again", never what was decided: the batch may be
  // the hold's own creation, published after its answer went out. Returns a ticket for
  // remove(), which must be called however the wait ends.
  uint64_t add(const std::string& hold_id, std::function<void()> wake);
  void remove(uint64_t ticket);
  size_t size() const;

 private:
  // Shared with the batches posted to the pool, so one still queued when this object goes
  // away finds the state alive (and empty) instead of a dangling pointer.
  struct State {
    mutable std::mutex mutex;
    struct Waiter {
      std::string hold_id;
      std::function<void()> wake;
    };
    uint64_t next_ticket = 1;                                // GUARDED_BY(mutex)
    std::unordered_map<uint64_t, Waiter> waiters;            // GUARDED_BY(mutex)
    std::unordered_multimap<std::string, uint64_t> by_hold;  // GUARDED_BY(mutex)
    uint64_t subscription = 0;                               // GUARDED_BY(mutex); 0: none
  };
  static void match(State& state, const engine::EntryBatch& batch);

  engine::EventBus& events_;
  boost::asio::thread_pool& pool_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

}  // namespace stub::http
