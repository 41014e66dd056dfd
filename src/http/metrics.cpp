#include "http/metrics.hpp"

#include <prometheus/text_serializer.h>

namespace stub::http {

namespace {

prometheus::Histogram::BucketBoundaries latency_buckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0};
}

}  // namespace

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      requests_(prometheus::BuildCounter()
                    .Name("stub_http_requests_total")
                    .Help("HTTP requests by route and status")
                    .Register(*registry_)),
      request_seconds_(prometheus::BuildHistogram()
                           .Name("stub_http_request_seconds")
                           .Help("HTTP request latency by route")
                           .Register(*registry_)),
      batches_ok_(prometheus::BuildCounter()
                      .Name("stub_batches_total")
                      .Help("Committed batches")
                      .Register(*registry_)
                      .Add({{"result", "ok"}})),
      batches_failed_(prometheus::BuildCounter()
                          .Name("stub_batches_total")
                          .Help("Committed batches")
                          .Register(*registry_)
                          .Add({{"result", "failed"}})),
      commands_(prometheus::BuildCounter()
                    .Name("stub_commands_total")
                    .Help("Commands decided by the sequencer")
                    .Register(*registry_)
                    .Add({})),
      entries_(prometheus::BuildCounter()
                   .Name("stub_entries_total")
                   .Help("Ledger entries committed")
                   .Register(*registry_)
                   .Add({})),
      batch_commands_(prometheus::BuildHistogram()
                          .Name("stub_batch_commands")
                          .Help("Commands per committed batch")
                          .Register(*registry_)
                          .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64,
                                                                           128, 256, 512, 1024})),
      commit_seconds_(prometheus::BuildHistogram()
                          .Name("stub_commit_seconds")
                          .Help("Time to read, decide, write and commit one batch")
                          .Register(*registry_)
                          .Add({}, latency_buckets())),
      store_events_(prometheus::BuildCounter()
                        .Name("stub_store_events_total")
                        .Help("What the store did to commit: conflict retries, reconnects, "
                              "ambiguous commits (PostgreSQL)")
                        .Register(*registry_)),
      forwarded_(prometheus::BuildCounter()
                     .Name("stub_forwarded_requests_total")
                     .Help("Writes forwarded to their root's leader and answered by it")
                     .Register(*registry_)
                     .Add({})),
      forward_fallbacks_(prometheus::BuildCounter()
                             .Name("stub_forward_fallbacks_total")
                             .Help("Writes meant for a root's leader and committed here instead")
                             .Register(*registry_)),
      leaderships_acquired_(prometheus::BuildCounter()
                                .Name("stub_root_leaderships_acquired_total")
                                .Help("Root leases this instance took (it then commits for them)")
                                .Register(*registry_)
                                .Add({})) {
  // Both reasons show from the start, at zero, so a scrape can tell "none" from "unknown".
  for (const char* reason : {"unreachable", "leader_unavailable"})
    forward_fallbacks_.Add({{"reason", reason}});
}

void Metrics::record_request(const std::string& route, int status, double seconds) {
  requests_.Add({{"route", route}, {"status", std::to_string(status)}}).Increment();
  request_seconds_.Add({{"route", route}}, latency_buckets()).Observe(seconds);
}

void Metrics::record_batch(const engine::BatchStats& stats) {
  (stats.ok ? batches_ok_ : batches_failed_).Increment();
  commands_.Increment(static_cast<double>(stats.commands));
  entries_.Increment(static_cast<double>(stats.entries));
  batch_commands_.Observe(static_cast<double>(stats.commands));
  commit_seconds_.Observe(static_cast<double>(stats.commit_micros) / 1e6);
}

void Metrics::record_store_events(const std::vector<store::Store::EventCount>& totals) {
  for (const auto& [name, total] : totals) {
    uint64_t& seen = store_events_seen_[name];
    prometheus::Counter& counter = store_events_.Add({{"event", name}});
    if (total > seen)
      counter.Increment(static_cast<double>(total - seen));
    seen = total;
  }
}

void Metrics::record_forwarded() {
  forwarded_.Increment();
}

void Metrics::record_forward_fallback(const std::string& reason) {
  forward_fallbacks_.Add({{"reason", reason}}).Increment();
}

void Metrics::record_leaderships_acquired(uint64_t count) {
  leaderships_acquired_.Increment(static_cast<double>(count));
}

std::string Metrics::render() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace stub::http
