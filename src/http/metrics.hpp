#pragma once

// Prometheus metrics (prometheus-cpp core), rendered as text by GET /metrics.
//
// Thread safety: prometheus-cpp metrics are safe to update from any thread.

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "engine/sequencer.hpp"

namespace stub::http {

class Metrics {
 public:
  Metrics();
  void record_request(const std::string& route, int status, double seconds);
  void record_batch(const engine::BatchStats& stats);
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
};

}  // namespace stub::http
