#include "ledger/policy.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <cassert>

#include "ledger/canonical_json.hpp"
#include "ledger/chain.hpp"

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

boost::json::value optional_int(std::optional<int64_t> value) {
  if (!value)
    return nullptr;
  return *value;
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

bool VendorLimit::matches(std::string_view vendor) const {
  if (vendor.empty())
    return false;  // A spend without a vendor is no vendor's: no vendor rule counts it.
  return std::any_of(vendors.begin(), vendors.end(),
                     [&](const std::string& pattern) { return vendor_matches(pattern, vendor); });
}

std::string VendorLimit::counter_key() const {
  assert(!vendors.empty());
  assert(by_window() != period.has_value());
  std::vector<std::string> sorted = vendors;
  std::sort(sorted.begin(), sorted.end());
  std::string text =
      by_window() ? "w" + std::to_string(window) : "p" + std::string(period_name(*period));
  for (const std::string& pattern : sorted)
    text += "|" + pattern;
  // A fingerprint keeps the usage column small whatever the patterns: 64 bits of SHA-256 make a
  // collision between the at most 16 rules of one node out of reach.
  return sha256_hex(text).substr(0, 16);
}

Micros VendorCounter::current_period_start(const VendorLimit& rule, Micros now) const {
  assert(rule.period.has_value());
  return std::max(period_start, ledger::period_start(*rule.period, now));
}

Money VendorCounter::used_at(const VendorLimit& rule, Micros now) const {
  if (rule.by_window())
    return ring ? ring->amount_at(now) : Money::zero();
  const int64_t captured = current_period_start(rule, now) == period_start ? spent : 0;
  // Saturates like a ring: every running total stays within what a budget can track.
  const int64_t total = std::min(captured + reserved, Money::micros_max);
  assert(total >= 0);
  return Money::from_micros(total);
}

void VendorCounter::count(const VendorLimit& rule, int64_t amount, bool captured, Micros now) {
  assert(amount >= 0);
  if (rule.by_window()) {
    if (!ring)
      ring = Ring{rule.window, now, {}};
    ring->add(now, amount, 1, now);
    return;
  }
  const Micros current = current_period_start(rule, now);
  if (current != period_start) {
    spent = 0;  // The reset is lazy, as for budgets: entries never change.
    period_start = current;
  }
  int64_t& total = captured ? spent : reserved;
  total = std::min(total + amount, Money::micros_max);
  assert(spent >= 0 && reserved >= 0);
}

void VendorCounter::settle(const VendorLimit& rule, Micros made_at, int64_t held, int64_t captured,
                           Micros now) {
  assert(held >= captured && captured >= 0);
  const bool counted = made_at >= since;
  if (rule.by_window()) {
    if (!ring)
      return;
    if (counted) {
      ring->release(made_at, held - captured);
    } else if (captured > 0) {
      // A hold made before the rule was never counted: what it captures counts from now.
      ring->add(now, captured, 0, now);
    }
    return;
  }
  const Micros current = current_period_start(rule, now);
  if (current != period_start) {
    spent = 0;
    period_start = current;
  }
  if (counted)
    reserved -= std::min(reserved, held);
  spent = std::min(spent + captured, Money::micros_max);
  assert(spent >= 0 && reserved >= 0);
}

const VendorCounter* Usage::vendor_counter(std::string_view key) const {
  for (const VendorCounter& counter : vendor_counters) {
    if (counter.key == key)
      return &counter;
  }
  return nullptr;
}

VendorCounter* Usage::vendor_counter(std::string_view key) {
  for (VendorCounter& counter : vendor_counters) {
    if (counter.key == key)
      return &counter;
  }
  return nullptr;
}

Money Usage::vendor_used(const VendorLimit& rule, Micros now) const {
  const VendorCounter* counter = vendor_counter(rule.counter_key());
  return counter != nullptr ? counter->used_at(rule, now) : Money::zero();
}

std::string policies_to_storage(const Policies& policies) {
  if (policies.empty())
    return "";
  boost::json::object out;
  if (!policies.unknown_json.empty()) {
    // Written by a newer version: carried through untouched (policies_from_storage made it).
    boost::system::error_code error;
    boost::json::value unknown = boost::json::parse(policies.unknown_json, error);
    assert(!error && unknown.is_object());
    if (!error && unknown.is_object())
      out = std::move(unknown.get_object());
  }
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
  if (!policies.vendor_limits.empty()) {
    boost::json::array rules;
    for (const VendorLimit& rule : policies.vendor_limits) {
      rules.push_back(boost::json::array{
          string_array(rule.vendors), rule.limit.micros(),
          rule.period ? boost::json::value(period_name(*rule.period)) : boost::json::value(nullptr),
          rule.window});
    }
    out["vl"] = std::move(rules);
  }
  if (!policies.require_tags.empty())
    out["rt"] = string_array(policies.require_tags);
  if (!policies.vendor_categories.empty()) {
    boost::json::array rules;
    for (const VendorCategory& rule : policies.vendor_categories)
      rules.push_back(
          boost::json::array{boost::json::string(rule.vendor), boost::json::string(rule.category)});
    out["vc"] = std::move(rules);
  }
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

namespace {

Error invalid_state(std::string what) {
  return Error{ErrorCode::internal, "ledger_state_invalid", std::move(what)};
}

bool is_int(const boost::json::value& value) {
  return value.is_int64();
}

bool is_optional_int(const boost::json::value& value) {
  return value.is_null() || value.is_int64();
}

// A stored list of strings; false when it is anything else.
bool read_strings(const boost::json::value& value, std::vector<std::string>& out) {
  if (!value.is_array())
    return false;
  for (const auto& item : value.get_array()) {
    if (!item.is_string())
      return false;
    out.emplace_back(item.get_string());
  }
  return true;
}

bool read_ring(const boost::json::value& value, Ring& ring) {
  if (!value.is_array())
    return false;
  const auto& array = value.get_array();
  if (array.size() != 3 || !is_int(array[0]) || !is_int(array[1]) || !array[2].is_array())
    return false;
  ring.duration = array[0].get_int64();
  ring.since = array[1].get_int64();
  if (ring.duration < policy_duration_min)
    return false;
  const auto& flat = array[2].get_array();
  if (flat.size() % 3 != 0)
    return false;
  for (size_t i = 0; i < flat.size(); i += 3) {
    if (!is_int(flat[i]) || !is_int(flat[i + 1]) || !is_int(flat[i + 2]))
      return false;
    ring.buckets.push_back(
        Bucket{flat[i].get_int64(), flat[i + 1].get_int64(), flat[i + 2].get_int64()});
  }
  return true;
}

bool read_vendor_limit(const boost::json::value& value, VendorLimit& rule) {
  const auto* array = value.if_array();
  if (array == nullptr || array->size() != 4 || !read_strings((*array)[0], rule.vendors) ||
      rule.vendors.empty() || !is_int((*array)[1]) || (*array)[1].get_int64() < 0 ||
      !is_int((*array)[3])) {
    return false;
  }
  rule.limit = Money::from_micros((*array)[1].get_int64());
  rule.window = (*array)[3].get_int64();
  if ((*array)[2].is_string())
    rule.period = parse_period((*array)[2].get_string());
  else if (!(*array)[2].is_null())
    return false;
  // Exactly one of the two: a period, or a window within the policy durations.
  if (rule.period.has_value())
    return rule.window == 0;
  return rule.window >= policy_duration_min && rule.window <= policy_duration_max;
}

bool read_vendor_counter(const boost::json::value& value, VendorCounter& counter) {
  const auto* array = value.if_array();
  if (array == nullptr || array->size() != 8 || !(*array)[0].is_string())
    return false;
  for (size_t i : {1, 2, 3, 4, 6, 7}) {
    if (!is_int((*array)[i]))
      return false;
  }
  counter.key = std::string((*array)[0].get_string());
  counter.since = (*array)[1].get_int64();
  counter.period_start = (*array)[2].get_int64();
  counter.spent = (*array)[3].get_int64();
  counter.reserved = (*array)[4].get_int64();
  if (!(*array)[5].is_null()) {
    Ring ring;
    if (!read_ring((*array)[5], ring))
      return false;
    counter.ring = std::move(ring);
  }
  counter.alerted_start = (*array)[6].get_int64();
  counter.alerted_percent = static_cast<int>((*array)[7].get_int64());
  return counter.spent >= 0 && counter.reserved >= 0 && counter.alerted_percent >= 0 &&
         counter.alerted_percent <= 100;
}

}  // namespace

Result<Policies> policies_from_storage(std::string_view text) {
  Policies policies;
  if (text.empty())
    return policies;
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_object())
    return invalid_state("The stored policies are not a JSON object.");
  boost::json::object unknown;
  for (const auto& member : parsed.get_object()) {
    const std::string_view name = member.key();
    const boost::json::value& value = member.value();
    bool valid = true;
    if (name == "w") {
      valid = value.is_array();
      for (size_t i = 0; valid && i < value.get_array().size(); ++i) {
        const auto& window = value.get_array()[i];
        valid = window.is_array() && window.get_array().size() == 2 &&
                is_int(window.get_array()[0]) && is_int(window.get_array()[1]) &&
                window.get_array()[1].get_int64() >= 0;
        if (valid) {
          policies.windows.push_back(
              WindowCap{window.get_array()[0].get_int64(),
                        Money::from_micros(window.get_array()[1].get_int64())});
        }
      }
    } else if (name == "va") {
      valid = read_strings(value, policies.vendors.allow);
    } else if (name == "vb") {
      valid = read_strings(value, policies.vendors.block);
    } else if (name == "vl") {
      valid = value.is_array();
      for (size_t i = 0; valid && i < value.get_array().size(); ++i) {
        VendorLimit rule;
        valid = read_vendor_limit(value.get_array()[i], rule);
        if (valid)
          policies.vendor_limits.push_back(std::move(rule));
      }
    } else if (name == "rt") {
      valid = read_strings(value, policies.require_tags);
    } else if (name == "vc") {
      valid = value.is_array();
      for (size_t i = 0; valid && i < value.get_array().size(); ++i) {
        const auto* rule = value.get_array()[i].if_array();
        valid = rule != nullptr && rule->size() == 2 && (*rule)[0].is_string() &&
                (*rule)[1].is_string();
        if (valid) {
          policies.vendor_categories.push_back(VendorCategory{
              std::string((*rule)[0].get_string()), std::string((*rule)[1].get_string())});
        }
      }
    } else if (name == "aa") {
      valid = is_int(value) && value.get_int64() >= 0;
      if (valid)
        policies.approval_above = Money::from_micros(value.get_int64());
    } else if (name == "b") {
      const auto* array = value.if_array();
      valid = array != nullptr && array->size() == 3 && is_int((*array)[0]) &&
              is_optional_int((*array)[1]) && is_optional_int((*array)[2]);
      if (valid) {
        BreakerSettings settings;
        settings.duration = (*array)[0].get_int64();
        if ((*array)[1].is_int64())
          settings.max_amount = Money::from_micros((*array)[1].get_int64());
        if ((*array)[2].is_int64())
          settings.max_count = (*array)[2].get_int64();
        policies.breaker = settings;
      }
    } else if (name == "t") {
      valid = value.is_array();
      std::vector<int> percents;
      for (size_t i = 0; valid && i < value.get_array().size(); ++i) {
        const auto& percent = value.get_array()[i];
        valid = is_int(percent) && percent.get_int64() >= 1 && percent.get_int64() <= 100;
        if (valid)
          percents.push_back(static_cast<int>(percent.get_int64()));
      }
      policies.thresholds = std::move(percents);
    } else {
      // A field this version does not know (written by a newer one): kept as it is, and
      // written back with the rest, so a rewrite by this version never drops it.
      unknown[name] = value;
    }
    if (!valid)
      return invalid_state("The stored policy field \"" + std::string(name) + "\" is malformed.");
  }
  if (!unknown.empty())
    policies.unknown_json = canonical_json(unknown);
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
  if (!usage.vendor_counters.empty()) {
    boost::json::array counters;
    for (const VendorCounter& counter : usage.vendor_counters) {
      counters.push_back(boost::json::array{
          counter.key, counter.since, counter.period_start, counter.spent, counter.reserved,
          counter.ring ? boost::json::value(ring_to_json(*counter.ring))
                       : boost::json::value(nullptr),
          counter.alerted_start, counter.alerted_percent});
    }
    out["vl"] = std::move(counters);
  }
  return canonical_json(out);
}

Result<Usage> usage_from_storage(std::string_view text) {
  Usage usage;
  if (text.empty())
    return usage;
  boost::system::error_code error;
  const boost::json::value parsed = boost::json::parse(text, error);
  if (error || !parsed.is_object())
    return invalid_state("The stored policy usage is not a JSON object.");
  const auto& object = parsed.get_object();
  if (const auto* windows = object.if_contains("w")) {
    if (!windows->is_array())
      return invalid_state("The stored window usage is malformed.");
    for (const auto& window : windows->get_array()) {
      Ring ring;
      if (!read_ring(window, ring))
        return invalid_state("The stored window usage is malformed.");
      usage.windows.push_back(std::move(ring));
    }
  }
  if (const auto* breaker = object.if_contains("b")) {
    Ring ring;
    if (!read_ring(*breaker, ring))
      return invalid_state("The stored breaker usage is malformed.");
    usage.breaker = std::move(ring);
  }
  if (const auto* thresholds = object.if_contains("t")) {
    const auto* array = thresholds->if_array();
    if (array == nullptr || array->size() != 2 || !is_int((*array)[0]) || !is_int((*array)[1]))
      return invalid_state("The stored alert state is malformed.");
    usage.alerted_period_start = (*array)[0].get_int64();
    usage.alerted_percent = static_cast<int>((*array)[1].get_int64());
  }
  if (const auto* counters = object.if_contains("vl")) {
    if (!counters->is_array())
      return invalid_state("The stored vendor limit usage is malformed.");
    for (const auto& item : counters->get_array()) {
      VendorCounter counter;
      if (!read_vendor_counter(item, counter))
        return invalid_state("The stored vendor limit usage is malformed.");
      usage.vendor_counters.push_back(std::move(counter));
    }
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
  boost::json::array vendor_limits;
  for (const VendorLimit& rule : policies.vendor_limits)
    vendor_limits.push_back(vendor_limit_to_json(rule));
  out["vendor_limits"] = std::move(vendor_limits);
  out["require_tags"] = string_array(policies.require_tags);
  boost::json::object categories;
  for (const VendorCategory& rule : policies.vendor_categories)
    categories[rule.vendor] = rule.category;
  out["vendor_categories"] = std::move(categories);
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

boost::json::object vendor_limit_to_json(const VendorLimit& rule) {
  boost::json::object out{{"vendors", string_array(rule.vendors)},
                          {"limit", rule.limit.to_string()}};
  if (rule.by_window())
    out["window"] = format_duration(rule.window);
  else
    out["period"] = period_name(*rule.period);
  return out;
}

std::string describe_vendor_limit(const VendorLimit& rule) {
  std::string vendors;
  for (const std::string& pattern : rule.vendors)
    vendors += (vendors.empty() ? "" : ", ") + pattern;
  const std::string per = rule.by_window() ? " per " + format_duration(rule.window)
                          : *rule.period == Period::none
                              ? " in all"
                              : " per " + std::string(period_name(*rule.period));
  return rule.limit.to_string() + per + " on " + vendors;
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
  std::vector<VendorCounter> counters;
  counters.reserve(policies.vendor_limits.size());
  for (const VendorLimit& rule : policies.vendor_limits) {
    const std::string key = rule.counter_key();
    if (VendorCounter* existing = usage.vendor_counter(key)) {
      counters.push_back(std::move(*existing));
      continue;
    }
    // A rule counts from when it was set (as a window does): seeding it from the entries of a
    // whole period would make one admin call as costly as a month of traffic.
    VendorCounter counter;
    counter.key = key;
    counter.since = now;
    if (rule.by_window())
      counter.ring = Ring{rule.window, now, {}};
    else
      counter.period_start = period_start(*rule.period, now);
    counters.push_back(std::move(counter));
  }
  usage.vendor_counters = std::move(counters);
  assert(usage.windows.size() == policies.windows.size());
  assert(policies.breaker.has_value() == usage.breaker.has_value());
  assert(usage.vendor_counters.size() == policies.vendor_limits.size());
}

}  // namespace stub::ledger
