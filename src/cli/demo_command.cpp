// `stub demo`: a local server on the embedded default (SQLite in a temp dir) with a demo org,
// then the runaway-agent replay through the real HTTP API: 50 parallel workers on many agent
// keys, each inside its own agent cap, while the org is nearly spent, so it is the fleet-wide
// budget that must hold.

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <filesystem>
#include <iostream>
#include <mutex>

#include "cli/client_settings.hpp"
#include "cli/commands.hpp"
#include "cli/serve_options.hpp"
#include "http/credentials.hpp"
#include "http/service.hpp"
#include "http/web_assets.hpp"
#include "loadgen/runaway.hpp"
#include "loadgen/server_replays.hpp"

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

// Sends a request that must succeed during setup; prints why and returns false otherwise.
bool must(const Result<HttpResponse>& response, const std::string& what) {
  if (response.ok() && response->status >= 200 && response->status < 300)
    return true;
  std::cerr << "stub demo: " << what
            << " failed: " << (response.ok() ? response->body : response.error().message) << "\n";
  return false;
}

bool seed_org(HttpClient& admin) {
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

void print_event(const loadgen::RunawayEvent& event, const std::string& amount) {
  char line[256];
  switch (event.kind) {
    case loadgen::RunawayEvent::Kind::committed:
      std::snprintf(line, sizeof line, "  \u2713  worker %02zu  %-34s %s  committed  seq %lld\n",
                    event.worker, event.budget.c_str(), amount.c_str(),
                    static_cast<long long>(event.seq));
      break;
    case loadgen::RunawayEvent::Kind::refused:
      std::snprintf(line, sizeof line,
                    "  \u2717  worker %02zu  %-34s %s  REFUSED    %s at %s (available %s)\n",
                    event.worker, "", amount.c_str(), event.code.c_str(), event.level.c_str(),
                    event.available.c_str());
      break;
    case loadgen::RunawayEvent::Kind::error:
      std::snprintf(line, sizeof line, "  !  worker %02zu  %s\n", event.worker,
                    event.message.c_str());
      break;
  }
  // Workers report from their own threads: one line at a time.
  static std::mutex output_mutex;
  std::lock_guard lock(output_mutex);
  std::fputs(line, stdout);
  std::fflush(stdout);
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
  options.replays = [] { return std::make_unique<loadgen::ServerReplays>(); };
  auto service = http::Service::start(std::move(options));
  if (!service.ok()) {
    std::cerr << "stub demo: " << service.error().message << "\n";
    return 1;
  }
  const std::string url = "http://" + listen->address + ":" + std::to_string((*service)->port());
  std::cout << "Stub demo\n"
            << "  server      " << url << "\n"
            << "  database    " << (directory / "stub.db").string() << "\n"
            << "  admin token " << (*service)->admin_token() << "\n"
            << "  dashboard   " << url << "/"
            << (http::web_dashboard_built() ? " (sign in with the admin token)"
                                            : " (placeholder: bash scripts/build-web.sh)")
            << "\n\n";

  const Endpoint endpoint{listen->address, std::to_string((*service)->port())};
  HttpClient admin(endpoint, (*service)->admin_token());
  std::cout
      << "Creating the demo org: acme -> marketing, engineering -> agents, a month of history..."
      << std::endl;
  if (!seed_org(admin))
    return 1;
  loadgen::RunawayOptions runaway;
  runaway.workers = args.workers;
  runaway.runners = args.runners;
  runaway.amount = *ledger::Money::parse(args.amount);
  // Unique per run: a second demo against the same server never replays the first's answers.
  const std::string run_id = http::random_hex(6);
  auto fleet = loadgen::create_runaway_fleet(admin, "acme/engineering", runaway, run_id);
  if (!fleet.ok()) {
    std::cerr << "stub demo: " << fleet.error().message << "\n";
    return 1;
  }
  std::cout << "  acme 955.00 of 1000.00 spent; engineering 560.00 of 650.00; each batch runner "
               "0.00 of 25.00\n\n";

  std::cout << "Replaying a runaway job: " << args.workers << " workers on " << fleet->tokens.size()
            << " agent keys, each spending " << args.amount
            << " per call inside its own 25.00 cap, until refused...\n";
  const loadgen::RunawaySummary summary = loadgen::run_runaway(
      endpoint, *fleet, runaway, run_id, admin,
      [&args](const loadgen::RunawayEvent& event) { print_event(event, args.amount); });
  std::cout << "\nSummary\n"
            << "  attempted   " << summary.attempted << "\n"
            << "  committed   " << summary.committed << " (" << summary.committed_amount.to_string()
            << ")\n"
            << "  refused     " << summary.refused << "\n"
            << "  acme        " << summary.root_spent << " of " << summary.root_limit << " spent\n"
            << "  overspend   $" << summary.overspend << "\n"
            << "  chain       "
            << (summary.chain_verified
                    ? "verified (" + std::to_string(summary.chain_checked) + " entries)"
                    : "NOT VERIFIED")
            << "\n";
  const bool good = summary.good();
  if (args.exit_after)
    return good ? 0 : 1;
  ShutdownSignal shutdown;  // before the line that says it is running
  std::cout << "\nStub is running at " << url << " with the demo data.\n"
            << "  Dashboard: open " << url << "/ and sign in with the admin token above\n"
            << "  (the Replay tab runs this runaway fleet again, live). Or try:\n"
            << "  export STUB_URL=" << url << " STUB_TOKEN=" << (*service)->admin_token() << "\n"
            << "  stub budget tree acme\n  stub ledger tail --root acme\n"
            << "Ctrl-C stops the server.\n"
            << std::flush;
  shutdown.wait();
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
