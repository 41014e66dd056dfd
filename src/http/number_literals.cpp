#include "http/number_literals.hpp"

#include <boost/json/basic_parser_impl.hpp>
#include <cassert>
#include <charconv>
#include <cmath>
#include <set>

namespace stub::http {

namespace {

using boost::json::error_code;
using boost::json::string_view;

class LiteralHandler {
 public:
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);

  NumberLiterals literals;

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) { return open(false); }
  bool on_array_end(std::size_t, error_code&) { return close(); }
  bool on_object_begin(error_code&) { return open(true); }
  bool on_object_end(std::size_t, error_code&) { return close(); }
  bool on_string_part(string_view, std::size_t, error_code&) { return true; }
  bool on_string(string_view, std::size_t, error_code&) { return true; }
  bool on_key_part(string_view part, std::size_t, error_code&) {
    key_.append(part.data(), part.size());
    return true;
  }
  bool on_key(string_view part, std::size_t, error_code&) {
    key_.append(part.data(), part.size());
    if (depth_ == 1)
      top_key_ = key_;
    if (in_receipt() && !names_.empty() && !names_.back().insert(key_).second)
      literals.receipt_duplicate_name = true;
    key_.clear();
    return true;
  }
  bool on_number_part(string_view part, error_code&) {
    number_.append(part.data(), part.size());
    return true;
  }
  bool on_int64(std::int64_t, string_view part, error_code&) { return number(part); }
  bool on_uint64(std::uint64_t, string_view part, error_code&) { return number(part); }
  bool on_double(double, string_view part, error_code&) { return number(part); }
  bool on_bool(bool, error_code&) { return true; }
  bool on_null(error_code&) { return true; }
  bool on_comment_part(string_view, error_code&) { return true; }
  bool on_comment(string_view, error_code&) { return true; }

 private:
  bool in_receipt() const { return depth_ >= 1 && top_key_ == "receipt"; }
  bool open(bool object) {
    ++depth_;
    // Every container inside the receipt gets a set of member names, to find duplicates
    // (an array's stays empty: keys only ever land in the innermost container, an object).
    (void)object;
    if (depth_ >= 2 && in_receipt())
      names_.emplace_back();
    return true;
  }
  bool close() {
    if (depth_ >= 2 && in_receipt()) {
      assert(!names_.empty());
      names_.pop_back();
    }
    --depth_;
    return true;
  }
  bool number(string_view last) {
    number_.append(last.data(), last.size());
    if (depth_ == 1)
      literals.top_level[top_key_] = number_;
    if (in_receipt())
      literals.receipt.push_back(number_);
    number_.clear();
    return true;
  }

  int depth_ = 0;
  std::string key_;
  std::string top_key_;
  std::string number_;
  std::vector<std::set<std::string>> names_;
};

// A decimal number as significant digits (no leading or trailing zeros) and a power of ten;
// zero is {"", 0} whatever its sign or exponent.
struct Decimal {
  bool negative = false;
  std::string digits;
  int64_t exponent = 0;
  friend bool operator==(const Decimal&, const Decimal&) = default;
};

bool parse_decimal(std::string_view text, Decimal& out) {
  constexpr int64_t exponent_digits_max = 6;
  size_t i = 0;
  out = Decimal{};
  if (i < text.size() && (text[i] == '-' || text[i] == '+'))
    out.negative = text[i++] == '-';
  int64_t fraction_digits = 0;
  bool seen_point = false;
  for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
    if (text[i] == '.') {
      if (seen_point)
        return false;
      seen_point = true;
      continue;
    }
    if (text[i] < '0' || text[i] > '9')
      return false;
    out.digits += text[i];
    if (seen_point)
      ++fraction_digits;
  }
  int64_t exponent = 0;
  if (i < text.size()) {
    ++i;  // 'e' or 'E'
    bool negative_exponent = false;
    if (i < text.size() && (text[i] == '-' || text[i] == '+'))
      negative_exponent = text[i++] == '-';
    if (i == text.size() || text.size() - i > exponent_digits_max)
      return false;
    for (; i < text.size(); ++i) {
      if (text[i] < '0' || text[i] > '9')
        return false;
      exponent = exponent * 10 + (text[i] - '0');
    }
    if (negative_exponent)
      exponent = -exponent;
  }
  const size_t first = out.digits.find_first_not_of('0');
  if (first == std::string::npos) {
    out = Decimal{};
    return true;
  }
  out.digits.erase(0, first);
  const size_t last = out.digits.find_last_not_of('0');
  const int64_t trailing = static_cast<int64_t>(out.digits.size() - 1 - last);
  out.digits.erase(last + 1);
  out.exponent = exponent - fraction_digits + trailing;
  return true;
}

}  // namespace

NumberLiterals number_literals(std::string_view body) {
  boost::json::basic_parser<LiteralHandler> parser(boost::json::parse_options{});
  error_code error;
  parser.write_some(false, body.data(), body.size(), error);
  if (error)
    return {};
  return std::move(parser.handler().literals);
}

bool round_trips_through_double(std::string_view literal, double& value) {
  Decimal given;
  if (!parse_decimal(literal, given))
    return false;
  // from_chars takes no leading '+', and JSON has none.
  const auto [end, error] = std::from_chars(literal.data(), literal.data() + literal.size(), value);
  if (error != std::errc{} || end != literal.data() + literal.size() || !std::isfinite(value))
    return false;
  char shortest[64];
  const auto written = std::to_chars(shortest, shortest + sizeof shortest, value);
  assert(written.ec == std::errc{});
  Decimal back;
  if (!parse_decimal(std::string_view(shortest, static_cast<size_t>(written.ptr - shortest)), back))
    return false;
  if (given.digits.empty() && back.digits.empty())
    return true;  // zero, whatever its sign
  return given == back;
}

}  // namespace stub::http
