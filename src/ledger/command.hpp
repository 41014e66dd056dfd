#pragma once

// Commands: the validated, authenticated requests that the sequencer decides in order. The HTTP
// edge parses and checks the shape of input; the core re-checks everything that depends on
// state (key still valid, node exists, hold still held) against the state read in the commit.

#include <optional>
#include <string>
#include <vector>

#include "ledger/model.hpp"

namespace stub::ledger {

enum class CommandKind {
  spend,
  hold,
  capture,
  void_hold,
  expire,
  set_budget,
  freeze,
  unfreeze,
  create_key,
  revoke_key,
  // Voids the next share of a frozen subtree's outstanding holds: what a freeze with
  // void_holds could not fit under the per-commit row bound (the edge submits these).
  void_holds,
  approve,      // an admin approves a hold waiting for approval
  reject_hold,  // ...or rejects it
  set_webhook,
  delete_webhook,
  // Creates a child node and its key in one commit, reserving the child's limit from the
  // parent chain (POST /v1/delegations, and POST /v1/keys with `run`).
  delegate,
  // Ends a delegation whose key has expired (the sweeper's): settles its holds, returns what it
  // still carries to the parent chain and freezes it, with every delegation below it.
  end_delegation,
  set_vendor,
  delete_vendor,
};

// A PUT of a webhook: the fields given (url, events and secret are required to create one).
struct WebhookSettings {
  std::string name;
  std::optional<std::string> url;
  std::optional<std::vector<std::string>> events;
  std::optional<std::string> secret;
};

// A PUT of a vendor: the settings given (merged over the vendor's, field by field) and the
// credential, sealed at the edge, when one was given (required to create a vendor).
struct VendorSettings {
  std::string name;
  std::string settings_patch_json = "{}";  // a JSON object; a null member removes that setting
  std::optional<std::string> credential;   // sealed, never plain
};

// A PUT of a budget node: every field that was given, and only those.
struct BudgetSettings {
  bool limit_given = false;
  std::optional<Money> limit;  // given as null: no cap of its own
  std::optional<Period> period;
  bool per_txn_max_given = false;
  std::optional<Money> per_txn_max;
  std::optional<std::string> currency;
  // Policies: each one given replaces the node's (null or empty clears it); absent keeps it.
  std::optional<std::vector<WindowCap>> windows;
  std::optional<VendorRules> vendors;
  std::optional<std::vector<VendorLimit>> vendor_limits;         // null or empty clears them
  std::optional<std::vector<std::string>> require_tags;          // null or empty clears them
  std::optional<std::vector<VendorCategory>> vendor_categories;  // null or empty clears them
  bool approval_above_given = false;
  std::optional<Money> approval_above;
  bool breaker_given = false;
  std::optional<BreakerSettings> breaker;
  bool thresholds_given = false;
  std::optional<std::vector<int>> thresholds;  // null: back to the default 50 / 80 / 100

  bool touches_policies() const {
    return windows || vendors || vendor_limits || require_tags || vendor_categories ||
           approval_above_given || breaker_given || thresholds_given;
  }
};

struct Command {
  CommandKind kind = CommandKind::spend;
  std::string root;             // the chain (and idempotency scope) the command belongs to
  std::string actor;            // "admin" or the acting key's id
  std::string idempotency_key;  // empty when the request carried none
  std::string request_hash;     // SHA-256 of the canonical request, to detect reuse

  std::string budget;  // the node acted on (for hold commands: the hold's node)
  std::optional<Money> amount;
  std::string vendor;
  std::string intent;
  std::string tags_json = "{}";
  std::string receipt_json = "null";
  std::string hold_id;  // new id (spend, hold) or the hold acted on
  Micros ttl = 0;
  OnExpiry on_expiry = OnExpiry::capture;

  BudgetSettings settings;  // set_budget
  std::string reason;       // freeze, unfreeze, approve, reject
  bool void_holds = false;  // freeze: also void the subtree's outstanding holds, same commit
  ApiKey key;               // create_key (secret_hash set, secret never here), revoke_key (id)
  WebhookSettings webhook;  // set_webhook, delete_webhook (name)
  // delegate: `budget` is the new child, `amount` its limit, `ttl` its key's life, `key` the new
  // key (id, name, secret_hash; budget is the child); an optional vendor allow list.
  std::optional<std::vector<std::string>> allow_vendors;
  bool run = false;                // a per-run key (POST /v1/keys with `run`)
  VendorSettings vendor_settings;  // set_vendor, delete_vendor (name)
};

std::string_view command_kind_name(CommandKind kind);

}  // namespace stub::ledger
