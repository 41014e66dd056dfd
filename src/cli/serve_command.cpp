#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/serve_options.hpp"
#include "http/service.hpp"
#include "http/web_assets.hpp"
#include "ledger/time_point.hpp"
#include "loadgen/server_replays.hpp"
#include "store/store.hpp"

namespace stub::cli {

Result<http::ServerOptions> parse_listen_address(const std::string& address) {
  http::ServerOptions options;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return Error::invalid("invalid_address", "--addr must be HOST:PORT, got " + address + ".");
  }
  options.address = address.substr(0, colon);
  try {
    const int port = std::stoi(address.substr(colon + 1));
    if (port < 0 || port > 65535)
      throw std::out_of_range("port");
    options.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    return Error::invalid("invalid_address", "--addr has no valid port: " + address + ".");
  }
  return options;
}

void wait_for_shutdown_signal() {
  boost::asio::io_context signals_io;
  boost::asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  signals_io.run();
}

void add_serve_command(CLI::App& app, int& exit_code) {
  struct Settings {
    std::string address = "127.0.0.1:8402";
    std::string db = "stub.db";
    size_t io_threads = 2;
    size_t batch_size_max = 1'024;
    std::string isolation = "read-committed";
    std::string idempotency_retention = "7d";
    std::string session_lifetime = "12h";
    std::string session_idle_timeout = "1h";
  };
  auto settings = std::make_shared<Settings>();
  CLI::App* command = app.add_subcommand("serve", "Run the Stub server");
  command->add_option("--addr", settings->address, "Listen address HOST:PORT")
      ->capture_default_str();
  command->add_option("--db", settings->db, "Database: PATH, sqlite:PATH or postgres://...")
      ->envname("STUB_DB")
      ->capture_default_str();
  command
      ->add_option("--isolation", settings->isolation,
                   "PostgreSQL isolation level (both are correct; conflicts are retried)")
      ->check(CLI::IsMember({"read-committed", "serializable"}))
      ->capture_default_str();
  command->add_option("--io-threads", settings->io_threads, "HTTP threads")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  command->add_option("--batch-size-max", settings->batch_size_max, "Commands per commit")
      ->capture_default_str()
      ->check(CLI::Range(1, 8192));
  command
      ->add_option("--idempotency-retention", settings->idempotency_retention,
                   "How long a replayed Idempotency-Key returns its original answer (1h..90d); "
                   "older records are pruned")
      ->capture_default_str();
  command
      ->add_option("--session-lifetime", settings->session_lifetime,
                   "How long a dashboard sign-in lasts at most (1s..30d)")
      ->capture_default_str();
  command
      ->add_option("--session-idle-timeout", settings->session_idle_timeout,
                   "A dashboard session unused this long ends (1s..30d)")
      ->capture_default_str();
  command->footer(
      "The admin token comes from STUB_ADMIN_TOKEN; without it one is generated and "
      "printed once.");
  command->callback([settings, &exit_code] {
    auto listen = parse_listen_address(settings->address);
    if (!listen.ok()) {
      std::cerr << "stub serve: " << listen.error().message << "\n";
      exit_code = 1;
      return;
    }
    const auto retention = ledger::parse_duration(settings->idempotency_retention);
    constexpr ledger::Micros retention_min = 3'600 * ledger::micros_per_second;
    if (!retention || *retention < retention_min ||
        *retention > 90 * 86'400 * ledger::micros_per_second) {
      std::cerr << "stub serve: --idempotency-retention must be a duration from 1h to 90d, such "
                   "as 7d, got "
                << settings->idempotency_retention << ".\n";
      exit_code = 1;
      return;
    }
    auto session_duration = [](const std::string& text) -> std::optional<std::chrono::seconds> {
      const auto parsed = ledger::parse_duration(text);
      if (!parsed || *parsed < ledger::micros_per_second ||
          *parsed > 30 * 86'400 * ledger::micros_per_second) {
        return std::nullopt;
      }
      return std::chrono::seconds(*parsed / ledger::micros_per_second);
    };
    const auto session_lifetime = session_duration(settings->session_lifetime);
    const auto session_idle = session_duration(settings->session_idle_timeout);
    if (!session_lifetime || !session_idle) {
      std::cerr << "stub serve: --session-lifetime and --session-idle-timeout must be durations "
                   "from 1s to 30d, such as 12h.\n";
      exit_code = 1;
      return;
    }
    http::ServiceOptions options;
    options.sessions.lifetime = *session_lifetime;
    options.sessions.idle_timeout = *session_idle;
    options.replays = [] { return std::make_unique<loadgen::ServerReplays>(); };
    options.retention.retention =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::microseconds(*retention));
    options.db = settings->db;
    options.isolation = settings->isolation;
    options.server = *listen;
    options.server.io_threads = settings->io_threads;
    options.sequencer.batch_size_max = settings->batch_size_max;
    options.sequencer.queue_capacity = std::max<size_t>(65'536, settings->batch_size_max * 4);
    if (const char* token = std::getenv("STUB_ADMIN_TOKEN"); token != nullptr) {
      options.admin_token = token;
    }
    auto service = http::Service::start(std::move(options));
    if (!service.ok()) {
      std::cerr << "stub serve: " << service.error().message << "\n";
      exit_code = 1;
      return;
    }
    std::cout << "stub: serving on http://" << listen->address << ":" << (*service)->port()
              << " (db: " << store::redact_database_url(settings->db) << ")\n"
              << "stub: dashboard at http://" << listen->address << ":" << (*service)->port() << "/"
              << (http::web_dashboard_built() ? "" : " (placeholder: bash scripts/build-web.sh)")
              << "\n";
    if ((*service)->admin_token_generated()) {
      std::cout << "stub: admin token (shown once; set STUB_ADMIN_TOKEN to choose it): "
                << (*service)->admin_token() << "\n";
    }
    std::cout.flush();
    wait_for_shutdown_signal();
    spdlog::info("shutting down: finishing in-flight requests");
    (*service)->stop();
    exit_code = 0;
  });
}

}  // namespace stub::cli
