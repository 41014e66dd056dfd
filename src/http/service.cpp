#include "http/service.hpp"

#include "http/render.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/thread_pool.hpp>

namespace stub::http {

Result<std::unique_ptr<Service>> Service::start(ServiceOptions options) {
  std::unique_ptr<Service> service(new Service());
  store::StoreOptions store_options;
  store_options.read_connections = options.read_threads;
  store_options.isolation = options.isolation;
  auto store = store::open_store(options.db, store_options);
  if (!store.ok())
    return store.error();
  service->store_ = std::move(store).value();

  service->admin_token_generated_ = options.admin_token.empty();
  service->admin_token_ =
      options.admin_token.empty() ? "stub_admin_" + random_hex(24) : options.admin_token;

  Metrics* metrics = &service->metrics_;
  store::Store* store_ptr = service->store_.get();
  auto user_hook = options.sequencer.on_batch;
  options.sequencer.on_batch = [metrics, store_ptr, user_hook](const engine::BatchStats& stats) {
    metrics->record_batch(stats);
    metrics->record_store_events(store_ptr->event_counts());
    if (user_hook)
      user_hook(stats);
  };
  if (options.forward && options.listen) {
    service->leadership_ = std::make_unique<RootLeadership>(*metrics, options.leadership);
    RootLeadership* leadership = service->leadership_.get();
    service->store_->watch_foreign_writes(
        [leadership](const std::string& root) { leadership->note_foreign_write(root); });
  }
  // The HTTP edge renders what the core answers: the sequencer renders each answer with it
  // before the batch commits, so that idempotency records keep the bytes callers were sent.
  options.sequencer.render = render_answer;
  service->sequencer_ = std::make_unique<engine::Sequencer>(*service->store_, options.clock,
                                                            options.sequencer, &service->events_);
  service->sweeper_ = std::make_unique<engine::HoldSweeper>(*service->store_, *service->sequencer_,
                                                            options.clock, options.sweep_interval);
  if (options.retention.interval.count() > 0) {
    service->pruner_ = std::make_unique<engine::IdempotencyPruner>(*service->store_, options.clock,
                                                                   options.retention);
  }
  if (options.webhooks.poll_interval.count() > 0) {
    service->dispatcher_ = std::make_unique<webhooks::Dispatcher>(
        *service->store_, service->events_, options.clock, options.webhooks);
  }
  if (options.signing_key) {
    service->signer_ = std::make_unique<checkpoints::CheckpointSigner>(
        *service->store_, std::move(*options.signing_key), options.clock, options.checkpoints);
  }
  service->read_pool_ = std::make_unique<boost::asio::thread_pool>(options.read_threads);
  service->authenticator_ =
      std::make_unique<Authenticator>(service->admin_token_, *service->store_);
  service->sessions_ = std::make_unique<SessionStore>(options.sessions);
  if (options.replays)
    service->replays_ = options.replays();
  service->secret_box_ = std::move(options.secret_box);
  service->api_ = std::make_unique<Api>(ApiContext{
      *service->store_, *service->sequencer_, service->events_, *service->authenticator_,
      service->metrics_, *service->read_pool_, options.clock, *service->sessions_,
      service->replays_.get(), service->signer_ ? &service->signer_->public_key() : nullptr,
      service->secret_box_ ? &*service->secret_box_ : nullptr, service->leadership_.get()});
  if (options.listen) {
    service->server_ = std::make_unique<Server>(*service->api_, options.server);
    auto port = service->server_->start();
    if (!port.ok())
      return port.error();
    service->port_ = *port;
    if (service->leadership_)
      service->start_leadership(options.advertise_url, options.server.address);
    if (service->replays_) {
      // Replays reach this server over loopback when it listens on every address.
      const std::string host = options.server.address == "0.0.0.0" ? "127.0.0.1"
                               : options.server.address == "::"    ? "::1"
                                                                   : options.server.address;
      service->replays_->bind(ReplayTarget{host, service->port_, service->admin_token_});
    }
  }
  return service;
}

void Service::start_leadership(const std::string& advertise_url, const std::string& address) {
  std::string url = advertise_url;
  boost::system::error_code error;
  const auto bound = boost::asio::ip::make_address(address, error);
  if (url.empty() && !error && bound.is_loopback()) {
    url = "http://" + (bound.is_v6() ? "[" + address + "]" : address) + ":" + std::to_string(port_);
  }
  if (url.empty()) {
    spdlog::info(
        "root leadership off: no --advertise-url (and not listening on a loopback address), so "
        "this instance neither leads nor forwards");
    return;
  }
  const std::string instance = "inst_" + random_hex(8);
  auto leases = store_->open_root_leases(instance, url);
  if (!leases.ok()) {
    spdlog::warn("root leadership off: {}", leases.error().message);
    return;
  }
  if (!leases.value())
    return;  // The store has none (SQLite: one writer).
  advertised_url_ = url;
  leadership_->start(std::move(leases).value());
  spdlog::info("root leadership on: instance {} takes forwarded writes at {}", instance, url);
}

void Service::stop() {
  // Replays are clients of this server: they finish (cancelled) before it stops.
  if (replays_)
    replays_->stop();
  if (server_)
    server_->stop();
  // No request forwards any more: the leases go, and the others take the roots over.
  if (leadership_)
    leadership_->stop();
  sweeper_.reset();
  pruner_.reset();
  dispatcher_.reset();
  if (sequencer_)
    sequencer_->stop();
  // After the sequencer: its last pass signs what the final batches committed.
  signer_.reset();
  if (read_pool_)
    read_pool_->join();
}

Service::~Service() {
  stop();
}

}  // namespace stub::http
