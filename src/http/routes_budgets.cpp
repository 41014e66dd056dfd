// Routes: Budgets: the tree, its policies, freezes and the kill switch.

#include <boost/json/parse.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/policy_fields.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/views.hpp"

namespace stub::http::detail {

// PUT/GET /v1/budgets/{path}, POST /v1/budgets/{path}/freeze|unfreeze, GET /v1/budgets,
// GET /v1/budget.
awaitable<std::optional<ApiReply>> Handler::route_budgets() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n >= 3 && s[1] == "budgets") {
    if (method == "POST" && n >= 4 && (s[n - 1] == "freeze" || s[n - 1] == "unfreeze"))
      co_return co_await freeze(join_segments(s, 2, n - 1), s[n - 1] == "freeze");
    if (method == "PUT")
      co_return co_await put_budget(join_segments(s, 2, n));
    if (method == "GET")
      co_return co_await get_budget(join_segments(s, 2, n));
  }
  if (n == 2 && s[1] == "budgets" && method == "GET")
    co_return co_await list_budgets();
  if (n == 2 && s[1] == "budget" && method == "GET")
    co_return co_await own_budget();
  co_return std::nullopt;
}

// Reads every node from the root to `path` and renders the budget state.
awaitable<ApiReply> Handler::budget_state(const std::string& path) {
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto lineage_work = [this, path] { return context_.store.get_lineage(path); };
  auto lineage = co_await run_blocking(context_.read_pool, std::move(lineage_work));
  if (!lineage.ok())
    co_return error_reply(lineage.error());
  if (lineage->empty())
    co_return error_reply(not_found("No budget " + path + "."));
  std::vector<const ledger::BudgetNode*> view;
  for (const auto& node : *lineage) {
    if (Status readable = readable_node(node); !readable.ok())
      co_return error_reply(readable.error());
    view.push_back(&node);
  }
  co_return json_reply(200, ledger::budget_to_json(lineage->back(), view, context_.clock()));
}

awaitable<ApiReply> Handler::put_budget(const std::string& text) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto path = parse_path(text);
  if (!path.ok())
    co_return error_reply(path.error());
  if (Status known = reject_unknown_fields(
          body_, {"limit", "period", "per_txn_max", "currency", "windows", "vendors",
                  "vendor_limits", "approval_above", "breaker", "thresholds"});
      !known.ok()) {
    co_return error_reply(known.error());
  }
  Command command = base_command(CommandKind::set_budget, *path, "PUT /v1/budgets/" + text);
  ledger::BudgetSettings& settings = command.settings;
  if (body_.object.contains("limit")) {
    auto limit = money_field(body_, "limit");
    if (!limit.ok())
      co_return error_reply(limit.error());
    if (limit.value() && limit.value()->is_negative()) {
      co_return error_reply(
          Error::invalid("invalid_amount", "Field \"limit\" must not be negative."));
    }
    settings.limit_given = true;
    settings.limit = *limit;
  }
  if (body_.object.contains("per_txn_max")) {
    auto maximum = money_field(body_, "per_txn_max");
    if (!maximum.ok())
      co_return error_reply(maximum.error());
    if (maximum.value() && !maximum.value()->is_positive()) {
      co_return error_reply(
          Error::invalid("invalid_amount", "Field \"per_txn_max\" must be above zero."));
    }
    settings.per_txn_max_given = true;
    settings.per_txn_max = *maximum;
  }
  if (const auto* period = body_.object.if_contains("period")) {
    std::optional<ledger::Period> parsed;
    if (period->is_string())
      parsed = ledger::parse_period(period->get_string());
    if (!parsed) {
      co_return error_reply(Error::invalid(
          "invalid_period", "Field \"period\" must be one of none, day, week, month."));
    }
    settings.period = parsed;
  }
  if (const auto* currency = body_.object.if_contains("currency")) {
    if (!path->is_root()) {
      co_return error_reply(
          Error::invalid("invalid_currency", "Only a root budget sets the currency."));
    }
    const bool valid = currency->is_string() && currency->get_string().size() >= 3 &&
                       currency->get_string().size() <= 8 &&
                       std::all_of(currency->get_string().begin(), currency->get_string().end(),
                                   [](char c) { return c >= 'A' && c <= 'Z'; });
    if (!valid) {
      co_return error_reply(Error::invalid(
          "invalid_currency", "Field \"currency\" must be an upper-case code such as USD."));
    }
    settings.currency = std::string(currency->get_string());
  }
  if (Status policies = read_policy_fields(body_, settings); !policies.ok())
    co_return error_reply(policies.error());
  co_return co_await execute(std::move(command));
}

awaitable<ApiReply> Handler::get_budget(const std::string& text) {
  auto path = parse_path(text);
  if (!path.ok())
    co_return error_reply(path.error());
  if (Status scope = check_scope(principal_, *path); !scope.ok())
    co_return error_reply(scope.error());
  co_return co_await budget_state(path->str());
}

awaitable<ApiReply> Handler::own_budget() {
  std::string path = principal_.admin ? target_.query["budget"] : principal_.key.budget;
  if (path.empty()) {
    co_return error_reply(
        Error::invalid("missing_budget", "The admin token must name ?budget=PATH."));
  }
  co_return co_await get_budget(path);
}

awaitable<ApiReply> Handler::list_budgets() {
  auto root_name = root_query();
  if (!root_name.ok())
    co_return error_reply(root_name.error());
  const std::string root = *root_name;
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto nodes_work = [this, root] { return context_.store.list_subtree(root); };
  auto nodes = co_await run_blocking(context_.read_pool, std::move(nodes_work));
  if (!nodes.ok())
    co_return error_reply(nodes.error());
  const ledger::Micros now = context_.clock();
  std::map<std::string, const ledger::BudgetNode*> by_path;
  for (const auto& node : *nodes) {
    if (Status readable = readable_node(node); !readable.ok())
      co_return error_reply(readable.error());
    by_path[node.path] = &node;
  }
  boost::json::array out;
  for (const auto& node : *nodes) {
    const auto node_path = BudgetPath::parse(node.path);
    if (!principal_.admin && !node_path->within(*BudgetPath::parse(principal_.key.budget))) {
      continue;
    }
    std::vector<const ledger::BudgetNode*> lineage;
    for (const auto& ancestor : node_path->lineage())
      lineage.push_back(by_path.at(ancestor.str()));
    out.push_back(ledger::budget_to_json(node, lineage, now));
  }
  co_return json_reply(200, boost::json::object{{"budgets", std::move(out)}});
}

awaitable<ApiReply> Handler::freeze(const std::string& text, bool freeze) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto path = parse_path(text);
  if (!path.ok())
    co_return error_reply(path.error());
  if (Status known = freeze ? reject_unknown_fields(body_, {"reason", "void_holds"})
                            : reject_unknown_fields(body_, {"reason"});
      !known.ok()) {
    co_return error_reply(known.error());
  }
  auto reason = text_field(body_, "reason");
  if (!reason.ok())
    co_return error_reply(reason.error());
  bool void_holds = false;
  if (const auto* flag = body_.object.if_contains("void_holds"); flag && !flag->is_null()) {
    if (!flag->is_bool()) {
      co_return error_reply(
          Error::invalid("invalid_field", "Field \"void_holds\" must be true or false."));
    }
    void_holds = flag->get_bool();
  }
  Command command = base_command(freeze ? CommandKind::freeze : CommandKind::unfreeze, *path,
                                 request_.method + " " + request_.target);
  command.reason = *reason;
  command.void_holds = void_holds;
  ledger::Outcome outcome = co_await submit_command(context_.sequencer, std::move(command));
  if (!void_holds || !outcome.ok() || outcome->status != 200)
    co_return outcome_reply(outcome);
  co_return co_await finish_voiding(*path, boost::json::parse(outcome->body).as_object());
}

// A freeze with void_holds voids what fits under the per-commit row bound in its own commit;
// the rest of the frozen subtree's holds (none can be added: it is frozen) are voided by
// further commits here before the caller is answered, with the counts summed.
awaitable<ApiReply> Handler::finish_voiding(const BudgetPath& path, boost::json::object body) {
  constexpr int continuations_max = 100'000;
  for (int i = 0; i < continuations_max && body["holds_remaining"].to_number<int64_t>() > 0; ++i) {
    Command more = base_command(CommandKind::void_holds, path, "void_holds");
    more.idempotency_key.clear();  // voiding what is open in a frozen subtree repeats safely
    const ledger::Outcome next = co_await submit_command(context_.sequencer, std::move(more));
    if (!next.ok())
      co_return error_reply(next.error());  // a retry with the same key finishes the job
    boost::json::object share = boost::json::parse(next->body).as_object();
    for (const char* count : {"holds_voided", "holds_expired"}) {
      share[count] = share[count].to_number<int64_t>() + body[count].to_number<int64_t>();
    }
    body = std::move(share);
  }
  co_return json_reply(200, body);
}

}  // namespace stub::http::detail
