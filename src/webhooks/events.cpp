#include "webhooks/events.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>

#include "ledger/canonical_json.hpp"
#include "ledger/chain.hpp"

namespace stub::webhooks {

namespace {

std::string detail_text(const ledger::Entry& entry, std::string_view member) {
  boost::system::error_code error;
  const boost::json::value detail = boost::json::parse(entry.detail_json, error);
  if (error || !detail.is_object())
    return "";
  const auto* value = detail.get_object().if_contains(member);
  if (value == nullptr || !value->is_string())
    return "";
  return std::string(value->get_string());
}

}  // namespace

const std::vector<std::string>& event_names() {
  static const std::vector<std::string> names = {
      "approval_decided", "approval_requested", "breaker_tripped", "budget_exceeded",
      "frozen",           "threshold_crossed",  "unfrozen"};
  return names;
}

bool known_event(std::string_view name) {
  const auto& names = event_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

std::vector<std::string> events_of(const ledger::Entry& entry) {
  if (entry.kind == "freeze") {
    if (detail_text(entry, "trigger") == "breaker")
      return {"breaker_tripped", "frozen"};
    return {"frozen"};
  }
  if (entry.kind == "unfreeze")
    return {"unfrozen"};
  if (entry.kind == "alert" && detail_text(entry, "event") == "threshold_crossed")
    return {"threshold_crossed"};
  if (entry.kind == "hold" && detail_text(entry, "status") == "pending_approval")
    return {"approval_requested"};
  if (entry.kind == "approve" || entry.kind == "reject")
    return {"approval_decided"};
  if (entry.kind == "deny" && entry.code == "budget_exceeded")
    return {"budget_exceeded"};
  return {};
}

std::string event_id(const ledger::Entry& entry, std::string_view event) {
  return "evt_" + entry.root + "_" + std::to_string(entry.seq) + "_" + std::string(event);
}

std::string event_payload(const ledger::Entry& entry, std::string_view event) {
  std::string out = "{\"id\":";
  ledger::append_json_string(out, event_id(entry, event));
  out += ",\"type\":";
  ledger::append_json_string(out, event);
  out += ",\"created\":\"" + ledger::format_timestamp(entry.ts) + "\",\"root\":";
  ledger::append_json_string(out, entry.root);
  out += ",\"budget\":";
  ledger::append_json_string(out, entry.budget);
  out += ",\"entry\":" + ledger::entry_to_json_text(entry) + "}";
  return out;
}

}  // namespace stub::webhooks
