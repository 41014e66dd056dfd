#pragma once

// One running Stub: store, sequencer, hold sweeper, API and HTTP server, started in that order
// and stopped in reverse. `stub serve`, `stub demo`, the benchmarks and the tests all use it.

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "checkpoints/checkpoint_signer.hpp"
#include "engine/event_bus.hpp"
#include "engine/hold_sweeper.hpp"
#include "engine/idempotency_pruner.hpp"
#include "engine/sequencer.hpp"
#include "http/api.hpp"
#include "http/credentials.hpp"
#include "http/metrics.hpp"
#include "http/replays.hpp"
#include "http/root_leadership.hpp"
#include "http/server.hpp"
#include "http/sessions.hpp"
#include "store/store.hpp"
#include "webhooks/dispatcher.hpp"

namespace stub::http {

struct ServiceOptions {
  std::string db;                            // a path, sqlite:PATH or postgres://...
  std::string isolation = "read-committed";  // PostgreSQL only
  std::string admin_token;                   // empty: generate one
  ServerOptions server;
  engine::SequencerOptions sequencer;
  size_t read_threads = 4;
  std::chrono::milliseconds sweep_interval{1'000};
  engine::PrunerOptions retention;       // idempotency records: kept 7 days by default
  webhooks::DispatcherOptions webhooks;  // poll_interval 0: no delivery thread
  engine::Clock clock = engine::system_clock_micros;
  bool listen = true;       // false: no HTTP server (in-process benchmarks)
  SessionOptions sessions;  // the dashboard's browser sessions
  // Runs the dashboard's runaway replays (src/loadgen plugs it in); null: none.
  std::function<std::unique_ptr<ReplayRunner>()> replays;
  // Signed checkpoints: a key turns the signer on (docs/design.md, "Signed checkpoints").
  std::optional<checkpoints::SigningKey> signing_key;
  checkpoints::SignerOptions checkpoints;
  // Seals vendor credentials at rest (docs/proxy.md); none: vendors cannot be given one.
  std::optional<proxy::SecretBox> secret_box;
  // Root leadership (docs/postgres.md, "Root leaders"): with several instances on one
  // PostgreSQL, one instance commits for each contended root and the others forward its writes
  // to it at this URL. Empty: http://ADDRESS:PORT when listening on a loopback address, else no
  // leadership at all (this instance neither leads nor forwards).
  std::string advertise_url;
  bool forward = true;  // false: every write commits here, as before leadership existed
  LeadershipOptions leadership;
};

class Service {
 public:
  static Result<std::unique_ptr<Service>> start(ServiceOptions options);
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;
  ~Service();

  uint16_t port() const { return port_; }
  const std::string& admin_token() const { return admin_token_; }
  bool admin_token_generated() const { return admin_token_generated_; }
  store::Store& store() { return *store_; }
  // The URL this instance takes forwarded writes at; empty when it has no leadership.
  const std::string& advertised_url() const { return advertised_url_; }
  engine::Sequencer& sequencer() { return *sequencer_; }
  engine::EventBus& events() { return events_; }
  // The checkpoint signer's public key; null when no key was given.
  const checkpoints::VerifyingKey* checkpoint_key() const {
    return signer_ ? &signer_->public_key() : nullptr;
  }
  checkpoints::CheckpointSigner* checkpoint_signer() { return signer_.get(); }
  void stop();

 private:
  Service() = default;
  // Opens the root leases and starts the lookups, once the port is known.
  void start_leadership(const std::string& advertise_url, const std::string& address);

  std::string admin_token_;
  bool admin_token_generated_ = false;
  uint16_t port_ = 0;
  std::unique_ptr<store::Store> store_;
  engine::EventBus events_;
  Metrics metrics_;
  std::optional<proxy::SecretBox> secret_box_;
  // Before the sequencer: its committer reports foreign writes to it until it stops.
  std::unique_ptr<RootLeadership> leadership_;
  std::string advertised_url_;
  std::unique_ptr<engine::Sequencer> sequencer_;
  std::unique_ptr<engine::HoldSweeper> sweeper_;
  std::unique_ptr<engine::IdempotencyPruner> pruner_;
  std::unique_ptr<webhooks::Dispatcher> dispatcher_;
  std::unique_ptr<checkpoints::CheckpointSigner> signer_;
  std::unique_ptr<boost::asio::thread_pool> read_pool_;
  std::unique_ptr<Authenticator> authenticator_;
  std::unique_ptr<SessionStore> sessions_;
  std::unique_ptr<ReplayRunner> replays_;
  std::unique_ptr<Api> api_;
  std::unique_ptr<Server> server_;
};

}  // namespace stub::http
