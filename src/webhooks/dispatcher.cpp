#include "webhooks/dispatcher.hpp"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>

#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"
#include "webhooks/signature.hpp"

namespace stub::webhooks {

namespace {

std::string random_owner() {
  unsigned char bytes[8];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    return "owner-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "dispatcher-";
  for (unsigned char byte : bytes) {
    out += hex[byte >> 4];
    out += hex[byte & 15];
  }
  return out;
}

}  // namespace

Dispatcher::Dispatcher(store::Store& store, engine::EventBus& events, engine::Clock clock,
                       DispatcherOptions options)
    : store_(store),
      events_(events),
      clock_(std::move(clock)),
      options_(options),
      owner_(random_owner()),
      live_(options_.poll_interval.count() > 0) {
  assert(options_.attempts_max >= 1 && options_.first_retry > 0);
  if (!live_)
    return;  // driven by pass() alone (tests)
  thread_ = std::thread([this] { run(); });
}

Dispatcher::~Dispatcher() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable())
    thread_.join();
  if (subscription_ != 0)
    events_.unsubscribe(subscription_);
}

void Dispatcher::listen(bool wanted) {
  // Only while some webhook exists: a subscriber makes the sequencer copy and publish every
  // batch's entries, which a ledger without webhooks should not pay for.
  if (wanted && subscription_ == 0) {
    subscription_ = events_.subscribe([this](const engine::EntryBatch&) {
      {
        std::lock_guard lock(mutex_);
        woken_ = true;
      }
      wake_.notify_one();
    });
  } else if (!wanted && subscription_ != 0) {
    events_.unsubscribe(subscription_);
    subscription_ = 0;
  }
}

void Dispatcher::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    lock.unlock();
    bool more = false;
    try {
      more = pass();
    } catch (const std::exception& error) {
      spdlog::warn("webhooks: pass failed: {}", error.what());
    }
    lock.lock();
    if (!more) {
      wake_.wait_for(lock, options_.poll_interval, [&] { return stopping_ || woken_; });
    }
    woken_ = false;
  }
}

bool Dispatcher::pass() {
  auto webhooks = store_.list_webhooks();
  if (!webhooks.ok()) {
    spdlog::warn("webhooks: cannot list webhooks: {}", webhooks.error().message);
    return false;
  }
  if (live_)
    listen(!webhooks->empty());
  bool more = false;
  for (const ledger::Webhook& webhook : webhooks.value())
    more = serve(webhook, clock_()) || more;
  return more;
}

bool Dispatcher::serve(const ledger::Webhook& webhook, ledger::Micros now) {
  const ledger::Micros lease_until =
      now + std::chrono::duration_cast<std::chrono::microseconds>(options_.lease).count();
  auto claimed = store_.claim_webhook(webhook, owner_, now, lease_until);
  if (!claimed.ok()) {
    spdlog::warn("webhooks: cannot claim {}: {}", webhook.name, claimed.error().message);
    return false;
  }
  if (!claimed.value())
    return false;  // another instance serves it
  const int64_t cursor = *claimed.value();

  // Committed entries after the cursor become deliveries, with the cursor moved past them in
  // the same write: a crash before it repeats this step, never skips it.
  bool more = false;
  auto page = store_.list_entries(webhook.root, cursor, options_.entries_per_pass_max);
  if (!page.ok()) {
    spdlog::warn("webhooks: cannot read entries of {}: {}", webhook.root, page.error().message);
    return false;
  }
  if (!page->entries.empty()) {
    std::vector<store::WebhookDelivery> deliveries;
    for (const ledger::Entry& entry : page->entries) {
      for (const std::string& event : events_of(entry)) {
        if (!std::binary_search(webhook.events.begin(), webhook.events.end(), event))
          continue;
        if (event == "budget_exceeded") {
          ledger::Micros& last = last_budget_exceeded_[{webhook.name, entry.budget}];
          if (last != 0 && entry.ts - last < options_.budget_exceeded_interval)
            continue;
          last = entry.ts;
        }
        store::WebhookDelivery delivery;
        delivery.webhook = webhook.name;
        delivery.event_id = event_id(entry, event);
        delivery.root = entry.root;
        delivery.seq = entry.seq;
        delivery.event = event;
        delivery.payload = event_payload(entry, event);
        delivery.next_attempt_at = now;
        delivery.created_at = now;
        deliveries.push_back(std::move(delivery));
      }
    }
    if (Status status =
            store_.enqueue_deliveries(webhook.name, owner_, page->next_after, deliveries);
        !status.ok()) {
      spdlog::warn("webhooks: cannot record deliveries for {}: {}", webhook.name,
                   status.error().message);
      return false;
    }
    more = page->entries.size() == options_.entries_per_pass_max;
  }

  auto due = store_.due_deliveries(webhook.name, now, options_.sends_per_pass_max);
  if (!due.ok()) {
    spdlog::warn("webhooks: cannot list due deliveries of {}: {}", webhook.name,
                 due.error().message);
    return more;
  }
  for (store::WebhookDelivery& delivery : due.value())
    attempt(webhook, std::move(delivery));
  return more || due->size() == options_.sends_per_pass_max;
}

void Dispatcher::attempt(const ledger::Webhook& webhook, store::WebhookDelivery delivery) {
  assert(delivery.status == "pending");
  const ledger::Micros started = clock_();
  ++delivery.attempts;
  const std::vector<std::pair<std::string, std::string>> headers = {
      {std::string(signature_header),
       signature(webhook.secret, started / ledger::micros_per_second, delivery.payload)},
      {"Stub-Event", delivery.event},
      {"Stub-Event-Id", delivery.event_id},
      {"Stub-Delivery-Attempt", std::to_string(delivery.attempts)},
  };
  const PostResult result = post(webhook.url, headers, delivery.payload, options_.attempt_deadline);
  const ledger::Micros finished = clock_();
  delivery.last_status = result.status;
  delivery.last_error =
      result.ok() ? ""
                  : (result.error.empty() ? "HTTP " + std::to_string(result.status) : result.error);
  if (result.ok()) {
    delivery.status = "succeeded";
    delivery.delivered_at = finished;
  } else if (delivery.attempts >= options_.attempts_max) {
    delivery.status = "failed";
  } else {
    // 1 s, 2 s, 4 s ... after the first, second, third failure, capped.
    const int shift = static_cast<int>(std::min<int64_t>(delivery.attempts - 1, 40));
    const ledger::Micros wait =
        std::min(options_.retry_max, options_.first_retry << std::min(shift, 30));
    delivery.next_attempt_at = finished + wait;
  }
  if (Status status = store_.record_delivery(delivery); !status.ok()) {
    spdlog::warn("webhooks: cannot record the attempt at {}: {}", delivery.event_id,
                 status.error().message);
  }
}

}  // namespace stub::webhooks
