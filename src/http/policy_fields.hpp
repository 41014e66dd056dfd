#pragma once

// Shape checks for the policy fields of PUT /v1/budgets/{path}: windows, vendors,
// vendor_limits, approval_above, breaker and thresholds. Every problem is a 400 that names the
// field; what passes is well-formed and within the limits in ledger/policy.hpp. Rules that
// depend on the node's state (approval_above against a limit set earlier) are the core's.

#include "http/request_fields.hpp"
#include "ledger/command.hpp"

namespace stub::http {

// Reads every policy field present in `body` into `settings` (null clears a policy).
Status read_policy_fields(const RequestBody& body, ledger::BudgetSettings& settings);

}  // namespace stub::http
