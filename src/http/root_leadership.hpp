#pragma once

// Which roots this instance should forward writes for, and to whom (docs/postgres.md, "Root
// leaders"). The store reports roots it finds written by other instances (contended); for a
// contended root the leader is looked up through the store's root leases (store/root_leases.hpp)
// on a thread of its own, taking the lease when no live instance holds it, and cached: a
// request never waits for the database here, it gets what the last lookup found (looked up
// again in the background once older than lookup_ttl). An uncontended root, a root this
// instance leads and a root with no known leader all commit here.
//
// Thread safety: every public method may be called from any thread; note_foreign_write comes
// from the committer and never blocks on the database.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "http/metrics.hpp"
#include "store/root_leases.hpp"

namespace stub::http {

struct LeadershipOptions {
  // A root counts as contended this long after the last write of another instance found on it,
  // or the last request forwarded for it (forwarding is what keeps the others' writes away, so
  // it must not end the contention it answers).
  std::chrono::milliseconds contended_for{10'000};
  // A lookup is trusted this long, then repeated in the background; one older than
  // stale_after (the lookups fell behind or failed) is not acted on.
  std::chrono::milliseconds lookup_ttl{1'000};
  std::chrono::milliseconds stale_after{3'000};
  // A leader that gave no answer is not forwarded to for this long (writes commit here).
  std::chrono::milliseconds unreachable_for{2'000};
  // After a failed lookup, the next one waits this long.
  std::chrono::milliseconds retry_after{500};
  size_t roots_max = 10'000;  // roots tracked; beyond it, a new contended root commits here
};

class RootLeadership {
 public:
  RootLeadership(Metrics& metrics, LeadershipOptions options);
  RootLeadership(const RootLeadership&) = delete;
  RootLeadership& operator=(const RootLeadership&) = delete;
  ~RootLeadership();

  // Starts the lookups with `leases` (this instance's). Until then nothing is forwarded.
  void start(std::unique_ptr<store::RootLeases> leases);
  // Ends the lookups and gives up every lease. Nothing is forwarded after it.
  void stop();
  bool active() const { return active_.load(std::memory_order_acquire); }

  // The store found rows of `root` that another instance wrote.
  void note_foreign_write(const std::string& root);
  // The URL of the leader a write on `root` should be forwarded to, or nullopt: commit here.
  std::optional<std::string> forward_target(const std::string& root);
  // The leader of `root` gave no answer: commit here for a while.
  void report_unreachable(const std::string& root);

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Clock::time_point contended_until{};
    Clock::time_point looked_up{};  // epoch: never
    bool lookup_pending = false;
    bool self = false;       // this instance holds the lease
    std::string leader_url;  // another instance's; empty: none known
    Clock::time_point unreachable_until{};
  };

  void run();
  // The entry of `root`, made if there is room (caller holds mutex_); nullptr if not.
  Entry* entry_for(const std::string& root, Clock::time_point now);
  // Queues a lookup of `root` (caller holds mutex_).
  void request_lookup(const std::string& root, Entry& entry);

  Metrics& metrics_;
  LeadershipOptions options_;
  std::atomic<bool> active_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::unordered_map<std::string, Entry> roots_;  // GUARDED_BY(mutex_)
  std::vector<std::string> pending_;              // GUARDED_BY(mutex_)
  bool stopping_ = false;                         // GUARDED_BY(mutex_)
  std::unique_ptr<store::RootLeases> leases_;     // the lookup thread only, once started
  std::thread thread_;
};

}  // namespace stub::http
