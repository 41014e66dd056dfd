#pragma once

// Fan-out of committed entries to live subscribers (Server-Sent Events, the dashboard). The
// sequencer publishes after each commit; a subscriber's callback must only hand the batch off
// (post it to its own executor), never block.
//
// Thread safety: every method may be called from any thread.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "ledger/model.hpp"

namespace stub::engine {

using EntryBatch = std::shared_ptr<const std::vector<ledger::Entry>>;

class EventBus {
 public:
  using Subscriber = std::function<void(const EntryBatch&)>;

  uint64_t subscribe(Subscriber subscriber);
  void unsubscribe(uint64_t id);
  void publish(const EntryBatch& batch);
  size_t subscriber_count() const;

 private:
  mutable std::mutex mutex_;
  uint64_t next_id_ = 1;                                         // GUARDED_BY(mutex_)
  std::map<uint64_t, std::shared_ptr<Subscriber>> subscribers_;  // GUARDED_BY(mutex_)
};

}  // namespace stub::engine
