// RFC 8785 canonical JSON over any JSON document Boost.JSON accepts (with finite numbers, as
// the request edge requires). Properties: the output parses back; canonicalizing that again
// gives the same bytes (idempotent); it has no insignificant whitespace outside strings; and
// the reparsed document has the same shape (kinds, sizes, keys, strings, and numbers equal as
// doubles) as the input. Read back with correctly rounded doubles (exact_json.hpp).

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <string>

#include "fuzz/exact_json.hpp"
#include "fuzz/fuzz_check.hpp"
#include "ledger/canonical_json.hpp"

namespace {

bool finite_numbers(const boost::json::value& value) {
  if (value.is_double())
    return std::isfinite(value.get_double());
  if (value.is_array()) {
    for (const auto& item : value.get_array()) {
      if (!finite_numbers(item))
        return false;
    }
  }
  if (value.is_object()) {
    for (const auto& member : value.get_object()) {
      if (!finite_numbers(member.value()))
        return false;
    }
  }
  return true;
}

// Same kinds (any number kind matches any other), strings, sizes and keys.
bool same_shape(const boost::json::value& a, const boost::json::value& b) {
  if (a.is_number() && b.is_number()) {
    // JCS numbers are doubles: compare as doubles.
    return a.to_number<double>() == b.to_number<double>();
  }
  if (a.kind() != b.kind())
    return false;
  switch (a.kind()) {
    case boost::json::kind::string:
      return a.get_string() == b.get_string();
    case boost::json::kind::bool_:
      return a.get_bool() == b.get_bool();
    case boost::json::kind::array: {
      const auto& x = a.get_array();
      const auto& y = b.get_array();
      if (x.size() != y.size())
        return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!same_shape(x[i], y[i]))
          return false;
      }
      return true;
    }
    case boost::json::kind::object: {
      const auto& x = a.get_object();
      const auto& y = b.get_object();
      if (x.size() != y.size())
        return false;
      for (const auto& member : x) {
        const auto* other = y.if_contains(member.key());
        if (other == nullptr || !same_shape(member.value(), *other))
          return false;
      }
      return true;
    }
    default:
      return true;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  boost::system::error_code error;
  const boost::json::value value = boost::json::parse(stub::fuzz::as_text(data, size), error);
  if (error || !finite_numbers(value))
    return 0;
  const std::string canonical = stub::ledger::canonical_json(value);
  // Canonical output has no repeated names (Boost.JSON keeps one of each) and is read back
  // with correctly rounded doubles: a JCS verifier in any language reads it so.
  const auto exact = stub::fuzz::parse_exact(canonical);
  FUZZ_CHECK(exact.has_value());
  const boost::json::value& reparsed = *exact;
  FUZZ_CHECK(stub::ledger::canonical_json(reparsed) == canonical);
  FUZZ_CHECK(same_shape(value, reparsed));
  // No whitespace outside strings, and only JCS escapes inside them.
  bool in_string = false;
  for (size_t i = 0; i < canonical.size(); ++i) {
    const char c = canonical[i];
    if (in_string) {
      FUZZ_CHECK(static_cast<unsigned char>(c) >= 0x20);
      if (c == '\\') {
        ++i;
        FUZZ_CHECK(i < canonical.size() &&
                   std::string_view("\"\\bfnrtu").find(canonical[i]) != std::string_view::npos);
      } else if (c == '"') {
        in_string = false;
      }
    } else {
      FUZZ_CHECK(c != ' ' && c != '\n' && c != '\r' && c != '\t');
      in_string = c == '"';
    }
  }
  return 0;
}
