#pragma once

// Shared by `stub serve` and `stub demo`.

#include <string>

#include "http/server.hpp"
#include "ledger/result.hpp"

namespace stub::cli {

Result<http::ServerOptions> parse_listen_address(const std::string& address);
// Blocks until SIGINT or SIGTERM.
void wait_for_shutdown_signal();

}  // namespace stub::cli
