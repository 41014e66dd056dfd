#pragma once

// The entry rollup (docs/design.md, "Query rollup"): per root, UTC day, budget node, vendor,
// category, kind and denial code, the sum of amounts and the number of entries, written by the
// same commit that writes the entries, so it always equals sums over the entries. Queries
// whose groups and filters are all rollup dimensions read it instead of a month of entries.
//
// Rolled up: the entries that settle money (spend, capture, expire with an amount above zero),
// which every money metric reads, and denials (deny), which the denials metric counts. The
// category is the reserved tag's value, empty when there is none.

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "ledger/model.hpp"

namespace stub::store {

// A day, not an hour: at a million spends a month over a hundred agents and a few vendors, an
// hour holds fewer entries than it has node x vendor x category combinations, so hourly sums
// would be nearly as many rows as the entries (docs/design.md).
inline constexpr ledger::Micros rollup_bucket_micros = 86'400'000'000;

struct RollupKey {
  std::string root;
  int64_t day = 0;  // ts / rollup_bucket_micros: days since the epoch, UTC
  std::string budget;
  std::string vendor;
  std::string category;
  std::string kind;
  std::string code;
  auto operator<=>(const RollupKey&) const = default;
};

struct RollupRow {
  RollupKey key;
  int64_t amount = 0;  // micros
  int64_t count = 0;
};

bool is_rolled_up(const ledger::Entry& entry);

// The batch's entries summed by rollup key, in key order (so that row locks are taken in one
// order): the increments a commit adds to the rollup table.
std::vector<RollupRow> rollup_of(const std::vector<ledger::Entry>& entries);

}  // namespace stub::store
