#include "http/web_assets.hpp"

#include <cassert>

namespace stub::http {

const WebAsset* find_web_asset(std::string_view path) {
  if (path == "/")
    path = "/index.html";
  for (const WebAsset& asset : web_assets()) {
    assert(asset.path.starts_with("/"));
    if (asset.path == path)
      return &asset;
  }
  return nullptr;
}

}  // namespace stub::http
