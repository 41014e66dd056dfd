#include "proxy/prices.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <limits>

#include "ledger/money.hpp"

namespace stub::proxy {

extern const char* const embedded_prices_json;  // generated from prices/llm.json

namespace {

Error bad_prices(std::string message) {
  return Error::invalid("invalid_prices", "Price file: " + std::move(message));
}

std::optional<int64_t> rate(const boost::json::object& entry, std::string_view field) {
  const auto* value = entry.if_contains(field);
  if (value == nullptr || !value->is_string())
    return std::nullopt;
  const auto money = ledger::Money::parse(value->get_string());
  if (!money || money->micros() < 0)
    return std::nullopt;
  return money->micros();
}

}  // namespace

Result<PriceTable> PriceTable::parse(std::string_view json_text) {
  boost::system::error_code error;
  const boost::json::value document = boost::json::parse(json_text, error);
  if (error || !document.is_object())
    return bad_prices("not a JSON object.");
  const auto* models = document.get_object().if_contains("models");
  if (models == nullptr || !models->is_object())
    return bad_prices("no \"models\" object.");
  PriceTable table;
  if (const auto* currency = document.get_object().if_contains("currency");
      currency != nullptr && currency->is_string()) {
    table.currency_ = std::string(currency->get_string());
  }
  for (const auto& [name, value] : models->get_object()) {
    if (!value.is_object())
      return bad_prices("model " + std::string(name) + " is not an object.");
    const auto& entry = value.get_object();
    ModelPrice price;
    price.model = std::string(name);
    const auto input = rate(entry, "input");
    const auto output = rate(entry, "output");
    if (!input)
      return bad_prices("model " + price.model + " has no valid \"input\" rate.");
    price.input_micros_per_million = *input;
    price.output_micros_per_million = output.value_or(0);
    price.cached_input_micros_per_million = rate(entry, "cached_input");
    price.cache_write_5m_micros_per_million = rate(entry, "cache_write_5m");
    price.cache_write_1h_micros_per_million = rate(entry, "cache_write_1h");
    for (const auto& [field, into] : {std::pair{"max_output_tokens", &price.max_output_tokens},
                                      std::pair{"context_window", &price.context_window}}) {
      if (const auto* given = entry.if_contains(field); given != nullptr && given->is_int64())
        *into = given->get_int64();
    }
    table.models_.emplace(price.model, std::move(price));
  }
  if (const auto* aliases = document.get_object().if_contains("aliases");
      aliases != nullptr && aliases->is_object()) {
    for (const auto& [alias, target] : aliases->get_object()) {
      if (target.is_string())
        table.aliases_.emplace(std::string(alias), std::string(target.get_string()));
    }
  }
  return table;
}

const PriceTable& PriceTable::embedded() {
  static const PriceTable table = [] {
    auto parsed = parse(embedded_prices_json);
    return parsed.ok() ? std::move(parsed).value() : PriceTable{};
  }();
  return table;
}

const ModelPrice* PriceTable::find(std::string_view model) const {
  if (auto found = models_.find(model); found != models_.end())
    return &found->second;
  if (auto alias = aliases_.find(model); alias != aliases_.end()) {
    if (auto found = models_.find(alias->second); found != models_.end())
      return &found->second;
  }
  const ModelPrice* best = nullptr;
  for (const auto& [name, price] : models_) {
    if (model.size() > name.size() && model.starts_with(name) && model[name.size()] == '-' &&
        (best == nullptr || name.size() > best->model.size())) {
      best = &price;
    }
  }
  return best;
}

int64_t ModelPrice::highest_input_micros_per_million() const {
  int64_t highest = input_micros_per_million;
  for (const auto& rate : {cached_input_micros_per_million, cache_write_5m_micros_per_million,
                           cache_write_1h_micros_per_million}) {
    if (rate)
      highest = std::max(highest, *rate);
  }
  return highest;
}

int64_t token_cost_micros(int64_t tokens, int64_t micros_per_million) {
  if (tokens <= 0 || micros_per_million <= 0)
    return 0;
  const __int128 product = static_cast<__int128>(tokens) * micros_per_million;
  const __int128 cost = (product + 999'999) / 1'000'000;
  return cost > std::numeric_limits<int64_t>::max() ? std::numeric_limits<int64_t>::max()
                                                    : static_cast<int64_t>(cost);
}

}  // namespace stub::proxy
