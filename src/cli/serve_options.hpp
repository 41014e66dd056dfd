#pragma once

// Shared by `stub serve` and `stub demo`.

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <string>

#include "http/server.hpp"
#include "ledger/result.hpp"

namespace stub::cli {

Result<http::ServerOptions> parse_listen_address(const std::string& address);
// SIGINT and SIGTERM, caught from construction on: made before the server says it is serving,
// so that a signal sent right after that line shuts it down cleanly instead of killing it.
class ShutdownSignal {
 public:
  ShutdownSignal();
  // Blocks until SIGINT or SIGTERM (at once if one came since construction).
  void wait();

 private:
  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
};

}  // namespace stub::cli
