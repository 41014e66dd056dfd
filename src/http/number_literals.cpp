#include "http/number_literals.hpp"

#include <boost/json/basic_parser_impl.hpp>

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

  std::map<std::string, std::string> literals;

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) { return open(); }
  bool on_array_end(std::size_t, error_code&) { return close(); }
  bool on_object_begin(error_code&) { return open(); }
  bool on_object_end(std::size_t, error_code&) { return close(); }
  bool on_string_part(string_view, std::size_t, error_code&) { return true; }
  bool on_string(string_view, std::size_t, error_code&) { return true; }
  bool on_key_part(string_view part, std::size_t, error_code&) {
    key_.append(part.data(), part.size());
    return true;
  }
  bool on_key(string_view part, std::size_t, error_code&) {
    key_.append(part.data(), part.size());
    current_key_ = std::move(key_);
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
  bool open() {
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  bool number(string_view last) {
    number_.append(last.data(), last.size());
    if (depth_ == 1)
      literals[current_key_] = number_;
    number_.clear();
    return true;
  }

  int depth_ = 0;
  std::string key_;
  std::string current_key_;
  std::string number_;
};

}  // namespace

std::map<std::string, std::string> top_level_number_literals(std::string_view body) {
  boost::json::basic_parser<LiteralHandler> parser(boost::json::parse_options{});
  error_code error;
  parser.write_some(false, body.data(), body.size(), error);
  if (error)
    return {};
  return std::move(parser.handler().literals);
}

}  // namespace stub::http
