#include "proxy/metering.hpp"

#include <algorithm>
#include <array>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/encoding_opts.hpp>
#include <boost/url/parse_query.hpp>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "ledger/money.hpp"

namespace stub::proxy {

namespace json = boost::json;

namespace {

int64_t saturating_add(int64_t a, int64_t b) {
  return a > std::numeric_limits<int64_t>::max() - b ? std::numeric_limits<int64_t>::max() : a + b;
}

int64_t clamp_micros(__int128 micros) {
  return micros > ledger::Money::micros_max ? ledger::Money::micros_max
                                            : static_cast<int64_t>(micros);
}

// ceil(sum(tokens x rate per million)) micro-units: rounded once, over the whole sum.
int64_t cost_of(std::initializer_list<std::pair<int64_t, int64_t>> terms) {
  __int128 total = 0;
  for (const auto& [tokens, rate] : terms) {
    if (tokens > 0 && rate > 0)
      total += static_cast<__int128>(tokens) * rate;
  }
  return clamp_micros((total + 999'999) / 1'000'000);
}

constexpr std::array<std::string_view, 3> image_part_types = {"image_url", "input_image", "image"};

// What the request's JSON says about its input: serialized bytes of image parts (counted per
// image instead), the image count, and whether part of the input is held by the vendor.
struct InputScan {
  int64_t image_bytes = 0;
  int64_t images = 0;
  bool opaque = false;
  bool wants_cache = false;
};

void scan(const json::value& value, InputScan& out, int depth = 0) {
  if (depth > 64) {  // deeper than any real request: assume the worst of what is below
    out.opaque = true;
    return;
  }
  if (value.is_array()) {
    for (const auto& item : value.get_array())
      scan(item, out, depth + 1);
    return;
  }
  if (!value.is_object())
    return;
  const json::object& object = value.get_object();
  const auto* type = object.if_contains("type");
  const std::string_view kind = type != nullptr && type->is_string()
                                    ? std::string_view(type->get_string())
                                    : std::string_view();
  if (std::find(image_part_types.begin(), image_part_types.end(), kind) != image_part_types.end()) {
    out.images += 1;
    out.image_bytes += static_cast<int64_t>(json::serialize(value).size());
    return;
  }
  if (object.contains("file_id") || object.contains("file_url"))
    out.opaque = true;
  if (kind == "document") {
    const auto* source = object.if_contains("source");
    if (source != nullptr && source->is_object()) {
      const auto* source_type = source->get_object().if_contains("type");
      if (source_type != nullptr && source_type->is_string() &&
          (source_type->get_string() == "url" || source_type->get_string() == "file")) {
        out.opaque = true;
      }
    }
  }
  if (object.contains("cache_control"))
    out.wants_cache = true;
  for (const auto& member : object)
    scan(member.value(), out, depth + 1);
}

// Server-side tools (web search, file search, code execution...) add input the request does
// not show; function and custom tools are described by the request itself.
bool has_server_tools(const json::object& body) {
  const auto* tools = body.if_contains("tools");
  if (tools == nullptr || !tools->is_array())
    return false;
  for (const auto& tool : tools->get_array()) {
    if (!tool.is_object())
      continue;
    const auto* type = tool.get_object().if_contains("type");
    if (type == nullptr || type->is_null())
      continue;
    if (!type->is_string())
      return true;
    if (type->get_string() != "function" && type->get_string() != "custom")
      return true;
  }
  return false;
}

int64_t nonnegative(const json::object& object, std::string_view name) {
  const auto* value = object.if_contains(name);
  return value != nullptr && value->is_int64() && value->get_int64() > 0 ? value->get_int64() : 0;
}

const json::object* object_member(const json::object& object, std::string_view name) {
  const auto* value = object.if_contains(name);
  return value != nullptr && value->is_object() ? &value->get_object() : nullptr;
}

// The usage object as the vendor writes it, read into `usage` (Anthropic's fields merge: a
// streamed message_delta repeats only what changed).
void read_usage_object(LlmApi api, const json::object& object, Usage& usage, bool merge) {
  usage.seen = true;
  switch (api) {
    case LlmApi::chat:
    case LlmApi::embeddings: {
      usage.input_tokens = nonnegative(object, "prompt_tokens");
      usage.output_tokens = nonnegative(object, "completion_tokens");
      const auto* details = object_member(object, "prompt_tokens_details");
      usage.cached_tokens = details != nullptr ? nonnegative(*details, "cached_tokens") : 0;
      return;
    }
    case LlmApi::responses: {
      usage.input_tokens = nonnegative(object, "input_tokens");
      usage.output_tokens = nonnegative(object, "output_tokens");
      const auto* details = object_member(object, "input_tokens_details");
      usage.cached_tokens = details != nullptr ? nonnegative(*details, "cached_tokens") : 0;
      return;
    }
    case LlmApi::messages: {
      const auto field = [&](std::string_view name, int64_t& into) {
        if (!merge || object.contains(name))
          into = nonnegative(object, name);
      };
      field("input_tokens", usage.input_tokens);
      field("output_tokens", usage.output_tokens);
      field("cache_read_input_tokens", usage.cached_tokens);
      field("cache_creation_input_tokens", usage.cache_write_tokens);
      if (const auto* tiers = object_member(object, "cache_creation")) {
        usage.cache_write_5m_tokens = nonnegative(*tiers, "ephemeral_5m_input_tokens");
        usage.cache_write_1h_tokens = nonnegative(*tiers, "ephemeral_1h_input_tokens");
      } else if (!merge) {
        usage.cache_write_5m_tokens = usage.cache_write_1h_tokens = 0;
      }
      return;
    }
  }
}

}  // namespace

Result<WorstCase> worst_case(LlmApi api, const json::object& body, size_t body_bytes,
                             const ModelPrice& price) {
  int64_t choices = 1;
  if (api == LlmApi::chat) {
    if (const auto* given = body.if_contains("n"); given != nullptr && !given->is_null()) {
      if (!given->is_int64() || given->get_int64() < 1 || given->get_int64() > choices_max)
        return Error::invalid("invalid_n", "Field \"n\" must be from 1 to 128.");
      choices = given->get_int64();
    }
  }
  WorstCase out;
  if (api != LlmApi::embeddings) {
    const int64_t model_max = price.max_output_tokens > 0 ? price.max_output_tokens : 0;
    std::optional<int64_t> asked;
    const auto caps =
        api == LlmApi::chat ? std::vector<std::string_view>{"max_completion_tokens", "max_tokens"}
        : api == LlmApi::responses ? std::vector<std::string_view>{"max_output_tokens"}
                                   : std::vector<std::string_view>{"max_tokens"};
    for (const std::string_view field : caps) {
      const auto* given = body.if_contains(field);
      if (given == nullptr || given->is_null())
        continue;
      if (!given->is_int64() || given->get_int64() < 1) {
        return Error::invalid("invalid_max_tokens",
                              "Field \"" + std::string(field) + "\" must be a positive integer.");
      }
      asked = asked ? std::min(*asked, given->get_int64()) : given->get_int64();
    }
    int64_t cap = asked.value_or(model_max);
    if (model_max > 0)
      cap = std::min(cap, model_max);
    if (cap <= 0)
      cap = 32'768;  // neither the request nor the price file bounds it
    out.output_tokens = cap > std::numeric_limits<int64_t>::max() / choices
                            ? std::numeric_limits<int64_t>::max()
                            : cap * choices;
  }

  InputScan seen;
  scan(json::value(body), seen);
  // Every token covers at least one byte (byte-level BPE), so the bytes bound the tokens.
  int64_t input = static_cast<int64_t>(body_bytes) - seen.image_bytes;
  input = saturating_add(std::max<int64_t>(input, 0), request_tokens_overhead);
  input = saturating_add(input, seen.images * image_tokens_max);
  if (body.contains("tools"))
    input = saturating_add(input, tools_tokens_overhead);
  if (api != LlmApi::embeddings && price.context_window > 0) {
    const bool unbounded =
        seen.opaque || has_server_tools(body) ||
        (api == LlmApi::responses && (body.contains("previous_response_id") ||
                                      body.contains("conversation") || body.contains("prompt")));
    input = unbounded ? price.context_window : std::min(input, price.context_window);
  }
  out.input_tokens = input;
  const int64_t input_rate =
      seen.wants_cache ? price.highest_input_micros_per_million() : price.input_micros_per_million;
  out.micros =
      std::max<int64_t>(1, cost_of({{out.input_tokens, input_rate},
                                    {out.output_tokens, price.output_micros_per_million}}));
  return out;
}

bool read_usage(LlmApi api, const json::value& answer, Usage& usage) {
  if (!answer.is_object())
    return false;
  const auto* object = object_member(answer.get_object(), "usage");
  if (object == nullptr)
    return false;
  read_usage_object(api, *object, usage, false);
  return true;
}

bool read_stream_usage(LlmApi api, const json::object& event, Usage& usage) {
  const auto* type = event.if_contains("type");
  const std::string_view kind =
      type != nullptr && type->is_string() ? std::string_view(type->get_string()) : "";
  switch (api) {
    case LlmApi::chat:
    case LlmApi::embeddings:
      if (const auto* object = object_member(event, "usage")) {
        read_usage_object(api, *object, usage, false);
        return true;
      }
      return false;
    case LlmApi::responses:
      if (kind == "response.completed" || kind == "response.incomplete" ||
          kind == "response.failed") {
        const auto* response = object_member(event, "response");
        const auto* object = response != nullptr ? object_member(*response, "usage") : nullptr;
        if (object != nullptr) {
          read_usage_object(api, *object, usage, false);
          return true;
        }
      }
      return false;
    case LlmApi::messages:
      if (kind == "message_start") {
        const auto* message = object_member(event, "message");
        const auto* object = message != nullptr ? object_member(*message, "usage") : nullptr;
        if (object != nullptr) {
          read_usage_object(api, *object, usage, false);
          return true;
        }
      } else if (kind == "message_delta") {
        if (const auto* object = object_member(event, "usage")) {
          // Cumulative counts: a field present replaces the one message_start gave.
          read_usage_object(api, *object, usage, usage.seen);
          return true;
        }
      }
      return false;
  }
  return false;
}

int64_t usage_cost_micros(LlmApi api, const ModelPrice& price, const Usage& usage) {
  const int64_t input = price.input_micros_per_million;
  const int64_t cached = price.cached_input_micros_per_million.value_or(input);
  if (api != LlmApi::messages) {
    const int64_t reads = std::min(usage.cached_tokens, usage.input_tokens);
    return cost_of({{usage.input_tokens - reads, input},
                    {reads, cached},
                    {usage.output_tokens, price.output_micros_per_million}});
  }
  // Anthropic: input_tokens excludes cache reads and writes; a write that names no tier is
  // priced at the 5-minute tier.
  const int64_t write_5m = price.cache_write_5m_micros_per_million.value_or(input);
  const int64_t write_1h = price.cache_write_1h_micros_per_million.value_or(write_5m);
  const int64_t untiered = std::max<int64_t>(
      0, usage.cache_write_tokens - usage.cache_write_5m_tokens - usage.cache_write_1h_tokens);
  return cost_of({{usage.input_tokens, input},
                  {usage.cached_tokens, cached},
                  {saturating_add(usage.cache_write_5m_tokens, untiered), write_5m},
                  {usage.cache_write_1h_tokens, write_1h},
                  {usage.output_tokens, price.output_micros_per_million}});
}

json::object usage_receipt(LlmApi api, const Usage& usage) {
  json::object out;
  out["input_tokens"] = usage.input_tokens;
  if (api != LlmApi::embeddings)
    out["output_tokens"] = usage.output_tokens;
  if (api == LlmApi::messages) {
    out["cache_read_input_tokens"] = usage.cached_tokens;
    out["cache_creation_input_tokens"] = usage.cache_write_tokens;
    if (usage.cache_write_5m_tokens > 0 || usage.cache_write_1h_tokens > 0) {
      out["cache_creation_5m_tokens"] = usage.cache_write_5m_tokens;
      out["cache_creation_1h_tokens"] = usage.cache_write_1h_tokens;
    }
  } else if (usage.cached_tokens > 0) {
    out["cached_input_tokens"] = usage.cached_tokens;
  }
  return out;
}

Result<int64_t> generic_cost_micros(const json::value& rule, std::string_view content_type,
                                    std::string_view body) {
  const Error bad_rule =
      Error{ErrorCode::internal, "invalid_cost_rule", "The vendor's cost rule is unreadable."};
  if (!rule.is_object())
    return bad_rule;
  const json::object& object = rule.get_object();
  const auto* type = object.if_contains("type");
  if (type == nullptr || !type->is_string())
    return bad_rule;
  if (type->get_string() == "fixed") {
    const auto* amount = object.if_contains("amount");
    const auto money = amount != nullptr && amount->is_string()
                           ? ledger::Money::parse(amount->get_string())
                           : std::nullopt;
    if (!money || money->micros() < 0)
      return bad_rule;
    return money->micros();
  }
  const auto* field = object.if_contains("field");
  const auto* exponent = object.if_contains("exponent");
  if (type->get_string() != "field" || field == nullptr || !field->is_string() ||
      exponent == nullptr || !exponent->is_int64() || exponent->get_int64() < 0 ||
      exponent->get_int64() > 18) {
    return bad_rule;
  }
  const std::string name(field->get_string());
  std::string source;
  if (const auto* given = object.if_contains("source"); given != nullptr && given->is_string())
    source = std::string(given->get_string());
  if (source.empty()) {
    source = content_type.find("application/x-www-form-urlencoded") != std::string_view::npos
                 ? "form"
                 : "json";
  }
  const Error missing = Error::invalid(
      "cost_field_missing", "This vendor's calls are priced from the request's \"" + name +
                                "\" field (" + source + " body), which the request does not have.");
  const Error malformed = Error::invalid(
      "invalid_cost_field", "Field \"" + name +
                                "\" must be a whole, non-negative number of minor units (at most "
                                "18 digits), as this vendor's calls are priced from it.");
  // The amount as text: digits only, so it is exact.
  std::string digits;
  if (source == "form") {
    auto params = boost::urls::parse_query(body);
    if (!params)
      return malformed;
    bool found = false;
    for (const auto& param : *params) {
      const boost::urls::encoding_opts form_opts(true, false, false);
      if (param.key.decode(form_opts) != name)
        continue;
      if (found || !param.has_value)
        return malformed;  // ambiguous or empty: never guess which one the vendor reads
      found = true;
      digits = param.value.decode(form_opts);
    }
    if (!found)
      return missing;
  } else {
    boost::system::error_code error;
    const json::value document = json::parse(body, error);
    if (error || !document.is_object())
      return missing;
    const auto* value = document.get_object().if_contains(name);
    if (value == nullptr || value->is_null())
      return missing;
    if (value->is_int64()) {
      if (value->get_int64() < 0)
        return malformed;
      digits = std::to_string(value->get_int64());
    } else if (value->is_uint64()) {
      digits = std::to_string(value->get_uint64());
    } else if (value->is_string()) {
      digits = std::string(value->get_string());
    } else {
      return malformed;
    }
  }
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return malformed;
  }
  // minor units / 10^exponent currency units = minor units x 10^(6 - exponent) micro-units,
  // rounded up when the exponent is finer than a micro-unit.
  const __int128 minor = std::stoll(digits);
  const int64_t e = exponent->get_int64();
  __int128 micros = minor;
  if (e <= 6) {
    for (int64_t i = e; i < 6; ++i)
      micros *= 10;
  } else {
    __int128 divisor = 1;
    for (int64_t i = 6; i < e; ++i)
      divisor *= 10;
    micros = (minor + divisor - 1) / divisor;
  }
  if (micros > ledger::Money::micros_max)
    return malformed;
  return static_cast<int64_t>(micros);
}

}  // namespace stub::proxy
