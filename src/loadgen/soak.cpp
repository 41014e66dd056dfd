#include "loadgen/soak.hpp"

#include <algorithm>
#include <atomic>
#include <boost/json/parse.hpp>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>

#include "http/credentials.hpp"
#include "loadgen/serve_process.hpp"
#include "loadgen/workload.hpp"

namespace stub::loadgen {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int soak_agents = 8;

std::string agent_path(const std::string& root, int agent) {
  return root + "/team-" + std::to_string(agent % 2) + "/agent-" + std::to_string(agent);
}

// What every caller and subscriber adds to; the sampler swaps the interval's part out.
struct SoakShared {
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::vector<int64_t> latencies;  // GUARDED_BY(mutex): micros, this interval
  uint64_t interval_failures = 0;  // GUARDED_BY(mutex)
  uint64_t interval_events = 0;    // GUARDED_BY(mutex)
  SoakReport totals;               // GUARDED_BY(mutex): the counters only
  std::atomic<int> live_subscribers{0};
};

class Caller {
 public:
  Caller(const SoakOptions& options, SoakShared& shared, std::string token, std::string budget,
         uint32_t seed)
      : shared_(shared),
        client_(options.endpoint, std::move(token), std::chrono::milliseconds(30'000)),
        budget_(std::move(budget)),
        key_prefix_("soak-" + http::random_hex(6) + "-"),
        random_(seed) {}

  void run() {
    while (!shared_.stopping.load(std::memory_order_relaxed)) {
      const uint32_t pick = random_() % 100;
      if (pick < 40)
        spend();
      else if (pick < 52)
        hold_then("capture", "{\"amount\":\"0.03\"}");
      else if (pick < 62)
        hold_then("void", "");
      else if (pick < 67)
        expiring_hold();
      else if (pick < 83)
        read("/v1/budget");
      else
        read("/v1/entries?limit=20");
    }
  }

 private:
  // One request; counts it and its latency; returns the response when it was answered 2xx.
  std::optional<HttpResponse> call(std::string_view method, std::string_view target,
                                   std::string_view body, std::string_view key) {
    const auto started = Clock::now();
    auto response = client_.request(method, target, body, key);
    const int64_t micros =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count();
    const bool ok = response.ok() && response->status >= 200 && response->status < 300;
    std::lock_guard lock(shared_.mutex);
    ++shared_.totals.requests;
    if (response.ok())
      shared_.latencies.push_back(micros);
    if (!ok) {
      ++shared_.totals.failures;
      ++shared_.interval_failures;
      if (shared_.totals.first_failure.empty()) {
        shared_.totals.first_failure = std::string(method) + " " + std::string(target) + ": " +
                                       (response.ok() ? "HTTP " + std::to_string(response->status) +
                                                            " " + response->body.substr(0, 300)
                                                      : response.error().message);
      }
      return std::nullopt;
    }
    return std::move(response).value();
  }

  std::string next_key() { return key_prefix_ + std::to_string(++count_); }

  void count(uint64_t SoakReport::*field) {
    std::lock_guard lock(shared_.mutex);
    ++(shared_.totals.*field);
  }

  void spend() {
    const std::string key = next_key();
    const std::string body =
        R"({"amount":"0.01","vendor":"api.example.com","budget":")" + budget_ + "\"}";
    auto first = call("POST", "/v1/spends", body, key);
    count(&SoakReport::spends);
    // One spend in four is retried with its key, as a client does after a lost answer: the
    // replay must give the same answer.
    if (first && random_() % 4 == 0) {
      auto again = call("POST", "/v1/spends", body, key);
      count(&SoakReport::retries);
      if (again && again->status != first->status)
        record_failure("a retried spend answered " + std::to_string(again->status) + " after " +
                       std::to_string(first->status));
    }
  }

  std::optional<std::string> hold(std::string_view ttl, std::string_view on_expiry) {
    std::string body = R"({"amount":"0.05","vendor":"api.example.com","budget":")" + budget_ +
                       R"(","ttl":")" + std::string(ttl) + "\"";
    if (!on_expiry.empty())
      body += R"(,"on_expiry":")" + std::string(on_expiry) + "\"";
    body += "}";
    auto created = call("POST", "/v1/holds", body, next_key());
    count(&SoakReport::holds);
    if (!created)
      return std::nullopt;
    boost::system::error_code error;
    const auto parsed = boost::json::parse(created->body, error);
    if (error || !parsed.is_object() || !parsed.as_object().contains("id") ||
        !parsed.as_object().at("id").is_string()) {
      record_failure("a hold's answer has no id: " + created->body.substr(0, 200));
      return std::nullopt;
    }
    return std::string(parsed.as_object().at("id").as_string());
  }

  void hold_then(std::string_view settle, std::string_view body) {
    auto id = hold("60s", "");
    if (!id)
      return;
    call("POST", "/v1/holds/" + *id + "/" + std::string(settle), body, next_key());
    count(settle == "capture" ? &SoakReport::captures : &SoakReport::voids);
  }

  // A hold nobody settles: the sweeper expires it after a second, capturing or voiding it.
  void expiring_hold() {
    hold("1s", random_() % 2 == 0 ? "void" : "capture");
    count(&SoakReport::expiring_holds);
  }

  void read(std::string_view target) {
    call("GET", target, "", "");
    count(&SoakReport::reads);
  }

  void record_failure(const std::string& what) {
    std::lock_guard lock(shared_.mutex);
    ++shared_.totals.failures;
    ++shared_.interval_failures;
    if (shared_.totals.first_failure.empty())
      shared_.totals.first_failure = what;
  }

  SoakShared& shared_;
  HttpClient client_;
  std::string budget_;
  std::string key_prefix_;
  uint64_t count_ = 0;
  std::mt19937 random_;
};

// Holds an event stream open, reconnecting every `reconnect`, until the soak stops.
void subscribe(const SoakOptions& options, SoakShared& shared, const std::string& token) {
  while (!shared.stopping.load()) {
    HttpClient client(options.endpoint, token);
    const auto until = Clock::now() + options.subscriber_reconnect;
    {
      std::lock_guard lock(shared.mutex);
      ++shared.totals.subscriptions;
    }
    Status status = client.stream_events("/v1/events", [&](std::string_view) {
      std::lock_guard lock(shared.mutex);
      ++shared.totals.events;
      ++shared.interval_events;
      return !shared.stopping.load() && Clock::now() < until;
    });
    if (!status.ok() && !shared.stopping.load()) {
      std::lock_guard lock(shared.mutex);
      ++shared.totals.failures;
      ++shared.interval_failures;
      if (shared.totals.first_failure.empty())
        shared.totals.first_failure = "event stream: " + status.error().message;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }
  --shared.live_subscribers;
}

Status put_budget(HttpClient& admin, const std::string& path, const std::string& limit) {
  auto response = admin.request("PUT", "/v1/budgets/" + path, R"({"limit":")" + limit + "\"}");
  if (!response.ok())
    return response.error();
  if (response->status != 200 && response->status != 201) {
    return Error{ErrorCode::internal, "soak_setup_failed",
                 "PUT /v1/budgets/" + path + " answered " + std::to_string(response->status) +
                     ": " + response->body.substr(0, 300)};
  }
  return Status::success();
}

Result<std::string> issue_key(HttpClient& admin, const std::string& budget,
                              const std::string& name) {
  auto response =
      admin.request("POST", "/v1/keys", R"({"budget":")" + budget + R"(","name":")" + name + "\"}");
  if (!response.ok())
    return response.error();
  boost::system::error_code error;
  const auto parsed = boost::json::parse(response->body, error);
  if (response->status != 201 || error || !parsed.is_object() ||
      !parsed.as_object().contains("key") || !parsed.as_object().at("key").is_string()) {
    return Error{ErrorCode::internal, "soak_setup_failed",
                 "POST /v1/keys answered " + std::to_string(response->status) + ": " +
                     response->body.substr(0, 300)};
  }
  return std::string(parsed.as_object().at("key").as_string());
}

int64_t queue_depth(HttpClient& probe) {
  auto response = probe.request("GET", "/healthz");
  if (!response.ok())
    return -1;
  boost::system::error_code error;
  const auto parsed = boost::json::parse(response->body, error);
  if (error || !parsed.is_object() || !parsed.as_object().contains("queue_depth"))
    return -1;
  const auto& depth = parsed.as_object().at("queue_depth");
  return depth.is_int64() ? depth.as_int64() : depth.is_uint64() ? int64_t(depth.as_uint64()) : -1;
}

void print_row(std::ostream& out, const SoakSample& sample) {
  char line[200];
  std::snprintf(line, sizeof line, "%8.0f %10.1f %6lld %6lld %10.0f %9.3f %9.3f %8llu %9llu\n",
                sample.seconds,
                sample.rss_kib < 0 ? -1.0 : static_cast<double>(sample.rss_kib) / 1024.0,
                static_cast<long long>(sample.fds), static_cast<long long>(sample.queue_depth),
                sample.requests_per_second, sample.p50_ms, sample.p99_ms,
                static_cast<unsigned long long>(sample.failures),
                static_cast<unsigned long long>(sample.events));
  out << line << std::flush;
}

void check_bounds(const SoakOptions& options, SoakReport& report) {
  if (report.failures > 0) {
    report.violations.push_back(std::to_string(report.failures) +
                                " requests failed; the first: " + report.first_failure);
  }
  if (!report.server_alive)
    report.violations.push_back("the server is no longer running");
  if (report.samples.size() < 2 || report.warm_index + 1 >= report.samples.size()) {
    report.violations.push_back("too few samples after the warm-up to judge growth");
    return;
  }
  const SoakSample& warm = report.samples[report.warm_index];
  const SoakSample& last = report.samples.back();
  if (warm.rss_kib < 0 || last.rss_kib < 0)
    return;  // a remote server: no RSS or fds to judge
  for (size_t i = report.warm_index; i < report.samples.size(); ++i)
    report.rss_max_kib = std::max(report.rss_max_kib, report.samples[i].rss_kib);
  report.rss_growth_kib = last.rss_kib - warm.rss_kib;
  report.fd_growth = last.fds - warm.fds;
  if (report.rss_growth_kib > options.rss_growth_max_kib) {
    report.violations.push_back("RSS grew " + std::to_string(report.rss_growth_kib / 1024) +
                                " MiB after the warm-up (" + std::to_string(warm.rss_kib / 1024) +
                                " -> " + std::to_string(last.rss_kib / 1024) +
                                " MiB), more than the bound of " +
                                std::to_string(options.rss_growth_max_kib / 1024) + " MiB");
  }
  if (report.fd_growth > options.fd_growth_max) {
    report.violations.push_back("open fds grew by " + std::to_string(report.fd_growth) + " (" +
                                std::to_string(warm.fds) + " -> " + std::to_string(last.fds) +
                                "), more than the bound of " +
                                std::to_string(options.fd_growth_max));
  }
}

}  // namespace

Result<SoakReport> run_soak(const SoakOptions& options, std::ostream& progress) {
  const std::string root = options.root.empty() ? "soak-" + http::random_hex(4) : options.root;
  HttpClient admin(options.endpoint, options.admin_token);
  // Limits far above what the soak spends: nothing is refused, every answer is a 2xx.
  if (Status status = put_budget(admin, root, "1000000000"); !status.ok())
    return status.error();
  for (int team = 0; team < 2; ++team) {
    if (Status status = put_budget(admin, root + "/team-" + std::to_string(team), "1000000000");
        !status.ok()) {
      return status.error();
    }
  }
  std::vector<std::string> tokens;
  for (int agent = 0; agent < soak_agents; ++agent) {
    const std::string path = agent_path(root, agent);
    if (Status status = put_budget(admin, path, "1000000000"); !status.ok())
      return status.error();
    auto token = issue_key(admin, path, "soak-agent-" + std::to_string(agent));
    if (!token.ok())
      return token.error();
    tokens.push_back(std::move(token).value());
  }

  // Shared with the subscriber threads, which may outlive this call (a stream that never ends
  // is detached): they hold their own references to everything they touch.
  auto shared_ptr = std::make_shared<SoakShared>();
  auto options_ptr = std::make_shared<const SoakOptions>(options);
  SoakShared& shared = *shared_ptr;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < options.callers; ++i) {
    threads.emplace_back([&, i] {
      Caller caller(options, shared, tokens[i % tokens.size()],
                    agent_path(root, static_cast<int>(i % tokens.size())),
                    static_cast<uint32_t>(i * 7919 + 1));
      caller.run();
    });
  }
  std::vector<std::thread> subscribers;
  shared.live_subscribers = static_cast<int>(options.subscribers);
  for (size_t i = 0; i < options.subscribers; ++i) {
    subscribers.emplace_back([shared_ptr, options_ptr, token = tokens[(i + 1) % tokens.size()]] {
      subscribe(*options_ptr, *shared_ptr, token);
    });
  }

  SoakReport report;
  progress << "soak: " << options.callers << " callers, " << options.subscribers
           << " SSE subscribers on root " << root << " for " << options.duration.count()
           << " s (warm-up " << options.warmup.count() << " s)\n";
  progress
      << "  second    rss MiB    fds  queue      req/s    p50 ms    p99 ms failures    events\n";
  HttpClient probe(options.endpoint, "");
  const auto started = Clock::now();
  const auto ends = started + options.duration;
  bool warm_seen = false;
  for (auto next = started + options.sample_interval;; next += options.sample_interval) {
    next = std::min(next, ends);
    std::this_thread::sleep_until(next);
    SoakSample sample;
    sample.seconds = std::chrono::duration<double>(Clock::now() - started).count();
    if (options.server_pid > 0) {
      const ProcessSample process = sample_process(options.server_pid);
      sample.rss_kib = process.rss_kib;
      sample.fds = process.fds;
    }
    sample.queue_depth = queue_depth(probe);
    std::vector<int64_t> latencies;
    {
      std::lock_guard lock(shared.mutex);
      latencies.swap(shared.latencies);
      sample.failures = shared.interval_failures;
      sample.events = shared.interval_events;
      shared.interval_failures = shared.interval_events = 0;
    }
    const double interval =
        report.samples.empty() ? sample.seconds : sample.seconds - report.samples.back().seconds;
    sample.requests = latencies.size();
    sample.requests_per_second =
        interval > 0 ? static_cast<double>(latencies.size()) / interval : 0;
    sample.p50_ms = percentile_ms(latencies, 0.50);
    sample.p99_ms = percentile_ms(latencies, 0.99);
    report.samples.push_back(sample);
    if (!warm_seen && sample.seconds + 0.5 >= static_cast<double>(options.warmup.count())) {
      warm_seen = true;
      report.warm_index = report.samples.size() - 1;
    }
    print_row(progress, sample);
    if (next >= ends)
      break;
  }

  shared.stopping = true;
  for (std::thread& thread : threads)
    thread.join();
  // A subscriber waits for its next event to notice the stop: spend until each has seen one.
  HttpClient nudger(options.endpoint, tokens[0]);
  for (int i = 0; shared.live_subscribers.load() > 0 && i < 600; ++i) {
    (void)nudger.request(
        "POST", "/v1/spends",
        R"({"amount":"0.01","vendor":"api.example.com","budget":")" + agent_path(root, 0) + "\"}",
        "soak-stop-" + http::random_hex(8));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (std::thread& thread : subscribers) {
    if (shared.live_subscribers.load() == 0)
      thread.join();
    else
      thread.detach();  // a stream that never ended; the process exits soon after
  }
  {
    std::lock_guard lock(shared.mutex);
    SoakReport& totals = shared.totals;
    report.requests = totals.requests;
    report.failures = totals.failures;
    report.retries = totals.retries;
    report.spends = totals.spends;
    report.holds = totals.holds;
    report.captures = totals.captures;
    report.voids = totals.voids;
    report.expiring_holds = totals.expiring_holds;
    report.reads = totals.reads;
    report.events = totals.events;
    report.subscriptions = totals.subscriptions;
    report.first_failure = totals.first_failure;
  }
  if (options.server_pid > 0)
    report.server_alive = sample_process(options.server_pid).rss_kib >= 0;
  check_bounds(options, report);
  return report;
}

}  // namespace stub::loadgen
