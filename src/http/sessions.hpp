#pragma once

// Browser sessions for the dashboard. Signing in with the admin token or an agent key creates a
// session: a random id sent only as an HttpOnly, SameSite=Strict cookie, and a separate CSRF
// token that the page holds in memory and sends back in a header on every state change. The
// store keeps only the SHA-256 of each id (a memory dump or a timing side channel on the map
// lookup reveals no usable cookie) and never the token the user signed in with: an agent-key
// session keeps the key id, so revoking the key ends the session on its next request.
//
// Sessions live in this process's memory: a restart signs every browser out (the dashboard then
// shows sign-in), and each instance of a multi-instance deployment has its own.
//
// Thread safety: every method may be called from any thread.

#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ledger/model.hpp"

namespace stub::http {

inline constexpr std::string_view session_cookie_name = "stub_session";
inline constexpr std::string_view csrf_header_name = "X-Stub-CSRF";

struct SessionRecord {
  std::string id;          // the cookie value; only returned by create()
  std::string csrf_token;  // sent back in the X-Stub-CSRF header on every state change
  bool admin = false;
  std::string key_id;  // the agent key the session acts as (when !admin)
  ledger::Micros created_at = 0;
  ledger::Micros expires_at = 0;  // absolute: a session is never extended past it
  ledger::Micros idle_expires_at = 0;
};

struct SessionOptions {
  std::chrono::seconds lifetime{12 * 3600};  // absolute, from sign-in
  std::chrono::seconds idle_timeout{3'600};  // since the last request
  size_t sessions_max = 10'000;              // the oldest is evicted beyond it
};

class SessionStore {
 public:
  explicit SessionStore(SessionOptions options);
  SessionStore(const SessionStore&) = delete;
  SessionStore& operator=(const SessionStore&) = delete;

  // A new session for the admin (key_id empty) or for agent key `key_id`.
  SessionRecord create(bool admin, std::string key_id, ledger::Micros now);
  // The live session whose cookie value is `id`, its idle deadline moved forward; nullopt when
  // unknown or expired (an expired one is dropped).
  std::optional<SessionRecord> find(std::string_view id, ledger::Micros now);
  // Ends the session; false when there was none.
  bool remove(std::string_view id);
  // Ends every session acting as agent key `key_id` (the key was revoked).
  size_t remove_for_key(std::string_view key_id);
  size_t size();
  const SessionOptions& options() const { return options_; }

 private:
  void drop_expired_locked(ledger::Micros now);

  SessionOptions options_;
  std::mutex mutex_;
  std::unordered_map<std::string, SessionRecord> sessions_;  // GUARDED_BY(mutex_), by id hash
};

// The Set-Cookie value that installs `session` (Max-Age up to its absolute expiry), and the one
// that clears it. `secure` adds the Secure attribute (when served over TLS).
std::string session_set_cookie(const SessionRecord& session, ledger::Micros now, bool secure);
std::string session_clear_cookie(bool secure);

// The value of cookie `name` in a Cookie request header; empty when absent.
std::string cookie_value(std::string_view cookie_header, std::string_view name);

// Whether an Origin header names the same origin as the request's Host header
// (http://HOST or https://HOST). An absent Origin is not same-origin here: the caller decides
// whether a request without one may proceed.
bool origin_matches_host(std::string_view origin, std::string_view host);

}  // namespace stub::http
