// The metering proxy's pricing with no HTTP: worst cases, usage read from whole and streamed
// answers, their cost (the Python SDK's rules), and the generic vendors' cost rules.

#include "proxy/metering.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <string>

namespace stub::proxy {
namespace {

namespace json = boost::json;

ModelPrice claude() {
  ModelPrice price;
  price.model = "claude-test";
  price.input_micros_per_million = 5'000'000;  // 5.00 per million tokens
  price.output_micros_per_million = 25'000'000;
  price.cached_input_micros_per_million = 500'000;
  price.cache_write_5m_micros_per_million = 6'250'000;
  price.cache_write_1h_micros_per_million = 10'000'000;
  price.max_output_tokens = 128'000;
  price.context_window = 200'000;
  return price;
}

ModelPrice gpt() {
  ModelPrice price;
  price.model = "gpt-test";
  price.input_micros_per_million = 2'500'000;
  price.output_micros_per_million = 10'000'000;
  price.cached_input_micros_per_million = 1'250'000;
  price.max_output_tokens = 16'384;
  price.context_window = 128'000;
  return price;
}

json::object object(std::string_view text) {
  return json::parse(text).as_object();
}

WorstCase worst(LlmApi api, std::string_view body, const ModelPrice& price) {
  auto result = worst_case(api, object(body), body.size(), price);
  EXPECT_TRUE(result.ok()) << result.error().message;
  return result.ok() ? *result : WorstCase{};
}

TEST(MeteringTest, WorstCaseIsBytesPlusOverheadAndTheCappedOutputTimesN) {
  const std::string body =
      R"({"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"max_tokens":100,"n":3})";
  const WorstCase w = worst(LlmApi::chat, body, gpt());
  EXPECT_EQ(w.input_tokens, static_cast<int64_t>(body.size()) + request_tokens_overhead);
  EXPECT_EQ(w.output_tokens, 300);
  // (input x 2.50 + 300 x 10.00) per million, rounded up once.
  const __int128 total = static_cast<__int128>(w.input_tokens) * 2'500'000 + 300LL * 10'000'000;
  EXPECT_EQ(w.micros, static_cast<int64_t>((total + 999'999) / 1'000'000));
}

TEST(MeteringTest, OutputCapIsClampedToTheModelAndDefaultsToIt) {
  EXPECT_EQ(worst(LlmApi::chat, R"({"max_completion_tokens":1000000})", gpt()).output_tokens,
            16'384);
  EXPECT_EQ(worst(LlmApi::messages, R"({"messages":[]})", claude()).output_tokens, 128'000);
  EXPECT_EQ(worst(LlmApi::responses, R"({"max_output_tokens":7})", gpt()).output_tokens, 7);
  // Both chat caps given: the smaller binds.
  EXPECT_EQ(
      worst(LlmApi::chat, R"({"max_tokens":9,"max_completion_tokens":20})", gpt()).output_tokens,
      9);
  EXPECT_EQ(worst(LlmApi::embeddings, R"({"input":"x"})", gpt()).output_tokens, 0);
}

TEST(MeteringTest, MalformedCapsAndChoicesAreRefused) {
  for (const char* body :
       {R"({"max_tokens":0})", R"({"max_tokens":"5"})", R"({"max_tokens":1.5})"}) {
    auto result = worst_case(LlmApi::chat, object(body), 10, gpt());
    ASSERT_FALSE(result.ok()) << body;
    EXPECT_EQ(result.error().subcode, "invalid_max_tokens");
  }
  for (const char* body : {R"({"n":0})", R"({"n":129})", R"({"n":"2"})"}) {
    auto result = worst_case(LlmApi::chat, object(body), 10, gpt());
    ASSERT_FALSE(result.ok()) << body;
    EXPECT_EQ(result.error().subcode, "invalid_n");
  }
}

TEST(MeteringTest, InputTheRequestDoesNotShowIsTheWholeWindow) {
  for (
      const auto& [api, body] :
      {std::pair{LlmApi::responses, R"({"previous_response_id":"resp_1","input":"go on"})"},
       std::pair{LlmApi::responses, R"({"input":[{"type":"input_file","file_id":"file_1"}]})"},
       std::pair{LlmApi::chat, R"({"tools":[{"type":"web_search"}],"messages":[]})"},
       std::pair{
           LlmApi::messages,
           R"({"messages":[{"role":"user","content":[{"type":"document","source":{"type":"url","url":"https://x"}}]}]})"}}) {
    EXPECT_EQ(worst(api, body, claude()).input_tokens, 200'000) << body;
  }
  // Function tools are in the request: counted, plus the tools overhead.
  const std::string with_tools = R"({"tools":[{"type":"function","function":{"name":"f"}}]})";
  EXPECT_EQ(
      worst(LlmApi::chat, with_tools, gpt()).input_tokens,
      static_cast<int64_t>(with_tools.size()) + request_tokens_overhead + tools_tokens_overhead);
}

TEST(MeteringTest, ImageDataIsCountedPerImageNotPerByte) {
  const std::string image(100'000, 'A');
  const std::string part =
      R"({"type":"image_url","image_url":{"url":"data:image/png;base64,)" + image + R"("}})";
  const std::string body = R"({"messages":[{"role":"user","content":[)" + part + "]}]}";
  const WorstCase w = worst(LlmApi::chat, body, gpt());
  EXPECT_EQ(w.input_tokens, static_cast<int64_t>(body.size() - part.size()) +
                                request_tokens_overhead + image_tokens_max);
}

TEST(MeteringTest, EmbeddingsAreNeverClampedToTheWindow) {
  const std::string body = R"({"input":[")" + std::string(300'000, 'x') + R"("]})";
  EXPECT_EQ(worst(LlmApi::embeddings, body, gpt()).input_tokens,
            static_cast<int64_t>(body.size()) + request_tokens_overhead);
  EXPECT_EQ(worst(LlmApi::chat, body, gpt()).input_tokens, 128'000);
}

TEST(MeteringTest, CachingRequestsHoldInputAtTheDearestCacheRate) {
  const std::string plain = R"({"max_tokens":1,"messages":[{"role":"user","content":"x"}]})";
  const std::string cached =
      R"({"max_tokens":1,"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral","ttl":"1h"}}]}]})";
  const WorstCase a = worst(LlmApi::messages, plain, claude());
  const WorstCase b = worst(LlmApi::messages, cached, claude());
  EXPECT_EQ(a.micros, (a.input_tokens * 5'000'000 + 25'000'000 + 999'999) / 1'000'000);
  EXPECT_EQ(b.micros, (b.input_tokens * 10'000'000 + 25'000'000 + 999'999) / 1'000'000);
}

TEST(MeteringTest, OpenAiCostPricesCachedPromptTokensApart) {
  Usage usage;
  ASSERT_TRUE(read_usage(LlmApi::chat, json::parse(R"({"usage":{"prompt_tokens":1000,
      "completion_tokens":200,"prompt_tokens_details":{"cached_tokens":400}}})"),
                         usage));
  EXPECT_EQ(usage.input_tokens, 1000);
  EXPECT_EQ(usage.cached_tokens, 400);
  // 600 x 2.50 + 400 x 1.25 + 200 x 10.00 = 1500 + 500 + 2000 micros.
  EXPECT_EQ(usage_cost_micros(LlmApi::chat, gpt(), usage), 4000);

  Usage responses;
  ASSERT_TRUE(read_usage(LlmApi::responses, json::parse(R"({"usage":{"input_tokens":10,
      "output_tokens":3,"input_tokens_details":{"cached_tokens":4}}})"),
                         responses));
  // 6 x 2.5 + 4 x 1.25 + 3 x 10 = 15 + 5 + 30 = 50 micros.
  EXPECT_EQ(usage_cost_micros(LlmApi::responses, gpt(), responses), 50);
}

TEST(MeteringTest, AnthropicCostPricesCacheReadsAndBothWriteTiers) {
  Usage usage;
  ASSERT_TRUE(read_usage(LlmApi::messages, json::parse(R"({"usage":{"input_tokens":100,
      "output_tokens":10,"cache_read_input_tokens":1000,"cache_creation_input_tokens":300,
      "cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":150}}})"),
                         usage));
  // 100 x 5 + 1000 x 0.5 + (100 + 50 untiered) x 6.25 + 150 x 10 + 10 x 25
  //   = 500 + 500 + 937.5 + 1500 + 250 = 3687.5 -> 3688 micros (rounded up once).
  EXPECT_EQ(usage_cost_micros(LlmApi::messages, claude(), usage), 3688);
}

TEST(MeteringTest, AnthropicStreamUsageMergesTheCumulativeDelta) {
  Usage usage;
  ASSERT_TRUE(read_stream_usage(LlmApi::messages, object(R"({"type":"message_start","message":{
      "usage":{"input_tokens":50,"output_tokens":1,"cache_read_input_tokens":7}}})"),
                                usage));
  EXPECT_EQ(usage.output_tokens, 1);
  ASSERT_TRUE(read_stream_usage(
      LlmApi::messages, object(R"({"type":"message_delta","usage":{"output_tokens":42}})"), usage));
  EXPECT_EQ(usage.input_tokens, 50);
  EXPECT_EQ(usage.cached_tokens, 7);
  EXPECT_EQ(usage.output_tokens, 42);
  EXPECT_FALSE(read_stream_usage(LlmApi::messages, object(R"({"type":"ping"})"), usage));
}

TEST(MeteringTest, StreamUsageForOpenAiComesFromTheUsageChunkOrResponseCompleted) {
  Usage chat;
  EXPECT_FALSE(read_stream_usage(LlmApi::chat, object(R"({"choices":[],"usage":null})"), chat));
  EXPECT_TRUE(read_stream_usage(
      LlmApi::chat, object(R"({"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}})"),
      chat));
  EXPECT_EQ(chat.output_tokens, 4);
  Usage responses;
  EXPECT_FALSE(read_stream_usage(LlmApi::responses,
                                 object(R"({"type":"response.output_text.delta","delta":"x"})"),
                                 responses));
  EXPECT_TRUE(read_stream_usage(LlmApi::responses, object(R"({"type":"response.completed",
      "response":{"usage":{"input_tokens":8,"output_tokens":9}}})"),
                                responses));
  EXPECT_EQ(responses.input_tokens, 8);
}

TEST(MeteringTest, GenericCostRulesReadExactMinorUnits) {
  const auto rule = json::parse(R"({"type":"field","field":"amount","exponent":2})");
  EXPECT_EQ(
      *generic_cost_micros(rule, "application/x-www-form-urlencoded", "currency=usd&amount=1500"),
      15'000'000);
  EXPECT_EQ(*generic_cost_micros(rule, "application/json", R"({"amount":1999})"), 19'990'000);
  EXPECT_EQ(*generic_cost_micros(rule, "application/json", R"({"amount":"7"})"), 70'000);
  // JPY-like exponent 0 and a finer-than-micro exponent rounded up.
  EXPECT_EQ(*generic_cost_micros(json::parse(R"({"type":"field","field":"amount","exponent":0})"),
                                 "application/json", R"({"amount":3})"),
            3'000'000);
  EXPECT_EQ(*generic_cost_micros(json::parse(R"({"type":"field","field":"wei","exponent":9})"),
                                 "application/json", R"({"wei":1001})"),
            2);
  EXPECT_EQ(*generic_cost_micros(json::parse(R"({"type":"fixed","amount":"0.05"})"), "", ""),
            50'000);
}

TEST(MeteringTest, GenericCostRulesRefuseWhatTheyCannotPriceExactly) {
  const auto rule = json::parse(R"({"type":"field","field":"amount","exponent":2})");
  const auto code = [&](std::string_view type, std::string_view body) {
    auto result = generic_cost_micros(rule, type, body);
    return result.ok() ? std::string("ok") : result.error().subcode;
  };
  const std::string_view form = "application/x-www-form-urlencoded";
  EXPECT_EQ(code(form, "currency=usd"), "cost_field_missing");
  EXPECT_EQ(code(form, "amount=abc"), "invalid_cost_field");
  EXPECT_EQ(code(form, "amount=-5"), "invalid_cost_field");
  EXPECT_EQ(code(form, "amount=1.5"), "invalid_cost_field");
  EXPECT_EQ(code(form, "amount="), "invalid_cost_field");
  EXPECT_EQ(code(form, "amount=1&amount=900"), "invalid_cost_field");  // which one is read?
  EXPECT_EQ(code(form, "amount=1234567890123456789"), "invalid_cost_field");
  EXPECT_EQ(code("application/json", R"({"amount":1.5})"), "invalid_cost_field");
  EXPECT_EQ(code("application/json", R"({"amount":-1})"), "invalid_cost_field");
  EXPECT_EQ(code("application/json", R"({"amount":true})"), "invalid_cost_field");
  EXPECT_EQ(code("application/json", "not json"), "cost_field_missing");
  EXPECT_EQ(code("application/json", R"({"other":1})"), "cost_field_missing");
  // Percent-encoded names and values are decoded like any form.
  EXPECT_EQ(code(form, "%61mount=%31%32"), "ok");
}

}  // namespace
}  // namespace stub::proxy
