#pragma once

// Signed checkpoints (docs/design.md, "Signed checkpoints"): a statement that a root's chain had
// head (seq, hash) at time ts, signed with the server's Ed25519 key. Kept outside the database
// (a file, a webhook receiver, a copy of GET /v1/checkpoints), they let `stub verify` find a
// chain that was rewritten with every hash recomputed, or cut short with its head moved back:
// neither can reproduce the hash a checkpoint signed at its seq. The signing itself lives in
// src/checkpoints; this file is the pure part: what is signed and how a chain is compared.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/model.hpp"
#include "ledger/result.hpp"

namespace stub::ledger {

struct Checkpoint {
  std::string root;
  int64_t seq = 0;        // the head's seq (>= 1: an empty chain is never checkpointed)
  std::string hash;       // the head's hash, lowercase hex SHA-256
  Micros ts = 0;          // when it was signed; never before the root's previous checkpoint
  std::string key_id;     // names the signing key: 16 hex digits of SHA-256(public key)
  std::string signature;  // base64 of the Ed25519 signature of checkpoint_message()
};

// The signed bytes: the JCS text of {"hash","root","seq","ts"} (ts in RFC 3339 with
// microseconds, as entries have it), so anyone can check a checkpoint with any JCS and Ed25519
// library.
std::string checkpoint_message(const Checkpoint& checkpoint);
// The checkpoint as one line of JSON (no newline): the message's members plus key_id and
// signature. The form of GET /v1/checkpoints and of --checkpoint-file.
std::string checkpoint_to_json(const Checkpoint& checkpoint);
// Reads checkpoint_to_json's form back (any member order); an error names what is wrong.
Result<Checkpoint> checkpoint_from_json(std::string_view text);
// "2026-11-22T23:19:17.123456Z" back to microseconds (exactly format_timestamp's form).
std::optional<Micros> parse_timestamp(std::string_view text);

// Compares a root's chain, fed in seq order, with checkpoints whose signatures were already
// checked: each must name a seq the chain reaches and the hash it has there. finish() names the
// first (lowest seq) checkpoint the chain contradicts.
class CheckpointMatcher {
 public:
  explicit CheckpointMatcher(std::vector<Checkpoint> checkpoints);
  void feed(const Entry& entry);
  struct Report {
    int64_t checked = 0;                // checkpoints the chain agrees with
    std::optional<int64_t> latest_seq;  // the newest checkpoint it agrees with
    std::optional<Checkpoint> first_contradicted;
    std::string problem;  // one sentence about first_contradicted
  };
  // `verified_seq`: the highest seq up to which the chain verified (feed only those entries: one
  // after a broken link proves nothing); `recorded_head_seq`: the head the database records.
  Report finish(int64_t verified_seq, int64_t recorded_head_seq) const;

 private:
  std::vector<Checkpoint> checkpoints_;  // ascending seq
  std::vector<std::string> seen_;        // the chain's hash at each checkpoint's seq ("" unseen)
};

}  // namespace stub::ledger
