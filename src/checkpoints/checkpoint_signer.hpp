#pragma once

// The checkpoint signer: a thread that signs each root's chain head every `every_entries`
// entries or every `interval` (whichever comes first, and only when the head moved), stores
// the checkpoint, and appends it to a file outside the database when one is given
// (docs/design.md, "Signed checkpoints"). It reads heads through the store's read path and
// writes outside the ledger's commits, so it never slows a spend.

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "checkpoints/signing_key.hpp"
#include "engine/sequencer.hpp"
#include "ledger/checkpoint.hpp"
#include "store/store.hpp"

namespace stub::checkpoints {

struct SignerOptions {
  int64_t every_entries = 1'000;          // sign once the head is this many entries on
  std::chrono::seconds interval{60};      // or once this long has passed since the last one
  std::chrono::milliseconds poll{1'000};  // how often heads are read; 0: no thread (tests)
  std::string file;                       // empty: no file; else one JSON line per checkpoint
  size_t roots_per_pass_max = 10'000;     // roots looked at per pass
};

inline constexpr int64_t every_entries_max = 1'000'000;
inline constexpr std::chrono::seconds interval_max{86'400};

class CheckpointSigner {
 public:
  CheckpointSigner(store::Store& store, SigningKey key, engine::Clock clock, SignerOptions options);
  CheckpointSigner(const CheckpointSigner&) = delete;
  CheckpointSigner& operator=(const CheckpointSigner&) = delete;
  ~CheckpointSigner();

  // One pass over every root; returns how many checkpoints it signed and stored. `force`
  // signs every head that moved since its last checkpoint, whatever the thresholds say.
  size_t sign_once(bool force = false);
  const VerifyingKey& public_key() const { return key_.public_key(); }

 private:
  void run();
  // Signs `root`'s head if it is due; true when a new checkpoint was stored.
  bool sign_root(const std::string& root, ledger::Micros now, bool force);
  Status append_to_file(const ledger::Checkpoint& checkpoint);

  store::Store& store_;
  const SigningKey key_;
  engine::Clock clock_;
  const SignerOptions options_;
  // The last checkpoint of each root (read from the store the first time a root is seen).
  // Only the signer's thread (or a test calling sign_once) touches it.
  std::map<std::string, ledger::Checkpoint> latest_;
  std::mutex pass_mutex_;  // one pass at a time (a test's sign_once and the thread)
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;  // GUARDED_BY(mutex_)
  std::thread thread_;
};

}  // namespace stub::checkpoints
