#pragma once

// Who is calling: the admin token, or an agent key bound to one budget node. Key tokens look
// like "sk.<key id>.<secret>"; only the SHA-256 of the secret is stored. Lookups are cached for
// a short time at the edge; revocation and expiry are re-checked inside every commit, so the
// cache can never let a revoked key move money.
//
// Thread safety: every method may be called from any thread.

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ledger/model.hpp"
#include "ledger/result.hpp"
#include "store/store.hpp"

namespace stub::http {

struct Principal {
  bool admin = false;
  ledger::ApiKey key;    // set when !admin
  bool session = false;  // authenticated by a browser session cookie, not a bearer token

  std::string actor() const { return admin ? std::string(ledger::admin_actor) : key.id; }
};

// Random identifiers and secrets from OpenSSL's CSPRNG.
std::string random_hex(size_t bytes);
std::string new_hold_id();
std::string new_key_id();

struct IssuedKey {
  ledger::ApiKey key;  // secret_hash set
  std::string token;   // shown once
};
IssuedKey issue_key(std::string budget, std::string name, ledger::Micros expires_at);

class Authenticator {
 public:
  static constexpr std::chrono::milliseconds cache_ttl{2'000};
  static constexpr size_t cache_entries_max = 10'000;

  Authenticator(std::string admin_token, store::Store& store);

  // Blocking (may read the store): call from a read-pool thread.
  Result<Principal> authenticate(std::string_view authorization_header, ledger::Micros now);
  // Never blocks: the answer when it needs no store read (admin token, a cached key, a
  // malformed header), nullopt when the key must be looked up with authenticate().
  std::optional<Result<Principal>> authenticate_without_store(std::string_view authorization_header,
                                                              ledger::Micros now);
  // As authenticate(), but a key is always read from the store, never from the cache: signing
  // in to the dashboard with a key revoked a moment ago must fail.
  Result<Principal> authenticate_uncached(std::string_view authorization_header,
                                          ledger::Micros now);
  // The principal of agent key `key_id` (a browser session acting as it), re-checked like a
  // token: unknown, revoked or expired keys are a 401. Blocking; the _without_store variant
  // answers from the cache only (nullopt: look it up).
  Result<Principal> authenticate_key_id(const std::string& key_id, ledger::Micros now);
  std::optional<Result<Principal>> authenticate_key_id_without_store(const std::string& key_id,
                                                                     ledger::Micros now);

 private:
  // The key, nullopt when there is none, or the store's failure to say.
  Result<std::optional<ledger::ApiKey>> find_key(const std::string& id);
  std::optional<ledger::ApiKey> cached_key(const std::string& id);
  Result<Principal> check(
      std::string_view header, ledger::Micros now,
      const std::function<Result<std::optional<ledger::ApiKey>>(const std::string&)>& lookup);

  std::string admin_token_hash_;
  store::Store& store_;
  std::mutex mutex_;
  struct Cached {
    ledger::ApiKey key;
    std::chrono::steady_clock::time_point fetched;
  };
  std::unordered_map<std::string, Cached> cache_;  // GUARDED_BY(mutex_)
};

}  // namespace stub::http
