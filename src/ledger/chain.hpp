#pragma once

// The per-root hash chain (SPEC section 2): hash = lowercase hex SHA-256 of the JCS form of the
// entry exactly as /v1/entries serves it, minus its "hash" member.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ledger/model.hpp"

namespace stub::ledger {

std::string sha256_hex(std::string_view data);

// The entry as the API serves it, hash included, as JSON text, written from the stored canonical
// parts without re-parsing them (Boost.JSON 1.81 may round a receipt's doubles differently on a
// second parse), so that the served text is exactly what was hashed plus the "hash" member.
std::string entry_to_json_text(const Entry& entry);
// The JCS text of the entry without its hash, written directly (keys are known and sorted).
std::string entry_canonical_text(const Entry& entry);
std::string compute_entry_hash(const Entry& entry);
// Canonical JSON text of a postings list, as stored.
std::string postings_to_json_text(const std::vector<Posting>& postings);

struct VerifyReport {
  bool ok = true;
  int64_t checked = 0;
  int64_t head_seq = 0;
  std::string head_hash = std::string(genesis_hash);
  std::optional<int64_t> first_bad_seq;
  std::string problem;  // one sentence naming what is wrong at first_bad_seq
  // Reconciliation (ledger/balances.hpp): every budget's spent and reserved against the
  // postings of its entries. Empty balance_problem: all budgets_checked agree.
  int64_t budgets_checked = 0;
  std::string bad_budget;
  std::string balance_problem;
  // Signed checkpoints (ledger/checkpoint.hpp), when some were given.
  int64_t checkpoints_checked = 0;
  std::optional<int64_t> latest_checkpoint_seq;  // the newest checkpoint the chain agrees with
  std::optional<int64_t> first_bad_checkpoint_seq;
  std::string checkpoint_problem;
};

// Checks one root's chain fed in ascending seq order: seqs are gap-free from 1, every prev_hash
// names the previous hash, every hash recomputes, and postings sum to zero. Stops at the first
// bad entry. finish() then compares with the head recorded in the root's row, which catches
// entries deleted from the end.
class ChainVerifier {
 public:
  // Returns false once a bad entry has been found; later entries are ignored.
  bool feed(const Entry& entry);
  VerifyReport finish(int64_t recorded_head_seq, std::string_view recorded_head_hash);
  int64_t checked() const { return report_.checked; }

 private:
  void fail(int64_t seq, std::string problem);
  VerifyReport report_;
};

}  // namespace stub::ledger
