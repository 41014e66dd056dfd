#include <algorithm>
#include <boost/json/parse.hpp>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "checkpoints/signing_key.hpp"
#include "cli/client_settings.hpp"
#include "cli/commands.hpp"
#include "ledger/checkpoint.hpp"
#include "store/store.hpp"

namespace stub::cli {

namespace {

constexpr size_t checkpoint_lines_max = 1'000'000;

// The checkpoints of a --checkpoints file, by root, each signature checked with `key`. An
// unreadable file or a line that is not a checkpoint signed by the key is an error: evidence
// that cannot be trusted proves nothing.
Result<std::map<std::string, std::vector<ledger::Checkpoint>>> read_checkpoints(
    const std::string& path, const checkpoints::VerifyingKey& key) {
  std::ifstream in(path);
  if (!in)
    return Error::invalid("checkpoints_unreadable", "Cannot read " + path + ".");
  std::map<std::string, std::vector<ledger::Checkpoint>> out;
  std::string line;
  size_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (number > checkpoint_lines_max) {
      return Error::invalid(
          "checkpoints_too_many",
          path + " has more than " + std::to_string(checkpoint_lines_max) + " lines.");
    }
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    const std::string where = path + " line " + std::to_string(number) + ": ";
    auto checkpoint = ledger::checkpoint_from_json(line);
    if (!checkpoint.ok())
      return Error::invalid("invalid_checkpoint", where + checkpoint.error().message);
    if (!key.verify(ledger::checkpoint_message(*checkpoint), checkpoint->signature)) {
      return Error::invalid("bad_checkpoint_signature",
                            where + "the signature is not the given public key's (key " +
                                key.key_id() + "); the line was altered or signed by another key.");
    }
    out[checkpoint->root].push_back(std::move(checkpoint).value());
  }
  return out;
}

// --public-key: a file holding the key, or the key itself (PEM or base64).
Result<checkpoints::VerifyingKey> read_public_key(const std::string& given) {
  std::ifstream in(given);
  if (in) {
    std::stringstream text;
    text << in.rdbuf();
    return checkpoints::VerifyingKey::from_text(text.str());
  }
  return checkpoints::VerifyingKey::from_text(given);
}

int verify_offline(const std::string& db, const std::string& only_root,
                   const std::string& checkpoints_file, const std::string& public_key) {
  std::map<std::string, std::vector<ledger::Checkpoint>> signed_checkpoints;
  if (!checkpoints_file.empty()) {
    auto key = read_public_key(public_key);
    if (!key.ok()) {
      std::cerr << "stub verify: --public-key: " << key.error().message << "\n";
      return 1;
    }
    auto read = read_checkpoints(checkpoints_file, *key);
    if (!read.ok()) {
      std::cerr << "stub verify: " << read.error().message << "\n";
      return 1;
    }
    signed_checkpoints = std::move(read).value();
  }
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
    // A root the checkpoints name must still be there: deleting one is tampering too.
    for (const auto& [root, list] : signed_checkpoints) {
      if (std::find(roots.begin(), roots.end(), root) == roots.end())
        roots.push_back(root);
    }
  } else {
    roots.push_back(only_root);
  }
  bool all_ok = true;
  for (const std::string& root : roots) {
    store::Store::VerifyOptions verify_options;
    if (auto found = signed_checkpoints.find(root); found != signed_checkpoints.end())
      verify_options.checkpoints = found->second;
    auto report = store.verify(
        root,
        [&root](int64_t checked, int64_t total) {
          std::cerr << "\rverifying " << root << ": " << checked << " / " << total << " entries"
                    << std::flush;
        },
        verify_options);
    std::cerr << "\n";
    if (!report.ok()) {
      if (report.error().code == ErrorCode::not_found && !verify_options.checkpoints.empty()) {
        all_ok = false;
        std::cout << root << ": TAMPERED: the root is gone, but "
                  << verify_options.checkpoints.size() << " signed checkpoints name it\n";
        continue;
      }
      std::cerr << "stub verify: " << report.error().message << "\n";
      return 1;
    }
    if (report->first_bad_seq) {
      std::cout << root << ": TAMPERED at seq " << *report->first_bad_seq << ": " << report->problem
                << " (" << report->checked << " entries verified before it)\n";
    } else {
      std::cout << root << ": " << (report->ok ? "OK" : "chain intact") << ", " << report->checked
                << " entries, head seq " << report->head_seq << " " << report->head_hash << "\n";
    }
    if (!report->balance_problem.empty()) {
      std::cout << root << ": TAMPERED budget " << report->bad_budget << ": "
                << report->balance_problem << "\n";
    } else if (!report->first_bad_seq) {
      std::cout << root << ": " << report->budgets_checked
                << " budgets agree with their postings\n";
    }
    if (report->first_bad_checkpoint_seq) {
      std::cout << root << ": TAMPERED: contradicts the checkpoint at seq "
                << *report->first_bad_checkpoint_seq << ": " << report->checkpoint_problem << "\n";
    } else if (!verify_options.checkpoints.empty()) {
      std::cout << root << ": " << report->checkpoints_checked
                << " signed checkpoints agree; proven up to seq "
                << report->latest_checkpoint_seq.value_or(0) << "\n";
    }
    if (!report->ok)
      all_ok = false;
  }
  return all_ok ? 0 : 3;
}

}  // namespace

void add_verify_command(CLI::App& app, int& exit_code) {
  struct Args {
    std::string db, root, checkpoints, public_key;
  };
  auto args = std::make_shared<Args>();
  auto client = std::make_shared<ClientSettings>();
  CLI::App* verify = app.add_subcommand(
      "verify", "Re-verify the hash chain: offline on a database file, or online through a server");
  verify->add_option("--db", args->db, "Verify this database file offline (no server needed)");
  verify->add_option("--root", args->root, "Only this root (required online)");
  verify->add_option("--checkpoints", args->checkpoints,
                     "Also prove the chain against these signed checkpoints (JSON lines, as "
                     "--checkpoint-file writes them or GET /v1/checkpoints serves them); offline");
  verify->add_option("--public-key", args->public_key,
                     "The signer's Ed25519 public key (a file, PEM or base64; from "
                     "GET /v1/checkpoints/key) that every checkpoint must be signed with");
  verify->footer(
      "Offline, every budget's spent and reserved are also reconciled with its entries' "
      "postings. Exit status: 0 verified, 3 tampered (first bad seq, budget or checkpoint "
      "printed), 1 error.");
  add_client_options(*verify, *client);
  verify->callback([args, client, &exit_code] {
    if (args->checkpoints.empty() != args->public_key.empty()) {
      std::cerr << "stub verify: --checkpoints and --public-key go together\n";
      exit_code = 1;
      return;
    }
    if (!args->db.empty()) {
      exit_code = verify_offline(args->db, args->root, args->checkpoints, args->public_key);
      return;
    }
    if (!args->checkpoints.empty()) {
      std::cerr << "stub verify: --checkpoints verifies offline: give --db\n";
      exit_code = 1;
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
