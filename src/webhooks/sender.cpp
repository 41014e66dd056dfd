#include "webhooks/sender.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/url/parse.hpp>

namespace stub::webhooks {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using asio::awaitable;
using asio::ip::tcp;

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);

}  // namespace

std::optional<Target> parse_url(const std::string& url) {
  if (url.size() > 2048)
    return std::nullopt;
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || !parsed->has_authority())
    return std::nullopt;
  Target target;
  const std::string scheme(parsed->scheme());
  if (scheme == "https") {
    target.tls = true;
  } else if (scheme != "http") {
    return std::nullopt;
  }
  // The host as written: a percent-encoded one would be decoded into the resolver, the Host
  // header and SNI, where "%0d%0a" splits the header and "%00" truncates the name. DNS names
  // and IP literals need no escapes, so none is taken.
  if (parsed->encoded_host().find('%') != boost::urls::string_view::npos)
    return std::nullopt;
  target.host = std::string(parsed->host_address());
  if (target.host.empty())
    return std::nullopt;
  // "http://host:/" has an empty port and ":99999" none that exists: a URL no post can reach.
  // The port's digits are read here: Boost.URL's port_number() wraps ":82868" to 17332.
  if (parsed->has_port()) {
    const boost::urls::string_view port = parsed->port();
    if (port.empty() || port.size() > 5)
      return std::nullopt;
    unsigned value = 0;
    for (const char digit : port) {
      if (digit < '0' || digit > '9')
        return std::nullopt;
      value = value * 10 + static_cast<unsigned>(digit - '0');
    }
    if (value == 0 || value > 65'535)
      return std::nullopt;
  }
  target.port = parsed->has_port() ? std::string(parsed->port()) : (target.tls ? "443" : "80");
  // The request line's target: "http://h?x" has an empty path ("/?x" on the wire), and
  // Boost.URL 1.81 reads "http://h:44_3/x" as port 44 with the path "_3/x", a malformed URL
  // that must not become "POST _3/x HTTP/1.1".
  target.path = std::string(parsed->encoded_target());
  if (target.path.empty() || target.path.front() == '?')
    target.path.insert(0, "/");
  if (target.path.front() != '/')
    return std::nullopt;
  return target;
}

namespace {

bhttp::request<bhttp::string_body> make_request(
    const Target& target, const std::vector<std::pair<std::string, std::string>>& headers,
    const std::string& body) {
  bhttp::request<bhttp::string_body> request{bhttp::verb::post, target.path, 11};
  request.set(bhttp::field::host, target.host);
  request.set(bhttp::field::user_agent, "stub-webhooks/0.1");
  request.set(bhttp::field::content_type, "application/json");
  request.set(bhttp::field::connection, "close");
  for (const auto& [name, value] : headers)
    request.set(name, value);
  request.body() = body;
  request.prepare_payload();
  return request;
}

// Sends `request` on a connected stream and reads the status of the answer.
template <typename Stream>
awaitable<PostResult> exchange(Stream& stream, bhttp::request<bhttp::string_body>& request) {
  auto [write_error, written] = co_await bhttp::async_write(stream, request, as_tuple_awaitable);
  if (write_error)
    co_return PostResult{0, "sending: " + write_error.message(), {}};
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(response_bytes_max);
  auto [read_error, read] = co_await bhttp::async_read(stream, buffer, parser, as_tuple_awaitable);
  if (read_error)
    co_return PostResult{0, "reading the answer: " + read_error.message(), {}};
  co_return PostResult{static_cast<int>(parser.get().result_int()), "",
                       std::move(parser.get().body())};
}

awaitable<PostResult> send(Target target, bhttp::request<bhttp::string_body> request,
                           asio::ssl::context& tls, std::chrono::milliseconds deadline) {
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  auto [resolve_error, endpoints] =
      co_await resolver.async_resolve(target.host, target.port, as_tuple_awaitable);
  if (resolve_error)
    co_return PostResult{0, "resolving " + target.host + ": " + resolve_error.message(), {}};
  if (!target.tls) {
    beast::tcp_stream stream(executor);
    stream.expires_after(deadline);
    auto [connect_error, endpoint] = co_await stream.async_connect(endpoints, as_tuple_awaitable);
    if (connect_error)
      co_return PostResult{0, "connecting: " + connect_error.message(), {}};
    co_return co_await exchange(stream, request);
  }
  beast::ssl_stream<beast::tcp_stream> stream(executor, tls);
  beast::get_lowest_layer(stream).expires_after(deadline);
  if (!SSL_set_tlsext_host_name(stream.native_handle(), target.host.c_str()))
    co_return PostResult{0, "setting the TLS server name failed", {}};
  stream.set_verify_callback(asio::ssl::host_name_verification(target.host));
  auto [connect_error, endpoint] =
      co_await beast::get_lowest_layer(stream).async_connect(endpoints, as_tuple_awaitable);
  if (connect_error)
    co_return PostResult{0, "connecting: " + connect_error.message(), {}};
  auto [handshake_error] =
      co_await stream.async_handshake(asio::ssl::stream_base::client, as_tuple_awaitable);
  if (handshake_error)
    co_return PostResult{0, "TLS handshake: " + handshake_error.message(), {}};
  co_return co_await exchange(stream, request);
}

}  // namespace

bool valid_url(const std::string& url) {
  return parse_url(url).has_value();
}

PostResult post(const std::string& url,
                const std::vector<std::pair<std::string, std::string>>& headers,
                const std::string& body, std::chrono::milliseconds deadline) {
  const auto target = parse_url(url);
  if (!target)
    return PostResult{0, "not an http or https URL", {}};
  // The TLS context outlives the io_context, whose destruction frees any stream still open.
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_default_verify_paths();
  tls.set_verify_mode(asio::ssl::verify_peer);
  asio::io_context io;
  PostResult result{0, "timed out", {}};
  // Named, not a temporary in co_spawn: clang 14 mishandles coroutine lambdas' temporaries.
  auto exchange_work = send(*target, make_request(*target, headers, body), tls, deadline);
  asio::co_spawn(io, std::move(exchange_work),
                 [&result](std::exception_ptr failure, PostResult outcome) {
                   result = failure ? PostResult{0, "failed", {}} : std::move(outcome);
                 });
  // The stream's own deadline bounds connect, write and read; this bounds name resolution.
  io.run_for(deadline + std::chrono::milliseconds(500));
  return result;
}

}  // namespace stub::webhooks
