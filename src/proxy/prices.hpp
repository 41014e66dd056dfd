#pragma once

// Model prices for the metering proxy, from the shared price file prices/llm.json (the same
// file and lookup as the Python SDK's stub_ledger.prices): per million tokens, decimal strings.
// The copy in the repository is embedded in the binary at build time; --prices-file replaces it.

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/result.hpp"

namespace stub::proxy {

struct ModelPrice {
  std::string model;
  int64_t input_micros_per_million = 0;  // micro-dollars per million input tokens
  int64_t output_micros_per_million = 0;
  // Cache rates where the file gives them: reads (OpenAI cached prompt tokens, Anthropic cache
  // reads) and Anthropic's two cache-write tiers.
  std::optional<int64_t> cached_input_micros_per_million;
  std::optional<int64_t> cache_write_5m_micros_per_million;
  std::optional<int64_t> cache_write_1h_micros_per_million;
  int64_t max_output_tokens = 0;  // 0: not given
  int64_t context_window = 0;     // 0: not given

  // The dearest rate any input token can be billed at (a cache write may cost more).
  int64_t highest_input_micros_per_million() const;
};

class PriceTable {
 public:
  static Result<PriceTable> parse(std::string_view json_text);
  // The copy of prices/llm.json embedded at build time.
  static const PriceTable& embedded();

  // The exact model, then an alias, then the longest model that is a prefix of `model`
  // followed by '-' (dated snapshots such as gpt-4o-2024-08-06).
  const ModelPrice* find(std::string_view model) const;
  const std::string& currency() const { return currency_; }

 private:
  std::map<std::string, ModelPrice, std::less<>> models_;
  std::map<std::string, std::string, std::less<>> aliases_;
  std::string currency_ = "USD";
};

// tokens x rate per million, rounded up to the next micro (never under-charged).
int64_t token_cost_micros(int64_t tokens, int64_t micros_per_million);

}  // namespace stub::proxy
