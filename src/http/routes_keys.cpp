// Routes: API keys: issuing and revoking agent keys.

#include <boost/json/parse.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
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
  if (Status known = reject_unknown_fields(body_, {"budget", "name", "expires_in"}); !known.ok()) {
    co_return error_reply(known.error());
  }
  auto budget = text_field(body_, "budget");
  if (!budget.ok())
    co_return error_reply(budget.error());
  auto path = parse_path(*budget);
  if (!path.ok())
    co_return error_reply(path.error());
  auto name = text_field(body_, "name", 128);
  if (!name.ok())
    co_return error_reply(name.error());
  auto expires_in = duration_field(body_, "expires_in");
  if (!expires_in.ok())
    co_return error_reply(expires_in.error());
  if (expires_in.value() && *expires_in.value() <= 0) {
    co_return error_reply(
        Error::invalid("invalid_duration", "Field \"expires_in\" must be above zero."));
  }
  const ledger::Micros expires_at = expires_in.value() ? context_.clock() + *expires_in.value() : 0;
  IssuedKey issued = issue_key(path->str(), *name, expires_at);
  Command command = base_command(CommandKind::create_key, *path, "POST /v1/keys");
  command.key = issued.key;
  const ledger::Outcome outcome = co_await submit_command(context_.sequencer, std::move(command));
  if (!outcome.ok())
    co_return error_reply(outcome.error());
  auto body = boost::json::parse(outcome->body).as_object();
  // The secret goes to the first answer only: a replay (another id) shows "key": null.
  if (body["id"] == boost::json::value(issued.key.id))
    body["key"] = issued.token;
  co_return json_reply(outcome->status, body);
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
