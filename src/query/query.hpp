#pragma once

// The constrained query (docs/query.md): a small, closed schema of what may be asked of the
// ledger. POST /v1/query, `stub query`, `stub ask` (offline parser or LLM) and `stub report`
// all produce a Query, validated by parse_query; only then is it compiled (compiler.hpp) to
// parameterized SQL over whitelisted columns. Pure: no I/O; the clock is passed in.

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ledger/result.hpp"
#include "ledger/time_point.hpp"

namespace stub::query {

using ledger::Micros;

enum class Metric { spend, count, denials, holds_open, avg };

enum class GroupKind { budget, team, agent, vendor, category, intent, tag, hour, day, week, month };

struct GroupBy {
  GroupKind kind = GroupKind::budget;
  size_t depth = 0;     // budget: the path truncated to this many segments (1..8)
  std::string tag_key;  // tag: the key

  friend bool operator==(const GroupBy&, const GroupBy&) = default;
};

enum class Order { value_desc, value_asc, key_asc };

// The reserved tag key under which an entry's category is stored (docs/design.md,
// "Attribution"): inside the hashed tags, so old entries still verify.
inline constexpr std::string_view category_tag_key = "category";

// Limits: everything a caller sends is bounded before it is compiled.
inline constexpr size_t group_by_count_max = 3;
inline constexpr size_t filter_values_max = 16;  // per filter list
inline constexpr size_t tag_filters_max = 8;
inline constexpr size_t row_limit_max = 1'000;
inline constexpr size_t row_limit_default = 100;
inline constexpr size_t query_text_length_max = 256;  // any one string inside a query
inline constexpr size_t tag_key_length_max = 64;
// The most rows the SQL may return before the roll-up (budgets x days, say); a broader query
// is refused rather than read into memory.
inline constexpr size_t sql_rows_max = 200'000;

struct Filters {
  std::string subtree;  // a budget path; required, defaults to the caller's own node
  std::vector<std::string> vendors;
  std::vector<std::string> categories;
  std::vector<std::string> kinds;  // spend, capture, expire (money) or hold, deny ...
  std::vector<std::string> codes;  // denial codes
  std::vector<std::pair<std::string, std::string>> tags;  // key = value, all must hold

  friend bool operator==(const Filters&, const Filters&) = default;
};

// [from, to) in microseconds, and the text it was resolved from ("last 7d", "2026-11", or the
// two RFC 3339 instants).
struct TimeRange {
  std::string text;
  Micros from = 0;
  Micros to = 0;

  friend bool operator==(const TimeRange&, const TimeRange&) = default;
};

struct Query {
  Metric metric = Metric::spend;
  std::vector<GroupBy> group_by;
  Filters filters;
  TimeRange range;
  Order order = Order::value_desc;
  size_t limit = row_limit_default;

  friend bool operator==(const Query&, const Query&) = default;
};

std::string_view metric_name(Metric metric);
std::string group_by_name(const GroupBy& group);
std::string_view order_name(Order order);

// Resolves a time expression against `now`: "all", "today", "yesterday", "this week|month|year",
// "last week|month|year", "last 7d" / "last 24h" / "last 2w" (a rolling window ending now),
// "2026", "2026-11", "2026-11-03". Periods are UTC calendar periods; weeks start on Monday.
Result<TimeRange> resolve_time_range(std::string_view text, Micros now);
// An RFC 3339 instant ("2026-11-03T10:00:00Z", "...+02:00", fractions to microseconds).
std::optional<Micros> parse_timestamp(std::string_view text);

// Validates a query sent as JSON (the tool schema of the LLM path takes the same shape):
// unknown members, wrong types, unknown names and values over their limits are refused with
// a 400 naming the member. `now` resolves relative ranges.
Result<Query> parse_query(const boost::json::value& json, Micros now);

// The query as it was understood, in the same JSON shape parse_query takes (from/to resolved).
boost::json::object query_to_json(const Query& query);

// The JSON Schema of the query, the only tool offered to an LLM.
boost::json::object query_json_schema();

// Checks a caller's scope: an agent key (its node non-empty) may only ask about its own
// subtree; an empty subtree becomes the key's node. The admin (empty node) must name one.
Status confine_to_scope(Query& query, std::string_view caller_node);

}  // namespace stub::query
