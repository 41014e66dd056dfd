// The webhook settings' URL parser (webhooks::parse_url, behind valid_url and post()) over
// arbitrary text, and, when the first byte is odd, the whole PUT /v1/webhooks/{name} decoder
// with the name taken from the input. Properties: what parses is http or https with a
// non-empty host; the host, port and path that reach the resolver, the Host header, SNI and
// the request line hold no whitespace, control characters or NUL; the port is a number from 1
// to 65535; decoded settings hold only URLs that parse and known events.

#include <string>

#include "fuzz/fuzz_check.hpp"
#include "http/request_decoders.hpp"
#include "http/request_fields.hpp"
#include "http/text_checks.hpp"
#include "webhooks/events.hpp"
#include "webhooks/sender.hpp"

namespace webhooks = stub::webhooks;

namespace {

bool printable_ascii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7F)
      return false;
  }
  return true;
}

void check_url(const std::string& url) {
  const auto target = webhooks::parse_url(url);
  FUZZ_CHECK(webhooks::valid_url(url) == target.has_value());
  if (!target)
    return;
  FUZZ_CHECK(url.size() <= 2048);
  FUZZ_CHECK(url.starts_with(target->tls ? "https:" : "http:"));
  FUZZ_CHECK(!target->host.empty() && printable_ascii(target->host));
  FUZZ_CHECK(target->host.find_first_of("/?#@") == std::string::npos);
  FUZZ_CHECK(!target->port.empty() && target->port.size() <= 5 &&
             target->port.find_first_not_of("0123456789") == std::string::npos);
  const long port = std::stol(target->port);
  FUZZ_CHECK(port >= 1 && port <= 65535);
  FUZZ_CHECK(target->path.starts_with("/") && printable_ascii(target->path));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const std::string_view text = stub::fuzz::as_text(data + 1, size - 1);
  if (data[0] % 2 == 0) {
    check_url(std::string(text));
    return 0;
  }
  // "name\nbody": the name from the path, then the JSON body.
  const size_t newline = text.find('\n');
  const std::string_view name = text.substr(0, newline);
  auto body = stub::http::parse_request_body(
      newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1));
  if (!body.ok())
    return 0;
  auto fields = stub::http::decode_webhook(*body, name);
  if (!fields.ok())
    return 0;
  FUZZ_CHECK(fields->settings.name == name);
  if (fields->settings.url) {
    FUZZ_CHECK(stub::http::is_clean_text(*fields->settings.url));
    check_url(*fields->settings.url);
  }
  if (fields->settings.events) {
    for (const std::string& event : *fields->settings.events)
      FUZZ_CHECK(webhooks::known_event(event));
  }
  return 0;
}
