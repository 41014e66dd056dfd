#include "loadgen/runaway.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cassert>
#include <mutex>
#include <thread>

namespace stub::loadgen {

namespace {

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

// A setup request that must succeed; its failure names what was being done.
Status must(const Result<HttpResponse>& response, const std::string& what) {
  if (response.ok() && response->status >= 200 && response->status < 300)
    return Status::success();
  return Error{ErrorCode::internal, "replay_setup_failed",
               what + " failed: " + (response.ok() ? response->body : response.error().message)};
}

int64_t micros_of(const boost::json::object& object, const char* key) {
  const auto money = ledger::Money::parse(text(object, key));
  return money ? money->micros() : 0;
}

// Worst spent + reserved - limit over every node of the root's tree, from the server.
std::string overspend_of(HttpClient& admin, const std::string& root) {
  auto tree = admin.request("GET", "/v1/budgets?root=" + root);
  if (!tree.ok() || tree->status != 200)
    return "unknown";
  int64_t worst = 0;
  const boost::json::object listing = parse_object(*tree);
  const auto* budgets = listing.if_contains("budgets");
  if (budgets == nullptr || !budgets->is_array())
    return "unknown";
  for (const auto& node : budgets->as_array()) {
    const auto& budget = node.as_object();
    if (budget.at("limit").is_null())
      continue;
    const int64_t used = micros_of(budget, "spent") + micros_of(budget, "reserved");
    worst = std::max(worst, used - micros_of(budget, "limit"));
  }
  return ledger::Money::from_micros(worst).to_string();
}

struct Totals {
  std::mutex mutex;
  RunawaySummary summary;  // GUARDED_BY(mutex): the counts only
};

// Waits `duration` in short slices, returning early when cancelled.
void pause_for(std::chrono::milliseconds duration, const std::atomic<bool>* cancel) {
  constexpr auto slice = std::chrono::milliseconds(50);
  const auto until = std::chrono::steady_clock::now() + duration;
  while (std::chrono::steady_clock::now() < until && !(cancel != nullptr && cancel->load())) {
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        slice, until - std::chrono::steady_clock::now()));
  }
}

void run_worker(const Endpoint& endpoint, const std::string& token, size_t worker,
                const RunawayOptions& options, const std::string& run_id, Totals& totals,
                const std::function<void(const RunawayEvent&)>& on_event,
                const std::atomic<bool>* cancel) {
  HttpClient client(endpoint, token);
  const std::string body = boost::json::serialize(boost::json::object{
      {"amount", options.amount.to_string()},
      {"vendor", "api.openai.com"},
      {"intent", "retry loop: re-summarize the whole ticket backlog"},
      {"tags", {{"job", "nightly-backlog"}, {"worker", std::to_string(worker)}}}});
  int consecutive_refusals = 0;
  if (options.pause.count() > 0) {
    pause_for(options.pause * static_cast<int64_t>(worker) / static_cast<int64_t>(options.workers),
              cancel);
  }
  for (int attempt = 0;
       attempt < options.attempts_per_worker_max && consecutive_refusals < options.refusals_to_stop;
       ++attempt) {
    if (cancel != nullptr && cancel->load())
      return;
    if (attempt > 0 && options.pause.count() > 0)
      pause_for(options.pause, cancel);
    auto response = client.request(
        "POST", "/v1/spends", body,
        "runaway-" + run_id + "-" + std::to_string(worker) + "-" + std::to_string(attempt));
    RunawayEvent event;
    event.worker = worker;
    {
      std::lock_guard lock(totals.mutex);
      ++totals.summary.attempted;
      if (!response.ok()) {
        ++totals.summary.errors;
      } else if (response->status == 201) {
        ++totals.summary.committed;
        totals.summary.committed_amount = ledger::Money::from_micros(
            totals.summary.committed_amount.micros() + options.amount.micros());
      } else if (response->status == 402) {
        ++totals.summary.refused;
      } else {
        ++totals.summary.errors;
      }
    }
    if (!response.ok()) {
      event.kind = RunawayEvent::Kind::error;
      event.message = response.error().message;
      on_event(event);
      return;
    }
    const auto object = parse_object(*response);
    if (response->status == 201) {
      consecutive_refusals = 0;
      event.kind = RunawayEvent::Kind::committed;
      event.budget = text(object, "budget");
      if (const auto* seq = object.if_contains("seq"); seq != nullptr && seq->is_int64())
        event.seq = seq->as_int64();
    } else if (response->status == 402 && object.contains("error") &&
               object.at("error").is_object()) {
      ++consecutive_refusals;
      const auto& error = object.at("error").as_object();
      event.kind = RunawayEvent::Kind::refused;
      event.code = text(error, "code");
      event.level = text(error, "budget");
      event.available = text(error, "available");
      if (const auto* seq = error.if_contains("seq"); seq != nullptr && seq->is_int64())
        event.seq = seq->as_int64();
    } else {
      event.kind = RunawayEvent::Kind::error;
      event.message = "HTTP " + std::to_string(response->status) + " " + response->body;
    }
    on_event(event);
  }
}

}  // namespace

Result<RunawayFleet> create_runaway_fleet(HttpClient& admin, const std::string& parent,
                                          const RunawayOptions& options,
                                          const std::string& run_id) {
  assert(options.runners > 0 && options.runners < 100);
  RunawayFleet fleet;
  fleet.root = parent.substr(0, parent.find('/'));
  for (size_t runner = 1; runner <= options.runners; ++runner) {
    const std::string path =
        parent + "/batch-runner-" + std::string(runner < 10 ? "0" : "") + std::to_string(runner);
    if (Status made = must(admin.request("PUT", "/v1/budgets/" + path,
                                         R"({"limit":"25.00","per_txn_max":"1.00"})"),
                           "creating " + path);
        !made.ok()) {
      return made.error();
    }
    auto key = admin.request("POST", "/v1/keys",
                             boost::json::serialize(boost::json::object{
                                 {"budget", path}, {"name", "batch runner"}, {"expires_in", "1d"}}),
                             "runaway-key-" + run_id + "-" + path);
    if (Status issued = must(key, "issuing a key for " + path); !issued.ok())
      return issued.error();
    const std::string token = text(parse_object(*key), "key");
    if (token == "-") {
      return Error{ErrorCode::internal, "replay_setup_failed",
                   "The key answer for " + path + " has no secret."};
    }
    fleet.budgets.push_back(path);
    fleet.tokens.push_back(token);
  }
  assert(fleet.tokens.size() == options.runners);
  return fleet;
}

Result<std::string> seed_replay_org(HttpClient& admin, const std::string& root,
                                    const std::string& run_id) {
  struct Node {
    std::string path;
    const char* body;
  };
  const Node nodes[] = {
      {root, R"({"limit":"1000.00","period":"month","currency":"USD"})"},
      {root + "/marketing", R"({"limit":"400.00"})"},
      {root + "/engineering", R"({"limit":"650.00"})"},
      {root + "/marketing/research-agent", R"({"limit":"450.00"})"},
      {root + "/engineering/code-agent", R"({"limit":"600.00"})"},
  };
  for (const Node& node : nodes) {
    if (Status made = must(admin.request("PUT", "/v1/budgets/" + node.path, node.body),
                           "creating " + node.path);
        !made.ok()) {
      return made.error();
    }
  }
  // 955.00 of history in a few large spends: the org is left with 45.00, less than the fleet
  // would spend, while the team and every agent still have room.
  struct History {
    const char* agent;
    const char* vendor;
    const char* amount;
    int times;
  };
  constexpr History history[] = {
      {"marketing/research-agent", "api.openai.com", "39.50", 10},
      {"engineering/code-agent", "api.anthropic.com", "56.00", 10},
  };
  int count = 0;
  for (const History& item : history) {
    for (int i = 0; i < item.times; ++i) {
      const std::string body =
          boost::json::serialize(boost::json::object{{"budget", root + "/" + item.agent},
                                                     {"amount", item.amount},
                                                     {"vendor", item.vendor},
                                                     {"intent", "last month's work"},
                                                     {"tags", {{"feature", "replay-history"}}}});
      if (Status spent =
              must(admin.request("POST", "/v1/spends", body,
                                 "runaway-history-" + run_id + "-" + std::to_string(count++)),
                   "seeding history");
          !spent.ok()) {
        return spent.error();
      }
    }
  }
  return root + "/engineering";
}

RunawaySummary run_runaway(const Endpoint& endpoint, const RunawayFleet& fleet,
                           const RunawayOptions& options, const std::string& run_id,
                           HttpClient& admin,
                           const std::function<void(const RunawayEvent&)>& on_event,
                           const std::atomic<bool>* cancel) {
  assert(!fleet.tokens.empty());
  assert(options.workers > 0);
  Totals totals;
  std::vector<std::thread> workers;
  workers.reserve(options.workers);
  for (size_t worker = 0; worker < options.workers; ++worker) {
    workers.emplace_back(run_worker, std::cref(endpoint),
                         std::cref(fleet.tokens[worker % fleet.tokens.size()]), worker,
                         std::cref(options), std::cref(run_id), std::ref(totals),
                         std::cref(on_event), cancel);
  }
  for (auto& worker : workers)
    worker.join();

  RunawaySummary summary;
  {
    std::lock_guard lock(totals.mutex);
    summary = totals.summary;
  }
  auto org = admin.request("GET", "/v1/budgets/" + fleet.root);
  if (org.ok() && org->status == 200) {
    const auto state = parse_object(*org);
    summary.root_spent = text(state, "spent");
    summary.root_limit = text(state, "limit");
  }
  auto verified = admin.request("GET", "/v1/audit/verify?root=" + fleet.root);
  if (verified.ok() && verified->status == 200) {
    const auto state = parse_object(*verified);
    const auto* ok = state.if_contains("ok");
    summary.chain_verified = ok != nullptr && ok->is_bool() && ok->as_bool();
    if (const auto* checked = state.if_contains("checked"); checked && checked->is_int64())
      summary.chain_checked = checked->as_int64();
    if (const auto* head = state.if_contains("head"); head && head->is_object())
      summary.head_hash = text(head->as_object(), "hash");
  }
  summary.overspend = overspend_of(admin, fleet.root);
  assert(summary.attempted == summary.committed + summary.refused + summary.errors);
  return summary;
}

}  // namespace stub::loadgen
