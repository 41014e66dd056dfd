// Routes: the dashboard's embedded files. GET /, /index.html and /assets/<name>, open to anyone
// (the page signs in by itself), with validators and caching: the page is revalidated on every
// load, the hashed assets are immutable, and clients that accept gzip get the bytes compressed
// at build time.

#include "http/handler.hpp"
#include "http/web_assets.hpp"

namespace stub::http::detail {

namespace {

// The page and its scripts may only talk to this server: no CDN, font or script from anywhere
// else can load, and no other site may frame the dashboard.
constexpr std::string_view content_security_policy =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' "
    "data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'";

bool accepts_gzip(std::string_view accept_encoding) {
  // "gzip", "deflate, gzip", "gzip;q=1.0": any mention that is not "q=0".
  const size_t found = accept_encoding.find("gzip");
  if (found == std::string_view::npos)
    return false;
  std::string_view rest = accept_encoding.substr(found + 4);
  rest = rest.substr(0, rest.find(','));
  return rest.find("q=0") == std::string_view::npos || rest.find("q=0.") != std::string_view::npos;
}

}  // namespace

awaitable<std::optional<ApiReply>> Handler::route_assets() {
  const auto& s = target_.segments;
  if (request_.method != "GET")
    co_return std::nullopt;
  std::string path;
  if (s.empty() || (s.size() == 1 && s[0].empty())) {
    path = "/";
  } else if (s.size() == 1 && s[0] == "index.html") {
    path = "/index.html";
  } else if (s.size() == 2 && s[0] == "assets") {
    path = "/assets/" + s[1];
  } else {
    co_return std::nullopt;
  }
  const WebAsset* asset = find_web_asset(path);
  if (asset == nullptr) {
    ApiReply missing = error_reply(not_found("No such file."));
    missing.route = "/assets";
    co_return missing;
  }
  const bool is_page = asset->path == "/index.html";
  ApiReply reply;
  reply.route = is_page ? "/" : "/assets";
  reply.content_type = std::string(asset->content_type);
  reply.headers.emplace_back("ETag", std::string(asset->etag));
  reply.headers.emplace_back("Cache-Control",
                             is_page ? "no-cache" : "public, max-age=31536000, immutable");
  reply.headers.emplace_back("X-Content-Type-Options", "nosniff");
  reply.headers.emplace_back("Vary", "Accept-Encoding");
  if (is_page) {
    reply.headers.emplace_back("Content-Security-Policy", std::string(content_security_policy));
    reply.headers.emplace_back("Referrer-Policy", "no-referrer");
    reply.headers.emplace_back("X-Frame-Options", "DENY");
  }
  if (!request_.if_none_match.empty() && request_.if_none_match == asset->etag) {
    reply.status = 304;
    co_return reply;
  }
  reply.status = 200;
  if (!asset->gzip_body.empty() && accepts_gzip(request_.accept_encoding)) {
    reply.body = std::string(asset->gzip_body);
    reply.headers.emplace_back("Content-Encoding", "gzip");
  } else {
    reply.body = std::string(asset->body);
  }
  co_return reply;
}

}  // namespace stub::http::detail
