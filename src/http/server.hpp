#pragma once

// The Beast HTTP/1.1 server: C++20 coroutines on a small thread pool, a strand per connection,
// a deadline before every read and write, explicit header and body limits, bounded keep-alive,
// Server-Sent Events for /v1/events, and a graceful shutdown that lets in-flight requests
// finish (with a deadline) instead of stopping the io_context under them.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "http/api.hpp"
#include "http/forwarder.hpp"
#include "http/proxy.hpp"

namespace stub::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 8402;  // 0 picks a free port
  size_t io_threads = 2;
  size_t body_bytes_max = 64 * 1024;
  size_t header_bytes_max = 8 * 1024;
  std::chrono::seconds read_timeout{30};  // also the keep-alive idle limit
  std::chrono::seconds write_timeout{30};
  size_t requests_per_connection_max = 100'000;
  size_t connections_max = 4'096;
  std::chrono::seconds event_heartbeat{15};
  size_t event_backlog_max = 1'024;  // batches queued for one slow SSE client before it is cut
  // The metering proxy under /proxy/ (docs/proxy.md); its requests may be larger.
  bool proxy_enabled = true;
  ProxyOptions proxy;
  // Writes forwarded to a root's leader (when the API has a RootLeadership).
  ForwarderOptions forwarding;
};

class Server {
 public:
  Server(Api& api, ServerOptions options);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  ~Server();

  // Binds and starts the io threads. Returns the bound port, or an Error if it cannot listen.
  Result<uint16_t> start();
  // Stops accepting, waits up to `deadline` for open requests to finish, then stops.
  void stop(std::chrono::milliseconds deadline = std::chrono::milliseconds(5'000));

 private:
  class Session;

  Api& api_;
  ServerOptions options_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> connections_{0};
  std::atomic<size_t> requests_in_flight_{0};
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<Forwarder> forwarder_;
};

}  // namespace stub::http
