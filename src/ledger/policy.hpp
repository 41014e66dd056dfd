#pragma once

// Policies on a budget node (SPEC §2) and the rolling usage they are checked against. Plain
// values with their own codecs; the rules that apply them are in decision.cpp and batch.cpp.
//
// Rolling usage is kept in time buckets inside the node's own row: a ring per window duration
// (and one for the velocity breaker) of `buckets_per_ring` buckets, each `duration / 60` wide,
// aligned on the epoch. A window of duration D sums every bucket that overlaps (now - D, now],
// so it counts everything made in the last D and at most D / 60 more: an approximation that
// can only refuse early, never late. Because the buckets live in the budget row, a batch reads
// and writes them with the rows it already locks: no extra rows, no extra round trips.

#include <boost/json/object.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/money.hpp"
#include "ledger/result.hpp"
#include "ledger/time_point.hpp"

namespace stub::ledger {

inline constexpr size_t windows_per_node_max = 4;
inline constexpr size_t vendor_patterns_max = 64;
inline constexpr size_t vendor_pattern_length_max = 253;
inline constexpr size_t thresholds_max = 8;
inline constexpr int64_t buckets_per_ring = 60;
// Window and breaker durations: from 1 s to 90 days.
inline constexpr Micros policy_duration_min = micros_per_second;
inline constexpr Micros policy_duration_max = 90LL * 86'400 * micros_per_second;
inline constexpr int64_t breaker_count_max = 1'000'000'000;
// Per-vendor caps across a subtree (vendor_limits): rules per node, patterns per rule.
inline constexpr size_t vendor_limits_per_node_max = 16;
inline constexpr size_t vendor_limit_patterns_max = 16;
// Tag keys a node requires on every spend and hold below it (require_tags).
inline constexpr size_t require_tags_max = 16;
inline constexpr size_t required_tag_key_length_max = 64;
// Vendor -> category defaults on a node (vendor_categories).
inline constexpr size_t vendor_categories_max = 64;
// A default category is added only to tags below the edge's limit of 16 (it counts as one).
inline constexpr size_t tags_with_default_category_max = 16;

struct WindowCap {
  Micros duration = 0;
  Money limit;
  friend bool operator==(const WindowCap&, const WindowCap&) = default;
};

struct VendorRules {
  std::vector<std::string> allow;  // empty: any vendor (that no block list names)
  std::vector<std::string> block;
  bool empty() const { return allow.empty() && block.empty(); }
  friend bool operator==(const VendorRules&, const VendorRules&) = default;
};

struct BreakerSettings {
  Micros duration = 0;
  std::optional<Money> max_amount;  // at least one of the two is set
  std::optional<int64_t> max_count;
  friend bool operator==(const BreakerSettings&, const BreakerSettings&) = default;
};

// A cap on what the node's whole subtree holds and captures with the vendors it names: "all our
// agents together may spend at most 2,000.00 a month on Twilio". By calendar period (reset like
// the node's own, never backwards) or by rolling window (a ring like the node's windows).
struct VendorLimit {
  std::vector<std::string> vendors;  // patterns as in VendorRules, at least one, lower-cased
  Money limit;
  std::optional<Period> period;  // exactly one of `period` and `window` is set
  Micros window = 0;             // rolling window duration; zero when by period

  bool by_window() const { return window > 0; }
  bool matches(std::string_view vendor) const;
  // Names the counter that belongs to this rule: its patterns and its period or window, not
  // its limit, so that changing only the limit keeps the count (as it does for windows).
  std::string counter_key() const;
  friend bool operator==(const VendorLimit&, const VendorLimit&) = default;
};

// The category a spend or hold with this vendor gets when it names none (vendor_categories).
struct VendorCategory {
  std::string vendor;    // a pattern as in VendorRules, lower-cased
  std::string category;  // a category token (llm, data-api, ...)
  friend bool operator==(const VendorCategory&, const VendorCategory&) = default;
};

struct Policies {
  std::vector<WindowCap> windows;  // distinct durations, ascending
  VendorRules vendors;
  std::vector<VendorLimit> vendor_limits;  // distinct counter keys, in the order given
  // Tag keys every spend and hold under the node must carry with a non-empty value; distinct,
  // in the order given.
  std::vector<std::string> require_tags;
  // Default categories by vendor pattern, distinct patterns in ascending order.
  std::vector<VendorCategory> vendor_categories;
  std::optional<Money> approval_above;
  std::optional<BreakerSettings> breaker;
  // Percentages of the limit that raise a threshold_crossed alert, ascending. nullopt: the
  // default 50 / 80 / 100; empty: no alerts.
  std::optional<std::vector<int>> thresholds;
  // Stored fields this version does not know (a newer one wrote them), as a canonical JSON
  // object, or empty: kept so that a rewrite never drops them.
  std::string unknown_json;

  bool empty() const {
    return windows.empty() && vendors.empty() && vendor_limits.empty() && require_tags.empty() &&
           vendor_categories.empty() && !approval_above && !breaker && !thresholds &&
           unknown_json.empty();
  }
  std::vector<int> effective_thresholds() const;
  friend bool operator==(const Policies&, const Policies&) = default;
};

// One time bucket: what was held or captured (net of what was released later) and how many
// spends and holds were accepted in [index * width, (index + 1) * width).
struct Bucket {
  int64_t index = 0;
  int64_t amount = 0;  // micros
  int64_t count = 0;
  friend bool operator==(const Bucket&, const Bucket&) = default;
};

struct Ring {
  Micros duration = 0;
  Micros since = 0;             // when the ring started; nothing before it was counted in it
  std::vector<Bucket> buckets;  // ascending index

  Micros width() const { return duration / buckets_per_ring; }
  // Whether any of the bucket lies in (now - duration, now].
  bool overlaps(const Bucket& bucket, Micros now) const;
  // Sums over every bucket that overlaps (now - duration, now].
  Money amount_at(Micros now) const;
  int64_t count_at(Micros now) const;
  // Counts `amount` and `count` at `at` (normally now), dropping buckets that can no longer
  // overlap any window ending at or after `now`.
  void add(Micros at, int64_t amount, int64_t count, Micros now);
  // Takes back `amount` released by a hold made at `made_at`, when this ring counted it.
  void release(Micros made_at, int64_t amount);
  friend bool operator==(const Ring&, const Ring&) = default;
};

// What one vendor rule has counted, kept in the owning node's row (the row every batch on a path
// below it already reads, locks and writes), so racing instances conflict on it as on limits.
struct VendorCounter {
  std::string key;   // VendorLimit::counter_key() of the rule it counts for
  Micros since = 0;  // when the rule started counting: holds made before it were not counted
  // By period: captured in the period starting at `period_start`, and outstanding holds.
  Micros period_start = 0;
  int64_t spent = 0;     // micros
  int64_t reserved = 0;  // micros
  // By window: held or captured amounts in time buckets (held parts released on settlement).
  std::optional<Ring> ring;
  // Threshold alerts already raised for this rule: the highest percentage, in the period
  // starting at `alerted_start` (by window: within one window duration of it).
  Micros alerted_start = 0;
  int alerted_percent = 0;

  // The start of the rule's current period as of `now`; never earlier than the recorded one.
  Micros current_period_start(const VendorLimit& rule, Micros now) const;
  // Held + captured amounts that count against the rule as of `now`.
  Money used_at(const VendorLimit& rule, Micros now) const;
  // Counts an accepted spend (captured at once) or hold (reserved) of `amount` at `now`.
  void count(const VendorLimit& rule, int64_t amount, bool captured, Micros now);
  // Settles a hold of `held` made at `made_at`: `captured` of it was spent, the rest released.
  void settle(const VendorLimit& rule, Micros made_at, int64_t held, int64_t captured, Micros now);
  friend bool operator==(const VendorCounter&, const VendorCounter&) = default;
};

struct Usage {
  std::vector<Ring> windows;  // one per window duration, in the order of Policies::windows
  std::optional<Ring> breaker;
  // Threshold alerts already raised: the highest percentage, in the period starting here.
  Micros alerted_period_start = 0;
  int alerted_percent = 0;
  // One per vendor rule, in the order of Policies::vendor_limits, found by key.
  std::vector<VendorCounter> vendor_counters;

  bool empty() const {
    return windows.empty() && !breaker && alerted_period_start == 0 && alerted_percent == 0 &&
           vendor_counters.empty();
  }
  const Ring* window_ring(Micros duration) const;
  const VendorCounter* vendor_counter(std::string_view key) const;
  VendorCounter* vendor_counter(std::string_view key);
  // What `rule` has counted as of `now` (zero when it has no counter yet).
  Money vendor_used(const VendorLimit& rule, Micros now) const;
  friend bool operator==(const Usage&, const Usage&) = default;
};

// Storage codecs. An empty text reads as nothing set; an unreadable one also reads as nothing
// set for policies (the edge validated what was written), and as empty usage.
std::string policies_to_storage(const Policies& policies);
// A stored form that cannot be read is an Error (ledger_state_invalid), never "no policy".
Result<Policies> policies_from_storage(std::string_view text);
std::string usage_to_storage(const Usage& usage);
Result<Usage> usage_from_storage(std::string_view text);

// The policies' JSON form: the books record a budget change in it (budget_set entries), and the
// API takes and shows the same form.
boost::json::object policies_to_json(const Policies& policies);
// One vendor rule as PUT /v1/budgets takes it: {"vendors", "limit", "period" | "window"}.
boost::json::object vendor_limit_to_json(const VendorLimit& rule);
// "2000.00 per month on api.twilio.com": how messages name a rule.
std::string describe_vendor_limit(const VendorLimit& rule);

// "1h", "90s", "250ms": the largest unit that divides the duration evenly.
std::string format_duration(Micros duration);

// Vendor patterns: an exact name, or "*.example.com" (any name ending in ".example.com", not
// "example.com" itself). Lower-case letters, digits and . - _ : / only; matching ignores case.
bool valid_vendor_pattern(std::string_view pattern);
bool vendor_matches(std::string_view pattern, std::string_view vendor);

// Keeps `usage` in step with `policies`: a ring for every window duration and the breaker, and a
// counter for every vendor rule, reusing the existing one of the same duration (or counter key),
// new ones starting at `now`.
void sync_usage(Usage& usage, const Policies& policies, Micros now);

}  // namespace stub::ledger
