// Routes: Holds and spends: the data plane that moves and reserves money.

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/render.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"

namespace stub::http::detail {

// POST /v1/spends, POST /v1/holds, GET /v1/holds/{id}, POST /v1/holds/{id}/capture|void.
// Every call here that moves or reserves money carries an Idempotency-Key.
awaitable<std::optional<ApiReply>> Handler::route_holds() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  const bool spend = n == 2 && s[1] == "spends" && method == "POST";
  const bool hold = n == 2 && s[1] == "holds" && method == "POST";
  const bool settlement =
      n == 4 && s[1] == "holds" && method == "POST" && (s[3] == "capture" || s[3] == "void");
  if (spend || hold || settlement) {
    if (Status keyed = require_idempotency_key(); !keyed.ok())
      co_return error_reply(keyed.error());
  }
  if (spend || hold)
    co_return co_await spend_or_hold(hold);
  if (settlement)
    co_return co_await settle(s[2], s[3] == "capture");
  if (n == 3 && s[1] == "holds" && method == "GET")
    co_return co_await get_hold(s[2]);
  co_return std::nullopt;
}

awaitable<ApiReply> Handler::spend_or_hold(bool hold) {
  auto budget = decode_money_budget(body_, hold);
  if (!budget.ok())
    co_return error_reply(budget.error());
  if (budget->empty()) {
    if (principal_.admin) {
      co_return error_reply(
          Error::invalid("missing_budget", "The admin token must name a \"budget\"."));
    }
    *budget = principal_.key.budget;
  }
  auto path = parse_path(*budget);
  if (!path.ok())
    co_return error_reply(path.error());
  if (Status scope = check_scope(principal_, *path); !scope.ok())
    co_return error_reply(scope.error());
  Command command = new_command(hold ? CommandKind::hold : CommandKind::spend, *path);
  if (Status fields = decode_money_fields(body_, hold, command); !fields.ok())
    co_return error_reply(fields.error());
  command.hold_id = new_hold_id();
  command.request_hash = money_fingerprint(command, hold ? "POST /v1/holds" : "POST /v1/spends");
  co_return co_await execute(std::move(command));
}

// Reads a hold and checks the caller may see it.
awaitable<Result<ledger::Hold>> Handler::load_hold(const std::string& id) {
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto hold_work = [this, id] { return context_.store.get_hold(id); };
  auto hold = co_await run_blocking(context_.read_pool, std::move(hold_work));
  if (!hold.ok())
    co_return hold.error();
  if (!hold.value())
    co_return not_found("No hold " + id + ".");
  if (Status scope = check_scope(principal_, *BudgetPath::parse(hold.value()->budget));
      !scope.ok()) {
    co_return scope.error();
  }
  co_return *hold.value();
}

awaitable<ApiReply> Handler::get_hold(const std::string& id) {
  std::optional<ledger::Micros> wait;
  if (auto given = target_.query.find("wait"); given != target_.query.end()) {
    wait = given->second.empty() ? std::nullopt : ledger::parse_duration(given->second);
    if (!wait) {
      int64_t seconds = -1;
      const auto [end, error] = std::from_chars(
          given->second.data(), given->second.data() + given->second.size(), seconds);
      // Bounded before it is scaled, so no number of seconds can overflow.
      if (error == std::errc{} && end == given->second.data() + given->second.size() &&
          seconds >= 0 && seconds <= hold_wait_max / ledger::micros_per_second)
        wait = seconds * ledger::micros_per_second;
    }
    if (!wait || *wait > hold_wait_max) {
      co_return error_reply(Error::invalid(
          "invalid_query", "Query ?wait= must be a duration up to 60s, such as \"30s\"."));
    }
  }
  auto hold = co_await load_hold(id);
  if (!hold.ok())
    co_return error_reply(hold.error());
  const ledger::Micros now = context_.clock();
  if (wait && *wait > 0 && hold->status_at(now) == ledger::HoldStatus::pending_approval) {
    // Long poll: wake when an entry for this hold commits (approved, rejected, withdrawn,
    // expired), at the hold's own deadline, or after `wait`, whichever comes first.
    const ledger::Micros until = std::min(now + *wait, hold->expires_at);
    hold = co_await wait_for_decision(id, until - now);
    if (!hold.ok())
      co_return error_reply(hold.error());
  }
  co_return json_reply(200, hold_to_json(*hold, context_.clock()));
}

awaitable<Result<ledger::Hold>> Handler::wait_for_decision(const std::string& id,
                                                           ledger::Micros wait) {
  auto executor = co_await boost::asio::this_coro::executor;
  auto timer = std::make_shared<boost::asio::steady_timer>(executor);
  auto nudged = std::make_shared<std::atomic<bool>>(false);
  // Woken from a pool thread when an entry naming this hold commits: only post the wake-up
  // to this connection's executor, where the timer lives. A wake-up means "read again": the
  // entry may be the hold's own creation, whose batch can be published after its answer.
  const uint64_t ticket = waiters_.add(id, [timer, executor, nudged] {
    nudged->store(true);
    boost::asio::post(executor, [timer] { timer->cancel(); });
  });
  // Removed however the coroutine ends, even if it is destroyed while suspended (a server
  // shutting down), so no wake-up outlives this connection's executor.
  struct Remove {
    HoldWaiters& waiters;
    uint64_t ticket;
    ~Remove() { waiters.remove(ticket); }
  } remove{waiters_, ticket};
  // Read again after registering, so that a decision committed in between is not missed.
  auto hold = co_await load_hold(id);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::microseconds(wait);
  while (hold.ok() && hold->status_at(context_.clock()) == ledger::HoldStatus::pending_approval) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      break;
    // Wakes at least every key_recheck_interval: a key revoked or expired meanwhile ends
    // the wait at once instead of at the deadline.
    if (!nudged->load()) {
      timer->expires_after(
          std::min<std::chrono::steady_clock::duration>(deadline - now, key_recheck_interval));
      boost::system::error_code ignored;
      co_await timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
    }
    if (!principal_.admin) {
      if (Status usable = co_await api_.key_still_usable(principal_.key.id); !usable.ok())
        co_return usable.error();
    }
    // Cleared before the read, so an entry committed during it nudges the next round.
    nudged->store(false);
    hold = co_await load_hold(id);
  }
  co_return hold;
}

awaitable<ApiReply> Handler::settle(const std::string& id, bool capture) {
  auto fields = decode_settle(body_, capture);
  if (!fields.ok())
    co_return error_reply(fields.error());
  auto hold = co_await load_hold(id);
  if (!hold.ok())
    co_return error_reply(hold.error());
  Command command = new_command(capture ? CommandKind::capture : CommandKind::void_hold,
                                *BudgetPath::parse(hold->budget));
  command.hold_id = id;
  command.amount = fields->amount;
  command.receipt_json = fields->receipt_json;
  command.request_hash = money_fingerprint(command, capture ? "capture" : "void");
  co_return co_await execute(std::move(command));
}

}  // namespace stub::http::detail
