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
#include "proxy/metering.hpp"
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
  json::value cost;  // a generic vendor's cost rule (routes_vendors.cpp's parse_cost)
};

enum class Endpoint { chat, responses, embeddings, messages, count_tokens, models, generic };
enum class Family { openai, anthropic, generic };  // whose error shape the caller expects

// What one request asks of the proxy: the endpoint, the vendor it goes to, and the target on
// that vendor (after its base URL's path), query included.
struct Route {
  Endpoint endpoint = Endpoint::chat;
  std::string vendor;
  std::string upstream_target;
};

std::optional<proxy::LlmApi> llm_api(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::chat:
      return proxy::LlmApi::chat;
    case Endpoint::responses:
      return proxy::LlmApi::responses;
    case Endpoint::embeddings:
      return proxy::LlmApi::embeddings;
    case Endpoint::messages:
      return proxy::LlmApi::messages;
    default:
      return std::nullopt;
  }
}

Family family_of(std::string_view target) {
  if (target.starts_with("/proxy/anthropic/"))
    return Family::anthropic;
  if (target.starts_with("/proxy/v/"))
    return Family::generic;
  return Family::openai;
}

bool vendor_name_ok(std::string_view name) {
  if (name.empty() || name.size() > 63)
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_')))
      return false;
  }
  return true;
}

// A path that cannot climb out of the vendor's base URL: no "." or ".." segment, spelled
// plainly or percent-encoded.
bool path_stays_below(std::string_view path) {
  size_t start = 0;
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    std::string segment(path.substr(start, end - start));
    std::transform(segment.begin(), segment.end(), segment.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (size_t at; (at = segment.find("%2e")) != std::string::npos;)
      segment.replace(at, 3, ".");
    if (segment == "." || segment == "..")
      return false;
    start = end + 1;
  }
  return true;
}

std::optional<Route> match_route(bhttp::verb method, std::string_view target) {
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  const bool post = method == bhttp::verb::post;
  const bool get = method == bhttp::verb::get;
  const auto llm = [&](std::string_view prefix, std::string vendor) -> std::optional<Route> {
    const std::string_view rest = path.substr(prefix.size());
    Route route;
    route.vendor = std::move(vendor);
    route.upstream_target = std::string(target.substr(prefix.size()));
    if (prefix == "/proxy/openai") {
      if (post && rest == "/v1/chat/completions")
        route.endpoint = Endpoint::chat;
      else if (post && rest == "/v1/responses")
        route.endpoint = Endpoint::responses;
      else if (post && rest == "/v1/embeddings")
        route.endpoint = Endpoint::embeddings;
      else if (get &&
               (rest == "/v1/models" || (rest.starts_with("/v1/models/") && rest.size() > 11 &&
                                         rest.find('/', 11) == std::string_view::npos)))
        route.endpoint = Endpoint::models;
      else
        return std::nullopt;
    } else {
      if (post && rest == "/v1/messages")
        route.endpoint = Endpoint::messages;
      else if (post && rest == "/v1/messages/count_tokens")
        route.endpoint = Endpoint::count_tokens;
      else if (get &&
               (rest == "/v1/models" || (rest.starts_with("/v1/models/") && rest.size() > 11 &&
                                         rest.find('/', 11) == std::string_view::npos)))
        route.endpoint = Endpoint::models;
      else
        return std::nullopt;
    }
    return route;
  };
  if (path.starts_with("/proxy/openai/"))
    return llm("/proxy/openai", "openai");
  if (path.starts_with("/proxy/anthropic/"))
    return llm("/proxy/anthropic", "anthropic");
  if (path.starts_with("/proxy/v/")) {
    const std::string_view after = path.substr(9);
    const size_t slash = after.find('/');
    if (slash == std::string_view::npos || !vendor_name_ok(after.substr(0, slash)) ||
        !path_stays_below(after.substr(slash + 1))) {
      return std::nullopt;
    }
    Route route;
    route.endpoint = Endpoint::generic;
    route.vendor = std::string(after.substr(0, slash));
    route.upstream_target = std::string(target.substr(9 + slash));
    return route;
  }
  return std::nullopt;
}

std::string status_type(Family family, int status) {
  if (family == Family::anthropic) {
    switch (status) {
      case 401:
        return "authentication_error";
      case 402:
        return "billing_error";
      case 403:
        return "permission_error";
      case 404:
        return "not_found_error";
      case 413:
        return "request_too_large";
      case 429:
        return "rate_limit_error";
      default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
  }
  switch (status) {
    case 402:
      return "insufficient_quota";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

// An error shaped like the vendor's own, so its official client raises with a clear message:
// OpenAI {"error":{"type","code","message","param"}}, Anthropic {"type":"error","error":{"type",
// "message"}}; the generic pass-through answers in Stub's own shape. `extra` joins the error.
std::string error_body(Family family, int status, std::string_view code, std::string_view message,
                       json::object extra = {}) {
  json::object error{{"type", status_type(family, status)}, {"code", code}, {"message", message}};
  if (family == Family::openai)
    error["param"] = nullptr;
  if (family == Family::generic)
    error["type"] = status == 402 ? "denied" : "invalid_request";
  for (auto& member : extra)
    error[member.key()] = member.value();
  if (family == Family::anthropic)
    return json::serialize(json::object{{"type", "error"}, {"error", std::move(error)}});
  return json::serialize(json::object{{"error", std::move(error)}});
}

// The bodies the coroutines below send, built out here: g++ 12 rejects a braced json::object
// with string-literal members inside a coroutine ("array used as initializer").
json::object capture_request(int64_t micros, json::object receipt) {
  return json::object{{"amount", ledger::Money::from_micros(micros).to_string()},
                      {"receipt", std::move(receipt)}};
}

json::object hold_request(int64_t worst_micros, const std::string& vendor) {
  return json::object{
      {"amount", ledger::Money::from_micros(std::max<int64_t>(worst_micros, 1)).to_string()},
      {"vendor", vendor},
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

// Request headers never sent to the vendor: Stub's own, the caller's credentials (the vendor
// gets its real one), and the encoding (usage is read from the answer, so it comes plain).
bool kept_from_vendor(std::string_view name) {
  static constexpr std::string_view names[] = {
      "host",   "authorization", "x-api-key", "cookie",    "accept-encoding",
      "expect", "origin",        "referer",   "forwarded", "x-forwarded-for"};
  if (name.size() >= 7 && beast::iequals(name.substr(0, 7), "x-stub-"))
    return true;
  return std::any_of(std::begin(names), std::end(names),
                     [&](std::string_view kept) { return beast::iequals(kept, name); });
}

// Headers never relayed (hop by hop, or recomputed here).
bool hop_by_hop(std::string_view name) {
  static constexpr std::string_view names[] = {
      "connection", "keep-alive", "transfer-encoding", "content-length",     "upgrade",
      "te",         "trailer",    "proxy-connection",  "proxy-authenticate", "proxy-authorization"};
  return std::any_of(std::begin(names), std::end(names),
                     [&](std::string_view hop) { return beast::iequals(hop, name); });
}

}  // namespace

// A hold's settlement through the ledger's own API, with the caller's credential.
struct Settlement {
  std::string authorization;
  std::string stub_request_id;
  std::string target;  // /v1/holds/{id}/capture or /void
  json::object body;
};

namespace {

awaitable<void> send_settlement(Proxy& proxy, Settlement settlement) {
  ApiRequest call;
  call.method = "POST";
  call.target = settlement.target;
  call.authorization = std::move(settlement.authorization);
  call.idempotency_key = "proxy_" + random_hex(16);
  call.body = json::serialize(settlement.body);
  const ApiReply answer = co_await proxy.api().handle(std::move(call));
  if (answer.status != 200) {
    // The hold's own expiry (on_expiry: capture) settles it at the worst case.
    spdlog::warn("proxy {}: {} answered {}", settlement.stub_request_id, settlement.target,
                 answer.status);
  }
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
        stub_request_id_("req_" + random_hex(12)),
        family_(family_of(request.target())) {}

  awaitable<bool> run();

 private:
  awaitable<bool> reply(int status, std::string body, bool no_retry = true) {
    bhttp::response<bhttp::string_body> response{static_cast<bhttp::status>(status),
                                                 request_.version()};
    response.set(bhttp::field::server, "stub");
    response.set(bhttp::field::content_type, "application/json");
    response.set("x-stub-request-id", stub_request_id_);
    if (!hold_id_.empty())
      response.set("x-stub-hold-id", hold_id_);
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

  awaitable<bool> fail(int status, std::string_view code, std::string_view message,
                       json::object extra = {}, bool no_retry = true) {
    co_return co_await reply(status, error_body(family_, status, code, message, std::move(extra)),
                             no_retry);
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

  awaitable<Result<Principal>> authenticate();
  awaitable<Result<VendorUse>> load_vendor(const std::string& name);
  // Each prices the call and holds it: nullopt once it is held, else the refusal or error has
  // been answered and the value says whether the client connection stays usable.
  awaitable<std::optional<bool>> price_llm_call(std::string& upstream_body);
  awaitable<std::optional<bool>> price_generic_call(const VendorUse& vendor);
  awaitable<std::optional<bool>> place_hold(int64_t micros);
  // Settles the hold once: capture `micros` (clamped to what was held; zero voids) or void.
  // The request to send, or nothing when the hold is settled already (or there is none).
  std::optional<Settlement> settlement(bool capture, std::optional<int64_t> micros);
  awaitable<void> settle(bool capture, std::optional<int64_t> micros);
  // The same in a coroutine of its own: the client's connection is free for its next request
  // at once. The hold's expiry (on_expiry: capture) covers a Stub that stops before it commits.
  void settle_in_background(bool capture, std::optional<int64_t> micros);
  // What the vendor's answer settles: (capture, micros; nullopt is what was held).
  std::pair<bool, std::optional<int64_t>> answer_settlement(bool complete) const;
  json::object receipt() const;

  // The upstream exchange: returns whether the client connection stays usable.
  awaitable<bool> forward(VendorUse& vendor, std::string body);

  Proxy& proxy_;
  tcp::socket& client_;
  bhttp::request<bhttp::string_body>& request_;
  Proxy::Deadline client_deadline_;
  std::string stub_request_id_;
  Family family_;
  Route route_;
  std::optional<proxy::LlmApi> api_;
  std::string authorization_;
  std::string key_root_;
  std::string model_;
  const proxy::ModelPrice* price_ = nullptr;
  bool streaming_ = false;
  bool usage_injected_ = false;
  std::string hold_id_;
  int64_t held_micros_ = 0;
  proxy::Usage usage_;
  bool usage_final_ = false;  // the vendor's own final count (not a stream's opening one)
  std::string vendor_request_id_;
  int upstream_status_ = 0;
  bool settled_ = false;
};

awaitable<Result<Principal>> Call::authenticate() {
  // The caller's Stub key: "Authorization: Bearer <key>" or "x-api-key: <key>".
  authorization_ = std::string(request_[bhttp::field::authorization]);
  if (authorization_.empty() && !request_["x-api-key"].empty())
    authorization_ = "Bearer " + std::string(request_["x-api-key"]);
  if (authorization_.empty()) {
    co_return Error{ErrorCode::unauthorized, "missing_api_key",
                    "Send a Stub agent key as the API key (Authorization: Bearer or x-api-key)."};
  }
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
  co_return std::move(*principal);
}

awaitable<Result<VendorUse>> Call::load_vendor(const std::string& name) {
  ApiContext& context = proxy_.api().context();
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto vendor_work = [&context, name] { return context.store.get_vendor(name); };
  auto stored = co_await run_blocking(context.read_pool, std::move(vendor_work));
  if (!stored.ok())
    co_return stored.error();
  // A vendor serves the keys of the root that configured it; to any other it does not exist.
  if (!stored.value() || stored.value()->root != key_root_) {
    co_return Error{ErrorCode::unavailable, "vendor_not_configured",
                    "Stub has no vendor named " + name + " for budget " + key_root_ +
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
  if (const auto* cost = object.if_contains("cost"); cost != nullptr && cost->is_object())
    out.cost = *cost;
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
  json::object out{{"vendor", route_.vendor}, {"stub_request_id", stub_request_id_}};
  if (api_) {
    out["model"] = model_;
    out["stream"] = streaming_;
    if (usage_.seen) {
      for (auto& member : proxy::usage_receipt(*api_, usage_))
        out[member.key()] = member.value();
    }
  } else {
    out["method"] = std::string(request_.method_string());
    const std::string_view target = route_.upstream_target;
    out["path"] = std::string(target.substr(0, target.find('?')));
  }
  if (!vendor_request_id_.empty())
    out["vendor_request_id"] = vendor_request_id_;
  if (upstream_status_ != 0)
    out["upstream_status"] = upstream_status_;
  return out;
}

std::optional<Settlement> Call::settlement(bool capture, std::optional<int64_t> micros) {
  if (settled_ || hold_id_.empty())
    return std::nullopt;
  settled_ = true;
  const int64_t amount = std::min(micros.value_or(held_micros_), held_micros_);
  Settlement out;
  out.authorization = authorization_;
  out.stub_request_id = stub_request_id_;
  if (capture && amount > 0) {
    out.target = "/v1/holds/" + hold_id_ + "/capture";
    out.body = capture_request(amount, receipt());
  } else {
    out.target = "/v1/holds/" + hold_id_ + "/void";
  }
  return out;
}

awaitable<void> Call::settle(bool capture, std::optional<int64_t> micros) {
  if (auto request = settlement(capture, micros))
    co_await send_settlement(proxy_, std::move(*request));
}

void Call::settle_in_background(bool capture, std::optional<int64_t> micros) {
  if (auto request = settlement(capture, micros))
    proxy_.settle_later(std::move(*request));
}

std::pair<bool, std::optional<int64_t>> Call::answer_settlement(bool complete) const {
  // The conservative rule: the vendor's final usage when it came; nothing when the vendor
  // refused the call outright (an answer below 500 that says so); the held amount otherwise
  // (cut off, a server error, or an answer that cannot be priced: it may have been billed).
  const bool success = upstream_status_ >= 200 && upstream_status_ < 300;
  if (api_ && usage_.seen && usage_final_)
    return {true, proxy::usage_cost_micros(*api_, *price_, usage_)};
  if (complete && !success && upstream_status_ < 500)
    return {false, std::nullopt};
  return {true, std::nullopt};
}

awaitable<std::optional<bool>> Call::place_hold(int64_t micros) {
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
  json::object hold = hold_request(micros, route_.vendor);
  if (!request_["x-stub-intent"].empty())
    hold["intent"] = std::string(request_["x-stub-intent"]);
  if (!tags.empty())
    hold["tags"] = std::move(tags);
  const ApiReply held = co_await api_call("POST", "/v1/holds", hold);
  if (held.status == 201) {
    json::value answer = json::parse(held.body);
    hold_id_ = std::string(answer.get_object()["id"].get_string());
    held_micros_ = ledger::Money::parse(answer.get_object()["amount"].get_string())->micros();
    co_return std::nullopt;
  }
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
  if (family_ == Family::generic) {
    // Stub's own refusal as the API gives it.
    co_return co_await reply(held.status, held.body);
  }
  if (held.status == 402) {
    co_return co_await fail(402, "budget_exceeded",
                            "Stub budget " + field("budget") + " refused this call (" +
                                field("code") + "): " + field("message"),
                            refusal_fields(stub_error));
  }
  co_return co_await fail(held.status, field("code"), field("message"),
                          stub_error_field(stub_error));
}

awaitable<std::optional<bool>> Call::price_llm_call(std::string& upstream_body) {
  boost::system::error_code parse_error;
  json::value parsed = json::parse(request_.body(), parse_error);
  if (parse_error || !parsed.is_object())
    co_return co_await fail(400, "invalid_json", "The request body is not a JSON object.");
  json::object& body = parsed.get_object();
  const auto* model = body.if_contains("model");
  if (model == nullptr || !model->is_string() || model->get_string().empty())
    co_return co_await fail(400, "missing_model", "Field \"model\" is required.");
  model_ = std::string(model->get_string());
  price_ = proxy_.prices().find(model_);
  if (price_ == nullptr) {
    co_return co_await fail(400, "unknown_model",
                            "Stub has no price for model " + model_ +
                                " (prices/llm.json), so it cannot hold its worst case.");
  }
  if (const auto* stream = body.if_contains("stream"); stream != nullptr && stream->is_bool())
    streaming_ = stream->get_bool();
  auto worst = proxy::worst_case(*api_, body, request_.body().size(), *price_);
  if (!worst.ok())
    co_return co_await fail(400, worst.error().subcode, worst.error().message);

  // A chat stream that did not ask for usage gets stream_options.include_usage upstream; its
  // extra chunk is kept from the client.
  upstream_body = request_.body();
  if (streaming_ && *api_ == proxy::LlmApi::chat) {
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
  co_return co_await place_hold(worst->micros);
}

awaitable<std::optional<bool>> Call::price_generic_call(const VendorUse& vendor) {
  if (vendor.kind != "generic") {
    co_return co_await fail(400, "not_a_generic_vendor",
                            "Vendor " + vendor.name + " is of kind " + vendor.kind +
                                ": call it at /proxy/" + vendor.kind +
                                "/..., not through the generic pass-through.");
  }
  if (vendor.cost.is_null()) {
    co_return co_await fail(503, "vendor_cost_missing",
                            "Vendor " + vendor.name +
                                " has no cost rule, so Stub cannot price its calls: the admin "
                                "sets \"cost\" with PUT /v1/vendors/" +
                                vendor.name + ".");
  }
  auto micros = proxy::generic_cost_micros(vendor.cost, request_[bhttp::field::content_type],
                                           request_.body());
  if (!micros.ok()) {
    const int status = micros.error().code == ErrorCode::invalid_input ? 400 : 500;
    co_return co_await fail(status, micros.error().subcode, micros.error().message);
  }
  co_return co_await place_hold(*micros);
}

awaitable<bool> Call::run() {
  const std::string target(request_.target());
  auto route = match_route(request_.method(), target);
  if (!route) {
    co_return co_await fail(404, "unknown_route",
                            "Stub's proxy has no route " + std::string(request_.method_string()) +
                                " " + target + " (docs/proxy.md).");
  }
  route_ = std::move(*route);
  api_ = llm_api(route_.endpoint);

  auto principal = co_await authenticate();
  if (!principal.ok()) {
    // A key that is no good is a 401; a store that cannot say is the store's error (503).
    const Error& error = principal.error();
    if (error.code != ErrorCode::unauthorized)
      co_return co_await fail(503, error.subcode, error.message, {}, false);
    co_return co_await fail(
        401, error.subcode == "missing_api_key" ? "missing_api_key" : "invalid_api_key",
        error.message);
  }
  if (principal->admin) {
    co_return co_await fail(403, "agent_key_required",
                            "The proxy meters an agent's budget: call it with a Stub agent "
                            "key, not the admin token.");
  }
  key_root_ = principal->key.budget.substr(0, principal->key.budget.find('/'));

  auto vendor = co_await load_vendor(route_.vendor);
  if (!vendor.ok())
    co_return co_await fail(503, vendor.error().subcode, vendor.error().message);

  // Listing models and counting tokens are free: forwarded with no hold.
  std::string upstream_body = request_.body();
  std::optional<bool> refused;
  if (api_)
    refused = co_await price_llm_call(upstream_body);
  else if (route_.endpoint == Endpoint::generic)
    refused = co_await price_generic_call(*vendor);
  if (refused)
    co_return *refused;
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
      co_return co_await fail(502, "upstream_unreachable",
                              "Stub could not reach the vendor at " + key + ".", {}, false);
    }
  }
  watch_state->socket = &connection->socket();

  // The request as the caller sent it, less what is Stub's or the caller's own (kept_from_
  // vendor), with the vendor's real credential.
  bhttp::request<bhttp::string_body> out{request_.method(),
                                         upstream.prefix + route_.upstream_target, 11};
  for (const auto& field : request_) {
    const std::string_view name = field.name_string();
    if (!hop_by_hop(name) && !kept_from_vendor(name) &&
        !beast::iequals(name, vendor.credential_header)) {
      out.insert(name, field.value());
    }
  }
  out.set(bhttp::field::host, upstream.host);
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
    co_await settle(!reused, std::nullopt);
    co_return co_await fail(502, "upstream_failed", "Sending to the vendor failed.", {}, false);
  }

  bhttp::response_parser<bhttp::buffer_body> parser;
  parser.body_limit(boost::none);
  if (request_.method() == bhttp::verb::head)
    parser.skip(true);
  watch_state->deadline = Clock::now() + vendor.timeouts.first_byte;
  auto [header_error, header_bytes] = co_await io([&](auto& stream) {
    return bhttp::async_read_header(stream, connection->buffer, parser, as_tuple_awaitable);
  });
  if (header_error) {
    // Sent and never answered: it may have been billed.
    co_await settle(true, std::nullopt);
    co_return co_await fail(502, "upstream_failed",
                            watch_state->fired ? "The vendor did not answer in time."
                                               : "The vendor's answer was cut off.",
                            {}, false);
  }
  auto& head = parser.get();
  upstream_status_ = static_cast<int>(head.result_int());
  vendor_request_id_ = std::string(head["x-request-id"]);
  if (vendor_request_id_.empty())
    vendor_request_id_ = std::string(head["request-id"]);  // Anthropic, Stripe
  const bool event_stream = head[bhttp::field::content_type].starts_with("text/event-stream");

  bhttp::response<bhttp::empty_body> client_head{head.result(), request_.version()};
  for (const auto& field : head) {
    if (!hop_by_hop(field.name_string()))
      client_head.insert(field.name_string(), field.value());
  }
  client_head.set("x-stub-request-id", stub_request_id_);
  if (!hold_id_.empty())
    client_head.set("x-stub-hold-id", hold_id_);
  client_head.keep_alive(request_.keep_alive());

  // Reads the next piece of the answer into `chunk`; empty at the end or on an error.
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
  const auto pool_connection = [&] {
    if (head.keep_alive()) {
      watch_state->socket = nullptr;
      connection->idle_since = Clock::now();
      proxy_.give_back(std::move(connection));
    }
  };

  if (api_ && !event_stream) {
    // A priced answer is read whole (bounded) for its usage, then sent on.
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
      co_return co_await fail(502, "upstream_failed",
                              "The vendor's answer was cut off or too large.", {}, false);
    }
    boost::system::error_code error;
    const json::value document = json::parse(answer, error);
    if (!error)
      usage_final_ = proxy::read_usage(*api_, document, usage_);
    pool_connection();
    // The client has its answer before the capture commits: a crash in between leaves the hold
    // to expire, and its expiry captures the worst case (never less than the real cost).
    bhttp::response<bhttp::string_body> response{std::move(client_head.base())};
    response.body() = std::move(answer);
    response.prepare_payload();
    client_deadline_(std::chrono::seconds(30));
    auto [client_error, sent] = co_await bhttp::async_write(client_, response, as_tuple_awaitable);
    client_deadline_(Clock::duration::zero());
    const auto [capture, micros] = answer_settlement(true);
    settle_in_background(capture, micros);
    co_return !client_error && request_.keep_alive();
  }

  // Relayed piece by piece as it arrives: a stream event by event (read for its usage when the
  // call is priced by usage), anything else byte for byte. Reading the next piece waits for the
  // client to take the last one, so a slow client slows the vendor (back-pressure) and memory
  // stays at one read buffer and one partial event.
  const bool scan_events = api_ && event_stream;
  const auto length = head.payload_size();
  bool chunked = false;
  if (parser.is_done()) {
    // No body: a HEAD's answer keeps the length it announces; 204 and 304 carry none.
    if (length && *length > 0)
      client_head.content_length(*length);
    else if (upstream_status_ != 204 && upstream_status_ != 304)
      client_head.content_length(0);
  } else if (length && !scan_events) {
    client_head.content_length(*length);
  } else {
    client_head.chunked(true);
    chunked = true;
  }
  bhttp::response_serializer<bhttp::empty_body> serializer(client_head);
  client_deadline_(std::chrono::seconds(30));
  auto [head_error, head_sent] =
      co_await bhttp::async_write_header(client_, serializer, as_tuple_awaitable);
  bool client_gone = static_cast<bool>(head_error);
  const auto send = [&](std::string_view text) -> awaitable<void> {
    if (text.empty() || client_gone)
      co_return;
    client_deadline_(std::chrono::seconds(30));
    boost::system::error_code error;
    if (chunked) {
      std::tie(error, std::ignore) = co_await asio::async_write(
          client_, bhttp::make_chunk(asio::buffer(text.data(), text.size())), as_tuple_awaitable);
    } else {
      std::tie(error, std::ignore) = co_await asio::async_write(
          client_, asio::buffer(text.data(), text.size()), as_tuple_awaitable);
    }
    client_gone = static_cast<bool>(error);
  };
  std::string pending;  // the start of an event not yet complete
  while (!client_gone && !parser.is_done()) {
    const std::string_view piece = co_await read_piece();
    if (upstream_failed)
      break;
    if (!scan_events) {
      co_await send(piece);
      continue;
    }
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
          if (!error && document.is_object() &&
              proxy::read_stream_usage(*api_, document.get_object(), usage_)) {
            // Anthropic's message_start gives the opening count; message_delta the final one.
            const auto* type = document.get_object().if_contains("type");
            usage_final_ =
                *api_ != proxy::LlmApi::messages || (type != nullptr && *type == "message_delta");
            const auto* choices = document.get_object().if_contains("choices");
            strip = usage_injected_ && choices != nullptr && choices->is_array() &&
                    choices->get_array().empty();
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
    co_await send(out_text);
  }
  if (!upstream_failed)
    co_await send(pending);
  const bool complete = parser.is_done() && !upstream_failed;
  const auto [capture, micros] = answer_settlement(complete && !client_gone);
  co_await settle(capture, micros);
  if (complete)
    pool_connection();
  if (client_gone || upstream_failed)
    co_return false;
  if (chunked) {
    auto [last_error, last_sent] =
        co_await asio::async_write(client_, bhttp::make_chunk_last(), as_tuple_awaitable);
    client_gone = static_cast<bool>(last_error);
  }
  client_deadline_(Clock::duration::zero());
  co_return !client_gone && request_.keep_alive();
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

namespace {

// Parameters by value: the coroutine frame owns them (never a lambda's captures).
awaitable<void> settle_tracked(Proxy& proxy, Settlement settlement,
                               std::shared_ptr<std::atomic<size_t>> in_flight) {
  co_await send_settlement(proxy, std::move(settlement));
  in_flight->fetch_sub(1);
}

}  // namespace

void Proxy::settle_later(Settlement settlement) {
  settlements_in_flight_->fetch_add(1);
  asio::co_spawn(upstream_executor_,
                 settle_tracked(*this, std::move(settlement), settlements_in_flight_),
                 asio::detached);
}

awaitable<bool> Proxy::serve(tcp::socket& client, bhttp::request<bhttp::string_body>& request,
                             Deadline client_deadline) {
  Call call(*this, client, request, std::move(client_deadline));
  co_return co_await call.run();
}

}  // namespace stub::http
