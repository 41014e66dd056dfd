// Routes: Budgets: the tree, its policies, freezes and the kill switch.

#include <boost/json/parse.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/policy_fields.hpp"
#include "http/render.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"

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
  co_return json_reply(200, budget_to_json(lineage->back(), view, context_.clock()));
}

awaitable<ApiReply> Handler::put_budget(const std::string& text) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto path = parse_path(text);
  if (!path.ok())
    co_return error_reply(path.error());
  Command command = base_command(CommandKind::set_budget, *path, "PUT /v1/budgets/" + text);
  if (Status settings = decode_budget_settings(body_, *path, command.settings); !settings.ok())
    co_return error_reply(settings.error());
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
    out.push_back(budget_to_json(node, lineage, now));
  }
  co_return json_reply(200, boost::json::object{{"budgets", std::move(out)}});
}

awaitable<ApiReply> Handler::freeze(const std::string& text, bool freeze) {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto path = parse_path(text);
  if (!path.ok())
    co_return error_reply(path.error());
  auto fields = decode_freeze(body_, freeze);
  if (!fields.ok())
    co_return error_reply(fields.error());
  const bool void_holds = fields->void_holds;
  Command command = base_command(freeze ? CommandKind::freeze : CommandKind::unfreeze, *path,
                                 request_.method + " " + request_.target);
  command.reason = fields->reason;
  command.void_holds = void_holds;
  ledger::Outcome outcome = co_await submit_command(context_.sequencer, std::move(command));
  if (!void_holds || !outcome.ok() || outcome->rendered.status != 200)
    co_return outcome_reply(outcome);
  co_return co_await finish_voiding(*path, boost::json::parse(outcome->rendered.body).as_object());
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
    boost::json::object share = boost::json::parse(next->rendered.body).as_object();
    for (const char* count : {"holds_voided", "holds_expired"}) {
      share[count] = share[count].to_number<int64_t>() + body[count].to_number<int64_t>();
    }
    body = std::move(share);
  }
  co_return json_reply(200, body);
}

}  // namespace stub::http::detail
