// The page `stub serve` shows at / when the binary was built without the dashboard (web/dist
// did not exist at build time, e.g. on a machine without Node).

#include <array>

#include "http/web_assets.hpp"

namespace stub::http {

namespace {

constexpr std::string_view placeholder_page = R"(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Stub: dashboard not built</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem; }
  code, pre { background: #f2f2f2; padding: 0.1rem 0.3rem; border-radius: 4px; }
  @media (prefers-color-scheme: dark) { body { background: #111; color: #eee; } code, pre { background: #222; } }
</style>
</head>
<body>
<h1>Stub is running</h1>
<p>This binary was built without the dashboard (Node was not available, or
<code>web/dist</code> had not been built when it was compiled). The API works as usual at
<code>/v1/...</code>; see <code>/openapi.json</code>.</p>
<p>To embed the dashboard, build it and rebuild Stub:</p>
<pre>bash scripts/build-web.sh
cmake --build --preset release</pre>
<p>(<code>bash scripts/demo.sh</code> does both.)</p>
</body>
</html>
)";

constexpr std::array<WebAsset, 1> assets{{
    {"/index.html", "text/html; charset=utf-8", placeholder_page, "", "\"placeholder-1\""},
}};

}  // namespace

std::span<const WebAsset> web_assets() {
  return assets;
}

bool web_dashboard_built() {
  return false;
}

}  // namespace stub::http
