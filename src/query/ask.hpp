#pragma once

// Asking the ledger a question (POST /v1/ask, `stub ask`): the folder's entry point for
// questions. The question becomes a constrained Query, by the LLM path when one is configured
// (its tool call validated like any POST /v1/query body) or else by the offline parser; the
// query runs; the answer is a sentence, the rows, and the query itself.
//
// The LLM path: any OpenAI-compatible chat-completions endpoint, with one tool (the query
// schema) it must call. Invalid or failed output falls back to the offline parser, and the
// answer says so. Its calls are metered through the ledger by the caller's LlmMeter (a hold of
// the worst case before, a capture from `usage` after).

#include <boost/json/object.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "ledger/money.hpp"
#include "query/question.hpp"
#include "store/store.hpp"

namespace stub::query {

struct LlmSettings {
  std::string base_url;  // e.g. https://api.openai.com/v1 (".../chat/completions" is appended)
  std::string model;
  std::string api_key;
  std::string budget;  // the budget node its calls are metered on (STUB_LLM_BUDGET)
  // Prices per million tokens, for the hold (worst case) and the capture (actual usage).
  ledger::Money input_price_per_million = ledger::Money::zero();
  ledger::Money output_price_per_million = ledger::Money::zero();
  int64_t max_completion_tokens = 512;
  std::chrono::milliseconds timeout{20'000};

  // STUB_LLM_BASE_URL, STUB_LLM_MODEL, STUB_LLM_API_KEY, STUB_LLM_BUDGET,
  // STUB_LLM_INPUT_PRICE and STUB_LLM_OUTPUT_PRICE (per million tokens). Nullopt unless the
  // URL, the model and the budget are all set (an unmetered LLM is never called).
  static std::optional<LlmSettings> from_environment();
};

struct LlmUsage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Cost of `usage` at the settings' prices, rounded up to the micro-unit.
ledger::Money llm_cost(const LlmSettings& settings, const LlmUsage& usage);

struct LlmCall {
  std::optional<boost::json::value> arguments;  // the tool call's arguments, parsed
  std::string error;                            // why there are none
  LlmUsage usage;
  bool reached = false;  // the endpoint answered (so usage may be billable)
};

// The request body sent to the endpoint (exposed for tests).
std::string llm_request_body(const LlmSettings& settings, std::string_view question,
                             const Vocabulary& vocabulary, Micros now);
LlmCall call_llm(const LlmSettings& settings, std::string_view question,
                 const Vocabulary& vocabulary, Micros now);

// What the ask path needs from the ledger to meter its LLM calls.
struct LlmMeter {
  // Reserves `worst_case` on the LLM budget; returns the hold id, or why not (then the LLM is
  // not called and the offline parser answers).
  std::function<Result<std::string>(ledger::Money worst_case)> hold;
  // Settles the hold at `cost` (zero voids it).
  std::function<void(const std::string& hold_id, ledger::Money cost)> settle;
};

struct AskOptions {
  std::string question;
  std::string caller_node;  // empty for the admin
  std::string subtree;      // the subtree asked about: defaults to the caller's node
  Micros now = 0;
  const LlmSettings* llm = nullptr;  // null: offline parser only
  const LlmMeter* meter = nullptr;   // required with llm
};

// {"question", "answered", "answer", "source", "llm"?, "understood", "query", "rows", "total",
//  "comparison"?}. Errors only for the store or a scope the caller may not ask about.
Result<boost::json::object> ask(store::Store& store, const AskOptions& options);

}  // namespace stub::query
