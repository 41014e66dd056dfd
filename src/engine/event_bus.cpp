#include "engine/event_bus.hpp"

namespace stub::engine {

uint64_t EventBus::subscribe(Subscriber subscriber) {
  std::lock_guard lock(mutex_);
  const uint64_t id = next_id_++;
  subscribers_.emplace(id, std::make_shared<Subscriber>(std::move(subscriber)));
  return id;
}

void EventBus::unsubscribe(uint64_t id) {
  std::lock_guard lock(mutex_);
  subscribers_.erase(id);
}

void EventBus::publish(const EntryBatch& batch) {
  if (!batch || batch->empty())
    return;
  std::vector<std::shared_ptr<Subscriber>> targets;
  {
    std::lock_guard lock(mutex_);
    targets.reserve(subscribers_.size());
    for (const auto& [id, subscriber] : subscribers_)
      targets.push_back(subscriber);
  }
  // Called outside the lock so that a subscriber may unsubscribe from its own callback.
  for (const auto& subscriber : targets)
    (*subscriber)(batch);
}

size_t EventBus::subscriber_count() const {
  std::lock_guard lock(mutex_);
  return subscribers_.size();
}

}  // namespace stub::engine
