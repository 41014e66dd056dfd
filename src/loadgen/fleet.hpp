#pragma once

// Throughput across `stub serve` instances (`stub bench --instances N --roots R`): R roots, each
// org -> teams -> agents with one agent key per agent, created over HTTP; closed-loop HTTP
// callers spread over the instances (caller i talks to instance i % N) and over the roots
// (caller i spends at agents i, i + callers, ... in turn, so every root gets load). Ends with a
// run-out phase: every root's limit is set to what it has used plus a small headroom and the
// callers spend until each has been refused three times in a row; then overspend is read back.

#include <cstdint>
#include <string>
#include <vector>

#include "ledger/result.hpp"
#include "loadgen/http_client.hpp"
#include "loadgen/workload.hpp"

namespace stub::loadgen {

struct FleetTree {
  std::string prefix = "fleet";
  size_t roots = 1;
  int teams = 4;             // per root
  int agents_per_team = 25;  // per team
  std::string root(size_t index) const;
  std::string agent(size_t agent_index) const;  // over all roots: root = index % roots
  size_t agent_count() const { return roots * static_cast<size_t>(teams * agents_per_team); }
};

// The tree for `roots` roots: one hot root keeps bench's 4 x 25 agents; many roots get one team
// and one agent each (the load is spread, not deep).
FleetTree fleet_tree(const std::string& prefix, size_t roots);

// Creates every node and one key per agent through `endpoint` as the admin (`threads` at a
// time); returns the agents' tokens in agent order.
Result<std::vector<std::string>> create_fleet(const Endpoint& endpoint,
                                              const std::string& admin_token, const FleetTree& tree,
                                              ledger::Money root_limit, size_t threads = 8);

// Closed-loop spends over HTTP, caller i on ports[i % ports.size()].
RunStats drive_fleet(const std::vector<uint16_t>& ports, const std::vector<std::string>& tokens,
                     const FleetTree& tree, const DriveOptions& options);

// Sets every root's limit to its spent + reserved plus `headroom` (PUT /v1/budgets/{root}).
Status set_fleet_headroom(const Endpoint& endpoint, const std::string& admin_token,
                          const FleetTree& tree, ledger::Money headroom);

// The worst excess of spent + reserved over the limit across every root's subtree, from
// GET /v1/budgets/{path} of every node.
Result<ledger::Money> fleet_overspend(const Endpoint& endpoint, const std::string& admin_token,
                                      const FleetTree& tree);

}  // namespace stub::loadgen
