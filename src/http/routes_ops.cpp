// Routes: Operations: health, metrics and the OpenAPI document.

#include <boost/json/serialize.hpp>

#include "http/handler.hpp"
#include "http/openapi.hpp"

namespace stub::http::detail {

// GET /healthz, /metrics, /openapi.json: open to anyone, answered before authentication.
awaitable<std::optional<ApiReply>> Handler::route_ops() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  if (s.size() != 1 || method != "GET")
    co_return std::nullopt;
  if (s[0] == "healthz")
    co_return healthz();
  if (s[0] == "metrics")
    co_return ApiReply{200, context_.metrics.render(), "text/plain; version=0.0.4", "/metrics"};
  if (s[0] == "openapi.json")
    co_return ApiReply{200, openapi_document(), "application/json", "/openapi.json"};
  co_return std::nullopt;
}

ApiReply Handler::healthz() {
  // No driver text here: the reason is a fixed sentence, the incident id finds the log line.
  const engine::Health health = context_.sequencer.health();
  boost::json::object body{{"status", engine::health_state_name(health.state)},
                           {"queue_depth", context_.sequencer.queue_depth()}};
  if (health.state != engine::HealthState::ok) {
    body["reason"] = health.reason;
    if (!health.incident.empty())
      body["incident"] = health.incident;
  }
  return ApiReply{health.state == engine::HealthState::ok ? 200 : 503, boost::json::serialize(body),
                  "application/json", "/healthz"};
}

}  // namespace stub::http::detail
