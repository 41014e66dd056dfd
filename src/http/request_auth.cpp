#include "http/request_auth.hpp"

#include <openssl/crypto.h>

#include "http/async_bridge.hpp"

namespace stub::http {

namespace {

bool constant_time_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

bool is_state_change(std::string_view method) {
  return method != "GET" && method != "HEAD";
}

boost::asio::awaitable<Result<RequestPrincipal>> authenticate_request(ApiContext& context,
                                                                      const ApiRequest& request,
                                                                      SessionChange change) {
  const std::string session_id = cookie_value(request.cookie, session_cookie_name);
  if (!request.authorization.empty() || session_id.empty()) {
    // The admin token and cached keys are checked right here; only a key the cache does not
    // hold needs a store read, which goes to the read pool.
    std::optional<Result<Principal>> cached =
        context.authenticator.authenticate_without_store(request.authorization, context.clock());
    if (!cached) {
      // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
      auto work = [&context, &request] {
        return context.authenticator.authenticate(request.authorization, context.clock());
      };
      cached = co_await run_blocking(context.read_pool, std::move(work));
    }
    if (!cached->ok())
      co_return cached->error();
    co_return RequestPrincipal{std::move(*cached).value(), ""};
  }

  const auto session = context.sessions.find(session_id, context.clock());
  if (!session) {
    co_return Error{ErrorCode::unauthorized, "session_expired",
                    "The session has ended or is unknown: sign in again."};
  }
  if (is_state_change(request.method)) {
    if (!request.origin.empty() && !origin_matches_host(request.origin, request.host)) {
      co_return Error{ErrorCode::forbidden, "origin_mismatch",
                      "A state change with a session cookie must come from this server's own "
                      "pages."};
    }
    if (!constant_time_equal(request.csrf_token, session->csrf_token)) {
      co_return Error{ErrorCode::forbidden, "csrf_token_mismatch",
                      "A state change with a session cookie needs the session's X-Stub-CSRF "
                      "header."};
    }
    if (!session->admin && change == SessionChange::admin_only) {
      co_return Error{ErrorCode::forbidden, "read_only_session",
                      "A session signed in with an agent key is read-only."};
    }
  }
  if (session->admin) {
    Principal admin{true, {}};
    admin.session = true;
    co_return RequestPrincipal{admin, session_id};
  }
  std::optional<Result<Principal>> key =
      context.authenticator.authenticate_key_id_without_store(session->key_id, context.clock());
  if (!key) {
    auto work = [&context, key_id = session->key_id] {
      return context.authenticator.authenticate_key_id(key_id, context.clock());
    };
    key = co_await run_blocking(context.read_pool, std::move(work));
  }
  if (!key->ok()) {
    // A key revoked or expired ends its session; a store that cannot answer (503) does not.
    if (key->error().code == ErrorCode::unauthorized)
      context.sessions.remove(session_id);
    co_return key->error();
  }
  Principal principal = std::move(*key).value();
  principal.session = true;
  co_return RequestPrincipal{std::move(principal), session_id};
}

}  // namespace stub::http
