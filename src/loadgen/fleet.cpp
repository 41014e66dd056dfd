#include "loadgen/fleet.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <mutex>
#include <thread>

#include "http/credentials.hpp"

namespace stub::loadgen {

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

// Runs `work(i)` for i in [0, count) on `threads` threads; the first error wins.
Status parallel_for(size_t count, size_t threads,
                    const std::function<Status(HttpClient&, size_t)>& work,
                    const Endpoint& endpoint, const std::string& token) {
  std::atomic<size_t> next{0};
  std::mutex mutex;
  Status first = Status::success();
  std::vector<std::thread> pool;
  for (size_t t = 0; t < std::max<size_t>(1, threads); ++t) {
    pool.emplace_back([&] {
      HttpClient client(endpoint, token);
      for (size_t i = next++; i < count; i = next++) {
        Status status = work(client, i);
        if (!status.ok()) {
          std::lock_guard lock(mutex);
          if (first.ok())
            first = status;
          next = count;
        }
      }
    });
  }
  for (std::thread& thread : pool)
    thread.join();
  return first;
}

Status expect(const Result<HttpResponse>& response, std::string_view what,
              std::initializer_list<int> statuses) {
  if (!response.ok())
    return response.error();
  for (int status : statuses) {
    if (response->status == status)
      return Status::success();
  }
  return Error{ErrorCode::internal, "fleet_setup_failed",
               std::string(what) + " answered " + std::to_string(response->status) + ": " +
                   response->body.substr(0, 300)};
}

std::string limit_body(ledger::Money limit) {
  return R"({"limit":")" + limit.to_string() + "\"}";
}

Result<boost::json::object> get_object(HttpClient& client, const std::string& target) {
  auto response = client.request("GET", target);
  if (Status status = expect(response, "GET " + target, {200}); !status.ok())
    return status.error();
  boost::system::error_code error;
  auto parsed = boost::json::parse(response->body, error);
  if (error || !parsed.is_object())
    return Error{ErrorCode::internal, "fleet_bad_answer", "GET " + target + ": not an object."};
  return std::move(parsed.as_object());
}

Result<ledger::Money> money_of(const boost::json::object& object, std::string_view field) {
  const auto* value = object.if_contains(field);
  if (value == nullptr || !value->is_string())
    return Error{ErrorCode::internal, "fleet_bad_answer", "No " + std::string(field) + "."};
  auto money = ledger::Money::parse(std::string(value->as_string()));
  if (!money)
    return Error{ErrorCode::internal, "fleet_bad_answer", "Bad " + std::string(field) + "."};
  return *money;
}

struct FleetShared {
  std::vector<int64_t> latencies;  // only touched by the single client thread
  RunStats stats;
  Clock::time_point deadline;
};

struct Target {
  std::string token;
  std::string body;
};

asio::awaitable<void> fleet_caller(uint16_t port, std::vector<Target> targets,
                                   std::string key_prefix, const DriveOptions& options,
                                   FleetShared& shared) {
  auto executor = co_await asio::this_coro::executor;
  asio::ip::tcp::socket socket(executor);
  auto [connect_error] = co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), port},
                                                       asio::as_tuple(asio::use_awaitable));
  if (connect_error) {
    ++shared.stats.failed;
    co_return;
  }
  socket.set_option(asio::ip::tcp::no_delay(true));
  boost::beast::flat_buffer buffer;
  uint64_t consecutive_refusals = 0;
  for (uint64_t count = 0; Clock::now() < shared.deadline; ++count) {
    const Target& target = targets[count % targets.size()];
    bhttp::request<bhttp::string_body> request{bhttp::verb::post, "/v1/spends", 11};
    request.set(bhttp::field::host, "127.0.0.1");
    request.set(bhttp::field::authorization, "Bearer " + target.token);
    request.set(bhttp::field::content_type, "application/json");
    request.set("Idempotency-Key", key_prefix + std::to_string(count));
    request.keep_alive(true);
    request.body() = target.body;
    request.prepare_payload();
    const auto started = Clock::now();
    auto [write_error, written] =
        co_await bhttp::async_write(socket, request, asio::as_tuple(asio::use_awaitable));
    bhttp::response<bhttp::string_body> response;
    boost::system::error_code read_error;
    if (!write_error) {
      std::tie(read_error, std::ignore) =
          co_await bhttp::async_read(socket, buffer, response, asio::as_tuple(asio::use_awaitable));
    }
    if (write_error || read_error) {
      ++shared.stats.failed;
      co_return;
    }
    shared.latencies.push_back(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
    const unsigned status = response.result_int();
    if (status == 201) {
      ++shared.stats.committed;
      consecutive_refusals = 0;
    } else if (status == 402) {
      ++shared.stats.refused;
      if (options.stop_after_refusals_per_caller > 0 &&
          ++consecutive_refusals >= options.stop_after_refusals_per_caller) {
        co_return;
      }
    } else {
      ++shared.stats.failed;
    }
  }
}

}  // namespace

std::string FleetTree::root(size_t index) const {
  return roots == 1 ? prefix : prefix + "-" + std::to_string(index);
}

std::string FleetTree::agent(size_t agent_index) const {
  const size_t per_root = static_cast<size_t>(teams * agents_per_team);
  const size_t root_index = agent_index % roots;
  const size_t local = agent_index / roots;
  return root(root_index) + "/team-" + std::to_string(local / agents_per_team) + "/agent-" +
         std::to_string(local % per_root);
}

FleetTree fleet_tree(const std::string& prefix, size_t roots) {
  FleetTree tree;
  tree.prefix = prefix;
  tree.roots = roots;
  if (roots > 1)
    tree.teams = tree.agents_per_team = 1;
  return tree;
}

Result<std::vector<std::string>> create_fleet(const Endpoint& endpoint,
                                              const std::string& admin_token, const FleetTree& tree,
                                              ledger::Money root_limit, size_t threads) {
  // Teams and agents get limits far above the root's: the root is the binding level.
  const auto wide = ledger::Money::from_micros(root_limit.micros() * 2);
  Status roots = parallel_for(
      tree.roots, threads,
      [&](HttpClient& client, size_t i) -> Status {
        const std::string root = tree.root(i);
        if (Status status =
                expect(client.request("PUT", "/v1/budgets/" + root, limit_body(root_limit)),
                       "PUT " + root, {200, 201});
            !status.ok()) {
          return status;
        }
        for (int team = 0; team < tree.teams; ++team) {
          const std::string path = root + "/team-" + std::to_string(team);
          if (Status status = expect(client.request("PUT", "/v1/budgets/" + path, limit_body(wide)),
                                     "PUT " + path, {200, 201});
              !status.ok()) {
            return status;
          }
        }
        return Status::success();
      },
      endpoint, admin_token);
  if (!roots.ok())
    return roots.error();
  std::vector<std::string> tokens(tree.agent_count());
  Status agents = parallel_for(
      tree.agent_count(), threads,
      [&](HttpClient& client, size_t i) -> Status {
        const std::string path = tree.agent(i);
        if (Status status = expect(client.request("PUT", "/v1/budgets/" + path, limit_body(wide)),
                                   "PUT " + path, {200, 201});
            !status.ok()) {
          return status;
        }
        auto issued = client.request("POST", "/v1/keys",
                                     R"({"budget":")" + path + R"(","name":"fleet-agent"})");
        if (Status status = expect(issued, "POST /v1/keys", {201}); !status.ok())
          return status;
        boost::system::error_code error;
        const auto parsed = boost::json::parse(issued->body, error);
        const auto* key =
            error || !parsed.is_object() ? nullptr : parsed.as_object().if_contains("key");
        if (key == nullptr || !key->is_string())
          return Error{ErrorCode::internal, "fleet_setup_failed", "A key's answer has no key."};
        tokens[i] = std::string(key->as_string());
        return Status::success();
      },
      endpoint, admin_token);
  if (!agents.ok())
    return agents.error();
  return tokens;
}

RunStats drive_fleet(const std::vector<uint16_t>& ports, const std::vector<std::string>& tokens,
                     const FleetTree& tree, const DriveOptions& options) {
  asio::io_context io(1);
  FleetShared shared;
  shared.deadline = Clock::now() + options.duration;
  shared.latencies.reserve(1 << 20);
  const std::string run_prefix = "fleet-" + http::random_hex(6) + "-";
  const std::string amount = options.amount.to_string();
  for (size_t caller = 0; caller < options.callers; ++caller) {
    // Agents caller, caller + callers, ...: with more agents than callers each caller walks
    // several roots; with fewer, callers share agents.
    std::vector<Target> targets;
    for (size_t agent = caller % tokens.size(); agent < tokens.size(); agent += options.callers) {
      targets.push_back(Target{tokens[agent], R"({"amount":")" + amount +
                                                  R"(","vendor":"api.example.com","budget":")" +
                                                  tree.agent(agent) + "\"}"});
    }
    asio::co_spawn(io,
                   fleet_caller(ports[caller % ports.size()], std::move(targets),
                                run_prefix + std::to_string(caller) + "-", options, shared),
                   asio::detached);
  }
  const auto started = Clock::now();
  io.run();
  RunStats stats = shared.stats;
  stats.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  stats.p50_ms = percentile_ms(shared.latencies, 0.50);
  stats.p99_ms = percentile_ms(shared.latencies, 0.99);
  return stats;
}

Status set_fleet_headroom(const Endpoint& endpoint, const std::string& admin_token,
                          const FleetTree& tree, ledger::Money headroom) {
  return parallel_for(
      tree.roots, 8,
      [&](HttpClient& client, size_t i) -> Status {
        auto node = get_object(client, "/v1/budgets/" + tree.root(i));
        if (!node.ok())
          return node.error();
        auto spent = money_of(*node, "spent");
        auto reserved = money_of(*node, "reserved");
        if (!spent.ok() || !reserved.ok())
          return Error{ErrorCode::internal, "fleet_bad_answer", "A budget without spent."};
        const auto limit =
            ledger::Money::from_micros(spent->micros() + reserved->micros() + headroom.micros());
        return expect(client.request("PUT", "/v1/budgets/" + tree.root(i), limit_body(limit)),
                      "PUT " + tree.root(i), {200, 201});
      },
      endpoint, admin_token);
}

Result<ledger::Money> fleet_overspend(const Endpoint& endpoint, const std::string& admin_token,
                                      const FleetTree& tree) {
  std::mutex mutex;
  int64_t worst = 0;
  Status status = parallel_for(
      tree.roots, 8,
      [&](HttpClient& client, size_t i) -> Status {
        auto node = get_object(client, "/v1/budgets/" + tree.root(i));
        if (!node.ok())
          return node.error();
        auto spent = money_of(*node, "spent");
        auto reserved = money_of(*node, "reserved");
        auto limit = money_of(*node, "limit");
        if (!spent.ok() || !reserved.ok() || !limit.ok())
          return Error{ErrorCode::internal, "fleet_bad_answer", "A root without its figures."};
        std::lock_guard lock(mutex);
        worst = std::max(worst, spent->micros() + reserved->micros() - limit->micros());
        return Status::success();
      },
      endpoint, admin_token);
  if (!status.ok())
    return status.error();
  return ledger::Money::from_micros(worst);
}

}  // namespace stub::loadgen
