// UTC calendar periods (weeks start on Monday), RFC 3339 timestamps and durations.

#include "ledger/time_point.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace stub::ledger {
namespace {

constexpr Micros second = micros_per_second;
constexpr Micros minute = 60 * second;
constexpr Micros hour = 60 * minute;
constexpr Micros day = 24 * hour;

// Microseconds since the epoch of a UTC civil time, computed with <chrono>'s calendar.
Micros utc(int year, unsigned month, unsigned day_of_month, int hours = 0, int minutes = 0,
           int seconds = 0, Micros micros = 0) {
  const std::chrono::sys_days date =
      std::chrono::year{year} / std::chrono::month{month} / std::chrono::day{day_of_month};
  return static_cast<Micros>(date.time_since_epoch().count()) * day + hours * hour +
         minutes * minute + seconds * second + micros;
}

TEST(TimeHelpers, CivilDatesMatchKnownEpochSeconds) {
  // Anchors computed independently (Python's calendar.timegm), so the helper itself is checked.
  EXPECT_EQ(utc(2024, 1, 1), 1'704'067'200 * second);
  EXPECT_EQ(utc(2024, 2, 29), 1'709'164'800 * second);
  EXPECT_EQ(utc(2000, 2, 29), 951'782'400 * second);
  EXPECT_EQ(utc(2100, 3, 1), 4'107'542'400 * second);
  EXPECT_EQ(utc(1969, 12, 29), -259'200 * second);
}

TEST(PeriodStart, NoneIsTheEpoch) {
  EXPECT_EQ(period_start(Period::none, utc(2024, 5, 17, 13, 1, 2)), 0);
  EXPECT_EQ(period_start(Period::none, 0), 0);
}

TEST(PeriodStart, DayIsUtcMidnight) {
  EXPECT_EQ(period_start(Period::day, utc(2024, 3, 10, 12, 30)), utc(2024, 3, 10));
  EXPECT_EQ(period_start(Period::day, utc(2024, 3, 10)), utc(2024, 3, 10));
  EXPECT_EQ(period_start(Period::day, utc(2024, 3, 10) - 1), utc(2024, 3, 9));
  EXPECT_EQ(period_start(Period::day, utc(2024, 3, 10, 23, 59, 59, 999'999)), utc(2024, 3, 10));
  EXPECT_EQ(period_start(Period::day, utc(2024, 3, 11)), utc(2024, 3, 11));
  EXPECT_EQ(period_start(Period::day, 0), 0);
  // Before the epoch, the day still starts at the previous midnight (floor, not truncation).
  EXPECT_EQ(period_start(Period::day, -1), -day);
  EXPECT_EQ(period_start(Period::day, -day), -day);
  EXPECT_EQ(period_start(Period::day, utc(1969, 7, 20, 20, 17)), utc(1969, 7, 20));
}

TEST(PeriodStart, WeekStartsOnMonday) {
  // 2024-01-01 was a Monday.
  const Micros monday = utc(2024, 1, 1);
  for (int offset = 0; offset < 7; ++offset) {
    EXPECT_EQ(period_start(Period::week, monday + offset * day + 5 * hour), monday) << offset;
  }
  EXPECT_EQ(period_start(Period::week, monday), monday);
  EXPECT_EQ(period_start(Period::week, monday - 1), utc(2023, 12, 25));
  EXPECT_EQ(period_start(Period::week, utc(2024, 1, 7, 23, 59, 59, 999'999)), monday);
  EXPECT_EQ(period_start(Period::week, utc(2024, 1, 8)), utc(2024, 1, 8));
  // 1970-01-01 was a Thursday: its week started on Monday 1969-12-29.
  EXPECT_EQ(period_start(Period::week, 0), utc(1969, 12, 29));
  EXPECT_EQ(period_start(Period::week, utc(1969, 12, 29)), utc(1969, 12, 29));
  EXPECT_EQ(period_start(Period::week, utc(1969, 12, 29) - 1), utc(1969, 12, 22));
  // A week that spans a leap day and a month boundary.
  EXPECT_EQ(period_start(Period::week, utc(2024, 3, 1, 8)), utc(2024, 2, 26));
  // Sunday 2026-11-22 belongs to the week of Monday 2026-11-16.
  EXPECT_EQ(period_start(Period::week, utc(2026, 11, 22, 23, 19, 17)), utc(2026, 11, 16));
}

TEST(PeriodStart, MonthIsTheFirstAtUtcMidnight) {
  EXPECT_EQ(period_start(Period::month, utc(2024, 5, 17, 13)), utc(2024, 5, 1));
  EXPECT_EQ(period_start(Period::month, utc(2024, 5, 1)), utc(2024, 5, 1));
  EXPECT_EQ(period_start(Period::month, utc(2024, 5, 1) - 1), utc(2024, 4, 1));
  EXPECT_EQ(period_start(Period::month, utc(2023, 12, 31, 23, 59, 59, 999'999)), utc(2023, 12, 1));
  EXPECT_EQ(period_start(Period::month, utc(2024, 1, 1)), utc(2024, 1, 1));
  EXPECT_EQ(period_start(Period::month, 0), 0);
  EXPECT_EQ(period_start(Period::month, -1), utc(1969, 12, 1));
}

TEST(PeriodStart, MonthHandlesLeapYears) {
  // 2024 is a leap year: February has 29 days.
  EXPECT_EQ(period_start(Period::month, utc(2024, 2, 29, 23, 59, 59, 999'999)), utc(2024, 2, 1));
  EXPECT_EQ(period_start(Period::month, utc(2024, 2, 28) + day), utc(2024, 2, 1));
  EXPECT_EQ(period_start(Period::month, utc(2024, 2, 28) + 2 * day), utc(2024, 3, 1));
  // 2023 is not: the day after 2023-02-28 is in March.
  EXPECT_EQ(period_start(Period::month, utc(2023, 2, 28) + day), utc(2023, 3, 1));
  EXPECT_EQ(period_start(Period::month, utc(2023, 3, 1) - 1), utc(2023, 2, 1));
  // 2000 is a leap year (divisible by 400); 2100 is not (divisible by 100).
  EXPECT_EQ(period_start(Period::month, utc(2000, 2, 28) + day), utc(2000, 2, 1));
  EXPECT_EQ(period_start(Period::month, utc(2100, 2, 28) + day), 4'107'542'400 * second);
  EXPECT_EQ(period_start(Period::month, 4'107'542'400 * second - 1), utc(2100, 2, 1));
}

TEST(PeriodNames, ParseAndNameRoundTrip) {
  for (Period period : {Period::none, Period::day, Period::week, Period::month}) {
    const auto parsed = parse_period(period_name(period));
    ASSERT_TRUE(parsed.has_value()) << period_name(period);
    EXPECT_EQ(*parsed, period);
  }
  EXPECT_EQ(period_name(Period::week), "week");
  EXPECT_FALSE(parse_period("").has_value());
  EXPECT_FALSE(parse_period("Month").has_value());
  EXPECT_FALSE(parse_period("year").has_value());
}

TEST(FormatTimestamp, IsRfc3339WithMicroseconds) {
  EXPECT_EQ(format_timestamp(0), "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(format_timestamp(utc(2026, 11, 22, 23, 19, 17, 123'456)),
            "2026-11-22T23:19:17.123456Z");
  EXPECT_EQ(format_timestamp(1'795'389'557 * second + 123'456), "2026-11-22T23:19:17.123456Z");
  EXPECT_EQ(format_timestamp(utc(2024, 1, 1) + 1), "2024-01-01T00:00:00.000001Z");
  EXPECT_EQ(format_timestamp(utc(2024, 2, 29, 23, 59, 59, 999'999)), "2024-02-29T23:59:59.999999Z");
  EXPECT_EQ(format_timestamp(-1), "1969-12-31T23:59:59.999999Z");
  EXPECT_EQ(format_timestamp(utc(2100, 3, 1, 9, 5, 7)), "2100-03-01T09:05:07.000000Z");
}

TEST(ParseDuration, AcceptsEveryUnit) {
  EXPECT_EQ(parse_duration("30s"), 30 * second);
  EXPECT_EQ(parse_duration("5m"), 5 * minute);
  EXPECT_EQ(parse_duration("1h"), hour);
  EXPECT_EQ(parse_duration("1d"), day);
  EXPECT_EQ(parse_duration("250ms"), 250'000);
  EXPECT_EQ(parse_duration("0s"), 0);
  EXPECT_EQ(parse_duration("86400s"), day);
  EXPECT_EQ(parse_duration("3650d"), 3'650 * day);
}

TEST(ParseDuration, RejectsMalformedOrHugeDurations) {
  const std::vector<std::string> rejected = {
      "",
      "s",
      "10",
      "-5s",
      "+5s",
      "5x",
      "5 s",
      " 5s",
      "1.5h",
      "5S",
      "5sec",
      "1h30m",
      "ms",
      "5mss",
      "3651d",
      "87601h",
      "99999999999999999999s",
      "9223372036854775807ms",
  };
  for (const std::string& text : rejected)
    EXPECT_FALSE(parse_duration(text).has_value()) << "accepted \"" << text << "\"";
}

}  // namespace
}  // namespace stub::ledger
