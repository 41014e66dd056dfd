#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/serve_options.hpp"
#include "http/forwarder.hpp"
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

ShutdownSignal::ShutdownSignal() : signals_(io_, SIGINT, SIGTERM) {
  signals_.async_wait([](const boost::system::error_code&, int) {});
}

void ShutdownSignal::wait() {
  io_.run();
}

namespace {

// The checkpoint signer's key and thresholds (docs/design.md, "Signed checkpoints").
template <typename Settings>
Status configure_checkpoints(const Settings& settings, http::ServiceOptions& options) {
  const char* key_text = std::getenv("STUB_SIGNING_KEY");
  const bool from_env = key_text != nullptr && *key_text != '\0';
  if (from_env && !settings.signing_key_file.empty()) {
    return Error::invalid("signing_key_twice",
                          "Give the signing key once: STUB_SIGNING_KEY or --signing-key-file.");
  }
  const auto interval = ledger::parse_duration(settings.checkpoint_interval);
  if (!interval || *interval < ledger::micros_per_second ||
      *interval > checkpoints::interval_max.count() * ledger::micros_per_second) {
    return Error::invalid("invalid_checkpoint_interval",
                          "--checkpoint-interval must be a duration from 1s to 1d, such as 60s, "
                          "got " +
                              settings.checkpoint_interval + ".");
  }
  if (!settings.checkpoint_file.empty() && !from_env && settings.signing_key_file.empty()) {
    return Error::invalid("checkpoint_file_without_key",
                          "--checkpoint-file needs a signing key (--signing-key-file or "
                          "STUB_SIGNING_KEY).");
  }
  if (!from_env && settings.signing_key_file.empty())
    return Status::success();
  auto key = from_env ? checkpoints::SigningKey::from_text(key_text)
                      : checkpoints::SigningKey::load_or_create(settings.signing_key_file);
  if (!key.ok())
    return key.error();
  options.signing_key = std::move(key).value();
  options.checkpoints.every_entries = settings.checkpoint_every;
  options.checkpoints.interval = std::chrono::seconds(*interval / ledger::micros_per_second);
  options.checkpoints.file = settings.checkpoint_file;
  return Status::success();
}

// The key that seals vendor credentials (docs/proxy.md): STUB_SECRET_KEY, else the key file
// (generated with mode 0600 on first start). A SQLite ledger defaults to "<db>.secret-key"
// beside it; a PostgreSQL one has no default (its instances must share one key), and without
// a key vendors cannot be given credentials.
template <typename Settings>
Status configure_secret_key(const Settings& settings, http::ServiceOptions& options) {
  const char* key_text = std::getenv("STUB_SECRET_KEY");
  const bool from_env = key_text != nullptr && *key_text != '\0';
  if (from_env && !settings.secret_key_file.empty()) {
    return Error::invalid("secret_key_twice",
                          "Give the secret key once: STUB_SECRET_KEY or --secret-key-file.");
  }
  if (from_env) {
    auto key = proxy::SecretBox::from_text(key_text);
    if (!key.ok())
      return key.error();
    options.secret_box = std::move(key).value();
    return Status::success();
  }
  std::string path = settings.secret_key_file;
  if (path.empty()) {
    const std::string& db = settings.db;
    if (db.starts_with("postgres://") || db.starts_with("postgresql://"))
      return Status::success();
    path = (db.starts_with("sqlite:") ? db.substr(7) : db) + ".secret-key";
  }
  auto key = proxy::SecretBox::load_or_create(path);
  if (!key.ok())
    return key.error();
  options.secret_box = std::move(key).value();
  return Status::success();
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  struct Settings {
    std::string address = "127.0.0.1:8402";
    std::string db = "stub.db";
    size_t io_threads = 2;
    size_t batch_size_max = 1'024;
    std::string isolation = "read-committed";
    std::string idempotency_retention = "7d";
    bool short_retention = false;
    std::string session_lifetime = "12h";
    std::string session_idle_timeout = "1h";
    std::string signing_key_file;
    int64_t checkpoint_every = 1'000;
    std::string checkpoint_interval = "60s";
    std::string checkpoint_file;
    std::string secret_key_file;
    std::string upstream_ca_file;
    std::string advertise_url;
    bool no_forward = false;
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
  command->add_flag(
      "--unsafe-short-retention", settings->short_retention,
      "Allow --idempotency-retention down to 5s, for soak tests (`stub bench --soak`) only: a "
      "client retrying after the retention is answered as a new request and charged again");
  command
      ->add_option("--session-lifetime", settings->session_lifetime,
                   "How long a dashboard sign-in lasts at most (1s..30d)")
      ->capture_default_str();
  command
      ->add_option("--session-idle-timeout", settings->session_idle_timeout,
                   "A dashboard session unused this long ends (1s..30d)")
      ->capture_default_str();
  command
      ->add_option("--signing-key-file", settings->signing_key_file,
                   "Sign checkpoints of every root's chain with the Ed25519 key in this PEM file "
                   "(generated with mode 0600 when missing); or set STUB_SIGNING_KEY")
      ->capture_default_str();
  command
      ->add_option("--checkpoint-every", settings->checkpoint_every,
                   "Sign a root's head once it is this many entries past its last checkpoint")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, checkpoints::every_entries_max));
  command
      ->add_option("--checkpoint-interval", settings->checkpoint_interval,
                   "... or once this long has passed since it (1s..1d), if the head moved")
      ->capture_default_str();
  command
      ->add_option("--checkpoint-file", settings->checkpoint_file,
                   "Also append each checkpoint, one JSON line, to this file (keep it outside "
                   "the database's reach)")
      ->capture_default_str();
  command
      ->add_option("--secret-key-file", settings->secret_key_file,
                   "Seal vendor credentials (AES-256-GCM) with the 32-byte key in this file "
                   "(generated with mode 0600 when missing; default for SQLite: <db>.secret-key); "
                   "or set STUB_SECRET_KEY (64 hex digits or base64)")
      ->capture_default_str();
  command
      ->add_option("--upstream-ca-file", settings->upstream_ca_file,
                   "The metering proxy verifies vendors' TLS certificates against this PEM CA "
                   "file instead of the system's (for private upstreams; verification stays on)")
      ->check(CLI::ExistingFile);
  command
      ->add_option("--advertise-url", settings->advertise_url,
                   "PostgreSQL with several instances: the URL (http://HOST:PORT) at which the "
                   "other instances reach this one to forward writes of a contended root it "
                   "leads (default: http://ADDR:PORT when --addr is a loopback address; else, "
                   "without it, this instance neither leads nor forwards)")
      ->check([](const std::string& url) {
        return http::valid_leader_url(url) ? std::string()
                                           : std::string("must be http://HOST:PORT");
      });
  command->add_flag("--no-forward", settings->no_forward,
                    "Never forward writes to a root's leader, nor lead a root: every write of "
                    "this instance commits here (how instances behaved before root leadership)");
  command->footer(
      "The admin token comes from STUB_ADMIN_TOKEN; without it one is generated and "
      "printed once. Checkpoints are signed only with a key (--signing-key-file or "
      "STUB_SIGNING_KEY: PEM or the base64 of a 32-byte Ed25519 seed).");
  command->callback([settings, &exit_code] {
    auto listen = parse_listen_address(settings->address);
    if (!listen.ok()) {
      std::cerr << "stub serve: " << listen.error().message << "\n";
      exit_code = 1;
      return;
    }
    const auto retention = ledger::parse_duration(settings->idempotency_retention);
    const ledger::Micros retention_min =
        (settings->short_retention ? 5 : 3'600) * ledger::micros_per_second;
    if (!retention || *retention < retention_min ||
        *retention > 90 * 86'400 * ledger::micros_per_second) {
      std::cerr << "stub serve: --idempotency-retention must be a duration from "
                << (settings->short_retention ? "5s" : "1h")
                << " to 90d, such as 7d (below 1h only with --unsafe-short-retention), got "
                << settings->idempotency_retention << ".\n";
      exit_code = 1;
      return;
    }
    if (*retention < 3'600 * ledger::micros_per_second) {
      spdlog::warn(
          "idempotency retention {} is below 1h (--unsafe-short-retention): a retry "
          "after it is charged again; for soak tests only",
          settings->idempotency_retention);
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
    if (Status configured = configure_checkpoints(*settings, options); !configured.ok()) {
      std::cerr << "stub serve: " << configured.error().message << "\n";
      exit_code = 1;
      return;
    }
    if (Status configured = configure_secret_key(*settings, options); !configured.ok()) {
      std::cerr << "stub serve: " << configured.error().message << "\n";
      exit_code = 1;
      return;
    }
    options.sessions.lifetime = *session_lifetime;
    options.sessions.idle_timeout = *session_idle;
    options.replays = [] { return std::make_unique<loadgen::ServerReplays>(); };
    options.retention.retention =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::microseconds(*retention));
    options.db = settings->db;
    options.isolation = settings->isolation;
    options.server = *listen;
    options.server.io_threads = settings->io_threads;
    options.server.proxy.upstream_ca_file = settings->upstream_ca_file;
    options.advertise_url = settings->advertise_url;
    options.forward = !settings->no_forward;
    options.sequencer.batch_size_max = settings->batch_size_max;
    options.sequencer.queue_capacity = std::max<size_t>(65'536, settings->batch_size_max * 4);
    if (const char* token = std::getenv("STUB_ADMIN_TOKEN"); token != nullptr) {
      options.admin_token = token;
    }
    ShutdownSignal shutdown;
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
    if (const auto* key = (*service)->checkpoint_key(); key != nullptr) {
      std::cout << "stub: signing checkpoints with Ed25519 key " << key->key_id() << " (public key "
                << key->public_key_base64() << ")\n";
    }
    if ((*service)->admin_token_generated()) {
      std::cout << "stub: admin token (shown once; set STUB_ADMIN_TOKEN to choose it): "
                << (*service)->admin_token() << "\n";
    }
    std::cout.flush();
    shutdown.wait();
    spdlog::info("shutting down: finishing in-flight requests");
    (*service)->stop();
    exit_code = 0;
  });
}

}  // namespace stub::cli
