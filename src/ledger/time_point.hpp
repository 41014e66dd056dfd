#pragma once

// Time in the core is an integer count of microseconds since the Unix epoch, UTC, always passed
// in by the caller: the core never reads a clock.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stub::ledger {

using Micros = int64_t;
constexpr Micros micros_per_second = 1'000'000;

enum class Period { none, day, week, month };

std::optional<Period> parse_period(std::string_view text);
std::string_view period_name(Period period);

// Start of the UTC calendar period containing `at` (weeks start on Monday). For Period::none,
// the epoch: a lifetime period never rolls over.
Micros period_start(Period period, Micros at);

// RFC 3339 with microseconds, e.g. "2026-11-22T23:19:17.123456Z".
std::string format_timestamp(Micros at);

// Durations such as "30s", "5m", "1h", "1d", "250ms". Returns microseconds.
std::optional<Micros> parse_duration(std::string_view text);

}  // namespace stub::ledger
