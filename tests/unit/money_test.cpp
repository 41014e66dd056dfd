// Money: exact decimal text in, exact decimal text out, never through a float.

#include "ledger/money.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace stub::ledger {
namespace {

std::optional<int64_t> parse_micros(std::string_view text) {
  const std::optional<Money> money = Money::parse(text);
  if (!money)
    return std::nullopt;
  return money->micros();
}

TEST(MoneyParse, AcceptsExactDecimals) {
  EXPECT_EQ(parse_micros("12"), 12'000'000);
  EXPECT_EQ(parse_micros("0.04"), 40'000);
  EXPECT_EQ(parse_micros("-3.5"), -3'500'000);
  EXPECT_EQ(parse_micros("1.000001"), 1'000'001);
  EXPECT_EQ(parse_micros("0.000001"), 1);
  EXPECT_EQ(parse_micros("0"), 0);
  EXPECT_EQ(parse_micros("0.0"), 0);
  EXPECT_EQ(parse_micros("-0"), 0);
  EXPECT_EQ(parse_micros("123456.789012"), 123'456'789'012);
  EXPECT_EQ(parse_micros("5.100000"), 5'100'000);
}

TEST(MoneyParse, DoesNotGoThroughAFloat) {
  // 0.1 + 0.2 style inaccuracies and 2^53 rounding would show up here if a double were involved.
  EXPECT_EQ(parse_micros("0.3"), 300'000);
  EXPECT_EQ(parse_micros("9007199254.740993"), 9'007'199'254'740'993);
  EXPECT_EQ(parse_micros("999999999999.999999"), 999'999'999'999'999'999);
}

TEST(MoneyParse, AcceptsUpToUnitsMax) {
  EXPECT_EQ(parse_micros("1000000000000"), Money::micros_max);
  EXPECT_EQ(parse_micros("-1000000000000"), -Money::micros_max);
  EXPECT_EQ(parse_micros("1000000000000.000000"), Money::micros_max);
}

TEST(MoneyParse, RejectsMalformedText) {
  const std::vector<std::string> rejected = {
      "",
      "-",
      "1e3",
      "1E3",
      "1.",
      ".5",
      "-.5",
      "+1",
      "--1",
      "1.0000001",  // seven fraction digits
      "0.0000001",  // seven fraction digits, even though the value is tiny
      "1.2.3",
      " 1",
      "1 ",
      "1,5",
      "abc",
      "0x10",
      "1-",
      "NaN",
      "Infinity",
      "1000000000001",                     // units_max + 1
      "1000000000000.000001",              // one micro above micros_max
      "-1000000000000.000001",             // one micro below -micros_max
      "99999999999999999999999999999999",  // would overflow int64 if not checked digit by digit
  };
  for (const std::string& text : rejected)
    EXPECT_FALSE(Money::parse(text).has_value()) << "accepted \"" << text << "\"";
}

TEST(MoneyFormat, UsesTwoToSixFractionDigits) {
  EXPECT_EQ(Money::from_micros(1'000'000).to_string(), "1.00");
  EXPECT_EQ(Money::from_micros(40'000).to_string(), "0.04");
  EXPECT_EQ(Money::from_micros(123).to_string(), "0.000123");
  EXPECT_EQ(Money::from_micros(0).to_string(), "0.00");
  EXPECT_EQ(Money::from_micros(1).to_string(), "0.000001");
  EXPECT_EQ(Money::from_micros(1'500'000).to_string(), "1.50");
  EXPECT_EQ(Money::from_micros(1'234'567).to_string(), "1.234567");
  EXPECT_EQ(Money::from_micros(1'234'500).to_string(), "1.2345");
  EXPECT_EQ(Money::from_micros(-1'500'000).to_string(), "-1.50");
  EXPECT_EQ(Money::from_micros(-1).to_string(), "-0.000001");
  EXPECT_EQ(Money::from_micros(Money::micros_max).to_string(), "1000000000000.00");
}

TEST(MoneyFormat, HandlesTheInt64Extremes) {
  EXPECT_EQ(Money::from_micros(std::numeric_limits<int64_t>::max()).to_string(),
            "9223372036854.775807");
  EXPECT_EQ(Money::from_micros(std::numeric_limits<int64_t>::min()).to_string(),
            "-9223372036854.775808");
}

TEST(MoneyRoundTrip, FormatThenParseIsTheIdentity) {
  std::vector<int64_t> samples = {0,
                                  1,
                                  -1,
                                  9,
                                  10,
                                  99,
                                  100,
                                  999'999,
                                  1'000'000,
                                  1'000'001,
                                  40'000,
                                  123'456'789,
                                  Money::micros_max,
                                  -Money::micros_max,
                                  Money::micros_max - 1};
  // A deterministic spread over every magnitude (a linear congruential sequence).
  uint64_t state = 0x9e3779b97f4a7c15ULL;
  for (int i = 0; i < 2'000; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    const int64_t magnitude =
        static_cast<int64_t>(state >> 4) % (Money::micros_max >> (i % 60)) + 1;
    samples.push_back(i % 2 == 0 ? magnitude : -magnitude);
  }
  for (int64_t micros : samples) {
    const Money money = Money::from_micros(micros);
    const std::string text = money.to_string();
    const std::optional<Money> parsed = Money::parse(text);
    ASSERT_TRUE(parsed.has_value()) << text;
    EXPECT_EQ(*parsed, money) << text;
  }
}

TEST(MoneyRoundTrip, ParseThenFormatNormalises) {
  EXPECT_EQ(Money::parse("0.040000")->to_string(), "0.04");
  EXPECT_EQ(Money::parse("7")->to_string(), "7.00");
  EXPECT_EQ(Money::parse("-0")->to_string(), "0.00");
  EXPECT_EQ(Money::parse("0.100")->to_string(), "0.10");
}

TEST(MoneyArithmetic, CheckedOperationsDetectOverflow) {
  const Money max = Money::from_micros(std::numeric_limits<int64_t>::max());
  const Money min = Money::from_micros(std::numeric_limits<int64_t>::min());
  EXPECT_FALSE(max.checked_add(Money::from_micros(1)).has_value());
  EXPECT_FALSE(min.checked_sub(Money::from_micros(1)).has_value());
  EXPECT_EQ(max.checked_sub(Money::from_micros(1))->micros(),
            std::numeric_limits<int64_t>::max() - 1);
  EXPECT_EQ(Money::from_micros(40'000).checked_add(Money::from_micros(2))->micros(), 40'002);
  EXPECT_EQ(Money::from_micros(5).checked_sub(Money::from_micros(7))->micros(), -2);
}

TEST(MoneyArithmetic, SignsAndOrdering) {
  EXPECT_TRUE(Money::from_micros(1).is_positive());
  EXPECT_TRUE(Money::from_micros(-1).is_negative());
  EXPECT_TRUE(Money::zero().is_zero());
  EXPECT_EQ(Money::from_micros(5).negated(), Money::from_micros(-5));
  EXPECT_LT(Money::from_micros(-1), Money::zero());
  EXPECT_LT(*Money::parse("0.999999"), *Money::parse("1"));
}

}  // namespace
}  // namespace stub::ledger
