#include <boost/json/serialize.hpp>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

void add_key_commands(CLI::App& app, int& exit_code) {
  auto client = std::make_shared<ClientSettings>();
  CLI::App* key = app.add_subcommand("key", "Issue and revoke agent keys");
  key->require_subcommand(1);

  struct CreateArgs {
    std::string budget, name, expires_in;
  };
  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = key->add_subcommand("create", "Issue a key bound to a budget node");
  create->add_option("budget", create_args->budget, "The node the key may act within")->required();
  create->add_option("--name", create_args->name, "A label, e.g. the agent's name");
  create->add_option("--expires-in", create_args->expires_in, "Lifetime, e.g. 30d or 12h");
  create->footer("The secret is printed once; only its hash is stored.");
  add_client_options(*create, *client);
  create->callback([client, create_args, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    boost::json::object body{{"budget", create_args->budget}, {"name", create_args->name}};
    if (!create_args->expires_in.empty())
      body["expires_in"] = create_args->expires_in;
    exit_code = report(
        http->request("POST", "/v1/keys", boost::json::serialize(body), new_idempotency_key()));
  });

  auto revoke_id = std::make_shared<std::string>();
  CLI::App* revoke = key->add_subcommand("revoke", "Revoke a key at once, on every instance");
  revoke->add_option("id", *revoke_id, "Key id, e.g. key_0123456789abcdef")->required();
  add_client_options(*revoke, *client);
  revoke->callback([client, revoke_id, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    exit_code = report(http->request("DELETE", "/v1/keys/" + *revoke_id));
  });
}

}  // namespace stub::cli
