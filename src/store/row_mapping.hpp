#pragma once

// Maps result rows to domain records, shared by every store. A Row is anything with
// column_text(i), column_int(i) and column_optional_int(i), in the column orders below (each
// store's SELECT lists name the same columns in the same order).

#include <boost/json/parse.hpp>
#include <optional>
#include <string>

#include "ledger/model.hpp"
#include "store/store.hpp"

namespace stub::store {

template <typename Row>
std::optional<ledger::Money> optional_money(const Row& row, int column) {
  const std::optional<int64_t> micros = row.column_optional_int(column);
  if (!micros)
    return std::nullopt;
  return ledger::Money::from_micros(*micros);
}

// When the sweeper should end the node's delegation: its key's expiry while it is active.
inline std::optional<int64_t> delegation_ends_at_of(const ledger::BudgetNode& node) {
  if (!node.active_delegation() || node.delegation->expires_at == 0)
    return std::nullopt;
  return node.delegation->expires_at;
}

inline std::optional<int64_t> optional_micros(const std::optional<ledger::Money>& money) {
  if (!money)
    return std::nullopt;
  return money->micros();
}

// path, root, parent, limit_micros, period, period_start, spent, reserved, per_txn_max,
// frozen (0/1), frozen_reason, currency, head_seq, head_hash, created_at, updated_at, policy,
// usage (NULL or empty: nothing set), delegation (NULL or empty: none), delegation_ends_at
template <typename Row>
ledger::BudgetNode read_budget(const Row& row) {
  ledger::BudgetNode node;
  node.path = row.column_text(0);
  node.root = row.column_text(1);
  node.parent = row.column_text(2);
  node.limit = optional_money(row, 3);
  node.period = ledger::parse_period(row.column_text(4)).value_or(ledger::Period::month);
  node.period_start = row.column_int(5);
  node.spent = ledger::Money::from_micros(row.column_int(6));
  node.reserved = ledger::Money::from_micros(row.column_int(7));
  node.per_txn_max = optional_money(row, 8);
  node.frozen = row.column_int(9) != 0;
  node.frozen_reason = row.column_text(10);
  node.currency = row.column_text(11);
  node.head_seq = row.column_int(12);
  node.head_hash = row.column_text(13);
  node.created_at = row.column_int(14);
  node.updated_at = row.column_int(15);
  // A row whose policies or usage cannot be read is flagged, never read as "no policy": the
  // core refuses to decide on it and reads answer 500 ledger_state_invalid.
  auto policies = ledger::policies_from_storage(row.column_text(16));
  auto usage = ledger::usage_from_storage(row.column_text(17));
  if (policies.ok())
    node.policies = std::move(policies).value();
  else
    node.state_error = policies.error().message;
  if (usage.ok())
    node.usage = std::move(usage).value();
  else if (node.state_error.empty())
    node.state_error = usage.error().message;
  const std::string delegation = row.column_text(18);
  node.delegation = ledger::delegation_from_storage(delegation);
  if (!delegation.empty() && !node.delegation && node.state_error.empty())
    node.state_error = "its delegation record is malformed";
  return node;
}

// id, root, budget, amount, captured, status, vendor, intent, tags, on_expiry, created_at,
// expires_at, settled_at, actor, ttl (NULL: holds made before approvals, whose ttl is moot)
template <typename Row>
ledger::Hold read_hold(const Row& row) {
  ledger::Hold hold;
  hold.id = row.column_text(0);
  hold.root = row.column_text(1);
  hold.budget = row.column_text(2);
  hold.amount = ledger::Money::from_micros(row.column_int(3));
  hold.captured = ledger::Money::from_micros(row.column_int(4));
  hold.status = ledger::parse_hold_status(row.column_text(5)).value_or(ledger::HoldStatus::held);
  hold.vendor = row.column_text(6);
  hold.intent = row.column_text(7);
  hold.tags_json = row.column_text(8);
  hold.on_expiry =
      row.column_text(9) == "void" ? ledger::OnExpiry::void_hold : ledger::OnExpiry::capture;
  hold.created_at = row.column_int(10);
  hold.expires_at = row.column_int(11);
  hold.settled_at = row.column_int(12);
  hold.actor = row.column_text(13);
  hold.ttl = row.column_optional_int(14).value_or(hold.expires_at - hold.created_at);
  return hold;
}

inline std::string_view on_expiry_name(ledger::OnExpiry on_expiry) {
  return on_expiry == ledger::OnExpiry::void_hold ? "void" : "capture";
}

// id, budget, name, secret_hash, created_at, expires_at, revoked_at
template <typename Row>
ledger::ApiKey read_key(const Row& row) {
  return ledger::ApiKey{row.column_text(0), row.column_text(1), row.column_text(2),
                        row.column_text(3), row.column_int(4),  row.column_int(5),
                        row.column_int(6)};
}

// Postings are stored as their canonical JSON; a row altered into something unparseable is
// reported by verify as a bad hash rather than crashing the reader.
std::vector<ledger::Posting> parse_postings(const std::string& text);

// root, seq, ts, kind, budget, amount, vendor, intent, tags, receipt, hold_id, code, actor,
// detail, postings, prev_hash, hash
template <typename Row>
ledger::Entry read_entry(const Row& row) {
  ledger::Entry entry;
  entry.root = row.column_text(0);
  entry.seq = row.column_int(1);
  entry.ts = row.column_int(2);
  entry.kind = row.column_text(3);
  entry.budget = row.column_text(4);
  entry.amount = optional_money(row, 5);
  entry.vendor = row.column_text(6);
  entry.intent = row.column_text(7);
  entry.tags_json = row.column_text(8);
  entry.receipt_json = row.column_text(9);
  entry.hold_id = row.column_text(10);
  entry.code = row.column_text(11);
  entry.actor = row.column_text(12);
  entry.detail_json = row.column_text(13);
  entry.postings = parse_postings(row.column_text(14));
  entry.prev_hash = row.column_text(15);
  entry.hash = row.column_text(16);
  return entry;
}

// root, key, request_hash, status, body, created_at
template <typename Row>
ledger::IdempotencyRecord read_idempotency(const Row& row) {
  return ledger::IdempotencyRecord{row.column_text(0), row.column_text(1),
                                   row.column_text(2), static_cast<int>(row.column_int(3)),
                                   row.column_text(4), row.column_int(5)};
}

// Webhook events are stored as a JSON array of strings.
std::string events_to_text(const std::vector<std::string>& events);
std::vector<std::string> events_from_text(const std::string& text);

// name, root, url, events, secret, since_seq, created_at, updated_at
template <typename Row>
ledger::Webhook read_webhook(const Row& row) {
  ledger::Webhook webhook;
  webhook.name = row.column_text(0);
  webhook.root = row.column_text(1);
  webhook.url = row.column_text(2);
  webhook.events = events_from_text(row.column_text(3));
  webhook.secret = row.column_text(4);
  webhook.since_seq = row.column_int(5);
  webhook.created_at = row.column_int(6);
  webhook.updated_at = row.column_int(7);
  return webhook;
}

// name, root, settings, credential, created_at, updated_at
template <typename Row>
ledger::Vendor read_vendor(const Row& row) {
  ledger::Vendor vendor;
  vendor.name = row.column_text(0);
  vendor.root = row.column_text(1);
  vendor.settings_json = row.column_text(2);
  vendor.credential = row.column_text(3);
  vendor.created_at = row.column_int(4);
  vendor.updated_at = row.column_int(5);
  return vendor;
}

// webhook, event_id, root, seq, event, payload, status, attempts, last_status, last_error,
// next_attempt_at, created_at, delivered_at
template <typename Row>
WebhookDelivery read_delivery(const Row& row) {
  WebhookDelivery delivery;
  delivery.webhook = row.column_text(0);
  delivery.event_id = row.column_text(1);
  delivery.root = row.column_text(2);
  delivery.seq = row.column_int(3);
  delivery.event = row.column_text(4);
  delivery.payload = row.column_text(5);
  delivery.status = row.column_text(6);
  delivery.attempts = row.column_int(7);
  delivery.last_status = row.column_int(8);
  delivery.last_error = row.column_text(9);
  delivery.next_attempt_at = row.column_int(10);
  delivery.created_at = row.column_int(11);
  delivery.delivered_at = row.column_int(12);
  return delivery;
}

}  // namespace stub::store
