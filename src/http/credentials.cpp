#include "http/credentials.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cassert>
#include <stdexcept>

#include "ledger/chain.hpp"

namespace stub::http {

namespace {

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Error unauthorized(std::string message) {
  return Error{ErrorCode::unauthorized, "invalid_token", std::move(message)};
}

}  // namespace

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1) {
    // Without randomness no secret or id is safe to hand out; this is not recoverable.
    throw std::runtime_error("OpenSSL RAND_bytes failed");
  }
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(bytes * 2, '0');
  for (size_t i = 0; i < bytes; ++i) {
    const auto byte = static_cast<unsigned char>(raw[i]);
    out[2 * i] = hex[byte >> 4];
    out[2 * i + 1] = hex[byte & 0xF];
  }
  return out;
}

std::string new_hold_id() {
  return "hold_" + random_hex(12);
}
std::string new_key_id() {
  return "key_" + random_hex(8);
}

IssuedKey issue_key(std::string budget, std::string name, ledger::Micros expires_at) {
  IssuedKey issued;
  issued.key.id = new_key_id();
  issued.key.budget = std::move(budget);
  issued.key.name = std::move(name);
  issued.key.expires_at = expires_at;
  const std::string secret = random_hex(24);
  issued.key.secret_hash = ledger::sha256_hex(secret);
  issued.token = "sk." + issued.key.id + "." + secret;
  return issued;
}

Authenticator::Authenticator(std::string admin_token, store::Store& store)
    : admin_token_hash_(ledger::sha256_hex(admin_token)), store_(store) {
  assert(!admin_token.empty());
}

std::optional<ledger::ApiKey> Authenticator::cached_key(const std::string& id) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  auto found = cache_.find(id);
  if (found != cache_.end() && now - found->second.fetched < cache_ttl)
    return found->second.key;
  return std::nullopt;
}

Result<std::optional<ledger::ApiKey>> Authenticator::find_key(const std::string& id) {
  if (auto cached = cached_key(id))
    return cached;
  auto key = store_.get_key(id);
  if (!key.ok()) {
    // The key may well exist: a store that cannot answer is a 503, never "unknown token".
    return Error{ErrorCode::unavailable, "store_unavailable",
                 "The ledger's database cannot be reached to check the key; retry shortly."};
  }
  if (!key.value())
    return std::optional<ledger::ApiKey>{};
  std::lock_guard lock(mutex_);
  if (cache_.size() >= cache_entries_max)
    cache_.clear();
  cache_[id] = Cached{*key.value(), std::chrono::steady_clock::now()};
  return std::optional<ledger::ApiKey>{*key.value()};
}

Result<Principal> Authenticator::authenticate(std::string_view header, ledger::Micros now) {
  return check(header, now, [this](const std::string& id) { return find_key(id); });
}

Result<Principal> Authenticator::authenticate_uncached(std::string_view header,
                                                       ledger::Micros now) {
  return check(header, now, [this](const std::string& id) -> Result<std::optional<ledger::ApiKey>> {
    auto key = store_.get_key(id);
    if (!key.ok()) {
      return Error{ErrorCode::unavailable, "store_unavailable",
                   "The ledger's database cannot be reached to check the key; "
                   "retry shortly."};
    }
    return key.value() ? std::optional<ledger::ApiKey>{*key.value()}
                       : std::optional<ledger::ApiKey>{};
  });
}

std::optional<Result<Principal>> Authenticator::authenticate_without_store(std::string_view header,
                                                                           ledger::Micros now) {
  bool missed = false;
  Result<Principal> result = check(
      header, now, [this, &missed](const std::string& id) -> Result<std::optional<ledger::ApiKey>> {
        auto key = cached_key(id);
        missed = !key.has_value();
        return key;
      });
  if (missed)
    return std::nullopt;
  return result;
}

namespace {

Result<Principal> key_principal(const std::optional<ledger::ApiKey>& key, ledger::Micros now) {
  if (!key)
    return unauthorized("The session's key no longer exists.");
  if (!key->usable_at(now)) {
    return Error{ErrorCode::unauthorized, "key_not_usable", "The key is revoked or expired."};
  }
  return Principal{false, *key};
}

}  // namespace

Result<Principal> Authenticator::authenticate_key_id(const std::string& key_id,
                                                     ledger::Micros now) {
  auto key = find_key(key_id);
  if (!key.ok())
    return key.error();
  return key_principal(key.value(), now);
}

std::optional<Result<Principal>> Authenticator::authenticate_key_id_without_store(
    const std::string& key_id, ledger::Micros now) {
  auto key = cached_key(key_id);
  if (!key)
    return std::nullopt;
  return key_principal(key, now);
}

Result<Principal> Authenticator::check(
    std::string_view header, ledger::Micros now,
    const std::function<Result<std::optional<ledger::ApiKey>>(const std::string&)>& lookup) {
  constexpr std::string_view bearer = "Bearer ";
  if (header.empty())
    return unauthorized("Missing Authorization: Bearer <token>.");
  if (!header.starts_with(bearer))
    return unauthorized("Authorization must be \"Bearer <token>\".");
  const std::string_view token = header.substr(bearer.size());
  // Both sides are hashed first so the comparison time does not depend on the token's length.
  if (constant_time_equal(ledger::sha256_hex(token), admin_token_hash_)) {
    return Principal{true, {}};
  }
  if (!token.starts_with("sk."))
    return unauthorized("Unknown token.");
  const size_t dot = token.find('.', 3);
  if (dot == std::string_view::npos)
    return unauthorized("Malformed key token.");
  const std::string id(token.substr(3, dot - 3));
  const std::string_view secret = token.substr(dot + 1);
  auto found = lookup(id);
  if (!found.ok())
    return found.error();
  const std::optional<ledger::ApiKey>& key = found.value();
  if (!key || !constant_time_equal(ledger::sha256_hex(secret), key->secret_hash)) {
    return unauthorized("Unknown token.");
  }
  if (!key->usable_at(now)) {
    return Error{ErrorCode::unauthorized, "key_not_usable", "The key is revoked or expired."};
  }
  return Principal{false, *key};
}

}  // namespace stub::http
