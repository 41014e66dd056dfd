#include "engine/sequencer.hpp"

#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <future>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

namespace stub::engine {

ledger::Micros system_clock_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string_view health_state_name(HealthState state) {
  switch (state) {
    case HealthState::ok:
      return "ok";
    case HealthState::degraded:
      return "degraded";
    case HealthState::failed:
      return "failed";
  }
  return "failed";
}

size_t command_bytes(const ledger::Command& command) {
  // The text a command carries (what a caller controls the size of); the fixed part is counted
  // once as sizeof.
  size_t bytes = sizeof(ledger::Command);
  for (const std::string* text :
       {&command.root, &command.actor, &command.idempotency_key, &command.request_hash,
        &command.budget, &command.vendor, &command.intent, &command.tags_json,
        &command.receipt_json, &command.hold_id, &command.reason, &command.key.id,
        &command.key.budget, &command.key.name, &command.key.secret_hash, &command.webhook.name}) {
    bytes += text->size();
  }
  bytes += command.webhook.url.value_or("").size() + command.webhook.secret.value_or("").size();
  bytes += command.vendor_settings.name.size() +
           command.vendor_settings.settings_patch_json.size() +
           command.vendor_settings.credential.value_or("").size();
  if (command.webhook.events) {
    for (const std::string& event : *command.webhook.events)
      bytes += event.size() + sizeof(std::string);
  }
  return bytes;
}

namespace {

// The answers a caller gets for a failed commit: fixed sentences (no driver text), with the
// incident id the store's text was logged under.
Error unavailable_answer(const std::string& subcode, const std::string& incident) {
  if (subcode == "storage_full") {
    return Error{ErrorCode::unavailable, "storage_full",
                 "The database's disk is full and nothing was recorded; retry with the same "
                 "Idempotency-Key once space is freed (incident " +
                     incident + ")."};
  }
  if (subcode == "outcome_unknown") {
    return Error{ErrorCode::unavailable, "outcome_unknown",
                 "The connection to the database was lost while the commit was in flight and "
                 "its outcome is not known yet; retry with the same Idempotency-Key (incident " +
                     incident + ")."};
  }
  return Error{ErrorCode::unavailable, "store_unavailable",
               "The database is unreachable and nothing was recorded; retry with the same "
               "Idempotency-Key (incident " +
                   incident + ")."};
}

bool refused_data(const Error& error) {
  return error.subcode == "invalid_data" || error.subcode == "hold_id_exists";
}

bool unavailable_for_now(const Error& error) {
  return error.code == ErrorCode::unavailable &&
         (error.subcode == "store_unavailable" || error.subcode == "outcome_unknown" ||
          error.subcode == "storage_full");
}

}  // namespace

std::string Sequencer::log_incident(const Error& error) {
  unsigned char bytes[6];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    std::memcpy(bytes, &now, sizeof bytes);
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string incident = "inc_";
  for (unsigned char byte : bytes) {
    incident += hex[byte >> 4];
    incident += hex[byte & 15];
  }
  spdlog::error("store incident {}: {} ({})", incident, error.message, error.subcode);
  return incident;
}

void Sequencer::set_degraded(std::string reason, std::string incident) {
  std::lock_guard lock(mutex_);
  degraded_reason_ = std::move(reason);
  incident_ = std::move(incident);
  degraded_.store(true, std::memory_order_release);
}

void Sequencer::set_healthy() {
  if (!degraded_.load(std::memory_order_acquire))
    return;
  std::lock_guard lock(mutex_);
  spdlog::info("store recovered: writes resume (after incident {})", incident_);
  degraded_reason_.clear();
  incident_.clear();
  degraded_.store(false, std::memory_order_release);
}

namespace {
int64_t steady_micros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

Health Sequencer::health() const {
  std::lock_guard lock(mutex_);
  if (failed_.load(std::memory_order_relaxed))
    return Health{HealthState::failed, failure_reason_, incident_};
  if (degraded_.load(std::memory_order_relaxed))
    return Health{HealthState::degraded, degraded_reason_, incident_};
  const int64_t since = waiting_since_micros_.load(std::memory_order_acquire);
  const auto waited = std::chrono::microseconds(since == 0 ? 0 : steady_micros() - since);
  if (since != 0 && waited > options_.commit_wait_degraded) {
    return Health{HealthState::degraded,
                  "A commit has been waiting on the database for " +
                      std::to_string(waited.count() / 1'000'000) + " s.",
                  ""};
  }
  return Health{};
}

Sequencer::Sequencer(store::Store& store, Clock clock, SequencerOptions options, EventBus* events)
    : store_(store), clock_(std::move(clock)), options_(std::move(options)), events_(events) {
  assert(options_.batch_size_max > 0 && options_.queue_capacity >= options_.batch_size_max);
  assert(options_.render);
  committer_ = std::thread([this] { run(); });
}

Sequencer::~Sequencer() {
  stop();
}

void Sequencer::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !committer_.joinable())
      return;
    stopping_ = true;
  }
  work_available_.notify_all();
  if (committer_.joinable())
    committer_.join();
}

std::string Sequencer::failure_reason() const {
  std::lock_guard lock(mutex_);
  return failure_reason_;
}

size_t Sequencer::queue_depth() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

size_t Sequencer::queue_bytes() const {
  std::lock_guard lock(mutex_);
  return queue_bytes_;
}

void Sequencer::submit(ledger::Command command, Callback done) {
  assert(done);
  std::optional<Error> refusal;
  const size_t bytes = command_bytes(command);
  {
    std::lock_guard lock(mutex_);
    if (failed_.load(std::memory_order_relaxed)) {
      refusal = Error{ErrorCode::unavailable, "store_failed",
                      "The ledger stopped accepting writes: " + failure_reason_};
    } else if (stopping_) {
      refusal = Error{ErrorCode::unavailable, "shutting_down", "The server is shutting down."};
    } else if (queue_.size() >= options_.queue_capacity ||
               queue_bytes_ + bytes > options_.queue_bytes_max) {
      refusal = Error{ErrorCode::overloaded, "overloaded",
                      "Too many requests are waiting to commit; retry with the same "
                      "Idempotency-Key."};
    } else {
      queue_bytes_ += bytes;
      queue_.push_back(Pending{std::move(command), std::move(done), bytes});
    }
    assert(queue_bytes_ <= options_.queue_bytes_max);
  }
  if (refusal) {
    done(*refusal);
    return;
  }
  work_available_.notify_one();
}

ledger::Outcome Sequencer::execute(ledger::Command command) {
  std::promise<ledger::Outcome> promise;
  std::future<ledger::Outcome> future = promise.get_future();
  submit(std::move(command),
         [&promise](ledger::Outcome outcome) { promise.set_value(std::move(outcome)); });
  return future.get();
}

struct Sequencer::Flight {
  std::vector<Pending> batch;  // the callbacks; the commands are moved out into `commands`
  std::vector<ledger::Command> commands;
  ledger::ReadSet read;
  ledger::Micros now = 0;
  std::vector<ledger::Outcome> outcomes;
  std::shared_ptr<std::vector<ledger::Entry>> entries =
      std::make_shared<std::vector<ledger::Entry>>();
  size_t entry_count = 0;
  std::chrono::steady_clock::time_point started;
  store::ApplyBatch apply;
  store::OnCommitted committed;
  std::unique_ptr<store::BatchInFlight> sent;
};

void Sequencer::run() {
  const size_t depth = std::max<size_t>(1, store_.pipeline_depth());
  parts_ = depth;
  std::deque<std::unique_ptr<Flight>> flights;  // in the order they were sent
  const auto finish_oldest = [&] {
    std::vector<Pending> refused = finish(*flights.front());
    flights.pop_front();
    if (refused.empty())
      return;
    // Committed again one at a time, after every batch in flight (they may rest on this one's
    // writes, and the store recomputes them): only the offending command fails.
    while (!flights.empty()) {
      std::vector<Pending> more = finish(*flights.front());
      flights.pop_front();
      std::move(more.begin(), more.end(), std::back_inserter(refused));
    }
    commit_alone(std::move(refused));
  };
  while (true) {
    if (flights.size() >= depth) {
      finish_oldest();
      continue;
    }
    std::vector<Pending> batch;
    batch.reserve(options_.batch_size_max);
    {
      std::unique_lock lock(mutex_);
      if (flights.empty()) {
        // While degraded, an idle committer probes the store now and then, so that health
        // turns ok (and an unknown commit is settled) without waiting for a caller.
        while (!stopping_ && queue_.empty() && degraded_.load(std::memory_order_acquire)) {
          if (work_available_.wait_for(lock, options_.probe_interval,
                                       [&] { return stopping_ || !queue_.empty(); })) {
            break;
          }
          lock.unlock();
          const Status probed = store_.probe();
          if (probed.ok())
            set_healthy();
          lock.lock();
        }
        work_available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      }
      if (queue_.empty()) {
        if (flights.empty())
          return;  // Stopping, and everything queued has been committed.
        lock.unlock();
        finish_oldest();  // Nothing new to send meanwhile.
        continue;
      }
      // Pipelined, each batch takes its share of everything outstanding, so that batches in
      // flight stay even: one decided and sent while the other commits. (A closed loop of
      // callers otherwise settles into one batch of nearly all of them and one of a few, and
      // the store idles while the big one is decided.)
      // And, when only part of the queue goes, mostly commands of one part of the budgets (one
      // part per batch in flight, in turn): batches in flight then share their paths' common
      // ancestors rather than every agent's row (a shared row is written by both, in turn).
      size_t limit = options_.batch_size_max;
      std::optional<size_t> prefer;
      // A store committing one batch at a time for now (PostgreSQL on its locked path, while
      // instances contend for a root) gets the whole queue: halves would only double the
      // batches that wait their turn for the root's lock.
      const size_t depth_now =
          flights.empty() ? std::clamp<size_t>(store_.pipeline_depth_now(), 1, depth) : depth;
      if (depth_now > 1) {
        size_t outstanding = queue_.size();
        for (const auto& flight : flights)
          outstanding += flight->batch.size();
        limit = std::min(limit, std::max<size_t>(1, (outstanding + depth - 1) / depth));
        prefer = batches_taken_++ % depth;
      }
      take_batch(batch, limit, prefer);
    }
    if (auto flight = send(std::move(batch), flights))
      flights.push_back(std::move(flight));
  }
}

void Sequencer::take_batch(std::vector<Pending>& batch, size_t limit,
                           std::optional<size_t> prefer) {
  // A store that bounds a commit's rows gets batches whose worst case fits: each command's own
  // rows plus every distinct budget node on the batch's paths.
  const size_t row_bound = store_.max_rows_per_commit();
  size_t rows = 0;
  std::unordered_set<std::string> paths;
  const auto fits = [&](const ledger::Command& command) {
    if (row_bound == 0)
      return true;
    size_t added = ledger::rows_written_max(command);
    if (!paths.contains(command.budget)) {
      for (std::string_view path : ledger::lineage_paths(command.budget)) {
        if (paths.emplace(path).second)
          ++added;
      }
    }
    if (command.kind == ledger::CommandKind::create_key)
      added += ledger::lineage_paths(command.key.budget).size();
    if (!batch.empty() && rows + added > row_bound)
      return false;
    rows += added;
    return true;
  };
  const auto take = [&](Pending& pending) {
    assert(queue_bytes_ >= pending.bytes);
    queue_bytes_ -= pending.bytes;
    batch.push_back(std::move(pending));
  };
  if (!prefer || queue_.size() <= limit) {
    while (!queue_.empty() && batch.size() < limit && fits(queue_.front().command)) {
      take(queue_.front());
      queue_.pop_front();
    }
    return;
  }
  // Only part of the queue goes: first the commands of the preferred part of the budgets, then
  // the others, each in arrival order. Every budget's commands still leave in arrival order (a
  // prefix of them each time), and the batches in flight share fewer rows.
  bool full = false;
  for (const bool preferred_pass : {true, false}) {
    std::deque<Pending> left;
    for (Pending& pending : queue_) {
      const bool preferred = budget_part(pending.command.budget, parts_) == *prefer;
      if (!full && (preferred || !preferred_pass)) {
        full = batch.size() >= limit || !fits(pending.command);
        if (!full) {
          take(pending);
          continue;
        }
      }
      left.push_back(std::move(pending));
    }
    queue_ = std::move(left);
  }
}

size_t Sequencer::budget_part(const std::string& budget, size_t parts) {
  return std::hash<std::string>{}(budget) % parts;
}

std::unique_ptr<Sequencer::Flight> Sequencer::send(std::vector<Pending> batch,
                                                   std::deque<std::unique_ptr<Flight>>& flights) {
  assert(!batch.empty() && batch.size() <= options_.batch_size_max);
  if (failed_.load(std::memory_order_acquire)) {
    for (Pending& pending : batch) {
      pending.done(Error{ErrorCode::unavailable, "store_failed",
                         "The ledger stopped accepting writes: " + failure_reason()});
    }
    return nullptr;
  }
  auto flight = std::make_unique<Flight>();
  Flight& f = *flight;
  f.batch = std::move(batch);
  f.commands.reserve(f.batch.size());
  // Moved, not copied: from here on a Pending is only its callback.
  for (Pending& pending : f.batch)
    f.commands.push_back(std::move(pending.command));
  f.read = ledger::read_set_for(f.commands);
  f.started = std::chrono::steady_clock::now();
  f.now = clock_();
  // The store may call this more than once (after a write conflict); each call starts afresh
  // from the state it read.
  f.apply = [&f, &render = options_.render](ledger::WorkingSet& state) {
    f.outcomes.clear();
    f.outcomes.reserve(f.commands.size());
    for (const ledger::Command& command : f.commands)
      f.outcomes.push_back(ledger::apply_command(state, command, f.now, render));
    f.entry_count = state.new_entries.size();
  };
  // Asked only once the commit is visible: a subscriber that joined earlier gets this batch
  // published, one that joins later finds it in its backlog read. Moving the entries out is
  // only worth it when someone is listening.
  f.committed = [this, &f](ledger::WorkingSet& state) {
    if (events_ != nullptr && events_->subscriber_count() > 0)
      *f.entries = std::move(state.new_entries);
  };
  // A store of depth one commits inside send_batch: that wait counts for health() too.
  const auto send_to_store = [&] {
    waiting_since_micros_.store(steady_micros(), std::memory_order_release);
    f.sent = store_.send_batch(f.read, f.apply, f.committed);
    waiting_since_micros_.store(0, std::memory_order_release);
  };
  send_to_store();
  if (!f.sent) {
    // It depends on what the batches in flight leave behind: let them land first.
    std::vector<Pending> refused;
    while (!flights.empty()) {
      std::vector<Pending> more = finish(*flights.front());
      flights.pop_front();
      std::move(more.begin(), more.end(), std::back_inserter(refused));
    }
    commit_alone(std::move(refused));
    send_to_store();
    assert(f.sent);
  }
  return flight;
}

void Sequencer::commit_alone(std::vector<Pending> batch) {
  std::deque<std::unique_ptr<Flight>> none;
  for (Pending& pending : batch) {
    std::vector<Pending> one;
    one.push_back(std::move(pending));
    if (auto flight = send(std::move(one), none)) {
      std::vector<Pending> refused = finish(*flight);
      assert(refused.empty());  // A batch of one is answered, never split again.
    }
  }
}

std::vector<Sequencer::Pending> Sequencer::finish(Flight& flight) {
  std::vector<Pending>& batch = flight.batch;
  waiting_since_micros_.store(steady_micros(), std::memory_order_release);
  const Status status = store_.finish_batch(*flight.sent);
  waiting_since_micros_.store(0, std::memory_order_release);
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - flight.started)
                           .count();
  const auto report_failed = [&] {
    if (options_.on_batch)
      options_.on_batch(BatchStats{batch.size(), 0, elapsed, false});
  };

  if (!status.ok() && status.error().code == ErrorCode::overloaded) {
    // Nothing committed and the store is healthy (it gave up retrying write conflicts): the
    // callers may retry with the same Idempotency-Key.
    for (Pending& pending : batch)
      pending.done(status.error());
    report_failed();
    return {};
  }
  if (!status.ok() && refused_data(status.error())) {
    // One command's data (a NUL byte, invalid UTF-8, an id that exists) made the database
    // refuse the whole batch, and nothing committed. Which one, only a batch of one tells.
    if (batch.size() > 1) {
      assert(flight.commands.size() == batch.size());
      for (size_t i = 0; i < batch.size(); ++i)
        batch[i].command = std::move(flight.commands[i]);
      report_failed();
      return std::move(batch);
    }
    Error answer = status.error();
    if (answer.subcode == "invalid_data") {
      const std::string incident = log_incident(status.error());
      answer.message = "The database refused this request's data (incident " + incident + ").";
    }
    batch.front().done(std::move(answer));
    report_failed();
    set_healthy();  // The database answered: it is reachable.
    return {};
  }
  if (!status.ok() && unavailable_for_now(status.error())) {
    // The database is unreachable (nothing recorded) or the commit's outcome is unknown: the
    // store keeps reconnecting, and callers retry with their Idempotency-Keys.
    const std::string incident = log_incident(status.error());
    const std::string& subcode = status.error().subcode;
    set_degraded(subcode == "outcome_unknown"
                     ? "A commit's outcome is unknown: the database connection was lost."
                 : subcode == "storage_full"
                     ? "The database's disk is full; writes resume when space is freed."
                     : "The database is unreachable; writes resume when it is back.",
                 incident);
    for (Pending& pending : batch)
      pending.done(unavailable_answer(status.error().subcode, incident));
    report_failed();
    return {};
  }
  if (!status.ok()) {
    // Never acknowledge what did not commit, and never carry on after a failed commit: the
    // store's state is unknown until an operator looks (LevelDB's background-error mode).
    const std::string incident = log_incident(status.error());
    {
      std::lock_guard lock(mutex_);
      failure_reason_ = "A commit failed (incident " + incident + "); see the server log.";
      incident_ = incident;
      failed_.store(true, std::memory_order_release);
    }
    for (Pending& pending : batch) {
      pending.done(Error{ErrorCode::unavailable, "store_failed",
                         "The commit failed and the ledger stopped accepting writes (incident " +
                             incident + ")."});
    }
    report_failed();
    return {};
  }
  set_healthy();
  assert(flight.outcomes.size() == batch.size());
  for (size_t i = 0; i < batch.size(); ++i)
    batch[i].done(std::move(flight.outcomes[i]));
  if (options_.on_batch)
    options_.on_batch(BatchStats{batch.size(), flight.entry_count, elapsed, true});
  if (!flight.entries->empty())
    events_->publish(flight.entries);
  return {};
}

}  // namespace stub::engine
