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

boost::asio::awaitable<Result<RequestPrincipal>> authenticate_request(ApiContext& context,
                                                                      const ApiRequest& request);

// Whether a method changes state (everything but GET and HEAD).
bool is_state_change(std::string_view method);

}  // namespace stub::http
