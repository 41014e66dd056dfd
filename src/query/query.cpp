#include "query/query.hpp"

#include <algorithm>
#include <cassert>
#include <charconv>
#include <chrono>
#include <limits>

#include "http/text_checks.hpp"
#include "ledger/budget_path.hpp"

namespace stub::query {

namespace {

using std::chrono::days;
using std::chrono::sys_days;

constexpr Micros micros_per_day = 86'400 * ledger::micros_per_second;
constexpr Micros micros_per_hour = 3'600 * ledger::micros_per_second;
// Years outside this span are refused: no ledger entry can be there, and the calendar
// arithmetic below stays far from overflow.
constexpr int year_min = 1970;
constexpr int year_max = 9999;

Error invalid(std::string subcode, std::string message) {
  return Error::invalid(std::move(subcode), std::move(message));
}

Micros day_start(int year, unsigned month, unsigned day) {
  const sys_days date{std::chrono::year{year} / std::chrono::month{month} / std::chrono::day{day}};
  return static_cast<Micros>(date.time_since_epoch().count()) * micros_per_day;
}

struct CivilDate {
  int year = 0;
  unsigned month = 0;
  unsigned day = 0;
};

CivilDate civil_of(Micros at) {
  const Micros day_index =
      at >= 0 ? at / micros_per_day : (at - micros_per_day + 1) / micros_per_day;
  const std::chrono::year_month_day date{sys_days{days{day_index}}};
  return {static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
          static_cast<unsigned>(date.day())};
}

Micros add_months(int year, unsigned month, int months) {
  const int index = year * 12 + static_cast<int>(month) - 1 + months;
  return day_start(index / 12, static_cast<unsigned>(index % 12 + 1), 1);
}

std::optional<int> parse_digits(std::string_view text) {
  int value = 0;
  if (text.empty() || text.size() > 9)
    return std::nullopt;
  for (char c : text) {
    if (c < '0' || c > '9')
      return std::nullopt;
  }
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

bool valid_date(int year, int month, int day) {
  if (year < year_min || year > year_max || month < 1 || month > 12 || day < 1)
    return false;
  const std::chrono::year_month_day date{std::chrono::year{year},
                                         std::chrono::month{static_cast<unsigned>(month)},
                                         std::chrono::day{static_cast<unsigned>(day)}};
  return date.ok();
}

// "2026", "2026-11", "2026-11-03": a calendar year, month or day.
std::optional<TimeRange> calendar_range_unbounded(std::string_view text);

// A calendar period whose end an RFC 3339 instant can write: the periods of 9999 end at
// 10000-01-01, which has no four-digit year (an answer echoes the range's end).
std::optional<TimeRange> calendar_range(std::string_view text) {
  auto range = calendar_range_unbounded(text);
  if (range && range->to >= day_start(10'000, 1, 1))
    return std::nullopt;
  return range;
}

std::optional<TimeRange> calendar_range_unbounded(std::string_view text) {
  if (text.size() == 4) {
    auto year = parse_digits(text);
    if (!year || !valid_date(*year, 1, 1))
      return std::nullopt;
    return TimeRange{std::string(text), day_start(*year, 1, 1), day_start(*year + 1, 1, 1)};
  }
  if (text.size() == 7 && text[4] == '-') {
    auto year = parse_digits(text.substr(0, 4));
    auto month = parse_digits(text.substr(5, 2));
    if (!year || !month || !valid_date(*year, *month, 1))
      return std::nullopt;
    const unsigned m = static_cast<unsigned>(*month);
    return TimeRange{std::string(text), day_start(*year, m, 1), add_months(*year, m, 1)};
  }
  if (text.size() == 10 && text[4] == '-' && text[7] == '-') {
    auto year = parse_digits(text.substr(0, 4));
    auto month = parse_digits(text.substr(5, 2));
    auto day = parse_digits(text.substr(8, 2));
    if (!year || !month || !day || !valid_date(*year, *month, *day))
      return std::nullopt;
    const Micros start =
        day_start(*year, static_cast<unsigned>(*month), static_cast<unsigned>(*day));
    return TimeRange{std::string(text), start, start + micros_per_day};
  }
  return std::nullopt;
}

Micros week_start(Micros at) {
  return ledger::period_start(ledger::Period::week, at);
}

}  // namespace

std::string_view metric_name(Metric metric) {
  switch (metric) {
    case Metric::spend:
      return "spend";
    case Metric::count:
      return "count";
    case Metric::denials:
      return "denials";
    case Metric::holds_open:
      return "holds_open";
    case Metric::avg:
      return "avg";
  }
  return "spend";
}

std::string group_by_name(const GroupBy& group) {
  switch (group.kind) {
    case GroupKind::budget:
      return group.depth == ledger::BudgetPath::depth_max ? "budget"
                                                          : "budget:" + std::to_string(group.depth);
    case GroupKind::team:
      return "team";
    case GroupKind::agent:
      return "agent";
    case GroupKind::vendor:
      return "vendor";
    case GroupKind::category:
      return "category";
    case GroupKind::intent:
      return "intent";
    case GroupKind::tag:
      return "tag:" + group.tag_key;
    case GroupKind::hour:
      return "hour";
    case GroupKind::day:
      return "day";
    case GroupKind::week:
      return "week";
    case GroupKind::month:
      return "month";
  }
  return "budget";
}

std::string_view order_name(Order order) {
  switch (order) {
    case Order::value_desc:
      return "value_desc";
    case Order::value_asc:
      return "value_asc";
    case Order::key_asc:
      return "key_asc";
  }
  return "value_desc";
}

std::optional<Micros> parse_timestamp(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM|-HH:MM)
  if (text.size() < 20 || text.size() > 35 || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':')
    return std::nullopt;
  auto year = parse_digits(text.substr(0, 4));
  auto month = parse_digits(text.substr(5, 2));
  auto day = parse_digits(text.substr(8, 2));
  auto hour = parse_digits(text.substr(11, 2));
  auto minute = parse_digits(text.substr(14, 2));
  auto second = parse_digits(text.substr(17, 2));
  if (!year || !month || !day || !hour || !minute || !second || !valid_date(*year, *month, *day) ||
      *hour > 23 || *minute > 59 || *second > 59)
    return std::nullopt;
  size_t at = 19;
  Micros fraction = 0;
  if (at < text.size() && text[at] == '.') {
    ++at;
    int digits = 0;
    while (at < text.size() && text[at] >= '0' && text[at] <= '9') {
      if (digits >= 6)
        return std::nullopt;  // finer than a microsecond cannot be represented exactly
      fraction = fraction * 10 + (text[at] - '0');
      ++digits;
      ++at;
    }
    if (digits == 0)
      return std::nullopt;
    for (int k = digits; k < 6; ++k)
      fraction *= 10;
  }
  Micros offset = 0;
  const std::string_view zone = text.substr(at);
  if (zone == "Z" || zone == "z") {
    offset = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    auto zone_hours = parse_digits(zone.substr(1, 2));
    auto zone_minutes = parse_digits(zone.substr(4, 2));
    if (!zone_hours || !zone_minutes || *zone_hours > 23 || *zone_minutes > 59)
      return std::nullopt;
    offset = (*zone_hours * 60 + *zone_minutes) * 60 * ledger::micros_per_second;
    if (zone[0] == '-')
      offset = -offset;
  } else {
    return std::nullopt;
  }
  const Micros local =
      day_start(*year, static_cast<unsigned>(*month), static_cast<unsigned>(*day)) +
      ((*hour * 60 + *minute) * 60 + *second) * ledger::micros_per_second + fraction;
  // An offset can carry 0000-01-01 or 9999-12-31 out of the four-digit years that RFC 3339
  // (and format_timestamp) can write: such an instant has no text to echo it with.
  const Micros instant = local - offset;
  if (instant < day_start(0, 1, 1) || instant >= day_start(10'000, 1, 1))
    return std::nullopt;
  return instant;
}

Result<TimeRange> resolve_time_range(std::string_view text, Micros now) {
  assert(now >= 0);
  const std::string name(text);
  const CivilDate today = civil_of(now);
  const Micros today_start = day_start(today.year, today.month, today.day);
  if (text == "all")
    return TimeRange{name, 0, std::numeric_limits<Micros>::max()};
  if (text == "today")
    return TimeRange{name, today_start, today_start + micros_per_day};
  if (text == "yesterday")
    return TimeRange{name, today_start - micros_per_day, today_start};
  if (text == "this week")
    return TimeRange{name, week_start(now), week_start(now) + 7 * micros_per_day};
  if (text == "last week")
    return TimeRange{name, week_start(now) - 7 * micros_per_day, week_start(now)};
  if (text == "this month")
    return TimeRange{name, day_start(today.year, today.month, 1),
                     add_months(today.year, today.month, 1)};
  if (text == "last month")
    return TimeRange{name, add_months(today.year, today.month, -1),
                     day_start(today.year, today.month, 1)};
  if (text == "this year")
    return TimeRange{name, day_start(today.year, 1, 1), day_start(today.year + 1, 1, 1)};
  if (text == "last year")
    return TimeRange{name, day_start(today.year - 1, 1, 1), day_start(today.year, 1, 1)};
  // "last 7d", "last 24h", "last 2w": a rolling window ending now (inclusive of now).
  if (text.starts_with("last ") && text.size() >= 7) {
    const std::string_view amount = text.substr(5, text.size() - 6);
    const char unit = text.back();
    auto count = parse_digits(amount);
    Micros unit_micros = 0;
    if (unit == 'h')
      unit_micros = micros_per_hour;
    else if (unit == 'd')
      unit_micros = micros_per_day;
    else if (unit == 'w')
      unit_micros = 7 * micros_per_day;
    if (count && *count >= 1 && *count <= 3660 && unit_micros > 0)
      return TimeRange{name, std::max<Micros>(0, now + 1 - *count * unit_micros), now + 1};
  }
  if (auto calendar = calendar_range(text))
    return *calendar;
  // "since 2026-11-01": from that day up to now.
  if (text.starts_with("since ")) {
    auto day = calendar_range(text.substr(6));
    if (day && text.size() == 16 && day->from <= now)
      return TimeRange{name, day->from, now + 1};
  }
  return invalid("invalid_range",
                 "Unknown time range \"" + name.substr(0, 64) +
                     "\": use all, today, yesterday, this|last week|month|year, last 7d|24h|2w, "
                     "2026, 2026-11, 2026-11-03, since 2026-11-01, or from/to as RFC 3339 "
                     "instants.");
}

namespace {

// Every string a query carries is bounded and clean text (the same rule as every other input).
Result<std::string> text_member(const boost::json::value& value, std::string_view field) {
  if (!value.is_string())
    return invalid("invalid_query", "\"" + std::string(field) + "\" must be a string.");
  const std::string text(value.get_string());
  if (text.empty() || text.size() > query_text_length_max) {
    return invalid("invalid_query", "\"" + std::string(field) + "\" must be 1 to " +
                                        std::to_string(query_text_length_max) + " bytes.");
  }
  if (!http::is_clean_text(text))
    return invalid("invalid_text", "\"" + std::string(field) +
                                       "\" must be valid UTF-8 without control characters.");
  return text;
}

// A string or an array of strings.
Result<std::vector<std::string>> text_list(const boost::json::value& value,
                                           std::string_view field) {
  std::vector<std::string> out;
  if (value.is_string()) {
    auto text = text_member(value, field);
    if (!text.ok())
      return text.error();
    out.push_back(std::move(text).value());
    return out;
  }
  if (!value.is_array())
    return invalid("invalid_query",
                   "\"" + std::string(field) + "\" must be a string or an array of strings.");
  const auto& array = value.get_array();
  if (array.size() > filter_values_max) {
    return invalid("invalid_query", "\"" + std::string(field) + "\" takes at most " +
                                        std::to_string(filter_values_max) + " values.");
  }
  for (const auto& item : array) {
    auto text = text_member(item, field);
    if (!text.ok())
      return text.error();
    if (std::find(out.begin(), out.end(), *text) == out.end())
      out.push_back(std::move(text).value());
  }
  return out;
}

// Tag keys that can be queried: the characters of a JSON path label that needs no quoting
// rules (SQLite's json_extract path is built from it, always as a bound parameter).
bool valid_tag_key(std::string_view key) {
  if (key.empty() || key.size() > tag_key_length_max)
    return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

std::optional<GroupBy> parse_group(std::string_view text) {
  using Kind = GroupKind;
  if (text == "budget")
    return GroupBy{Kind::budget, ledger::BudgetPath::depth_max, ""};
  if (text.starts_with("budget:")) {
    auto depth = parse_digits(text.substr(7));
    if (!depth || *depth < 1 || *depth > static_cast<int>(ledger::BudgetPath::depth_max))
      return std::nullopt;
    return GroupBy{Kind::budget, static_cast<size_t>(*depth), ""};
  }
  if (text.starts_with("tag:")) {
    const std::string_view key = text.substr(4);
    if (!valid_tag_key(key))
      return std::nullopt;
    return GroupBy{Kind::tag, 0, std::string(key)};
  }
  static const std::pair<std::string_view, GroupKind> names[] = {
      {"team", Kind::team},         {"agent", Kind::agent},   {"vendor", Kind::vendor},
      {"category", Kind::category}, {"intent", Kind::intent}, {"hour", Kind::hour},
      {"day", Kind::day},           {"week", Kind::week},     {"month", Kind::month}};
  for (const auto& [name, kind] : names) {
    if (text == name)
      return GroupBy{kind, kind == Kind::team ? 2u : kind == Kind::agent ? 3u : 0u, ""};
  }
  return std::nullopt;
}

const std::vector<std::string_view>& money_kinds() {
  static const std::vector<std::string_view> kinds{"spend", "capture", "expire"};
  return kinds;
}

const std::vector<std::string_view>& denial_codes() {
  static const std::vector<std::string_view> codes{
      "frozen",          "vendor_blocked",        "per_txn_exceeded", "approval_required",
      "window_exceeded", "vendor_limit_exceeded", "budget_exceeded",  "breaker_tripped"};
  return codes;
}

bool contains(const std::vector<std::string_view>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

Status parse_filters(const boost::json::value& value, Filters& filters) {
  if (!value.is_object())
    return invalid("invalid_query", "\"filters\" must be an object.");
  for (const auto& member : value.get_object()) {
    const std::string_view key = member.key();
    if (key == "subtree") {
      auto text = text_member(member.value(), "filters.subtree");
      if (!text.ok())
        return text.error();
      if (!ledger::BudgetPath::parse(*text))
        return invalid("invalid_query", "\"filters.subtree\" must be a budget path.");
      filters.subtree = std::move(text).value();
    } else if (key == "vendor" || key == "category" || key == "kind" || key == "code") {
      auto list = text_list(member.value(), "filters." + std::string(key));
      if (!list.ok())
        return list.error();
      if (key == "vendor")
        filters.vendors = std::move(list).value();
      else if (key == "category")
        filters.categories = std::move(list).value();
      else if (key == "kind")
        filters.kinds = std::move(list).value();
      else
        filters.codes = std::move(list).value();
    } else if (key == "tags") {
      if (!member.value().is_object())
        return invalid("invalid_query", "\"filters.tags\" must be an object of strings.");
      const auto& tags = member.value().get_object();
      if (tags.size() > tag_filters_max) {
        return invalid("invalid_query", "\"filters.tags\" takes at most " +
                                            std::to_string(tag_filters_max) + " keys.");
      }
      for (const auto& tag : tags) {
        if (!valid_tag_key(tag.key())) {
          return invalid("invalid_query",
                         "Tag keys in a query are 1 to 64 of the characters A-Z a-z 0-9 _ - .");
        }
        auto text = text_member(tag.value(), "filters.tags");
        if (!text.ok())
          return text.error();
        filters.tags.emplace_back(std::string(tag.key()), std::move(text).value());
      }
      std::sort(filters.tags.begin(), filters.tags.end());
    } else {
      return invalid("invalid_query", "Unknown filter \"" + std::string(key.substr(0, 64)) +
                                          "\": use subtree, vendor, category, kind, code, tags.");
    }
  }
  return Status::success();
}

}  // namespace

Result<Query> parse_query(const boost::json::value& json, Micros now) {
  if (!json.is_object())
    return invalid("invalid_query", "A query must be a JSON object.");
  const auto& object = json.get_object();
  Query query;
  const boost::json::value* metric = object.if_contains("metric");
  if (metric == nullptr)
    return invalid("invalid_query",
                   "\"metric\" is required: spend, count, denials, holds_open, avg.");
  {
    auto name = text_member(*metric, "metric");
    if (!name.ok())
      return name.error();
    bool found = false;
    for (Metric candidate :
         {Metric::spend, Metric::count, Metric::denials, Metric::holds_open, Metric::avg}) {
      if (*name == metric_name(candidate)) {
        query.metric = candidate;
        found = true;
      }
    }
    if (!found)
      return invalid("invalid_query",
                     "Unknown metric: use spend, count, denials, holds_open, avg.");
  }
  std::optional<std::string> range_text, from_text, to_text;
  for (const auto& member : object) {
    const std::string_view key = member.key();
    if (key == "metric") {
      continue;
    } else if (key == "group_by") {
      auto list = text_list(member.value(), "group_by");
      if (!list.ok())
        return list.error();
      if (list->size() > group_by_count_max)
        return invalid("invalid_query", "\"group_by\" takes at most 3 dimensions.");
      for (const std::string& name : *list) {
        auto group = parse_group(name);
        if (!group) {
          return invalid("invalid_query",
                         "Unknown group_by \"" + name.substr(0, 64) +
                             "\": use budget, budget:N, team, agent, vendor, category, intent, "
                             "tag:KEY, hour, day, week, month.");
        }
        if (std::find(query.group_by.begin(), query.group_by.end(), *group) == query.group_by.end())
          query.group_by.push_back(std::move(*group));
      }
    } else if (key == "filters") {
      if (Status status = parse_filters(member.value(), query.filters); !status.ok())
        return status.error();
    } else if (key == "range" || key == "from" || key == "to") {
      if (key == "to" && member.value().is_null())
        continue;  // open-ended, as the answer echoes it
      auto text = text_member(member.value(), key);
      if (!text.ok())
        return text.error();
      (key == "range" ? range_text : key == "from" ? from_text : to_text) = std::move(*text);
    } else if (key == "order") {
      auto text = text_member(member.value(), "order");
      if (!text.ok())
        return text.error();
      if (*text == "value_desc")
        query.order = Order::value_desc;
      else if (*text == "value_asc")
        query.order = Order::value_asc;
      else if (*text == "key_asc")
        query.order = Order::key_asc;
      else
        return invalid("invalid_query", "Unknown order: use value_desc, value_asc, key_asc.");
    } else if (key == "limit") {
      const auto& value = member.value();
      if (!value.is_int64() && !value.is_uint64())
        return invalid("invalid_query", "\"limit\" must be an integer from 1 to 1000.");
      const int64_t limit =
          value.is_int64()
              ? value.get_int64()
              : static_cast<int64_t>(std::min<uint64_t>(value.get_uint64(), row_limit_max + 1));
      if (limit < 1 || limit > static_cast<int64_t>(row_limit_max))
        return invalid("invalid_query", "\"limit\" must be an integer from 1 to 1000.");
      query.limit = static_cast<size_t>(limit);
    } else {
      return invalid("invalid_query", "Unknown member \"" + std::string(key.substr(0, 64)) +
                                          "\": use metric, group_by, filters, range, from, to, "
                                          "order, limit.");
    }
  }
  // Filters that fit the metric.
  for (const std::string& kind : query.filters.kinds) {
    const bool money_metric = query.metric == Metric::spend || query.metric == Metric::count ||
                              query.metric == Metric::avg;
    if (!(money_metric && contains(money_kinds(), kind)) &&
        !(query.metric == Metric::denials && kind == "deny")) {
      return invalid("invalid_query", "Filter kind \"" + kind.substr(0, 64) +
                                          "\" does not fit metric " +
                                          std::string(metric_name(query.metric)) +
                                          " (money metrics take spend, capture, expire).");
    }
  }
  for (const std::string& code : query.filters.codes) {
    if (query.metric != Metric::denials)
      return invalid("invalid_query", "Filter code applies to metric denials only.");
    if (!contains(denial_codes(), code))
      return invalid("invalid_query", "Unknown denial code \"" + code.substr(0, 64) + "\".");
  }
  // The time range: a named range, or from/to instants (either may be open).
  // With from/to, a range is only the label they were resolved from (as an answer echoes
  // the query): the instants decide, so a query re-sent later means the same period.
  // The label query_to_json writes for from/to instants ("from A to B") is no named range, but
  // an echoed query must parse back: it is accepted when it names exactly those instants.
  const auto instants_label = [](Micros from, Micros to, bool open_ended) {
    return "from " + ledger::format_timestamp(std::max<Micros>(from, 0)) + " to " +
           (open_ended ? std::string("now") : ledger::format_timestamp(to));
  };
  if (range_text && !resolve_time_range(*range_text, now).ok() && !(from_text || to_text))
    return resolve_time_range(*range_text, now).error();
  if (from_text || to_text) {
    TimeRange range{"", 0, std::numeric_limits<Micros>::max()};
    if (from_text) {
      auto at = parse_timestamp(*from_text);
      if (!at)
        return invalid("invalid_range", "\"from\" must be an RFC 3339 instant.");
      range.from = *at;
    }
    if (to_text) {
      auto at = parse_timestamp(*to_text);
      if (!at)
        return invalid("invalid_range", "\"to\" must be an RFC 3339 instant.");
      range.to = *at;
    }
    if (range.to <= range.from)
      return invalid("invalid_range", "\"to\" must be after \"from\".");
    const std::string label = instants_label(range.from, range.to, !to_text);
    if (range_text && *range_text != label && !resolve_time_range(*range_text, now).ok())
      return resolve_time_range(*range_text, now).error();
    range.text = range_text ? *range_text : label;
    query.range = std::move(range);
  } else {
    auto range = resolve_time_range(range_text.value_or("all"), now);
    if (!range.ok())
      return range.error();
    query.range = std::move(range).value();
  }
  assert(query.group_by.size() <= group_by_count_max);
  assert(query.limit >= 1 && query.limit <= row_limit_max);
  return query;
}

boost::json::object query_to_json(const Query& query) {
  boost::json::object out;
  out["metric"] = metric_name(query.metric);
  boost::json::array groups;
  for (const GroupBy& group : query.group_by)
    groups.emplace_back(group_by_name(group));
  out["group_by"] = std::move(groups);
  boost::json::object filters;
  if (!query.filters.subtree.empty())
    filters["subtree"] = query.filters.subtree;
  auto put_list = [&filters](std::string_view key, const std::vector<std::string>& values) {
    if (values.empty())
      return;
    boost::json::array array;
    for (const std::string& value : values)
      array.emplace_back(value);
    filters[key] = std::move(array);
  };
  put_list("vendor", query.filters.vendors);
  put_list("category", query.filters.categories);
  put_list("kind", query.filters.kinds);
  put_list("code", query.filters.codes);
  if (!query.filters.tags.empty()) {
    boost::json::object tags;
    for (const auto& [key, value] : query.filters.tags)
      tags[key] = value;
    filters["tags"] = std::move(tags);
  }
  out["filters"] = std::move(filters);
  out["range"] = query.range.text;
  out["from"] = ledger::format_timestamp(std::max<Micros>(query.range.from, 0));
  if (query.range.to != std::numeric_limits<Micros>::max())
    out["to"] = ledger::format_timestamp(query.range.to);
  else
    out["to"] = nullptr;
  out["order"] = order_name(query.order);
  out["limit"] = static_cast<int64_t>(query.limit);
  return out;
}

boost::json::object query_json_schema() {
  auto string_or_list = [] {
    return boost::json::object{
        {"anyOf",
         boost::json::array{boost::json::object{{"type", "string"}},
                            boost::json::object{{"type", "array"},
                                                {"items", boost::json::object{{"type", "string"}}},
                                                {"maxItems", filter_values_max}}}}};
  };
  boost::json::object filters{
      {"type", "object"},
      {"additionalProperties", false},
      {"properties",
       boost::json::object{
           {"subtree", boost::json::object{{"type", "string"},
                                           {"description", "a budget path, e.g. acme/research"}}},
           {"vendor", string_or_list()},
           {"category", string_or_list()},
           {"kind", string_or_list()},
           {"code", string_or_list()},
           {"tags", boost::json::object{
                        {"type", "object"},
                        {"additionalProperties", boost::json::object{{"type", "string"}}}}}}}};
  return boost::json::object{
      {"type", "object"},
      {"additionalProperties", false},
      {"required", boost::json::array{"metric"}},
      {"properties",
       boost::json::object{
           {"metric", boost::json::object{{"type", "string"},
                                          {"enum", boost::json::array{"spend", "count", "denials",
                                                                      "holds_open", "avg"}}}},
           {"group_by",
            boost::json::object{
                {"type", "array"},
                {"maxItems", group_by_count_max},
                {"items",
                 boost::json::object{
                     {"type", "string"},
                     {"description",
                      "budget, budget:N, team, agent, vendor, category, intent, tag:KEY, hour, "
                      "day, week, month"}}}}},
           {"filters", std::move(filters)},
           {"range",
            boost::json::object{{"type", "string"},
                                {"description",
                                 "all, today, yesterday, this|last week|month|year, last 7d, "
                                 "2026-11, 2026-11-03"}}},
           {"from", boost::json::object{{"type", "string"}, {"format", "date-time"}}},
           {"to", boost::json::object{{"type", "string"}, {"format", "date-time"}}},
           {"order", boost::json::object{{"type", "string"},
                                         {"enum", boost::json::array{"value_desc", "value_asc",
                                                                     "key_asc"}}}},
           {"limit", boost::json::object{
                         {"type", "integer"}, {"minimum", 1}, {"maximum", row_limit_max}}}}}};
}

Status confine_to_scope(Query& query, std::string_view caller_node) {
  if (caller_node.empty()) {
    if (query.filters.subtree.empty())
      return invalid("subtree_required", "Name the budget subtree to ask about (filters.subtree).");
    return Status::success();
  }
  auto node = ledger::BudgetPath::parse(caller_node);
  assert(node.has_value());
  if (query.filters.subtree.empty()) {
    query.filters.subtree = std::string(caller_node);
    return Status::success();
  }
  auto asked = ledger::BudgetPath::parse(query.filters.subtree);
  assert(asked.has_value());  // parse_query checked it
  if (!asked->within(*node)) {
    return Error{ErrorCode::forbidden, "outside_key_subtree",
                 "This key may only ask about " + std::string(caller_node) + " and below."};
  }
  return Status::success();
}

}  // namespace stub::query
