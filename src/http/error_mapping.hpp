#pragma once

// The ONE place that maps domain error codes to HTTP statuses and error bodies:
// {"error":{"type","code","message"}}.

#include <string>

#include "ledger/result.hpp"

namespace stub::http {

int http_status(ErrorCode code);
std::string error_type(ErrorCode code);
std::string error_body(const Error& error);

}  // namespace stub::http
