#include "http/api.hpp"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <set>

#include "http/async_bridge.hpp"
#include "http/error_mapping.hpp"
#include "http/openapi.hpp"
#include "http/policy_fields.hpp"
#include "http/request_fields.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/chain.hpp"
#include "ledger/views.hpp"
#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"

namespace stub::http {

namespace {

using boost::asio::awaitable;
using ledger::BudgetPath;
using ledger::Command;
using ledger::CommandKind;

struct Target {
  std::vector<std::string> segments;
  std::map<std::string, std::string> query;
};

Result<Target> parse_target(const std::string& text) {
  auto parsed = boost::urls::parse_origin_form(text);
  if (!parsed)
    return Error::invalid("invalid_target", "The request target is not a valid URL.");
  Target target;
  for (auto segment : parsed->segments())
    target.segments.emplace_back(segment);
  for (auto param : parsed->params())
    target.query[param.key] = param.value;
  return target;
}

ApiReply json_reply(int status, std::string body) {
  return ApiReply{status, std::move(body), "application/json", ""};
}

ApiReply json_reply(int status, const boost::json::value& value) {
  return ApiReply{status, boost::json::serialize(value), "application/json", ""};
}

ApiReply outcome_reply(const ledger::Outcome& outcome) {
  if (!outcome.ok())
    return error_reply(outcome.error());
  return json_reply(outcome->status, outcome->body);
}

Error not_found(std::string what) {
  return Error{ErrorCode::not_found, "not_found", std::move(what)};
}

Error forbidden(const Principal& principal, const std::string& budget) {
  return Error{ErrorCode::forbidden, "outside_key_subtree",
               "The key for " + principal.key.budget + " cannot act on " + budget + "."};
}

Error admin_only() {
  return Error{ErrorCode::forbidden, "admin_only", "This call needs the admin token."};
}

Result<BudgetPath> parse_path(std::string_view text) {
  auto path = BudgetPath::parse(text);
  if (!path) {
    return Error::invalid("invalid_budget_path",
                          "Budget path \"" + std::string(text) +
                              "\" is not 1 to 8 segments of [a-z0-9][a-z0-9_-]{0,62}.");
  }
  return *path;
}

std::string join_segments(const std::vector<std::string>& segments, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to; ++i) {
    if (i > from)
      out += '/';
    out += segments[i];
  }
  return out;
}

// Checks that the principal may act on `path`; agent keys only within their own subtree.
Status check_scope(const Principal& principal, const BudgetPath& path) {
  if (principal.admin)
    return Status::success();
  const auto bound = BudgetPath::parse(principal.key.budget);
  if (!bound || !path.within(*bound))
    return forbidden(principal, path.str());
  return Status::success();
}

std::string request_hash(const ApiRequest& request, const std::string& canonical_body,
                         std::string_view route_key) {
  return ledger::sha256_hex(request.method + " " + std::string(route_key) + "\n" + canonical_body);
}

class Handler {
 public:
  Handler(ApiContext& context, ApiRequest& request, Target& target)
      : context_(context), request_(request), target_(target) {}

  awaitable<ApiReply> route() {
    const auto& s = target_.segments;
    const std::string& method = request_.method;
    if (s.size() == 1 && s[0] == "healthz" && method == "GET")
      co_return healthz();
    if (s.size() == 1 && s[0] == "metrics" && method == "GET") {
      co_return ApiReply{200, context_.metrics.render(), "text/plain; version=0.0.4", "/metrics"};
    }
    if (s.size() == 1 && s[0] == "openapi.json" && method == "GET") {
      co_return ApiReply{200, openapi_document(), "application/json", "/openapi.json"};
    }
    if (s.empty() || s[0] != "v1")
      co_return error_reply(not_found("No such route."));

    // The admin token and cached keys are checked right here; only a key the cache does not hold
    // needs a store read, which goes to the read pool.
    std::optional<Result<Principal>> cached =
        context_.authenticator.authenticate_without_store(request_.authorization, context_.clock());
    if (!cached) {
      // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
      auto authenticated_work = [this] {
        return context_.authenticator.authenticate(request_.authorization, context_.clock());
      };
      cached = co_await run_blocking(context_.read_pool, std::move(authenticated_work));
    }
    Result<Principal>& authenticated = *cached;
    if (!authenticated.ok())
      co_return error_reply(authenticated.error());
    principal_ = std::move(authenticated).value();

    if (request_.method != "GET" && request_.method != "DELETE") {
      if (request_.idempotency_key.size() > idempotency_key_length_max) {
        co_return error_reply(Error::invalid("invalid_idempotency_key",
                                             "Idempotency-Key is longer than 255 characters."));
      }
      auto body = parse_request_body(request_.body);
      if (!body.ok())
        co_return error_reply(body.error());
      body_ = std::move(body).value();
    }

    const size_t n = s.size();
    if (n >= 3 && s[1] == "budgets") {
      if (method == "POST" && n >= 4 && (s[n - 1] == "freeze" || s[n - 1] == "unfreeze")) {
        co_return co_await freeze(join_segments(s, 2, n - 1), s[n - 1] == "freeze");
      }
      if (method == "PUT")
        co_return co_await put_budget(join_segments(s, 2, n));
      if (method == "GET")
        co_return co_await get_budget(join_segments(s, 2, n));
    }
    if (n == 2 && s[1] == "budgets" && method == "GET")
      co_return co_await list_budgets();
    if (n == 2 && s[1] == "budget" && method == "GET")
      co_return co_await own_budget();
    if (n == 2 && s[1] == "keys" && method == "POST")
      co_return co_await create_key();
    if (n == 3 && s[1] == "keys" && method == "DELETE")
      co_return co_await revoke_key(s[2]);
    if (n == 2 && s[1] == "spends" && method == "POST")
      co_return co_await spend_or_hold(false);
    if (n == 2 && s[1] == "holds" && method == "POST")
      co_return co_await spend_or_hold(true);
    if (n == 3 && s[1] == "holds" && method == "GET")
      co_return co_await get_hold(s[2]);
    if (n == 4 && s[1] == "holds" && method == "POST" && (s[3] == "capture" || s[3] == "void")) {
      co_return co_await settle(s[2], s[3] == "capture");
    }
    if (n == 4 && s[1] == "holds" && method == "POST" && (s[3] == "approve" || s[3] == "reject")) {
      co_return co_await decide_approval(s[2], s[3] == "approve");
    }
    if (n == 2 && s[1] == "approvals" && method == "GET")
      co_return co_await list_approvals();
    if (n >= 2 && s[1] == "webhooks") {
      if (n == 2 && method == "GET")
        co_return co_await list_webhooks();
      if (n == 3 && method == "PUT")
        co_return co_await put_webhook(s[2]);
      if (n == 3 && method == "GET")
        co_return co_await get_webhook(s[2]);
      if (n == 3 && method == "DELETE")
        co_return co_await delete_webhook(s[2]);
      if (n == 4 && s[3] == "deliveries" && method == "GET")
        co_return co_await list_deliveries(s[2]);
    }
    if (n == 2 && s[1] == "entries" && method == "GET")
      co_return co_await list_entries();
    if (n == 3 && s[1] == "audit" && s[2] == "verify" && method == "GET") {
      co_return co_await verify();
    }
    co_return error_reply(not_found("No such route."));
  }

 private:
  // ok (200), degraded (503: the database is unreachable or a commit's outcome is unknown;
  // writes resume by themselves) or failed (503: writes stopped until a restart). The reason
  // is a fixed sentence; the driver's text is in the server log under the incident id.
  ApiReply healthz() {
    const engine::Health health = context_.sequencer.health();
    boost::json::object body{{"status", engine::health_state_name(health.state)},
                             {"queue_depth", context_.sequencer.queue_depth()}};
    if (health.state != engine::HealthState::ok) {
      body["reason"] = health.reason;
      if (!health.incident.empty())
        body["incident"] = health.incident;
    }
    return ApiReply{health.state == engine::HealthState::ok ? 200 : 503,
                    boost::json::serialize(body), "application/json", "/healthz"};
  }

  Command base_command(CommandKind kind, const BudgetPath& path, std::string_view route_key) {
    Command command;
    command.kind = kind;
    command.root = path.root();
    command.budget = path.str();
    command.actor = principal_.actor();
    command.idempotency_key = request_.idempotency_key;
    command.request_hash = request_hash(request_, body_.canonical, route_key);
    return command;
  }

  awaitable<ApiReply> execute(Command command) {
    co_return outcome_reply(co_await submit_command(context_.sequencer, std::move(command)));
  }

  // Reads every node from the root to `path` and renders the budget state.
  awaitable<ApiReply> budget_state(const std::string& path) {
    // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
    auto lineage_work = [this, path] { return context_.store.get_lineage(path); };
    auto lineage = co_await run_blocking(context_.read_pool, std::move(lineage_work));
    if (!lineage.ok())
      co_return error_reply(lineage.error());
    if (lineage->empty())
      co_return error_reply(not_found("No budget " + path + "."));
    std::vector<const ledger::BudgetNode*> view;
    for (const auto& node : *lineage)
      view.push_back(&node);
    co_return json_reply(200, ledger::budget_to_json(lineage->back(), view, context_.clock()));
  }

  awaitable<ApiReply> put_budget(const std::string& text) {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    auto path = parse_path(text);
    if (!path.ok())
      co_return error_reply(path.error());
    if (Status known =
            reject_unknown_fields(body_, {"limit", "period", "per_txn_max", "currency", "windows",
                                          "vendors", "approval_above", "breaker", "thresholds"});
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

  awaitable<ApiReply> get_budget(const std::string& text) {
    auto path = parse_path(text);
    if (!path.ok())
      co_return error_reply(path.error());
    if (Status scope = check_scope(principal_, *path); !scope.ok())
      co_return error_reply(scope.error());
    co_return co_await budget_state(path->str());
  }

  awaitable<ApiReply> own_budget() {
    std::string path = principal_.admin ? target_.query["budget"] : principal_.key.budget;
    if (path.empty()) {
      co_return error_reply(
          Error::invalid("missing_budget", "The admin token must name ?budget=PATH."));
    }
    co_return co_await get_budget(path);
  }

  // ?root=R, defaulting to an agent key's own root; a key may name no other root.
  Result<std::string> root_query() {
    std::string root = target_.query["root"];
    if (root.empty() && !principal_.admin)
      root = BudgetPath::parse(principal_.key.budget)->root();
    auto path = parse_path(root);
    if (!path.ok() || !path->is_root())
      return Error::invalid("invalid_root", "Query ?root= must name a root budget.");
    if (!principal_.admin && root != BudgetPath::parse(principal_.key.budget)->root())
      return forbidden(principal_, root);
    return root;
  }

  awaitable<ApiReply> list_budgets() {
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
    for (const auto& node : *nodes)
      by_path[node.path] = &node;
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

  awaitable<ApiReply> freeze(const std::string& text, bool freeze) {
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
  awaitable<ApiReply> finish_voiding(const BudgetPath& path, boost::json::object body) {
    constexpr int continuations_max = 100'000;
    for (int i = 0; i < continuations_max && body["holds_remaining"].to_number<int64_t>() > 0;
         ++i) {
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

  awaitable<ApiReply> create_key() {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    if (Status known = reject_unknown_fields(body_, {"budget", "name", "expires_in"});
        !known.ok()) {
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
    const ledger::Micros expires_at =
        expires_in.value() ? context_.clock() + *expires_in.value() : 0;
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

  awaitable<ApiReply> revoke_key(const std::string& id) {
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

  awaitable<ApiReply> spend_or_hold(bool hold) {
    if (Status known = hold ? reject_unknown_fields(body_, {"amount", "vendor", "intent", "tags",
                                                            "ttl", "on_expiry", "budget"})
                            : reject_unknown_fields(body_, {"amount", "vendor", "intent", "tags",
                                                            "receipt", "budget"});
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

    Command command = base_command(hold ? CommandKind::hold : CommandKind::spend, *path,
                                   hold ? "POST /v1/holds" : "POST /v1/spends");
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
    co_return co_await execute(std::move(command));
  }

  // Reads a hold and checks the caller may see it.
  awaitable<Result<ledger::Hold>> load_hold(const std::string& id) {
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

  awaitable<ApiReply> get_hold(const std::string& id) {
    std::optional<ledger::Micros> wait;
    if (auto given = target_.query.find("wait"); given != target_.query.end()) {
      wait = given->second.empty() ? std::nullopt : ledger::parse_duration(given->second);
      if (!wait) {
        int64_t seconds = -1;
        const auto [end, error] = std::from_chars(
            given->second.data(), given->second.data() + given->second.size(), seconds);
        if (error == std::errc{} && end == given->second.data() + given->second.size() &&
            seconds >= 0)
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

  awaitable<Result<ledger::Hold>> wait_for_decision(const std::string& id, ledger::Micros wait) {
    auto executor = co_await boost::asio::this_coro::executor;
    auto timer = std::make_shared<boost::asio::steady_timer>(executor);
    timer->expires_after(std::chrono::microseconds(wait));
    // The event bus calls back on the committer thread: only post the wake-up to this
    // connection's executor, where the timer lives.
    const uint64_t subscription =
        context_.events.subscribe([timer, executor, id](const engine::EntryBatch& batch) {
          for (const ledger::Entry& entry : *batch) {
            if (entry.hold_id == id) {
              boost::asio::post(executor, [timer] { timer->cancel(); });
              return;
            }
          }
        });
    // Unsubscribes however the coroutine ends, even if it is destroyed while suspended (a
    // server shutting down), so no callback outlives this connection's executor.
    struct Unsubscribe {
      engine::EventBus& events;
      uint64_t id;
      ~Unsubscribe() { events.unsubscribe(id); }
    } unsubscribe{context_.events, subscription};
    // Read again after subscribing, so that a decision committed in between is not missed.
    auto hold = co_await load_hold(id);
    if (hold.ok() && hold->status_at(context_.clock()) == ledger::HoldStatus::pending_approval) {
      boost::system::error_code ignored;
      co_await timer->async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ignored));
      hold = co_await load_hold(id);
    }
    co_return hold;
  }

  awaitable<ApiReply> decide_approval(const std::string& id, bool approve) {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    if (Status known = reject_unknown_fields(body_, {"reason"}); !known.ok())
      co_return error_reply(known.error());
    auto reason = text_field(body_, "reason");
    if (!reason.ok())
      co_return error_reply(reason.error());
    auto hold = co_await load_hold(id);
    if (!hold.ok())
      co_return error_reply(hold.error());
    Command command = base_command(approve ? CommandKind::approve : CommandKind::reject_hold,
                                   *BudgetPath::parse(hold->budget),
                                   "POST /v1/holds/" + id + (approve ? "/approve" : "/reject"));
    command.hold_id = id;
    command.reason = *reason;
    co_return co_await execute(std::move(command));
  }

  // ---- Webhooks ---------------------------------------------------------------------------

  static Status check_webhook_name(const std::string& name) {
    const auto parsed = BudgetPath::parse(name);
    if (!parsed || !parsed->is_root()) {
      return Error::invalid("invalid_webhook_name",
                            "Webhook name \"" + name + "\" is not [a-z0-9][a-z0-9_-]{0,62}.");
    }
    return Status::success();
  }

  // Reads a webhook (admin only), or the error to answer.
  awaitable<Result<ledger::Webhook>> load_webhook(const std::string& name) {
    // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
    auto webhook_work = [this, name] { return context_.store.get_webhook(name); };
    auto webhook = co_await run_blocking(context_.read_pool, std::move(webhook_work));
    if (!webhook.ok())
      co_return webhook.error();
    if (!webhook.value())
      co_return Error{ErrorCode::not_found, "webhook_not_found", "No webhook " + name + "."};
    co_return *webhook.value();
  }

  awaitable<ApiReply> put_webhook(const std::string& name) {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    if (Status valid = check_webhook_name(name); !valid.ok())
      co_return error_reply(valid.error());
    if (Status known = reject_unknown_fields(body_, {"root", "url", "events", "secret"});
        !known.ok()) {
      co_return error_reply(known.error());
    }
    ledger::WebhookSettings settings;
    settings.name = name;
    if (body_.object.contains("url")) {
      auto url = text_field(body_, "url", 2'048);
      if (!url.ok())
        co_return error_reply(url.error());
      if (!webhooks::valid_url(*url)) {
        co_return error_reply(Error::invalid(
            "invalid_url", "Field \"url\" must be an http:// or https:// URL with a host."));
      }
      settings.url = *url;
    }
    if (const auto* events = body_.object.if_contains("events")) {
      std::set<std::string> names;
      bool valid = events->is_array() && !events->get_array().empty();
      for (const auto& event : valid ? events->get_array() : boost::json::array{}) {
        if (!event.is_string() || !webhooks::known_event(event.get_string())) {
          valid = false;
          break;
        }
        names.emplace(event.get_string());
      }
      if (!valid) {
        std::string known;
        for (const std::string& event : webhooks::event_names())
          known += (known.empty() ? "" : ", ") + event;
        co_return error_reply(Error::invalid(
            "invalid_events", "Field \"events\" must be a non-empty list of: " + known + "."));
      }
      settings.events = std::vector<std::string>(names.begin(), names.end());
    }
    if (const auto* secret = body_.object.if_contains("secret")) {
      if (!secret->is_string() || secret->get_string().size() < webhook_secret_length_min ||
          secret->get_string().size() > webhook_secret_length_max) {
        co_return error_reply(Error::invalid(
            "invalid_secret", "Field \"secret\" must be a string of 16 to 256 bytes."));
      }
      settings.secret = std::string(secret->get_string());
    }
    auto root = text_field(body_, "root");
    if (!root.ok())
      co_return error_reply(root.error());
    if (root->empty()) {
      // An update may leave the root out: a webhook keeps the root it was created in.
      auto existing = co_await load_webhook(name);
      if (!existing.ok() && existing.error().code != ErrorCode::not_found)
        co_return error_reply(existing.error());
      if (!existing.ok()) {
        co_return error_reply(
            Error::invalid("missing_field", "Field \"root\" is required to create a webhook."));
      }
      *root = existing->root;
    }
    auto path = parse_path(*root);
    if (!path.ok() || !path->is_root()) {
      co_return error_reply(
          Error::invalid("invalid_root", "Field \"root\" must name a root budget."));
    }
    Command command = base_command(CommandKind::set_webhook, *path, "PUT /v1/webhooks/" + name);
    command.webhook = std::move(settings);
    co_return co_await execute(std::move(command));
  }

  awaitable<ApiReply> get_webhook(const std::string& name) {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    auto webhook = co_await load_webhook(name);
    if (!webhook.ok())
      co_return error_reply(webhook.error());
    co_return json_reply(200, ledger::webhook_to_json(*webhook));
  }

  awaitable<ApiReply> list_webhooks() {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    const std::string root = target_.query["root"];
    // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
    auto list_work = [this] { return context_.store.list_webhooks(); };
    auto all = co_await run_blocking(context_.read_pool, std::move(list_work));
    if (!all.ok())
      co_return error_reply(all.error());
    boost::json::array out;
    for (const ledger::Webhook& webhook : *all) {
      if (root.empty() || webhook.root == root)
        out.push_back(ledger::webhook_to_json(webhook));
    }
    co_return json_reply(200, boost::json::object{{"webhooks", std::move(out)}});
  }

  awaitable<ApiReply> delete_webhook(const std::string& name) {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    auto webhook = co_await load_webhook(name);
    if (!webhook.ok())
      co_return error_reply(webhook.error());
    Command command = base_command(CommandKind::delete_webhook, *BudgetPath::parse(webhook->root),
                                   "DELETE /v1/webhooks/" + name);
    command.webhook.name = name;
    command.idempotency_key.clear();  // a delete is idempotent by itself
    co_return co_await execute(std::move(command));
  }

  awaitable<ApiReply> list_deliveries(const std::string& name) {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    auto limit = integer_query("limit", 100, 1, static_cast<int64_t>(Api::entries_page_max));
    if (!limit.ok())
      co_return error_reply(limit.error());
    auto webhook = co_await load_webhook(name);
    if (!webhook.ok())
      co_return error_reply(webhook.error());
    // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
    auto deliveries_work = [this, name, count = static_cast<size_t>(*limit)] {
      return context_.store.list_deliveries(name, count);
    };
    auto deliveries = co_await run_blocking(context_.read_pool, std::move(deliveries_work));
    if (!deliveries.ok())
      co_return error_reply(deliveries.error());
    const auto time_or_null = [](ledger::Micros at) {
      return at == 0 ? boost::json::value(nullptr)
                     : boost::json::value(ledger::format_timestamp(at));
    };
    boost::json::array out;
    for (const store::WebhookDelivery& delivery : *deliveries) {
      out.push_back(boost::json::object{
          {"event_id", delivery.event_id},
          {"event", delivery.event},
          {"seq", delivery.seq},
          {"status", delivery.status},
          {"attempts", delivery.attempts},
          {"last_status", delivery.last_status == 0 ? boost::json::value(nullptr)
                                                    : boost::json::value(delivery.last_status)},
          {"last_error", delivery.last_error.empty() ? boost::json::value(nullptr)
                                                     : boost::json::value(delivery.last_error)},
          {"next_attempt_at",
           delivery.status == "pending" ? time_or_null(delivery.next_attempt_at) : nullptr},
          {"created_at", time_or_null(delivery.created_at)},
          {"delivered_at", time_or_null(delivery.delivered_at)}});
    }
    co_return json_reply(200, boost::json::object{{"deliveries", std::move(out)}});
  }

  awaitable<ApiReply> list_approvals() {
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
        approvals.push_back(ledger::hold_to_json(hold, now));
    }
    co_return json_reply(200, boost::json::object{{"approvals", std::move(approvals)}});
  }

  awaitable<ApiReply> settle(const std::string& id, bool capture) {
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
    Command command = base_command(
        capture ? CommandKind::capture : CommandKind::void_hold, *BudgetPath::parse(hold->budget),
        request_.method + " /v1/holds/" + id + (capture ? "/capture" : "/void"));
    command.hold_id = id;
    command.amount = amount;
    command.receipt_json = receipt;
    co_return co_await execute(std::move(command));
  }

  Result<int64_t> integer_query(const std::string& name, int64_t fallback, int64_t minimum,
                                int64_t maximum) {
    auto found = target_.query.find(name);
    if (found == target_.query.end() || found->second.empty())
      return fallback;
    int64_t value = 0;
    const auto [end, error] =
        std::from_chars(found->second.data(), found->second.data() + found->second.size(), value);
    if (error != std::errc{} || end != found->second.data() + found->second.size() ||
        value < minimum || value > maximum) {
      return Error::invalid("invalid_query", "Query ?" + name + "= must be an integer from " +
                                                 std::to_string(minimum) + " to " +
                                                 std::to_string(maximum) + ".");
    }
    return value;
  }

  awaitable<ApiReply> list_entries() {
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

  awaitable<ApiReply> verify() {
    if (!principal_.admin)
      co_return error_reply(admin_only());
    auto path = parse_path(target_.query["root"]);
    if (!path.ok() || !path->is_root()) {
      co_return error_reply(
          Error::invalid("invalid_root", "Query ?root= must name a root budget."));
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
    co_return json_reply(200, out);
  }

  ApiContext& context_;
  ApiRequest& request_;
  Target& target_;
  Principal principal_;
  RequestBody body_;
};

std::string route_label(const Target& target) {
  // Metrics label: the route shape, never ids or paths (bounded cardinality).
  if (target.segments.empty())
    return "/";
  std::string label = "/" + target.segments[0];
  if (target.segments.size() > 1)
    label += "/" + target.segments[1];
  return label;
}

}  // namespace

ApiReply error_reply(const Error& error) {
  return ApiReply{http_status(error.code), error_body(error), "application/json", ""};
}

awaitable<ApiReply> Api::handle(ApiRequest request) {
  auto target = parse_target(request.target);
  if (!target.ok())
    co_return error_reply(target.error());
  Handler handler(context_, request, *target);
  ApiReply reply;
  try {
    reply = co_await handler.route();
  } catch (const std::exception& error) {
    // Exceptions stop at the HTTP edge: the caller gets a 500, nothing half-done is reported.
    reply = error_reply(Error{ErrorCode::internal, "internal", "Internal error."});
  }
  if (reply.route.empty())
    reply.route = route_label(*target);
  co_return reply;
}

awaitable<Result<EventFilter>> Api::open_event_stream(const ApiRequest& request) {
  auto target = parse_target(request.target);
  if (!target.ok())
    co_return target.error();
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto principal_work = [this, &request] {
    return context_.authenticator.authenticate(request.authorization, context_.clock());
  };
  auto principal = co_await run_blocking(context_.read_pool, std::move(principal_work));
  if (!principal.ok())
    co_return principal.error();
  EventFilter filter;
  filter.root = target->query["root"];
  if (!principal->admin) {
    const auto bound = BudgetPath::parse(principal->key.budget);
    if (!filter.root.empty() && filter.root != bound->root()) {
      co_return Error{ErrorCode::forbidden, "outside_key_subtree",
                      "The key cannot read events of " + filter.root + "."};
    }
    filter.root = bound->root();
    filter.subtree = bound->str();
  }
  if (!filter.root.empty()) {
    const auto root = BudgetPath::parse(filter.root);
    if (!root || !root->is_root()) {
      co_return Error::invalid("invalid_root", "Query ?root= must name a root budget.");
    }
  }
  const std::string after = target->query["after"];
  filter.backlog = !after.empty();
  if (!after.empty()) {
    if (filter.root.empty()) {
      co_return Error::invalid("invalid_query", "Query ?after= needs ?root=.");
    }
    const auto [end, error] =
        std::from_chars(after.data(), after.data() + after.size(), filter.after);
    if (error != std::errc{} || end != after.data() + after.size() || filter.after < 0) {
      co_return Error::invalid("invalid_query", "Query ?after= must be a non-negative integer.");
    }
  }
  co_return filter;
}

}  // namespace stub::http
