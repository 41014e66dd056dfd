#pragma once

// The batching sequencer: the one way money moves. Commands queue in arrival order; one
// committer thread takes everything queued (up to batch_size_max), decides each command IN
// ORDER with the pure core against state read in the same transaction, commits the batch in ONE
// transaction, and only then answers each caller and publishes the committed entries. At low
// load a batch is one command; under a runaway fleet it is hundreds, and each hot budget row is
// written once per batch instead of once per spend.
//
// Thread safety: submit() may be called from any thread. Callbacks run on the committer thread
// and must not block (post to your own executor).
//
// A store with a pipeline depth above one (PostgreSQL) lets the committer send the next batch
// while the previous one is still committing; batches are still answered in order, and only
// once committed.
//
// What a failed commit means depends on how it failed (health() says which state it left):
// - the batch's data was refused (invalid_data, hold_id_exists): the batch is committed again
//   one command at a time, so only the offending command fails; the store is fine;
// - the database is unreachable and nothing was recorded (store_unavailable), or the outcome
//   is unknown (outcome_unknown): the callers get a 503 to retry with the same
//   Idempotency-Key, and the sequencer is `degraded`: it probes the store while idle and is
//   `ok` again after the next commit or probe that works;
// - anything else (a local I/O error, a bug): the sequencer `failed` and takes no more writes
//   (LevelDB's background-error mode).
// Driver text never reaches a caller or health(): it is logged with an incident id, and the
// answer carries the id.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "engine/event_bus.hpp"
#include "ledger/batch.hpp"
#include "ledger/command.hpp"
#include "store/store.hpp"

namespace stub::engine {

using Clock = std::function<ledger::Micros()>;
ledger::Micros system_clock_micros();

struct BatchStats {
  size_t commands = 0;
  size_t entries = 0;
  int64_t commit_micros = 0;
  bool ok = true;
};

struct SequencerOptions {
  size_t queue_capacity = 65'536;  // commands waiting; beyond this submit answers "overloaded"
  // The bytes of the commands waiting (their text: tags, receipts, intents...); beyond this
  // submit answers "overloaded" too, so that large bodies cannot exhaust memory within the
  // count.
  size_t queue_bytes_max = 256 * 1024 * 1024;
  // While degraded and idle, how often the store is probed.
  std::chrono::milliseconds probe_interval{500};
  // A commit waiting on the store longer than this makes health() say degraded meanwhile (a
  // database that stopped answering shows before the store gives the batch up).
  std::chrono::milliseconds commit_wait_degraded{5'000};
  size_t batch_size_max = 1'024;  // commands per transaction
  // Required: turns each command's typed answer into what its caller receives, before the batch
  // commits, so that an idempotency record keeps exactly those bytes. The edge's renderer
  // (http::render_answer) is given where the server is assembled; the engine never renders.
  ledger::AnswerRenderer render;
  std::function<void(const BatchStats&)> on_batch;  // metrics hook, runs on the committer
};

enum class HealthState { ok, degraded, failed };

struct Health {
  HealthState state = HealthState::ok;
  std::string reason;    // a fixed sentence, never driver text; empty when ok
  std::string incident;  // the id under which the driver's text was logged, if any
};

std::string_view health_state_name(HealthState state);

// The bytes a queued command holds, for the queue's byte bound.
size_t command_bytes(const ledger::Command& command);

class Sequencer {
 public:
  using Callback = std::function<void(ledger::Outcome)>;

  Sequencer(store::Store& store, Clock clock, SequencerOptions options, EventBus* events);
  Sequencer(const Sequencer&) = delete;
  Sequencer& operator=(const Sequencer&) = delete;
  // Commits what is queued, then stops.
  ~Sequencer();

  // Queues a command. When the queue is full or the store has failed, `done` is called at once
  // (on this thread) with an overloaded or unavailable Error.
  void submit(ledger::Command command, Callback done);

  // Blocking convenience for the CLI, tests and the sweeper.
  ledger::Outcome execute(ledger::Command command);

  void stop();
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  std::string failure_reason() const;
  Health health() const;
  size_t queue_depth() const;
  size_t queue_bytes() const;

 private:
  struct Pending {
    ledger::Command command;
    Callback done;
    size_t bytes = 0;
  };

  // One batch from the queue to its answers: what its callers asked, what the store decided,
  // and the store's handle while it is in flight. Heap-allocated, so the closures the store
  // keeps may point into it.
  struct Flight;

  void run();
  // Moves the next batch (at most `limit` commands) off the queue (caller holds mutex_),
  // commands whose budget is in part `prefer` of the budgets (by hash) first, when given.
  void take_batch(std::vector<Pending>& batch, size_t limit, std::optional<size_t> prefer);
  static size_t budget_part(const std::string& budget, size_t parts);
  // Hands a batch to the store (deciding it); nullptr if it was answered at once.
  std::unique_ptr<Flight> send(std::vector<Pending> batch, std::deque<std::unique_ptr<Flight>>&);
  // Waits for a batch's commit and answers its callers; a batch whose data the store refused
  // comes back (its commands restored), to be committed again one command at a time.
  std::vector<Pending> finish(Flight& flight);
  // Commits each of `batch` on its own, with nothing else in flight.
  void commit_alone(std::vector<Pending> batch);
  // Logs a store error's text under a new incident id and returns the id.
  static std::string log_incident(const Error& error);
  void set_degraded(std::string reason, std::string incident);
  void set_healthy();

  store::Store& store_;
  Clock clock_;
  SequencerOptions options_;
  EventBus* events_;

  mutable std::mutex mutex_;
  std::condition_variable work_available_;
  std::deque<Pending> queue_;    // GUARDED_BY(mutex_)
  size_t queue_bytes_ = 0;       // GUARDED_BY(mutex_)
  bool stopping_ = false;        // GUARDED_BY(mutex_)
  std::string failure_reason_;   // GUARDED_BY(mutex_)
  std::string degraded_reason_;  // GUARDED_BY(mutex_); empty when not degraded
  std::string incident_;         // GUARDED_BY(mutex_)
  std::atomic<bool> degraded_{false};
  // When the commit being waited for started (steady clock, microseconds), 0 when none is.
  std::atomic<int64_t> waiting_since_micros_{0};
  size_t batches_taken_ = 0;  // committer thread only
  size_t parts_ = 1;          // committer thread only
  std::atomic<bool> failed_{false};
  std::thread committer_;
};

}  // namespace stub::engine
