#include "http/server.hpp"

#include <spdlog/spdlog.h>

#include <cassert>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>

#include "http/async_bridge.hpp"
#include "http/forwarder.hpp"
#include "ledger/budget_path.hpp"
#include "ledger/chain.hpp"

namespace stub::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::awaitable;
using asio::use_awaitable;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto as_tuple_awaitable = asio::as_tuple(use_awaitable);

// Decrements a counter when a scope ends, however it ends.
class CountGuard {
 public:
  explicit CountGuard(std::atomic<size_t>& counter) : counter_(counter) { ++counter_; }
  CountGuard(const CountGuard&) = delete;
  ~CountGuard() { --counter_; }

 private:
  std::atomic<size_t>& counter_;
};

std::string format_event(const ledger::Entry& entry) {
  std::string out =
      "id: " + entry.root + ":" + std::to_string(entry.seq) + "\nevent: entry\ndata: ";
  out += ledger::entry_to_json_text(entry);
  out += "\n\n";
  return out;
}

bool event_matches(const EventFilter& filter, const ledger::Entry& entry) {
  if (!filter.root.empty() && entry.root != filter.root)
    return false;
  if (filter.subtree.empty())
    return true;
  const auto path = ledger::BudgetPath::parse(entry.budget);
  const auto bound = ledger::BudgetPath::parse(filter.subtree);
  return path && bound && path->within(*bound);
}

}  // namespace

// One connection. Deadlines are kept by a watchdog coroutine on the same strand that closes the
// socket when a read or write overruns (Beast's tcp_stream timer is not used: with coroutine
// handlers on strands in Boost 1.81 its timeout handler touched a destroyed executor, which
// AddressSanitizer caught).
class Server::Session : public std::enable_shared_from_this<Server::Session> {
 public:
  Session(Server& server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)), watchdog_timer_(stream_.get_executor()) {}

  awaitable<void> start() {
    asio::co_spawn(
        stream_.get_executor(), [self = shared_from_this()] { return self->watchdog(); },
        asio::detached);
    co_await run();
    closed_ = true;
    watchdog_timer_.cancel();
  }

 private:
  using Clock = std::chrono::steady_clock;

  void expires_after(std::chrono::seconds timeout) { deadline_ = Clock::now() + timeout; }

  awaitable<void> watchdog() {
    while (!closed_) {
      watchdog_timer_.expires_at(std::min(deadline_, Clock::now() + std::chrono::seconds(1)));
      co_await watchdog_timer_.async_wait(as_tuple_awaitable);
      if (closed_)
        co_return;
      if (Clock::now() >= deadline_) {
        boost::system::error_code ignored;
        stream_.close(ignored);  // The pending read or write completes with an error.
        co_return;
      }
    }
  }

  awaitable<void> run() {
    CountGuard connection(server_.connections_);
    beast::flat_buffer buffer(server_.options_.header_bytes_max);
    for (size_t served = 0; served < server_.options_.requests_per_connection_max; ++served) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(server_.options_.header_bytes_max));
      parser.body_limit(server_.options_.body_bytes_max);
      expires_after(server_.options_.read_timeout);
      auto [read_error, bytes] =
          co_await bhttp::async_read_header(stream_, buffer, parser, as_tuple_awaitable);
      if (!read_error) {
        // A proxied call carries the agent's whole prompt: its own, larger, limit.
        if (server_.proxy_ && Proxy::owns(parser.get().target()))
          parser.body_limit(server_.options_.proxy.request_bytes_max);
        auto [body_error, body_bytes] =
            co_await bhttp::async_read(stream_, buffer, parser, as_tuple_awaitable);
        read_error = body_error;
      }
      if (read_error == bhttp::error::body_limit || read_error == bhttp::error::header_limit) {
        co_await write_error(413, "too_large", "The request is larger than the server accepts.");
        break;
      }
      if (read_error == bhttp::error::end_of_stream || read_error)
        break;
      bhttp::request<bhttp::string_body> request = parser.release();
      deadline_ = Clock::time_point::max();  // Handling is bounded by the engine, not the socket.

      if (server_.proxy_ && Proxy::owns(request.target())) {
        bool keep = false;
        {
          CountGuard in_flight(server_.requests_in_flight_);
          keep = co_await server_.proxy_->serve(stream_, request, [this](Clock::duration limit) {
            deadline_ =
                limit == Clock::duration::zero() ? Clock::time_point::max() : Clock::now() + limit;
          });
        }
        if (!keep || server_.stopping_.load())
          break;
        continue;
      }

      ApiRequest api_request;
      api_request.method = std::string(request.method_string());
      api_request.target = std::string(request.target());
      api_request.authorization = std::string(request[bhttp::field::authorization]);
      api_request.idempotency_key = std::string(request["Idempotency-Key"]);
      api_request.body = std::move(request.body());
      api_request.cookie = std::string(request[bhttp::field::cookie]);
      api_request.origin = std::string(request[bhttp::field::origin]);
      api_request.host = std::string(request[bhttp::field::host]);
      api_request.csrf_token = std::string(request["X-Stub-CSRF"]);
      api_request.if_none_match = std::string(request[bhttp::field::if_none_match]);
      api_request.accept_encoding = std::string(request[bhttp::field::accept_encoding]);
      api_request.content_type = std::string(request[bhttp::field::content_type]);
      api_request.forwarded = !request[forwarded_header].empty();

      if (api_request.method == "GET" &&
          (api_request.target == "/v1/events" || api_request.target.starts_with("/v1/events?"))) {
        co_await stream_events(api_request, request.version());
        break;
      }

      const auto started = std::chrono::steady_clock::now();
      ApiReply reply;
      {
        CountGuard in_flight(server_.requests_in_flight_);
        reply = co_await server_.api_.handle(std::move(api_request));
      }
      server_.api_.context().metrics.record_request(
          reply.route, reply.status,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());

      const bool keep_alive = request.keep_alive() && !server_.stopping_.load();
      if (reply.stream) {
        if (!co_await send_streamed(reply, request.version(), keep_alive) || !keep_alive)
          break;
        continue;
      }
      bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(reply.status),
                                                   request.version()};
      response.set(bhttp::field::server, "stub");
      if (reply.status != 304)
        response.set(bhttp::field::content_type, reply.content_type);
      for (const auto& [name, value] : reply.headers)
        response.insert(name, value);
      response.keep_alive(keep_alive);
      response.body() = std::move(reply.body);
      response.prepare_payload();
      expires_after(server_.options_.write_timeout);
      auto [write_error, written] =
          co_await bhttp::async_write(stream_, response, as_tuple_awaitable);
      if (write_error || !keep_alive)
        break;
    }
    beast::error_code ignored;
    stream_.shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Sends a streamed reply with chunked transfer: each piece is written before the next is
  // produced. Answers whether the whole body went out (the last chunk included); if not, the
  // connection must close.
  awaitable<bool> send_streamed(ApiReply& reply, unsigned version, bool keep_alive) {
    assert(reply.stream && reply.body.empty());
    bhttp::response<bhttp::empty_body> header{static_cast<bhttp::status>(reply.status), version};
    header.set(bhttp::field::server, "stub");
    header.set(bhttp::field::content_type, reply.content_type);
    for (const auto& [name, value] : reply.headers)
      header.insert(name, value);
    header.keep_alive(keep_alive);
    header.chunked(true);
    bhttp::response_serializer<bhttp::empty_body> serializer(header);
    expires_after(server_.options_.write_timeout);
    auto [header_error, header_bytes] =
        co_await bhttp::async_write_header(stream_, serializer, as_tuple_awaitable);
    if (header_error)
      co_return false;
    while (true) {
      deadline_ = Clock::time_point::max();  // Producing a piece is bounded by the store.
      Result<std::string> piece = co_await reply.stream->next();
      if (!piece.ok()) {
        spdlog::warn("streamed reply cut off: {}", piece.error().message);
        co_return false;
      }
      expires_after(server_.options_.write_timeout);
      if (piece->empty()) {
        auto [error, written] =
            co_await asio::async_write(stream_, bhttp::make_chunk_last(), as_tuple_awaitable);
        co_return !error;
      }
      auto [error, written] = co_await asio::async_write(
          stream_, bhttp::make_chunk(asio::buffer(*piece)), as_tuple_awaitable);
      if (error)
        co_return false;
    }
  }

  awaitable<void> write_error(int status, std::string code, std::string message) {
    bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status), 11};
    response.set(bhttp::field::content_type, "application/json");
    response.keep_alive(false);
    response.body() =
        error_reply(Error{ErrorCode::too_large, std::move(code), std::move(message)}).body;
    response.prepare_payload();
    expires_after(server_.options_.write_timeout);
    co_await bhttp::async_write(stream_, response, as_tuple_awaitable);
  }

  awaitable<bool> send_text(const std::string& text) {
    expires_after(server_.options_.write_timeout);
    auto [error, written] =
        co_await asio::async_write(stream_, asio::buffer(text), as_tuple_awaitable);
    co_return !error;
  }

  // Streams committed entries as Server-Sent Events: first the backlog after ?after=SEQ from
  // the store, then live batches from the event bus, skipping anything already sent.
  awaitable<void> stream_events(const ApiRequest& request, unsigned version) {
    auto filter = co_await server_.api_.open_event_stream(request);
    if (!filter.ok()) {
      const ApiReply reply = error_reply(filter.error());
      bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(reply.status),
                                                   version};
      response.set(bhttp::field::content_type, reply.content_type);
      response.keep_alive(false);
      response.body() = reply.body;
      response.prepare_payload();
      co_await bhttp::async_write(stream_, response, as_tuple_awaitable);
      co_return;
    }
    using Channel =
        asio::experimental::concurrent_channel<void(boost::system::error_code, engine::EntryBatch)>;
    auto channel = std::make_shared<Channel>(co_await asio::this_coro::executor,
                                             server_.options_.event_backlog_max);
    auto overflowed = std::make_shared<std::atomic<bool>>(false);
    ApiContext& context = server_.api_.context();
    const uint64_t subscription =
        context.events.subscribe([channel, overflowed](const engine::EntryBatch& batch) {
          if (!channel->try_send(boost::system::error_code{}, batch))
            overflowed->store(true);
        });
    struct Unsubscribe {
      engine::EventBus& events;
      uint64_t id;
      ~Unsubscribe() { events.unsubscribe(id); }
    } unsubscribe{context.events, subscription};

    bhttp::response<bhttp::empty_body> header{bhttp::status::ok, version};
    header.set(bhttp::field::content_type, "text/event-stream");
    header.set(bhttp::field::cache_control, "no-cache");
    header.keep_alive(false);
    bhttp::response_serializer<bhttp::empty_body> serializer(header);
    expires_after(server_.options_.write_timeout);
    auto [header_error, header_bytes] =
        co_await bhttp::async_write_header(stream_, serializer, as_tuple_awaitable);
    if (header_error)
      co_return;
    if (!co_await send_text(": stub event stream\n\n"))
      co_return;

    std::map<std::string, int64_t> last_sent;
    if (!filter->root.empty() && filter->backlog) {
      // Subscribed before reading the backlog, so nothing committed in between is missed;
      // last_sent drops what both deliver.
      last_sent[filter->root] = filter->after;
      int64_t after = filter->after;
      while (true) {
        // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
        auto page_work = [&context, &filter, after] {
          return context.store.list_entries(filter->root, after, 500);
        };
        auto page = co_await run_blocking(context.read_pool, std::move(page_work));
        if (!page.ok() || page->entries.empty())
          break;
        for (const auto& entry : page->entries) {
          if (event_matches(*filter, entry) && !co_await send_text(format_event(entry)))
            co_return;
          last_sent[filter->root] = entry.seq;
        }
        after = page->next_after;
      }
    }

    asio::steady_timer heartbeat(co_await asio::this_coro::executor);
    auto key_checked = Clock::now();
    auto session_checked = Clock::now();
    while (!server_.stopping_.load() && !overflowed->load()) {
      // An agent key revoked or expired while it streams is cut off within a second: the
      // stream says why in a last event, then closes. So is a browser session that ended.
      if (!filter->session_id.empty() && Clock::now() - session_checked >= key_recheck_interval &&
          !context.sessions.find(filter->session_id, context.clock())) {
        co_await send_text(
            "event: error\ndata: " +
            error_reply(Error{ErrorCode::unauthorized, "session_expired", "The session has ended."})
                .body +
            "\n\n");
        co_return;
      }
      if (Clock::now() - session_checked >= key_recheck_interval)
        session_checked = Clock::now();
      if (!filter->key_id.empty() && Clock::now() - key_checked >= key_recheck_interval) {
        key_checked = Clock::now();
        const Status usable = co_await server_.api_.key_still_usable(filter->key_id);
        if (!usable.ok()) {
          co_await send_text("event: error\ndata: " + error_reply(usable.error()).body + "\n\n");
          co_return;
        }
      }
      heartbeat.expires_after(std::chrono::seconds(1));
      auto next = co_await (channel->async_receive(as_tuple_awaitable) ||
                            heartbeat.async_wait(as_tuple_awaitable));
      if (next.index() == 1) {
        if (++idle_seconds_ >= server_.options_.event_heartbeat.count()) {
          idle_seconds_ = 0;
          if (!co_await send_text(": heartbeat\n\n"))
            co_return;
        }
        continue;
      }
      auto [error, batch] = std::get<0>(next);
      if (error)
        co_return;
      std::string text;
      for (const auto& entry : *batch) {
        if (!event_matches(*filter, entry))
          continue;
        int64_t& sent = last_sent[entry.root];
        if (entry.seq <= sent)
          continue;
        sent = entry.seq;
        text += format_event(entry);
      }
      if (!text.empty() && !co_await send_text(text))
        co_return;
    }
  }

  Server& server_;
  tcp::socket stream_;
  asio::steady_timer watchdog_timer_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool closed_ = false;
  int64_t idle_seconds_ = 0;
};

Server::Server(Api& api, ServerOptions options)
    : api_(api), options_(std::move(options)), acceptor_(io_) {}

Server::~Server() {
  stop(std::chrono::milliseconds(1'000));
}

Result<uint16_t> Server::start() {
  boost::system::error_code error;
  const auto address = asio::ip::make_address(options_.address, error);
  if (error)
    return Error::invalid("invalid_address", "Cannot parse address " + options_.address + ".");
  const tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), error);
  if (!error)
    acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error)
    acceptor_.bind(endpoint, error);
  if (!error)
    acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return Error{ErrorCode::unavailable, "listen_failed",
                 "Cannot listen on " + options_.address + ":" + std::to_string(options_.port) +
                     ": " + error.message()};
  }
  const uint16_t port = acceptor_.local_endpoint().port();
  if (api_.context().leadership != nullptr) {
    forwarder_ = std::make_unique<Forwarder>(io_.get_executor(), options_.forwarding);
    api_.set_forwarder(forwarder_.get());
  }
  if (options_.proxy_enabled) {
    try {
      proxy_ = std::make_unique<Proxy>(api_, options_.proxy, io_.get_executor());
    } catch (const std::exception& failure) {
      return Error::invalid("invalid_upstream_ca_file", "Cannot load the upstream CA file " +
                                                            options_.proxy.upstream_ca_file + ": " +
                                                            failure.what());
    }
  }

  asio::co_spawn(
      io_,
      [this]() -> awaitable<void> {
        while (!stopping_.load()) {
          auto [error, socket] =
              co_await acceptor_.async_accept(asio::make_strand(io_), as_tuple_awaitable);
          if (error) {
            if (stopping_.load() || error == asio::error::operation_aborted)
              co_return;
            continue;  // A failed accept (e.g. out of descriptors) must not end the server.
          }
          if (connections_.load() >= options_.connections_max)
            continue;  // socket closes
          socket.set_option(tcp::no_delay(true));
          // The session runs on its socket's strand: one connection is never run concurrently.
          auto strand = socket.get_executor();
          auto session = std::make_shared<Session>(*this, std::move(socket));
          asio::co_spawn(
              strand, [session]() { return session->start(); }, asio::detached);
        }
      },
      asio::detached);
  for (size_t i = 0; i < std::max<size_t>(1, options_.io_threads); ++i) {
    threads_.emplace_back([this] { io_.run(); });
  }
  return port;
}

void Server::stop(std::chrono::milliseconds deadline) {
  if (stopping_.exchange(true)) {
    for (auto& thread : threads_) {
      if (thread.joinable())
        thread.join();
    }
    return;
  }
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  const auto until = std::chrono::steady_clock::now() + deadline;
  // Requests in flight, and the proxy's settlements that finish after their answers.
  while ((requests_in_flight_.load() > 0 || (proxy_ && proxy_->settlements_in_flight() > 0)) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  io_.stop();
  for (auto& thread : threads_) {
    if (thread.joinable())
      thread.join();
  }
  api_.set_forwarder(nullptr);
}

}  // namespace stub::http
