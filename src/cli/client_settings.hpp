#pragma once

// The options every client command shares (--server / STUB_URL, --token / STUB_TOKEN), and how
// a command reports the server's answer.

#include <CLI/CLI.hpp>
#include <boost/json/value.hpp>
#include <string>

#include "loadgen/http_client.hpp"

namespace stub::cli {

using loadgen::Endpoint;
using loadgen::HttpClient;
using loadgen::HttpResponse;
using loadgen::parse_server_url;

struct ClientSettings {
  std::string server = "http://127.0.0.1:8402";
  std::string token;
};

void add_client_options(CLI::App& command, ClientSettings& settings);
// Builds a client from the settings, or prints why it cannot and returns nullopt.
std::unique_ptr<HttpClient> make_client(const ClientSettings& settings);

// Prints the answer (pretty JSON on stdout, errors on stderr) and returns the exit code.
int report(const Result<HttpResponse>& response);

std::string pretty_json(const boost::json::value& value);
// A fresh random Idempotency-Key for one CLI invocation.
std::string new_idempotency_key();

}  // namespace stub::cli
