#pragma once

// The SPEC accepts a JSON number for money only if its literal parses exactly, never through a
// float. Boost.JSON's value keeps a double, not the literal, so this runs Boost.JSON's own
// basic_parser once more over the body and keeps the literal text of each top-level member
// whose value is a number.

#include <map>
#include <string>
#include <string_view>

namespace stub::http {

std::map<std::string, std::string> top_level_number_literals(std::string_view body);

}  // namespace stub::http
