#pragma once

// Prometheus metrics (prometheus-cpp core), rendered as text by GET /metrics.
//
// Thread safety: prometheus-cpp metrics are safe to update from any thread.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <string>

#include "engine/sequencer.hpp"
#include "store/store.hpp"

namespace stub::http {

class Metrics {
 public:
  Metrics();
  void record_request(const std::string& route, int status, double seconds);
  void record_batch(const engine::BatchStats& stats);
  // Brings stub_store_events_total up to the store's running totals. One caller at a time
  // (the committer's batch hook).
  void record_store_events(const std::vector<store::Store::EventCount>& totals);
  // Root leadership and forwarding (docs/postgres.md, "Root leaders"): a write answered by the
  // root's leader; a write that was to be forwarded and was committed here instead, and why
  // ("unreachable": no answer came; "leader_unavailable": the leader answered 503); leases
  // this instance took.
  void record_forwarded();
  void record_forward_fallback(const std::string& reason);
  void record_leaderships_acquired(uint64_t count);
  std::string render() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& request_seconds_;
  prometheus::Counter& batches_ok_;
  prometheus::Counter& batches_failed_;
  prometheus::Counter& commands_;
  prometheus::Counter& entries_;
  prometheus::Histogram& batch_commands_;
  prometheus::Histogram& commit_seconds_;
  prometheus::Family<prometheus::Counter>& store_events_;
  prometheus::Counter& forwarded_;
  prometheus::Family<prometheus::Counter>& forward_fallbacks_;
  prometheus::Counter& leaderships_acquired_;
  std::map<std::string, uint64_t> store_events_seen_;  // committer thread only
};

}  // namespace stub::http
