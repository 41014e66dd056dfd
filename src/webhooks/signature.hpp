#pragma once

// The signature of a delivery, as Stripe signs its webhooks: the header
//   Stub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
// A receiver recomputes v1 over the raw body with its secret, compares in constant time, and
// refuses a t too far from its clock (replays). docs/api.md shows how.

#include <cstdint>
#include <string>
#include <string_view>

namespace stub::webhooks {

inline constexpr std::string_view signature_header = "Stub-Signature";

// Lowercase hex HMAC-SHA256 of `message` under `secret`.
std::string hmac_sha256_hex(std::string_view secret, std::string_view message);

// "t=<timestamp>,v1=<hmac of '<timestamp>.<body>'>".
std::string signature(std::string_view secret, int64_t timestamp_seconds, std::string_view body);

}  // namespace stub::webhooks
