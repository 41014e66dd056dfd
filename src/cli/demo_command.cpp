// `stub demo`: a local server on the embedded default (SQLite in a temp dir) with a demo org,
// then the runaway-agent replay through the real HTTP API: 50 parallel workers on many agent
// keys, each inside its own agent cap, while the org is nearly spent, so it is the fleet-wide
// budget that must hold.

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "cli/commands.hpp"
#include "cli/http_client.hpp"
#include "cli/serve_options.hpp"
#include "http/credentials.hpp"
#include "http/service.hpp"

namespace stub::cli {

namespace {

struct DemoArgs {
  std::string address = "127.0.0.1:8402";
  size_t workers = 50;
  size_t runners = 10;
  std::string amount = "0.35";
  bool exit_after = false;
};

struct Seed {
  const char* agent;
  const char* vendor;
  const char* intent;
  const char* amount;
  int times;
};

// A month of history that leaves marketing at 395.00 of 400, engineering at 560.00 of 650 and
// the org at 955.00 of 1000: the org is the level with the least room.
constexpr Seed history[] = {
    {"marketing/research-agent", "api.openai.com", "market research summaries", "12.50", 14},
    {"marketing/research-agent", "serpapi.com", "competitor search", "2.50", 8},
    {"marketing/copywriter", "api.anthropic.com", "campaign drafts", "15.00", 9},
    {"marketing/seo-bot", "api.semrush.com", "keyword reports", "5.00", 13},
    {"engineering/code-agent", "api.anthropic.com", "refactor services", "20.00", 12},
    {"engineering/test-agent", "api.openai.com", "generate test cases", "10.00", 12},
    {"engineering/review-agent", "api.openai.com", "pull request reviews", "8.00", 15},
    {"engineering/docs-agent", "api.anthropic.com", "write docs", "5.00", 16},
};

boost::json::object parse_object(const HttpResponse& response) {
  boost::system::error_code error;
  auto value = boost::json::parse(response.body, error);
  if (error || !value.is_object())
    return {};
  return value.as_object();
}

std::string text(const boost::json::object& object, const char* key) {
  const auto* value = object.if_contains(key);
  if (value == nullptr || !value->is_string())
    return "-";
  return std::string(value->get_string());
}

// Sends a request that must succeed during setup; prints why and returns false otherwise.
bool must(const Result<HttpResponse>& response, const std::string& what) {
  if (response.ok() && response->status >= 200 && response->status < 300)
    return true;
  std::cerr << "stub demo: " << what
            << " failed: " << (response.ok() ? response->body : response.error().message) << "\n";
  return false;
}

bool seed_org(HttpClient& admin, const DemoArgs& args, std::vector<std::string>& runner_tokens) {
  struct Node {
    const char* path;
    const char* body;
  };
  const Node nodes[] = {
      {"acme", R"({"limit":"1000.00","period":"month","currency":"USD"})"},
      {"acme/marketing", R"({"limit":"400.00"})"},
      {"acme/engineering", R"({"limit":"650.00"})"},
      {"acme/marketing/research-agent", R"({"limit":"200.00","per_txn_max":"25.00"})"},
      {"acme/marketing/copywriter", R"({"limit":"150.00","per_txn_max":"25.00"})"},
      {"acme/marketing/seo-bot", R"({"limit":"80.00"})"},
      {"acme/engineering/code-agent", R"({"limit":"300.00","per_txn_max":"50.00"})"},
      {"acme/engineering/test-agent", R"({"limit":"150.00"})"},
      {"acme/engineering/review-agent", R"({"limit":"150.00"})"},
      {"acme/engineering/docs-agent", R"({"limit":"100.00"})"},
  };
  for (const Node& node : nodes) {
    if (!must(admin.request("PUT", std::string("/v1/budgets/") + node.path, node.body),
              std::string("creating ") + node.path)) {
      return false;
    }
  }
  for (size_t runner = 1; runner <= args.runners; ++runner) {
    const std::string path = "acme/engineering/batch-runner-" +
                             std::string(runner < 10 ? "0" : "") + std::to_string(runner);
    if (!must(admin.request("PUT", "/v1/budgets/" + path,
                            R"({"limit":"25.00","per_txn_max":"1.00"})"),
              "creating " + path)) {
      return false;
    }
    auto key = admin.request("POST", "/v1/keys",
                             boost::json::serialize(boost::json::object{
                                 {"budget", path}, {"name", "batch runner"}, {"expires_in", "1d"}}),
                             "demo-key-" + path);
    if (!must(key, "issuing a key for " + path))
      return false;
    runner_tokens.push_back(text(parse_object(*key), "key"));
  }
  for (const Seed& seed : history) {
    for (int i = 0; i < seed.times; ++i) {
      const std::string body =
          boost::json::serialize(boost::json::object{{"budget", std::string("acme/") + seed.agent},
                                                     {"amount", seed.amount},
                                                     {"vendor", seed.vendor},
                                                     {"intent", seed.intent},
                                                     {"tags", {{"feature", "demo-history"}}}});
      if (!must(admin.request("POST", "/v1/spends", body, http::random_hex(8)),
                "seeding history")) {
        return false;
      }
    }
  }
  return true;
}

struct ReplayTotals {
  std::mutex mutex;
  int attempted = 0;
  int committed = 0;
  int refused = 0;
  int errors = 0;
  int64_t committed_micros = 0;
};

void run_worker(const Endpoint& endpoint, const std::string& token, size_t worker,
                const DemoArgs& args, ReplayTotals& totals) {
  HttpClient client(endpoint, token);
  const std::string body = boost::json::serialize(boost::json::object{
      {"amount", args.amount},
      {"vendor", "api.openai.com"},
      {"intent", "retry loop: re-summarize the whole ticket backlog"},
      {"tags", {{"job", "nightly-backlog"}, {"worker", std::to_string(worker)}}}});
  int consecutive_refusals = 0;
  for (int attempt = 0; attempt < 60 && consecutive_refusals < 3; ++attempt) {
    auto response =
        client.request("POST", "/v1/spends", body,
                       "replay-" + std::to_string(worker) + "-" + std::to_string(attempt));
    std::lock_guard lock(totals.mutex);
    ++totals.attempted;
    char line[256];
    if (!response.ok()) {
      ++totals.errors;
      std::printf("  !  worker %02zu  %s\n", worker, response.error().message.c_str());
      return;
    }
    const auto object = parse_object(*response);
    if (response->status == 201) {
      ++totals.committed;
      consecutive_refusals = 0;
      totals.committed_micros += ledger::Money::parse(args.amount)->micros();
      std::snprintf(line, sizeof line, "  \u2713  worker %02zu  %-34s %s  committed  seq %lld\n",
                    worker, text(object, "budget").c_str(), args.amount.c_str(),
                    static_cast<long long>(object.at("seq").to_number<int64_t>()));
    } else if (response->status == 402) {
      ++totals.refused;
      ++consecutive_refusals;
      const auto& error = object.at("error").as_object();
      std::snprintf(line, sizeof line,
                    "  \u2717  worker %02zu  %-34s %s  REFUSED    %s at %s (available %s)\n",
                    worker, "", args.amount.c_str(), text(error, "code").c_str(),
                    text(error, "budget").c_str(), text(error, "available").c_str());
    } else {
      ++totals.errors;
      std::snprintf(line, sizeof line, "  !  worker %02zu  HTTP %d %s\n", worker, response->status,
                    response->body.c_str());
    }
    std::fputs(line, stdout);
    std::fflush(stdout);
  }
}

// Worst spent + reserved - limit over every node of the tree, from the server.
std::string overspend_of(HttpClient& admin) {
  auto tree = admin.request("GET", "/v1/budgets?root=acme");
  if (!tree.ok() || tree->status != 200)
    return "unknown";
  int64_t worst = 0;
  const boost::json::object listing = parse_object(*tree);
  for (const auto& node : listing.at("budgets").as_array()) {
    const auto& budget = node.as_object();
    if (budget.at("limit").is_null())
      continue;
    const int64_t used = ledger::Money::parse(text(budget, "spent"))->micros() +
                         ledger::Money::parse(text(budget, "reserved"))->micros();
    worst = std::max(worst, used - ledger::Money::parse(text(budget, "limit"))->micros());
  }
  return ledger::Money::from_micros(worst).to_string();
}

int run_demo(const DemoArgs& args) {
  auto listen = parse_listen_address(args.address);
  if (!listen.ok()) {
    std::cerr << "stub demo: " << listen.error().message << "\n";
    return 1;
  }
  const auto directory =
      std::filesystem::temp_directory_path() / ("stub-demo-" + http::random_hex(4));
  std::filesystem::create_directories(directory);
  http::ServiceOptions options;
  options.db = "sqlite:" + (directory / "stub.db").string();
  options.server = *listen;
  auto service = http::Service::start(std::move(options));
  if (!service.ok()) {
    std::cerr << "stub demo: " << service.error().message << "\n";
    return 1;
  }
  const std::string url = "http://" + listen->address + ":" + std::to_string((*service)->port());
  std::cout << "Stub demo\n"
            << "  server      " << url << "\n"
            << "  database    " << (directory / "stub.db").string() << "\n"
            << "  admin token " << (*service)->admin_token() << "\n\n";

  const Endpoint endpoint{listen->address, std::to_string((*service)->port())};
  HttpClient admin(endpoint, (*service)->admin_token());
  std::vector<std::string> runner_tokens;
  std::cout
      << "Creating the demo org: acme -> marketing, engineering -> agents, a month of history..."
      << std::endl;
  if (!seed_org(admin, args, runner_tokens))
    return 1;
  std::cout << "  acme 955.00 of 1000.00 spent; engineering 560.00 of 650.00; each batch runner "
               "0.00 of 25.00\n\n";

  std::cout << "Replaying a runaway job: " << args.workers << " workers on " << runner_tokens.size()
            << " agent keys, each spending " << args.amount
            << " per call inside its own 25.00 cap, until refused...\n";
  ReplayTotals totals;
  std::vector<std::thread> workers;
  for (size_t worker = 0; worker < args.workers; ++worker) {
    workers.emplace_back(run_worker, std::cref(endpoint),
                         std::cref(runner_tokens[worker % runner_tokens.size()]), worker,
                         std::cref(args), std::ref(totals));
  }
  for (auto& worker : workers)
    worker.join();

  auto org = admin.request("GET", "/v1/budgets/acme");
  auto verified = admin.request("GET", "/v1/audit/verify?root=acme");
  const auto org_state = org.ok() ? parse_object(*org) : boost::json::object{};
  const auto verify_state = verified.ok() ? parse_object(*verified) : boost::json::object{};
  const bool chain_ok = verify_state.contains("ok") && verify_state.at("ok").as_bool();
  const std::string overspend = overspend_of(admin);
  std::cout << "\nSummary\n"
            << "  attempted   " << totals.attempted << "\n"
            << "  committed   " << totals.committed << " ("
            << ledger::Money::from_micros(totals.committed_micros).to_string() << ")\n"
            << "  refused     " << totals.refused << "\n"
            << "  acme        " << text(org_state, "spent") << " of " << text(org_state, "limit")
            << " spent\n"
            << "  overspend   $" << overspend << "\n"
            << "  chain       "
            << (chain_ok ? "verified (" + std::to_string(verify_state.at("checked").as_int64()) +
                               " entries)"
                         : "NOT VERIFIED")
            << "\n";
  const bool good = totals.errors == 0 && overspend == "0.00" && chain_ok;
  if (args.exit_after)
    return good ? 0 : 1;
  std::cout << "\nStub is running at " << url << " with the demo data. Try:\n"
            << "  export STUB_URL=" << url << " STUB_TOKEN=" << (*service)->admin_token() << "\n"
            << "  stub budget tree acme\n  stub ledger tail --root acme\n"
            << "Ctrl-C stops the server.\n"
            << std::flush;
  wait_for_shutdown_signal();
  (*service)->stop();
  return good ? 0 : 1;
}

}  // namespace

void add_demo_command(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<DemoArgs>();
  CLI::App* demo = app.add_subcommand(
      "demo", "Run a local server with a demo org and replay a runaway agent fleet against it");
  demo->add_option("--addr", args->address, "Listen address HOST:PORT (port 0: any free port)")
      ->capture_default_str();
  demo->add_option("--workers", args->workers, "Parallel runaway workers")
      ->capture_default_str()
      ->check(CLI::Range(1, 500));
  demo->add_option("--runners", args->runners, "Agent keys the workers share")
      ->capture_default_str()
      ->check(CLI::Range(1, 99));
  demo->add_flag("--exit", args->exit_after, "Exit after the replay instead of serving on");
  demo->callback([args, &exit_code] { exit_code = run_demo(*args); });
}

}  // namespace stub::cli
