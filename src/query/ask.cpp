#include "query/ask.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cassert>
#include <cstdlib>

#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"
#include "webhooks/sender.hpp"

namespace stub::query {

namespace {

// The vocabulary shown to the LLM is bounded, so a large tree cannot blow up the prompt.
constexpr size_t prompt_names_max = 200;
// The worst-case hold counts the prompt at one token per 2 characters (tokenizers average about
// 4 for English and JSON), so the reservation covers what the endpoint can charge.
constexpr int64_t characters_per_token_min = 2;

std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? std::string() : std::string(value);
}

// ceil(tokens * price_per_million / 1e6) in micro-units, overflow-safe for any sane count.
int64_t token_cost_micros(int64_t tokens, ledger::Money price_per_million) {
  if (tokens <= 0 || price_per_million.micros() <= 0)
    return 0;
  const __int128 product = static_cast<__int128>(tokens) * price_per_million.micros();
  const __int128 cost = (product + 999'999) / 1'000'000;
  return cost > ledger::Money::micros_max ? ledger::Money::micros_max : static_cast<int64_t>(cost);
}

boost::json::array names(const std::vector<std::string>& values) {
  boost::json::array out;
  for (size_t i = 0; i < values.size() && i < prompt_names_max; ++i)
    out.emplace_back(values[i]);
  return out;
}

boost::json::object parse_json_object(std::string_view text, std::string& error) {
  boost::system::error_code code;
  boost::json::value value = boost::json::parse(text, code);
  if (code || !value.is_object()) {
    error = "not a JSON object";
    return {};
  }
  return std::move(value.as_object());
}

}  // namespace

std::optional<LlmSettings> LlmSettings::from_environment() {
  LlmSettings settings;
  settings.base_url = environment("STUB_LLM_BASE_URL");
  settings.model = environment("STUB_LLM_MODEL");
  settings.api_key = environment("STUB_LLM_API_KEY");
  settings.budget = environment("STUB_LLM_BUDGET");
  if (settings.base_url.empty() || settings.model.empty() || settings.budget.empty())
    return std::nullopt;
  if (!ledger::BudgetPath::parse(settings.budget))
    return std::nullopt;
  while (!settings.base_url.empty() && settings.base_url.back() == '/')
    settings.base_url.pop_back();
  if (auto price = ledger::Money::parse(environment("STUB_LLM_INPUT_PRICE")))
    settings.input_price_per_million = *price;
  if (auto price = ledger::Money::parse(environment("STUB_LLM_OUTPUT_PRICE")))
    settings.output_price_per_million = *price;
  return settings;
}

ledger::Money llm_cost(const LlmSettings& settings, const LlmUsage& usage) {
  const int64_t micros =
      token_cost_micros(usage.prompt_tokens, settings.input_price_per_million) +
      token_cost_micros(usage.completion_tokens, settings.output_price_per_million);
  assert(micros >= 0);
  return ledger::Money::from_micros(std::min(micros, ledger::Money::micros_max));
}

std::string llm_request_body(const LlmSettings& settings, std::string_view question,
                             const Vocabulary& vocabulary, Micros now) {
  boost::json::object known{{"subtree", vocabulary.default_subtree},
                            {"budgets", names(vocabulary.budgets)},
                            {"vendors", names(vocabulary.vendors)},
                            {"categories", names(vocabulary.categories)}};
  boost::json::array tag_keys;
  for (const auto& [key, values] : vocabulary.tag_values) {
    if (tag_keys.size() < prompt_names_max)
      tag_keys.emplace_back(key);
  }
  known["tag_keys"] = std::move(tag_keys);
  // The instructions say what the tool is for; the question and the ledger's names are data,
  // passed as JSON, and whatever the model makes of them is validated against the schema.
  const std::string system =
      "You translate a finance question about AI-agent spend into one call of the tool "
      "run_query. Use only names from the known names. Time is UTC; now is " +
      ledger::format_timestamp(now) +
      ". If the question cannot be expressed with the tool, call it anyway with your best "
      "constrained query; never answer in text. Known names (JSON): " +
      boost::json::serialize(known);
  boost::json::object function{{"name", "run_query"},
                               {"description", "Run a constrained query over the Stub ledger."},
                               {"parameters", query_json_schema()}};
  boost::json::object body{
      {"model", settings.model},
      {"messages",
       boost::json::array{boost::json::object{{"role", "system"}, {"content", system}},
                          boost::json::object{{"role", "user"}, {"content", question}}}},
      {"tools", boost::json::array{boost::json::object{{"type", "function"},
                                                       {"function", std::move(function)}}}},
      {"tool_choice",
       boost::json::object{{"type", "function"},
                           {"function", boost::json::object{{"name", "run_query"}}}}},
      {"max_completion_tokens", settings.max_completion_tokens},
      {"temperature", 0}};
  return boost::json::serialize(body);
}

LlmCall call_llm(const LlmSettings& settings, std::string_view question,
                 const Vocabulary& vocabulary, Micros now) {
  LlmCall call;
  std::vector<std::pair<std::string, std::string>> headers;
  if (!settings.api_key.empty())
    headers.emplace_back("Authorization", "Bearer " + settings.api_key);
  const webhooks::PostResult result =
      webhooks::post(settings.base_url + "/chat/completions", headers,
                     llm_request_body(settings, question, vocabulary, now), settings.timeout);
  if (result.status == 0) {
    call.error = "the LLM endpoint could not be reached: " + result.error;
    return call;
  }
  call.reached = true;
  std::string error;
  boost::json::object response = parse_json_object(result.body, error);
  if (const auto* usage = response.if_contains("usage"); usage && usage->is_object()) {
    const auto& object = usage->get_object();
    if (const auto* tokens = object.if_contains("prompt_tokens"); tokens && tokens->is_int64())
      call.usage.prompt_tokens = std::max<int64_t>(0, tokens->get_int64());
    if (const auto* tokens = object.if_contains("completion_tokens"); tokens && tokens->is_int64())
      call.usage.completion_tokens = std::max<int64_t>(0, tokens->get_int64());
  }
  if (!result.ok()) {
    call.error = "the LLM endpoint answered HTTP " + std::to_string(result.status);
    return call;
  }
  if (!error.empty()) {
    call.error = "the LLM endpoint's answer is " + error;
    return call;
  }
  // choices[0].message.tool_calls[0].function.arguments: a JSON text.
  const boost::json::value* choices = response.if_contains("choices");
  if (choices == nullptr || !choices->is_array() || choices->get_array().empty() ||
      !choices->get_array()[0].is_object()) {
    call.error = "the LLM answer has no choices";
    return call;
  }
  const boost::json::value* message = choices->get_array()[0].get_object().if_contains("message");
  const boost::json::value* tool_calls =
      message && message->is_object() ? message->get_object().if_contains("tool_calls") : nullptr;
  if (tool_calls == nullptr || !tool_calls->is_array() || tool_calls->get_array().empty() ||
      !tool_calls->get_array()[0].is_object()) {
    call.error = "the LLM did not call the query tool";
    return call;
  }
  const auto& first = tool_calls->get_array()[0].get_object();
  const boost::json::value* function = first.if_contains("function");
  if (function == nullptr || !function->is_object()) {
    call.error = "the LLM's tool call has no function";
    return call;
  }
  const boost::json::value* name = function->get_object().if_contains("name");
  const boost::json::value* arguments = function->get_object().if_contains("arguments");
  if (name == nullptr || !name->is_string() || name->get_string() != "run_query" ||
      arguments == nullptr || !arguments->is_string()) {
    call.error = "the LLM called an unknown tool";
    return call;
  }
  boost::json::object parsed = parse_json_object(arguments->get_string(), error);
  if (!error.empty()) {
    call.error = "the LLM's tool arguments are " + error;
    return call;
  }
  call.arguments = boost::json::value(std::move(parsed));
  return call;
}

Result<boost::json::object> ask(store::Store& store, const AskOptions& options) {
  assert(options.now > 0);
  assert(options.llm == nullptr || options.meter != nullptr);
  std::string subtree = options.subtree.empty() ? options.caller_node : options.subtree;
  if (subtree.empty()) {
    auto roots = store.list_roots();
    if (!roots.ok())
      return roots.error();
    if (roots->size() != 1) {
      return Error::invalid("subtree_required",
                            "Name the budget subtree to ask about (\"subtree\").");
    }
    subtree = roots->front();
  }
  if (!ledger::BudgetPath::parse(subtree))
    return Error::invalid("invalid_subtree", "\"subtree\" must be a budget path.");
  {
    Query scope;
    scope.filters.subtree = subtree;
    if (Status status = confine_to_scope(scope, options.caller_node); !status.ok())
      return status.error();
  }
  auto node = store.get_budget(subtree);
  if (!node.ok())
    return node.error();
  if (!node->has_value())
    return Error{ErrorCode::not_found, "budget_not_found", "No budget " + subtree + "."};
  auto root = store.get_budget(subtree.substr(0, subtree.find('/')));
  if (!root.ok())
    return root.error();
  const std::string currency = root->has_value() ? (*root)->currency : std::string("USD");

  boost::json::object out{{"question", options.question}};
  auto vocabulary = read_vocabulary(store, subtree);
  if (!vocabulary.ok())
    return vocabulary.error();
  QuestionParse parsed = parse_question(options.question, *vocabulary, options.now);
  std::string source = "offline";

  if (options.llm != nullptr && options.question.size() <= question_length_max &&
      http::is_clean_text(options.question)) {
    boost::json::object llm{{"used", false}};
    const std::string prompt =
        llm_request_body(*options.llm, options.question, *vocabulary, options.now);
    const LlmUsage worst{static_cast<int64_t>(prompt.size()) / characters_per_token_min + 1,
                         options.llm->max_completion_tokens};
    auto hold = options.meter->hold(llm_cost(*options.llm, worst));
    if (!hold.ok()) {
      llm["fallback_reason"] = "the LLM budget refused the call: " + hold.error().message;
    } else {
      LlmCall call = call_llm(*options.llm, options.question, *vocabulary, options.now);
      // What the endpoint reports is what it charges; never more than was reserved.
      ledger::Money cost =
          call.reached ? llm_cost(*options.llm, call.usage) : ledger::Money::zero();
      cost = std::min(cost, llm_cost(*options.llm, worst));
      options.meter->settle(*hold, cost);
      llm["cost"] = cost.to_string();
      if (!call.arguments) {
        llm["fallback_reason"] = call.error;
      } else {
        auto query = parse_query(*call.arguments, options.now);
        if (query.ok()) {
          if (query->filters.subtree.empty())
            query->filters.subtree = subtree;
          if (Status status = confine_to_scope(*query, options.caller_node); !status.ok())
            query = status.error();
        }
        // The LLM may narrow the subtree asked about, never leave it.
        if (query.ok()) {
          const auto asked = ledger::BudgetPath::parse(subtree);
          const auto chosen = ledger::BudgetPath::parse(query->filters.subtree);
          if (!asked || !chosen || !chosen->within(*asked))
            query = Error::invalid("outside_subtree",
                                   "The query leaves the subtree asked about (" + subtree + ").");
        }
        if (!query.ok()) {
          llm["fallback_reason"] = "the LLM's query is invalid: " + query.error().message;
        } else {
          llm["used"] = true;
          source = "llm";
          parsed.query = std::move(query).value();
          parsed.comparison.reset();
          parsed.cannot_answer.clear();
          parsed.unknown.clear();
          parsed.understood = {"query from the LLM, validated against the schema"};
        }
      }
    }
    out["llm"] = std::move(llm);
  }
  out["source"] = source;
  boost::json::array understood;
  for (const std::string& item : parsed.understood)
    understood.emplace_back(item);
  out["understood"] = std::move(understood);
  if (!parsed.query) {
    boost::json::array unknown;
    for (const std::string& item : parsed.unknown)
      unknown.emplace_back(item);
    out["answered"] = false;
    out["answer"] = parsed.cannot_answer;
    out["unknown"] = std::move(unknown);
    out["query"] = nullptr;
    out["rows"] = boost::json::array{};
    return out;
  }
  Query& query = *parsed.query;
  if (Status status = confine_to_scope(query, options.caller_node); !status.ok())
    return status.error();
  auto answer = run_query(store, query);
  if (!answer.ok())
    return answer.error();
  std::optional<Answer> comparison;
  if (parsed.comparison) {
    if (Status status = confine_to_scope(*parsed.comparison, options.caller_node); !status.ok())
      return status.error();
    auto previous = run_query(store, *parsed.comparison);
    if (!previous.ok())
      return previous.error();
    comparison = std::move(previous).value();
  }
  boost::json::object result = answer_to_json(*answer);
  out["answered"] = true;
  out["answer"] = answer_sentence(*answer, comparison, currency);
  out["query"] = std::move(result["query"]);
  out["rows"] = std::move(result["rows"]);
  out["total"] = std::move(result["total"]);
  if (comparison)
    out["comparison"] = answer_to_json(*comparison);
  return out;
}

}  // namespace stub::query
