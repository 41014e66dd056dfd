#include "http/request_fields.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <charconv>
#include <cmath>

#include "http/number_literals.hpp"
#include "http/text_checks.hpp"
#include "ledger/canonical_json.hpp"

namespace stub::http {

namespace {

Error invalid(std::string subcode, std::string message) {
  return Error::invalid(std::move(subcode), std::move(message));
}

// True when any number in `value` is not finite: Boost.JSON reads an out-of-range literal such
// as 1e400 as infinity, which has no JSON (nor RFC 8785) form and must never reach the books.
bool has_non_finite_number(const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::double_:
      return !std::isfinite(value.get_double());
    case boost::json::kind::array:
      for (const auto& item : value.get_array()) {
        if (has_non_finite_number(item))
          return true;
      }
      return false;
    case boost::json::kind::object:
      for (const auto& member : value.get_object()) {
        if (has_non_finite_number(member.value()))
          return true;
      }
      return false;
    default:
      return false;
  }
}

}  // namespace

Result<RequestBody> parse_request_body(std::string_view text) {
  RequestBody body;
  const bool blank = text.find_first_not_of(" \t\r\n") == std::string_view::npos;
  if (blank) {
    body.canonical = "{}";
    return body;
  }
  boost::system::error_code error;
  boost::json::value value = boost::json::parse(text, error);
  if (error)
    return invalid("malformed_json", "The body is not valid JSON: " + error.message() + ".");
  if (!value.is_object())
    return invalid("malformed_json", "The body must be a JSON object.");
  if (has_non_finite_number(value)) {
    return invalid("invalid_number",
                   "The body has a number outside the range of a double (such as 1e400).");
  }
  body.object = std::move(value.get_object());
  body.canonical = ledger::canonical_json(body.object);
  // The literal pass is a second parse: run it only when some top-level member is a number or
  // the body carries a receipt that may hold numbers.
  const bool has_number =
      std::any_of(body.object.begin(), body.object.end(),
                  [](const auto& member) { return member.value().is_number(); });
  const auto* receipt = body.object.if_contains("receipt");
  const bool structured_receipt =
      receipt != nullptr && (receipt->is_object() || receipt->is_array());
  if (has_number || structured_receipt) {
    NumberLiterals literals = number_literals(text);
    body.number_literals = std::move(literals.top_level);
    body.receipt_literals = std::move(literals.receipt);
    body.receipt_duplicate_name = literals.receipt_duplicate_name;
  }
  return body;
}

Status reject_unknown_fields(const RequestBody& body,
                             std::initializer_list<std::string_view> allowed) {
  for (const auto& member : body.object) {
    bool known = false;
    for (std::string_view name : allowed)
      known = known || member.key() == name;
    if (!known) {
      return invalid("unknown_field", "Unknown field \"" + std::string(member.key()) + "\".");
    }
  }
  return Status::success();
}

Result<std::optional<ledger::Money>> money_field(const RequestBody& body, std::string_view name) {
  const boost::json::value* value = body.object.if_contains(name);
  if (value == nullptr || value->is_null())
    return std::optional<ledger::Money>{};
  std::string text;
  if (value->is_string()) {
    text = value->get_string();
  } else if (value->is_number()) {
    auto literal = body.number_literals.find(std::string(name));
    if (literal == body.number_literals.end()) {
      return invalid("invalid_amount", "Field \"" + std::string(name) + "\" is not a number.");
    }
    text = literal->second;
  } else {
    return invalid("invalid_amount", "Field \"" + std::string(name) +
                                         "\" must be a decimal string such as \"0.04\".");
  }
  const auto money = ledger::Money::parse(text);
  if (!money) {
    return invalid("invalid_amount", "Field \"" + std::string(name) +
                                         "\" must be a decimal amount with at most 6 " +
                                         "fraction digits and no exponent, got " + text + ".");
  }
  return std::optional<ledger::Money>{*money};
}

Result<ledger::Money> required_amount(const RequestBody& body, std::string_view name) {
  auto money = money_field(body, name);
  if (!money.ok())
    return money.error();
  if (!money.value()) {
    return invalid("missing_field", "Field \"" + std::string(name) + "\" is required.");
  }
  if (!money.value()->is_positive()) {
    return invalid("invalid_amount", "Field \"" + std::string(name) + "\" must be above zero.");
  }
  return *money.value();
}

Result<std::string> text_field(const RequestBody& body, std::string_view name, size_t length_max) {
  const boost::json::value* value = body.object.if_contains(name);
  if (value == nullptr || value->is_null())
    return std::string();
  if (!value->is_string()) {
    return invalid("invalid_field", "Field \"" + std::string(name) + "\" must be a string.");
  }
  if (value->get_string().size() > length_max) {
    return invalid("field_too_long", "Field \"" + std::string(name) + "\" is longer than " +
                                         std::to_string(length_max) + " bytes.");
  }
  if (Status clean = check_text(value->get_string(), name); !clean.ok())
    return clean.error();
  return std::string(value->get_string());
}

Result<std::string> tags_field(const RequestBody& body) {
  static const boost::json::value no_tags = boost::json::object{};
  const boost::json::value* value = body.object.if_contains("tags");
  if (value == nullptr || value->is_null())
    value = &no_tags;
  if (!value->is_object())
    return invalid("invalid_tags", "Field \"tags\" must be an object.");
  const auto& tags = value->get_object();
  if (tags.size() > tags_count_max) {
    return invalid("invalid_tags",
                   "At most " + std::to_string(tags_count_max) + " tags are allowed.");
  }
  for (const auto& tag : tags) {
    if (tag.key().empty() || tag.key().size() > tag_key_length_max) {
      return invalid("invalid_tags",
                     "Tag keys must be 1 to " + std::to_string(tag_key_length_max) + " bytes.");
    }
    if (!tag.value().is_string() || tag.value().get_string().size() > tag_value_length_max) {
      return invalid("invalid_tags", "Tag \"" + std::string(tag.key()) +
                                         "\" must be a string of at most " +
                                         std::to_string(tag_value_length_max) + " bytes.");
    }
    if (!is_clean_text(tag.key()) || !is_clean_text(tag.value().get_string())) {
      return invalid("invalid_text",
                     "Tag keys and values must be valid UTF-8 without control "
                     "characters.");
    }
  }
  // A category, given as its own field or as the reserved tag, is a small token so that
  // queries can group and filter on it (docs/design.md, "Attribution").
  boost::json::object merged = tags;
  if (const boost::json::value* category = body.object.if_contains("category");
      category != nullptr && !category->is_null()) {
    if (!category->is_string())
      return invalid("invalid_category", "Field \"category\" must be a string.");
    if (const auto* tagged = merged.if_contains("category");
        tagged != nullptr && *tagged != *category) {
      return invalid("invalid_category",
                     "Field \"category\" and tags.category disagree; give one of them.");
    }
    if (!merged.contains("category") && merged.size() >= tags_count_max) {
      return invalid("invalid_tags", "At most " + std::to_string(tags_count_max) +
                                         " tags are allowed (the category counts as one).");
    }
    merged["category"] = *category;
  }
  if (const auto* category = merged.if_contains("category"))
    if (Status token = check_category(category->get_string()); !token.ok())
      return token.error();
  return ledger::canonical_json(boost::json::value(std::move(merged)));
}

Status check_category(std::string_view category) {
  const bool valid =
      !category.empty() && category.size() <= category_length_max &&
      ((category[0] >= 'a' && category[0] <= 'z') || (category[0] >= '0' && category[0] <= '9')) &&
      std::all_of(category.begin(), category.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      });
  if (valid)
    return Status::success();
  return invalid("invalid_category",
                 "A category is 1 to 32 of a-z 0-9 - _, starting with a letter or digit "
                 "(llm, data-api, payments).");
}

namespace {

// Checks every number of a receipt against its literal (in document order) and replaces each
// double with the correctly rounded reading of its literal. False when one does not round-trip.
bool exact_receipt_numbers(boost::json::value& value, const std::vector<std::string>& literals,
                           size_t& next) {
  switch (value.kind()) {
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_: {
      if (next >= literals.size())
        return false;
      double exact = 0;
      if (!round_trips_through_double(literals[next++], exact))
        return false;
      if (value.is_double())
        value = exact;
      return true;
    }
    case boost::json::kind::array:
      for (auto& item : value.get_array()) {
        if (!exact_receipt_numbers(item, literals, next))
          return false;
      }
      return true;
    case boost::json::kind::object:
      for (auto& member : value.get_object()) {
        if (!exact_receipt_numbers(member.value(), literals, next))
          return false;
      }
      return true;
    default:
      return true;
  }
}

}  // namespace

Result<std::string> receipt_field(const RequestBody& body) {
  const boost::json::value* given = body.object.if_contains("receipt");
  if (given == nullptr)
    return std::string("null");
  if (body.receipt_duplicate_name) {
    return invalid("invalid_receipt",
                   "Field \"receipt\" repeats a member name in one object (I-JSON, RFC 7493).");
  }
  boost::json::value value = *given;
  if (value.is_number()) {
    auto literal = body.number_literals.find("receipt");
    if (literal != body.number_literals.end()) {
      double exact = 0;
      if (!round_trips_through_double(literal->second, exact)) {
        return invalid("receipt_number_out_of_range",
                       "Receipt number " + literal->second +
                           " does not round-trip exactly through a double (I-JSON, RFC 7493); "
                           "send it as a string.");
      }
      if (value.is_double())
        value = exact;
    }
  } else {
    size_t next = 0;
    if (!exact_receipt_numbers(value, body.receipt_literals, next) ||
        next != body.receipt_literals.size()) {
      return invalid("receipt_number_out_of_range",
                     "A number in field \"receipt\" does not round-trip exactly through a double "
                     "(I-JSON, RFC 7493), such as an integer beyond 2^53; send it as a string.");
    }
  }
  std::string canonical = ledger::canonical_json(value);
  if (canonical.size() > receipt_bytes_max) {
    return invalid("receipt_too_large", "Field \"receipt\" is larger than " +
                                            std::to_string(receipt_bytes_max) + " bytes.");
  }
  return canonical;
}

Result<std::optional<ledger::Micros>> duration_field(const RequestBody& body,
                                                     std::string_view name) {
  const boost::json::value* value = body.object.if_contains(name);
  if (value == nullptr || value->is_null())
    return std::optional<ledger::Micros>{};
  std::optional<ledger::Micros> duration;
  if (value->is_string()) {
    duration = ledger::parse_duration(value->get_string());
  } else if (value->is_int64() && value->get_int64() >= 0 && value->get_int64() <= 3650LL * 86400) {
    duration = value->get_int64() * ledger::micros_per_second;
  }
  if (!duration) {
    return invalid("invalid_duration", "Field \"" + std::string(name) +
                                           "\" must be a duration such as \"30s\", \"5m\", " +
                                           "\"1h\", \"1d\" or whole seconds.");
  }
  return duration;
}

}  // namespace stub::http
