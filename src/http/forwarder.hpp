#pragma once

// Forwards a write to its root's leader (docs/postgres.md, "Root leaders") as it came: method,
// target, Authorization, Idempotency-Key, Content-Type and body, plus `x-stub-forwarded: 1`
// (a request carrying it is never forwarded again), over pooled keep-alive HTTP/1.1
// connections, inside the server's io_context (coroutines, no thread per request), with a
// deadline on the connect and one on the answer. No answer (refused, timed out, cut off, too
// large) is nullopt: the caller commits the write itself, which its Idempotency-Key makes safe
// whatever the leader did with it.
//
// Thread safety: forward() may be called from any number of coroutines at once.

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "http/api.hpp"

namespace stub::http {

struct ForwarderOptions {
  std::chrono::milliseconds connect_timeout{500};
  // From the request's first byte to the answer's last: the leader's commit included.
  std::chrono::milliseconds answer_timeout{10'000};
  size_t answer_bytes_max = 1024 * 1024;
  size_t idle_connections_max = 512;  // per leader
  // Below the leader's keep-alive idle limit (ServerOptions::read_timeout), so a pooled
  // connection is rarely one the leader has just closed.
  std::chrono::seconds idle_connection_ttl{10};
};

// The header a forwarded request carries.
inline constexpr std::string_view forwarded_header = "x-stub-forwarded";

struct ForwardedReply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;  // end-to-end ones only
};

class Forwarder {
 public:
  // Sockets live on `executor` (the io_context, not a strand: a pooled connection moves
  // between requests of different client connections).
  Forwarder(boost::asio::any_io_executor executor, ForwarderOptions options);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  // `leader_url` is http://HOST:PORT.
  boost::asio::awaitable<std::optional<ForwardedReply>> forward(const std::string& leader_url,
                                                                const ApiRequest& request);

  struct Connection;

 private:
  std::unique_ptr<Connection> take_idle(const std::string& url);
  void give_back(std::unique_ptr<Connection> connection);

  boost::asio::any_io_executor executor_;
  ForwarderOptions options_;
  std::mutex idle_mutex_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;  // GUARDED_BY(idle_mutex_)
};

// Whether `url` is one forward() takes: http://HOST:PORT with an optional "/" and nothing else.
bool valid_leader_url(std::string_view url);

}  // namespace stub::http
