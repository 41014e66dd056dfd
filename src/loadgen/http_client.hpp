#pragma once

// A small blocking HTTP/1.1 client over Boost.Beast for the CLI commands and the runaway replay:
// one keep-alive connection, explicit timeouts, reconnect on a closed connection. Not thread-safe:
// one per thread.

#include <boost/asio/io_context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/result.hpp"

namespace stub::loadgen {

struct Endpoint {
  std::string host = "127.0.0.1";
  std::string port = "8402";
};

// Parses "http://host:port" (or "host:port").
Result<Endpoint> parse_server_url(std::string_view url);

struct HttpResponse {
  int status = 0;
  std::string body;
};

class HttpClient {
 public:
  HttpClient(Endpoint endpoint, std::string token,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(30'000));
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient();

  Result<HttpResponse> request(std::string_view method, std::string_view target,
                               std::string_view body = {}, std::string_view idempotency_key = {});

  // Reads a Server-Sent Events stream, calling `on_event` with each event's data line until it
  // returns false or the stream ends.
  Status stream_events(std::string_view target,
                       const std::function<bool(std::string_view data)>& on_event);

  // GETs `target` and hands the body to `on_chunk` as it arrives (a streamed export), with no
  // bound on its size; `status` is the HTTP status. A non-200 body is returned in `error_body`.
  Status download(std::string_view target,
                  const std::function<bool(std::string_view chunk)>& on_chunk, int& status,
                  std::string& error_body);

 private:
  Status connect();

  Endpoint endpoint_;
  std::string token_;
  std::chrono::milliseconds timeout_;
  boost::asio::io_context io_;
  std::optional<boost::beast::tcp_stream> stream_;
};

}  // namespace stub::loadgen
