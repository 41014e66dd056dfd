#pragma once

// Webhook deliveries, on their own thread, never on the spend path. The dispatcher reads the
// COMMITTED entries of each webhook's root after the webhook's cursor (the entries table is the
// durable log), turns the events a webhook subscribed to into delivery records and moves the
// cursor in one write of the delivery log, then POSTs each due delivery with a Stub-Signature
// header and records the outcome. A failed attempt is retried with exponential backoff (1 s,
// 2 s, 4 s ... capped at 1 h, 10 attempts). A crash at any point repeats deliveries, never
// loses them: at least once, with a stable event id for receivers to drop repeats.
//
// Several instances on one database each run a dispatcher; a webhook is served by the one
// holding its lease (renewed every pass, 30 s), so deliveries are normally sent once. The event
// bus only wakes the dispatcher early (it listens only while some webhook exists); it polls
// too, to see other instances' commits.
//
// Thread safety: construct and destroy on one thread; the event bus may call in from any.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "engine/event_bus.hpp"
#include "engine/sequencer.hpp"
#include "store/store.hpp"

namespace stub::webhooks {

struct DispatcherOptions {
  std::chrono::milliseconds poll_interval{1'000};
  std::chrono::milliseconds attempt_deadline{5'000};  // connect + send + answer, per attempt
  std::chrono::seconds lease{30};
  int64_t attempts_max = 10;
  ledger::Micros first_retry = ledger::micros_per_second;
  ledger::Micros retry_max = 3'600 * ledger::micros_per_second;
  // At most one budget_exceeded event per webhook and budget in this long (by entry time).
  ledger::Micros budget_exceeded_interval = 60 * ledger::micros_per_second;
  size_t entries_per_pass_max = 500;
  size_t sends_per_pass_max = 50;
};

class Dispatcher {
 public:
  Dispatcher(store::Store& store, engine::EventBus& events, engine::Clock clock,
             DispatcherOptions options);
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;
  ~Dispatcher();

  // One pass over every webhook (tests drive it directly; the thread calls it in a loop).
  // Returns whether there is more to do at once.
  bool pass();

 private:
  void run();
  void listen(bool wanted);
  bool serve(const ledger::Webhook& webhook, ledger::Micros now);
  void attempt(const ledger::Webhook& webhook, store::WebhookDelivery delivery);

  store::Store& store_;
  engine::EventBus& events_;
  engine::Clock clock_;
  DispatcherOptions options_;
  const std::string owner_;    // this instance, for leases
  const bool live_;            // runs its own thread (else tests drive pass())
  uint64_t subscription_ = 0;  // dispatcher thread (and the destructor, after it ended)
  // Last budget_exceeded event sent per (webhook, budget), by entry time. Dispatcher thread.
  std::map<std::pair<std::string, std::string>, ledger::Micros> last_budget_exceeded_;

  std::mutex mutex_;
  std::condition_variable wake_;
  bool woken_ = false;     // GUARDED_BY(mutex_)
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace stub::webhooks
