#include "loadgen/workload.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <mutex>

#include "http/credentials.hpp"

namespace stub::loadgen {

namespace {

using Clock = std::chrono::steady_clock;

ledger::Command admin_command(ledger::CommandKind kind, const std::string& path) {
  ledger::Command command;
  command.kind = kind;
  command.root = path.substr(0, path.find('/'));
  command.budget = path;
  command.actor = std::string(ledger::admin_actor);
  return command;
}

Status set_budget(engine::Sequencer& sequencer, const std::string& path,
                  std::optional<ledger::Money> limit) {
  ledger::Command command = admin_command(ledger::CommandKind::set_budget, path);
  command.settings.limit_given = true;
  command.settings.limit = limit;
  command.settings.period = ledger::Period::none;
  const ledger::Outcome outcome = sequencer.execute(std::move(command));
  if (!outcome.ok())
    return outcome.error();
  return Status::success();
}

}  // namespace

double percentile_ms(std::vector<int64_t>& micros, double fraction) {
  if (micros.empty())
    return 0;
  const size_t index = std::min(micros.size() - 1, static_cast<size_t>(fraction * micros.size()));
  std::nth_element(micros.begin(), micros.begin() + static_cast<std::ptrdiff_t>(index),
                   micros.end());
  return static_cast<double>(micros[index]) / 1000.0;
}

std::string BenchTree::team_path(int team) const {
  return root + "/team-" + std::to_string(team);
}

std::string BenchTree::agent_path(int agent) const {
  return team_path(agent % teams) + "/agent-" + std::to_string(agent);
}

Status create_tree(engine::Sequencer& sequencer, const BenchTree& tree, ledger::Money org_limit) {
  if (Status status = set_budget(sequencer, tree.root, org_limit); !status.ok())
    return status;
  const auto generous = ledger::Money::from_micros(ledger::Money::micros_max / 1'000);
  for (int team = 0; team < tree.teams; ++team) {
    if (Status status = set_budget(sequencer, tree.team_path(team), generous); !status.ok()) {
      return status;
    }
  }
  for (int agent = 0; agent < tree.agent_count(); ++agent) {
    if (Status status = set_budget(sequencer, tree.agent_path(agent), generous); !status.ok()) {
      return status;
    }
  }
  return Status::success();
}

Result<std::vector<std::string>> issue_agent_tokens(engine::Sequencer& sequencer,
                                                    const BenchTree& tree) {
  std::vector<std::string> tokens;
  for (int agent = 0; agent < tree.agent_count(); ++agent) {
    http::IssuedKey issued = http::issue_key(tree.agent_path(agent), "bench", 0);
    ledger::Command command =
        admin_command(ledger::CommandKind::create_key, tree.agent_path(agent));
    command.key = issued.key;
    const ledger::Outcome outcome = sequencer.execute(std::move(command));
    if (!outcome.ok())
      return outcome.error();
    tokens.push_back(issued.token);
  }
  return tokens;
}

Status set_org_headroom(engine::Sequencer& sequencer, store::Store& store, const BenchTree& tree,
                        ledger::Money headroom) {
  auto root = store.get_budget(tree.root);
  if (!root.ok())
    return root.error();
  if (!root.value())
    return Error{ErrorCode::not_found, "not_found", "No bench root."};
  const int64_t used = root.value()->spent.micros() + root.value()->reserved.micros();
  return set_budget(sequencer, tree.root, ledger::Money::from_micros(used + headroom.micros()));
}

RunStats drive_in_process(engine::Sequencer& sequencer, const BenchTree& tree,
                          const DriveOptions& options) {
  struct Shared {
    std::mutex mutex;
    std::condition_variable finished;
    size_t outstanding = 0;
    std::vector<int64_t> latencies;
    std::vector<uint64_t> consecutive_refusals;
    RunStats stats;
    Clock::time_point deadline;
    bool stopping = false;
  };
  auto shared = std::make_shared<Shared>();
  // Idempotency keys are unique per drive, so a later phase never replays an earlier answer.
  const std::string key_prefix = "bench-" + http::random_hex(6) + "-";
  shared->deadline = Clock::now() + options.duration;
  shared->consecutive_refusals.assign(options.callers, 0);
  shared->latencies.reserve(1 << 20);

  // Each caller submits its next spend from the completion of the previous one. Completions run
  // on the committer thread, one at a time, so `shared` is only contended at start and end.
  std::function<void(size_t, uint64_t)> submit_next = [&, shared](size_t caller, uint64_t count) {
    ledger::Command command;
    command.kind = ledger::CommandKind::spend;
    command.budget = tree.agent_path(static_cast<int>(caller % tree.agent_count()));
    command.root = tree.root;
    command.actor = std::string(ledger::admin_actor);
    command.amount = options.amount;
    command.vendor = "api.example.com";
    command.hold_id = "hold_" + std::to_string(caller) + "_" + std::to_string(count);
    command.idempotency_key = key_prefix + std::to_string(caller) + "-" + std::to_string(count);
    command.request_hash = command.idempotency_key;
    const auto started = Clock::now();
    sequencer.submit(
        std::move(command), [&, shared, caller, count, started](ledger::Outcome outcome) {
          const auto now = Clock::now();
          bool again = false;
          {
            std::lock_guard lock(shared->mutex);
            shared->latencies.push_back(
                std::chrono::duration_cast<std::chrono::microseconds>(now - started).count());
            if (!outcome.ok()) {
              ++shared->stats.failed;
            } else if (std::holds_alternative<ledger::Denied>(outcome->answer.value)) {
              ++shared->stats.refused;
              ++shared->consecutive_refusals[caller];
            } else {
              ++shared->stats.committed;
              shared->consecutive_refusals[caller] = 0;
            }
            const bool refused_out =
                options.stop_after_refusals_per_caller > 0 &&
                shared->consecutive_refusals[caller] >= options.stop_after_refusals_per_caller;
            again = !shared->stopping && now < shared->deadline && !refused_out && outcome.ok();
            if (!again && --shared->outstanding == 0)
              shared->finished.notify_all();
          }
          if (again)
            submit_next(caller, count + 1);
        });
  };

  const auto started = Clock::now();
  {
    std::lock_guard lock(shared->mutex);
    shared->outstanding = options.callers;
  }
  for (size_t caller = 0; caller < options.callers; ++caller)
    submit_next(caller, 0);
  {
    std::unique_lock lock(shared->mutex);
    shared->finished.wait(lock, [&] { return shared->outstanding == 0; });
  }
  RunStats stats = shared->stats;
  stats.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  stats.p50_ms = percentile_ms(shared->latencies, 0.50);
  stats.p99_ms = percentile_ms(shared->latencies, 0.99);
  return stats;
}

namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

struct HttpShared {
  std::vector<int64_t> latencies;  // only touched by the single client thread
  RunStats stats;
  Clock::time_point deadline;
};

asio::awaitable<void> http_caller(uint16_t port, std::string token, std::string budget,
                                  std::string key_prefix, const DriveOptions& options,
                                  HttpShared& shared) {
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
  const std::string body = "{\"amount\":\"" + options.amount.to_string() +
                           "\",\"vendor\":\"api.example.com\",\"budget\":\"" + budget + "\"}";
  for (uint64_t count = 0; Clock::now() < shared.deadline; ++count) {
    bhttp::request<bhttp::string_body> request{bhttp::verb::post, "/v1/spends", 11};
    request.set(bhttp::field::host, "127.0.0.1");
    request.set(bhttp::field::authorization, "Bearer " + token);
    request.set(bhttp::field::content_type, "application/json");
    request.set("Idempotency-Key", key_prefix + std::to_string(count));
    request.keep_alive(true);
    request.body() = body;
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

RunStats drive_http(uint16_t port, const std::vector<std::string>& tokens, const BenchTree& tree,
                    const DriveOptions& options) {
  asio::io_context io(1);
  HttpShared shared;
  shared.deadline = Clock::now() + options.duration;
  const std::string run_prefix = "bench-" + http::random_hex(6) + "-";
  shared.latencies.reserve(1 << 20);
  for (size_t caller = 0; caller < options.callers; ++caller) {
    const size_t agent = caller % tokens.size();
    asio::co_spawn(io,
                   http_caller(port, tokens[agent], tree.agent_path(static_cast<int>(agent)),
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

Result<ledger::Money> measure_overspend(store::Store& store, const std::string& root,
                                        ledger::Micros now) {
  auto nodes = store.list_subtree(root);
  if (!nodes.ok())
    return nodes.error();
  int64_t worst = 0;
  for (const ledger::BudgetNode& node : *nodes) {
    if (!node.limit)
      continue;
    const int64_t excess =
        node.spent_at(now).micros() + node.reserved.micros() - node.limit->micros();
    worst = std::max(worst, excess);
  }
  return ledger::Money::from_micros(worst);
}

}  // namespace stub::loadgen
