#pragma once

// The HTTP API of SPEC section 3: routing, authentication, input checks, and the mapping of
// outcomes to replies. Commands go to the sequencer; reads go to the read pool. Speaks domain
// types; error_mapping.hpp is the one place codes become statuses.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "checkpoints/signing_key.hpp"
#include "engine/event_bus.hpp"
#include "engine/sequencer.hpp"
#include "http/credentials.hpp"
#include "http/hold_waiters.hpp"
#include "http/metrics.hpp"
#include "http/replays.hpp"
#include "http/sessions.hpp"
#include "proxy/secret_box.hpp"
#include "store/store.hpp"

namespace stub::http {

class Forwarder;
class RootLeadership;

struct ApiRequest {
  std::string method;  // "GET", "POST", "PUT", "DELETE"
  std::string target;  // path and query
  std::string authorization;
  std::string idempotency_key;
  std::string body;
  // For browser sessions (the dashboard) and its static files.
  std::string cookie;
  std::string origin;
  std::string host;
  std::string csrf_token;  // X-Stub-CSRF
  std::string if_none_match;
  std::string accept_encoding;
  std::string content_type;
  // Carried x-stub-forwarded: another instance forwarded it to this one as the root's leader
  // (http/forwarder.hpp); it is committed here, never forwarded again.
  bool forwarded = false;
};

// A body produced while it is sent (GET /v1/export): the server sends each piece next() returns
// as one HTTP/1.1 chunk until it returns an empty string, so memory stays at one piece whatever
// the size. An error after the headers are out cuts the connection before the last chunk, so a
// client sees the body as incomplete, never as a shorter whole.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  virtual boost::asio::awaitable<Result<std::string>> next() = 0;
};

struct ApiReply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::string route;  // the route template, for metrics and logs
  std::vector<std::pair<std::string, std::string>> headers = {};  // extra response headers
  std::shared_ptr<BodyStream> stream = {};  // set: `body` is empty and this is sent chunked
  // The answer of the root's leader, relayed as it came (its 5xx bodies already redacted there).
  bool relayed = false;
};

struct ApiContext {
  store::Store& store;
  engine::Sequencer& sequencer;
  engine::EventBus& events;
  Authenticator& authenticator;
  Metrics& metrics;
  boost::asio::thread_pool& read_pool;
  engine::Clock clock;
  SessionStore& sessions;
  ReplayRunner* replays = nullptr;  // null: no replays on this server
  // The public key of the checkpoint signer; null: this server signs no checkpoints.
  const checkpoints::VerifyingKey* checkpoint_key = nullptr;
  // Seals vendor credentials (proxy/secret_box.hpp); null: vendors cannot be given one.
  const proxy::SecretBox* secret_box = nullptr;
  // Which contended roots have a leader elsewhere (http/root_leadership.hpp); null: this
  // instance never forwards.
  RootLeadership* leadership = nullptr;
};

// Which committed entries an event stream sends.
struct EventFilter {
  std::string root;        // empty: every root the caller may see
  std::string subtree;     // empty: everything under root; else only entries within this node
  int64_t after = 0;       // resume after this seq (root must be set)
  bool backlog = false;    // ?after= was given: send stored entries after it first
  std::string key_id;      // the agent key streaming (empty: the admin); re-checked every second
  std::string session_id;  // the browser session streaming (empty: a bearer token); re-checked
};

// How often a long poll or an event stream re-reads its key, so that one revoked or expired
// meanwhile is cut off within key_recheck_interval (well inside 2 s).
inline constexpr std::chrono::milliseconds key_recheck_interval{1'000};

class Api {
 public:
  static constexpr size_t entries_page_max = 1'000;

  explicit Api(ApiContext context)
      : context_(std::move(context)), waiters_(context_.events, context_.read_pool) {}

  boost::asio::awaitable<ApiReply> handle(ApiRequest request);

  // For GET /v1/events, which the server streams itself: authenticates and builds the filter,
  // or returns the reply to send instead.
  boost::asio::awaitable<Result<EventFilter>> open_event_stream(const ApiRequest& request);
  ApiContext& context() { return context_; }
  // Forwards writes to root leaders; set by the server before it accepts (null: none).
  void set_forwarder(Forwarder* forwarder) { forwarder_ = forwarder; }
  Forwarder* forwarder() const { return forwarder_; }
  HoldWaiters& waiters() { return waiters_; }
  // Whether key `key_id` may still act (not revoked, not expired), read from the store.
  boost::asio::awaitable<Status> key_still_usable(const std::string& key_id);

 private:
  ApiContext context_;
  HoldWaiters waiters_;
  Forwarder* forwarder_ = nullptr;
};

// The reply for an error, with the status from the one mapping table.
ApiReply error_reply(const Error& error);

}  // namespace stub::http
