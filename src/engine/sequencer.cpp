#include "engine/sequencer.hpp"

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

void Sequencer::run() {
  std::vector<Pending> batch;
  batch.reserve(options_.batch_size_max);
  while (true) {
    {
      std::unique_lock lock(mutex_);
      work_available_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty())
        return;  // Stopping, and everything queued has been committed.
      take_batch(batch);
    }
    commit(batch);
    batch.clear();
  }
}

void Sequencer::take_batch(std::vector<Pending>& batch) {
  // A store that bounds a commit's rows gets batches whose worst case fits: each command's own
  // rows plus every distinct budget node on the batch's paths.
  const size_t row_bound = store_.max_rows_per_commit();
  size_t rows = 0;
  std::unordered_set<std::string> paths;
  while (!queue_.empty() && batch.size() < options_.batch_size_max) {
    const ledger::Command& command = queue_.front().command;
    if (row_bound > 0) {
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
        break;
      rows += added;
    }
    batch.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
}

void Sequencer::commit(std::vector<Pending>& batch) {
  assert(!batch.empty() && batch.size() <= options_.batch_size_max);
  if (failed_.load(std::memory_order_acquire)) {
    for (Pending& pending : batch) {
      pending.done(Error{ErrorCode::unavailable, "store_failed",
                         "The ledger stopped accepting writes: " + failure_reason()});
    }
    return;
  }
  std::vector<ledger::Command> commands;
  commands.reserve(batch.size());
  // Moved, not copied: from here on a Pending is only its callback.
  for (Pending& pending : batch)
    commands.push_back(std::move(pending.command));
  const ledger::ReadSet read = ledger::read_set_for(commands);

  const auto started = std::chrono::steady_clock::now();
  const ledger::Micros now = clock_();
  std::vector<ledger::Outcome> outcomes;
  auto entries = std::make_shared<std::vector<ledger::Entry>>();
  size_t entry_count = 0;
  // The store may call this more than once (after a write conflict); each call starts afresh
  // from the state it read.
  const auto apply = [&](ledger::WorkingSet& state) {
    outcomes.clear();
    outcomes.reserve(commands.size());
    for (const ledger::Command& command : commands) {
      outcomes.push_back(ledger::apply_command(state, command, now));
    }
    entry_count = state.new_entries.size();
  };
  // Asked only once the commit is visible: a subscriber that joined earlier gets this batch
  // published, one that joins later finds it in its backlog read. Moving the entries out is
  // only worth it when someone is listening.
  const auto committed = [&](ledger::WorkingSet& state) {
    if (events_ != nullptr && events_->subscriber_count() > 0)
      *entries = std::move(state.new_entries);
  };
  const Status status = store_.commit_batch(read, apply, committed);
  const auto elapsed = std::chrono::duration_cast<std::chrono::microseconds>(
                           std::chrono::steady_clock::now() - started)
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
  assert(outcomes.size() == batch.size());
  for (size_t i = 0; i < batch.size(); ++i)
    batch[i].done(std::move(outcomes[i]));
  if (options_.on_batch)
    options_.on_batch(BatchStats{batch.size(), entry_count, elapsed, true});
  if (!entries->empty())
    events_->publish(entries);
}

}  // namespace stub::engine
