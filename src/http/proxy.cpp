#include "http/proxy.hpp"

#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>
#include <cassert>
#include <optional>

#include "http/async_bridge.hpp"
#include "http/credentials.hpp"
#include "ledger/money.hpp"
#include "proxy/vendor_defaults.hpp"

namespace stub::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace json = boost::json;
using asio::awaitable;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto as_tuple_awaitable = asio::as_tuple(asio::use_awaitable);
constexpr size_t read_chunk_bytes = 16 * 1024;
constexpr std::string_view hold_ttl = "1h";

}  // namespace

// One upstream connection, plain or TLS, on the io_context (not a strand: a pooled connection
// serves one call at a time, handed over under the pool's mutex).
struct Proxy::Connection {
  std::string key;  // scheme://host:port
  std::optional<tcp::socket> plain;
  std::optional<asio::ssl::stream<tcp::socket>> secure;
  beast::flat_buffer buffer;
  Clock::time_point idle_since;

  tcp::socket& socket() { return secure ? secure->next_layer() : *plain; }
};

namespace {

// Closes an upstream socket once its deadline passes; runs on the call's strand.
struct Watch {
  explicit Watch(const asio::any_io_executor& executor) : timer(executor) {}
  asio::steady_timer timer;
  Clock::time_point deadline = Clock::time_point::max();
  bool done = false;
  bool fired = false;
  tcp::socket* socket = nullptr;
};

awaitable<void> watch(std::shared_ptr<Watch> state) {
  while (!state->done) {
    state->timer.expires_at(
        std::min(state->deadline, Clock::now() + std::chrono::milliseconds(200)));
    co_await state->timer.async_wait(as_tuple_awaitable);
    if (state->done)
      co_return;
    if (Clock::now() >= state->deadline && state->socket != nullptr) {
      state->fired = true;
      boost::system::error_code ignored;
      state->socket->close(ignored);
      co_return;
    }
  }
}

struct Upstream {
  bool tls = false;
  std::string host;
  std::string port;
  std::string prefix;  // the base URL's path, without a trailing '/'
};

std::optional<Upstream> parse_base_url(std::string_view url) {
  auto parsed = boost::urls::parse_absolute_uri(url);
  if (!parsed || !parsed->has_authority())
    return std::nullopt;
  Upstream out;
  out.tls = parsed->scheme() == "https";
  if (!out.tls && parsed->scheme() != "http")
    return std::nullopt;
  out.host = std::string(parsed->host_address());
  out.port = parsed->has_port() ? std::string(parsed->port()) : (out.tls ? "443" : "80");
  out.prefix = std::string(parsed->encoded_path());
  while (!out.prefix.empty() && out.prefix.back() == '/')
    out.prefix.pop_back();
  return out;
}

struct Timeouts {
  std::chrono::milliseconds connect{proxy::vendor_timeout_default_connect_ms};
  std::chrono::milliseconds first_byte{proxy::vendor_timeout_default_first_byte_ms};
  std::chrono::milliseconds idle{proxy::vendor_timeout_default_idle_ms};
};

// The vendor's settings as the proxy uses them.
struct VendorUse {
  std::string name;
  std::string kind;
  Upstream upstream;
  std::string credential_header;
  std::string credential;
  Timeouts timeouts;
};

// The usage an answer reports (OpenAI: prompt/completion tokens).
struct Usage {
  bool seen = false;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
};

void read_usage(const json::value& document, Usage& usage) {
  if (!document.is_object())
    return;
  const auto* found = document.get_object().if_contains("usage");
  if (found == nullptr || !found->is_object())
    return;
  const auto& object = found->get_object();
  const auto number = [&](std::string_view name) -> int64_t {
    const auto* value = object.if_contains(name);
    return value != nullptr && value->is_int64() && value->get_int64() > 0 ? value->get_int64() : 0;
  };
  usage.seen = true;
  usage.input_tokens = number("prompt_tokens");
  usage.output_tokens = number("completion_tokens");
}

int64_t cost_micros(const proxy::ModelPrice& price, int64_t input_tokens, int64_t output_tokens) {
  const __int128 total = static_cast<__int128>(input_tokens) * price.input_micros_per_million +
                         static_cast<__int128>(output_tokens) * price.output_micros_per_million;
  const __int128 micros = (total + 999'999) / 1'000'000;
  return micros > ledger::Money::micros_max ? ledger::Money::micros_max
                                            : static_cast<int64_t>(micros);
}

std::string openai_error_body(std::string_view type, std::string_view code,
                              std::string_view message, json::object extra = {}) {
  json::object error{{"type", type}, {"code", code}, {"message", message}, {"param", nullptr}};
  for (auto& member : extra)
    error[member.key()] = member.value();
  return json::serialize(json::object{{"error", std::move(error)}});
}

// The bodies the coroutines below send, built out here: g++ 12 rejects a braced json::object
// with string-literal members inside a coroutine ("array used as initializer").
json::object capture_request(int64_t micros, json::object receipt) {
  return json::object{{"amount", ledger::Money::from_micros(micros).to_string()},
                      {"receipt", std::move(receipt)}};
}

json::object hold_request(int64_t worst_micros) {
  return json::object{
      {"amount", ledger::Money::from_micros(std::max<int64_t>(worst_micros, 1)).to_string()},
      {"vendor", "openai"},
      {"ttl", hold_ttl},
      {"on_expiry", "capture"}};
}

// The SPEC denial fields beside the vendor-shaped error (null where the refusal had none).
json::object refusal_fields(const json::object& stub_error) {
  const auto member = [&](std::string_view name) -> json::value {
    const auto* value = stub_error.if_contains(name);
    return value != nullptr ? *value : json::value(nullptr);
  };
  return json::object{{"budget", member("budget")},
                      {"requested", member("requested")},
                      {"available", member("available")},
                      {"stub", stub_error}};
}

json::object stub_error_field(const json::object& stub_error) {
  return json::object{{"stub", stub_error}};
}

// Headers never relayed (hop by hop, or recomputed here).
bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view names[] = {
      "connection", "keep-alive", "transfer-encoding", "content-length",     "upgrade",
      "te",         "trailer",    "proxy-connection",  "proxy-authenticate", "proxy-authorization"};
  return std::any_of(std::begin(names), std::end(names),
                     [&](std::string_view hop) { return beast::iequals(hop, name); });
}

// One call through the proxy.
class Call {
 public:
  Call(Proxy& proxy, tcp::socket& client, bhttp::request<bhttp::string_body>& request,
       Proxy::Deadline client_deadline)
      : proxy_(proxy),
        client_(client),
        request_(request),
        client_deadline_(std::move(client_deadline)),
        stub_request_id_("req_" + random_hex(12)) {}

  awaitable<bool> run();

 private:
  awaitable<bool> reply(int status, std::string body, bool no_retry = true) {
    bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status),
                                                 request_.version()};
    response.set(bhttp::field::server, "stub");
    response.set(bhttp::field::content_type, "application/json");
    response.set("x-stub-request-id", stub_request_id_);
    if (no_retry)
      response.set("x-should-retry", "false");
    response.keep_alive(request_.keep_alive());
    response.body() = std::move(body);
    response.prepare_payload();
    client_deadline_(std::chrono::seconds(30));
    auto [error, written] = co_await bhttp::async_write(client_, response, as_tuple_awaitable);
    client_deadline_(Clock::duration::zero());
    co_return !error && request_.keep_alive();
  }

  // Calls the ledger's own API with the caller's credential.
  awaitable<ApiReply> api_call(std::string method, std::string target, const json::object& body) {
    ApiRequest call;
    call.method = std::move(method);
    call.target = std::move(target);
    call.authorization = authorization_;
    call.idempotency_key = "proxy_" + random_hex(16);
    call.body = json::serialize(body);
    co_return co_await proxy_.api().handle(std::move(call));
  }

  awaitable<Result<VendorUse>> load_vendor(const std::string& name);
  awaitable<void> settle(bool capture, std::optional<int64_t> micros);
  json::object receipt() const;

  // The upstream exchange: returns whether the client connection stays usable.
  awaitable<bool> forward(VendorUse& vendor, std::string body);

  Proxy& proxy_;
  tcp::socket& client_;
  bhttp::request<bhttp::string_body>& request_;
  Proxy::Deadline client_deadline_;
  std::string stub_request_id_;
  std::string authorization_;
  std::string model_;
  const proxy::ModelPrice* price_ = nullptr;
  bool streaming_ = false;
  bool usage_injected_ = false;
  std::string hold_id_;
  int64_t held_micros_ = 0;
  Usage usage_;
  std::string vendor_request_id_;
  int upstream_status_ = 0;
  bool settled_ = false;
};

awaitable<Result<VendorUse>> Call::load_vendor(const std::string& name) {
  ApiContext& context = proxy_.api().context();
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto vendor_work = [&context, name] { return context.store.get_vendor(name); };
  auto stored = co_await run_blocking(context.read_pool, std::move(vendor_work));
  if (!stored.ok())
    co_return stored.error();
  if (!stored.value()) {
    co_return Error{ErrorCode::unavailable, "vendor_not_configured",
                    "Stub has no vendor named " + name +
                        ": the admin sets it with PUT /v1/vendors/" + name + "."};
  }
  const ledger::Vendor& vendor = *stored.value();
  VendorUse out;
  out.name = vendor.name;
  boost::system::error_code error;
  const json::value settings = json::parse(vendor.settings_json, error);
  if (error || !settings.is_object())
    co_return Error{ErrorCode::internal, "vendor_unreadable", "Vendor settings unreadable."};
  const auto& object = settings.get_object();
  const auto text = [&](std::string_view field) {
    const auto* value = object.if_contains(field);
    return value != nullptr && value->is_string() ? std::string(value->get_string())
                                                  : std::string();
  };
  out.kind = text("kind");
  auto upstream = parse_base_url(text("base_url"));
  if (!upstream)
    co_return Error{ErrorCode::internal, "vendor_unreadable", "Vendor base_url unreadable."};
  out.upstream = *upstream;
  out.credential_header = text("credential_header");
  if (out.credential_header.empty())
    out.credential_header = std::string(proxy::default_credential_header(out.kind));
  if (const auto* timeouts = object.if_contains("timeouts");
      timeouts != nullptr && timeouts->is_object()) {
    for (const auto& [field, into] : {std::pair{"connect_ms", &out.timeouts.connect},
                                      std::pair{"first_byte_ms", &out.timeouts.first_byte},
                                      std::pair{"idle_ms", &out.timeouts.idle}}) {
      if (const auto* value = timeouts->get_object().if_contains(field);
          value != nullptr && value->is_int64()) {
        *into = std::chrono::milliseconds(value->get_int64());
      }
    }
  }
  if (context.secret_box == nullptr)
    co_return Error{ErrorCode::unavailable, "secret_key_missing", "No secret key to open."};
  auto credential = context.secret_box->open(vendor.credential, vendor.name);
  if (!credential.ok())
    co_return credential.error();
  out.credential = std::move(credential).value();
  co_return out;
}

json::object Call::receipt() const {
  json::object out{{"vendor", "openai"},
                   {"model", model_},
                   {"stub_request_id", stub_request_id_},
                   {"stream", streaming_}};
  if (usage_.seen) {
    out["input_tokens"] = usage_.input_tokens;
    out["output_tokens"] = usage_.output_tokens;
  }
  if (!vendor_request_id_.empty())
    out["vendor_request_id"] = vendor_request_id_;
  if (upstream_status_ != 0)
    out["upstream_status"] = upstream_status_;
  return out;
}

// Settles the hold once: capture `micros` (clamped to what was held; zero voids) or void.
awaitable<void> Call::settle(bool capture, std::optional<int64_t> micros) {
  if (settled_ || hold_id_.empty())
    co_return;
  settled_ = true;
  const int64_t amount = std::min(micros.value_or(held_micros_), held_micros_);
  ApiReply answer;
  if (capture && amount > 0) {
    answer = co_await api_call("POST", "/v1/holds/" + hold_id_ + "/capture",
                               capture_request(amount, receipt()));
  } else {
    answer = co_await api_call("POST", "/v1/holds/" + hold_id_ + "/void", json::object{});
  }
  if (answer.status != 200) {
    // The hold's own expiry (on_expiry: capture) settles it at the worst case.
    spdlog::warn("proxy {}: settling hold {} answered {}", stub_request_id_, hold_id_,
                 answer.status);
  }
}

awaitable<bool> Call::run() {
  const std::string target(request_.target());
  const bool chat = target == "/proxy/openai/v1/chat/completions" ||
                    target.starts_with("/proxy/openai/v1/chat/completions?");
  if (!chat || request_.method() != bhttp::verb::post) {
    co_return co_await reply(
        404, openai_error_body("invalid_request_error", "unknown_route",
                               "Stub's proxy has no route " +
                                   std::string(request_.method_string()) + " " + target + "."));
  }
  // The caller's Stub key: "Authorization: Bearer <key>" or "x-api-key: <key>".
  authorization_ = std::string(request_[bhttp::field::authorization]);
  if (authorization_.empty() && !request_["x-api-key"].empty())
    authorization_ = "Bearer " + std::string(request_["x-api-key"]);
  if (authorization_.empty()) {
    co_return co_await reply(
        401, openai_error_body("invalid_request_error", "missing_api_key",
                               "Send a Stub agent key as the API key (Authorization: Bearer or "
                               "x-api-key)."));
  }

  {
    ApiContext& context = proxy_.api().context();
    const ledger::Micros now = context.clock();
    auto principal = context.authenticator.authenticate_without_store(authorization_, now);
    if (!principal) {
      // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
      auto auth_work = [&context, this, now] {
        return context.authenticator.authenticate(authorization_, now);
      };
      principal = co_await run_blocking(context.read_pool, std::move(auth_work));
    }
    if (!principal->ok()) {
      co_return co_await reply(401, openai_error_body("invalid_request_error", "invalid_api_key",
                                                      principal->error().message));
    }
    if (principal->value().admin) {
      co_return co_await reply(
          403, openai_error_body("permission_error", "agent_key_required",
                                 "The proxy meters an agent's budget: call it with a Stub agent "
                                 "key, not the admin token."));
    }
  }

  boost::system::error_code parse_error;
  json::value parsed = json::parse(request_.body(), parse_error);
  if (parse_error || !parsed.is_object()) {
    co_return co_await reply(400, openai_error_body("invalid_request_error", "invalid_json",
                                                    "The request body is not a JSON object."));
  }
  json::object& body = parsed.get_object();
  const auto* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty()) {
    co_return co_await reply(400, openai_error_body("invalid_request_error", "missing_model",
                                                    "Field \"model\" is required."));
  }
  model_ = std::string(model->get_string());
  price_ = proxy_.prices().find(model_);
  if (price_ == nullptr) {
    co_return co_await reply(
        400, openai_error_body("invalid_request_error", "unknown_model",
                               "Stub has no price for model " + model_ +
                                   " (prices/llm.json), so it cannot hold its worst case."));
  }
  int64_t n = 1;
  if (const auto* given = body.if_contains("n"); given != nullptr && !given->is_null()) {
    if (!given->is_int64() || given->get_int64() < 1 || given->get_int64() > 128) {
      co_return co_await reply(400, openai_error_body("invalid_request_error", "invalid_n",
                                                      "Field \"n\" must be from 1 to 128."));
    }
    n = given->get_int64();
  }
  const int64_t model_max =
      price_->max_output_tokens > 0 ? price_->max_output_tokens : int64_t{32'768};
  int64_t max_output = model_max;
  for (const char* field : {"max_completion_tokens", "max_tokens"}) {
    const auto* given = body.if_contains(field);
    if (given == nullptr || given->is_null())
      continue;
    if (!given->is_int64() || given->get_int64() < 1) {
      co_return co_await reply(400, openai_error_body("invalid_request_error", "invalid_max_tokens",
                                                      std::string("Field \"") + field +
                                                          "\" must be a positive integer."));
    }
    max_output = std::min(max_output, given->get_int64());
  }
  if (const auto* stream = body.if_contains("stream"); stream != nullptr && stream->is_bool())
    streaming_ = stream->get_bool();
  // The input is at most one token per byte of the request; never more than the window.
  int64_t input_estimate = static_cast<int64_t>(request_.body().size());
  if (price_->context_window > 0)
    input_estimate = std::min(input_estimate, price_->context_window);
  const int64_t worst_one = cost_micros(*price_, input_estimate, max_output);
  const int64_t worst =
      worst_one > ledger::Money::micros_max / n ? ledger::Money::micros_max : worst_one * n;

  // What is sent upstream: the body as given, or, for a stream that did not ask for usage,
  // with stream_options.include_usage (its extra chunk is kept from the client).
  std::string upstream_body = request_.body();
  if (streaming_) {
    json::value* options = body.if_contains("stream_options");
    const bool asked = options != nullptr && options->is_object() &&
                       options->get_object().contains("include_usage") &&
                       options->get_object()["include_usage"] == true;
    if (!asked) {
      if (options == nullptr || !options->is_object())
        body["stream_options"] = json::object{};
      body["stream_options"].get_object()["include_usage"] = true;
      usage_injected_ = true;
      upstream_body = json::serialize(body);
    }
  }

  auto vendor = co_await load_vendor("openai");
  if (!vendor.ok()) {
    co_return co_await reply(
        503, openai_error_body("api_error", vendor.error().subcode, vendor.error().message));
  }

  // Tags and intent from x-stub-tag-<key> and x-stub-intent.
  json::object tags;
  for (const auto& field : request_) {
    const std::string_view name = field.name_string();
    if (name.size() > 10 && beast::iequals(name.substr(0, 10), "x-stub-tag")) {
      if (name[10] != '-' || name.size() == 11)
        continue;
      std::string key(name.substr(11));
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      tags[key] = std::string(field.value());
    }
  }
  json::object hold = hold_request(worst);
  if (!request_["x-stub-intent"].empty())
    hold["intent"] = std::string(request_["x-stub-intent"]);
  if (!tags.empty())
    hold["tags"] = std::move(tags);
  const ApiReply held = co_await api_call("POST", "/v1/holds", hold);
  if (held.status != 201) {
    boost::system::error_code error;
    json::value answer = json::parse(held.body, error);
    json::object stub_error;
    if (!error && answer.is_object() && answer.get_object().contains("error") &&
        answer.get_object()["error"].is_object()) {
      stub_error = answer.get_object()["error"].get_object();
    }
    const auto field = [&](std::string_view name) {
      const auto* value = stub_error.if_contains(name);
      return value != nullptr && value->is_string() ? std::string(value->get_string())
                                                    : std::string();
    };
    if (held.status == 402) {
      json::object extra = refusal_fields(stub_error);
      co_return co_await reply(
          402, openai_error_body("insufficient_quota", "budget_exceeded",
                                 "Stub budget " + field("budget") + " refused this call (" +
                                     field("code") + "): " + field("message"),
                                 std::move(extra)));
    }
    const std::string type = held.status == 401   ? "authentication_error"
                             : held.status == 403 ? "permission_error"
                                                  : "invalid_request_error";
    co_return co_await reply(held.status, openai_error_body(type, field("code"), field("message"),
                                                            stub_error_field(stub_error)));
  }
  {
    json::value answer = json::parse(held.body);
    hold_id_ = std::string(answer.get_object()["id"].get_string());
    held_micros_ = ledger::Money::parse(answer.get_object()["amount"].get_string())->micros();
  }
  const bool keep = co_await forward(*vendor, std::move(upstream_body));
  co_await settle(true, std::nullopt);  // only if nothing settled it: the worst case
  co_return keep;
}

awaitable<bool> Call::forward(VendorUse& vendor, std::string body) {
  auto executor = co_await asio::this_coro::executor;
  const Upstream& upstream = vendor.upstream;
  const std::string key =
      (upstream.tls ? "https://" : "http://") + upstream.host + ":" + upstream.port;
  auto watch_state = std::make_shared<Watch>(executor);
  struct StopWatch {
    std::shared_ptr<Watch> state;
    ~StopWatch() {
      state->done = true;
      state->timer.cancel();
    }
  } stop_watch{watch_state};
  asio::co_spawn(executor, watch(watch_state), asio::detached);

  // A connection: an idle one from the pool, else a new one.
  std::unique_ptr<Proxy::Connection> connection = proxy_.take_idle(key);
  const bool reused = connection != nullptr;
  if (!connection) {
    connection = std::make_unique<Proxy::Connection>();
    connection->key = key;
    tcp::resolver resolver(proxy_.upstream_executor());
    watch_state->deadline = Clock::now() + vendor.timeouts.connect;
    auto [resolve_error, endpoints] =
        co_await resolver.async_resolve(upstream.host, upstream.port, as_tuple_awaitable);
    bool connected = !resolve_error;
    if (connected) {
      if (upstream.tls) {
        connection->secure.emplace(proxy_.upstream_executor(), proxy_.tls());
      } else {
        connection->plain.emplace(proxy_.upstream_executor());
      }
      watch_state->socket = &connection->socket();
      auto [connect_error, endpoint] =
          co_await asio::async_connect(connection->socket(), endpoints, as_tuple_awaitable);
      connected = !connect_error;
    }
    if (connected && upstream.tls) {
      boost::system::error_code ignored;
      (void)asio::ip::make_address(upstream.host, ignored);
      if (ignored)  // SNI names hosts, never addresses
        SSL_set_tlsext_host_name(connection->secure->native_handle(), upstream.host.c_str());
      connection->secure->set_verify_mode(asio::ssl::verify_peer);
      connection->secure->set_verify_callback(asio::ssl::host_name_verification(upstream.host));
      auto [handshake_error] = co_await connection->secure->async_handshake(
          asio::ssl::stream_base::client, as_tuple_awaitable);
      connected = !handshake_error;
    }
    if (!connected) {
      // Never sent: nothing can have been billed.
      co_await settle(false, std::nullopt);
      co_return co_await reply(502,
                               openai_error_body("api_error", "upstream_unreachable",
                                                 "Stub could not reach the vendor at " + key + "."),
                               false);
    }
  }
  watch_state->socket = &connection->socket();

  bhttp::request<bhttp::string_body> out{
      bhttp::verb::post,
      upstream.prefix +
          std::string(request_.target()).substr(std::string_view("/proxy/openai").size()),
      11};
  out.set(bhttp::field::host, upstream.host);
  out.set(bhttp::field::content_type, "application/json");
  for (const auto name : {bhttp::field::accept, bhttp::field::user_agent})
    if (!request_[name].empty())
      out.set(name, request_[name]);
  if (beast::iequals(vendor.credential_header, "authorization"))
    out.set(bhttp::field::authorization, "Bearer " + vendor.credential);
  else
    out.set(vendor.credential_header, vendor.credential);
  out.keep_alive(true);
  out.body() = std::move(body);
  out.prepare_payload();

  const auto io = [&](auto&& operation) -> decltype(operation(*connection->plain)) {
    return connection->secure ? operation(*connection->secure) : operation(*connection->plain);
  };
  watch_state->deadline = Clock::now() + vendor.timeouts.connect;
  auto [write_error, written] = co_await io(
      [&](auto& stream) { return bhttp::async_write(stream, out, as_tuple_awaitable); });
  if (write_error) {
    // A reused connection the vendor had closed takes nothing; a fresh one may have sent part.
    co_await settle(reused ? false : true, std::nullopt);
    co_return co_await reply(
        502, openai_error_body("api_error", "upstream_failed", "Sending to the vendor failed."),
        false);
  }

  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);
  watch_state->deadline = Clock::now() + vendor.timeouts.first_byte;
  auto [header_error, header_bytes] = co_await io([&](auto& stream) {
    return bhttp::async_read_header(stream, connection->buffer, parser, as_tuple_awaitable);
  });
  if (header_error) {
    // Sent and never answered: it may have been billed.
    co_await settle(true, std::nullopt);
    co_return co_await reply(
        502,
        openai_error_body("api_error", "upstream_failed",
                          watch_state->fired ? "The vendor did not answer in time."
                                             : "The vendor's answer was cut off."),
        false);
  }
  auto& head = parser.get();
  upstream_status_ = static_cast<int>(head.result_int());
  vendor_request_id_ = std::string(head["x-request-id"]);
  const bool event_stream = head[bhttp::field::content_type].starts_with("text/event-stream");

  bhttp::response<bhttp::empty_body> client_head{head.result(), request_.version()};
  for (const auto& field : head) {
    if (!hop_by_hop(field.name_string()))
      client_head.insert(field.name_string(), field.value());
  }
  client_head.set("x-stub-request-id", stub_request_id_);
  client_head.set("x-stub-hold-id", hold_id_);
  client_head.keep_alive(request_.keep_alive());

  // Reads the next piece of the answer into `chunk`; false at the end or on an error.
  std::array<char, read_chunk_bytes> chunk{};
  bool upstream_failed = false;
  const auto read_piece = [&]() -> awaitable<std::string_view> {
    if (parser.is_done())
      co_return std::string_view();
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    watch_state->deadline = Clock::now() + vendor.timeouts.idle;
    auto [error, bytes] = co_await io([&](auto& stream) {
      return bhttp::async_read_some(stream, connection->buffer, parser, as_tuple_awaitable);
    });
    if (error == bhttp::error::need_buffer)
      error = {};
    if (error) {
      upstream_failed = true;
      co_return std::string_view();
    }
    co_return std::string_view(chunk.data(), chunk.size() - parser.get().body().size);
  };

  if (!event_stream) {
    std::string answer;
    while (!parser.is_done()) {
      const std::string_view piece = co_await read_piece();
      if (upstream_failed)
        break;
      if (answer.size() + piece.size() > proxy_.options().response_bytes_max) {
        upstream_failed = true;
        break;
      }
      answer.append(piece);
    }
    if (upstream_failed) {
      co_await settle(true, std::nullopt);
      co_return co_await reply(502,
                               openai_error_body("api_error", "upstream_failed",
                                                 "The vendor's answer was cut off or too "
                                                 "large."),
                               false);
    }
    boost::system::error_code error;
    const json::value document = json::parse(answer, error);
    if (!error)
      read_usage(document, usage_);
    if (head.keep_alive()) {
      watch_state->socket = nullptr;
      connection->idle_since = Clock::now();
      proxy_.give_back(std::move(connection));
    }
    // The client has its answer before the capture commits: a crash in between leaves the hold
    // to expire, and its expiry captures the worst case (never less than the real cost).
    bhttp::response<bhttp::string_body> response{std::move(client_head.base())};
    response.body() = std::move(answer);
    response.prepare_payload();
    client_deadline_(std::chrono::seconds(30));
    auto [client_error, sent] = co_await bhttp::async_write(client_, response, as_tuple_awaitable);
    client_deadline_(Clock::duration::zero());
    const bool success = upstream_status_ >= 200 && upstream_status_ < 300;
    if (usage_.seen) {
      co_await settle(true, cost_micros(*price_, usage_.input_tokens, usage_.output_tokens));
    } else if (!success) {
      co_await settle(false, std::nullopt);  // the vendor refused it and says so
    } else {
      co_await settle(true, std::nullopt);  // answered, but unpriceable: the worst case
    }
    co_return !client_error && request_.keep_alive();
  }

  // A stream: relayed event by event as it arrives. Reading the next piece waits for the
  // client to take the last one, so a slow client slows the vendor (back-pressure) and memory
  // stays at one read buffer and one partial event.
  client_head.chunked(true);
  bhttp::response_serializer<bhttp::empty_body> serializer(client_head);
  client_deadline_(std::chrono::seconds(30));
  auto [head_error, head_sent] =
      co_await bhttp::async_write_header(client_, serializer, as_tuple_awaitable);
  bool client_gone = static_cast<bool>(head_error);
  std::string pending;  // the start of an event not yet complete
  while (!client_gone && !parser.is_done()) {
    const std::string_view piece = co_await read_piece();
    if (upstream_failed)
      break;
    pending.append(piece);
    std::string out_text;
    size_t start = 0;
    while (true) {
      size_t end = pending.find("\n\n", start);
      size_t separator = 2;
      const size_t crlf = pending.find("\r\n\r\n", start);
      if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
        end = crlf;
        separator = 4;
      }
      if (end == std::string::npos)
        break;
      const std::string_view event(pending.data() + start, end + separator - start);
      start = end + separator;
      bool strip = false;
      const size_t data = event.find("data:");
      if (data != std::string::npos) {
        std::string_view payload = event.substr(data + 5);
        while (!payload.empty() && payload.front() == ' ')
          payload.remove_prefix(1);
        if (payload.starts_with("{")) {
          boost::system::error_code error;
          const json::value document = json::parse(payload, error);
          if (!error && document.is_object()) {
            Usage seen;
            read_usage(document, seen);
            if (seen.seen) {
              usage_ = seen;
              const auto* choices = document.get_object().if_contains("choices");
              strip = usage_injected_ && choices != nullptr && choices->is_array() &&
                      choices->get_array().empty();
            }
          }
        }
      }
      if (!strip)
        out_text.append(event);
    }
    pending.erase(0, start);
    if (pending.size() > proxy_.options().event_bytes_max) {
      upstream_failed = true;
      break;
    }
    if (out_text.empty())
      continue;
    client_deadline_(std::chrono::seconds(30));
    auto [error, sent] = co_await asio::async_write(
        client_, bhttp::make_chunk(asio::buffer(out_text)), as_tuple_awaitable);
    client_gone = static_cast<bool>(error);
  }
  if (!client_gone && !upstream_failed && !pending.empty()) {
    auto [error, sent] = co_await asio::async_write(
        client_, bhttp::make_chunk(asio::buffer(pending)), as_tuple_awaitable);
    client_gone = static_cast<bool>(error);
  }
  const bool complete = parser.is_done() && !upstream_failed;
  if (complete && usage_.seen) {
    co_await settle(true, cost_micros(*price_, usage_.input_tokens, usage_.output_tokens));
  } else if (complete && !(upstream_status_ >= 200 && upstream_status_ < 300)) {
    co_await settle(false, std::nullopt);
  } else {
    // Cut off (client gone, vendor failed) or no usage: it may have been billed in full.
    // The usage chunk, when it came, is the vendor's own final count.
    co_await settle(true, usage_.seen ? std::optional<int64_t>(cost_micros(
                                            *price_, usage_.input_tokens, usage_.output_tokens))
                                      : std::nullopt);
  }
  if (complete && head.keep_alive()) {
    watch_state->socket = nullptr;
    connection->idle_since = Clock::now();
    proxy_.give_back(std::move(connection));
  }
  if (client_gone || upstream_failed)
    co_return false;
  auto [last_error, last_sent] =
      co_await asio::async_write(client_, bhttp::make_chunk_last(), as_tuple_awaitable);
  client_deadline_(Clock::duration::zero());
  co_return !last_error && request_.keep_alive();
}

}  // namespace

Proxy::Proxy(Api& api, ProxyOptions options, asio::any_io_executor upstream_executor)
    : api_(api),
      upstream_executor_(std::move(upstream_executor)),
      options_(std::move(options)),
      prices_(options_.prices != nullptr ? options_.prices : &proxy::PriceTable::embedded()),
      tls_(asio::ssl::context::tls_client) {
  if (options_.upstream_ca_file.empty())
    tls_.set_default_verify_paths();
  else
    tls_.load_verify_file(options_.upstream_ca_file);
  tls_.set_verify_mode(asio::ssl::verify_peer);
}

Proxy::~Proxy() = default;

std::unique_ptr<Proxy::Connection> Proxy::take_idle(const std::string& key) {
  std::lock_guard lock(idle_mutex_);
  auto found = idle_.find(key);
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

void Proxy::give_back(std::unique_ptr<Connection> connection) {
  std::lock_guard lock(idle_mutex_);
  auto& list = idle_[connection->key];
  if (list.size() < options_.idle_connections_max)
    list.push_back(std::move(connection));
}

awaitable<bool> Proxy::serve(tcp::socket& client, bhttp::request<bhttp::string_body>& request,
                             Deadline client_deadline) {
  Call call(*this, client, request, std::move(client_deadline));
  co_return co_await call.run();
}

}  // namespace stub::http
