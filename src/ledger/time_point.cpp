#include "ledger/time_point.hpp"

#include <cassert>
#include <charconv>
#include <chrono>
#include <cstdio>

namespace stub::ledger {

namespace {

using std::chrono::days;
using std::chrono::sys_days;

constexpr Micros micros_per_day = 86'400 * micros_per_second;

// Floor division, so that instants before the epoch land in the right day.
Micros floor_div(Micros value, Micros divisor) {
  Micros quotient = value / divisor;
  if ((value % divisor != 0) && ((value < 0) != (divisor < 0)))
    --quotient;
  return quotient;
}

}  // namespace

std::optional<Period> parse_period(std::string_view text) {
  if (text == "none")
    return Period::none;
  if (text == "day")
    return Period::day;
  if (text == "week")
    return Period::week;
  if (text == "month")
    return Period::month;
  return std::nullopt;
}

std::string_view period_name(Period period) {
  switch (period) {
    case Period::none:
      return "none";
    case Period::day:
      return "day";
    case Period::week:
      return "week";
    case Period::month:
      return "month";
  }
  return "none";
}

Micros period_start(Period period, Micros at) {
  const Micros day_index = floor_div(at, micros_per_day);
  switch (period) {
    case Period::none:
      return 0;
    case Period::day:
      return day_index * micros_per_day;
    case Period::week: {
      // 1970-01-01 was a Thursday; Monday-based weekday is (day_index + 3) mod 7.
      const Micros weekday = ((day_index + 3) % 7 + 7) % 7;
      return (day_index - weekday) * micros_per_day;
    }
    case Period::month: {
      const std::chrono::year_month_day date{sys_days{days{day_index}}};
      const sys_days first{date.year() / date.month() / 1};
      return static_cast<Micros>(first.time_since_epoch().count()) * micros_per_day;
    }
  }
  assert(false && "unknown period");
  return 0;
}

static std::string format_timestamp_uncached(Micros at);

std::string format_timestamp(Micros at) {
  // A batch formats the same instant for every entry and answer it makes: remember the last.
  thread_local Micros cached_at = -1;
  thread_local std::string cached_text;
  if (at == cached_at && !cached_text.empty())
    return cached_text;
  cached_text = format_timestamp_uncached(at);
  cached_at = at;
  return cached_text;
}

static std::string format_timestamp_uncached(Micros at) {
  const Micros day_index = floor_div(at, micros_per_day);
  const Micros within_day = at - day_index * micros_per_day;
  assert(within_day >= 0 && within_day < micros_per_day);
  const std::chrono::year_month_day date{sys_days{days{day_index}}};
  const Micros seconds = within_day / micros_per_second;
  char buffer[40];
  const int written =
      std::snprintf(buffer, sizeof buffer, "%04d-%02u-%02uT%02lld:%02lld:%02lld.%06lldZ",
                    static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                    static_cast<unsigned>(date.day()), static_cast<long long>(seconds / 3600),
                    static_cast<long long>(seconds / 60 % 60), static_cast<long long>(seconds % 60),
                    static_cast<long long>(within_day % micros_per_second));
  assert(written == 27);
  return std::string(buffer, static_cast<size_t>(written));
}

std::optional<Micros> parse_duration(std::string_view text) {
  int64_t count = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  if (error != std::errc{} || end == text.data() || count < 0)
    return std::nullopt;
  const std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  Micros scale = 0;
  if (unit == "ms") {
    scale = 1'000;
  } else if (unit == "s") {
    scale = micros_per_second;
  } else if (unit == "m") {
    scale = 60 * micros_per_second;
  } else if (unit == "h") {
    scale = 3'600 * micros_per_second;
  } else if (unit == "d") {
    scale = micros_per_day;
  } else {
    return std::nullopt;
  }
  // Ten years is far beyond any TTL or window; it keeps the product below INT64_MAX.
  if (count > 3'650 * micros_per_day / scale)
    return std::nullopt;
  return count * scale;
}

}  // namespace stub::ledger
