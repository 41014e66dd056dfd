#pragma once

// Shape checks for request bodies: every field's type, range and size, with an error that
// names the field. Whatever passes here is well-formed; rules that depend on ledger state are
// the core's.

#include <boost/json/object.hpp>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/money.hpp"
#include "ledger/result.hpp"
#include "ledger/time_point.hpp"

namespace stub::http {

inline constexpr size_t tags_count_max = 16;
inline constexpr size_t tag_key_length_max = 64;
inline constexpr size_t tag_value_length_max = 256;
inline constexpr size_t receipt_bytes_max = 16 * 1024;
inline constexpr size_t text_field_length_max = 256;
inline constexpr size_t idempotency_key_length_max = 255;
inline constexpr ledger::Micros hold_ttl_default = 5 * 60 * ledger::micros_per_second;
inline constexpr ledger::Micros hold_ttl_max = 24 * 3600 * ledger::micros_per_second;
inline constexpr size_t webhook_secret_length_min = 16;
inline constexpr size_t webhook_secret_length_max = 256;
// The longest GET /v1/holds/{id}?wait= long poll.
inline constexpr ledger::Micros hold_wait_max = 60 * ledger::micros_per_second;

struct RequestBody {
  boost::json::object object;
  std::map<std::string, std::string> number_literals;  // top-level numbers, as written
  std::vector<std::string> receipt_literals;           // the receipt's numbers, in order
  bool receipt_duplicate_name = false;                 // an object in the receipt repeats a name
  std::string canonical;                               // JCS of the body, for request hashes
};

// An empty body reads as {}. Anything but a JSON object is a 400.
Result<RequestBody> parse_request_body(std::string_view text);

Status reject_unknown_fields(const RequestBody& body,
                             std::initializer_list<std::string_view> allowed);

// Money from a decimal string or an exactly written JSON number. nullopt when absent; `null`
// is absent too unless null_allowed is false.
Result<std::optional<ledger::Money>> money_field(const RequestBody& body, std::string_view name);
// A positive amount that must be present.
Result<ledger::Money> required_amount(const RequestBody& body, std::string_view name);

Result<std::string> text_field(const RequestBody& body, std::string_view name,
                               size_t length_max = text_field_length_max);
// The tags, with the optional "category" field merged in as the reserved tag "category".
Result<std::string> tags_field(const RequestBody& body);
inline constexpr size_t category_length_max = 32;
// A category is a small token: [a-z0-9][a-z0-9_-]{0,31}.
Status check_category(std::string_view category);            // canonical JSON object
Result<std::string> receipt_field(const RequestBody& body);  // canonical JSON, "null" if absent
// A duration given as "30s"/"5m"/"1h" or as a whole number of seconds.
Result<std::optional<ledger::Micros>> duration_field(const RequestBody& body,
                                                     std::string_view name);

}  // namespace stub::http
