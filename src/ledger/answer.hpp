#pragma once

// What the core answers: one typed value per accepted command (a denial included: it is
// recorded as an entry and replayed like any answer). The core never chooses an HTTP status,
// writes a response body or names a route; src/http/render.hpp turns an Answer into bytes. A
// failure that changes nothing is an Error (result.hpp), whose ErrorCode the edge maps too.
//
// Exactly once: a command with an Idempotency-Key keeps, in its IdempotencyRecord, the answer
// AS RENDERED the first time (RenderedAnswer), so that a retry is answered with the same bytes
// even after the renderer changes. The renderer is injected (AnswerRenderer): the sequencer is
// given the edge's, and apply_command calls it before the batch commits, so that the record
// and the first answer are the same bytes.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "ledger/decision.hpp"
#include "ledger/model.hpp"
#include "ledger/policy.hpp"

namespace stub::ledger {

// An answer as the edge rendered it: opaque to the core, which only keeps it in an idempotency
// record and hands it back on a replay. (`status` and `body` are the columns both stores have
// always had for it.)
struct RenderedAnswer {
  int status = 0;
  std::string body;
};

// A one-shot spend, captured in its own commit.
struct SpendCommitted {
  std::string id;
  std::string budget;
  Money amount;
  std::string vendor;
  int64_t seq = 0;  // its entry
};

// A new hold: reserved, or waiting for an admin when `approval_level` is set.
struct HoldPlaced {
  Hold hold;
  int64_t seq = 0;  // its entry
  std::optional<std::string> approval_level;
};

// A hold captured, voided, approved or rejected by this command.
struct HoldSettled {
  Hold hold;
  int64_t seq = 0;  // the settlement's entry
};

// An expiry check (the sweeper's): the hold as it now stands, settled if its time was up. Never
// kept as an idempotency record.
struct HoldChecked {
  Hold hold;
};

// A spend or hold refused by a rule. The refusal is in the books (entry `seq`).
struct Denied {
  DenialCode code = DenialCode::budget_exceeded;
  std::string message;  // one full sentence for a human
  std::string level;    // the node that refused
  Money requested;
  std::optional<Money> available;
  int64_t seq = 0;
  // vendor_limit_exceeded: the rule, and its index in the level's vendor_limits.
  std::optional<VendorLimit> vendor_limit;
  size_t vendor_limit_index = 0;
};

// What a freeze with void_holds (or a continuation of one) settled of a frozen subtree's
// outstanding holds in this commit.
struct VoidedShare {
  int64_t voided = 0;
  int64_t expired = 0;    // already past their expiry: settled as the sweeper would
  int64_t remaining = 0;  // outstanding holds left for another commit (at least this many)
};

// A budget node as it stands after the command: every node from the root down to it, root
// first (the lineage gives its `available` and its root's currency).
struct BudgetState {
  std::vector<BudgetNode> lineage;
  const BudgetNode& node() const { return lineage.back(); }
};

struct BudgetWritten {
  BudgetState state;
  bool created = false;
};

struct BudgetFrozen {  // a freeze or an unfreeze
  BudgetState state;
  std::optional<VoidedShare> share;  // a freeze with void_holds
};

struct HoldsVoided {  // a continuation of a freeze with void_holds
  BudgetState state;
  VoidedShare share;
};

// A new key. Its secret is never in the core: the edge adds it to the first answer only.
struct KeyCreated {
  ApiKey key;
};

struct KeyRevoked {
  ApiKey key;
  int64_t delegations_ended = 0;  // delegations (and runs) this revocation ended
};

// A new delegated child (or run) and its key. The key's secret is added by the edge.
struct DelegationCreated {
  BudgetState state;  // the child, root first
  ApiKey key;
  int64_t seq = 0;  // the delegate entry
};

// An expiry check of a delegation (the sweeper's): how many delegations it ended.
struct DelegationsEnded {
  std::string budget;
  int64_t ended = 0;
};

struct WebhookWritten {
  Webhook webhook;
  bool created = false;
};

struct WebhookDeleted {
  Webhook webhook;
};

struct VendorWritten {
  Vendor vendor;
  bool created = false;
};

struct VendorDeleted {
  Vendor vendor;
};

// A retry of a request already answered: the answer kept in its idempotency record.
struct Replayed {
  RenderedAnswer recorded;
};

using AnswerValue =
    std::variant<SpendCommitted, HoldPlaced, HoldSettled, HoldChecked, Denied, BudgetWritten,
                 BudgetFrozen, HoldsVoided, KeyCreated, KeyRevoked, WebhookWritten, WebhookDeleted,
                 DelegationCreated, DelegationsEnded, VendorWritten, VendorDeleted, Replayed>;

struct Answer {
  AnswerValue value;
  Micros at = 0;  // when the command was decided: what the answer's views are as of
};

// Turns an answer into what the caller receives (and what an idempotency record keeps). Pure
// and deterministic; must answer a Replayed with its recorded bytes unchanged.
using AnswerRenderer = std::function<RenderedAnswer(const Answer&)>;

// An applied command: its typed answer and the answer as rendered.
struct Answered {
  Answer answer;
  RenderedAnswer rendered;
};

}  // namespace stub::ledger
