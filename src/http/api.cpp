#include "http/api.hpp"

// Api: the entry point of every request (Api::handle), the renderer of server errors, and the
// setup of event streams. The routes themselves live in routes_<resource>.cpp (handler.hpp).

#include <spdlog/spdlog.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>

#include "http/async_bridge.hpp"
#include "http/error_mapping.hpp"
#include "http/handler.hpp"
#include "http/request_auth.hpp"
#include "ledger/budget_path.hpp"

namespace stub::http {

namespace {

using boost::asio::awaitable;
using detail::Handler;
using detail::parse_target;
using detail::Target;
using ledger::BudgetPath;

// 5xx answers whose message is meant for the caller as it is: it names no driver, SQL or row.
bool public_server_error(std::string_view code) {
  for (std::string_view known : {"overloaded", "shutting_down", "outcome_unknown",
                                 "store_unavailable", "conflict_retries_exhausted"}) {
    if (code == known)
      return true;
  }
  return false;
}

// A server error may carry what a driver said (SQL text, a row, a file name): that goes to the
// log under a request id, and the caller gets the id with a plain message.
void redact_server_error(ApiReply& reply) {
  if (reply.status < 500 || reply.content_type != "application/json")
    return;
  boost::system::error_code parse_error;
  boost::json::value body = boost::json::parse(reply.body, parse_error);
  boost::json::object* error = nullptr;
  if (!parse_error && body.is_object() && body.as_object().contains("error") &&
      body.as_object()["error"].is_object()) {
    error = &body.as_object()["error"].as_object();
  }
  if (error == nullptr)
    return;  // /healthz renders its own body, with no driver text
  const std::string request_id = "req_" + random_hex(8);
  const std::string code =
      (*error)["code"].is_string() ? std::string((*error)["code"].get_string()) : "";
  const std::string message =
      (*error)["message"].is_string() ? std::string((*error)["message"].get_string()) : "";
  spdlog::error("request {}: {} {}: {}", request_id, reply.status, code, message);
  if (!public_server_error(code)) {
    (*error)["message"] =
        "The server could not complete the request; its log has the details "
        "under request id " +
        request_id + ".";
  }
  (*error)["request_id"] = request_id;
  reply.body = boost::json::serialize(body);
}

std::string route_label(const Target& target) {
  // Metrics label: the route shape, never ids or paths (bounded cardinality).
  if (target.segments.empty())
    return "/";
  std::string label = "/" + target.segments[0];
  if (target.segments.size() > 1)
    label += "/" + target.segments[1];
  return label;
}

}  // namespace

ApiReply error_reply(const Error& error) {
  return ApiReply{http_status(error.code), error_body(error), "application/json", ""};
}

awaitable<ApiReply> Api::handle(ApiRequest request) {
  auto target = parse_target(request.target);
  if (!target.ok())
    co_return error_reply(target.error());
  Handler handler(*this, request, *target);
  ApiReply reply;
  try {
    reply = co_await handler.route();
  } catch (const std::exception& error) {
    // Exceptions stop at the HTTP edge: the caller gets a 500, nothing half-done is reported.
    reply = error_reply(Error{ErrorCode::internal, "internal", "Internal error."});
  }
  if (reply.route.empty())
    reply.route = route_label(*target);
  if (!reply.relayed)
    redact_server_error(reply);
  co_return reply;
}

awaitable<Status> Api::key_still_usable(const std::string& key_id) {
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto key_work = [this, key_id] { return context_.store.get_key(key_id); };
  auto key = co_await run_blocking(context_.read_pool, std::move(key_work));
  if (!key.ok())
    co_return key.error();
  if (!key.value() || !key.value()->usable_at(context_.clock()))
    co_return Error{ErrorCode::unauthorized, "key_not_usable", "The key is revoked or expired."};
  co_return Status::success();
}

awaitable<Result<EventFilter>> Api::open_event_stream(const ApiRequest& request) {
  auto target = parse_target(request.target);
  if (!target.ok())
    co_return target.error();
  // A bearer token, or the dashboard's session cookie (EventSource sends it).
  auto authenticated = co_await authenticate_request(context_, request);
  if (!authenticated.ok())
    co_return authenticated.error();
  const Principal* principal = &authenticated->principal;
  EventFilter filter;
  filter.session_id = authenticated->session_id;
  filter.root = target->query["root"];
  if (!principal->admin) {
    const auto bound = BudgetPath::parse(principal->key.budget);
    if (!filter.root.empty() && filter.root != bound->root()) {
      co_return Error{ErrorCode::forbidden, "outside_key_subtree",
                      "The key cannot read events of " + filter.root + "."};
    }
    filter.root = bound->root();
    filter.subtree = bound->str();
    filter.key_id = principal->key.id;
  }
  if (!filter.root.empty()) {
    const auto root = BudgetPath::parse(filter.root);
    if (!root || !root->is_root()) {
      co_return Error::invalid("invalid_root", "Query ?root= must name a root budget.");
    }
  }
  const std::string after = target->query["after"];
  filter.backlog = !after.empty();
  if (!after.empty()) {
    if (filter.root.empty()) {
      co_return Error::invalid("invalid_query", "Query ?after= needs ?root=.");
    }
    const auto [end, error] =
        std::from_chars(after.data(), after.data() + after.size(), filter.after);
    if (error != std::errc{} || end != after.data() + after.size() || filter.after < 0) {
      co_return Error::invalid("invalid_query", "Query ?after= must be a non-negative integer.");
    }
  }
  co_return filter;
}

}  // namespace stub::http
