// Routes: Holds and spends: the data plane that moves and reserves money.

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <charconv>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/views.hpp"

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
  if (Status known = hold ? reject_unknown_fields(body_, {"amount", "vendor", "intent", "tags",
                                                          "category", "ttl", "on_expiry", "budget"})
                          : reject_unknown_fields(body_, {"amount", "vendor", "intent", "tags",
                                                          "category", "receipt", "budget"});
      !known.ok()) {
    co_return error_reply(known.error());
  }
  auto budget = text_field(body_, "budget");
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
  auto amount = required_amount(body_, "amount");
  if (!amount.ok())
    co_return error_reply(amount.error());
  auto vendor = text_field(body_, "vendor");
  if (!vendor.ok())
    co_return error_reply(vendor.error());
  auto intent = text_field(body_, "intent");
  if (!intent.ok())
    co_return error_reply(intent.error());
  auto tags = tags_field(body_);
  if (!tags.ok())
    co_return error_reply(tags.error());

  Command command = new_command(hold ? CommandKind::hold : CommandKind::spend, *path);
  command.amount = *amount;
  command.vendor = *vendor;
  command.intent = *intent;
  command.tags_json = *tags;
  command.hold_id = new_hold_id();
  if (hold) {
    auto ttl = duration_field(body_, "ttl");
    if (!ttl.ok())
      co_return error_reply(ttl.error());
    command.ttl = ttl.value().value_or(hold_ttl_default);
    if (command.ttl < ledger::micros_per_second || command.ttl > hold_ttl_max) {
      co_return error_reply(
          Error::invalid("invalid_duration", "Field \"ttl\" must be between 1s and 24h."));
    }
    auto on_expiry = text_field(body_, "on_expiry");
    if (!on_expiry.ok())
      co_return error_reply(on_expiry.error());
    if (*on_expiry == "void") {
      command.on_expiry = ledger::OnExpiry::void_hold;
    } else if (!on_expiry->empty() && *on_expiry != "capture") {
      co_return error_reply(
          Error::invalid("invalid_on_expiry", "Field \"on_expiry\" must be capture or void."));
    }
  } else {
    auto receipt = receipt_field(body_);
    if (!receipt.ok())
      co_return error_reply(receipt.error());
    command.receipt_json = *receipt;
  }
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
  co_return json_reply(200, ledger::hold_to_json(*hold, context_.clock()));
}

awaitable<Result<ledger::Hold>> Handler::wait_for_decision(const std::string& id,
                                                           ledger::Micros wait) {
  auto executor = co_await boost::asio::this_coro::executor;
  auto timer = std::make_shared<boost::asio::steady_timer>(executor);
  auto decided = std::make_shared<std::atomic<bool>>(false);
  // Woken from a pool thread when an entry naming this hold commits: only post the wake-up
  // to this connection's executor, where the timer lives.
  const uint64_t ticket = waiters_.add(id, [timer, executor, decided] {
    decided->store(true);
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
  while (hold.ok() && !decided->load() &&
         hold->status_at(context_.clock()) == ledger::HoldStatus::pending_approval) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline)
      break;
    // Wakes at least every key_recheck_interval: a key revoked or expired meanwhile ends
    // the wait at once instead of at the deadline.
    timer->expires_after(
        std::min<std::chrono::steady_clock::duration>(deadline - now, key_recheck_interval));
    boost::system::error_code ignored;
    co_await timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
    if (decided->load())
      break;
    if (!principal_.admin) {
      if (Status usable = co_await api_.key_still_usable(principal_.key.id); !usable.ok())
        co_return usable.error();
    }
  }
  co_return co_await load_hold(id);
}

awaitable<ApiReply> Handler::settle(const std::string& id, bool capture) {
  if (Status known = capture ? reject_unknown_fields(body_, {"amount", "receipt"})
                             : reject_unknown_fields(body_, {});
      !known.ok()) {
    co_return error_reply(known.error());
  }
  std::optional<ledger::Money> amount;
  std::string receipt = "null";
  if (capture) {
    auto given = money_field(body_, "amount");
    if (!given.ok())
      co_return error_reply(given.error());
    if (given.value() && !given.value()->is_positive()) {
      co_return error_reply(Error::invalid(
          "invalid_amount", "Field \"amount\" must be above zero; void the hold to release it."));
    }
    amount = *given;
    auto parsed_receipt = receipt_field(body_);
    if (!parsed_receipt.ok())
      co_return error_reply(parsed_receipt.error());
    receipt = *parsed_receipt;
  }
  auto hold = co_await load_hold(id);
  if (!hold.ok())
    co_return error_reply(hold.error());
  Command command = new_command(capture ? CommandKind::capture : CommandKind::void_hold,
                                *BudgetPath::parse(hold->budget));
  command.hold_id = id;
  command.amount = amount;
  command.receipt_json = receipt;
  command.request_hash = money_fingerprint(command, capture ? "capture" : "void");
  co_return co_await execute(std::move(command));
}

}  // namespace stub::http::detail
