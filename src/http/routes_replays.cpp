// Routes: the dashboard's runaway replay (admin only).
//   POST /v1/replays        start one against a fresh demo org (202; 409 while one runs)
//   GET  /v1/replays/{id}   its progress, and its summary once finished
// The scenario runs server-side through this server's own API (replays.hpp).

#include "http/handler.hpp"
#include "http/replays.hpp"

namespace stub::http::detail {

awaitable<std::optional<ApiReply>> Handler::route_replays() {
  const auto& s = target_.segments;
  const std::string& method = request_.method;
  if (s.size() < 2 || s.size() > 3 || s[1] != "replays")
    co_return std::nullopt;
  const bool start = s.size() == 2 && method == "POST";
  const bool read = s.size() == 3 && method == "GET";
  if (!start && !read)
    co_return std::nullopt;
  const std::string route = "/v1/replays";
  auto answer = [&route](ApiReply reply) {
    reply.route = route;
    reply.headers.emplace_back("Cache-Control", "no-store");
    return reply;
  };
  if (!principal_.admin)
    co_return answer(error_reply(admin_only()));
  if (context_.replays == nullptr) {
    co_return answer(error_reply(
        Error{ErrorCode::not_found, "replays_unavailable", "This server does not run replays."}));
  }
  if (start) {
    auto started = context_.replays->start(context_.clock());
    if (!started.ok())
      co_return answer(error_reply(started.error()));
    co_return answer(json_reply(202, replay_status_json(*started)));
  }
  if (Status clean = check_path_id(s[2]); !clean.ok())
    co_return answer(error_reply(clean.error()));
  auto status = context_.replays->status(s[2]);
  if (!status) {
    co_return answer(
        error_reply(Error{ErrorCode::not_found, "replay_not_found", "No replay " + s[2] + "."}));
  }
  co_return answer(json_reply(200, replay_status_json(*status)));
}

}  // namespace stub::http::detail
