#pragma once

// The ledger's domain records: budget nodes, holds, API keys, entries and idempotency records.
// Plain values; the rules that change them live in decision.hpp and batch.hpp.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/money.hpp"
#include "ledger/policy.hpp"
#include "ledger/time_point.hpp"

namespace stub::ledger {

inline constexpr std::string_view genesis_hash =
    "0000000000000000000000000000000000000000000000000000000000000000";
inline constexpr std::string_view admin_actor = "admin";
// The actor of what the ledger does by itself: expiries, breaker freezes.
inline constexpr std::string_view system_actor = "system";

// A node made by a delegation (POST /v1/delegations), or a run (POST /v1/keys with `run`): its
// own key, its fixed limit and its life. While active, the node's unused headroom (limit - spent -
// reserved; the node's period is "none", so it never rolls over) is carried as reserved on every
// ancestor, so that what was handed down can never be spent twice; a spend below the node moves
// amount from that carried reservation to spent on the ancestors (net zero there). When it ends
// (its key revoked or expired, or its parent's), its holds are settled and what it still
// carries returns to the parent chain, in one commit.
struct Delegation {
  std::string key_id;      // the node's own key, created with it
  std::string parent_key;  // the key that created it; empty when the admin did
  Micros expires_at = 0;   // the key's expiry: the delegation ends then (zero: never)
  Micros ended_at = 0;     // zero while active
  Money carried;           // what every ancestor holds reserved for it now
  bool run = false;        // made by POST /v1/keys with `run` (a per-run key)

  bool active() const { return ended_at == 0; }
};

// The delegation record as stored in the budget row ("" for none), and back.
std::string delegation_to_storage(const std::optional<Delegation>& delegation);
std::optional<Delegation> delegation_from_storage(std::string_view text);

struct BudgetNode {
  std::string path;
  std::string root;
  std::string parent;  // empty for a root
  std::optional<Money> limit;
  Period period = Period::month;
  Micros period_start = 0;
  Money spent;     // captured in the current period
  Money reserved;  // outstanding holds, whatever period they were made in
  std::optional<Money> per_txn_max;
  bool frozen = false;
  std::string frozen_reason;
  std::string currency = "USD";  // meaningful on roots; children inherit the root's
  Policies policies;             // windows, vendor rules, approvals, breaker, thresholds
  Usage usage;                   // the rolling counters and alert state those policies need
  // The root's row carries its chain head, so that every batch that touches a root writes the
  // row and racing writers on other instances conflict on it.
  int64_t head_seq = 0;
  std::string head_hash = std::string(genesis_hash);
  Micros created_at = 0;
  Micros updated_at = 0;
  // Set when the stored row could not be read whole (its policies or usage are malformed):
  // nothing is decided on such a node, and reads refuse it (internal: ledger_state_invalid).
  std::string state_error;
  std::optional<Delegation> delegation;  // set on a node made by a delegation or a run

  bool active_delegation() const { return delegation && delegation->active(); }

  // The start of the period the node is in as of `now`: the recorded one, or a later one once
  // `now` has passed its end. Never an earlier one, whatever `now` says (time only moves
  // forward, SPEC guarantee 7).
  Micros current_period_start(Micros now) const;
  // Spent as of `now`: zero once the period has rolled over (the reset is lazy).
  Money spent_at(Micros now) const;
  // Moves the node into current_period_start(now), zeroing spent if it rolled over.
  void roll_period(Micros now);
  // limit - spent - reserved as of `now`, or nullopt when the node has no limit of its own.
  std::optional<Money> available_at(Micros now) const;
};

enum class HoldStatus { held, captured, voided, expired, pending_approval, rejected };
std::string_view hold_status_name(HoldStatus status);
std::optional<HoldStatus> parse_hold_status(std::string_view text);

enum class OnExpiry { capture, void_hold };

struct Hold {
  std::string id;
  std::string root;
  std::string budget;
  Money amount;    // held
  Money captured;  // settled cost, zero until captured
  HoldStatus status = HoldStatus::held;
  std::string vendor;
  std::string intent;
  std::string tags_json = "{}";
  OnExpiry on_expiry = OnExpiry::capture;
  Micros created_at = 0;
  Micros expires_at = 0;
  Micros settled_at = 0;  // zero while open
  std::string actor;
  // The hold's time to live. A hold waiting for approval expires (as rejected) `ttl` after it
  // was requested; once approved it is held for `ttl` from the approval.
  Micros ttl = 0;

  bool open() const { return status == HoldStatus::held || status == HoldStatus::pending_approval; }
  // The status a reader should see at `now`: a held hold past its expiry reads as expired, a
  // pending one past its deadline as rejected.
  HoldStatus status_at(Micros now) const;
};

struct ApiKey {
  std::string id;
  std::string budget;
  std::string name;
  std::string secret_hash;  // lowercase hex SHA-256 of the secret; the secret is never stored
  Micros created_at = 0;
  Micros expires_at = 0;  // zero: never
  Micros revoked_at = 0;  // zero: active

  bool usable_at(Micros now) const {
    return revoked_at == 0 && (expires_at == 0 || now < expires_at);
  }
};

// A webhook: where a root's alerts are sent (docs/api.md, "Webhooks"). Its configuration is
// ledger state (changes are chained entries); its deliveries are the dispatcher's bookkeeping.
struct Webhook {
  std::string name;
  std::string root;
  std::string url;
  std::vector<std::string> events;  // event names, ascending
  std::string secret;               // signs deliveries; never shown or chained
  int64_t since_seq = 0;            // deliveries cover the root's entries after this seq
  Micros created_at = 0;
  Micros updated_at = 0;
};

// A vendor: an upstream the metering proxy forwards to (docs/proxy.md). Its configuration is
// ledger state (changes are chained `vendor_set` / `vendor_deleted` entries, never with the
// credential). `settings_json` is a canonical JSON object of the non-secret settings (kind,
// base_url, credential_header, cost, timeouts); `credential` is the vendor's secret sealed by
// the edge (AES-256-GCM, "v1:" + base64), never plain, never shown or chained.
struct Vendor {
  std::string name;
  std::string root;  // the root whose chain records the vendor's changes
  std::string settings_json = "{}";
  std::string credential;
  Micros created_at = 0;
  Micros updated_at = 0;
};

struct Posting {
  std::string account;
  Money amount;
};

struct Entry {
  std::string root;
  int64_t seq = 0;
  Micros ts = 0;
  std::string kind;
  std::string budget;
  std::optional<Money> amount;
  std::string vendor;
  std::string intent;
  std::string tags_json = "{}";       // canonical JSON object of strings
  std::string receipt_json = "null";  // canonical JSON
  std::string hold_id;
  std::string code;
  std::string actor;
  std::string detail_json = "null";  // canonical JSON
  std::vector<Posting> postings;
  std::string prev_hash;
  std::string hash;
};

// The stored answer to a mutating request, replayed verbatim for the same idempotency key:
// the answer as the edge rendered it the first time (ledger::RenderedAnswer), opaque to the core.
struct IdempotencyRecord {
  std::string root;
  std::string key;  // "<actor>:<Idempotency-Key>": keys are scoped to whoever sent them
  std::string request_hash;
  int status = 0;    // as rendered; the core never reads it
  std::string body;  // as rendered, byte for byte
  Micros created_at = 0;
};

}  // namespace stub::ledger
