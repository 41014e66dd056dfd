#include "http/root_leadership.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>

namespace stub::http {

RootLeadership::RootLeadership(Metrics& metrics, LeadershipOptions options)
    : metrics_(metrics), options_(options) {
  assert(options_.lookup_ttl <= options_.stale_after);
  assert(options_.roots_max > 0);
}

RootLeadership::~RootLeadership() {
  stop();
}

void RootLeadership::start(std::unique_ptr<store::RootLeases> leases) {
  assert(leases != nullptr && !thread_.joinable());
  leases_ = std::move(leases);
  active_.store(true, std::memory_order_release);
  thread_ = std::thread([this] { run(); });
}

void RootLeadership::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    active_.store(false, std::memory_order_release);
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  if (leases_) {
    leases_->release_all();
    leases_.reset();
  }
}

RootLeadership::Entry* RootLeadership::entry_for(const std::string& root, Clock::time_point now) {
  if (auto found = roots_.find(root); found != roots_.end())
    return &found->second;
  if (roots_.size() >= options_.roots_max) {
    // Forget the roots no longer contended (their lease, if this instance holds one, stays
    // held: the others keep forwarding to it, which is right).
    std::erase_if(roots_, [now](const auto& item) {
      return item.second.contended_until <= now && !item.second.lookup_pending;
    });
    if (roots_.size() >= options_.roots_max)
      return nullptr;
  }
  return &roots_[root];
}

void RootLeadership::request_lookup(const std::string& root, Entry& entry) {
  if (entry.lookup_pending)
    return;
  entry.lookup_pending = true;
  pending_.push_back(root);
  wake_.notify_one();
}

void RootLeadership::note_foreign_write(const std::string& root) {
  if (!active())
    return;
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  Entry* entry = entry_for(root, now);
  if (entry == nullptr)
    return;
  entry->contended_until = now + options_.contended_for;
  // The first sighting looks the leader up at once: the instances race for the lease, and the
  // sooner one has it, the sooner the handovers of the root's lock stop.
  if (entry->looked_up == Clock::time_point{})
    request_lookup(root, *entry);
}

std::optional<std::string> RootLeadership::forward_target(const std::string& root) {
  if (!active())
    return std::nullopt;
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  auto found = roots_.find(root);
  if (found == roots_.end())
    return std::nullopt;
  Entry& entry = found->second;
  if (entry.contended_until <= now)
    return std::nullopt;  // Only this instance writes it (lately): commit here.
  if (now - entry.looked_up >= options_.lookup_ttl)
    request_lookup(root, entry);
  if (entry.self || entry.leader_url.empty() || now < entry.unreachable_until ||
      now - entry.looked_up >= options_.stale_after) {
    return std::nullopt;
  }
  entry.contended_until = now + options_.contended_for;
  return entry.leader_url;
}

void RootLeadership::report_unreachable(const std::string& root) {
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  auto found = roots_.find(root);
  if (found == roots_.end())
    return;
  found->second.unreachable_until = now + options_.unreachable_for;
  // A dead leader's lease is free once its session is gone: look again now, and take it.
  request_lookup(root, found->second);
}

void RootLeadership::run() {
  uint64_t acquired_seen = 0;
  std::unique_lock lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (stopping_)
      return;
    std::vector<std::string> roots;
    const size_t count = std::min(pending_.size(), store::RootLeases::roots_per_look_up_max);
    roots.assign(std::make_move_iterator(pending_.begin()),
                 std::make_move_iterator(pending_.begin() + static_cast<std::ptrdiff_t>(count)));
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(count));
    lock.unlock();
    auto found = leases_->look_up(roots);
    const uint64_t acquired = leases_->acquired_total();
    if (acquired > acquired_seen) {
      metrics_.record_leaderships_acquired(acquired - acquired_seen);
      spdlog::info("root leadership: leading {} more root(s)", acquired - acquired_seen);
      acquired_seen = acquired;
    }
    lock.lock();
    const auto now = Clock::now();
    if (!found.ok()) {
      // Every lease went with the connection: lead nothing, follow nobody (this instance's
      // view is unknown), and look again shortly.
      spdlog::warn("root leadership: lookup failed, committing locally meanwhile: {}",
                   found.error().message);
      for (auto& [root, entry] : roots_)
        entry.self = false;
      for (const std::string& root : roots) {
        auto it = roots_.find(root);
        if (it == roots_.end())
          continue;
        it->second.lookup_pending = false;
        it->second.leader_url.clear();
        // Looked up "now" so that it is retried after lookup_ttl, not at once.
        it->second.looked_up = now - options_.lookup_ttl + options_.retry_after;
      }
      wake_.wait_for(lock, options_.retry_after, [&] { return stopping_; });
      continue;
    }
    assert(found->size() == roots.size());
    for (const store::LeaderLookup& lookup : *found) {
      auto it = roots_.find(lookup.root);
      if (it == roots_.end())
        continue;  // Forgotten meanwhile.
      Entry& entry = it->second;
      entry.lookup_pending = false;
      entry.looked_up = now;
      // A lease held whose row is not written yet: look again soon rather than after the ttl.
      if (!lookup.self && !lookup.other)
        entry.looked_up = now - options_.lookup_ttl + options_.retry_after / 5;
      entry.self = lookup.self;
      const std::string url = lookup.other ? lookup.other->url : std::string();
      if (url != entry.leader_url)
        entry.unreachable_until = Clock::time_point{};  // A new leader gets its chance.
      entry.leader_url = url;
    }
  }
}

}  // namespace stub::http
