#pragma once

// Parses JSON the way a correct reader does. Boost.JSON 1.81 does not round every double
// correctly (number_literals.hpp), so re-reading canonical output through it alone can move a
// number by an ulp and make a correct canonicalizer look unstable. This parses with Boost.JSON
// and then sets every double from its literal with std::from_chars (correctly rounded), the
// literals collected by the server's own literal pass (http::number_literals) in document
// order.

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/number_literals.hpp"

namespace stub::fuzz {

inline bool set_exact_doubles(boost::json::value& value, const std::vector<std::string>& literals,
                              size_t& next) {
  switch (value.kind()) {
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_: {
      if (next >= literals.size())
        return false;
      const std::string& literal = literals[next++];
      if (value.is_double()) {
        double exact = 0;
        const auto [end, error] =
            std::from_chars(literal.data(), literal.data() + literal.size(), exact);
        if (error != std::errc{} || end != literal.data() + literal.size())
          return false;
        value = exact;
      }
      return true;
    }
    case boost::json::kind::array:
      for (auto& item : value.get_array()) {
        if (!set_exact_doubles(item, literals, next))
          return false;
      }
      return true;
    case boost::json::kind::object:
      for (auto& member : value.get_object()) {
        if (!set_exact_doubles(member.value(), literals, next))
          return false;
      }
      return true;
    default:
      return true;
  }
}

// nullopt when `text` is not JSON (or holds a repeated name, whose literals would not line up).
inline std::optional<boost::json::value> parse_exact(std::string_view text) {
  boost::system::error_code error;
  boost::json::value value = boost::json::parse(text, error);
  if (error)
    return std::nullopt;
  const std::string wrapped = "{\"receipt\":" + std::string(text) + "}";
  const http::NumberLiterals literals = http::number_literals(wrapped);
  if (literals.receipt_duplicate_name)
    return std::nullopt;
  size_t next = 0;
  if (!set_exact_doubles(value, literals.receipt, next) || next != literals.receipt.size())
    return std::nullopt;
  return value;
}

}  // namespace stub::fuzz
