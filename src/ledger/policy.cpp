#include "ledger/policy.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <cassert>

#include "ledger/canonical_json.hpp"

namespace stub::ledger {

namespace {

constexpr Micros micros_per_day = 86'400 * micros_per_second;

int64_t floor_div(int64_t value, int64_t divisor) {
  assert(divisor > 0);
  const int64_t quotient = value / divisor;
  return (value % divisor != 0 && value < 0) ? quotient - 1 : quotient;
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i]))
      return false;
  }
  return true;
}

bool pattern_character(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_' ||
         c == ':' || c == '/';
}

// Reads an integer member of a stored JSON array, or `fallback`.
int64_t int_at(const boost::json::array& array, size_t index, int64_t fallback = 0) {
  if (index >= array.size() || !array[index].is_int64())
    return fallback;
  return array[index].get_int64();
}

std::optional<int64_t> optional_int_at(const boost::json::array& array, size_t index) {
  if (index >= array.size() || !array[index].is_int64())
    return std::nullopt;
  return array[index].get_int64();
}

boost::json::value optional_int(std::optional<int64_t> value) {
  if (!value)
    return nullptr;
  return *value;
}

std::vector<std::string> strings_of(const boost::json::value* value) {
  std::vector<std::string> out;
  if (value == nullptr || !value->is_array())
    return out;
  for (const auto& item : value->get_array()) {
    if (item.is_string())
      out.emplace_back(item.get_string());
  }
  return out;
}

boost::json::array string_array(const std::vector<std::string>& values) {
  boost::json::array out;
  for (const std::string& value : values)
    out.emplace_back(value);
  return out;
}

boost::json::array ring_to_json(const Ring& ring) {
  boost::json::array buckets;
  for (const Bucket& bucket : ring.buckets) {
    buckets.emplace_back(bucket.index);
    buckets.emplace_back(bucket.amount);
    buckets.emplace_back(bucket.count);
  }
  return boost::json::array{ring.duration, ring.since, std::move(buckets)};
}

std::optional<Ring> ring_from_json(const boost::json::value& value) {
  if (!value.is_array())
    return std::nullopt;
  const auto& array = value.get_array();
  Ring ring;
  ring.duration = int_at(array, 0);
  ring.since = int_at(array, 1);
  if (ring.duration < policy_duration_min || array.size() < 3 || !array[2].is_array())
    return std::nullopt;
  const auto& flat = array[2].get_array();
  for (size_t i = 0; i + 2 < flat.size(); i += 3) {
    ring.buckets.push_back(Bucket{int_at(flat, i), int_at(flat, i + 1), int_at(flat, i + 2)});
  }
  return ring;
}

}  // namespace

std::vector<int> Policies::effective_thresholds() const {
  return thresholds.value_or(std::vector<int>{50, 80, 100});
}

bool Ring::overlaps(const Bucket& bucket, Micros now) const {
  return (bucket.index + 1) * width() > now - duration;
}

Money Ring::amount_at(Micros now) const {
  // Saturates at the largest amount a budget can track, which is above every limit: a window
  // that long and busy refuses, and the sum can never wrap.
  int64_t total = 0;
  for (const Bucket& bucket : buckets) {
    if (overlaps(bucket, now))
      total = std::min(total + bucket.amount, Money::micros_max);
  }
  assert(total >= 0 && total <= Money::micros_max);
  return Money::from_micros(total);
}

int64_t Ring::count_at(Micros now) const {
  int64_t total = 0;
  for (const Bucket& bucket : buckets) {
    if (overlaps(bucket, now))
      total += bucket.count;
  }
  return total;
}

void Ring::add(Micros at, int64_t amount, int64_t count, Micros now) {
  assert(amount >= 0 && count >= 0 && width() > 0);
  const int64_t index = floor_div(at, width());
  auto found = std::lower_bound(buckets.begin(), buckets.end(), index,
                                [](const Bucket& bucket, int64_t i) { return bucket.index < i; });
  if (found == buckets.end() || found->index != index)
    found = buckets.insert(found, Bucket{index, 0, 0});
  found->amount = std::min(found->amount + amount, Money::micros_max);
  found->count += count;
  // A bucket that no longer overlaps the window ending now never will again (time moves on).
  std::erase_if(buckets, [&](const Bucket& bucket) { return !overlaps(bucket, now); });
  assert(buckets.empty() || overlaps(buckets.back(), now) || at < now - duration);
}

void Ring::release(Micros made_at, int64_t amount) {
  assert(amount >= 0);
  if (made_at < since || width() <= 0)
    return;  // The ring started after the hold was made: it never counted it.
  const int64_t index = floor_div(made_at, width());
  for (Bucket& bucket : buckets) {
    if (bucket.index == index) {
      bucket.amount -= std::min(bucket.amount, amount);
      return;
    }
  }
  // The bucket aged out: nothing of it counts any more.
}

const Ring* Usage::window_ring(Micros duration) const {
  for (const Ring& ring : windows) {
    if (ring.duration == duration)
      return &ring;
  }
  return nullptr;
}

std::string policies_to_storage(const Policies& policies) {
  if (policies.empty())
    return "";
  boost::json::object out;
  if (!policies.windows.empty()) {
    boost::json::array windows;
    for (const WindowCap& window : policies.windows)
      windows.push_back(boost::json::array{window.duration, window.limit.micros()});
    out["w"] = std::move(windows);
  }
  if (!policies.vendors.allow.empty())
    out["va"] = string_array(policies.vendors.allow);
  if (!policies.vendors.block.empty())
    out["vb"] = string_array(policies.vendors.block);
  if (policies.approval_above)
    out["aa"] = policies.approval_above->micros();
  if (policies.breaker) {
    const BreakerSettings& breaker = *policies.breaker;
    out["b"] = boost::json::array{
        breaker.duration,
        optional_int(breaker.max_amount ? std::optional<int64_t>(breaker.max_amount->micros())
                                        : std::nullopt),
        optional_int(breaker.max_count)};
  }
  if (policies.thresholds) {
    boost::json::array thresholds;
    for (int percent : *policies.thresholds)
      thresholds.emplace_back(percent);
    out["t"] = std::move(thresholds);
  }
  return canonical_json(out);
}

Policies policies_from_storage(std::string_view text) {
  Policies policies;
  if (text.empty())
    return policies;
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_object())
    return policies;
  const auto& object = parsed.get_object();
  if (const auto* windows = object.if_contains("w"); windows && windows->is_array()) {
    for (const auto& window : windows->get_array()) {
      if (!window.is_array())
        continue;
      policies.windows.push_back(WindowCap{int_at(window.get_array(), 0),
                                           Money::from_micros(int_at(window.get_array(), 1))});
    }
  }
  policies.vendors.allow = strings_of(object.if_contains("va"));
  policies.vendors.block = strings_of(object.if_contains("vb"));
  if (const auto* above = object.if_contains("aa"); above && above->is_int64())
    policies.approval_above = Money::from_micros(above->get_int64());
  if (const auto* breaker = object.if_contains("b"); breaker && breaker->is_array()) {
    const auto& array = breaker->get_array();
    BreakerSettings settings;
    settings.duration = int_at(array, 0);
    if (const auto amount = optional_int_at(array, 1))
      settings.max_amount = Money::from_micros(*amount);
    settings.max_count = optional_int_at(array, 2);
    policies.breaker = settings;
  }
  if (const auto* thresholds = object.if_contains("t"); thresholds && thresholds->is_array()) {
    std::vector<int> percents;
    for (const auto& percent : thresholds->get_array()) {
      if (percent.is_int64())
        percents.push_back(static_cast<int>(percent.get_int64()));
    }
    policies.thresholds = std::move(percents);
  }
  return policies;
}

std::string usage_to_storage(const Usage& usage) {
  if (usage.empty())
    return "";
  boost::json::object out;
  if (!usage.windows.empty()) {
    boost::json::array windows;
    for (const Ring& ring : usage.windows)
      windows.push_back(ring_to_json(ring));
    out["w"] = std::move(windows);
  }
  if (usage.breaker)
    out["b"] = ring_to_json(*usage.breaker);
  if (usage.alerted_period_start != 0 || usage.alerted_percent != 0)
    out["t"] = boost::json::array{usage.alerted_period_start, usage.alerted_percent};
  return canonical_json(out);
}

Usage usage_from_storage(std::string_view text) {
  Usage usage;
  if (text.empty())
    return usage;
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_object())
    return usage;
  const auto& object = parsed.get_object();
  if (const auto* windows = object.if_contains("w"); windows && windows->is_array()) {
    for (const auto& window : windows->get_array()) {
      if (auto ring = ring_from_json(window))
        usage.windows.push_back(std::move(*ring));
    }
  }
  if (const auto* breaker = object.if_contains("b"))
    usage.breaker = ring_from_json(*breaker);
  if (const auto* thresholds = object.if_contains("t"); thresholds && thresholds->is_array()) {
    usage.alerted_period_start = int_at(thresholds->get_array(), 0);
    usage.alerted_percent = static_cast<int>(int_at(thresholds->get_array(), 1));
  }
  return usage;
}

boost::json::object policies_to_json(const Policies& policies) {
  boost::json::object out;
  boost::json::array windows;
  for (const WindowCap& window : policies.windows) {
    windows.push_back(boost::json::object{{"duration", format_duration(window.duration)},
                                          {"limit", window.limit.to_string()}});
  }
  out["windows"] = std::move(windows);
  out["vendors"] = boost::json::object{{"allow", string_array(policies.vendors.allow)},
                                       {"block", string_array(policies.vendors.block)}};
  out["approval_above"] = policies.approval_above
                              ? boost::json::value(policies.approval_above->to_string())
                              : boost::json::value(nullptr);
  if (policies.breaker) {
    const BreakerSettings& breaker = *policies.breaker;
    out["breaker"] = boost::json::object{
        {"duration", format_duration(breaker.duration)},
        {"max_amount", breaker.max_amount ? boost::json::value(breaker.max_amount->to_string())
                                          : boost::json::value(nullptr)},
        {"max_count", optional_int(breaker.max_count)}};
  } else {
    out["breaker"] = nullptr;
  }
  boost::json::array thresholds;
  for (int percent : policies.effective_thresholds())
    thresholds.emplace_back(percent);
  out["thresholds"] = std::move(thresholds);
  return out;
}

std::string format_duration(Micros duration) {
  struct Unit {
    Micros scale;
    const char* suffix;
  };
  constexpr Unit units[] = {{micros_per_day, "d"},
                            {3'600 * micros_per_second, "h"},
                            {60 * micros_per_second, "m"},
                            {micros_per_second, "s"},
                            {1'000, "ms"}};
  for (const Unit& unit : units) {
    if (duration != 0 && duration % unit.scale == 0)
      return std::to_string(duration / unit.scale) + unit.suffix;
  }
  return std::to_string(duration / 1'000) + "ms";
}

bool valid_vendor_pattern(std::string_view pattern) {
  if (pattern.empty() || pattern.size() > vendor_pattern_length_max)
    return false;
  std::string_view name = pattern;
  if (pattern.starts_with("*.")) {
    name = pattern.substr(2);
    // A wildcard covers names below a domain: "*.com" alone would be too broad to be meant,
    // but it is well-formed; only an empty or dotted remainder is malformed.
    if (name.empty())
      return false;
  }
  if (name.front() == '.' || name.back() == '.' || name.find("..") != std::string_view::npos)
    return false;
  return std::all_of(name.begin(), name.end(), pattern_character);
}

bool vendor_matches(std::string_view pattern, std::string_view vendor) {
  if (pattern.starts_with("*.")) {
    const std::string_view suffix = pattern.substr(1);  // ".example.com"
    return vendor.size() > suffix.size() &&
           equals_ignoring_case(vendor.substr(vendor.size() - suffix.size()), suffix);
  }
  return equals_ignoring_case(pattern, vendor);
}

void sync_usage(Usage& usage, const Policies& policies, Micros now) {
  std::vector<Ring> rings;
  rings.reserve(policies.windows.size());
  for (const WindowCap& window : policies.windows) {
    auto existing = std::find_if(usage.windows.begin(), usage.windows.end(), [&](const Ring& ring) {
      return ring.duration == window.duration;
    });
    rings.push_back(existing != usage.windows.end() ? std::move(*existing)
                                                    : Ring{window.duration, now, {}});
  }
  usage.windows = std::move(rings);
  if (!policies.breaker) {
    usage.breaker.reset();
  } else if (!usage.breaker || usage.breaker->duration != policies.breaker->duration) {
    usage.breaker = Ring{policies.breaker->duration, now, {}};
  }
  assert(usage.windows.size() == policies.windows.size());
  assert(policies.breaker.has_value() == usage.breaker.has_value());
}

}  // namespace stub::ledger
