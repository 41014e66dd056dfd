// Routes: the dashboard's browser sessions, answered before the usual authentication.
//   POST   /v1/sessions  {token}  sign in with the admin token or an agent key: an HttpOnly,
//                                 SameSite=Strict cookie, and the session's CSRF token
//   GET    /v1/session            the cookie's session (the page reads its CSRF token again)
//   DELETE /v1/session            sign out
// The token itself is never stored, echoed, or put in the cookie (sessions.hpp).

#include <boost/json/serialize.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/request_auth.hpp"
#include "http/request_decoders.hpp"
#include "http/sessions.hpp"

namespace stub::http::detail {

namespace {

ApiReply no_store(ApiReply reply, std::string route) {
  reply.route = std::move(route);
  reply.headers.emplace_back("Cache-Control", "no-store");
  return reply;
}

boost::json::object session_body(const SessionRecord& session, const Principal& principal) {
  return boost::json::object{
      {"admin", session.admin},
      {"budget",
       session.admin ? boost::json::value(nullptr) : boost::json::value(principal.key.budget)},
      {"key_id", session.admin ? boost::json::value(nullptr) : boost::json::value(session.key_id)},
      {"csrf_token", session.csrf_token},
      {"expires_at", ledger::format_timestamp(session.expires_at)},
  };
}

}  // namespace

awaitable<ApiReply> Handler::sign_in() {
  const std::string route = "/v1/sessions";
  // A sign-in form on another site must not sign this browser in (login CSRF).
  if (!request_.origin.empty() && !origin_matches_host(request_.origin, request_.host)) {
    co_return no_store(error_reply(Error{ErrorCode::forbidden, "origin_mismatch",
                                         "Sign in from this server's own pages."}),
                       route);
  }
  auto token = decode_sign_in(request_.body);
  if (!token.ok())
    co_return no_store(error_reply(token.error()), route);
  // A key is read from the store, not the edge cache: one revoked a moment ago cannot sign in.
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto work = [this, header = "Bearer " + *token] {
    return context_.authenticator.authenticate_uncached(header, context_.clock());
  };
  Result<Principal> principal = co_await run_blocking(context_.read_pool, std::move(work));
  if (!principal.ok())
    co_return no_store(error_reply(principal.error()), route);
  const SessionRecord session = context_.sessions.create(
      principal->admin, principal->admin ? "" : principal->key.id, context_.clock());
  ApiReply reply = no_store(json_reply(201, session_body(session, *principal)), route);
  reply.headers.emplace_back("Set-Cookie", session_set_cookie(session, context_.clock(), false));
  co_return reply;
}

awaitable<std::optional<ApiReply>> Handler::route_sessions() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  if (s.size() != 2 || s[0] != "v1")
    co_return std::nullopt;
  if (s[1] == "sessions" && method == "POST")
    co_return co_await sign_in();
  if (s[1] != "session" || (method != "GET" && method != "DELETE"))
    co_return std::nullopt;
  const std::string route = "/v1/session";
  if (cookie_value(request_.cookie, session_cookie_name).empty()) {
    co_return no_store(error_reply(Error{ErrorCode::unauthorized, "no_session",
                                         "Not signed in: no session cookie."}),
                       route);
  }
  // The session of the cookie itself, whatever bearer token came along.
  ApiRequest cookie_only = request_;
  cookie_only.authorization.clear();
  // Signing out is the one change a read-only session may make (CSRF and Origin still hold).
  auto authenticated = co_await authenticate_request(
      context_, cookie_only,
      method == "DELETE" ? SessionChange::sign_out : SessionChange::admin_only);
  if (!authenticated.ok()) {
    ApiReply reply = no_store(error_reply(authenticated.error()), route);
    if (authenticated.error().code == ErrorCode::unauthorized)
      reply.headers.emplace_back("Set-Cookie", session_clear_cookie(false));
    co_return reply;
  }
  if (method == "DELETE") {
    context_.sessions.remove(authenticated->session_id);
    ApiReply reply = no_store(json_reply(200, boost::json::object{{"signed_out", true}}), route);
    reply.headers.emplace_back("Set-Cookie", session_clear_cookie(false));
    co_return reply;
  }
  const auto session = context_.sessions.find(authenticated->session_id, context_.clock());
  if (!session) {
    co_return no_store(
        error_reply(Error{ErrorCode::unauthorized, "session_expired", "The session has ended."}),
        route);
  }
  co_return no_store(json_reply(200, session_body(*session, authenticated->principal)), route);
}

}  // namespace stub::http::detail
