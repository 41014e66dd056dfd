// Routes: API keys: issuing and revoking agent keys.

#include <boost/json/parse.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"

namespace stub::http::detail {

// POST /v1/keys, DELETE /v1/keys/{id}.
awaitable<std::optional<ApiReply>> Handler::route_keys() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n == 2 && s[1] == "keys" && method == "POST")
    co_return co_await create_key();
  if (n == 3 && s[1] == "keys" && method == "DELETE")
    co_return co_await revoke_key(s[2]);
  co_return std::nullopt;
}

awaitable<ApiReply> Handler::create_key() {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto fields = decode_key(body_);
  if (!fields.ok())
    co_return error_reply(fields.error());
  if (fields->run != nullptr)
    co_return co_await create_run_key(fields->budget, *fields->run);
  const std::optional<ledger::Micros> expires_in = fields->expires_in;
  const ledger::Micros expires_at = expires_in ? context_.clock() + *expires_in : 0;
  const BudgetPath& path = fields->budget;
  IssuedKey issued = issue_key(path.str(), fields->name, expires_at);
  Command command = base_command(CommandKind::create_key, path, "POST /v1/keys");
  command.key = issued.key;
  const ledger::Outcome outcome = co_await submit_command(context_.sequencer, std::move(command));
  if (!outcome.ok())
    co_return error_reply(outcome.error());
  auto body = boost::json::parse(outcome->rendered.body).as_object();
  // The secret goes to the first answer only: a replay (another id) shows "key": null.
  if (body["id"] == boost::json::value(issued.key.id))
    body["key"] = issued.token;
  co_return json_reply(outcome->rendered.status, body);
}

// POST /v1/keys with `run: {name, limit, ttl}`: a per-run key. The run's node is created below
// `budget` with the key, in one commit, as a delegation by the admin (issue 11 part 5): capped,
// expiring, revocable; when its key expires or is revoked its holds are settled and the node
// frozen, and what it did not use returns to `budget`.
awaitable<ApiReply> Handler::create_run_key(const BudgetPath& parent,
                                            const boost::json::value& run) {
  if (!run.is_object()) {
    co_return error_reply(Error::invalid(
        "invalid_run", "Field \"run\" must be an object: {\"name\", \"limit\", \"ttl\"}."));
  }
  if (body_.object.contains("expires_in")) {
    co_return error_reply(Error::invalid(
        "invalid_run", "A run key lives for run.ttl; give no \"expires_in\" with \"run\"."));
  }
  if (Status keyed = require_idempotency_key(); !keyed.ok())
    co_return error_reply(keyed.error());
  RequestBody fields;
  fields.object = run.get_object();
  if (Status known = reject_unknown_fields(fields, {"name", "limit", "ttl", "vendors"});
      !known.ok())
    co_return error_reply(known.error());
  if (const auto* limit = fields.object.if_contains("limit"); limit && limit->is_number()) {
    co_return error_reply(Error::invalid(
        "invalid_amount", "Field \"run.limit\" must be a decimal string such as \"2.50\"."));
  }
  if (const auto* ttl = fields.object.if_contains("ttl"); ttl && ttl->is_int64())
    fields.number_literals["ttl"] = std::to_string(ttl->get_int64());
  std::string token;
  auto command = delegation_command(fields, parent.str(), true, token);
  if (!command.ok())
    co_return error_reply(command.error());
  // The key's own name, when given, names the key; the run's names the node.
  if (body_.object.contains("name")) {
    auto name = text_field(body_, "name", 128);
    if (!name.ok())
      co_return error_reply(name.error());
    command->key.name = *name;
  }
  co_return co_await submit_delegation(std::move(command).value(), std::move(token));
}

awaitable<ApiReply> Handler::revoke_key(const std::string& id) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto key_work = [this, id] { return context_.store.get_key(id); };
  auto key = co_await run_blocking(context_.read_pool, std::move(key_work));
  if (!key.ok())
    co_return error_reply(key.error());
  if (!key.value())
    co_return error_reply(not_found("No key " + id + "."));
  const auto path = BudgetPath::parse(key.value()->budget);
  Command command = base_command(CommandKind::revoke_key, *path, "DELETE /v1/keys/" + id);
  command.key.id = id;
  command.idempotency_key.clear();  // A revoke is idempotent by itself.
  co_return co_await execute(std::move(command));
}

}  // namespace stub::http::detail
