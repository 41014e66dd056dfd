#pragma once

// Rendering: the ONE place that turns what the core answers into HTTP statuses and JSON bodies.
// The JSON views of domain records are shared by command answers and reads, so that a budget or
// a hold looks the same wherever the API shows it. render_answer is the renderer the sequencer
// is given (ledger::AnswerRenderer): a command's answer is rendered before its batch commits,
// and an idempotency record keeps exactly those bytes.

#include <boost/json/object.hpp>
#include <span>

#include "ledger/answer.hpp"
#include "ledger/model.hpp"

namespace stub::http {

using ledger::ApiKey;
using ledger::BudgetNode;
using ledger::Hold;
using ledger::Micros;
using ledger::Webhook;

// `lineage` is every node from the root to `node` (inclusive), root first; it gives `available`.
boost::json::object budget_to_json(const BudgetNode& node,
                                   std::span<const BudgetNode* const> lineage, Micros now);
boost::json::object hold_to_json(const Hold& hold, Micros now);
boost::json::object key_to_json(const ApiKey& key);
boost::json::object delegation_to_json(const ledger::Delegation& delegation);
// Never shows the secret.
boost::json::object webhook_to_json(const Webhook& webhook);
// A vendor's settings with the defaults filled in; never its credential (only whether one is
// set).
boost::json::object vendor_to_json(const ledger::Vendor& vendor);

// The status and body of a command's answer. A Replayed answer is its recorded bytes, as is.
ledger::RenderedAnswer render_answer(const ledger::Answer& answer);

}  // namespace stub::http
