#pragma once

// Who sent a request: a bearer token (the API's own authentication, unchanged), or, without
// one, a browser session cookie. A state change made with a cookie must also carry the
// session's CSRF token in X-Stub-CSRF (compared in constant time) and, when the browser sends
// an Origin, come from this server's own origin; a session opened with an agent key is
// read-only. Together with SameSite=Strict this keeps another site from acting through a
// signed-in browser.

#include <boost/asio/awaitable.hpp>

#include "http/api.hpp"

namespace stub::http {

struct RequestPrincipal {
  Principal principal;
  std::string session_id;  // the cookie's session, empty for a bearer token
};

// Whether a read-only session may send this POST or DELETE: signing itself out (a person
// signed in with an agent key must be able to end the session on a shared machine), and a POST
// that only reads (the constrained query, which takes its question as a body). CSRF and Origin
// are checked for every one of them all the same.
enum class SessionChange { admin_only, sign_out, read };

boost::asio::awaitable<Result<RequestPrincipal>> authenticate_request(
    ApiContext& context, const ApiRequest& request,
    SessionChange change = SessionChange::admin_only);

// Whether a method changes state (everything but GET and HEAD).
bool is_state_change(std::string_view method);

}  // namespace stub::http
