#pragma once

// The JSON Canonicalization Scheme of RFC 8785 (JCS): object members sorted by their UTF-16
// code units, no insignificant whitespace, minimal string escapes, and numbers in the
// ECMAScript Number.prototype.toString form. The hash chain hashes entries in this form, so
// anyone can re-verify the books with any JCS library.

#include <boost/json/value.hpp>
#include <string>
#include <string_view>

namespace stub::ledger {

void append_canonical_json(std::string& out, const boost::json::value& value);
std::string canonical_json(const boost::json::value& value);

// Appends a JSON string literal with JCS escaping. `text` must be valid UTF-8.
void append_json_string(std::string& out, std::string_view text);

// Appends a double in ECMAScript form ("1e+21", "0.000001", "1.5"). Finite values only.
void append_ecmascript_number(std::string& out, double value);

}  // namespace stub::ledger
