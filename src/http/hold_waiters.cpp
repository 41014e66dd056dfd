#include "http/hold_waiters.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cassert>
#include <utility>
#include <vector>

namespace stub::http {

HoldWaiters::HoldWaiters(engine::EventBus& events, boost::asio::thread_pool& pool)
    : events_(events), pool_(pool) {}

HoldWaiters::~HoldWaiters() {
  std::lock_guard lock(state_->mutex);
  if (state_->subscription != 0)
    events_.unsubscribe(state_->subscription);
  state_->subscription = 0;
  state_->waiters.clear();
  state_->by_hold.clear();
}

uint64_t HoldWaiters::add(const std::string& hold_id, std::function<void()> wake) {
  State& state = *state_;
  std::lock_guard lock(state.mutex);
  const uint64_t ticket = state.next_ticket++;
  state.waiters.emplace(ticket, State::Waiter{hold_id, std::move(wake)});
  state.by_hold.emplace(hold_id, ticket);
  if (state.subscription == 0) {
    std::weak_ptr<State> weak = state_;
    boost::asio::thread_pool& pool = pool_;
    state.subscription = events_.subscribe([weak, &pool](const engine::EntryBatch& batch) {
      // On the committer thread: hand the batch off, nothing more.
      if (auto shared = weak.lock())
        boost::asio::post(pool, [shared, batch] { match(*shared, batch); });
    });
  }
  assert(state.waiters.size() == state.by_hold.size() && state.subscription != 0);
  return ticket;
}

void HoldWaiters::remove(uint64_t ticket) {
  State& state = *state_;
  std::lock_guard lock(state.mutex);
  auto found = state.waiters.find(ticket);
  if (found == state.waiters.end())
    return;
  auto [first, last] = state.by_hold.equal_range(found->second.hold_id);
  for (auto it = first; it != last; ++it) {
    if (it->second == ticket) {
      state.by_hold.erase(it);
      break;
    }
  }
  state.waiters.erase(found);
  if (state.waiters.empty() && state.subscription != 0) {
    events_.unsubscribe(state.subscription);
    state.subscription = 0;
  }
  assert(state.waiters.size() == state.by_hold.size());
}

size_t HoldWaiters::size() const {
  std::lock_guard lock(state_->mutex);
  return state_->waiters.size();
}

void HoldWaiters::match(State& state, const engine::EntryBatch& batch) {
  std::vector<std::function<void()>> woken;
  {
    std::lock_guard lock(state.mutex);
    if (state.waiters.empty())
      return;
    std::vector<uint64_t> tickets;
    for (const ledger::Entry& entry : *batch) {
      if (entry.hold_id.empty())
        continue;
      auto [first, last] = state.by_hold.equal_range(entry.hold_id);
      for (auto it = first; it != last; ++it)
        tickets.push_back(it->second);
    }
    // Once per waiter per batch, however many of its entries the batch holds.
    std::sort(tickets.begin(), tickets.end());
    tickets.erase(std::unique(tickets.begin(), tickets.end()), tickets.end());
    for (uint64_t ticket : tickets) {
      auto waiter = state.waiters.find(ticket);
      assert(waiter != state.waiters.end());
      woken.push_back(waiter->second.wake);
    }
  }
  // Outside the lock: a wake-up may remove its own waiter.
  for (auto& wake : woken)
    wake();
}

}  // namespace stub::http
