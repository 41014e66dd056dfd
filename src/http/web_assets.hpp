#pragma once

// The dashboard's files, embedded in the binary at build time. When web/dist was built (by
// scripts/build-web.sh, which needs Node) CMake turns every file in it into a generated .cpp
// (cmake/embed_web_assets.cmake); otherwise a placeholder page says how to build the dashboard,
// so the C++ build never needs Node.

#include <span>
#include <string_view>

namespace stub::http {

struct WebAsset {
  std::string_view path;          // as served: "/index.html", "/assets/app-3f2a.js"
  std::string_view content_type;  // from the file's extension
  std::string_view body;
  std::string_view gzip_body;  // the same bytes gzip-compressed at build time; empty: none
  std::string_view etag;       // a quoted strong validator from the SHA-256 of body
};

// Every embedded file; the placeholder build has exactly one, /index.html.
std::span<const WebAsset> web_assets();
// Whether the real dashboard is embedded (false: the placeholder page).
bool web_dashboard_built();
// The asset served at `path` ("/" is "/index.html"); nullptr when there is none.
const WebAsset* find_web_asset(std::string_view path);

}  // namespace stub::http
