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
  if (context_.sequencer.failed()) {
    return ApiReply{503,
                    boost::json::serialize(boost::json::object{
                        {"status", "failed"}, {"reason", context_.sequencer.failure_reason()}}),
                    "application/json", "/healthz"};
  }
  return ApiReply{200,
                  boost::json::serialize(boost::json::object{
                      {"status", "ok"}, {"queue_depth", context_.sequencer.queue_depth()}}),
                  "application/json", "/healthz"};
}

}  // namespace stub::http::detail
