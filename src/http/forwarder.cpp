#include "http/forwarder.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cassert>

namespace stub::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr uint32_t answer_header_bytes_max = 16 * 1024;
// How often the watchdog looks at the deadline: the granularity of every timeout here.
constexpr std::chrono::milliseconds watch_tick{100};

struct Leader {
  std::string host;
  std::string port;
};

std::optional<Leader> parse_leader_url(std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || parsed->scheme() != "http" || !parsed->has_authority() || parsed->has_userinfo() ||
      parsed->has_query() || parsed->has_fragment()) {
    return std::nullopt;
  }
  const std::string_view path = parsed->encoded_path();
  if (!path.empty() && path != "/")
    return std::nullopt;
  Leader leader;
  leader.host = std::string(parsed->host_address());
  leader.port = "80";
  if (parsed->has_port()) {
    const uint16_t port = parsed->port_number();  // zero when out of range
    if (port == 0 || std::to_string(port) != parsed->port())
      return std::nullopt;
    leader.port = std::to_string(port);
  }
  if (leader.host.empty())
    return std::nullopt;
  return leader;
}

// Headers that describe one hop, not the answer: never relayed.
bool hop_by_hop(std::string_view name) {
  for (std::string_view hop :
       {"connection", "keep-alive", "content-length", "transfer-encoding", "te", "trailer",
        "upgrade", "proxy-authenticate", "proxy-authorization", "server", "date", "content-type"}) {
    if (beast::iequals(name, hop))
      return true;
  }
  return false;
}

// Closes the socket (or cancels the lookup) of the operation in progress once its deadline
// passes; runs on the forwarding coroutine's strand, like the operations it watches.
struct Watch {
  explicit Watch(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  Clock::time_point deadline = Clock::time_point::max();
  bool done = false;
  bool fired = false;
  tcp::socket* socket = nullptr;
  tcp::resolver* resolver = nullptr;
};

awaitable<void> watch(std::shared_ptr<Watch> state) {
  while (!state->done) {
    state->timer.expires_at(std::min(state->deadline, Clock::now() + watch_tick));
    co_await state->timer.async_wait(as_tuple_awaitable);
    if (state->done)
      co_return;
    if (Clock::now() < state->deadline)
      continue;
    state->fired = true;
    if (state->resolver != nullptr)
      state->resolver->cancel();
    if (state->socket != nullptr) {
      boost::system::error_code ignored;
      state->socket->close(ignored);
    }
    co_return;
  }
}

}  // namespace

struct Forwarder::Connection {
  explicit Connection(const asio::any_io_executor& executor) : socket(executor) {}
  std::string url;
  tcp::socket socket;
  beast::flat_buffer buffer;
  Clock::time_point idle_since;
};

bool valid_leader_url(std::string_view url) {
  return parse_leader_url(url).has_value();
}

Forwarder::Forwarder(asio::any_io_executor executor, ForwarderOptions options)
    : executor_(std::move(executor)), options_(options) {
  assert(options_.connect_timeout.count() > 0 && options_.answer_timeout.count() > 0);
}

Forwarder::~Forwarder() = default;

std::unique_ptr<Forwarder::Connection> Forwarder::take_idle(const std::string& url) {
  std::lock_guard lock(idle_mutex_);
  auto found = idle_.find(url);
  if (found == idle_.end())
    return nullptr;
  auto& list = found->second;
  while (!list.empty()) {
    std::unique_ptr<Connection> connection = std::move(list.back());
    list.pop_back();
    if (Clock::now() - connection->idle_since < options_.idle_connection_ttl)
      return connection;
  }
  return nullptr;
}

void Forwarder::give_back(std::unique_ptr<Connection> connection) {
  connection->idle_since = Clock::now();
  std::lock_guard lock(idle_mutex_);
  auto& list = idle_[connection->url];
  if (list.size() < options_.idle_connections_max)
    list.push_back(std::move(connection));
}

awaitable<std::optional<ForwardedReply>> Forwarder::forward(const std::string& leader_url,
                                                            const ApiRequest& request) {
  const std::optional<Leader> leader = parse_leader_url(leader_url);
  const bhttp::verb verb = bhttp::string_to_verb(request.method);
  if (!leader || verb == bhttp::verb::unknown)
    co_return std::nullopt;
  bhttp::request<bhttp::string_body> out{verb, request.target, 11};
  out.set(bhttp::field::host, leader->host + ":" + leader->port);
  if (!request.authorization.empty())
    out.set(bhttp::field::authorization, request.authorization);
  if (!request.idempotency_key.empty())
    out.set("Idempotency-Key", request.idempotency_key);
  if (!request.content_type.empty())
    out.set(bhttp::field::content_type, request.content_type);
  out.set(forwarded_header, "1");
  out.keep_alive(true);
  out.body() = request.body;
  out.prepare_payload();

  const auto executor = co_await asio::this_coro::executor;
  auto watch_state = std::make_shared<Watch>(executor);
  struct StopWatch {
    std::shared_ptr<Watch> state;
    ~StopWatch() {
      state->done = true;
      state->socket = nullptr;
      state->resolver = nullptr;
      state->timer.cancel();
    }
  } stop_watch{watch_state};
  asio::co_spawn(executor, watch(watch_state), asio::detached);

  // A pooled connection the leader closed meanwhile fails at once: then once more, on a fresh
  // one. Sending twice is safe: the leader replays an Idempotency-Key it has committed.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::unique_ptr<Connection> connection = attempt == 0 ? take_idle(leader_url) : nullptr;
    const bool reused = connection != nullptr;
    if (!connection) {
      connection = std::make_unique<Connection>(executor_);
      connection->url = leader_url;
      watch_state->deadline = Clock::now() + options_.connect_timeout;
      watch_state->socket = &connection->socket;
      boost::system::error_code not_an_address;
      const auto address = asio::ip::make_address(leader->host, not_an_address);
      boost::system::error_code connect_error;
      if (!not_an_address) {
        const auto port = static_cast<asio::ip::port_type>(std::stoul(leader->port));
        std::tie(connect_error) = co_await connection->socket.async_connect(
            tcp::endpoint(address, port), as_tuple_awaitable);
      } else {
        tcp::resolver resolver(executor_);
        watch_state->resolver = &resolver;
        auto [resolve_error, endpoints] =
            co_await resolver.async_resolve(leader->host, leader->port, as_tuple_awaitable);
        watch_state->resolver = nullptr;
        connect_error = resolve_error;
        if (!resolve_error) {
          std::tie(connect_error, std::ignore) =
              co_await asio::async_connect(connection->socket, endpoints, as_tuple_awaitable);
        }
      }
      if (connect_error || watch_state->fired) {
        watch_state->socket = nullptr;
        co_return std::nullopt;
      }
      boost::system::error_code ignored;
      connection->socket.set_option(tcp::no_delay(true), ignored);
    }
    watch_state->socket = &connection->socket;
    watch_state->deadline = Clock::now() + options_.answer_timeout;
    auto [write_error, written] =
        co_await bhttp::async_write(connection->socket, out, as_tuple_awaitable);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.header_limit(answer_header_bytes_max);
    parser.body_limit(options_.answer_bytes_max);
    boost::system::error_code read_error = write_error;
    if (!write_error) {
      std::tie(read_error, std::ignore) = co_await bhttp::async_read(
          connection->socket, connection->buffer, parser, as_tuple_awaitable);
    }
    watch_state->socket = nullptr;
    if (read_error || watch_state->fired) {
      if (reused && !watch_state->fired)
        continue;
      co_return std::nullopt;
    }
    bhttp::response<bhttp::string_body>& answer = parser.get();
    ForwardedReply reply;
    reply.status = static_cast<int>(answer.result_int());
    reply.content_type = std::string(answer[bhttp::field::content_type]);
    for (const auto& field : answer) {
      if (!hop_by_hop(field.name_string()))
        reply.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    const bool keep = answer.keep_alive() && connection->buffer.size() == 0;
    reply.body = std::move(answer.body());
    if (keep)
      give_back(std::move(connection));
    co_return reply;
  }
  co_return std::nullopt;
}

}  // namespace stub::http
