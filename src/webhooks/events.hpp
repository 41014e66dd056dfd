#pragma once

// Which webhook events a committed entry is. Pure: the dispatcher feeds it the root's entries
// in seq order and sends what a webhook subscribed to.

#include <string>
#include <string_view>
#include <vector>

#include "ledger/model.hpp"

namespace stub::webhooks {

// Every event a webhook can subscribe to, ascending.
const std::vector<std::string>& event_names();
bool known_event(std::string_view name);

// breaker_tripped and frozen (a breaker's freeze), frozen, unfrozen, threshold_crossed,
// approval_requested (a hold pending approval), approval_decided (approve or reject, by an
// admin or a lapse), budget_exceeded (a denial with that code; the dispatcher rate-limits it).
std::vector<std::string> events_of(const ledger::Entry& entry);

// "evt_<root>_<seq>_<event>": the same for every attempt, instance and replay, so a receiver
// can drop a repeated delivery.
std::string event_id(const ledger::Entry& entry, std::string_view event);

// The body sent for one event: {"id","type","created","root","budget","entry":{...}} with the
// entry exactly as GET /v1/entries serves it (its hash verifies).
std::string event_payload(const ledger::Entry& entry, std::string_view event);

}  // namespace stub::webhooks
