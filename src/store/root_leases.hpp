#pragma once

// Which instance commits for a root that several instances write (docs/postgres.md, "Root
// leaders"). Instances on one PostgreSQL that all write one hot root hand the root's row lock
// back and forth, one whole commit per handover; if one of them commits for the root and the
// others forward it their requests, the root's batches are whole again. Leadership is only a
// way to go faster: correctness still rests on the root's row lock alone, so two instances that
// both believe they lead (or none) are slower, never wrong, and nothing here is fenced.
//
// A lease is a session-level advisory lock held on a connection of its own: an instance that
// dies loses it with its session, and another can take the root over. The `root_leaders` row
// says where the holder takes forwarded requests.
//
// Thread safety: a RootLeases object is used by one thread at a time (the leadership thread).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ledger/result.hpp"

namespace stub::store {

struct RootLeader {
  std::string url;       // where the leader takes forwarded requests (http://host:port)
  std::string instance;  // its random id, unique per process
};

// What a lookup of one root found.
struct LeaderLookup {
  std::string root;
  // This instance holds the root's lease (and its row names it).
  bool self = false;
  // Another instance holds the lease and its row says where: set when !self; nullopt when the
  // lease is held but its row is not written yet (or names this instance's own URL).
  std::optional<RootLeader> other;
};

class RootLeases {
 public:
  virtual ~RootLeases() = default;

  // Looks up every root of `roots` in one go: a root whose lease no live instance holds is
  // taken for this instance (up to roots_held_max), and its row is written. An Error means the
  // lease connection failed: every lease this instance held is gone with it (the caller must
  // stop acting as their leader) and is taken again on a later lookup.
  virtual Result<std::vector<LeaderLookup>> look_up(const std::vector<std::string>& roots) = 0;
  // How many roots' leases this instance took, in total (for /metrics).
  virtual uint64_t acquired_total() const = 0;
  // Gives up every lease (deleting this instance's rows), at shutdown.
  virtual void release_all() = 0;

  // The most roots one instance leads at once; beyond it, it only follows.
  static constexpr size_t roots_held_max = 10'000;
  // The most roots one look_up takes.
  static constexpr size_t roots_per_look_up_max = 1'000;
};

}  // namespace stub::store
