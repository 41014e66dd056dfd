#include <boost/json/parse.hpp>
#include <iostream>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"
#include "store/store.hpp"

namespace stub::cli {

namespace {

int verify_offline(const std::string& db, const std::string& only_root) {
  store::StoreOptions options;
  options.read_only = true;
  options.read_connections = 1;
  auto opened = store::open_store(db, options);
  if (!opened.ok()) {
    std::cerr << "stub verify: " << opened.error().message << "\n";
    return 1;
  }
  store::Store& store = **opened;
  std::vector<std::string> roots;
  if (only_root.empty()) {
    auto listed = store.list_roots();
    if (!listed.ok()) {
      std::cerr << "stub verify: " << listed.error().message << "\n";
      return 1;
    }
    roots = *listed;
  } else {
    roots.push_back(only_root);
  }
  bool all_ok = true;
  for (const std::string& root : roots) {
    auto report = store.verify(root, [&root](int64_t checked, int64_t total) {
      std::cerr << "\rverifying " << root << ": " << checked << " / " << total << " entries"
                << std::flush;
    });
    std::cerr << "\n";
    if (!report.ok()) {
      std::cerr << "stub verify: " << report.error().message << "\n";
      return 1;
    }
    if (report->ok) {
      std::cout << root << ": OK, " << report->checked << " entries, head seq " << report->head_seq
                << " " << report->head_hash << "\n";
    } else {
      all_ok = false;
      std::cout << root << ": TAMPERED at seq " << *report->first_bad_seq << ": " << report->problem
                << " (" << report->checked << " entries verified before it)\n";
    }
  }
  return all_ok ? 0 : 3;
}

}  // namespace

void add_verify_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string db, root;
  };
  auto args = std::make_shared<Args>();
  auto client = std::make_shared<ClientSettings>();
  CLI::App* verify = app.add_subcommand(
      "verify", "Re-verify the hash chain: offline on a database file, or online through a server");
  verify->add_option("--db", args->db, "Verify this database file offline (no server needed)");
  verify->add_option("--root", args->root, "Only this root (required online)");
  verify->footer("Exit status: 0 verified, 3 tampered (first bad seq printed), 1 error.");
  add_client_options(*verify, *client);
  verify->callback([args, client, &exit_code] {
    if (!args->db.empty()) {
      exit_code = verify_offline(args->db, args->root);
      return;
    }
    if (args->root.empty()) {
      std::cerr << "stub verify: give --db FILE (offline) or --root ROOT (online)\n";
      exit_code = 1;
      return;
    }
    auto http = make_client(*client);
    if (!http)
      return void(exit_code = 1);
    auto response = http->request("GET", "/v1/audit/verify?root=" + args->root);
    exit_code = report(response);
    if (exit_code == 0 && !boost::json::parse(response->body).at("ok").as_bool())
      exit_code = 3;
  });
}

}  // namespace stub::cli
