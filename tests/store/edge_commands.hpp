#pragma once

// Commands built the way the HTTP edge builds them: root = the first path segment, actor =
// "admin" unless a key id is given, a fresh hold id per spend or hold, positive amounts, an
// optional Idempotency-Key with a request hash. Plus a temporary directory for store files.

#include <atomic>
#include <filesystem>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <system_error>

#include <unistd.h>

#include "engine/sequencer.hpp"
#include "http/render.hpp"
#include "ledger/chain.hpp"
#include "ledger/command.hpp"
#include "ledger/model.hpp"

namespace stub::store::conformance {

using ledger::Command;
using ledger::CommandKind;
using ledger::Micros;
using ledger::Money;

// Sequencer options as the server assembles them: answers rendered by the HTTP edge's renderer,
// so that the suites compare the statuses and bytes callers get (and records keep).
inline engine::SequencerOptions edge_options(engine::SequencerOptions options = {}) {
  options.render = http::render_answer;
  return options;
}

inline constexpr Micros second = ledger::micros_per_second;
// 2024-02-29T12:00:00Z.
inline constexpr Micros t0 = 1'709'164'800'000'000 + 12 * 3'600 * second;

inline Money units(int64_t whole) {
  return Money::from_micros(whole * Money::micros_per_unit);
}

inline Money cents(int64_t hundredths) {
  return Money::from_micros(hundredths * (Money::micros_per_unit / 100));
}

inline std::string root_of(const std::string& path) {
  return path.substr(0, path.find('/'));
}

inline Command command_for(CommandKind kind, const std::string& budget) {
  Command command;
  command.kind = kind;
  command.root = root_of(budget);
  command.actor = std::string(ledger::admin_actor);
  command.budget = budget;
  return command;
}

inline Command with_key(Command command, std::string idempotency_key, std::string request_hash) {
  command.idempotency_key = std::move(idempotency_key);
  command.request_hash = std::move(request_hash);
  return command;
}

inline Command as_actor(Command command, std::string actor) {
  command.actor = std::move(actor);
  return command;
}

inline Command set_budget(const std::string& path, std::optional<Money> limit,
                          std::optional<ledger::Period> period = std::nullopt,
                          std::optional<Money> per_txn_max = std::nullopt) {
  Command command = command_for(CommandKind::set_budget, path);
  command.settings.limit_given = true;
  command.settings.limit = limit;
  command.settings.period = period;
  if (per_txn_max) {
    command.settings.per_txn_max_given = true;
    command.settings.per_txn_max = per_txn_max;
  }
  return command;
}

// A PUT of a budget node that changes only what `edit` sets (policies, say).
template <typename Edit>
Command set_policies(const std::string& path, const Edit& edit) {
  Command command = command_for(CommandKind::set_budget, path);
  edit(command.settings);
  return command;
}

// A PUT that sets only the node's approval threshold.
inline Command set_approval_above(const std::string& path, Money threshold) {
  return set_policies(path, [threshold](ledger::BudgetSettings& settings) {
    settings.approval_above_given = true;
    settings.approval_above = threshold;
  });
}

inline Command spend(const std::string& path, Money amount, const std::string& hold_id,
                     const std::string& vendor = "openai") {
  Command command = command_for(CommandKind::spend, path);
  command.amount = amount;
  command.vendor = vendor;
  command.intent = "answer a question";
  command.tags_json = R"({"run":"42"})";
  command.receipt_json = R"({"usage":{"cost":0.5,"tokens":1200}})";
  command.hold_id = hold_id;
  return command;
}

inline Command hold(const std::string& path, Money amount, const std::string& hold_id, Micros ttl,
                    ledger::OnExpiry on_expiry = ledger::OnExpiry::capture) {
  Command command = command_for(CommandKind::hold, path);
  command.amount = amount;
  command.vendor = "anthropic";
  command.hold_id = hold_id;
  command.ttl = ttl;
  command.on_expiry = on_expiry;
  return command;
}

inline Command capture(const std::string& path, const std::string& hold_id,
                       std::optional<Money> amount = std::nullopt) {
  Command command = command_for(CommandKind::capture, path);
  command.hold_id = hold_id;
  command.amount = amount;
  command.receipt_json = R"({"id":"resp_1"})";
  return command;
}

inline Command void_hold(const std::string& path, const std::string& hold_id) {
  Command command = command_for(CommandKind::void_hold, path);
  command.hold_id = hold_id;
  return command;
}

// What the sweeper submits for each hold that list_expired_holds returns.
inline Command expire(const ledger::Hold& hold) {
  Command command = command_for(CommandKind::expire, hold.budget);
  command.root = hold.root;
  command.hold_id = hold.id;
  return command;
}

inline Command freeze(const std::string& path, const std::string& reason) {
  Command command = command_for(CommandKind::freeze, path);
  command.reason = reason;
  return command;
}

inline Command unfreeze(const std::string& path) {
  return command_for(CommandKind::unfreeze, path);
}

inline Command create_key(const std::string& budget, const std::string& id, const std::string& name,
                          Micros expires_at = 0) {
  Command command = command_for(CommandKind::create_key, root_of(budget));
  command.key.id = id;
  command.key.budget = budget;
  command.key.name = name;
  command.key.secret_hash = ledger::sha256_hex("secret-for-" + id);
  command.key.expires_at = expires_at;
  return command;
}

inline Command revoke_key(const std::string& root, const std::string& id) {
  Command command = command_for(CommandKind::revoke_key, root);
  command.key.id = id;
  return command;
}

// A delegation below `parent` named `name`, by `actor` (a key id, or the admin), with its key.
inline Command delegate(const std::string& parent, const std::string& name, Money limit, Micros ttl,
                        const std::string& key_id, const std::string& actor) {
  Command command = command_for(CommandKind::delegate, parent + "/" + name);
  command.actor = actor;
  command.amount = limit;
  command.ttl = ttl;
  command.key.id = key_id;
  command.key.budget = parent + "/" + name;
  command.key.name = name;
  command.key.secret_hash = ledger::sha256_hex("secret-for-" + key_id);
  return command;
}

// A fresh directory under the system temporary directory, removed with everything in it.
class TempDirectory {
 public:
  static uint32_t random_suffix() {
    static thread_local std::random_device device;
    return device();
  }

  TempDirectory() {
    static std::atomic<int> counter{0};
    const auto base = std::filesystem::temp_directory_path();
    for (int attempt = 0; attempt < 100; ++attempt) {
      // A random part too: PostgreSQL schemas are named after the directory and outlive the
      // process, so a recycled pid must not meet a previous run's schema.
      std::filesystem::path candidate =
          base / ("stub-store-test-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1)) + "-" + std::to_string(random_suffix()));
      std::error_code error;
      if (std::filesystem::create_directory(candidate, error)) {
        path_ = candidate;
        return;
      }
    }
    throw std::runtime_error("cannot create a temporary directory");
  }
  TempDirectory(const TempDirectory&) = delete;
  TempDirectory& operator=(const TempDirectory&) = delete;
  ~TempDirectory() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace stub::store::conformance
