// Money::parse over arbitrary text. Properties: whatever parses is within +-micros_max;
// format then parse gives the same amount back; the formatted text is canonical (parsing it
// and formatting again is a fixed point); checked_add/checked_sub of two accepted amounts never
// overflow and undo each other.

#include <string>

#include "fuzz/fuzz_check.hpp"
#include "ledger/money.hpp"

using stub::ledger::Money;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = stub::fuzz::as_text(data, size);
  // The whole input as one amount, and split at the first ',' into two.
  const auto whole = Money::parse(text);
  if (whole) {
    FUZZ_CHECK(whole->micros() <= Money::micros_max && whole->micros() >= -Money::micros_max);
    const std::string formatted = whole->to_string();
    const auto again = Money::parse(formatted);
    FUZZ_CHECK(again && *again == *whole);
    FUZZ_CHECK(again->to_string() == formatted);
    // Accepted text is digits, at most one point, an optional leading '-'.
    FUZZ_CHECK(text.find_first_not_of("-0123456789.") == std::string_view::npos);
  }
  const size_t comma = text.find(',');
  if (comma == std::string_view::npos)
    return 0;
  const auto a = Money::parse(text.substr(0, comma));
  const auto b = Money::parse(text.substr(comma + 1));
  if (a && b) {
    const auto sum = a->checked_add(*b);
    const auto difference = a->checked_sub(*b);
    FUZZ_CHECK(sum && difference);
    FUZZ_CHECK(sum->checked_sub(*b) == a);
    FUZZ_CHECK(difference->checked_add(*b) == a);
    FUZZ_CHECK((*a < *b) == (a->micros() < b->micros()));
    FUZZ_CHECK(a->negated().negated() == *a);
  }
  return 0;
}
