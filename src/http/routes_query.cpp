// Routes: questions over the books: the constrained query, plain-English questions and the
// accounting exports (docs/query.md, docs/export.md).

#include <boost/json/serialize.hpp>

#include "export/journal_export.hpp"
#include "http/async_bridge.hpp"
#include "http/credentials.hpp"
#include "http/handler.hpp"
#include "http/request_decoders.hpp"
#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"
#include "query/ask.hpp"
#include "query/compiler.hpp"
#include "query/query.hpp"

namespace stub::http::detail {

namespace {

// An export over HTTP: each page of entries is read on the read pool and sent as one chunk
// before the next is read, so neither side holds more than a page's text.
class ExportStream final : public BodyStream {
 public:
  ExportStream(std::unique_ptr<journal::JournalExport> source, boost::asio::thread_pool& pool)
      : source_(std::move(source)), pool_(pool) {}

  boost::asio::awaitable<Result<std::string>> next() override {
    // A page with nothing in the subtree or period yields no text: read on to one that does.
    while (!source_->done()) {
      // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
      auto page_work = [source = source_.get()] { return source->next(); };
      Result<std::string> text = co_await run_blocking(pool_, std::move(page_work));
      if (!text.ok() || !text->empty())
        co_return text;
    }
    co_return std::string();
  }

 private:
  std::unique_ptr<journal::JournalExport> source_;
  boost::asio::thread_pool& pool_;
};
constexpr ledger::Micros llm_hold_ttl = 5 * 60 * ledger::micros_per_second;

const std::optional<query::LlmSettings>& llm_settings() {
  static const std::optional<query::LlmSettings> settings = query::LlmSettings::from_environment();
  return settings;
}

std::string caller_node(const Principal& principal) {
  return principal.admin ? std::string() : principal.key.budget;
}

}  // namespace

// POST /v1/query, POST /v1/ask, GET /v1/export.
awaitable<std::optional<ApiReply>> Handler::route_query() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  const size_t n = s.size();
  if (n == 2 && s[1] == "query" && method == "POST")
    co_return co_await post_query();
  if (n == 2 && s[1] == "ask" && method == "POST")
    co_return co_await post_ask();
  if (n == 2 && s[1] == "export" && method == "GET")
    co_return co_await get_export();
  co_return std::nullopt;
}

awaitable<ApiReply> Handler::post_query() {
  auto parsed = query::parse_query(boost::json::value(body_.object), context_.clock());
  if (!parsed.ok())
    co_return error_reply(parsed.error());
  if (Status scope = query::confine_to_scope(*parsed, caller_node(principal_)); !scope.ok())
    co_return error_reply(scope.error());
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto query_work = [this, query = std::move(parsed).value()] {
    return query::run_query(context_.store, query);
  };
  auto answer = co_await run_blocking(context_.read_pool, std::move(query_work));
  if (!answer.ok())
    co_return error_reply(answer.error());
  co_return json_reply(200, query::answer_to_json(*answer));
}

awaitable<ApiReply> Handler::post_ask() {
  auto fields = decode_ask(body_);
  if (!fields.ok())
    co_return error_reply(fields.error());
  const std::string* subtree = &fields->subtree;
  if (!subtree->empty()) {
    auto path = parse_path(*subtree);
    if (!path.ok())
      co_return error_reply(path.error());
    if (Status scope = check_scope(principal_, *path); !scope.ok())
      co_return error_reply(scope.error());
  }
  query::AskOptions options;
  options.question = fields->question;
  options.caller_node = caller_node(principal_);
  options.subtree = *subtree;
  options.now = context_.clock();
  // The LLM's calls are metered through the ledger: a hold of the worst case on the configured
  // budget before the call, a capture of what `usage` says after (a void when nothing is owed).
  query::LlmMeter meter;
  meter.hold = [this](ledger::Money worst_case) -> Result<std::string> {
    const auto& settings = *llm_settings();
    const auto path = BudgetPath::parse(settings.budget);
    assert(path.has_value());
    Command command;
    command.kind = CommandKind::hold;
    command.root = path->root();
    command.budget = path->str();
    command.actor = std::string(ledger::admin_actor);
    command.amount = worst_case.is_positive() ? worst_case : ledger::Money::from_micros(1);
    command.vendor = "llm:" + settings.model;
    command.intent = "stub ask";
    command.tags_json = R"({"category":"llm","feature":"ask"})";
    command.hold_id = new_hold_id();
    command.ttl = llm_hold_ttl;
    command.on_expiry = ledger::OnExpiry::capture;
    const std::string id = command.hold_id;
    ledger::Outcome outcome = context_.sequencer.execute(std::move(command));
    if (!outcome.ok())
      return outcome.error();
    const auto* placed = std::get_if<ledger::HoldPlaced>(&outcome->answer.value);
    if (placed == nullptr || placed->approval_level.has_value())
      return Error{ErrorCode::forbidden, "llm_hold_refused", outcome->rendered.body};
    return id;
  };
  meter.settle = [this](const std::string& hold_id, ledger::Money cost) {
    const auto path = BudgetPath::parse(llm_settings()->budget);
    assert(path.has_value());
    Command command;
    command.kind = cost.is_zero() ? CommandKind::void_hold : CommandKind::capture;
    command.root = path->root();
    command.budget = path->str();
    command.actor = std::string(ledger::admin_actor);
    command.hold_id = hold_id;
    if (!cost.is_zero())
      command.amount = cost;
    // A failed settle leaves the hold to expire, captured at its worst case: over-counted,
    // never under-counted (SPEC guarantee 4).
    (void)context_.sequencer.execute(std::move(command));
  };
  const auto& settings = llm_settings();
  if (settings) {
    options.llm = &*settings;
    options.meter = &meter;
  }
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto ask_work = [this, options, meter] {
    query::AskOptions local = options;
    if (local.llm != nullptr)
      local.meter = &meter;
    return query::ask(context_.store, local);
  };
  auto answer = co_await run_blocking(context_.read_pool, std::move(ask_work));
  if (!answer.ok())
    co_return error_reply(answer.error());
  co_return json_reply(200, *answer);
}

awaitable<ApiReply> Handler::get_export() {
  auto format =
      journal::parse_format(target_.query["format"].empty() ? "csv" : target_.query["format"]);
  if (!format) {
    co_return error_reply(
        Error::invalid("invalid_format", "Query ?format= must be csv, hledger or beancount."));
  }
  std::string subtree = target_.query["subtree"];
  if (subtree.empty())
    subtree = target_.query["root"];
  if (subtree.empty() && !principal_.admin)
    subtree = principal_.key.budget;
  auto path = parse_path(subtree);
  if (!path.ok()) {
    co_return error_reply(
        Error::invalid("invalid_subtree", "Query ?subtree= (or ?root=) must name a budget path."));
  }
  if (Status scope = check_scope(principal_, *path); !scope.ok())
    co_return error_reply(scope.error());
  journal::ExportOptions options;
  options.format = *format;
  options.subtree = path->str();
  const std::string& period = target_.query["period"];
  const std::string& from = target_.query["from"];
  const std::string& to = target_.query["to"];
  if (!period.empty() && (!from.empty() || !to.empty())) {
    co_return error_reply(
        Error::invalid("invalid_range", "Give either ?period= or ?from=/?to=, not both."));
  }
  if (!period.empty()) {
    if (Status clean = check_text(period, "period"); !clean.ok())
      co_return error_reply(clean.error());
    auto range = query::resolve_time_range(period, context_.clock());
    if (!range.ok())
      co_return error_reply(range.error());
    options.from = range->from;
    options.to = range->to;
  }
  if (!from.empty()) {
    auto at = query::parse_timestamp(from);
    if (!at)
      co_return error_reply(Error::invalid("invalid_range", "?from= must be an RFC 3339 instant."));
    options.from = *at;
  }
  if (!to.empty()) {
    auto at = query::parse_timestamp(to);
    if (!at)
      co_return error_reply(Error::invalid("invalid_range", "?to= must be an RFC 3339 instant."));
    options.to = *at;
  }
  if (options.to <= options.from)
    co_return error_reply(Error::invalid("invalid_range", "The period is empty."));
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto open_work = [this, options] {
    return journal::JournalExport::open(context_.store, options);
  };
  auto opened = co_await run_blocking(context_.read_pool, std::move(open_work));
  if (!opened.ok())
    co_return error_reply(opened.error());
  ApiReply reply{
      200, "",
      *format == journal::Format::csv ? "text/csv; charset=utf-8" : "text/plain; charset=utf-8",
      ""};
  reply.stream = std::make_shared<ExportStream>(std::move(opened).value(), context_.read_pool);
  co_return reply;
}

}  // namespace stub::http::detail
