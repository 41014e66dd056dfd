#include "http/sessions.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cassert>

#include "http/credentials.hpp"
#include "ledger/chain.hpp"

namespace stub::http {

namespace {

constexpr size_t session_id_bytes = 32;
constexpr size_t csrf_token_bytes = 24;

int64_t micros_of(std::chrono::seconds duration) {
  return static_cast<int64_t>(duration.count()) * 1'000'000;
}

}  // namespace

SessionStore::SessionStore(SessionOptions options) : options_(options) {
  assert(options_.lifetime.count() > 0);
  assert(options_.idle_timeout.count() > 0);
  assert(options_.sessions_max > 0);
}

void SessionStore::drop_expired_locked(ledger::Micros now) {
  std::erase_if(sessions_, [now](const auto& item) {
    return item.second.expires_at <= now || item.second.idle_expires_at <= now;
  });
}

SessionRecord SessionStore::create(bool admin, std::string key_id, ledger::Micros now) {
  assert(admin == key_id.empty());
  SessionRecord session;
  session.id = random_hex(session_id_bytes);
  session.csrf_token = random_hex(csrf_token_bytes);
  session.admin = admin;
  session.key_id = std::move(key_id);
  session.created_at = now;
  session.expires_at = now + micros_of(options_.lifetime);
  session.idle_expires_at = std::min(session.expires_at, now + micros_of(options_.idle_timeout));
  const std::string hashed = ledger::sha256_hex(session.id);

  std::lock_guard lock(mutex_);
  drop_expired_locked(now);
  while (sessions_.size() >= options_.sessions_max) {
    // Evicting the oldest keeps memory bounded however many sign-ins arrive.
    auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](auto& a, auto& b) {
      return a.second.created_at < b.second.created_at;
    });
    sessions_.erase(oldest);
  }
  SessionRecord stored = session;
  stored.id.clear();  // Only the hash of the id is kept.
  sessions_.emplace(hashed, std::move(stored));
  assert(sessions_.size() <= options_.sessions_max);
  return session;
}

std::optional<SessionRecord> SessionStore::find(std::string_view id, ledger::Micros now) {
  if (id.size() != session_id_bytes * 2)
    return std::nullopt;
  const std::string hashed = ledger::sha256_hex(id);
  std::lock_guard lock(mutex_);
  auto found = sessions_.find(hashed);
  if (found == sessions_.end())
    return std::nullopt;
  SessionRecord& session = found->second;
  if (session.expires_at <= now || session.idle_expires_at <= now) {
    sessions_.erase(found);
    return std::nullopt;
  }
  session.idle_expires_at = std::min(session.expires_at, now + micros_of(options_.idle_timeout));
  assert(session.idle_expires_at > now);
  return session;
}

bool SessionStore::remove(std::string_view id) {
  const std::string hashed = ledger::sha256_hex(id);
  std::lock_guard lock(mutex_);
  return sessions_.erase(hashed) > 0;
}

size_t SessionStore::remove_for_key(std::string_view key_id) {
  assert(!key_id.empty());
  std::lock_guard lock(mutex_);
  return std::erase_if(sessions_,
                       [key_id](const auto& item) { return item.second.key_id == key_id; });
}

size_t SessionStore::size() {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

std::string session_set_cookie(const SessionRecord& session, ledger::Micros now, bool secure) {
  assert(!session.id.empty());
  const int64_t max_age = std::max<int64_t>(0, (session.expires_at - now) / 1'000'000);
  std::string cookie = std::string(session_cookie_name) + "=" + session.id +
                       "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(max_age);
  if (secure)
    cookie += "; Secure";
  return cookie;
}

std::string session_clear_cookie(bool secure) {
  std::string cookie =
      std::string(session_cookie_name) + "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0";
  if (secure)
    cookie += "; Secure";
  return cookie;
}

std::string cookie_value(std::string_view header, std::string_view name) {
  // Cookie: a=1; b=2 (RFC 6265 section 5.4). The first pair with the name wins.
  size_t position = 0;
  while (position < header.size()) {
    size_t end = header.find(';', position);
    if (end == std::string_view::npos)
      end = header.size();
    std::string_view pair = header.substr(position, end - position);
    while (!pair.empty() && pair.front() == ' ')
      pair.remove_prefix(1);
    const size_t equals = pair.find('=');
    if (equals != std::string_view::npos && pair.substr(0, equals) == name)
      return std::string(pair.substr(equals + 1));
    position = end + 1;
  }
  return "";
}

bool origin_matches_host(std::string_view origin, std::string_view host) {
  if (origin.empty() || host.empty())
    return false;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (origin.starts_with(scheme) && origin.substr(scheme.size()) == host)
      return true;
  }
  return false;
}

}  // namespace stub::http
