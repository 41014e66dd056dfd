#include "loadgen/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

namespace stub::loadgen {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

Error transport_error(const Endpoint& endpoint, const boost::system::error_code& error) {
  return Error{ErrorCode::unavailable, "transport",
               "Cannot talk to the server at " + endpoint.host + ":" + endpoint.port + ": " +
                   error.message() + ". Is `stub serve` running? (--server / STUB_URL)"};
}

}  // namespace

Result<Endpoint> parse_server_url(std::string_view url) {
  if (url.starts_with("http://"))
    url.remove_prefix(7);
  if (url.starts_with("https://")) {
    return Error::invalid("invalid_url", "TLS is not supported by the CLI; use http://.");
  }
  while (url.ends_with('/'))
    url.remove_suffix(1);
  const size_t colon = url.rfind(':');
  Endpoint endpoint;
  if (colon == std::string_view::npos) {
    endpoint.host = std::string(url);
    endpoint.port = "80";
  } else {
    endpoint.host = std::string(url.substr(0, colon));
    endpoint.port = std::string(url.substr(colon + 1));
  }
  if (endpoint.host.empty() || endpoint.port.empty()) {
    return Error::invalid("invalid_url", "Cannot parse server URL " + std::string(url) + ".");
  }
  return endpoint;
}

HttpClient::HttpClient(Endpoint endpoint, std::string token, std::chrono::milliseconds timeout)
    : endpoint_(std::move(endpoint)), token_(std::move(token)), timeout_(timeout) {}

HttpClient::~HttpClient() {
  if (stream_) {
    beast::error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
  }
}

Status HttpClient::connect() {
  tcp::resolver resolver(io_);
  beast::error_code error;
  const auto results = resolver.resolve(endpoint_.host, endpoint_.port, error);
  if (error)
    return transport_error(endpoint_, error);
  stream_.emplace(io_);
  stream_->expires_after(timeout_);
  stream_->connect(results, error);
  if (error) {
    stream_.reset();
    return transport_error(endpoint_, error);
  }
  stream_->socket().set_option(tcp::no_delay(true));
  return Status::success();
}

Result<HttpResponse> HttpClient::request(std::string_view method, std::string_view target,
                                         std::string_view body, std::string_view idempotency_key) {
  bhttp::request<bhttp::string_body> request{bhttp::string_to_verb(method), target, 11};
  request.set(bhttp::field::host, endpoint_.host);
  request.set(bhttp::field::user_agent, "stub-cli");
  if (!token_.empty())
    request.set(bhttp::field::authorization, "Bearer " + token_);
  if (!idempotency_key.empty())
    request.set("Idempotency-Key", idempotency_key);
  if (!body.empty()) {
    request.set(bhttp::field::content_type, "application/json");
    request.body() = std::string(body);
  }
  request.keep_alive(true);
  request.prepare_payload();

  // A kept-alive connection may have been closed by the server: reconnect once and resend.
  // Only connection-level failures before any response are retried, and every mutating call
  // carries an Idempotency-Key, so a resend can never apply twice.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!stream_) {
      if (Status connected = connect(); !connected.ok())
        return connected.error();
    }
    beast::error_code error;
    stream_->expires_after(timeout_);
    bhttp::write(*stream_, request, error);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> response;
    if (!error)
      bhttp::read(*stream_, buffer, response, error);
    if (error) {
      stream_.reset();
      if (attempt == 0 &&
          (error == bhttp::error::end_of_stream || error == boost::asio::error::connection_reset ||
           error == boost::asio::error::broken_pipe)) {
        continue;
      }
      return transport_error(endpoint_, error);
    }
    if (!response.keep_alive())
      stream_.reset();
    return HttpResponse{static_cast<int>(response.result_int()), std::move(response.body())};
  }
  return Error{ErrorCode::unavailable, "transport", "The server closed the connection."};
}

Status HttpClient::stream_events(std::string_view target,
                                 const std::function<bool(std::string_view data)>& on_event) {
  if (Status connected = connect(); !connected.ok())
    return connected;
  bhttp::request<bhttp::empty_body> request{bhttp::verb::get, target, 11};
  request.set(bhttp::field::host, endpoint_.host);
  request.set(bhttp::field::accept, "text/event-stream");
  if (!token_.empty())
    request.set(bhttp::field::authorization, "Bearer " + token_);
  beast::error_code error;
  stream_->expires_never();
  bhttp::write(*stream_, request, error);
  if (error)
    return transport_error(endpoint_, error);

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);
  bhttp::read_header(*stream_, buffer, parser, error);
  if (error)
    return transport_error(endpoint_, error);
  if (parser.get().result_int() != 200) {
    return Error{ErrorCode::unavailable, "stream_refused",
                 "The server refused the event stream with HTTP " +
                     std::to_string(parser.get().result_int()) + "."};
  }
  std::string pending;
  char chunk[8192];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    bhttp::read_some(*stream_, buffer, parser, error);
    if (error == bhttp::error::need_buffer)
      error = {};
    if (error)
      break;
    pending.append(chunk, sizeof chunk - parser.get().body().size);
    size_t end;
    while ((end = pending.find("\n\n")) != std::string::npos) {
      const std::string event = pending.substr(0, end);
      pending.erase(0, end + 2);
      size_t line_start = 0;
      while (line_start < event.size()) {
        size_t line_end = event.find('\n', line_start);
        if (line_end == std::string::npos)
          line_end = event.size();
        const std::string_view line(event.data() + line_start, line_end - line_start);
        if (line.starts_with("data: ") && !on_event(line.substr(6)))
          return Status::success();
        line_start = line_end + 1;
      }
    }
  }
  stream_.reset();
  if (error && error != bhttp::error::end_of_stream)
    return transport_error(endpoint_, error);
  return Status::success();
}

Status HttpClient::download(std::string_view target,
                            const std::function<bool(std::string_view chunk)>& on_chunk,
                            int& status, std::string& error_body) {
  if (Status connected = connect(); !connected.ok())
    return connected;
  bhttp::request<bhttp::empty_body> request{bhttp::verb::get, target, 11};
  request.set(bhttp::field::host, endpoint_.host);
  request.set(bhttp::field::user_agent, "stub-cli");
  if (!token_.empty())
    request.set(bhttp::field::authorization, "Bearer " + token_);
  beast::error_code error;
  stream_->expires_after(timeout_);
  bhttp::write(*stream_, request, error);
  if (error)
    return transport_error(endpoint_, error);
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);
  bhttp::read_header(*stream_, buffer, parser, error);
  if (error)
    return transport_error(endpoint_, error);
  status = static_cast<int>(parser.get().result_int());
  char chunk[65536];
  while (!parser.is_done()) {
    // Each read has its own deadline: a large export may take long, a stalled one may not.
    stream_->expires_after(timeout_);
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    bhttp::read_some(*stream_, buffer, parser, error);
    if (error == bhttp::error::need_buffer)
      error = {};
    if (error)
      break;
    const std::string_view data(chunk, sizeof chunk - parser.get().body().size);
    if (status != 200) {
      if (error_body.size() < 65536)
        error_body.append(data);
    } else if (!data.empty() && !on_chunk(data)) {
      break;
    }
  }
  stream_.reset();
  if (error && error != bhttp::error::end_of_stream)
    return transport_error(endpoint_, error);
  return Status::success();
}

}  // namespace stub::loadgen
