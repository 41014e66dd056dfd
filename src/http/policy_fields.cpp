#include "http/policy_fields.hpp"

#include <algorithm>
#include <set>

#include "http/request_fields.hpp"
#include "http/text_checks.hpp"
#include "ledger/policy.hpp"

namespace stub::http {

namespace {

using ledger::Micros;
using ledger::Money;

Error invalid(std::string subcode, std::string message) {
  return Error::invalid(std::move(subcode), std::move(message));
}

// Money inside a policy object: a decimal string, or a JSON integer (exact by construction).
// Nested fractional numbers are refused: their literal is not kept, so exactness is unprovable.
Result<Money> nested_money(const boost::json::value& value, const std::string& name) {
  std::optional<Money> money;
  if (value.is_string()) {
    money = Money::parse(value.get_string());
  } else if (value.is_int64()) {
    money = Money::parse(std::to_string(value.get_int64()));
  }
  if (!money) {
    return invalid("invalid_amount", "Field \"" + name +
                                         "\" must be a decimal string such as \"5.00\" with at "
                                         "most 6 fraction digits.");
  }
  if (money->is_negative())
    return invalid("invalid_amount", "Field \"" + name + "\" must not be negative.");
  return *money;
}

// A window or breaker duration: "30s", "5m", "1h", "1d", "250ms" or whole seconds, 1 s..90 d.
Result<Micros> policy_duration(const boost::json::value* value, const std::string& name) {
  if (value == nullptr || value->is_null())
    return invalid("missing_field", "Field \"" + name + "\" is required.");
  std::optional<Micros> duration;
  if (value->is_string()) {
    duration = ledger::parse_duration(value->get_string());
  } else if (value->is_int64() && value->get_int64() >= 0 &&
             value->get_int64() <= ledger::policy_duration_max / ledger::micros_per_second) {
    duration = value->get_int64() * ledger::micros_per_second;
  }
  if (!duration) {
    return invalid("invalid_duration",
                   "Field \"" + name +
                       "\" must be a duration with a unit ms, s, m, h or d (such as \"1h\"), or "
                       "whole seconds.");
  }
  if (*duration < ledger::policy_duration_min || *duration > ledger::policy_duration_max) {
    return invalid("invalid_duration", "Field \"" + name + "\" must be between 1s and 90d, got " +
                                           ledger::format_duration(*duration) + ".");
  }
  return *duration;
}

Status only_members(const boost::json::object& object, const std::string& name,
                    std::initializer_list<std::string_view> allowed) {
  for (const auto& member : object) {
    if (std::find(allowed.begin(), allowed.end(), member.key()) == allowed.end()) {
      return invalid("unknown_field",
                     "Unknown field \"" + name + "." + std::string(member.key()) + "\".");
    }
  }
  return Status::success();
}

Result<std::vector<ledger::WindowCap>> read_windows(const boost::json::value& value) {
  std::vector<ledger::WindowCap> windows;
  if (value.is_null())
    return windows;
  if (!value.is_array()) {
    return invalid("invalid_windows",
                   "Field \"windows\" must be a list of {\"duration\", \"limit\"} objects.");
  }
  if (value.get_array().size() > ledger::windows_per_node_max) {
    return invalid("invalid_windows", "At most " + std::to_string(ledger::windows_per_node_max) +
                                          " windows are allowed per budget.");
  }
  for (size_t i = 0; i < value.get_array().size(); ++i) {
    const std::string name = "windows[" + std::to_string(i) + "]";
    const boost::json::value& item = value.get_array()[i];
    if (!item.is_object()) {
      return invalid("invalid_windows",
                     "Field \"" + name + "\" must be an object {\"duration\", \"limit\"}.");
    }
    const auto& object = item.get_object();
    if (Status known = only_members(object, name, {"duration", "limit"}); !known.ok())
      return known.error();
    auto duration = policy_duration(object.if_contains("duration"), name + ".duration");
    if (!duration.ok())
      return duration.error();
    const boost::json::value* limit = object.if_contains("limit");
    if (limit == nullptr || limit->is_null())
      return invalid("missing_field", "Field \"" + name + ".limit\" is required.");
    auto money = nested_money(*limit, name + ".limit");
    if (!money.ok())
      return money.error();
    windows.push_back(ledger::WindowCap{*duration, *money});
  }
  std::sort(windows.begin(), windows.end(),
            [](const auto& a, const auto& b) { return a.duration < b.duration; });
  for (size_t i = 1; i < windows.size(); ++i) {
    if (windows[i].duration == windows[i - 1].duration) {
      return invalid("invalid_windows", "Two windows have the same duration " +
                                            ledger::format_duration(windows[i].duration) +
                                            "; give each duration one limit.");
    }
  }
  return windows;
}

Result<std::vector<std::string>> read_patterns(const boost::json::value* value,
                                               const std::string& name) {
  std::vector<std::string> patterns;
  if (value == nullptr || value->is_null())
    return patterns;
  if (!value->is_array())
    return invalid("invalid_vendors", "Field \"" + name + "\" must be a list of strings.");
  if (value->get_array().size() > ledger::vendor_patterns_max) {
    return invalid("invalid_vendors", "Field \"" + name + "\" has more than " +
                                          std::to_string(ledger::vendor_patterns_max) +
                                          " patterns.");
  }
  std::set<std::string> seen;
  for (const auto& item : value->get_array()) {
    if (!item.is_string())
      return invalid("invalid_vendors", "Field \"" + name + "\" must be a list of strings.");
    std::string pattern(item.get_string());
    std::transform(pattern.begin(), pattern.end(), pattern.begin(), [](char c) {
      return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (!ledger::valid_vendor_pattern(pattern)) {
      return invalid("invalid_vendor_pattern",
                     "Vendor pattern \"" + std::string(item.get_string()) + "\" in \"" + name +
                         "\" is malformed: use an exact name (\"api.openai.com\") or a "
                         "\"*.example.com\" wildcard; letters, digits and . - _ : / only.");
    }
    if (seen.insert(pattern).second)
      patterns.push_back(std::move(pattern));
  }
  return patterns;
}

Result<ledger::VendorRules> read_vendors(const boost::json::value& value) {
  ledger::VendorRules rules;
  if (value.is_null())
    return rules;
  if (!value.is_object()) {
    return invalid("invalid_vendors",
                   "Field \"vendors\" must be an object {\"allow\": [...], \"block\": [...]}.");
  }
  const auto& object = value.get_object();
  if (Status known = only_members(object, "vendors", {"allow", "block"}); !known.ok())
    return known.error();
  auto allow = read_patterns(object.if_contains("allow"), "vendors.allow");
  if (!allow.ok())
    return allow.error();
  auto block = read_patterns(object.if_contains("block"), "vendors.block");
  if (!block.ok())
    return block.error();
  rules.allow = std::move(allow).value();
  rules.block = std::move(block).value();
  return rules;
}

// vendor_limits: [{"vendors": [...], "limit": "2000.00", "period": "month" | "window": "1h"}].
Result<std::vector<ledger::VendorLimit>> read_vendor_limits(const boost::json::value& value) {
  std::vector<ledger::VendorLimit> rules;
  if (value.is_null())
    return rules;
  const std::string shape =
      " must be a list of {\"vendors\": [...], \"limit\", \"period\" or \"window\"} objects.";
  if (!value.is_array())
    return invalid("invalid_vendor_limits", "Field \"vendor_limits\"" + shape);
  if (value.get_array().size() > ledger::vendor_limits_per_node_max) {
    return invalid("invalid_vendor_limits", "At most " +
                                                std::to_string(ledger::vendor_limits_per_node_max) +
                                                " vendor limits are allowed per budget.");
  }
  std::set<std::string> keys;
  for (size_t i = 0; i < value.get_array().size(); ++i) {
    const std::string name = "vendor_limits[" + std::to_string(i) + "]";
    const boost::json::value& item = value.get_array()[i];
    if (!item.is_object())
      return invalid("invalid_vendor_limits", "Field \"" + name + "\"" + shape);
    const auto& object = item.get_object();
    if (Status known = only_members(object, name, {"vendors", "limit", "period", "window"});
        !known.ok()) {
      return known.error();
    }
    ledger::VendorLimit rule;
    const boost::json::value* vendors = object.if_contains("vendors");
    if (vendors == nullptr || vendors->is_null())
      return invalid("missing_field", "Field \"" + name + ".vendors\" is required.");
    if (!vendors->is_array() || vendors->get_array().empty() ||
        vendors->get_array().size() > ledger::vendor_limit_patterns_max) {
      return invalid("invalid_vendor_limits",
                     "Field \"" + name + ".vendors\" must be a list of 1 to " +
                         std::to_string(ledger::vendor_limit_patterns_max) + " vendor patterns.");
    }
    auto patterns = read_patterns(vendors, name + ".vendors");
    if (!patterns.ok())
      return patterns.error();
    rule.vendors = std::move(patterns).value();
    const boost::json::value* limit = object.if_contains("limit");
    if (limit == nullptr || limit->is_null())
      return invalid("missing_field", "Field \"" + name + ".limit\" is required.");
    auto money = nested_money(*limit, name + ".limit");
    if (!money.ok())
      return money.error();
    rule.limit = *money;
    const boost::json::value* period = object.if_contains("period");
    const boost::json::value* window = object.if_contains("window");
    const bool has_period = period != nullptr && !period->is_null();
    const bool has_window = window != nullptr && !window->is_null();
    if (has_period == has_window) {
      return invalid("invalid_vendor_limits",
                     "Field \"" + name +
                         "\" needs exactly one of \"period\" (none, day, week, month) and "
                         "\"window\" (a duration such as \"1h\").");
    }
    if (has_period) {
      const auto parsed = period->is_string() ? ledger::parse_period(period->get_string())
                                              : std::optional<ledger::Period>{};
      if (!parsed) {
        return invalid("invalid_vendor_limits",
                       "Field \"" + name + ".period\" must be none, day, week or month.");
      }
      rule.period = *parsed;
    } else {
      auto duration = policy_duration(window, name + ".window");
      if (!duration.ok())
        return duration.error();
      rule.window = *duration;
    }
    if (!keys.insert(rule.counter_key()).second) {
      return invalid("invalid_vendor_limits",
                     "Field \"" + name +
                         "\" repeats the vendors and period (or window) of an earlier rule; "
                         "give each one limit.");
    }
    rules.push_back(std::move(rule));
  }
  return rules;
}

Result<std::optional<ledger::BreakerSettings>> read_breaker(const boost::json::value& value) {
  if (value.is_null())
    return std::optional<ledger::BreakerSettings>{};
  if (!value.is_object()) {
    return invalid("invalid_breaker",
                   "Field \"breaker\" must be an object {\"duration\", \"max_amount\", "
                   "\"max_count\"}.");
  }
  const auto& object = value.get_object();
  if (Status known = only_members(object, "breaker", {"duration", "max_amount", "max_count"});
      !known.ok()) {
    return known.error();
  }
  ledger::BreakerSettings breaker;
  auto duration = policy_duration(object.if_contains("duration"), "breaker.duration");
  if (!duration.ok())
    return duration.error();
  breaker.duration = *duration;
  if (const auto* amount = object.if_contains("max_amount"); amount && !amount->is_null()) {
    auto money = nested_money(*amount, "breaker.max_amount");
    if (!money.ok())
      return money.error();
    if (!money->is_positive()) {
      return invalid("invalid_amount",
                     "Field \"breaker.max_amount\" must be above zero (freeze the budget to stop "
                     "all spending).");
    }
    breaker.max_amount = *money;
  }
  if (const auto* count = object.if_contains("max_count"); count && !count->is_null()) {
    if (!count->is_int64() || count->get_int64() < 1 ||
        count->get_int64() > ledger::breaker_count_max) {
      return invalid("invalid_breaker",
                     "Field \"breaker.max_count\" must be a whole number from 1 to " +
                         std::to_string(ledger::breaker_count_max) + ".");
    }
    breaker.max_count = count->get_int64();
  }
  if (!breaker.max_amount && !breaker.max_count) {
    return invalid("invalid_breaker",
                   "Field \"breaker\" needs \"max_amount\", \"max_count\" or both.");
  }
  return std::optional<ledger::BreakerSettings>{breaker};
}

Result<std::optional<std::vector<int>>> read_thresholds(const boost::json::value& value) {
  if (value.is_null())
    return std::optional<std::vector<int>>{};
  if (!value.is_array()) {
    return invalid("invalid_thresholds",
                   "Field \"thresholds\" must be a list of percentages such as [50, 80, 100].");
  }
  if (value.get_array().size() > ledger::thresholds_max) {
    return invalid("invalid_thresholds", "At most " + std::to_string(ledger::thresholds_max) +
                                             " thresholds are allowed.");
  }
  std::set<int> percents;
  for (const auto& item : value.get_array()) {
    if (!item.is_int64() || item.get_int64() < 1 || item.get_int64() > 100) {
      return invalid("invalid_thresholds",
                     "Each threshold must be a whole percentage of the limit from 1 to 100; a "
                     "threshold above the limit could never be crossed.");
    }
    percents.insert(static_cast<int>(item.get_int64()));
  }
  return std::optional<std::vector<int>>{std::vector<int>(percents.begin(), percents.end())};
}

// require_tags: ["customer", "feature"]; null or [] clears it.
Result<std::vector<std::string>> read_require_tags(const boost::json::value& value) {
  std::vector<std::string> keys;
  if (value.is_null())
    return keys;
  const std::string shape = "Field \"require_tags\" must be a list of at most " +
                            std::to_string(ledger::require_tags_max) +
                            " distinct tag keys (strings of 1 to " +
                            std::to_string(ledger::required_tag_key_length_max) + " bytes).";
  if (!value.is_array() || value.get_array().size() > ledger::require_tags_max)
    return invalid("invalid_require_tags", shape);
  for (const boost::json::value& item : value.get_array()) {
    if (!item.is_string() || item.get_string().empty() ||
        item.get_string().size() > ledger::required_tag_key_length_max) {
      return invalid("invalid_require_tags", shape);
    }
    if (Status clean = check_text(item.get_string(), "require_tags"); !clean.ok())
      return clean.error();
    std::string key(item.get_string());
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
      return invalid("invalid_require_tags", "Field \"require_tags\" names \"" + key + "\" twice.");
    }
    keys.push_back(std::move(key));
  }
  return keys;
}

// vendor_categories: {"api.openai.com": "llm", "*.serpapi.com": "data-api"}; null or {} clears.
Result<std::vector<ledger::VendorCategory>> read_vendor_categories(
    const boost::json::value& value) {
  std::vector<ledger::VendorCategory> rules;
  if (value.is_null())
    return rules;
  if (!value.is_object() || value.get_object().size() > ledger::vendor_categories_max) {
    return invalid("invalid_vendor_categories",
                   "Field \"vendor_categories\" must be an object of at most " +
                       std::to_string(ledger::vendor_categories_max) +
                       " vendor patterns, each mapped to a category, e.g. "
                       "{\"api.openai.com\": \"llm\"}.");
  }
  for (const auto& member : value.get_object()) {
    std::string pattern(member.key());
    std::transform(pattern.begin(), pattern.end(), pattern.begin(), [](char c) {
      return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    });
    if (!ledger::valid_vendor_pattern(pattern)) {
      return invalid("invalid_vendor_pattern",
                     "Vendor pattern \"" + std::string(member.key().substr(0, 64)) +
                         "\" in \"vendor_categories\" is malformed: use an exact name or a "
                         "\"*.example.com\" wildcard; letters, digits and . - _ : / only.");
    }
    if (!member.value().is_string())
      return invalid("invalid_category", "A category in \"vendor_categories\" must be a string.");
    if (Status token = check_category(member.value().get_string()); !token.ok())
      return token.error();
    rules.push_back(ledger::VendorCategory{pattern, std::string(member.value().get_string())});
  }
  std::sort(rules.begin(), rules.end(),
            [](const auto& a, const auto& b) { return a.vendor < b.vendor; });
  for (size_t i = 1; i < rules.size(); ++i) {
    if (rules[i].vendor == rules[i - 1].vendor) {
      return invalid("invalid_vendor_categories",
                     "Vendor pattern \"" + rules[i].vendor +
                         "\" appears twice in \"vendor_categories\" (patterns ignore case).");
    }
  }
  return rules;
}

}  // namespace

Status read_policy_fields(const RequestBody& body, ledger::BudgetSettings& settings) {
  if (const auto* windows = body.object.if_contains("windows")) {
    auto parsed = read_windows(*windows);
    if (!parsed.ok())
      return parsed.error();
    settings.windows = std::move(parsed).value();
  }
  if (const auto* vendors = body.object.if_contains("vendors")) {
    auto parsed = read_vendors(*vendors);
    if (!parsed.ok())
      return parsed.error();
    settings.vendors = std::move(parsed).value();
  }
  if (const auto* vendor_limits = body.object.if_contains("vendor_limits")) {
    auto parsed = read_vendor_limits(*vendor_limits);
    if (!parsed.ok())
      return parsed.error();
    settings.vendor_limits = std::move(parsed).value();
  }
  if (const auto* require_tags = body.object.if_contains("require_tags")) {
    auto parsed = read_require_tags(*require_tags);
    if (!parsed.ok())
      return parsed.error();
    settings.require_tags = std::move(parsed).value();
  }
  if (const auto* vendor_categories = body.object.if_contains("vendor_categories")) {
    auto parsed = read_vendor_categories(*vendor_categories);
    if (!parsed.ok())
      return parsed.error();
    settings.vendor_categories = std::move(parsed).value();
  }
  if (body.object.contains("approval_above")) {
    auto above = money_field(body, "approval_above");
    if (!above.ok())
      return above.error();
    if (above.value() && above.value()->is_negative()) {
      return invalid("invalid_amount", "Field \"approval_above\" must not be negative.");
    }
    settings.approval_above_given = true;
    settings.approval_above = *above;
  }
  if (const auto* breaker = body.object.if_contains("breaker")) {
    auto parsed = read_breaker(*breaker);
    if (!parsed.ok())
      return parsed.error();
    settings.breaker_given = true;
    settings.breaker = std::move(parsed).value();
  }
  if (const auto* thresholds = body.object.if_contains("thresholds")) {
    auto parsed = read_thresholds(*thresholds);
    if (!parsed.ok())
      return parsed.error();
    settings.thresholds_given = true;
    settings.thresholds = std::move(parsed).value();
  }
  // Within one request, an approval threshold above the limit is refused here; against a
  // limit set earlier, the core refuses it the same way.
  if (settings.limit_given && settings.limit && settings.approval_above &&
      *settings.approval_above > *settings.limit) {
    return invalid("invalid_approval_above",
                   "Field \"approval_above\" (" + settings.approval_above->to_string() +
                       ") is above \"limit\" (" + settings.limit->to_string() +
                       "): no hold could ever need approval.");
  }
  return Status::success();
}

}  // namespace stub::http
