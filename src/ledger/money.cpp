#include "ledger/money.hpp"

#include <cassert>

namespace stub::ledger {

std::optional<Money> Money::parse(std::string_view text) {
  bool negative = false;
  if (!text.empty() && text.front() == '-') {
    negative = true;
    text.remove_prefix(1);
  }
  if (text.empty())
    return std::nullopt;

  int64_t units = 0;
  int64_t fraction = 0;
  int fraction_digits = 0;
  int integer_digits = 0;
  bool seen_point = false;
  for (char c : text) {
    if (c == '.') {
      if (seen_point)
        return std::nullopt;
      seen_point = true;
      continue;
    }
    if (c < '0' || c > '9')
      return std::nullopt;
    const int digit = c - '0';
    if (seen_point) {
      if (++fraction_digits > fraction_digits_max)
        return std::nullopt;
      fraction = fraction * 10 + digit;
    } else {
      ++integer_digits;
      units = units * 10 + digit;
      if (units > units_max)
        return std::nullopt;
    }
  }
  // "1." and ".5" are not money: both sides of a point need digits.
  if (integer_digits == 0)
    return std::nullopt;
  if (seen_point && fraction_digits == 0)
    return std::nullopt;
  for (int i = fraction_digits; i < fraction_digits_max; ++i)
    fraction *= 10;

  const int64_t micros = units * micros_per_unit + fraction;
  if (micros > micros_max)
    return std::nullopt;
  assert(micros >= 0);
  return Money(negative ? -micros : micros);
}

std::string Money::to_string() const {
  // Work on the unsigned magnitude so that INT64_MIN cannot overflow on negation.
  const bool negative = micros_ < 0;
  const uint64_t magnitude =
      negative ? static_cast<uint64_t>(-(micros_ + 1)) + 1 : static_cast<uint64_t>(micros_);
  const uint64_t units = magnitude / micros_per_unit;
  uint64_t fraction = magnitude % micros_per_unit;

  std::string digits = std::to_string(fraction);
  digits.insert(0, fraction_digits_max - digits.size(), '0');
  while (digits.size() > 2 && digits.back() == '0')
    digits.pop_back();
  std::string out = negative ? "-" : "";
  out += std::to_string(units);
  out += '.';
  out += digits;
  return out;
}

std::optional<Money> Money::checked_add(Money other) const {
  int64_t sum = 0;
  if (__builtin_add_overflow(micros_, other.micros_, &sum))
    return std::nullopt;
  return Money(sum);
}

std::optional<Money> Money::checked_sub(Money other) const {
  int64_t difference = 0;
  if (__builtin_sub_overflow(micros_, other.micros_, &difference))
    return std::nullopt;
  return Money(difference);
}

}  // namespace stub::ledger
