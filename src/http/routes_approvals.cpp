// Routes: Approvals: holds waiting for a human decision.

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/render.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"

namespace stub::http::detail {

// POST /v1/holds/{id}/approve|reject (with an Idempotency-Key), GET /v1/approvals.
awaitable<std::optional<ApiReply>> Handler::route_approvals() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n == 4 && s[1] == "holds" && method == "POST" && (s[3] == "approve" || s[3] == "reject")) {
    if (Status keyed = require_idempotency_key(); !keyed.ok())
      co_return error_reply(keyed.error());
    co_return co_await decide_approval(s[2], s[3] == "approve");
  }
  if (n == 2 && s[1] == "approvals" && method == "GET")
    co_return co_await list_approvals();
  co_return std::nullopt;
}

awaitable<ApiReply> Handler::decide_approval(const std::string& id, bool approve) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto reason = decode_approval(body_);
  if (!reason.ok())
    co_return error_reply(reason.error());
  auto hold = co_await load_hold(id);
  if (!hold.ok())
    co_return error_reply(hold.error());
  Command command = new_command(approve ? CommandKind::approve : CommandKind::reject_hold,
                                *BudgetPath::parse(hold->budget));
  command.hold_id = id;
  command.reason = *reason;
  command.request_hash = money_fingerprint(command, approve ? "approve" : "reject");
  co_return co_await execute(std::move(command));
}

awaitable<ApiReply> Handler::list_approvals() {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto root_name = root_query();
  if (!root_name.ok())
    co_return error_reply(root_name.error());
  auto limit = integer_query("limit", 100, 1, static_cast<int64_t>(Api::entries_page_max));
  if (!limit.ok())
    co_return error_reply(limit.error());
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto pending_work = [this, root = *root_name, count = static_cast<size_t>(*limit)] {
    return context_.store.list_pending_approvals(root, count);
  };
  auto pending = co_await run_blocking(context_.read_pool, std::move(pending_work));
  if (!pending.ok())
    co_return error_reply(pending.error());
  const ledger::Micros now = context_.clock();
  boost::json::array approvals;
  for (const ledger::Hold& hold : *pending) {
    // One past its deadline but not yet swept reads as rejected; it is no longer waiting.
    if (hold.status_at(now) == ledger::HoldStatus::pending_approval)
      approvals.push_back(hold_to_json(hold, now));
  }
  co_return json_reply(200, boost::json::object{{"approvals", std::move(approvals)}});
}

}  // namespace stub::http::detail
