#pragma once

// One HTTP POST to a webhook receiver, http:// or https:// (certificates verified against the
// system's store, with SNI), bounded by one deadline for connecting, sending and reading the
// answer. Blocking: the dispatcher calls it on its own thread, never on a server or engine one.

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stub::webhooks {

struct PostResult {
  int status = 0;     // the receiver's HTTP status; 0 when there was none
  std::string error;  // why there was none (or empty)
  std::string body;   // the receiver's answer, up to response_bytes_max
  bool ok() const { return status >= 200 && status < 300; }
};

inline constexpr size_t response_bytes_max = 64 * 1024;

PostResult post(const std::string& url,
                const std::vector<std::pair<std::string, std::string>>& headers,
                const std::string& body, std::chrono::milliseconds deadline);

// Where post() sends a URL: the scheme, the host it resolves (and names in Host and SNI), the
// port and the request target. nullopt unless http or https with a host, at most 2048 bytes.
struct Target {
  bool tls = false;
  std::string host;
  std::string port;
  std::string path;
};
std::optional<Target> parse_url(const std::string& url);

// Whether `url` is one post() can send to: http or https, a host, at most 2048 bytes.
bool valid_url(const std::string& url);

}  // namespace stub::webhooks
