#pragma once

// JSON views of domain records, shared by command answers and reads so that a budget or a hold
// looks the same wherever the API shows it.

#include <boost/json/object.hpp>
#include <span>

#include "ledger/model.hpp"

namespace stub::ledger {

// `lineage` is every node from the root to `node` (inclusive), root first; it gives `available`.
boost::json::object budget_to_json(const BudgetNode& node,
                                   std::span<const BudgetNode* const> lineage, Micros now);
boost::json::object hold_to_json(const Hold& hold, Micros now);
boost::json::object key_to_json(const ApiKey& key);
// Never shows the secret.
boost::json::object webhook_to_json(const Webhook& webhook);

}  // namespace stub::ledger
