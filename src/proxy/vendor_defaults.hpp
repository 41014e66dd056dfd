#pragma once

// A vendor's defaults (docs/proxy.md, "Vendors"): the header its credential goes in, per kind,
// and the upstream timeouts.

#include <cstdint>
#include <string_view>

namespace stub::proxy {

inline constexpr int64_t vendor_timeout_default_connect_ms = 10'000;
inline constexpr int64_t vendor_timeout_default_first_byte_ms = 120'000;
inline constexpr int64_t vendor_timeout_default_idle_ms = 120'000;

// OpenAI and generic vendors: "Authorization: Bearer <credential>"; Anthropic: "x-api-key".
// A credential in an Authorization header is always sent as a bearer token.
inline std::string_view default_credential_header(std::string_view kind) {
  return kind == "anthropic" ? "x-api-key" : "Authorization";
}

}  // namespace stub::proxy
