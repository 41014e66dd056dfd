#include "loadgen/server_replays.hpp"

#include <cassert>
#include <chrono>

#include "http/credentials.hpp"
#include "ledger/time_point.hpp"

namespace stub::loadgen {

namespace {

ledger::Micros wall_clock_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

RunawayOptions ServerReplays::watchable_options() {
  RunawayOptions options;
  options.pause = std::chrono::milliseconds(800);
  return options;
}

ServerReplays::ServerReplays(RunawayOptions options) : options_(options) {
  assert(options_.workers > 0);
}

ServerReplays::~ServerReplays() {
  stop();
}

void ServerReplays::bind(http::ReplayTarget target) {
  assert(target.port != 0);
  std::lock_guard lock(mutex_);
  target_ = std::move(target);
}

Result<http::ReplayStatus> ServerReplays::start(ledger::Micros now) {
  std::lock_guard lock(mutex_);
  if (!target_ || stopping_.load()) {
    return Error{ErrorCode::unavailable, "replay_unavailable",
                 "Replays are not available on this server right now."};
  }
  if (!running_.empty()) {
    return Error{ErrorCode::conflict, "replay_running",
                 "A replay is already running (" + running_ + "); wait for its summary."};
  }
  http::ReplayStatus status;
  status.id = "replay_" + http::random_hex(6);
  status.root = "runaway-" + status.id.substr(7);
  status.state = "preparing";
  status.started_at = now;
  status.workers = static_cast<int>(options_.workers);
  while (order_.size() >= http::ReplayRunner::replays_kept_max) {
    replays_.erase(order_.front());
    order_.erase(order_.begin());
  }
  replays_[status.id] = status;
  order_.push_back(status.id);
  running_ = status.id;
  // Finished threads are joined here, so at most one idle thread is ever kept.
  for (auto& thread : threads_) {
    if (thread.joinable())
      thread.join();
  }
  threads_.clear();
  threads_.emplace_back([this, id = status.id] { run(id); });
  return status;
}

std::optional<http::ReplayStatus> ServerReplays::status(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto found = replays_.find(id);
  if (found == replays_.end())
    return std::nullopt;
  return found->second;
}

void ServerReplays::stop() {
  stopping_.store(true);
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    threads.swap(threads_);
  }
  for (auto& thread : threads) {
    if (thread.joinable())
      thread.join();
  }
}

void ServerReplays::run(std::string id) {
  http::ReplayTarget target;
  std::string root;
  {
    std::lock_guard lock(mutex_);
    target = *target_;
    root = replays_.at(id).root;
  }
  auto fail = [this, &id](const std::string& message) {
    std::lock_guard lock(mutex_);
    http::ReplayStatus& status = replays_.at(id);
    status.state = "failed";
    status.error = message;
    status.finished_at = wall_clock_micros();
    running_.clear();
  };
  const Endpoint endpoint{target.host, std::to_string(target.port)};
  HttpClient admin(endpoint, target.admin_token);
  const std::string run_id = id.substr(7);
  auto team = seed_replay_org(admin, root, run_id);
  if (!team.ok())
    return fail(team.error().message);
  auto fleet = create_runaway_fleet(admin, *team, options_, run_id);
  if (!fleet.ok())
    return fail(fleet.error().message);

  const auto started = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(mutex_);
    replays_.at(id).state = "running";
  }
  auto on_event = [this, &id, started](const RunawayEvent& event) {
    const int64_t second =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started)
            .count();
    std::lock_guard lock(mutex_);
    http::ReplayStatus& status = replays_.at(id);
    while (status.seconds.empty() || status.seconds.back().second < second) {
      http::ReplaySecond next;
      next.second = status.seconds.empty() ? 0 : status.seconds.back().second + 1;
      status.seconds.push_back(next);
    }
    http::ReplaySecond& bucket = status.seconds.back();
    ++status.attempted;
    ++bucket.attempted;
    if (event.kind == RunawayEvent::Kind::committed) {
      ++status.committed;
      ++bucket.committed;
      status.committed_amount =
          ledger::Money::from_micros(options_.amount.micros() * status.committed).to_string();
    } else if (event.kind == RunawayEvent::Kind::refused) {
      ++status.refused;
      ++bucket.refused;
    } else {
      ++status.errors;
    }
    assert(status.attempted == status.committed + status.refused + status.errors);
  };
  const RunawaySummary summary =
      run_runaway(endpoint, *fleet, options_, run_id, admin, on_event, &stopping_);

  std::lock_guard lock(mutex_);
  http::ReplayStatus& status = replays_.at(id);
  status.state = "finished";
  status.finished_at = wall_clock_micros();
  status.attempted = summary.attempted;
  status.committed = summary.committed;
  status.refused = summary.refused;
  status.errors = summary.errors;
  status.committed_amount = summary.committed_amount.to_string();
  status.root_spent = summary.root_spent;
  status.root_limit = summary.root_limit;
  status.overspend = summary.overspend;
  status.chain_verified = summary.chain_verified;
  status.chain_checked = summary.chain_checked;
  status.head_hash = summary.head_hash;
  running_.clear();
}

}  // namespace stub::loadgen
