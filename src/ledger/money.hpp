#pragma once

// Money is an exact integer count of micro-units (1e-6 of the currency, equal to USDC atomic
// units). It never passes through a float: text is parsed digit by digit, and every arithmetic
// operation that can overflow is checked.

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stub::ledger {

class Money {
 public:
  static constexpr int64_t micros_per_unit = 1'000'000;
  static constexpr int fraction_digits_max = 6;
  // The largest magnitude accepted from the outside: a trillion units (1e18 micros, about a
  // ninth of INT64_MAX). The decision function also caps every node's spent + reserved at this
  // value, so adding one more accepted amount can never overflow.
  static constexpr int64_t units_max = 1'000'000'000'000;
  static constexpr int64_t micros_max = units_max * micros_per_unit;

  constexpr Money() = default;
  static constexpr Money from_micros(int64_t micros) { return Money(micros); }
  static constexpr Money zero() { return Money(0); }

  // Parses "12", "0.04", "-3.5", "1.000001". Rejects empty text, signs other than a leading '-',
  // exponents, more than six fraction digits, and magnitudes above units_max.
  static std::optional<Money> parse(std::string_view text);

  constexpr int64_t micros() const { return micros_; }
  constexpr bool is_positive() const { return micros_ > 0; }
  constexpr bool is_negative() const { return micros_ < 0; }
  constexpr bool is_zero() const { return micros_ == 0; }

  // Decimal text with at least two fraction digits and no trailing zeros beyond them:
  // 1 unit -> "1.00", 40000 micros -> "0.04", 123 micros -> "0.000123".
  std::string to_string() const;

  std::optional<Money> checked_add(Money other) const;
  std::optional<Money> checked_sub(Money other) const;
  constexpr Money negated() const { return Money(-micros_); }

  friend constexpr auto operator<=>(Money, Money) = default;

 private:
  constexpr explicit Money(int64_t micros) : micros_(micros) {}
  int64_t micros_ = 0;
};

}  // namespace stub::ledger
