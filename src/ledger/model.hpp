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
  // nothing is decided on such a node, and reads refuse it (500 ledger_state_invalid).
  std::string state_error;

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

// The stored answer to a mutating request, replayed verbatim for the same idempotency key.
struct IdempotencyRecord {
  std::string root;
  std::string key;  // "<actor>:<Idempotency-Key>": keys are scoped to whoever sent them
  std::string request_hash;
  int status = 0;
  std::string body;
  Micros created_at = 0;
};

}  // namespace stub::ledger
