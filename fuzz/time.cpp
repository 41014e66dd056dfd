// Durations, periods and instants: ledger::parse_duration (hold ttl, key expires_in, serve's
// timeouts), ledger::parse_period (a budget's period), query::parse_timestamp (from/to of
// POST /v1/query and GET /v1/export) and query::resolve_time_range (range, ?period=).
// Properties: a duration is non-negative and at most ten years; a period's name parses back;
// an instant in the canonical form formats back to the same text, and any accepted instant
// formats to text that parses back to it; a resolved range is non-empty; period_start is at or
// before the instant and idempotent.

#include <limits>
#include <string>

#include "fuzz/fuzz_check.hpp"
#include "ledger/time_point.hpp"
#include "query/query.hpp"

namespace ledger = stub::ledger;
namespace query = stub::query;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = stub::fuzz::as_text(data, size);

  if (const auto duration = ledger::parse_duration(text)) {
    FUZZ_CHECK(*duration >= 0 && *duration <= 3'650LL * 86'400 * ledger::micros_per_second);
  }
  if (const auto period = ledger::parse_period(text)) {
    FUZZ_CHECK(ledger::period_name(*period) == text);
  }
  if (const auto at = query::parse_timestamp(text)) {
    const std::string formatted = ledger::format_timestamp(*at);
    FUZZ_CHECK(formatted.size() == 27);
    FUZZ_CHECK(query::parse_timestamp(formatted) == at);
    if (text.size() == 27 && text.back() == 'Z' && text[10] == 'T')
      FUZZ_CHECK(formatted == text);
    for (ledger::Period period :
         {ledger::Period::none, ledger::Period::day, ledger::Period::week, ledger::Period::month}) {
      const ledger::Micros start = ledger::period_start(period, *at);
      FUZZ_CHECK(period == ledger::Period::none || start <= *at);
      FUZZ_CHECK(ledger::period_start(period, start) == start);
    }
  }
  // A fixed "now" (2026-11-22T12:00:00Z) and the epoch.
  // Two clocks: 2026-11-22T12:00:00Z and 2000-02-29T23:59:59.999999Z.
  for (ledger::Micros now :
       {ledger::Micros{1'795'348'800'000'000}, ledger::Micros{951'868'799'999'999}}) {
    const auto range = query::resolve_time_range(text, now);
    if (range.ok()) {
      FUZZ_CHECK(range->from < range->to);
      FUZZ_CHECK(range->from >= 0);
      FUZZ_CHECK(range->text == text);
      ledger::format_timestamp(range->from);
      if (range->to != std::numeric_limits<ledger::Micros>::max())
        FUZZ_CHECK(ledger::format_timestamp(range->to).size() == 27);
    }
  }
  return 0;
}
