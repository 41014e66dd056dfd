#include "http/error_mapping.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace stub::http {

int http_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_input:
      return 400;
    case ErrorCode::unauthorized:
      return 401;
    case ErrorCode::forbidden:
      return 403;
    case ErrorCode::not_found:
      return 404;
    case ErrorCode::conflict:
      return 409;
    case ErrorCode::too_large:
      return 413;
    case ErrorCode::overloaded:
    case ErrorCode::unavailable:
      return 503;
    case ErrorCode::internal:
      return 500;
  }
  return 500;
}

std::string error_type(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_input:
      return "invalid_request";
    case ErrorCode::unauthorized:
      return "authentication";
    case ErrorCode::forbidden:
      return "forbidden";
    case ErrorCode::not_found:
      return "not_found";
    case ErrorCode::conflict:
      return "conflict";
    case ErrorCode::too_large:
      return "too_large";
    case ErrorCode::overloaded:
      return "overloaded";
    case ErrorCode::unavailable:
      return "unavailable";
    case ErrorCode::internal:
      return "internal";
  }
  return "internal";
}

std::string error_body(const Error& error) {
  boost::json::object detail{
      {"type", error_type(error.code)}, {"code", error.subcode}, {"message", error.message}};
  return boost::json::serialize(boost::json::object{{"error", std::move(detail)}});
}

}  // namespace stub::http
