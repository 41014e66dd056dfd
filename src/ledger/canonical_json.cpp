#include "ledger/canonical_json.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <vector>

namespace stub::ledger {

namespace {

constexpr int64_t max_exact_integer = int64_t{1} << 53;

// Decodes valid UTF-8 (Boost.JSON validates on parse) into UTF-16 code units, the order that
// RFC 8785 section 3.2.3 sorts object members by.
std::u16string to_utf16(std::string_view text) {
  std::u16string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    char32_t code_point = 0;
    size_t length = 1;
    if (lead < 0x80) {
      code_point = lead;
    } else if ((lead >> 5) == 0x6) {
      code_point = lead & 0x1F;
      length = 2;
    } else if ((lead >> 4) == 0xE) {
      code_point = lead & 0x0F;
      length = 3;
    } else {
      code_point = lead & 0x07;
      length = 4;
    }
    for (size_t k = 1; k < length && i + k < text.size(); ++k) {
      code_point = (code_point << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    }
    if (code_point >= 0x10000) {
      code_point -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (code_point >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (code_point & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(code_point));
    }
    i += length;
  }
  return out;
}

bool is_ascii(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool utf16_less(std::string_view a, std::string_view b) {
  // For ASCII (every key Stub itself writes), byte order is UTF-16 order.
  if (is_ascii(a) && is_ascii(b))
    return a < b;
  return to_utf16(a) < to_utf16(b);
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  // Copy runs that need no escape in one append; most text (paths, ids, hashes) is one run.
  size_t run_start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte >= 0x20 && byte != '"' && byte != '\\')
      continue;
    out.append(text, run_start, i - run_start);
    run_start = i + 1;
    switch (byte) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += hex[byte >> 4];
        out += hex[byte & 0xF];
    }
  }
  out.append(text, run_start, text.size() - run_start);
  out += '"';
}

void append_ecmascript_number(std::string& out, double value) {
  assert(std::isfinite(value));
  if (value == 0) {
    out += '0';  // Both +0 and -0 serialize as "0".
    return;
  }
  if (value < 0) {
    out += '-';
    value = -value;
  }
  // Shortest round-trip digits in scientific form: "d.ddde+XX".
  char buffer[64];
  const auto [end, error] =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  assert(error == std::errc{});
  const std::string_view scientific(buffer, static_cast<size_t>(end - buffer));
  const size_t e_position = scientific.find('e');
  assert(e_position != std::string_view::npos);
  std::string digits;
  for (char c : scientific.substr(0, e_position)) {
    if (c != '.')
      digits += c;
  }
  const int exponent = std::atoi(std::string(scientific.substr(e_position + 1)).c_str());
  // ECMAScript's n: the value is 0.digits x 10^n.
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<size_t>(n));
    out += '.';
    out.append(digits, static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-n), '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out.append(digits, 1);
    }
    out += 'e';
    out += (n - 1 >= 0) ? '+' : '-';
    out += std::to_string(std::abs(n - 1));
  }
}

void append_canonical_json(std::string& out, const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::null:
      out += "null";
      return;
    case boost::json::kind::bool_:
      out += value.get_bool() ? "true" : "false";
      return;
    // JCS numbers are IEEE doubles: integers beyond 2^53 take the double's ECMAScript form.
    case boost::json::kind::int64:
      if (value.get_int64() > max_exact_integer || value.get_int64() < -max_exact_integer) {
        append_ecmascript_number(out, static_cast<double>(value.get_int64()));
      } else {
        out += std::to_string(value.get_int64());
      }
      return;
    case boost::json::kind::uint64:
      if (value.get_uint64() > static_cast<uint64_t>(max_exact_integer)) {
        append_ecmascript_number(out, static_cast<double>(value.get_uint64()));
      } else {
        out += std::to_string(value.get_uint64());
      }
      return;
    case boost::json::kind::double_:
      append_ecmascript_number(out, value.get_double());
      return;
    case boost::json::kind::string:
      append_json_string(out, value.get_string());
      return;
    case boost::json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& element : value.get_array()) {
        if (!first)
          out += ',';
        first = false;
        append_canonical_json(out, element);
      }
      out += ']';
      return;
    }
    case boost::json::kind::object: {
      const auto& object = value.get_object();
      std::vector<const boost::json::key_value_pair*> members;
      members.reserve(object.size());
      for (const auto& member : object)
        members.push_back(&member);
      std::sort(members.begin(), members.end(),
                [](const auto* a, const auto* b) { return utf16_less(a->key(), b->key()); });
      out += '{';
      bool first = true;
      for (const auto* member : members) {
        if (!first)
          out += ',';
        first = false;
        append_json_string(out, member->key());
        out += ':';
        append_canonical_json(out, member->value());
      }
      out += '}';
      return;
    }
  }
}

std::string canonical_json(const boost::json::value& value) {
  std::string out;
  append_canonical_json(out, value);
  return out;
}

}  // namespace stub::ledger
