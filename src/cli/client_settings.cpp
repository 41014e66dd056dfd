#include "cli/client_settings.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <iostream>

#include "http/credentials.hpp"

namespace stub::cli {

namespace {

void append_pretty(std::string& out, const boost::json::value& value, int indent) {
  const std::string pad(static_cast<size_t>(indent) * 2, ' ');
  const std::string inner(static_cast<size_t>(indent + 1) * 2, ' ');
  if (value.is_object() && !value.get_object().empty()) {
    out += "{\n";
    bool first = true;
    for (const auto& member : value.get_object()) {
      if (!first)
        out += ",\n";
      first = false;
      out += inner + boost::json::serialize(boost::json::string(member.key())) + ": ";
      append_pretty(out, member.value(), indent + 1);
    }
    out += "\n" + pad + "}";
  } else if (value.is_array() && !value.get_array().empty()) {
    out += "[\n";
    bool first = true;
    for (const auto& element : value.get_array()) {
      if (!first)
        out += ",\n";
      first = false;
      out += inner;
      append_pretty(out, element, indent + 1);
    }
    out += "\n" + pad + "]";
  } else {
    out += boost::json::serialize(value);
  }
}

}  // namespace

std::string pretty_json(const boost::json::value& value) {
  std::string out;
  append_pretty(out, value, 0);
  return out;
}

std::string new_idempotency_key() {
  return "cli_" + http::random_hex(16);
}

void add_client_options(CLI::App& command, ClientSettings& settings) {
  if (const char* url = std::getenv("STUB_URL"); url != nullptr && *url != '\0')
    settings.server = url;
  if (const char* token = std::getenv("STUB_TOKEN"); token != nullptr)
    settings.token = token;
  command.add_option("--server", settings.server, "Server URL (env STUB_URL)")
      ->capture_default_str();
  command.add_option("--token", settings.token, "Admin token or agent key (env STUB_TOKEN)");
}

std::unique_ptr<HttpClient> make_client(const ClientSettings& settings) {
  auto endpoint = parse_server_url(settings.server);
  if (!endpoint.ok()) {
    std::cerr << "stub: " << endpoint.error().message << "\n";
    return nullptr;
  }
  return std::make_unique<HttpClient>(*endpoint, settings.token);
}

int report(const Result<HttpResponse>& response) {
  if (!response.ok()) {
    std::cerr << "stub: " << response.error().message << "\n";
    return 1;
  }
  boost::system::error_code error;
  const boost::json::value body = boost::json::parse(response->body, error);
  const std::string text = error ? response->body : pretty_json(body);
  if (response->status >= 200 && response->status < 300) {
    std::cout << text << "\n";
    return 0;
  }
  std::cerr << "HTTP " << response->status << "\n" << text << "\n";
  return response->status == 402 ? 2 : 1;
}

}  // namespace stub::cli
