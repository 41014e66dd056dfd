// Routes: Signed checkpoints of each root's chain head (docs/api.md, "Signed checkpoints").

#include <boost/json/serialize.hpp>

#include "http/async_bridge.hpp"
#include "http/handler.hpp"
#include "ledger/checkpoint.hpp"

namespace stub::http::detail {

namespace {

constexpr int64_t checkpoints_page_max = 1'000;

}  // namespace

// GET /v1/checkpoints?root=R&after=SEQ&limit=N, GET /v1/checkpoints/key.
awaitable<std::optional<ApiReply>> Handler::route_checkpoints() {
  const auto& s = target_.segments;
  const size_t n = s.size();
  if (n < 2 || s[1] != "checkpoints" || request_.method != "GET")
    co_return std::nullopt;
  if (n == 2)
    co_return co_await list_checkpoints();
  if (n == 3 && s[2] == "key")
    co_return checkpoint_key();
  co_return std::nullopt;
}

ApiReply Handler::checkpoint_key() {
  const checkpoints::VerifyingKey* key = context_.checkpoint_key;
  if (key == nullptr) {
    return error_reply(Error{ErrorCode::not_found, "checkpoints_disabled",
                             "This server signs no checkpoints: start it with "
                             "--signing-key-file or STUB_SIGNING_KEY."});
  }
  return json_reply(200, boost::json::object{{"algorithm", "Ed25519"},
                                             {"key_id", key->key_id()},
                                             {"public_key", key->public_key_base64()},
                                             {"public_key_pem", key->public_key_pem()}});
}

awaitable<ApiReply> Handler::list_checkpoints() {
  auto root_name = root_query();
  if (!root_name.ok())
    co_return error_reply(root_name.error());
  auto after = integer_query("after", 0, 0, INT64_MAX);
  if (!after.ok())
    co_return error_reply(after.error());
  auto limit = integer_query("limit", 100, 1, checkpoints_page_max);
  if (!limit.ok())
    co_return error_reply(limit.error());
  // Named, not a temporary in the co_await: GCC 12 frees a lambda's captures twice there.
  auto work = [this, root = *root_name, after_seq = *after, count = *limit] {
    return context_.store.list_checkpoints(root, after_seq, static_cast<size_t>(count));
  };
  auto listed = co_await run_blocking(context_.read_pool, std::move(work));
  if (!listed.ok())
    co_return error_reply(listed.error());
  std::string body = "{\"checkpoints\":[";
  for (size_t index = 0; index < listed->size(); ++index) {
    if (index > 0)
      body += ',';
    body += ledger::checkpoint_to_json((*listed)[index]);
  }
  const int64_t next_after = listed->empty() ? *after : listed->back().seq;
  body += "],\"next_after\":" + std::to_string(next_after) + "}";
  co_return json_reply(200, std::move(body));
}

}  // namespace stub::http::detail
