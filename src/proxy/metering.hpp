#pragma once

// What the metering proxy holds and captures for one LLM call, with no HTTP in it: the worst
// case read from the request, the usage read from the answer (whole or streamed), and its cost
// from prices/llm.json. The same rules as the Python SDK's stub_ledger.llm (docs/proxy.md):
//
//   input  = min(context_window, request bytes - image data + 64 + 1,000 with tools
//                + 8,000 per image part), or the whole window when the request does not show
//                all of its input (a stored response or prompt, a file by id or URL, a
//                server-side tool); embeddings are never clamped (an array holds many windows)
//   output = the request's cap clamped to the model's maximum (the maximum when absent), x n
//   hold   = input x (input rate, or the dearest cache rate when the request asks for caching)
//            + output x output rate, rounded up to the micro-unit
//
// A generic vendor's calls are priced by its cost rule instead (generic_cost_micros).

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <string_view>

#include "ledger/result.hpp"
#include "proxy/prices.hpp"

namespace stub::proxy {

enum class LlmApi { chat, responses, embeddings, messages };

constexpr int64_t request_tokens_overhead = 64;
constexpr int64_t tools_tokens_overhead = 1'000;
constexpr int64_t image_tokens_max = 8'000;
constexpr int64_t choices_max = 128;

// The usage an answer reports, as the vendor counts it.
struct Usage {
  bool seen = false;
  int64_t input_tokens = 0;        // OpenAI: every prompt token, cached ones included; Anthropic:
                                   // the uncached ones only
  int64_t cached_tokens = 0;       // cache reads
  int64_t cache_write_tokens = 0;  // Anthropic cache writes, both tiers and untiered
  int64_t cache_write_5m_tokens = 0;
  int64_t cache_write_1h_tokens = 0;
  int64_t output_tokens = 0;
};

struct WorstCase {
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;  // n included
  int64_t micros = 0;         // at least 1
};

// Errors: invalid_n, invalid_max_tokens (the request's own fields are malformed).
Result<WorstCase> worst_case(LlmApi api, const boost::json::object& body, size_t body_bytes,
                             const ModelPrice& price);

// A non-streamed answer's usage. False when it has none.
bool read_usage(LlmApi api, const boost::json::value& answer, Usage& usage);

// One streamed event's JSON data, merged into `usage` (OpenAI chat: the usage chunk; Responses:
// response.completed; Anthropic: message_start, then message_delta's cumulative counts).
// Returns whether the event carried usage.
bool read_stream_usage(LlmApi api, const boost::json::object& event, Usage& usage);

// The usage's cost in micro-units, rounded up once over the sum.
int64_t usage_cost_micros(LlmApi api, const ModelPrice& price, const Usage& usage);

// The token counts a capture's receipt records.
boost::json::object usage_receipt(LlmApi api, const Usage& usage);

// A generic vendor's price for one call from its cost rule (see routes_vendors.cpp's
// parse_cost): {"type":"fixed","amount":"0.05"}, or {"type":"field","field":"amount",
// "exponent":2,"source":"json"|"form"} reading a whole number of minor units from the request
// body (the Content-Type decides when no source is given). Errors: cost_field_missing,
// invalid_cost_field, invalid_cost_rule.
Result<int64_t> generic_cost_micros(const boost::json::value& rule, std::string_view content_type,
                                    std::string_view body);

}  // namespace stub::proxy
