#include "store/rollup.hpp"

#include <boost/json/parse.hpp>
#include <cassert>
#include <map>

namespace stub::store {

namespace {

// The reserved tag `category` (query::category_tag_key; the store does not link the query
// library). Tags are canonical JSON objects of strings, written by the core.
std::string category_of(const std::string& tags_json) {
  if (tags_json.find("\"category\"") == std::string::npos)
    return "";
  boost::system::error_code error;
  const boost::json::value tags = boost::json::parse(tags_json, error);
  if (error || !tags.is_object())
    return "";
  const boost::json::value* category = tags.get_object().if_contains("category");
  if (category == nullptr || !category->is_string())
    return "";
  return std::string(category->get_string());
}

}  // namespace

bool is_rolled_up(const ledger::Entry& entry) {
  if (entry.kind == "deny")
    return true;
  return (entry.kind == "spend" || entry.kind == "capture" || entry.kind == "expire") &&
         entry.amount && entry.amount->is_positive();
}

std::vector<RollupRow> rollup_of(const std::vector<ledger::Entry>& entries) {
  std::map<RollupKey, std::pair<int64_t, int64_t>> sums;
  for (const ledger::Entry& entry : entries) {
    if (!is_rolled_up(entry))
      continue;
    assert(entry.ts >= 0);
    RollupKey key{entry.root,   entry.ts / rollup_bucket_micros, entry.budget,
                  entry.vendor, category_of(entry.tags_json),    entry.kind,
                  entry.code};
    auto& [amount, count] = sums[std::move(key)];
    amount += entry.amount ? entry.amount->micros() : 0;
    ++count;
  }
  std::vector<RollupRow> rows;
  rows.reserve(sums.size());
  for (auto& [key, totals] : sums)
    rows.push_back(RollupRow{key, totals.first, totals.second});
  assert(rows.size() <= entries.size());
  return rows;
}

}  // namespace stub::store
