#include "http/handler.hpp"

// The request handler: authentication, body parsing, the checks every route shares, and the
// dispatch to the route files (routes_<resource>.cpp).

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <charconv>

#include "http/async_bridge.hpp"
#include "http/forwarder.hpp"
#include "http/request_auth.hpp"
#include "http/request_fields.hpp"
#include "http/root_leadership.hpp"
#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/canonical_json.hpp"
#include "ledger/chain.hpp"

namespace stub::http::detail {

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
  return json_reply(outcome->rendered.status, outcome->rendered.body);
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

// The fingerprint of an admin request: its route and canonical body, plus the exact literal of
// every top-level number (the canonical body reads numbers as doubles, and two limits written
// as different numbers can meet in one double).
std::string request_hash(const ApiRequest& request, const RequestBody& body,
                         std::string_view route_key) {
  std::string text = request.method + " " + std::string(route_key) + "\n" + body.canonical;
  for (const auto& [name, literal] : body.number_literals)
    text += "\n" + name + "=" + literal;
  return ledger::sha256_hex(text);
}

// The fingerprint of a money command: what was validated (exact amounts in micro-units, the
// canonical tags and receipt), never the body as re-read through doubles.
std::string money_fingerprint(const Command& command, std::string_view route_key) {
  // Each field length-prefixed, so no two different commands can give the same text. Built as
  // plain text: it is on the path of every spend.
  std::string text;
  text.reserve(192 + command.tags_json.size() + command.receipt_json.size());
  const auto field = [&text](std::string_view value) {
    text += std::to_string(value.size());
    text += ':';
    text += value;
    text += ';';
  };
  field(route_key);
  field(ledger::command_kind_name(command.kind));
  field(command.budget);
  field(command.amount ? std::to_string(command.amount->micros()) : std::string("-"));
  field(command.vendor);
  field(command.intent);
  field(command.tags_json);
  field(command.receipt_json);
  field(std::to_string(command.ttl));
  field(command.on_expiry == ledger::OnExpiry::void_hold ? "void" : "capture");
  field(command.reason);
  // A new spend or hold gets a fresh id on every try; a settlement names the hold it acts on.
  field(command.kind != CommandKind::spend && command.kind != CommandKind::hold ? command.hold_id
                                                                                : "");
  return ledger::sha256_hex(text);
}

// A budget row whose policies or usage could not be read is never shown as "no policy".
Status readable_node(const ledger::BudgetNode& node) {
  if (node.state_error.empty())
    return Status::success();
  return Error{ErrorCode::internal, "ledger_state_invalid",
               "Budget " + node.path + " cannot be read: " + node.state_error};
}

// Ids and names taken from the request path: bounded, clean text.
Status check_path_id(const std::string& id) {
  if (id.empty() || id.size() > path_id_length_max || !is_clean_text(id)) {
    return Error::invalid("invalid_text", "The id in the path must be 1 to " +
                                              std::to_string(path_id_length_max) +
                                              " bytes of UTF-8 without control characters.");
  }
  return Status::success();
}

awaitable<ApiReply> Handler::route() {
  if (auto open = co_await route_ops())
    co_return std::move(*open);
  if (auto asset = co_await route_assets())
    co_return std::move(*asset);
  const auto& s = target_.segments;
  if (s.empty() || s[0] != "v1")
    co_return error_reply(not_found("No such route."));

  if (auto session = co_await route_sessions())
    co_return std::move(*session);
  // A bearer token, or else the dashboard's session cookie with its CSRF and Origin checks
  // (request_auth.hpp).
  const bool reads_only = request_.method == "POST" && s.size() == 2 && s[1] == "query";
  auto authenticated = co_await authenticate_request(
      context_, request_, reads_only ? SessionChange::read : SessionChange::admin_only);
  if (!authenticated.ok())
    co_return error_reply(authenticated.error());
  principal_ = std::move(authenticated->principal);
  session_id_ = std::move(authenticated->session_id);

  if (request_.method != "GET" && request_.method != "DELETE") {
    if (request_.idempotency_key.size() > idempotency_key_length_max) {
      co_return error_reply(Error::invalid("invalid_idempotency_key",
                                           "Idempotency-Key is longer than 255 characters."));
    }
    if (!is_clean_text(request_.idempotency_key)) {
      co_return error_reply(
          Error::invalid("invalid_idempotency_key",
                         "Idempotency-Key must be valid UTF-8 without control characters."));
    }
    // A write for a root led elsewhere goes there before its body is parsed: the leader
    // parses and checks it, and this instance only does so if it commits the write itself.
    if (auto relayed = co_await forward_to_leader())
      co_return std::move(*relayed);
    auto body = parse_request_body(request_.body);
    if (!body.ok())
      co_return error_reply(body.error());
    body_ = std::move(body).value();
  }

  // Ids and names in the path are text from outside like any other.
  if (s.size() >= 3 &&
      (s[1] == "holds" || s[1] == "keys" || s[1] == "webhooks" || s[1] == "vendors")) {
    if (Status clean = check_path_id(s[2]); !clean.ok())
      co_return error_reply(clean.error());
  }
  for (const RouteMatcher matcher : route_matchers()) {
    if (auto reply = co_await (this->*matcher)())
      co_return std::move(*reply);
  }
  co_return error_reply(not_found("No such route."));
}

const std::vector<RouteMatcher>& route_matchers() {
  static const std::vector<RouteMatcher> matchers = {
      &Handler::route_budgets,   &Handler::route_keys,        &Handler::route_holds,
      &Handler::route_approvals, &Handler::route_webhooks,    &Handler::route_vendors,
      &Handler::route_entries,   &Handler::route_checkpoints, &Handler::route_replays,
      &Handler::route_query,     &Handler::route_delegations,
  };
  return matchers;
}

Command Handler::new_command(CommandKind kind, const BudgetPath& path) {
  Command command;
  command.kind = kind;
  command.root = path.root();
  command.budget = path.str();
  command.actor = principal_.actor();
  command.idempotency_key = request_.idempotency_key;
  // request_hash: the caller sets money_fingerprint() once the command is complete.
  return command;
}

Command Handler::base_command(CommandKind kind, const BudgetPath& path,
                              std::string_view route_key) {
  Command command = new_command(kind, path);
  command.request_hash = request_hash(request_, body_, route_key);
  return command;
}

// Every call that moves or reserves money carries an Idempotency-Key (SPEC guarantee 3), so
// that a retry after a lost answer can never apply it twice.
Status Handler::require_idempotency_key() const {
  if (!request_.idempotency_key.empty())
    return Status::success();
  return Error::invalid("idempotency_key_required",
                        "This call moves or reserves money: send an Idempotency-Key header "
                        "(one per logical call, reused on every retry).");
}

awaitable<std::optional<ApiReply>> Handler::forward_to_leader() {
  RootLeadership* leadership = context_.leadership;
  Forwarder* forwarder = api_.forwarder();
  // Without an Idempotency-Key a write could not be committed here after a lost answer; a
  // forwarded one stops here (no loops, whatever two instances think of each other); a browser
  // session has no header to forward.
  if (leadership == nullptr || forwarder == nullptr || principal_.admin || principal_.session ||
      request_.forwarded || request_.idempotency_key.empty() || request_.authorization.empty()) {
    co_return std::nullopt;
  }
  // Only the data plane's writes: POST /v1/spends, /v1/holds, /v1/holds/{id}/capture|void.
  const auto& s = target_.segments;
  const bool write = request_.method == "POST" &&
                     ((s.size() == 2 && (s[1] == "spends" || s[1] == "holds")) ||
                      (s.size() == 4 && s[1] == "holds" && (s[3] == "capture" || s[3] == "void")));
  if (!write)
    co_return std::nullopt;
  const std::string root = BudgetPath::parse(principal_.key.budget)->root();
  const std::optional<std::string> leader = leadership->forward_target(root);
  if (!leader)
    co_return std::nullopt;
  std::optional<ForwardedReply> answer = co_await forwarder->forward(*leader, request_);
  if (!answer) {
    leadership->report_unreachable(root);
    context_.metrics.record_forward_fallback("unreachable");
    co_return std::nullopt;
  }
  if (answer->status == 503) {
    // The leader cannot commit now (its database is unreachable, it is shutting down or
    // overloaded): this instance may still, and the key makes trying safe.
    context_.metrics.record_forward_fallback("leader_unavailable");
    co_return std::nullopt;
  }
  context_.metrics.record_forwarded();
  ApiReply reply;
  reply.status = answer->status;
  reply.body = std::move(answer->body);
  if (!answer->content_type.empty())
    reply.content_type = std::move(answer->content_type);
  reply.headers = std::move(answer->headers);
  reply.relayed = true;
  co_return reply;
}

awaitable<ApiReply> Handler::execute(Command command) {
  co_return outcome_reply(co_await submit_command(context_.sequencer, std::move(command)));
}

// ?root=R, defaulting to an agent key's own root; a key may name no other root.
Result<std::string> Handler::root_query() {
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

Result<int64_t> Handler::integer_query(const std::string& name, int64_t fallback, int64_t minimum,
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

}  // namespace stub::http::detail
