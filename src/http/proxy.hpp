#pragma once

// The metering proxy (docs/proxy.md): /proxy/openai/... served on the client's connection,
// inside `stub serve`'s io_context (coroutines, no thread per call). Each call is held at its
// worst case through the API (POST /v1/holds with the caller's own agent key), forwarded to the
// vendor with its real credential over a pooled upstream connection, and settled from the
// answer's usage: capture the real cost, void when the call provably never reached the vendor,
// capture the worst case when it may have been billed and the outcome is unknown.

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/api.hpp"
#include "proxy/prices.hpp"

namespace stub::http {

struct Settlement;

struct ProxyOptions {
  std::string upstream_ca_file;               // empty: the system's CAs (verification is always on)
  const proxy::PriceTable* prices = nullptr;  // null: the embedded prices/llm.json
  size_t request_bytes_max = 8 * 1024 * 1024;
  size_t response_bytes_max = 32 * 1024 * 1024;  // a non-streamed answer
  size_t event_bytes_max = 1024 * 1024;          // one SSE event of a stream
  size_t idle_connections_max = 64;              // per upstream
  std::chrono::seconds idle_connection_ttl{20};
};

class Proxy {
 public:
  using Deadline = std::function<void(std::chrono::steady_clock::duration)>;

  // Upstream sockets live on `upstream_executor` (the io_context, not a strand: a pooled
  // connection moves between calls). Throws when the CA file cannot be read.
  Proxy(Api& api, ProxyOptions options, boost::asio::any_io_executor upstream_executor);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  static bool owns(std::string_view target) { return target.starts_with("/proxy/"); }
  // Serves one request; `client_deadline(d)` bounds the next client write (d zero: none).
  // Answers whether the client connection may carry another request.
  boost::asio::awaitable<bool> serve(
      boost::asio::ip::tcp::socket& client,
      boost::beast::http::request<boost::beast::http::string_body>& request,
      Deadline client_deadline);

  // Settlements running in coroutines of their own (stub serve waits for them when it stops).
  void settle_later(Settlement settlement);
  size_t settlements_in_flight() const { return settlements_in_flight_->load(); }

  struct Connection;
  std::unique_ptr<Connection> take_idle(const std::string& key);
  void give_back(std::unique_ptr<Connection> connection);
  boost::asio::ssl::context& tls() { return tls_; }
  Api& api() { return api_; }
  const boost::asio::any_io_executor& upstream_executor() const { return upstream_executor_; }
  const ProxyOptions& options() const { return options_; }
  const proxy::PriceTable& prices() const { return *prices_; }

 private:
  Api& api_;
  boost::asio::any_io_executor upstream_executor_;
  ProxyOptions options_;
  const proxy::PriceTable* prices_;
  boost::asio::ssl::context tls_;
  std::mutex idle_mutex_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
  std::shared_ptr<std::atomic<size_t>> settlements_in_flight_ =
      std::make_shared<std::atomic<size_t>>(0);
};

}  // namespace stub::http
