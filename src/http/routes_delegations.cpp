// Routes: delegations. An agent key hands a sub-agent (or a run) a child budget and its own
// key, in one commit: POST /v1/delegations. The admin may delegate below any node, and
// POST /v1/keys with `run` (routes_keys.cpp) is the same command for a per-run key.

#include <boost/json/parse.hpp>

#include "http/async_bridge.hpp"
#include "http/credentials.hpp"
#include "http/handler.hpp"
#include "http/policy_fields.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"

namespace stub::http::detail {

namespace {

// The longest a delegated key may live, whatever the parent's.
constexpr ledger::Micros delegation_ttl_max = 366LL * 24 * 3600 * ledger::micros_per_second;

}  // namespace

// POST /v1/delegations.
awaitable<std::optional<ApiReply>> Handler::route_delegations() {
  const auto& s = target_.segments;
  if (s.size() == 2 && s[1] == "delegations" && request_.method == "POST")
    co_return co_await create_delegation();
  co_return std::nullopt;
}

Result<Command> Handler::delegation_command(const RequestBody& body, const std::string& parent,
                                            bool run, std::string& token) {
  auto parent_path = parse_path(parent);
  if (!parent_path.ok())
    return parent_path.error();
  if (Status scoped = check_scope(principal_, *parent_path); !scoped.ok())
    return scoped.error();
  auto name = text_field(body, "name", ledger::BudgetPath::segment_length_max);
  if (!name.ok())
    return name.error();
  if (name->empty() || name->find('/') != std::string::npos || !ledger::BudgetPath::parse(*name)) {
    return Error::invalid("invalid_name",
                          "Field \"name\" must be one budget path segment: [a-z0-9][a-z0-9_-]* "
                          "(at most 63 characters).");
  }
  const auto child = ledger::BudgetPath::parse(parent_path->str() + "/" + *name);
  if (!child) {
    return Error::invalid("depth_exceeded", "A delegation below " + parent_path->str() +
                                                " would be deeper than " +
                                                std::to_string(ledger::BudgetPath::depth_max) +
                                                " levels (delegations and runs count).");
  }
  auto limit = required_amount(body, "limit");
  if (!limit.ok())
    return limit.error();
  auto ttl = duration_field(body, "ttl");
  if (!ttl.ok())
    return ttl.error();
  if (!ttl.value() || *ttl.value() <= 0 || *ttl.value() > delegation_ttl_max) {
    return Error::invalid("invalid_ttl",
                          "Field \"ttl\" is required: the delegated key's life, such as \"1h\", "
                          "above zero and at most 366 days (and no longer than the parent key's).");
  }
  std::optional<std::vector<std::string>> allow;
  if (const auto* vendors = body.object.if_contains("vendors"); vendors && !vendors->is_null()) {
    RequestBody wrapped;
    wrapped.object["vendors"] = boost::json::object{{"allow", *vendors}};
    ledger::BudgetSettings settings;
    if (!vendors->is_array()) {
      return Error::invalid("invalid_vendors",
                            "Field \"vendors\" must be a list of vendor names or \"*.suffix\" "
                            "patterns: the child's allow list.");
    }
    if (Status read = read_policy_fields(wrapped, settings); !read.ok())
      return read.error();
    allow = settings.vendors ? settings.vendors->allow : std::vector<std::string>{};
    if (allow->empty()) {
      return Error::invalid("invalid_vendors",
                            "Field \"vendors\" must name at least one vendor (omit it to keep "
                            "the parent's).");
    }
  }
  IssuedKey issued = issue_key(child->str(), *name, 0);
  Command command =
      base_command(CommandKind::delegate, *child, run ? "POST /v1/keys" : "POST /v1/delegations");
  command.amount = *limit;
  command.ttl = *ttl.value();
  command.key = issued.key;
  command.allow_vendors = std::move(allow);
  command.run = run;
  token = issued.token;
  return command;
}

awaitable<ApiReply> Handler::submit_delegation(Command command, std::string token) {
  const std::string key_id = command.key.id;
  const ledger::Outcome outcome = co_await submit_command(context_.sequencer, std::move(command));
  if (!outcome.ok())
    co_return error_reply(outcome.error());
  auto parsed = boost::json::parse(outcome->rendered.body);
  if (!parsed.is_object())
    co_return json_reply(outcome->rendered.status, outcome->rendered.body);
  auto body = parsed.as_object();
  // The secret goes to the first answer only: a replay (another key id) shows "key": null.
  if (body.contains("key_id") && body["key_id"] == boost::json::value(key_id))
    body["key"] = token;
  co_return json_reply(outcome->rendered.status, body);
}

awaitable<ApiReply> Handler::create_delegation() {
  if (Status known = reject_unknown_fields(body_, {"name", "limit", "ttl", "vendors", "budget"});
      !known.ok()) {
    co_return error_reply(known.error());
  }
  if (Status keyed = require_idempotency_key(); !keyed.ok())
    co_return error_reply(keyed.error());
  std::string parent;
  if (body_.object.contains("budget")) {
    auto given = text_field(body_, "budget");
    if (!given.ok())
      co_return error_reply(given.error());
    parent = *given;
  } else if (principal_.admin) {
    co_return error_reply(
        Error::invalid("missing_field",
                       "Field \"budget\" is required for the admin: the node to delegate below."));
  } else {
    parent = principal_.key.budget;
  }
  std::string token;
  auto command = delegation_command(body_, parent, false, token);
  if (!command.ok())
    co_return error_reply(command.error());
  co_return co_await submit_delegation(std::move(command).value(), std::move(token));
}

}  // namespace stub::http::detail
