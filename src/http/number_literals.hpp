#pragma once

// The SPEC accepts a JSON number for money only if its literal parses exactly, never through a
// float, and a receipt only if every number in it round-trips exactly through a double (I-JSON,
// RFC 7493). Boost.JSON's value keeps a double, not the literal, so this runs Boost.JSON's own
// basic_parser once more over the body and keeps the literal text of each top-level member
// whose value is a number, and of every number inside the top-level "receipt" member.

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace stub::http {

struct NumberLiterals {
  std::map<std::string, std::string> top_level;  // member name -> literal
  std::vector<std::string> receipt;              // the receipt's numbers, in document order
  // True when some object inside the receipt repeats a member name (I-JSON forbids it, and
  // Boost.JSON would keep only one of them).
  bool receipt_duplicate_name = false;
};

NumberLiterals number_literals(std::string_view body);

// True when the decimal `literal` (JSON number syntax) denotes exactly the value of the double
// nearest to it, as that double's shortest form says: "0.1", "1.5e3" and 2^53 do;
// "12345678901234567890" (read as 12345678901234567168) and 17+ significant digits do not.
// Sets `value` to that double (correctly rounded, unlike Boost.JSON 1.81's own reading).
bool round_trips_through_double(std::string_view literal, double& value);

}  // namespace stub::http
