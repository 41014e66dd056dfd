#include "http/openapi.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace stub::http {

namespace {

struct Operation {
  const char* method;
  const char* path;
  const char* summary;
  const char* success;  // the success status
  bool admin_only;
  bool idempotent_post;
  const char* also_success = nullptr;    // a second success status, e.g. 201 when a PUT creates
  const char* request_schema = nullptr;  // JSON Schema of the body, when it is worth spelling out
};

// The body of PUT /v1/budgets/{path}: the limit and every policy (docs/api.md, "Policies").
constexpr const char* budget_schema = R"json({
  "type": "object", "additionalProperties": false,
  "properties": {
    "limit": {"type": ["string", "number", "null"]},
    "period": {"enum": ["none", "day", "week", "month"]},
    "per_txn_max": {"type": ["string", "number", "null"]},
    "currency": {"type": "string"},
    "windows": {"type": ["array", "null"], "maxItems": 4, "items": {
      "type": "object", "additionalProperties": false, "required": ["duration", "limit"],
      "properties": {"duration": {"type": ["string", "integer"]},
                     "limit": {"type": ["string", "integer"]}}}},
    "vendors": {"type": ["object", "null"], "additionalProperties": false, "properties": {
      "allow": {"type": "array", "maxItems": 64, "items": {"type": "string"}},
      "block": {"type": "array", "maxItems": 64, "items": {"type": "string"}}}},
    "vendor_limits": {"type": ["array", "null"], "maxItems": 16, "items": {
      "type": "object", "additionalProperties": false, "required": ["vendors", "limit"],
      "properties": {"vendors": {"type": "array", "minItems": 1, "maxItems": 16,
                                 "items": {"type": "string"}},
                     "limit": {"type": ["string", "integer"]},
                     "period": {"enum": ["none", "day", "week", "month"]},
                     "window": {"type": ["string", "integer"]}}}},
    "approval_above": {"type": ["string", "number", "null"]},
    "breaker": {"type": ["object", "null"], "additionalProperties": false,
      "required": ["duration"], "properties": {
        "duration": {"type": ["string", "integer"]},
        "max_amount": {"type": ["string", "integer", "null"]},
        "max_count": {"type": ["integer", "null"], "minimum": 1}}},
    "thresholds": {"type": ["array", "null"], "maxItems": 8,
      "items": {"type": "integer", "minimum": 1, "maximum": 100}}
  }
})json";

// The body of POST /v1/budgets/{path}/freeze (docs/api.md, "The kill switch").
constexpr const char* freeze_schema = R"json({
  "type": "object", "additionalProperties": false,
  "properties": {"reason": {"type": "string", "maxLength": 256},
                 "void_holds": {"type": "boolean"}}
})json";

constexpr const char* reason_schema = R"json({
  "type": "object", "additionalProperties": false,
  "properties": {"reason": {"type": "string", "maxLength": 256}}
})json";

constexpr const char* webhook_schema = R"json({
  "type": "object", "additionalProperties": false,
  "properties": {
    "root": {"type": "string"},
    "url": {"type": "string", "maxLength": 2048},
    "events": {"type": "array", "minItems": 1, "items": {"enum": [
      "approval_decided", "approval_requested", "breaker_tripped", "budget_exceeded", "frozen",
      "threshold_crossed", "unfrozen"]}},
    "secret": {"type": "string", "minLength": 16, "maxLength": 256}
  }
})json";

constexpr Operation operations[] = {
    {"put", "/v1/budgets/{path}",
     "Create or update a budget node and its policies (parent must exist)", "200", true, true,
     "201", budget_schema},
    {"get", "/v1/budgets/{path}", "Budget state: spent, reserved, available over the path", "200",
     false, false},
    {"get", "/v1/budgets", "Every node of a root's subtree (?root=R)", "200", false, false},
    {"post", "/v1/budgets/{path}/freeze",
     "Freeze a node (a root: the fleet kill switch); void_holds also voids its open holds", "200",
     true, true, nullptr, freeze_schema},
    {"post", "/v1/budgets/{path}/unfreeze", "Unfreeze a node", "200", true, true},
    {"post", "/v1/keys", "Issue an agent key bound to a node; the secret is shown once", "201",
     true, true},
    {"delete", "/v1/keys/{id}", "Revoke an agent key", "200", true, false},
    {"post", "/v1/holds",
     "Reserve an amount (two-phase); 202 pending_approval above approval_above; 402 when denied",
     "201", false, true, "202"},
    {"get", "/v1/holds/{id}",
     "A hold; ?wait=30s long-polls one pending approval until it is decided (at most 60s)", "200",
     false, false},
    {"post", "/v1/holds/{id}/capture", "Capture up to the held amount", "200", false, true},
    {"post", "/v1/holds/{id}/void", "Release a hold (or withdraw one pending approval)", "200",
     false, true},
    {"post", "/v1/holds/{id}/approve",
     "Approve a hold pending approval: it is held for its ttl from now", "200", true, true, nullptr,
     reason_schema},
    {"post", "/v1/holds/{id}/reject", "Reject a hold pending approval: its amount is released",
     "200", true, true, nullptr, reason_schema},
    {"get", "/v1/approvals", "Holds of a root waiting for approval (?root=R&limit=N)", "200", true,
     false},
    {"post", "/v1/spends", "One-shot spend (hold and capture in one commit); 402 when denied",
     "201", false, true},
    {"get", "/v1/budget", "The calling key's own budget state", "200", false, false},
    {"get", "/v1/entries", "Ledger entries of a root (?root=R&after=SEQ&limit=N)", "200", false,
     false},
    {"get", "/v1/events", "Server-Sent Events: each committed entry as it commits", "200", false,
     false},
    {"get", "/v1/audit/verify", "Re-verify a root's hash chain (?root=R)", "200", true, false},
    {"put", "/v1/webhooks/{name}",
     "Create or update a webhook of a root (url, events, secret); deliveries are signed", "200",
     true, true, "201", webhook_schema},
    {"get", "/v1/webhooks/{name}", "A webhook (never its secret)", "200", true, false},
    {"get", "/v1/webhooks", "Every webhook (?root=R)", "200", true, false},
    {"get", "/v1/webhooks/{name}/deliveries",
     "The delivery log of a webhook, newest first (?limit=N)", "200", true, false},
    {"delete", "/v1/webhooks/{name}", "Delete a webhook", "200", true, false},
    {"post", "/v1/query",
     "Constrained query: metric, group_by (<= 3), filters, range or from/to, order, limit; an "
     "agent key is confined to its subtree",
     "200", false, false},
    {"post", "/v1/ask",
     "A plain-English question: the constrained query it became, its rows and a sentence (or "
     "a clear cannot-answer)",
     "200", false, false},
    {"get", "/v1/export",
     "Settled money as csv, hledger or beancount (?subtree=&format=&period= or from/to)", "200",
     false, false},
    {"get", "/healthz", "Liveness and store health", "200", false, false},
    {"get", "/metrics", "Prometheus metrics", "200", false, false},
    {"get", "/openapi.json", "This document", "200", false, false},
};

}  // namespace

std::string openapi_document() {
  boost::json::object paths;
  for (const Operation& operation : operations) {
    boost::json::object responses{{operation.success, boost::json::object{{"description", "OK"}}},
                                  {"400", boost::json::object{{"description", "Invalid input"}}},
                                  {"401", boost::json::object{{"description", "No or bad token"}}}};
    if (operation.also_success != nullptr) {
      responses[operation.also_success] =
          boost::json::object{{"description", std::string_view(operation.also_success) == "202"
                                                  ? "Accepted, waiting for approval"
                                                  : "Created"}};
    }
    if (std::string_view(operation.method) == "post") {
      responses["402"] = boost::json::object{{"description", "Denied by a policy or budget"}};
      responses["409"] = boost::json::object{{"description", "Conflict"}};
    }
    boost::json::array parameters;
    const std::string_view path = operation.path;
    for (const char* name : {"path", "id", "name"}) {
      if (path.find(std::string("{") + name + "}") != std::string_view::npos) {
        parameters.push_back(boost::json::object{
            {"name", name}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}});
      }
    }
    if (operation.idempotent_post) {
      parameters.push_back(
          boost::json::object{{"name", "Idempotency-Key"},
                              {"in", "header"},
                              {"required", false},
                              {"schema", {{"type", "string"}, {"maxLength", 255}}}});
    }
    boost::json::object details{{"summary", operation.summary},
                                {"responses", std::move(responses)},
                                {"parameters", std::move(parameters)},
                                {"x-admin-only", operation.admin_only}};
    if (operation.request_schema != nullptr) {
      details["requestBody"] = boost::json::object{
          {"required", false},
          {"content",
           {{"application/json", {{"schema", boost::json::parse(operation.request_schema)}}}}}};
    }
    const bool open = path == "/healthz" || path == "/metrics" || path == "/openapi.json";
    if (!open)
      details["security"] =
          boost::json::array{boost::json::object{{"bearer", boost::json::array{}}}};
    boost::json::value& item = paths[operation.path];
    if (!item.is_object())
      item.emplace_object();
    item.as_object()[operation.method] = std::move(details);
  }
  boost::json::object document{
      {"openapi", "3.1.0"},
      {"info",
       {{"title", "Stub"},
        {"version", "0.1.0"},
        {"description", "The general ledger for AI-agent spend. See docs/api.md."}}},
      {"components", {{"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
      {"paths", std::move(paths)}};
  return boost::json::serialize(document);
}

}  // namespace stub::http
