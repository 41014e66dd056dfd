// Routes: The books: entries and chain verification.

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "http/render.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/chain.hpp"

namespace stub::http::detail {

// GET /v1/entries, GET /v1/audit/verify. (GET /v1/events is streamed by the server itself:
// Api::open_event_stream.)
awaitable<std::optional<ApiReply>> Handler::route_entries() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n == 2 && s[1] == "entries" && method == "GET")
    co_return co_await list_entries();
  if (n == 3 && s[1] == "audit" && s[2] == "verify" && method == "GET")
    co_return co_await verify();
  co_return std::nullopt;
}

awaitable<ApiReply> Handler::list_entries() {
  auto root_name = root_query();
  if (!root_name.ok())
    co_return error_reply(root_name.error());
  const std::string root = *root_name;
  auto after = integer_query("after", 0, 0, INT64_MAX);
  if (!after.ok())
    co_return error_reply(after.error());
  auto limit = integer_query("limit", 100, 1, static_cast<int64_t>(Api::entries_page_max));
  if (!limit.ok())
    co_return error_reply(limit.error());
  const int64_t after_seq = *after;
  const auto page_size = static_cast<size_t>(*limit);
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto page_work = [this, root, after_seq, page_size] {
    return context_.store.list_entries(root, after_seq, page_size);
  };
  auto page = co_await run_blocking(context_.read_pool, std::move(page_work));
  if (!page.ok())
    co_return error_reply(page.error());
  // Entries are written as text from their stored canonical parts (see entry_to_json_text).
  std::string body = "{\"entries\":[";
  bool first = true;
  const auto bound = principal_.admin ? std::nullopt : BudgetPath::parse(principal_.key.budget);
  for (const auto& entry : page->entries) {
    if (bound) {
      const auto entry_path = BudgetPath::parse(entry.budget);
      if (!entry_path || !entry_path->within(*bound))
        continue;
    }
    if (!first)
      body += ',';
    first = false;
    body += ledger::entry_to_json_text(entry);
  }
  body += "],\"next_after\":" + std::to_string(page->next_after) + "}";
  co_return json_reply(200, std::move(body));
}

awaitable<ApiReply> Handler::verify() {
  if (!principal_.admin)
    co_return error_reply(admin_only());
  auto path = parse_path(target_.query["root"]);
  if (!path.ok() || !path->is_root()) {
    co_return error_reply(Error::invalid("invalid_root", "Query ?root= must name a root budget."));
  }
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto report_work = [this, root = path->str()] { return context_.store.verify(root, nullptr); };
  auto report = co_await run_blocking(context_.read_pool, std::move(report_work));
  if (!report.ok())
    co_return error_reply(report.error());
  boost::json::object out{
      {"ok", report->ok},
      {"checked", report->checked},
      {"head", boost::json::object{{"seq", report->head_seq}, {"hash", report->head_hash}}}};
  if (report->first_bad_seq) {
    out["first_bad_seq"] = *report->first_bad_seq;
    out["problem"] = report->problem;
  }
  // Every budget's spent and reserved against its entries' postings (ledger/balances.hpp).
  out["budgets_checked"] = report->budgets_checked;
  if (!report->balance_problem.empty()) {
    out["bad_budget"] = report->bad_budget;
    out["balance_problem"] = report->balance_problem;
  }
  co_return json_reply(200, out);
}

}  // namespace stub::http::detail
