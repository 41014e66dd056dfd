#include "engine/sequencer.hpp"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <future>
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

Sequencer::Sequencer(store::Store& store, Clock clock, SequencerOptions options, EventBus* events)
    : store_(store), clock_(std::move(clock)), options_(std::move(options)), events_(events) {
  assert(options_.batch_size_max > 0 && options_.queue_capacity >= options_.batch_size_max);
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

void Sequencer::submit(ledger::Command command, Callback done) {
  assert(done);
  std::optional<Error> refusal;
  {
    std::lock_guard lock(mutex_);
    if (failed_.load(std::memory_order_relaxed)) {
      refusal = Error{ErrorCode::unavailable, "store_failed",
                      "The ledger stopped accepting writes: " + failure_reason_};
    } else if (stopping_) {
      refusal = Error{ErrorCode::unavailable, "shutting_down", "The server is shutting down."};
    } else if (queue_.size() >= options_.queue_capacity) {
      refusal = Error{ErrorCode::overloaded, "overloaded",
                      "Too many requests are waiting to commit; retry with the same "
                      "Idempotency-Key."};
    } else {
      queue_.push_back(Pending{std::move(command), std::move(done)});
    }
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
    finish(*flights.front());
    flights.pop_front();
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
      if (flights.empty())
        work_available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
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
      if (depth > 1) {
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
  if (!prefer || queue_.size() <= limit) {
    while (!queue_.empty() && batch.size() < limit && fits(queue_.front().command)) {
      batch.push_back(std::move(queue_.front()));
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
          batch.push_back(std::move(pending));
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
  f.apply = [&f](ledger::WorkingSet& state) {
    f.outcomes.clear();
    f.outcomes.reserve(f.commands.size());
    for (const ledger::Command& command : f.commands)
      f.outcomes.push_back(ledger::apply_command(state, command, f.now));
    f.entry_count = state.new_entries.size();
  };
  // Asked only once the commit is visible: a subscriber that joined earlier gets this batch
  // published, one that joins later finds it in its backlog read. Moving the entries out is
  // only worth it when someone is listening.
  f.committed = [this, &f](ledger::WorkingSet& state) {
    if (events_ != nullptr && events_->subscriber_count() > 0)
      *f.entries = std::move(state.new_entries);
  };
  f.sent = store_.send_batch(f.read, f.apply, f.committed);
  if (!f.sent) {
    // It depends on what the batches in flight leave behind: let them land first.
    while (!flights.empty()) {
      finish(*flights.front());
      flights.pop_front();
    }
    f.sent = store_.send_batch(f.read, f.apply, f.committed);
    assert(f.sent);
  }
  return flight;
}

void Sequencer::finish(Flight& flight) {
  std::vector<Pending>& batch = flight.batch;
  const Status status = store_.finish_batch(*flight.sent);
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - flight.started)
                           .count();

  if (!status.ok() && status.error().code == ErrorCode::overloaded) {
    // Nothing committed and the store is healthy (it gave up retrying write conflicts): the
    // callers may retry with the same Idempotency-Key.
    for (Pending& pending : batch)
      pending.done(status.error());
    if (options_.on_batch)
      options_.on_batch(BatchStats{batch.size(), 0, elapsed, false});
    return;
  }
  if (!status.ok()) {
    // Never acknowledge what did not commit, and never carry on after a failed commit: the
    // store's state is unknown until an operator looks (LevelDB's background-error mode).
    {
      std::lock_guard lock(mutex_);
      failure_reason_ = status.error().message;
      failed_.store(true, std::memory_order_release);
    }
    for (Pending& pending : batch) {
      pending.done(Error{ErrorCode::unavailable, "store_failed",
                         "The commit failed and nothing was recorded: " + status.error().message});
    }
    if (options_.on_batch)
      options_.on_batch(BatchStats{batch.size(), 0, elapsed, false});
    return;
  }
  assert(flight.outcomes.size() == batch.size());
  for (size_t i = 0; i < batch.size(); ++i)
    batch[i].done(std::move(flight.outcomes[i]));
  if (options_.on_batch)
    options_.on_batch(BatchStats{batch.size(), flight.entry_count, elapsed, true});
  if (!flight.entries->empty())
    events_->publish(flight.entries);
}

}  // namespace stub::engine
