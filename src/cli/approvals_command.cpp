#include <boost/json/serialize.hpp>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"

namespace stub::cli {

void add_approvals_commands(CLI::App& app, int& exit_code) {
  auto client = std::make_shared<ClientSettings>();
  CLI::App* approvals =
      app.add_subcommand("approvals", "List, approve and reject holds waiting for approval");
  approvals->require_subcommand(1);

  struct ListArgs {
    std::string root;
    int limit = 100;
  };
  auto list_args = std::make_shared<ListArgs>();
  CLI::App* list = approvals->add_subcommand("list", "Holds of a root waiting for approval");
  list->add_option("--root", list_args->root, "Root budget")->required();
  list->add_option("--limit", list_args->limit, "At most this many (1..1000)");
  add_client_options(*list, *client);
  list->callback([client, list_args, &exit_code] {
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    exit_code = report(http->request("GET", "/v1/approvals?root=" + list_args->root +
                                                "&limit=" + std::to_string(list_args->limit)));
  });

  for (const bool approve : {true, false}) {
    struct DecideArgs {
      std::string id, reason;
    };
    auto args = std::make_shared<DecideArgs>();
    CLI::App* decide = approvals->add_subcommand(
        approve ? "approve" : "reject", approve ? "Approve a hold: it is held for its ttl from now"
                                                : "Reject a hold: its reservation is released");
    decide->add_option("id", args->id, "Hold id, e.g. hold_0123...")->required();
    decide->add_option("--reason", args->reason, "Why, for the audit trail");
    add_client_options(*decide, *client);
    decide->callback([client, args, approve, &exit_code] {
      auto http = make_client(*client);
      if (!http)
        return void(exit_code = 1);
      const std::string body =
          boost::json::serialize(boost::json::object{{"reason", args->reason}});
      exit_code =
          report(http->request("POST", "/v1/holds/" + args->id + (approve ? "/approve" : "/reject"),
                               body, new_idempotency_key()));
    });
  }
}

}  // namespace stub::cli
