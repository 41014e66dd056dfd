#pragma once

// The request handler behind Api::handle, shared by the route files: one Handler per request,
// holding the authenticated principal and the parsed body. Each resource's routes live in
// their own file (routes_<resource>.cpp) with a matcher that answers the requests it owns and
// returns nullopt for the rest; route() authenticates, parses the body and asks each matcher
// in turn (route_matchers() lists them). Internal to src/http.

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/api.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/command.hpp"
#include "ledger/model.hpp"

namespace stub::http::detail {

using boost::asio::awaitable;
using ledger::BudgetPath;
using ledger::Command;
using ledger::CommandKind;

struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

Result<Target> parse_target(const std::string& text);
ApiReply json_reply(int status, std::string body);
ApiReply json_reply(int status, const boost::json::value& value);
ApiReply outcome_reply(const ledger::Outcome& outcome);
Error not_found(std::string what);
Error forbidden(const Principal& principal, const std::string& budget);
Error admin_only();
Result<BudgetPath> parse_path(std::string_view text);
std::string join_segments(const std::vector<std::string>& segments, size_t from, size_t to);
// Checks that the principal may act on `path`; agent keys only within their own subtree.
Status check_scope(const Principal& principal, const BudgetPath& path);
// The fingerprint of an admin request: its route and canonical body, plus the exact literal of
// every top-level number.
std::string request_hash(const ApiRequest& request, const RequestBody& body,
                         std::string_view route_key);
// The fingerprint of a money command: what was validated, never the body re-read as doubles.
std::string money_fingerprint(const Command& command, std::string_view route_key);
// A budget row whose policies or usage could not be read is never shown as "no policy".
Status readable_node(const ledger::BudgetNode& node);
// Ids and names taken from the request path: bounded, clean text.
inline constexpr size_t path_id_length_max = 128;
Status check_path_id(const std::string& id);

class Handler {
 public:
  Handler(Api& api, ApiRequest& request, Target& target)
      : api_(api),
        context_(api.context()),
        waiters_(api.waiters()),
        request_(request),
        target_(target) {}

  awaitable<ApiReply> route();

  // The matchers, one per route file: each answers the requests it owns, nullopt otherwise.
  // route_ops runs before authentication (its routes are open); the others after it.
  awaitable<std::optional<ApiReply>> route_ops();
  // The dashboard: its embedded files and browser sign-in run before authentication too;
  // replays after it.
  awaitable<std::optional<ApiReply>> route_assets();
  awaitable<std::optional<ApiReply>> route_sessions();
  awaitable<std::optional<ApiReply>> route_replays();
  awaitable<std::optional<ApiReply>> route_budgets();
  awaitable<std::optional<ApiReply>> route_keys();
  awaitable<std::optional<ApiReply>> route_holds();
  awaitable<std::optional<ApiReply>> route_approvals();
  awaitable<std::optional<ApiReply>> route_webhooks();
  awaitable<std::optional<ApiReply>> route_vendors();
  awaitable<std::optional<ApiReply>> route_entries();
  awaitable<std::optional<ApiReply>> route_query();
  awaitable<std::optional<ApiReply>> route_checkpoints();
  awaitable<std::optional<ApiReply>> route_delegations();

 private:
  // ---- handler -----------------------------------------------------------------------------
  Command base_command(CommandKind kind, const BudgetPath& path, std::string_view route_key);
  // A command acting on `path` with no fingerprint yet: a money route sets money_fingerprint()
  // once the command is complete; base_command() fingerprints the body at once.
  Command new_command(CommandKind kind, const BudgetPath& path);
  // Every call that moves or reserves money carries an Idempotency-Key (SPEC guarantee 3), so
  // that a retry after a lost answer can never apply it twice.
  Status require_idempotency_key() const;
  awaitable<ApiReply> execute(Command command);
  // A data-plane write (POST /v1/spends, /v1/holds, /v1/holds/{id}/capture|void) of an agent
  // key whose root is contended and led by another instance is forwarded there and its answer
  // relayed (http/root_leadership.hpp); nullopt: handle it here (not such a write, no leader
  // elsewhere, no Idempotency-Key, already forwarded once, or no answer came).
  awaitable<std::optional<ApiReply>> forward_to_leader();
  // ?root=R, defaulting to an agent key's own root; a key may name no other root.
  Result<std::string> root_query();
  Result<int64_t> integer_query(const std::string& name, int64_t fallback, int64_t minimum,
                                int64_t maximum);

  // ---- ops ---------------------------------------------------------------------------------
  ApiReply healthz();

  // ---- budgets -----------------------------------------------------------------------------
  // Reads every node from the root to `path` and renders the budget state.
  awaitable<ApiReply> budget_state(const std::string& path);
  awaitable<ApiReply> put_budget(const std::string& text);
  awaitable<ApiReply> get_budget(const std::string& text);
  awaitable<ApiReply> own_budget();
  awaitable<ApiReply> list_budgets();
  awaitable<ApiReply> freeze(const std::string& text, bool freeze);
  // A freeze with void_holds voids what fits under the per-commit row bound in its own commit;
  // the rest of the frozen subtree's holds (none can be added: it is frozen) are voided by
  // further commits here before the caller is answered, with the counts summed.
  awaitable<ApiReply> finish_voiding(const BudgetPath& path, boost::json::object body);

  // ---- keys --------------------------------------------------------------------------------
  awaitable<ApiReply> create_key();
  awaitable<ApiReply> create_run_key(const BudgetPath& parent, const boost::json::value& run);
  awaitable<ApiReply> revoke_key(const std::string& id);

  // ---- delegations (routes_delegations.cpp) ------------------------------------------------
  awaitable<ApiReply> create_delegation();
  // The delegate command for a child `name` below `parent` (limit, ttl, vendors from `body`),
  // with its new key; `token` gets the key's secret.
  Result<Command> delegation_command(const RequestBody& body, const std::string& parent, bool run,
                                     std::string& token);
  awaitable<ApiReply> submit_delegation(Command command, std::string token);

  // ---- holds -------------------------------------------------------------------------------
  awaitable<ApiReply> spend_or_hold(bool hold);
  // Reads a hold and checks the caller may see it.
  awaitable<Result<ledger::Hold>> load_hold(const std::string& id);
  awaitable<ApiReply> get_hold(const std::string& id);
  awaitable<Result<ledger::Hold>> wait_for_decision(const std::string& id, ledger::Micros wait);
  awaitable<ApiReply> settle(const std::string& id, bool capture);

  // ---- approvals ---------------------------------------------------------------------------
  awaitable<ApiReply> decide_approval(const std::string& id, bool approve);
  awaitable<ApiReply> list_approvals();

  // ---- webhooks ----------------------------------------------------------------------------
  // Reads a webhook (admin only), or the error to answer.
  awaitable<Result<ledger::Webhook>> load_webhook(const std::string& name);
  awaitable<ApiReply> put_webhook(const std::string& name);
  awaitable<ApiReply> get_webhook(const std::string& name);
  awaitable<ApiReply> list_webhooks();
  awaitable<ApiReply> delete_webhook(const std::string& name);

  // ---- vendors (the proxy's upstreams) -----------------------------------------------------
  static Status check_vendor_name(const std::string& name);
  awaitable<Result<ledger::Vendor>> load_vendor(const std::string& name);
  awaitable<ApiReply> put_vendor(const std::string& name);
  awaitable<ApiReply> get_vendor(const std::string& name);
  awaitable<ApiReply> list_vendors();
  awaitable<ApiReply> delete_vendor(const std::string& name);
  awaitable<ApiReply> list_deliveries(const std::string& name);

  // ---- sessions (routes_sessions.cpp) --------------------------------------------------------
  awaitable<ApiReply> sign_in();

  // ---- entries -----------------------------------------------------------------------------
  awaitable<ApiReply> list_entries();
  awaitable<ApiReply> verify();

  // ---- query (routes_query.cpp) --------------------------------------------------------------
  awaitable<ApiReply> post_query();
  awaitable<ApiReply> post_ask();
  awaitable<ApiReply> get_export();

  // ---- checkpoints -------------------------------------------------------------------------
  awaitable<ApiReply> list_checkpoints();
  ApiReply checkpoint_key();

  Api& api_;
  ApiContext& context_;
  HoldWaiters& waiters_;
  ApiRequest& request_;
  Target& target_;
  Principal principal_;
  std::string session_id_;  // the browser session that authenticated the request, if any
  RequestBody body_;
};

// The matchers route() asks, in order, after authentication.
using RouteMatcher = awaitable<std::optional<ApiReply>> (Handler::*)();
const std::vector<RouteMatcher>& route_matchers();

}  // namespace stub::http::detail
