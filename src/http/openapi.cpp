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
    "vendor_categories": {"type": ["object", "null"], "maxProperties": 64,
      "additionalProperties": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}},
    "require_tags": {"type": ["array", "null"], "maxItems": 16,
      "items": {"type": "string", "minLength": 1, "maxLength": 64}},
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

constexpr const char* session_schema = R"json({
  "type": "object", "additionalProperties": false, "required": ["token"],
  "properties": {"token": {"type": "string", "maxLength": 512}}
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

constexpr const char* delegation_schema = R"json({
  "type": "object", "additionalProperties": false, "required": ["name", "limit", "ttl"],
  "properties": {
    "budget": {"type": "string", "description": "the node to delegate below (an agent key: its own node by default; the admin: required)"},
    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$"},
    "limit": {"type": "string", "description": "decimal; at most what every level above has available now, reserved until the delegation ends"},
    "ttl": {"type": ["string", "integer"], "description": "the child key's life, at most the parent key's remaining life"},
    "vendors": {"type": "array", "items": {"type": "string"}, "description": "an allow list narrower than every allow list above"}
  }
})json";

constexpr const char* vendor_schema = R"json({
  "type": "object", "additionalProperties": false,
  "properties": {
    "root": {"type": "string"},
    "kind": {"enum": ["openai", "anthropic", "generic"]},
    "base_url": {"type": "string", "maxLength": 2048},
    "credential": {"type": "string", "minLength": 1, "maxLength": 4096},
    "credential_header": {"type": ["string", "null"], "maxLength": 64},
    "cost": {"oneOf": [
      {"type": "null"},
      {"type": "object", "additionalProperties": false, "required": ["type", "amount"],
       "properties": {"type": {"const": "fixed"}, "amount": {"type": "string"}}},
      {"type": "object", "additionalProperties": false, "required": ["type", "field", "exponent"],
       "properties": {"type": {"const": "field"}, "field": {"type": "string", "maxLength": 128},
                      "exponent": {"type": "integer", "minimum": 0, "maximum": 18},
                      "source": {"enum": ["json", "form"]}}}]},
    "timeouts": {"type": ["object", "null"], "additionalProperties": false,
      "properties": {
        "connect_ms": {"type": "integer", "minimum": 1, "maximum": 600000},
        "first_byte_ms": {"type": "integer", "minimum": 1, "maximum": 600000},
        "idle_ms": {"type": "integer", "minimum": 1, "maximum": 600000}}}
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
    {"post", "/v1/keys",
     "Issue an agent key bound to a node; the secret is shown once. With run: {name, limit, ttl} "
     "a per-run key: its own capped node below the budget, created with it in one commit",
     "201", true, true},
    {"post", "/v1/delegations",
     "Delegate: a child budget and its key (secret shown once) in one commit; the limit is "
     "reserved from every level above until the child ends (its key revoked or expired, or its "
     "parent's); 409 delegation_exceeds_available",
     "201", false, true, nullptr, delegation_schema},
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
    {"get", "/v1/audit/verify",
     "Re-verify a root's hash chain and reconcile its budgets with their postings (?root=R)", "200",
     true, false},
    {"get", "/v1/checkpoints",
     "A root's Ed25519-signed checkpoints (root, seq, hash, ts), ascending (?root=R&after=SEQ&"
     "limit=N)",
     "200", false, false},
    {"get", "/v1/checkpoints/key",
     "The checkpoint signer's Ed25519 public key (404 checkpoints_disabled without one)", "200",
     false, false},
    {"put", "/v1/webhooks/{name}",
     "Create or update a webhook of a root (url, events, secret); deliveries are signed", "200",
     true, true, "201", webhook_schema},
    {"get", "/v1/webhooks/{name}", "A webhook (never its secret)", "200", true, false},
    {"get", "/v1/webhooks", "Every webhook (?root=R)", "200", true, false},
    {"get", "/v1/webhooks/{name}/deliveries",
     "The delivery log of a webhook, newest first (?limit=N)", "200", true, false},
    {"delete", "/v1/webhooks/{name}", "Delete a webhook", "200", true, false},
    {"put", "/v1/vendors/{name}",
     "Create or update a metering-proxy vendor (kind, base_url, credential sealed at rest, "
     "credential_header, cost rule, timeouts); fields given replace the vendor's, null removes "
     "one",
     "200", true, true, "201", vendor_schema},
    {"get", "/v1/vendors/{name}", "A vendor (never its credential: credential_set only)", "200",
     true, false},
    {"get", "/v1/vendors", "Every vendor", "200", true, false},
    {"post", "/proxy/openai/v1/chat/completions",
     "The metering proxy: an OpenAI chat completion (or stream) with a Stub agent key as the API "
     "key; held at its worst case, forwarded to the vendor `openai`, captured from its usage; "
     "refusals are 402 with x-should-retry: false (docs/proxy.md)",
     "200", false, false},
    {"post", "/proxy/openai/v1/responses",
     "The metering proxy: an OpenAI Responses call (or stream), held at its worst case, captured "
     "from its usage (streams: response.completed)",
     "200", false, false},
    {"post", "/proxy/openai/v1/embeddings",
     "The metering proxy: OpenAI embeddings, held for their input, captured from usage", "200",
     false, false},
    {"get", "/proxy/openai/v1/models", "The vendor's model list, forwarded (free: no hold)", "200",
     false, false},
    {"post", "/proxy/anthropic/v1/messages",
     "The metering proxy: an Anthropic message (or stream) with a Stub agent key as x-api-key; "
     "held at its worst case, captured from its usage (cache reads and writes priced apart); "
     "refusals are 402 billing_error with x-should-retry: false",
     "200", false, false},
    {"post", "/proxy/anthropic/v1/messages/count_tokens",
     "Anthropic token counting, forwarded (free: no hold)", "200", false, false},
    {"get", "/proxy/anthropic/v1/models", "The vendor's model list, forwarded (free: no hold)",
     "200", false, false},
    {"post", "/proxy/v/{vendor}/{path}",
     "The generic pass-through for a paid HTTP API (any method): priced by the vendor's cost "
     "rule (fixed, or a JSON or form field in minor units), refused before the vendor is called "
     "when over budget, forwarded with the vendor's credential; a 2xx is captured, any other "
     "answer voided",
     "200", false, false},
    {"delete", "/v1/vendors/{name}", "Delete a vendor", "200", true, false},
    {"post", "/v1/sessions",
     "Dashboard sign-in with the admin token or an agent key (body {token}): sets an HttpOnly "
     "session cookie, answers the session's CSRF token",
     "201", false, false, nullptr, session_schema},
    {"get", "/v1/session", "The browser session of the cookie (and its CSRF token)", "200", false,
     false},
    {"delete", "/v1/session", "Sign out: ends the cookie's session", "200", false, false},
    {"post", "/v1/replays",
     "Run the runaway-agent replay against a fresh demo org, server-side (202, one at a time)",
     "202", true, false},
    {"get", "/v1/replays/{id}", "A replay's progress and, once finished, its summary", "200", true,
     false},
    {"get", "/", "The mission-control dashboard (embedded in the binary)", "200", false, false},
    {"get", "/assets/{name}", "The dashboard's scripts and styles", "200", false, false},
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
    const bool open = path == "/healthz" || path == "/metrics" || path == "/openapi.json" ||
                      path == "/" || path.starts_with("/assets/") || path == "/v1/sessions";
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
